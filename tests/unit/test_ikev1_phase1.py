"""Phase 1 helper: suites <-> transforms, proposal selection, key
derivation against the NIST CAVP IKEv1 vectors, HASH_I/HASH_R and NAT-D
formulas recomputed independently, RSA signatures without DigestInfo."""

from __future__ import annotations

import datetime
import hmac
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import NoDigestInfo
from cryptography.x509.oid import NameOID

from aioipsec.config import AuthConfig, connection
from aioipsec.crypto.cipher import make_encr
from aioipsec.crypto.kdf import ikev1_encryption_key
from aioipsec.crypto.transforms import ENCR, INTEG, KE, parse_proposal
from aioipsec.errors import LocalProtocolError
from aioipsec.ike.auth import Identity, IdType
from aioipsec.ike.v1.constants import Ike1Auth, Phase1Attr
from aioipsec.ike.v1.errors import AuthenticationFailed, NoProposalChosen
from aioipsec.ike.v1.payloads import Attribute, CertPayload, SigPayload, Transform
from aioipsec.ike.v1.phase1 import (
    Phase1Suite,
    accept_reply,
    auth_method_for,
    build_auth_payloads,
    build_sa_payload,
    derive_keys,
    hash_i,
    hash_r,
    natd_hash,
    select_suite,
    suite_from_transform,
    suites_from_config,
    verify_signature,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def suites(*texts: str, auth: int = Ike1Auth.PSK, life: int = 3600) -> list[Phase1Suite]:
    return suites_from_config([parse_proposal(t, "ike", allow_legacy=True) for t in texts], auth, life)


def test_suites_expand_and_skip_what_ikev1_cannot_do() -> None:
    s = suites("aes128-aes256-sha1-sha256-modp2048-ecp256", "aes128gcm16-prfsha256-x25519", "aes128-aesxcbc-modp2048")
    assert [x.name for x in s] == [
        "aes128-sha1-modp2048",
        "aes128-sha1-ecp256",
        "aes128-sha256-modp2048",
        "aes128-sha256-ecp256",
        "aes256-sha1-modp2048",
        "aes256-sha1-ecp256",
        "aes256-sha256-modp2048",
        "aes256-sha256-ecp256",
    ]
    assert s[0].prf.name == "prfsha1" and s[0].hash_name == "sha1"


def test_transform_round_trip_and_defaults() -> None:
    for s in suites("aes128-sha1-modp2048", "aes256-sha512-ecp384", "3des-md5-modp1024"):
        assert suite_from_transform(s.to_transform(3)) == s
    # AES without a key length attribute means AES-128 (early RFC 3602 peers)
    t = Transform(1, 1, [Attribute.make(Phase1Attr.ENCRYPTION_ALGORITHM, 7), Attribute.make(2, 2), Attribute.make(4, 14), Attribute.make(3, 1)])
    got = suite_from_transform(t)
    assert got is not None and got.encr == ENCR["aes128"] and got.lifetime == 28800
    # a PRF attribute or an unknown group: not for us
    assert suite_from_transform(Transform(1, 1, t.attributes + [Attribute.make(Phase1Attr.PRF, 1)])) is None
    assert suite_from_transform(Transform(1, 1, t.attributes[:2] + [Attribute.make(4, 99), Attribute.make(3, 1)])) is None


def test_select_prefers_configured_order_and_takes_lower_lifetime() -> None:
    offer = build_sa_payload(suites("aes128-sha1-modp2048", "aes256-sha256-modp2048", life=86400))
    mine = suites("aes256-sha256-modp2048", "aes128-sha1-modp2048", life=3600)
    prop, t, chosen = select_suite(mine, offer)
    assert chosen.name == "aes256-sha256-modp2048" and chosen.lifetime == 3600
    assert t.number == 2 and prop.number == 1
    with pytest.raises(NoProposalChosen, match="aes128-sha1-modp2048/psk"):
        select_suite(suites("aes256-sha512-modp4096"), build_sa_payload(suites("aes128-sha1-modp2048")))
    # the authentication method is part of the match
    with pytest.raises(NoProposalChosen):
        select_suite(suites("aes128-sha1-modp2048", auth=Ike1Auth.RSA_SIG), build_sa_payload(suites("aes128-sha1-modp2048")))


def test_accept_reply() -> None:
    mine = suites("aes128-sha1-modp2048", "aes256-sha256-modp2048")
    from aioipsec.ike.v1.payloads import Proposal, SaPayload

    reply = SaPayload([Proposal(1, 1, b"", [mine[1].to_transform(2)])])
    assert accept_reply(mine, reply).name == "aes256-sha256-modp2048"
    other = SaPayload([Proposal(1, 1, b"", [suites("aes192-sha384-modp3072")[0].to_transform(1)])])
    with pytest.raises(NoProposalChosen, match="did not offer"):
        accept_reply(mine, other)
    with pytest.raises(NoProposalChosen, match="exactly one"):
        accept_reply(mine, build_sa_payload(mine))


def _cavp() -> list[dict]:
    return json.loads((VECTORS / "ikev1_kdf_psk_nist_cavp.json").read_text())["records"]


@pytest.mark.parametrize("rec", [r for r in _cavp() if r["hash"] in ("SHA-1", "SHA-256", "SHA-384", "SHA-512")][:12], ids=lambda r: r["id"])
def test_derive_keys_matches_nist_cavp(rec: dict) -> None:
    integ = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}[rec["hash"]]
    suite = Phase1Suite(ENCR["aes256"], INTEG[integ], KE["modp2048"], Ike1Auth.PSK, 3600)
    b = bytes.fromhex
    keys = derive_keys(
        suite,
        psk=b(rec["pre_shared_key"]),
        ni=b(rec["Ni"]),
        nr=b(rec["Nr"]),
        shared=b(rec["g_xy"]),
        cky_i=b(rec["CKY_I"]),
        cky_r=b(rec["CKY_R"]),
        gxi=b"i",
        gxr=b"r",
    )
    assert keys.skeyid == b(rec["SKEYID"])
    assert keys.skeyid_d == b(rec["SKEYID_d"])
    assert keys.skeyid_a == b(rec["SKEYID_a"])
    # SKEYID_e is only used through the cipher key: compare ciphertexts
    expected = make_encr(ENCR["aes256"], ikev1_encryption_key(suite.prf, b(rec["SKEYID_e"]), 32))
    assert keys.encr.encrypt(bytes(16), bytes(32)) == expected.encrypt(bytes(16), bytes(32))
    assert keys.skeyid.hex() not in repr(keys) and keys.skeyid_d.hex() not in repr(keys)


