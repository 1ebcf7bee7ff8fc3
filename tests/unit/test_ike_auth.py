"""IKEv2 authentication helpers: identities, PSK AUTH (against a real
exchange), RFC 7427 signatures with each key type, certificate chains."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from aioipsec.errors import AuthenticationFailed
from aioipsec.ike import auth
from aioipsec.ike.auth import AuthMethod, HashAlgorithm, Identity, IdType

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
NOW = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)


def hmac_sha1(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha1).digest()


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize(
    "text,id_type,data",
    [
        ("192.0.2.1", IdType.IPV4_ADDR, bytes([192, 0, 2, 1])),
        ("2001:db8::1", IdType.IPV6_ADDR, bytes.fromhex("20010db8000000000000000000000001")),
        ("host.example", IdType.FQDN, b"host.example"),
        ("@host.example", IdType.FQDN, b"host.example"),
        ("user@example.org", IdType.RFC822_ADDR, b"user@example.org"),
        ("@#0a0b", IdType.KEY_ID, b"\x0a\x0b"),
    ],
)
def test_identity_from_string(text: str, id_type: int, data: bytes) -> None:
    ident = Identity.from_string(text)
    assert ident.id_type == id_type
    assert ident.data == data
    assert ident.body() == bytes([id_type, 0, 0, 0]) + data
    assert Identity.from_body(ident.body()) == ident


def test_identity_dn_roundtrip_and_order() -> None:
    ident = Identity.from_string("C=CH, O=example, CN=host.example")
    assert ident.id_type == IdType.DER_ASN1_DN
    assert str(ident) == "C=CH, O=example, CN=host.example"
    # the first component is the outermost RDN, as in strongSwan
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "host.example"),
        ]
    )
    assert ident.data == name.public_bytes()
    assert ident.matches(Identity(IdType.DER_ASN1_DN, name.public_bytes()))
    assert not ident.matches(Identity.from_string("C=CH, O=other, CN=host.example"))


def test_identity_matches_config() -> None:
    peer = Identity.from_string("host.example")
    assert auth.identity_matches_config(peer, None)
    assert auth.identity_matches_config(peer, "%any")
    assert auth.identity_matches_config(peer, "HOST.example")
    assert auth.identity_matches_config(peer, "*.example")
    assert not auth.identity_matches_config(peer, "other.example")
    assert not auth.identity_matches_config(peer, "192.0.2.1")


def test_malformed_dn_does_not_match() -> None:
    bogus = Identity(IdType.DER_ASN1_DN, b"\x30\x05\x31")
    assert bogus.dn_attrs() is None
    assert not bogus.matches(bogus)
    assert "9:" in str(bogus)


# --------------------------------------------------------------------------- PSK against a real exchange


def test_psk_auth_of_real_android_exchange() -> None:
    rec = json.loads((VECTORS / "ikev2_real_exchange_android.json").read_text())["records"][0]
    h = bytes.fromhex
    octets = auth.signed_octets(
        h(rec["ike_sa_init_request"]), h(rec["Nr"]), h(rec["IDi_body"]), hmac_sha1, h(rec["SK_pi"])
    )
    got = auth.psk_auth_data(hmac_sha1, h(rec["psk"]), octets)
    assert got == h(rec["AUTH_i"])
    assert auth.verify_psk(hmac_sha1, h(rec["psk"]), octets, h(rec["AUTH_i"]))
    assert not auth.verify_psk(hmac_sha1, b"wrong", octets, h(rec["AUTH_i"]))
    assert str(Identity.from_body(h(rec["IDi_body"]))) == "10.80.80.13"


# --------------------------------------------------------------------------- RFC 7427 encodings


def test_algorithm_identifiers_match_rfc7427_appendix_a() -> None:
    # RFC 7427 Appendix A.1.3 / A.3.1 / A.4.3 and RFC 8420 §2
    assert auth.algorithm_identifier(auth.OID_RSA_SHA256, b"\x05\x00").hex() == "300d06092a864886f70d01010b0500"
    assert auth.algorithm_identifier(auth.OID_ECDSA_SHA384).hex() == "300a06082a8648ce3d040303"
    assert auth.algorithm_identifier(auth.OID_ED25519).hex() == "300506032b6570"
    assert auth.pss_algorithm_identifier(hashes.SHA256()).hex() == (
        "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108"
        "300d06096086480165030402010500a203020120"
    )


# --------------------------------------------------------------------------- signatures

OCTETS = b"RealMessage1 | NonceRData | MACedIDForI" * 3
ALL_HASHES = list(auth.SUPPORTED_HASHES)


def _keys() -> dict[str, object]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return _keys()


@pytest.mark.parametrize(
    "kind,pss,desc",
    [
        ("rsa", False, "RSA_EMSA_PKCS1_SHA256"),
        ("rsa", True, "RSA_EMSA_PSS_SHA256"),
        ("p256", False, "ECDSA_WITH_SHA256_DER"),
        ("p384", False, "ECDSA_WITH_SHA384_DER"),
        ("p521", False, "ECDSA_WITH_SHA512_DER"),
        ("ed25519", False, "ED25519"),
    ],
)
def test_digital_signature_roundtrip(keys: dict, kind: str, pss: bool, desc: str) -> None:
    key = keys[kind]
    method, data = auth.sign(key, OCTETS, peer_hashes=ALL_HASHES, rsa_pss=pss)
    assert method == AuthMethod.DIGITAL_SIGNATURE
    assert auth.verify_signature(key.public_key(), method, data, OCTETS) == desc
    with pytest.raises(AuthenticationFailed):
        auth.verify_signature(key.public_key(), method, data, OCTETS + b"x")
    # a signature by another key of another type never verifies
    other = keys["p256"] if kind != "p256" else keys["rsa"]
    with pytest.raises(AuthenticationFailed):
        auth.verify_signature(other.public_key(), method, data, OCTETS)


def test_pss_signature_verifies_with_cryptography_directly(keys: dict) -> None:
    key = keys["rsa"]
    _, data = auth.sign(key, OCTETS, peer_hashes=ALL_HASHES, rsa_pss=True)
    alg_len = data[0]
    sig = data[1 + alg_len :]
    key.public_key().verify(sig, OCTETS, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


@pytest.mark.parametrize("kind,method", [("rsa", AuthMethod.RSA_SIG), ("p256", AuthMethod.ECDSA_256), ("p384", AuthMethod.ECDSA_384)])
def test_classic_methods_without_rfc7427(keys: dict, kind: str, method: int) -> None:
    key = keys[kind]
    got_method, data = auth.sign(key, OCTETS, peer_hashes=None)
    assert got_method == method
    auth.verify_signature(key.public_key(), got_method, data, OCTETS)
    if kind != "rsa":
        assert len(data) == 2 * ((key.curve.key_size + 7) // 8)


def test_ed25519_requires_identity_hash(keys: dict) -> None:
    with pytest.raises(AuthenticationFailed):
        auth.sign(keys["ed25519"], OCTETS, peer_hashes=[HashAlgorithm.SHA2_256])
    with pytest.raises(AuthenticationFailed):
        auth.sign(keys["ed25519"], OCTETS, peer_hashes=None)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x20", b"\x05\x30\x03\x06\x01", b"\x07" + bytes.fromhex("300506032b6571") + b"sig", b"\x02\x30\x00abc"],
)
def test_malformed_signature_data_fails_cleanly(keys: dict, data: bytes) -> None:
    with pytest.raises(AuthenticationFailed):
        auth.verify_signature(keys["ed25519"].public_key(), AuthMethod.DIGITAL_SIGNATURE, data, OCTETS)


def test_unknown_method_rejected(keys: dict) -> None:
    with pytest.raises(AuthenticationFailed):
        auth.verify_signature(keys["rsa"].public_key(), 3, b"x" * 40, OCTETS)


# --------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_key, subject: x509.Name, issuer_key, issuer: x509.Name, *, ca: bool, san=None, days=(-1, 30)):
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + datetime.timedelta(days=days[0]))
        .not_valid_after(NOW + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    alg = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(issuer_key, alg)


@pytest.fixture(scope="module")
def pki(keys: dict):
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = _cert(ca_key, _name("Test CA"), ca_key, _name("Test CA"), ca=True)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _cert(inter_key, _name("Sub CA"), ca_key, _name("Test CA"), ca=True)
    leaf = _cert(
        keys["ed25519"],
        _name("host.example"),
        inter_key,
        _name("Sub CA"),
        ca=False,
        san=[x509.DNSName("host.example"), x509.IPAddress(__import__("ipaddress").ip_address("192.0.2.7")),
             x509.RFC822Name("ops@example.org")],
    )
    return ca, ca_key, inter, leaf


def test_chain_verification(pki) -> None:
    ca, _, inter, leaf = pki
    chain = auth.verify_chain(leaf, [inter], [ca], NOW)
    assert [c.subject for c in chain] == [leaf.subject, inter.subject, ca.subject]
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [], [ca], NOW)  # intermediate missing
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [inter], [ca], NOW + datetime.timedelta(days=60))  # expired
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert(other_key, _name("Test CA"), other_key, _name("Test CA"), ca=True)
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [inter], [other_ca], NOW)  # same name, other key
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [inter], [], NOW)


def test_verified_chains_are_kept_for_their_validity_span(pki, monkeypatch) -> None:
    """verify_chain keeps a chain that verified, with the span in which all
    its certificates are valid: the same leaf, intermediates and anchors
    inside that span come from there (also as freshly parsed copies); a
    time outside it, other anchors or other intermediates are verified
    afresh, and a chain that failed is not kept."""
    from cryptography.hazmat.primitives.serialization import Encoding

    ca, _, inter, leaf = pki
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert(other_key, _name("Test CA"), other_key, _name("Test CA"), ca=True)
    calls: list[datetime.datetime] = []
    real = auth._verify_chain

    def counted(leaf, inters, anchors, at):  # type: ignore[no-untyped-def]
        calls.append(at)
        return real(leaf, inters, anchors, at)

    monkeypatch.setattr(auth, "_verify_chain", counted)
    auth.forget_verified_chains()
    first = auth.verify_chain(leaf, [inter], [ca], NOW)
    copy = x509.load_der_x509_certificate(leaf.public_bytes(Encoding.DER))
    assert auth.verify_chain(copy, [inter], [ca], NOW + datetime.timedelta(hours=5)) == first
    assert len(calls) == 1 and len(auth._VERIFIED) == 1
    for when in (NOW + datetime.timedelta(days=60), NOW - datetime.timedelta(days=5)):  # after / before the span
        with pytest.raises(AuthenticationFailed):
            auth.verify_chain(leaf, [inter], [ca], when)
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [inter], [other_ca], NOW)  # other anchors
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [], [ca], NOW)  # other intermediates
    assert len(calls) == 5 and len(auth._VERIFIED) == 1  # each verified afresh, none of the failures kept


def test_manual_chain_fallback(pki) -> None:
    ca, _, inter, leaf = pki
    chain = auth._verify_chain_manually(leaf, [inter], [ca], NOW)
    assert len(chain) == 3
    with pytest.raises(AuthenticationFailed):
        auth._verify_chain_manually(leaf, [], [ca], NOW)
    with pytest.raises(AuthenticationFailed):
        auth._verify_chain_manually(leaf, [inter], [ca], NOW - datetime.timedelta(days=5))


def test_chain_with_eddsa_issuers() -> None:
    """An Ed25519 CA (RFC 8410) and an Ed25519 intermediate: cryptography's verifier
    refuses EdDSA keys in CA certificates ("Forbidden public key algorithm"), so such
    chains were never trusted (found against strongSwan with an Ed25519 PKI); they are
    checked by the chain walk, which still refuses what it must."""
    ca_key = ed25519.Ed25519PrivateKey.generate()
    ca = _cert(ca_key, _name("Ed CA"), ca_key, _name("Ed CA"), ca=True)
    inter_key = ed25519.Ed25519PrivateKey.generate()
    inter = _cert(inter_key, _name("Ed Sub CA"), ca_key, _name("Ed CA"), ca=True)
    leaf = _cert(ec.generate_private_key(ec.SECP256R1()), _name("host.example"), inter_key,
                 _name("Ed Sub CA"), ca=False)
    chain = auth.verify_chain(leaf, [inter], [ca], NOW)
    assert [c.subject for c in chain] == [leaf.subject, inter.subject, ca.subject]
    direct = _cert(ed25519.Ed25519PrivateKey.generate(), _name("host.example"), ca_key, _name("Ed CA"), ca=False)
    assert len(auth.verify_chain(direct, [], [ca], NOW)) == 2
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [], [ca], NOW)  # intermediate missing
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [inter], [ca], NOW + datetime.timedelta(days=60))  # expired
    other_key = ed25519.Ed25519PrivateKey.generate()
    other_ca = _cert(other_key, _name("Ed CA"), other_key, _name("Ed CA"), ca=True)
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [inter], [other_ca], NOW)  # same name, other key
    not_ca = _cert(inter_key, _name("Ed Sub CA"), ca_key, _name("Ed CA"), ca=False)
    with pytest.raises(AuthenticationFailed):
        auth.verify_chain(leaf, [not_ca], [ca], NOW)  # the intermediate is no CA


def test_eddsa_chain_walk_path_length_and_key_usage() -> None:
    """The chain walk that checks EdDSA-issued chains enforces each CA's
    pathLenConstraint and, where a CA has a key usage, keyCertSign (RFC 5280
    §4.2.1.9, §4.2.1.3), as cryptography's verifier does for other chains."""

    def ca_cert(key, subject, issuer_key, issuer, *, path_length=None, cert_sign=True):
        b = (
            x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        )
        return b.sign(issuer_key, None)

    root_key, sub_key = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    for root_len, sub_len, sign, ok in ((None, None, True, True), (1, None, True, True), (0, None, True, False),
                                        (None, 0, True, True), (None, None, False, False)):
        root = ca_cert(root_key, "Ed Root", root_key, "Ed Root", path_length=root_len)
        sub = ca_cert(sub_key, "Ed Sub", root_key, "Ed Root", path_length=sub_len, cert_sign=sign)
        leaf = _cert(leaf_key, _name("host.example"), sub_key, _name("Ed Sub"), ca=False)
        if ok:
            assert len(auth.verify_chain(leaf, [sub], [root], NOW)) == 3
        else:
            with pytest.raises(AuthenticationFailed, match="path length 0 exceeded|without keyCertSign"):
                auth.verify_chain(leaf, [sub], [root], NOW)
    # a root with path length 0 still issues end-entity certificates directly
    root = ca_cert(root_key, "Ed Root", root_key, "Ed Root", path_length=0)
    direct = _cert(leaf_key, _name("host.example"), root_key, _name("Ed Root"), ca=False)
    assert len(auth.verify_chain(direct, [], [root], NOW)) == 2


