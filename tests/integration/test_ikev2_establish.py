"""IKE_SA_INIT + IKE_AUTH end to end, in memory: PSK and every certificate
type, exact message counts per flight, events and log lines."""

from __future__ import annotations

import logging

import pytest
from ikev2_pair import Pair, cert_pair_configs, make_pki, mirror, psk_pair_configs

from aioipsec.events import (
    AuthFailed,
    ChildSaInstalled,
    ExchangeStep,
    IkeSaDeleted,
    IkeSaEstablished,
    NegotiationFailed,
)
from aioipsec.ike.constants import ExchangeType, NotifyType, PayloadType
from aioipsec.ike.v2.message import decode_message, peek_header
from aioipsec.ike.v2.payloads import CertPayload, CertReqPayload, NotifyPayload
from aioipsec.ike.v2.session import IkeState


@pytest.fixture(scope="module")
def pki():
    return make_pki()


def establish(p: Pair) -> None:
    p.initiate()
    assert p.roundtrip() == (1, 1)  # IKE_SA_INIT
    assert p.roundtrip() == (1, 1)  # IKE_AUTH
    assert p.roundtrip() == (0, 0)


def test_psk_establishes_in_two_roundtrips() -> None:
    i_cfg, r_cfg = psk_pair_configs()
    p = Pair(i_cfg, r_cfg)
    establish(p)
    assert p.i.state is IkeState.ESTABLISHED and p.r is not None and p.r.state is IkeState.ESTABLISHED
    assert p.i.spi_i == p.r.spi_i and p.i.spi_r == p.r.spi_r and p.i.spi_r != bytes(8)
    ie = p.events("i", IkeSaEstablished)
    re_ = p.events("r", IkeSaEstablished)
    assert len(ie) == len(re_) == 1
    assert ie[0].initiator and not re_[0].initiator
    assert (ie[0].local_id, ie[0].remote_id) == ("site-a.example", "hq.example")
    assert (re_[0].local_id, re_[0].remote_id) == ("hq.example", "site-a.example")
    assert ie[0].algorithms == re_[0].algorithms == "aes128gcm16-prfsha256-x25519"
    assert not ie[0].nat_local and not ie[0].nat_remote
    ci, cr = p.events("i", ChildSaInstalled), p.events("r", ChildSaInstalled)
    assert len(ci) == len(cr) == 1
    assert mirror(ci[0], cr[0])
    c = ci[0]
    assert c.name == "lan" and c.protocol == "esp" and c.mode == "tunnel" and not c.encap
    assert c.encr is not None and c.encr.name == "aes128gcm16" and c.integ is None
    assert len(c.encr_key_in) == 20 and c.encr_key_in != c.encr_key_out
    assert [str(t) for t in c.local_ts] == ["198.51.100.0/24"] and [str(t) for t in c.remote_ts] == ["203.0.113.0/24"]
    assert c.initiator and not cr[0].initiator
    assert c.lifetime_soft is not None and 0 < c.lifetime_soft <= 3600 and c.lifetime_hard == pytest.approx(3960)
    assert c.ike_spi_i == p.i.spi_i and c.algorithms == "aes128gcm16"
    assert p.i.stats.sent == 2 and p.r.stats.sent == 2


def test_exchange_steps_are_logged_and_emitted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p = Pair(*psk_pair_configs())
    establish(p)
    texts = [e.text for e in p.events("i", ExchangeStep)]
    assert texts[:4] == ["IKE_SA_INIT sent", "IKE_SA_INIT received", "IKE_AUTH sent", "IKE_AUTH received"]
    lines = [r.getMessage() for r in caplog.records if r.name == "aioipsec.ike"]
    spi = p.i.spi_i.hex()
    # IKE_AUTH on 4500: a MOBIKE initiator (mobike defaults to on) floats there (RFC 4555 §3.3)
    for text, port in (("IKE_SA_INIT sent", 500), ("IKE_SA_INIT received", 500), ("IKE_AUTH sent", 4500),
                       ("IKE_AUTH received", 4500)):
        assert any(line.startswith(text) and f"192.0.2.2[{port}]" in line and spi in line for line in lines), text
    # never key material: no log line contains the ESP keys
    keys = [ev.encr_key_in.hex() for ev in p.events("i", ChildSaInstalled)]
    assert not any(k in line for k in keys for line in lines)


