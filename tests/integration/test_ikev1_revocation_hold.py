"""IKEv1 holds Phase 1 while the peer certificate's revocation status is
being fetched (sans-I/O sessions, a fake fetcher filling a RevocationCache),
as IKEv2 holds IKE_AUTH (``test_revocation_hold.py``).

Main Mode: the responder drops MM5 unanswered and unaccepted -- the Phase 1
CBC IV chain, the hashes and the peer's identity as before -- so the
initiator's retransmission, the same bytes, decrypts and is decided with
what was fetched meanwhile; the initiator does the same with MM6 (its MM5
retransmission brings the responder's MM6 back).  Aggressive Mode: the
initiator holds AM2 (its AM1 retransmission or the responder's own timer
brings it again), the responder holds AM3 (the responder resends AM2 until
AM3 is accepted, and the initiator answers a repeated AM2 with its kept
AM3).  Bounded by ``cache.hold_limit``; a certificate the fetcher is done
with, or a cache no fetcher fills, is decided by policy at once."""

from __future__ import annotations

import logging

import pytest
from ikev1_pair import Datagram, Pair
from ikev2_pair import WALL, Pki, make_pki
from revocation_fake import OCSP_URI, FakeFetcher

from aioipsec.config import AuthConfig, ConnectionConfig, child, connection
from aioipsec.events import AuthFailed, ChildSaInstalled, IkeSaEstablished
from aioipsec.ike.v1 import IkeSessionV1
from aioipsec.ike.v1.constants import ExchangeType, Flag
from aioipsec.ike.v1.message import peek_header

MM, AM, QM = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE, ExchangeType.QUICK_MODE
SUBJECT_A = "C=CH, O=aioipsec test, CN=site-a.example"
SUBJECT_B = "C=CH, O=aioipsec test, CN=hq.example"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(("p256",))


def _configs(pki: Pki, *, aggressive: bool = False) -> tuple[ConnectionConfig, ConnectionConfig]:
    ci, ki = pki.hosts["p256-a"]
    cr, kr = pki.hosts["p256-b"]
    i = connection(
        "v1hold", version=1, proposals=["aes128-sha256-modp2048"],
        local=AuthConfig("pubkey", "site-a.example", cert=ci, private_key=ki),  # type: ignore[arg-type]
        remote=AuthConfig("pubkey", "hq.example", cacerts=[pki.ca]),  # type: ignore[list-item]
        children=[child("net", local_ts=["10.1.0.0/16"], remote_ts=["10.2.0.0/16"], esp_proposals=["aes128-sha256"])],
        aggressive=aggressive, dpd_delay=0,
    )
    r = connection(
        "v1hold", version=1, proposals=["aes128-sha256-modp2048"],
        local=AuthConfig("pubkey", "hq.example", cert=cr, private_key=kr),  # type: ignore[arg-type]
        remote=AuthConfig("pubkey", "site-a.example", cacerts=[pki.ca]),  # type: ignore[list-item]
        children=[child("net", local_ts=["10.2.0.0/16"], remote_ts=["10.1.0.0/16"], esp_proposals=["aes128-sha256"])],
        aggressive=aggressive, dpd_delay=0,
    )
    return i, r


def _setup(pki: Pki, policy: str = "relaxed", side: str = "r", *, aggressive: bool = False) -> tuple[Pair, FakeFetcher]:
    """A pair whose ``side`` checks the peer's certificate with a fetcher's
    cache (the CA names an OCSP responder, nothing is cached yet)."""
    i_cfg, r_cfg = _configs(pki, aggressive=aggressive)
    f = FakeFetcher(pki)
    cfg = r_cfg if side == "r" else i_cfg
    cfg.remote.revocation = policy
    cfg.remote.revocation_cache = f.cache
    return Pair(i_cfg, r_cfg, wall_clock=lambda: WALL), f


def _cert(pki: Pki, host: str) -> object:
    return pki.hosts[host][0]


def _key(cert: object) -> tuple[bytes, int]:
    return cert.issuer.public_bytes(), cert.serial_number  # type: ignore[attr-defined]


def _encrypted(d: Datagram) -> bool:
    return bool(peek_header(d.data).flags & Flag.ENCRYPTION)


