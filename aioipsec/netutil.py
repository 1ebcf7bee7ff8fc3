"""Small helpers to build and inspect cleartext IP packets (ICMP echo, UDP)
for the demo, the datagram API and tests.  Not on the hot path."""

from __future__ import annotations

import ipaddress
import socket
import struct

from .esp import ip as _ip
from .esp.ip import checksum, ipv6_header

__all__ = [
    "checksum",
    "echo_reply_for",
    "icmp_echo",
    "interface_of",
    "ipv4_header",
    "ipv6_header",
    "parse_icmp_echo",
    "parse_udp",
    "udp_packet",
]


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


_RTM_GETADDR, _RTM_NEWADDR = 22, 20
_NLMSG_DONE, _NLMSG_ERROR = 3, 2
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL = 1, 2


def interface_of(address: str) -> str | None:
    """The name of the interface that holds ``address`` (an address of this
    host), what charon's ``kernel_interface->get_interface`` gives updown's
    ``PLUTO_INTERFACE``; None when no interface has it (or off Linux).  One
    rtnetlink address dump (``RTM_GETADDR``), no ``ip`` process: IPv4
    secondary addresses and IPv6 included."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    netlink = getattr(socket, "AF_NETLINK", None)
    if netlink is None:
        return None
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    want = ip.packed
    try:
        with socket.socket(netlink, socket.SOCK_RAW, 0) as s:  # NETLINK_ROUTE
            s.settimeout(2.0)
            s.bind((0, 0))
            # nlmsghdr + ifaddrmsg (only the family set: every address of it)
            req = struct.pack("=IHHII", 16 + 8, _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
            s.send(req + struct.pack("=BBBBI", family, 0, 0, 0, 0))
            found: int | None = None
            while True:
                data = s.recv(65536)
                if not data:
                    break
                off, done = 0, False
                while off + 16 <= len(data):
                    length, mtype = struct.unpack_from("=IH", data, off)
                    if length < 16 or off + length > len(data):
                        done = True
                        break
                    if mtype in (_NLMSG_DONE, _NLMSG_ERROR):
                        done = True
                        break
                    if mtype == _RTM_NEWADDR and found is None and length >= 24:
                        index = struct.unpack_from("=I", data, off + 20)[0]
                        if _ifa_has(data, off + 24, off + length, want):
                            found = index
                    off += (length + 3) & ~3
                if done:
                    break
    except OSError:
        return None
    if found is None:
        return None
    try:
        return socket.if_indextoname(found)
    except OSError:
        return None


def _ifa_has(data: bytes, off: int, end: int, want: bytes) -> bool:
    """Whether the rtattrs in ``data[off:end]`` carry ``want`` as IFA_LOCAL
    (IPv4: our side of a point-to-point link) or IFA_ADDRESS."""
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", data, off)
        if alen < 4 or off + alen > end:
            return False
        if atype in (_IFA_ADDRESS, _IFA_LOCAL) and data[off + 4 : off + alen] == want:
            return True
        off += (alen + 3) & ~3
    return False
