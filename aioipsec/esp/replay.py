"""Anti-replay window (RFC 4303 §3.4.3, RFC 4302 §3.4.3) with ESN support.

The window follows libipsec's ``esp_context.c`` order of operations:
:meth:`ReplayWindow.check` runs *before* decryption (a cheap reject that
changes nothing) and :meth:`ReplayWindow.commit` only *after* the ICV
verified, so a forged packet can never move the window.

The bitmap is one Python int: bit ``i`` set means sequence number
``top - i`` was received.  RFC 6479 avoids shifting a C bit array by
indexing a ring of words with ``seq mod N``; Python ints are immutable, so
every update allocates a new int anyway and a shift costs the same as a
ring update (O(size/30) digit operations).  We therefore keep the shifted
form, which is easier to read, and let the bitmap grow up to twice the
window size before masking it back (one mask per ``size`` advances instead of
one per packet).  Window sizes from 1 to 2**20 bits work; 0 disables replay
checking (sequence numbers are still tracked for ESN inference).

Extended sequence numbers (RFC 4304): only the low 32 bits travel in the
packet; :meth:`ReplayWindow.infer` reconstructs the high 32 bits with the
algorithm of RFC 4303 Appendix A2.
"""

from __future__ import annotations

__all__ = ["ReplayWindow", "MAX_WINDOW"]

MAX_WINDOW = 1 << 20
_U32 = 0xFFFFFFFF


class ReplayWindow:
    """Sliding anti-replay window over full (64-bit with ESN) sequence numbers."""

    __slots__ = ("size", "esn", "top", "bitmap", "_mask", "_limit")

    def __init__(self, size: int = 64, *, esn: bool = False) -> None:
        if not 0 <= size <= MAX_WINDOW:
            raise ValueError(f"replay window must be 0..{MAX_WINDOW}, not {size}")
        self.size = size
        """Window size in packets (0 = replay protection disabled)."""
        self.esn = esn
        self.top = 0
        """Highest sequence number authenticated so far (0 = none yet)."""
        self.bitmap = 0
        """Bit i set: ``top - i`` received.  May hold stale bits above ``size``."""
        self._mask = (1 << size) - 1
        self._limit = 2 * max(size, 64)

    def check(self, seq: int) -> bool:
        """May a packet with (full) sequence number ``seq`` be processed?
        Changes nothing; call :meth:`commit` once its ICV verified."""
        if seq <= 0:
            return False  # sequence number 0 is never sent (RFC 4303 §3.3.3)
        top = self.top
        if seq > top or not self.size:
            return True
        diff = top - seq
        if diff >= self.size:
            return False
        return not (self.bitmap >> diff) & 1

    def commit(self, seq: int) -> None:
        """Record ``seq`` as received (after its ICV verified)."""
        top = self.top
        if seq > top:
            shift = seq - top
            self.top = seq
            if shift >= self._limit:
                self.bitmap = 1
            else:
                bm = (self.bitmap << shift) | 1
                if bm.bit_length() > self._limit:
                    bm &= self._mask
                self.bitmap = bm
        else:
            diff = top - seq
            if diff < self._limit:
                self.bitmap |= 1 << diff

    def infer(self, seq_lo: int) -> int:
        """The full sequence number for the 32 bits carried in a packet.

        Without ESN this is ``seq_lo`` itself.  With ESN it is RFC 4303
        Appendix A2: the candidate in ``[top - W + 1, top - W + 2**32]``
        whose low 32 bits are ``seq_lo`` (W = window size, or 2**31 when
        replay checking is disabled)."""
        if not self.esn:
            return seq_lo
        w = self.size or (1 << 31)
        top = self.top
        th, tl = top >> 32, top & _U32
        if tl >= w - 1:  # case A: window within one sequence-number subspace
            seq_hi = th if seq_lo >= tl - w + 1 else th + 1
        else:  # case B: window spans two subspaces
            if seq_lo >= (tl - w + 1) & _U32:
                seq_hi = th - 1 if th else th
            else:
                seq_hi = th
        return (seq_hi << 32) | seq_lo

    def set_top(self, top: int) -> None:
        """Start the window at ``top`` (all earlier numbers count as seen):
        for tests and for resuming an SA at a known position."""
        self.top = top
        self.bitmap = self._mask if self.size else 0

    def seen(self, seq: int) -> bool:
        """True when ``seq`` lies inside the window and was received."""
        if seq > self.top or seq <= 0:
            return False
        diff = self.top - seq
        return diff < self.size and bool((self.bitmap >> diff) & 1)

    def __repr__(self) -> str:
        return f"<ReplayWindow size={self.size} top={self.top} esn={self.esn}>"
