"""IKEv2 multiple authentication rounds (RFC 4739) end to end, in memory: a
client with ``local-2`` (EAP-MD5 / EAP-GTC after its certificate or PSK
round) against a gateway with ``remote-2``; the Child SA only after the
second round; a wrong second-round password; a client that skips the round
the gateway requires; a client announcing a round the gateway has no
``remote-2`` for; a gateway that does not support multiple rounds."""

from __future__ import annotations

import asyncio
import logging

import pytest
from ikev2_pair import Pair, cert_pair_configs, make_pki, mirror, psk_pair_configs

from aioipsec.config import AuthConfig
from aioipsec.events import (
    AuthFailed,
    ChildSaInstalled,
    IkeSaEstablished,
    NegotiationFailed,
)
from aioipsec.ike.constants import EapCode, NotifyType
from aioipsec.ike.v2 import eap as E
from aioipsec.ike.v2.message import decode_message
from aioipsec.ike.v2.payloads import (
    AuthPayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    NotifyPayload,
    SaPayload,
    TsiPayload,
)
from aioipsec.ike.v2.session import IkeState

PASSWORD = b"s3cret-alice"


@pytest.fixture(scope="module")
def pki():
    return make_pki(("p256",))


def multi_configs(method: str = "eap-md5", *, first: str = "pubkey", pki=None, client_secret: bytes = PASSWORD,
                  local2: bool = True, remote2: bool = True):
    i, r = cert_pair_configs(pki, "p256") if first == "pubkey" else psk_pair_configs()
    if local2:
        i.local2 = AuthConfig(auth=method, id="alice")
        i.eap_secrets = {"alice": client_secret}
    if remote2:
        r.remote2 = AuthConfig(auth=method)
        r.eap_secrets = {"alice": PASSWORD}
    i.legacy = r.legacy = True
    return i, r


def has_notify(msg, kind: NotifyType) -> bool:
    return any(isinstance(p, NotifyPayload) and p.notify_type == kind for p in msg.payloads)


