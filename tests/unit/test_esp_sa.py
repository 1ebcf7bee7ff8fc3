"""EspSa/AhSa behaviour: round trips in every mode, drops with the right
reason and counter (never an exception), sequence exhaustion, dummy packets,
TFC padding, ESN, lifetimes and replay logging."""

from __future__ import annotations

import logging
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.crypto import transforms as T
from aioipsec.errors import AlgorithmError, LocalProtocolError
from aioipsec.esp import AhSa, DropReason, EspSa, OpenResult, esp_sa_pair_from_event, natt
from aioipsec.esp.ip import checksum, ipv4_header, ipv6_header
from aioipsec.events import ChildSaExpired, ChildSaInstalled
from aioipsec.selectors import TrafficSelector

SPI = 0xC0FFEE01


def keymat(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 7 + i) & 0xFF for i in range(n))


SUITES = {
    "aes128gcm16": dict(encr=T.ENCR["aes128gcm16"], encr_key=keymat(20)),
    "aes256gcm16": dict(encr=T.ENCR["aes256gcm16"], encr_key=keymat(36)),
    "chacha20poly1305": dict(encr=T.ENCR["chacha20poly1305"], encr_key=keymat(36)),
    "aes128ccm16": dict(encr=T.ENCR["aes128ccm16"], encr_key=keymat(19)),
    "aes128gcm8": dict(encr=T.ENCR["aes128gcm8"], encr_key=keymat(20)),
    "aes128gmac": dict(encr=T.ENCR["aes128gmac"], encr_key=keymat(20)),
    "aes128-sha256": dict(encr=T.ENCR["aes128"], encr_key=keymat(16), integ=T.INTEG["sha256"], integ_key=keymat(32)),
    "aes256ctr-sha1": dict(encr=T.ENCR["aes256ctr"], encr_key=keymat(36), integ=T.INTEG["sha1"], integ_key=keymat(20)),
    "aes128-aesxcbc": dict(encr=T.ENCR["aes128"], encr_key=keymat(16), integ=T.INTEG["aesxcbc"], integ_key=keymat(16)),
    "aes128-aescmac": dict(encr=T.ENCR["aes128"], encr_key=keymat(16), integ=T.INTEG["aescmac"], integ_key=keymat(16)),
}
MAIN = ["aes128gcm16", "chacha20poly1305", "aes128-sha256"]


def pair(suite: str = "aes128gcm16", **kw) -> tuple[EspSa, EspSa]:
    args = {**SUITES[suite], "spi": SPI, **kw}
    return EspSa(inbound=False, **args), EspSa(inbound=True, **args)


def v4(payload: bytes = b"hello", src: str = "198.51.100.1", dst: str = "203.0.113.9", proto: int = 17) -> bytes:
    udp = struct.pack("!HHHH", 1000, 2000, 8 + len(payload), 0) + payload
    return ipv4_header(src, dst, proto, len(udp), ident=7) + udp


def v6(payload: bytes = b"hello6", src: str = "2001:db8::1", dst: str = "2001:db8:1::2", nh: int = 17) -> bytes:
    udp = struct.pack("!HHHH", 1000, 2000, 8 + len(payload), 0) + payload
    return ipv6_header(src, dst, nh, len(udp)) + udp


# ----------------------------------------------------------------- round trips


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("esn", [False, True])
def test_tunnel_batch_round_trip(suite: str, esn: bool) -> None:
    out, inb = pair(suite, esn=esn)
    pkts = [v4(bytes([i]) * i) for i in range(40)] + [v6(b"x" * i) for i in range(0, 300, 37)]
    sealed = out.seal_batch(pkts)
    assert len(sealed) == len(pkts)
    assert all(s[:4] == SPI.to_bytes(4, "big") for s in sealed)
    res = inb.open_batch(sealed)
    assert [r.packet for r in res] == pkts
    assert [r.next_header for r in res] == [4] * 40 + [41] * (len(pkts) - 40)
    assert [r.seq for r in res] == list(range(1, len(pkts) + 1))
    assert out.stats.packets_out == inb.stats.packets_in == len(pkts)
    assert out.stats.bytes_out == inb.stats.bytes_in == sum(map(len, pkts))


