"""MOBIKE initiator (RFC 4555): aioipsec as a roaming client.

MOBIKE_SUPPORTED in IKE_AUTH (negotiated only when both sides want it), the
float to 4500, ``roam()`` sending UPDATE_SA_ADDRESSES with NAT-D for the new
address and a COOKIE2, the answer moving the local address and the Child SAs
(:class:`LocalAddressChanged`), COOKIE2 and forged answers, retransmission
and a dead peer, no update without MOBIKE, and the NAT-mapping check that
rides on liveness checks behind a NAT.  Both sides are aioipsec sessions
(the responder side has its own tests in ``test_ikev2_mobike.py``).
Addresses are documentation ranges."""

from __future__ import annotations

from typing import Any

import pytest
from ikev2_pair import NAT_PUBLIC, Pair, psk_pair_configs

from aioipsec.errors import LocalProtocolError
from aioipsec.events import (
    ChildSaInstalled,
    DpdTimeout,
    ExchangeStep,
    IkeSaDeleted,
    LocalAddressChanged,
    PeerAddressChanged,
)
from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.natd import natd_hash
from aioipsec.ike.v2.message import Message, decode_message
from aioipsec.ike.v2.tasks.common import notify

OLD = ("192.0.2.1", 4500)  # the client (ikev2_pair.I_ADDR), floated to 4500
NEW = ("192.0.2.77", 4500)  # its address on the new network
GW = ("192.0.2.2", 4500)
NAT = ("198.51.100.99", 41234)  # a NAT's public mapping of NEW


def _pair(*, i_mobike: bool = True, r_mobike: bool = True, nat: bool = False) -> Pair:
    i_cfg, r_cfg = psk_pair_configs(i_kw={"mobike": i_mobike}, r_kw={"mobike": r_mobike})
    p = Pair(i_cfg, r_cfg, nat=nat)
    p.initiate()
    p.settle()
    assert p.i.is_established and p.r is not None and p.r.is_established
    return p


def _kinds(p: Pair, side: str, kind: type) -> list[Any]:
    return [e for e in p.events(side, kind) if isinstance(e, kind)]


def _step(p: Pair, side: str, text: str) -> ExchangeStep:
    return [e for e in _kinds(p, side, ExchangeStep) if e.text == text][-1]


def _request(p: Pair) -> tuple[bytes, Message]:
    """The initiator's one outgoing request, and what the responder reads in it."""
    [(data, dst)] = p.i.datagrams_to_send(p.now)
    assert dst == GW
    assert p.r is not None and p.r.sa.sk is not None
    return data, decode_message(data, p.r.sa.sk)


def _notify(msg: Message, ntype: int) -> bytes | None:
    n = msg.get_notify(ntype)
    return None if n is None else n.data


@pytest.mark.parametrize(("i_mobike", "r_mobike"), [(True, True), (True, False), (False, True)])
def test_mobike_supported_sent_and_negotiated(i_mobike: bool, r_mobike: bool) -> None:
    p = _pair(i_mobike=i_mobike, r_mobike=r_mobike)
    assert p.r is not None
    sent = _step(p, "i", "IKE_AUTH sent").details["payloads"]
    got = _step(p, "i", "IKE_AUTH received").details["payloads"]
    assert ("N(MOBIKE_SUPPORTED)" in sent) is i_mobike
    assert ("N(MOBIKE_SUPPORTED)" in got) is (i_mobike and r_mobike)
    # used only when the answer has it too
    assert p.i.sa.mobike is (i_mobike and r_mobike) and p.r.sa.mobike is (i_mobike and r_mobike)
    # a MOBIKE initiator floats to 4500 in IKE_AUTH without any NAT (RFC 4555
    # §3.3, as charon); the Child SA still uses plain ESP
    assert p.i.nat_t is i_mobike
    assert p.i.local_addr == (("192.0.2.1", 4500) if i_mobike else ("192.0.2.1", 500))
    assert p.r.remote_addr == p.i.local_addr
    [c] = _kinds(p, "i", ChildSaInstalled)
    assert c.encap is False and c.local_addr == p.i.local_addr


