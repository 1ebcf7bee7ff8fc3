"""The byte-offset payload decoders (``_parse``) against the Buffer-based
decoders they replaced (kept as ``_decode_body_buffer`` for SA and TS), and
encode/decode round trips of the struct-based encoders."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.buffer import Buffer, BufferReadError
from aioipsec.errors import ParseError
from aioipsec.ike.v2.payloads import (
    MalformedMessage,
    NotifyPayload,
    SaPayload,
    SaProposal,
    Transform,
    TransformAttribute,
    TsiPayload,
    decode_payloads,
    encode_payloads,
)
from aioipsec.selectors import TrafficSelector


def _outcome(fn, data: bytes):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(data))
    except (BufferReadError, MalformedMessage) as exc:
        return ("error", isinstance(exc, ParseError))


def _via_buffer(cls):  # type: ignore[no-untyped-def]
    return lambda data: cls._decode_body_buffer(Buffer(data))


def _transform() -> st.SearchStrategy[Transform]:
    attr = st.builds(TransformAttribute, st.integers(0, 0x7FFF), st.integers(0, 0xFFFF) | st.binary(max_size=6))
    return st.builds(Transform, st.integers(0, 255), st.integers(0, 0xFFFF), st.lists(attr, max_size=2).map(tuple))


_proposal = st.builds(
    SaProposal,
    st.integers(0, 255),
    st.integers(0, 255),
    st.sampled_from([b"", b"\x01\x02\x03\x04", bytes(8)]),
    st.lists(_transform(), max_size=4).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_proposal, min_size=1, max_size=3), st.data())
def test_sa_parse_matches_buffer_decoder_on_valid_and_mangled_bodies(props, data) -> None:  # type: ignore[no-untyped-def]
    sa = SaPayload(tuple(props))
    _, wire = encode_payloads([sa])
    body = wire[4:]
    assert SaPayload._parse(body) == sa
    assert SaPayload._decode_body_buffer(Buffer(body)) == sa
    # one mangled byte, or a truncation: both decoders agree on accept/reject and result
    if body:
        i = data.draw(st.integers(0, len(body) - 1))
        mangled = body[:i] + bytes([data.draw(st.integers(0, 255))]) + body[i + 1 :]
        assert _outcome(SaPayload._parse, mangled) == _outcome(_via_buffer(SaPayload), mangled)
        cut = body[: data.draw(st.integers(0, len(body)))]
        assert _outcome(SaPayload._parse, cut) == _outcome(_via_buffer(SaPayload), cut)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_sa_and_ts_parse_match_buffer_decoders_on_random_bytes(data: bytes) -> None:
    assert _outcome(SaPayload._parse, data) == _outcome(_via_buffer(SaPayload), data)
    assert _outcome(TsiPayload._parse, data) == _outcome(_via_buffer(TsiPayload), data)


_ts = st.one_of(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(lambda t: (min(t), max(t), 4)),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1)).map(lambda t: (min(t), max(t), 6)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_ts, st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), max_size=3), st.data())
def test_ts_round_trip_and_mangled(sels, data) -> None:  # type: ignore[no-untyped-def]
    ts = tuple(
        TrafficSelector(a, b, v, proto, min(p1, p2), max(p1, p2)) for (a, b, v), proto, p1, p2 in sels
    )
    _, wire = encode_payloads([TsiPayload(ts)])
    body = wire[4:]
    assert TsiPayload._parse(body) == TsiPayload(ts)
    i = data.draw(st.integers(0, len(body) - 1))
    mangled = body[:i] + bytes([data.draw(st.integers(0, 255))]) + body[i + 1 :]
    assert _outcome(TsiPayload._parse, mangled) == _outcome(_via_buffer(TsiPayload), mangled)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 255), st.binary(max_size=8), st.binary(max_size=20))
def test_notify_round_trip(ntype: int, proto: int, spi: bytes, payload: bytes) -> None:
    n = NotifyPayload(ntype, payload, proto, spi)
    first, wire = encode_payloads([n])
    (back,) = decode_payloads(first, wire)
    assert back == n and int(back.notify_type) == ntype


def test_truncated_notify_and_out_of_range_fields() -> None:
    _, wire = encode_payloads([NotifyPayload(16388, b"x" * 20)])
    # a payload length that runs past the data, and a notify whose SPI size runs past the body
    bad = wire[:2] + struct.pack("!H", len(wire) + 1) + wire[4:]
    try:
        decode_payloads(41, bad)
    except MalformedMessage as exc:
        assert "truncated" in str(exc)
    else:
        raise AssertionError("accepted a payload longer than the data")
    spi_too_long = wire[:4] + bytes([0, 200]) + wire[6:]
    try:
        decode_payloads(41, spi_too_long)
    except MalformedMessage as exc:
        assert "truncated" in str(exc)
    else:
        raise AssertionError("accepted an SPI longer than the notify")
    from aioipsec.buffer import BufferWriteError

    for p in (NotifyPayload(0x10000), SaPayload((SaProposal(256, 1),)), TsiPayload((TrafficSelector(0, 2**33, 4),))):
        try:
            encode_payloads([p])
        except BufferWriteError:
            pass
        else:
            raise AssertionError(f"encoded an out-of-range field: {p}")