@pytest.mark.parametrize("suite", MAIN)
@pytest.mark.parametrize("maker", [v4, v6], ids=["ipv4", "ipv6"])
def test_tunnel_whole_packet_round_trip(suite: str, maker) -> None:
    out, inb = pair(suite)
    inner = maker(b"tunnel payload")
    outer = ("192.0.2.1", "192.0.2.2") if maker is v4 else ("2001:db8::a", "2001:db8::b")
    raw = out.seal_packet(inner, *outer)
    assert raw is not None
    if maker is v4:
        assert raw[9] == 50 and checksum(raw[:20]) == 0 and int.from_bytes(raw[2:4], "big") == len(raw)
    else:
        assert raw[6] == 50 and int.from_bytes(raw[4:6], "big") == len(raw) - 40
    r = inb.open_packet(raw)
    assert r.packet == inner


@pytest.mark.parametrize("suite", MAIN)
@pytest.mark.parametrize("maker", [v4, v6], ids=["ipv4", "ipv6"])
def test_transport_whole_packet_round_trip(suite: str, maker) -> None:
    out, inb = pair(suite, mode="transport")
    pkt = maker(b"transport payload")
    raw = out.seal_packet(pkt)
    assert raw is not None
    hlen = 20 if maker is v4 else 40
    assert raw[:hlen][12:] == pkt[:hlen][12:] if maker is v4 else raw[8:40] == pkt[8:40]
    assert raw[hlen : hlen + 4] == SPI.to_bytes(4, "big")
    r = inb.open_packet(raw)
    assert r.packet == pkt and r.next_header == 17


def test_transport_ipv6_extension_headers_stay_in_front() -> None:
    out, inb = pair(mode="transport")
    udp = struct.pack("!HHHH", 1, 2, 12, 0) + b"data"
    hbh = bytes([17, 0]) + bytes([1, 4, 0, 0, 0, 0])  # next=UDP, len 0, PadN
    pkt = ipv6_header("2001:db8::1", "2001:db8::2", 0, len(hbh) + len(udp)) + hbh + udp
    raw = out.seal_packet(pkt)
    assert raw[6] == 0 and raw[40] == 50  # HbH kept, then ESP
    assert inb.open_packet(raw).packet == pkt


@pytest.mark.parametrize("suite", MAIN)
def test_transport_payload_api(suite: str) -> None:
    out, inb = pair(suite, mode="transport")
    sealed = out.seal_batch([b"", b"a" * 33, b"b" * 1400], next_header=6)
    assert [(r.packet, r.next_header) for r in inb.open_batch(sealed)] == [(b"", 6), (b"a" * 33, 6), (b"b" * 1400, 6)]
    # without next_header: whole IP packets, their payload is protected
    pkts = [v4(b"four"), v6(b"six"), b"x"]
    res = inb.open_batch(out.seal_batch(pkts))
    assert [(r.packet, r.next_header) for r in res] == [(pkts[0][20:], 17), (pkts[1][40:], 17)]
    assert out.stats.malformed == 1
    back = natt.transport_packet(res[0].packet, 17, "198.51.100.1", "203.0.113.9")
    assert back[20:] == pkts[0][20:] and back[9] == 17 and checksum(back[:20]) == 0


# ----------------------------------------------------------------- AH round trips


@pytest.mark.parametrize("integ", ["sha256", "sha1", "sha512", "aesxcbc", "aescmac", "aes128gmac"])
@pytest.mark.parametrize("mode", ["tunnel", "transport"])
@pytest.mark.parametrize("maker", [v4, v6], ids=["ipv4", "ipv6"])
def test_ah_round_trip(integ: str, mode: str, maker) -> None:
    alg = T.ENCR[integ] if integ.endswith("gmac") else T.INTEG[integ]
    kw = dict(spi=SPI, integ=alg, integ_key=keymat(alg.key_len), mode=mode)
    outer = ("192.0.2.1", "192.0.2.2") if maker is v4 else ("2001:db8::a", "2001:db8::b")
    out = AhSa(inbound=False, outer_src=outer[0], outer_dst=outer[1], **kw)
    inb = AhSa(inbound=True, **kw)
    pkts = [maker(bytes([i]) * (i * 11)) for i in range(5)]
    sealed = out.seal_batch(pkts)
    hlen = 20 if maker is v4 else 40
    ah_len = (sealed[0][hlen + 1] + 2) * 4
    assert ah_len % (4 if maker is v4 else 8) == 0
    assert [r.packet for r in inb.open_batch(sealed)] == pkts
    # the same packets again are replays
    assert {r.drop for r in inb.open_batch(sealed)} == {DropReason.REPLAY}
    assert inb.stats.replay_failed == 5


