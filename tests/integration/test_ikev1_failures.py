"""IKEv1 under loss and errors: each message lost once (retransmission on
both sides), retransmission timing and giving up, wrong PSK, proposal and
identity mismatches, duplicates, corruption, and fuzzed input."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ikev1_pair import Datagram, Pair, psk_configs

from aioipsec.events import (
    AuthFailed,
    ChildSaInstalled,
    IkeSaDeleted,
    IkeSaEstablished,
    NegotiationFailed,
)
from aioipsec.ike.v1.constants import ExchangeType
from aioipsec.ike.v1.message import peek_header

MM, AM, QM, INFO = (
    ExchangeType.IDENTITY_PROTECTION,
    ExchangeType.AGGRESSIVE,
    ExchangeType.QUICK_MODE,
    ExchangeType.INFORMATIONAL,
)


def drop_nth(n: int):  # type: ignore[no-untyped-def]
    """Drop the n-th datagram put on the wire (0-based), once."""
    seen = [0]

    def drop(d: Datagram) -> bool:
        seen[0] += 1
        return seen[0] == n + 1

    return drop


def _up(p: Pair) -> None:
    assert len(p.of("i", IkeSaEstablished)) == len(p.of("r", IkeSaEstablished)) == 1
    ci, cr = p.of("i", ChildSaInstalled), p.of("r", ChildSaInstalled)
    assert len(ci) == len(cr) == 1
    assert ci[0].encr_key_out == cr[0].encr_key_in and ci[0].integ_key_in == cr[0].integ_key_out
    assert len(p.i.children) == len(p.r.children) == 1


# lost message -> (total datagrams, what was resent)
MM_LOSS = {
    0: (10, "MM1 resent by the initiator's timer"),
    1: (11, "MM1 resent, the responder answers the duplicate with its cached MM2"),
    2: (10, "MM3 resent"),
    3: (11, "MM3 resent, cached MM4"),
    4: (10, "MM5 resent"),
    5: (11, "MM5 resent, cached MM6"),
    6: (10, "QM1 resent"),
    7: (13, "QM1 and QM2 resent by both timers, QM3 kept and resent for the second QM2"),
    8: (11, "QM2 resent by the responder's timer, the initiator resends its kept QM3"),
}
AM_LOSS = {
    0: (7, "AM1 resent"),
    1: (10, "AM1 and AM2 resent, AM3 resent for the duplicate AM2"),
    2: (10, "AM2 resent by the responder, the initiator resends its kept AM3"),
    3: (7, "QM1 resent"),
    4: (10, "QM1 and QM2 resent, QM3 resent for the duplicate QM2"),
    5: (8, "QM2 resent, kept QM3 resent"),
}


@pytest.mark.parametrize("lost", sorted(MM_LOSS), ids=lambda n: ["MM1", "MM2", "MM3", "MM4", "MM5", "MM6", "QM1", "QM2", "QM3"][n])
def test_main_mode_recovers_each_lost_message(lost: int) -> None:
    p = Pair(*psk_configs(dpd_delay=0))
    p.drop = drop_nth(lost)
    p.start()
    p.advance(p.now + 30)
    _up(p)
    total, _why = MM_LOSS[lost]
    assert len(p.wire) == total and len(p.dropped) == 1
    # the lost message came again 4 s later (first retransmission timeout)
    lost_d = p.wire[lost]
    again = [d for d in p.wire[lost + 1 :] if d.data == lost_d.data]
    assert again and again[0].at == pytest.approx(lost_d.at + 4.0)
    assert not p.of("i", NegotiationFailed) and not p.of("r", NegotiationFailed)


@pytest.mark.parametrize("lost", sorted(AM_LOSS), ids=lambda n: ["AM1", "AM2", "AM3", "QM1", "QM2", "QM3"][n])
def test_aggressive_mode_recovers_each_lost_message(lost: int) -> None:
    p = Pair(*psk_configs(aggressive=True, dpd_delay=0))
    p.drop = drop_nth(lost)
    p.start()
    p.advance(p.now + 30)
    _up(p)
    assert len(p.wire) == AM_LOSS[lost][0] and len(p.dropped) == 1


def test_retransmission_backoff_and_giving_up(caplog: pytest.LogCaptureFixture) -> None:
    """4 s x 1.8^n, 5 retransmits (strongSwan defaults), then the attempt fails."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p = Pair(*psk_configs(dpd_delay=0))
    p.r_alive = False
    t0 = p.now
    p.start()
    p.advance(t0 + 600)
    times = [round(d.at - t0, 2) for d in p.wire]
    assert times == [0.0, 4.0, 11.2, 24.16, 47.49, 89.48]
    (fail,) = p.of("i", NegotiationFailed)
    assert (fail.exchange, fail.notify) == ("MM", "TIMEOUT")
    assert "MM1" in fail.reason and "5 retransmits" in fail.reason
    assert p.of("i", IkeSaDeleted)[0].reason == "retransmits exhausted"
    assert p.i.is_closed and p.i.get_timer() is None


