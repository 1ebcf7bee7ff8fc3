"""IKEv1 ECDSA authentication (RFC 4754, methods 9/10/11) between two
in-memory aioipsec sessions: Main Mode and Aggressive Mode with P-256 and
P-384 certificates, the method on the wire chosen from the key's curve, the
signature of Aggressive Mode message 2 checked independently (ECDSA over
HASH_R itself, ``r | s`` of fixed width), and the failures: a private key
that does not match the certificate, an untrusted certificate, a certificate
whose curve is not the negotiated one, and peers with different curves."""

from __future__ import annotations

import datetime
import logging

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from ikev1_pair import Pair
from ikev2_pair import WALL, Pki, make_pki

from aioipsec.config import AuthConfig, ConnectionConfig, child, connection
from aioipsec.events import AuthFailed, ChildSaInstalled, IkeSaEstablished, NegotiationFailed
from aioipsec.ike.v1.constants import ExchangeType, Ike1Auth, Phase1Attr
from aioipsec.ike.v1.message import decode_message
from aioipsec.ike.v1.payloads import IdPayload, KePayload, SaPayload, SigPayload
from aioipsec.ike.v1.phase1 import hash_r

MM, AM, QM = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE, ExchangeType.QUICK_MODE
METHOD = {"p256": Ike1Auth.ECDSA_256, "p384": Ike1Auth.ECDSA_384}
OCTETS = {"p256": 32, "p384": 48}
HASH = {"p256": hashes.SHA256, "p384": hashes.SHA384}


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(("p256", "p384", "rsa"))


