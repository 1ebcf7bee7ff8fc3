"""IKEv1 SA lifecycle in memory: delete ("clear crypto isakmp") and
renegotiation on the next interesting packet, DPD, Quick Mode rekey and
Phase 1 renewal by lifetime, expiry, the responder lifetime notify."""

from __future__ import annotations

import pytest
from ikev1_pair import Pair, psk_configs

from aioipsec.events import (
    ChildSaDeleted,
    ChildSaInstalled,
    DpdTimeout,
    IkeSaDeleted,
    IkeSaEstablished,
)
from aioipsec.ike.v1.constants import ExchangeType
from aioipsec.selectors import parse_ts

MM, QM, INFO = ExchangeType.IDENTITY_PROTECTION, ExchangeType.QUICK_MODE, ExchangeType.INFORMATIONAL


def up(**kw: object) -> Pair:
    kw.setdefault("dpd_delay", 0)
    p = Pair(*psk_configs(**kw))  # type: ignore[arg-type]
    p.start()
    assert p.i.is_established and p.r.is_established and len(p.i.children) == 1
    p.clear_events()
    p.wire.clear()
    return p


def test_clear_then_renegotiate_on_acquire() -> None:
    p = up()
    old_spi_i = p.i.spi_i
    (child_i,) = p.i.children.values()
    (child_r,) = p.r.children.values()
    p.i.delete(p.now)
    p.pump()
    # one Informational delete per IPsec SA, then one for the ISAKMP SA
    assert [(d.sender, d.exchange) for d in p.wire] == [("i", INFO), ("i", INFO)]
    assert [(e.spi_in, e.reason) for e in p.of("i", ChildSaDeleted)] == [(child_i.spi_in, "deleted locally")]
    assert [(e.spi_in, e.reason) for e in p.of("r", ChildSaDeleted)] == [(child_r.spi_in, "deleted by peer")]
    assert p.of("i", IkeSaDeleted)[0].reason == "deleted locally"
    assert p.of("r", IkeSaDeleted)[0].reason == "deleted by peer"
    assert p.i.is_closed and p.r.is_closed and not p.i.children and not p.r.children
    assert p.i.get_timer() is None and p.r.get_timer() is None
    p.clear_events()
    p.wire.clear()
    # the next interesting packet: a full renegotiation with new cookies
    p.now += 5
    p.i.acquire(parse_ts("10.2.3.4"), p.now)
    p.pump()
    assert [d.exchange for d in p.wire] == [MM] * 6 + [QM] * 3
    (est,) = p.of("i", IkeSaEstablished)
    assert est.spi_i != old_spi_i and est.rekeyed_from is None
    assert len(p.of("r", ChildSaInstalled)) == 1 and not p.i.is_closed and not p.r.is_closed
    # a second acquire for the same child does nothing
    p.i.acquire(parse_ts("10.2.9.9"), p.now)
    assert p.i.datagrams_to_send(p.now) == []


def test_delete_child_sa() -> None:
    p = up()
    (child,) = p.i.children.values()
    p.r.delete_child_sa(child.spi_out, p.now)
    p.pump()
    assert [d.sender for d in p.wire] == ["r"]
    assert p.of("i", ChildSaDeleted)[0].reason == "deleted by peer"
    assert not p.i.children and not p.r.children
    assert p.i.is_established and p.r.is_established


def test_dpd_declares_a_dead_peer() -> None:
    p = up(dpd_delay=10.0, dpd_timeout=30.0)
    t0 = p.now
    p.drop = lambda d: True  # the responder vanished
    p.advance(t0 + 39.9)
    assert not p.i.is_closed and not p.of("i", DpdTimeout)
    p.advance(t0 + 100)
    sent = [round(d.at - t0, 1) for d in p.wire if d.sender == "i"]
    (dead,) = p.of("i", DpdTimeout)
    assert dead.peer == "198.51.100.2[198.51.100.2]"
    assert p.of("i", ChildSaDeleted)[0].reason == "dead peer"
    assert p.of("i", IkeSaDeleted)[0].reason == "dead peer"
    assert p.i.is_closed
    # R-U-THERE every dpd_delay; dead dpd_timeout after the first unanswered one
    assert sent == [10.0, 20.0, 30.0]


