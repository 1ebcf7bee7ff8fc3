"""MOBIKE through the asyncio endpoint: a site that negotiated MOBIKE leaves
the NAT it was behind (new network, no NAT) and sends UPDATE_SA_ADDRESSES;
the gateway points the Child SA at the new address *and* turns UDP
encapsulation off (NAT detection redone for the new path, RFC 4555 §3.5), so
its ESP now travels as plain ESP and still reaches the site.

Two endpoints on the in-memory network; the site's MOBIKE half is the test
tasks of :mod:`mobike_helpers` queued on its session."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncwait import Host, until
from mobike_helpers import MobikeInformational, announce

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.events import PeerAddressChanged
from aioipsec.netutil import udp_packet
from aioipsec.selectors import Address
from aioipsec.transports.memory import memory_pipe

SITE = "192.0.2.10"
NAT_IP = "192.0.2.99"
GW = "192.0.2.2"
NET_A, NET_B = "198.51.100.0/24", "203.0.113.0/24"
HOST_A, HOST_B = "198.51.100.10", "203.0.113.10"
PSK = "mobike-endpoint-test-psk"


class Napt:
    """SITE behind a port-translating NAT while ``on``; a plain route after."""

    def __init__(self) -> None:
        self.on = True
        self.ports = {500: 40500, 4500: 44500}
        self.seen: list[tuple[Address, Address]] = []

    def __call__(self, src: Address, dst: Address) -> tuple[Address, Address] | None:
        self.seen.append((src, dst))
        if not self.on:
            return None if dst[0] == NAT_IP else (src, dst)  # the old mapping is gone
        if src[0] == SITE:
            return (NAT_IP, self.ports[src[1]]), dst
        if dst[0] == NAT_IP:
            inside = {v: k for k, v in self.ports.items()}.get(dst[1])
            return None if inside is None else (src, (SITE, inside))
        return src, dst


async def test_mobike_update_moves_the_child_sa_and_turns_encapsulation_off() -> None:
    net = MemoryNetwork()
    nat = Napt()
    net.nat = nat
    site_in, site_app = memory_pipe(queue_size=1024)
    gw_in, gw_app = memory_pipe(queue_size=1024)
    site_cfg = connection("to-gw", psk=PSK, local_id="site.example", remote_id="gw.example", local_addrs=[SITE],
                          remote_addrs=[GW], dpd_delay=0, children=[child("lan", local_ts=[NET_A], remote_ts=[NET_B])])
    gw_cfg = connection("to-site", psk=PSK, local_id="gw.example", remote_id="site.example", local_addrs=[GW],
                        remote_addrs=["%any"], dpd_delay=0, children=[child("lan", local_ts=[NET_B], remote_ts=[NET_A])])
    gw_ep = await Endpoint.create(GW, configurations=[gw_cfg], network=net, inner=gw_in)
    site_ep = await Endpoint.create(SITE, configurations=[site_cfg], network=net, inner=site_in)
    moved: list[Any] = []
    gw_ep.event_listeners.append(lambda _p, ev: moved.append(ev) if isinstance(ev, PeerAddressChanged) else None)
    host_a, host_b = Host(site_app), Host(gw_app)
    host_a.start()
    host_b.start()
    try:
        proto = site_ep.initiate("to-gw")
        task = announce(proto.session)  # IKE_SA_INIT is out, IKE_AUTH still queued
        await until(lambda: gw_ep.dataplane.outbound and site_ep.dataplane.outbound, what="Child SAs")
        assert task.answered is True
        gw_proto = gw_ep.find_session("to-site")
        assert gw_proto is not None and gw_proto.session.sa.mobike
        spis = (gw_proto.session.sa.spi_i, gw_proto.session.sa.spi_r)
        (pipe,) = gw_ep.dataplane.outbound
        assert pipe.encap and pipe.remote == (NAT_IP, 44500)
        gw_app.send_batch([udp_packet(HOST_B, HOST_A, 7, 9, b"before")])
        await until(lambda: host_a.payloads() == [b"before"], what="the first packet")

        nat.on = False  # the site is on a network without NAT now
        s = proto.session
        s.sa.tm.queue(MobikeInformational(s, natd_source=(SITE, 4500)))
        s._kick(asyncio.get_running_loop().time())
        proto.process()
        await until(lambda: moved, what="the MOBIKE update")
        (ev,) = moved
        assert (ev.old_addr, ev.new_addr, ev.encap) == ((NAT_IP, 44500), (SITE, 4500), False)
        assert pipe.remote == (SITE, 4500) and pipe.encap is False
        nat.seen.clear()
        gw_app.send_batch([udp_packet(HOST_B, HOST_A, 7, 9, b"after")])
        await until(lambda: b"after" in host_a.payloads(), what="plain ESP to the new address")
        assert ((GW, 0), (SITE, 0)) in nat.seen  # the raw protocol-50 socket (port 0 in memory)
        assert not [d for sd, d in nat.seen if sd == (GW, 4500) and d == (SITE, 4500)]
        site_app.send_batch([udp_packet(HOST_A, HOST_B, 9, 7, b"from a")])
        await until(lambda: b"from a" in host_b.payloads(), what="site -> gateway after the move")
        # the same IKE SA and Child SA
        assert (gw_proto.session.sa.spi_i, gw_proto.session.sa.spi_r) == spis
        assert gw_ep.dataplane.outbound == [pipe]
    finally:
        await host_a.stop()
        await host_b.stop()
        await asyncio.wait_for(site_ep.close(timeout=1.0), 5)
        await asyncio.wait_for(gw_ep.close(timeout=1.0), 5)
