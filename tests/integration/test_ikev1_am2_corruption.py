"""IKEv1 Aggressive Mode message 2 against one corrupted datagram.  AM2
travels in clear and nothing in it is authenticated until HASH_R (or SIG_R)
verifies, so an AM2 the initiator refuses before that -- the proof does not
verify, a KE that is no valid public value, a transform we did not offer, a
certificate that does not fit -- may be one flipped bit on the way: the
first such copy is dropped and counted with a log line naming the peer,
nothing derived from it is kept (responder cookie, DH shared secret, keys,
identity), and the responder's retransmission of AM2 completes the
negotiation.  A real pre-shared key mismatch still ends as AuthFailed(AM2)
naming the peer, on the second copy."""

from __future__ import annotations

import logging

import pytest
from ikev1_pair import Datagram, Pair, psk_configs
from ikev2_pair import WALL, Pki, make_pki
from test_ikev1_corruption import PROBABLE, _up, _warnings
from test_ikev1_ecdsa import ecdsa_configs

from aioipsec.events import AuthFailed, IkeSaDeleted, NegotiationFailed
from aioipsec.ike.v1.constants import ExchangeType, Flag
from aioipsec.ike.v1.message import decode_message, peek_header
from aioipsec.ike.v1.payloads import HashPayload, KePayload, Payload

AM, INFO = ExchangeType.AGGRESSIVE, ExchangeType.INFORMATIONAL
IDS = ("a.example", "b.example")


def _am2(d: Datagram) -> bool:
    return d.sender == "r" and d.exchange == AM and not peek_header(d.data).flags & Flag.ENCRYPTION


def corrupt_am2_once(p: Pair, pos: int, bit: int = 0) -> list[Datagram]:
    """Flip one bit of the first AM2 on the wire; returns [the corrupted copy]."""
    original = p.deliver
    hit: list[Datagram] = []

    def deliver(d: Datagram) -> bool:
        if not hit and _am2(d):
            raw = bytearray(d.data)
            raw[pos % len(raw)] ^= 1 << bit
            d = Datagram(d.src, d.dst, bytes(raw), d.sender, d.at)
            hit.append(d)
        return original(d)

    p.deliver = deliver  # type: ignore[method-assign]
    return hit


def _offset_in(data: bytes, cls: type[Payload]) -> int:
    """Where the body of the first ``cls`` payload of a clear datagram
    starts (its data found in the datagram; generic and type headers skipped)."""
    msg, _ = decode_message(data)
    p = msg.get(cls)
    assert p is not None
    body = p.data  # type: ignore[attr-defined]
    at = data.find(body)
    assert at > 28
    return at


def _reference_am2(**cfg: object) -> bytes:
    ref = Pair(*psk_configs(aggressive=True, ids=IDS, dpd_delay=0, **cfg))  # type: ignore[arg-type]
    ref.start()
    return next(d.data for d in ref.wire if _am2(d))


def _nothing_kept(p: Pair) -> None:
    """After a dropped AM2: the initiator's ISAKMP SA holds nothing from it."""
    (sa,) = p.i.sas
    assert sa.spi_r == bytes(8) and sa.keys is None and sa.remote_id is None and not sa.established
    task = sa.tm.active
    assert task is not None and task.step == "AM2" and task.kex is not None and not task.kex.complete
    assert task.gxr == task.nr == task.idir_b == b""


