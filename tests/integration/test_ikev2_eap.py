"""IKEv2 EAP authentication (RFC 7296 §2.16) end to end, in memory: a client
authenticating with EAP-MD5 / EAP-GTC against a gateway that proves itself
with a certificate or a PSK; wrong password, unknown identity, a forged
final AUTH (the client's and the gateway's), a malformed EAP response."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from ikev2_pair import Pair, cert_pair_configs, make_pki, mirror, psk_pair_configs

from aioipsec.config import AuthConfig
from aioipsec.events import AuthFailed, ChildSaInstalled, IkeSaEstablished
from aioipsec.ike.constants import EapCode, NotifyType
from aioipsec.ike.v2 import eap as E
from aioipsec.ike.v2.message import decode_message
from aioipsec.ike.v2.payloads import (
    AuthPayload,
    EapPayload,
    IdrPayload,
    NotifyPayload,
    SaPayload,
)
from aioipsec.ike.v2.session import IkeState

PASSWORD = b"s3cret-alice"


@pytest.fixture(scope="module")
def pki():
    return make_pki(("p256",))


def eap_configs(method: str, *, gateway: str = "pubkey", pki=None, client_secret: bytes = PASSWORD,
                eap_id: str = "alice", users: dict[str, bytes] | None = None):
    if gateway == "pubkey":
        i, r = cert_pair_configs(pki, "p256")
    else:
        i, r = psk_pair_configs()
    i.local = AuthConfig(auth=method, id="site-a.example", eap_id=eap_id)
    i.eap_secrets = {eap_id: client_secret}
    r.remote = AuthConfig(auth=method if method != "eap" else "eap-gtc", id="%any")
    r.eap_secrets = dict(users if users is not None else {"alice": PASSWORD})
    i.legacy = r.legacy = True
    return i, r


@pytest.mark.parametrize("method,gateway", [("eap-md5", "pubkey"), ("eap-md5", "psk"), ("eap-gtc", "pubkey"),
                                            ("eap", "psk")])
def test_eap_establishes_with_child(pki, method: str, gateway: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    i, r = eap_configs(method, gateway=gateway, pki=pki)
    p = Pair(i, r)
    p.initiate()
    assert p.roundtrip() == (1, 1)  # IKE_SA_INIT
    # IKE_AUTH 1: IDi without AUTH -> IDr, AUTH, EAP Request/Identity
    a = p.out_i()
    req = decode_message(a[0], p.r.sa.sk)
    assert req.message_id == 1 and req.get(AuthPayload) is None and req.get(SaPayload) is not None
    p.to_r(a)
    b = p.out_r()
    resp = decode_message(b[0], p.i.sa.sk)
    assert resp.get(IdrPayload) is not None and resp.get(AuthPayload) is not None
    assert resp.get(SaPayload) is None  # the Child SA comes with the final response
    eap = resp.get(EapPayload)
    assert eap.code == EapCode.REQUEST and eap.eap_type == E.EapType.IDENTITY
    p.to_i(b)
    mids = []
    for _ in range(4):
        a = p.out_i()
        if not a:
            break
        mids.append(decode_message(a[0], p.r.sa.sk).message_id)
        p.to_r(a)
        p.to_i(p.out_r())
    # Identity, method, (Success ->) AUTH: message IDs 2, 3, 4
    assert mids == [2, 3, 4]
    assert p.i.state is IkeState.ESTABLISHED and p.r.state is IkeState.ESTABLISHED
    ci, cr = p.events("i", ChildSaInstalled), p.events("r", ChildSaInstalled)
    assert len(ci) == len(cr) == 1 and mirror(ci[0], cr[0])
    assert len(p.events("i", IkeSaEstablished)) == len(p.events("r", IkeSaEstablished)) == 1
    assert p.i.sa.eap is None and p.r.sa.eap is None
    assert not p.events("i", AuthFailed) and not p.events("r", AuthFailed)
    # the password never reaches a log line
    assert not any(PASSWORD.decode() in rec.getMessage() for rec in caplog.records)


def run_to_end(p: Pair) -> None:
    p.initiate()
    p.settle()


@pytest.mark.parametrize("method", ["eap-md5", "eap-gtc"])
def test_wrong_password_fails_both_sides(pki, method: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    i, r = eap_configs(method, pki=pki, client_secret=b"wrong-password")
    p = Pair(i, r)
    p.initiate()
    p.roundtrip()
    p.roundtrip()  # IDr/AUTH/Identity request
    p.roundtrip()  # Identity -> method request
    a = p.out_i()
    p.to_r(a)
    b = p.out_r()
    resp = decode_message(b[0], p.i.sa.sk)
    assert resp.get(EapPayload).code == EapCode.FAILURE
    assert any(isinstance(x, NotifyPayload) and x.notify_type == NotifyType.AUTHENTICATION_FAILED for x in resp.payloads)
    p.to_i(b)
    p.settle()
    assert p.i.is_closed and p.r.is_closed
    fr, fi = p.events("r", AuthFailed), p.events("i", AuthFailed)
    assert len(fr) == 1 and "alice" in fr[0].reason and "site-a.example" in fr[0].peer
    assert len(fi) == 1 and "alice" in fi[0].reason and "hq.example" in fi[0].peer
    assert not p.events("i", ChildSaInstalled) and not p.events("r", ChildSaInstalled)
    logs = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "wrong-password" not in logs and PASSWORD.decode() not in logs


def test_identity_without_secret_fails(pki) -> None:
    i, r = eap_configs("eap-md5", pki=pki, eap_id="mallory", client_secret=b"x")
    p = Pair(i, r)
    run_to_end(p)
    fr = p.events("r", AuthFailed)
    assert len(fr) == 1 and "mallory" in fr[0].reason and "no EAP secret" in fr[0].reason
    assert p.i.is_closed and p.r.is_closed and p.events("i", AuthFailed)


def test_gateway_restricted_eap_id(pki) -> None:
    i, r = eap_configs("eap-gtc", pki=pki, users={"alice": PASSWORD, "bob": b"b"})
    r.remote.eap_id = "bob"
    p = Pair(i, r)
    run_to_end(p)
    fr = p.events("r", AuthFailed)
    assert len(fr) == 1 and "'alice' is not 'bob'" in fr[0].reason


def test_forged_final_auth_is_refused(pki) -> None:
    """The final AUTH is keyed with SK_pi (no MSK): a client that passed EAP
    but sends a wrong final AUTH is refused with AUTHENTICATION_FAILED."""
    i, r = eap_configs("eap-md5", pki=pki)
    p = Pair(i, r)
    p.initiate()
    for _ in range(3):
        p.roundtrip()  # INIT, IDr/AUTH/Identity, MD5 challenge
    a = p.out_i()
    p.to_r(a)
    b = p.out_r()
    assert decode_message(b[0], p.i.sa.sk).get(EapPayload).code == EapCode.SUCCESS
    real = p.i.sa.keys
    p.i.sa.keys = dataclasses.replace(real, sk_pi=bytes(len(real.sk_pi)))
    p.to_i(b)  # builds the final AUTH with the wrong key
    p.i.sa.keys = real
    p.settle()
    fr = p.events("r", AuthFailed)
    assert len(fr) == 1 and "SK_pi" in fr[0].reason and "alice" in fr[0].reason
    assert p.r.is_closed and p.i.is_closed
    assert not p.events("r", ChildSaInstalled)


def test_forged_final_gateway_auth_is_refused(pki) -> None:
    """The gateway's final AUTH is keyed with SK_pr (no MSK): a client that
    passed EAP refuses a wrong one and deletes the IKE SA."""
    i, r = eap_configs("eap-gtc", pki=pki)
    p = Pair(i, r)
    p.initiate()
    for _ in range(4):
        p.roundtrip()  # INIT, IDr/AUTH/Identity, GTC request, Success
    a = p.out_i()
    assert decode_message(a[0], p.r.sa.sk).get(AuthPayload) is not None  # the client's final AUTH
    real = p.r.sa.keys
    p.r.sa.keys = dataclasses.replace(real, sk_pr=bytes(len(real.sk_pr)))
    p.to_r(a)  # verifies the client's AUTH (SK_pi), builds its own with the wrong SK_pr
    p.r.sa.keys = real
    p.to_i(p.out_r())
    fi = p.events("i", AuthFailed)
    assert len(fi) == 1 and "AUTH after EAP does not match (SK_pr)" in fi[0].reason
    assert p.i.is_closed and p.i.state is not IkeState.ESTABLISHED
    assert not p.events("i", ChildSaInstalled)


def test_malformed_eap_response_is_dropped_and_counted(pki) -> None:
    """A malformed EAP response is dropped and counted; the gateway repeats
    its request and the exchange then completes."""
    i, r = eap_configs("eap-gtc", pki=pki)
    p = Pair(i, r)
    p.initiate()
    p.roundtrip()  # IKE_SA_INIT; the IKE_AUTH request without AUTH is out
    peer = p.i.sa.eap.peer  # its answer to the Identity request will be malformed
    real = peer.process

    def once(packet):  # a Response without a type: malformed
        peer.process = real
        return E.EapPacket(EapCode.RESPONSE, packet.identifier)

    peer.process = once
    before = p.r.stats.malformed
    p.settle()
    assert p.r.stats.malformed == before + 1
    assert p.i.state is IkeState.ESTABLISHED and p.r.state is IkeState.ESTABLISHED
    assert len(p.events("r", ChildSaInstalled)) == 1
