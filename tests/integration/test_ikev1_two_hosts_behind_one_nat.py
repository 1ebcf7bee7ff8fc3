"""Two IKEv1 road warriors behind one NAT address (two employees in one
hotel) connect to one gateway: IKEv1 messages are routed by their ISAKMP
cookies (CKY-I, CKY-R), as in charon and pluto, not by the peer's IP address,
so each host gets its own session, ISAKMP SA and IPsec SAs at the gateway.

Asyncio endpoints on the in-memory network with ``MemoryNetwork.nat`` as a
NAPT in front of both hosts (one public address, a port pair per host).  The
gateway accepts any peer identity; the hosts authenticate with their own IDs.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Self

from asyncwait import Host, until

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import AuthConfig, PoolConfig, child, connection
from aioipsec.events import ChildSaDeleted, IkeSaDeleted, IkeSaEstablished
from aioipsec.ike.v1.message import peek_header
from aioipsec.ike.v1.session import IkeSessionV1
from aioipsec.ike.v2.pools import build_pools
from aioipsec.netutil import udp_packet
from aioipsec.selectors import Address
from aioipsec.transports.memory import memory_pipe

GW = "192.0.2.2"
NAT_IP = "192.0.2.99"  # the hotel's public address
ALICE, BOB = "10.99.0.10", "10.99.0.11"  # the laptops, behind the NAT
NET_GW = "203.0.113.0/24"
HOST_GW = "203.0.113.10"
NETS = {"alice": "10.0.1.0/24", "bob": "10.0.2.0/24"}
HOSTS = {"alice": "10.0.1.5", "bob": "10.0.2.5"}
PSK = "hotel-psk"


class HotelNat:
    """A NAPT for both laptops: each inside (address, port) gets its own
    public port on NAT_IP; inbound only to a current mapping."""

    def __init__(self) -> None:
        self.out: dict[Address, Address] = {
            (ALICE, 500): (NAT_IP, 40500), (ALICE, 4500): (NAT_IP, 44500),
            (BOB, 500): (NAT_IP, 40600), (BOB, 4500): (NAT_IP, 44600),
        }
        self.dropped_inbound = 0

    def __call__(self, src: Address, dst: Address) -> tuple[Address, Address] | None:
        if src[0] in (ALICE, BOB):
            public = self.out.get(src)
            return None if public is None else (public, dst)
        if dst[0] == NAT_IP:
            inside = {v: k for k, v in self.out.items()}.get(dst)
            if inside is None:
                self.dropped_inbound += 1
                return None
            return src, inside
        return src, dst


def gw_cfg() -> Any:
    return connection("rw", version=1, psk=PSK, local_id="gw.example", remote_id=None, local_addrs=[GW],
                      remote_addrs=["%any"], dpd_delay=0,
                      children=[child("net", local_ts=[NET_GW], remote_ts=["10.0.0.0/16"])])


def laptop_cfg(who: str, addr: str) -> Any:
    return connection("to-gw", version=1, psk=PSK, local_id=f"{who}.example", remote_id="gw.example",
                      local_addrs=[addr], remote_addrs=[GW], dpd_delay=0,
                      children=[child("net", local_ts=[NETS[who]], remote_ts=[NET_GW])])


async def _send_until(app: Any, host: Host, payload: bytes, src: str, dst: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while payload not in host.payloads() and loop.time() < deadline:
        app.send_batch([udp_packet(src, dst, 7, 9, payload)])
        await asyncio.sleep(0.05)
    assert payload in host.payloads(), f"{payload!r} never arrived"


def _live(ep: Endpoint) -> list[Any]:
    return [p for p in ep.sessions if p.session.is_established and not p.session.is_closed]


class Hotel:
    """The gateway and two laptops behind HotelNat, with the hosts on each
    side of their memory pipes."""

    async def __aenter__(self) -> Self:
        self.net = MemoryNetwork()
        self.nat = HotelNat()
        self.net.nat = self.nat
        gw_in, self.gw_app = memory_pipe(queue_size=1024)
        a_in, self.a_app = memory_pipe(queue_size=1024)
        b_in, self.b_app = memory_pipe(queue_size=1024)
        self.gw = await Endpoint.create(GW, configurations=[gw_cfg()], network=self.net, inner=gw_in)
        self.alice = await Endpoint.create(ALICE, configurations=[laptop_cfg("alice", ALICE)], network=self.net,
                                           inner=a_in)
        self.bob = await Endpoint.create(BOB, configurations=[laptop_cfg("bob", BOB)], network=self.net,
                                         inner=b_in)
        self.events: list[tuple[Any, Any]] = []
        self.gw.event_listeners.append(lambda p, ev: self.events.append((p, ev)))
        self.h_gw, self.h_a, self.h_b = Host(self.gw_app), Host(self.a_app), Host(self.b_app)
        for h in (self.h_gw, self.h_a, self.h_b):
            h.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for h in (self.h_gw, self.h_a, self.h_b):
            await h.stop()
        for ep in (self.alice, self.bob, self.gw):
            await asyncio.wait_for(ep.close(timeout=1.0), 5)

    def gw_session_of(self, who: str) -> Any:
        (p,) = [p for p in _live(self.gw) if p.session.unique_id()[2] == f"{who}.example"]
        return p

    async def connect_both(self) -> None:
        # alice is in first; bob's Main Mode comes from the same public address later
        self.alice.initiate("to-gw", "net")
        await until(lambda: self.alice.dataplane.outbound and len(self.gw.dataplane.outbound) == 1,
                    what="alice's IPsec SAs")
        self.bob.initiate("to-gw", "net")
        await until(lambda: self.alice.dataplane.outbound and self.bob.dataplane.outbound
                    and len(self.gw.dataplane.outbound) == 2, what="both laptops' IPsec SAs")


async def test_two_hosts_behind_one_nat_address_get_two_sessions_and_their_own_traffic() -> None:
    async with Hotel() as h:
        await h.connect_both()
        # two sessions at the gateway, one per laptop (its identity, its NAT port)
        live = _live(h.gw)
        assert len(live) == 2, [(p.session.remote_addr, p.session.unique_id()) for p in live]
        a, b = h.gw_session_of("alice"), h.gw_session_of("bob")
        assert a.session.remote_addr == (NAT_IP, 44500) and b.session.remote_addr == (NAT_IP, 44600)
        assert len(a.session.sas) == len(b.session.sas) == 1
        assert {s.spi_i for s in a.session.sas}.isdisjoint(s.spi_i for s in b.session.sas)
        # two IPsec SA pairs, each sending to its own laptop's mapping
        assert len(a.session.children) == len(b.session.children) == 1
        assert sorted(p.remote for p in h.gw.dataplane.outbound) == [(NAT_IP, 44500), (NAT_IP, 44600)]
        # nothing replaced anything
        assert not [ev for _p, ev in h.events if "replaced" in str(getattr(ev, "reason", ""))]
        # traffic both ways, for both laptops at the same time, to the right one
        await asyncio.gather(
            _send_until(h.gw_app, h.h_a, b"to alice", HOST_GW, HOSTS["alice"]),
            _send_until(h.gw_app, h.h_b, b"to bob", HOST_GW, HOSTS["bob"]),
            _send_until(h.a_app, h.h_gw, b"from alice", HOSTS["alice"], HOST_GW),
            _send_until(h.b_app, h.h_gw, b"from bob", HOSTS["bob"], HOST_GW),
        )
        assert b"to bob" not in h.h_a.payloads() and b"to alice" not in h.h_b.payloads()

        # bob leaves (deletes his SAs): alice's session and traffic are untouched
        await asyncio.wait_for(h.bob.close(timeout=1.0), 5)
        await until(lambda: b.session.is_closed, what="bob's session closed at the gateway")
        assert not a.session.is_closed and len(a.session.children) == 1
        assert [p.remote for p in h.gw.dataplane.outbound] == [(NAT_IP, 44500)]
        await asyncio.gather(
            _send_until(h.gw_app, h.h_a, b"still to alice", HOST_GW, HOSTS["alice"]),
            _send_until(h.a_app, h.h_gw, b"still from alice", HOSTS["alice"], HOST_GW),
        )


async def test_a_phase1_renewal_behind_the_nat_goes_to_its_own_hosts_session() -> None:
    """Alice renews her Phase 1 (new cookies, from the same NAT address as
    bob): the gateway's alice session takes the new ISAKMP SA and keeps her
    IPsec SA; bob's session sees nothing of it."""
    async with Hotel() as h:
        await h.connect_both()
        a, b = h.gw_session_of("alice"), h.gw_session_of("bob")
        a_spi, b_spi = list(a.session.children), list(b.session.children)
        b_sas = list(b.session.sas)
        site = h.alice.find_session("to-gw")
        assert site is not None
        old_sa = site.session.sa
        site.session.rekey_ike_sa(asyncio.get_running_loop().time())
        site.process()
        await until(lambda: site.session.sa is not old_sa and site.session.sa.established
                    and len(a.session.sas) == 1 and a.session.sa.spi_i == site.session.sa.spi_i,
                    what="alice's renewed Phase 1 at the gateway")
        assert set(_live(h.gw)) == {a, b} and h.gw.sessions == {a, b}
        assert list(a.session.children) == a_spi and list(b.session.children) == b_spi
        assert b.session.sas == b_sas and a.session.remote_addr == (NAT_IP, 44500)
        renewed = [ev for p, ev in h.events if isinstance(ev, IkeSaEstablished) and ev.rekeyed_from is not None]
        assert [(p, ev.spi_i) for p, ev in h.events if ev in renewed] == [(a, site.session.sa.spi_i)]
        assert [ev.rekeyed_from for ev in renewed] == [old_sa.spi_i]
        await asyncio.gather(
            _send_until(h.gw_app, h.h_a, b"to alice after renewal", HOST_GW, HOSTS["alice"]),
            _send_until(h.gw_app, h.h_b, b"to bob after renewal", HOST_GW, HOSTS["bob"]),
        )


