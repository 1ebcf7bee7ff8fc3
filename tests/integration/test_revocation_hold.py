"""IKEv2 holds IKE_AUTH while the peer certificate's revocation status is
being fetched (sans-I/O sessions, a fake fetcher filling a RevocationCache).

Without a status for a certificate that names an OCSP responder (here: the
CA's configured ``ocsp_uris``) and with a fetcher attached, the responder
drops the IKE_AUTH request unanswered -- no response, the message ID not
consumed, the SA as before -- and decides on the initiator's retransmission
with what was fetched meanwhile; bounded by ``cache.hold_limit``.  The
initiator does the same with the IKE_AUTH response (its own retransmission
brings the responder's cached response back)."""

from __future__ import annotations

import logging

import pytest
from ikev2_pair import Pair, Pki, cert_pair_configs, make_pki
from revocation_fake import OCSP_URI, FakeFetcher

from aioipsec.events import AuthFailed, IkeSaEstablished
from aioipsec.ike.v2.session import IkeSessionV2


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(("p256",))


def _cert(pki: Pki, host: str) -> object:
    return pki.hosts[host][0]


def _setup(pki: Pki, policy: str = "relaxed", side: str = "r") -> tuple[Pair, FakeFetcher]:
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    f = FakeFetcher(pki)
    cfg = r_cfg if side == "r" else i_cfg
    cfg.remote.revocation = policy
    cfg.remote.revocation_cache = f.cache
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()  # IKE_SA_INIT
    return p, f


def _state(s: IkeSessionV2) -> tuple[object, ...]:
    sa = s.sa
    return (sa.state, sa.tm.peer_mid, sa.tm.my_mid, sa.tm.last_response, sa.remote_id, s.config,
            sa.established_at, len(s.children))


def _held_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "holding IKE_AUTH" in r.getMessage()]


def _hold_first_request(p: Pair, f: FakeFetcher, caplog: pytest.LogCaptureFixture) -> bytes:
    """Deliver the first IKE_AUTH request: held.  Returns it."""
    assert p.r is not None
    before = _state(p.r)
    [req] = p.out_i()
    p.to_r([req])
    assert p.out_r() == []  # no answer at all: as if the request was lost
    assert p.r.stats.auth_pending == 1 and p.r.stats.errors_answered == 0
    assert _state(p.r) == before  # message ID not consumed, nothing cached, config/identity undone
    assert p.r.sa.auth_held_at == p.now  # only the start of the hold is kept
    assert not p.events("r", AuthFailed) and not p.events("r", IkeSaEstablished)
    key = (p.i.config.local.cert.issuer.public_bytes(), p.i.config.local.cert.serial_number)  # type: ignore[union-attr]
    assert key in f.cache.wanted and key in f.cache.pending and f.woken == 1
    [line] = _held_lines(caplog)
    assert line.startswith("peer 192.0.2.1[site-a.example]: status of certificate "
                           "'C=CH, O=aioipsec test, CN=site-a.example' being fetched from " + OCSP_URI), line
    return req


def _retransmit(p: Pair) -> bytes:
    """Let the initiator's retransmission timer fire; returns what it resent."""
    t = p.i.get_timer()
    assert t is not None
    p.advance(t - p.now)
    [again] = p.out_i()
    return again


@pytest.mark.parametrize("policy", ["relaxed", "strict"])
def test_responder_holds_then_refuses_a_revoked_peer(pki: Pki, policy: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, policy)
    req = _hold_first_request(p, f, caplog)
    f.done(_cert(pki, "p256-a"), "revoked")
    again = _retransmit(p)
    assert again == req  # the identical request, processed from scratch
    p.to_r([again])
    p.to_i(p.out_r())
    [af] = p.events("r", AuthFailed)
    assert af.peer == "192.0.2.1[site-a.example]"
    assert "certificate 'C=CH, O=aioipsec test, CN=site-a.example' is revoked (reason keyCompromise" in af.reason
    assert OCSP_URI in af.reason
    assert not p.events("r", IkeSaEstablished) and not p.events("i", IkeSaEstablished)
    assert p.events("i", AuthFailed)  # told with AUTHENTICATION_FAILED
    assert p.r is not None and p.r.stats.auth_pending == 1
    assert len(_held_lines(caplog)) == 1


@pytest.mark.parametrize("policy", ["relaxed", "strict"])
def test_responder_holds_then_admits_a_good_peer(pki: Pki, policy: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, policy)
    _hold_first_request(p, f, caplog)
    f.done(_cert(pki, "p256-a"), "good")
    p.to_r([_retransmit(p)])
    p.to_i(p.out_r())
    assert p.r is not None and p.r.is_established and p.i.is_established
    assert p.r.sa.remote_id is not None and str(p.r.sa.remote_id) == "site-a.example"
    assert p.r.sa.tm.peer_mid == 2  # message ID 1 consumed once, by the answered copy
    assert p.r.children and p.i.children  # the Child SA of IKE_AUTH too
    assert not p.events("r", AuthFailed)
    assert any(m.startswith("OCSP check peer=192.0.2.1[site-a.example]") and "not revoked" in m
               for m in (r.getMessage() for r in caplog.records))


