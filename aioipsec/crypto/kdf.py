"""IKEv2 and IKEv1 key derivations (RFC 7296 §2.13-2.18, RFC 2409 §5, App. B).

All functions are pure: bytes in, bytes out.  Nonces are the Nonce payload
data (IKEv1 "Ni_b"/"Nr_b" = nonce payload bodies), SPIs/cookies are the
8-byte IKE SPIs, ``shared`` is g^ir in the form returned by
:attr:`aioipsec.crypto.kex.KeyExchange.shared_secret`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

from .._frozen import fast_init
from .prf import Prf, hash_algorithm, prf, prf_plus
from .transforms import EncrAlg, IntegAlg, PrfAlg

__all__ = [
    "IkeV2Keys",
    "ikev1_encryption_key",
    "ikev1_keymat",
    "ikev1_phase1_iv",
    "ikev1_phase2_iv",
    "ikev1_prf_expand",
    "ikev1_skeyid_dae",
    "ikev1_skeyid_psk",
    "ikev1_skeyid_sig",
    "ikev2_child_keymat",
    "ikev2_derive_keys",
    "ikev2_ppk_keys",
    "ikev2_rekey_skeyseed",
    "ikev2_skeyseed",
]


# --------------------------------------------------------------------------- IKEv2


@fast_init
@dataclass(frozen=True, slots=True)
class IkeV2Keys:
    """The seven IKE SA keys of RFC 7296 §2.14.  ``repr`` hides the values."""

    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    """Encryption key of the initiator, including the trailing salt of
    AEAD/CTR ciphers (``EncrAlg.key_len`` bytes)."""
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes

    def __repr__(self) -> str:
        lens = ", ".join(f"{n}=<{len(getattr(self, n))} bytes>" for n in self.__slots__)
        return f"IkeV2Keys({lens})"


def _fixed_key(alg: PrfAlg) -> bool:
    """AES-XCBC-PRF-128 (and AES-CMAC-PRF-128) take a fixed-length key."""
    return alg.hash_name is None


def ikev2_skeyseed(alg: PrfAlg, ni: bytes, nr: bytes, shared: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir).

    For PRFs with a fixed key length the key is the first half of the key
    length taken from Ni followed by the first half from Nr (RFC 7296 §2.14:
    "half the bits must come from Ni and half from Nr")."""
    if _fixed_key(alg):
        half = alg.key_len // 2
        key = ni[:half] + nr[:half]
    else:
        key = ni + nr
    return prf(alg, key, shared)


def ikev2_rekey_skeyseed(alg: PrfAlg, sk_d_old: bytes, shared: bytes, ni: bytes, nr: bytes) -> bytes:
    """SKEYSEED of a rekeyed IKE SA = prf(SK_d (old), g^ir (new) | Ni | Nr)
    (RFC 7296 §2.18; nonces of the CREATE_CHILD_SA exchange)."""
    return prf(alg, sk_d_old, shared + ni + nr)