async def test_a_laptop_restarting_behind_the_nat_replaces_only_its_own_session() -> None:
    """Alice's laptop loses its state and connects again (new cookies, from
    the same public address and ports): a new Phase 1, a new session, which
    replaces her old one by identity (``unique = replace``); bob's stays."""
    async with Hotel() as h:
        await h.connect_both()
        a, b = h.gw_session_of("alice"), h.gw_session_of("bob")
        await asyncio.wait_for(h.alice.close(delete=False), 5)  # no delete reaches the gateway
        a_in, h.a_app = memory_pipe(queue_size=1024)
        await h.h_a.stop()
        h.h_a = Host(h.a_app)
        h.h_a.start()
        h.alice = await Endpoint.create(ALICE, configurations=[laptop_cfg("alice", ALICE)], network=h.net,
                                        inner=a_in)
        h.alice.initiate("to-gw", "net")
        await until(lambda: h.alice.dataplane.outbound and a.session.is_closed
                    and len(h.gw.dataplane.outbound) == 2, what="alice's new IPsec SAs")
        a2 = h.gw_session_of("alice")
        assert a2 is not a and set(_live(h.gw)) == {a2, b}
        gone = [ev for p, ev in h.events if p is a and isinstance(ev, IkeSaDeleted)]
        assert len(gone) == 1 and "replaced" in gone[0].reason, gone
        assert not [ev for p, ev in h.events if p is b and isinstance(ev, (IkeSaDeleted, ChildSaDeleted))]
        await asyncio.gather(
            _send_until(h.gw_app, h.h_a, b"to the new alice", HOST_GW, HOSTS["alice"]),
            _send_until(h.gw_app, h.h_b, b"to bob meanwhile", HOST_GW, HOSTS["bob"]),
        )


