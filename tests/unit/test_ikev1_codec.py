"""ISAKMP codec: header, every payload, attribute formats, message
encryption, payload rules, and a fuzzed decoder that may only raise the
documented ParseError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.crypto.cipher import make_encr
from aioipsec.crypto.transforms import ENCR
from aioipsec.errors import ParseError
from aioipsec.ike.v1.constants import (
    ExchangeType,
    Flag,
    IdType,
    NotifyType,
    PayloadType,
    Phase1Attr,
    ProtocolId,
)
from aioipsec.ike.v1.errors import InvalidPayloadType, PayloadMalformed
from aioipsec.ike.v1.message import Message, check_rules, decode_message, encode_message
from aioipsec.ike.v1.payloads import (
    Attribute,
    CertPayload,
    CertReqPayload,
    DeletePayload,
    FragmentPayload,
    HashPayload,
    IdPayload,
    IsakmpHeader,
    KePayload,
    NatDDraftPayload,
    NatDPayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    SigPayload,
    Transform,
    UnknownPayload,
    VendorIdPayload,
    decode_chain,
    encode_chain,
)

CKY_I = bytes.fromhex("0011223344556677")
CKY_R = bytes.fromhex("8899aabbccddeeff")


def phase1_sa() -> SaPayload:
    t = Transform(
        1,
        1,
        [
            Attribute.make(Phase1Attr.ENCRYPTION_ALGORITHM, 7),
            Attribute.make(Phase1Attr.KEY_LENGTH, 128),
            Attribute.make(Phase1Attr.HASH_ALGORITHM, 2),
            Attribute.make(Phase1Attr.GROUP_DESCRIPTION, 14),
            Attribute.make(Phase1Attr.AUTHENTICATION_METHOD, 1),
            Attribute.make(Phase1Attr.LIFE_TYPE, 1),
            Attribute.make(Phase1Attr.LIFE_DURATION, 28800),
        ],
    )
    return SaPayload([Proposal(1, ProtocolId.ISAKMP, b"", [t])])


def test_header_round_trip_and_layout() -> None:
    h = IsakmpHeader(CKY_I, CKY_R, PayloadType.SA, ExchangeType.IDENTITY_PROTECTION, 0, 0x01020304, 28)
    raw = h.encode()
    assert raw.hex() == CKY_I.hex() + CKY_R.hex() + "01" + "10" + "02" + "00" + "01020304" + "0000001c"
    assert IsakmpHeader.decode(raw) == h


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"\0" * 27, "shorter"),
        (CKY_I + CKY_R + bytes([1, 0x20, 2, 0]) + bytes(4) + (28).to_bytes(4, "big"), "major version 2"),
        (CKY_I + CKY_R + bytes([1, 0x10, 2, 0]) + bytes(4) + (60).to_bytes(4, "big"), "does not fit"),
    ],
)
def test_header_rejects(raw: bytes, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        IsakmpHeader.decode(raw)


def test_phase1_sa_bytes_match_rfc2409_layout() -> None:
    """DOI 1, SIT_IDENTITY_ONLY, one proposal (PROTO_ISAKMP, no SPI), one
    KEY_IKE transform with basic-format attributes (AF bit set)."""
    body = phase1_sa().encode_body()
    assert body.hex() == (
        "00000001" "00000001"  # DOI, situation
        "0000002c" "01010001"  # proposal: last, len 44, #1, ISAKMP, spi 0, 1 transform
        "00000024" "01010000"  # transform: last, len 36, #1, KEY_IKE
        "80010007" "800e0080" "80020002" "8004000e" "80030001" "800b0001" "800c7080"
    )
    assert SaPayload.decode_body(body) == phase1_sa()


def test_attribute_formats() -> None:
    basic = Attribute.make(2, 0xFFFF)
    assert basic.length is None
    long = Attribute.make(12, 0x10000)
    assert long.length == 4
    huge = Attribute.make(12, 1 << 40)
    assert huge.length == 8
    for a in (basic, long, huge, Attribute(6, 0x0102, 2), Attribute(6, 0, 0)):
        from aioipsec.buffer import Buffer

        buf = Buffer()
        a.encode(buf)
        assert Attribute.decode(Buffer(buf.data)) == a


def test_transform_life_lookup_follows_type() -> None:
    t = Transform(1, 12, [Attribute.make(1, 2), Attribute.make(2, 100), Attribute.make(1, 1), Attribute.make(2, 3600)])
    assert t.life(1, 2, 1) == 3600
    assert t.life(1, 2, 2) == 100
    assert t.life(1, 2, 3) is None


PAYLOADS = [
    phase1_sa(),
    SaPayload([Proposal(1, ProtocolId.ESP, b"\x11\x22\x33\x44", [Transform(1, 12, [Attribute.make(4, 1)]), Transform(2, 3, [])])]),
    KePayload(b"\x01" * 256),
    NoncePayload(b"\x02" * 32),
    IdPayload(id_type=IdType.IPV4_ADDR, protocol=17, port=500, data=bytes([192, 0, 2, 1])),
    IdPayload(id_type=IdType.FQDN, data=b"hq.example"),
    NatOaPayload(id_type=IdType.IPV4_ADDR, data=bytes([192, 0, 2, 1])),
    CertPayload(encoding=4, data=b"\x30\x03\x02\x01\x00"),
    CertReqPayload(encoding=4, data=b""),
    HashPayload(b"\x03" * 20),
    SigPayload(b"\x04" * 256),
    NotifyPayload(notify_type=NotifyType.R_U_THERE, protocol=ProtocolId.ISAKMP, spi=CKY_I + CKY_R, data=b"\0\0\0\x07"),
    DeletePayload(protocol=ProtocolId.ESP, spis=[b"\1\2\3\4", b"\5\6\7\x08"], spi_size=4),
    DeletePayload(protocol=ProtocolId.ISAKMP, spis=[CKY_I + CKY_R], spi_size=16),
    VendorIdPayload(bytes.fromhex("4a131c81070358455c5728f20e95452f")),
    NatDPayload(b"\x05" * 20),
    NatDDraftPayload(b"\x06" * 20),
    FragmentPayload(fragment_id=1, number=2, last=True, data=b"abc"),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_payload_round_trip(payload) -> None:  # type: ignore[no-untyped-def]
    body = payload.encode_body()
    back = type(payload).decode_body(body)
    assert back == payload
    assert back.raw == body and back.body() == body


def test_chain_round_trip_with_padding_and_spans() -> None:
    payloads = PAYLOADS + [UnknownPayload(payload_type=99, data=b"zz")]
    first, chain = encode_chain(payloads)
    assert first == PayloadType.SA
    decoded = decode_chain(first, chain + bytes(7))
    assert decoded.payloads == payloads
    assert decoded.end == len(chain)
    assert decoded.spans[0][0] == 0 and decoded.spans[-1][1] == len(chain)
    assert [p.type for p in decoded.payloads][-1] == 99


def test_nat_d_draft_type_preserved() -> None:
    first, chain = encode_chain([NatDDraftPayload(b"x" * 16)])
    assert first == PayloadType.NAT_D_DRAFT
    assert decode_chain(first, chain).payloads[0].type == PayloadType.NAT_D_DRAFT


@pytest.mark.parametrize(
    "first, data, why",
    [
        (PayloadType.NONCE, bytes([0, 0, 0, 3]), "length 3"),
        (PayloadType.NONCE, bytes([0, 0, 0, 9, 1]), "need"),
        (PayloadType.PROPOSAL, bytes([0, 0, 0, 4]), "outside an SA"),
        (PayloadType.SA, bytes([0, 0, 0, 12]) + bytes.fromhex("00000001 00000002"), "situation"),
        (PayloadType.ID, bytes([0, 0, 0, 6, 1, 0]), "too short"),
        (PayloadType.DELETE, bytes([0, 0, 0, 16]) + bytes.fromhex("00000001 0304 0002 01020304"), "need"),
    ],
)
def test_chain_rejects(first: int, data: bytes, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        decode_chain(first, data)


def test_proposal_transform_count_checked() -> None:
    body = bytearray(phase1_sa().encode_body())
    body[8 + 7] = 2  # announce 2 transforms, carry 1
    with pytest.raises(ParseError, match="announces 2 transforms"):
        SaPayload.decode_body(bytes(body))


def _message() -> Message:
    return Message(
        ExchangeType.QUICK_MODE,
        0xDEADBEEF,
        CKY_I,
        CKY_R,
        [HashPayload(b"\x07" * 20), NoncePayload(b"\x08" * 17), IdPayload(id_type=1, data=bytes(4))],
    )


def test_message_plain_round_trip() -> None:
    data, last = encode_message(_message())
    assert last == b""
    msg, last2 = decode_message(data)
    assert last2 == b""
    assert msg.payloads == _message().payloads
    assert msg.message_id == 0xDEADBEEF and not msg.encrypted
    # the HASH of a Phase 2 message covers the chain after the first payload
    assert msg.after_first() == encode_chain(_message().payloads[1:])[1]


@pytest.mark.parametrize("alg", ["aes128", "aes256"])
def test_message_encrypted_round_trip(alg: str) -> None:
    encr = make_encr(ENCR[alg], bytes(range(ENCR[alg].key_len)))
    iv = bytes(range(16))
    data, last = encode_message(_message(), encr, iv)
    header = IsakmpHeader.decode(data)
    assert header.flags & Flag.ENCRYPTION and header.length == len(data)
    assert (len(data) - 28) % 16 == 0 and last == data[-16:]
    msg, last2 = decode_message(data, encr, iv)
    assert msg.payloads == _message().payloads and last2 == last
    with pytest.raises(ParseError):
        decode_message(data)  # encrypted, no keys
    with pytest.raises(ParseError, match="multiple"):
        decode_message(data[:-1] + data[-1:] + b"", encr, iv, IsakmpHeader.decode(_shorten(data)))


def _shorten(data: bytes) -> bytes:
    """The same message with a header length that cuts the ciphertext."""
    return data[:24] + (len(data) - 1).to_bytes(4, "big") + data[28:]


def test_rules() -> None:
    check_rules("MM1", [phase1_sa(), VendorIdPayload(b"x")])
    check_rules("MM5", [IdPayload(id_type=1, data=bytes(4)), HashPayload(b"h")])
    check_rules("QM3", [HashPayload(b"h")])
    check_rules("INFO*", [HashPayload(b"h"), DeletePayload(protocol=3, spis=[bytes(4)])])
    check_rules("MM1", [phase1_sa(), UnknownPayload(payload_type=200, data=b"")])  # unknown: ignored
    with pytest.raises(PayloadMalformed, match="SA"):
        check_rules("MM1", [VendorIdPayload(b"x")])
    with pytest.raises(InvalidPayloadType, match="KE"):
        check_rules("MM1", [phase1_sa(), KePayload(b"k")])
    with pytest.raises(PayloadMalformed, match="exactly one"):
        check_rules("MM5", [IdPayload(id_type=1, data=bytes(4)), HashPayload(b"h"), SigPayload(b"s")])
    with pytest.raises(PayloadMalformed, match="first"):
        check_rules("QM1", [phase1_sa(), HashPayload(b"h"), NoncePayload(b"n" * 8)])
    with pytest.raises(PayloadMalformed, match="ID"):
        check_rules("QM1", [HashPayload(b"h"), phase1_sa(), NoncePayload(b"n" * 8)] + [IdPayload()] * 3)


# --------------------------------------------------------------------------- fuzz


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_decode_message_only_parse_errors(data: bytes) -> None:
    try:
        decode_message(data)
    except ParseError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([int(t) for t in PayloadType] + [77]), st.binary(max_size=300))
def test_fuzz_decode_chain_only_parse_errors(first: int, data: bytes) -> None:
    try:
        decode_chain(first, data)
    except ParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_messages(data: st.DataObject) -> None:
    """Flip bytes of a valid message (headers and lengths included)."""
    raw = bytearray(encode_message(Message(ExchangeType.IDENTITY_PROTECTION, 0, CKY_I, CKY_R, PAYLOADS[:8]))[0])
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(28, len(raw)))
    try:
        decode_message(bytes(raw[:cut]))
    except ParseError:
        pass
