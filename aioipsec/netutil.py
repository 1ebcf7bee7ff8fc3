"""Small helpers to build and inspect cleartext IP packets (ICMP echo, UDP)
for the demo, the datagram API and tests.  Not on the hot path."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .esp import ip as _ip
from .esp.ip import checksum, ipv6_header

__all__ = [
    "checksum",
    "echo_reply_for",
    "icmp_echo",
    "interface_of",
    "ipv4_header",
    "ipv6_header",
    "local_addresses",
    "nl_messages",
    "parse_icmp_echo",
    "parse_ifaddr",
    "parse_link",
    "parse_route",
    "parse_udp",
    "rtattrs",
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


# ---------------------------------------------------------------- rtnetlink
# The few rtnetlink messages aioipsec reads itself (no pyroute2): address and
# link dumps, and the multicast events of :mod:`aioipsec.asyncio.netwatch`.

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL, _IFA_FLAGS = 1, 2, 8
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_PREFSRC, _RTA_TABLE = 1, 4, 5, 7, 15
_IFLA_IFNAME = 3
IFA_F_TENTATIVE, IFA_F_DADFAILED = 0x40, 0x08
"""Address flags of an address that cannot be used (bound) yet or at all."""
IFF_UP = 0x1
IFF_LOOPBACK = 0x8


class NetlinkError(ValueError):
    """A malformed rtnetlink message (truncated header or attribute)."""


def nl_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, body after the 16-byte nlmsghdr) of each netlink message in one
    datagram; :class:`NetlinkError` at the first malformed one (the messages
    before it were yielded)."""
    off, n = 0, len(data)
    while off < n:
        if off + 16 > n:
            raise NetlinkError(f"{n - off} bytes left, less than a netlink header")
        length, mtype = struct.unpack_from("=IH", data, off)
        if length < 16 or off + length > n:
            raise NetlinkError(f"netlink message length {length} at offset {off} of a {n}-byte datagram")
        yield mtype, data[off + 16 : off + length]
        off += (length + 3) & ~3


def rtattrs(body: bytes, off: int) -> dict[int, bytes]:
    """The route attributes (``struct rtattr``) of ``body`` from ``off``, by
    type (nested/byte-order flags masked off); :class:`NetlinkError` when one
    runs past the message."""
    out: dict[int, bytes] = {}
    n = len(body)
    while off + 4 <= n:
        alen, atype = struct.unpack_from("=HH", body, off)
        if alen < 4 or off + alen > n:
            raise NetlinkError(f"route attribute {atype} of length {alen} at offset {off} of {n}")
        out[atype & 0x3FFF] = body[off + 4 : off + alen]
        off += (alen + 3) & ~3
    return out


def _ip_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    raise NetlinkError(f"a {len(raw)}-byte address")


@dataclass(frozen=True)
class IfAddr:
    """One ``RTM_NEWADDR``/``RTM_DELADDR``: an address of interface ``index``."""

    family: int
    prefixlen: int
    flags: int
    scope: int
    index: int
    address: str | None
    """IFA_ADDRESS (for an IPv4 point-to-point link: the peer's address)."""
    local: str | None
    """IFA_LOCAL (IPv4: ours); None for IPv6."""

    @property
    def ip(self) -> str | None:
        """This host's address: IFA_LOCAL if present, else IFA_ADDRESS."""
        return self.local or self.address

    @property
    def usable(self) -> bool:
        """Bindable: not tentative (IPv6 duplicate address detection running) nor failed."""
        return not self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)


@dataclass(frozen=True)
class RtRoute:
    """One ``RTM_NEWROUTE``/``RTM_DELROUTE`` (only what a roaming decision looks at)."""

    family: int
    dst: str | None
    dst_len: int
    table: int
    type: int
    oif: int | None
    gateway: str | None
    prefsrc: str | None


@dataclass(frozen=True)
class IfLink:
    """One ``RTM_NEWLINK``/``RTM_DELLINK``: interface ``index``, its flags (``IFF_*``)."""

    index: int
    flags: int
    name: str | None

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)


def parse_ifaddr(body: bytes) -> IfAddr:
    """An ``ifaddrmsg`` and its attributes (:class:`NetlinkError` if malformed)."""
    if len(body) < 8:
        raise NetlinkError(f"ifaddrmsg of {len(body)} bytes")
    family, prefixlen, flags, scope, index = struct.unpack_from("=BBBBI", body)
    attrs = rtattrs(body, 8)
    if _IFA_FLAGS in attrs and len(attrs[_IFA_FLAGS]) == 4:
        flags = struct.unpack("=I", attrs[_IFA_FLAGS])[0]  # the full 32 bits
    return IfAddr(family, prefixlen, flags, scope, index, _ip_text(attrs.get(_IFA_ADDRESS)),
                  _ip_text(attrs.get(_IFA_LOCAL)))


