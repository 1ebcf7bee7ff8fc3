"""MOBIKE address lists (RFC 4555 §3.4, §3.6; charon's ``ike_mobike``):
each side announces its additional addresses in IKE_AUTH and again in an
INFORMATIONAL when its address set changes; the peer keeps them
(``IkeSa.peer_addrs``, bounded), NO_ADDITIONAL_ADDRESSES empties the list,
malformed ones are counted and ignored.  Both sides are aioipsec sessions in
memory.  Addresses are documentation ranges."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

from ikev2_pair import Pair, psk_pair_configs
from mobike_helpers import send_informational

from aioipsec.events import DpdTimeout, ExchangeStep, LocalAddressChanged, PeerAddressChanged
from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.v2.message import decode_message
from aioipsec.ike.v2.session import PROBE_ROUNDS
from aioipsec.ike.v2.tasks.ike_mobike import MAX_PEER_ADDRESSES, MAX_SENT_ADDRESSES
from aioipsec.status import format_status, ike_row

I_HOST = ["192.0.2.1", "198.51.100.7", "2001:db8::7", "127.0.0.1", "fe80::1", "::1"]
R_HOST = ["192.0.2.2", "203.0.113.9"]


def _pair(*, i_host: list[str] | None = None, r_host: list[str] | None = None, mobike: bool = True) -> Pair:
    i_cfg, r_cfg = psk_pair_configs(i_kw={"mobike": mobike}, r_kw={"mobike": mobike})
    p = Pair(i_cfg, r_cfg)
    if i_host is not None:
        p.i.set_local_addresses(i_host, p.now)
    p.initiate()
    p.to_r(p.out_i())  # IKE_SA_INIT: the responder session exists now
    assert p.r is not None
    if r_host is not None:
        p.r.set_local_addresses(r_host, p.now)
    p.settle()
    assert p.i.is_established and p.r.is_established
    return p


def _auth_payloads(p: Pair, side: str, direction: str) -> str:
    [step] = [e for e in p.events(side, ExchangeStep) if isinstance(e, ExchangeStep)
              and e.text == f"IKE_AUTH {direction}"]
    return str(step.details["payloads"])


def test_ike_auth_carries_both_address_lists_and_each_side_keeps_the_others() -> None:
    p = _pair(i_host=I_HOST, r_host=R_HOST)
    r = p.r
    assert r is not None and p.i.sa.mobike and r.sa.mobike
    # the IKE SA's own address, loopback and link-local are not announced
    assert r.sa.peer_addrs == ["198.51.100.7", "2001:db8::7"]
    assert p.i.sa.peer_addrs == ["203.0.113.9"]
    sent = _auth_payloads(p, "i", "sent")
    assert sent.count("N(ADDITIONAL_IP4_ADDRESS)") == 1 and sent.count("N(ADDITIONAL_IP6_ADDRESS)") == 1
    assert "N(NO_ADDITIONAL_ADDRESSES)" not in sent


def test_no_other_address_sends_no_additional_addresses() -> None:
    p = _pair(i_host=["192.0.2.1", "127.0.0.1"])
    assert p.r is not None and p.r.sa.peer_addrs == []
    assert "N(NO_ADDITIONAL_ADDRESSES)" in _auth_payloads(p, "i", "sent")
    assert "N(NO_ADDITIONAL_ADDRESSES)" in _auth_payloads(p, "i", "received")  # the responder knows none


def test_without_mobike_no_address_list_is_sent() -> None:
    p = _pair(i_host=I_HOST, r_host=R_HOST, mobike=False)
    assert "ADDITIONAL" not in _auth_payloads(p, "i", "sent") + _auth_payloads(p, "i", "received")
    assert p.r is not None and p.r.sa.peer_addrs == [] and p.i.sa.peer_addrs == []


def test_a_changed_address_set_sends_an_update_that_the_peer_keeps() -> None:
    p = _pair(i_host=I_HOST, r_host=R_HOST)
    r = p.r
    assert r is not None
    p.clear_events()
    # the same set (another order, a loopback more) is no change
    assert not p.i.set_local_addresses(["2001:db8::7", "198.51.100.7", "192.0.2.1", "127.0.0.2"], p.now)
    assert not p.i.datagrams_to_send(p.now)
    assert p.i.set_local_addresses(["192.0.2.1", "198.51.100.8"], p.now)
    [(data, _)] = p.i.datagrams_to_send(p.now)
    assert r.sa.sk is not None
    req = decode_message(data, r.sa.sk)
    assert req.exchange_type == ExchangeType.INFORMATIONAL and not req.has_notify(NotifyType.UPDATE_SA_ADDRESSES)
    [n] = [n for n in req.notifies if n.notify_type == NotifyType.ADDITIONAL_IP4_ADDRESS]
    assert n.data == ipaddress.ip_address("198.51.100.8").packed
    p.to_r([data])
    p.to_i(p.out_r())
    assert r.sa.peer_addrs == ["198.51.100.8"]
    # nothing moved, on either side, and the exchange is done
    assert not p.events("i", LocalAddressChanged) and not p.events("r", PeerAddressChanged)
    assert p.i.sa.tm.active is None and p.i.is_established
    # the last other address gone: NO_ADDITIONAL_ADDRESSES empties the list
    assert p.i.set_local_addresses(["192.0.2.1"], p.now)
    p.settle()
    assert r.sa.peer_addrs == [] and r.is_established


def test_the_responder_announces_its_changes_too() -> None:
    p = _pair(i_host=I_HOST, r_host=R_HOST)
    r = p.r
    assert r is not None
    assert r.set_local_addresses(["192.0.2.2", "203.0.113.10", "2001:db8::2"], p.now)
    p.settle()
    assert p.i.sa.peer_addrs == ["203.0.113.10", "2001:db8::2"]
    assert p.i.local_addr[0] == "192.0.2.1" and r.remote_addr[0] == "192.0.2.1"


def test_the_lists_survive_an_ike_rekey() -> None:
    p = _pair(i_host=I_HOST, r_host=R_HOST)
    r = p.r
    assert r is not None
    old = p.i.sa.spi_i
    p.i.rekey_ike_sa(p.now)
    p.settle()
    assert p.i.sa.spi_i != old
    assert p.i.sa.peer_addrs == ["203.0.113.9"] and r.sa.peer_addrs == ["198.51.100.7", "2001:db8::7"]
    assert r.set_local_addresses(["192.0.2.2"], p.now)  # the new IKE SA still knows what it sent
    p.settle()
    assert p.i.sa.peer_addrs == []


def test_malformed_addresses_are_counted_and_ignored_and_the_list_is_bounded() -> None:
    p = _pair()
    r = p.r
    assert r is not None
    good = [(NotifyType.ADDITIONAL_IP4_ADDRESS, bytes([198, 51, 100, n])) for n in range(1, MAX_PEER_ADDRESSES + 5)]
    bad = [(NotifyType.ADDITIONAL_IP4_ADDRESS, bytes(5)), (NotifyType.ADDITIONAL_IP6_ADDRESS, bytes(4)),
           (NotifyType.ADDITIONAL_IP4_ADDRESS, bytes([192, 0, 2, 1]))]  # the peer's current address
    before = r.stats.malformed
    t, req = send_informational(p.i, p.now, update=False, extra=bad[:2] + good + bad[2:])
    r.receive_datagram(req, p.i.local_addr, p.now)
    [(resp, _)] = r.datagrams_to_send(p.now)
    p.i.receive_datagram(resp, r.local_addr, p.now)
    assert t.response is not None and t.response.error_notify() is None
    assert r.stats.malformed == before + 2
    assert r.sa.peer_addrs == [f"198.51.100.{n}" for n in range(1, MAX_PEER_ADDRESSES + 1)]
    # only malformed ones: the list stays as it was
    t, req = send_informational(p.i, p.now, update=False, extra=bad[:2])
    r.receive_datagram(req, p.i.local_addr, p.now)
    assert len(r.sa.peer_addrs) == MAX_PEER_ADDRESSES and r.stats.malformed == before + 4


def test_at_most_eight_of_ours_are_sent() -> None:
    many = ["192.0.2.1"] + [f"198.51.100.{n}" for n in range(1, 20)]
    p = _pair(i_host=many)
    assert p.r is not None
    assert p.r.sa.peer_addrs == [f"198.51.100.{n}" for n in range(1, MAX_SENT_ADDRESSES + 1)]


def test_status_shows_the_peers_additional_addresses() -> None:
    p = _pair(i_host=I_HOST, r_host=R_HOST)
    proto = SimpleNamespace(session=p.r, ike_info=None, name="rw")
    row = ike_row(proto, p.now, [])
    assert row["remote_additional_addrs"] == ["198.51.100.7", "2001:db8::7"]
    text = format_status({"ike_sas": [row], "static_children": [], "endpoint": {}})
    assert "  remote additional addresses: 198.51.100.7, 2001:db8::7" in text.splitlines()
    assert ike_row(SimpleNamespace(session=p.i, ike_info=None, name="rw"), p.now, [])[
        "remote_additional_addrs"] == ["203.0.113.9"]


# ---------------------------------------------------------------- path probing


def _fail_current_path(p: Pair, limit: float = 600.0) -> list[tuple[bytes, tuple[str, int]]]:
    """A DPD of the initiator whose path to the peer's current address is
    gone: run its timers, dropping everything sent, until a probe round goes
    to more than one destination; that round."""
    p.i.dpd(p.now)
    p.i.datagrams_to_send(p.now)
    end = p.now + limit
    while p.now < end:
        t = p.i.get_timer()
        assert t is not None and not p.i.is_closed
        p.now = t
        p.i.handle_timer(p.now)
        out = p.i.datagrams_to_send(p.now)
        if len(out) > 1:
            return out
    raise AssertionError("no probe round")


def test_a_failed_path_is_probed_and_the_peers_other_address_taken() -> None:
    p = _pair(i_host=I_HOST, r_host=R_HOST)
    r = p.r
    assert r is not None
    gw_old, gw_new = r.local_addr, ("203.0.113.9", r.local_addr[1])
    spis = (p.i.sa.spi_i, p.i.sa.spi_r)
    p.clear_events()
    out = _fail_current_path(p)
    # the same request (the DPD), to the current path and the peer's other (IPv4) address
    assert [dst for _, dst in out] == [gw_old, gw_new] and out[0][0] == out[1][0]
    assert p.i.sa.probes == 1 and p.i.remote_addr == gw_old
    # only the other address reaches the peer; it answers from there
    r.receive_datagram(out[1][0], p.i.local_addr, p.now)
    [(resp, dst)] = r.datagrams_to_send(p.now)
    assert dst == p.i.local_addr
    p.i.receive_datagram(resp, gw_new, p.now)
    p._drain_events()
    [moved] = p.events("i", PeerAddressChanged)
    assert isinstance(moved, PeerAddressChanged) and (moved.old_addr, moved.new_addr) == (gw_old, gw_new)
    assert p.i.remote_addr == gw_new and p.i.sa.probes == 0 and p.i.is_established
    # then UPDATE_SA_ADDRESSES to the address that answered (RFC 4555 §3.5: the initiator decides)
    [(upd, dst)] = p.i.datagrams_to_send(p.now)
    assert dst == gw_new and r.sa.sk is not None
    req = decode_message(upd, r.sa.sk)
    assert req.has_notify(NotifyType.UPDATE_SA_ADDRESSES) and req.has_notify(NotifyType.COOKIE2)
    assert req.has_notify(NotifyType.NAT_DETECTION_SOURCE_IP)
    r.receive_datagram(upd, p.i.local_addr, p.now)
    [(resp, _)] = r.datagrams_to_send(p.now)
    p.i.receive_datagram(resp, gw_new, p.now)
    p._drain_events()
    assert p.i.is_established and not p.i.sa.tm.active and (p.i.sa.spi_i, p.i.sa.spi_r) == spis
    assert not p.events("i", DpdTimeout) and p.i.remote_addr == gw_new


def test_probing_is_bounded_and_then_the_peer_is_dead() -> None:
    p = _pair(i_host=I_HOST, r_host=["192.0.2.2", "203.0.113.9", "203.0.113.10", "2001:db8::2"])
    p.clear_events()
    start = p.now
    out = _fail_current_path(p)
    assert len(out) == 3  # the current path and the two other IPv4 addresses; not the IPv6 one
    rounds = 1
    while not p.i.is_closed:
        t = p.i.get_timer()
        assert t is not None
        p.now = t
        p.i.handle_timer(p.now)
        sent = p.i.datagrams_to_send(p.now)
        if sent:
            assert len(sent) == 3
            rounds += 1
    p._drain_events()
    assert rounds == PROBE_ROUNDS and p.events("i", DpdTimeout) and p.i.closed_reason == "dead peer"
    assert p.now - start <= 600  # the retransmits, then PROBE_ROUNDS x PROBE_INTERVAL more


def test_without_other_addresses_a_failed_path_is_not_probed() -> None:
    p = _pair(i_host=I_HOST)
    assert p.i.sa.peer_addrs == []
    p.i.dpd(p.now)
    p.i.datagrams_to_send(p.now)
    while not p.i.is_closed:
        t = p.i.get_timer()
        assert t is not None
        p.now = t
        p.i.handle_timer(p.now)
        assert len(p.i.datagrams_to_send(p.now)) <= 1
    p._drain_events()
    assert p.events("i", DpdTimeout) and not [e for e in p.events("i", ExchangeStep)
                                               if isinstance(e, ExchangeStep) and e.text == "MOBIKE path probe"]


def test_after_a_move_an_address_update_leaves_the_new_address_out() -> None:
    p = _pair(i_host=I_HOST, r_host=R_HOST)
    r = p.r
    assert r is not None and r.sa.sk is not None
    new = ("198.51.100.7", p.i.local_addr[1])
    # the old address is gone: no update from it
    assert not p.i.set_local_addresses(["198.51.100.7", "2001:db8::7"], p.now)
    assert not p.i.datagrams_to_send(p.now)
    p.i.roam(new, p.now)
    [(upd, _)] = p.i.datagrams_to_send(p.now)
    req = decode_message(upd, r.sa.sk)
    assert req.has_notify(NotifyType.UPDATE_SA_ADDRESSES)
    assert not [n for n in req.notifies if n.notify_type in (
        NotifyType.ADDITIONAL_IP4_ADDRESS, NotifyType.ADDITIONAL_IP6_ADDRESS, NotifyType.NO_ADDITIONAL_ADDRESSES)]
    r.receive_datagram(upd, new, p.now)
    [(resp, _)] = r.datagrams_to_send(p.now)
    p.i.receive_datagram(resp, r.local_addr, p.now)
    assert p.i.local_addr == new
    [(lst, _)] = p.i.datagrams_to_send(p.now)
    req = decode_message(lst, r.sa.sk)
    assert not req.has_notify(NotifyType.UPDATE_SA_ADDRESSES)
    assert [n.data for n in req.notifies if n.notify_type == NotifyType.ADDITIONAL_IP6_ADDRESS] == [
        ipaddress.ip_address("2001:db8::7").packed]
    assert not [n for n in req.notifies if n.notify_type == NotifyType.ADDITIONAL_IP4_ADDRESS]
    r.receive_datagram(lst, new, p.now)
    assert r.sa.peer_addrs == ["2001:db8::7"]
