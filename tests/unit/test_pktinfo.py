"""IP_PKTINFO / IPV6_PKTINFO ancillary data of the endpoint's UDP sockets:
the destination address of a received datagram, the source of a send."""

from __future__ import annotations

import socket
import struct

from aioipsec.asyncio.sockets import (
    IP_PKTINFO,
    IPV6_PKTINFO,
    UDP_GRO,
    is_wildcard,
    parse_pktinfo,
    pktinfo_cmsg,
)


def test_parse_ipv4_pktinfo_takes_the_header_destination() -> None:
    # struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
    value = struct.pack("=i", 3) + socket.inet_aton("192.0.2.9") + socket.inet_aton("198.51.100.7")
    assert parse_pktinfo([(socket.IPPROTO_IP, IP_PKTINFO, value)]) == "198.51.100.7"


def test_parse_ipv6_pktinfo() -> None:
    value = socket.inet_pton(socket.AF_INET6, "2001:db8::5") + struct.pack("=I", 2)
    assert parse_pktinfo([(socket.IPPROTO_IPV6, IPV6_PKTINFO, value)]) == "2001:db8::5"


def test_parse_skips_other_items_and_refuses_truncated_ones() -> None:
    gro = (socket.SOL_UDP, UDP_GRO, struct.pack("=i", 1200))
    v4 = struct.pack("=i", 1) + socket.inet_aton("10.0.0.1") + socket.inet_aton("10.0.0.2")
    assert parse_pktinfo([gro, (socket.IPPROTO_IP, IP_PKTINFO, v4)]) == "10.0.0.2"
    assert parse_pktinfo([gro]) is None
    assert parse_pktinfo([]) is None
    assert parse_pktinfo([(socket.IPPROTO_IP, IP_PKTINFO, v4[:11])]) is None
    assert parse_pktinfo([(socket.IPPROTO_IPV6, IPV6_PKTINFO, bytes(19))]) is None


def test_build_ipv4_source_sets_spec_dst_only() -> None:
    level, kind, value = pktinfo_cmsg("203.0.113.4")
    assert (level, kind) == (socket.IPPROTO_IP, IP_PKTINFO)
    ifindex, spec_dst, addr = struct.unpack("=i4s4s", value)
    assert ifindex == 0 and socket.inet_ntoa(spec_dst) == "203.0.113.4" and addr == bytes(4)


def test_build_ipv6_source() -> None:
    level, kind, value = pktinfo_cmsg("2001:db8::77")
    assert (level, kind) == (socket.IPPROTO_IPV6, IPV6_PKTINFO)
    assert len(value) == 20
    assert socket.inet_ntop(socket.AF_INET6, value[:16]) == "2001:db8::77" and value[16:] == bytes(4)


def test_round_trip() -> None:
    for ip in ("127.0.0.3", "::1", "fe80::1"):
        level, kind, value = pktinfo_cmsg(ip)
        if level == socket.IPPROTO_IP:  # the kernel reports the destination in ipi_addr, we set ipi_spec_dst
            value = value[:4] + value[8:12] + value[4:8]
        assert parse_pktinfo([(level, kind, value)]) == ip


def test_wildcards() -> None:
    assert is_wildcard("0.0.0.0") and is_wildcard("::")
    assert not is_wildcard("127.0.0.1") and not is_wildcard("::1")
