"""What the kernel (or anything that got onto the netlink socket) hands the
roaming watcher is garbage-proof: parse_datagram and the parsers under it
take any bytes, return events and a count of malformed messages, and never
raise; a real dump of this host's addresses and links parses
cleanly; broken versions of it are counted, not raised."""

from __future__ import annotations

import socket
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioipsec import netutil
from aioipsec.asyncio.netwatch import parse_datagram

TYPES = [netutil.RTM_NEWADDR, netutil.RTM_DELADDR, netutil.RTM_NEWROUTE, netutil.RTM_DELROUTE,
         netutil.RTM_NEWLINK, netutil.RTM_DELLINK, 2, 3]


def _msg(mtype: int, body: bytes, length: int | None = None) -> bytes:
    n = 16 + len(body) if length is None else length
    return struct.pack("=IHHII", n, mtype, 0, 1, 0) + body + bytes(-len(body) % 4)


def _attrs(items: list[tuple[int, bytes, int]]) -> bytes:
    out = b""
    for atype, value, skew in items:
        out += struct.pack("=HH", max(0, min(0xFFFF, 4 + len(value) + skew)), atype) + value + bytes(-len(value) % 4)
    return out


messages = st.builds(
    _msg,
    st.sampled_from(TYPES),
    st.one_of(
        st.binary(max_size=80),
        st.builds(lambda head, attrs: head + attrs, st.binary(min_size=8, max_size=16),
                  st.lists(st.tuples(st.integers(0, 40), st.binary(max_size=20), st.integers(-6, 6)), max_size=6).map(_attrs)),
    ),
    st.one_of(st.none(), st.integers(0, 200)),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.one_of(st.lists(messages, max_size=6).map(b"".join), st.binary(max_size=300)))
def test_parse_datagram_never_raises(data: bytes) -> None:
    events, bad = parse_datagram(data)
    assert bad >= 0 and isinstance(events, list)
    for ev in events:
        assert ev.kind in ("addr", "route", "link")


def _real_dumps() -> list[bytes]:
    out = []
    for req in (netutil.RTM_GETADDR, netutil.RTM_GETLINK):
        msgs = netutil.nl_dump(req, socket.AF_UNSPEC)
        out.append(b"".join(_msg(t, b) for t, b in msgs if t not in (2, 3)))
    return out


def test_this_hosts_dumps_parse_cleanly_and_mutations_are_counted() -> None:
    dumps = _real_dumps()
    assert any(dumps), "the host has addresses, routes and links"
    for data in dumps:
        events, bad = parse_datagram(data)
        assert bad == 0 and events
    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.sampled_from([d for d in dumps if d]), st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)),
                                                              min_size=1, max_size=8),
           st.integers(0, 10**6))
    def run(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
        data = bytearray(seed)
        for i, x in flips:
            data[i % len(data)] ^= x
        events, bad = parse_datagram(bytes(data[: max(1, cut % (len(data) + 1))]))
        assert bad >= 0

    run()