def _phase1_state(s: IkeSessionV1) -> tuple[object, ...]:
    """Everything of the Phase 1 a held message must leave as it was: the
    CBC IV chain, what the task took from the peer, the SA's state and the
    task manager's flights."""
    sa = s.sas[0]
    tm = sa.tm
    task = tm.active if sa.initiator else tm.passive.get(0)
    assert task is not None and sa.keys is not None
    iv = sa.keys.iv
    return (
        iv.phase1_iv, iv._p1().last_block, sa.state, sa.remote_id, sa.spi_r, sa.suite,
        task.step, task.done, task.idii_b, task.idir_b, task.unverified,  # type: ignore[attr-defined]
        tm.active, tuple(tm.passive), tm.kept,
        tuple((m, f.request, tuple(f.packets), f.tries, f.retransmit) for m, f in tm.responding.items()),
        None if tm.initiating is None else (tuple(tm.initiating.packets), tm.initiating.tries),
        tuple(sa.finished_mids), sa.last_inbound,
    )


def _held_lines(caplog: pytest.LogCaptureFixture, step: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"holding {step}" in r.getMessage()]


def _first_held(p: Pair, sender: str, pred=_encrypted) -> Datagram:
    """Run the exchange with the first message of ``sender`` matching
    ``pred`` kept back; returns it (the other side waits for it)."""
    kept: list[Datagram] = []

    def drop(d: Datagram) -> bool:
        if not kept and d.sender == sender and pred(d):
            kept.append(d)
            return True
        return False

    p.drop = drop
    p.start()
    p.drop = lambda d: False
    [d] = kept
    return d


def _deliver_held(p: Pair, d: Datagram, who: str, step: str, caplog: pytest.LogCaptureFixture) -> None:
    """Deliver ``d`` to ``who``: held, nothing answered, nothing changed."""
    s = p.session(who)
    before = _phase1_state(s)
    n = len(p.wire)
    p.deliver(d)
    p.pump()
    assert p.wire[n:] == [d]  # no answer at all: as if the message was lost
    assert s.stats["auth_pending"] == 1
    assert _phase1_state(s) == before
    assert not p.of(who, AuthFailed) and not p.of(who, IkeSaEstablished)
    [line] = _held_lines(caplog, step)
    peer, subject = ("192.0.2.1[site-a.example]", SUBJECT_A) if who == "r" else ("198.51.100.2[hq.example]", SUBJECT_B)
    assert line.startswith(f"peer {peer}: status of certificate '{subject}' being fetched from {OCSP_URI}"), line


def _advance_to(p: Pair, who: str) -> None:
    """Run up to ``who``'s next timer (its retransmission) and what follows."""
    t = p.session(who).get_timer()
    assert t is not None
    p.advance(t)


def _since(p: Pair, n: int) -> list[Datagram]:
    return p.wire[n:]


# --------------------------------------------------------------------------- Main Mode, responder (MM5)


@pytest.mark.parametrize("policy", ["relaxed", "strict"])
def test_mm5_held_then_revoked_refused(pki: Pki, policy: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, policy)
    mm5 = _first_held(p, "i")
    assert [d.exchange for d in p.wire] == [MM] * 5
    _deliver_held(p, mm5, "r", "MM5", caplog)
    key = _key(_cert(pki, "p256-a"))
    assert key in f.cache.wanted and key in f.cache.pending and f.woken == 1
    f.done(_cert(pki, "p256-a"), "revoked")
    n = len(p.wire)
    _advance_to(p, "i")
    assert p.wire[n].sender == "i" and p.wire[n].data == mm5.data  # the identical MM5, processed from scratch
    [af] = p.of("r", AuthFailed)
    assert af.peer == "192.0.2.1[site-a.example]" and af.step == "MM5"
    assert f"certificate '{SUBJECT_A}' is revoked (reason keyCompromise" in af.reason and OCSP_URI in af.reason
    assert not p.of("r", IkeSaEstablished) and not p.of("i", IkeSaEstablished)
    assert p.r.stats["auth_pending"] == 1 and p.r.stats["unverified"] == 0
    assert len(_held_lines(caplog, "MM5")) == 1


@pytest.mark.parametrize("policy", ["relaxed", "strict"])
def test_mm5_held_then_good_established(pki: Pki, policy: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, policy)
    mm5 = _first_held(p, "i")
    _deliver_held(p, mm5, "r", "MM5", caplog)
    f.done(_cert(pki, "p256-a"), "good")
    _advance_to(p, "i")
    # MM1-MM5 (MM5 kept back on the wire, then delivered and held), the
    # retransmitted MM5 decrypted with the unchanged IV: MM6, then Quick Mode
    assert [d.exchange for d in p.wire] == [MM] * 8 + [QM] * 3
    assert p.wire[6].data == mm5.data
    assert p.r.is_established and p.i.is_established
    assert [e.remote_id for e in p.of("r", IkeSaEstablished)] == ["site-a.example"]
    assert len(p.of("r", ChildSaInstalled)) == len(p.of("i", ChildSaInstalled)) == 1
    assert not p.of("r", AuthFailed) and p.r.stats["auth_pending"] == 1
    assert any(m.startswith("OCSP check peer=site-a.example") and "not revoked" in m
               for m in (r.getMessage() for r in caplog.records))


