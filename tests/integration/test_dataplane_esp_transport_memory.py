"""ESP transport mode on the asyncio data plane, between two endpoints on an
in-memory network: the delivered packet is rebuilt from the SA's addresses,
and its protocol and ports must lie inside the Child SA's selectors (RFC 4301
§5.2).  A peer holding the ESP key that seals a payload to a port, or of a
protocol, outside narrowed selectors has it dropped, counted in
``policy_dropped`` and logged with the peer, never delivered; traffic inside
them flows both ways.  IKEv2 over IPv4 and IPv6, and IKEv1 through a NAT
(the responder's selectors name the address it sees, as strongSwan's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from asyncwait import Host, until
from memory_gateways import memory_gateways

from aioipsec.asyncio.dataplane import _host_selectors
from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.netutil import udp_packet
from aioipsec.selectors import Address, TrafficSelector, parse_ts

PSK = "memory-esp-transport-psk"
NAT_PUBLIC = "198.51.100.99"


@dataclass(frozen=True)
class Net:
    gw_a: str
    gw_b: str


V4 = Net("192.0.2.1", "192.0.2.2")
V6 = Net("2001:db8::1", "2001:db8::2")
V4_NAT = Net("10.99.0.10", "192.0.2.2")  # A behind a 1:1 NAT to NAT_PUBLIC


def _nat(src: Address, dst: Address) -> tuple[Address, Address]:
    """A 1:1 NAT in front of V4_NAT.gw_a."""
    if src[0] == V4_NAT.gw_a:
        return (NAT_PUBLIC, src[1]), dst
    if dst[0] == NAT_PUBLIC:
        return src, (V4_NAT.gw_a, dst[1])
    return src, dst


def _host(addr: str) -> str:
    return f"{addr}/{128 if ':' in addr else 32}"


def configs(net: Net, version: int) -> tuple[Any, Any]:
    """(A, B) in transport mode; B's side narrowed to UDP port 9 (A's
    remote_ts, B's local_ts)."""
    extra: dict[str, Any] = {"proposals": ["aes128-sha256-modp2048"]} if version == 1 else {}
    ids = (net.gw_a, net.gw_b) if version == 1 else ("a.example", "b.example")
    a_remote = _host(net.gw_b) + "[udp/9]"
    # behind the NAT, B names A by the address it sees (an IKEv1 responder
    # maps A's private host selector to it)
    b_remote = _host(NAT_PUBLIC if net is V4_NAT else net.gw_a)
    a = connection("to-b", version=version, psk=PSK, local_id=ids[0], remote_id=ids[1], local_addrs=[net.gw_a],
                   remote_addrs=[net.gw_b], dpd_delay=0, **extra,
                   children=[child("h", local_ts=[_host(net.gw_a)], remote_ts=[a_remote], mode="transport")])
    b = connection("to-a", version=version, psk=PSK, local_id=ids[1], remote_id=ids[0], local_addrs=[net.gw_b],
                   remote_addrs=["%any"], dpd_delay=0, **extra,
                   children=[child("h", local_ts=[a_remote], remote_ts=[b_remote], mode="transport")])
    return a, b


@dataclass
class Pair:
    net: MemoryNetwork
    a: Endpoint
    b: Endpoint
    host_a: Host
    host_b: Host
    addrs: Net


@pytest.fixture
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    addrs, version = request.param
    net = MemoryNetwork()
    if addrs is V4_NAT:
        net.nat = _nat
    ca, cb = configs(addrs, version)
    async with memory_gateways(net, (addrs.gw_a, ca), (addrs.gw_b, cb), queue_size=4096) as g:
        yield Pair(net, g.a, g.b, g.host_a, g.host_b, addrs)


PAIRS = [(V4, 2), (V6, 2), (V4_NAT, 1)]
IDS = ["ikev2-v4", "ikev2-v6", "ikev1-v4-nat"]


async def up(p: Pair) -> tuple[Any, Any]:
    p.a.initiate("to-b")
    await until(lambda: p.a.dataplane.outbound and p.b.dataplane.outbound, what="ESP Child SA on both ends")
    (pa,), (pb,) = p.a.dataplane.outbound, p.b.dataplane.outbound
    assert pa.ev.protocol == pb.ev.protocol == "esp" and pa.ev.mode == pb.ev.mode == "transport"
    return pa, pb