def test_ah_ipv6_mutable_option_may_change() -> None:
    kw = dict(spi=SPI, integ=T.INTEG["sha256"], integ_key=keymat(32), mode="transport")
    out, inb = AhSa(inbound=False, **kw), AhSa(inbound=True, **kw)
    udp = struct.pack("!HHHH", 1, 2, 12, 0) + b"data"
    # Hop-by-Hop with an option whose type has the change-en-route bit (0x3e) and PadN
    hbh = bytes([17, 0, 0x3E, 2, 0xAA, 0xBB, 1, 0])
    pkt = ipv6_header("2001:db8::1", "2001:db8::2", 0, len(hbh) + len(udp)) + hbh + udp
    raw = bytearray(out.seal_packet(pkt))
    raw[44:46] = b"\x11\x22"  # option data changed in transit
    raw[7] = 3  # hop limit
    assert inb.open_packet(bytes(raw)).drop is None
    raw[46] = 0x22  # but PadN's type/length are covered... change an immutable byte
    inb2 = AhSa(inbound=True, **kw)
    assert inb2.open_packet(bytes(raw)).drop is DropReason.INTEGRITY


@pytest.mark.parametrize("maker", [v4, v6], ids=["ipv4", "ipv6"])
def test_ah_and_esp_tunnel_cut_the_inner_packet_alike(maker) -> None:
    """Bytes after the inner packet's own length (TFC-style padding, a sender
    that pads) are cut by its length field, by ESP and AH alike; an IPv6
    payload length of 0 keeps everything."""
    inner = maker(b"abcdefgh")
    padded = inner + bytes(7)
    ah_kw = dict(spi=SPI, integ=T.INTEG["sha256"], integ_key=keymat(32), mode="tunnel")
    outer = ("192.0.2.1", "192.0.2.2") if maker is v4 else ("2001:db8::a", "2001:db8::b")
    ah_out = AhSa(inbound=False, outer_src=outer[0], outer_dst=outer[1], **ah_kw)
    ah_in = AhSa(inbound=True, **ah_kw)
    esp_out, esp_in = pair()
    assert [r.packet for r in ah_in.open_batch(ah_out.seal_batch([padded]))] == [inner]
    assert [r.packet for r in esp_in.open_batch(esp_out.seal_batch([padded]))] == [inner]
    if maker is v6:
        jumbo = bytearray(padded)
        jumbo[4:6] = b"\x00\x00"  # payload length 0: no length to cut by
        assert [r.packet for r in ah_in.open_batch(ah_out.seal_batch([bytes(jumbo)]))] == [bytes(jumbo)]
        assert [r.packet for r in esp_in.open_batch(esp_out.seal_batch([bytes(jumbo)]))] == [bytes(jumbo)]


# ----------------------------------------------------------------- drops, never exceptions


def craft_gcm(spi: int, seq: int, plaintext_with_trailer: bytes, km: bytes = keymat(20)) -> bytes:
    hdr = struct.pack("!IIQ", spi, seq, seq)
    return hdr + AESGCM(km[:16]).encrypt(km[16:] + hdr[8:], plaintext_with_trailer, hdr[:8])


@pytest.mark.parametrize("mode", ["tunnel", "transport"])
def test_drop_reasons_and_counters(mode: str) -> None:
    out, inb = pair(mode=mode)
    nh = None if mode == "tunnel" else 17
    good = out.seal_batch([v4(b"a"), v4(b"b"), v4(b"c")], nh)
    tampered = bytearray(good[2])
    tampered[-3] ^= 0x40
    inner = v4(b"pad")
    bad_pad = craft_gcm(SPI, 10, inner + b"\x01\x07" + b"\x02\x04")  # padding must be 1, 2
    too_long_pad = craft_gcm(SPI, 11, b"\x01\x02" + b"\x09\x04")  # pad length beyond the data
    wrong_spi = craft_gcm(SPI + 1, 12, inner + b"\x01\x02\x02\x04")
    batch = [
        good[0],
        good[0],  # replay
        good[1][:20],  # truncated
        b"",
        bytes(tampered),  # bad ICV
        bad_pad,
        too_long_pad,
        wrong_spi,
        good[1],
        struct.pack("!II", SPI, 0) + good[1][8:],  # sequence number 0 is never valid
    ]
    res = inb.open_batch(batch)
    want = [None, DropReason.REPLAY, DropReason.MALFORMED, DropReason.MALFORMED, DropReason.INTEGRITY,
            DropReason.PADDING, DropReason.PADDING, DropReason.SPI, None, DropReason.REPLAY]
    assert [r.drop for r in res] == want
    st = inb.stats
    assert (st.replay_failed, st.malformed, st.integrity_failed, st.padding_failed) == (2, 2, 1, 2)
    assert st.drops[DropReason.SPI] == 1
    assert st.packets_in == 2
    # the ICV failure did not move the window: the genuine packet still opens
    assert inb.open(good[2]).drop is None


