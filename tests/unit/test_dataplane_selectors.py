"""Policy matching in the data-plane glue: selectors of one IP version never
match packets of the other (addresses are compared as integers)."""

from __future__ import annotations

from aioipsec.asyncio.dataplane import _ts_match, packet_selector
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
