"""What an OCSP responder or a CRL distribution point sends is garbage-proof:
verify_ocsp_response and parse_crl, given random bytes or a genuine answer
with bytes flipped, cut or appended, return a verified answer or raise
ValueError naming the problem -- nothing else escapes to the fetcher.  And
a mutated response is never accepted as a different verdict: whatever
verifies is the genuine status (the signature covers it)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioipsec.ike.auth import parse_crl, verify_ocsp_response

EXAMPLES = 600
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class _Pki:
    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = (x509.CertificateBuilder().subject_name(_name("fuzz CA")).issuer_name(_name("fuzz CA"))
                   .public_key(self.ca_key.public_key()).serial_number(1)
                   .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(self.ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (x509.CertificateBuilder().subject_name(_name("peer.example")).issuer_name(_name("fuzz CA"))
                     .public_key(key.public_key()).serial_number(7)
                     .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
                     .sign(self.ca_key, hashes.SHA256()))
        self.nonce = b"\x11" * 16
        b = (ocsp.OCSPResponseBuilder()
             .add_response(cert=self.cert, issuer=self.ca, algorithm=hashes.SHA256(), cert_status=ocsp.OCSPCertStatus.REVOKED,
                           this_update=NOW - datetime.timedelta(hours=1), next_update=NOW + DAY,
                           revocation_time=NOW - DAY, revocation_reason=x509.ReasonFlags.key_compromise)
             .responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca)
             .add_extension(x509.OCSPNonce(self.nonce), critical=False))
        self.ocsp = b.sign(self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        # the same answer from a delegated responder carrying its certificate
        rkey = ec.generate_private_key(ec.SECP256R1())
        rcert = (x509.CertificateBuilder().subject_name(_name("fuzz responder")).issuer_name(_name("fuzz CA"))
                 .public_key(rkey.public_key()).serial_number(2)
                 .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
                 .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
                 .sign(self.ca_key, hashes.SHA256()))
        b2 = (ocsp.OCSPResponseBuilder()
              .add_response(cert=self.cert, issuer=self.ca, algorithm=hashes.SHA256(),
                            cert_status=ocsp.OCSPCertStatus.REVOKED, this_update=NOW - datetime.timedelta(hours=1),
                            next_update=NOW + DAY, revocation_time=NOW - DAY, revocation_reason=None)
              .responder_id(ocsp.OCSPResponderEncoding.NAME, rcert).certificates([rcert]))
        self.ocsp_delegated = b2.sign(rkey, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        self.crl = (x509.CertificateRevocationListBuilder().issuer_name(_name("fuzz CA"))
                    .last_update(NOW - DAY).next_update(NOW + DAY).add_extension(x509.CRLNumber(3), critical=False)
                    .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(7).revocation_date(NOW - DAY)
                                             .add_extension(x509.CRLReason(x509.ReasonFlags.superseded), critical=False)
                                             .build())
                    .sign(self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


PKI = _Pki()


def test_the_genuine_answers_verify() -> None:
    st_ = verify_ocsp_response(PKI.ocsp, PKI.cert, PKI.ca, NOW, nonce=PKI.nonce)
    assert st_.status == "revoked"
    st2 = verify_ocsp_response(PKI.ocsp_delegated, PKI.cert, PKI.ca, NOW)
    assert st2.status == "revoked" and st2.responder.startswith("delegated responder")
    crl = parse_crl(PKI.crl)
    assert crl.get_revoked_certificate_by_serial_number(7) is not None


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    flips = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(1, 255)), min_size=1, max_size=6).map(
        lambda fl: bytes(b ^ dict(fl).get(i, 0) for i, b in enumerate(seed)))
    cuts = st.integers(0, len(seed) - 1).map(lambda n: seed[:n])
    tails = st.binary(min_size=1, max_size=32).map(lambda t: seed + t)
    return st.one_of(flips, cuts, tails, st.binary(max_size=300))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.one_of(_mutations(PKI.ocsp), _mutations(PKI.ocsp_delegated)))
def test_ocsp_response_garbage(data: bytes) -> None:
    try:
        got = verify_ocsp_response(data, PKI.cert, PKI.ca, NOW, nonce=PKI.nonce)
    except ValueError as exc:
        assert str(exc)
        return
    # accepted only with the genuine content: a revoked verdict
    assert got.status == "revoked"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(_mutations(PKI.crl))
def test_crl_garbage(data: bytes) -> None:
    try:
        crl = parse_crl(data)
    except ValueError as exc:
        assert str(exc)
        return
    if crl.is_signature_valid(PKI.ca_key.public_key()):
        assert crl.get_revoked_certificate_by_serial_number(7) is not None


@pytest.mark.parametrize("data", [b"", b"-----BEGIN X509 CRL-----\n", b"\x30\x80", b"\x30\x82\xff\xff"])
def test_crl_fragments(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_crl(data)
