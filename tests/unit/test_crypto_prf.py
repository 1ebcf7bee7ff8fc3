"""PRFs, prf+, AES-XCBC and AES-CMAC against published vectors (RFC 4868,
RFC 3566, RFC 4434, RFC 4493, RFC 4494, RFC 4615, strongSwan's prf+/SKEYSEED
vectors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.crypto import transforms as T
from aioipsec.crypto.cipher import make_integ
from aioipsec.crypto.cmac import AesCmac, aes_cmac, aes_cmac_prf128, prf128_cmac_key
from aioipsec.crypto.prf import Prf, hash_algorithm, prf, prf_plus
from aioipsec.crypto.xcbc import AesXcbc, aes_xcbc_mac, aes_xcbc_prf128, prf128_key
from aioipsec.errors import AlgorithmError

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

PRF_BY_VECTOR_NAME = {
    "PRF_HMAC_SHA1": T.PRF["prfsha1"],
    "PRF_HMAC_SHA2_256": T.PRF["prfsha256"],
    "PRF_HMAC_SHA256": T.PRF["prfsha256"],
    "PRF_HMAC_SHA2_384": T.PRF["prfsha384"],
    "PRF_HMAC_SHA384": T.PRF["prfsha384"],
    "PRF_HMAC_SHA2_512": T.PRF["prfsha512"],
    "PRF_HMAC_SHA512": T.PRF["prfsha512"],
    "PRF_AES128_XCBC": T.PRF["prfaesxcbc"],
}
INTEG_BY_VECTOR_NAME = {
    "AUTH_HMAC_SHA2_256_128": T.INTEG["sha256"],
    "AUTH_HMAC_SHA2_384_192": T.INTEG["sha384"],
    "AUTH_HMAC_SHA2_512_256": T.INTEG["sha512"],
}


def records(name: str) -> list[dict]:
    return json.loads((VECTORS / name).read_text())["records"]


def by_id(recs: list[dict]) -> list:
    return [pytest.param(r, id=r["id"]) for r in recs]


H = bytes.fromhex

# --------------------------------------------------------------------------- RFC 4868 HMAC-SHA2

RFC4868 = records("prf_integ_hmac_sha2_rfc4868.json")


@pytest.mark.parametrize("rec", by_id([r for r in RFC4868 if r["algorithm"].startswith("PRF_")]))
def test_rfc4868_prf(rec: dict) -> None:
    alg = PRF_BY_VECTOR_NAME[rec["algorithm"]]
    assert prf(alg, H(rec["key"]), H(rec["data"])).hex() == rec["expected"]
    assert Prf(alg, H(rec["key"]))(H(rec["data"])).hex() == rec["expected"]


@pytest.mark.parametrize("rec", by_id([r for r in RFC4868 if r["algorithm"].startswith("AUTH_")]))
def test_rfc4868_truncated_icv(rec: dict) -> None:
    """ICV = leftmost half of the HMAC; checks the IntegAlg metadata too."""
    integ = INTEG_BY_VECTOR_NAME[rec["algorithm"]]
    key = H(rec["key"])
    assert len(key) == integ.key_len
    hmac_prf = T.PRF["prf" + integ.name]
    full = prf(hmac_prf, key, H(rec["data"]))
    assert full.hex() == rec["full_hmac"]
    assert full[: integ.icv_len].hex() == rec["expected"]
    assert integ.icv_len * 2 == hmac_prf.out_len


# --------------------------------------------------------------------------- AES-XCBC

XCBC = records("prf_aes_xcbc_rfc3566_rfc4434.json")


@pytest.mark.parametrize("rec", by_id([r for r in XCBC if r["algorithm"] == "AUTH_AES_XCBC_96"]))
def test_xcbc_mac96(rec: dict) -> None:
    key, data = H(rec["key"]), H(rec["data"])
    assert aes_xcbc_mac(key, data)[:12].hex() == rec["expected"]
    mac = AesXcbc(key)
    assert mac.mac(data)[:12].hex() == rec["expected"]
    assert mac.mac(memoryview(data))[:12].hex() == rec["expected"]  # reusable, bytes-like input
    assert mac.mac(bytearray(data))[:12].hex() == rec["expected"]
    assert T.INTEG["aesxcbc"].icv_len == 12


@pytest.mark.parametrize("rec", by_id([r for r in XCBC if r["algorithm"] == "PRF_AES128_XCBC"]))
def test_xcbc_prf128(rec: dict) -> None:
    key, data = H(rec["key"]), H(rec["data"])
    assert len(key) == rec["key_len"]
    assert aes_xcbc_prf128(key, data).hex() == rec["expected"]
    assert prf(T.PRF["prfaesxcbc"], key, data).hex() == rec["expected"]


def test_xcbc_rejects_bad_mac_key_length() -> None:
    for n in (0, 15, 17, 32):
        with pytest.raises(ValueError):
            AesXcbc(bytes(n))


def test_prf128_key_adjustment() -> None:
    assert prf128_key(b"\x01" * 10) == b"\x01" * 10 + bytes(6)
    k = bytes(range(16))
    assert prf128_key(k) == k
    assert prf128_key(k + b"\xed\xcb") == aes_xcbc_mac(bytes(16), k + b"\xed\xcb")


def _reference_xcbc(key: bytes, data: bytes) -> bytes:
    """Block-by-block RFC 3566 §4 on AES-ECB, written independently of the module."""

    def aes(k: bytes, block: bytes) -> bytes:
        e = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
        return e.update(block) + e.finalize()

    def xor(a: bytes, b: bytes) -> bytes:
        return bytes(x ^ y for x, y in zip(a, b))

    k1, k2, k3 = (aes(key, bytes([i]) * 16) for i in (1, 2, 3))
    blocks = [data[i : i + 16] for i in range(0, len(data), 16)] or [b""]
    e = bytes(16)
    for m in blocks[:-1]:
        e = aes(k1, xor(m, e))
    last = blocks[-1]
    if len(last) == 16:
        return aes(k1, xor(xor(last, e), k2))
    padded = last + b"\x80" + bytes(15 - len(last))
    return aes(k1, xor(xor(padded, e), k3))


@settings(max_examples=150, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), data=st.binary(max_size=100))
def test_xcbc_matches_block_by_block_reference(key: bytes, data: bytes) -> None:
    assert aes_xcbc_mac(key, data) == _reference_xcbc(key, data)


@settings(max_examples=60, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    messages=st.lists(st.binary(max_size=70), min_size=1, max_size=12),
    as_view=st.booleans(),
)
def test_xcbc_object_reused_across_messages(key: bytes, messages: list[bytes], as_view: bool) -> None:
    """AesXcbc keeps one CBC encryptor alive between calls; every call must
    still equal an independent fresh computation."""
    mac = AesXcbc(key)
    for m in messages:
        assert mac.mac(memoryview(m) if as_view else m) == _reference_xcbc(key, m)


def test_xcbc_recovers_after_a_failed_call() -> None:
    key = bytes(range(16))
    mac = AesXcbc(key)
    data = b"x" * 40
    assert mac.mac(data) == _reference_xcbc(key, data)
    with pytest.raises(TypeError):
        mac.mac([1] * 40)  # type: ignore[arg-type]  # not bytes-like: fails inside the chain
    assert mac.mac(data) == _reference_xcbc(key, data)


# --------------------------------------------------------------------------- strongSwan prf+ / SKEYSEED

STRONGSWAN = records("ikev2_prfplus_skeyseed_strongswan.json")


@pytest.mark.parametrize("rec", by_id([r for r in STRONGSWAN if r["kind"].startswith("prf+")]))
def test_strongswan_prf_plus(rec: dict) -> None:
    alg = PRF_BY_VECTOR_NAME[rec["prf"]]
    expected = H(rec["expected"])
    out = prf_plus(alg, H(rec["key"]), H(rec["salt_or_seed"]), len(expected))
    assert out == expected


@pytest.mark.parametrize("rec", by_id([r for r in STRONGSWAN if r["kind"].startswith("SKEYSEED")]))
def test_strongswan_skeyseed_prf(rec: dict) -> None:
    """strongSwan names the PRF key 'salt' (Ni|Nr) and the data 'key' (g^ir)."""
    alg = PRF_BY_VECTOR_NAME[rec["prf"]]
    assert prf(alg, H(rec["salt_or_seed"]), H(rec["key"])).hex() == rec["expected"]


# --------------------------------------------------------------------------- prf+ properties

ALL_PRFS = [pytest.param(a, id=a.name) for a in T.PRF.values()]


@pytest.mark.parametrize("alg", ALL_PRFS)
def test_prf_plus_block_limit(alg: T.PrfAlg) -> None:
    key, seed = b"k" * alg.key_len, b"seed"
    full = prf_plus(alg, key, seed, 255 * alg.out_len)
    assert len(full) == 255 * alg.out_len
    with pytest.raises(ValueError):
        prf_plus(alg, key, seed, 255 * alg.out_len + 1)
    with pytest.raises(ValueError):
        prf_plus(alg, key, seed, -1)
    assert prf_plus(alg, key, seed, 0) == b""
    # T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02); last block uses n = 255
    t1 = prf(alg, key, seed + b"\x01")
    t2 = prf(alg, key, t1 + seed + b"\x02")
    assert full[: 2 * alg.out_len] == t1 + t2
    t254 = full[253 * alg.out_len : 254 * alg.out_len]
    assert full[254 * alg.out_len :] == prf(alg, key, t254 + seed + b"\xff")


@settings(max_examples=60, deadline=None)
@given(
    alg=st.sampled_from(list(T.PRF.values())),
    key=st.binary(min_size=1, max_size=80),
    seed=st.binary(max_size=64),
    a=st.integers(min_value=0, max_value=300),
    b=st.integers(min_value=0, max_value=300),
)
def test_prf_plus_is_prefix_stable(alg: T.PrfAlg, key: bytes, seed: bytes, a: int, b: int) -> None:
    short, long = sorted((a, b))
    out_long = prf_plus(alg, key, seed, long)
    assert len(out_long) == long
    assert prf_plus(alg, key, seed, short) == out_long[:short]


@settings(max_examples=60, deadline=None)
@given(alg=st.sampled_from(list(T.PRF.values())), key=st.binary(max_size=80), data=st.binary(max_size=200))
def test_keyed_prf_equals_one_shot_and_is_reusable(alg: T.PrfAlg, key: bytes, data: bytes) -> None:
    f = Prf(alg, key)
    first = f(data)
    assert len(first) == alg.out_len == f.out_len
    assert f(data) == first  # keyed state is not consumed by a call
    assert prf(alg, key, data) == first
    assert f(data + b"x") != first


def test_prf_repr_hides_key() -> None:
    key = b"super-secret-key-material"
    f = Prf(T.PRF["prfsha256"], key)
    assert "prfsha256" in repr(f)
    assert key.hex() not in repr(f) and "super-secret" not in repr(f)


def test_unimplemented_prf_raises_algorithm_error() -> None:
    # (AES-CMAC-PRF-128 is implemented now: a PRF entry with neither a hash
    # nor an AES-MAC id stands for one that is not)
    unknown = T.PrfAlg("prfunknown", T.PrfId.HMAC_MD5, 16, 16, None)
    with pytest.raises(AlgorithmError):
        Prf(unknown, bytes(16))


def test_hash_algorithm_names() -> None:
    assert hash_algorithm("SHA-256").name == "sha256"
    assert hash_algorithm("sha2_512").name == "sha512"
    assert hash_algorithm("sha1").digest_size == 20
    with pytest.raises(AlgorithmError):
        hash_algorithm("sha3-256")


# --------------------------------------------------------------------------- AES-CMAC (RFC 4493/4494/4615)

CMAC = records("prf_integ_aes_cmac_rfc4493_rfc4494_rfc4615.json")


@pytest.mark.parametrize("rec", by_id([r for r in CMAC if r["algorithm"] == "AES_CMAC"]))
def test_rfc4493_aes_cmac(rec: dict) -> None:
    key, data = H(rec["key"]), H(rec["data"])
    assert aes_cmac(key, data).hex() == rec["expected"]
    mac = AesCmac(key)
    assert mac.mac(data).hex() == rec["expected"]
    assert mac.mac(memoryview(data)).hex() == rec["expected"]  # reusable, bytes-like input
    half = len(data) // 2
    assert mac.mac_parts(data[:half], bytearray(data[half:])).hex() == rec["expected"]


@pytest.mark.parametrize("rec", by_id([r for r in CMAC if r["algorithm"] == "AUTH_AES_CMAC_96"]))
def test_rfc4494_aes_cmac_96(rec: dict) -> None:
    key, data = H(rec["key"]), H(rec["data"])
    alg = T.INTEG["aescmac"]
    assert (alg.id, alg.key_len, alg.icv_len) == (T.IntegId.AES_CMAC_96, 16, 12)
    integ = make_integ(alg, key)
    assert integ.sign(data).hex() == rec["expected"]
    assert integ.sign_parts(data[:5], data[5:]).hex() == rec["expected"]
    assert integ.verify(data, H(rec["expected"]))
    assert not integ.verify(data + b"x", H(rec["expected"]))
    assert key.hex() not in repr(integ)


@pytest.mark.parametrize("rec", by_id([r for r in CMAC if r["algorithm"] == "PRF_AES128_CMAC"]))
def test_rfc4615_aes_cmac_prf128(rec: dict) -> None:
    key, data = H(rec["key"]), H(rec["data"])
    assert len(key) == rec["key_len"]
    assert aes_cmac_prf128(key, data).hex() == rec["expected"]
    alg = T.PRF["prfaescmac"]
    assert (alg.id, alg.key_len, alg.out_len) == (T.PrfId.AES128_CMAC, 16, 16)
    assert prf(alg, key, data).hex() == rec["expected"]
    assert Prf(alg, key)(data).hex() == rec["expected"]


def test_rfc4615_key_adjustment_differs_from_xcbc() -> None:
    """RFC 4615 §3 runs short keys through CMAC(0^128, K) too; RFC 4434
    (XCBC) zero-pads them."""
    k = bytes(range(10))
    assert prf128_cmac_key(k) == aes_cmac(bytes(16), k)
    assert prf128_cmac_key(k) != k + bytes(6)
    assert prf128_cmac_key(bytes(range(16))) == bytes(range(16))
    assert prf128_cmac_key(bytes(range(18))) == aes_cmac(bytes(16), bytes(range(18)))


def test_cmac_rejects_bad_mac_key_length() -> None:
    for n in (0, 15, 17, 32):
        with pytest.raises(ValueError):
            AesCmac(bytes(n))
