"""CREATE_CHILD_SA: new Child SAs, Child rekey (make-before-break), IKE
rekey, PFS, INVALID_KE retry, TEMPORARY_FAILURE and rekey collisions driven
to every outcome with scripted nonces."""

from __future__ import annotations

import pytest
from ikev2_pair import Pair, mirror, psk_pair_configs

from aioipsec.config import child
from aioipsec.events import ChildSaDeleted, ChildSaInstalled, IkeSaDeleted, IkeSaEstablished, NegotiationFailed
from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.v2.message import decode_message, peek_header
from aioipsec.ike.v2.payloads import KePayload, NoncePayload, SaPayload
from aioipsec.ike.v2.session import ChildState, IkeState

NO_TIMERS = {"dpd_delay": 0}


def up(i_cfg=None, r_cfg=None, **kw) -> Pair:  # type: ignore[no-untyped-def]
    if i_cfg is None:
        i_cfg, r_cfg = psk_pair_configs(i_kw=dict(NO_TIMERS), r_kw=dict(NO_TIMERS), **kw)
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    assert p.roundtrip() == (1, 1)
    assert p.roundtrip() == (1, 1)
    assert p.i.is_established
    return p


def installed(p: Pair, side: str) -> list[ChildSaInstalled]:
    return p.events(side, ChildSaInstalled)  # type: ignore[return-value]


def deleted(p: Pair, side: str) -> list[ChildSaDeleted]:
    return p.events(side, ChildSaDeleted)  # type: ignore[return-value]


def live(s) -> list[int]:  # type: ignore[no-untyped-def]
    return sorted(c.spi_in for c in s.child_sas if c.state is not ChildState.DELETED)


# --------------------------------------------------------------------------- Child rekey


@pytest.mark.parametrize("who", ["i", "r"])
def test_child_rekey_make_before_break(who: str) -> None:
    p = up()
    assert p.r is not None
    old_i, old_r = installed(p, "i")[0], installed(p, "r")[0]
    s = p.i if who == "i" else p.r
    old = old_i if who == "i" else old_r
    s.rekey_child_sa(old.spi_in, p.now)
    # CREATE_CHILD_SA
    if who == "i":
        req = p.out_i()
        assert len(req) == 1 and peek_header(req[0]).exchange_type == ExchangeType.CREATE_CHILD_SA
        msg = decode_message(req[0], p.r.sa.sk)
        rekey = msg.get_notify(NotifyType.REKEY_SA)
        assert rekey is not None and rekey.spi == old.spi_in.to_bytes(4, "big")
        assert msg.get(KePayload) is None and msg.get(NoncePayload) is not None
        p.to_r(req)
        p.to_i(p.out_r())
    else:
        req = p.out_r()
        assert len(req) == 1
        p.to_i(req)
        p.to_r(p.out_i())
    new_i, new_r = installed(p, "i")[1], installed(p, "r")[1]
    assert mirror(new_i, new_r)
    assert new_i.rekeyed_from == old_i.spi_in and new_r.rekeyed_from == old_r.spi_in
    assert new_i.encr_key_in != old_i.encr_key_in
    # the old inbound SAs are still there: nothing deleted before the delete exchange
    assert not deleted(p, "i") and not deleted(p, "r")
    # INFORMATIONAL delete of the old SA, by the rekey initiator
    if who == "i":
        req = p.out_i()
        assert len(req) == 1 and peek_header(req[0]).exchange_type == ExchangeType.INFORMATIONAL
        p.to_r(req)
        assert [d.spi_in for d in deleted(p, "r")] == [old_r.spi_in]
        assert not deleted(p, "i")
        p.to_i(p.out_r())
    else:
        req = p.out_r()
        p.to_i(req)
        assert [d.spi_in for d in deleted(p, "i")] == [old_i.spi_in]
        p.to_r(p.out_i())
    assert [d.spi_in for d in deleted(p, "i")] == [old_i.spi_in]
    assert [d.spi_in for d in deleted(p, "r")] == [old_r.spi_in]
    assert deleted(p, "i")[0].reason == deleted(p, "r")[0].reason == "rekeyed"
    assert p.settle() == 0
    assert live(p.i) == [new_i.spi_in] and live(p.r) == [new_r.spi_in]


