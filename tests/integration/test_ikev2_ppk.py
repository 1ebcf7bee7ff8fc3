"""RFC 8784 Postquantum Preshared Keys between two IKEv2 sessions in memory:
the PPK mixed into SK_d/SK_pi/SK_pr (checked against prf+ by hand with
cryptography's HMAC), mismatches refused, ppk_required enforced, the
NO_PPK_AUTH fallback, and an IKE rekey of a PPK-keyed SA."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from ikev2_pair import Pair, mirror, psk_pair_configs

from aioipsec.events import (
    AuthFailed,
    ChildSaInstalled,
    IkeSaEstablished,
    NegotiationFailed,
)
from aioipsec.ike.auth import Identity
from aioipsec.ike.constants import IdType, NotifyType
from aioipsec.ike.v2.message import decode_message

PPK = bytes(range(32))
OTHER_PPK = bytes(range(1, 33))
NO_TIMERS = {"dpd_delay": 0}


def _hmac(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def prf_plus(key: bytes, seed: bytes, length: int) -> bytes:
    """RFC 7296 §2.13 with HMAC-SHA256, written out here (independent of aioipsec)."""
    out, t, n = b"", b"", 1
    while len(out) < length:
        t = _hmac(key, t + seed + bytes((n,)))
        out += t
        n += 1
    return out[:length]


def configs(i_ppk: dict | None = None, r_ppk: dict | None = None):  # type: ignore[no-untyped-def]
    kw = {"proposals": ["aes256gcm16-prfsha256-x25519"]}
    return psk_pair_configs(
        i_proposals=kw["proposals"], r_proposals=kw["proposals"], i_esp=["aes256gcm16"], r_esp=["aes256gcm16"],
        i_kw={**NO_TIMERS, **(i_ppk or {})}, r_kw={**NO_TIMERS, **(r_ppk or {})},
    )


def run(i_cfg, r_cfg) -> tuple[Pair, object]:  # type: ignore[no-untyped-def]
    """IKE_SA_INIT, then IKE_AUTH; returns the pair and the IKE SA keys of
    IKE_SA_INIT, taken from the responder before IKE_AUTH (the initiator
    already mixed the PPK in building its IKE_AUTH request)."""
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    assert p.roundtrip() == (1, 1)
    assert p.r is not None
    plain = p.r.sa.keys
    p.settle()
    return p, plain


def child_keys(p: Pair, side: str) -> ChildSaInstalled:
    [ev] = p.events(side, ChildSaInstalled)
    return ev  # type: ignore[return-value]


def test_same_ppk_mixes_sk_d_pi_pr_and_keys_the_child_sa() -> None:
    i_cfg, r_cfg = configs({"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}},
                           {"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}, "ppk_required": True})
    p, plain = run(i_cfg, r_cfg)
    assert p.r is not None
    assert p.i.is_established and p.r.is_established
    assert p.i.sa.use_ppk and p.r.sa.use_ppk
    assert p.i.sa.ppk_id == p.r.sa.ppk_id == "ppk-hq"
    mixed = p.i.sa.keys
    assert mixed == p.r.sa.keys
    # RFC 8784 §3, by hand: SK_x = prf+(PPK, SK_x'), the same length; the rest unchanged
    for name in ("sk_d", "sk_pi", "sk_pr"):
        old = getattr(plain, name)
        assert getattr(mixed, name) == prf_plus(PPK, old, len(old)) != old
    for name in ("sk_ei", "sk_er", "sk_ai", "sk_ar"):
        assert getattr(mixed, name) == getattr(plain, name)
    # the Child SA of IKE_AUTH: KEYMAT = prf+(SK_d, Ni | Nr) with the mixed SK_d
    ev_i, ev_r = child_keys(p, "i"), child_keys(p, "r")
    assert mirror(ev_i, ev_r)
    n = len(ev_i.encr_key_out)
    ni, nr = p.i.sa.ni, p.i.sa.nr
    assert ev_i.encr_key_out == prf_plus(mixed.sk_d, ni + nr, n)
    assert ev_i.encr_key_in == prf_plus(mixed.sk_d, ni + nr, 2 * n)[n:]
    assert ev_i.encr_key_out != prf_plus(plain.sk_d, ni + nr, n)


def test_without_ppk_the_child_keys_come_from_the_plain_sk_d() -> None:
    i_cfg, r_cfg = configs()
    p, plain = run(i_cfg, r_cfg)
    assert p.i.is_established and not p.i.sa.use_ppk and p.i.sa.ppk_id is None
    assert p.i.sa.keys == plain
    ev_i = child_keys(p, "i")
    n = len(ev_i.encr_key_out)
    assert ev_i.encr_key_out == prf_plus(plain.sk_d, p.i.sa.ni + p.i.sa.nr, n)


def test_use_ppk_only_when_configured() -> None:
    """USE_PPK in IKE_SA_INIT: the initiator with a ppk_id, the responder
    only answering one and only with a PPK at all."""
    i_cfg, r_cfg = configs({"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}}, {})
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    [req] = p.out_i()
    assert decode_message(req).has_notify(NotifyType.USE_PPK)
    p.to_r([req])
    [resp] = p.out_r()
    assert not decode_message(resp).has_notify(NotifyType.USE_PPK)  # no PPK: no USE_PPK
    p.to_i([resp])
    p.settle()
    assert p.i.is_established and p.i.sa.ppk_id is None  # ppk_required = no: without PPK

    i_cfg, r_cfg = configs({}, {"ppks": {"ppk-hq": PPK}})
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    [req] = p.out_i()
    assert not decode_message(req).has_notify(NotifyType.USE_PPK)
    p.to_r([req])
    [resp] = p.out_r()
    assert not decode_message(resp).has_notify(NotifyType.USE_PPK)


def test_different_ppk_secrets_fail_authentication() -> None:
    i_cfg, r_cfg = configs({"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}},
                           {"ppks": {"ppk-hq": OTHER_PPK}})
    p, _ = run(i_cfg, r_cfg)
    assert p.r is not None
    assert not p.i.is_established and not p.r.is_established
    [fail_r] = p.events("r", AuthFailed)
    assert "pre-shared key AUTH mismatch" in fail_r.reason  # no NO_PPK_AUTH fallback with a known PPK_ID
    [fail_i] = p.events("i", AuthFailed)
    assert "AUTHENTICATION_FAILED" in fail_i.reason


def test_responder_requires_ppk_initiator_has_none() -> None:
    i_cfg, r_cfg = configs({}, {"ppks": {"ppk-hq": PPK}, "ppk_required": True})
    p, _ = run(i_cfg, r_cfg)
    assert p.r is not None
    assert not p.i.is_established and not p.r.is_established
    [fail_r] = p.events("r", AuthFailed)
    assert "PPK required but peer 192.0.2.1[site-a.example] does not support PPKs" in fail_r.reason
    assert "USE_PPK" in fail_r.reason
    assert any("AUTHENTICATION_FAILED" in e.reason for e in p.events("i", AuthFailed))


def test_initiator_requires_ppk_responder_has_none() -> None:
    i_cfg, r_cfg = configs({"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}, "ppk_required": True}, {})
    p, _ = run(i_cfg, r_cfg)
    assert not p.i.is_established
    fails = [e for e in p.events("i", NegotiationFailed) if e.exchange == "IKE_AUTH"]
    assert fails and "PPK required but peer 192.0.2.2 does not support PPKs" in fails[0].reason
    assert p.r is None or not p.r.is_established


def test_unknown_ppk_id_not_required_falls_back_to_no_ppk_auth() -> None:
    i_cfg, r_cfg = configs({"ppk_id": "ppk-new", "ppks": {"ppk-new": PPK}},
                           {"ppks": {"ppk-old": OTHER_PPK}})
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    assert p.roundtrip() == (1, 1)
    assert p.r is not None and p.i.sa.use_ppk and p.r.sa.use_ppk
    plain = p.r.sa.keys
    [auth_req] = p.out_i()
    msg = decode_message(auth_req, p.r.sa.sk)
    assert msg.get_notify(NotifyType.PPK_IDENTITY).data == b"\x02ppk-new"
    assert msg.has_notify(NotifyType.NO_PPK_AUTH)
    p.to_r([auth_req])
    [auth_resp] = p.out_r()
    assert not decode_message(auth_resp, p.i.sa.sk).has_notify(NotifyType.PPK_IDENTITY)
    p.to_i([auth_resp])
    p.settle()
    assert p.i.is_established and p.r.is_established
    assert p.i.sa.ppk_id is None and p.r.sa.ppk_id is None
    assert p.i.sa.keys == plain == p.r.sa.keys
    assert mirror(child_keys(p, "i"), child_keys(p, "r"))


def test_unknown_ppk_id_required_fails() -> None:
    i_cfg, r_cfg = configs({"ppk_id": "ppk-new", "ppks": {"ppk-new": PPK}},
                           {"ppks": {"ppk-old": OTHER_PPK}, "ppk_required": True})
    p, _ = run(i_cfg, r_cfg)
    assert p.r is not None and not p.r.is_established and not p.i.is_established
    [fail_r] = p.events("r", AuthFailed)
    assert "no PPK for PPK_ID 'ppk-new'" in fail_r.reason


def test_required_initiator_refuses_a_responder_that_skipped_the_ppk() -> None:
    """ppk_required (no NO_PPK_AUTH sent) and a responder without that PPK
    (not required): it cannot verify the AUTH, so it fails; the initiator
    never continues without the PPK."""
    i_cfg, r_cfg = configs({"ppk_id": "ppk-new", "ppks": {"ppk-new": PPK}, "ppk_required": True},
                           {"ppks": {"ppk-old": OTHER_PPK}})
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    [auth_req] = p.out_i()
    assert p.r is not None
    assert not decode_message(auth_req, p.r.sa.sk).has_notify(NotifyType.NO_PPK_AUTH)
    p.to_r([auth_req])
    p.settle()
    assert not p.i.is_established and not p.r.is_established


def test_ike_rekey_of_a_ppk_sa_and_child_rekey_through_it() -> None:
    i_cfg, r_cfg = configs({"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}}, {"ppks": {"ppk-hq": PPK}})
    p, _ = run(i_cfg, r_cfg)
    assert p.r is not None and p.i.sa.ppk_id == "ppk-hq"
    mixed_d = p.i.sa.keys.sk_d
    p.i.rekey_ike_sa(p.now)
    p.settle()
    ei, er = p.events("i", IkeSaEstablished), p.events("r", IkeSaEstablished)
    assert len(ei) == len(er) == 2
    assert p.i.sa.keys.sk_d == p.r.sa.keys.sk_d != mixed_d
    # the new IKE SA's keys come from the PPK-mixed SK_d: it is PPK-protected too, on both ends
    assert p.i.sa.ppk_id == p.r.sa.ppk_id == "ppk-hq"
    c = p.i.child_sas[0]
    p.i.rekey_child_sa(c.spi_in, p.now)
    p.settle()
    ev_i, ev_r = p.events("i", ChildSaInstalled)[-1], p.events("r", ChildSaInstalled)[-1]
    assert len(p.events("i", ChildSaInstalled)) == 2
    assert mirror(ev_i, ev_r) and ev_i.ike_spi_i == ei[1].spi_i


def test_initiator_requires_ppk_without_ppk_id() -> None:
    i_cfg, r_cfg = configs({"ppks": {"ppk-hq": PPK}, "ppk_required": True}, {"ppks": {"ppk-hq": PPK}})
    p, _ = run(i_cfg, r_cfg)
    assert not p.i.is_established
    fails = [e for e in p.events("i", NegotiationFailed) if e.exchange == "IKE_AUTH"]
    assert fails and "PPK required but no ppk_id configured" in fails[0].reason


def test_unreadable_ppk_identity_not_required_falls_back_to_no_ppk_auth(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A PPK_IDENTITY the responder cannot read (PPK_ID_OPAQUE, which it does
    not support) is no PPK, as an unknown PPK_ID: not required, it verifies
    NO_PPK_AUTH (as charon whenever it has no PPK), not the AUTH computed
    with the PPK.  Before, it checked that AUTH with its plain keys and
    failed."""
    from aioipsec.ike.v2.tasks import ppk

    monkeypatch.setattr(ppk, "encode_ppk_id", lambda ppk_id: bytes((ppk.PPK_ID_OPAQUE,)) + ppk_id.encode())
    i_cfg, r_cfg = configs({"ppk_id": "ppk-hq", "ppks": {"ppk-hq": PPK}}, {"ppks": {"ppk-hq": PPK}})
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    assert p.roundtrip() == (1, 1)
    assert p.r is not None
    plain = p.r.sa.keys
    [auth_req] = p.out_i()
    msg = decode_message(auth_req, p.r.sa.sk)
    assert msg.get_notify(NotifyType.PPK_IDENTITY).data == b"\x01ppk-hq" and msg.has_notify(NotifyType.NO_PPK_AUTH)
    p.to_r([auth_req])
    p.settle()
    assert not p.events("r", AuthFailed) and not p.events("i", AuthFailed)
    assert p.i.is_established and p.r.is_established
    assert p.i.sa.ppk_id is None and p.r.sa.ppk_id is None
    assert p.i.sa.keys == plain == p.r.sa.keys
    assert mirror(child_keys(p, "i"), child_keys(p, "r"))


