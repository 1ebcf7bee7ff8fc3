"""ESP and AH security associations: one object per direction, built once
from keys; sequence numbers (ESN), anti-replay, counters and lifetimes.

Outbound::

    sa = EspSa(spi=0x1234, encr=transforms.encr("aes128gcm16"), encr_key=keymat, inbound=False)
    datagrams = sa.seal_batch(ip_packets)      # SPI .. ICV each; the transport adds IP/UDP

Inbound::

    sa = EspSa(spi=0x1234, encr=..., encr_key=keymat, inbound=True)
    for r in sa.open_batch(datagrams):
        if r.packet is not None: deliver(r.packet)  # else r.drop says why

Nothing here raises per packet: bad bytes become an :class:`OpenResult`
with a :class:`DropReason` and a counter increment (model: boringtun
``TunnResult``).  Replay is checked before decryption and committed after the
ICV verified (model: strongSwan libipsec ``esp_packet.c``).  Counters and
lifetimes are updated once per batch; lifetime and sequence-number
exhaustion are reported as :class:`~aioipsec.events.ChildSaExpired` events
through :meth:`next_event`.

The batch paths have a lean variant for AEAD transforms with 16-byte tags
(AES-GCM-16, AES-CCM, ChaCha20-Poly1305) without ESN or TFC padding: nonce,
AAD and header come from ``struct`` packs of the sequence number, the
trailer from a table, and the replay window is inlined.  Everything else
runs through :class:`~aioipsec.esp.packet.EspCodec` one packet at a time.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import add as _concat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.exceptions import InvalidTag

from ..crypto import transforms
from ..crypto.cipher import AeadEncr, GmacEncr, Integ, make_encr, make_integ
from ..crypto.transforms import EncrAlg, EncrId, IntegAlg
from ..errors import AlgorithmError, LocalProtocolError
from ..events import ChildSaExpired, ChildSaInstalled
from . import ah as _ah
from .ip import (
    PROTO_AH,
    PROTO_ESP,
    header_info,
    ipv4_header,
    ipv6_header,
    pack_addr,
    rebuild_header,
    transport_header_info,
)
from .packet import (
    NH_IPV4,
    NH_IPV6,
    NH_NONE,
    PAD_BYTES,
    DropReason,
    EspCodec,
    OpenResult,
    drop_result,
    nh_for_first_byte,
    ok_result,
)
from .replay import ReplayWindow

if TYPE_CHECKING:
    from ..selectors import Address

__all__ = [
    "EspSa",
    "AhSa",
    "SaCounters",
    "DropReason",
    "OpenResult",
    "esp_sa_pair_from_event",
]

logger = logging.getLogger("aioipsec.esp")

_U32 = 0xFFFFFFFF
_SEQ_END = 1 << 32  # 32-bit sequence numbers (no ESN) stay below
_HDR16 = struct.Struct("!IIQ")  # SPI | seq | 64-bit IV (= sequence number)
_AAD8 = struct.Struct("!II")
_NONCE_I = struct.Struct("!IQ")  # 4-byte salt as int | 64-bit IV
_SPI_SEQ = struct.Struct("!II")
_new = tuple.__new__

_DROP = {r: drop_result(r) for r in DropReason}
_PAD_TAIL = tuple(PAD_BYTES[n] + bytes((n,)) for n in range(256))
"""Padding 1..n followed by the pad-length byte n: what precedes next header."""
_TAILS_V4 = frozenset(t + bytes((NH_IPV4,)) for t in _PAD_TAIL)
_TAILS_V6 = frozenset(t + bytes((NH_IPV6,)) for t in _PAD_TAIL)
"""Every well-formed ESP trailer (padding, pad length, next header) after an
inner IPv4 / IPv6 packet: one set lookup checks all three at once."""
_V4_LEN = struct.Struct("!BxH")  # version/IHL, total length
_CT_OF = itemgetter(slice(16, None))
"""The ciphertext and ICV of an AEAD ESP packet without ESN (after its
16-byte head SPI | seq | IV)."""


# Seal batches: the ESP header (SPI | seq | IV = seq) and the nonce (salt |
# IV) of every packet of a batch of n consecutive sequence numbers
# s0 .. s0+n-1, as n records of 16 + len(nonce) bytes, are one big integer
# B + s0 * K (no field carries into the next: seq < 2**32), turned into bytes
# once and cut by one struct unpack; a second unpack of the same bytes cuts
# the AADs (SPI | seq, each header's first 8 bytes): a few C calls per batch
# instead of three struct packs per packet.  B and K depend on the SA (SPI,
# salt) and n, and are cached on the SA.
_SEAL_RUN_MIN = 8  # smaller batches pack per packet (see bench/README.md)
_SEAL_RUN_SIZES = 8  # batch sizes cached per SA
_T = TypeVar("_T")


def _join(heads: Sequence[bytes], bodies: Iterator[bytes]) -> list[bytes]:
    """Whole ESP packets from the parts of a lean batch (``seal_batch``)."""
    return list(map(_concat, heads, bodies))


def _split(heads: Sequence[bytes], bodies: Iterator[bytes]) -> tuple[Sequence[bytes], list[bytes]]:
    """The parts of a lean batch kept apart (``seal_batch_parts``)."""
    return heads, list(bodies)


SOFT_FRACTION = 0.9
"""Soft byte/packet limit derived from a hard one (``esp_sa_pair_from_event``)."""
SEQ_SOFT_SHIFT = 4
"""An outbound SA asks for a rekey (soft expiry) when less than
``max_seq >> SEQ_SOFT_SHIFT`` sequence numbers are left."""


@dataclass(slots=True)
class SaCounters:
    """Per-SA counters (what ``swanctl --list-sas`` and ``show crypto ipsec sa``
    show).  Bytes are inner-packet bytes (payload for transport mode)."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    replay_failed: int = 0
    integrity_failed: int = 0
    malformed: int = 0
    padding_failed: int = 0
    dummy: int = 0
    drops: dict[DropReason, int] = field(default_factory=dict)
    """Every drop by reason (also SPI, POLICY, EXPIRED)."""

    def as_dict(self) -> dict[str, int]:
        d = {k: getattr(self, k) for k in self.__slots__ if k != "drops"}  # type: ignore[attr-defined]
        d.update({f"drop_{r}": n for r, n in self.drops.items()})
        return d


_NAMED = {
    DropReason.REPLAY: "replay_failed",
    DropReason.INTEGRITY: "integrity_failed",
    DropReason.MALFORMED: "malformed",
    DropReason.PADDING: "padding_failed",
    DropReason.DUMMY: "dummy",
}


def _inner_end(pt: bytes, nh: int, end: int) -> int:
    """Tunnel mode (ESP and AH): where the inner IP packet in ``pt[:end]``
    ends by its own length field, which also cuts TFC padding (RFC 4303
    §2.7); -1 unless it is a well-formed header of the IP version that the
    next header ``nh`` names.  An IPv6 payload length of 0 (jumbogram or no
    payload) keeps all ``end`` bytes."""
    if nh == NH_IPV4:
        if end < 20 or pt[0] >> 4 != 4:
            return -1
        tl = (pt[2] << 8) | pt[3]
        return tl if 20 <= tl <= end else -1
    if nh == NH_IPV6:
        if end < 40 or pt[0] >> 4 != 6:
            return -1
        tl = 40 + ((pt[4] << 8) | pt[5])
        if tl == 40:
            return end
        return tl if tl <= end else -1
    return -1


