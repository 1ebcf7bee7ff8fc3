"""CRL revocation in the sans-I/O sessions: a peer whose certificate a loaded
CRL revokes is refused (IKEv2 IKE_AUTH, IKEv1 MM5/MM6) with AuthFailed naming
the peer, the certificate subject and "revoked"; with a CRL that does not list
it (or revokes in another direction) it connects, and the CRL used is logged."""

from __future__ import annotations

import datetime
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from ikev1_pair import Pair as Pair1
from ikev2_pair import WALL, Pair, Pki, cert_pair_configs, make_pki

from aioipsec.config import AuthConfig, child, connection
from aioipsec.events import AuthFailed, ChildSaInstalled, IkeSaEstablished


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(("p256",))


def _crl(pki: Pki, *serials: int, next_update: datetime.timedelta = datetime.timedelta(days=7)):
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ca.subject)  # type: ignore[attr-defined]
        .last_update(WALL - datetime.timedelta(hours=1))
        .next_update(WALL + next_update)
        .add_extension(x509.CRLNumber(3), critical=False)
    )
    for serial in serials:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(WALL - datetime.timedelta(days=1))
            .add_extension(x509.CRLReason(x509.ReasonFlags.superseded), critical=False).build()
        )
    return b.sign(pki.ca_key, hashes.SHA256())  # type: ignore[arg-type]


def _serial(pki: Pki, host: str) -> int:
    return pki.hosts[host][0].serial_number  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- IKEv2


def test_ikev2_revoked_initiator_refused_by_responder(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    r_cfg.remote.crls = [_crl(pki, _serial(pki, "p256-a"))]
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    [af] = p.events("r", AuthFailed)
    assert af.step == "IKE_AUTH" and af.peer == "192.0.2.1[site-a.example]"
    assert "certificate 'C=CH, O=aioipsec test, CN=site-a.example' is revoked (reason superseded" in af.reason
    assert not p.events("r", IkeSaEstablished) and not p.events("i", IkeSaEstablished)
    assert p.events("i", AuthFailed)  # told with AUTHENTICATION_FAILED
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("AUTHENTICATION_FAILED")]
    assert any("192.0.2.1[site-a.example]" in m and "revoked" in m for m in lines), lines


def test_ikev2_revoked_responder_refused_by_initiator(pki: Pki) -> None:
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    i_cfg.remote.crls = [_crl(pki, _serial(pki, "p256-b"))]
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    [af] = p.events("i", AuthFailed)
    assert af.peer.endswith("[hq.example]") and "CN=hq.example' is revoked" in af.reason
    assert not p.events("i", IkeSaEstablished)


def test_ikev2_not_revoked_connects_and_logs_the_crl(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    # the CRL revokes someone else (the responder's own cert), strict policy
    r_cfg.remote.crls = [_crl(pki, _serial(pki, "p256-b"))]
    r_cfg.remote.revocation = "strict"
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    assert p.r is not None and p.r.is_established and p.i.is_established
    assert not p.events("r", AuthFailed)
    used = [r.getMessage() for r in caplog.records if r.getMessage().startswith("CRL check")]
    assert any("peer=192.0.2.1[site-a.example]" in m and "CN=site-a.example' not revoked, CRL of" in m and "#3" in m
               for m in used), used


def test_ikev2_strict_without_crl_refuses(pki: Pki) -> None:
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    r_cfg.remote.revocation = "strict"
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    [af] = p.events("r", AuthFailed)
    assert "revocation status of certificate 'C=CH, O=aioipsec test, CN=site-a.example' unknown" in af.reason
    # relaxed (the default) without any CRL connects
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    assert p.r is not None and p.r.is_established


# --------------------------------------------------------------------------- IKEv1


def _v1_configs(pki: Pki, *, aggressive: bool = False):
    ci, ki = pki.hosts["p256-a"]
    cr, kr = pki.hosts["p256-b"]
    common = {"version": 1, "proposals": ["aes256-sha256-modp2048"], "aggressive": aggressive, "dpd_delay": 0}
    i = connection(
        "v1crl",
        local=AuthConfig("pubkey", "site-a.example", cert=ci, private_key=ki),
        remote=AuthConfig("pubkey", "hq.example", cacerts=[pki.ca]),
        children=[child("net", local_ts=["10.1.0.0/16"], remote_ts=["10.2.0.0/16"], esp_proposals=["aes128-sha256"])],
        **common,  # type: ignore[arg-type]
    )
    r = connection(
        "v1crl",
        local=AuthConfig("pubkey", "hq.example", cert=cr, private_key=kr),
        remote=AuthConfig("pubkey", "site-a.example", cacerts=[pki.ca]),
        children=[child("net", local_ts=["10.2.0.0/16"], remote_ts=["10.1.0.0/16"], esp_proposals=["aes128-sha256"])],
        **common,  # type: ignore[arg-type]
    )
    return i, r


@pytest.mark.parametrize("aggressive", [False, True])
def test_ikev1_revoked_initiator_refused(pki: Pki, aggressive: bool) -> None:
    i, r = _v1_configs(pki, aggressive=aggressive)
    r.remote.crls = [_crl(pki, _serial(pki, "p256-a"))]
    p = Pair1(i, r, wall_clock=lambda: WALL)
    p.start()
    [af] = p.of("r", AuthFailed)
    assert af.step == ("AM3" if aggressive else "MM5")
    assert "site-a.example" in af.peer
    assert "certificate 'C=CH, O=aioipsec test, CN=site-a.example' is revoked" in af.reason
    assert not p.of("r", IkeSaEstablished) and not p.of("r", ChildSaInstalled)


def test_ikev1_revoked_responder_refused(pki: Pki) -> None:
    i, r = _v1_configs(pki)
    i.remote.crls = [_crl(pki, _serial(pki, "p256-b"))]
    p = Pair1(i, r, wall_clock=lambda: WALL)
    p.start()
    [af] = p.of("i", AuthFailed)
    assert af.step == "MM6" and "hq.example" in af.peer and "CN=hq.example' is revoked" in af.reason
    assert not p.of("i", IkeSaEstablished)


def test_ikev1_not_revoked_connects(pki: Pki) -> None:
    i, r = _v1_configs(pki)
    r.remote.crls = [_crl(pki, _serial(pki, "p256-b"))]  # lists only the responder's own cert
    r.remote.revocation = "strict"
    p = Pair1(i, r, wall_clock=lambda: WALL)
    p.start()
    assert p.of("r", IkeSaEstablished) and len(p.of("r", ChildSaInstalled)) == 1
    assert not p.of("r", AuthFailed)
