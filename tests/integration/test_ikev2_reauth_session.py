"""IKEv2 ``reauth_time`` in the sans-I/O session (the timers; the endpoint
starts the new IKE SA, ``test_ikev2_reauth.py``): the connection's initiator
emits ``ReauthRequired`` with its Child SAs and virtual IPs at reauth time,
stops rekeying the IKE SA meanwhile, keeps its reauth time across IKE rekeys
(as charon), and its hard lifetime counts from the earlier of rekey and
reauthentication; the responder never reauthenticates by itself."""

from __future__ import annotations

import pytest
from ikev2_pair import Pair, psk_pair_configs

from aioipsec.events import IkeSaDeleted, IkeSaEstablished, ReauthRequired
from aioipsec.ike.v2.session import LocalProtocolError


def pair(i_kw: dict, r_kw: dict | None = None) -> Pair:
    i, r = psk_pair_configs(i_kw={"dpd_delay": 0, **i_kw}, r_kw={"dpd_delay": 0, **(r_kw or {})})
    p = Pair(i, r)
    p.initiate()
    p.settle()
    assert p.i.is_established
    return p


def test_reauth_time_emits_reauth_required_once_with_the_children() -> None:
    p = pair({"reauth_time": 100.0, "rand_time": 0.0, "rekey_time": 0.0})
    assert p.i.sa.reauth_at == pytest.approx(100.0)
    assert p.i.sa.expire_at == pytest.approx(110.0), "over_time: 10 % of reauth_time past the reauth time"
    p.advance(99.0)
    assert not p.events("i", ReauthRequired)
    p.advance(2.0)
    (ev,) = p.events("i", ReauthRequired)
    assert ev.children == ("lan",) and (ev.spi_i, ev.spi_r) == (p.i.spi_i, p.i.spi_r)
    p.advance(5.0)
    assert len(p.events("i", ReauthRequired)) == 1, "once, not on every timer"
    assert not p.i.is_closed, "the old IKE SA waits for the new one (deleted by the owner)"
    p.advance(5.0)
    assert p.i.is_closed and p.i.closed_reason == "expired", "nobody reauthenticated: hard lifetime"


def test_the_responder_does_not_reauthenticate() -> None:
    p = pair({}, {"reauth_time": 50.0, "rand_time": 0.0})
    assert p.r is not None
    p.advance(200.0)
    assert not p.events("r", ReauthRequired)
    assert p.r.sa.reauth_at == float("inf")


def run_to(p: Pair, t: float) -> None:
    """Time passes with the wire working (a settle after every second)."""
    while p.now < t:
        p.advance(1.0)
        p.settle()


def test_reauth_time_survives_an_ike_rekey_and_the_earlier_one_wins() -> None:
    p = pair({"reauth_time": 1000.0, "rekey_time": 300.0, "rand_time": 0.0})
    assert p.i.sa.expire_at == pytest.approx(300.0 + 100.0), "over_time: 10 % of the longer, past the earlier"
    run_to(p, 301.0)
    spis = [(e.spi_i, e.spi_r) for e in p.events("i", IkeSaEstablished)]
    assert len(set(spis)) == 2, "rekeyed first (rekey_time is earlier)"
    assert p.i.sa.reauth_at == pytest.approx(1000.0), "the reauth time is inherited, not restarted"
    run_to(p, 999.0)
    assert len({(e.spi_i, e.spi_r) for e in p.events("i", IkeSaEstablished)}) == 4, "rekeys at 300, 600, 900"
    assert p.i.sa.reauth_at == pytest.approx(1000.0)
    assert p.i.sa.expire_at == pytest.approx(1000.0 + 100.0), "the reauth time is earlier than the next rekey"
    assert not p.events("i", ReauthRequired)
    run_to(p, 1001.0)
    (ev,) = p.events("i", ReauthRequired)
    assert (ev.spi_i, ev.spi_r) == (p.i.spi_i, p.i.spi_r) and ev.children == ("lan",)
    assert all(e.reason == "rekeyed" for e in p.events("i", IkeSaDeleted)), "only the rekeyed ones are gone"


def test_reauthenticate_on_request_and_not_before_established() -> None:
    i, r = psk_pair_configs()
    p = Pair(i, r)
    with pytest.raises(LocalProtocolError):
        p.i.reauthenticate(0.0)
    p.initiate()
    p.settle()
    p.i.reauthenticate(p.now)
    p._drain_events()
    (ev,) = p.events("i", ReauthRequired)
    assert ev.children == ("lan",)
    assert p.i.sa.rekey_at == float("inf"), "no IKE rekey while the reauthentication runs"
