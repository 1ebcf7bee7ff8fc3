"""RFC 8784 PPKs with EAP authentication (EAP-MD5 / EAP-GTC, no MSK)
between two IKEv2 sessions in memory, as charon does them: the gateway's
first AUTH and the EAP rounds use the original keys; the client's AUTH
after EAP carries N(PPK_IDENTITY) and N(NO_PPK_AUTH) and is keyed with
the mixed SK_pi, the gateway's final answer an empty N(PPK_IDENTITY) and
an AUTH with the mixed SK_pr; the Child SA is keyed from the mixed SK_d."""

from __future__ import annotations

import logging

import pytest
from ikev2_pair import Pair, cert_pair_configs, make_pki, mirror, psk_pair_configs
from test_ikev2_ppk import OTHER_PPK, PPK, prf_plus

from aioipsec.config import AuthConfig
from aioipsec.events import AuthFailed, ChildSaInstalled, NegotiationFailed
from aioipsec.ike.constants import EapCode, NotifyType
from aioipsec.ike.v2.message import Message, decode_message
from aioipsec.ike.v2.payloads import AuthPayload, EapPayload

PASSWORD = b"s3cret-alice"
PPK_TEXT = PPK.hex()


@pytest.fixture(scope="module")
def pki():
    return make_pki(("p256",))


def configs(method: str = "eap-md5", *, gateway: str = "psk", pki=None, i_ppk: dict | None = None,
            r_ppk: dict | None = None, client_secret: bytes = PASSWORD):
    i, r = cert_pair_configs(pki, "p256") if gateway == "pubkey" else psk_pair_configs()
    i.local = AuthConfig(auth=method, id="site-a.example", eap_id="alice")
    i.eap_secrets = {"alice": client_secret}
    r.remote = AuthConfig(auth=method, id="%any")
    r.eap_secrets = {"alice": PASSWORD}
    i.legacy = r.legacy = True
    for cfg, kw in ((i, i_ppk or {}), (r, r_ppk or {})):
        for k, v in kw.items():
            setattr(cfg, k, v)
    return i, r


def run(p: Pair) -> tuple[list[Message], list[Message], object]:
    """The whole exchange, message by message; returns the IKE_AUTH requests
    and responses (decoded) and the IKE SA keys of IKE_SA_INIT."""
    p.initiate()
    assert p.roundtrip() == (1, 1)
    assert p.r is not None
    plain = p.r.sa.keys
    reqs, resps = [], []
    for _ in range(8):
        a = p.out_i()
        if not a:
            break
        reqs.append(decode_message(a[0], p.r.sa.sk))
        p.to_r(a)
        b = p.out_r()
        if b:
            resps.append(decode_message(b[0], p.i.sa.sk))
        p.to_i(b)
    p.settle()
    return reqs, resps, plain