@pytest.mark.parametrize(("policy", "ok"), [("relaxed", True), ("strict", False)])
def test_mm5_fetch_ended_without_answer_decided_by_policy(pki: Pki, policy: str, ok: bool) -> None:
    """The fetcher is done with the certificate but got nothing: the
    retransmission is decided at once by policy, not held again."""
    p, f = _setup(pki, policy)
    p.start()  # MM5 held
    assert p.r.stats["auth_pending"] == 1 and not p.r.is_established
    f.done(_cert(pki, "p256-a"), None)
    _advance_to(p, "i")
    assert p.r.stats["auth_pending"] == 1
    if ok:
        assert p.r.is_established and p.i.is_established
    else:
        [af] = p.of("r", AuthFailed)
        assert f"revocation status of certificate '{SUBJECT_A}' unknown" in af.reason
        assert not p.r.is_established


@pytest.mark.parametrize(("policy", "ok"), [("relaxed", True), ("strict", False)])
def test_mm5_hold_is_bounded(pki: Pki, policy: str, ok: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing arrives: MM5 copies are held until ``hold_limit`` seconds
    after the first, then the status is decided by policy."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, policy)
    f.cache.hold_limit = 10.0
    p.start()
    held_at = p.now
    assert p.r.stats["auth_pending"] == 1
    _advance_to(p, "i")  # t = 4: still within the bound
    assert p.now - held_at < 10.0
    assert p.r.stats["auth_pending"] == 2 and not p.r.is_established and not p.of("r", AuthFailed)
    _advance_to(p, "i")  # t = 4 + 7.2: past it
    assert p.now - held_at >= 10.0
    assert p.r.stats["auth_pending"] == 2
    assert len(_held_lines(caplog, "MM5")) == 1  # logged once per Phase 1
    assert any("certificate status still not fetched after 11 s; deciding by policy" in r.getMessage()
               for r in caplog.records)
    if ok:
        assert p.r.is_established and p.i.is_established
    else:
        [af] = p.of("r", AuthFailed)
        assert "(fetching; a later attempt may succeed) (revocation = strict)" in af.reason
        assert not p.r.is_established and not p.i.is_established


@pytest.mark.parametrize(("policy", "ok"), [("relaxed", True), ("strict", False)])
def test_no_fetcher_attached_decides_at_once(pki: Pki, policy: str, ok: bool) -> None:
    """A cache nobody fills (no ``on_want``) never holds: the policy
    decides the first MM5."""
    p, f = _setup(pki, policy)
    f.cache.on_want = None
    p.start()
    assert p.r.stats["auth_pending"] == 0
    assert [d.exchange for d in p.wire[:5]] == [MM] * 5
    assert p.wire[5].sender == "r"  # the first MM5 answered: MM6, or the AUTHENTICATION_FAILED notify
    if ok:
        assert p.r.is_established and p.i.is_established
    else:
        [af] = p.of("r", AuthFailed)
        assert "unknown" in af.reason and not p.r.is_established


def test_peer_with_another_identity_refused_not_held(pki: Pki) -> None:
    """The identity is judged before holding: a peer whose certificate and
    SIG_I verify but who is not the configured one fails on the first MM5."""
    i_cfg, r_cfg = _configs(pki)
    f = FakeFetcher(pki)
    r_cfg.remote.revocation_cache = f.cache
    r_cfg.remote.id = "other.example"
    p = Pair(i_cfg, r_cfg, wall_clock=lambda: WALL)
    p.start()
    assert p.r.stats["auth_pending"] == 0
    [af] = p.of("r", AuthFailed)
    assert "does not match the configured other.example" in af.reason


def test_forged_signature_refused_not_held(pki: Pki) -> None:
    """A SIG_I that does not verify is not held (the copy is dropped as
    unverifiable and the retransmission fails the same way)."""
    i_cfg, r_cfg = _configs(pki)
    f = FakeFetcher(pki)
    r_cfg.remote.revocation_cache = f.cache
    i_cfg.local.private_key = pki.hosts["p256-b"][1]  # signs with another key than its certificate's
    p = Pair(i_cfg, r_cfg, wall_clock=lambda: WALL)
    p.start()
    assert p.r.stats["auth_pending"] == 0 and p.r.stats["unverified"] == 1
    _advance_to(p, "i")
    assert p.r.stats["auth_pending"] == 0
    assert p.of("r", AuthFailed) and not p.r.is_established


# --------------------------------------------------------------------------- Main Mode, initiator (MM6)


@pytest.mark.parametrize("status", ["revoked", "good"])
def test_mm6_held_by_the_initiator(pki: Pki, status: str, caplog: pytest.LogCaptureFixture) -> None:
    """MM6 is ignored while the responder's certificate status is fetched
    (IV chain as before); our MM5 retransmission makes the responder resend
    the same MM6, which is processed afresh."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed", side="i")
    mm6 = _first_held(p, "r", _encrypted)
    assert p.r.is_established  # the responder is done
    _deliver_held(p, mm6, "i", "MM6", caplog)
    assert p.i.sas[0].tm.initiating is not None  # MM5 still retransmitted
    f.done(_cert(pki, "p256-b"), status)
    n = len(p.wire)
    _advance_to(p, "i")
    resent = _since(p, n)
    assert resent[0].sender == "i" and resent[1].sender == "r" and resent[1].data == mm6.data
    if status == "good":
        assert p.i.is_established and len(p.of("i", ChildSaInstalled)) == 1
        assert not p.of("i", AuthFailed)
    else:
        [af] = p.of("i", AuthFailed)
        assert af.peer == "198.51.100.2[hq.example]" and af.step == "MM6"
        assert f"certificate '{SUBJECT_B}' is revoked (reason keyCompromise" in af.reason
        assert not p.i.is_established
        # the protected delete that follows decrypts at the responder: the IV chain stayed in step
        assert not p.r.is_established
    assert p.i.stats["auth_pending"] == 1


# --------------------------------------------------------------------------- Aggressive Mode


def _am2(d: Datagram) -> bool:
    return d.exchange == AM


@pytest.mark.parametrize("status", ["revoked", "good"])
def test_am2_held_by_the_initiator(pki: Pki, status: str, caplog: pytest.LogCaptureFixture) -> None:
    """AM2 (in clear) is held: its trial keys are dropped, the responder's
    cookie and identity undone; the AM2 that comes again is processed afresh."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed", side="i", aggressive=True)
    am2 = _first_held(p, "r", _am2)
    sa = p.i.sas[0]
    before = (sa.spi_r, sa.remote_id, sa.keys, sa.suite, sa.tm.active, sa.tm.initiating, sa.tm.kept, sa.state)
    p.deliver(am2)
    p.pump()
    assert p.i.stats["auth_pending"] == 1
    assert (sa.spi_r, sa.remote_id, sa.keys, sa.suite, sa.tm.active, sa.tm.initiating, sa.tm.kept, sa.state) == before
    assert sa.keys is None and sa.tm.active is not None and sa.tm.active.step == "AM2"
    assert not p.of("i", AuthFailed) and not p.of("i", IkeSaEstablished)
    [line] = _held_lines(caplog, "AM2")
    assert line.startswith(f"peer 198.51.100.2[hq.example]: status of certificate '{SUBJECT_B}' being fetched"), line
    f.done(_cert(pki, "p256-b"), status)
    p.advance(p.now + 5)  # AM1 resent and AM2 resent by the responder's timer
    if status == "good":
        assert p.i.is_established and p.r.is_established
        assert len(p.of("i", ChildSaInstalled)) == 1 and not p.of("i", AuthFailed)
    else:
        [af] = p.of("i", AuthFailed)
        assert af.peer == "198.51.100.2[hq.example]"
        assert f"certificate '{SUBJECT_B}' is revoked (reason keyCompromise" in af.reason
        assert not p.i.is_established
    assert p.i.stats["auth_pending"] == 1


