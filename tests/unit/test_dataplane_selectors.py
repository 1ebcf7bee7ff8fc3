"""Policy matching in the data-plane glue: selectors of one IP version never
match packets of the other (addresses are compared as integers)."""

from __future__ import annotations

from aioipsec.asyncio.dataplane import OPAQUE, _ts_match, packet_selector
from aioipsec.netutil import udp_packet
from aioipsec.selectors import parse_ts


def test_ipv4_packet_does_not_match_ipv6_any() -> None:
    sel = packet_selector(udp_packet("198.51.100.1", "203.0.113.1", 1000, 53, b"x"))
    assert sel is not None and sel[0] == 4
    v6_any = [parse_ts("::/0")]
    v4_any = [parse_ts("0.0.0.0/0")]
    assert not _ts_match(v6_any, sel[0], sel[2], sel[3], sel[5])
    assert _ts_match(v4_any, sel[0], sel[2], sel[3], sel[5])


def test_ipv6_packet_matches_only_ipv6_selectors() -> None:
    sel = packet_selector(udp_packet("2001:db8:a::1", "2001:db8:b::1", 1000, 53, b"x"))
    assert sel is not None and sel[0] == 6
    assert _ts_match([parse_ts("2001:db8:b::/64")], 6, sel[2], sel[3], sel[5])
    assert not _ts_match([parse_ts("0.0.0.0/0")], 6, sel[2], sel[3], sel[5])


def test_port_and_protocol_selectors() -> None:
    sel = packet_selector(udp_packet("198.51.100.1", "203.0.113.1", 1000, 53, b"x"))
    assert sel is not None
    assert _ts_match([parse_ts("203.0.113.0/24[udp/53]")], 4, sel[2], sel[3], sel[5])
    assert not _ts_match([parse_ts("203.0.113.0/24[tcp/53]")], 4, sel[2], sel[3], sel[5])
    assert not _ts_match([parse_ts("203.0.113.0/24[udp/54]")], 4, sel[2], sel[3], sel[5])


def test_selector_ranges_are_checked_at_parse_time() -> None:
    import pytest

    for bad in ("10.0.0.0/8[tcp/70000]", "10.0.0.0/8[300]", "10.0.0.0/8[udp/90-80]"):
        with pytest.raises(ValueError):
            parse_ts(bad)


def test_dynamic_selector_in_convenience_constructor() -> None:
    from aioipsec.config import child

    assert child("c", local_ts=["dynamic"]).local_ts == []


def _v6_with(chain_first: int, chain: bytes, upper: bytes) -> bytes:
    """The IPv6 UDP packet ``upper`` (a whole IPv6 packet) with ``chain``
    (extension headers, the last naming UDP) between its header and UDP."""
    hdr = bytearray(upper[:40])
    hdr[6] = chain_first
    hdr[4:6] = (len(chain) + len(upper) - 40).to_bytes(2, "big")
    return bytes(hdr) + chain + upper[40:]


def test_ipv6_protocol_and_ports_behind_extension_headers() -> None:
    """RFC 4301 §4.4.1.1: over IPv6 the next layer protocol and its ports are
    those behind Hop-by-Hop, Routing, Destination Options and Fragment
    headers; a non-initial fragment has OPAQUE ports."""
    udp = udp_packet("2001:db8:a::1", "2001:db8:b::1", 1000, 53, b"x")
    plain = packet_selector(udp)
    assert plain is not None and plain[3:] == (17, 1000, 53)
    hbh = bytes([60, 0, 1, 4]) + bytes(4)             # PadN, then Destination Options
    dst = bytes([17, 1]) + bytes([1, 12]) + bytes(12)  # 16 bytes, then UDP
    first_frag = bytes([17, 0, 0, 1]) + b"\x00\x00\x00\x07"   # offset 0, more fragments
    later_frag = bytes([17, 0, 0, 0xB0]) + b"\x00\x00\x00\x07"  # offset 22 (x 8 bytes)
    for first, chain in ((60, dst), (0, hbh + dst), (44, first_frag)):
        assert packet_selector(_v6_with(first, chain, udp)) == plain
    assert packet_selector(_v6_with(44, later_frag, udp)) == (*plain[:3], 17, OPAQUE, OPAQUE)
    # a chain past the packet or longer than IPV6_EXT_MAX: the header's number, no ports
    sel = packet_selector(_v6_with(60, bytes([17, 9]) + bytes(6), udp))
    assert sel is not None and sel[3:] == (60, None, None)
    sel = packet_selector(_v6_with(60, (bytes([60, 0]) + bytes(6)) * 9 + bytes([17, 0]) + bytes(6), udp))
    assert sel is not None and sel[3:] == (60, None, None)
    assert _ts_match([parse_ts("2001:db8:b::/64[udp/53]")], 6, sel[2], 17, 53)
    behind = packet_selector(_v6_with(60, dst, udp))
    assert behind is not None
    assert _ts_match([parse_ts("2001:db8:b::/64[udp/53]")], 6, behind[2], behind[3], behind[5])
    assert not _ts_match([parse_ts("2001:db8:b::/64[udp/54]")], 6, behind[2], behind[3], behind[5])