def test_wrong_psk(caplog: pytest.LogCaptureFixture) -> None:
    """MM5 cannot be decrypted/verified by the responder: AuthFailed(MM5)
    naming the peer on both sides, a log line, and both SAs gone."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p = Pair(*psk_configs(psk_r="not-the-same", dpd_delay=0))
    p.start()
    # the first MM5 is dropped (it could be a corrupted copy); the initiator's
    # retransmission 4 s later fails the same way and ends it
    p.advance(p.now + 5)
    (fr,) = p.of("r", AuthFailed)
    assert fr.step == "MM5" and fr.peer == "192.0.2.1" and "pre-shared key" in fr.reason
    (fi,) = p.of("i", AuthFailed)
    assert fi.step == "MM5" and fi.peer == "198.51.100.2" and "AUTHENTICATION_FAILED" in fi.reason
    assert [(d.sender, d.exchange) for d in p.wire][-2:] == [("i", MM), ("r", INFO)]
    assert p.i.is_closed and p.r.is_closed
    assert p.of("r", IkeSaDeleted)[0].reason == "authentication failed"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "aioipsec.ike"]
    assert any(m.startswith("MM5 authentication failed with 192.0.2.1") for m in warnings)
    assert any(m.startswith("MM5 authentication failed with 198.51.100.2") for m in warnings)
    assert not p.of("i", IkeSaEstablished) and not p.of("r", IkeSaEstablished)


def test_wrong_psk_aggressive_mode() -> None:
    """In Aggressive Mode the initiator finds out first, verifying HASH_R in AM2."""
    p = Pair(*psk_configs(psk_r="not-the-same", aggressive=True, ids=("a.example", "b.example"), dpd_delay=0))
    p.start()
    # the first AM2 is dropped (it could be a corrupted copy); the responder's
    # retransmission 4 s later fails the same way and ends it
    p.advance(p.now + 5)
    (fi,) = p.of("i", AuthFailed)
    assert fi.step == "AM2" and fi.peer == "198.51.100.2[b.example]" and "HASH" in fi.reason
    (fr,) = p.of("r", AuthFailed)
    assert fr.step == "AM2" and "AUTHENTICATION_FAILED" in fr.reason
    assert p.i.is_closed and p.r.is_closed


def test_phase1_proposal_mismatch() -> None:
    p = Pair(*psk_configs(proposals_r=["aes256-sha512-modp4096"], dpd_delay=0))
    p.start()
    assert [(d.sender, d.exchange) for d in p.wire] == [("i", MM), ("r", INFO)]
    (fi,) = p.of("i", NegotiationFailed)
    (fr,) = p.of("r", NegotiationFailed)
    assert fi.notify == fr.notify == "NO_PROPOSAL_CHOSEN" and fi.exchange == fr.exchange == "MM"
    assert "aes128-sha1-modp2048" in fr.reason
    assert p.i.is_closed and p.r.is_closed and p.i.get_timer() is None


def test_quick_mode_proposal_mismatch_keeps_phase1() -> None:
    p = Pair(*psk_configs(esp_r=["aes256-sha512"], dpd_delay=0))
    p.start()
    assert [(d.sender, d.exchange) for d in p.wire][6:] == [("i", QM), ("r", INFO)]
    (fi,) = p.of("i", NegotiationFailed)
    (fr,) = p.of("r", NegotiationFailed)
    assert fi.exchange == fr.exchange == "QM" and fi.notify == fr.notify == "NO_PROPOSAL_CHOSEN"
    assert "aes128-sha1/tunnel" in fr.reason
    assert p.i.is_established and p.r.is_established and not p.i.children
    assert p.i.get_timer() is None or p.i.get_timer() > p.now + 60  # no retransmission pending


def test_identity_mismatch_deletes_responder_sa() -> None:
    """The initiator expects another responder ID: AuthFailed at MM6 and a
    protected delete, so the responder does not keep a half-trusted SA."""
    i, r = psk_configs(ids=(None, None), dpd_delay=0)
    i.remote.id = "hq.example"
    p = Pair(i, r)
    p.start()
    (fi,) = p.of("i", AuthFailed)
    assert fi.step == "MM6" and "does not match" in fi.reason
    assert [(d.sender, d.exchange) for d in p.wire][-1] == ("i", INFO)
    assert p.of("r", IkeSaDeleted)[0].reason == "deleted by peer"
    assert p.r.is_closed


def test_duplicated_datagrams() -> None:
    p = Pair(*psk_configs(dpd_delay=0))
    original = p.deliver

    def twice(d: Datagram) -> bool:
        original(d)
        return original(Datagram(d.src, d.dst, d.data, d.sender, d.at))

    p.deliver = twice  # type: ignore[method-assign]
    p.start()
    p.advance(p.now + 30)
    _up(p)


def test_corrupted_quick_mode_is_dropped_then_recovered() -> None:
    p = Pair(*psk_configs(dpd_delay=0))
    original = p.deliver
    hit = [False]

    def corrupt(d: Datagram) -> bool:
        if not hit[0] and peek_header(d.data).exchange == QM:
            hit[0] = True
            d = Datagram(d.src, d.dst, d.data[:-1] + bytes([d.data[-1] ^ 1]), d.sender, d.at)
        return original(d)

    p.deliver = corrupt  # type: ignore[method-assign]
    p.start()
    assert not p.i.children
    assert p.r.stats["dropped"] == 1
    p.advance(p.now + 30)
    _up(p)


def test_unknown_cookies_are_dropped() -> None:
    p = Pair(*psk_configs(dpd_delay=0))
    p.start()
    junk = bytes(8) + bytes(range(8)) + bytes([8, 0x10, 5, 1]) + bytes(4) + (28).to_bytes(4, "big")
    p.i.receive_datagram(junk, ("198.51.100.2", 500), p.now)
    assert p.i.stats["unknown_spi"] == 1 and p.i.datagrams_to_send(p.now) == []


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.sampled_from([2, 4, 5, 6, 32, 99]), st.booleans())
def test_fuzz_session_never_raises(body: bytes, exchange: int, new: bool) -> None:
    """Random datagrams with plausible headers, to a fresh responder and to
    an established pair: nothing escapes, nothing breaks the SA."""
    p = _established_pair()
    spi_i = b"\x99" * 8 if new else p.i.spi_i
    spi_r = bytes(8) if new else p.i.spi_r
    data = spi_i + spi_r + bytes([body[0] if body else 1, 0x10, exchange, body[1] & 3 if len(body) > 1 else 0])
    data += bytes(4) + (28 + len(body)).to_bytes(4, "big") + body
    p.r.receive_datagram(data, ("192.0.2.1", 500), p.now)
    p.i.receive_datagram(data, ("198.51.100.2", 500), p.now)
    p.pump()
    assert p.i.is_established and p.r.is_established


def _established_pair() -> Pair:
    p = Pair(*psk_configs(dpd_delay=0))
    p.start()
    return p


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 8), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4), st.integers(0, 40))
def test_fuzz_mutated_exchange_messages(k: int, flips: list[tuple[int, int]], cut: int) -> None:
    """Replace the k-th datagram of an exchange by a mutated copy (bytes
    flipped, maybe truncated): whatever the sessions make of it, nothing
    escapes from ``receive_datagram``/``handle_timer`` and no timer is left
    behind in the past."""
    p = Pair(*psk_configs(dpd_delay=0))
    original = p.deliver
    seen = [0]

    def mutate(d: Datagram) -> bool:
        seen[0] += 1
        if seen[0] == k + 1:
            raw = bytearray(d.data)
            for pos, val in flips:
                raw[pos % len(raw)] = val
            if cut:
                raw = raw[: max(1, len(raw) - cut)]
            d = Datagram(d.src, d.dst, bytes(raw), d.sender, d.at)
        return original(d)

    p.deliver = mutate  # type: ignore[method-assign]
    p.start()
    p.advance(p.now + 400)
    for s in (p.i, p.r):
        t = s.get_timer()
        assert t is None or t >= p.now
    if p.i.is_established and p.r.is_established and p.i.children and p.r.children:
        ci, cr = p.of("i", ChildSaInstalled)[-1], p.of("r", ChildSaInstalled)[-1]
        assert ci.encr_key_out == cr.encr_key_in


def test_wrong_psk_with_an_encrypted_error_notify() -> None:
    """strongSwan answers an undecryptable MM5 with an error notify encrypted
    under its own keys; the initiator cannot read it and reports the PSK
    mismatch at once instead of retransmitting for minutes."""
    from aioipsec.ike.v1.constants import NotifyType
    from aioipsec.ike.v1.message import encode_message
    from aioipsec.ike.v1.tasks.informational import build_informational, isakmp_notify

    p = Pair(*psk_configs(psk_r="not-the-same", dpd_delay=0))
    r_sa: list = []
    original = p.deliver

    def swap(d: Datagram) -> bool:
        if d.sender == "r" and d.exchange == INFO:
            sa = r_sa[0]
            msg = build_informational(sa, [isakmp_notify(sa, NotifyType.INVALID_HASH_INFORMATION)], 0x1234, protect=True)
            iv = sa.keys.iv.get_iv(0x1234)
            data, _ = encode_message(msg, sa.keys.encr, iv)
            d = Datagram(d.src, d.dst, data, d.sender, d.at)
        elif d.sender == "i" and d.exchange == MM and p.r.sas:
            r_sa[:] = p.r.sas
        return original(d)

    p.deliver = swap  # type: ignore[method-assign]
    p.start()
    p.advance(p.now + 5)  # the responder answers the second copy of MM5 (the first is dropped)
    (fi,) = p.of("i", AuthFailed)
    assert fi.step == "MM5" and "cannot decrypt" in fi.reason
    assert p.i.is_closed and p.i.get_timer() is None
