"""A real IKEv2 exchange (Android IKE library <-> responder, PSK, AES-CBC-128 /
HMAC-SHA1-96 / PRF-HMAC-SHA1 / MODP-1024) and SK/SKF payload vectors, decoded
and recomputed end to end.  See tests/vectors/README.md for the sources."""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from aioipsec.crypto import transforms as T
from aioipsec.crypto.cipher import des_supported, make_integ
from aioipsec.crypto.kdf import ikev2_derive_keys, ikev2_skeyseed
from aioipsec.crypto.prf import prf
from aioipsec.errors import IntegrityError
from aioipsec.ike.constants import (
    AuthMethod,
    ExchangeType,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from aioipsec.ike.natd import natd_hash
from aioipsec.ike.v2.fragment import Reassembler
from aioipsec.ike.v2.message import (
    SkContext,
    check_rules,
    decode_message,
    encode_message,
    peek_header,
)
from aioipsec.ike.v2.payloads import (
    AuthPayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    SkfPayload,
    SkPayload,
    TsiPayload,
    TsrPayload,
    VendorPayload,
    decode_payloads,
    payload_body,
    proposal_to_sa,
    sa_to_proposals,
)
from aioipsec.selectors import TrafficSelector

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def _load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text())["records"]  # type: ignore[no-any-return]


EXCHANGE = _load("ikev2_real_exchange_android.json")
REC = EXCHANGE[0]
SKV = {r["id"]: r for r in _load("ikev2_sk_skf_payloads_android.json")}
h = bytes.fromhex

PRF = T.prf("prfsha1")
ENCR = T.encr("aes128")
INTEG = T.integ("sha1")


def _responder_ctx(**kw: Any) -> SkContext:
    return SkContext(
        ENCR, INTEG, h(REC["SK_ei"]), h(REC["SK_er"]), h(REC["SK_ai"]), h(REC["SK_ar"]), is_initiator=False, **kw
    )


# --------------------------------------------------------------------------- IKE_SA_INIT


def test_ike_sa_init_request_decodes() -> None:
    data = h(REC["ike_sa_init_request"])
    hdr = peek_header(data)
    assert (hdr.spi_i, hdr.spi_r) == (h(REC["SPIi"]), bytes(8))
    assert (hdr.major_version, hdr.minor_version) == (2, 0)
    assert hdr.exchange_type == ExchangeType.IKE_SA_INIT
    assert hdr.initiator and hdr.is_request and hdr.message_id == 0
    assert hdr.length == len(data) and hdr.next_payload == PayloadType.SA

    msg = decode_message(data)
    assert not msg.encrypted
    assert [type(p) for p in msg.payloads] == [
        SaPayload,
        KePayload,
        NoncePayload,
        NotifyPayload,
        NotifyPayload,
        VendorPayload,
    ]
    ke = msg.get(KePayload)
    assert ke is not None and ke.group == 2 and len(ke.data) == 128
    nonce = msg.get(NoncePayload)
    assert nonce is not None and nonce.data == h(REC["Ni"])
    check_rules(msg)
    assert encode_message(msg) == data  # byte-exact re-encoding


def test_ike_sa_init_proposal_maps_to_registry() -> None:
    msg = decode_message(h(REC["ike_sa_init_request"]))
    sa = msg.get(SaPayload)
    assert sa is not None and len(sa.proposals) == 1
    ((sap, prop),) = sa_to_proposals(sa)
    assert sap.protocol == ProtocolId.IKE and sap.num == 1 and sap.spi == b""
    assert prop is not None
    expected = T.parse_proposal("aes128-sha1-prfsha1-modp1024", "ike", allow_legacy=True)
    assert prop == expected
    # and back: same transforms (our order: ENCR PRF INTEG KE), same key length attribute
    ours = proposal_to_sa(prop, 1)
    assert sorted(ours.transforms, key=lambda t: t.transform_type) == sorted(
        sap.transforms, key=lambda t: t.transform_type
    )


def test_ike_sa_init_response_decodes() -> None:
    data = h(REC["ike_sa_init_response"])
    msg = decode_message(data)
    assert (msg.spi_i, msg.spi_r) == (h(REC["SPIi"]), h(REC["SPIr"]))
    assert msg.response and not msg.initiator and msg.message_id == 0
    nonce = msg.get(NoncePayload)
    assert nonce is not None and nonce.data == h(REC["Nr"])
    assert msg.has_notify(NotifyType.MULTIPLE_AUTH_SUPPORTED)
    check_rules(msg)
    assert encode_message(msg) == data


