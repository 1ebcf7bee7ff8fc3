"""Retransmission (4 s x 1.8^n, 5 tries, jitter), the responder's cached
responses, loss of each flight, and a seeded lossy link."""

from __future__ import annotations

import pytest
from ikev2_pair import Link, Pair, mirror, psk_pair_configs

from aioipsec.events import ChildSaDeleted, ChildSaInstalled, IkeSaDeleted, IkeSaEstablished, NegotiationFailed
from aioipsec.ike.v2.message import peek_header
from aioipsec.ike.v2.task_manager import RetransmitPolicy


def test_backoff_schedule_and_give_up() -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    first = p.out_i()
    assert len(first) == 1
    sends = [0.0]
    expected_gaps = [4.0 * 1.8**n for n in range(6)]
    for _ in range(5):
        t = p.i.get_timer()
        assert t is not None
        p.now = t
        p.i.handle_timer(p.now)
        again = p.out_i()
        assert again == first  # identical bytes
        sends.append(p.now)
    gaps = [b - a for a, b in zip(sends, sends[1:])]
    assert gaps == pytest.approx(expected_gaps[:5])
    # sixth deadline: give up
    t = p.i.get_timer()
    assert t == pytest.approx(sends[-1] + expected_gaps[5])
    p.now = t
    p.i.handle_timer(p.now)
    assert p.out_i() == []
    [nf] = p.events("i", NegotiationFailed)
    assert nf.notify == "TIMEOUT" and nf.exchange == "IKE_SA_INIT"
    assert p.events("i", IkeSaDeleted)[0].reason == "retransmits exhausted"
    assert p.i.is_closed and p.i.get_timer() is None
    assert p.i.stats.retransmits == 5


def test_retransmit_jitter_shortens_timeouts() -> None:
    policy = RetransmitPolicy(4.0, 1.8, 5, 0.2)
    import random

    rng = random.Random(3)
    for attempt in range(5):
        d = policy.delay(attempt, rng.randbytes)
        full = 4.0 * 1.8**attempt
        assert 0.8 * full <= d <= full
    assert RetransmitPolicy(2.0, 2.0, 3, limit=5.0).delay(3, rng.randbytes) == 5.0
    assert RetransmitPolicy().total() == pytest.approx(sum(4 * 1.8**n for n in range(6)))
    i_cfg, r_cfg = psk_pair_configs(i_kw={"retransmit_jitter": 0.5, "retransmit_timeout": 2.0, "retransmit_tries": 2})
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.out_i()
    t = p.i.get_timer()
    assert t is not None and 1.0 <= t <= 2.0


@pytest.mark.parametrize("lost", ["init-req", "init-resp", "auth-req", "auth-resp"])
def test_loss_of_each_flight_is_recovered(lost: str) -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    # IKE_SA_INIT
    req = p.out_i()
    if lost == "init-req":
        p.now = p.i.get_timer()  # type: ignore[assignment]
        p.fire_timers()
        req = p.out_i()
    p.to_r(req)
    resp = p.out_r()
    if lost == "init-resp":
        p.now = p.i.get_timer()  # type: ignore[assignment]
        p.fire_timers()
        again = p.out_i()
        assert again == req
        p.to_r(again)
        resp2 = p.out_r()
        assert resp2 == resp  # cached response, byte for byte
        assert p.r is not None and p.r.stats.responses_resent == 1
        resp = resp2
    p.to_i(resp)
    # IKE_AUTH
    req = p.out_i()
    assert len(req) == 1 and peek_header(req[0]).message_id == 1
    if lost == "auth-req":
        p.now = p.i.get_timer()  # type: ignore[assignment]
        p.fire_timers()
        req = p.out_i()
    p.to_r(req)
    resp = p.out_r()
    if lost == "auth-resp":
        assert p.r is not None and p.r.is_established
        p.now = p.i.get_timer()  # type: ignore[assignment]
        p.fire_timers()
        again = p.out_i()
        assert again == req
        p.to_r(again)
        resp2 = p.out_r()
        assert resp2 == resp
        resp = resp2
    p.to_i(resp)
    assert p.i.is_established and p.r is not None and p.r.is_established
    assert len(p.events("i", ChildSaInstalled)) == len(p.events("r", ChildSaInstalled)) == 1
    assert p.i.stats.retransmits == 1


def test_response_to_a_stale_request_is_ignored() -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    p.i.dpd(p.now)
    p.to_r(p.out_i())
    [resp] = p.out_r()
    p.to_i([resp])
    p.to_i([resp])  # duplicate arrives after completion
    assert p.i.stats.unexpected_response == 1 and p.i.is_established


@pytest.mark.parametrize("seed", range(8))
def test_lossy_link_still_establishes(seed: int) -> None:
    """30 % loss, 10 % duplication and up to 1.5 s of jitter (reordering)."""
    link = Link(seed=seed, loss=0.3, dup=0.1, delay=0.05, jitter=1.5)
    i_cfg, r_cfg = psk_pair_configs(i_kw={"dpd_delay": 0}, r_kw={"dpd_delay": 0})
    p = Pair(i_cfg, r_cfg, seed=seed, link=link)
    p.initiate()

    def up() -> bool:
        return bool(p.events("i", ChildSaInstalled)) and bool(p.events("r", ChildSaInstalled))

    assert p.run(up, max_time=300), f"not established, lost={link.lost}"
    assert mirror(p.events("i", ChildSaInstalled)[0], p.events("r", ChildSaInstalled)[0])
    # a rekey and a delete over the same link
    ci = p.events("i", ChildSaInstalled)[0]
    p.i.rekey_child_sa(ci.spi_in, p.now)
    assert p.run(lambda: len(p.events("r", ChildSaDeleted)) == 1 and len(p.events("i", ChildSaDeleted)) == 1, max_time=300)
    p.i.delete(p.now)
    assert p.run(lambda: p.i.is_closed and p.r is not None and p.r.is_closed, max_time=300)
    assert len(p.events("i", IkeSaEstablished)) == 1
    assert p.i.stats.internal_errors == 0 and p.r.stats.internal_errors == 0