@pytest.mark.parametrize("payload", [HashPayload, KePayload], ids=["HASH_R", "KE"])
def test_one_corrupted_am2_is_dropped_and_the_retransmission_completes(
    payload: type[Payload], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    clean = _reference_am2()
    pos = _offset_in(clean, payload) + 5
    p = Pair(*psk_configs(aggressive=True, ids=IDS, dpd_delay=0))
    hit = corrupt_am2_once(p, pos)
    t0 = p.now
    p.start()
    assert hit and hit[0].data != clean
    # dropped and counted, no failure, no notify, nothing derived from it kept
    assert p.i.stats["unverified"] == 1 and p.i.stats["dropped"] == 1
    assert not p.of("i", AuthFailed) and not p.of("i", NegotiationFailed) and not p.of("r", AuthFailed)
    assert [(d.sender, d.exchange) for d in p.wire] == [("i", AM), ("r", AM)]
    _nothing_kept(p)
    (line,) = [m for m in _warnings(caplog) if "dropped" in m]
    assert line.startswith("AM2 from 198.51.100.2 dropped") and "waiting for a retransmission" in line
    assert PROBABLE in line and "HASH mismatch" in line
    p.advance(t0 + 30)
    _up(p)
    # the AM2 that completed it is the responder's (the original bytes), 4 s later
    am2 = [d for d in p.wire if _am2(d)]
    assert am2[1].data == clean and am2[1].at == pytest.approx(t0 + 4.0)
    (sa_i,) = p.i.sas
    (sa_r,) = p.r.sas
    assert sa_i.spi_r == sa_r.spi_r != bytes(8) and str(sa_i.remote_id) == "b.example"
    assert p.i.stats["unverified"] == 1


def test_a_corrupted_responder_cookie_is_not_adopted() -> None:
    """The responder cookie (bytes 8-15) is covered by HASH_R only: a copy
    with another one is dropped and the real cookie is the one kept."""
    p = Pair(*psk_configs(aggressive=True, ids=IDS, dpd_delay=0))
    corrupt_am2_once(p, 9, 3)
    p.start()
    assert p.i.stats["unverified"] == 1
    _nothing_kept(p)
    p.advance(p.now + 30)
    _up(p)
    assert p.i.sas[0].spi_r == p.r.sas[0].spi_r


def test_an_invalid_ecp_public_value_is_dropped_once(caplog: pytest.LogCaptureFixture) -> None:
    """With an ECP group a flipped bit in KE gives a point off the curve
    (INVALID_KEY_INFORMATION before any hash is computed): dropped once too."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    cfg = {"proposals": ["aes128-sha256-ecp256"]}
    clean = _reference_am2(**cfg)
    p = Pair(*psk_configs(aggressive=True, ids=IDS, dpd_delay=0, **cfg))  # type: ignore[arg-type]
    corrupt_am2_once(p, _offset_in(clean, KePayload) + 40, 2)
    p.start()
    assert p.i.stats["unverified"] == 1 and not p.of("i", NegotiationFailed)
    _nothing_kept(p)
    (line,) = [m for m in _warnings(caplog) if "dropped" in m]
    assert line.startswith("AM2 from 198.51.100.2 dropped: unacceptable before it could be verified (corrupted?)")
    p.advance(p.now + 30)
    _up(p)


def test_wrong_psk_fails_on_the_second_copy_of_am2(caplog: pytest.LogCaptureFixture) -> None:
    """A real mismatch: the first AM2 is dropped like a corrupted one; the
    responder's retransmission 4 s later (the same bytes) ends it as an
    authentication failure naming the peer and its identity, and the
    responder is told (AUTHENTICATION_FAILED under its cookie)."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p = Pair(*psk_configs(psk_r="not-the-same", aggressive=True, ids=IDS, dpd_delay=0))
    t0 = p.now
    p.start()
    assert not p.of("i", AuthFailed) and p.i.stats["unverified"] == 1
    p.advance(t0 + 60)
    (fi,) = p.of("i", AuthFailed)
    assert fi.step == "AM2" and fi.peer == "198.51.100.2[b.example]" and "HASH" in fi.reason
    (fr,) = p.of("r", AuthFailed)
    assert fr.step == "AM2" and "AUTHENTICATION_FAILED" in fr.reason
    assert p.i.stats["unverified"] == 2
    am2 = [d for d in p.wire if _am2(d)]
    assert len(am2) >= 2 and am2[0].data == am2[1].data
    (notify,) = [d for d in p.wire if d.exchange == INFO]
    assert notify.sender == "i" and notify.at == pytest.approx(t0 + 4.0)
    assert p.i.is_closed and p.r.is_closed and p.i.get_timer() is None
    assert p.of("i", IkeSaDeleted)[0].reason == "authentication failed"
    warnings = _warnings(caplog)
    assert any(m.startswith("AM2 from 198.51.100.2 dropped") and PROBABLE in m for m in warnings)
    assert any(m.startswith("AM2 authentication failed with 198.51.100.2[b.example]") for m in warnings)


def test_identity_mismatch_is_still_fatal_at_once() -> None:
    """HASH_R verifies but the responder is not who we expect: its own word,
    not a corruption, so the failure is immediate (nothing dropped)."""
    p = Pair(*psk_configs(aggressive=True, ids=IDS, dpd_delay=0))
    p.i.cfg.remote.id = "someone-else.example"
    p.start()
    (fi,) = p.of("i", AuthFailed)
    assert fi.step == "AM2" and "b.example" in fi.reason and "does not match" in fi.reason
    assert p.i.stats["unverified"] == 0 and p.i.is_closed


def test_dropped_am2_then_silence_is_an_authentication_failure() -> None:
    """The responder goes away after the corrupted AM2: when AM1
    retransmissions run out the failure reads as a probable authentication
    failure at AM2, not a plain timeout."""
    clean = _reference_am2()
    p = Pair(*psk_configs(aggressive=True, ids=IDS, dpd_delay=0))
    corrupt_am2_once(p, _offset_in(clean, HashPayload))
    p.start()
    assert p.i.stats["unverified"] == 1
    p.drop = lambda d: d.sender == "r"  # its AM2 retransmissions never arrive
    p.advance(p.now + 600)
    (fi,) = p.of("i", AuthFailed)
    assert fi.step == "AM2" and fi.peer == "198.51.100.2" and "5 retransmits" in fi.reason
    assert not p.of("i", NegotiationFailed) and p.i.is_closed and p.i.get_timer() is None


def test_any_single_bit_flip_in_am2_is_survived() -> None:
    """Every byte position of AM2 (ECP-256, so that KE flips also give
    points off the curve), one bit flipped: the negotiation completes."""
    cfg = {"proposals": ["aes128-sha256-ecp256"], "aggressive": True, "ids": IDS, "dpd_delay": 0}
    ref = Pair(*psk_configs(**cfg))  # type: ignore[arg-type]
    ref.start()
    size = len(next(d.data for d in ref.wire if _am2(d)))
    failures = []
    for pos in range(size):
        p = Pair(*psk_configs(**cfg))  # type: ignore[arg-type]
        corrupt_am2_once(p, pos, bit=pos % 8)
        p.start()
        p.advance(p.now + 60)
        try:
            _up(p)
        except AssertionError:
            failures.append(pos)
    assert failures == []


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(("p256",))


def test_single_bit_flips_in_a_signed_am2_are_survived(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """ECDSA: AM2 carries the responder's certificate and SIG_R in clear; a
    flip in the certificate (unparsable, or another key or name) or the
    signature is dropped once like a HASH_R mismatch.  Every third position.
    A certificate that loads but whose extensions or key cannot be parsed
    is an invalid certificate like any other, not an unexpected error
    caught at the top (``datagram from ... dropped`` with a traceback)."""
    caplog.set_level(logging.WARNING, logger="aioipsec.ike")

    def pair() -> Pair:
        return Pair(*ecdsa_configs(pki, "p256", aggressive=True, proposal="aes128-sha256-ecp256"), wall_clock=lambda: WALL)

    ref = pair()
    ref.start()
    size = len(next(d.data for d in ref.wire if _am2(d)))
    assert size > 800  # the certificate is in it
    failures = []
    for pos in range(0, size, 3):
        p = pair()
        corrupt_am2_once(p, pos, bit=pos % 8)
        p.start()
        p.advance(p.now + 60)
        try:
            _up(p)
        except AssertionError:
            failures.append(pos)
    assert failures == []
    assert not [r for r in caplog.records if r.exc_info]
    malformed = "dropped: unacceptable before it could be verified (corrupted?): malformed certificate"
    assert any(malformed in m for m in _warnings(caplog))