def test_dpd_answered_keeps_the_sa() -> None:
    p = up(dpd_delay=10.0, dpd_timeout=30.0)
    p.advance(p.now + 200)
    assert not p.of("i", DpdTimeout) and not p.of("r", DpdTimeout)
    assert p.i.is_established and p.r.is_established
    infos = [d for d in p.wire if d.exchange == INFO]
    assert len(infos) >= 30 and len(infos) % 2 == 0  # R-U-THERE / ACK pairs
    # explicit check
    p.wire.clear()
    p.i.dpd(p.now)
    p.pump()
    assert [d.sender for d in p.wire] == ["i", "r"]


def test_quick_mode_rekey_by_lifetime() -> None:
    p = up(child_rekey_time=600.0)
    (old_i,) = p.i.children.values()
    (old_r,) = p.r.children.values()
    ev = old_i.event
    assert ev.lifetime_hard == 660.0 and 540.0 <= ev.lifetime_soft <= 600.0
    p.advance(p.now + 650)
    (new_i,) = p.of("i", ChildSaInstalled)
    (new_r,) = p.of("r", ChildSaInstalled)
    assert new_i.rekeyed_from == old_i.spi_in and new_r.rekeyed_from == old_r.spi_in
    assert [(e.spi_in, e.reason) for e in p.of("i", ChildSaDeleted)] == [(old_i.spi_in, "rekeyed")]
    assert [(e.spi_in, e.reason) for e in p.of("r", ChildSaDeleted)] == [(old_r.spi_in, "rekeyed")]
    assert list(p.i.children) == [new_i.spi_in] and list(p.r.children) == [new_r.spi_in]
    assert [(d.sender, d.exchange) for d in p.wire] == [("i", QM), ("r", QM), ("i", QM), ("i", INFO)]
    assert new_i.encr_key_in != ev.encr_key_in


def test_rekey_on_data_plane_soft_expiry_and_hard_delete() -> None:
    p = up()
    (child,) = p.i.children.values()
    p.i.child_sa_expired(child.spi_in, False, p.now)
    p.pump()
    (new,) = p.of("i", ChildSaInstalled)
    assert new.rekeyed_from == child.spi_in
    p.clear_events()
    p.i.child_sa_expired(new.spi_out, True, p.now)  # outbound SPI: sequence numbers exhausted
    p.pump()
    assert p.of("i", ChildSaDeleted)[0].reason == "expired"
    assert p.of("r", ChildSaDeleted)[0].reason == "deleted by peer"


def test_phase1_renewal_by_lifetime_keeps_ipsec_sas() -> None:
    p = up(rekey_time=600.0)
    old = p.i.spi_i
    (child,) = p.i.children.values()
    p.advance(p.now + 640)
    (new_i,) = p.of("i", IkeSaEstablished)
    (new_r,) = p.of("r", IkeSaEstablished)
    assert new_i.rekeyed_from == new_r.rekeyed_from == old and new_i.spi_i != old
    assert [e.reason for e in p.of("i", IkeSaDeleted)] == ["rekeyed"]
    assert [e.reason for e in p.of("r", IkeSaDeleted)] == ["rekeyed"]
    assert [d.exchange for d in p.wire] == [MM] * 6 + [INFO]
    assert list(p.i.children) == [child.spi_in] and not p.of("i", ChildSaDeleted)
    assert p.i.spi_i == new_i.spi_i and len(p.i.sas) == len(p.r.sas) == 1
    # Quick Mode runs over the new ISAKMP SA
    p.i.create_child_sa("net", p.now)
    p.pump()
    assert p.of("i", ChildSaInstalled)[-1].ike_spi_i == new_i.spi_i


def test_phase1_hard_expiry_without_renewal() -> None:
    p = up(rekey_time=0.0, over_time=100.0)
    assert p.i.sas[0].hard_at == pytest.approx(p.i.sas[0].established_at + 100.0)
    p.advance(p.now + 120)
    assert p.of("i", IkeSaDeleted)[0].reason == "expired"
    assert p.of("i", ChildSaDeleted)[0].reason == "expired"
    assert p.i.is_closed and p.r.is_closed


