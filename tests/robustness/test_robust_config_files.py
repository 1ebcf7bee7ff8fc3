"""Garbage in the files and values the configuration names (the CRL files of
``crls`` and a child's ``updown``): the loader either loads them or fails
with a ConfigError naming the field (``crls[1]``,
``connections.c.children.net.updown``), never another exception; a CRL it
loads is usable: the revocation check on it raises nothing but
AuthenticationFailed (no lazily parsed part of the file blows up during an
IKE_AUTH)."""

from __future__ import annotations

import base64
import datetime
import os
import tempfile
from pathlib import Path
from typing import Any

import fuzzlib
import pytest
from conftest import SOAK
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioipsec.config_file import parse_config
from aioipsec.errors import AuthenticationFailed, ConfigError
from aioipsec.ike import auth

N = 600 if SOAK else 150
SETTINGS = settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck), database=None)
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pki() -> dict[str, Any]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Fuzz CA")).issuer_name(_name("Fuzz CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(NOW - 99 * DAY)
          .not_valid_after(NOW + 99 * DAY).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
          .sign(ca_key, hashes.SHA256()))  # fmt: skip
    leaf = (x509.CertificateBuilder().subject_name(_name("peer.example")).issuer_name(_name("Fuzz CA"))
            .public_key(leaf_key.public_key()).serial_number(0x1234).not_valid_before(NOW - 9 * DAY)
            .not_valid_after(NOW + 9 * DAY).sign(ca_key, hashes.SHA256()))  # fmt: skip
    revoked = (x509.RevokedCertificateBuilder().serial_number(0x99).revocation_date(NOW - 2 * DAY)
               .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), False).build())  # fmt: skip
    crl = (x509.CertificateRevocationListBuilder().issuer_name(_name("Fuzz CA")).last_update(NOW - DAY)
           .next_update(NOW + 7 * DAY).add_revoked_certificate(revoked)
           .add_extension(x509.CRLNumber(5), False).sign(ca_key, hashes.SHA256()))  # fmt: skip
    return {
        "chain": [leaf, ca],
        "crl_der": crl.public_bytes(serialization.Encoding.DER),
        "crl_pem": crl.public_bytes(serialization.Encoding.PEM),
        "cert_der": leaf.public_bytes(serialization.Encoding.DER),
        "cert_pem": leaf.public_bytes(serialization.Encoding.PEM),
        "key_der": leaf_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()),
    }


PKI = _pki()


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{b64}-----END {label}-----\n".encode()