def test_tunnel_inner_must_be_ip() -> None:
    _out, inb = pair()
    not_ip = craft_gcm(SPI, 1, b"\x55" * 30 + b"\x01\x02" + b"\x02\x04")
    v6_said_v4 = craft_gcm(SPI, 2, v6(b"x") + b"\x01\x02" + b"\x02\x04")
    unknown_nh = craft_gcm(SPI, 3, v4(b"x") + b"\x01\x02" + b"\x02\x11")
    short_len = bytearray(v4(b"abcdef"))
    short_len[2:4] = (200).to_bytes(2, "big")  # claims more than it has
    lying = craft_gcm(SPI, 4, bytes(short_len) + b"\x01\x02\x03" + b"\x03\x04")
    res = inb.open_batch([not_ip, v6_said_v4, unknown_nh, lying])
    assert [r.drop for r in res] == [DropReason.MALFORMED] * 4
    assert inb.stats.malformed == 4


@pytest.mark.parametrize("suite", ["aes128gcm16", "aes128-sha256", "aes128gmac", "aes128gcm8"])
@pytest.mark.parametrize("esn", [False, True])
@settings(max_examples=40, deadline=None)
@given(blobs=st.lists(st.binary(max_size=120), max_size=12), data=st.data())
def test_open_batch_never_raises(suite: str, esn: bool, blobs: list[bytes], data: st.DataObject) -> None:
    out, inb = pair(suite, esn=esn)
    good = out.seal_batch([v4(b"q" * 9)] * 3)
    # mutate genuine packets too: truncate, flip a byte, keep the SPI
    for g in good:
        cut = data.draw(st.integers(0, len(g)))
        blobs.append(g[:cut])
        flip = bytearray(g)
        i = data.draw(st.integers(0, len(g) - 1))
        flip[i] ^= data.draw(st.integers(1, 255))
        blobs.append(bytes(flip))
        blobs.append(SPI.to_bytes(4, "big") + data.draw(st.binary(max_size=80)))
    res = inb.open_batch(blobs)
    assert len(res) == len(blobs)
    for b, r in zip(blobs, res):
        assert isinstance(r, OpenResult)
        assert (r.packet is None) != (r.drop is None)
        if r.drop is None:
            assert b in good  # only untouched packets open
    assert sum(inb.stats.drops.values()) == sum(r.drop is not None for r in res)


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=200))
def test_ah_and_whole_packet_open_never_raise(blob: bytes) -> None:
    ah = AhSa(inbound=True, spi=SPI, integ=T.INTEG["sha256"], integ_key=keymat(32), mode="transport")
    assert ah.open_packet(blob).drop is not None
    ah_gmac = AhSa(inbound=True, spi=SPI, integ=T.ENCR["aes128gmac"], integ_key=keymat(20))
    assert ah_gmac.open_packet(v4() if not blob else blob).drop is not None
    _o, esp = pair(mode="transport")
    assert esp.open_packet(blob).drop is not None
    # an IPv4 header claiming ESP around random bytes
    raw = ipv4_header("192.0.2.1", "192.0.2.2", 50, len(blob)) + blob
    assert esp.open_packet(raw).drop is not None


# ----------------------------------------------------------------- sequence numbers, dummies, TFC


