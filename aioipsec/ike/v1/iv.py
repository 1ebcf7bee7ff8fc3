"""The IKEv1 CBC IV chain (RFC 2409 §5 and Appendix B; model: strongSwan
``sa/ikev1/iv_manager.c``).

IKEv1 carries no IV in its messages.  Within one exchange (one message ID)
each message is encrypted with the last ciphertext block of the previous
message of that exchange as IV:

* Phase 1 (message ID 0) starts with ``hash(g^xi | g^xr)`` truncated to the
  cipher block size.
* Every later exchange (Quick Mode, Informational, Transaction) starts with
  ``hash(last CBC block of the last Phase 1 message | M-ID)``.

A received message only moves the chain on once it has been verified
(:meth:`IvManager.update_iv` stores the last block, :meth:`confirm_iv` makes
it the next IV), so a forged or corrupted message cannot desynchronise the
chain.  Informational exchanges are one-shot: they never update the chain
(the caller simply does not call update/confirm for them), as strongSwan does.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ...crypto.kdf import ikev1_phase1_iv, ikev1_phase2_iv

__all__ = ["IvManager"]

MAX_EXCHANGES = 16
"""How many Phase 2 IV chains are tracked at once (least recently used go)."""


@dataclass(slots=True)
class _Chain:
    iv: bytes
    last_block: bytes = b""


class IvManager:
    """IV chains of one ISAKMP SA, by message ID."""

    def __init__(self, hash_name: str, block_size: int, max_exchanges: int = MAX_EXCHANGES) -> None:
        self.hash_name = hash_name
        self.block_size = block_size
        self.max_exchanges = max_exchanges
        self._phase1: _Chain | None = None
        self._chains: OrderedDict[int, _Chain] = OrderedDict()

    def init_phase1(self, gxi: bytes, gxr: bytes) -> None:
        """Phase 1 IV = hash(g^xi | g^xr) (RFC 2409 Appendix B)."""
        self._phase1 = _Chain(ikev1_phase1_iv(self.hash_name, gxi, gxr, self.block_size))

    @property
    def phase1_iv(self) -> bytes:
        """Current IV of the Phase 1 chain: after Phase 1 this is the last CBC
        block of the last Phase 1 message, the base of every Phase 2 IV."""
        return self._p1().iv

    def _p1(self) -> _Chain:
        if self._phase1 is None:
            raise RuntimeError("Phase 1 IV not initialised")
        return self._phase1

    def _lookup(self, mid: int) -> _Chain:
        if mid == 0:
            return self._p1()
        chain = self._chains.get(mid)
        if chain is None:
            chain = _Chain(self._phase2_iv(mid))
            self._chains[mid] = chain
            while len(self._chains) > self.max_exchanges:
                self._chains.popitem(last=False)
        else:
            self._chains.move_to_end(mid)
        return chain

    def get_iv(self, mid: int) -> bytes:
        """IV for the next message of exchange ``mid``.  For an exchange not
        seen yet the IV is computed but not stored: only a message that was
        accepted (or sent) creates a chain, so forged datagrams under fresh
        message IDs cannot push the chain of an exchange in progress out."""
        if mid != 0 and mid not in self._chains:
            return self._phase2_iv(mid)
        return self._lookup(mid).iv

    def _phase2_iv(self, mid: int) -> bytes:
        """First IV of exchange ``mid``: hash(last Phase 1 block | M-ID)."""
        return ikev1_phase2_iv(self.hash_name, self._p1().iv, mid.to_bytes(4, "big"), self.block_size)

    def update_iv(self, mid: int, last_block: bytes) -> None:
        """Remember the last ciphertext block of a message of exchange ``mid``."""
        self._lookup(mid).last_block = bytes(last_block)

    def confirm_iv(self, mid: int) -> None:
        """Make the remembered block the IV of the next message."""
        chain = self._lookup(mid)
        if chain.last_block:
            chain.iv = chain.last_block
            chain.last_block = b""

    def forget(self, mid: int) -> None:
        """Drop a finished exchange's chain."""
        self._chains.pop(mid, None)

    def __repr__(self) -> str:
        return f"IvManager({self.hash_name}, bs={self.block_size}, chains={len(self._chains)})"
