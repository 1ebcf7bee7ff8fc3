"""IKEv2 / IKEv1 key derivations against NIST CAVP, NSS and a real Android
IKEv2 exchange."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from aioipsec.crypto import transforms as T
from aioipsec.crypto.cmac import aes_cmac_prf128
from aioipsec.crypto.kdf import (
    IkeV2Keys,
    ikev1_encryption_key,
    ikev1_keymat,
    ikev1_phase1_iv,
    ikev1_phase2_iv,
    ikev1_prf_expand,
    ikev1_skeyid_dae,
    ikev1_skeyid_psk,
    ikev1_skeyid_sig,
    ikev2_child_keymat,
    ikev2_derive_keys,
    ikev2_rekey_skeyseed,
    ikev2_skeyseed,
)
from aioipsec.crypto.prf import prf, prf_plus
from aioipsec.crypto.xcbc import aes_xcbc_prf128

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
H = bytes.fromhex

PRF_BY_VECTOR_NAME = {
    "PRF_HMAC_SHA1": T.PRF["prfsha1"],
    "PRF_HMAC_SHA256": T.PRF["prfsha256"],
    "PRF_HMAC_SHA384": T.PRF["prfsha384"],
    "PRF_HMAC_SHA512": T.PRF["prfsha512"],
    "PRF_AES128_XCBC": T.PRF["prfaesxcbc"],
}
PRF_BY_HASH = {
    "SHA-1": T.PRF["prfsha1"],
    "SHA-256": T.PRF["prfsha256"],
    "SHA-384": T.PRF["prfsha384"],
    "SHA-512": T.PRF["prfsha512"],
}


def records(name: str) -> list[dict]:
    return json.loads((VECTORS / name).read_text())["records"]


def params(recs: list[dict]) -> list:
    return [pytest.param(r, id=r["id"]) for r in recs]


# --------------------------------------------------------------------------- NIST CAVP IKEv2

CAVP_V2 = records("ikev2_kdf_nist_cavp.json")


@pytest.mark.parametrize("rec", params(CAVP_V2))
def test_cavp_ikev2_skeyseed(rec: dict) -> None:
    alg = PRF_BY_VECTOR_NAME[rec["prf"]]
    assert ikev2_skeyseed(alg, H(rec["Ni"]), H(rec["Nr"]), H(rec["g_ir"])).hex() == rec["SKEYSEED"]


@pytest.mark.parametrize("rec", params(CAVP_V2))
def test_cavp_ikev2_dkm(rec: dict) -> None:
    alg = PRF_BY_VECTOR_NAME[rec["prf"]]
    seed = H(rec["Ni"]) + H(rec["Nr"]) + H(rec["SPIi"]) + H(rec["SPIr"])
    dkm = prf_plus(alg, H(rec["SKEYSEED"]), seed, rec["DKM_len"])
    assert dkm.hex() == rec["DKM"]


@pytest.mark.parametrize("rec", params(CAVP_V2))
def test_cavp_ikev2_derive_keys_splits_dkm(rec: dict) -> None:
    """The SK_* split of ikev2_derive_keys is a prefix-split of the DKM."""
    alg = PRF_BY_VECTOR_NAME[rec["prf"]]
    keys = ikev2_derive_keys(
        alg, H(rec["SKEYSEED"]), H(rec["Ni"]), H(rec["Nr"]), H(rec["SPIi"]), H(rec["SPIr"]),
        T.ENCR["aes128"], T.INTEG["sha1"],
    )
    joined = b"".join(getattr(keys, n) for n in IkeV2Keys.__slots__)
    n = min(len(joined), rec["DKM_len"])
    assert n >= 100
    assert joined[:n] == H(rec["DKM"])[:n]
    assert keys.sk_d == H(rec["DKM"])[: alg.key_len]
    assert [len(getattr(keys, s)) for s in IkeV2Keys.__slots__] == [alg.key_len, 20, 20, 16, 16, alg.key_len, alg.key_len]


@pytest.mark.parametrize("rec", params(CAVP_V2))
def test_cavp_ikev2_child_keymat(rec: dict) -> None:
    alg = PRF_BY_VECTOR_NAME[rec["prf"]]
    sk_d = H(rec["DKM"])[: alg.out_len]
    ni, nr, n = H(rec["Ni"]), H(rec["Nr"]), rec["child_DKM_len"]
    assert ikev2_child_keymat(alg, sk_d, ni, nr, n).hex() == rec["DKM_child"]
    assert ikev2_child_keymat(alg, sk_d, ni, nr, n, shared=H(rec["g_ir_new"])).hex() == rec["DKM_child_dh"]


@pytest.mark.parametrize("rec", params(CAVP_V2))
def test_cavp_ikev2_rekey_skeyseed(rec: dict) -> None:
    alg = PRF_BY_VECTOR_NAME[rec["prf"]]
    sk_d = H(rec["DKM"])[: alg.out_len]
    out = ikev2_rekey_skeyseed(alg, sk_d, H(rec["g_ir_new"]), H(rec["Ni"]), H(rec["Nr"]))
    assert out.hex() == rec["SKEYSEED_rekey"]


# --------------------------------------------------------------------------- NIST CAVP IKEv1


@pytest.mark.parametrize("rec", params(records("ikev1_kdf_psk_nist_cavp.json")))
def test_cavp_ikev1_psk(rec: dict) -> None:
    alg = PRF_BY_HASH[rec["hash"]]
    skeyid = ikev1_skeyid_psk(alg, H(rec["pre_shared_key"]), H(rec["Ni"]), H(rec["Nr"]))
    assert skeyid.hex() == rec["SKEYID"]
    d, a, e = ikev1_skeyid_dae(alg, skeyid, H(rec["g_xy"]), H(rec["CKY_I"]), H(rec["CKY_R"]))
    assert (d.hex(), a.hex(), e.hex()) == (rec["SKEYID_d"], rec["SKEYID_a"], rec["SKEYID_e"])


@pytest.mark.parametrize("rec", params(records("ikev1_kdf_dsa_nist_cavp.json")))
def test_cavp_ikev1_signature(rec: dict) -> None:
    alg = PRF_BY_HASH[rec["hash"]]
    skeyid = ikev1_skeyid_sig(alg, H(rec["Ni"]), H(rec["Nr"]), H(rec["g_xy"]))
    assert skeyid.hex() == rec["SKEYID"]
    d, a, e = ikev1_skeyid_dae(alg, skeyid, H(rec["g_xy"]), H(rec["CKY_I"]), H(rec["CKY_R"]))
    assert (d.hex(), a.hex(), e.hex()) == (rec["SKEYID_d"], rec["SKEYID_a"], rec["SKEYID_e"])


# --------------------------------------------------------------------------- NSS derivation steps

NSS = records("ike_prf_derivations_nss.json")


def _nss_key(rec: dict) -> bytes:
    return H(rec.get("ikm_effective") or rec["ikm"])


@pytest.mark.parametrize("rec", params(NSS))
def test_nss_derivation_step(rec: dict) -> None:
    alg = PRF_BY_VECTOR_NAME[rec["prf"]]
    kind = rec["nss_type"]
    key = _nss_key(rec)
    expected = rec["expected"]
    if kind == "ikeGxy":  # SKEYSEED (v2) == SKEYID for signatures (v1): prf(Ni|Nr, g^xy)
        ni, nr = H(rec["Ni"]), H(rec["Nr"])
        assert ikev2_skeyseed(alg, ni, nr, key).hex() == expected
        assert ikev1_skeyid_sig(alg, ni, nr, key).hex() == expected
    elif kind == "ikeV1":  # SKEYID_d/a/e chain; Ni/Nr hold the cookies
        d, a, e = ikev1_skeyid_dae(alg, key, H(rec["gxy"]), H(rec["Ni"]), H(rec["Nr"]))
        assert (d, a, e)[rec["key_number"]].hex() == expected
        if rec["prev"] is not None:
            assert (d, a)[rec["key_number"] - 1].hex() == rec["prev"]
    elif kind == "ikeV1Psk":
        assert ikev1_skeyid_psk(alg, key, H(rec["Ni"]), H(rec["Nr"])).hex() == expected
    elif kind == "ikeV2Rekey":  # key = SK_d(old); exercises RFC 4434 long keys for XCBC
        out = ikev2_rekey_skeyseed(alg, key, H(rec["gxy"]), H(rec["Ni"]), H(rec["Nr"]))
        assert out.hex() == expected
    elif kind == "ikePlus":
        assert prf_plus(alg, key, H(rec["seed"]), rec["size"]).hex() == expected
    elif kind == "ikeV1AppB":
        assert ikev1_encryption_key(alg, key, rec["size"]).hex() == expected
    elif kind == "ikeV1AppBQuick":
        assert ikev1_prf_expand(alg, key, H(rec["seed"]), rec["size"]).hex() == expected
        if rec["seed"] == "00":  # a KEYMAT seed of protocol 0, no SPI/nonces is the byte 0x00
            assert ikev1_keymat(alg, key, 0, b"", b"", b"", rec["size"]).hex() == expected
    else:  # pragma: no cover - a new record kind must get a test
        pytest.fail(f"unhandled NSS record type {kind}")


def test_nss_covers_every_kind() -> None:
    kinds = {r["nss_type"] for r in NSS}
    assert kinds == {"ikeGxy", "ikeV1", "ikeV1Psk", "ikeV2Rekey", "ikePlus", "ikeV1AppB", "ikeV1AppBQuick"}


# --------------------------------------------------------------------------- real Android exchange

ANDROID = records("ikev2_real_exchange_android.json")[0]


def test_android_skeyseed_and_sk_keys() -> None:
    r = ANDROID
    alg = T.PRF["prfsha1"]
    ni, nr = H(r["Ni"]), H(r["Nr"])
    skeyseed = ikev2_skeyseed(alg, ni, nr, H(r["g_ir"]))
    assert skeyseed.hex() == r["SKEYSEED"]
    keys = ikev2_derive_keys(
        alg, skeyseed, ni, nr, H(r["SPIi"]), H(r["SPIr"]), T.ENCR["aes128"], T.INTEG["sha1"]
    )
    for name in IkeV2Keys.__slots__:
        assert getattr(keys, name).hex() == r["SK_" + name[3:]], name


def test_android_child_keymat() -> None:
    r = ANDROID
    alg = T.PRF["prfsha1"]
    c = r["child_sa"]
    encr, integ = T.ENCR["aes128"], T.INTEG["sha1"]
    length = 2 * (encr.key_len + integ.key_len)
    km = ikev2_child_keymat(alg, H(r["SK_d"]), H(r["Ni"]), H(r["Nr"]), length)
    assert km.hex() == c["encr_i"] + c["integ_i"] + c["encr_r"] + c["integ_r"]


def test_android_auth_prf_chain() -> None:
    """AUTH = prf(prf(PSK, "Key Pad for IKEv2"), RealMessage1 | Nr | prf(SK_pi, IDi'))
    checks that SK_pi and the PRF compose as RFC 7296 §2.15 needs."""
    r = ANDROID
    alg = T.PRF["prfsha1"]
    keys = ikev2_derive_keys(
        alg, H(r["SKEYSEED"]), H(r["Ni"]), H(r["Nr"]), H(r["SPIi"]), H(r["SPIr"]),
        T.ENCR["aes128"], T.INTEG["sha1"],
    )
    octets = H(r["ike_sa_init_request"]) + H(r["Nr"]) + prf(alg, keys.sk_pi, H(r["IDi_body"]))
    auth = prf(alg, prf(alg, H(r["psk"]), b"Key Pad for IKEv2"), octets)
    assert auth.hex() == r["AUTH_i"]


# --------------------------------------------------------------------------- structure and edge cases


def test_ikev2_key_lengths_aead() -> None:
    alg = T.PRF["prfsha384"]
    keys = ikev2_derive_keys(alg, b"s" * 48, b"n" * 32, b"m" * 32, b"i" * 8, b"r" * 8, T.ENCR["aes256gcm16"], None)
    assert (len(keys.sk_d), len(keys.sk_ai), len(keys.sk_ar)) == (48, 0, 0)
    assert (len(keys.sk_ei), len(keys.sk_er)) == (36, 36)  # 32-byte key + 4-byte salt
    assert (len(keys.sk_pi), len(keys.sk_pr)) == (48, 48)
    expected = prf_plus(alg, b"s" * 48, b"n" * 32 + b"m" * 32 + b"i" * 8 + b"r" * 8, 48 + 72 + 96)
    assert keys.sk_d + keys.sk_ei + keys.sk_er + keys.sk_pi + keys.sk_pr == expected
    assert keys.sk_ei != keys.sk_er


def test_ikev2_keys_repr_hides_values() -> None:
    keys = IkeV2Keys(*(bytes([i]) * 16 for i in range(1, 8)))
    text = repr(keys)
    assert "0101" not in text and "sk_ei=<16 bytes>" in text


def test_ikev2_skeyseed_xcbc_takes_half_of_each_nonce() -> None:
    """RFC 7296 §2.14: for AES-XCBC-PRF-128 the key is Ni[:8] | Nr[:8]."""
    alg = T.PRF["prfaesxcbc"]
    ni, nr, gir = bytes(range(32)), bytes(range(100, 132)), b"\x42" * 256
    out = ikev2_skeyseed(alg, ni, nr, gir)
    assert out == aes_xcbc_prf128(ni[:8] + nr[:8], gir)
    assert out != aes_xcbc_prf128(ni + nr, gir)
    # HMAC PRFs use the whole Ni | Nr
    sha = T.PRF["prfsha256"]
    assert ikev2_skeyseed(sha, ni, nr, gir) == hmac.new(ni + nr, gir, hashlib.sha256).digest()


def test_ikev2_skeyseed_cmac_takes_half_of_each_nonce() -> None:
    """RFC 7296 §2.14 keys AES-CMAC-PRF-128 like XCBC with 128 bits,
    Ni[:8] | Nr[:8], although RFC 4615 allows any key length (charon does
    the same: keying it with the full Ni | Nr fails IKE_AUTH against it)."""
    alg = T.PRF["prfaescmac"]
    ni, nr, gir = bytes(range(32)), bytes(range(100, 132)), b"\x42" * 256
    out = ikev2_skeyseed(alg, ni, nr, gir)
    assert out == aes_cmac_prf128(ni[:8] + nr[:8], gir)
    assert out != aes_cmac_prf128(ni + nr, gir)


def test_ikev2_child_keymat_with_and_without_pfs() -> None:
    alg = T.PRF["prfsha256"]
    sk_d, ni, nr, gir = b"d" * 32, b"i" * 16, b"r" * 16, b"g" * 32
    assert ikev2_child_keymat(alg, sk_d, ni, nr, 64) == prf_plus(alg, sk_d, ni + nr, 64)
    assert ikev2_child_keymat(alg, sk_d, ni, nr, 64, gir) == prf_plus(alg, sk_d, gir + ni + nr, 64)


def test_ikev1_keymat_seed_layout() -> None:
    """RFC 2409 §5.5: K1 = prf(SKEYID_d, [g^xy |] protocol | SPI | Ni_b | Nr_b),
    K2 = prf(SKEYID_d, K1 | [g^xy |] protocol | SPI | Ni_b | Nr_b)."""
    alg = T.PRF["prfsha1"]
    d, spi, ni, nr, gxy = b"D" * 20, b"\x12\x34\x56\x78", b"N" * 16, b"M" * 16, b"G" * 128
    for shared in (None, gxy):
        seed = (shared or b"") + b"\x03" + spi + ni + nr
        k1 = hmac.new(d, seed, hashlib.sha1).digest()
        k2 = hmac.new(d, k1 + seed, hashlib.sha1).digest()
        k3 = hmac.new(d, k2 + seed, hashlib.sha1).digest()
        assert ikev1_keymat(alg, d, 3, spi, ni, nr, 56, shared) == (k1 + k2 + k3)[:56]
        assert ikev1_keymat(alg, d, 3, spi, ni, nr, 16, shared) == k1[:16]


def test_ikev1_encryption_key_appendix_b() -> None:
    alg = T.PRF["prfsha1"]
    e = bytes(range(20))
    assert ikev1_encryption_key(alg, e, 16) == e[:16]  # long enough: use SKEYID_e directly
    assert ikev1_encryption_key(alg, e, 20) == e
    k1 = hmac.new(e, b"\x00", hashlib.sha1).digest()
    k2 = hmac.new(e, k1, hashlib.sha1).digest()
    assert ikev1_encryption_key(alg, e, 32) == (k1 + k2)[:32]  # AES-256 from SHA-1
    with pytest.raises(ValueError):
        ikev1_encryption_key(alg, e, -1)


@pytest.mark.parametrize("hash_name", ["md5", "sha1", "sha256", "sha384", "sha512"])
@pytest.mark.parametrize("block", [8, 16])
def test_ikev1_ivs(hash_name: str, block: int) -> None:
    gxi, gxr = b"\x01" * 256, b"\x02" * 256
    assert ikev1_phase1_iv(hash_name, gxi, gxr, block) == hashlib.new(hash_name, gxi + gxr).digest()[:block]
    last, mid = b"\x33" * block, b"\xde\xad\xbe\xef"
    assert ikev1_phase2_iv(hash_name, last, mid, block) == hashlib.new(hash_name, last + mid).digest()[:block]
