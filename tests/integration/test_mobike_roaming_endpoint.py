"""A roaming aioipsec client (MOBIKE initiator, RFC 4555) through the asyncio
endpoint: two aioipsec peers on the in-memory network; the client's address
changes, ``Endpoint.roam`` binds its sockets on the new address and sends
UPDATE_SA_ADDRESSES, and traffic flows again on the same IKE and Child SAs
(plain ESP on a path without NAT, UDP-encapsulated behind one).  Without
MOBIKE the client re-initiates from the new address instead."""

from __future__ import annotations

import asyncio
from typing import Any, Self

from asyncwait import Host, until

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.crypto.transforms import parse_proposal
from aioipsec.events import LocalAddressChanged, PeerAddressChanged
from aioipsec.netutil import udp_packet
from aioipsec.selectors import Address
from aioipsec.transports.memory import memory_pipe

SITE = "192.0.2.10"  # the client's first address
NEW = "192.0.2.77"  # its address on the next network
NAT_IP = "192.0.2.99"  # a NAT in front of NEW (second test)
GW = "192.0.2.2"
NET_A, NET_B = "198.51.100.0/24", "203.0.113.0/24"
HOST_A, HOST_B = "198.51.100.10", "203.0.113.10"
PSK = "mobike-roaming-test-psk"


class Napt:
    """NEW behind a port-translating NAT (500 -> 40500, 4500 -> 44500)."""

    def __init__(self) -> None:
        self.ports = {500: 40500, 4500: 44500}

    def __call__(self, src: Address, dst: Address) -> tuple[Address, Address] | None:
        if src[0] == NEW:
            return (NAT_IP, self.ports[src[1]]), dst
        if dst[0] == NAT_IP:
            inside = {v: k for k, v in self.ports.items()}.get(dst[1])
            return None if inside is None else (src, (NEW, inside))
        return src, dst