def _printable_dn(c: str, o: str, cn: str) -> bytes:
    """C=.., O=.., CN=.. as DER with PrintableStrings only (as another
    implementation may encode it; ours has UTF8String for O and CN)."""
    def rdn(oid: bytes, value: str) -> bytes:
        v = value.encode()
        atv = b"\x06\x03" + oid + bytes((0x13, len(v))) + v
        seq = b"\x30" + bytes((len(atv),)) + atv
        return b"\x31" + bytes((len(seq),)) + seq
    body = rdn(b"\x55\x04\x06", c) + rdn(b"\x55\x04\x0a", o) + rdn(b"\x55\x04\x03", cn)
    return b"\x30" + bytes((len(body),)) + body


@pytest.mark.parametrize(("i_id", "r_id", "wire"), [
    ("192.0.2.7", "192.0.2.7", bytes((192, 0, 2, 7))),
    ("2001:db8::7", "2001:0db8:0:0::7", bytes.fromhex("20010db8000000000000000000000007")),
    ("C=CH, O=x, CN=ppk", "C=CH,O=x,CN=ppk", None),
    ("ppk-hq", "ppk-hq", b"ppk-hq"),  # unchanged
])
def test_ip_and_dn_ppk_ids_sent_encoded_and_matched(i_id: str, r_id: str, wire: bytes | None) -> None:
    """A PPK_ID that is an IP address or a DN goes on the wire as the
    identity's encoding (4/16 octets, DER), as charon sends it, and the
    responder matches it by encoding, whichever way each end spells it;
    both require the PPK, it is used, and each end names it as configured."""
    i_cfg, r_cfg = configs({"ppk_id": i_id, "ppks": {i_id: PPK}, "ppk_required": True},
                           {"ppk_id": r_id, "ppks": {r_id: PPK}, "ppk_required": True})
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    assert p.roundtrip() == (1, 1)
    assert p.r is not None
    plain = p.r.sa.keys
    [auth_req] = p.out_i()
    sent = decode_message(auth_req, p.r.sa.sk).get_notify(NotifyType.PPK_IDENTITY).data
    if wire is None:  # the DN: DER, the attributes of the configured string
        assert sent[:1] == b"\x02" and sent[1:2] == b"\x30"
        assert Identity(IdType.DER_ASN1_DN, sent[1:]).dn_attrs() == Identity.from_string(i_id).dn_attrs()
    else:
        assert sent == b"\x02" + wire
    p.to_r([auth_req])
    p.settle()
    assert p.i.is_established and p.r.is_established
    assert p.i.sa.ppk_id == i_id and p.r.sa.ppk_id == r_id
    assert p.i.sa.keys == p.r.sa.keys
    assert p.i.sa.keys.sk_d == prf_plus(PPK, plain.sk_d, len(plain.sk_d)) != plain.sk_d
    assert mirror(child_keys(p, "i"), child_keys(p, "r"))


