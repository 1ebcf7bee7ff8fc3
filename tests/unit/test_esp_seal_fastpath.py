"""The AEAD fast seal path of EspSa against the general one.

``EspSa.seal_batch`` seals AEAD batches with ``_seal_fast`` (IV = sequence
number, header/nonce/AAD packed per packet, trailers from a cached table).
``EspSa.seal(..., iv=...)`` always takes the general path
(``_seal_slow`` -> ``EspCodec.seal``).  For the same SA state (keys,
sequence number) and the same IVs, both must give byte-identical packets and
the same counters, for any mix of packet lengths, in tunnel mode (IPv4 and
IPv6 inner packets) and in transport mode with a fixed next header."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.crypto import transforms as T
from aioipsec.esp import EspSa
from aioipsec.esp.ip import ipv4_header, ipv6_header

SPI = 0x01020304
ALGS = ["aes128gcm16", "aes256gcm16", "aes128ccm16", "aes128ccm12", "chacha20poly1305"]


def sa(alg: str, mode: str, start: int) -> EspSa:
    encr = T.ENCR[alg]
    s = EspSa(spi=SPI, encr=encr, encr_key=bytes(range(7, 7 + encr.key_len)), inbound=False, mode=mode)
    s.seq = start  # the next packet gets start + 1
    return s


@st.composite
def inner(draw) -> bytes:
    body = draw(st.binary(min_size=0, max_size=120))
    if draw(st.booleans()):
        return ipv4_header("198.51.100.1", "203.0.113.9", 17, len(body)) + body
    return ipv6_header("2001:db8::1", "2001:db8::2", 17, len(body)) + body


@settings(max_examples=60, deadline=None)
@given(
    alg=st.sampled_from(ALGS),
    start=st.one_of(st.integers(0, 1000), st.integers(0xFFFF_FF00, 0xFFFF_FFFF - 70)),
    pkts=st.lists(inner(), min_size=1, max_size=40),
)
def test_tunnel_fast_seal_is_byte_identical(alg: str, start: int, pkts: list[bytes]) -> None:
    fast, slow = sa(alg, "tunnel", start), sa(alg, "tunnel", start)
    assert fast._fast  # the path under test
    a = fast.seal_batch(pkts)
    b = [slow.seal(p, iv=(start + i).to_bytes(8, "big")) for i, p in enumerate(pkts, 1)]
    assert a == b
    assert fast.seq == slow.seq == start + len(pkts)
    assert fast.stats.as_dict() == slow.stats.as_dict()


@settings(max_examples=40, deadline=None)
@given(
    alg=st.sampled_from(ALGS),
    start=st.integers(0, 1000),
    nh=st.sampled_from([6, 17, 50, 59]),
    pkts=st.lists(st.binary(min_size=0, max_size=100), min_size=1, max_size=30),
)
def test_transport_fast_seal_is_byte_identical(alg: str, start: int, nh: int, pkts: list[bytes]) -> None:
    fast, slow = sa(alg, "transport", start), sa(alg, "transport", start)
    a = fast.seal_batch(pkts, next_header=nh)
    b = [slow.seal(p, nh, iv=(start + i).to_bytes(8, "big")) for i, p in enumerate(pkts, 1)]
    assert a == b
    assert fast.stats.as_dict() == slow.stats.as_dict()


def test_exhaustion_is_the_same_on_both_paths() -> None:
    pkts = [ipv4_header("198.51.100.1", "203.0.113.9", 17, 3) + b"abc"] * 5
    fast, slow = sa("aes128gcm16", "tunnel", 0xFFFF_FFFD), sa("aes128gcm16", "tunnel", 0xFFFF_FFFD)
    a = fast.seal_batch(pkts)  # two sequence numbers left
    b = [slow.seal(p, iv=s.to_bytes(8, "big")) for p, s in zip(pkts, (0xFFFF_FFFE, 0xFFFF_FFFF))]
    assert len(a) == 2 and a == b
    assert slow.seal(pkts[0], iv=bytes(8)) is None
    assert fast.expired and slow.expired
    assert fast.next_event() == slow.next_event()


@settings(max_examples=60, deadline=None)
@given(
    alg=st.sampled_from(ALGS),
    start=st.one_of(st.integers(0, 1000), st.integers(0xFFFF_FF00, 0xFFFF_FFFF - 70)),
    pkts=st.lists(inner(), min_size=0, max_size=40),
    junk_at=st.one_of(st.none(), st.integers(0, 39)),
)
def test_seal_batch_parts_joined_are_the_seal_batch_packets(alg: str, start: int, pkts: list[bytes],
                                                             junk_at: int | None) -> None:
    """seal_batch_parts (the data plane's tunnel-mode call, sent gathered) gives
    the packets of seal_batch in two parts, with the same sequence numbers and
    counters: 16-byte heads on the lean path (8 or more IP packets), empty heads
    and whole packets otherwise (fewer packets, a packet that is not IP, the
    sequence numbers near their end)."""
    if junk_at is not None and pkts:
        pkts = pkts[:junk_at] + [b"\x00not IP"] + pkts[junk_at:]
    parts, whole = sa(alg, "tunnel", start), sa(alg, "tunnel", start)
    heads, bodies = parts.seal_batch_parts(pkts)
    ref = whole.seal_batch(pkts)
    assert len(heads) == len(bodies) == len(ref)
    assert [h + b for h, b in zip(heads, bodies)] == ref
    lean = parts._lean and len(pkts) >= 8 and junk_at is None and start + len(pkts) < parts._seq_soft
    assert all(len(h) == (16 if lean else 0) for h in heads)
    assert parts.seq == whole.seq
    assert parts.stats.as_dict() == whole.stats.as_dict()


def test_seal_batch_parts_splits_on_the_lean_path() -> None:
    pkts = [ipv4_header("198.51.100.1", "203.0.113.9", 17, 1400) + bytes(1400)] * 10
    parts, whole = sa("aes128gcm16", "tunnel", 41), sa("aes128gcm16", "tunnel", 41)
    heads, bodies = parts.seal_batch_parts(pkts)
    assert [len(h) for h in heads] == [16] * 10  # SPI | seq | IV
    assert [int.from_bytes(h[4:8], "big") for h in heads] == list(range(42, 52))
    assert [h + b for h, b in zip(heads, bodies)] == whole.seal_batch(pkts)