def test_hash_i_hash_r_formulas() -> None:
    suite = Phase1Suite(ENCR["aes128"], INTEG["sha256"], KE["modp2048"], Ike1Auth.PSK, 3600)
    keys = derive_keys(suite, psk=b"k", ni=b"n" * 16, nr=b"m" * 16, shared=b"s" * 256, cky_i=b"I" * 8, cky_r=b"R" * 8, gxi=b"x", gxr=b"y")
    def mac(data: bytes) -> bytes:
        return hmac.new(keys.skeyid, data, "sha256").digest()
    assert hash_i(keys, b"GXI", b"GXR", b"I" * 8, b"R" * 8, b"SAI", b"IDI") == mac(b"GXIGXR" + b"I" * 8 + b"R" * 8 + b"SAIIDI")
    assert hash_r(keys, b"GXI", b"GXR", b"I" * 8, b"R" * 8, b"SAI", b"IDR") == mac(b"GXRGXI" + b"R" * 8 + b"I" * 8 + b"SAIIDR")
    assert keys.prf_a(b"data") == hmac.new(keys.skeyid_a, b"data", "sha256").digest()


def test_natd_hash() -> None:
    d = hashes.Hash(hashes.SHA1())
    d.update(b"I" * 8 + b"R" * 8 + bytes([192, 0, 2, 1]) + (4500).to_bytes(2, "big"))
    assert natd_hash("sha1", b"I" * 8, b"R" * 8, ("192.0.2.1", 4500)) == d.finalize()
    assert len(natd_hash("sha256", b"I" * 8, b"R" * 8, ("2001:db8::1", 500))) == 32


# --------------------------------------------------------------------------- RSA


NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "example"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki() -> dict:
    ca_key = rsa.generate_private_key(65537, 2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("CA"))
        .issuer_name(_name("CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(65537, 2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("gw.example"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("gw.example")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return {"ca": ca, "key": key, "cert": cert}


def test_rsa_signature_is_pkcs1_without_digestinfo(pki: dict) -> None:
    cfg = connection("c", version=1, local=AuthConfig("pubkey", cert=pki["cert"], private_key=pki["key"]), remote=AuthConfig("pubkey", cacerts=[pki["ca"]]))
    assert auth_method_for(cfg) == Ike1Auth.RSA_SIG
    h = b"\x42" * 20
    out = build_auth_payloads(cfg, Ike1Auth.RSA_SIG, h, send_certs=True)
    assert [type(p) for p in out] == [CertPayload, SigPayload]
    sig = out[-1].data  # type: ignore[attr-defined]
    # the raw hash comes back out of the PKCS#1 v1.5 padding: no DigestInfo
    assert pki["key"].public_key().recover_data_from_signature(sig, padding.PKCS1v15(), None) == h
    ident = Identity(IdType.FQDN, b"gw.example")
    assert verify_signature(cfg, ident, h, out, NOW) == pki["cert"]
    with pytest.raises(AuthenticationFailed, match="does not verify"):
        verify_signature(cfg, ident, b"\x43" * 20, out, NOW)
    with pytest.raises(AuthenticationFailed, match="matches its identity"):
        verify_signature(cfg, Identity(IdType.FQDN, b"other.example"), h, out, NOW)
    with pytest.raises(AuthenticationFailed, match="not trusted|not valid"):
        verify_signature(cfg, ident, h, out, NOW + datetime.timedelta(days=30))
    with pytest.raises(AuthenticationFailed, match="no certificate"):
        verify_signature(cfg, ident, h, out[1:], NOW)
    assert pki["key"].public_key().verify(sig, h, padding.PKCS1v15(), NoDigestInfo()) is None


def test_auth_method_for_rejects_incomplete_or_non_rsa() -> None:
    with pytest.raises(LocalProtocolError, match="no pre-shared key"):
        auth_method_for(connection("c", version=1, local=AuthConfig("psk"), remote=AuthConfig("psk")))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(LocalProtocolError, match="cert and private_key"):
        auth_method_for(connection("c", version=1, local=AuthConfig("pubkey", private_key=ec_key), remote=AuthConfig("pubkey")))