async def test_a_retransmitted_mm1_is_one_session_and_a_new_cookie_another() -> None:
    """The same MM1 twice from one source: one responder session answering
    with one responder cookie.  A new CKY-I from the same address (a laptop
    that restarted, or the next laptop) is a new Phase 1: a new session."""
    net = MemoryNetwork()
    gw = await Endpoint.create(GW, configurations=[gw_cfg()], network=net)
    got: list[bytes] = []
    client = net.bind((NAT_IP, 40500))
    client.set_receiver(lambda batch: got.extend(d for d, _a in batch))
    try:
        def mm1(seed: int) -> bytes:
            s = IkeSessionV1(configuration=laptop_cfg("alice", ALICE), is_initiator=True,
                             local_addr=(ALICE, 500), remote_addr=(GW, 500),
                             random=random.Random(seed).randbytes)
            s.initiate(0.0)
            [(data, _dst)] = s.datagrams_to_send(0.0)
            return data

        first = mm1(1)
        for _ in range(2):
            client.sendto(first, (GW, 500))
            await asyncio.sleep(0.01)
        await until(lambda: len(got) == 2, what="two MM2")
        assert len(gw.sessions) == 1
        hdrs = [peek_header(d) for d in got]
        assert hdrs[0].spi_i == hdrs[1].spi_i == peek_header(first).spi_i
        assert hdrs[0].spi_r == hdrs[1].spi_r != bytes(8)

        second = mm1(7)
        assert peek_header(second).spi_i != peek_header(first).spi_i
        client.sendto(second, (GW, 500))
        await until(lambda: len(got) == 3, what="the MM2 of the new Phase 1")
        assert len(gw.sessions) == 2
        assert peek_header(got[2]).spi_i == peek_header(second).spi_i
        assert peek_header(got[2]).spi_r != hdrs[0].spi_r

        # the pair routes, not either cookie alone: our CKY-R under another CKY-I is unknown
        (s1,) = [p for p in gw.sessions if p.session.sas[0].spi_i == hdrs[0].spi_i]
        before = gw.stats.unknown_spi
        stray = bytearray(first)
        stray[0:8] = bytes(8 * [0x5A])
        stray[8:16] = hdrs[0].spi_r
        client.sendto(bytes(stray), (GW, 500))
        await until(lambda: gw.stats.unknown_spi == before + 1, what="the stray message counted")
        assert len(gw.sessions) == 2 and s1.session.stats["unknown_spi"] == 0
    finally:
        client.close()
        await asyncio.wait_for(gw.close(timeout=1.0), 5)


