"""A NAT in front of a site changes its mapping mid-tunnel (a NAT reboot or
an expired mapping): the gateway that is not behind the NAT follows the
peer to its new public port once an authenticated IKE message arrives from
there (RFC 7296 §2.23), and its ESP follows too, so traffic resumes.

Two asyncio endpoints on the in-memory network, with ``MemoryNetwork.nat``
rewriting the inside site's addresses like a NAPT: 500 -> 40500 and
4500 -> 44500, then 4500 -> 44501 (the old mapping is gone: datagrams to it
are dropped)."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncwait import Host, until

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.events import PeerAddressChanged
from aioipsec.netutil import udp_packet
from aioipsec.selectors import Address
from aioipsec.transports.memory import memory_pipe

SITE = "192.0.2.10"  # behind the NAT
NAT_IP = "192.0.2.99"  # the NAT's public address
GW = "192.0.2.2"
NET_A, NET_B = "198.51.100.0/24", "203.0.113.0/24"
HOST_A, HOST_B = "198.51.100.10", "203.0.113.10"
PSK = "nat-rebinding-test-psk"


class Napt:
    """Port-translating NAT for SITE: outbound sources rewritten by ``ports``,
    inbound only to a current mapping (anything else is dropped)."""

    def __init__(self) -> None:
        self.ports = {500: 40500, 4500: 44500}
        self.dropped_inbound = 0

    def __call__(self, src: Address, dst: Address) -> tuple[Address, Address] | None:
        if src[0] == SITE:
            port = self.ports.get(src[1])
            return None if port is None else ((NAT_IP, port), dst)
        if dst[0] == NAT_IP:
            inside = {v: k for k, v in self.ports.items()}.get(dst[1])
            if inside is None:
                self.dropped_inbound += 1
                return None
            return src, (SITE, inside)
        return src, dst


async def test_gateway_follows_a_changed_nat_mapping_and_traffic_resumes() -> None:
    net = MemoryNetwork()
    nat = Napt()
    net.nat = nat
    site_in, site_app = memory_pipe(queue_size=1024)
    gw_in, gw_app = memory_pipe(queue_size=1024)
    site_cfg = connection("to-gw", psk=PSK, local_id="site.example", remote_id="gw.example", local_addrs=[SITE],
                          remote_addrs=[GW], dpd_delay=0.3, children=[child("lan", local_ts=[NET_A], remote_ts=[NET_B])])
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
        site_ep.initiate("to-gw")
        await until(lambda: gw_ep.dataplane.outbound and site_ep.dataplane.outbound, what="Child SAs")
        (pipe,) = gw_ep.dataplane.outbound
        assert pipe.encap and pipe.remote == (NAT_IP, 44500)
        gw_app.send_batch([udp_packet(HOST_B, HOST_A, 7, 9, b"before")])
        await until(lambda: host_a.payloads() == [b"before"], what="the first packet")

        nat.ports[4500] = 44501  # the NAT lost the mapping and made a new one
        # the site keeps sending (ESP reaches the gateway from the new port) ...
        site_app.send_batch([udp_packet(HOST_A, HOST_B, 9, 7, b"from a")])
        await until(lambda: b"from a" in host_b.payloads(), what="site -> gateway after the change")
        # ... the gateway's answers go to the dead mapping until an authenticated
        # IKE message (the site's DPD: it hears nothing) shows the new port
        sent = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while b"after" not in host_a.payloads() and loop.time() < deadline:
            gw_app.send_batch([udp_packet(HOST_B, HOST_A, 7, 9, b"after")])
            sent += 1
            await asyncio.sleep(0.05)
        assert b"after" in host_a.payloads(), f"no packet from the gateway after the NAT change ({sent} sent)"
        assert nat.dropped_inbound > 0  # some went to the old mapping first
        assert pipe.remote == (NAT_IP, 44501)
        (ev,) = moved
        assert (ev.old_addr, ev.new_addr) == ((NAT_IP, 44500), (NAT_IP, 44501))
        assert gw_ep.find_session("to-site") is not None and site_ep.find_session("to-gw") is not None
    finally:
        await host_a.stop()
        await host_b.stop()
        await asyncio.wait_for(site_ep.close(timeout=1.0), 5)
        await asyncio.wait_for(gw_ep.close(timeout=1.0), 5)