@pytest.mark.parametrize("status", ["revoked", "good"])
def test_am3_held_by_the_responder(pki: Pki, status: str, caplog: pytest.LogCaptureFixture) -> None:
    """AM3 is the last message, but the responder resends AM2 until it
    accepts an AM3, and the initiator answers a repeated AM2 with its kept
    AM3 (the same bytes): AM3 can be held like MM5."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed", aggressive=True)
    am3 = _first_held(p, "i", _encrypted)
    _deliver_held(p, am3, "r", "AM3", caplog)
    assert p.i.is_established  # the initiator is done after AM3 (Quick Mode waits for the responder)
    f.done(_cert(pki, "p256-a"), status)
    n = len(p.wire)
    _advance_to(p, "r")  # AM2 resent by the responder's timer
    again = [d for d in _since(p, n) if d.exchange == AM]  # (Quick Mode resent at the same time)
    assert again[0].sender == "r" and again[1].sender == "i" and again[1].data == am3.data
    if status == "good":
        p.advance(p.now + 10)  # Quick Mode, dropped before the responder was established, resent
        assert p.r.is_established and len(p.of("r", ChildSaInstalled)) == 1
        assert not p.of("r", AuthFailed)
    else:
        [af] = p.of("r", AuthFailed)
        assert af.peer == "192.0.2.1[site-a.example]" and af.step == "AM3"
        assert f"certificate '{SUBJECT_A}' is revoked (reason keyCompromise" in af.reason
        assert not p.r.is_established
    assert p.r.stats["auth_pending"] == 1


# --------------------------------------------------------------------------- wake-up: retry_held


@pytest.mark.parametrize("status", ["revoked", "good"])
def test_mm5_decided_when_the_fetch_ends(pki: Pki, status: str, caplog: pytest.LogCaptureFixture) -> None:
    """The responder keeps the held MM5 (one per Phase 1) and processes it
    again as soon as the fetcher is done with the certificate: decided at
    the same instant, without the initiator's retransmission."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed")
    mm5 = _first_held(p, "i")
    _deliver_held(p, mm5, "r", "MM5", caplog)
    task = p.r.sas[0].tm.passive[0]
    assert task.held is not None and task.held[0] == mm5.data and task.held[1] == mm5.src
    key = _key(_cert(pki, "p256-a"))
    assert task.held[2] == {key}
    assert p.r.retry_held(p.now, [(b"another CA", 7)]) is False  # not the certificate it waits for
    f.done(_cert(pki, "p256-a"), status)
    start, n = p.now, len(p.wire)
    assert p.r.retry_held(p.now, [key]) is True
    assert task.held is None
    p.pump()
    assert p.now == start
    assert not any(d.data == mm5.data for d in _since(p, n))  # no MM5 retransmission
    if status == "good":
        assert [(d.sender, d.exchange) for d in _since(p, n)][:1] == [("r", MM)]  # MM6 at once
        assert p.r.is_established and p.i.is_established
        assert len(p.of("r", ChildSaInstalled)) == len(p.of("i", ChildSaInstalled)) == 1
        assert not p.of("r", AuthFailed)
    else:
        [af] = p.of("r", AuthFailed)
        assert af.peer == "192.0.2.1[site-a.example]" and af.step == "MM5"
        assert f"certificate '{SUBJECT_A}' is revoked (reason keyCompromise" in af.reason
        assert not p.r.is_established and not p.i.is_established
    assert p.r.stats["auth_pending"] == 1 and p.r.stats["unverified"] == 0
    assert p.r.retry_held(p.now) is False  # nothing kept any more


