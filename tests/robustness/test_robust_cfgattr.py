"""Configuration attributes from a peer (IKEv2 CP, IKEv1 Mode Config) are
garbage-proof: aioipsec.ike.cfgattr.decode / requested_addresses take any
list of (type, value) without raising, every malformed value is dropped
with a reason, and a reply full of attributes costs time linear in its
size."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.ike import cfgattr
from aioipsec.ike.constants import CfgAttr

KNOWN = [int(t) for t in CfgAttr]


@dataclass
class Attr:
    attr_type: int
    value: bytes


attrs = st.lists(
    st.builds(
        Attr,
        st.one_of(st.sampled_from(KNOWN), st.integers(0, 0x7FFF)),
        st.one_of(st.binary(max_size=40), st.sampled_from([b"", bytes(4), bytes(8), bytes(16), bytes(17), b"\xff" * 17])),
    ),
    max_size=30,
)


@settings(max_examples=1500, deadline=None)
@given(attrs, st.sampled_from([1, 2]), st.booleans())
def test_decode_never_raises(items: list[Attr], version: int, unity: bool) -> None:
    got = cfgattr.decode(items, version, unity=unity)
    kept = len(got.addresses) + len(got.dns) + len(got.nbns) + len(got.subnets)
    assert kept + len(got.dropped) <= sum(max(1, len(a.value) // 8) for a in items if a.value) + len(items)
    for why in got.dropped:
        assert isinstance(why, str) and why
    for version_, addr, why in cfgattr.requested_addresses(items, version):
        assert version_ in (4, 6)
        assert addr is None or addr.version == version_
        assert why is None or (addr is None and why)


def test_a_reply_with_thousands_of_attributes_is_linear() -> None:
    # a 64 KiB reply carries ~5,400 8-octet subnets (fragmented messages
    # more); all distinct.  Deduplicating through list scans made 4x the
    # attributes cost ~12x the time here; a set makes it ~4x
    def reply(n: int) -> list[Attr]:
        return [Attr(int(CfgAttr.INTERNAL_IP4_SUBNET), bytes((10, i >> 8 & 0xFF, i & 0xFF, 0, 255, 255, 255, 0)))
                for i in range(n)]

    def cost(n: int) -> float:
        items = reply(n)
        t0 = time.perf_counter()
        got = cfgattr.decode(items, 2)
        dt = time.perf_counter() - t0
        assert len(got.subnets) == n
        return dt

    small = min(cost(5000) for _ in range(3))
    big = min(cost(20000) for _ in range(3))
    assert big < small * 8, f"4x the attributes cost {big / small:.1f}x the time"