def test_child_rekey_with_pfs() -> None:
    p = up(i_esp=["aes128gcm16-x25519"], r_esp=["aes128gcm16-x25519"])
    assert p.r is not None
    old = installed(p, "i")[0]
    p.i.rekey_child_sa(old.spi_in, p.now)
    [req] = p.out_i()
    msg = decode_message(req, p.r.sa.sk)
    ke = msg.get(KePayload)
    assert ke is not None and ke.group == 31
    p.to_r([req])
    [resp] = p.out_r()
    assert decode_message(resp, p.i.sa.sk).get(KePayload).group == 31
    p.to_i([resp])
    p.settle()
    new_i, new_r = installed(p, "i")[1], installed(p, "r")[1]
    assert mirror(new_i, new_r) and new_i.algorithms == "aes128gcm16-x25519"


def test_invalid_ke_in_create_child_sa() -> None:
    """First Child SA (IKE_AUTH) has no KE; at rekey we guess x25519, the
    responder wants ecp256, answers INVALID_KE_PAYLOAD and we retry."""
    p = up(i_esp=["aes128gcm16-x25519-ecp256"], r_esp=["aes128gcm16-ecp256"])
    assert p.r is not None
    old = installed(p, "i")[0]
    p.i.rekey_child_sa(old.spi_in, p.now)
    [req] = p.out_i()
    assert decode_message(req, p.r.sa.sk).get(KePayload).group == 31
    p.to_r([req])
    [resp] = p.out_r()
    n = decode_message(resp, p.i.sa.sk).notifies
    assert [x.notify_type for x in n] == [NotifyType.INVALID_KE_PAYLOAD] and n[0].data == b"\x00\x13"
    p.to_i([resp])
    [req2] = p.out_i()
    m2 = decode_message(req2, p.r.sa.sk)
    assert m2.get(KePayload).group == 19 and m2.message_id == 3
    p.to_r([req2])
    p.to_i(p.out_r())
    p.settle()
    assert len(installed(p, "i")) == 2 and mirror(installed(p, "i")[1], installed(p, "r")[1])
    assert live(p.i) == [installed(p, "i")[1].spi_in]


def test_create_second_child_sa() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_kw=dict(NO_TIMERS), r_kw=dict(NO_TIMERS))
    i_cfg.children["dmz"] = child("dmz", local_ts=["198.51.100.0/24"], remote_ts=["192.0.2.128/25"])
    r_cfg.children["dmz"] = child("dmz", local_ts=["192.0.2.128/25"], remote_ts=["198.51.100.0/24"])
    p = up(i_cfg, r_cfg)
    p.i.create_child_sa("dmz", p.now)
    assert p.roundtrip() == (1, 1)
    assert p.roundtrip() == (0, 0)
    ci, cr = installed(p, "i"), installed(p, "r")
    assert [c.name for c in ci] == ["lan", "dmz"] and [c.name for c in cr] == ["lan", "dmz"]
    assert mirror(ci[1], cr[1]) and ci[1].rekeyed_from is None


def test_create_child_sa_ts_unacceptable() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_kw=dict(NO_TIMERS), r_kw=dict(NO_TIMERS))
    i_cfg.children["other"] = child("other", local_ts=["198.51.100.0/24"], remote_ts=["10.1.0.0/16"])
    p = up(i_cfg, r_cfg)
    p.i.create_child_sa("other", p.now)
    p.to_r(p.out_i())
    [resp] = p.out_r()
    assert [n.notify_type for n in decode_message(resp, p.i.sa.sk).notifies] == [NotifyType.TS_UNACCEPTABLE]
    p.to_i([resp])
    assert p.events("i", NegotiationFailed)[-1].notify == "TS_UNACCEPTABLE"
    assert p.i.is_established and len(installed(p, "i")) == 1


