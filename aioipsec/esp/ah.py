"""Authentication Header (RFC 4302): header layout, mutable-field zeroing and
ICV computation.  The SA object (sequence numbers, replay, counters) is
:class:`aioipsec.esp.sa.AhSa`; this module is the packet work it uses.

AH layout::

    next header(1) | payload len(1) | reserved(2) | SPI(4) | seq(4) | [IV(8)] | ICV | padding

``payload len`` is the AH length in 32-bit words minus 2; the whole header
is a multiple of 4 bytes over IPv4 and 8 bytes over IPv6 (zero padding after
the ICV, RFC 4302 §2.6).

ICV input (RFC 4302 §3.3.3): the IP header with its mutable fields zeroed,
the AH header with the ICV zeroed, then the payload, then (ESN) the
high-order 32 bits of the sequence number.  Mutable fields:

- IPv4: TOS, flags + fragment offset, TTL, header checksum, and every option
  other than EOL, NOP, Security (130), Extended Security (133), Commercial
  Security (134), Router Alert (148) and SDB (149) (the whole option is
  zeroed, §3.3.3.1.1.2);
- IPv6: traffic class, flow label, hop limit, and the data of Hop-by-Hop and
  Destination options whose type has the "may change en route" bit (0x20)
  set (§3.3.3.1.2); a Routing header of type 0 or 2 (RFC 6275) and the
  destination address are taken as the final destination sees them (every
  segment left visited: addresses swapped, Segments Left 0).  Other routing
  types, a Fragment header (AH covers whole packets), any other header in
  front of AH and a Jumbogram (RFC 2675) are refused with a reason (:func:`ipv6_ah_offset`,
  :func:`mute_ipv6`).

Not handled: IPv4 source-routing options (LSRR/SSRR are zeroed as mutable,
so their final destination address is not substituted).

AES-GMAC (RFC 4543 §3.2): an 8-byte IV follows the sequence number; the ICV
is the GMAC (nonce = salt || IV) over the same zeroed packet with the IV in it.
"""

from __future__ import annotations

import hmac
import struct

from ..crypto.cipher import GmacEncr, Integ
from .ip import PROTO_AH, PROTO_DSTOPTS, PROTO_FRAGMENT, PROTO_HOPOPT, PROTO_ROUTING

__all__ = ["AH_HEADER_LEN", "AhCodec", "ipv6_ah_offset", "mute_ipv4_header", "mute_ipv6"]

AH_HEADER_LEN = 12
_AH = struct.Struct("!BBHII")
_IMMUTABLE_V4_OPTIONS = frozenset({0, 1, 130, 133, 134, 148, 149})


def mute_ipv4_header(hdr: bytes | bytearray) -> bytes | None:
    """``hdr`` (the IPv4 header with options) with mutable fields zeroed;
    ``None`` if the options are malformed."""
    h = bytearray(hdr)
    h[1] = 0  # TOS
    h[6] = h[7] = 0  # flags, fragment offset
    h[8] = 0  # TTL
    h[10] = h[11] = 0  # checksum
    i, end = 20, len(h)
    while i < end:
        t = h[i]
        if t == 0:  # end of option list
            break
        if t == 1:  # NOP
            i += 1
            continue
        if i + 1 >= end:
            return None
        olen = h[i + 1]
        if olen < 2 or i + olen > end:
            return None
        if t not in _IMMUTABLE_V4_OPTIONS:
            h[i : i + olen] = bytes(olen)
        i += olen
    return bytes(h)


def _mute_tlv_options(h: bytearray, start: int, end: int) -> bool:
    i = start
    while i < end:
        t = h[i]
        if t == 0:  # Pad1
            i += 1
            continue
        if i + 1 >= end:
            return False
        olen = h[i + 1]
        if i + 2 + olen > end:
            return False
        if t & 0x20:  # option data may change en route
            h[i + 2 : i + 2 + olen] = bytes(olen)
        i += 2 + olen
    return True


_PRE_AH = frozenset({PROTO_HOPOPT, PROTO_ROUTING, PROTO_DSTOPTS})
"""Extension headers that may precede AH (RFC 4302 §3.1.1, RFC 8200 §4.1);
a Fragment header there means the packet is a fragment."""
_FRAGMENT_WHY = "fragment header in front of AH (AH covers whole packets)"


