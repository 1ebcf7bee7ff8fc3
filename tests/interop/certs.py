"""A test PKI for certificate-authenticated interop profiles, made with ``cryptography``.

For each kind (``ecdsa``: P-256, ``ecdsa384``: P-384, ``ecdsa521``: P-521, ``ed25519``,
``ed448``, ``rsa``: RSA-3072) one self-signed CA and two host certificates, ``left`` and ``right``, whose subjectAltName carries the IKE
identity (``left.interop.example`` / ``right.interop.example``, as dNSName) and the side's
outer IPv4 address of the direct topology.  Files (PEM; keys as unencrypted PKCS#8)::

    ca-<kind>.crt.pem   ca-<kind>.key.pem
    <side>-<kind>.crt.pem   <side>-<kind>.key.pem      side in left, right

:func:`reissue_host_cert` makes another certificate for a side from the same CA (a
second PKI directory charon can be pointed at), :func:`write_crl` a CRL of a CA
(``CertificateRevocationListBuilder``) revoking given serials.
:meth:`TestPki.install_swanctl` copies what one charon side needs into its swanctl
directory (``x509ca/``, ``x509/``, ``private/``).  RSA-3072 key generation takes a
second or two, so the session fixture makes one PKI per run.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KINDS = ("ecdsa", "ecdsa384", "ecdsa521", "ed25519", "ed448", "rsa")
SIDES = {"left": ("left.interop.example", "192.0.2.1"),
         "right": ("right.interop.example", "192.0.2.2")}

PrivateKey = (ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
              | ed448.Ed448PrivateKey)


def _new_key(kind: str) -> PrivateKey:
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ecdsa521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"unknown key kind {kind!r} (one of {KINDS})")


def _sig_hash(key: PrivateKey) -> hashes.SHA256 | None:
    """The hash a CA signs with: SHA-256, none for EdDSA (it hashes internally)."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aioipsec interop"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class TestPki:
    """Where the generated PKI lives."""

    __test__ = False  # not a pytest test class

    directory: Path

    def ca_cert(self, kind: str) -> Path:
        return self.directory / f"ca-{kind}.crt.pem"

    def cert(self, side: str, kind: str) -> Path:
        return self.directory / f"{side}-{kind}.crt.pem"

    def key(self, side: str, kind: str) -> Path:
        return self.directory / f"{side}-{kind}.key.pem"

    def ca_key(self, kind: str) -> Path:
        return self.directory / f"ca-{kind}.key.pem"

    def serial(self, side: str, kind: str) -> int:
        return x509.load_pem_x509_certificate(self.cert(side, kind).read_bytes()).serial_number

    def install_swanctl(self, swanctl_dir: Path, side: str, kind: str) -> None:
        """Copy the CA, ``side``'s certificate and key into a swanctl directory."""
        for sub, src in (("x509ca", self.ca_cert(kind)), ("x509", self.cert(side, kind)),
                         ("private", self.key(side, kind))):
            (swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
            dst = swanctl_dir / sub / src.name
            shutil.copyfile(src, dst)
            if sub == "private":
                dst.chmod(0o600)


def generate_pki(directory: Path, kinds: tuple[str, ...] = KINDS) -> TestPki:
    """Write a CA and left/right host certificates for each kind into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(days=1)
    not_after = now + datetime.timedelta(days=30)
    for kind in kinds:
        ca_key = _new_key(kind)
        ca_name = _name(f"aioipsec interop {kind} CA")
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, _sig_hash(ca_key))
        )
        _write(directory / f"ca-{kind}.crt.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
        _write(directory / f"ca-{kind}.key.pem", _key_pem(ca_key), secret=True)
        for side in SIDES:
            cert, key = _host_cert(kind, side, ca_key, ca_name, ca_ski, not_before, not_after)
            _write(directory / f"{side}-{kind}.crt.pem", cert.public_bytes(serialization.Encoding.PEM))
            _write(directory / f"{side}-{kind}.key.pem", _key_pem(key), secret=True)
    return TestPki(directory)


def _host_cert(kind: str, side: str, ca_key: PrivateKey, ca_name: x509.Name,
               ca_ski: x509.SubjectKeyIdentifier, not_before: datetime.datetime,
               not_after: datetime.datetime) -> tuple[x509.Certificate, PrivateKey]:
    fqdn, ip = SIDES[side]
    key = _new_key(kind)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(fqdn)).issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(fqdn), x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=(kind == "rsa"), data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([
            ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH,
            ExtendedKeyUsageOID.IPSEC_IKE]),  # id-kp-ipsecIKE, RFC 4945
            critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_ski), critical=False)
        .sign(ca_key, _sig_hash(ca_key))
    )
    return cert, key


def _load_ca(pki: TestPki, kind: str) -> tuple[x509.Certificate, PrivateKey]:
    ca = x509.load_pem_x509_certificate(pki.ca_cert(kind).read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key(kind).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
                      | ed448.Ed448PrivateKey)
    return ca, key


def reissue_host_cert(pki: TestPki, directory: Path, side: str, kind: str) -> TestPki:
    """A new certificate for ``side`` (same subject and SAN, new key and serial) from
    ``pki``'s ``kind`` CA, written with that CA's certificate into ``directory``: a
    :class:`TestPki` with which :meth:`TestPki.install_swanctl` installs it for charon."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _load_ca(pki, kind)
    now = datetime.datetime.now(datetime.UTC)
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert, key = _host_cert(kind, side, ca_key, ca.subject, ski, now - datetime.timedelta(days=1),
                           now + datetime.timedelta(days=30))
    shutil.copyfile(pki.ca_cert(kind), directory / pki.ca_cert(kind).name)
    _write(directory / f"{side}-{kind}.crt.pem", cert.public_bytes(serialization.Encoding.PEM))
    _write(directory / f"{side}-{kind}.key.pem", _key_pem(key), secret=True)
    return TestPki(directory)


def issue_user_cert(pki: TestPki, directory: Path, kind: str, email: str) -> tuple[Path, Path]:
    """A user certificate (CN and RFC822 SAN ``email``) from ``pki``'s ``kind`` CA,
    e.g. for a second authentication round (RFC 4739: machine, then user);
    returns its certificate and key files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _load_ca(pki, kind)
    now = datetime.datetime.now(datetime.UTC)
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    key = _new_key(kind)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(email)).issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, _sig_hash(ca_key))
    )
    cert_path, key_path = directory / f"user-{kind}.crt.pem", directory / f"user-{kind}.key.pem"
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write(key_path, _key_pem(key), secret=True)
    return cert_path, key_path


def write_crl(pki: TestPki, kind: str, path: Path, revoked: dict[int, x509.ReasonFlags | None], *,
              number: int = 1, next_update: datetime.timedelta = datetime.timedelta(days=7),
              der: bool = False) -> Path:
    """A CRL of ``pki``'s ``kind`` CA listing the serials of ``revoked`` (with a
    reason code unless ``None``), thisUpdate an hour ago; PEM unless ``der``."""
    ca, ca_key = _load_ca(pki, kind)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - datetime.timedelta(hours=1))
        .next_update(now + next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    for serial, reason in revoked.items():
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(
            now - datetime.timedelta(hours=2))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca_key, _sig_hash(ca_key))
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
    return path


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)
