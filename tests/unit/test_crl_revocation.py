"""CRL revocation checking (aioipsec.ike.auth.check_revocation) and its config.

strongSwan semantics (``revocation`` plugin, swanctl ``remote.revocation``):
a listed serial fails under every policy; ``strict`` needs a current CRL for
every certificate below the anchor, ``ifuri`` only for certificates naming a
CRL distribution point, ``relaxed`` (default) only refuses revoked ones.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aioipsec.config_file import load_config
from aioipsec.errors import AuthenticationFailed, ConfigError
from aioipsec.ike import auth

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_key, subject: str, issuer_key, issuer: str, *, ca: bool, cdp: str | None = None) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 100 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if cdp is not None:
        b = b.add_extension(
            x509.CRLDistributionPoints([
                x509.DistributionPoint([x509.UniformResourceIdentifier(cdp)], None, None, None)
            ]),
            critical=False,
        )
    return b.sign(issuer_key, hashes.SHA256())


def _crl(issuer_key, issuer: str, revoked=(), *, this=NOW - DAY, next_=NOW + 7 * DAY, number: int | None = 1):
    b = x509.CertificateRevocationListBuilder().issuer_name(_name(issuer)).last_update(this).next_update(next_)
    if number is not None:
        b = b.add_extension(x509.CRLNumber(number), critical=False)
    for serial, reason in revoked:
        rb = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - 2 * DAY)
        if reason is not None:
            rb = rb.add_extension(x509.CRLReason(reason), critical=False)
        b = b.add_revoked_certificate(rb.build())
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert(root_key, "Root CA", root_key, "Root CA", ca=True)
    sub_key = ec.generate_private_key(ec.SECP256R1())
    sub = _cert(sub_key, "Sub CA", root_key, "Root CA", ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(leaf_key, "peer.example", sub_key, "Sub CA", ca=False)
    leaf_cdp = _cert(leaf_key, "cdp.example", sub_key, "Sub CA", ca=False, cdp="http://crl.example/sub.crl")
    return {
        "root": root, "root_key": root_key, "sub": sub, "sub_key": sub_key,
        "leaf": leaf, "leaf_cdp": leaf_cdp,
        "chain": auth.verify_chain(leaf, [sub], [root], NOW),
        "chain_cdp": auth.verify_chain(leaf_cdp, [sub], [root], NOW),
    }


def test_revoked_leaf_fails_naming_subject_and_reason(pki) -> None:
    crl = _crl(pki["sub_key"], "Sub CA", [(pki["leaf"].serial_number, x509.ReasonFlags.key_compromise)])
    for policy in auth.REVOCATION_POLICIES:
        with pytest.raises(AuthenticationFailed) as info:
            auth.check_revocation(pki["chain"], [crl], policy, NOW)
        msg = str(info.value)
        assert "certificate 'C=CH, CN=peer.example' is revoked" in msg
        assert "reason keyCompromise" in msg
        assert f"serial {pki['leaf'].serial_number:#x}" in msg


def test_revoked_without_reason_code(pki) -> None:
    crl = _crl(pki["sub_key"], "Sub CA", [(pki["leaf"].serial_number, None)])
    with pytest.raises(AuthenticationFailed, match=r"'C=CH, CN=peer.example' is revoked \(since "):
        auth.check_revocation(pki["chain"], [crl], "relaxed", NOW)


def test_revoked_intermediate_fails_naming_it(pki) -> None:
    leaf_ok = _crl(pki["sub_key"], "Sub CA")
    root_crl = _crl(pki["root_key"], "Root CA", [(pki["sub"].serial_number, x509.ReasonFlags.ca_compromise)])
    with pytest.raises(AuthenticationFailed) as info:
        auth.check_revocation(pki["chain"], [leaf_ok, root_crl], "relaxed", NOW)
    assert "certificate 'C=CH, CN=Sub CA' is revoked (reason cACompromise" in str(info.value)


def test_not_revoked_is_good_and_logged(pki, caplog: pytest.LogCaptureFixture) -> None:
    other = x509.random_serial_number()
    crls = [_crl(pki["sub_key"], "Sub CA", [(other, None)], number=7), _crl(pki["root_key"], "Root CA")]
    with caplog.at_level(logging.INFO, logger="aioipsec.ike"):
        out = auth.check_revocation(pki["chain"], crls, "strict", NOW, peer="192.0.2.9[peer.example]")
    assert [(s.subject, s.status) for s in out] == [("C=CH, CN=peer.example", "good"), ("C=CH, CN=Sub CA", "good")]
    assert out[0].crl is not None and out[0].crl.startswith("CRL of 'C=CH, CN=Sub CA' #7")
    lines = [r.getMessage() for r in caplog.records]
    assert any("peer=192.0.2.9[peer.example]" in m and "'C=CH, CN=peer.example' not revoked, CRL of 'C=CH, CN=Sub CA' #7" in m
               for m in lines), lines
    assert not any("PRIVATE" in m or "-----BEGIN" in m for m in lines)


def test_source_kind_of_ocsp_and_crl_answers(pki, caplog: pytest.LogCaptureFixture) -> None:
    # the leaf vouched for by a (fetched) OCSP answer, the Sub CA by a CRL file
    cache = auth.RevocationCache()
    cache.ocsp[(pki["leaf"].issuer.public_bytes(), pki["leaf"].serial_number)] = auth.OcspStatus(
        "good", NOW - DAY, NOW + DAY, "the issuing CA", "http://ocsp.example/")
    with caplog.at_level(logging.INFO, logger="aioipsec.ike"):
        out = auth.check_revocation(pki["chain"], [_crl(pki["root_key"], "Root CA")], "strict", NOW, peer="p2",
                                    fetched=cache)
    assert [(s.status, s.source) for s in out] == [("good", "OCSP"), ("good", "CRL")]
    assert out[0].crl is not None and out[0].crl.startswith("OCSP response of the issuing CA from http://ocsp.example/")
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("OCSP check peer=p2: certificate 'C=CH, CN=peer.example' not revoked") for m in lines), lines
    assert any(m.startswith("CRL check peer=p2: certificate 'C=CH, CN=Sub CA' not revoked") for m in lines), lines
    assert auth.check_revocation(pki["chain"], [], "relaxed", NOW)[0].source is None  # nothing answered


def test_newest_crl_is_used(pki) -> None:
    old = _crl(pki["sub_key"], "Sub CA", number=1, this=NOW - 30 * DAY, next_=NOW - 20 * DAY)
    new = _crl(pki["sub_key"], "Sub CA", number=2)
    out = auth.check_revocation(pki["chain"], [old, new, _crl(pki["root_key"], "Root CA")], "strict", NOW)
    assert out[0].status == "good" and "#2" in (out[0].crl or "")


def test_crl_with_bad_signature_or_other_ca_is_ignored(pki) -> None:
    revoked = [(pki["leaf"].serial_number, x509.ReasonFlags.key_compromise)]
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = _crl(forger, "Sub CA", revoked)  # right issuer name, wrong key
    other_ca = _crl(pki["root_key"], "Root CA", revoked)  # real CA, but not the leaf's issuer
    out = auth.check_revocation(pki["chain"], [forged, other_ca], "relaxed", NOW)
    assert out[0].status == "skipped" and out[0].crl is None
    # strict: these do not count as the leaf's CRL either
    with pytest.raises(AuthenticationFailed, match=r"'C=CH, CN=peer.example' unknown: no CRL of its issuer"):
        auth.check_revocation(pki["chain"], [forged, other_ca], "strict", NOW)


def test_strict_without_crl_fails_relaxed_passes(pki) -> None:
    with pytest.raises(AuthenticationFailed, match=r"revocation status of certificate 'C=CH, CN=peer.example' unknown.*strict"):
        auth.check_revocation(pki["chain"], [], "strict", NOW)
    # the leaf's CRL alone is not enough: the intermediate needs the root's
    with pytest.raises(AuthenticationFailed, match=r"'C=CH, CN=Sub CA' unknown"):
        auth.check_revocation(pki["chain"], [_crl(pki["sub_key"], "Sub CA")], "strict", NOW)
    out = auth.check_revocation(pki["chain"], [], "relaxed", NOW)
    assert [s.status for s in out] == ["skipped", "skipped"]


def test_ifuri_with_and_without_cdp(pki) -> None:
    # no distribution point in the cert: no CRL is fine
    assert [s.status for s in auth.check_revocation(pki["chain"], [], "ifuri", NOW)] == ["skipped", "skipped"]
    # a distribution point we cannot use (no fetching): fails
    with pytest.raises(AuthenticationFailed, match=r"'C=CH, CN=cdp.example' unknown.*distribution point.*ifuri"):
        auth.check_revocation(pki["chain_cdp"], [], "ifuri", NOW)
    # ... unless a CRL of its issuer is loaded
    out = auth.check_revocation(pki["chain_cdp"], [_crl(pki["sub_key"], "Sub CA")], "ifuri", NOW)
    assert [s.status for s in out] == ["good", "skipped"]
    # relaxed does not care
    assert auth.check_revocation(pki["chain_cdp"], [], "relaxed", NOW)[0].status == "failed"


def test_expired_crl_is_used_but_stale(pki, caplog: pytest.LogCaptureFixture) -> None:
    stale = {"this": NOW - 20 * DAY, "next_": NOW - DAY}
    # a revocation in an expired CRL still counts (as in strongSwan)
    revoking = _crl(pki["sub_key"], "Sub CA", [(pki["leaf"].serial_number, None)], **stale)
    with pytest.raises(AuthenticationFailed, match="is revoked"):
        auth.check_revocation(pki["chain"], [revoking], "relaxed", NOW)
    clean = _crl(pki["sub_key"], "Sub CA", **stale)
    with caplog.at_level(logging.WARNING, logger="aioipsec.ike"):
        out = auth.check_revocation(pki["chain"], [clean], "relaxed", NOW, peer="p1")
    assert out[0].status == "stale"
    assert any(r.levelno == logging.WARNING and "is stale (used anyway)" in r.getMessage() and "peer=p1" in r.getMessage()
               for r in caplog.records)
    root_ok = _crl(pki["root_key"], "Root CA")
    for policy in ("strict", "ifuri"):
        with pytest.raises(AuthenticationFailed, match=rf"only a stale CRL of 'C=CH, CN=Sub CA'.*{policy}"):
            auth.check_revocation(pki["chain"], [clean, root_ok], policy, NOW)


def test_unknown_policy_rejected(pki) -> None:
    with pytest.raises(AuthenticationFailed, match="unknown revocation policy"):
        auth.check_revocation(pki["chain"], [], "paranoid", NOW)


# --------------------------------------------------------------------------- configuration


def _write_pki(tmp_path: Path, pki) -> None:
    (tmp_path / "root.pem").write_bytes(pki["root"].public_bytes(serialization.Encoding.PEM))
    crl = _crl(pki["sub_key"], "Sub CA", [(pki["leaf"].serial_number, None)])
    (tmp_path / "sub.crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "root.crl").write_bytes(_crl(pki["root_key"], "Root CA").public_bytes(serialization.Encoding.DER))


CONF = """
crls = {crls}