def test_exchange_step_details_of_messages(caplog: pytest.LogCaptureFixture) -> None:
    """The details of a message step (built when first read, see
    session._StepDetails) are the message's SPIs, kind, ID and payloads,
    whether or not INFO logging built them already, and read like a dict."""
    for level in (logging.WARNING, logging.INFO):
        caplog.set_level(level, logger="aioipsec.ike")
        p = Pair(*psk_pair_configs())
        establish(p)
        steps = {e.text: e for e in p.events("i", ExchangeStep)}
        init = steps["IKE_SA_INIT sent"].details
        assert dict(init) == {
            "spi_i": p.i.spi_i.hex(), "spi_r": "0" * 16, "kind": "request", "mid": "0",
            "payloads": "SA KE NONCE N(IKEV2_FRAGMENTATION_SUPPORTED) N(SIGNATURE_HASH_ALGORITHMS) "
                        "N(REDIRECT_SUPPORTED) N(NAT_DETECTION_SOURCE_IP) N(NAT_DETECTION_DESTINATION_IP)",
        } == init
        auth = steps["IKE_AUTH received"].details
        assert (auth["kind"], auth["mid"], auth["spi_r"]) == ("response", "1", p.i.spi_r.hex())
        assert auth["payloads"].startswith("IDr AUTH N(MOBIKE_SUPPORTED) N(NO_ADDITIONAL_ADDRESSES) SA TSi TSr")
        assert "fragments" not in auth and len(auth) == 5


def test_wire_format_of_ike_sa_init() -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    [req] = p.out_i()
    hdr = peek_header(req)
    assert hdr.exchange_type == ExchangeType.IKE_SA_INIT and hdr.initiator and not hdr.response
    assert hdr.message_id == 0 and hdr.spi_r == bytes(8) and hdr.major_version == 2
    msg = decode_message(req)
    types = [type(pl).__name__ for pl in msg.payloads]
    assert types[:3] == ["SaPayload", "KePayload", "NoncePayload"]
    notifies = {n.notify_type for n in msg.notifies}
    assert {NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP,
            NotifyType.IKEV2_FRAGMENTATION_SUPPORTED, NotifyType.SIGNATURE_HASH_ALGORITHMS} <= notifies
    sa = msg.payloads[0]
    assert [prop.num for prop in sa.proposals] == [1, 2] and all(prop.spi == b"" for prop in sa.proposals)


@pytest.mark.parametrize(
    "kind,pss",
    [("rsa", False), ("rsa", True), ("p256", False), ("p384", False), ("ed25519", False)],
    ids=["rsa-pkcs1", "rsa-pss", "ecdsa-p256", "ecdsa-p384", "ed25519"],
)
def test_certificate_authentication(pki, kind: str, pss: bool) -> None:
    i_cfg, r_cfg = cert_pair_configs(pki, kind, rsa_pss=pss)
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    # responder asked for certificates from our CA in IKE_SA_INIT
    # (checked on the wire of the next flight: the initiator's IKE_AUTH carries CERT + CERTREQ)
    [auth_req] = p.out_i()
    assert p.r is not None and p.r.sa.sk is not None
    msg = decode_message(auth_req, p.r.sa.sk)
    assert len(msg.get_all(CertPayload)) == 1 and len(msg.get_all(CertReqPayload)) == 1
    p.to_r([auth_req])
    p.to_i(p.out_r())
    assert p.i.is_established and p.r.is_established
    steps = [e for e in p.events("i", ExchangeStep) if e.text == "IKE_AUTH authenticated"]
    expected = {"rsa": "RSA_EMSA_PSS_SHA256" if pss else "RSA_EMSA_PKCS1_SHA256", "p256": "ECDSA_WITH_SHA256_DER",
                "p384": "ECDSA_WITH_SHA384_DER", "ed25519": "ED25519"}[kind]
    assert steps and steps[0].details["method"].startswith(expected)
    assert mirror(p.events("i", ChildSaInstalled)[0], p.events("r", ChildSaInstalled)[0])