class Sites:
    def __init__(self, *, gw_mobike: bool = True, ah: bool = False) -> None:
        self.net = MemoryNetwork()
        self.gw_mobike = gw_mobike
        self.ah = ah
        self.events: dict[str, list[Any]] = {"site": [], "gw": []}

    async def __aenter__(self) -> Self:
        site_in, self.site_app = memory_pipe(queue_size=1024)
        gw_in, self.gw_app = memory_pipe(queue_size=1024)
        site_child, gw_child = child("lan", local_ts=[NET_A], remote_ts=[NET_B]), child("lan", local_ts=[NET_B], remote_ts=[NET_A])
        if self.ah:  # AH-only Child SAs (whole IP packets on the AH socket)
            for ch in (site_child, gw_child):
                ch.esp_proposals = []
                ch.ah_proposals = [parse_proposal("sha256", "ah")]
        site_cfg = connection("to-gw", psk=PSK, local_id="site.example", remote_id="gw.example",
                              local_addrs=[SITE], remote_addrs=[GW], dpd_delay=0, children=[site_child])
        gw_cfg = connection("to-site", psk=PSK, local_id="gw.example", remote_id="site.example",
                            local_addrs=[GW], remote_addrs=["%any"], dpd_delay=0, mobike=self.gw_mobike,
                            children=[gw_child])
        self.gw = await Endpoint.create(GW, configurations=[gw_cfg], network=self.net, inner=gw_in)
        self.site = await Endpoint.create(SITE, configurations=[site_cfg], network=self.net, inner=site_in)
        for name, ep in (("site", self.site), ("gw", self.gw)):
            ep.event_listeners.append(lambda _p, ev, name=name: self.events[name].append(ev))
        self.host_a, self.host_b = Host(self.site_app), Host(self.gw_app)
        self.host_a.start()
        self.host_b.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.host_a.stop()
        await self.host_b.stop()
        await asyncio.wait_for(self.site.close(timeout=1.0), 5)
        await asyncio.wait_for(self.gw.close(timeout=1.0), 5)

    def of(self, side: str, kind: type) -> list[Any]:
        return [e for e in self.events[side] if isinstance(e, kind)]

    async def both_ways(self, tag: str) -> None:
        """One packet each way through the tunnel (retried: the first ones may
        race the update)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        to_a, to_b = f"{tag} to a".encode(), f"{tag} to b".encode()
        while to_a not in self.host_a.payloads() or to_b not in self.host_b.payloads():
            assert loop.time() < deadline, f"no traffic both ways ({tag})"
            self.gw_app.send_batch([udp_packet(HOST_B, HOST_A, 7, 9, to_a)])
            self.site_app.send_batch([udp_packet(HOST_A, HOST_B, 9, 7, to_b)])
            await asyncio.sleep(0.02)


async def test_the_client_roams_and_traffic_flows_again_on_the_same_sas() -> None:
    async with Sites() as t:
        proto = t.site.initiate("to-gw")
        await until(lambda: t.gw.dataplane.outbound and t.site.dataplane.outbound, what="Child SAs")
        gw_proto = t.gw.find_session("to-site")
        assert gw_proto is not None and gw_proto.session.sa.mobike and proto.session.sa.mobike
        spis = (proto.session.sa.spi_i, proto.session.sa.spi_r)
        (site_pipe,), (gw_pipe,) = t.site.dataplane.outbound, t.gw.dataplane.outbound
        assert gw_pipe.remote == (SITE, 4500) and not gw_pipe.encap  # floated to 4500, plain ESP
        await t.both_ways("before")

        # the client moves: its old address is gone from the network
        assert t.site.roam(NEW) == [proto]
        assert t.site.local_ip == NEW and (SITE, 500) not in t.net._sockets and (SITE, 4500) not in t.net._sockets
        await until(lambda: t.of("site", LocalAddressChanged), what="the update's answer")
        (ev,) = t.of("site", LocalAddressChanged)
        assert (ev.old_addr, ev.new_addr, ev.encap) == ((SITE, 4500), (NEW, 4500), False)
        (moved,) = t.of("gw", PeerAddressChanged)
        assert (moved.old_addr, moved.new_addr, moved.encap) == ((SITE, 4500), (NEW, 4500), False)
        assert gw_pipe.remote == (NEW, 4500) and site_pipe.ev.local_addr == (NEW, 4500)
        await t.both_ways("after")
        # the same IKE SA and Child SA carry it
        assert (proto.session.sa.spi_i, proto.session.sa.spi_r) == spis
        assert (gw_proto.session.sa.spi_i, gw_proto.session.sa.spi_r) == spis
        assert t.site.dataplane.outbound == [site_pipe] and t.gw.dataplane.outbound == [gw_pipe]
        assert proto.session.local_addr == (NEW, 4500)


async def test_roaming_behind_a_nat_turns_udp_encapsulation_on() -> None:
    async with Sites() as t:
        t.net.nat = Napt()
        proto = t.site.initiate("to-gw")
        await until(lambda: t.gw.dataplane.outbound and t.site.dataplane.outbound, what="Child SAs")
        (site_pipe,), (gw_pipe,) = t.site.dataplane.outbound, t.gw.dataplane.outbound
        await t.both_ways("before")
        t.site.roam(NEW)
        await until(lambda: t.of("site", LocalAddressChanged), what="the update's answer")
        (ev,) = t.of("site", LocalAddressChanged)
        assert (ev.new_addr, ev.encap) == ((NEW, 4500), True)
        assert site_pipe.encap and gw_pipe.encap and gw_pipe.remote == (NAT_IP, 44500)
        assert proto.session.sa.nat_local
        assert t.site.keepalive_peers() == {(GW, 4500)}  # now behind a NAT: keepalives go out
        await t.both_ways("after")


async def test_without_mobike_the_client_initiates_again_from_the_new_address() -> None:
    async with Sites(gw_mobike=False) as t:
        old = t.site.initiate("to-gw")
        await until(lambda: t.gw.dataplane.outbound and t.site.dataplane.outbound, what="Child SAs")
        assert not old.session.sa.mobike
        old_spi = old.session.sa.spi_i
        await t.both_ways("before")
        (fresh,) = t.site.roam(NEW)
        assert fresh is not old and fresh.session.local_addr[0] == NEW
        await until(lambda: fresh.session.is_established and fresh.children, what="the new IKE SA")
        assert fresh.session.sa.spi_i != old_spi and not t.of("site", LocalAddressChanged)
        await t.both_ways("after")


async def test_ah_tunnel_child_sas_follow_the_roaming_client() -> None:
    """AH carries its outer header inside the ICV-covered packet: after the
    move both ends build it from the new address (the gateway's packets go to
    NEW, the client's come from NEW) and traffic flows on the same AH SAs."""
    async with Sites(ah=True) as t:
        proto = t.site.initiate("to-gw")
        await until(lambda: t.gw.dataplane.outbound and t.site.dataplane.outbound, what="AH Child SAs")
        (site_pipe,), (gw_pipe,) = t.site.dataplane.outbound, t.gw.dataplane.outbound
        assert site_pipe.ev.protocol == gw_pipe.ev.protocol == "ah"
        await t.both_ways("before")
        t.site.roam(NEW)
        await until(lambda: t.of("site", LocalAddressChanged) and t.of("gw", PeerAddressChanged), what="the move")
        assert (site_pipe.sa_out.outer_src, site_pipe.sa_out.outer_dst) == (NEW, GW)
        assert (gw_pipe.sa_out.outer_src, gw_pipe.sa_out.outer_dst) == (GW, NEW)
        before = (site_pipe.sa_in.stats.packets_in, gw_pipe.sa_in.stats.packets_in)
        await t.both_ways("after")
        assert site_pipe.sa_in.stats.packets_in > before[0] and gw_pipe.sa_in.stats.packets_in > before[1]
        assert t.site.dataplane.outbound == [site_pipe] and t.gw.dataplane.outbound == [gw_pipe]
        assert proto.session.sa.mobike
