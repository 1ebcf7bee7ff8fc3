"""IKEv1 ECDSA (RFC 4754): the RFC's §8 signature vectors through the
Phase 1 signature helpers, the method chosen from the key's curve, SIG
payload bytes, and verification failures (wrong digest, wrong length, key
type or curve that does not fit the negotiated method)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.x509.oid import NameOID

from aioipsec.config import AuthConfig, connection
from aioipsec.errors import LocalProtocolError
from aioipsec.ike.auth import Identity, IdType
from aioipsec.ike.v1.constants import Ike1Auth, PayloadType
from aioipsec.ike.v1.errors import AuthenticationFailed, UnverifiedMessage
from aioipsec.ike.v1.payloads import CertPayload, SigPayload, decode_chain, encode_chain
from aioipsec.ike.v1.phase1 import (
    auth_method_for,
    build_auth_payloads,
    ecdsa_sign_digest,
    ecdsa_verify_digest,
    verify_signature,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "ecdsa_rfc4754.json").read_text())["records"]
CURVES = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1, "secp521r1": ec.SECP521R1}
NOW = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
GW = Identity(IdType.FQDN, b"gw.example")


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
def test_rfc4754_vectors(v: dict) -> None:
    """The published r | s verifies over the published digest (given to
    the helper as the digest, as HASH_x is in IKEv1); altered signatures,
    digests and lengths do not; the key from w is the published gw."""
    assert v["verified"] and all(v["checks"].values())
    curve = CURVES[v["curve"]]()
    key = ec.derive_private_key(int(v["w"], 16), curve)
    pub = key.public_key()
    nums = pub.public_numbers()
    assert (nums.x, nums.y) == (int(v["gwx"], 16), int(v["gwy"], 16))
    sig = bytes.fromhex(v["signature"])
    assert len(sig) == 2 * v["coordinate_octets"]
    assert sig == bytes.fromhex(v["r"]).rjust(v["coordinate_octets"], b"\0") + bytes.fromhex(v["s"]).rjust(
        v["coordinate_octets"], b"\0"
    )
    digest = bytes.fromhex(v["digest"])
    assert ecdsa_verify_digest(pub, digest, sig)
    flipped = bytearray(sig)
    flipped[-1] ^= 1
    assert not ecdsa_verify_digest(pub, digest, bytes(flipped))
    assert not ecdsa_verify_digest(pub, bytes([digest[0] ^ 0x80]) + digest[1:], sig)
    assert not ecdsa_verify_digest(pub, digest, sig[:-1])
    assert not ecdsa_verify_digest(pub, digest, b"\0" + sig)
    # our signatures with this key: fixed width, verifiable by cryptography
    # over the same digest, and by the helper
    mine = ecdsa_sign_digest(key, digest)
    size = v["coordinate_octets"]
    assert len(mine) == 2 * size
    r, s = int.from_bytes(mine[:size], "big"), int.from_bytes(mine[size:], "big")
    h = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}[v["hash"]]
    pub.verify(encode_dss_signature(r, s), bytes.fromhex(v["message"]), ec.ECDSA(h()))
    assert ecdsa_verify_digest(pub, digest, mine)


def test_small_r_and_s_are_left_padded() -> None:
    """r | s keep their full width when r or s has leading zero octets
    (about one signature in 128): found by signing until it happens."""
    key = ec.derive_private_key(int(VECTORS[0]["w"], 16), ec.SECP256R1())
    digest = bytes(32)
    for n in range(2000):
        digest = n.to_bytes(32, "big")
        sig = ecdsa_sign_digest(key, digest)
        if sig[0] == 0 or sig[32] == 0:
            break
    else:
        pytest.fail("no short r or s in 2000 signatures")
    assert len(sig) == 64 and ecdsa_verify_digest(key.public_key(), digest, sig)


def test_sig_payload_bytes() -> None:
    v = VECTORS[0]
    sig = bytes.fromhex(v["signature"])
    # generic header: next payload 0, reserved 0, length 4 + 64
    first, chain = encode_chain([SigPayload(sig)])
    assert first == PayloadType.SIG == 9
    assert chain == bytes.fromhex("00000044") + sig
    (back,) = decode_chain(first, chain).payloads
    assert isinstance(back, SigPayload) and back.data == sig


@pytest.mark.parametrize(
    ("curve", "method"),
    [(ec.SECP256R1, Ike1Auth.ECDSA_256), (ec.SECP384R1, Ike1Auth.ECDSA_384), (ec.SECP521R1, Ike1Auth.ECDSA_521)],
)
def test_auth_method_from_curve(curve: type, method: int) -> None:
    key, cert, ca = _host(curve())
    assert auth_method_for(_cfg(key, cert, ca)) == method


def test_auth_method_refuses_other_curves() -> None:
    key, cert, ca = _host(ec.SECP256K1())
    with pytest.raises(LocalProtocolError, match="P-256, P-384 and P-521"):
        auth_method_for(_cfg(key, cert, ca))


def _host(curve: ec.EllipticCurve | None = None, ca_key: ec.EllipticCurvePrivateKey | None = None) -> tuple:
    ca_key = ca_key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(curve) if curve is not None else rsa.generate_private_key(65537, 2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.example")]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("gw.example")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert, ca


def _cfg(key: object, cert: x509.Certificate, ca: x509.Certificate):  # type: ignore[no-untyped-def]
    return connection(
        "c",
        version=1,
        local=AuthConfig("pubkey", cert=cert, private_key=key),  # type: ignore[arg-type]
        remote=AuthConfig("pubkey", cacerts=[ca]),
    )


@pytest.mark.parametrize("hash_len", [16, 20, 32, 48, 64])
@pytest.mark.parametrize(("curve", "method"), [(ec.SECP256R1, Ike1Auth.ECDSA_256), (ec.SECP384R1, Ike1Auth.ECDSA_384)])
def test_sign_and_verify_hash_x(curve: type, method: int, hash_len: int) -> None:
    """SIG_x signs HASH_x (the prf output of any negotiated hash: MD5 to
    SHA-512) as the digest, without hashing it again."""
    key, cert, ca = _host(curve())
    cfg = _cfg(key, cert, ca)
    h = bytes(range(hash_len))
    out = build_auth_payloads(cfg, method, h, send_certs=True)
    assert [type(p) for p in out] == [CertPayload, SigPayload]
    sig = out[-1].data  # type: ignore[attr-defined]
    size = (key.curve.key_size + 7) // 8
    assert len(sig) == 2 * size
    digest_alg = {16: hashes.MD5, 20: hashes.SHA1, 32: hashes.SHA256, 48: hashes.SHA384, 64: hashes.SHA512}[hash_len]
    key.public_key().verify(
        encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")),
        h,
        ec.ECDSA(Prehashed(digest_alg())),
    )
    assert verify_signature(cfg, GW, h, out, NOW, method) == cert
    with pytest.raises(UnverifiedMessage, match="signature of gw.example does not verify"):
        verify_signature(cfg, GW, bytes([h[0] ^ 1]) + h[1:], out, NOW, method)
    with pytest.raises(UnverifiedMessage, match="does not verify"):
        verify_signature(cfg, GW, h, [out[0], SigPayload(sig[:-1])], NOW, method)


def test_verify_refuses_key_that_does_not_fit_the_method() -> None:
    key, cert, ca = _host(ec.SECP384R1())
    cfg = _cfg(key, cert, ca)
    h = bytes(32)
    out = build_auth_payloads(cfg, Ike1Auth.ECDSA_384, h, send_certs=True)
    with pytest.raises(AuthenticationFailed, match="negotiated ECDSA-256 but the peer certificate has a P-384 key"):
        verify_signature(cfg, GW, h, out, NOW, Ike1Auth.ECDSA_256)
    with pytest.raises(AuthenticationFailed, match="no RSA key"):
        verify_signature(cfg, GW, h, out, NOW, Ike1Auth.RSA_SIG)
    rkey, rcert, rca = _host(None)
    rcfg = _cfg(rkey, rcert, rca)
    rout = build_auth_payloads(rcfg, Ike1Auth.RSA_SIG, h, send_certs=True)
    with pytest.raises(AuthenticationFailed, match="negotiated ECDSA-384 but the peer certificate has no ECDSA key"):
        verify_signature(rcfg, GW, h, rout, NOW, Ike1Auth.ECDSA_384)
    with pytest.raises(AuthenticationFailed, match="not supported"):
        verify_signature(cfg, GW, h, out, NOW, Ike1Auth.DSS_SIG)


def test_build_refuses_key_that_does_not_fit_the_method() -> None:
    key, cert, ca = _host(ec.SECP384R1())
    cfg = _cfg(key, cert, ca)
    with pytest.raises(LocalProtocolError, match="need a P-256 private key"):
        build_auth_payloads(cfg, Ike1Auth.ECDSA_256, bytes(32), send_certs=False)
    with pytest.raises(LocalProtocolError, match="need an RSA private key"):
        build_auth_payloads(cfg, Ike1Auth.RSA_SIG, bytes(32), send_certs=False)