def test_seq_exhaustion_without_esn() -> None:
    out, inb = pair()
    out.seq = 2**32 - 3
    sealed = out.seal_batch([v4(b"1"), v4(b"2"), v4(b"3"), v4(b"4"), v4(b"5")])
    assert len(sealed) == 2
    assert [struct.unpack("!I", s[4:8])[0] for s in sealed] == [2**32 - 2, 2**32 - 1]
    assert out.next_event() == ChildSaExpired(SPI, False, "seq")  # the rekey request comes first
    ev = out.next_event()
    assert ev == ChildSaExpired(SPI, True, "seq-exhausted")
    assert out.next_event() is None
    assert out.stats.drops[DropReason.EXPIRED] == 3
    assert out.seal(v4()) is None and out.make_dummy() is None
    assert out.next_event() is None  # reported once
    inb.replay.set_top(2**32 - 3)
    assert [r.packet for r in inb.open_batch(sealed)] == [v4(b"1"), v4(b"2")]


def test_esn_continues_past_2_32() -> None:
    out, inb = pair(esn=True)
    out.seq = 2**32 - 2
    inb.replay.set_top(2**32 - 2)
    sealed = out.seal_batch([v4(bytes([i])) for i in range(4)])
    assert len(sealed) == 4 and out.next_event() is None
    assert [struct.unpack("!I", s[4:8])[0] for s in sealed] == [2**32 - 1, 0, 1, 2]
    res = inb.open_batch(sealed[::-1])  # reordered across the wrap
    assert [r.seq for r in res] == [2**32 + 2, 2**32 + 1, 2**32, 2**32 - 1]
    assert all(r.drop is None for r in res)


def test_dummy_packets_are_dropped_as_dummy() -> None:
    out, inb = pair()
    d = out.make_dummy(48)
    r = inb.open(d)
    assert r.drop is DropReason.DUMMY and inb.stats.dummy == 1
    assert inb.open(out.seal(v4())).packet == v4()  # and the SA keeps working


@pytest.mark.parametrize("suite", ["aes128gcm16", "aes128-sha256"])
def test_tfc_padding_round_trip(suite: str) -> None:
    out, inb = pair(suite, tfc_pad=300)
    plain_out, _ = pair(suite)
    small, big = v4(b"s"), v4(b"B" * 400)
    sealed = out.seal_batch([small, big, v6(b"6")])
    assert len(sealed[0]) > len(plain_out.seal(small)) + 250  # padded towards 300
    assert len(sealed[0]) == len(sealed[2])
    assert [r.packet for r in inb.open_batch(sealed)] == [small, big, v6(b"6")]


def test_fast_and_generic_paths_agree() -> None:
    fast, _ = pair()
    slow, _ = pair()
    pkts = [v4(b"z" * i) for i in range(20)]
    a = fast.seal_batch(pkts)
    b = [slow.seal(p, iv=(i + 1).to_bytes(8, "big")) for i, p in enumerate(pkts)]  # generic path
    assert a == b
    _o, inb = pair()
    bad = [b"junk"] + a  # the generic fallback for a batch with a non-IP packet
    fast2, _ = pair()
    assert fast2.seal_batch([b"", b"\x00" * 30] + pkts) == a
    assert fast2.stats.malformed == 2
    assert [r.packet for r in inb.open_batch(bad)][1:] == pkts


# ----------------------------------------------------------------- lifetimes, policy, config


def test_soft_and_hard_packet_limits() -> None:
    out, inb = pair(soft_packets=3, hard_packets=5)
    sealed = out.seal_batch([v4()] * 2)
    assert out.next_event() is None
    sealed += out.seal_batch([v4()] * 2)
    assert out.next_event() == ChildSaExpired(SPI, False, "packets")
    sealed += out.seal_batch([v4()] * 3)
    assert len(sealed) == 5
    assert out.next_event() == ChildSaExpired(SPI, True, "packets")
    assert out.seal(v4()) is None and out.next_event() is None
    res = inb.open_batch(sealed + sealed[:1])
    assert sum(r.drop is None for r in res) == 5
    assert res[-1].drop is DropReason.EXPIRED
    assert [e.hard for e in iter(inb.next_event, None)] == [False, True]


def test_byte_limits() -> None:
    out, _ = pair(soft_bytes=100, hard_bytes=1000)
    out.seal_batch([v4(b"x" * 100)])
    assert out.next_event() == ChildSaExpired(SPI, False, "bytes")
    out.seal_batch([v4(b"x" * 1000)])
    assert out.next_event() == ChildSaExpired(SPI, True, "bytes")
    assert out.seal_batch([v4()]) == [] and out.stats.drops[DropReason.EXPIRED] == 1


