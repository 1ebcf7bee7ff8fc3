"""Key exchanges against published vectors, plus RFC 6989 / RFC 8031 input
validation and API misuse."""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path

import pytest

from aioipsec.crypto import kex
from aioipsec.crypto import transforms as T
from aioipsec.crypto.kex import InvalidKeyExchangeData, KeyExchange, create_key_exchange, modp_prime
from aioipsec.errors import AlgorithmError, LocalProtocolError, RemoteProtocolError

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
H = bytes.fromhex


def records(name: str) -> list[dict]:
    return json.loads((VECTORS / name).read_text())["records"]


def params(recs: list[dict]) -> list:
    return [pytest.param(r, id=r["id"]) for r in recs]


def pair(group: int, priv_i: bytes | None = None, priv_r: bytes | None = None) -> tuple[KeyExchange, KeyExchange]:
    i = create_key_exchange(group, private=priv_i)
    r = create_key_exchange(group, private=priv_r, responder=True)
    r.set_peer(i.public_value)
    i.set_peer(r.public_value)
    return i, r


@pytest.fixture(params=["cryptography", "pow"])
def modp_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run MODP tests on cryptography's DH and on the pow() fallback that is
    used if cryptography drops finite-field DH."""
    if request.param == "pow":
        monkeypatch.setattr(kex, "_dh", None)
    return request.param


# --------------------------------------------------------------------------- MODP

MODP = records("dh_modp_strongswan.json")


@pytest.mark.parametrize("rec", params(MODP))
def test_modp_vectors(rec: dict, modp_backend: str) -> None:
    i, r = pair(rec["group"], H(rec["priv_i"]), H(rec["priv_r"]))
    assert i.public_value.hex() == rec["pub_i"]
    assert r.public_value.hex() == rec["pub_r"]
    assert len(i.public_value) == rec["modulus_bits"] // 8 == i.alg.public_len
    assert i.shared_secret.hex() == rec["shared"]
    assert r.shared_secret.hex() == rec["shared"]


@pytest.mark.parametrize("rec", params(MODP))
def test_modp_prime_matches_vector(rec: dict) -> None:
    assert modp_prime(rec["group"]) == int(rec["prime"], 16)


@functools.cache
def _pi_fixed(bits: int) -> int:
    """floor(pi * 2**bits) by Machin's formula, integer arithmetic only."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x: int) -> int:
        total = term = one // x
        x2, n, sign = x * x, 1, 1
        while term:
            term //= x2
            n += 2
            sign = -sign
            total += sign * (term // n)
        return total

    return (4 * (4 * arctan_inv(5) - arctan_inv(239))) >> guard


# RFC 2409 §6 / RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k)
_RFC_K = {1: (768, 149686), 2: (1024, 129093), 5: (1536, 741804), 14: (2048, 124476),
          15: (3072, 1690314), 16: (4096, 240904), 17: (6144, 929484), 18: (8192, 4743158)}


@pytest.mark.parametrize("group", sorted(_RFC_K))
def test_modp_prime_matches_rfc_formula(group: int) -> None:
    n, k = _RFC_K[group]
    top = 8192 - 130  # compute pi once; floor(pi * 2^b) = floor(pi * 2^top) >> (top - b)
    p = 2**n - 2 ** (n - 64) - 1 + 2**64 * ((_pi_fixed(top) >> (top - (n - 130))) + k)
    assert modp_prime(group) == p
    if n <= 3072:  # Fermat base 2; a full-size modexp is slow in Python for the largest groups
        assert pow(2, p - 1, p) == 1


@pytest.mark.parametrize("group", [1, 2, 14, 18])
def test_modp_random_roundtrip(group: int, modp_backend: str) -> None:
    i, r = pair(group)
    assert i.shared_secret == r.shared_secret
    assert len(i.shared_secret) == i.alg.public_len
    assert i.public_value != r.public_value


BAD_MODP = ["y=0", "y=1", "y=p-1", "y=p", "y=p+1", "y=2^n-1", "short", "long", "empty"]


def _modp_bad_value(group: int, which: str) -> bytes:
    p = modp_prime(group)
    n = (p.bit_length() + 7) // 8
    good = (3).to_bytes(n, "big")
    return {
        "y=0": (0).to_bytes(n, "big"),
        "y=1": (1).to_bytes(n, "big"),
        "y=p-1": (p - 1).to_bytes(n, "big"),
        "y=p": p.to_bytes(n, "big"),
        "y=p+1": (p + 1).to_bytes(n, "big"),
        "y=2^n-1": b"\xff" * n,
        "short": good[1:],
        "long": b"\0" + good,
        "empty": b"",
    }[which]


@pytest.mark.parametrize("group", [2, 14])
@pytest.mark.parametrize("which", BAD_MODP)
def test_modp_rejects_rfc6989_bad_values(group: int, which: str, modp_backend: str) -> None:
    ke = create_key_exchange(group)
    with pytest.raises(InvalidKeyExchangeData):
        ke.set_peer(_modp_bad_value(group, which))
    assert not ke.complete
    with pytest.raises(LocalProtocolError):
        ke.shared_secret  # noqa: B018


def test_modp_accepts_boundary_values() -> None:
    p = modp_prime(14)
    ke = create_key_exchange(14)
    ke.set_peer((p - 2).to_bytes(256, "big"))  # largest value RFC 6989 allows
    assert len(ke.shared_secret) == 256
    ke = create_key_exchange(14)
    ke.set_peer((2).to_bytes(256, "big"))
    assert len(ke.shared_secret) == 256


def test_modp_pinned_private_out_of_range() -> None:
    with pytest.raises(LocalProtocolError):
        create_key_exchange(14, private=b"\x01")


# --------------------------------------------------------------------------- ECP

RFC5903 = records("dh_ecp_rfc5903.json")


def _ke_payload(group: int, data: bytes) -> bytes:
    """Generic payload header (next payload 0) | DH group | RESERVED | data."""
    return struct.pack("!BBHHH", 0, 0, 8 + len(data), group, 0) + data


@pytest.mark.parametrize("rec", params(RFC5903))
def test_ecp_rfc5903(rec: dict) -> None:
    i, r = pair(rec["group"], H(rec["i"]), H(rec["r"]))
    assert i.public_value == H(rec["gix"]) + H(rec["giy"])
    assert r.public_value == H(rec["grx"]) + H(rec["gry"])
    assert len(i.public_value) == 2 * rec["coordinate_octets"] == i.alg.public_len
    assert _ke_payload(rec["group"], i.public_value).hex() == rec["KEi_payload"]
    assert _ke_payload(rec["group"], r.public_value).hex() == rec["KEr_payload"]
    assert i.shared_secret.hex() == rec["shared_secret"] == rec["girx"]
    assert r.shared_secret.hex() == rec["shared_secret"]


RFC5114 = records("dh_ecp_rfc5114_strongswan.json")


@pytest.mark.parametrize("rec", params(RFC5114))
def test_ecp_rfc5114(rec: dict) -> None:
    if rec["group"] in (25, 26):
        # Explicitly unsupported: P-192/P-224 are not in RFC 8247's list.
        with pytest.raises(AlgorithmError):
            create_key_exchange(rec["group"], private=H(rec["priv_i"]))
        pytest.skip(f"group {rec['group']} (P-192/P-224) deliberately not supported (RFC 8247)")
    i, r = pair(rec["group"], H(rec["priv_i"]), H(rec["priv_r"]))
    assert i.public_value.hex() == rec["pub_i"]
    assert r.public_value.hex() == rec["pub_r"]
    assert i.shared_secret.hex() == rec["shared"]
    assert r.shared_secret.hex() == rec["shared"]


BRAINPOOL = records("dh_ecp_brainpool_rfc6954_strongswan.json")


@pytest.mark.parametrize("rec", params(BRAINPOOL))
def test_ecp_brainpool_vectors(rec: dict) -> None:
    """RFC 6954 groups 28/29/30 on RFC 7027's keys: KE data x || y, g^ir = x."""
    if rec["group"] == 27:
        # brainpoolP224r1: cryptography has no such curve, and RFC 8247 wants no 224-bit group
        with pytest.raises(AlgorithmError):
            create_key_exchange(rec["group"], private=H(rec["priv_i"]))
        pytest.skip("group 27 (brainpoolP224r1) deliberately not supported")
    i, r = pair(rec["group"], H(rec["priv_i"]), H(rec["priv_r"]))
    assert i.public_value.hex() == rec["pub_i"]
    assert r.public_value.hex() == rec["pub_r"]
    assert len(i.public_value) == 2 * rec["coordinate_octets"] == i.alg.public_len
    assert i.shared_secret.hex() == rec["shared"] == r.shared_secret.hex()
    assert len(i.shared_secret) == rec["coordinate_octets"]


@pytest.mark.parametrize("group", [19, 20, 21, 28, 29, 30])
def test_ecp_random_roundtrip(group: int) -> None:
    i, r = pair(group)
    assert i.shared_secret == r.shared_secret
    assert len(i.shared_secret) == i.alg.public_len // 2
    assert len(i.public_value) == i.alg.public_len


@pytest.mark.parametrize("group", [19, 20, 21, 28, 29, 30])
def test_ecp_rejects_bad_points(group: int) -> None:
    good = create_key_exchange(group).public_value
    half = len(good) // 2
    y_flipped = good[:-1] + bytes([good[-1] ^ 1])
    x_only = good[:half]
    bad_values = [y_flipped, bytes(len(good)), b"\xff" * len(good), good[:-1], good + b"\0", x_only, b"\x04" + good]
    for bad in bad_values:
        ke = create_key_exchange(group)
        with pytest.raises(InvalidKeyExchangeData):
            ke.set_peer(bad)
        assert not ke.complete


# --------------------------------------------------------------------------- X25519 / X448


@pytest.mark.parametrize("rec", params(records("dh_x25519_rfc7748_rfc8031.json")))
def test_x25519_vectors(rec: dict) -> None:
    i, r = pair(rec["group"], H(rec["priv_i"]), H(rec["priv_r"]))
    assert i.public_value.hex() == rec["pub_i"]
    assert r.public_value.hex() == rec["pub_r"]
    assert i.shared_secret.hex() == rec["shared"]
    assert r.shared_secret.hex() == rec["shared"]


@pytest.mark.parametrize("group", [31, 32])
def test_ecx_random_roundtrip(group: int) -> None:
    i, r = pair(group)
    assert i.shared_secret == r.shared_secret
    assert len(i.public_value) == len(i.shared_secret) == i.alg.public_len


@pytest.mark.parametrize("group,size", [(31, 32), (32, 56)])
def test_ecx_rejects_low_order_and_bad_length(group: int, size: int) -> None:
    # u = 0 and u = 1 are small-order points: the X25519/X448 result is all zero
    for bad in (bytes(size), b"\x01" + bytes(size - 1), b"\x00" * (size - 1), b"\x09" * (size + 1)):
        ke = create_key_exchange(group)
        with pytest.raises(InvalidKeyExchangeData):
            ke.set_peer(bad)


# --------------------------------------------------------------------------- ML-KEM

MLKEM = records("mlkem_ikev2_strongswan.json")


def _mlkem_supported(transform_id: int) -> bool:
    try:
        create_key_exchange(transform_id)
    except AlgorithmError:
        return False
    return True


@pytest.mark.parametrize("rec", params(MLKEM))
def test_mlkem_vectors(rec: dict) -> None:
    group = rec["transform_id"]
    alg = T.by_id(T.TransformType.KE, group)
    assert isinstance(alg, T.KeAlg)
    assert len(H(rec["ek_KEi_data"])) == alg.public_len
    assert len(H(rec["ct_KEr_data"])) == {35: 768, 36: 1088, 37: 1568}[group]
    if "keygen_seed_d_z" not in rec:  # ML-KEM-512: the file has no keygen seed for it
        if not _mlkem_supported(group):
            with pytest.raises(AlgorithmError, match="not supported"):
                create_key_exchange(group)
        pytest.skip(f"{alg.name}: no keygen seed in the vector / not in this cryptography (lengths checked)")
    ke = create_key_exchange(group, private=H(rec["keygen_seed_d_z"]))
    assert ke.public_value.hex() == rec["ek_KEi_data"]
    ke.set_peer(H(rec["ct_KEr_data"]))
    assert ke.shared_secret.hex() == rec["shared_secret"]


@pytest.mark.parametrize("group", [36, 37])
def test_mlkem_roundtrip_and_responder_api(group: int) -> None:
    i = create_key_exchange(group)
    r = create_key_exchange(group, responder=True)
    with pytest.raises(LocalProtocolError):
        r.public_value  # noqa: B018 - ciphertext exists only after set_peer
    r.set_peer(i.public_value)
    assert len(r.public_value) == {36: 1088, 37: 1568}[group]
    i.set_peer(r.public_value)
    assert i.shared_secret == r.shared_secret and len(i.shared_secret) == 32


@pytest.mark.parametrize("group", [36, 37])
def test_mlkem_rejects_bad_data(group: int) -> None:
    i = create_key_exchange(group)
    ek = bytearray(i.public_value)
    ek[0], ek[1] = 0xFF, ek[1] | 0x0F  # first coefficient 0xFFF >= q = 3329
    for bad in (bytes(ek), bytes(i.public_value[:-1]), i.public_value + b"\0", b""):
        r = create_key_exchange(group, responder=True)
        with pytest.raises(InvalidKeyExchangeData):
            r.set_peer(bad)
    for bad in (b"", b"\0" * 100, b"\0" * 1089):
        with pytest.raises(InvalidKeyExchangeData):
            create_key_exchange(group).set_peer(bad)


def test_mlkem_responder_cannot_be_pinned() -> None:
    with pytest.raises(LocalProtocolError):
        create_key_exchange(36, private=bytes(64), responder=True)


# --------------------------------------------------------------------------- factory and misuse


@pytest.mark.parametrize("group", [0, 3, 4, 22, 25, 26, 27, 33, 99, 65535])
def test_unknown_groups(group: int) -> None:
    with pytest.raises(AlgorithmError):
        create_key_exchange(group)


def test_accepts_registry_objects_and_ids() -> None:
    a = create_key_exchange(T.ke("x25519"))
    b = create_key_exchange(31)
    assert a.alg is b.alg and a.group == 31


def test_set_peer_twice_is_misuse() -> None:
    i, r = pair(31)
    with pytest.raises(LocalProtocolError):
        i.set_peer(r.public_value)


def test_invalid_data_is_a_remote_error() -> None:
    assert issubclass(InvalidKeyExchangeData, RemoteProtocolError)


def test_repr_hides_secrets() -> None:
    i, _ = pair(31)
    text = repr(i)
    assert "x25519" in text and i.shared_secret.hex() not in text and i.public_value.hex() not in text


def test_supported_list() -> None:
    names = {k.name for k in kex.supported_key_exchanges()}
    assert {"modp2048", "ecp256", "ecp521", "x25519", "x448", "mlkem768", "mlkem1024"} <= names
    assert {"ecp256bp", "ecp384bp", "ecp512bp"} <= names
    for alg in kex.supported_key_exchanges():
        if alg.kind != "modp":  # (MODP groups are instantiated by the tests above)
            assert create_key_exchange(alg).alg is alg
