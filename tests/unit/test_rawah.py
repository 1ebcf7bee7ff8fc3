"""The pure parts of the raw AH socket (``aioipsec_rawesp``): rebuilding the
IPv6 header a raw IPv6 socket does not deliver, reading the destination from
IPV6_PKTINFO, and what is handed to the kernel when IPV6_HDRINCL is missing.

The rebuilt packet is checked against ``AhSa`` itself: a packet sealed with
non-zero traffic class, flow label and hop limit, stripped to what a raw
IPv6 socket reads and rebuilt, verifies -- and fails when an address or the
length the rebuild used is not the one the sender covered."""

from __future__ import annotations

import os
import socket

import pytest

from aioipsec.crypto.transforms import integ
from aioipsec.esp.sa import AhSa
from aioipsec.netutil import udp_packet
from aioipsec_rawesp import RawAhSocket, ipv6_packet_from_raw, pktinfo_destination

SRC, DST = "2001:db8::1", "2001:db8::2"
KEY = os.urandom(32)


def pair(mode: str = "tunnel") -> tuple[AhSa, AhSa]:
    out = AhSa(spi=0x1234, integ=integ("sha256"), integ_key=KEY, mode=mode, inbound=False,
               outer_src=SRC, outer_dst=DST)
    inn = AhSa(spi=0x1234, integ=integ("sha256"), integ_key=KEY, mode=mode, inbound=True)
    return out, inn


def test_rebuilt_ipv6_header_verifies() -> None:
    out, inn = pair()
    inner = udp_packet("2001:db8:a::1", "2001:db8:b::1", 1, 2, b"payload")
    sealed = out.seal_packet(inner, ttl=17, tos=0xB8, flow_label=0xABCDE)
    assert sealed is not None and sealed[6] == 51 and sealed[7] == 17
    rebuilt = ipv6_packet_from_raw(sealed[40:], SRC, socket.inet_pton(socket.AF_INET6, DST))
    assert rebuilt[:4] == b"\x60\x00\x00\x00" and rebuilt[7] == 0  # mutable fields zero
    assert rebuilt[4:6] == sealed[4:6] and rebuilt[6] == 51 and rebuilt[8:40] == sealed[8:40]
    r = inn.open_packet(rebuilt)
    assert r.drop is None and r.packet == inner


@pytest.mark.parametrize("wrong", ["src", "dst", "length"])
def test_rebuilt_with_wrong_covered_field_fails(wrong: str) -> None:
    out, inn = pair()
    sealed = out.seal_packet(udp_packet("2001:db8:a::1", "2001:db8:b::1", 1, 2, b"payload"))
    assert sealed is not None
    payload = sealed[40:] + (b"\0" * 8 if wrong == "length" else b"")
    src = "2001:db8::99" if wrong == "src" else SRC
    dst = "2001:db8::99" if wrong == "dst" else DST
    r = inn.open_packet(ipv6_packet_from_raw(payload, src, dst))
    assert r.drop is not None and inn.stats.integrity_failed == 1 and inn.stats.packets_in == 0


def test_rebuilt_transport_mode_packet_verifies() -> None:
    out, inn = pair("transport")
    pkt = udp_packet(SRC, DST, 5555, 7000, b"transport")
    sealed = out.seal_packet(pkt)
    assert sealed is not None
    r = inn.open_packet(ipv6_packet_from_raw(sealed[40:], SRC + "%eth0", DST))  # scope ids are dropped
    assert r.drop is None and r.packet is not None and r.packet[40:] == pkt[40:] and r.packet[8:40] == pkt[8:40]


def test_rebuild_refuses_what_cannot_be_an_ipv6_packet() -> None:
    with pytest.raises(ValueError):
        ipv6_packet_from_raw(bytes(0x10000), SRC, DST)
    with pytest.raises(ValueError):
        ipv6_packet_from_raw(b"x", b"\0" * 4, DST)
    with pytest.raises(ValueError):
        ipv6_packet_from_raw(b"x", "192.0.2.1", DST)


def test_pktinfo_destination() -> None:
    dst = socket.inet_pton(socket.AF_INET6, DST)
    ifindex = (3).to_bytes(4, "little")
    assert pktinfo_destination([(socket.IPPROTO_IPV6, 50, dst + ifindex)]) == dst
    assert pktinfo_destination([(socket.IPPROTO_IP, 50, dst + ifindex)]) is None  # another level
    assert pktinfo_destination([(socket.IPPROTO_IPV6, 50, dst[:8])]) is None  # short
    assert pktinfo_destination([]) is None


def test_without_ipv6_hdrincl_the_kernel_builds_the_header() -> None:
    """Without IPV6_HDRINCL the fixed header is stripped (the kernel's own
    has the same covered fields); a packet with extension headers in front
    of AH cannot be sent so and is counted."""
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)  # stands in for the raw socket
    try:
        udp.bind(("::1", 0))
        s = RawAhSocket(udp, protocol=51)
        assert s.hdrincl6 is False
        out, _ = pair()
        sealed = out.seal_packet(udp_packet("2001:db8:a::1", "2001:db8:b::1", 1, 2, b"p"))
        assert sealed is not None
        assert s._wire(sealed) == sealed[40:]
        hop_by_hop = sealed[:6] + b"\x00" + sealed[7:40] + b"\x33\x00" + bytes(6) + sealed[40:]
        assert s._wire(hop_by_hop) is None
        s.send_batch([hop_by_hop], ("::1", 0))
        assert s.send_errors == 1 and s.sent == 0
        s.hdrincl6 = True
        assert s._wire(hop_by_hop) == hop_by_hop
    finally:
        udp.close()