def test_mm5_retried_while_still_pending_is_held_again(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """A retry before the status is there holds MM5 again, the Phase 1 state
    untouched (the IV chain too, so the later retry still decrypts)."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed")
    mm5 = _first_held(p, "i")
    _deliver_held(p, mm5, "r", "MM5", caplog)
    before = _phase1_state(p.r)
    n = len(p.wire)
    assert p.r.retry_held(p.now) is True
    p.pump()
    assert _since(p, n) == [] and _phase1_state(p.r) == before
    assert p.r.stats["auth_pending"] == 2 and p.r.sas[0].tm.passive[0].held is not None
    f.done(_cert(pki, "p256-a"), "good")
    assert p.r.retry_held(p.now, [_key(_cert(pki, "p256-a"))]) is True
    p.pump()
    assert p.r.is_established and p.i.is_established


@pytest.mark.parametrize("status", ["revoked", "good"])
def test_mm6_decided_when_the_fetch_ends(pki: Pki, status: str, caplog: pytest.LogCaptureFixture) -> None:
    """The initiator processes its held MM6 again once the responder's
    certificate is settled: no MM5 retransmission."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed", side="i")
    mm6 = _first_held(p, "r", _encrypted)
    _deliver_held(p, mm6, "i", "MM6", caplog)
    f.done(_cert(pki, "p256-b"), status)
    n = len(p.wire)
    assert p.i.retry_held(p.now, {_key(_cert(pki, "p256-b"))}) is True
    p.pump()
    assert not any(d.sender == "i" and d.exchange == MM for d in _since(p, n))  # MM5 not resent
    if status == "good":
        assert p.i.is_established and len(p.of("i", ChildSaInstalled)) == 1
    else:
        [af] = p.of("i", AuthFailed)
        assert af.step == "MM6" and f"certificate '{SUBJECT_B}' is revoked" in af.reason
        assert not p.i.is_established and not p.r.is_established  # the protected delete decrypted
    assert p.i.stats["auth_pending"] == 1
