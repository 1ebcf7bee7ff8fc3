"""IKEv1 NAT traversal (NAT-D, float to 4500, UDP-encapsulated ESP modes),
RSA signature authentication with certificates made by ``cryptography``,
and IKE fragmentation of large Phase 1 messages."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from ikev1_pair import Nat, Pair, psk_configs

from aioipsec.config import AuthConfig, ConnectionConfig, child, connection
from aioipsec.esp.sa import esp_sa_pair_from_event
from aioipsec.events import AuthFailed, ChildSaInstalled, IkeSaEstablished
from aioipsec.ike.v1.constants import EncapMode, ExchangeType, Phase2Attr
from aioipsec.ike.v1.message import decode_message, peek_header
from aioipsec.ike.v1.payloads import SaPayload

MM, AM, QM = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE, ExchangeType.QUICK_MODE


def _qm1_encap_mode(p: Pair) -> int:
    """Decrypt the first QM1 on the wire with the initiator's keys and read
    the Encapsulation Mode attribute of the first transform."""
    keys = p.i.sas[0].keys
    assert keys is not None
    phase1 = [d.data for d in p.wire if peek_header(d.data).exchange in (MM, AM)]
    qm1 = next(d.data for d in p.wire if peek_header(d.data).exchange == QM)
    last = next(x for x in reversed(phase1) if peek_header(x).flags & 1)
    from aioipsec.crypto.kdf import ikev1_phase2_iv

    mid = peek_header(qm1).message_id.to_bytes(4, "big")
    iv = ikev1_phase2_iv(keys.iv.hash_name, last[-16:], mid, 16)
    msg, _ = decode_message(qm1, keys.encr, iv)
    sa = msg.get(SaPayload)
    assert sa is not None
    mode = sa.proposals[0].transforms[0].get(Phase2Attr.ENCAPSULATION_MODE)
    assert mode is not None
    return mode


def test_nat_detected_and_floated_to_4500() -> None:
    nat = Nat()
    p = Pair(*psk_configs(dpd_delay=0), nat=nat)
    p.start()
    # MM1-MM4 over 500, from MM5 on both sides talk 4500 (the NAT maps it anew)
    ports = [(d.src[1], d.dst[1]) for d in p.wire]
    assert ports[:4] == [(40000, 500), (500, 40000), (40000, 500), (500, 40000)]
    assert all(dst == 4500 or src == 4500 for src, dst in ports[4:])
    assert ports[4] == (40001, 4500)
    (ei,) = p.of("i", IkeSaEstablished)
    (er,) = p.of("r", IkeSaEstablished)
    assert (ei.nat_local, ei.nat_remote) == (True, False)
    assert (er.nat_local, er.nat_remote) == (False, True)
    assert p.i.local_addr == ("192.0.2.1", 4500) and p.i.remote_addr == ("198.51.100.2", 4500)
    assert p.r.local_addr == ("198.51.100.2", 4500) and p.r.remote_addr == ("203.0.113.7", 40001)
    assert p.i.nat_t and p.r.nat_t
    (ci,) = p.of("i", ChildSaInstalled)
    (cr,) = p.of("r", ChildSaInstalled)
    assert ci.encap and cr.encap
    assert cr.remote_addr == ("203.0.113.7", 40001) and ci.remote_addr == ("198.51.100.2", 4500)
    assert _qm1_encap_mode(p) == EncapMode.UDP_TUNNEL
    # the NAT-T ESP SAs work (the data plane adds the UDP header)
    in_r, _ = esp_sa_pair_from_event(cr)
    _, out_i = esp_sa_pair_from_event(ci)
    from test_ikev1_exchanges import _ipv4

    pkt = _ipv4("10.1.0.1", "10.2.0.1", b"through the NAT")
    sealed = out_i.seal(pkt)
    assert sealed is not None and in_r.open(sealed).packet == pkt


def test_no_nat_stays_on_500() -> None:
    p = Pair(*psk_configs(dpd_delay=0))
    p.start()
    assert {d.dst[1] for d in p.wire} == {500}
    assert not p.of("i", ChildSaInstalled)[0].encap
    assert _qm1_encap_mode(p) == EncapMode.TUNNEL


def test_forced_encapsulation_without_nat() -> None:
    """``encap = true`` fakes the NAT-D source hash (strongSwan ``encap=yes``):
    the peer sees a NAT, both float and use UDP encapsulation."""
    i, r = psk_configs(dpd_delay=0)
    i.encap = True
    p = Pair(i, r)
    p.start()
    (ei,) = p.of("i", IkeSaEstablished)
    (er,) = p.of("r", IkeSaEstablished)
    assert not ei.nat_local and not ei.nat_remote
    assert er.nat_remote
    assert p.of("i", ChildSaInstalled)[0].encap and p.of("r", ChildSaInstalled)[0].encap
    assert p.wire[4].dst == ("198.51.100.2", 4500)


def test_aggressive_mode_behind_nat() -> None:
    p = Pair(*psk_configs(aggressive=True, ids=("a.example", "b.example"), dpd_delay=0), nat=Nat())
    p.start()
    # AM3 already goes to 4500
    assert [d.dst[1] for d in p.wire[:3]] == [500, 40000, 4500]
    assert p.of("r", IkeSaEstablished)[0].nat_remote and not p.of("r", IkeSaEstablished)[0].nat_local
    assert p.of("i", IkeSaEstablished)[0].nat_local
    assert p.of("r", ChildSaInstalled)[0].encap


# --------------------------------------------------------------------------- certificates

NOW = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "example"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@pytest.fixture(scope="module")
def pki() -> dict:
    ca_key = rsa.generate_private_key(65537, 2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Test CA"))
        .issuer_name(_name("Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": ca}
    for cn in ("site-a.example", "hq.example"):
        key = rsa.generate_private_key(65537, 3072)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        out[cn] = (key, cert)
    return out


def cert_configs(pki: dict, ids: tuple[str | None, str | None] = (None, None), **kw: object) -> tuple[ConnectionConfig, ConnectionConfig]:
    ki, ci = pki["site-a.example"]
    kr, cr = pki["hq.example"]
    i = connection(
        "v1cert",
        version=1,
        proposals=["aes256-sha256-modp2048"],
        local=AuthConfig("pubkey", ids[0], cert=ci, private_key=ki),
        remote=AuthConfig("pubkey", ids[1], cacerts=[pki["ca"]]),
        children=[child("net", local_ts=["10.1.0.0/16"], remote_ts=["10.2.0.0/16"], esp_proposals=["aes256-sha256"])],
        dpd_delay=0,
        **kw,
    )
    r = connection(
        "v1cert",
        version=1,
        proposals=["aes256-sha256-modp2048"],
        local=AuthConfig("pubkey", ids[1], cert=cr, private_key=kr),
        remote=AuthConfig("pubkey", ids[0], cacerts=[pki["ca"]]),
        children=[child("net", local_ts=["10.2.0.0/16"], remote_ts=["10.1.0.0/16"], esp_proposals=["aes256-sha256"])],
        dpd_delay=0,
        **kw,
    )
    return i, r


def test_rsa_signatures_with_dn_identities(pki: dict) -> None:
    p = Pair(*cert_configs(pki, fragmentation=False), wall_clock=lambda: NOW)
    p.start()
    assert len(p.wire) == 9
    (ei,) = p.of("i", IkeSaEstablished)
    (er,) = p.of("r", IkeSaEstablished)
    assert ei.remote_id == "C=CH, O=example, CN=hq.example"
    assert er.remote_id == "C=CH, O=example, CN=site-a.example"
    assert len(p.of("r", ChildSaInstalled)) == 1
    # MM3/MM4 carry CERTREQs, MM5/MM6 certificates: beyond the fragment size
    assert len(p.wire[4].data) > 1280 and len(p.wire[5].data) > 1280


def test_rsa_signatures_with_fqdn_identities_aggressive(pki: dict) -> None:
    i, r = cert_configs(pki, ids=("site-a.example", "hq.example"), aggressive=True, fragmentation=False)
    p = Pair(i, r, wall_clock=lambda: NOW)
    p.start()
    assert [peek_header(d.data).exchange for d in p.wire] == [AM] * 3 + [QM] * 3
    assert p.of("i", IkeSaEstablished)[0].remote_id == "hq.example"
    assert len(p.of("r", ChildSaInstalled)) == 1


def test_rsa_untrusted_or_expired(pki: dict) -> None:
    i, r = cert_configs(pki)
    r.remote.cacerts = []
    p = Pair(i, r, wall_clock=lambda: NOW)
    p.start()
    (f,) = p.of("r", AuthFailed)
    assert f.step == "MM5" and "trust" in f.reason
    p = Pair(*cert_configs(pki), wall_clock=lambda: NOW + datetime.timedelta(days=60))
    p.start()
    assert p.of("r", AuthFailed)[0].step == "MM5"
    assert not p.of("i", IkeSaEstablished)


def test_fragmentation_of_large_phase1_messages(pki: dict) -> None:
    """MM5 and MM6 (certificate + RSA-3072 signature) exceed the limit and go
    out as IKEv1 fragments (payload 132), which the peer reassembles."""
    p = Pair(*cert_configs(pki), wall_clock=lambda: NOW)
    p.start()
    assert max(len(d.data) for d in p.wire) <= 1280
    p = Pair(*cert_configs(pki, fragment_size=576), wall_clock=lambda: NOW)
    p.start()
    sizes = [len(d.data) for d in p.wire]
    assert max(sizes) <= 576
    frags = [d for d in p.wire if peek_header(d.data).next_payload == 132]
    assert len(frags) >= 6 and {peek_header(d.data).message_id for d in frags} == {0}
    assert p.i.stats["fragmented"] == p.r.stats["fragmented"] == 1
    assert p.i.stats["reassembled"] == p.r.stats["reassembled"] == 1
    assert len(p.of("i", ChildSaInstalled)) == len(p.of("r", ChildSaInstalled)) == 1


def test_lost_fragment_is_recovered(pki: dict) -> None:
    p = Pair(*cert_configs(pki, fragment_size=576), wall_clock=lambda: NOW)
    hit = [False]

    def drop(d) -> bool:  # type: ignore[no-untyped-def]
        if not hit[0] and d.sender == "i" and peek_header(d.data).next_payload == 132:
            hit[0] = True
            return True
        return False

    p.drop = drop
    p.start()
    p.advance(p.now + 10)
    assert len(p.of("r", ChildSaInstalled)) == 1


def test_transport_mode_behind_nat() -> None:
    """Transport mode through a NAT: UDP-Encapsulated-Transport (4) with
    NAT-OA payloads; the responder maps the peer's private host selector to
    the address it sees, as strongSwan does."""
    from aioipsec.ike.v1.constants import PayloadType

    i, r = psk_configs(dpd_delay=0)
    i.children = {"h": child("h", mode="transport")}
    r.children = {"h": child("h", mode="transport")}
    p = Pair(i, r, nat=Nat())
    p.i.initiate(p.now, child="h")
    p.pump()
    (ci,) = p.of("i", ChildSaInstalled)
    (cr,) = p.of("r", ChildSaInstalled)
    assert ci.encap and cr.encap and ci.mode == "transport"
    assert str(cr.remote_ts[0]) == "203.0.113.7/32" and str(ci.local_ts[0]) == "192.0.2.1/32"
    assert _qm1_encap_mode(p) == EncapMode.UDP_TRANSPORT
    keys = p.i.sas[0].keys
    assert keys is not None
    from aioipsec.crypto.kdf import ikev1_phase2_iv

    last = [d.data for d in p.wire if peek_header(d.data).exchange == MM][-1]
    qm1 = next(d.data for d in p.wire if peek_header(d.data).exchange == QM)
    iv = ikev1_phase2_iv("sha1", last[-16:], peek_header(qm1).message_id.to_bytes(4, "big"), 16)
    msg, _ = decode_message(qm1, keys.encr, iv)
    oas = [x for x in msg.payloads if x.type == PayloadType.NAT_OA]
    assert [bytes(x.data) for x in oas] == [bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2])]  # type: ignore[attr-defined]
