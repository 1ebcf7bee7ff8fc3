"""Minimal IPv4/IPv6 header work for ESP and AH: checksum, header build and
parse, and the extension-header walk that finds where a transport-mode
ESP/AH header goes (RFC 4303 §3.1.1, RFC 4302 §3.1.1).

Everything works on ``bytes``; addresses are accepted as text
(``"192.0.2.1"``), packed bytes (4 or 16) or integers.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = [
    "IPV6_EXT_HEADERS",
    "ipv6_upper_layer",
    "NON_INITIAL_FRAGMENT",
    "PROTO_ICMP",
    "PROTO_IPV4",
    "PROTO_TCP",
    "PROTO_UDP",
    "PROTO_IPV6",
    "PROTO_ESP",
    "PROTO_AH",
    "PROTO_NONE",
    "checksum",
    "pack_addr",
    "ipv4_header",
    "ipv6_header",
    "header_info",
    "transport_header_info",
    "HeaderInfo",
    "rebuild_header",
]

PROTO_HOPOPT = 0
PROTO_ICMP = 1
PROTO_IPV4 = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ESP = 50
PROTO_AH = 51
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_DSTOPTS = 60

_V4 = struct.Struct("!BBHHHBBH4s4s")
_V6 = struct.Struct("!IHBB16s16s")


def checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 Internet checksum of ``data``."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pack_addr(addr: str | bytes | int | ipaddress.IPv4Address | ipaddress.IPv6Address, version: int | None = None) -> bytes:
    """Packed 4- or 16-byte form of an address."""
    if isinstance(addr, (bytes, bytearray)):
        if len(addr) not in (4, 16):
            raise ValueError(f"packed address must be 4 or 16 bytes, not {len(addr)}")
        return bytes(addr)
    if isinstance(addr, int):
        return addr.to_bytes(16 if version == 6 or addr > 0xFFFFFFFF else 4, "big")
    return ipaddress.ip_address(addr).packed


def ipv4_header(
    src: str | bytes | int,
    dst: str | bytes | int,
    proto: int,
    payload_len: int,
    *,
    ttl: int = 64,
    ident: int = 0,
    tos: int = 0,
    flags_frag: int = 0,
    options: bytes = b"",
) -> bytes:
    """An IPv4 header with a correct checksum for ``payload_len`` bytes of payload."""
    if len(options) % 4:
        raise ValueError("IPv4 options must be a multiple of 4 bytes")
    ihl = 5 + len(options) // 4
    hdr = bytearray(
        _V4.pack(
            0x40 | ihl,
            tos,
            ihl * 4 + payload_len,
            ident & 0xFFFF,
            flags_frag,
            ttl,
            proto,
            0,
            pack_addr(src, 4),
            pack_addr(dst, 4),
        )
        + options
    )
    struct.pack_into("!H", hdr, 10, checksum(hdr))
    return bytes(hdr)


def ipv6_header(
    src: str | bytes | int,
    dst: str | bytes | int,
    next_header: int,
    payload_len: int,
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """A fixed IPv6 header (no extension headers)."""
    first = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    return _V6.pack(first, payload_len, next_header, hop_limit, pack_addr(src, 6), pack_addr(dst, 6))


def rebuild_header(packet: bytes, version: int, insert_at: int, nh_offset: int, nh: int, payload_len: int) -> bytes:
    """The IP header part ``packet[:insert_at]`` with the next-header byte at
    ``nh_offset`` set to ``nh`` and lengths (and the IPv4 checksum) fixed for
    ``payload_len`` bytes after it (transport-mode ESP/AH insert and removal)."""
    hdr = bytearray(packet[:insert_at])
    hdr[nh_offset] = nh
    if version == 4:
        struct.pack_into("!H", hdr, 2, insert_at + payload_len)
        struct.pack_into("!H", hdr, 10, 0)
        struct.pack_into("!H", hdr, 10, checksum(hdr))
    else:
        struct.pack_into("!H", hdr, 4, insert_at - 40 + payload_len)
    return bytes(hdr)


class HeaderInfo:
    """Where the transport-layer payload starts, and how to patch the header.

    ``insert_at``: offset where ESP/AH is inserted in transport mode (end of
    the IPv4 header; for IPv6, after Hop-by-Hop, Routing, Fragment and any
    Destination Options header that precedes a Routing header).
    ``nh_offset``: offset of the byte that holds the protocol/next-header
    value naming what starts at ``insert_at``.  ``next_header``: that value.
    ``total_len``: length the header claims for the whole packet."""

    __slots__ = ("version", "insert_at", "nh_offset", "next_header", "total_len")

    def __init__(self, version: int, insert_at: int, nh_offset: int, next_header: int, total_len: int) -> None:
        self.version = version
        self.insert_at = insert_at
        self.nh_offset = nh_offset
        self.next_header = next_header
        self.total_len = total_len

    def __repr__(self) -> str:
        return (
            f"HeaderInfo(v{self.version}, insert_at={self.insert_at}, nh_offset={self.nh_offset}, "
            f"next_header={self.next_header}, total_len={self.total_len})"
        )


IPV6_EXT_HEADERS = frozenset((PROTO_HOPOPT, PROTO_ROUTING, PROTO_DSTOPTS, PROTO_FRAGMENT))
"""The IPv6 extension headers walked by :func:`header_info` (those that stay in
front of ESP/AH) and skipped by :func:`ipv6_upper_layer` to find a packet's
next layer protocol (RFC 4301 §4.4.1.1); AH and ESP are next layer protocols
themselves."""

IPV6_EXT_MAX = 8
"""Extension headers walked at most before the next layer protocol."""


NON_INITIAL_FRAGMENT = -2
"""The offset :func:`ipv6_upper_layer` gives for a non-initial fragment."""


def ipv6_upper_layer(pkt: bytes) -> tuple[int, int]:
    """(protocol, offset of its header) of the IPv6 packet ``pkt`` behind its
    Hop-by-Hop, Routing, Destination Options and Fragment headers (RFC 4301
    §4.4.1.1).  No offset when there are no ports to read: NON_INITIAL_FRAGMENT
    for a non-initial fragment (its protocol from the Fragment header, as an
    IPv4 non-first fragment's; its ports are OPAQUE, RFC 4301 §7), -1 for a
    chain longer than IPV6_EXT_MAX or truncated (the protocol is then the
    extension header's number, as before the walk)."""
    nh, off, end = pkt[6], 40, len(pkt)
    for _ in range(IPV6_EXT_MAX):
        if nh not in IPV6_EXT_HEADERS:
            return nh, off
        if off + 8 > end:
            return nh, -1
        if nh == PROTO_FRAGMENT:
            if int.from_bytes(pkt[off + 2 : off + 4], "big") & 0xFFF8:  # fragment offset
                return pkt[off], NON_INITIAL_FRAGMENT
            hlen = 8
        else:
            hlen = (pkt[off + 1] + 1) * 8
            if off + hlen > end:
                return nh, -1
        nh, off = pkt[off], off + hlen
    return (nh, off) if nh not in IPV6_EXT_HEADERS else (nh, -1)


def header_info(packet: bytes | bytearray | memoryview) -> HeaderInfo | None:
    """Parse the IP header(s) of ``packet``; ``None`` if malformed."""
    n = len(packet)
    if n < 1:
        return None
    v = packet[0] >> 4
    if v == 4:
        if n < 20:
            return None
        ihl = (packet[0] & 0x0F) * 4
        total = (packet[2] << 8) | packet[3]
        if ihl < 20 or n < ihl or total < ihl or total > n:
            return None
        return HeaderInfo(4, ihl, 9, packet[9], total)
    if v == 6:
        if n < 40:
            return None
        total = 40 + ((packet[4] << 8) | packet[5])
        if total > n:
            return None
        nh, nh_off, off = packet[6], 6, 40
        # walk the headers that must stay in front of ESP/AH
        while nh in IPV6_EXT_HEADERS:
            if off + 8 > total:
                return None
            if nh == PROTO_DSTOPTS:
                # Destination Options stay in front only if a Routing header follows
                if packet[off] != PROTO_ROUTING:
                    break
            hlen = 8 if nh == PROTO_FRAGMENT else (packet[off + 1] + 1) * 8
            if off + hlen > total:
                return None
            nh, nh_off, off = packet[off], off, off + hlen
        return HeaderInfo(6, off, nh_off, nh, total)
    return None


def transport_header_info(packet: bytes | bytearray | memoryview) -> HeaderInfo | None:
    """:func:`header_info` of a packet to protect in transport mode; ``None``
    also for an IPv4 fragment (MF set or a fragment offset), which ESP/AH
    transport mode cannot protect on its own."""
    info = header_info(packet)
    if info is None or (info.version == 4 and ((packet[6] << 8) | packet[7]) & 0x3FFF):
        return None
    return info