def _pre_ah_header(h: bytes | bytearray, nh: int, off: int, end: int, seen: list[int]) -> int | str:
    """Length of extension header ``nh`` at ``off`` (ending by ``end``) in
    front of AH, or why it cannot be there.  ``seen`` counts Routing and
    Destination Options headers so far: at most one Routing header, and two
    Destination Options (one each side of it); Hop-by-Hop only first."""
    if nh == PROTO_FRAGMENT:
        return _FRAGMENT_WHY
    if nh not in _PRE_AH:
        return f"no AH (next header {nh} after the IPv6 headers)"
    if nh == PROTO_HOPOPT and off != 40:
        return "hop-by-hop options header not first"
    if nh == PROTO_ROUTING:
        seen[0] += 1
        if seen[0] > 1:
            return "more than one routing header"
    elif nh == PROTO_DSTOPTS:
        seen[1] += 1
        if seen[1] > 2:
            return "more than two destination options headers"
    if off + 8 > end:
        return "extension header truncated"
    hlen = (h[off + 1] + 1) * 8
    if off + hlen > end:
        return "extension header length past the packet"
    return hlen


_JUMBO_PAYLOAD = 0xC2
"""The Jumbo Payload option type (RFC 2675)."""


def _jumbogram(pkt: bytes | bytearray) -> bool:
    """Whether ``pkt`` is an IPv6 Jumbogram (RFC 2675): payload length 0 and a
    Jumbo Payload option in the Hop-by-Hop Options header."""
    if pkt[4] or pkt[5] or pkt[6] != PROTO_HOPOPT or len(pkt) < 48:
        return False
    i, end = 42, min(len(pkt), 40 + (pkt[41] + 1) * 8)
    while i < end:
        t = pkt[i]
        if t == _JUMBO_PAYLOAD:
            return True
        if t == 0:  # Pad1
            i += 1
        elif i + 1 < end:
            i += 2 + pkt[i + 1]
        else:
            break
    return False


def ipv6_ah_offset(pkt: bytes | bytearray, total: int) -> tuple[int, int] | str:
    """``(ah_off, nh_off)``: where AH starts in the IPv6 packet ``pkt`` (its
    first ``total`` bytes) after the Hop-by-Hop, Routing and Destination
    Options headers that may precede it, and the offset of the byte naming
    AH; or why the chain is refused (a Fragment header, another header,
    lengths past ``total``, repeats, a Jumbogram)."""
    if total == 40 and _jumbogram(pkt):
        return "jumbogram not supported"
    nh, nh_off, off = pkt[6], 6, 40
    seen = [0, 0]
    while nh != PROTO_AH:
        hlen = _pre_ah_header(pkt, nh, off, total, seen)
        if isinstance(hlen, str):
            return hlen
        nh, nh_off, off = pkt[off], off, off + hlen
    return off, nh_off


def _final_route(h: bytearray, off: int) -> str | None:
    """Turn the Routing header at ``off`` and the destination address into
    what the final destination sees (RFC 4302 §3.3.3.1.2: mutable but
    predictable); the reason if the header is refused."""
    rtype, left = h[off + 2], h[off + 3]
    if rtype not in (0, 2):
        return f"routing header type {rtype} not supported"
    n, odd = divmod(h[off + 1], 2)
    if odd or not n or (rtype == 2 and (n != 1 or left > 1)):
        return f"routing header type {rtype} malformed"
    if left > n:
        return f"routing header type {rtype} segments left {left} > {n} addresses"
    while left:  # RFC 8200 §4.4 / RFC 6275 §6.4: each visit swaps in the next address
        i = off + 8 + (n - left) * 16
        h[24:40], h[i : i + 16] = h[i : i + 16], h[24:40]
        left -= 1
    h[off + 3] = 0
    return None


def mute_ipv6(hdr: bytes | bytearray) -> bytes | str:
    """``hdr`` (fixed IPv6 header plus the extension headers in front of AH)
    as the ICV covers it: traffic class, flow label, hop limit and mutable
    option data zeroed, a Routing header (type 0 or 2) and the destination
    address as at the final destination; or why the headers are refused."""
    if len(hdr) < 40:
        return "IPv6 header truncated"
    h = bytearray(hdr)
    h[0] &= 0xF0  # traffic class (low nibble of byte 0, high nibble of byte 1)
    h[1] = 0
    h[2] = h[3] = 0  # flow label
    h[7] = 0  # hop limit
    nh, off, end = h[6], 40, len(h)
    seen = [0, 0]
    while off < end:
        hlen = _pre_ah_header(h, nh, off, end, seen)
        if isinstance(hlen, str):
            return hlen
        if nh == PROTO_ROUTING:
            why = _final_route(h, off)
            if why is not None:
                return why
        elif not _mute_tlv_options(h, off + 2, off + hlen):
            return "malformed options"
        nh, off = h[off], off + hlen
    return bytes(h)


