"""A peer that starts a NEW IKEv1 Phase 1 (and Quick Modes) from a new address
or port: IKEv1 has no MOBIKE, so a NAT rebinding or an address change ends in a
new Main Mode.  As in strongSwan (uniqueids / swanctl ``unique``) and pluto, the
new ISAKMP SA with the same identities replaces the old one: the gateway keeps
no IPsec SA that still sends to the old address, and traffic flows on the SAs
of the new address.

Two asyncio endpoints on the in-memory network:

* the site comes back from another IP address after losing its state: the
  gateway's old session (another peer address, so another session) and its
  IPsec SAs are deleted once the new Phase 1 is established (the default
  ``unique = "no"``, with the INITIAL-CONTACT the restarted site sends), kept
  with ``unique = "never"``;
* the NAT in front of the site changes its mappings and the site renews its
  Phase 1 (no INITIAL-CONTACT: a renewal keeps the IPsec SAs) from the new
  port: the IPsec SAs the renewal keeps follow the new mapping.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asyncwait import Host, until
from test_nat_rebinding import GW, NAT_IP, SITE, Napt

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.events import IkeSaDeleted, PeerAddressChanged
from aioipsec.netutil import udp_packet
from aioipsec.transports.memory import memory_pipe

NET_A, NET_B = "198.51.100.0/24", "203.0.113.0/24"
HOST_A, HOST_B = "198.51.100.10", "203.0.113.10"
SITE2 = "192.0.2.11"  # where the site comes back from
PSK = "ikev1-new-phase1-psk"


def site_cfg(addr: str) -> Any:
    return connection("to-gw", version=1, psk=PSK, local_id="site.example", remote_id="gw.example",
                      local_addrs=[addr], remote_addrs=[GW], dpd_delay=0,
                      children=[child("lan", local_ts=[NET_A], remote_ts=[NET_B])])


def gw_cfg(**kw: Any) -> Any:
    return connection("to-site", version=1, psk=PSK, local_id="gw.example", remote_id="site.example",
                      local_addrs=[GW], remote_addrs=["%any"], dpd_delay=0,
                      children=[child("lan", local_ts=[NET_B], remote_ts=[NET_A])], **kw)


async def _send_until(app: Any, host: Host, payload: bytes, src: str, dst: str, timeout: float = 5.0) -> int:
    """Send ``payload`` every 50 ms until ``host`` got it; the number sent."""
    loop = asyncio.get_running_loop()
    deadline, sent = loop.time() + timeout, 0
    while payload not in host.payloads() and loop.time() < deadline:
        app.send_batch([udp_packet(src, dst, 7, 9, payload)])
        sent += 1
        await asyncio.sleep(0.05)
    assert payload in host.payloads(), f"{payload!r} never arrived ({sent} sent)"
    return sent


async def _site_comes_back_from_a_new_address(unique: str | None) -> tuple[list[Any], Any, dict[str, Any]]:
    net = MemoryNetwork()
    site_in, site_app = memory_pipe(queue_size=1024)
    site2_in, site2_app = memory_pipe(queue_size=1024)
    gw_in, gw_app = memory_pipe(queue_size=1024)
    gw_ep = await Endpoint.create(GW, configurations=[gw_cfg(**({"unique": unique} if unique else {}))],
                                  network=net, inner=gw_in)
    site_ep = await Endpoint.create(SITE, configurations=[site_cfg(SITE)], network=net, inner=site_in)
    events: list[Any] = []
    gw_ep.event_listeners.append(lambda p, ev: events.append((p, ev)))
    host_a, host_a2, host_b = Host(site_app), Host(site2_app), Host(gw_app)
    for h in (host_a, host_a2, host_b):
        h.start()
    site2_ep = None
    try:
        site_ep.initiate("to-gw", "lan")
        await until(lambda: gw_ep.dataplane.outbound and site_ep.dataplane.outbound, what="IPsec SAs")
        await _send_until(gw_app, host_a, b"before", HOST_B, HOST_A)
        (old,) = gw_ep.sessions
        # the site loses its state (no delete reaches the gateway) and comes back from SITE2
        await asyncio.wait_for(site_ep.close(delete=False), 5)
        site2_ep = await Endpoint.create(SITE2, configurations=[site_cfg(SITE2)], network=net, inner=site2_in)
        site2_ep.initiate("to-gw", "lan")
        await until(lambda: site2_ep.dataplane.outbound, what="the new IPsec SA at the site")
        await until(lambda: any(p is not old and p.session.is_established for p in gw_ep.sessions),
                    what="the gateway's new session")
        # traffic from the gateway reaches the site at its new address
        await _send_until(gw_app, host_a2, b"after", HOST_B, HOST_A)
        await _send_until(site2_app, host_b, b"from the new site", HOST_A, HOST_B)
        snap = {"outbound": [p.remote for p in gw_ep.dataplane.outbound],
                "sessions": [(p is old, p.session.remote_addr) for p in gw_ep.sessions if not p.session.is_closed]}
        return events, old, snap
    finally:
        for h in (host_a, host_a2, host_b):
            await h.stop()
        if site2_ep is not None:
            await asyncio.wait_for(site2_ep.close(timeout=1.0), 5)
        await asyncio.wait_for(gw_ep.close(timeout=1.0), 5)


async def test_a_new_phase1_from_a_new_address_replaces_the_old_session_and_its_ipsec_sas() -> None:
    events, old, snap = await _site_comes_back_from_a_new_address(None)
    # the old session (peer at SITE) was deleted with its IPsec SA, because of the new one
    gone = [ev for p, ev in events if p is old and isinstance(ev, IkeSaDeleted)]
    assert gone and "replaced" in gone[0].reason and SITE2 in gone[0].reason, gone
    assert old.session.is_closed
    deleted_children = [ev for p, ev in events if p is old and type(ev).__name__ == "ChildSaDeleted"]
    assert len(deleted_children) == 1 and "replaced" in deleted_children[0].reason
    # while the site was at SITE2: one session at the gateway, and its only outbound SA sends there
    assert snap["sessions"] == [(False, (SITE2, 500))], snap
    assert snap["outbound"] == [(SITE2, 500)], snap
    installed = [ev for p, ev in events if type(ev).__name__ == "ChildSaInstalled"]
    assert [ev.remote_addr[0] for ev in installed] == [SITE, SITE2]
    # the delete of the old SA happened before the new IPsec SA was installed (the last
    # delete is the site's close at the end of the test)
    order = [(type(ev).__name__, p is old, getattr(ev, "reason", "")) for p, ev in events
             if type(ev).__name__ in ("ChildSaInstalled", "ChildSaDeleted")]
    assert [x[:2] for x in order] == [("ChildSaInstalled", True), ("ChildSaDeleted", True),
                                      ("ChildSaInstalled", False), ("ChildSaDeleted", False)], order
    assert order[-1][2] == "deleted by peer"


async def test_unique_never_keeps_the_old_session() -> None:
    events, old, snap = await _site_comes_back_from_a_new_address("never")
    # both sessions lived on, each with its IPsec SA (the old one towards the address the site left)
    assert sorted(snap["sessions"]) == [(False, (SITE2, 500)), (True, (SITE, 500))], snap
    assert sorted(snap["outbound"]) == [(SITE, 500), (SITE2, 500)], snap
    # no replacement while both lived (the endpoint's own close deleted it at the end)
    gone = [ev for p, ev in events if p is old and isinstance(ev, IkeSaDeleted)]
    assert all("replaced" not in ev.reason for ev in gone), gone
    deleted_children = [ev for p, ev in events if p is old and type(ev).__name__ == "ChildSaDeleted"]
    assert all("replaced" not in ev.reason for ev in deleted_children), deleted_children


async def test_a_phase1_renewal_from_a_new_nat_mapping_moves_the_kept_ipsec_sas() -> None:
    """The NAT in front of the site gives it new ports (both 500 and 4500),
    then the site renews its Phase 1: the renewal is authenticated, keeps the
    IPsec SAs (no INITIAL-CONTACT) and comes from the new mapping, so those
    SAs must send there too."""
    net = MemoryNetwork()
    nat = Napt()
    net.nat = nat
    site_in, site_app = memory_pipe(queue_size=1024)
    gw_in, gw_app = memory_pipe(queue_size=1024)
    gw_ep = await Endpoint.create(GW, configurations=[gw_cfg()], network=net, inner=gw_in)
    site_ep = await Endpoint.create(SITE, configurations=[site_cfg(SITE)], network=net, inner=site_in)
    moved: list[Any] = []
    gw_ep.event_listeners.append(lambda _p, ev: moved.append(ev) if isinstance(ev, PeerAddressChanged) else None)
    host_a, host_b = Host(site_app), Host(gw_app)
    host_a.start()
    host_b.start()
    try:
        site_ep.initiate("to-gw", "lan")
        await until(lambda: gw_ep.dataplane.outbound and site_ep.dataplane.outbound, what="IPsec SAs")
        (pipe,) = gw_ep.dataplane.outbound
        assert pipe.remote == (NAT_IP, 44500)
        await _send_until(gw_app, host_a, b"before", HOST_B, HOST_A)
        (gw_s,) = gw_ep.sessions
        spi_in = next(iter(gw_s.session.children))

        nat.ports = {500: 40501, 4500: 44501}  # the NAT rebooted: new mappings
        site_s = site_ep.find_session("to-gw")
        assert site_s is not None
        old_sa = site_s.session.sa
        site_s.session.rekey_ike_sa(asyncio.get_running_loop().time())
        site_s.process()
        await until(lambda: site_s.session.sa is not old_sa and site_s.session.sa.established
                    and len(gw_s.session.sas) == 1, what="the renewed Phase 1")
        # the same session and IPsec SA at the gateway, now sending to the new mapping
        assert gw_ep.sessions == {gw_s} and list(gw_s.session.children) == [spi_in]
        assert gw_s.session.remote_addr == (NAT_IP, 44501)
        assert [(e.old_addr, e.new_addr) for e in moved] == [((NAT_IP, 44500), (NAT_IP, 44501))]
        assert [p.remote for p in gw_ep.dataplane.outbound] == [(NAT_IP, 44501)]
        await _send_until(gw_app, host_a, b"after", HOST_B, HOST_A)
    finally:
        await host_a.stop()
        await host_b.stop()
        await asyncio.wait_for(site_ep.close(timeout=1.0), 5)
        await asyncio.wait_for(gw_ep.close(timeout=1.0), 5)
