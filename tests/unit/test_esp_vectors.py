"""ESP against published whole-packet vectors: seal with the given IV and
sequence number must give the exact bytes, open must give the exact
plaintext.  Sources and layouts: tests/vectors/README.md and each file's
``notes``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aioipsec.crypto import transforms as T
from aioipsec.crypto.cipher import des_supported
from aioipsec.esp import DropReason, EspSa

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
H = bytes.fromhex


def _records(name: str) -> list[dict]:
    return json.loads((VECTORS / name).read_text())["records"]


def _pair(**kw) -> tuple[EspSa, EspSa]:
    return EspSa(inbound=False, **kw), EspSa(inbound=True, **kw)


# ----------------------------------------------------------------- draft-mcgrew-gcm-test-01 (17 packets)

MCGREW = _records("esp_aes_gcm_draft-mcgrew-gcm-test-01.json")


def test_mcgrew_count() -> None:
    assert len(MCGREW) == 17


@pytest.mark.parametrize("rec", MCGREW, ids=[r["id"] for r in MCGREW])
def test_mcgrew_gcm_gmac_packets(rec: dict) -> None:
    packet = H(rec["packet"])
    gmac = rec["algorithm"] == "AES-GMAC-ESP"
    bits = rec["key_bits"]
    alg = T.ENCR[f"aes{bits}gmac" if gmac else f"aes{bits}gcm16"]
    seq = int(rec["seq"], 16)
    if gmac:  # payload || trailer travels in clear, before the 16-byte tag
        body = packet[16:-16]
        nh = body[-1]
        payload = body[: len(body) - 2 - body[-2]]
    else:
        pt = H(rec["plaintext"])
        nh = rec["trailer_next_header"]
        payload = pt[: len(pt) - 2 - rec["trailer_pad_length"]]
        assert pt[len(payload) :] == H(rec["trailer_padding"]) + bytes([rec["trailer_pad_length"], nh])
    # next header 1 (the draft's framing): transport mode takes the payload as is
    out, inb = _pair(spi=int(rec["spi"], 16), encr=alg, encr_key=H(rec["key"]) + H(rec["salt"]),
                     mode="transport", esn=rec["esn"])
    assert out.seal(payload, nh, seq=seq, iv=H(rec["iv"])) == packet
    if seq > 1:
        inb.replay.set_top(seq - 1)  # the receiver has seen everything before
    r = inb.open(packet)
    assert r.drop is None, r.drop
    assert r.packet == payload
    assert r.next_header == nh
    assert r.seq == seq
    assert inb.open(packet).drop is DropReason.REPLAY  # the same packet again
    assert inb.stats.replay_failed == 1
    bad = bytearray(packet)
    bad[-1] ^= 1
    inb2 = EspSa(spi=int(rec["spi"], 16), encr=alg, encr_key=H(rec["key"]) + H(rec["salt"]),
                 mode="transport", esn=rec["esn"], inbound=True)
    inb2.replay.set_top(max(seq - 1, 0))
    assert inb2.open(bytes(bad)).drop.name == "INTEGRITY"
    assert inb2.stats.integrity_failed == 1


# ----------------------------------------------------------------- RFC 3602 ESP cases 5-8

CBC_ESP = [r for r in _records("esp_aes_cbc_rfc3602.json") if r["kind"].startswith("ESP")]


def test_rfc3602_esp_count() -> None:
    assert [r["id"] for r in CBC_ESP] == [f"rfc3602-case{i}" for i in range(5, 9)]


@pytest.mark.parametrize("rec", CBC_ESP, ids=[r["id"] for r in CBC_ESP])
def test_rfc3602_esp_packets(rec: dict) -> None:
    tunnel = "tunnel" in rec["kind"]
    # encryption-only ESP (no ICV) as in the RFC's examples: a legacy opt-in
    kw = dict(spi=int(rec["spi"], 16), encr=T.ENCR["aes128"], encr_key=H(rec["key"]),
              mode="tunnel" if tunnel else "transport", allow_legacy=True)
    out, inb = _pair(**kw)
    payload, nh = H(rec["inner_payload"]), rec["next_header"]
    esp = out.seal(payload, None if tunnel else nh, seq=rec["seq"], iv=H(rec["iv"]))
    assert esp == H(rec["esp_packet"])
    r = inb.open(esp)
    assert (r.packet, r.next_header) == (payload, nh)
    if rec.get("full_ip_packet"):
        full = H(rec["full_ip_packet"])
        out2, inb2 = _pair(**kw)
        if tunnel:
            outer = H(rec["outer_ip_header"])
            got = out2.seal_packet(payload, outer[12:16], outer[16:20], ttl=outer[8],
                                   ident=int.from_bytes(outer[4:6], "big"), seq=rec["seq"], iv=H(rec["iv"]))
            assert got == full
            assert inb2.open_packet(full).packet == payload
        else:
            original = H(rec["original_ip_header"]) + payload
            assert out2.seal_packet(original, seq=rec["seq"], iv=H(rec["iv"])) == full
            r2 = inb2.open_packet(full)
            assert r2.packet == original and r2.next_header == nh


# ----------------------------------------------------------------- RFC 7634 Appendix A (ESP)

CHACHA_ESP = [r for r in _records("esp_ike_chacha20poly1305_rfc7634.json") if "esp_packet_derived" in r]


def test_rfc7634_esp_count() -> None:
    assert len(CHACHA_ESP) == 1


@pytest.mark.parametrize("rec", CHACHA_ESP, ids=[r["id"] for r in CHACHA_ESP])
def test_rfc7634_appendix_a(rec: dict) -> None:
    pt = H(rec["plaintext"])
    payload = pt[: len(pt) - 2 - rec["pad_length"]]
    out, inb = _pair(spi=int(rec["spi"], 16), encr=T.ENCR["chacha20poly1305"],
                     encr_key=H(rec["key"]) + H(rec["salt"]), mode="tunnel")
    esp = out.seal(payload, seq=rec["seq"], iv=H(rec["iv"]))
    assert esp == H(rec["esp_packet_derived"])
    assert esp[-16:] == H(rec["icv"])
    r = inb.open(esp)
    assert (r.packet, r.next_header, r.seq) == (payload, rec["next_header"], rec["seq"])


# ----------------------------------------------------------------- DPDK whole packets (ESP part)

DPDK = _records("esp_ah_full_packets_dpdk.json")
DPDK_ESP = [r for r in DPDK if r["protocol"] == "ESP"]

_ENCR = {
    "AEAD_AES_GCM": "aes{bits}gcm16",
    "AEAD_AES_CCM": "aes{bits}ccm16",
    "CIPHER_AES_CBC": "aes{bits}",
    "CIPHER_AES_CTR": "aes{bits}ctr",
    "CIPHER_3DES_CBC": "3des",
    "CIPHER_DES_CBC": "des",
    "CIPHER_NULL": "null",
}
_INTEG = {
    "AUTH_NULL": None,
    "AUTH_MD5_HMAC": "md5",
    "AUTH_SHA256_HMAC": "sha256",
    "AUTH_SHA384_HMAC": "sha384",
    "AUTH_SHA512_HMAC": "sha512",
    "AUTH_AES_XCBC_MAC": "aesxcbc",
}


def dpdk_algs(rec: dict) -> tuple[T.EncrAlg | None, T.IntegAlg | None, bytes, bool]:
    """(encr, integ, keymat, legacy?) for a DPDK record."""
    encr = integ = None
    legacy = False
    key = H(rec["enc_key"]) if rec["enc_key"] else b""
    for a in rec["algorithms"]:
        if a in _ENCR:
            encr = T.ENCR[_ENCR[a].format(bits=len(key) * 8)]
            legacy |= encr.legacy
        elif a in _INTEG:
            if _INTEG[a] is not None:
                integ = T.INTEG[_INTEG[a]]
                legacy |= integ.legacy
            else:
                legacy = True  # encryption without integrity
    if len(rec["algorithms"]) == 1 and encr is not None and not encr.aead:
        legacy = True
    return encr, integ, key + (H(rec["salt"]) if rec["salt"] else b""), legacy


def outer_fields(pkt: bytes) -> dict:
    if pkt[0] >> 4 == 4:
        return dict(outer_src=pkt[12:16], outer_dst=pkt[16:20], ttl=pkt[8], tos=pkt[1],
                    ident=int.from_bytes(pkt[4:6], "big"), df=bool(pkt[6] & 0x40))
    return dict(outer_src=pkt[8:24], outer_dst=pkt[24:40], ttl=pkt[7],
                tos=((pkt[0] & 0x0F) << 4) | (pkt[1] >> 4),
                flow_label=int.from_bytes(pkt[1:4], "big") & 0xFFFFF)


def _dpdk_id(rec: dict) -> str:
    encr, integ, _k, legacy = dpdk_algs(rec)
    return rec["id"] + ("-legacy" if legacy else "")


def test_dpdk_esp_count() -> None:
    assert len(DPDK_ESP) == 24 and len(DPDK) == 27


@pytest.mark.parametrize("rec", DPDK_ESP, ids=[_dpdk_id(r) for r in DPDK_ESP])
def test_dpdk_esp_packets(rec: dict) -> None:
    encr, integ, keymat, legacy = dpdk_algs(rec)
    assert encr is not None
    if encr.name in ("des", "3des") and not des_supported():
        pytest.skip("this cryptography build no longer offers (Triple)DES")
    kw = dict(spi=int(rec["spi"], 16), encr=encr, encr_key=keymat, integ=integ,
              integ_key=H(rec["auth_key"]) if rec["auth_key"] else b"", mode=rec["mode"].lower(),
              allow_legacy=legacy)
    if legacy:  # refused without the explicit opt-in
        with pytest.raises(T.AlgorithmError):
            EspSa(inbound=False, **{**kw, "allow_legacy": False})
    out, inb = _pair(**kw)
    clear, protected = H(rec["input_packet"]), H(rec["output_packet"])
    got = out.seal_packet(clear, seq=rec["seq"], iv=H(rec["iv"]), **outer_fields(protected))
    assert got == protected
    r = inb.open_packet(protected)
    assert r.drop is None, r.drop
    assert r.packet == clear
    assert r.next_header == rec["next_header"]
    assert inb.stats.packets_in == 1 and inb.stats.bytes_in == len(clear)