def test_mixed_key_types(pki) -> None:
    i_cfg, r_cfg = cert_pair_configs(pki, "rsa", i_kind="ed25519", r_kind="p384")
    p = Pair(i_cfg, r_cfg)
    establish(p)
    assert p.i.is_established and p.r.is_established


def test_no_cert_sent_unless_asked(pki) -> None:
    """send_cert=ifasked: without a CERTREQ the initiator sends no CERT; the
    responder (which has no pinned cert) then cannot authenticate it."""
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    r_cfg.send_certreq = False
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    [auth_req] = p.out_i()
    assert p.r is not None and p.r.sa.sk is not None
    assert not decode_message(auth_req, p.r.sa.sk).get_all(CertPayload)
    p.to_r([auth_req])
    [resp] = p.out_r()
    assert [n.notify_type for n in decode_message(resp, p.i.sa.sk).notifies] == [NotifyType.AUTHENTICATION_FAILED]
    assert p.events("r", AuthFailed)
    # with send_cert=always it works
    i_cfg.send_cert = "always"
    p2 = Pair(i_cfg, r_cfg)
    establish(p2)
    assert p2.i.is_established


def _auth_failure_check(p: Pair, caplog: pytest.LogCaptureFixture, *, reason_part: str) -> None:
    p.initiate()
    p.roundtrip()
    [auth_req] = p.out_i()
    p.to_r([auth_req])
    assert p.r is not None
    [resp] = p.out_r()
    msg = decode_message(resp, p.i.sa.sk)
    assert msg.exchange_type == ExchangeType.IKE_AUTH and msg.response
    assert [type(x) for x in msg.payloads] == [NotifyPayload]
    assert msg.payloads[0].notify_type == NotifyType.AUTHENTICATION_FAILED
    [af] = p.events("r", AuthFailed)
    assert af.step == "IKE_AUTH" and af.peer == "192.0.2.1[site-a.example]" and reason_part in af.reason
    assert p.r.is_closed and p.events("r", IkeSaDeleted)[0].reason == "authentication failed"
    line = [r.getMessage() for r in caplog.records if r.name == "aioipsec.ike" and r.getMessage().startswith("AUTHENTICATION_FAILED")]
    assert line and "192.0.2.1[site-a.example]" in line[0]
    p.to_i([resp])
    [af_i] = p.events("i", AuthFailed)
    assert "AUTHENTICATION_FAILED" in af_i.reason and p.i.is_closed


def test_wrong_psk_is_answered_with_authentication_failed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    i_cfg, r_cfg = psk_pair_configs()
    i_cfg.psk = b"wrong"
    _auth_failure_check(Pair(i_cfg, r_cfg), caplog, reason_part="pre-shared key")


