"""Non-initial IP fragments in the data plane of two gateways on an
in-memory network (RFC 4301 §7): their ports are OPAQUE, so they match only
a Child SA whose selectors leave the ports ANY.  On a port-narrowed SA an
inbound one is dropped and counted as a policy drop, an outbound one finds no
SA (counted as no policy, nothing sent); an initial fragment is matched by its
ports as any packet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from asyncwait import until
from memory_gateways import Gateways, memory_gateways

from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.esp.ip import checksum
from aioipsec.netutil import udp_packet

GW_A, GW_B = "192.0.2.1", "192.0.2.2"
NET_A, NET_B = "198.51.100.0/24", "203.0.113.0/24"
HOST_A, HOST_B = "198.51.100.10", "203.0.113.20"
PSK = "memory-dataplane-fragments-psk"


Pair = Gateways


@pytest.fixture
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """A protects NET_A <-> NET_B with B's side narrowed to ``request.param``
    (a selector suffix: ``[udp/53]`` or ``[udp]``); B the mirror."""
    narrow = request.param
    a_cfg = connection("to-b", psk=PSK, local_id="a.example", remote_id="b.example", local_addrs=[GW_A],
                       remote_addrs=[GW_B], dpd_delay=0,
                       children=[child("lan", local_ts=[NET_A], remote_ts=[NET_B + narrow])])
    b_cfg = connection("to-a", psk=PSK, local_id="b.example", remote_id="a.example", local_addrs=[GW_B],
                       remote_addrs=[GW_A], dpd_delay=0,
                       children=[child("lan", local_ts=[NET_B + narrow], remote_ts=[NET_A])])
    async with memory_gateways(MemoryNetwork(), (GW_A, a_cfg), (GW_B, b_cfg)) as p:
        proto = p.a.initiate("to-b")
        await asyncio.wait_for(proto.wait_child("lan"), 5)
        await until(lambda: p.b.dataplane.sad_in, what="responder SA")
        yield p


def fragment(pkt: bytes, offset8: int, more: bool) -> bytes:
    """``pkt`` marked as an IPv4 fragment at ``offset8`` (x 8 bytes), its
    bytes otherwise unchanged: the bytes after the header of a non-initial
    fragment would read as the original ports."""
    hdr = bytearray(pkt[:20])
    hdr[6:8] = ((0x2000 if more else 0) | offset8).to_bytes(2, "big")
    hdr[10:12] = b"\x00\x00"
    hdr[10:12] = checksum(hdr).to_bytes(2, "big")
    return bytes(hdr) + pkt[20:]


def from_b(payload: bytes) -> bytes:
    return udp_packet(HOST_B, HOST_A, 53, 40000, payload)


def to_b(payload: bytes) -> bytes:
    return udp_packet(HOST_A, HOST_B, 40000, 53, payload)


@pytest.mark.parametrize("pair", ["[udp/53]"], indirect=True)
async def test_non_initial_fragment_dropped_on_port_narrowed_sa(pair: Pair) -> None:
    p = pair
    (b_pipe,) = p.b.dataplane.outbound
    (a_pipe,) = p.a.dataplane.sad_in.values()
    # inbound: B seals an initial fragment, a non-initial one and a whole packet
    first, later = fragment(from_b(b"first"), 0, True), fragment(from_b(b"later"), 3, False)
    p.b.send_esp(b_pipe.sa_out.seal_batch([first, later, from_b(b"whole")]), b_pipe.remote, b_pipe.encap)
    await until(lambda: len(p.host_a.received) >= 2, what="the initial fragment and the whole packet")
    await asyncio.sleep(0.02)
    assert p.host_a.received == [first, from_b(b"whole")]
    assert a_pipe.sa_in.stats.packets_in == 3          # all three decrypted and authenticated
    assert a_pipe.policy_dropped == 1
    assert p.a.dataplane.child_stats(a_pipe.ev.spi_in)["policy_dropped"] == 1
    # outbound: the non-initial fragment matches no SA (counted, nothing sealed)
    (a_out,) = p.a.dataplane.outbound
    p.host_a.end.send_batch([fragment(to_b(b"later"), 3, False)])
    await until(lambda: p.a.dataplane.stats.no_policy == 1, what="the unmatched fragment")
    assert a_out.sa_out.stats.packets_out == 0
    p.host_a.end.send_batch([fragment(to_b(b"first"), 0, True)])
    await until(lambda: p.host_b.received == [fragment(to_b(b"first"), 0, True)], what="the initial fragment")
    assert p.a.dataplane.stats.no_policy == 1


@pytest.mark.parametrize("pair", ["[udp]"], indirect=True)
async def test_non_initial_fragment_passes_on_any_port_sa(pair: Pair) -> None:
    p = pair
    (b_pipe,) = p.b.dataplane.outbound
    (a_pipe,) = p.a.dataplane.sad_in.values()
    later = fragment(from_b(b"later"), 3, False)
    p.b.send_esp(b_pipe.sa_out.seal_batch([later]), b_pipe.remote, b_pipe.encap)
    await until(lambda: p.host_a.received == [later], what="the non-initial fragment")
    assert a_pipe.policy_dropped == 0
    out = fragment(to_b(b"later"), 3, False)
    p.host_a.end.send_batch([out])
    await until(lambda: p.host_b.received == [out], what="the outbound non-initial fragment")
    assert p.a.dataplane.stats.no_policy == 0

