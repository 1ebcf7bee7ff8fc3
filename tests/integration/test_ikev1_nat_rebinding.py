"""IKEv1 follows a changed NAT mapping (RFC 3947 §5 / RFC 3948; what charon's
update_hosts and pluto's "NAT-T: updating remote port" do): an authenticated
ISAKMP message of an established ISAKMP SA (a protected Informational such
as DPD R-U-THERE, or Quick Mode) from a new address or port moves the peer's
address, answers go there and :class:`PeerAddressChanged` tells the data
plane to move the IPsec SAs, unless we are behind the NAT ourselves.

Sans-I/O first (two sessions of :mod:`ikev1_pair` with its NAT in front of
the initiator), then two asyncio endpoints on the in-memory network with a
NAPT that changes the site's 4500 mapping mid-tunnel."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncwait import Host, until
from ikev1_pair import ADDR_R, Nat, Pair, psk_configs
from test_nat_rebinding import GW, NAT_IP, SITE, Napt

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.events import ChildSaInstalled, PeerAddressChanged
from aioipsec.ike.v1.constants import ExchangeType
from aioipsec.ike.v1.message import peek_header
from aioipsec.netutil import udp_packet
from aioipsec.transports.memory import memory_pipe

PUBLIC = "203.0.113.7"  # the public address of ikev1_pair's NAT
R_NATT = (ADDR_R[0], 4500)


def _behind_nat() -> Pair:
    """An initiator behind the NAT, a responder in the open; IKE floated to
    4500 (the NAT maps the initiator's 4500 to 40001)."""
    p = Pair(*psk_configs(dpd_delay=0), nat=Nat(public_ip=PUBLIC))
    p.start()
    assert p.i.is_established and p.r.is_established and len(p.r.children) == 1
    assert p.r.remote_addr == (PUBLIC, 40001) and p.i.remote_addr == R_NATT
    p.clear_events()
    return p


def _moves(p: Pair, who: str) -> list[PeerAddressChanged]:
    s = p.session(who)
    out = []
    while (ev := s.next_event()) is not None:
        if isinstance(ev, PeerAddressChanged):
            out.append(ev)
        p.events[who].append(ev)
    return out


def _r_u_there(p: Pair, who: str) -> bytes:
    s = p.session(who)
    s.dpd(p.now)
    [(data, _dst)] = s.datagrams_to_send(p.now)
    assert peek_header(data).exchange == ExchangeType.INFORMATIONAL
    return data


def test_responder_not_behind_the_nat_follows_a_dpd_from_a_new_port() -> None:
    p = _behind_nat()
    req = _r_u_there(p, "i")
    p.r.receive_datagram(req, (PUBLIC, 40002), p.now)  # the NAT made a new mapping
    assert p.r.remote_addr == (PUBLIC, 40002)
    # the R-U-THERE-ACK goes to the new mapping
    [(ack, dst)] = p.r.datagrams_to_send(p.now)
    assert dst == (PUBLIC, 40002)
    (moved,) = _moves(p, "r")
    assert (moved.old_addr, moved.new_addr) == ((PUBLIC, 40001), (PUBLIC, 40002))
    assert p.r.stats["peer_moves"] == 1
    # the initiator takes the ACK (DPD answered: nothing pending)
    p.i.receive_datagram(ack, R_NATT, p.now)
    assert p.i.sas[0].dpd_pending_since is None
    # an IPsec SA negotiated afterwards is set up for the new address too
    p.nat.out[(p.i.local_addr[0], 4500)] = (PUBLIC, 40002)  # type: ignore[union-attr]
    p.i.create_child_sa("net", p.now)
    p.pump()
    (new_child,) = p.of("r", ChildSaInstalled)
    assert new_child.remote_addr == (PUBLIC, 40002)


def test_quick_mode_from_a_new_port_is_followed() -> None:
    p = _behind_nat()
    p.nat.out[(p.i.local_addr[0], 4500)] = (PUBLIC, 40007)  # type: ignore[union-attr]
    p.i.create_child_sa("net", p.now)
    p.pump()
    assert p.r.remote_addr == (PUBLIC, 40007)
    moved = [e for e in p.events["r"] if isinstance(e, PeerAddressChanged)]
    assert [(e.old_addr, e.new_addr) for e in moved] == [((PUBLIC, 40001), (PUBLIC, 40007))]
    # the move comes before the IPsec SA it negotiated: that one uses the new port
    kinds = [type(e) for e in p.events["r"] if isinstance(e, (PeerAddressChanged, ChildSaInstalled))]
    assert kinds == [PeerAddressChanged, ChildSaInstalled]
    assert p.of("r", ChildSaInstalled)[0].remote_addr == (PUBLIC, 40007)


def test_the_side_behind_the_nat_does_not_follow() -> None:
    """The initiator detected itself behind a NAT: an authenticated DPD from
    another port of the responder does not move it (counted); it answers
    the address it has and tells its data plane nothing."""
    p = _behind_nat()
    req = _r_u_there(p, "r")
    p.i.receive_datagram(req, (ADDR_R[0], 4501), p.now)
    assert p.i.remote_addr == R_NATT
    assert p.i.stats["peer_moves_ignored"] == 1 and p.i.stats["peer_moves"] == 0
    [(ack, dst)] = p.i.datagrams_to_send(p.now)
    assert dst == R_NATT
    assert _moves(p, "i") == []
    # the R-U-THERE was still answered
    p.r.receive_datagram(ack, (PUBLIC, 40001), p.now)
    assert p.r.sas[0].dpd_pending_since is None


def test_unauthenticated_or_replayed_datagrams_from_a_new_port_change_nothing() -> None:
    p = _behind_nat()
    req = _r_u_there(p, "i")
    dropped = p.r.stats["dropped"]
    # the R-U-THERE with one bit flipped in its encrypted body: HASH(1) fails
    bad = bytearray(req)
    bad[-5] ^= 0x01
    p.r.receive_datagram(bytes(bad), (PUBLIC, 40666), p.now)
    # garbage under the SA's cookies, and a truncated header
    p.r.receive_datagram(req[:28] + b"\x00" * 40, (PUBLIC, 40667), p.now)
    p.r.receive_datagram(req[:20], (PUBLIC, 40668), p.now)
    assert p.r.remote_addr == (PUBLIC, 40001)
    assert p.r.datagrams_to_send(p.now) == []
    assert p.r.stats["dropped"] >= dropped + 3
    assert _moves(p, "r") == []
    # the genuine one from the current mapping is answered there ...
    p.r.receive_datagram(req, (PUBLIC, 40001), p.now)
    assert [dst for _d, dst in p.r.datagrams_to_send(p.now)] == [(PUBLIC, 40001)]
    # ... and a replayed copy of it from elsewhere does not move the peer
    p.r.receive_datagram(req, (PUBLIC, 40669), p.now)
    assert p.r.remote_addr == (PUBLIC, 40001)
    assert p.r.stats["peer_moves_replayed"] == 1
    assert all(dst == (PUBLIC, 40001) for _d, dst in p.r.datagrams_to_send(p.now))
    assert _moves(p, "r") == []


def test_without_a_nat_the_responder_follows_too() -> None:
    """No NAT detected on either side: neither is behind a NAT, so a peer
    seen at a new address (and authenticated) is followed."""
    p = Pair(*psk_configs(dpd_delay=0))
    p.start()
    p.clear_events()
    req = _r_u_there(p, "i")
    p.r.receive_datagram(req, ("192.0.2.1", 500 + 1), p.now)
    assert p.r.remote_addr == ("192.0.2.1", 501)
    (moved,) = _moves(p, "r")
    assert moved.new_addr == ("192.0.2.1", 501)


# --------------------------------------------------------------------------- asyncio

NET_A, NET_B = "198.51.100.0/24", "203.0.113.0/24"
HOST_A, HOST_B = "198.51.100.10", "203.0.113.10"
PSK = "ikev1-nat-rebinding-psk"


async def test_ikev1_gateway_follows_a_changed_nat_mapping_and_traffic_resumes() -> None:
    """As tests/integration/test_nat_rebinding.py, with IKEv1: the NAPT in
    front of the site changes its 4500 mapping; the site's DPD (it hears
    nothing back) is the first authenticated message from the new port, the
    gateway moves the IPsec SA there and its packets reach the site again."""
    net = MemoryNetwork()
    nat = Napt()
    net.nat = nat
    site_in, site_app = memory_pipe(queue_size=1024)
    gw_in, gw_app = memory_pipe(queue_size=1024)
    site_cfg = connection("to-gw", version=1, psk=PSK, local_id="site.example", remote_id="gw.example",
                          local_addrs=[SITE], remote_addrs=[GW], dpd_delay=0.3,
                          children=[child("lan", local_ts=[NET_A], remote_ts=[NET_B])])
    gw_cfg = connection("to-site", version=1, psk=PSK, local_id="gw.example", remote_id="site.example",
                        local_addrs=[GW], remote_addrs=["%any"], dpd_delay=0,
                        children=[child("lan", local_ts=[NET_B], remote_ts=[NET_A])])
    gw_ep = await Endpoint.create(GW, configurations=[gw_cfg], network=net, inner=gw_in)
    site_ep = await Endpoint.create(SITE, configurations=[site_cfg], network=net, inner=site_in)
    moved: list[Any] = []
    gw_ep.event_listeners.append(lambda _p, ev: moved.append(ev) if isinstance(ev, PeerAddressChanged) else None)
    host_a, host_b = Host(site_app), Host(gw_app)
    host_a.start()
    host_b.start()
    try:
        site_ep.initiate("to-gw")
        await until(lambda: gw_ep.dataplane.outbound and site_ep.dataplane.outbound, what="IPsec SAs")
        (pipe,) = gw_ep.dataplane.outbound
        assert pipe.encap and pipe.remote == (NAT_IP, 44500)
        gw_app.send_batch([udp_packet(HOST_B, HOST_A, 7, 9, b"before")])
        await until(lambda: host_a.payloads() == [b"before"], what="the first packet")

        nat.ports[4500] = 44501  # the NAT lost the mapping and made a new one
        site_app.send_batch([udp_packet(HOST_A, HOST_B, 9, 7, b"from a")])
        await until(lambda: b"from a" in host_b.payloads(), what="site -> gateway after the change")
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
        gw_s, site_s = gw_ep.find_session("to-site"), site_ep.find_session("to-gw")
        assert gw_s is not None and site_s is not None
        assert gw_s.session.remote_addr == (NAT_IP, 44501)
    finally:
        await host_a.stop()
        await host_b.stop()
        await asyncio.wait_for(site_ep.close(timeout=1.0), 5)
        await asyncio.wait_for(gw_ep.close(timeout=1.0), 5)