def test_roam_sends_the_update_and_the_answer_moves_the_ike_and_child_sas() -> None:
    p = _pair()
    r = p.r
    assert r is not None
    spis = (p.i.sa.spi_i, p.i.sa.spi_r)
    [child] = p.i.child_sas
    p.clear_events()
    p.i.roam(NEW, p.now)
    data, req = _request(p)
    assert req.exchange_type == ExchangeType.INFORMATIONAL and not req.response
    assert req.has_notify(NotifyType.UPDATE_SA_ADDRESSES)
    # NAT-D for the new address (RFC 4555 §3.5) and an unpredictable COOKIE2 (§3.7)
    assert _notify(req, NotifyType.NAT_DETECTION_SOURCE_IP) == natd_hash(*spis, NEW)
    assert _notify(req, NotifyType.NAT_DETECTION_DESTINATION_IP) == natd_hash(*spis, GW)
    cookie2 = _notify(req, NotifyType.COOKIE2)
    assert cookie2 is not None and 8 <= len(cookie2) <= 64
    # nothing moves before the peer answers
    assert p.i.local_addr == OLD and not _kinds(p, "i", LocalAddressChanged)
    r.receive_datagram(data, NEW, p.now)  # the caller sent it from NEW
    [moved] = _kinds(p, "r", PeerAddressChanged)
    assert moved.new_addr == NEW
    [(resp, dst)] = r.datagrams_to_send(p.now)
    assert dst == NEW
    p.i.receive_datagram(resp, GW, p.now)
    [ev] = _kinds(p, "i", LocalAddressChanged)
    assert (ev.old_addr, ev.new_addr, ev.encap, ev.peer) == (OLD, NEW, False, "192.0.2.2[4500]")
    assert p.i.local_addr == NEW and not p.i.sa.nat_local and not p.i.sa.nat_remote
    # the same IKE SA and Child SA go on, from the new address
    assert (p.i.sa.spi_i, p.i.sa.spi_r) == spis and p.i.child_sas == [child] and child.encap is False
    assert p.i.is_established and not _kinds(p, "i", IkeSaDeleted)


def test_roam_behind_a_nat_turns_udp_encapsulation_on() -> None:
    p = _pair()
    r = p.r
    assert r is not None
    [child] = p.i.child_sas
    p.clear_events()
    p.i.roam(NEW, p.now)
    data, _ = _request(p)
    r.receive_datagram(data, NAT, p.now)  # the new network NATs the client
    [(resp, _)] = r.datagrams_to_send(p.now)
    p.i.receive_datagram(resp, GW, p.now)
    [ev] = _kinds(p, "i", LocalAddressChanged)
    assert (ev.new_addr, ev.encap) == (NEW, True)
    assert p.i.sa.nat_local and not p.i.sa.nat_remote and child.encap is True
    assert p.i.sa.natd_dst == natd_hash(p.i.sa.spi_i, p.i.sa.spi_r, NAT)  # the mapping, for later checks


@pytest.mark.parametrize("cookie2", [None, b"\x00" * 16])
def test_an_answer_without_our_cookie2_closes_the_ike_sa_and_moves_nothing(cookie2: bytes | None) -> None:
    """RFC 4555 §3.7: the COOKIE2 must come back unchanged, else the IKE SA is
    closed.  The answer here is authentic (made with the responder's keys)."""
    p = _pair()
    r = p.r
    assert r is not None
    p.clear_events()
    p.i.roam(NEW, p.now)
    _, req = _request(p)
    spis = (p.i.sa.spi_i, p.i.sa.spi_r)
    resp = r.new_message(r.sa, ExchangeType.INFORMATIONAL, response=True, mid=req.message_id)
    resp.add(notify(NotifyType.NAT_DETECTION_SOURCE_IP, natd_hash(*spis, GW)))
    resp.add(notify(NotifyType.NAT_DETECTION_DESTINATION_IP, natd_hash(*spis, NEW)))
    if cookie2 is not None:
        resp.add(notify(NotifyType.COOKIE2, cookie2))
    [data] = r.encode(r.sa, resp)
    p.i.receive_datagram(data, GW, p.now)
    assert not _kinds(p, "i", LocalAddressChanged) and p.i.local_addr == OLD
    assert p.i.is_closed and "COOKIE2" in p.i.closed_reason
    [gone] = _kinds(p, "i", IkeSaDeleted)
    assert "COOKIE2" in gone.reason


