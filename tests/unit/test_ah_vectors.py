"""AH (RFC 4302) against the DPDK whole-packet vectors: HMAC-SHA256 tunnel
and transport, AES-GMAC transport (mutable IPv4 fields zeroed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aioipsec.crypto import transforms as T
from aioipsec.esp import AhSa, DropReason

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
H = bytes.fromhex

AH = [r for r in json.loads((VECTORS / "esp_ah_full_packets_dpdk.json").read_text())["records"] if r["protocol"] == "AH"]


def test_ah_count() -> None:
    assert len(AH) == 3


def _kw(rec: dict) -> dict:
    if rec["algorithms"] == ["AUTH_AES_GMAC"]:
        key = H(rec["auth_key"]) + H(rec["salt"])
        integ: T.IntegAlg | T.EncrAlg = T.ENCR[f"aes{(len(key) - 4) * 8}gmac"]
    else:
        key = H(rec["auth_key"])
        integ = T.INTEG["sha256"]
    return dict(spi=int(rec["spi"], 16), integ=integ, integ_key=key, mode=rec["mode"].lower())


@pytest.mark.parametrize("rec", AH, ids=[r["id"] for r in AH])
def test_dpdk_ah_packets(rec: dict) -> None:
    clear, protected = H(rec["input_packet"]), H(rec["output_packet"])
    out = AhSa(inbound=False, **_kw(rec))
    inb = AhSa(inbound=True, **_kw(rec))
    extra = {}
    if rec["mode"] == "TUNNEL":
        extra = dict(outer_src=protected[12:16], outer_dst=protected[16:20], ttl=protected[8],
                     ident=int.from_bytes(protected[4:6], "big"), tos=protected[1], df=False)
    got = out.seal_packet(clear, seq=rec["seq"], iv=H(rec["iv"]) if rec.get("iv") else None, **extra)
    assert got == protected
    ah_off = (protected[0] & 0x0F) * 4
    assert protected[ah_off] == rec["ah_next_header"] and protected[ah_off + 1] == rec["ah_payload_len_field"]
    r = inb.open_packet(protected)
    assert r.drop is None, r.drop
    assert r.packet == clear
    assert r.next_header == rec["ah_next_header"]
    # mutable fields may change in transit: TTL and checksum, TOS
    moved = bytearray(protected)
    moved[8] = (moved[8] - 1) & 0xFF
    moved[1] = 0x20
    moved[10:12] = b"\x12\x34"
    inb2 = AhSa(inbound=True, **_kw(rec))
    r2 = inb2.open_packet(bytes(moved))
    assert r2.drop is None
    if rec["mode"] == "TUNNEL":
        assert r2.packet == clear
    else:  # the rebuilt header keeps what changed in transit
        assert r2.packet[12:] == clear[12:] and r2.packet[1] == 0x20
    # an immutable field (destination address) may not
    bad = bytearray(protected)
    bad[19] ^= 1
    inb3 = AhSa(inbound=True, **_kw(rec))
    assert inb3.open_packet(bytes(bad)).drop is DropReason.INTEGRITY
    assert inb3.stats.integrity_failed == 1
    assert inb2.open_packet(bytes(moved)).drop is DropReason.REPLAY
