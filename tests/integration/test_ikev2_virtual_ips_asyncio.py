"""Virtual IPs through the asyncio endpoint and the data plane, in memory:
two road-warrior clients (their own endpoints and inner pipes) against a
gateway endpoint given a pool.  Each client's traffic leaves from its virtual
IP and reaches the network behind the gateway and back; a packet from the
client's real address matches no policy; a reconnect gets the same lease;
an exhausted pool fails the client cleanly (FAILED_CP_REQUIRED)."""

from __future__ import annotations

import asyncio

from asyncwait import Side, until

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import PoolConfig, child, connection
from aioipsec.events import ChildSaInstalled, IkeSaEstablished, NegotiationFailed
from aioipsec.netutil import parse_udp, udp_packet
from aioipsec.status import endpoint_status, format_status
from aioipsec.transports.memory import memory_pipe

GW = "192.0.2.2"
NET = "203.0.113.0/24"
SERVER = "203.0.113.20"
PSK = "road-warrior-asyncio-psk"


async def gateway(net: MemoryNetwork, addrs: str) -> Side:
    gw_in, app = memory_pipe(queue_size=1024)
    cfg = connection("rw", psk=PSK, local_id="gw.example", remote_id="%any", local_addrs=[GW], dpd_delay=0,
                     pools=["rw"], children=[child("net", local_ts=[NET])])
    ep = await Endpoint.create(GW, configurations=[cfg], network=net, inner=gw_in,
                               pools=[PoolConfig("rw", addrs, dns=["10.3.0.53"])])
    return Side(ep, app)


async def road_warrior(net: MemoryNetwork, addr: str, ident: str) -> Side:
    c_in, app = memory_pipe(queue_size=1024)
    cfg = connection("home", psk=PSK, local_id=ident, remote_id="gw.example", local_addrs=[addr],
                     remote_addrs=[GW], dpd_delay=0, vips=["0.0.0.0"], children=[child("net", remote_ts=[NET])])
    ep = await Endpoint.create(addr, configurations=[cfg], network=net, inner=c_in)
    return Side(ep, app)


def payloads(side: Side) -> list[tuple[str, str, bytes]]:
    out = []
    for pkt in side.received:
        u = parse_udp(pkt)
        if u is not None:
            out.append((u[0], u[2], u[4]))
    return out


async def test_clients_reach_the_gateway_network_from_their_virtual_ips() -> None:
    net = MemoryNetwork()
    gw = await gateway(net, "10.3.0.0/28")
    alice = await road_warrior(net, "192.0.2.10", "alice.example")
    bob = await road_warrior(net, "192.0.2.11", "bob.example")
    try:
        for side in (alice, bob):
            side.ep.initiate("home")
        await until(lambda: alice.of(ChildSaInstalled) and bob.of(ChildSaInstalled), what="both Child SAs")
        (ea,), (eb,) = alice.of(IkeSaEstablished), bob.of(IkeSaEstablished)
        assert ea.local_vips == ("10.3.0.1",) and eb.local_vips == ("10.3.0.2",)
        assert ea.dns == ("10.3.0.53",)
        assert sorted(e.remote_vips for e in gw.of(IkeSaEstablished)) == [("10.3.0.1",), ("10.3.0.2",)]
        assert [str(t) for t in alice.of(ChildSaInstalled)[0].local_ts] == ["10.3.0.1/32"]
        # status shows them as swanctl --list-sas does
        (sa,) = endpoint_status(alice.ep)["ike_sas"]
        assert (sa["local_vips"], sa["remote_vips"]) == (["10.3.0.1"], [])
        assert sorted(s["remote_vips"] for s in endpoint_status(gw.ep)["ike_sas"]) == [["10.3.0.1"], ["10.3.0.2"]]
        assert "@ 192.0.2.10[4500] [10.3.0.1]" in format_status(endpoint_status(alice.ep))  # MOBIKE: on 4500
        # traffic from each virtual IP crosses the tunnel, and the answers come back
        alice.app.send_batch([udp_packet("10.3.0.1", SERVER, 40000, 7, b"from alice")])
        bob.app.send_batch([udp_packet("10.3.0.2", SERVER, 40001, 7, b"from bob")])
        await until(lambda: len(gw.received) == 2, what="packets at the gateway network")
        assert sorted(payloads(gw)) == [("10.3.0.1", SERVER, b"from alice"), ("10.3.0.2", SERVER, b"from bob")]
        gw.app.send_batch([udp_packet(SERVER, "10.3.0.2", 7, 40001, b"to bob"),
                           udp_packet(SERVER, "10.3.0.1", 7, 40000, b"to alice")])
        await until(lambda: alice.received and bob.received, what="answers")
        assert payloads(alice) == [(SERVER, "10.3.0.1", b"to alice")]
        assert payloads(bob) == [(SERVER, "10.3.0.2", b"to bob")]
        # the client's real address is not what it negotiated: no policy, nothing sent
        before = alice.ep.dataplane.stats.no_policy
        alice.app.send_batch([udp_packet("192.0.2.10", SERVER, 40000, 7, b"not from the vip")])
        await until(lambda: alice.ep.dataplane.stats.no_policy == before + 1, what="no_policy drop")
        await asyncio.sleep(0.02)
        assert len(gw.received) == 2
        # alice disconnects and comes back: the same lease
        proto = alice.ep.find_session("home")
        assert proto is not None
        await proto.close()
        await until(lambda: gw.ep.pools["rw"].offline == 1, what="lease released at the gateway")
        alice.events.clear()
        alice.ep.initiate("home")
        await until(lambda: alice.of(ChildSaInstalled), what="reconnect")
        assert alice.of(IkeSaEstablished)[0].local_vips == ("10.3.0.1",)
        assert gw.ep.pools["rw"].leases() == [("10.3.0.1", "alice.example", True), ("10.3.0.2", "bob.example", True)]
    finally:
        for side in (alice, bob, gw):
            await side.close()


async def test_exhausted_pool_fails_the_second_client_cleanly() -> None:
    net = MemoryNetwork()
    gw = await gateway(net, "10.3.0.1..10.3.0.1")
    alice = await road_warrior(net, "192.0.2.10", "alice.example")
    bob = await road_warrior(net, "192.0.2.11", "bob.example")
    try:
        alice.ep.initiate("home")
        await until(lambda: alice.of(ChildSaInstalled), what="alice's Child SA")
        bob.ep.initiate("home")
        await until(lambda: bob.of(NegotiationFailed), what="bob's failure")
        (failed,) = bob.of(NegotiationFailed)
        assert failed.notify == "FAILED_CP_REQUIRED" and failed.peer == f"{GW}[gw.example]"
        assert not bob.of(IkeSaEstablished) and not bob.of(ChildSaInstalled)
        await until(lambda: len(gw.ep.sessions) == 1, what="the gateway dropped bob's IKE SA")
        assert bob.ep.find_session("home") is None
        assert gw.ep.pools["rw"].leases() == [("10.3.0.1", "alice.example", True)]
        assert not bob.ep.dataplane.outbound
    finally:
        for side in (alice, bob, gw):
            await side.close()