async def test_two_xauth_users_with_one_group_psk_behind_one_nat_address() -> None:
    """The hotel case with XAUTH (the Cisco/charon road warrior way): both
    laptops share the group identity and PSK, and tell themselves apart by
    their XAUTH users; each gets its own session and virtual IP."""
    net = MemoryNetwork()
    net.nat = HotelNat()
    pools = build_pools([PoolConfig("rw", "10.3.0.0/28")])
    gw_conf = connection("gw", version=1, psk=PSK, local_id="gw.example", local_addrs=[GW], remote_addrs=["%any"],
                         pools=["rw"], remote2=AuthConfig(auth="xauth"), dpd_delay=0,
                         xauth_secrets={"alice": b"alice-pw", "bob": b"bob-pw"},
                         children=[child("net", local_ts=[NET_GW])])

    def laptop(user: str, addr: str) -> Any:
        return connection("rw", version=1, psk=PSK, local_id="rw.example", remote_id="gw.example",
                          local_addrs=[addr], remote_addrs=[GW], vips=["0.0.0.0"], dpd_delay=0,
                          local2=AuthConfig(auth="xauth", xauth_id=user),
                          xauth_secrets={user: f"{user}-pw".encode()},
                          children=[child("net", remote_ts=[NET_GW])])

    gw_in, gw_app = memory_pipe(queue_size=1024)
    a_in, a_app = memory_pipe(queue_size=1024)
    b_in, b_app = memory_pipe(queue_size=1024)
    gw = await Endpoint.create(GW, configurations=[gw_conf], network=net, inner=gw_in, pools=pools)
    alice = await Endpoint.create(ALICE, configurations=[laptop("alice", ALICE)], network=net, inner=a_in)
    bob = await Endpoint.create(BOB, configurations=[laptop("bob", BOB)], network=net, inner=b_in)
    hosts = h_gw, h_a, h_b = Host(gw_app), Host(a_app), Host(b_app)
    for x in hosts:
        x.start()
    try:
        alice.initiate("rw", "net")
        await until(lambda: alice.dataplane.outbound and len(gw.dataplane.outbound) == 1, what="alice's IPsec SAs")
        bob.initiate("rw", "net")
        await until(lambda: bob.dataplane.outbound and len(gw.dataplane.outbound) == 2, what="bob's IPsec SAs")
        live = _live(gw)
        assert sorted(p.session.unique_id()[2] for p in live) == ["xauth:alice", "xauth:bob"]
        assert sorted(p.session.remote_addr for p in live) == [(NAT_IP, 44500), (NAT_IP, 44600)]
        a_s, b_s = alice.find_session("rw"), bob.find_session("rw")
        assert a_s is not None and b_s is not None
        vip_a, vip_b = a_s.session.local_vips[0], b_s.session.local_vips[0]
        assert vip_a != vip_b
        assert sorted((ip, user) for ip, user, _online in pools["rw"].leases()) == sorted(
            [(vip_a, "alice"), (vip_b, "bob")])
        await asyncio.gather(
            _send_until(gw_app, h_a, b"to alice", HOST_GW, vip_a),
            _send_until(gw_app, h_b, b"to bob", HOST_GW, vip_b),
            _send_until(a_app, h_gw, b"from alice", vip_a, HOST_GW),
            _send_until(b_app, h_gw, b"from bob", vip_b, HOST_GW),
        )
        assert b"to bob" not in h_a.payloads() and b"to alice" not in h_b.payloads()
    finally:
        for x in hosts:
            await x.stop()
        for ep in (alice, bob, gw):
            await asyncio.wait_for(ep.close(timeout=1.0), 5)