[connections.a]
remote = {{ auth = "pubkey", cacerts = ["root.pem"]{remote} }}
local = {{ auth = "psk" }}

[connections.b]
remote = {{ auth = "pubkey", cacerts = ["root.pem"] }}
local = {{ auth = "psk" }}

[secrets.s]
secret = "x"
"""


def test_config_loads_pem_and_der_crls_for_every_connection(tmp_path: Path, pki) -> None:
    _write_pki(tmp_path, pki)
    p = tmp_path / "c.toml"
    p.write_text(CONF.format(crls='["sub.crl.pem", "root.crl"]', remote=', revocation = "strict"'))
    cfg = load_config(p)
    assert len(cfg.crls) == 2
    a, b = cfg.connections["a"].remote, cfg.connections["b"].remote
    assert a.revocation == "strict" and b.revocation == "relaxed"
    assert [c.issuer for c in a.crls] == [_name("Sub CA"), _name("Root CA")] and b.crls == a.crls
    with pytest.raises(AuthenticationFailed, match="is revoked"):
        auth.check_revocation(pki["chain"], b.crls, b.revocation, NOW)


@pytest.mark.parametrize(
    ("crls", "remote", "reason"),
    [
        ('["missing.crl"]', "", "crls[0]: file not found: {dir}/missing.crl"),
        ('["root.crl", "root.pem"]', "", "crls[1]: not a certificate revocation list (PEM or DER)"),
        ('["root.crl", "c.toml"]', "", "crls[1]: not a certificate revocation list (PEM or DER)"),
        ("3", "", "crls: expected a list of strings, got 3"),
        ("[]", ', revocation = "always"', 'connections.a.remote.revocation: expected "strict", "ifuri", "relaxed", got "always"'),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, pki, crls: str, remote: str, reason: str) -> None:
    _write_pki(tmp_path, pki)
    p = tmp_path / "c.toml"
    p.write_text(CONF.format(crls=crls, remote=remote))
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value).startswith(f"{p}: " + reason.format(dir=tmp_path))


def test_config_revocation_is_remote_only(tmp_path: Path, pki) -> None:
    _write_pki(tmp_path, pki)
    p = tmp_path / "c.toml"
    p.write_text(CONF.format(crls="[]", remote="").replace('local = { auth = "psk" }', 'local = { auth = "psk", revocation = "strict" }', 1))
    with pytest.raises(ConfigError, match=r"connections.a.local.revocation: a revocation policy applies to the remote side only"):
        load_config(p)