def test_cert_identity_matching(pki) -> None:
    _, _, _, leaf = pki
    assert auth.cert_matches_identity(leaf, Identity.from_string("host.example"))
    assert auth.cert_matches_identity(leaf, Identity.from_string("192.0.2.7"))
    assert auth.cert_matches_identity(leaf, Identity.from_string("ops@example.org"))
    assert auth.cert_matches_identity(leaf, Identity.from_string("C=CH, CN=host.example"))
    assert not auth.cert_matches_identity(leaf, Identity.from_string("other.example"))
    assert not auth.cert_matches_identity(leaf, Identity.from_string("192.0.2.8"))
    assert not auth.cert_matches_identity(leaf, Identity.from_string("C=CH, CN=other"))


def test_certreq_hashes(pki) -> None:
    ca, _, inter, _ = pki
    spki = ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert auth.certreq_data([ca]) == hashlib.sha1(spki).digest()
    assert auth.certreq_matches(auth.certreq_data([ca, inter]), [ca])
    assert not auth.certreq_matches(auth.certreq_data([inter]), [ca])
    assert auth.certreq_matches(b"", [ca])


def test_load_bad_certificate() -> None:
    with pytest.raises(AuthenticationFailed):
        auth.load_der_certificate(b"\x30\x03\x02\x01\x00")