def same_ppk() -> tuple[dict, dict]:
    return {"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}}, {"ppks": {"ppk-hq": PPK}, "ppk_required": True}


@pytest.mark.parametrize(("method", "gateway"), [("eap-md5", "psk"), ("eap-gtc", "pubkey")])
def test_same_ppk_with_eap_mixes_at_the_final_auth(pki, method: str, gateway: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    i_ppk, r_ppk = same_ppk()
    p = Pair(*configs(method, gateway=gateway, pki=pki, i_ppk=i_ppk, r_ppk=r_ppk))
    reqs, resps, plain = run(p)
    assert p.r is not None
    assert p.i.is_established and p.r.is_established
    assert p.i.sa.ppk_id == p.r.sa.ppk_id == "ppk-hq"
    # the first request (IDi, no AUTH) and the EAP rounds carry no PPK notify; the AUTH after EAP does
    first, final = reqs[0], reqs[-1]
    assert first.get(AuthPayload) is None and not first.has_notify(NotifyType.PPK_IDENTITY)
    assert all(not r.has_notify(NotifyType.PPK_IDENTITY) for r in reqs[1:-1])
    assert final.get(AuthPayload) is not None and final.get(EapPayload) is None
    assert final.get_notify(NotifyType.PPK_IDENTITY).data == b"\x02ppk-hq"
    assert final.has_notify(NotifyType.NO_PPK_AUTH)  # the client does not require it
    # the gateway's first answer (its AUTH, keyed with the original SK_pr) has no PPK_IDENTITY, its last one has
    assert resps[0].get(AuthPayload) is not None and not resps[0].has_notify(NotifyType.PPK_IDENTITY)
    assert resps[-1].get(AuthPayload) is not None
    assert resps[-1].get_notify(NotifyType.PPK_IDENTITY).data == b""
    mixed = p.i.sa.keys
    assert mixed == p.r.sa.keys
    for name in ("sk_d", "sk_pi", "sk_pr"):
        old = getattr(plain, name)
        assert getattr(mixed, name) == prf_plus(PPK, old, len(old)) != old
    [ev_i], [ev_r] = p.events("i", ChildSaInstalled), p.events("r", ChildSaInstalled)
    assert mirror(ev_i, ev_r)
    n = len(ev_i.encr_key_out)
    seed = p.i.sa.ni + p.i.sa.nr
    assert ev_i.encr_key_out == prf_plus(mixed.sk_d, seed, n) != prf_plus(plain.sk_d, seed, n)
    logs = "\n".join(rec.getMessage() for rec in caplog.records)
    assert PPK_TEXT not in logs and PASSWORD.decode() not in logs


def test_required_client_sends_no_no_ppk_auth() -> None:
    i_ppk, r_ppk = same_ppk()
    p = Pair(*configs(i_ppk={**i_ppk, "ppk_required": True}, r_ppk=r_ppk))
    reqs, _, _ = run(p)
    assert p.i.is_established and p.i.sa.ppk_id == "ppk-hq"
    assert reqs[-1].has_notify(NotifyType.PPK_IDENTITY) and not reqs[-1].has_notify(NotifyType.NO_PPK_AUTH)


def test_gateway_requires_ppk_client_has_none() -> None:
    p = Pair(*configs(r_ppk={"ppks": {"ppk-hq": PPK}, "ppk_required": True}))
    run(p)
    assert p.r is not None and not p.r.is_established and not p.i.is_established
    [fail_r] = p.events("r", AuthFailed)
    assert "PPK required but peer 192.0.2.1[site-a.example] does not support PPKs" in fail_r.reason
    assert not p.events("r", ChildSaInstalled)


def test_client_requires_ppk_gateway_has_none() -> None:
    p = Pair(*configs(i_ppk={"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}, "ppk_required": True}))
    run(p)
    assert not p.i.is_established
    fails = [e for e in p.events("i", NegotiationFailed) if e.exchange == "IKE_AUTH"]
    assert fails and "PPK required but peer 192.0.2.2 does not support PPKs" in fails[0].reason


def test_gateway_requires_a_ppk_it_does_not_know() -> None:
    """The client's PPK_ID arrives with the AUTH after EAP: a gateway that
    requires a PPK and has none for it refuses there, naming the peer."""
    p = Pair(*configs(i_ppk={"ppk_id": "ppk-new", "ppks": {"ppk-new": PPK}},
                      r_ppk={"ppks": {"ppk-old": OTHER_PPK}, "ppk_required": True}))
    _, resps, _ = run(p)
    assert p.r is not None and not p.r.is_established and not p.i.is_established
    [fail_r] = p.events("r", AuthFailed)
    assert "no PPK for PPK_ID 'ppk-new' of peer 192.0.2.1[site-a.example]" in fail_r.reason
    assert resps[-1].has_notify(NotifyType.AUTHENTICATION_FAILED)
    assert not p.events("i", ChildSaInstalled) and not p.events("r", ChildSaInstalled)


def test_unknown_ppk_id_not_required_falls_back_to_no_ppk_auth() -> None:
    p = Pair(*configs(i_ppk={"ppk_id": "ppk-new", "ppks": {"ppk-new": PPK}}, r_ppk={"ppks": {"ppk-old": OTHER_PPK}}))
    reqs, resps, plain = run(p)
    assert p.r is not None and p.i.sa.use_ppk and p.r.sa.use_ppk
    assert reqs[-1].has_notify(NotifyType.NO_PPK_AUTH)
    assert not resps[-1].has_notify(NotifyType.PPK_IDENTITY)
    assert p.i.is_established and p.r.is_established
    assert p.i.sa.ppk_id is None and p.r.sa.ppk_id is None
    assert p.i.sa.keys == plain == p.r.sa.keys
    [ev_i], [ev_r] = p.events("i", ChildSaInstalled), p.events("r", ChildSaInstalled)
    assert mirror(ev_i, ev_r)
    assert ev_i.encr_key_out == prf_plus(plain.sk_d, p.i.sa.ni + p.i.sa.nr, len(ev_i.encr_key_out))


def test_different_ppk_secrets_fail_at_the_final_auth() -> None:
    p = Pair(*configs(i_ppk={"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}}, r_ppk={"ppks": {"ppk-hq": OTHER_PPK}}))
    run(p)
    assert p.r is not None and not p.r.is_established and not p.i.is_established
    [fail_r] = p.events("r", AuthFailed)
    assert "AUTH after EAP does not match" in fail_r.reason and "alice" in fail_r.reason
    assert p.events("i", AuthFailed)


@pytest.mark.parametrize("method", ["eap-md5", "eap-gtc"])
def test_wrong_eap_password_still_refused_with_ppks(method: str) -> None:
    i_ppk, r_ppk = same_ppk()
    p = Pair(*configs(method, i_ppk=i_ppk, r_ppk=r_ppk, client_secret=b"wrong-password"))
    _, resps, _ = run(p)
    assert p.r is not None and p.i.is_closed and p.r.is_closed
    assert resps[-1].get(EapPayload).code == EapCode.FAILURE
    [fr] = p.events("r", AuthFailed)
    assert "alice" in fr.reason and "site-a.example" in fr.peer
    assert p.i.sa.ppk_id is None and p.r.sa.ppk_id is None
    assert not p.events("i", ChildSaInstalled) and not p.events("r", ChildSaInstalled)


# --------------------------------------------------------------------------- RFC 4739 second round


def round2_configs(first: str, pki, r_ppks: dict[str, bytes], *, required: bool = True):
    i, r = psk_pair_configs() if first == "psk" else cert_pair_configs(pki, "p256")
    i.local2 = AuthConfig(auth="eap-md5", id="alice")
    i.eap_secrets = {"alice": PASSWORD}
    r.remote2 = AuthConfig(auth="eap-md5")
    r.eap_secrets = {"alice": PASSWORD}
    i.legacy = r.legacy = True
    i.ppk_id, i.ppks = "ppk-hq", {"ppk-hq": PPK}
    r.ppks, r.ppk_required = r_ppks, required
    return i, r


@pytest.mark.parametrize("first", ["psk", "pubkey"])
def test_ppk_in_the_first_round_then_an_eap_second_round(pki, first: str) -> None:
    """A second (EAP) round after a psk/pubkey round: the PPK goes in at
    the first round's AUTH (charon: "only use a PPK in the first round"),
    answered with N(PPK_IDENTITY) in the gateway's first response; the
    round-2 AUTH after EAP is keyed with the mixed SK_pi/SK_pr and carries
    no PPK notify; the Child SA after round 2 is keyed from the mixed SK_d."""
    p = Pair(*round2_configs(first, pki, {"ppk-hq": PPK}))
    reqs, resps, plain = run(p)
    assert p.r is not None
    assert p.i.is_established and p.r.is_established
    assert p.i.sa.ppk_id == p.r.sa.ppk_id == "ppk-hq"
    assert reqs[0].get(AuthPayload) is not None and reqs[0].has_notify(NotifyType.PPK_IDENTITY)
    assert resps[0].has_notify(NotifyType.PPK_IDENTITY)
    assert all(not m.has_notify(NotifyType.PPK_IDENTITY) for m in reqs[1:] + resps[1:])
    mixed = p.i.sa.keys
    assert mixed == p.r.sa.keys and mixed.sk_d == prf_plus(PPK, plain.sk_d, len(plain.sk_d))
    [ev_i], [ev_r] = p.events("i", ChildSaInstalled), p.events("r", ChildSaInstalled)
    assert mirror(ev_i, ev_r)
    assert ev_i.encr_key_out == prf_plus(mixed.sk_d, p.i.sa.ni + p.i.sa.nr, len(ev_i.encr_key_out))


def test_second_round_after_a_no_ppk_auth_fallback(pki) -> None:
    """The gateway does not know the PPK_ID (not required): it checks the
    first round's NO_PPK_AUTH, both keep the original keys, and the EAP
    round's AUTH and the Child SA use them."""
    p = Pair(*round2_configs("psk", pki, {"ppk-old": OTHER_PPK}, required=False))
    reqs, resps, plain = run(p)
    assert p.r is not None and p.i.is_established and p.r.is_established
    assert reqs[0].has_notify(NotifyType.NO_PPK_AUTH) and not resps[0].has_notify(NotifyType.PPK_IDENTITY)
    assert p.i.sa.ppk_id is None and p.r.sa.ppk_id is None
    assert p.i.sa.keys == plain == p.r.sa.keys
    [ev_i], [ev_r] = p.events("i", ChildSaInstalled), p.events("r", ChildSaInstalled)
    assert mirror(ev_i, ev_r)
