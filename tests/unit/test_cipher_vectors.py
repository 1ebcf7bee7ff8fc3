"""Cipher and integrity objects against published vectors and round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.crypto import transforms as T
from aioipsec.crypto.cipher import Encr, des_supported, make_encr, make_integ
from aioipsec.errors import IntegrityError, LocalProtocolError

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def _records(name: str) -> list[dict]:
    return json.loads((VECTORS / name).read_text())["records"]


H = bytes.fromhex

# ----------------------------------------------------------------- RFC 3602 cases 1-4 (raw AES-CBC)

CBC_RAW = [r for r in _records("esp_aes_cbc_rfc3602.json") if r["kind"] == "raw AES-CBC"]


@pytest.mark.parametrize("rec", CBC_RAW, ids=[r["id"] for r in CBC_RAW])
def test_rfc3602_raw_cbc(rec: dict) -> None:
    key = H(rec["key"])
    alg = T.encr(f"aes{len(key) * 8}")
    enc = make_encr(alg, key)
    assert enc.encrypt(H(rec["iv"]), H(rec["plaintext"])) == H(rec["ciphertext"])
    assert enc.decrypt(H(rec["iv"]), H(rec["ciphertext"])) == H(rec["plaintext"])


def test_rfc3602_raw_count() -> None:
    assert len(CBC_RAW) == 4


# ----------------------------------------------------------------- RFC 7539/7634 raw AEAD records

CHACHA = _records("esp_ike_chacha20poly1305_rfc7634.json")


@pytest.mark.parametrize("rec", CHACHA, ids=[r["id"] for r in CHACHA])
def test_chacha20poly1305_raw_aead(rec: dict) -> None:
    enc = make_encr(T.encr("chacha20poly1305"), H(rec["key"]) + H(rec["salt"]))
    out = enc.encrypt(H(rec["iv"]), H(rec["plaintext"]), H(rec["aad"]))
    assert out == H(rec["ciphertext_and_tag"])
    assert out[-16:] == H(rec["icv"])
    assert enc.decrypt(H(rec["iv"]), out, H(rec["aad"])) == H(rec["plaintext"])
    bad = bytearray(out)
    bad[0] ^= 1
    with pytest.raises(IntegrityError):
        enc.decrypt(H(rec["iv"]), bytes(bad), H(rec["aad"]))


# ----------------------------------------------------------------- RFC 4868 truncated ICVs

_AUTH_NAMES = {
    "AUTH_HMAC_SHA2_256_128": "sha256",
    "AUTH_HMAC_SHA2_384_192": "sha384",
    "AUTH_HMAC_SHA2_512_256": "sha512",
}
SHA2 = [r for r in _records("prf_integ_hmac_sha2_rfc4868.json") if r["algorithm"].startswith("AUTH_")]


@pytest.mark.parametrize("rec", SHA2, ids=[r["id"] for r in SHA2])
def test_rfc4868_icv(rec: dict) -> None:
    integ = make_integ(T.integ(_AUTH_NAMES[rec["algorithm"]]), H(rec["key"]))
    icv = integ.sign(H(rec["data"]))
    assert icv == H(rec["expected"])
    assert integ.verify(H(rec["data"]), icv)
    assert not integ.verify(H(rec["data"]) + b"x", icv)
    assert integ.sign_parts(H(rec["data"])[:3], H(rec["data"])[3:]) == icv


def test_rfc4868_icv_count() -> None:
    assert len(SHA2) == 10


XCBC = [r for r in _records("prf_aes_xcbc_rfc3566_rfc4434.json") if r["algorithm"] == "AUTH_AES_XCBC_96"]


@pytest.mark.parametrize("rec", XCBC, ids=[r["id"] for r in XCBC])
def test_xcbc96_icv(rec: dict) -> None:
    integ = make_integ(T.integ("aesxcbc"), H(rec["key"]))
    assert integ.sign(H(rec["data"])) == H(rec["expected"])
    assert integ.verify(H(rec["data"]), H(rec["expected"]))
    assert not integ.verify(H(rec["data"]), bytes(12))


def test_xcbc_count() -> None:
    assert len(XCBC) == 5


# ----------------------------------------------------------------- round trips of every cipher

ENCR_NAMES = [n for n in T.ENCR if n not in ("des", "3des")] + (["des", "3des"] if des_supported() else [])


def _encr(name: str, seed: int = 7) -> tuple[Encr, T.EncrAlg]:
    alg = T.ENCR[name]
    keymat = bytes((seed + i) & 0xFF for i in range(alg.key_len))
    return make_encr(alg, keymat), alg


@pytest.mark.parametrize("name", ENCR_NAMES)
def test_encr_round_trip(name: str) -> None:
    enc, alg = _encr(name)
    iv = bytes(range(alg.iv_len))
    pt = bytes(range(48))  # multiple of 16 and 8
    aad = b"header"
    ct = enc.encrypt(iv, pt, aad)
    assert len(ct) == len(pt) + alg.icv_len
    if name != "null" and not name.endswith("gmac"):
        assert ct[: len(pt)] != pt
    assert enc.decrypt(iv, ct, aad) == pt
    if alg.aead:
        for i in (0, len(ct) - 1):
            bad = bytearray(ct)
            bad[i] ^= 0x80
            with pytest.raises(IntegrityError):
                enc.decrypt(iv, bytes(bad), aad)
        with pytest.raises(IntegrityError):
            enc.decrypt(iv, ct, aad + b"!")


@pytest.mark.parametrize("icv", [8, 12])
def test_truncated_gcm_tag_is_prefix_of_full_tag(icv: int) -> None:
    keymat = bytes(range(20))
    full = make_encr(T.ENCR["aes128gcm16"], keymat)
    short = make_encr(T.ENCR[f"aes128gcm{icv}"], keymat)
    iv, pt, aad = b"\x01" * 8, b"payload-bytes", b"aad"
    assert short.encrypt(iv, pt, aad) == full.encrypt(iv, pt, aad)[: len(pt) + icv]


def test_ctr_counter_block_rfc3686() -> None:
    """RFC 3686 test vector #1 (AES-128-CTR, 16 octets)."""
    key = H("AE6852F8121067CC4BF7A5765577F39E")
    nonce, iv = H("00000030"), H("0000000000000000")
    enc = make_encr(T.ENCR["aes128ctr"], key + nonce)
    assert enc.encrypt(iv, b"Single block msg") == H("E4095D4FB7A7B3792D6175A3261311B8")