def parse_route(body: bytes) -> RtRoute:
    """An ``rtmsg`` and its attributes (:class:`NetlinkError` if malformed)."""
    if len(body) < 12:
        raise NetlinkError(f"rtmsg of {len(body)} bytes")
    family, dst_len, _src_len, _tos, table, _proto, _scope, rtype = struct.unpack_from("=8B", body)
    attrs = rtattrs(body, 12)
    if _RTA_TABLE in attrs and len(attrs[_RTA_TABLE]) == 4:
        table = struct.unpack("=I", attrs[_RTA_TABLE])[0]
    oif = struct.unpack("=I", attrs[_RTA_OIF])[0] if len(attrs.get(_RTA_OIF, b"")) == 4 else None
    return RtRoute(family, _ip_text(attrs.get(_RTA_DST)), dst_len, table, rtype, oif,
                   _ip_text(attrs.get(_RTA_GATEWAY)), _ip_text(attrs.get(_RTA_PREFSRC)))


def parse_link(body: bytes) -> IfLink:
    """An ``ifinfomsg`` and its name (:class:`NetlinkError` if malformed)."""
    if len(body) < 16:
        raise NetlinkError(f"ifinfomsg of {len(body)} bytes")
    _family, _pad, _type, index, flags, _change = struct.unpack_from("=BBHiII", body)
    name = rtattrs(body, 16).get(_IFLA_IFNAME)
    return IfLink(index, flags, name.rstrip(b"\0").decode(errors="replace") if name is not None else None)


def nl_dump(request: int, family: int = 0) -> list[tuple[int, bytes]]:
    """(type, body) of every message of one rtnetlink dump (``RTM_GETADDR``,
    ``RTM_GETLINK``) for ``family`` (0: all); raises OSError (no netlink:
    off Linux, a timeout) or :class:`NetlinkError`."""
    netlink = getattr(socket, "AF_NETLINK", None)
    if netlink is None:
        raise OSError("no AF_NETLINK on this system")
    # the request's family-specific header: ifaddrmsg (8 bytes) or ifinfomsg (16)
    hdr = struct.pack("=BBBBI", family, 0, 0, 0, 0) if request == RTM_GETADDR else struct.pack(
        "=BBHiII", family, 0, 0, 0, 0, 0)
    out: list[tuple[int, bytes]] = []
    with socket.socket(netlink, socket.SOCK_RAW, 0) as s:  # NETLINK_ROUTE
        s.settimeout(2.0)
        s.bind((0, 0))
        s.send(struct.pack("=IHHII", 16 + len(hdr), request, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + hdr)
        while True:
            data = s.recv(65536)
            if not data:
                return out
            for mtype, body in nl_messages(data):
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                    raise OSError(err, f"rtnetlink dump {request}: {os.strerror(err) if err else 'error'}")
                out.append((mtype, body))


def local_addresses(family: int = 0) -> list[IfAddr]:
    """Every address of this host's interfaces (one ``RTM_GETADDR`` dump),
    IPv4 secondary addresses and IPv6 included; raises OSError or
    :class:`NetlinkError`."""
    return [parse_ifaddr(body) for mtype, body in nl_dump(RTM_GETADDR, family) if mtype == RTM_NEWADDR]


def links() -> dict[int, IfLink]:
    """This host's interfaces by index (one ``RTM_GETLINK`` dump)."""
    return {lk.index: lk for lk in (parse_link(body) for mtype, body in nl_dump(RTM_GETLINK) if mtype == RTM_NEWLINK)}


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
    want = str(ip)
    try:
        addrs = local_addresses(socket.AF_INET if ip.version == 4 else socket.AF_INET6)
    except (OSError, NetlinkError):
        return None
    for a in addrs:
        # IFA_LOCAL (IPv4: our side of a point-to-point link) or IFA_ADDRESS
        if want in (a.local, a.address):
            try:
                return socket.if_indextoname(a.index)
            except OSError:
                return None
    return None


def route_source(remote: str) -> str | None:
    """The address the kernel would send from towards ``remote`` (a
    connected UDP socket to the IKE port: ``connect`` sends nothing), or None
    when there is no route (or ``remote`` is no address).  The one place the
    endpoint (a wildcard-bound initiator), the daemon (its local host) and
    the roaming watcher ask the kernel; each decides what None means."""
    family = socket.AF_INET6 if ":" in remote else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((remote, 500))
            return str(s.getsockname()[0])
    except OSError:
        return None