def ecdsa_configs(
    pki: Pki,
    kind_i: str,
    kind_r: str | None = None,
    *,
    aggressive: bool = False,
    proposal: str = "aes256-sha256-modp2048",
    key_i: object | None = None,
    cert_i: object | None = None,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """Initiator site-a.example (``kind_i`` key), responder hq.example
    (``kind_r``, default the same), FQDN identities, one tunnel child."""
    kind_r = kind_r or kind_i
    ci, ki = pki.hosts[f"{kind_i}-a"]
    cr, kr = pki.hosts[f"{kind_r}-b"]
    i = connection(
        "v1ecdsa",
        version=1,
        proposals=[proposal],
        local=AuthConfig("pubkey", "site-a.example", cert=cert_i or ci, private_key=key_i or ki),  # type: ignore[arg-type]
        remote=AuthConfig("pubkey", "hq.example", cacerts=[pki.ca]),  # type: ignore[list-item]
        children=[child("net", local_ts=["10.1.0.0/16"], remote_ts=["10.2.0.0/16"], esp_proposals=["aes128-sha256"])],
        aggressive=aggressive,
        dpd_delay=0,
    )
    r = connection(
        "v1ecdsa",
        version=1,
        proposals=[proposal],
        local=AuthConfig("pubkey", "hq.example", cert=cr, private_key=kr),  # type: ignore[arg-type]
        remote=AuthConfig("pubkey", "site-a.example", cacerts=[pki.ca]),  # type: ignore[list-item]
        children=[child("net", local_ts=["10.2.0.0/16"], remote_ts=["10.1.0.0/16"], esp_proposals=["aes128-sha256"])],
        aggressive=aggressive,
        dpd_delay=0,
    )
    return i, r


def _offered_methods(p: Pair) -> set[int | None]:
    first = decode_message(p.wire[0].data)[0].get(SaPayload)
    assert first is not None
    return {t.get(Phase1Attr.AUTHENTICATION_METHOD) for t in first.proposals[0].transforms}


@pytest.mark.parametrize("kind", ["p256", "p384"])
def test_main_mode_ecdsa(pki: Pki, kind: str) -> None:
    p = Pair(*ecdsa_configs(pki, kind), wall_clock=lambda: WALL)
    p.start()
    assert [d.exchange for d in p.wire] == [MM] * 6 + [QM] * 3
    assert _offered_methods(p) == {METHOD[kind]}
    (ei,) = p.of("i", IkeSaEstablished)
    (er,) = p.of("r", IkeSaEstablished)
    assert (ei.remote_id, er.remote_id) == ("hq.example", "site-a.example")
    assert p.i.sas[0].suite.auth == p.r.sas[0].suite.auth == METHOD[kind]  # type: ignore[union-attr]
    assert len(p.of("i", ChildSaInstalled)) == len(p.of("r", ChildSaInstalled)) == 1
    assert not p.of("i", AuthFailed) and not p.of("r", AuthFailed)


@pytest.mark.parametrize("kind", ["p256", "p384"])
def test_aggressive_mode_ecdsa_signature_over_hash_r(pki: Pki, kind: str) -> None:
    """AM2 travels in clear: its SIG_R is ``r | s`` (2 x the curve's octets)
    and verifies, with the responder's certificate key, as ECDSA over HASH_R
    itself (the digest is not hashed again), HASH_R recomputed from the
    wire (g^xi, g^xr, cookies, SAi_b, IDir_b) and the initiator's SKEYID."""
    p = Pair(*ecdsa_configs(pki, kind, aggressive=True), wall_clock=lambda: WALL)
    p.start()
    assert [d.exchange for d in p.wire] == [AM] * 3 + [QM] * 3
    assert _offered_methods(p) == {METHOD[kind]}
    assert len(p.of("r", ChildSaInstalled)) == 1
    assert p.of("i", IkeSaEstablished)[0].remote_id == "hq.example"

    am1, _ = decode_message(p.wire[0].data)
    am2, _ = decode_message(p.wire[1].data)
    sai, ke_i = am1.get(SaPayload), am1.get(KePayload)
    ke_r, idr, sig = am2.get(KePayload), am2.get(IdPayload), am2.get(SigPayload)
    assert sai is not None and ke_i is not None and ke_r is not None and idr is not None and sig is not None
    size = OCTETS[kind]
    assert len(sig.data) == 2 * size
    keys = p.i.sas[0].keys
    assert keys is not None
    digest = hash_r(keys, ke_i.data, ke_r.data, am1.spi_i, am2.spi_r, sai.body(), idr.body())
    assert len(digest) == 32  # HMAC-SHA256 prf, whatever the curve
    pub = pki.hosts[f"{kind}-b"][0].public_key()  # type: ignore[attr-defined]
    r, s = int.from_bytes(sig.data[:size], "big"), int.from_bytes(sig.data[size:], "big")
    pub.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    # hashing HASH_R again with the method's hash (a reading of RFC 4754
    # strongSwan does not follow) is not what was signed
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        pub.verify(encode_dss_signature(r, s), digest, ec.ECDSA(HASH[kind]()))


def test_sha1_prf_with_p384_signs_a_20_byte_hash(pki: Pki) -> None:
    """HASH_I is the prf output of the negotiated hash (20 bytes for SHA-1),
    signed as it is with a P-384 key."""
    p = Pair(*ecdsa_configs(pki, "p384", aggressive=True, proposal="aes128-sha1-modp2048"), wall_clock=lambda: WALL)
    p.start()
    assert len(p.of("r", ChildSaInstalled)) == 1
    sig = decode_message(p.wire[1].data)[0].get(SigPayload)
    assert sig is not None and len(sig.data) == 96


@pytest.mark.parametrize("aggressive", [False, True])
def test_private_key_not_matching_the_certificate(pki: Pki, aggressive: bool, caplog: pytest.LogCaptureFixture) -> None:
    """The initiator signs with a P-256 key that is not its certificate's:
    its signature does not verify, the responder reports an authentication
    failure naming the peer (Main Mode: after the retransmitted MM5, as a
    corrupted MM5 would be tolerated once)."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    other = ec.generate_private_key(ec.SECP256R1())
    p = Pair(*ecdsa_configs(pki, "p256", aggressive=aggressive, key_i=other), wall_clock=lambda: WALL)
    p.start()
    p.advance(p.now + 60)
    assert not p.of("r", IkeSaEstablished) and not p.of("r", ChildSaInstalled)
    (fr,) = p.of("r", AuthFailed)
    assert fr.step == ("AM3" if aggressive else "MM5")
    assert fr.peer.startswith("192.0.2.1")
    assert "ECDSA-256 signature of site-a.example does not verify" in fr.reason
    assert not p.of("i", ChildSaInstalled)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("192.0.2.1" in w and "ECDSA-256 signature of site-a.example" in w for w in warnings)
    # the hint fits signatures (no pre-shared key involved)
    assert any("key or certificate mismatch?" in w for w in warnings)
    assert not any("PSK" in w or "pre-shared" in w for w in warnings if "192.0.2.1" in w)


def test_untrusted_certificate(pki: Pki) -> None:
    other = make_pki(("p256",))  # another CA
    cert, key = other.hosts["p256-a"]
    p = Pair(*ecdsa_configs(pki, "p256", key_i=key, cert_i=cert), wall_clock=lambda: WALL)
    p.start()
    (fr,) = p.of("r", AuthFailed)
    assert fr.step == "MM5" and "site-a.example" in fr.peer and "trust" in fr.reason
    assert not p.of("r", IkeSaEstablished)


def test_certificate_curve_differs_from_negotiated_method(pki: Pki) -> None:
    """A P-256 key (method ECDSA-256 proposed) with a P-384 certificate: the
    responder refuses the certificate for the negotiated method at once."""
    cert384, _ = pki.hosts["p384-a"]
    _, key256 = pki.hosts["p256-a"]
    p = Pair(*ecdsa_configs(pki, "p256", key_i=key256, cert_i=cert384), wall_clock=lambda: WALL)
    p.start()
    (fr,) = p.of("r", AuthFailed)
    assert fr.step == "MM5" and "site-a.example" in fr.peer
    assert "negotiated ECDSA-256 but the peer certificate has a P-384 key" in fr.reason


def test_rsa_certificate_for_ecdsa_method(pki: Pki) -> None:
    cert_rsa, _ = pki.hosts["rsa-a"]
    _, key256 = pki.hosts["p256-a"]
    p = Pair(*ecdsa_configs(pki, "p256", key_i=key256, cert_i=cert_rsa), wall_clock=lambda: WALL)
    p.start()
    (fr,) = p.of("r", AuthFailed)
    assert fr.step == "MM5" and "no ECDSA key" in fr.reason


def test_different_curves_have_no_common_method(pki: Pki) -> None:
    """P-256 initiator (method 9), P-384 responder (method 10): like
    strongSwan, the method is part of the ISAKMP proposal, so nothing matches."""
    p = Pair(*ecdsa_configs(pki, "p256", "p384"), wall_clock=lambda: WALL)
    p.start()
    (nr,) = p.of("r", NegotiationFailed)
    assert nr.notify == "NO_PROPOSAL_CHOSEN" and "ecdsa_256" in nr.reason
    assert not p.of("i", IkeSaEstablished)


def test_ecdsa_and_rsa_peers_do_not_mix(pki: Pki) -> None:
    i, r = ecdsa_configs(pki, "p256")
    cr, kr = pki.hosts["rsa-b"]
    r.local = AuthConfig("pubkey", "hq.example", cert=cr, private_key=kr)  # type: ignore[arg-type]
    p = Pair(i, r, wall_clock=lambda: WALL)
    p.start()
    assert p.of("r", NegotiationFailed)[0].notify == "NO_PROPOSAL_CHOSEN"
    assert not p.of("i", IkeSaEstablished)


def test_expired_certificate(pki: Pki) -> None:
    p = Pair(*ecdsa_configs(pki, "p384"), wall_clock=lambda: WALL + datetime.timedelta(days=400))
    p.start()
    assert p.of("r", AuthFailed)[0].step == "MM5"
    assert not p.of("i", IkeSaEstablished)