def test_rekey_of_unknown_child_gets_child_sa_not_found() -> None:
    p = up()
    assert p.r is not None
    c = p.i.child_sas[0]
    # the responder lost the SA (e.g. expired there)
    p.r.remove_child(p.r.child_sas[0], "expired")
    p.i.rekey_child_sa(c.spi_in, p.now)
    p.to_r(p.out_i())
    [resp] = p.out_r()
    n = decode_message(resp, p.i.sa.sk).notifies
    assert n[0].notify_type == NotifyType.CHILD_SA_NOT_FOUND and n[0].spi == c.spi_in.to_bytes(4, "big")
    p.to_i([resp])
    assert deleted(p, "i")[-1].reason == "not found by peer"


# --------------------------------------------------------------------------- Child rekey collisions


def _collide(i_nonces: list[int], r_nonces: list[int]) -> Pair:
    """Both ends rekey the same Child SA at once; nonce first bytes are
    scripted: [request nonce, response nonce] per side."""
    p = up()
    assert p.r is not None
    ci, cr = installed(p, "i")[0], installed(p, "r")[0]
    p.rand_i.nonces = list(i_nonces)
    p.rand_r.nonces = list(r_nonces)
    p.i.rekey_child_sa(ci.spi_in, p.now)
    p.r.rekey_child_sa(cr.spi_in, p.now)
    req_i, req_r = p.out_i(), p.out_r()
    assert len(req_i) == len(req_r) == 1
    p.to_r(req_i)  # r answers i's rekey while its own is outstanding
    p.to_i(req_r)
    resp_r, resp_i = p.out_r(), p.out_i()
    p.to_i(resp_r)
    p.to_r(resp_i)
    p.settle()
    return p


@pytest.mark.parametrize(
    "i_nonces,r_nonces,winner",
    [
        ([0x01, 0x90], [0x80, 0x70], "r"),  # lowest: i's request nonce -> i's exchange loses
        ([0x80, 0x70], [0x01, 0x90], "i"),  # lowest: r's request nonce -> r's exchange loses
        ([0x80, 0x90], [0x70, 0x01], "r"),  # lowest: r's response to i -> i's exchange loses
        ([0x80, 0x01], [0x70, 0x90], "i"),  # lowest: i's response to r -> r's exchange loses
    ],
)
def test_child_rekey_collision_outcomes(i_nonces: list[int], r_nonces: list[int], winner: str) -> None:
    p = _collide(i_nonces, r_nonces)
    assert p.r is not None
    ii, rr = installed(p, "i"), installed(p, "r")
    assert len(ii) == len(rr) == 3  # original + one per exchange
    # exactly one Child SA survives, the same on both ends, created by the winner's exchange
    [spi_i] = live(p.i)
    [spi_r] = live(p.r)
    survivor_i = next(c for c in ii if c.spi_in == spi_i)
    survivor_r = next(c for c in rr if c.spi_in == spi_r)
    assert mirror(survivor_i, survivor_r)
    assert survivor_i.initiator == (winner == "i")
    reasons_i = sorted(d.reason for d in deleted(p, "i"))
    reasons_r = sorted(d.reason for d in deleted(p, "r"))
    loser = "i" if winner == "r" else "r"
    loser_reasons = reasons_i if loser == "i" else reasons_r
    assert "rekey collision" in loser_reasons and "rekeyed" in loser_reasons
    assert len(reasons_i) == len(reasons_r) == 2
    steps = [e.text for e in p.events(loser, __import__("aioipsec.events", fromlist=["ExchangeStep"]).ExchangeStep)]
    assert "CHILD_SA rekey collision lost" in steps


def test_child_rekey_collision_request_after_our_completion() -> None:
    """The peer's rekey request arrives after our rekey completed (reordered):
    we answer TEMPORARY_FAILURE; the peer gives up its rekey; our SA survives."""
    p = up()
    assert p.r is not None
    ci, cr = installed(p, "i")[0], installed(p, "r")[0]
    p.i.rekey_child_sa(ci.spi_in, p.now)
    p.r.rekey_child_sa(cr.spi_in, p.now)
    req_i, req_r = p.out_i(), p.out_r()
    p.to_r(req_i)
    resp_r = p.out_r()
    p.to_i(resp_r)  # i completes first and starts deleting the old SA
    delete_req = p.out_i()
    assert len(delete_req) == 1
    p.to_i(req_r)  # r's rekey request arrives late
    [tf] = p.out_i()
    assert [n.notify_type for n in decode_message(tf, p.r.sa.sk).notifies] == [NotifyType.TEMPORARY_FAILURE]
    p.to_r([tf])
    p.to_r(delete_req)
    p.to_i(p.out_r())
    p.settle()
    [spi_i] = live(p.i)
    [spi_r] = live(p.r)
    survivor_i = next(c for c in installed(p, "i") if c.spi_in == spi_i)
    assert survivor_i.initiator and mirror(survivor_i, next(c for c in installed(p, "r") if c.spi_in == spi_r))