def test_wrong_lengths_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        make_encr(T.ENCR["aes128gcm16"], bytes(16))
    with pytest.raises(LocalProtocolError):
        make_integ(T.INTEG["sha256"], bytes(16))
    enc, _ = _encr("aes128")
    with pytest.raises(LocalProtocolError):
        enc.encrypt(bytes(16), b"not aligned")
    with pytest.raises(LocalProtocolError):
        enc.encrypt(bytes(8), bytes(16))


def test_repr_hides_keys() -> None:
    enc = make_encr(T.ENCR["aes128gcm16"], b"\xaa" * 20)
    integ = make_integ(T.INTEG["sha256"], b"\xbb" * 32)
    assert "aa" not in repr(enc) and "bb" not in repr(integ)


@settings(max_examples=50, deadline=None)
@given(pt=st.binary(max_size=200), aad=st.binary(max_size=40), name=st.sampled_from(
    ["aes128gcm16", "aes256gcm8", "aes192gcm12", "aes128ccm8", "aes256ccm16", "chacha20poly1305", "aes128gmac"]))
def test_aead_round_trip_any_length(pt: bytes, aad: bytes, name: str) -> None:
    enc, alg = _encr(name, seed=len(pt))
    iv = b"\x00" * 7 + b"\x05"
    assert enc.decrypt(iv, enc.encrypt(iv, pt, aad), aad) == pt