def test_untrusted_certificate(pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    other = make_pki(("p256",))
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    i_cfg.local.cert, i_cfg.local.private_key = other.hosts["p256-a"]
    _auth_failure_check(Pair(i_cfg, r_cfg), caplog, reason_part="not trusted")


def test_identity_not_in_certificate(pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    i_cfg, r_cfg = cert_pair_configs(pki, "p256")
    i_cfg.local.id = "other.example"
    r_cfg.remote.id = None  # accept any ID, but it must be in the certificate
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    [af] = p.events("r", AuthFailed)
    assert "not confirmed by the certificate" in af.reason
    assert p.i.is_closed and p.r is not None and p.r.is_closed


def test_unknown_peer_identity() -> None:
    i_cfg, r_cfg = psk_pair_configs()
    r_cfg.remote.id = "someone-else.example"
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    [af] = p.events("r", AuthFailed)
    assert "no configuration matches" in af.reason
    assert p.events("i", AuthFailed)


def test_initiator_rejects_responder_auth(caplog: pytest.LogCaptureFixture) -> None:
    """The responder's AUTH does not verify: the initiator logs, emits
    AuthFailed, tells the responder in an INFORMATIONAL and closes."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    i_cfg, r_cfg = psk_pair_configs()
    i_cfg.remote.id = "hq.example"
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.to_r(p.out_i())
    [resp] = p.out_r()
    assert p.r is not None and p.r.is_established
    # flip the responder's PSK only now so its AUTH (already sent) is "wrong" for us
    i_cfg.psk = b"different"
    p.to_i([resp])
    [af] = p.events("i", AuthFailed)
    assert af.peer == "192.0.2.2[hq.example]" and "mismatch" in af.reason
    assert p.i.is_closed
    [info] = p.out_i()
    msg = decode_message(info, p.r.sa.sk)
    assert msg.exchange_type == ExchangeType.INFORMATIONAL and msg.message_id == 2
    assert msg.payloads[0].notify_type == NotifyType.AUTHENTICATION_FAILED
    p.to_r([info])
    assert p.r.is_closed and p.events("r", AuthFailed)


def test_responder_picks_configuration_by_identity() -> None:
    i_cfg, r_cfg = psk_pair_configs()
    decoy = psk_pair_configs(psk="other")[1]
    decoy.name = "decoy"
    decoy.remote.id = "nobody.example"
    p = Pair(i_cfg, [decoy, r_cfg])
    establish(p)
    assert p.r is not None and p.r.config.name == "hq"


def test_childless_ike_auth() -> None:
    i_cfg, r_cfg = psk_pair_configs()
    i_cfg.children = {}
    p = Pair(i_cfg, r_cfg)
    establish(p)
    assert p.i.is_established and not p.events("i", ChildSaInstalled) and not p.events("r", ChildSaInstalled)
    assert not p.events("r", NegotiationFailed)


def test_transport_mode_and_dynamic_selectors() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_local_ts=[], i_remote_ts=[], r_local_ts=[], r_remote_ts=[],
                                    i_child_kw={"mode": "transport"}, r_child_kw={"mode": "transport"})
    p = Pair(i_cfg, r_cfg)
    establish(p)
    [c] = p.events("i", ChildSaInstalled)
    assert c.mode == "transport"
    assert [str(t) for t in c.local_ts] == ["192.0.2.1/32"] and [str(t) for t in c.remote_ts] == ["192.0.2.2/32"]


def test_transport_request_falls_back_to_tunnel() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_child_kw={"mode": "transport"})
    p = Pair(i_cfg, r_cfg)
    establish(p)
    assert p.events("i", ChildSaInstalled)[0].mode == "tunnel" == p.events("r", ChildSaInstalled)[0].mode


def test_esp_with_integrity_algorithm_and_esn() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_esp=["aes256-sha384-esn"], r_esp=["aes128-sha256", "aes256-sha384-esn"],
                                    i_proposals=["aes256-sha512-ecp384"], r_proposals=["aes256-sha512-ecp384"])
    p = Pair(i_cfg, r_cfg)
    establish(p)
    [c] = p.events("i", ChildSaInstalled)
    assert c.encr.name == "aes256" and c.integ.name == "sha384" and c.esn
    assert len(c.encr_key_in) == 32 and len(c.integ_key_in) == 48
    assert mirror(c, p.events("r", ChildSaInstalled)[0])
    assert p.events("i", IkeSaEstablished)[0].algorithms == "aes256-sha512-prfsha512-ecp384"


def test_ah_child() -> None:
    from aioipsec.crypto.transforms import parse_proposal

    i_cfg, r_cfg = psk_pair_configs()
    for cfg in (i_cfg, r_cfg):
        cfg.children["lan"].ah_proposals = [parse_proposal("sha256", "ah")]
    p = Pair(i_cfg, r_cfg)
    establish(p)
    [c] = p.events("i", ChildSaInstalled)
    assert c.protocol == "ah" and c.encr is None and c.integ.name == "sha256" and c.encr_key_in == b""
    assert mirror(c, p.events("r", ChildSaInstalled)[0])


def test_no_payload_type_unused() -> None:
    # guard: PayloadType used by the tests above exists
    assert PayloadType.SK == 46