class _SaBase:
    """Sequence numbers, replay window, counters, lifetimes and events."""

    def __init__(
        self,
        *,
        spi: int,
        mode: str,
        esn: bool,
        replay_window: int,
        inbound: bool,
        soft_bytes: int | None,
        hard_bytes: int | None,
        soft_packets: int | None,
        hard_packets: int | None,
        name: str,
    ) -> None:
        if mode not in ("tunnel", "transport"):
            raise LocalProtocolError(f"mode must be 'tunnel' or 'transport', not {mode!r}")
        if not 0 <= spi <= _U32:
            raise LocalProtocolError(f"SPI out of range: {spi}")
        self.spi = spi
        self.mode = mode
        self.tunnel = mode == "tunnel"
        self.esn = esn
        self.inbound = inbound
        self.name = name
        self.stats = SaCounters()
        self.replay = ReplayWindow(replay_window, esn=esn)
        """Inbound anti-replay window (also tracks the ESN high bits)."""
        self.seq = 0
        """Outbound: last sequence number used (the next packet gets seq + 1)."""
        self.max_seq = (1 << 64) - 1 if esn else _U32
        self._seq_soft = self.max_seq - (self.max_seq >> SEQ_SOFT_SHIFT)
        """Outbound: once ``seq`` reaches this, the SA asks for a rekey (soft expiry "seq")."""
        self.soft_bytes, self.hard_bytes = soft_bytes, hard_bytes
        self.soft_packets, self.hard_packets = soft_packets, hard_packets
        self.expired = False
        """Hard expired (lifetime or sequence numbers): every packet is dropped."""
        self._soft_done = False
        self._events: deque[ChildSaExpired] = deque()
        self._replay_burst = False
        self._replay_logged_at: float | None = None
        self._ident = 0

    # ------------------------------------------------------------------ events

    def next_event(self) -> ChildSaExpired | None:
        """Pop the next :class:`ChildSaExpired` event, or ``None``."""
        return self._events.popleft() if self._events else None

    def _expire(self, hard: bool, reason: str) -> None:
        if hard:
            if self.expired:
                return
            self.expired = True
            self._soft_done = True
        else:
            if self._soft_done:
                return
            self._soft_done = True
        self._events.append(ChildSaExpired(self.spi, hard, reason))
        logger.info("CHILD_SA %s spi=0x%08x %s expired (%s)", self.name, self.spi, "hard" if hard else "soft", reason)

    def _check_lifetime(self) -> None:
        st = self.stats
        if self.inbound:
            p, b = st.packets_in, st.bytes_in
        else:
            p, b = st.packets_out, st.bytes_out
        if not self._soft_done:  # soft first, so a batch crossing both reports both
            if self.soft_packets is not None and p >= self.soft_packets:
                self._expire(False, "packets")
            elif self.soft_bytes is not None and b >= self.soft_bytes:
                self._expire(False, "bytes")
            elif not self.inbound and self.seq >= self._seq_soft:
                # RFC 4303 §3.3.3: rekey before the counter runs out (1/16 of
                # the space ahead: ~268 M packets without ESN)
                self._expire(False, "seq")
        if not self.expired:
            if self.hard_packets is not None and p >= self.hard_packets:
                self._expire(True, "packets")
            elif self.hard_bytes is not None and b >= self.hard_bytes:
                self._expire(True, "bytes")

    def _packet_room(self, n: int) -> int:
        """How many of ``n`` packets may still be processed (hard packet limit)."""
        if self.hard_packets is None:
            return n
        done = self.stats.packets_in if self.inbound else self.stats.packets_out
        return max(0, min(n, self.hard_packets - done))

    # ------------------------------------------------------------------ drops

    def _drop(self, reason: DropReason, n: int = 1) -> None:
        st = self.stats
        st.drops[reason] = st.drops.get(reason, 0) + n
        attr = _NAMED.get(reason)
        if attr is not None:
            setattr(st, attr, getattr(st, attr) + n)

    def _note_replays(self, first_seq: int, count: int, now: float | None) -> None:
        """Log ``PKT_REPLAY_ERR`` once per burst (a run of batches with replay
        drops), and at most once per second when a clock is given."""
        if count:
            last = self._replay_logged_at
            if not self._replay_burst or (now is not None and (last is None or now - last >= 1.0)):
                logger.warning("PKT_REPLAY_ERR spi=0x%08x seq=%d count=%d", self.spi, first_seq, count)
                self._replay_logged_at = now
            self._replay_burst = True
        else:
            self._replay_burst = False

    def _exhausted(self, rest: int) -> None:
        """Outbound packets beyond the sequence space or the hard packet limit."""
        if self.seq >= self.max_seq:
            self._expire(True, "seq-exhausted")
        else:
            self._expire(True, "packets")
        self._drop(DropReason.EXPIRED, rest)

    def _need(self, inbound: bool) -> None:
        if self.inbound != inbound:
            raise LocalProtocolError(f"this is an {'inbound' if self.inbound else 'outbound'} SA")

    def _take_seqs(self, n: int) -> int:
        """How many sequence numbers can be handed out (exhaustion ends the SA)."""
        room = self.max_seq - self.seq
        if room >= n:
            return n
        return max(0, room)

    def __repr__(self) -> str:
        d = "in" if self.inbound else "out"
        return f"<{type(self).__name__} {self.name or ''} spi=0x{self.spi:08x} {d} {self.mode}>"