def test_child_delete_collision() -> None:
    """Both ends delete the same Child SA at once: no Delete payloads in the responses."""
    p = up()
    assert p.r is not None
    ci, cr = installed(p, "i")[0], installed(p, "r")[0]
    p.i.delete_child_sa(ci.spi_in, p.now)
    p.r.delete_child_sa(cr.spi_in, p.now)
    req_i, req_r = p.out_i(), p.out_r()
    p.to_r(req_i)
    p.to_i(req_r)
    resp_r, resp_i = p.out_r(), p.out_i()
    assert decode_message(resp_r[0], p.i.sa.sk).payloads == []
    assert decode_message(resp_i[0], p.r.sa.sk).payloads == []
    p.to_i(resp_r)
    p.to_r(resp_i)
    assert len(deleted(p, "i")) == len(deleted(p, "r")) == 1
    assert live(p.i) == live(p.r) == []


# --------------------------------------------------------------------------- IKE rekey


@pytest.mark.parametrize("who", ["i", "r"])
def test_ike_rekey(who: str) -> None:
    p = up()
    assert p.r is not None
    old_spis = (p.i.spi_i, p.i.spi_r)
    s = p.i if who == "i" else p.r
    s.rekey_ike_sa(p.now)
    out = p.out_i() if who == "i" else p.out_r()
    [req] = out
    peer = p.r if who == "i" else p.i
    msg = decode_message(req, peer.sa.sk)
    assert msg.exchange_type == ExchangeType.CREATE_CHILD_SA
    sa = msg.get(SaPayload)
    assert sa.proposals[0].protocol == 1 and len(sa.proposals[0].spi) == 8
    assert msg.get(KePayload) is not None and msg.get(NoncePayload) is not None
    if who == "i":
        p.to_r(out)
        p.to_i(p.out_r())
    else:
        p.to_i(out)
        p.to_r(p.out_i())
    ei, er = p.events("i", IkeSaEstablished), p.events("r", IkeSaEstablished)
    assert len(ei) == len(er) == 2
    assert ei[1].rekeyed_from == er[1].rekeyed_from == old_spis[0]
    assert (ei[1].spi_i, ei[1].spi_r) == (er[1].spi_i, er[1].spi_r) != old_spis
    assert ei[1].initiator == (who == "i") and er[1].initiator == (who == "r")
    assert p.i.spi_i == ei[1].spi_i and p.r.spi_i == ei[1].spi_i
    # the rekey initiator deletes the old IKE SA (on the old SA)
    p.settle()
    assert [e.reason for e in p.events("i", IkeSaDeleted)] == ["rekeyed"]
    assert [e.reason for e in p.events("r", IkeSaDeleted)] == ["rekeyed"]
    assert p.i.old_sas == [] and p.r.old_sas == []
    assert not deleted(p, "i") and not deleted(p, "r")  # Child SAs survive
    assert p.i.sa.tm.my_mid == 0 and p.r.sa.tm.my_mid == 0
    # the new SA works: rekey the Child SA through it
    c = p.i.child_sas[0]
    p.i.rekey_child_sa(c.spi_in, p.now)
    [req] = p.out_i()
    assert peek_header(req).spi_i == ei[1].spi_i and peek_header(req).message_id == 0
    p.to_r([req])
    p.settle()
    assert mirror(installed(p, "i")[-1], installed(p, "r")[-1])
    assert installed(p, "i")[-1].ike_spi_i == ei[1].spi_i