@st.composite
def crl_file(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:  # a PEM cut anywhere
        pem = PKI["crl_pem"]
        return pem[: draw(st.integers(0, len(pem) - 1))]
    if kind == 2:  # DER of something else, or PEM of something else labelled as a CRL
        return draw(st.sampled_from([PKI["cert_der"], PKI["key_der"], _pem("X509 CRL", PKI["cert_der"]),
                                     _pem("X509 CRL", PKI["key_der"]), PKI["cert_pem"], b"\x30\x00", b"\x30\x80"]))  # fmt: skip
    if kind == 3:  # a CRL PEM label around garbage
        return _pem("X509 CRL", draw(st.binary(max_size=200)))
    if kind == 4:  # a truncated DER CRL
        der = PKI["crl_der"]
        return der[: draw(st.integers(0, len(der) - 1))]
    if kind == 5:  # the PEM with text around it, or twice
        pem = PKI["crl_pem"]
        return draw(st.sampled_from([b"junk\n" + pem, pem + pem, pem.replace(b"\n", b"\r\n"), pem + b"\x00\xff"]))
    base = draw(st.sampled_from([PKI["crl_der"], PKI["crl_der"], PKI["crl_pem"]]))
    return fuzzlib.mutate(base, fuzzlib.Reader(draw(st.binary(min_size=4, max_size=40))))


def _doc(crls: list[str], updown: Any = None) -> dict[str, Any]:
    net: dict[str, Any] = {"local_ts": ["10.1.0.0/16"], "remote_ts": ["10.2.0.0/16"]}
    if updown is not None:
        net["updown"] = updown
    return {
        "crls": crls,
        "connections": {"c": {"version": 2, "remote_addrs": ["192.0.2.2"], "local": {"auth": "psk", "id": "a.example"},
                              "remote": {"auth": "pubkey", "cacerts": ["ca.pem"], "revocation": "strict"},
                              "children": {"net": net}}},
        "secrets": {"s": {"id": ["a.example"], "secret": "x"}},
    }


@pytest.fixture(scope="module")
def confdir() -> Any:
    with tempfile.TemporaryDirectory(prefix="aioipsec-robust-conf-") as d:
        p = Path(d)
        (p / "ca.pem").write_bytes(PKI["chain"][1].public_bytes(serialization.Encoding.PEM))
        (p / "good.crl").write_bytes(PKI["crl_der"])
        script = p / "updown.sh"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
        (p / "noexec.sh").write_text("#!/bin/sh\n")
        (p / "adir").mkdir()
        yield p


def test_the_base_documents_load(confdir: Path) -> None:
    cfg = parse_config(_doc(["good.crl"], "updown.sh --flag"), file="robust.toml", base=confdir)
    assert len(cfg.crls) == 1 and cfg.connections["c"].remote.crls == cfg.crls
    assert cfg.connections["c"].children["net"].updown.endswith("updown.sh --flag")


@SETTINGS
@given(st.lists(crl_file(), min_size=1, max_size=3), st.data())
def test_crl_files_with_garbage_fail_at_load_naming_the_field(confdir: Path, files: list[bytes], data: Any) -> None:
    names = []
    for n, content in enumerate(files):
        name = f"fuzz{n}.crl"
        (confdir / name).write_bytes(content)
        names.append(name)
    if data.draw(st.booleans()):
        names.insert(data.draw(st.integers(0, len(names))), "good.crl")
    try:
        cfg = parse_config(_doc(names), file="robust.toml", base=confdir)
    except ConfigError as exc:
        text = str(exc)
        assert "robust.toml" in text and any(f"crls[{i}]" in text for i in range(len(names))), text
        return
    # loaded: every CRL is fully usable in the check that runs in IKE_AUTH
    for policy in ("strict", "ifuri", "relaxed"):
        try:
            auth.check_revocation(PKI["chain"], cfg.crls, policy, NOW, peer="192.0.2.9[peer.example]")
        except AuthenticationFailed:
            pass


UPDOWN_VALUES = [3, 0, -1, 2.5, True, False, [], ["updown.sh"], {}, {"x": 1}, "", " ", "'", '"unterminated',
                 "nope.sh", "adir", "noexec.sh", "/nonexistent/updown", "\x00", "updown.sh\x00x", "\udc80",
                 datetime.time(1, 2), datetime.date(2026, 1, 1)]  # fmt: skip


@SETTINGS
@given(st.one_of(st.sampled_from(UPDOWN_VALUES), st.text(max_size=20), st.integers(), st.lists(st.text(max_size=5), max_size=2)))
def test_updown_values_of_every_wrong_type_fail_at_load_naming_the_field(confdir: Path, value: Any) -> None:
    try:
        cfg = parse_config(_doc(["good.crl"], value), file="robust.toml", base=confdir)
    except ConfigError as exc:
        assert "connections.c.children.net.updown" in str(exc), str(exc)
        return
    # accepted: only a command line whose program exists and is executable here
    import shlex

    prog = shlex.split(cfg.connections["c"].children["net"].updown)[0]
    assert os.path.isfile(prog) and os.access(prog, os.X_OK), prog


def _patched(der: bytes, marker: bytes, offset: int, new: bytes) -> bytes:
    i = der.index(marker) + offset
    return der[:i] + new + der[i + len(new) :]


def _bad_crls() -> list[tuple[str, bytes, str]]:
    der = PKI["crl_der"]
    return [
        # found by the test above: cryptography's InvalidVersion is no ValueError and came out of the loader
        ("version 6", _patched(der, b"\x02\x01\x01", 2, b"\x05"), "not a certificate revocation list"),
        # parsed lazily by cryptography: loaded fine, then every revocation check raised ValueError
        ("CRLNumber not an INTEGER", _patched(der, b"\x06\x03\x55\x1d\x14", 7, b"\x05"), "malformed certificate revocation list"),
        ("CRLReason 99", _patched(der, b"\x06\x03\x55\x1d\x15", 9, b"\x63"), "malformed certificate revocation list"),
    ]  # fmt: skip


@pytest.mark.parametrize(("what", "content", "reason"), _bad_crls(), ids=[b[0] for b in _bad_crls()])
def test_regression_crls_broken_where_cryptography_parses_late_fail_at_load(
    confdir: Path, what: str, content: bytes, reason: str
) -> None:
    (confdir / "bad.crl").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        parse_config(_doc(["good.crl", "bad.crl"]), file="robust.toml", base=confdir)
    assert "crls[1]" in str(info.value) and reason in str(info.value), str(info.value)


def test_regression_certificate_of_an_unknown_version_fails_at_load(confdir: Path) -> None:
    (confdir / "v7.pem").write_bytes(_patched(PKI["chain"][1].public_bytes(serialization.Encoding.DER),
                                              b"\xa0\x03\x02\x01\x02", 4, b"\x07"))  # fmt: skip
    doc = _doc(["good.crl"])
    doc["connections"]["c"]["remote"]["cacerts"] = ["v7.pem"]
    with pytest.raises(ConfigError) as info:
        parse_config(doc, file="robust.toml", base=confdir)
    assert "connections.c.remote.cacerts[0]" in str(info.value) and "not a certificate" in str(info.value)
