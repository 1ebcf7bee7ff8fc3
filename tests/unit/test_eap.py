"""The EAP codec and methods (RFC 3748) used by IKEv2 EAP authentication:
packet encoding (the IKEv2 codec's EapPayload, as ike_auth sends and reads
EAP), the MD5-Challenge response by the RFC formula, GTC, Nak, and a table
of malformed packets (dropped and counted, never raising)."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives import hashes

from aioipsec.ike.constants import EapCode, PayloadType
from aioipsec.ike.v2 import eap as E
from aioipsec.ike.v2.eap import (
    EapError,
    EapPacket,
    EapPeer,
    EapServer,
    EapType,
    ServerState,
)
from aioipsec.ike.v2.payloads import (
    EapPayload,
    MalformedMessage,
    decode_payloads,
    encode_payloads,
)


def rng(seed: int = 7):
    r = random.Random(seed)
    return r.randbytes


def md5(data: bytes) -> bytes:
    h = hashes.Hash(hashes.MD5())
    h.update(data)
    return h.finalize()


def encode(packet: EapPacket) -> bytes:
    """``packet`` as ike_auth sends it: the body of an EAP payload."""
    _, data = encode_payloads([EapPayload(packet.code, packet.identifier, packet.data)])
    return data[4:]  # after the generic payload header


def decode(raw: bytes) -> EapPacket:
    """An EAP payload body as ike_auth reads it: the IKEv2 payload codec,
    then EapPacket.from_parts."""
    [payload] = decode_payloads(PayloadType.EAP, bytes(2) + (4 + len(raw)).to_bytes(2, "big") + raw)
    assert isinstance(payload, EapPayload)
    return EapPacket.from_parts(payload.code, payload.identifier, payload.data)


def test_packet_roundtrip_and_wire_format() -> None:
    p = EapPacket(EapCode.REQUEST, 0x2A, EapType.IDENTITY)
    assert encode(p) == bytes([1, 0x2A, 0, 5, 1])
    assert decode(encode(p)) == p
    r = EapPacket(EapCode.RESPONSE, 3, EapType.IDENTITY, b"alice")
    assert encode(r) == b"\x02\x03\x00\x0a\x01alice" and decode(encode(r)) == r
    s = EapPacket(EapCode.SUCCESS, 9)
    assert encode(s) == b"\x03\x09\x00\x04" and s.data == b"" and decode(encode(s)) == s
    assert EapPacket.from_parts(4, 1, b"") == EapPacket(EapCode.FAILURE, 1)


def test_md5_response_is_the_rfc_formula() -> None:
    """RFC 3748 §5.4 / RFC 1994: MD5 over Identifier, secret, challenge."""
    challenge = bytes(range(16))
    got = E.md5_response(0x42, b"password", challenge)
    assert got == md5(b"\x42" + b"password" + challenge)
    assert len(got) == 16
    # a different Identifier changes everything
    assert E.md5_response(0x43, b"password", challenge) != got


def test_md5_type_data() -> None:
    td = E.md5_type_data(b"\x01" * 16, b"gw")
    assert td[0] == 16 and E.parse_md5(td) == (b"\x01" * 16, b"gw")


MALFORMED_HEADER = [
    (b"", "truncated"),  # shorter than Code, Identifier, Length
    (b"\x01\x01\x00", "truncated"),
    (b"\x01\x01\x00\x09\x01", "length 9"),  # length beyond the data
]


@pytest.mark.parametrize("raw,why", MALFORMED_HEADER)
def test_malformed_header_is_a_malformed_payload(raw: bytes, why: str) -> None:
    """The header (Code, Identifier, Length) is the IKEv2 codec's: a bad one
    is a malformed payload, never an EAP packet."""
    with pytest.raises(MalformedMessage, match=why):
        decode(raw)


MALFORMED = [
    (b"\x01\x01\x00\x04", "without a type"),  # a Request needs a type
    (b"\x02\x01\x00\x04", "without a type"),
    (b"\x03\x01\x00\x05\x01", "with 1 octets"),  # Success with data
    (b"\x05\x01\x00\x05\x01", "unknown EAP code 5"),
    (b"\x00\x01\x00\x04", "unknown EAP code 0"),
    (b"\x01\x01\x00\x0d\xfe" + bytes(8), "expanded"),
]


@pytest.mark.parametrize("raw,why", MALFORMED)
def test_malformed_packets_raise_eap_error_only(raw: bytes, why: str) -> None:
    with pytest.raises(EapError, match=why):
        decode(raw)


@pytest.mark.parametrize("td", [b"", b"\x00", b"\x10" + bytes(15), b"\x05abc"])
def test_malformed_md5_value(td: bytes) -> None:
    with pytest.raises(EapError):
        E.parse_md5(td)


def test_peer_answers_identity_md5_gtc_and_naks_the_rest() -> None:
    peer = EapPeer(b"alice", b"pw", (EapType.MD5, EapType.GTC))
    r = peer.process(EapPacket(EapCode.REQUEST, 5, EapType.IDENTITY))
    assert r == EapPacket(EapCode.RESPONSE, 5, EapType.IDENTITY, b"alice")
    ch = bytes(16)
    r = peer.process(EapPacket(EapCode.REQUEST, 6, EapType.MD5, E.md5_type_data(ch, b"gw")))
    assert r is not None and r.type == EapType.MD5 and r.identifier == 6
    assert E.parse_md5(r.type_data)[0] == md5(b"\x06pw" + ch)
    r = peer.process(EapPacket(EapCode.REQUEST, 7, EapType.GTC, b"Password: "))
    assert r == EapPacket(EapCode.RESPONSE, 7, EapType.GTC, b"pw")
    r = peer.process(EapPacket(EapCode.REQUEST, 8, 26, b"x"))  # MSCHAPv2: not offered
    assert r == EapPacket(EapCode.RESPONSE, 8, EapType.NAK, bytes([EapType.MD5, EapType.GTC]))
    r = peer.process(EapPacket(EapCode.REQUEST, 9, EapType.NOTIFICATION, b"hello"))
    assert r == EapPacket(EapCode.RESPONSE, 9, EapType.NOTIFICATION)
    assert peer.process(EapPacket(EapCode.SUCCESS, 9)) is None and peer.result == EapCode.SUCCESS
    assert peer.malformed == 0


def test_peer_naks_md5_when_only_gtc_is_allowed() -> None:
    peer = EapPeer(b"alice", b"pw", (EapType.GTC,))
    r = peer.process(EapPacket(EapCode.REQUEST, 1, EapType.MD5, E.md5_type_data(bytes(16))))
    assert r == EapPacket(EapCode.RESPONSE, 1, EapType.NAK, bytes([EapType.GTC]))


@pytest.mark.parametrize(
    "packet",
    [
        EapPacket(EapCode.RESPONSE, 1, EapType.IDENTITY, b"x"),  # a Response sent to the peer
        EapPacket(EapCode.SUCCESS, 1),  # Success before we answered anything
        EapPacket(EapCode.REQUEST, 1, EapType.MD5, b"\x20abc"),  # Value-Size beyond the data
    ],
)
def test_peer_drops_and_counts_unexpected(packet: EapPacket) -> None:
    peer = EapPeer(b"alice", b"pw", (EapType.MD5,))
    assert peer.process(packet) is None
    assert peer.malformed == 1 and peer.result is None


def run_server(server: EapServer, peer: EapPeer) -> EapPacket:
    out = server.start()
    for _ in range(10):
        reply = peer.process(out)
        out = server.process(reply)
        if server.state is not ServerState.CONTINUE:
            return out
    raise AssertionError("no end")


@pytest.mark.parametrize("method", [EapType.MD5, EapType.GTC])
def test_server_and_peer(method: int) -> None:
    server = EapServer(method, {"alice": b"pw", "bob": b"other"}, rng())
    end = run_server(server, EapPeer(b"alice", b"pw", (method,)))
    assert end.code == EapCode.SUCCESS and server.state is ServerState.SUCCESS and server.identity == "alice"
    server = EapServer(method, {"alice": b"pw"}, rng())
    end = run_server(server, EapPeer(b"alice", b"bad", (method,)))
    assert end.code == EapCode.FAILURE and "alice" in server.reason and "bad" not in server.reason
    server = EapServer(method, {"alice": b"pw"}, rng())
    end = run_server(server, EapPeer(b"carol", b"pw", (method,)))
    assert end.code == EapCode.FAILURE and server.reason == "no EAP secret for EAP identity 'carol'"


def test_server_nak_fails_with_reason() -> None:
    server = EapServer(EapType.MD5, {"alice": b"pw"}, rng())
    end = run_server(server, EapPeer(b"alice", b"pw", (EapType.GTC,)))
    assert end.code == EapCode.FAILURE and "refused EAP-MD5" in server.reason


def test_server_repeats_its_request_for_dropped_responses_then_gives_up() -> None:
    server = EapServer(EapType.GTC, {"alice": b"pw"}, rng())
    first = server.start()
    bad = [
        None,  # undecodable
        EapPacket(EapCode.RESPONSE, (first.identifier + 1) & 0xFF, EapType.IDENTITY, b"alice"),  # wrong Identifier
        EapPacket(EapCode.REQUEST, first.identifier, EapType.IDENTITY),  # a Request
        EapPacket(EapCode.RESPONSE, first.identifier, EapType.IDENTITY, b"\xff\xfe"),  # not UTF-8
    ]
    for n, packet in enumerate(bad, 1):
        assert server.process(packet) == first
        assert server.malformed == n and server.state is ServerState.CONTINUE
    # answered properly afterwards, it goes on
    nxt = server.process(EapPacket(EapCode.RESPONSE, first.identifier, EapType.IDENTITY, b"alice"))
    assert nxt.type == EapType.GTC
    for _ in range(E.MAX_ROUNDS):
        out = server.process(None)
    assert out.code == EapCode.FAILURE and server.state is ServerState.FAILURE


def test_secrets_not_in_repr() -> None:
    assert "pw" not in repr(EapPeer(b"alice", b"pw")) and "pw" not in repr(EapServer(4, {"alice": b"pw"}, rng()))