def test_ike_rekey_refused_while_busy_then_retried() -> None:
    p = up()
    assert p.r is not None
    p.r.dpd(p.now)  # r has an exchange outstanding on the SA
    dpd_req = p.out_r()
    p.i.rekey_ike_sa(p.now)
    p.to_r(p.out_i())
    [resp] = p.out_r()
    assert [n.notify_type for n in decode_message(resp, p.i.sa.sk).notifies] == [NotifyType.TEMPORARY_FAILURE]
    p.to_i([resp])
    assert p.i.sa.state is IkeState.ESTABLISHED and p.i.sa.rekey_at < 60
    p.to_i(dpd_req)
    p.to_r(p.out_i())
    p.advance(61)
    p.settle()
    assert len(p.events("i", IkeSaEstablished)) == 2 and len(p.events("r", IkeSaEstablished)) == 2


def _ike_collide(i_nonces: list[int], r_nonces: list[int]) -> Pair:
    p = up()
    assert p.r is not None
    p.rand_i.nonces = list(i_nonces)
    p.rand_r.nonces = list(r_nonces)
    p.i.rekey_ike_sa(p.now)
    p.r.rekey_ike_sa(p.now)
    req_i, req_r = p.out_i(), p.out_r()
    p.to_r(req_i)
    p.to_i(req_r)
    resp_r, resp_i = p.out_r(), p.out_i()
    p.to_i(resp_r)
    p.to_r(resp_i)
    p.settle()
    return p


@pytest.mark.parametrize(
    "i_nonces,r_nonces,winner",
    [
        ([0x01, 0x90], [0x80, 0x70], "r"),
        ([0x80, 0x70], [0x01, 0x90], "i"),
        ([0x80, 0x90], [0x70, 0x01], "r"),
        ([0x80, 0x01], [0x70, 0x90], "i"),
    ],
)
def test_ike_rekey_collision_outcomes(i_nonces: list[int], r_nonces: list[int], winner: str) -> None:
    p = _ike_collide(i_nonces, r_nonces)
    assert p.r is not None
    assert p.i.spi_i == p.r.spi_i and p.i.spi_r == p.r.spi_r
    assert p.i.sa.initiator == (winner == "i") and p.r.sa.initiator == (winner == "r")
    assert p.i.old_sas == [] and p.r.old_sas == []
    assert p.i.is_established and p.r.is_established
    # both ended on the winner's SA, the old and the redundant one deleted
    assert sorted(e.reason for e in p.events("i", IkeSaDeleted)).count("rekeyed") >= 1
    assert len(p.events("i", IkeSaDeleted)) == len(p.events("r", IkeSaDeleted)) == 2
    # the surviving SA works
    p.i.dpd(p.now)
    assert p.roundtrip() == (1, 1)
    assert p.i.stats.internal_errors == 0 and p.r.stats.internal_errors == 0


# --------------------------------------------------------------------------- deletes and DPD


def test_delete_child_from_responder() -> None:
    p = up()
    assert p.r is not None
    cr = installed(p, "r")[0]
    p.r.delete_child_sa(cr.spi_in, p.now)
    assert p.roundtrip() == (0, 0) or True
    p.settle()
    assert deleted(p, "i")[0].reason == "deleted by peer" and deleted(p, "r")[0].reason == "deleted locally"


@pytest.mark.parametrize("who", ["i", "r"])
def test_delete_ike_sa(who: str) -> None:
    p = up()
    assert p.r is not None
    (p.i if who == "i" else p.r).delete(p.now)
    p.settle()
    assert p.i.is_closed and p.r.is_closed
    other = "r" if who == "i" else "i"
    assert p.events(who, IkeSaDeleted)[0].reason == "deleted locally"
    assert p.events(other, IkeSaDeleted)[0].reason == "deleted by peer"
    assert deleted(p, "i")[0].reason == deleted(p, "r")[0].reason == "ike sa deleted"
    assert p.i.get_timer() is None and p.r.get_timer() is None