def test_a_forged_answer_changes_nothing_and_the_real_one_still_counts() -> None:
    p = _pair()
    r = p.r
    assert r is not None
    p.clear_events()
    p.i.roam(NEW, p.now)
    data, _ = _request(p)
    r.receive_datagram(data, NEW, p.now)
    [(resp, _)] = r.datagrams_to_send(p.now)
    forged = bytearray(resp)
    forged[-1] ^= 0x01  # fails the integrity check
    before = p.i.stats.integrity_failed
    p.i.receive_datagram(bytes(forged), GW, p.now)
    assert p.i.stats.integrity_failed == before + 1
    assert p.i.local_addr == OLD and not _kinds(p, "i", LocalAddressChanged) and p.i.is_established
    assert p.i.sa.tm.active is not None  # still waiting for the real answer
    p.i.receive_datagram(resp, GW, p.now)
    [ev] = _kinds(p, "i", LocalAddressChanged)
    assert ev.new_addr == NEW and p.i.local_addr == NEW


def test_the_update_is_retransmitted_and_no_answer_means_a_dead_peer() -> None:
    p = _pair()
    p.clear_events()
    p.i.roam(NEW, p.now)
    first, _ = _request(p)
    resent: list[bytes] = []
    for _ in range(20):
        t = p.i.get_timer()
        assert t is not None
        p.now = t
        p.i.handle_timer(p.now)
        resent += [d for d, _ in p.i.datagrams_to_send(p.now)]
        if p.i.is_closed:
            break
    assert resent and all(d == first for d in resent)  # the same request, retransmitted
    assert len(resent) == p.i.retransmit_policy.tries
    assert _kinds(p, "i", DpdTimeout) and p.i.is_closed and p.i.closed_reason == "dead peer"
    assert not _kinds(p, "i", LocalAddressChanged) and p.i.local_addr == OLD


@pytest.mark.parametrize(("i_mobike", "r_mobike"), [(False, True), (True, False)])
def test_without_mobike_roam_sends_nothing_and_says_so(i_mobike: bool, r_mobike: bool) -> None:
    p = _pair(i_mobike=i_mobike, r_mobike=r_mobike)
    before = p.i.local_addr
    with pytest.raises(LocalProtocolError, match="MOBIKE was not negotiated"):
        p.i.roam(NEW, p.now)
    assert p.i.datagrams_to_send(p.now) == [] and p.i.sa.tm.active is None and not p.i.sa.tm.queued
    assert p.i.local_addr == before and p.i.is_established


def test_the_responder_does_not_move_the_ike_sa() -> None:
    """RFC 4555 §3.1: only the initiator decides the addresses."""
    p = _pair()
    assert p.r is not None and p.r.sa.mobike
    with pytest.raises(LocalProtocolError, match="only the initiator"):
        p.r.roam(("192.0.2.88", 4500), p.now)
    assert p.r.datagrams_to_send(p.now) == [] and not p.r.sa.tm.queued


def test_roam_before_establishment_is_refused() -> None:
    i_cfg, r_cfg = psk_pair_configs()
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    with pytest.raises(LocalProtocolError, match="not established"):
        p.i.roam(NEW, p.now)


def test_a_newer_roam_replaces_a_queued_update() -> None:
    p = _pair()
    p.i.dpd(p.now)  # an exchange in flight: the updates wait in the queue
    p.i.datagrams_to_send(p.now)
    p.i.roam(("192.0.2.50", 4500), p.now)
    p.i.roam(NEW, p.now)
    queued = [t for t in p.i.sa.tm.queued if getattr(t, "roam_to", None) is not None]
    assert [t.roam_to for t in queued] == [NEW]