def test_dn_ppk_id_in_another_der_encoding_matches(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A DN PPK_ID whose DER has other string types than ours (PrintableString
    for O and CN, as another implementation may encode it) is the same
    PPK_ID: the responder, with or without a ppk_id of its own, uses the PPK;
    another CN is not it."""
    from aioipsec.ike.v2.tasks import ppk

    monkeypatch.setattr(ppk, "encode_ppk_id", lambda ppk_id: b"\x02" + _printable_dn("CH", "x", ppk_id[-3:]))
    for r_kw in ({"ppk_id": "C=CH, O=x, CN=ppk"}, {}):
        i_cfg, r_cfg = configs({"ppk_id": "C=CH, O=x, CN=ppk", "ppks": {"C=CH, O=x, CN=ppk": PPK}},
                               {**r_kw, "ppks": {"C=CH, O=x, CN=ppk": PPK}, "ppk_required": True})
        p, _ = run(i_cfg, r_cfg)
        assert p.r is not None and p.i.is_established and p.r.is_established
        assert p.i.sa.ppk_id == p.r.sa.ppk_id == "C=CH, O=x, CN=ppk"
    i_cfg, r_cfg = configs({"ppk_id": "C=CH, O=x, CN=pp2", "ppks": {"C=CH, O=x, CN=pp2": PPK}},
                           {"ppks": {"C=CH, O=x, CN=ppk": PPK}, "ppk_required": True})
    p, _ = run(i_cfg, r_cfg)
    assert p.r is not None and not p.r.is_established
    [fail_r] = p.events("r", AuthFailed)
    assert "no PPK for PPK_ID 'C=CH, O=x, CN=pp2'" in fail_r.reason