def ikev2_derive_keys(
    alg: PrfAlg,
    skeyseed: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    encr: EncrAlg,
    integ: IntegAlg | None,
) -> IkeV2Keys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
    = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).

    SK_d/SK_pi/SK_pr have the PRF's preferred key length, SK_a* the integrity
    key length (empty for AEAD, ``integ=None``), SK_e* ``encr.key_len``
    (key plus salt)."""
    p = alg.key_len
    a = integ.key_len if integ is not None else 0
    e = encr.key_len
    km = prf_plus(alg, skeyseed, ni + nr + spi_i + spi_r, 3 * p + 2 * a + 2 * e)
    parts = []
    pos = 0
    for n in (p, a, a, e, e, p, p):
        parts.append(km[pos : pos + n])
        pos += n
    return IkeV2Keys(*parts)


def ikev2_ppk_keys(alg: PrfAlg, ppk: bytes, keys: IkeV2Keys) -> IkeV2Keys:
    """The IKE SA keys with a Postquantum Preshared Key mixed in (RFC 8784
    §3): ``SK_d = prf+(PPK, SK_d')``, ``SK_pi = prf+(PPK, SK_pi')``,
    ``SK_pr = prf+(PPK, SK_pr')``, each as long as before; the encryption
    and integrity keys stay."""
    return IkeV2Keys(
        prf_plus(alg, ppk, keys.sk_d, len(keys.sk_d)),
        keys.sk_ai,
        keys.sk_ar,
        keys.sk_ei,
        keys.sk_er,
        prf_plus(alg, ppk, keys.sk_pi, len(keys.sk_pi)),
        prf_plus(alg, ppk, keys.sk_pr, len(keys.sk_pr)),
    )


def ikev2_child_keymat(
    alg: PrfAlg, sk_d: bytes, ni: bytes, nr: bytes, length: int, shared: bytes | None = None
) -> bytes:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (RFC 7296 §2.17).

    The caller splits it: encr_i | integ_i | encr_r | integ_r."""
    seed = (shared or b"") + ni + nr
    return prf_plus(alg, sk_d, seed, length)


# --------------------------------------------------------------------------- IKEv1


def ikev1_skeyid_psk(alg: PrfAlg, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    """SKEYID = prf(pre-shared-key, Ni_b | Nr_b) (RFC 2409 §5)."""
    return prf(alg, psk, ni_b + nr_b)


def ikev1_skeyid_sig(alg: PrfAlg, ni_b: bytes, nr_b: bytes, shared: bytes) -> bytes:
    """SKEYID = prf(Ni_b | Nr_b, g^xy) for signature authentication."""
    return prf(alg, ni_b + nr_b, shared)


def ikev1_skeyid_dae(
    alg: PrfAlg, skeyid: bytes, shared: bytes, cky_i: bytes, cky_r: bytes
) -> tuple[bytes, bytes, bytes]:
    """(SKEYID_d, SKEYID_a, SKEYID_e)::

    SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
    SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
    SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
    """
    f = Prf(alg, skeyid)
    tail = shared + cky_i + cky_r
    d = f(tail + b"\x00")
    a = f(d + tail + b"\x01")
    e = f(a + tail + b"\x02")
    return d, a, e


def ikev1_encryption_key(alg: PrfAlg, skeyid_e: bytes, key_len: int) -> bytes:
    """The Phase 1 cipher key from SKEYID_e (RFC 2409 §5.3 and Appendix B).

    If SKEYID_e is long enough its leading bytes are the key; otherwise
    ``Ka = K1 | K2 | ...`` with ``K1 = prf(SKEYID_e, 0)``,
    ``Kn = prf(SKEYID_e, Kn-1)``, truncated to ``key_len``."""
    if key_len < 0:
        raise ValueError("key length must not be negative")
    if len(skeyid_e) >= key_len:
        return skeyid_e[:key_len]
    f = Prf(alg, skeyid_e)
    out = bytearray()
    k = b"\x00"
    while len(out) < key_len:
        k = f(k)
        out += k
    return bytes(out[:key_len])


def ikev1_prf_expand(alg: PrfAlg, key: bytes, seed: bytes, length: int) -> bytes:
    """The Quick Mode expansion of RFC 2409 §5.5: ``K1 = prf(key, seed)``,
    ``Kn = prf(key, Kn-1 | seed)``, concatenated and truncated."""
    if length < 0:
        raise ValueError("length must not be negative")
    f = Prf(alg, key)
    out = bytearray()
    k = b""
    while len(out) < length:
        k = f(k + seed)
        out += k
    return bytes(out[:length])


def ikev1_keymat(
    alg: PrfAlg,
    skeyid_d: bytes,
    protocol: int,
    spi: bytes,
    ni_b: bytes,
    nr_b: bytes,
    length: int,
    shared: bytes | None = None,
) -> bytes:
    """KEYMAT for one direction of a Quick Mode SA (RFC 2409 §5.5)::

    KEYMAT = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)

    expanded with ``K(n) = prf(SKEYID_d, K(n-1) | [g(qm)^xy |] protocol | SPI
    | Ni_b | Nr_b)`` to ``length`` bytes.  ``protocol`` is the one-byte
    protocol ID (3 = ESP, 2 = AH); ``spi`` the 4-byte SPI of the receiving
    side of that direction."""
    seed = (shared or b"") + bytes((protocol,)) + spi + ni_b + nr_b
    return ikev1_prf_expand(alg, skeyid_d, seed, length)


def _hash(hash_name: str, data: bytes) -> bytes:
    h = hashes.Hash(hash_algorithm(hash_name))
    h.update(data)
    return h.finalize()


def ikev1_phase1_iv(hash_name: str, gxi: bytes, gxr: bytes, block_size: int) -> bytes:
    """Initial Phase 1 CBC IV = hash(g^xi | g^xr) truncated to the block size
    (RFC 2409 Appendix B); ``hash_name`` is the negotiated hash."""
    return _hash(hash_name, gxi + gxr)[:block_size]


def ikev1_phase2_iv(hash_name: str, last_phase1_block: bytes, message_id: bytes, block_size: int) -> bytes:
    """First IV of a Phase 2 / informational exchange = hash(last CBC block of
    the last Phase 1 message | M-ID) truncated to the block size."""
    return _hash(hash_name, last_phase1_block + message_id)[:block_size]
