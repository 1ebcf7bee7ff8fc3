"""``EspSa.open_packets`` (delivered packets only, the data plane's call)
against ``EspSa.open_batch`` (one result per datagram).

``open_packets`` takes a batch-level path for a run of consecutive sequence
numbers above the window (``_open_run``) and the per-packet loops otherwise;
``open_batch`` always goes packet by packet.  For any mix of genuine,
replayed, corrupted, truncated and foreign datagrams both must deliver the
same packets, count the same drops and leave the same replay window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.crypto import transforms as T
from aioipsec.esp import DropReason, EspSa
from aioipsec.esp.ip import ipv4_header, ipv6_header

from test_esp_fastpath import SPI, esp, plaintexts

KEYMAT = bytes(range(1, 21))


def pair(**kw) -> tuple[EspSa, EspSa]:
    mk = lambda: EspSa(spi=SPI, encr=T.ENCR["aes128gcm16"], encr_key=KEYMAT, inbound=True, **kw)  # noqa: E731
    return mk(), mk()


def inner(i: int, v6: bool = False) -> bytes:
    body = bytes((i + j) & 0xFF for j in range(i % 50))
    if v6:
        return ipv6_header("2001:db8::1", "2001:db8::2", 17, len(body)) + body
    return ipv4_header("198.51.100.1", "203.0.113.1", 17, len(body), ident=i) + body


def well_formed(pkt: bytes) -> bytes:
    nh = 4 if pkt[0] >> 4 == 4 else 41
    padlen = (-(len(pkt) + 2)) % 4
    return pkt + bytes(range(1, padlen + 1)) + bytes((padlen, nh))


@st.composite
def batches(draw) -> list[list[bytes]]:
    """Batches that are mostly consecutive runs (the batch path) with
    replays, gaps, forged ICVs, truncation, other SPIs and odd plaintexts."""
    out = []
    seq = draw(st.integers(0, 3))
    for _ in range(draw(st.integers(1, 5))):
        batch = []
        for _ in range(draw(st.integers(1, 10))):
            kind = draw(st.sampled_from(["good"] * 8 + ["odd", "forged", "replay", "gap", "short", "spi"]))
            if kind == "gap":
                seq += draw(st.integers(2, 100))
            elif kind != "replay":
                seq += 1
            s = max(1, seq - draw(st.integers(0, 70))) if kind == "replay" else seq
            pt = draw(plaintexts()) if kind == "odd" else well_formed(inner(s, draw(st.booleans())))
            d = esp(pt, s, spi=SPI + 1 if kind == "spi" else SPI)
            if kind == "forged":
                d = d[:-1] + bytes((d[-1] ^ 1,))
            elif kind == "short":
                d = d[: draw(st.integers(0, 33))]
            batch.append(d)
        out.append(batch)
    return out


@settings(max_examples=300, deadline=None)
@given(
    bs=batches(),
    mode=st.sampled_from(["tunnel", "transport"]),
    window=st.sampled_from([0, 32, 64, 300]),
    hook=st.booleans(),
)
def test_open_packets_matches_open_batch(bs, mode, window, hook) -> None:
    check = (lambda p: len(p) % 3 != 0) if hook else None
    a, b = pair(mode=mode, replay_window=window, check=check)
    for batch in bs:
        expect = [r.packet for r in a.open_batch(batch) if r.packet is not None]
        assert b.open_packets(batch) == expect
        assert b.stats == a.stats
        assert b.replay.top == a.replay.top
        mask = (1 << window) - 1
        assert b.replay.bitmap & mask == a.replay.bitmap & mask


def test_run_path_taken_and_counts() -> None:
    a, _ = pair()
    pkts = [inner(i) for i in range(1, 65)]
    batch = [esp(well_formed(p), s) for s, p in enumerate(pkts, 1)]
    a._open_fast = None  # type: ignore[assignment,method-assign]  # the run path must not need it
    assert a.open_packets(batch) == pkts
    assert a.stats.packets_in == 64 and a.stats.bytes_in == sum(map(len, pkts))
    assert a.replay.top == 64 and a.replay.bitmap & ((1 << 64) - 1) == (1 << 64) - 1


def test_forged_packet_in_a_run_is_not_committed() -> None:
    a, _ = pair()
    batch = [esp(well_formed(inner(s)), s) for s in range(1, 6)]
    genuine3 = batch[2]
    batch[2] = genuine3[:-1] + bytes((genuine3[-1] ^ 0x80,))
    assert a.open_packets(batch) == [inner(s) for s in (1, 2, 4, 5)]
    assert a.stats.integrity_failed == 1 and a.stats.drops == {DropReason.INTEGRITY: 1}
    # the forged copy did not use up number 3: the genuine one is accepted once
    assert a.open_packets([genuine3]) == [inner(3)]
    assert a.open_packets([genuine3]) == []
    assert a.stats.replay_failed == 1


@pytest.mark.parametrize("n", [1, 64, 65, 200])
def test_runs_longer_than_the_window(n: int) -> None:
    a, b = pair(replay_window=64)
    batch = [esp(well_formed(inner(s)), s) for s in range(1, n + 1)]
    assert b.open_packets(batch) == [r.packet for r in a.open_batch(batch)] == [inner(s) for s in range(1, n + 1)]
    # every number in the window is used up, older ones are out of it: all replays
    old = [esp(well_formed(inner(s)), s) for s in sorted({n, max(1, n - 63), max(1, n - 64)})]
    assert b.open_packets(old) == [r.packet for r in a.open_batch(old) if r.packet is not None] == []
    assert b.stats == a.stats and b.stats.replay_failed == len(old)


def test_expired_and_limits_counted_alike() -> None:
    a, b = pair(hard_packets=3)
    batch = [esp(well_formed(inner(s)), s) for s in range(1, 6)]
    assert b.open_packets(batch) == [r.packet for r in a.open_batch(batch) if r.packet is not None] == [inner(s) for s in (1, 2, 3)]
    assert b.stats == a.stats and b.stats.drops[DropReason.EXPIRED] == 2
    assert b.next_event() == a.next_event() and b.expired
    assert b.open_packets(batch[:1]) == [] and b.stats.drops[DropReason.EXPIRED] == 3


def test_replay_log_once_per_burst(caplog) -> None:
    a, _ = pair()
    batch = [esp(well_formed(inner(s)), s) for s in range(1, 4)]
    a.open_packets(batch)
    with caplog.at_level("WARNING", logger="aioipsec.esp"):
        a.open_packets(batch)
        a.open_packets(batch)
    assert [r.message for r in caplog.records if "PKT_REPLAY_ERR" in r.message] == [
        f"PKT_REPLAY_ERR spi=0x{SPI:08x} seq=1 count=3"
    ]


class _CountingAead:
    def __init__(self, aead) -> None:  # type: ignore[no-untyped-def]
        self.aead, self.calls = aead, 0

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        self.calls += 1
        return self.aead.decrypt(nonce, data, aad)


def test_run_resumes_after_failed_tags_with_one_decrypt_per_packet() -> None:
    """Forged packets at the start, middle and end of a run and an odd
    plaintext in it: the run path still handles the batch (no per-packet
    fallback), decrypts each datagram once, and delivers the rest in order."""
    a, _ = pair()
    pkts = {s: inner(s, s % 2 == 0) for s in range(1, 65)}
    batch = [esp(well_formed(pkts[s]), s) for s in range(1, 65)]
    for s in (1, 11, 64):
        d = batch[s - 1]
        batch[s - 1] = d[:-1] + bytes((d[-1] ^ 1,))
    batch[29] = esp(b"\x45\x00", 30)  # authentic, but no trailer to speak of: dropped as PADDING/MALFORMED
    a._open_fast = None  # type: ignore[assignment,method-assign]
    counter = _CountingAead(a.codec.encr.aead_obj)
    a.codec.encr.aead_obj = counter
    got = a.open_packets(batch)
    assert counter.calls == 64
    assert got == [pkts[s] for s in range(1, 65) if s not in (1, 11, 30, 64)]
    assert a.stats.integrity_failed == 3 and a.stats.packets_in == 60
    assert sum(a.stats.drops.values()) == 4
    del a._open_fast  # single datagrams below take the per-packet path
    # authenticated numbers are used up, forged ones are not
    assert a.open_packets([batch[29]]) == [] and a.stats.replay_failed == 1
    assert a.open_packets([esp(well_formed(pkts[11]), 11)]) == [pkts[11]]


def test_datagram_shorter_than_its_head_in_a_run_is_malformed_and_not_committed() -> None:
    # the run path copies the 16-byte heads with one struct call, which pads
    # a shorter datagram with zeros: with SPI | seq intact it still fits the
    # run, and must be dropped as MALFORMED without using up its number
    a, _ = pair()
    batch = [esp(well_formed(inner(s)), s) for s in range(1, 6)]
    genuine3 = batch[2]
    batch[2] = genuine3[:12]
    a._open_fast = None  # type: ignore[assignment,method-assign]  # handled on the run path
    assert a.open_packets(batch) == [inner(s) for s in (1, 2, 4, 5)]
    assert a.stats.drops == {DropReason.MALFORMED: 1} and a.stats.packets_in == 4
    del a._open_fast  # the genuine number 3 on its own takes the general path
    assert a.open_packets([genuine3]) == [inner(3)]
    assert a.open_packets([genuine3]) == []
    assert a.stats.replay_failed == 1


def test_run_of_bytes_like_datagrams() -> None:
    a, b = pair()
    batch = [esp(well_formed(inner(s)), s) for s in range(1, 9)]
    assert a.open_packets([bytearray(d) for d in batch]) == [inner(s) for s in range(1, 9)]
    more = [esp(well_formed(inner(s)), s) for s in range(9, 17)]
    assert a.open_packets([memoryview(d) for d in more]) == [inner(s) for s in range(9, 17)]
    assert a.stats.packets_in == 16 and a.replay.top == 16
