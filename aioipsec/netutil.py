"""Small helpers to build and inspect cleartext IP packets (ICMP echo, UDP)
for the demo, the datagram API and tests.  Not on the hot path."""

from __future__ import annotations

import ipaddress
import struct

from .esp import ip as _ip
from .esp.ip import checksum, ipv6_header

__all__ = ["checksum", "ipv4_header", "ipv6_header", "icmp_echo", "udp_packet", "parse_udp", "parse_icmp_echo", "echo_reply_for"]


def ipv4_header(src: str, dst: str, proto: int, payload_len: int, ttl: int = 64, ident: int = 0) -> bytes:
    """An IPv4 header with Don't Fragment set (:func:`aioipsec.esp.ip.ipv4_header`)."""
    return _ip.ipv4_header(src, dst, proto, payload_len, ttl=ttl, ident=ident, flags_frag=0x4000)


def icmp_echo(src: str, dst: str, ident: int, seq: int, payload: bytes = b"", reply: bool = False) -> bytes:
    """An IPv4 ICMP echo request (or reply) packet."""
    body = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident, seq) + payload
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ipv4_header(src, dst, 1, len(body)) + body


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 or IPv6 UDP packet with a correct checksum."""
    length = 8 + len(payload)
    v6 = ":" in src
    s = ipaddress.ip_address(src).packed
    d = ipaddress.ip_address(dst).packed
    pseudo = s + d + (struct.pack("!IxxxB", length, 17) if v6 else struct.pack("!xBH", 17, length))
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    csum = checksum(pseudo + hdr + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, csum) + payload
    return (ipv6_header(src, dst, 17, length) if v6 else ipv4_header(src, dst, 17, length)) + udp


def parse_udp(pkt: bytes) -> tuple[str, int, str, int, bytes] | None:
    """(src, sport, dst, dport, payload) of a UDP packet, else None."""
    if not pkt:
        return None
    v = pkt[0] >> 4
    if v == 4 and len(pkt) >= 28 and pkt[9] == 17:
        off = (pkt[0] & 0x0F) * 4
        src, dst = str(ipaddress.IPv4Address(pkt[12:16])), str(ipaddress.IPv4Address(pkt[16:20]))
    elif v == 6 and len(pkt) >= 48 and pkt[6] == 17:
        off = 40
        src, dst = str(ipaddress.IPv6Address(pkt[8:24])), str(ipaddress.IPv6Address(pkt[24:40]))
    else:
        return None
    sport, dport, length = struct.unpack_from("!HHH", pkt, off)
    return src, sport, dst, dport, pkt[off + 8 : off + length]


def parse_icmp_echo(pkt: bytes) -> tuple[str, str, int, int, int] | None:
    """(src, dst, type, ident, seq) of an IPv4 ICMP echo packet, else None."""
    if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 1:
        return None
    off = (pkt[0] & 0x0F) * 4
    t, _c, _sum, ident, seq = struct.unpack_from("!BBHHH", pkt, off)
    return str(ipaddress.IPv4Address(pkt[12:16])), str(ipaddress.IPv4Address(pkt[16:20])), t, ident, seq


def echo_reply_for(pkt: bytes) -> bytes | None:
    """The echo reply a host would send for an IPv4 echo request."""
    info = parse_icmp_echo(pkt)
    if info is None or info[2] != 8:
        return None
    src, dst, _t, ident, seq = info
    off = (pkt[0] & 0x0F) * 4
    return icmp_echo(dst, src, ident, seq, pkt[off + 8 :], reply=True)