def test_dpd_roundtrip_and_timeout() -> None:
    p = up()
    assert p.r is not None
    p.i.dpd(p.now)
    [req] = p.out_i()
    assert decode_message(req, p.r.sa.sk).payloads == []
    p.to_r([req])
    assert len(p.out_r()) == 1
    # now the peer vanishes
    p.i.dpd(p.now)
    p.out_i()
    p.advance(200)
    from aioipsec.events import DpdTimeout

    assert p.events("i", DpdTimeout) and p.events("i", IkeSaDeleted)[0].reason == "dead peer"
    assert deleted(p, "i")[0].reason == "ike sa deleted"


def test_automatic_dpd_after_idle() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_kw={"dpd_delay": 30.0}, r_kw={"dpd_delay": 0})
    p = up(i_cfg, r_cfg)
    assert p.i.get_timer() == pytest.approx(30.0)
    p.advance(30.0)
    [req] = p.out_i()
    assert decode_message(req, p.r.sa.sk).exchange_type == ExchangeType.INFORMATIONAL
    p.to_r([req])
    p.to_i(p.out_r())
    assert p.i.get_timer() == pytest.approx(60.0)


# --------------------------------------------------------------------------- lifetimes


def test_soft_lifetime_rekeys_and_hard_lifetime_expires() -> None:
    i_cfg, r_cfg = psk_pair_configs(
        i_kw={"dpd_delay": 0}, r_kw={"dpd_delay": 0},
        i_child_kw={"rekey_time": 100.0, "life_time": 120.0}, r_child_kw={"rekey_time": 1000.0},
    )
    p = up(i_cfg, r_cfg)
    [c] = installed(p, "i")
    assert c.lifetime_soft is not None and 80.0 <= c.lifetime_soft <= 100.0 and c.lifetime_hard == 120.0
    p.advance(c.lifetime_soft)
    assert len(p.out_i()) == 1  # the rekey request
    # the peer is gone now: retransmissions run until the hard lifetime
    p.advance(25.0)
    d = deleted(p, "i")
    assert d and d[0].reason == "expired" and d[0].spi_in == c.spi_in


def test_ike_soft_lifetime_rekeys() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_kw={"dpd_delay": 0, "rekey_time": 600.0}, r_kw={"dpd_delay": 0, "rekey_time": 6000.0})
    p = up(i_cfg, r_cfg)
    p.advance(601)
    p.settle()
    assert len(p.events("i", IkeSaEstablished)) == 2 and p.events("i", IkeSaDeleted)[0].reason == "rekeyed"


def test_child_sa_expired_from_data_plane() -> None:
    p = up()
    assert p.r is not None
    [c] = installed(p, "i")
    p.i.child_sa_expired(c.spi_out, False, p.now)  # soft: rekey
    p.settle()
    assert len(installed(p, "i")) == 2
    new = installed(p, "i")[1]
    p.i.child_sa_expired(new.spi_in, True, p.now)  # hard: delete
    p.settle()
    assert deleted(p, "i")[-1].reason == "expired" and deleted(p, "r")[-1].reason == "deleted by peer"
    assert live(p.i) == live(p.r) == []


def test_acquire_creates_child_with_packet_selectors_first() -> None:
    from aioipsec.selectors import TrafficSelector
    from aioipsec.ike.v2.payloads import TsiPayload, TsrPayload

    i_cfg, r_cfg = psk_pair_configs(i_kw=dict(NO_TIMERS), r_kw=dict(NO_TIMERS))
    p = Pair(i_cfg, r_cfg)
    src = TrafficSelector.from_cidr("198.51.100.7/32", 6, (40000, 40000))
    dst = TrafficSelector.from_cidr("203.0.113.9/32", 6, (443, 443))
    p.i.acquire((src, dst), p.now)
    p.i.acquire((src, dst), p.now)  # a second packet: no second negotiation
    p.roundtrip()
    [auth] = p.out_i()
    assert p.r is not None
    m = decode_message(auth, p.r.sa.sk)
    assert m.get(TsiPayload).selectors[0] == src and m.get(TsrPayload).selectors[0] == dst
    p.to_r([auth])
    p.to_i(p.out_r())
    [c] = installed(p, "i")
    assert src in c.local_ts and dst in c.remote_ts
    p.i.acquire((src, dst), p.now)
    assert p.out_i() == []
