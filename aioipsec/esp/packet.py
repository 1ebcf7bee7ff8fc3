"""ESP packet framing (RFC 4303): header, IV, padding, trailer, ICV.

:class:`EspCodec` seals and opens one packet at a time for one SA direction
and every transform: AEAD (RFC 4106 GCM, RFC 4309 CCM, RFC 7634
ChaCha20-Poly1305), GMAC (RFC 4543), and cipher + integrity (CBC, CTR,
NULL, 3DES/DES with HMAC or AES-XCBC).  It also owns the precomputed
padding/trailer tables that the batch fast paths in :mod:`aioipsec.esp.sa`
use.  Results and drop reasons (:class:`OpenResult`, :class:`DropReason`)
live here because AH shares them.

Wire layout::

    SPI(4) | Seq(4) | IV | ciphertext( payload | TFC | padding | padlen | nh ) | ICV

Associated data (RFC 4106 §5, RFC 7634 §2.1): SPI || Seq, or
SPI || Seq-high || Seq-low with ESN.  Non-AEAD ICV (RFC 4303 §2.2.1): over
SPI .. end of ciphertext, followed by Seq-high with ESN.  GMAC (RFC 4543 §3):
AAD = SPI || (ESN) Seq || IV || plaintext, nothing encrypted.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import NamedTuple

from ..crypto.cipher import AeadEncr, Encr, GmacEncr, Integ, TruncatedGcmEncr
from ..crypto.transforms import EncrId
from ..errors import IntegrityError, ParseError

__all__ = [
    "DropReason",
    "OpenResult",
    "EspCodec",
    "NH_IPV4",
    "NH_IPV6",
    "NH_NONE",
    "PAD_BYTES",
    "nh_for_first_byte",
]

NH_IPV4 = 4
NH_IPV6 = 41
NH_NONE = 59
"""Next header 59: no next header, a dummy packet (RFC 4303 §2.6)."""

U32 = 0xFFFFFFFF

PAD_BYTES: tuple[bytes, ...] = tuple(bytes(range(1, n + 1)) for n in range(256))
"""Default ESP padding 1, 2, 3, ... (RFC 4303 §2.4) for each pad length."""

_FIRST_BYTE_NH: tuple[int | None, ...] = tuple(
    NH_IPV4 if b >> 4 == 4 else NH_IPV6 if b >> 4 == 6 else None for b in range(256)
)


def nh_for_first_byte(b: int) -> int | None:
    """Next header of a tunnel-mode inner packet from its first byte."""
    return _FIRST_BYTE_NH[b]


class DropReason(enum.IntEnum):
    """Why an inbound packet was dropped (or an outbound one not sent)."""

    REPLAY = 1
    INTEGRITY = 2
    PADDING = 3
    MALFORMED = 4
    SPI = 5
    DUMMY = 6
    POLICY = 7
    EXPIRED = 8

    def __str__(self) -> str:
        return self.name.lower()


class OpenResult(NamedTuple):
    """Outcome of opening one packet: either ``packet`` (tunnel mode: the
    inner IP packet; transport mode: the payload, or the rebuilt IP packet
    from ``open_packet``) with its ``next_header``, or ``drop``."""

    packet: bytes | None
    next_header: int = 0
    drop: DropReason | None = None
    seq: int = 0
    """Full (ESN-expanded) sequence number, 0 when unknown."""

    @property
    def ok(self) -> bool:
        return self.drop is None


_new_result = tuple.__new__


def ok_result(packet: bytes, nh: int, seq: int) -> OpenResult:
    return _new_result(OpenResult, (packet, nh, None, seq))  # type: ignore[no-any-return]


def drop_result(reason: DropReason, seq: int = 0) -> OpenResult:
    return _new_result(OpenResult, (None, 0, reason, seq))  # type: ignore[no-any-return]


_HDR = struct.Struct("!II")
_HDR_ESN = struct.Struct("!III")
_SEQ_HI = struct.Struct("!I")


class EspCodec:
    """ESP framing and crypto for one SA direction.  ``encr`` may be an
    AEAD, GMAC or plain cipher (then ``integ`` supplies the ICV, or nothing
    for an encryption-only SA)."""

    __slots__ = (
        "spi",
        "encr",
        "integ",
        "esn",
        "kind",
        "iv_len",
        "icv_len",
        "block",
        "min_len",
        "counter_iv",
        "trailers",
        "_spi_b",
        "_tunnel_tt",
    )

    def __init__(self, spi: int, encr: Encr, integ: Integ | None, esn: bool) -> None:
        self.spi = spi
        self.encr = encr
        self.integ = integ
        self.esn = esn
        if isinstance(encr, (AeadEncr, TruncatedGcmEncr)):
            self.kind = "aead"
        elif isinstance(encr, GmacEncr):
            self.kind = "gmac"
        else:
            self.kind = "cipher"
        self.iv_len = encr.iv_len
        self.icv_len = encr.icv_len if encr.aead else (integ.icv_len if integ else 0)
        self.block = max(4, encr.block_size)
        """Padding alignment of payload || padding || padlen || nh."""
        self.min_len = 8 + self.iv_len + self.icv_len + 2
        self.counter_iv = self.kind != "cipher" or encr.alg.id == EncrId.AES_CTR
        """IV is the 64-bit sequence number (unique per key) rather than random."""
        self._spi_b = spi.to_bytes(4, "big")
        self.trailers: dict[int, tuple[bytes, ...]] = {}
        self._tunnel_tt: tuple[tuple[bytes, ...] | None, ...] | None = None

    # ----------------------------------------------------------- trailer tables

    def trailer_table(self, nh: int) -> tuple[bytes, ...]:
        """``table[len(payload) % block]`` = padding || padlen || nh."""
        t = self.trailers.get(nh)
        if t is None:
            b = self.block
            t = tuple(PAD_BYTES[(-(r + 2)) % b] + bytes(((-(r + 2)) % b, nh)) for r in range(b))
            self.trailers[nh] = t
        return t

    def tunnel_trailers(self) -> tuple[tuple[bytes, ...] | None, ...]:
        """256 entries indexed by the inner packet's first byte (None: not IP)."""
        tt = self._tunnel_tt
        if tt is None:
            t4, t6 = self.trailer_table(NH_IPV4), self.trailer_table(NH_IPV6)
            tt = self._tunnel_tt = tuple(t4 if nh == NH_IPV4 else t6 if nh == NH_IPV6 else None for nh in _FIRST_BYTE_NH)
        return tt

    # ----------------------------------------------------------- one packet

    def aad(self, seq: int) -> bytes:
        if self.esn:
            return _HDR_ESN.pack(self.spi, seq >> 32, seq & U32)
        return _HDR.pack(self.spi, seq & U32)

    def seal(self, payload: bytes, nh: int, seq: int, iv: bytes | None, random: Callable[[int], bytes]) -> bytes:
        """One ESP packet (SPI .. ICV) for ``payload`` (already TFC-padded)."""
        hdr = _HDR.pack(self.spi, seq & U32)
        pt = payload + self.trailer_table(nh)[len(payload) % self.block]
        if iv is None:
            if not self.iv_len:
                iv = b""
            elif self.counter_iv:
                iv = seq.to_bytes(8, "big")
            else:
                iv = random(self.iv_len)
        kind = self.kind
        if kind == "aead":
            return hdr + iv + self.encr.encrypt(iv, pt, self.aad(seq))
        if kind == "gmac":
            return hdr + iv + self.encr.encrypt(iv, pt, self.aad(seq) + iv)
        out = hdr + iv + self.encr.encrypt(iv, pt)
        if self.integ is not None:
            if self.esn:
                out += self.integ.sign_parts(out, _SEQ_HI.pack(seq >> 32))
            else:
                out += self.integ.sign(out)
        return out

    def open(self, data: bytes, seq: int) -> bytes | DropReason:
        """Verify and decrypt; return payload || TFC || padding || padlen || nh
        (trailer not yet checked), or the drop reason.  Never raises."""
        n = len(data)
        ivl, icv = self.iv_len, self.icv_len
        body = n - 8 - ivl - icv
        if body < 2:
            return DropReason.MALFORMED
        iv = data[8 : 8 + ivl]
        kind = self.kind
        try:
            if kind == "aead":
                return self.encr.decrypt(iv, data[8 + ivl :], self.aad(seq))
            if kind == "gmac":
                return self.encr.decrypt(iv, data[8 + ivl :], self.aad(seq) + iv)
            integ = self.integ
            if integ is not None:
                signed = data[: n - icv]
                if self.esn:
                    ok = integ.verify(signed + _SEQ_HI.pack(seq >> 32), data[n - icv :])
                else:
                    ok = integ.verify(signed, data[n - icv :])
                if not ok:
                    return DropReason.INTEGRITY
            if body % self.block:
                return DropReason.MALFORMED
            return self.encr.decrypt(iv, data[8 + ivl : n - icv])
        except IntegrityError:
            return DropReason.INTEGRITY
        except (ParseError, ValueError):
            return DropReason.MALFORMED
