"""The data plane of two gateways on an in-memory network (``MemoryNetwork``),
each with an in-memory inner transport (``memory_pipe()``) standing for the
hosts behind it.

Shown here: trap policies (the first packets start IKE, are held, and leave
once the SA is up; overflow of the hold queue is dropped and counted),
outbound packets that match no policy (dropped and counted, nothing on the
wire), an inbound packet outside the negotiated selectors (dropped and
counted), and a Child SA rekey while packets flow (make-before-break: no
packet lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from asyncwait import Host, until
from memory_gateways import memory_gateways

from aioipsec.asyncio.dataplane import HOLD_QUEUE
from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import ConnectionConfig, child, connection
from aioipsec.events import ChildSaDeleted, ChildSaInstalled
from aioipsec.netutil import udp_packet

GW_A, GW_B = "192.0.2.1", "192.0.2.2"
NET_A, NET_B = "198.51.100.0/24", "203.0.113.0/24"
HOST_A, HOST_B = "198.51.100.10", "203.0.113.20"
PSK = "memory-dataplane-test-psk"


def configs(*, trap: bool = False, version: int = 2, **conn_kw: Any) -> tuple[ConnectionConfig, ConnectionConfig]:
    """(gateway A, gateway B): A protects NET_A <-> NET_B, B the mirror."""
    extra: dict[str, Any] = {}
    if version == 1:
        extra = {"proposals": ["aes128-sha256-modp2048"]}
        ids = (GW_A, GW_B)
        esp = ["aes128-sha256"]
    else:
        ids = ("a.example", "b.example")
        esp = ["aes128gcm16"]
    a = connection(
        "to-b", version=version, psk=PSK, local_id=ids[0], remote_id=ids[1],
        local_addrs=[GW_A], remote_addrs=[GW_B], dpd_delay=0,
        children=[child("lan", local_ts=[NET_A], remote_ts=[NET_B], esp_proposals=esp,
                        start_action="trap" if trap else "none")],
        **extra, **conn_kw,
    )
    b = connection(
        "to-a", version=version, psk=PSK, local_id=ids[1], remote_id=ids[0],
        local_addrs=[GW_B], remote_addrs=[GW_A], dpd_delay=0,
        children=[child("lan", local_ts=[NET_B], remote_ts=[NET_A], esp_proposals=esp)],
        **extra, **conn_kw,
    )
    return a, b



@dataclass
class Pair:
    net: MemoryNetwork
    a: Endpoint
    b: Endpoint
    host_a: Host
    host_b: Host
    wire: list[tuple[Any, bytes, Any]]


@pytest.fixture
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    params = getattr(request, "param", {}) or {}
    net = MemoryNetwork()
    wire: list[tuple[Any, bytes, Any]] = []
    net.tap = lambda src, data, dst: wire.append((src, data, dst))
    ca, cb = configs(**params)
    async with memory_gateways(net, (GW_A, ca), (GW_B, cb), queue_size=4096) as g:
        yield Pair(net, g.a, g.b, g.host_a, g.host_b, wire)


def packets(n: int, start: int = 0, src: str = HOST_A, dst: str = HOST_B) -> list[bytes]:
    return [udp_packet(src, dst, 40000, 9, f"pkt-{i:06d}".encode()) for i in range(start, start + n)]


def esp_on_wire(p: Pair) -> int:
    """Datagrams that were neither IKE (500, or 4500 with the non-ESP marker) nor keepalives."""
    n = 0
    for (_sip, sport), data, (_dip, dport) in p.wire:
        if sport == 500 or dport == 500:
            continue
        if dport == 4500 and (data[:4] == b"\x00\x00\x00\x00" or data == b"\xff"):
            continue
        n += 1
    return n


# ---------------------------------------------------------------------------
# trap policies

@pytest.mark.parametrize("pair", [{"trap": True}, {"trap": True, "version": 1}], indirect=True, ids=["ikev2", "ikev1"])
async def test_trap_holds_first_packets_and_delivers_them(pair: Pair) -> None:
    p = pair
    assert not p.a.sessions and not p.wire
    p.host_a.end.send_batch(packets(5))
    # the first packet triggered IKE; all five wait in the hold queue meanwhile
    await until(lambda: p.a.sessions, what="acquire")
    (trap,) = p.a.dataplane.traps
    assert trap.conn == "to-b" and trap.child == "lan"
    await until(lambda: len(p.host_b.received) == 5, what="held packets delivered")
    assert p.host_b.payloads() == [f"pkt-{i:06d}".encode() for i in range(5)]
    assert not trap.held and trap.held_dropped == 0 and p.a.dataplane.stats.held_dropped == 0
    # exactly one IKE SA was negotiated, and only once
    assert len(p.a.sessions) == 1 and len(p.b.sessions) == 1
    # later packets go straight through the installed SA (no new negotiation)
    p.host_a.end.send_batch(packets(3, start=5))
    await until(lambda: len(p.host_b.received) == 8, what="later packets")
    assert len(p.a.sessions) == 1
    (pipe,) = p.a.dataplane.outbound
    assert pipe.sa_out.stats.packets_out == 8
    # and the reverse direction works over the same SA (B had no trap of its own)
    p.host_b.end.send_batch(packets(2, src=HOST_B, dst=HOST_A))
    await until(lambda: len(p.host_a.received) == 2, what="reverse packets")


@pytest.mark.parametrize("pair", [{"trap": True}], indirect=True)
async def test_hold_queue_overflow_dropped_and_counted(pair: Pair) -> None:
    p = pair
    extra = 37
    total = HOLD_QUEUE + extra
    p.host_a.end.send_batch(packets(total))
    await until(lambda: len(p.host_b.received) >= HOLD_QUEUE, what="held packets delivered")
    await asyncio.sleep(0.05)  # nothing more arrives
    (trap,) = p.a.dataplane.traps
    assert trap.held_dropped == extra
    assert p.a.dataplane.stats.held_dropped == extra
    # the first HOLD_QUEUE packets are the ones kept, in order
    assert p.host_b.payloads() == [f"pkt-{i:06d}".encode() for i in range(HOLD_QUEUE)]
    assert p.a.dataplane.stats.no_policy == 0


@pytest.mark.parametrize("pair", [{"trap": True}], indirect=True)
async def test_trap_ignores_packets_outside_its_selectors(pair: Pair) -> None:
    p = pair
    p.host_a.end.send_batch(packets(3, dst="192.0.2.99"))  # not in NET_B
    await asyncio.sleep(0.05)
    assert not p.a.sessions and not p.wire
    assert p.a.dataplane.stats.no_policy == 3
    (trap,) = p.a.dataplane.traps
    assert not trap.held and not trap.pending


# ---------------------------------------------------------------------------
# policies

async def establish(p: Pair) -> tuple[Any, Any]:
    proto = p.a.initiate("to-b")
    await asyncio.wait_for(proto.wait_child("lan"), 5)
    await until(lambda: p.b.dataplane.sad_in, what="responder SA")
    (peer,) = p.b.sessions
    return proto, peer


async def test_outbound_without_policy_dropped_and_counted(pair: Pair) -> None:
    p = pair
    await establish(p)
    before = len(p.wire)
    p.host_a.end.send_batch(packets(4, dst="192.0.2.77"))            # dst outside NET_B
    p.host_a.end.send_batch(packets(2, src="10.9.9.9"))              # src outside NET_A
    p.host_a.end.send_batch([b"\x45\x00junk"])                       # not an IP packet
    await asyncio.sleep(0.05)
    st = p.a.dataplane.stats
    assert st.no_policy == 6 and st.malformed == 1
    assert len(p.wire) == before  # nothing was sent, in the clear or otherwise
    (pipe,) = p.a.dataplane.outbound
    assert pipe.sa_out.stats.packets_out == 0
    # a packet inside the policy still goes through
    p.host_a.end.send_batch(packets(1))
    await until(lambda: len(p.host_b.received) == 1, what="protected packet")


async def test_inbound_selector_violation_dropped_and_counted(pair: Pair) -> None:
    """B (the peer) seals packets whose inner addresses lie outside what it
    negotiated; A opens them (the ICV is right) and drops them."""
    p = pair
    await establish(p)
    (b_pipe,) = p.b.dataplane.outbound
    (a_pipe,) = p.a.dataplane.sad_in.values()
    bad = [
        udp_packet("192.0.2.200", HOST_A, 1, 2, b"src outside B's TS"),
        udp_packet(HOST_B, "10.1.2.3", 1, 2, b"dst outside A's TS"),
    ]
    good = [udp_packet(HOST_B, HOST_A, 1, 2, b"inside")]
    sealed = b_pipe.sa_out.seal_batch(bad + good)
    p.b.send_esp(sealed, b_pipe.remote, b_pipe.encap)
    await until(lambda: p.host_a.received, what="the good packet")
    await asyncio.sleep(0.02)
    assert p.host_a.payloads() == [b"inside"]
    assert a_pipe.policy_dropped == 2
    assert a_pipe.sa_in.stats.packets_in == 3          # all three decrypted and authenticated
    assert p.a.dataplane.child_stats(a_pipe.ev.spi_in)["policy_dropped"] == 2
    # the flow cache remembers the good flow, never a bad one: the same
    # violations after it are still dropped, the good flow still passes
    assert a_pipe.inbound_ok
    p.b.send_esp(b_pipe.sa_out.seal_batch(good + bad + good), b_pipe.remote, b_pipe.encap)
    await until(lambda: len(p.host_a.received) == 3, what="good packets")
    await asyncio.sleep(0.02)
    assert p.host_a.payloads() == [b"inside"] * 3
    assert a_pipe.policy_dropped == 4


async def test_unknown_spi_and_garbage_counted_never_raise(pair: Pair) -> None:
    p = pair
    await establish(p)
    (a_pipe,) = p.a.dataplane.sad_in.values()
    sock = p.net.bind(("192.0.2.66", 4500))
    sock.sendto(b"\x12\x34\x56\x78" + bytes(40), (GW_A, 4500))     # unknown SPI
    sock.sendto(a_pipe.ev.spi_in.to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(56), (GW_A, 4500))  # bad ICV
    sock.sendto(b"\x01\x02", (GW_A, 4500))                              # too short
    await asyncio.sleep(0.05)
    assert p.a.dataplane.stats.no_sa == 1
    assert a_pipe.sa_in.stats.integrity_failed == 1
    assert a_pipe.sa_in.stats.packets_in == 0
    assert p.a.stats.malformed == 1
    assert not p.host_a.received
    sock.close()


# ---------------------------------------------------------------------------
# rekey under load

@pytest.mark.parametrize("initiator", ["a", "b"])
async def test_child_rekey_under_load_loses_nothing(pair: Pair, initiator: str) -> None:
    p = pair
    proto, peer = await establish(p)
    (old,) = proto.children.values()
    events: list[Any] = []
    p.a.event_listeners.append(lambda _p, ev: events.append(ev))
    sent = 0
    stop = asyncio.Event()

    async def flow() -> None:
        nonlocal sent
        while not stop.is_set():
            # both directions at once, 16 packets per turn each way
            p.host_a.end.send_batch(packets(16, start=sent))
            p.host_b.end.send_batch(packets(16, start=sent, src=HOST_B, dst=HOST_A))
            sent += 16
            await asyncio.sleep(0)

    task = asyncio.get_running_loop().create_task(flow())
    try:
        await until(lambda: sent >= 400, what="traffic")
        if initiator == "a":
            new = await asyncio.wait_for(proto.rekey_child_sa(old.spi_in), 5)
        else:
            (b_old,) = peer.children.values()
            await asyncio.wait_for(peer.rekey_child_sa(b_old.spi_in), 5)
            await until(lambda: any(isinstance(e, ChildSaInstalled) and e.rekeyed_from == old.spi_in for e in events),
                        what="rekeyed SA on A")
            new = next(e for e in events if isinstance(e, ChildSaInstalled) and e.rekeyed_from == old.spi_in)
        assert new.rekeyed_from == old.spi_in and new.spi_in != old.spi_in
        await until(lambda: any(isinstance(e, ChildSaDeleted) and e.spi_in == old.spi_in for e in events),
                    what="old SA deleted")
        mark = sent
        await until(lambda: sent >= mark + 400, what="traffic after the rekey")
    finally:
        stop.set()
        await task
    await until(lambda: len(p.host_b.received) == sent and len(p.host_a.received) == sent,
                timeout=5, what=f"all {sent} packets each way")
    expect = [f"pkt-{i:06d}".encode() for i in range(sent)]
    assert p.host_b.payloads() == expect
    assert p.host_a.payloads() == expect
    # the old SA carried the first part, the new one the rest (both directions)
    (pipe,) = p.a.dataplane.outbound
    assert pipe.ev.spi_in == new.spi_in
    assert 0 < pipe.sa_out.stats.packets_out < sent
    assert 0 < pipe.sa_in.stats.packets_in < sent
    # the deleted SA's inbound half lingers briefly (late packets of the peer), then goes
    lingering = p.a.dataplane.sad_in.get(old.spi_in)
    assert lingering is None or lingering.deleted
    await until(lambda: old.spi_in not in p.a.dataplane.sad_in, timeout=5, what="old inbound SA removed")
    # no drop of any kind anywhere
    for ep in (p.a, p.b):
        st = ep.dataplane.stats
        assert (st.no_sa, st.no_policy, st.malformed, st.held_dropped) == (0, 0, 0, 0)


# ---------------------------------------------------------------------------
# the flow cache (outbound policy lookup, inbound selector check)

def test_flow_key_caches_only_what_it_can_tell_apart() -> None:
    from aioipsec.asyncio.dataplane import flow_key
    from aioipsec.netutil import icmp_echo

    a = udp_packet(HOST_A, HOST_B, 1000, 53, b"x")
    assert flow_key(a) == a[12:24]
    assert flow_key(udp_packet(HOST_A, HOST_B, 1000, 54, b"x")) != flow_key(a)   # ports count
    assert flow_key(icmp_echo(HOST_A, HOST_B, 1, 1)) is None                       # checksum in the key bytes
    frag = bytearray(a)
    frag[6:8] = (0x2000 | 10).to_bytes(2, "big")                                   # offset 80: no ports here
    assert flow_key(bytes(frag)) is None
    opts = bytes([0x46]) + a[1:20] + bytes(4) + a[20:]                             # IHL 6: not cached
    assert flow_key(opts) is None
    v6 = udp_packet("2001:db8:a::1", "2001:db8:b::1", 1000, 53, b"x")
    assert flow_key(v6) == v6[8:44]


@pytest.fixture
async def v6pair() -> AsyncIterator[Pair]:
    """Like ``pair`` but the tunnel carries IPv6 (outer IPv4)."""
    net = MemoryNetwork()
    wire: list[tuple[Any, bytes, Any]] = []
    a_cfg = connection("to-b", psk=PSK, local_id="a.example", remote_id="b.example", local_addrs=[GW_A],
                       remote_addrs=[GW_B], dpd_delay=0,
                       children=[child("lan", local_ts=["2001:db8:a::/64"], remote_ts=["2001:db8:b::/64[udp]"])])
    b_cfg = connection("to-a", psk=PSK, local_id="b.example", remote_id="a.example", local_addrs=[GW_B],
                       remote_addrs=[GW_A], dpd_delay=0,
                       children=[child("lan", local_ts=["2001:db8:b::/64[udp]"], remote_ts=["2001:db8:a::/64"])])
    async with memory_gateways(net, (GW_A, a_cfg), (GW_B, b_cfg)) as g:
        yield Pair(net, g.a, g.b, g.host_a, g.host_b, wire)


async def test_ipv6_flows_and_protocol_selectors_with_the_cache(v6pair: Pair) -> None:
    p = v6pair
    proto = p.a.initiate("to-b")
    await asyncio.wait_for(proto.wait_child("lan"), 5)
    await until(lambda: p.b.dataplane.sad_in, what="responder SA")
    src, dst = "2001:db8:a::10", "2001:db8:b::20"
    udp = [udp_packet(src, dst, 4000, 53, b"v6-%d" % i) for i in range(10)]
    # TCP to the same addresses: outside the [udp] selector, whatever the cache holds
    tcp = bytearray(udp_packet(src, dst, 4000, 53, b"tcp"))
    tcp[6] = 6
    p.host_a.end.send_batch(udp[:5] + [bytes(tcp)] + udp[5:])
    await until(lambda: len(p.host_b.received) == 10, what="IPv6 packets")
    await asyncio.sleep(0.02)
    assert p.host_b.payloads() == [b"v6-%d" % i for i in range(10)]
    assert p.a.dataplane.stats.no_policy == 1
    # inbound: B seals a TCP packet (outside its own [udp] selector) after a cached UDP flow
    (b_pipe,) = p.b.dataplane.outbound
    (a_pipe,) = p.a.dataplane.sad_in.values()
    back = udp_packet(dst, src, 53, 4000, b"answer")
    bad = bytearray(back)
    bad[6] = 6
    p.b.send_esp(b_pipe.sa_out.seal_batch([back, bytes(bad), back]), b_pipe.remote, b_pipe.encap)
    await until(lambda: len(p.host_a.received) == 2, what="answers")
    await asyncio.sleep(0.02)
    assert a_pipe.policy_dropped == 1 and a_pipe.inbound_ok


async def test_esp_before_ike_in_one_read_is_processed_first(pair: Pair) -> None:
    """One read from port 4500 may hold ESP and then an IKE message (e.g. the
    DELETE of a rekeyed SA): the ESP that came first must be opened first, or
    its last packets meet an SA that is already gone."""
    p = pair
    await establish(p)
    (b_pipe,) = p.b.dataplane.outbound
    (a_pipe,) = p.a.dataplane.sad_in.values()
    esp = b_pipe.sa_out.seal_batch([udp_packet(HOST_B, HOST_A, 1, 2, b"%d" % i) for i in range(3)])
    seen: list[int] = []
    p.a._ike_received = lambda data, addr, on_4500: seen.append(a_pipe.sa_in.stats.packets_in)  # type: ignore[method-assign]
    src = (GW_B, 4500)
    p.a._on_natt_port([(esp[0], src), (esp[1], src), (b"\x00\x00\x00\x00" + bytes(28), src), (esp[2], src)])
    assert seen == [2]
    assert a_pipe.sa_in.stats.packets_in == 3
    assert p.a.stats.esp_in == 3