@pytest.mark.parametrize(("policy", "ok"), [("relaxed", True), ("strict", False)])
def test_a_finished_fetch_without_answer_is_decided_by_policy(
        pki: Pki, policy: str, ok: bool, caplog: pytest.LogCaptureFixture) -> None:
    """The fetcher is done with the certificate but got nothing (responder
    unreachable): the retransmission is decided at once, not held again."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, policy)
    _hold_first_request(p, f, caplog)
    f.done(_cert(pki, "p256-a"), None)
    p.to_r([_retransmit(p)])
    p.to_i(p.out_r())
    assert p.r is not None and p.r.stats.auth_pending == 1
    if ok:
        assert p.r.is_established
    else:
        [af] = p.events("r", AuthFailed)
        assert "revocation status of certificate 'C=CH, O=aioipsec test, CN=site-a.example' unknown" in af.reason
        assert not p.r.is_established


@pytest.mark.parametrize(("policy", "ok"), [("relaxed", True), ("strict", False)])
def test_the_hold_is_bounded(pki: Pki, policy: str, ok: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing arrives: the retransmissions are held until ``hold_limit``
    seconds after the first, then the status is decided by policy."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, policy)
    f.cache.hold_limit = 10.0
    _hold_first_request(p, f, caplog)
    held_at = p.now
    p.to_r([_retransmit(p)])  # t = 4: still within the bound
    assert p.now - held_at < 10.0
    assert p.out_r() == [] and p.r is not None and p.r.stats.auth_pending == 2
    p.to_r([_retransmit(p)])  # t = 4 + 7.2: past it
    assert p.now - held_at >= 10.0
    p.to_i(p.out_r())
    assert p.r.stats.auth_pending == 2
    assert len(_held_lines(caplog)) == 1  # logged once per IKE SA
    assert any("certificate status still not fetched after 11 s; deciding by policy" in r.getMessage()
               for r in caplog.records)
    if ok:
        assert p.r.is_established and p.i.is_established
    else:
        [af] = p.events("r", AuthFailed)
        assert "(fetching; a later attempt may succeed) (revocation = strict)" in af.reason
        assert not p.i.is_established


def test_no_fetcher_attached_decides_at_once(pki: Pki) -> None:
    """A cache nobody fills (no ``on_want``) never holds: today's policy."""
    p, f = _setup(pki, "strict")
    f.cache.on_want = None
    p.roundtrip()
    assert p.r is not None and p.r.stats.auth_pending == 0
    [af] = p.events("r", AuthFailed)
    assert "unknown" in af.reason


def test_a_peer_not_proving_its_identity_is_refused_not_held(pki: Pki) -> None:
    """The signature and identity are checked before holding: an IKE_AUTH
    that fails them is refused on the spot."""
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    i_cfg.local.id = "mallory.example"  # not in site-a's certificate
    r_cfg.remote.id = "%any"
    f = FakeFetcher(pki)
    r_cfg.remote.revocation_cache = f.cache
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    assert p.r is not None and p.r.stats.auth_pending == 0
    [af] = p.events("r", AuthFailed)
    assert "not confirmed by the certificate" in af.reason