def test_behind_a_nat_liveness_checks_find_a_changed_mapping_and_update() -> None:
    """strongSwan's MOBIKE DPD: behind a NAT our liveness checks carry NAT-D;
    when the peer's view of us (its NAT_DETECTION_DESTINATION_IP) changes, or
    is not known yet, an UPDATE_SA_ADDRESSES follows (a MOBIKE responder no
    longer follows a NAT's new mapping by itself)."""
    i_cfg, r_cfg = psk_pair_configs(i_kw={"dpd_delay": 10.0}, r_kw={"dpd_delay": 0.0})
    p = Pair(i_cfg, r_cfg, nat=True)
    p.initiate()
    p.settle()
    r = p.r
    assert r is not None and p.i.sa.mobike and p.i.sa.nat_local
    mapped = (NAT_PUBLIC, 44500)  # ikev2_pair's NAT: 40000 + port
    assert r.remote_addr == mapped

    def exchange(src: tuple[str, int]) -> Message:
        data, req = _request(p)
        r.receive_datagram(data, src, p.now)
        [(resp, dst)] = r.datagrams_to_send(p.now)
        assert dst == src
        p.i.receive_datagram(resp, GW, p.now)
        return req

    p.now += 10.0
    p.i.handle_timer(p.now)
    check = exchange(mapped)
    assert check.has_notify(NotifyType.NAT_DETECTION_SOURCE_IP) and not check.has_notify(NotifyType.UPDATE_SA_ADDRESSES)
    # the first check has nothing to compare with: one update for the current path
    update = exchange(mapped)
    assert update.has_notify(NotifyType.UPDATE_SA_ADDRESSES)
    assert p.i.datagrams_to_send(p.now) == []
    p.clear_events()
    # same mapping: the next check sends no update
    p.now += 10.0
    p.i.handle_timer(p.now)
    exchange(mapped)
    assert p.i.datagrams_to_send(p.now) == []
    # the NAT picked a new port: the check's answer shows it, the update moves the gateway
    new_mapping = (NAT_PUBLIC, 51234)
    p.now += 10.0
    p.i.handle_timer(p.now)
    exchange(new_mapping)
    assert r.remote_addr == mapped  # a MOBIKE responder did not follow the check by itself
    update = exchange(new_mapping)
    assert update.has_notify(NotifyType.UPDATE_SA_ADDRESSES)
    [moved] = _kinds(p, "r", PeerAddressChanged)
    assert (moved.old_addr, moved.new_addr, moved.encap) == (mapped, new_mapping, True)
    assert r.remote_addr == new_mapping and p.i.is_established


def test_an_ike_rekey_keeps_mobike_and_the_update_uses_the_new_sa() -> None:
    p = _pair()
    r = p.r
    assert r is not None
    old_spis = (p.i.sa.spi_i, p.i.sa.spi_r)
    p.i.rekey_ike_sa(p.now)
    p.settle()
    assert (p.i.sa.spi_i, p.i.sa.spi_r) != old_spis and p.i.sa.mobike and r.sa.mobike
    p.clear_events()
    p.i.roam(NEW, p.now)
    data, req = _request(p)
    assert (req.spi_i, req.spi_r) == (p.i.sa.spi_i, p.i.sa.spi_r)
    assert _notify(req, NotifyType.NAT_DETECTION_SOURCE_IP) == natd_hash(p.i.sa.spi_i, p.i.sa.spi_r, NEW)
    r.receive_datagram(data, NEW, p.now)
    [(resp, _)] = r.datagrams_to_send(p.now)
    p.i.receive_datagram(resp, GW, p.now)
    [ev] = _kinds(p, "i", LocalAddressChanged)
    assert ev.new_addr == NEW and p.i.local_addr == NEW and r.remote_addr == NEW
