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


def test_sa_parse_transform_cache_keeps_spis_counts_and_bounds() -> None:
    """SaProposal._parse caches the transforms by their bytes (after the SPI):
    proposals that differ only in SPI share them, a transform count that does
    not match is still refused, and the cache stays bounded."""
    from aioipsec.ike.v2 import payloads as P

    ts = (Transform(1, 20, (TransformAttribute(14, 128),)), Transform(3, 0), Transform(5, 0))
    a = SaPayload._parse(encode_payloads([SaPayload((SaProposal(1, 3, b"\x01\x02\x03\x04", ts),))])[1][4:])
    b = SaPayload._parse(encode_payloads([SaPayload((SaProposal(2, 3, b"\x05\x06\x07\x08", ts),))])[1][4:])
    assert a.proposals[0] == SaProposal(1, 3, b"\x01\x02\x03\x04", ts)
    assert b.proposals[0] == SaProposal(2, 3, b"\x05\x06\x07\x08", ts)
    assert a.proposals[0].transforms is b.proposals[0].transforms  # the second came from the cache
    # the same transform bytes under a proposal header that counts 2 of them: refused, as uncached
    body = encode_payloads([SaPayload((SaProposal(1, 3, b"\x01\x02\x03\x04", ts),))])[1][4:]
    wrong = body[:7] + b"\x02" + body[8:]
    assert _outcome(SaPayload._parse, wrong) == _outcome(_via_buffer(SaPayload), wrong) == ("error", True)
    # bounded: many distinct proposals, and one too long to keep
    for i in range(600):
        SaPayload._parse(encode_payloads([SaPayload((SaProposal(1, 3, b"", (Transform(1, i),)),))])[1][4:])
    assert 0 < len(P._PARSED_TRANSFORMS) <= P._PARSED_TRANSFORMS.size
    many = tuple(Transform(1, i) for i in range(80))  # 640 octets of transforms
    P._PARSED_TRANSFORMS.clear()
    big = SaPayload._parse(encode_payloads([SaPayload((SaProposal(1, 3, b"", many),))])[1][4:])
    assert big.proposals[0].transforms == many and not P._PARSED_TRANSFORMS


def test_sa_encode_transform_cache_follows_each_tuple() -> None:
    """SaProposal._bytes caches the encoded transforms per tuple (by identity,
    the tuple kept): a new tuple, even of equal-looking transforms with other
    values, is encoded anew."""
    for i in range(300):  # more than the cache holds, tuples freed as they go
        ts = (Transform(1, i), Transform(3, i + 1))
        sa = SaPayload((SaProposal(1, 3, b"", ts),))
        _, wire = encode_payloads([sa])
        assert SaPayload._parse(wire[4:]) == sa
        assert encode_payloads([sa])[1] == wire


def test_shared_payload_cache_is_bounded_and_equal_to_a_fresh_parse() -> None:
    """decode_payloads shares one decoded object per body for notifies, IDs
    and traffic selectors: equal to a fresh parse, the same object the second
    time, bounded in count and body size, and never holding a failed parse."""
    from aioipsec.ike.v2 import payloads as P

    ts = TsiPayload((TrafficSelector.from_cidr("198.51.100.0/24"),))
    chain = [NotifyPayload(16430), NotifyPayload(16388, bytes(20)), ts]
    first, wire = encode_payloads(chain)
    a, b = decode_payloads(first, wire), decode_payloads(first, wire)
    assert a == b == chain
    assert all(x is y for x, y in zip(a, b))
    for i in range(700):  # distinct notify bodies: the cache empties itself when full
        f, w = encode_payloads([NotifyPayload(16388, i.to_bytes(20, "big"))])
        assert decode_payloads(f, w) == [NotifyPayload(16388, i.to_bytes(20, "big"))]
    assert 0 < len(P._SHARED[41]) <= P._SHARED_SIZE
    P._SHARED[41].clear()
    f, w = encode_payloads([NotifyPayload(16388, bytes(P._SHARED_MAX))])  # body of 4 + 64 octets
    assert decode_payloads(f, w) == [NotifyPayload(16388, bytes(P._SHARED_MAX))] and not P._SHARED[41]
    f, w = encode_payloads([NotifyPayload(16430)])
    bad = w[:5] + bytes([9]) + w[6:]  # an SPI size past the body
    try:
        decode_payloads(f, bad)
    except MalformedMessage:
        pass
    else:
        raise AssertionError("accepted a notify whose SPI runs past its body")
    assert not P._SHARED[41]