@pytest.mark.parametrize("status", ["revoked", "good"])
def test_initiator_holds_the_response(pki: Pki, status: str, caplog: pytest.LogCaptureFixture) -> None:
    """The initiator checking the responder's certificate: the IKE_AUTH
    response is ignored while its status is fetched (the exchange stays
    active); the retransmitted request brings the cached response back."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed", side="i")
    p.roundtrip()  # IKE_AUTH request answered; the answer is held
    assert p.r is not None and p.r.is_established  # the responder is done
    assert p.i.stats.auth_pending == 1 and not p.i.is_established
    assert p.i.sa.tm.active is not None and p.i.sa.tm.my_mid == 1 and p.i.sa.remote_id is None
    [line] = _held_lines(caplog)
    assert line.startswith("peer 192.0.2.2[hq.example]: status of certificate "
                           "'C=CH, O=aioipsec test, CN=hq.example' being fetched from " + OCSP_URI), line
    f.done(_cert(pki, "p256-b"), status)
    p.to_r([_retransmit(p)])
    assert p.r.stats.responses_resent == 1
    p.to_i(p.out_r())
    if status == "good":
        assert p.i.is_established and p.i.sa.tm.my_mid == 2 and p.i.children
        assert not p.events("i", AuthFailed)
    else:
        [af] = p.events("i", AuthFailed)
        assert af.peer == "192.0.2.2[hq.example]" and "CN=hq.example' is revoked (reason keyCompromise" in af.reason
        assert not p.i.is_established
    assert p.i.stats.auth_pending == 1


# ---------------------------------------------------------------------- wake-up: retry_held


def _key(cert: object) -> tuple[bytes, int]:
    return (cert.issuer.public_bytes(), cert.serial_number)  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", ["revoked", "good"])
def test_responder_decides_the_held_request_when_the_fetch_ends(
        pki: Pki, status: str, caplog: pytest.LogCaptureFixture) -> None:
    """retry_held processes the kept IKE_AUTH request again as soon as the
    fetcher is done with the certificate: decided at the same instant, with
    no retransmission from the initiator; the kept message is dropped then."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed")
    req = _hold_first_request(p, f, caplog)
    assert p.r is not None
    msg, addr, waits = p.r.sa.auth_held  # type: ignore[misc]
    assert msg.message_id == 1 and not msg.response and addr == ("192.0.2.1", 4500)
    assert waits == {_key(_cert(pki, "p256-a"))}
    start = p.now
    # still pending, or another certificate settled: nothing is processed
    assert p.r.retry_held(p.now, [(b"other", 1)]) is False
    assert p.r.sa.auth_held is not None and p.out_r() == []
    f.done(_cert(pki, "p256-a"), status)
    assert p.r.retry_held(p.now, [_key(_cert(pki, "p256-a"))]) is True
    assert p.r.sa.auth_held is None
    p.to_i(p.out_r())
    assert p.now == start and p.out_i() == []  # no retransmission was needed (or sent)
    assert p.r.stats.auth_pending == 1
    if status == "good":
        assert p.r.is_established and p.i.is_established and p.r.sa.tm.peer_mid == 2
        assert p.r.children and p.i.children
    else:
        [af] = p.events("r", AuthFailed)
        assert "CN=site-a.example' is revoked (reason keyCompromise" in af.reason
        assert p.events("i", AuthFailed) and not p.i.is_established
    # the initiator's later retransmission of the same request: answered from the cache
    if status == "good":
        p.to_r([req])
        assert p.r.stats.responses_resent == 1 and p.r.stats.auth_pending == 1
    assert p.r.retry_held(p.now) is False  # nothing kept any more


def test_a_retry_while_still_pending_holds_again_and_a_retransmission_replaces_it(
        pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """One message kept per IKE SA: retried while the certificate is still
    being fetched (pending again), it is held again, unanswered; the peer's
    retransmission replaces the kept copy; once settled it is decided."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed")
    _hold_first_request(p, f, caplog)
    assert p.r is not None
    first = p.r.sa.auth_held
    assert p.r.retry_held(p.now) is True  # settled=None: any; the status is still pending
    assert p.out_r() == [] and p.r.stats.auth_pending == 2 and not p.r.is_established
    assert p.r.sa.auth_held is not None and p.r.sa.auth_held is not first
    p.to_r([_retransmit(p)])
    assert p.out_r() == [] and p.r.stats.auth_pending == 3
    kept = p.r.sa.auth_held
    assert kept is not None and kept is not first
    assert len(_held_lines(caplog)) == 1
    f.done(_cert(pki, "p256-a"), "good")
    assert p.r.retry_held(p.now, [_key(_cert(pki, "p256-a"))]) is True
    p.to_i(p.out_r())
    assert p.r.is_established and p.i.is_established and p.r.sa.auth_held is None


@pytest.mark.parametrize("status", ["revoked", "good"])
def test_initiator_decides_the_held_response_when_the_fetch_ends(
        pki: Pki, status: str, caplog: pytest.LogCaptureFixture) -> None:
    """The initiator keeps the IKE_AUTH response it held and processes it
    again once the responder's certificate is settled: no retransmission."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p, f = _setup(pki, "relaxed", side="i")
    p.roundtrip()  # IKE_AUTH request answered; the answer is held
    assert p.r is not None and p.i.stats.auth_pending == 1 and not p.i.is_established
    assert p.i.sa.auth_held is not None and p.i.sa.auth_held[0].response
    start = p.now
    f.done(_cert(pki, "p256-b"), status)
    assert p.i.retry_held(p.now, {_key(_cert(pki, "p256-b"))}) is True
    assert p.i.sa.auth_held is None
    assert p.now == start and p.r.stats.responses_resent == 0
    if status == "good":
        assert p.i.is_established and p.i.sa.tm.my_mid == 2 and p.i.children
        assert not p.events("i", AuthFailed)
    else:
        [af] = p.events("i", AuthFailed)
        assert af.peer == "192.0.2.2[hq.example]" and "CN=hq.example' is revoked (reason keyCompromise" in af.reason
        assert not p.i.is_established
    assert p.i.stats.auth_pending == 1