class AhCodec:
    """AH framing and ICV for one SA direction."""

    __slots__ = ("spi", "auth", "esn", "iv_len", "icv_len", "_gmac")

    def __init__(self, spi: int, auth: Integ | GmacEncr, esn: bool) -> None:
        self.spi = spi
        self.auth = auth
        self.esn = esn
        self._gmac = isinstance(auth, GmacEncr)
        self.iv_len = 8 if self._gmac else 0
        self.icv_len = 16 if self._gmac else auth.icv_len  # type: ignore[union-attr]

    def ah_len(self, version: int) -> int:
        """Total AH length with padding for the IP version."""
        n = AH_HEADER_LEN + self.iv_len + self.icv_len
        align = 4 if version == 4 else 8
        return n + (-n) % align

    def _icv(self, data: bytes, iv: bytes, seq: int) -> bytes:
        if self.esn:
            data += (seq >> 32).to_bytes(4, "big")
        if self._gmac:
            return self.auth.mac(iv, data)  # type: ignore[union-attr]
        return self.auth.sign(data)  # type: ignore[union-attr]

    @staticmethod
    def mute(hdr: bytes, version: int) -> bytes | str:
        """The IP header part in front of AH as the ICV covers it, or why
        it is refused."""
        if version == 4:
            muted = mute_ipv4_header(hdr)
            return "malformed IPv4 options" if muted is None else muted
        return mute_ipv6(hdr)

    def seal(
        self, hdr: bytes, version: int, next_header: int, payload: bytes, seq: int, iv: bytes | None,
        muted: bytes | None = None,
    ) -> bytes | None:
        """``hdr`` (IP header part, already naming AH with lengths fixed) +
        AH + ``payload``; ``None`` if the IP header is malformed.  ``muted``:
        :meth:`mute` of ``hdr`` when the caller has it already."""
        if muted is None:
            m = self.mute(hdr, version)
            if isinstance(m, str):
                return None
            muted = m
        ah_len = self.ah_len(version)
        if self.iv_len:
            iv = iv if iv is not None else seq.to_bytes(8, "big")
        else:
            iv = b""
        fixed = _AH.pack(next_header, ah_len // 4 - 2, 0, self.spi, seq & 0xFFFFFFFF) + iv
        pad = bytes(ah_len - len(fixed) - self.icv_len)
        icv = self._icv(muted + fixed + bytes(self.icv_len) + pad + payload, iv, seq)
        return hdr + fixed + icv + pad + payload

    def parse(self, pkt: bytes, ah_off: int, total: int, version: int) -> tuple[int, int, int, int] | None:
        """``(spi, seq_low, next_header, ah_len)`` of the AH at ``ah_off``."""
        if ah_off + AH_HEADER_LEN > total:
            return None
        nh, plen, _res, spi, lo = _AH.unpack_from(pkt, ah_off)
        ah_len = (plen + 2) * 4
        if ah_len < AH_HEADER_LEN + self.iv_len + self.icv_len or ah_off + ah_len > total:
            return None
        if version == 6 and ah_len % 8:
            return None
        return spi, lo, nh, ah_len

    def verify(
        self, pkt: bytes, ah_off: int, total: int, version: int, ah_len: int, seq: int, muted: bytes | None = None
    ) -> bool:
        """Whether the ICV of the AH at ``ah_off`` is right; ``muted``:
        :meth:`mute` of ``pkt[:ah_off]`` when the caller has it already."""
        if muted is None:
            m = self.mute(pkt[:ah_off], version)
            if isinstance(m, str):
                return False
            muted = m
        ah = pkt[ah_off : ah_off + ah_len]
        at = AH_HEADER_LEN + self.iv_len
        icv = ah[at : at + self.icv_len]
        iv = ah[AH_HEADER_LEN:at]
        data = muted + ah[:at] + bytes(self.icv_len) + ah[at + self.icv_len :] + pkt[ah_off + ah_len : total]
        return hmac.compare_digest(self._icv(data, iv, seq), icv)