# --------------------------------------------------------------------------- keys, NAT-D, AUTH


def test_skeyseed_and_sk_keys() -> None:
    skeyseed = ikev2_skeyseed(PRF, h(REC["Ni"]), h(REC["Nr"]), h(REC["g_ir"]))
    assert skeyseed == h(REC["SKEYSEED"])
    keys = ikev2_derive_keys(PRF, skeyseed, h(REC["Ni"]), h(REC["Nr"]), h(REC["SPIi"]), h(REC["SPIr"]), ENCR, INTEG)
    for name in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"):
        assert getattr(keys, name) == h(REC["SK_" + name[3:]]), name


@pytest.mark.parametrize(
    "which, message",
    [
        ("req_source", "ike_sa_init_request"),
        ("req_destination", "ike_sa_init_request"),
        ("resp_source", "ike_sa_init_response"),
        ("resp_destination", "ike_sa_init_response"),
    ],
)
def test_nat_detection_hashes(which: str, message: str) -> None:
    nd = REC["nat_detection"][which]
    value = natd_hash(h(REC["SPIi"]), h(nd["spi_r_used"]), (nd["ip"], nd["port"]))
    assert value == h(nd["value"])
    ntype = NotifyType.NAT_DETECTION_SOURCE_IP if "source" in which else NotifyType.NAT_DETECTION_DESTINATION_IP
    notify = decode_message(h(REC[message])).get_notify(ntype)
    assert notify is not None and notify.data == value


def test_psk_auth_payload_value() -> None:
    msg = decode_message(h(REC["ike_auth_request"]), _responder_ctx())
    idi = msg.get(IdiPayload)
    assert idi is not None
    rest_of_idi = payload_body(idi)
    assert rest_of_idi == h(REC["IDi_body"])
    octets = h(REC["ike_sa_init_request"]) + h(REC["Nr"]) + prf(PRF, h(REC["SK_pi"]), rest_of_idi)
    auth = prf(PRF, prf(PRF, h(REC["psk"]), b"Key Pad for IKEv2"), octets)
    assert auth == h(REC["AUTH_i"])
    ap = msg.get(AuthPayload)
    assert ap is not None and ap.method == AuthMethod.PSK
    assert hmac.compare_digest(ap.data, auth)


# --------------------------------------------------------------------------- IKE_AUTH (SK)


def test_ike_auth_icv_and_iv() -> None:
    data = h(REC["ike_auth_request"])
    raw = decode_message(data)  # no SK context: the SK payload stays opaque
    assert raw.exchange_type == ExchangeType.IKE_AUTH and raw.message_id == 1
    (sk,) = raw.payloads
    assert isinstance(sk, SkPayload) and sk.next_payload == PayloadType.IDi
    assert sk.data[:16] == h(REC["ike_auth_request_iv"])
    assert sk.data[-12:] == h(REC["ike_auth_request_icv"])
    integ = make_integ(INTEG, h(REC["SK_ai"]))
    assert integ.sign(data[:-12]) == h(REC["ike_auth_request_icv"])
    assert encode_message(raw) == data


def test_ike_auth_decrypts_to_given_plaintext() -> None:
    data = h(REC["ike_auth_request"])
    ctx = _responder_ctx()
    body = data[32:]
    padded = h(REC["ike_auth_request_decrypted_with_padding"])
    pad = REC["ike_auth_request_pad_length"]
    assert padded[-1] == pad
    assert ctx.open(data[:32], body) == padded[: len(padded) - pad - 1]

    msg = decode_message(data, ctx)
    assert msg.encrypted
    assert str(msg) == "IKE_AUTH request 1 [ IDi IDr AUTH SA TSi TSr N(INITIAL_CONTACT) N(SET_WINDOW_SIZE) ]"
    check_rules(msg)
    idi, idr = msg.get(IdiPayload), msg.get(IdrPayload)
    assert idi == IdiPayload(IdType.IPV4_ADDR, bytes([10, 80, 80, 13]))
    assert idr is not None and payload_body(idr) == h(REC["IDr_body"])
    sa = msg.get(SaPayload)
    assert sa is not None
    ((sap, prop),) = sa_to_proposals(sa)
    assert sap.protocol == ProtocolId.ESP and sap.spi == h(REC["child_sa"]["spi_i"])
    assert prop == T.parse_proposal("aes128-sha1-noesn", "esp")
    any4 = TrafficSelector.any(4)
    assert msg.get(TsiPayload) == TsiPayload((any4,))
    assert msg.get(TsrPayload) == TsrPayload((any4,))
    assert msg.get_notify(NotifyType.SET_WINDOW_SIZE) == NotifyPayload(NotifyType.SET_WINDOW_SIZE, b"\x00\x00\x00\x01")