def _send_keyed(p: Pair, pa: Any, payload: bytes, next_header: int) -> None:
    """A transport-mode payload sealed on A's outbound SA with the real key,
    sent the way A sends ESP: B authenticates and decrypts it."""
    sealed = pa.sa_out.seal_batch([payload], next_header)
    assert len(sealed) == 1
    p.a.send_esp(sealed, pa.remote, pa.encap, pa.ev.local_addr[0])


def _udp_payload(sport: int, dport: int, data: bytes) -> bytes:
    """A UDP header and data (the checksum is recomputed at delivery)."""
    return sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (8 + len(data)).to_bytes(2, "big") + b"\0\0" + data


@pytest.mark.parametrize("pair", PAIRS, indirect=True, ids=IDS)
async def test_esp_transport_drops_ports_and_protocols_outside_selectors(
        pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    p, n = pair, pair.addrs
    pa, pb = await up(p)
    (ts,) = pb.ev.local_ts
    assert (ts.proto, ts.start_port, ts.end_port) == (17, 9, 9)
    if n is V4_NAT:
        assert pa.encap and pb.encap and pb.remote[0] == NAT_PUBLIC
        assert [str(t) for t in pb.ev.remote_ts] == [f"{NAT_PUBLIC}/32"]
    with caplog.at_level(logging.DEBUG, logger="aioipsec"):
        _send_keyed(p, pa, _udp_payload(40000, 10, b"wrong-port"), 17)
        await until(lambda: pb.sa_in.stats.packets_in == 1, what="wrong port opened")
        _send_keyed(p, pa, _udp_payload(40000, 9, b"wrong-proto"), 6)  # TCP to port 9
        await until(lambda: pb.sa_in.stats.packets_in == 2, what="wrong protocol opened")
    assert pb.policy_dropped == 2 and pb.sa_in.stats.integrity_failed == 0
    assert p.b.dataplane.child_stats(pb.ev.spi_in)["policy_dropped"] == 2
    peer = NAT_PUBLIC if n is V4_NAT else n.gw_a
    assert sum(peer in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records) == 2
    # a keyed packet inside the selectors is delivered, rebuilt from the SA's addresses
    _send_keyed(p, pa, _udp_payload(40000, 9, b"keyed-in"), 17)
    await until(lambda: p.host_b.received, what="the keyed packet inside the selectors")
    # normal traffic flows both ways (through the flow cache after the first packet)
    p.host_a.end.send_batch([udp_packet(n.gw_a, n.gw_b, 40000, 9, f"esp-{i}".encode()) for i in range(3)])
    await until(lambda: len(p.host_b.received) == 4, what="A -> B")
    p.host_b.end.send_batch([udp_packet(n.gw_b, pb.remote[0], 9, 40000, b"reply")])
    await until(lambda: len(p.host_a.received) == 1, what="B -> A")
    # the wrong port and protocol again, now that the good flow is cached: still dropped
    _send_keyed(p, pa, _udp_payload(40000, 10, b"wrong-port"), 17)
    _send_keyed(p, pa, _udp_payload(40000, 9, b"wrong-proto"), 6)
    await until(lambda: pb.sa_in.stats.packets_in == 8, what="wrong packets opened again")
    await asyncio.sleep(0.02)
    assert p.host_b.payloads() == [b"keyed-in", b"esp-0", b"esp-1", b"esp-2"]
    assert p.host_a.payloads() == [b"reply"]
    assert pb.policy_dropped == 4 and pa.policy_dropped == 0


def test_host_selectors_keep_addresses_that_name_the_sa_else_only_protocol_and_ports() -> None:
    """A selector naming the SA's address keeps its address check; selectors
    naming another address (the peer's pre-NAT address, or where the peer was
    before it moved) apply with their protocol and ports only."""
    tss = [parse_ts("192.0.2.1/32[udp/9]"), parse_ts("10.0.0.0/8[tcp/80]"), parse_ts("2001:db8::1/128[udp/7]")]
    assert _host_selectors(tss, "192.0.2.1") == tss
    assert _host_selectors(tss, "10.1.2.3") == tss
    public = int.from_bytes(bytes([198, 51, 100, 99]), "big")
    assert _host_selectors(tss, NAT_PUBLIC) == [TrafficSelector(public, public, 4, 17, 9, 9),
                                                 TrafficSelector(public, public, 4, 6, 80, 80)]
    assert _host_selectors(tss, "2001:db8::2") == [TrafficSelector((0x20010DB8 << 96) | 2, (0x20010DB8 << 96) | 2,
                                                                    6, 17, 7, 7)]