class EspSa(_SaBase):
    """One direction of an ESP SA.

    ``encr`` is the encryption transform (``None`` means ENCR_NULL), with
    ``encr_key`` = key || salt; ``integ`` the integrity transform (``None``
    for AEAD).  Legacy transforms (DES, 3DES, NULL, HMAC-MD5) and
    encryption-only SAs need ``allow_legacy=True``.  ``tfc_pad`` pads tunnel
    mode inner packets up to that many bytes (RFC 4303 §2.7).  ``random``
    supplies CBC IVs.  ``check`` is an optional inbound policy hook: the
    decrypted packet is dropped as ``POLICY`` when it returns False."""

    def __init__(
        self,
        *,
        spi: int,
        encr: EncrAlg | None,
        encr_key: bytes = b"",
        integ: IntegAlg | None = None,
        integ_key: bytes = b"",
        mode: str = "tunnel",
        esn: bool = False,
        replay_window: int = 64,
        inbound: bool,
        tfc_pad: int = 0,
        random: Callable[[int], bytes] = os.urandom,
        allow_legacy: bool = False,
        soft_bytes: int | None = None,
        hard_bytes: int | None = None,
        soft_packets: int | None = None,
        hard_packets: int | None = None,
        check: Callable[[bytes], bool] | None = None,
        name: str = "",
    ) -> None:
        super().__init__(
            spi=spi,
            mode=mode,
            esn=esn,
            replay_window=replay_window,
            inbound=inbound,
            soft_bytes=soft_bytes,
            hard_bytes=hard_bytes,
            soft_packets=soft_packets,
            hard_packets=hard_packets,
            name=name,
        )
        if encr is None:
            encr = transforms.ENCR["null"]
        if encr.aead and integ is not None:
            raise AlgorithmError("", f"AEAD cipher {encr.name} takes no integrity algorithm")
        legacy = [a.name for a in (encr, integ) if a is not None and a.legacy]
        if not encr.aead and integ is None:
            legacy.append("encryption without integrity")
        if encr.id == EncrId.NULL and integ is None:
            raise AlgorithmError("", "ESP with neither encryption nor integrity")
        if legacy and not allow_legacy:
            raise AlgorithmError("", f"legacy ESP transform refused ({', '.join(legacy)}); pass allow_legacy=True")
        self.encr_alg = encr
        self.integ_alg = integ
        self.codec = EspCodec(
            spi,
            make_encr(encr, encr_key),
            make_integ(integ, integ_key) if integ is not None else None,
            esn,
        )
        self.tfc_pad = tfc_pad if self.tunnel else 0
        self.random = random
        self.check = check
        self._fast = isinstance(self.codec.encr, AeadEncr) and not esn and not self.tfc_pad
        if self._fast:
            enc = self.codec.encr
            assert isinstance(enc, AeadEncr)
            self._open_run_c: dict[int, tuple[Any, ...]] = {}
            self._seal_run: dict[int, tuple[int, int, int, Callable[[bytes], tuple[bytes, ...]], Callable[[bytes], tuple[bytes, ...]]]] = {}
            # nonce = salt || 64-bit sequence number, packed in one C call
            salt = enc.salt
            if len(salt) == 4:
                self._nonce_salt: int | bytes = int.from_bytes(salt, "big")
                self._nonce_pack = _NONCE_I.pack
            else:  # CCM: 3-byte salt
                self._nonce_salt = salt
                self._nonce_pack = struct.Struct(f"!{len(salt)}sQ").pack
        # The common case skips the per-batch bookkeeping of seal_batch /
        # open_packets (direction, expiry, packet room, lifetime checks: ~1.5 us
        # per batch, ~25 ns per packet of 64): an AEAD tunnel-mode SA without
        # ESN, TFC padding or byte/packet lifetimes (the limits are constructor
        # arguments, read only).  Outbound, the only lifetime left is the
        # sequence space, so the lean path is taken while a batch stays below
        # the soft threshold; the general path reports the crossing.
        no_limits = soft_bytes is None and hard_bytes is None and soft_packets is None and hard_packets is None
        self._lean = self._fast and self.tunnel and no_limits

    # ================================================================= outbound

    def seal(
        self, packet: bytes, next_header: int | None = None, *, seq: int | None = None, iv: bytes | None = None
    ) -> bytes | None:
        """Seal one packet; ``None`` if it cannot be sent (expired SA or, in
        tunnel mode, not an IP packet).  ``seq``/``iv`` pin the sequence
        number and IV (test vectors); a pinned ``seq`` also moves the SA's
        counter there."""
        if seq is not None:
            self._need(False)
            if not 0 < seq <= self.max_seq:
                raise LocalProtocolError(f"sequence number out of range: {seq}")
            self.seq = seq - 1
        if iv is not None:
            self._need(False)
            if self.expired or self._take_seqs(1) < 1:
                self._exhausted(1)
                return None
            out = self._seal_slow([packet], next_header, iv)
            self._check_lifetime()
            return out[0] if out else None
        res = self.seal_batch([packet], next_header)
        return res[0] if res else None

    def seal_batch_parts(self, packets: Sequence[bytes]) -> tuple[Sequence[bytes], Sequence[bytes]]:
        """Tunnel mode: :meth:`seal_batch` with each ESP packet in two parts,
        ``(heads, bodies)``: packet i is ``heads[i] + bodies[i]``, for a
        gather send (``sendmsg`` with both as buffers; see
        :meth:`~aioipsec.asyncio.sockets.UdpSocket.send_parts`) that needs no
        copy to join them.  On the lean path (AEAD, no ESN, TFC or lifetime
        limits near, a batch of 8 or more IP packets) a head is the 16-byte
        SPI | seq | IV and a body the ciphertext and ICV; otherwise the heads
        are empty and the bodies whole packets.  Same packets, sequence
        numbers and counters as :meth:`seal_batch`."""
        parts = self._seal_lean(packets, _split)
        if parts is not None:
            return parts
        out = self.seal_batch(packets)
        return (b"",) * len(out), out

    def seal_batch(self, packets: Sequence[bytes], next_header: int | None = None) -> list[bytes]:
        """Seal a batch; returns the ESP packets (SPI .. ICV) of those that
        could be sent, in order.  Tunnel mode: each packet is an IP packet
        and the next header comes from its version.  Transport mode: with
        ``next_header`` the packets are payloads of that protocol; without
        it they are whole IP packets whose payload is protected (fragments
        and malformed packets are dropped as MALFORMED); the receiver gets
        payload and protocol back (see :func:`aioipsec.esp.natt.transport_packet`)."""
        if next_header is None:
            out = self._seal_lean(packets, _join)
            if out is not None:
                return out
        n = len(packets)
        self._need(False)
        if not n:
            return []
        if self.expired:
            self._drop(DropReason.EXPIRED, n)
            return []
        room = min(self._take_seqs(n), self._packet_room(n))
        batch = packets if room == n else packets[:room]
        out: list[bytes] | None = None
        if self._fast and room and (self.tunnel or next_header is not None):
            try:
                out = self._seal_fast(batch, next_header)
            except (IndexError, TypeError):
                out = None  # a packet that is not IP: redo carefully below
            else:
                self.seq += room
                st = self.stats
                st.packets_out += room
                st.bytes_out += sum(map(len, batch))
        if out is None:
            out = self._seal_slow(batch, next_header, None)
        self._check_lifetime()
        if room < n:
            self._exhausted(n - room)
        return out

    def _seal_lean(self, packets: Sequence[bytes], finish: Callable[[Sequence[bytes], Iterator[bytes]], _T]) -> _T | None:
        """The lean path of a tunnel-mode batch (AEAD, no ESN, TFC or
        lifetime limits near, 8 or more packets, an outbound SA): the heads
        and lazy bodies of :meth:`_seal_parts` made into the result by
        ``finish``, then the sequence number and counters advanced.  None
        (nothing done) when the path does not apply or a packet is not IP:
        the general path then takes the batch."""
        n = len(packets)
        if not (self._lean and n >= _SEAL_RUN_MIN and not self.inbound):
            return None
        s = self.seq
        if s + n >= self._seq_soft or self.expired:
            return None
        try:
            heads, lazy = self._seal_parts(packets, None)
            out = finish(heads, lazy)
        except (IndexError, TypeError):
            return None  # a packet that is not IP
        self.seq = s + n
        st = self.stats
        st.packets_out += n
        st.bytes_out += sum(map(len, packets))
        return out

    def _seal_fast(self, batch: Sequence[bytes], nh: int | None) -> list[bytes]:
        if len(batch) >= _SEAL_RUN_MIN:
            heads, bodies = self._seal_parts(batch, nh)
            return list(map(_concat, heads, bodies))
        enc = self.codec.encr.aead_obj.encrypt  # type: ignore[attr-defined]
        spi, hdr, aad = self.spi, _HDR16.pack, _AAD8.pack
        nonce, salt = self._nonce_pack, self._nonce_salt
        m = self.codec.block - 1
        s0 = self.seq + 1
        if nh is None:
            tt = self.codec.tunnel_trailers()
            return [
                hdr(spi, s, s) + enc(nonce(salt, s), p + tt[p[0]][len(p) & m], aad(spi, s))  # type: ignore[index]
                for s, p in enumerate(batch, s0)
            ]
        tr = self.codec.trailer_table(nh)
        return [hdr(spi, s, s) + enc(nonce(salt, s), p + tr[len(p) & m], aad(spi, s)) for s, p in enumerate(batch, s0)]

    def _seal_parts(self, batch: Sequence[bytes], nh: int | None) -> tuple[Sequence[bytes], Iterator[bytes]]:
        """A batch of ``_SEAL_RUN_MIN`` or more, sealed from sequence number
        ``self.seq + 1`` on (the caller advances it): the 16-byte ESP headers
        (SPI | seq | IV) and, lazily, the bodies (ciphertext | ICV).  Header,
        nonce, header, nonce, ... come from one blob (:meth:`_seal_fields`),
        the padded plaintexts from one comprehension, the bodies from one map
        (no bytecode per packet)."""
        enc = self.codec.encr.aead_obj.encrypt  # type: ignore[attr-defined]
        m = self.codec.block - 1
        fields, aads = self._seal_fields(len(batch), self.seq + 1)
        if nh is None:
            tt = self.codec.tunnel_trailers()
            pts = [p + tt[p[0]][len(p) & m] for p in batch]  # type: ignore[index]
        else:
            tr = self.codec.trailer_table(nh)
            pts = [p + tr[len(p) & m] for p in batch]
        return fields[0::2], map(enc, fields[1::2], pts, aads)

    def _seal_fields(self, n: int, s0: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """For sequence numbers s0 .. s0+n-1: (header, nonce, header, nonce,
        ...) and the AADs, which are the headers' first 8 bytes (see
        ``_SEAL_RUN_MIN``)."""
        c = self._seal_run.get(n)
        if c is None:
            salt_b = self.codec.encr.salt  # type: ignore[attr-defined]
            nlen = len(salt_b) + 8  # nonce = salt || IV
            w = 16 + nlen
            spi, salt = self.spi, int.from_bytes(salt_b, "big")
            two = (1 << 64) | 1  # seq in the header's seq and IV fields
            rec_k = (two << 8 * nlen) | 1
            k = b = 0
            for i in range(n):
                at = 8 * w * (n - 1 - i)
                k |= rec_k << at
                b |= (((i * two) | spi << 96) << 8 * nlen | i | salt << 64) << at
            if len(self._seal_run) >= _SEAL_RUN_SIZES:
                self._seal_run.clear()
            c = self._seal_run[n] = (b, k, w * n, struct.Struct(f"16s{nlen}s" * n).unpack, struct.Struct(f"8s{w - 8}x" * n).unpack)
        b, k, size, unpack, unpack_aad = c
        blob = (b + s0 * k).to_bytes(size, "big")
        return unpack(blob), unpack_aad(blob)

    def _seal_slow(self, batch: Sequence[bytes], nh_fixed: int | None, iv: bytes | None) -> list[bytes]:
        codec, rnd, tfc = self.codec, self.random, self.tfc_pad
        out: list[bytes] = []
        seq, nbytes = self.seq, 0
        tunnel = self.tunnel
        for p in batch:
            if nh_fixed is not None:
                nh: int | None = nh_fixed
            elif tunnel:
                nh = nh_for_first_byte(p[0]) if p else None
            else:  # transport mode, whole IP packet: protect its payload
                info = transport_header_info(p)
                if info is None:
                    nh = None
                else:
                    nh, p = info.next_header, p[info.insert_at : info.total_len]
            if nh is None:
                self._drop(DropReason.MALFORMED)
                continue
            nbytes += len(p)
            if tfc and len(p) < tfc:
                p = p + bytes(tfc - len(p))
            seq += 1
            out.append(codec.seal(p, nh, seq, iv, rnd))
        self.seq = seq
        st = self.stats
        st.packets_out += len(out)
        st.bytes_out += nbytes
        return out

    def make_dummy(self, size: int = 0) -> bytes | None:
        """A dummy packet (next header 59, RFC 4303 §2.6) with ``size``
        random payload bytes, for traffic-flow confidentiality."""
        self._need(False)
        if self.expired or self._take_seqs(1) < 1:
            self._exhausted(1)
            return None
        self.seq += 1
        return self.codec.seal(self.random(size) if size else b"", NH_NONE, self.seq, None, self.random)

    # ================================================================= inbound

    def open(self, data: bytes, now: float | None = None) -> OpenResult:
        """Open one ESP packet (SPI .. ICV)."""
        return self.open_batch([data], now)[0]

    def open_batch(self, datagrams: Sequence[bytes], now: float | None = None) -> list[OpenResult]:
        """Open a batch of ESP packets; one :class:`OpenResult` per datagram,
        in order.  ``now`` (optional) rate-limits replay logging to once a
        second; without it a burst of replays logs once."""
        self._need(True)
        n = len(datagrams)
        if not n:
            return []
        if self.expired:
            self._drop(DropReason.EXPIRED, n)
            return [_DROP[DropReason.EXPIRED]] * n
        room = self._packet_room(n)
        batch = datagrams if room == n else datagrams[:room]
        if self._fast:
            res = self._open_fast(batch, now)
        else:
            res = self._open_slow(batch, now)
        self._check_lifetime()
        if room < n:
            self._expire(True, "packets")
            self._drop(DropReason.EXPIRED, n - room)
            res.extend([_DROP[DropReason.EXPIRED]] * (n - room))
        return res

    def open_packets(self, datagrams: Sequence[bytes], now: float | None = None) -> list[bytes]:
        """Open a batch of ESP packets and return only the delivered packets
        (tunnel mode: inner IP packets; transport mode: payloads), in order.

        The same checks, counters, replay semantics and ``PKT_REPLAY_ERR``
        logging as :meth:`open_batch`, without a per-packet result object:
        drops are counted in :attr:`stats` by reason.  This is what the data
        plane calls in tunnel mode; use :meth:`open_batch` when the reason
        or the next header of each packet is needed."""
        tried = self._lean and self.inbound and not self.expired and len(datagrams) > 1
        if tried:
            out = self._open_run(datagrams, now)
            if out is not None:
                return out  # no lifetime to check (see _lean)
        self._need(True)
        n = len(datagrams)
        if not n:
            return []
        if self.expired:
            self._drop(DropReason.EXPIRED, n)
            return []
        room = self._packet_room(n)
        batch = datagrams if room == n else datagrams[:room]
        out = self._open_run(batch, now) if self._fast and not tried else None
        if out is None:
            res = self._open_fast(batch, now) if self._fast else self._open_slow(batch, now)
            out = [r.packet for r in res if r.packet is not None]
        self._check_lifetime()
        if room < n:
            self._expire(True, "packets")
            self._drop(DropReason.EXPIRED, n - room)
        return out

    def _open_run(self, batch: Sequence[bytes], now: float | None) -> list[bytes] | None:
        """AEAD, no ESN, the common case: a run of consecutive sequence numbers
        above the window for this SA's SPI.  ``None`` (nothing done) for any
        other batch, which then takes :meth:`_open_fast` packet by packet.

        For such a run the replay check of every packet passes before and
        after its predecessors commit, so it is checked once for the batch:
        the joined heads (SPI | seq | IV per packet) read as one integer carry
        SPI | first + i in record i exactly when the batch is such a run (one
        mask and one compare).  The AEAD calls then run in one ``map`` (no
        bytecode per packet); a failed tag stops it at that packet, which is
        marked and the ``map`` resumed.  Inner IPv4/IPv6 packets whose length
        field points at a well-formed trailer (one set lookup, as in
        :meth:`_open_fast`) are delivered directly; from the first other
        plaintext on, packets go through :meth:`_unwrap` one by one.  The
        authenticated numbers are committed together afterwards (same window
        as committing them one by one, up to stale bits beyond the window
        size).

        :meth:`open_batch` keeps the per-packet loop (it needs a result per
        datagram); a hypothesis test checks that both deliver the same packets
        and count the same drops."""
        n = len(batch)
        c = self._open_run_c.get(n)
        if c is None:
            c = self._open_fields(n)
        pack_heads, unpack_aads, unpack_nonces, hi_mask, run0, run_k, iv_mask, salts, size, pack_firsts, unpack_firsts = c
        # SPI | seq | IV per packet: one struct call copies the first 16 bytes
        # of each datagram (46 -> 5 ns per packet against joining slices).  A
        # datagram shorter than that is padded with zeros here; if its head
        # still fits the run, its ciphertext d[16:] is empty, it fails the tag
        # and is dropped as MALFORMED below, as on the general path
        try:
            heads = pack_heads(*batch)
        except struct.error:  # not bytes/bytearray
            return None
        h = int.from_bytes(heads, "big")
        first = (heads[4] << 24) | (heads[5] << 16) | (heads[6] << 8) | heads[7]
        win = self.replay
        top = win.top
        if first <= top or first + n > _SEQ_END or h & hi_mask != run0 + first * run_k:
            return None
        # AADs are the heads' first 8 bytes; nonces salt || IV, cut from the
        # heads' integer with the SPI | seq bytes of each record replaced by the salt
        aads = unpack_aads(heads)
        nonces = unpack_nonces(((h & iv_mask) | salts).to_bytes(size, "big"))
        pts: list[bytes | None] = []
        more = pts.extend
        it = map(self.codec.encr.aead_obj.decrypt, nonces, map(_CT_OF, batch), aads)  # type: ignore[attr-defined]
        while True:
            try:
                more(it)
                break
            except InvalidTag:  # pts holds the plaintexts before it
                pts.append(None)
        out: list[bytes] = []
        app = out.append
        nby = 0
        if self.tunnel and self.check is None:
            # version/IHL and total length of every plaintext: one pack of
            # their first 4 bytes and one unpack (20 ns per packet less than
            # an unpack_from each).  A failed tag (None) becomes b"", read as
            # version 0; pack pads shorter plaintexts with zeros, which then
            # fail the checks below (tl >= 20 against at most 3 bytes)
            try:
                firsts = unpack_firsts(pack_firsts(*pts))
            except struct.error:
                firsts = unpack_firsts(pack_firsts(*[b"" if pt is None else pt for pt in pts]))
            tails4, tails6 = _TAILS_V4, _TAILS_V6
            f = iter(firsts)
            # a plaintext too short for the IPv6 length raises IndexError and
            # leaves the loop like any other packet that needs the general checks
            try:
                for pt, vihl, tl in zip(pts, f, f):
                    if vihl == 0x45:  # IPv4 without options
                        if tl >= 20 and pt[tl:] in tails4:  # type: ignore[index]
                            app(pt[:tl])  # type: ignore[index]
                            nby += tl
                            continue
                    elif vihl >> 4 == 6:
                        tl = 40 + (pt[4] << 8 | pt[5])  # type: ignore[index]
                        if pt[tl:] in tails6:  # type: ignore[index]
                            app(pt[:tl])  # type: ignore[index]
                            nby += tl
                            continue
                    break
            except IndexError:
                pass
        i = len(out)  # every packet before the i-th was delivered
        unauth: list[int] = []
        if i < n:
            minlen = self.codec.min_len
            for j in range(i, n):
                pt = pts[j]
                seq = first + j
                if pt is None or len(batch[j]) < minlen:
                    # a ciphertext shorter than the ICV fails the tag; a
                    # datagram shorter than the ESP minimum is malformed (its
                    # number is not used up, as in _open_fast)
                    self._drop(DropReason.MALFORMED if len(batch[j]) < minlen else DropReason.INTEGRITY)
                    unauth.append(seq)
                    continue
                r = self._unwrap(pt, seq)
                if r.packet is not None:
                    app(r.packet)
                    nby += len(r.packet)
                else:
                    self._drop(r.drop)  # type: ignore[arg-type]
        # commit the authenticated numbers (see ReplayWindow.commit)
        if unauth:
            skip = set(unauth)
            for seq in range(first, first + n):
                if seq not in skip:
                    win.commit(seq)
        else:
            bm = (win.bitmap << (first + n - 1 - top)) | ((1 << n) - 1)
            if bm >> win._limit:
                bm &= win._mask
            win.top, win.bitmap = first + n - 1, bm
        st = self.stats
        st.packets_in += len(out)
        st.bytes_in += nby
        self._replay_burst = False  # _note_replays: a batch without replays ends a burst
        return out

    def _open_fields(self, n: int) -> tuple[Any, ...]:
        """Cached per batch size for :meth:`_open_run`: the packer of the
        first 16 bytes of n datagrams, the unpackers of n joined 16-byte
        heads (SPI | seq | IV) into the AADs and of the nonces (salt || IV),
        and the integers that check and rewrite the heads read
        as one number: the mask of the SPI | seq words, that of a run
        starting at 0 (SPI | i in record i) and the multiple of the first
        number to add, the IV mask and the salts laid over the SPI | seq bytes
        of each record; last the packer of the first 4 bytes of n plaintexts
        and its unpacker into version/IHL and total length."""
        salt = self.codec.encr.salt  # type: ignore[attr-defined]
        sl = len(salt)
        salt_int = int.from_bytes(salt, "big")
        word = (1 << 64) - 1
        hi_mask = run0 = run_k = iv_mask = salts = 0
        for i in range(n):
            sh = 128 * (n - 1 - i)  # record i, the first at the top
            hi_mask |= word << (sh + 64)
            run0 |= (self.spi << 32 | i) << (sh + 64)
            run_k |= 1 << (sh + 64)
            iv_mask |= word << sh
            salts |= salt_int << (sh + 64)
        if len(self._open_run_c) >= _SEAL_RUN_SIZES:
            self._open_run_c.clear()
        c = self._open_run_c[n] = (
            struct.Struct("16s" * n).pack,
            struct.Struct("8s8x" * n).unpack,
            struct.Struct(f"{8 - sl}x{sl + 8}s" * n).unpack,
            hi_mask,
            run0,
            run_k,
            iv_mask,
            salts,
            16 * n,
            struct.Struct("4s" * n).pack,
            struct.Struct("!" + "BxH" * n).unpack,
        )
        return c

    def _unwrap(self, pt: bytes, seq: int) -> OpenResult:
        """Check the trailer of an authenticated plaintext and cut the packet."""
        n = len(pt)
        padlen, nh = pt[n - 2], pt[n - 1]
        end = n - 2 - padlen
        if end < 0 or (padlen and pt[end : n - 2] != PAD_BYTES[padlen]):
            return drop_result(DropReason.PADDING, seq)
        if nh == NH_NONE:
            return drop_result(DropReason.DUMMY, seq)
        if self.tunnel:
            end = _inner_end(pt, nh, end)  # cuts TFC padding too
            if end < 0:
                return drop_result(DropReason.MALFORMED, seq)
        pkt = pt[:end]
        if self.check is not None and not self.check(pkt):
            return drop_result(DropReason.POLICY, seq)
        return ok_result(pkt, nh, seq)

    def _open_slow(self, batch: Sequence[bytes], now: float | None) -> list[OpenResult]:
        codec, win, spi = self.codec, self.replay, self.spi
        minlen = codec.min_len
        out: list[OpenResult] = []
        npk = nby = replays = first_replay = 0
        for d in batch:
            if len(d) < minlen:
                r = _DROP[DropReason.MALFORMED]
            else:
                dspi, lo = _SPI_SEQ.unpack_from(d)
                if dspi != spi:
                    r = _DROP[DropReason.SPI]
                else:
                    seq = win.infer(lo)
                    if not win.check(seq):
                        if not replays:
                            first_replay = seq
                        replays += 1
                        r = drop_result(DropReason.REPLAY, seq)
                    else:
                        pt = codec.open(d, seq)
                        if isinstance(pt, DropReason):
                            r = drop_result(pt, seq)
                        else:
                            win.commit(seq)  # authenticated: the number is used up
                            r = self._unwrap(pt, seq)
                            if r.packet is not None:
                                npk += 1
                                nby += len(r.packet)
            if r.drop is not None:
                self._drop(r.drop)
            out.append(r)
        st = self.stats
        st.packets_in += npk
        st.bytes_in += nby
        self._note_replays(first_replay, replays, now)
        return out

    def _open_fast(self, batch: Sequence[bytes], now: float | None) -> list[OpenResult]:
        """AEAD, no ESN: the replay window and trailer checks inlined (the
        same rules as ReplayWindow.check/commit and _unwrap).  Drops leave
        the loop through ``_drop_one``; the success path touches only locals."""
        enc = self.codec.encr
        dec = enc.aead_obj.decrypt  # type: ignore[attr-defined]
        salt = enc.salt  # type: ignore[attr-defined]
        spi, minlen, tunnel, check = self.spi, self.codec.min_len, self.tunnel, self.check
        win = self.replay
        size, top, bm, limit, mask = win.size, win.top, win.bitmap, win._limit, win._mask
        bm_max = (1 << limit) - 1  # "bm.bit_length() > limit" without a method call
        unpack = _SPI_SEQ.unpack_from
        padtail = _PAD_TAIL
        new, result_cls = _new, OpenResult
        out: list[OpenResult] = []
        app = out.append
        drop = self._drop_one
        nby = ndrop = replays = first_replay = 0
        # tunnel mode, common case: the inner packet's length field says where the
        # trailer starts, and one set lookup checks padding, pad length and next
        # header together; anything else takes the general trailer checks below
        lean = tunnel and check is None
        v4_len, tails4, tails6 = _V4_LEN.unpack_from, _TAILS_V4, _TAILS_V6
        for d in batch:
            if len(d) < minlen:
                app(drop(DropReason.MALFORMED, 0))
                ndrop += 1
                continue
            dspi, seq = unpack(d)
            if dspi != spi:
                app(drop(DropReason.SPI, 0))
                ndrop += 1
                continue
            if seq <= top and (seq == 0 or (size and (top - seq >= size or (bm >> (top - seq)) & 1))):
                if not replays:
                    first_replay = seq
                replays += 1
                app(drop(DropReason.REPLAY, seq))
                ndrop += 1
                continue
            try:
                pt = dec(salt + d[8:16], d[16:], d[:8])
            except InvalidTag:
                app(drop(DropReason.INTEGRITY, seq))
                ndrop += 1
                continue
            # authenticated: commit the sequence number
            if seq > top:
                shift = seq - top
                top = seq
                if shift >= limit:
                    bm = 1
                else:
                    bm = (bm << shift) | 1
                    if bm > bm_max:
                        bm &= mask
            elif top - seq < limit:
                bm |= 1 << (top - seq)
            if lean:
                try:
                    vihl, tl = v4_len(pt)
                except struct.error:  # shorter than 4 bytes: the general path drops it
                    vihl = 0
                if vihl >> 4 == 4:
                    if tl >= 20 and pt[tl:] in tails4:
                        app(new(result_cls, (pt[:tl], NH_IPV4, None, seq)))
                        nby += tl
                        continue
                elif vihl >> 4 == 6 and len(pt) > 40:
                    tl = 40 + ((pt[4] << 8) | pt[5])
                    if pt[tl:] in tails6:
                        app(new(result_cls, (pt[:tl], NH_IPV6, None, seq)))
                        nby += tl
                        continue
            n = len(pt)
            padlen = pt[n - 2]
            # padding 1, 2, ..., padlen followed by padlen itself, checked in place
            if not pt.endswith(padtail[padlen], 0, n - 1):
                app(drop(DropReason.PADDING, seq))
                ndrop += 1
                continue
            nh = pt[n - 1]
            end = n - 2 - padlen
            if tunnel:
                tl = _inner_end(pt, nh, end)  # cuts TFC padding too
                if tl < 0:
                    app(drop(DropReason.DUMMY if nh == 59 else DropReason.MALFORMED, seq))
                    ndrop += 1
                    continue
                pkt = pt[:tl]
            elif nh == 59:
                app(drop(DropReason.DUMMY, seq))
                ndrop += 1
                continue
            else:
                pkt = pt[:end]
            if check is not None and not check(pkt):
                app(drop(DropReason.POLICY, seq))
                ndrop += 1
                continue
            app(new(result_cls, (pkt, nh, None, seq)))
            nby += len(pkt)
        win.top, win.bitmap = top, bm
        st = self.stats
        st.packets_in += len(batch) - ndrop
        st.bytes_in += nby
        self._note_replays(first_replay, replays, now)
        return out

    def _drop_one(self, reason: DropReason, seq: int) -> OpenResult:
        self._drop(reason)
        return _DROP[reason] if not seq else drop_result(reason, seq)

    # ================================================================= whole packets

    def seal_packet(
        self,
        ip_packet: bytes,
        outer_src: str | bytes | int | None = None,
        outer_dst: str | bytes | int | None = None,
        *,
        ttl: int = 64,
        ident: int | None = None,
        tos: int | None = None,
        df: bool | None = None,
        flow_label: int = 0,
        seq: int | None = None,
        iv: bytes | None = None,
    ) -> bytes | None:
        """Raw ESP (IP protocol 50) around a whole IP packet.

        Tunnel mode: a new outer IPv4/IPv6 header from ``outer_src`` to
        ``outer_dst`` (TOS/traffic class and DF copied from the inner packet
        unless given; ``ttl`` is also the IPv6 hop limit; ``ident`` defaults
        to a per-SA counter).  Transport mode: ESP is inserted after the IP
        header (and IPv6 extension headers that must precede it) and
        protocol, lengths and checksum are fixed.  ``None`` if the packet is
        malformed (or a fragment, in transport mode) or the SA expired."""
        if self.tunnel:
            if outer_src is None or outer_dst is None:
                raise LocalProtocolError("tunnel mode needs outer_src and outer_dst")
            esp = self.seal(ip_packet, seq=seq, iv=iv)
            if esp is None:
                return None
            return _outer_header(self, ip_packet, outer_src, outer_dst, PROTO_ESP, len(esp), ttl, ident, tos, df, flow_label) + esp
        info = transport_header_info(ip_packet)
        if info is None:
            self._drop(DropReason.MALFORMED)
            return None
        payload = ip_packet[info.insert_at : info.total_len]
        esp = self.seal(payload, info.next_header, seq=seq, iv=iv)
        if esp is None:
            return None
        return rebuild_header(ip_packet, info.version, info.insert_at, info.nh_offset, PROTO_ESP, len(esp)) + esp

    def open_packet(self, ip_packet: bytes, now: float | None = None) -> OpenResult:
        """Open raw ESP inside an IP packet.  Tunnel mode: the inner packet;
        transport mode: the IP packet rebuilt without ESP."""
        self._need(True)
        info = header_info(ip_packet)
        if info is None or info.next_header != PROTO_ESP:
            self._drop(DropReason.MALFORMED)
            return _DROP[DropReason.MALFORMED]
        r = self.open(ip_packet[info.insert_at : info.total_len], now)
        if r.packet is None or self.tunnel:
            return r
        hdr = rebuild_header(ip_packet, info.version, info.insert_at, info.nh_offset, r.next_header, len(r.packet))
        return ok_result(hdr + r.packet, r.next_header, r.seq)


# --------------------------------------------------------------------------- header helpers


def _outer_header(
    sa: _SaBase,
    inner: bytes,
    src: str | bytes | int,
    dst: str | bytes | int,
    proto: int,
    payload_len: int,
    ttl: int,
    ident: int | None,
    tos: int | None,
    df: bool | None,
    flow_label: int,
) -> bytes:
    """Tunnel-mode outer header (RFC 4301 §5.1.2: DSCP/ECN copied from the
    inner header, DF copied from an inner IPv4 header, fresh TTL and ID)."""
    iv = inner[0] >> 4 if inner else 0
    if tos is None:
        if iv == 4:
            tos = inner[1]
        elif iv == 6:
            tos = ((inner[0] & 0x0F) << 4) | (inner[1] >> 4)
        else:
            tos = 0
    if df is None:
        df = iv == 4 and bool(inner[6] & 0x40)
    src_b = pack_addr(src)
    if len(src_b) == 4:
        if ident is None:
            sa._ident = ident = (sa._ident + 1) & 0xFFFF
        return ipv4_header(src_b, dst, proto, payload_len, ttl=ttl, ident=ident, tos=tos, flags_frag=0x4000 if df else 0)
    return ipv6_header(src_b, dst, proto, payload_len, hop_limit=ttl, traffic_class=tos, flow_label=flow_label)


# --------------------------------------------------------------------------- AH


MAX_HEADER_DROP_REASONS = 32
"""Distinct reasons an :class:`AhSa` keeps in ``header_drops``."""
HEADER_DROPS_OTHER = "other reasons"
"""The ``header_drops`` key of the reasons past :data:`MAX_HEADER_DROP_REASONS`."""


class AhSa(_SaBase):
    """One direction of an AH SA (RFC 4302).  AH authenticates the IP header,
    so its unit is the whole IP packet: :meth:`seal` returns the protected
    IP packet (tunnel mode: with a new outer header from ``outer_src`` to
    ``outer_dst``) and :meth:`open` takes one.  ``integ`` is an integrity
    transform (HMAC-SHA1/SHA2, AES-XCBC) or the GMAC encryption transform
    (``aes128gmac`` etc.: AUTH_AES_*_GMAC, RFC 4543) with key || salt.

    IPv6 extension headers in front of AH (Hop-by-Hop, Destination Options,
    a Routing header of type 0 or 2) are covered as RFC 4302 §3.3.3.1.2 says
    and stay in the packet: transport mode delivers them with AH cut out and
    the header before it naming AH's next header.  Headers that cannot be
    there (a Fragment header, another routing type, a broken chain) drop the
    packet as ``MALFORMED``; :attr:`header_drops` counts them by reason
    (a bounded number of reasons: :data:`MAX_HEADER_DROP_REASONS`)."""

    def __init__(
        self,
        *,
        spi: int,
        integ: IntegAlg | EncrAlg,
        integ_key: bytes,
        mode: str = "tunnel",
        esn: bool = False,
        replay_window: int = 64,
        inbound: bool,
        outer_src: str | bytes | int | None = None,
        outer_dst: str | bytes | int | None = None,
        random: Callable[[int], bytes] = os.urandom,
        allow_legacy: bool = False,
        soft_bytes: int | None = None,
        hard_bytes: int | None = None,
        soft_packets: int | None = None,
        hard_packets: int | None = None,
        name: str = "",
    ) -> None:
        super().__init__(
            spi=spi,
            mode=mode,
            esn=esn,
            replay_window=replay_window,
            inbound=inbound,
            soft_bytes=soft_bytes,
            hard_bytes=hard_bytes,
            soft_packets=soft_packets,
            hard_packets=hard_packets,
            name=name,
        )
        if integ.legacy and not allow_legacy:
            raise AlgorithmError("", f"legacy AH transform refused ({integ.name}); pass allow_legacy=True")
        auth: Integ | GmacEncr
        if isinstance(integ, EncrAlg):
            if integ.id != EncrId.NULL_AUTH_AES_GMAC:
                raise AlgorithmError("", f"{integ.name} cannot authenticate AH")
            enc = make_encr(integ, integ_key)
            assert isinstance(enc, GmacEncr)
            auth = enc
        else:
            auth = make_integ(integ, integ_key)
        self.integ_alg = integ
        self.codec = _ah.AhCodec(spi, auth, esn)
        self.outer_src, self.outer_dst = outer_src, outer_dst
        self.random = random
        self.header_drops: dict[str, int] = {}
        """``MALFORMED`` drops for IP headers in front of AH, by reason: at
        most :data:`MAX_HEADER_DROP_REASONS` reasons, later new ones counted
        as :data:`HEADER_DROPS_OTHER` (some reasons name a value from the
        packet, which an unauthenticated sender chooses)."""

    def _refuse(self, why: str, pkt: bytes) -> OpenResult:
        """Count a packet whose IP headers in front of AH are refused (the
        ``MALFORMED`` drop itself is counted by the caller)."""
        drops = self.header_drops
        key = why if why in drops or len(drops) < MAX_HEADER_DROP_REASONS else HEADER_DROPS_OTHER
        drops[key] = drops.get(key, 0) + 1
        if logger.isEnabledFor(logging.DEBUG):
            v = pkt[0] >> 4 if pkt else 0  # the peer: source inbound, destination outbound
            at, n = (8 if self.inbound else 24, 16) if v == 6 else (12 if self.inbound else 16, 4)
            peer = ipaddress.ip_address(bytes(pkt[at : at + n])) if v in (4, 6) and len(pkt) >= at + n else "?"
            logger.debug("AH %s spi=0x%08x peer %s: %s, dropped", self.name, self.spi, peer, why)
        return _DROP[DropReason.MALFORMED]

    def seal_packet(
        self,
        ip_packet: bytes,
        outer_src: str | bytes | int | None = None,
        outer_dst: str | bytes | int | None = None,
        *,
        ttl: int = 64,
        ident: int | None = None,
        tos: int | None = None,
        df: bool | None = None,
        flow_label: int = 0,
        seq: int | None = None,
        iv: bytes | None = None,
    ) -> bytes | None:
        """Protect one IP packet; ``None`` if malformed or the SA expired."""
        self._need(False)
        if seq is not None:
            if not 0 < seq <= self.max_seq:
                raise LocalProtocolError(f"sequence number out of range: {seq}")
            self.seq = seq - 1
        if self.expired:
            self._drop(DropReason.EXPIRED)
            return None
        if self._take_seqs(1) < 1 or self._packet_room(1) < 1:
            self._exhausted(1)
            return None
        codec = self.codec
        if self.tunnel:
            src = outer_src if outer_src is not None else self.outer_src
            dst = outer_dst if outer_dst is not None else self.outer_dst
            if src is None or dst is None:
                raise LocalProtocolError("tunnel mode needs outer_src and outer_dst")
            nh = nh_for_first_byte(ip_packet[0]) if ip_packet else None
            if nh is None:
                self._drop(DropReason.MALFORMED)
                return None
            version = 4 if len(pack_addr(src)) == 4 else 6
            ah_len = codec.ah_len(version)
            seqn = self.seq + 1
            outer = _outer_header(self, ip_packet, src, dst, PROTO_AH, ah_len + len(ip_packet), ttl, ident, tos, df, flow_label)
            out = codec.seal(outer, version, nh, ip_packet, seqn, iv)
        else:
            info = transport_header_info(ip_packet)
            if info is None:
                self._drop(DropReason.MALFORMED)
                return None
            payload = ip_packet[info.insert_at : info.total_len]
            ah_len = codec.ah_len(info.version)
            hdr = rebuild_header(ip_packet, info.version, info.insert_at, info.nh_offset, PROTO_AH, ah_len + len(payload))
            muted = codec.mute(hdr, info.version)
            if isinstance(muted, str):
                self._refuse(muted, ip_packet)
                self._drop(DropReason.MALFORMED)
                return None
            seqn = self.seq + 1
            out = codec.seal(hdr, info.version, info.next_header, payload, seqn, iv, muted)
        if out is None:
            self._drop(DropReason.MALFORMED)
            return None
        self.seq = seqn
        self.stats.packets_out += 1
        self.stats.bytes_out += len(ip_packet)
        self._check_lifetime()
        return out

    def seal(self, packet: bytes) -> bytes | None:
        return self.seal_packet(packet)

    def seal_batch(self, packets: Sequence[bytes]) -> list[bytes]:
        out = []
        for p in packets:
            r = self.seal_packet(p)
            if r is not None:
                out.append(r)
        return out

    def open_packet(self, ip_packet: bytes, now: float | None = None) -> OpenResult:
        """Verify one AH-protected IP packet.  Tunnel mode: the inner packet;
        transport mode: the packet rebuilt without AH."""
        self._need(True)
        if self.expired:
            self._drop(DropReason.EXPIRED)
            return _DROP[DropReason.EXPIRED]
        if self._packet_room(1) < 1:
            self._expire(True, "packets")
            self._drop(DropReason.EXPIRED)
            return _DROP[DropReason.EXPIRED]
        r = self._open_one(ip_packet)
        if r.drop is not None:
            self._drop(r.drop)
            self._note_replays(r.seq, 1 if r.drop == DropReason.REPLAY else 0, now)
        else:
            self._note_replays(0, 0, now)
            self.stats.packets_in += 1
            self.stats.bytes_in += len(r.packet)  # type: ignore[arg-type]
            self._check_lifetime()
        return r

    def _open_one(self, pkt: bytes) -> OpenResult:
        if pkt and pkt[0] >> 4 == 6:
            if len(pkt) < 40:
                return self._refuse("IPv6 header truncated", pkt)
            total = 40 + ((pkt[4] << 8) | pkt[5])
            if total > len(pkt):
                return self._refuse("IPv6 payload length past the packet", pkt)
            where = _ah.ipv6_ah_offset(pkt, total)
            if isinstance(where, str):
                return self._refuse(where, pkt)
            version, (ah_off, nh_off) = 6, where
        else:
            info = header_info(pkt)
            if info is None or info.next_header != PROTO_AH:
                return _DROP[DropReason.MALFORMED]
            version, ah_off, nh_off, total = info.version, info.insert_at, info.nh_offset, info.total_len
        muted = self.codec.mute(pkt[:ah_off], version)
        if isinstance(muted, str):
            return self._refuse(muted, pkt)
        parsed = self.codec.parse(pkt, ah_off, total, version)
        if parsed is None:
            return _DROP[DropReason.MALFORMED]
        spi, lo, nh, ah_len = parsed
        if spi != self.spi:
            return _DROP[DropReason.SPI]
        win = self.replay
        seq = win.infer(lo)
        if not win.check(seq):
            return drop_result(DropReason.REPLAY, seq)
        if not self.codec.verify(pkt, ah_off, total, version, ah_len, seq, muted):
            return drop_result(DropReason.INTEGRITY, seq)
        win.commit(seq)
        payload = pkt[ah_off + ah_len : total]
        if self.tunnel:
            end = _inner_end(payload, nh, len(payload))  # the same rule as ESP
            if end < 0:
                return drop_result(DropReason.MALFORMED, seq)
            return ok_result(payload if end == len(payload) else payload[:end], nh, seq)
        hdr = rebuild_header(pkt, version, ah_off, nh_off, nh, len(payload))
        return ok_result(hdr + payload, nh, seq)

    def open(self, packet: bytes, now: float | None = None) -> OpenResult:
        return self.open_packet(packet, now)

    def open_batch(self, packets: Sequence[bytes], now: float | None = None) -> list[OpenResult]:
        return [self.open_packet(p, now) for p in packets]


# --------------------------------------------------------------------------- from events


def _soft(hard: int | None) -> int | None:
    return None if hard is None else max(1, int(hard * SOFT_FRACTION))


def esp_sa_pair_from_event(ev: ChildSaInstalled) -> tuple[EspSa | AhSa, EspSa | AhSa]:
    """Build ``(inbound, outbound)`` SAs from a negotiated Child SA.  The
    proposal was already policed by the configuration (legacy opt-in), so
    legacy transforms are accepted here.  Soft byte/packet limits are
    ``SOFT_FRACTION`` of the hard ones."""
    limits = dict(
        soft_bytes=_soft(ev.life_bytes),
        hard_bytes=ev.life_bytes,
        soft_packets=_soft(ev.life_packets),
        hard_packets=ev.life_packets,
    )
    if ev.protocol == "ah":
        if ev.integ is None:
            raise LocalProtocolError("AH Child SA without an integrity algorithm")
        local: Address = ev.local_addr
        remote: Address = ev.remote_addr
        ah_in = AhSa(
            spi=ev.spi_in, integ=ev.integ, integ_key=ev.integ_key_in, mode=ev.mode, esn=ev.esn,
            replay_window=ev.replay_window, inbound=True, allow_legacy=True, name=ev.name, **limits,
        )
        ah_out = AhSa(
            spi=ev.spi_out, integ=ev.integ, integ_key=ev.integ_key_out, mode=ev.mode, esn=ev.esn,
            replay_window=ev.replay_window, inbound=False, outer_src=local[0], outer_dst=remote[0],
            allow_legacy=True, name=ev.name, **limits,
        )
        return ah_in, ah_out
    esp_in = EspSa(
        spi=ev.spi_in, encr=ev.encr, encr_key=ev.encr_key_in, integ=ev.integ, integ_key=ev.integ_key_in,
        mode=ev.mode, esn=ev.esn, replay_window=ev.replay_window, inbound=True, allow_legacy=True,
        name=ev.name, **limits,
    )
    esp_out = EspSa(
        spi=ev.spi_out, encr=ev.encr, encr_key=ev.encr_key_out, integ=ev.integ, integ_key=ev.integ_key_out,
        mode=ev.mode, esn=ev.esn, replay_window=ev.replay_window, inbound=False, allow_legacy=True,
        name=ev.name, **limits,
    )
    return esp_in, esp_out