def test_ike_auth_reencrypts_byte_exact() -> None:
    """With the IV injected (zero padding, as the Android sender used), the
    initiator side encodes the very same datagram."""
    data = h(REC["ike_auth_request"])
    msg = decode_message(data, _responder_ctx())
    iv = h(REC["ike_auth_request_iv"])
    initiator = SkContext(
        ENCR,
        INTEG,
        h(REC["SK_ei"]),
        h(REC["SK_er"]),
        h(REC["SK_ai"]),
        h(REC["SK_ar"]),
        is_initiator=True,
        random=lambda n: iv[:n],
    )
    assert encode_message(msg, initiator) == data


def test_ike_auth_wrong_direction_or_tamper_is_integrity_error() -> None:
    data = h(REC["ike_auth_request"])
    initiator_ctx = SkContext(
        ENCR, INTEG, h(REC["SK_ei"]), h(REC["SK_er"]), h(REC["SK_ai"]), h(REC["SK_ar"]), is_initiator=True
    )
    with pytest.raises(IntegrityError):
        decode_message(data, initiator_ctx)  # would use SK_ar: wrong key
    for pos in (5, 40, len(data) - 20, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(IntegrityError):
            decode_message(bytes(bad), _responder_ctx())


def test_empty_informational() -> None:
    rec = EXCHANGE[1]
    data = h(rec["message"])
    msg = decode_message(data, _responder_ctx())
    assert msg.exchange_type == ExchangeType.INFORMATIONAL
    assert msg.initiator and msg.response and msg.message_id == 0
    assert msg.encrypted and msg.payloads == []
    check_rules(msg)
    assert _responder_ctx().open(data[:32], data[32:]) == b""
    iv = h(rec["iv"])
    sender = SkContext(
        ENCR,
        INTEG,
        h(REC["SK_ei"]),
        h(REC["SK_er"]),
        h(REC["SK_ai"]),
        h(REC["SK_ar"]),
        is_initiator=True,
        random=lambda n: iv[:n],
    )
    assert encode_message(msg, sender) == data


# --------------------------------------------------------------------------- SK / SKF vectors


def _ctx_for(rec: dict[str, Any], *, allow_legacy: bool = False) -> SkContext:
    """Inbound context for the vector's sender (its key is the inbound key)."""
    data = h(rec["message"])
    sender_is_initiator = peek_header(data).initiator
    if rec["integ_key"] is None:
        encr = T.encr("aes256gcm16")
        integ = None
        key_i = key_r = h(rec["encr_key"])
        ai = ar = b""
    else:
        encr = T.encr("3des", allow_legacy=allow_legacy)
        integ = T.integ("sha1")
        key_i = key_r = h(rec["encr_key"])
        ai = ar = h(rec["integ_key"])
    # both directions keyed alike; the local role is the opposite of the sender's
    return SkContext(encr, integ, key_i, key_r, ai, ar, is_initiator=not sender_is_initiator)


def _needs(rec: dict[str, Any]) -> None:
    if rec["integ_key"] is not None and not des_supported():
        pytest.skip("this cryptography build has no 3DES")


@pytest.mark.parametrize("vid", ["android-aes-gcm16-256-sk", "android-3des-hmacsha1-sk"])
def test_sk_payload_vectors(vid: str) -> None:
    rec = SKV[vid]
    _needs(rec)
    data = h(rec["message"])
    ctx = _ctx_for(rec, allow_legacy=True)
    hdr_len = len(h(rec["ike_header"])) + len(h(rec["encrypted_payload_header"]))
    assert data[:hdr_len] == h(rec["ike_header"]) + h(rec["encrypted_payload_header"])
    if rec["aad"] is not None:
        assert data[:hdr_len] == h(rec["aad"])
    assert data[hdr_len : hdr_len + ctx.iv_len] == h(rec["iv"])
    assert ctx.open(data[:hdr_len], data[hdr_len:]) == h(rec["inner_payloads"])

    msg = decode_message(data, ctx)
    assert msg.encrypted
    first = data[28]  # SK header Next Payload: first inner payload
    assert msg.payloads == decode_payloads(first, h(rec["inner_payloads"]), inner=True)
    if vid.startswith("android-3des"):
        (eap,) = msg.payloads
        assert isinstance(eap, EapPayload) and eap.code == 1 and eap.identifier == 0x3C
    else:
        (auth,) = msg.payloads
        assert isinstance(auth, AuthPayload) and auth.method == AuthMethod.PSK and len(auth.data) == 32
    # re-encrypt with the same IV: byte-exact (zero padding in these vectors)
    iv = h(rec["iv"])
    sender = SkContext(
        ctx.encr_alg,
        ctx.integ_alg,
        h(rec["encr_key"]),
        h(rec["encr_key"]),
        h(rec["integ_key"] or ""),
        h(rec["integ_key"] or ""),
        is_initiator=not ctx.is_initiator,
        random=lambda n: iv[:n],
    )
    padded = h(rec["decrypted_with_padding"])
    if all(b == 0 for b in padded[len(h(rec["inner_payloads"])) : -1]):
        assert encode_message(msg, sender) == data


def test_3des_refused_without_legacy_opt_in() -> None:
    with pytest.raises(T.AlgorithmError):
        T.encr("3des")


@pytest.mark.parametrize("vid", ["android-aes-gcm16-256-skf-2of2", "android-3des-hmacsha1-skf-5of5"])
def test_skf_payload_vectors(vid: str) -> None:
    rec = SKV[vid]
    _needs(rec)
    data = h(rec["message"])
    ctx = _ctx_for(rec, allow_legacy=True)
    hdr = peek_header(data)
    assert hdr.next_payload == PayloadType.SKF
    raw = decode_message(data, ctx)  # fragments are not decrypted by decode_message
    (skf,) = raw.payloads
    assert isinstance(skf, SkfPayload)
    assert (skf.fragment_number, skf.total_fragments) == (rec["fragment_number"], rec["total_fragments"])
    assert skf.next_payload == rec["first_inner_payload_type_in_skf_header"] == 0
    assert skf.data[: ctx.iv_len] == h(rec["iv"])
    assert encode_message(raw) == data

    re = Reassembler(ctx)
    header, frag, piece = re.open_fragment(data)
    assert frag == skf and header == hdr
    assert piece == h(rec["inner_payloads"])
    assert re.add(data) is None  # other fragments missing
    assert re.pending() == 1
    bad = bytearray(data)
    bad[-1] ^= 0x80
    with pytest.raises(IntegrityError):
        re.open_fragment(bytes(bad))


def test_chacha20poly1305_ike_vector_rfc7634() -> None:
    """RFC 7634 Appendix B: an INFORMATIONAL request with an SK payload, sent
    by the responder (no I flag), no padding (AEAD block size 1 in IKE)."""
    (rec,) = [r for r in _load("esp_ike_chacha20poly1305_rfc7634.json") if r["id"] == "chacha20poly1305_4"]
    data = h(rec["ike_message_derived"])
    assert data[:32] == h(rec["aad"])
    keymat = h(rec["key"]) + h(rec["salt"])
    encr = T.encr("chacha20poly1305")
    local_initiator = SkContext(encr, None, bytes(36), keymat, is_initiator=True)
    msg = decode_message(data, local_initiator)
    assert msg.exchange_type == ExchangeType.INFORMATIONAL and msg.message_id == 9
    assert not msg.initiator and msg.is_request
    assert msg.payloads == [NotifyPayload(NotifyType.SET_WINDOW_SIZE, b"\x00\x00\x00\x0a")]
    check_rules(msg)
    iv = h(rec["iv"])
    sender = SkContext(encr, None, bytes(36), keymat, is_initiator=False, random=lambda n: iv[:n])
    assert encode_message(msg, sender) == data
