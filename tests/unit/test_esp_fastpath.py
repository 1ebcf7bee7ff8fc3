"""The lean AEAD open path of EspSa against the generic one.

``EspSa._open_fast`` inlines the replay window and has a shortcut for
well-formed tunnel-mode packets; ``EspSa._open_slow`` goes through
``ReplayWindow`` and ``EspCodec`` one packet at a time.  For any decrypted
plaintext (well formed or not) and any order of sequence numbers, both must
give the same results, counters and window."""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.crypto import transforms as T
from aioipsec.esp import DropReason, EspSa
from aioipsec.esp.ip import ipv4_header, ipv6_header
from aioipsec.esp.packet import PAD_BYTES

SPI = 0x0A0B0C0D
KEYMAT = bytes(range(1, 21))  # AES-128 key || 4-byte salt
AEAD = AESGCM(KEYMAT[:16])


def esp(plaintext: bytes, seq: int, *, spi: int = SPI, iv: bytes | None = None) -> bytes:
    """An ESP packet around an arbitrary plaintext (trailer included)."""
    hdr = struct.pack("!II", spi, seq)
    iv = iv if iv is not None else struct.pack("!Q", seq ^ 0x5A5A)  # any IV: the receiver must not assume IV == seq
    return hdr + iv + AEAD.encrypt(KEYMAT[16:] + iv, plaintext, hdr)


def inbound(**kw) -> EspSa:
    return EspSa(spi=SPI, encr=T.ENCR["aes128gcm16"], encr_key=KEYMAT, inbound=True, **kw)


@st.composite
def plaintexts(draw) -> bytes:
    """Inner packet || TFC || padding || pad length || next header, each part
    well formed or subtly not."""
    kind = draw(st.sampled_from(["v4", "v6", "junk", "empty"]))
    body = draw(st.binary(max_size=80))
    if kind == "v4":
        inner = bytearray(ipv4_header("198.51.100.1", "203.0.113.1", 17, len(body)) + body)
        if draw(st.booleans()):  # a wrong total length
            struct.pack_into("!H", inner, 2, draw(st.integers(0, 200)))
        if draw(st.integers(0, 9)) == 0:
            inner[0] = draw(st.integers(0, 255))
        inner = bytes(inner)
        nh = 4
    elif kind == "v6":
        inner = bytearray(ipv6_header("2001:db8::1", "2001:db8::2", 17, len(body)) + body)
        if draw(st.booleans()):
            struct.pack_into("!H", inner, 4, draw(st.integers(0, 200)))
        inner = bytes(inner)
        nh = 41
    elif kind == "junk":
        inner, nh = body, draw(st.integers(0, 255))
    else:
        inner, nh = b"", 59
    if draw(st.integers(0, 4)) == 0:
        nh = draw(st.sampled_from([4, 41, 59, 17, 0, 255]))
    tfc = bytes(draw(st.integers(0, 12))) if draw(st.booleans()) else b""
    unpadded = len(inner) + len(tfc) + 2
    padlen = (-unpadded) % 4 + 4 * draw(st.sampled_from([0, 0, 0, 1, 3]))
    padding = bytearray(PAD_BYTES[padlen])
    if padlen and draw(st.integers(0, 5)) == 0:
        padding[draw(st.integers(0, padlen - 1))] ^= 0xFF
    trailer = bytes(padding) + bytes((padlen, nh))
    if draw(st.integers(0, 9)) == 0:
        trailer = trailer[draw(st.integers(1, len(trailer))) :]  # a truncated trailer
    return inner + tfc + trailer


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.tuples(plaintexts(), st.integers(1, 80)), min_size=1, max_size=12),
    mode=st.sampled_from(["tunnel", "transport"]),
    window=st.sampled_from([0, 1, 32, 64]),
)
def test_fast_and_slow_open_agree(items: list[tuple[bytes, int]], mode: str, window: int) -> None:
    batch = [esp(pt, seq) for pt, seq in items]
    batch += [batch[0], batch[-1][:-1] + bytes((batch[-1][-1] ^ 1,))]  # a replay and a forgery
    fast, slow = inbound(mode=mode, replay_window=window), inbound(mode=mode, replay_window=window)
    assert fast._fast
    got = fast.open_batch(batch)
    want = slow._open_slow(batch, None)
    assert got == want
    assert fast.stats == slow.stats
    assert (fast.replay.top, fast.replay.seen(items[0][1])) == (slow.replay.top, slow.replay.seen(items[0][1]))
    # and the windows agree on every number they could be asked about next
    for seq in range(1, 90):
        assert fast.replay.check(seq) == slow.replay.check(seq)


def test_lean_path_results() -> None:
    """The shortcut's own outcomes: IPv4/IPv6 delivered without TFC or extra
    padding, everything unusual handed to the general checks."""
    v4 = ipv4_header("198.51.100.1", "203.0.113.1", 17, 3) + b"abc"
    v6 = ipv6_header("2001:db8::1", "2001:db8::2", 17, 5) + b"hello"

    def tail(n: int, nh: int) -> bytes:
        p = (-(n + 2)) % 4
        return PAD_BYTES[p] + bytes((p, nh))

    sa = inbound()
    res = sa.open_batch(
        [
            esp(v4 + tail(len(v4), 4), 1),
            esp(v6 + tail(len(v6), 41), 2),
            esp(v4 + b"\0\0\0\0" + tail(len(v4) + 4, 4), 3),  # TFC padding: general path, still delivered
            esp(v4 + tail(len(v4), 41), 4),  # next header says IPv6
            esp(v4[:-1] + tail(len(v4) - 1, 4), 5),  # total length beyond the packet
            esp(b"\x45\x00", 6),  # two bytes: too short for any header
            esp(tail(0, 59), 7),  # dummy
            esp(b"\x45\x00\x00\x04" + tail(4, 4), 8),  # "IPv4" of 4 bytes, trailer right after it
        ]
    )
    assert [r.packet for r in res[:3]] == [v4, v6, v4]
    assert [r.next_header for r in res[:3]] == [4, 41, 4]
    malformed, padding, dummy = DropReason.MALFORMED, DropReason.PADDING, DropReason.DUMMY
    assert [r.drop for r in res] == [None] * 3 + [malformed, malformed, padding, dummy, malformed]
    assert [r.seq for r in res] == list(range(1, 9))
    assert sa.stats.packets_in == 3 and sa.stats.bytes_in == 2 * len(v4) + len(v6)
    assert sa.replay.top == 8


def test_iv_is_taken_from_the_packet() -> None:
    """Peers choose their IVs (Linux seqiv XORs a salt in): the nonce comes from
    the packet, never from the sequence number."""
    v4 = ipv4_header("198.51.100.1", "203.0.113.1", 17, 2) + b"hi"
    pt = v4 + b"\x01\x02\x02\x04"
    sa = inbound()
    r1, r2 = sa.open_batch([esp(pt, 1, iv=b"\xff" * 8), esp(pt, 2, iv=bytes(8))])
    assert r1.packet == r2.packet == v4