def test_policy_hook() -> None:
    out, _ = pair()
    _o, inb = pair(check=lambda p: p[12:16] == bytes([198, 51, 100, 1]))
    res = inb.open_batch(out.seal_batch([v4(), v4(src="198.51.100.7")]))
    assert [r.drop for r in res] == [None, DropReason.POLICY]
    assert inb.stats.drops[DropReason.POLICY] == 1


def test_legacy_and_misuse_refused() -> None:
    with pytest.raises(AlgorithmError):
        EspSa(spi=1, encr=T.ENCR["aes128"], encr_key=keymat(16), inbound=True)  # no integrity
    with pytest.raises(AlgorithmError):
        EspSa(spi=1, encr=T.ENCR["aes128gcm16"], encr_key=keymat(20), integ=T.INTEG["sha1"],
              integ_key=keymat(20), inbound=True)
    with pytest.raises(AlgorithmError):
        EspSa(spi=1, encr=None, integ=T.INTEG["md5"], integ_key=keymat(16), inbound=True)
    EspSa(spi=1, encr=None, integ=T.INTEG["sha256"], integ_key=keymat(32), inbound=True, allow_legacy=True)
    out, inb = pair()
    with pytest.raises(LocalProtocolError):
        inb.seal(v4())
    with pytest.raises(LocalProtocolError):
        out.open(b"")
    with pytest.raises(LocalProtocolError):
        pair(mode="beet")


def test_replay_logged_once_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    out, inb = pair()
    sealed = out.seal_batch([v4()] * 3)
    inb.open_batch(sealed)
    caplog.set_level(logging.WARNING, logger="aioipsec.esp")
    for _ in range(5):
        inb.open_batch(sealed)  # a burst of replays
    lines = [r.getMessage() for r in caplog.records if "PKT_REPLAY_ERR" in r.getMessage()]
    assert lines == [f"PKT_REPLAY_ERR spi=0x{SPI:08x} seq=1 count=3"]
    assert inb.stats.replay_failed == 15
    inb.open_batch(out.seal_batch([v4()]))  # burst over
    inb.open_batch(sealed)
    assert len([r for r in caplog.records if "PKT_REPLAY_ERR" in r.getMessage()]) == 2
    # with a clock: at most once per second inside a burst
    caplog.clear()
    for t in (10.0, 10.5, 11.2, 11.4):
        inb.open_batch(sealed, now=t)
    assert len([r for r in caplog.records if "PKT_REPLAY_ERR" in r.getMessage()]) == 2


def _event(local_spi: int, remote_spi: int, kin: bytes, kout: bytes, ik_in: bytes, ik_out: bytes, **kw) -> ChildSaInstalled:
    base = dict(
        name="lan", protocol="esp", mode="tunnel", spi_in=local_spi, spi_out=remote_spi,
        encr=T.ENCR["aes128"], integ=T.INTEG["sha256"], encr_key_in=kin, encr_key_out=kout,
        integ_key_in=ik_in, integ_key_out=ik_out, esn=False,
        local_ts=(TrafficSelector.from_cidr("198.51.100.0/24"),), remote_ts=(TrafficSelector.from_cidr("203.0.113.0/24"),),
        local_addr=("192.0.2.1", 4500), remote_addr=("192.0.2.2", 4500), encap=True, initiator=True,
    )
    base.update(kw)
    return ChildSaInstalled(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("proto", ["esp", "ah"])
def test_pair_from_event_talks_to_its_mirror(proto: str) -> None:
    ka, kb, ia, ib = keymat(16, 1), keymat(16, 2), keymat(32, 3), keymat(32, 4)
    extra = dict(protocol=proto, life_packets=10)
    if proto == "ah":
        extra.update(encr=None, encr_key_in=b"", encr_key_out=b"")
    a_in, a_out = esp_sa_pair_from_event(_event(0x100, 0x200, ka, kb, ia, ib, **extra))
    b_in, b_out = esp_sa_pair_from_event(
        _event(0x200, 0x100, kb, ka, ib, ia, local_addr=("192.0.2.2", 4500), remote_addr=("192.0.2.1", 4500), **extra))
    assert a_out.spi == b_in.spi == 0x200 and a_in.spi == b_out.spi == 0x100
    assert a_out.soft_packets == 9 and a_out.hard_packets == 10
    pkts = [v4(b"to-b"), v4(b"more")]
    assert [r.packet for r in b_in.open_batch(a_out.seal_batch(pkts))] == pkts
    assert [r.packet for r in a_in.open_batch(b_out.seal_batch(pkts))] == pkts