def _v4_fragment(pkt: bytes, offset8: int, more: bool) -> bytes:
    """The IPv4 packet ``pkt`` marked as a fragment at ``offset8`` (x 8
    bytes), its bytes unchanged otherwise: a non-initial fragment whose
    first bytes would read as the original ports if taken for a header."""
    from aioipsec.esp.ip import checksum

    hdr = bytearray(pkt[:20])
    hdr[6:8] = ((0x2000 if more else 0) | offset8).to_bytes(2, "big")
    hdr[10:12] = b"\x00\x00"
    hdr[10:12] = checksum(hdr).to_bytes(2, "big")
    return bytes(hdr) + pkt[20:]


def _ports_match(tss_remote: str, tss_local: str, pkt: bytes) -> bool:
    """``pkt`` (sent from the remote to the local side) inside both selectors."""
    sel = packet_selector(pkt)
    assert sel is not None
    return (_ts_match([parse_ts(tss_remote)], sel[0], sel[1], sel[3], sel[4])
            and _ts_match([parse_ts(tss_local)], sel[0], sel[2], sel[3], sel[5]))


def test_non_initial_fragment_matches_only_any_ports() -> None:
    """RFC 4301 §7: a non-initial fragment (IPv4 fragment offset not 0, or an
    IPv6 Fragment header with one) has OPAQUE ports and matches only selectors
    whose ports are ANY; protocol and addresses still count.  An initial
    fragment (offset 0) is matched by its ports as any packet."""
    for src, dst, net_r, net_l in (("198.51.100.1", "203.0.113.1", "198.51.100.0/24", "203.0.113.0/24"),
                                   ("2001:db8:a::1", "2001:db8:b::1", "2001:db8:a::/64", "2001:db8:b::/64")):
        udp = udp_packet(src, dst, 1000, 53, b"payload!")
        if ":" in src:
            first = _v6_with(44, bytes([17, 0, 0, 1]) + b"\x00\x00\x00\x07", udp)   # offset 0, more
            later = _v6_with(44, bytes([17, 0, 0, 0xB0]) + b"\x00\x00\x00\x07", udp)  # offset 22
        else:
            first, later = _v4_fragment(udp, 0, True), _v4_fragment(udp, 22, False)
        sel = packet_selector(later)
        assert sel is not None and sel[3:] == (17, OPAQUE, OPAQUE)
        # ports ANY (with or without a protocol): the fragment passes
        assert _ports_match(net_r, net_l, later)
        assert _ports_match(f"{net_r}[udp]", f"{net_l}[udp]", later)
        # ports narrowed on either side, even to the ports its bytes would show: it does not
        assert not _ports_match(net_r, f"{net_l}[udp/53]", later)
        assert not _ports_match(f"{net_r}[udp/1000]", net_l, later)
        assert not _ports_match(net_r, f"{net_l}[/0-65534]", later)
        # the protocol and addresses still count
        assert not _ports_match(f"{net_r}[tcp]", net_l, later)
        assert not _ports_match(net_l, net_l, later)
        # the initial fragment carries its ports and is matched by them
        sel = packet_selector(first)
        assert sel is not None and sel[3:] == (17, 1000, 53)
        assert _ports_match(f"{net_r}[udp/1000]", f"{net_l}[udp/53]", first)
        assert not _ports_match(net_r, f"{net_l}[udp/54]", first)