@pytest.mark.parametrize("method,first", [("eap-md5", "pubkey"), ("eap-gtc", "pubkey"), ("eap-md5", "psk")])
def test_two_rounds_then_child_sa(pki, method: str, first: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    i, r = multi_configs(method, first=first, pki=pki)
    p = Pair(i, r)
    p.initiate()
    a = p.out_i()
    p.to_r(a)
    b = p.out_r()
    assert has_notify(decode_message(b[0]), NotifyType.MULTIPLE_AUTH_SUPPORTED)  # IKE_SA_INIT response
    p.to_i(b)
    # round 1: IDi, AUTH, SA/TS and ANOTHER_AUTH_FOLLOWS -> IDr, AUTH, no SA/TS yet
    a = p.out_i()
    req = decode_message(a[0], p.r.sa.sk)
    assert req.message_id == 1 and req.get(AuthPayload) is not None and req.get(SaPayload) is not None
    assert has_notify(req, NotifyType.ANOTHER_AUTH_FOLLOWS) and has_notify(req, NotifyType.MULTIPLE_AUTH_SUPPORTED)
    p.to_r(a)
    b = p.out_r()
    resp = decode_message(b[0], p.i.sa.sk)
    assert resp.get(IdrPayload) is not None and resp.get(AuthPayload) is not None
    assert resp.get(SaPayload) is None and resp.get(EapPayload) is None
    assert p.r.state is not IkeState.ESTABLISHED and not p.events("r", ChildSaInstalled)
    p.to_i(b)
    assert p.i.state is not IkeState.ESTABLISHED and not p.events("i", ChildSaInstalled)
    # round 2: IDi "alice" without AUTH -> EAP Request/Identity (no IDr/AUTH again)
    a = p.out_i()
    req = decode_message(a[0], p.r.sa.sk)
    idi = req.get(IdiPayload)
    assert req.message_id == 2 and idi.data == b"alice" and req.get(AuthPayload) is None
    p.to_r(a)
    b = p.out_r()
    resp = decode_message(b[0], p.i.sa.sk)
    assert resp.get(IdrPayload) is None and resp.get(AuthPayload) is None
    eap = resp.get(EapPayload)
    assert eap.code == EapCode.REQUEST and eap.eap_type == E.EapType.IDENTITY
    p.to_i(b)
    mids = []
    for _ in range(5):
        a = p.out_i()
        if not a:
            break
        req = decode_message(a[0], p.r.sa.sk)
        mids.append(req.message_id)
        p.to_r(a)
        b = p.out_r()
        resp = decode_message(b[0], p.i.sa.sk)
        if req.get(AuthPayload) is None:  # an EAP round: no Child SA yet
            assert resp.get(SaPayload) is None and not p.events("r", ChildSaInstalled)
        else:  # the final AUTH: the gateway's AUTH and the Child SA of the first request
            assert resp.get(AuthPayload) is not None and resp.get(SaPayload) is not None
            assert resp.get(TsiPayload) is not None
        p.to_i(b)
    assert mids == [3, 4, 5]  # Identity, method, (Success ->) AUTH
    assert p.i.state is IkeState.ESTABLISHED and p.r.state is IkeState.ESTABLISHED
    ci, cr = p.events("i", ChildSaInstalled), p.events("r", ChildSaInstalled)
    assert len(ci) == len(cr) == 1 and mirror(ci[0], cr[0])
    (er,), (ei,) = p.events("r", IkeSaEstablished), p.events("i", IkeSaEstablished)
    assert er.remote_id == "site-a.example" and er.remote_eap_id == "alice"  # both rounds' identities
    assert ei.local_id == "site-a.example" and ei.local_eap_id == "alice" and ei.remote_id == "hq.example"
    assert p.i.sa.eap is None and p.r.sa.eap is None
    assert not p.events("i", AuthFailed) and not p.events("r", AuthFailed)
    assert not any(PASSWORD.decode() in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("method", ["eap-md5", "eap-gtc"])
def test_wrong_round2_password_is_refused(pki, method: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    i, r = multi_configs(method, pki=pki, client_secret=b"wrong-password")
    p = Pair(i, r)
    p.initiate()
    p.settle()
    assert p.i.is_closed and p.r.is_closed
    assert p.i.state is not IkeState.ESTABLISHED and p.r.state is not IkeState.ESTABLISHED
    (fr,), (fi,) = p.events("r", AuthFailed), p.events("i", AuthFailed)
    assert "alice" in fr.reason and "second round" in fr.reason and "site-a.example" in fr.peer
    assert "alice" in fi.reason and "hq.example" in fi.peer
    assert not p.events("i", ChildSaInstalled) and not p.events("r", ChildSaInstalled)
    assert not p.events("r", IkeSaEstablished)
    logs = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "wrong-password" not in logs and PASSWORD.decode() not in logs


def test_client_without_round2_is_refused(pki) -> None:
    """remote-2 configured, the client authenticates once (no
    ANOTHER_AUTH_FOLLOWS): AUTHENTICATION_FAILED, naming the peer."""
    i, r = multi_configs(pki=pki, local2=False)
    p = Pair(i, r)
    p.initiate()
    p.roundtrip()  # IKE_SA_INIT
    p.to_r(p.out_i())
    b = p.out_r()
    resp = decode_message(b[0], p.i.sa.sk)
    assert has_notify(resp, NotifyType.AUTHENTICATION_FAILED) and resp.get(SaPayload) is None
    p.to_i(b)
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "site-a.example" in fr.peer and "ANOTHER_AUTH_FOLLOWS" in fr.reason and "remote-2" in fr.reason
    assert p.r.is_closed and p.i.is_closed
    assert not p.events("r", ChildSaInstalled) and not p.events("i", ChildSaInstalled)


def test_client_announcing_unwanted_round_is_refused(pki) -> None:
    """The client announces a second round, but no connection of the gateway
    has remote-2: refused, not established after round 1."""
    i, r = multi_configs(pki=pki, remote2=False)
    _i2, r2 = multi_configs(pki=pki)  # another connection of the gateway wants remote-2: it sends the support
    r2.name = "other"
    r2.remote = AuthConfig(auth="pubkey", id="nobody.example", cacerts=r2.remote.cacerts)
    p = Pair(i, [r, r2])
    p.initiate()
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "announced a second authentication round" in fr.reason and "site-a.example" in fr.peer
    assert p.r.is_closed and not p.events("r", ChildSaInstalled)


def test_gateway_without_multiple_auth_support(pki) -> None:
    """local-2 but the gateway did not send MULTIPLE_AUTH_SUPPORTED: the
    client does not start IKE_AUTH and says why."""
    i, r = multi_configs(pki=pki, remote2=False)
    p = Pair(i, r)
    p.initiate()
    p.roundtrip()
    assert not p.out_i()
    (nf,) = [e for e in p.events("i", NegotiationFailed) if e.exchange == "IKE_AUTH"]
    assert "MULTIPLE_AUTH_SUPPORTED" in nf.reason and "local-2" in nf.reason
    assert p.i.is_closed


def test_round2_identity_must_match_remote2_id(pki) -> None:
    i, r = multi_configs(pki=pki)
    r.remote2.id = "bob"
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "'alice' does not match remote-2 id 'bob'" in fr.reason
    assert p.r.is_closed and p.i.is_closed and not p.events("r", ChildSaInstalled)


def test_round2_restricted_eap_id(pki) -> None:
    i, r = multi_configs("eap-gtc", pki=pki)
    r.remote2.eap_id = "bob"
    r.eap_secrets["bob"] = b"b"
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "'alice' is not 'bob'" in fr.reason
    assert not p.events("r", ChildSaInstalled)


def test_third_round_is_refused(pki) -> None:
    """A client announcing yet another round with its AUTH after the
    round-2 EAP: refused (two rounds are supported), no Child SA."""
    from aioipsec.ike.v2.tasks.common import notify

    i, r = multi_configs(pki=pki)
    p = Pair(i, r)
    p.initiate()
    p.roundtrip()  # IKE_SA_INIT
    p.roundtrip()  # round 1
    task = p.i.sa.eap.task
    real = task._eap_build_i

    def build(msg):  # the final AUTH of round 2 also carries ANOTHER_AUTH_FOLLOWS
        st = real(msg)
        if p.i.sa.eap is not None and p.i.sa.eap.final:
            msg.add(notify(NotifyType.ANOTHER_AUTH_FOLLOWS))
        return st

    task._eap_build_i = build
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "another authentication round after EAP" in fr.reason and "alice" in fr.reason
    assert p.r.is_closed and p.i.is_closed
    assert not p.events("r", ChildSaInstalled) and not p.events("r", IkeSaEstablished)


def test_unsupported_remote2_configurations_are_refused(pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """remote-2 combinations the loader refuses, built in code: after an EAP
    first round (a client announcing the round with its first, AUTH-less
    IKE_AUTH then finished after one EAP round, remote-2 never ran), and a
    non-EAP remote-2 (the second round raised KeyError out of the session).
    Both are now AUTHENTICATION_FAILED naming the connection, no IKE SA."""
    from aioipsec.ike.v2.tasks.common import notify
    from aioipsec.ike.v2.tasks.ike_auth import IkeAuth

    # an EAP first round with remote-2
    real = IkeAuth.build_i

    def build_i(self, msg):  # the client's first IKE_AUTH (IDi, no AUTH) announces another round
        st = real(self, msg)
        if msg.get(AuthPayload) is None and msg.get(IdiPayload) is not None:
            msg.add(notify(NotifyType.ANOTHER_AUTH_FOLLOWS))
        return st

    monkeypatch.setattr(IkeAuth, "build_i", build_i)
    i, r = psk_pair_configs()
    i.local = AuthConfig(auth="eap-md5", id="site-a.example", eap_id="alice")
    r.remote = AuthConfig(auth="eap-md5", id="%any")
    r.remote2 = AuthConfig(auth="eap-gtc")
    i.eap_secrets = r.eap_secrets = {"alice": PASSWORD}
    i.legacy = r.legacy = True
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "remote-2 auth = eap-gtc after remote auth = eap-md5 is not supported" in fr.reason
    assert r.name in fr.reason and "site-a.example" in fr.peer
    assert not p.r.is_established and not p.i.is_established and not p.events("r", IkeSaEstablished)
    monkeypatch.undo()
    # an IKEv1-only remote-2 (XAUTH) on IKEv2
    i, r = multi_configs(pki=pki)
    r.remote2 = AuthConfig(auth="xauth")
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "remote-2 auth = xauth after remote auth = pubkey is not supported" in fr.reason
    assert p.r.is_closed and p.i.is_closed and not p.events("r", ChildSaInstalled)


# ---------------------------------------------------------------------- a certificate or PSK second round


def user_cert(pki, email: str = "alice@example"):  # type: ignore[no-untyped-def]
    """A user certificate (CN and RFC822 SAN ``email``) of ``pki``'s CA: the
    second round's identity, as a machine-then-user certificate setup."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from ikev2_pair import WALL

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email)]))
        .issuer_name(pki.ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(WALL - datetime.timedelta(days=1))
        .not_valid_after(WALL + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .sign(pki.ca_key, hashes.SHA256())
    )
    return cert, key


ROUND2_PSK = b"round-2 user secret"


def round2_configs(pki, method: str, *, first: str = "pubkey", user_pki=None, client_psk: bytes = ROUND2_PSK,
                   local2: bool = True):
    """Round 1 with ``first`` (the hosts' certificates or the PSK), round 2
    with a user certificate of ``user_pki`` (default: the trusted CA) or a
    second PSK, as ``alice@example``."""
    i, r = cert_pair_configs(pki, "p256") if first == "pubkey" else psk_pair_configs()
    if method == "pubkey":
        cert, key = user_cert(user_pki or pki)
        if local2:
            i.local2 = AuthConfig(auth="pubkey", id="alice@example", cert=cert, private_key=key)
        r.remote2 = AuthConfig(auth="pubkey", id="%any", cacerts=[pki.ca])
    else:
        if local2:
            i.local2 = AuthConfig(auth="psk", id="alice@example")
        i.psk2 = client_psk
        r.remote2 = AuthConfig(auth="psk", id="alice@example")
        r.psk2 = ROUND2_PSK
    return i, r


@pytest.mark.parametrize("method,first", [("pubkey", "pubkey"), ("pubkey", "psk"), ("psk", "pubkey")])
def test_certificate_or_psk_second_round(pki, method: str, first: str, caplog: pytest.LogCaptureFixture) -> None:
    """RFC 4739 with charon's sequence: round 1 (IDi, AUTH, SA/TS,
    ANOTHER_AUTH_FOLLOWS) answered by IDr and AUTH alone; round 2 is IDi
    (the user), CERT and AUTH over the new IDi, answered without AUTH but
    with the Child SA of the first request."""
    from aioipsec.ike import auth as A
    from aioipsec.ike.v2.payloads import CertPayload

    caplog.set_level(logging.DEBUG)
    i, r = round2_configs(pki, method, first=first)
    p = Pair(i, r)
    p.initiate()
    p.roundtrip()  # IKE_SA_INIT
    a = p.out_i()
    req = decode_message(a[0], p.r.sa.sk)
    assert req.get(AuthPayload) is not None and has_notify(req, NotifyType.ANOTHER_AUTH_FOLLOWS)
    p.to_r(a)
    b = p.out_r()
    resp = decode_message(b[0], p.i.sa.sk)
    assert resp.get(IdrPayload) is not None and resp.get(AuthPayload) is not None and resp.get(SaPayload) is None
    assert p.r.state is not IkeState.ESTABLISHED
    p.to_i(b)
    assert p.i.state is not IkeState.ESTABLISHED and not p.events("i", ChildSaInstalled)
    a = p.out_i()
    req = decode_message(a[0], p.r.sa.sk)
    idi, auth = req.get(IdiPayload), req.get(AuthPayload)
    assert req.message_id == 2 and idi.data == b"alice@example" and auth is not None
    assert req.get(SaPayload) is None and not has_notify(req, NotifyType.ANOTHER_AUTH_FOLLOWS)
    # the AUTH covers the IKE_SA_INIT request, Nr and prf(SK_pi, the round-2 IDi), as in round 1
    sa = p.r.sa
    octets = A.signed_octets(sa.init_request, sa.nr, bytes([idi.id_type, 0, 0, 0]) + idi.data, sa.prf, sa.keys.sk_pi)
    if method == "pubkey":
        (cert,) = [A.load_der_certificate(c.data) for c in req.get_all(CertPayload)]
        assert cert == i.local2.cert
        A.verify_signature(cert.public_key(), auth.method, auth.data, octets)
    else:
        assert req.get(CertPayload) is None and A.verify_psk(sa.prf, ROUND2_PSK, octets, auth.data)
    p.to_r(a)
    b = p.out_r()
    resp = decode_message(b[0], p.i.sa.sk)
    assert resp.get(AuthPayload) is None and resp.get(IdrPayload) is None
    assert resp.get(SaPayload) is not None and resp.get(TsiPayload) is not None
    p.to_i(b)
    assert p.i.state is IkeState.ESTABLISHED and p.r.state is IkeState.ESTABLISHED
    ci, cr = p.events("i", ChildSaInstalled), p.events("r", ChildSaInstalled)
    assert len(ci) == len(cr) == 1 and mirror(ci[0], cr[0])
    (er,), (ei,) = p.events("r", IkeSaEstablished), p.events("i", IkeSaEstablished)
    assert er.remote_id == "site-a.example" and er.remote_round2_id == "alice@example" and er.remote_eap_id is None
    assert ei.local_id == "site-a.example" and ei.local_round2_id == "alice@example" and ei.remote_id == "hq.example"
    assert p.i.sa.eap is None and p.r.sa.eap is None
    assert not p.events("i", AuthFailed) and not p.events("r", AuthFailed)
    assert not any(ROUND2_PSK.decode() in rec.getMessage() for rec in caplog.records)


def test_round2_certificate_of_an_untrusted_ca_is_refused(pki) -> None:
    i, r = round2_configs(pki, "pubkey", user_pki=make_pki(("p256",)))
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (fr,), (fi,) = p.events("r", AuthFailed), p.events("i", AuthFailed)
    assert "second round" in fr.reason and "remote-2 auth = pubkey" in fr.reason and "site-a.example" in fr.peer
    assert "alice@example" in fi.reason and "hq.example" in fi.peer
    assert p.r.is_closed and p.i.is_closed
    assert not p.events("r", ChildSaInstalled) and not p.events("i", ChildSaInstalled)
    assert not p.events("r", IkeSaEstablished) and not p.events("i", IkeSaEstablished)


def test_wrong_round2_psk_is_refused(pki) -> None:
    i, r = round2_configs(pki, "psk", client_psk=b"not the user secret")
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "pre-shared key AUTH mismatch" in fr.reason and "second round" in fr.reason and "site-a.example" in fr.peer
    assert p.r.is_closed and p.i.is_closed and not p.events("r", ChildSaInstalled)
    assert not p.events("r", IkeSaEstablished)


@pytest.mark.parametrize("method", ["pubkey", "psk"])
def test_client_skipping_a_certificate_or_psk_round_is_refused(pki, method: str) -> None:
    """remote-2 pubkey/psk, the client authenticates once: AUTHENTICATION_FAILED
    naming the peer and the round the connection requires."""
    i, r = round2_configs(pki, method, local2=False)
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "site-a.example" in fr.peer and "ANOTHER_AUTH_FOLLOWS" in fr.reason
    assert f"remote-2 auth = {method}" in fr.reason
    assert p.r.is_closed and p.i.is_closed
    assert not p.events("r", ChildSaInstalled) and not p.events("i", ChildSaInstalled)


def test_round2_without_auth_is_refused_by_a_certificate_gateway(pki) -> None:
    """The gateway wants a certificate in round 2, the client runs EAP (IDi
    without AUTH): refused, no Child SA."""
    i, _r = multi_configs("eap-gtc", pki=pki)
    _i, r = round2_configs(pki, "pubkey")
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "'alice' without AUTH" in fr.reason and "remote-2 auth = pubkey" in fr.reason
    assert p.r.is_closed and not p.events("r", ChildSaInstalled) and not p.events("r", IkeSaEstablished)


def test_round2_certificate_must_confirm_the_round2_identity(pki) -> None:
    i, r = round2_configs(pki, "pubkey")
    i.local2.id = "mallory@example"  # the certificate is alice's
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (fr,) = p.events("r", AuthFailed)
    assert "'mallory@example' is not confirmed by the certificate" in fr.reason and "second round" in fr.reason
    assert not p.events("r", ChildSaInstalled)


@pytest.mark.parametrize("method", ["pubkey", "psk"])
def test_client_takes_its_virtual_ip_from_the_response_without_auth(pki, method: str) -> None:
    """The gateway answers a certificate/PSK second round without AUTH (as
    charon), the CFG_REPLY in it: the client's virtual IP is the lease, in
    its session and its IkeSaEstablished."""
    from aioipsec.ike.v2.pools import AddressPool

    i, r = round2_configs(pki, method)
    i.vips, r.pools = ["0.0.0.0"], ["rw"]
    pools = {"rw": AddressPool("rw", "10.3.0.0/28", dns=["10.3.0.53"])}
    p = Pair(i, r, pools=pools)
    p.initiate()
    p.settle()
    (ei,), (er,) = p.events("i", IkeSaEstablished), p.events("r", IkeSaEstablished)
    assert er.remote_vips == ("10.3.0.1",)
    assert ei.local_vips == ("10.3.0.1",) and ei.dns == ("10.3.0.53",) and p.i.local_vips == ["10.3.0.1"]
    assert len(p.events("i", ChildSaInstalled)) == 1 and not p.events("i", NegotiationFailed)


async def test_status_shows_the_round2_identity() -> None:
    """Endpoints (PSK, then a second PSK round as alice@example): status
    JSON ``remote_round2_id`` / ``local_round2_id`` and the swanctl-style
    text ``round 2: 'alice@example'`` after the first identity; never the PSKs."""
    from asyncwait import until

    from aioipsec.asyncio.endpoint import Endpoint
    from aioipsec.asyncio.sockets import MemoryNetwork
    from aioipsec.config import child, connection
    from aioipsec.status import endpoint_status, format_status
    from aioipsec.transports.memory import memory_pipe

    net = MemoryNetwork()
    gw_in, _a = memory_pipe(queue_size=64)
    c_in, _b = memory_pipe(queue_size=64)
    gw_cfg = connection("rw", psk="round-1 psk", local_id="gw.example", remote_id="%any", local_addrs=["192.0.2.2"],
                        dpd_delay=0, children=[child("net", local_ts=["203.0.113.0/24"])],
                        remote2=AuthConfig(auth="psk", id="alice@example"), psk2=ROUND2_PSK)
    c_cfg = connection("home", psk="round-1 psk", local_id="rw.example", remote_id="gw.example",
                       local_addrs=["192.0.2.10"], remote_addrs=["192.0.2.2"], dpd_delay=0,
                       children=[child("net", remote_ts=["203.0.113.0/24"])],
                       local2=AuthConfig(auth="psk", id="alice@example"), psk2=ROUND2_PSK)
    gw = await Endpoint.create("192.0.2.2", configurations=[gw_cfg], network=net, inner=gw_in)
    cl = await Endpoint.create("192.0.2.10", configurations=[c_cfg], network=net, inner=c_in)
    installed: list = []
    cl.event_listeners.append(lambda _p, ev: installed.append(ev) if isinstance(ev, ChildSaInstalled) else None)
    try:
        cl.initiate("home")
        await until(lambda: installed, what="the Child SA after both rounds")
        await until(lambda: endpoint_status(gw)["ike_sas"] and endpoint_status(gw)["ike_sas"][0]["state"] == "ESTABLISHED",
                    what="the gateway's IKE SA")
        (g,) = endpoint_status(gw)["ike_sas"]
        (c,) = endpoint_status(cl)["ike_sas"]
        assert (g["remote_id"], g["remote_round2_id"], g["local_round2_id"]) == ("rw.example", "alice@example", None)
        assert (c["local_id"], c["local_round2_id"], c["remote_round2_id"]) == ("rw.example", "alice@example", None)
        text = format_status(endpoint_status(gw))
        assert "remote 'rw.example' @ 192.0.2.10[4500] round 2: 'alice@example'" in text, text
        assert "local  'rw.example' @ 192.0.2.10[4500] round 2: 'alice@example'" in format_status(endpoint_status(cl))
        for st in (endpoint_status(gw), endpoint_status(cl)):
            assert ROUND2_PSK.decode() not in repr(st) and "round-1 psk" not in repr(st)
    finally:
        for ep in (cl, gw):
            await asyncio.wait_for(ep.close(delete=True, timeout=1.0), 5)