def test_responder_lifetime_notify() -> None:
    i, r = psk_configs(dpd_delay=0)
    r.children["net"].rekey_time = 900.0
    r.children["net"].life_time = 1000.0
    p = Pair(i, r)
    p.start()
    (ci,) = p.of("i", ChildSaInstalled)
    (cr,) = p.of("r", ChildSaInstalled)
    assert cr.lifetime_hard == 1000.0 and ci.lifetime_hard == 1000.0
    # the initiator's rekey point scales with the shortened lifetime
    assert ci.lifetime_soft is not None and 1000 * (3240 / 3960) <= ci.lifetime_soft <= 1000 * (3600 / 3960)


def test_initial_contact_from_a_restarted_peer_drops_stale_sas() -> None:
    from ikev1_pair import seeded

    from aioipsec.ike.v1 import IkeSessionV1

    p = up()
    (stale,) = p.r.children.values()
    old_cookie = p.r.spi_i
    # the initiator restarts: a new session (new cookies) to the same responder
    p.i = IkeSessionV1(
        configuration=p.i.cfg, is_initiator=True, local_addr=p.i.local_addr, remote_addr=p.i.remote_addr, random=seeded(77)
    )
    p.start()
    (est,) = p.of("r", IkeSaEstablished)
    assert est.spi_i != old_cookie and est.rekeyed_from is None
    assert [(e.spi_in, e.reason) for e in p.of("r", ChildSaDeleted)] == [(stale.spi_in, "initial contact")]
    assert [e.reason for e in p.of("r", IkeSaDeleted)] == ["initial contact"]
    assert len(p.r.sas) == 1 and len(p.r.children) == 1 and stale.spi_in not in p.r.children


def test_phase1_renewal_by_both_ends_at_once() -> None:
    """Both ends renew Phase 1 at the same moment: the two new ISAKMP SAs
    settle on the same survivor, IPsec SAs stay."""
    p = up()
    p.i.rekey_ike_sa(p.now)
    p.r.rekey_ike_sa(p.now)
    p.pump()
    p.advance(p.now + 60)
    assert len(p.i.sas) == len(p.r.sas) == 1
    assert p.i.spi_i == p.r.spi_i and p.i.is_established and p.r.is_established
    assert len(p.i.children) == len(p.r.children) == 1 and not p.of("i", ChildSaDeleted)
    p.i.create_child_sa("net", p.now)
    p.pump()
    assert len(p.of("r", ChildSaInstalled)) == 1


def test_quick_mode_rekey_interrupted_by_phase1_renewal_moves_to_the_new_sa() -> None:
    """A Quick Mode still in flight when its ISAKMP SA is replaced (its QM1
    was lost) is restarted over the new ISAKMP SA."""
    p = up()
    (child,) = p.i.children.values()
    old_cookie = p.i.spi_i
    first_qm = [True]

    def drop(d) -> bool:  # type: ignore[no-untyped-def]
        if first_qm[0] and d.exchange == QM:
            first_qm[0] = False
            return True
        return False

    p.drop = drop
    p.i.rekey_child_sa(child.spi_in, p.now)
    p.i.rekey_ike_sa(p.now)
    p.pump()
    (est,) = p.of("i", IkeSaEstablished)
    (new,) = p.of("i", ChildSaInstalled)
    assert new.rekeyed_from == child.spi_in and new.ike_spi_i == est.spi_i != old_cookie
    # the replaced IPsec SA is deleted REKEY_DELETE_DELAY after QM3, not at once
    assert len(p.i.children) == len(p.r.children) == 2
    p.advance(p.now + 1.5)
    assert len(p.i.children) == len(p.r.children) == 1 and len(p.i.sas) == len(p.r.sas) == 1
    assert not any(c.rekeying for c in p.i.children.values())
    p.advance(p.now + 60)
    assert len(p.of("i", ChildSaInstalled)) == 1  # no stale retransmission revived it
