"""Transform registry: IANA transform IDs <-> strongSwan-style names <-> metadata.

This module is pure data.  The objects that actually encrypt, MAC or derive
live in :mod:`aioipsec.crypto.cipher` (ENCR/INTEG), :mod:`aioipsec.crypto.prf`
(PRF, prf+) and :mod:`aioipsec.crypto.kex` (key exchange); they are looked up
from the metadata defined here.

Weak algorithms (DES, 3DES, HMAC-MD5, MODP <= 1024, ...) are marked
``legacy``.  Resolving them raises :class:`~aioipsec.errors.AlgorithmError`
naming the algorithm and RFC 8247 / RFC 8221 unless the caller passes
``allow_legacy=True`` (a configuration's explicit opt-in), in which case a
warning is logged.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import AlgorithmError

logger = logging.getLogger("aioipsec.cfg")


class TransformType(enum.IntEnum):
    ENCR = 1
    PRF = 2
    INTEG = 3
    KE = 4  # "D-H" in RFC 7296
    ESN = 5


class EncrId(enum.IntEnum):
    DES = 2
    TRIPLE_DES = 3
    NULL = 11
    AES_CBC = 12
    AES_CTR = 13
    AES_CCM_8 = 14
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    NULL_AUTH_AES_GMAC = 21
    CHACHA20_POLY1305 = 28


class PrfId(enum.IntEnum):
    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    AES128_XCBC = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    AES128_CMAC = 8


class IntegId(enum.IntEnum):
    NONE = 0
    HMAC_MD5_96 = 1
    HMAC_SHA1_96 = 2
    AES_XCBC_96 = 5
    AES_CMAC_96 = 8
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_384_192 = 13
    HMAC_SHA2_512_256 = 14


class KeId(enum.IntEnum):
    NONE = 0
    MODP_768 = 1
    MODP_1024 = 2
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    ECP_224_BP = 27
    ECP_256_BP = 28
    ECP_384_BP = 29
    ECP_512_BP = 30
    CURVE25519 = 31
    CURVE448 = 32
    ML_KEM_512 = 35
    ML_KEM_768 = 36
    ML_KEM_1024 = 37


class EsnId(enum.IntEnum):
    NO_ESN = 0
    ESN = 1


def _hash_by_name(self: Any) -> int:
    """The algorithm classes' ``__hash__``: by name.  Equal algorithms have
    equal names, and the generated frozen-dataclass ``__hash__`` (every field
    in a tuple, ~360 ns) ran ~10 times per handshake in the proposal caches
    and matching."""
    return hash(self.name)


@dataclass(frozen=True, slots=True)
class EncrAlg:
    """An encryption transform with a fixed key size."""

    name: str
    """Canonical strongSwan-style name, e.g. ``aes128gcm16``."""
    id: EncrId
    key_bits: int
    """Key length attribute (0 when the transform has no key-length attribute)."""
    key_len: int
    """Bytes of keying material taken from the KDF (key + salt)."""
    salt_len: int
    """Trailing salt bytes of the keying material (AEAD/CTR nonces)."""
    iv_len: int
    """Bytes of IV carried in each packet."""
    block_size: int
    """Padding alignment of the plaintext (4 for stream-like modes)."""
    icv_len: int
    """AEAD tag length; 0 for non-AEAD ciphers (integrity supplies the ICV)."""
    aead: bool
    legacy: bool = False
    has_key_length_attr: bool = True

    __hash__ = _hash_by_name


@dataclass(frozen=True, slots=True)
class IntegAlg:
    name: str
    id: IntegId
    key_len: int
    icv_len: int
    hash_name: str | None
    """``hashlib`` / ``cryptography`` name for HMAC; ``None`` for AES-XCBC / AES-CMAC / NONE."""
    legacy: bool = False

    __hash__ = _hash_by_name


@dataclass(frozen=True, slots=True)
class PrfAlg:
    name: str
    id: PrfId
    key_len: int
    """Preferred key length (RFC 7296 §2.13); HMAC PRFs accept any length."""
    out_len: int
    hash_name: str | None
    legacy: bool = False

    __hash__ = _hash_by_name


@dataclass(frozen=True, slots=True)
class KeAlg:
    name: str
    id: KeId
    kind: str
    """``modp``, ``ecp``, ``ecx`` (X25519/X448) or ``mlkem``."""
    public_len: int
    """Length in bytes of the KE payload's key exchange data (initiator side)."""
    legacy: bool = False

    __hash__ = _hash_by_name


@dataclass(frozen=True, slots=True)
class EsnAlg:
    name: str
    id: EsnId
    legacy: bool = False

    __hash__ = _hash_by_name


Alg = EncrAlg | IntegAlg | PrfAlg | KeAlg | EsnAlg

# --------------------------------------------------------------------------- tables

ENCR: dict[str, EncrAlg] = {}
INTEG: dict[str, IntegAlg] = {}
PRF: dict[str, PrfAlg] = {}
KE: dict[str, KeAlg] = {}
ESN: dict[str, EsnAlg] = {
    "noesn": EsnAlg("noesn", EsnId.NO_ESN),
    "esn": EsnAlg("esn", EsnId.ESN),
}
_ALIASES: dict[str, str] = {}


def _encr(alg: EncrAlg, *aliases: str) -> None:
    ENCR[alg.name] = alg
    for a in aliases:
        _ALIASES[a] = alg.name


for _bits in (128, 192, 256):
    _kl = _bits // 8
    _encr(EncrAlg(f"aes{_bits}", EncrId.AES_CBC, _bits, _kl, 0, 16, 16, 0, False), f"aes{_bits}cbc")
    _encr(EncrAlg(f"aes{_bits}ctr", EncrId.AES_CTR, _bits, _kl + 4, 4, 8, 4, 0, False))
    for _icv, _gid in ((8, EncrId.AES_GCM_8), (12, EncrId.AES_GCM_12), (16, EncrId.AES_GCM_16)):
        _encr(
            EncrAlg(f"aes{_bits}gcm{_icv}", _gid, _bits, _kl + 4, 4, 8, 4, _icv, True),
            f"aes{_bits}gcm{_icv * 8}",
        )
    for _icv, _cid in ((8, EncrId.AES_CCM_8), (12, EncrId.AES_CCM_12), (16, EncrId.AES_CCM_16)):
        _encr(
            EncrAlg(f"aes{_bits}ccm{_icv}", _cid, _bits, _kl + 3, 3, 8, 4, _icv, True),
            f"aes{_bits}ccm{_icv * 8}",
        )
    _encr(EncrAlg(f"aes{_bits}gmac", EncrId.NULL_AUTH_AES_GMAC, _bits, _kl + 4, 4, 8, 4, 16, True))
_ALIASES["aes"] = "aes128"
_ALIASES["aes128gcm"] = "aes128gcm16"
_ALIASES["aes256gcm"] = "aes256gcm16"
_encr(
    EncrAlg("chacha20poly1305", EncrId.CHACHA20_POLY1305, 0, 36, 4, 8, 4, 16, True, has_key_length_attr=False)
)
_encr(EncrAlg("3des", EncrId.TRIPLE_DES, 0, 24, 0, 8, 8, 0, False, legacy=True, has_key_length_attr=False))
_encr(EncrAlg("des", EncrId.DES, 0, 8, 0, 8, 8, 0, False, legacy=True, has_key_length_attr=False))
_encr(EncrAlg("null", EncrId.NULL, 0, 0, 0, 0, 4, 0, False, legacy=True, has_key_length_attr=False))

for _ia in (
    IntegAlg("md5", IntegId.HMAC_MD5_96, 16, 12, "md5", legacy=True),
    IntegAlg("sha1", IntegId.HMAC_SHA1_96, 20, 12, "sha1"),
    IntegAlg("aesxcbc", IntegId.AES_XCBC_96, 16, 12, None),
    IntegAlg("aescmac", IntegId.AES_CMAC_96, 16, 12, None),
    IntegAlg("sha256", IntegId.HMAC_SHA2_256_128, 32, 16, "sha256"),
    IntegAlg("sha384", IntegId.HMAC_SHA2_384_192, 48, 24, "sha384"),
    IntegAlg("sha512", IntegId.HMAC_SHA2_512_256, 64, 32, "sha512"),
):
    INTEG[_ia.name] = _ia
_ALIASES.update({"sha": "sha1", "sha2_256": "sha256", "sha2_384": "sha384", "sha2_512": "sha512"})

for _pa in (
    PrfAlg("prfmd5", PrfId.HMAC_MD5, 16, 16, "md5", legacy=True),
    PrfAlg("prfsha1", PrfId.HMAC_SHA1, 20, 20, "sha1"),
    PrfAlg("prfaesxcbc", PrfId.AES128_XCBC, 16, 16, None),
    PrfAlg("prfaescmac", PrfId.AES128_CMAC, 16, 16, None),
    PrfAlg("prfsha256", PrfId.HMAC_SHA2_256, 32, 32, "sha256"),
    PrfAlg("prfsha384", PrfId.HMAC_SHA2_384, 48, 48, "sha384"),
    PrfAlg("prfsha512", PrfId.HMAC_SHA2_512, 64, 64, "sha512"),
):
    PRF[_pa.name] = _pa

for _ka in (
    KeAlg("modp768", KeId.MODP_768, "modp", 96, legacy=True),
    KeAlg("modp1024", KeId.MODP_1024, "modp", 128, legacy=True),
    KeAlg("modp1536", KeId.MODP_1536, "modp", 192),
    KeAlg("modp2048", KeId.MODP_2048, "modp", 256),
    KeAlg("modp3072", KeId.MODP_3072, "modp", 384),
    KeAlg("modp4096", KeId.MODP_4096, "modp", 512),
    KeAlg("modp6144", KeId.MODP_6144, "modp", 768),
    KeAlg("modp8192", KeId.MODP_8192, "modp", 1024),
    KeAlg("ecp256", KeId.ECP_256, "ecp", 64),
    KeAlg("ecp384", KeId.ECP_384, "ecp", 96),
    KeAlg("ecp521", KeId.ECP_521, "ecp", 132),
    # Brainpool (RFC 6954); ecp224bp (27) is left out, like NIST P-224 (26):
    # cryptography has no brainpoolP224r1, and RFC 8247 wants no 224-bit group
    KeAlg("ecp256bp", KeId.ECP_256_BP, "ecp", 64),
    KeAlg("ecp384bp", KeId.ECP_384_BP, "ecp", 96),
    KeAlg("ecp512bp", KeId.ECP_512_BP, "ecp", 128),
    KeAlg("x25519", KeId.CURVE25519, "ecx", 32),
    KeAlg("x448", KeId.CURVE448, "ecx", 56),
    KeAlg("mlkem512", KeId.ML_KEM_512, "mlkem", 800),
    KeAlg("mlkem768", KeId.ML_KEM_768, "mlkem", 1184),
    KeAlg("mlkem1024", KeId.ML_KEM_1024, "mlkem", 1568),
):
    KE[_ka.name] = _ka
_ALIASES.update({"curve25519": "x25519", "curve448": "x448"})

_BY_TYPE: dict[TransformType, dict[str, Alg]] = {
    TransformType.ENCR: ENCR,  # type: ignore[dict-item]
    TransformType.INTEG: INTEG,  # type: ignore[dict-item]
    TransformType.PRF: PRF,  # type: ignore[dict-item]
    TransformType.KE: KE,  # type: ignore[dict-item]
    TransformType.ESN: ESN,  # type: ignore[dict-item]
}

_LEGACY_WHY = {
    "des": "DES is broken (RFC 8221 §5: MUST NOT)",
    "3des": "3DES has a 64-bit block (RFC 8221/8247: SHOULD NOT)",
    "null": "ENCR_NULL gives no confidentiality (RFC 8221: debugging only)",
    "md5": "HMAC-MD5-96 is deprecated (RFC 8221 §6 / RFC 8247 §3.3: MUST NOT)",
    "prfmd5": "PRF_HMAC_MD5 is deprecated (RFC 8247 §3.2: MUST NOT)",
    "modp768": "MODP-768 is far too small (RFC 8247 §2.4: MUST NOT)",
    "modp1024": "MODP-1024 is too small (RFC 8247 §2.4: SHOULD NOT)",
}

_warned: set[str] = set()


def _check_legacy(alg: Alg, allow_legacy: bool) -> None:
    if not alg.legacy:
        return
    why = _LEGACY_WHY.get(alg.name, "weak algorithm (RFC 8221/RFC 8247)")
    if not allow_legacy:
        raise AlgorithmError(
            "", f"algorithm '{alg.name}' refused: {why}; set legacy = true to allow it"
        )
    if alg.name not in _warned:
        _warned.add(alg.name)
        logger.warning("legacy algorithm %s enabled by configuration: %s", alg.name, why)


def lookup(ttype: TransformType, name: str, *, allow_legacy: bool = False) -> Alg:
    """Resolve a strongSwan-style name of the given transform type."""
    table = _BY_TYPE[ttype]
    key = name.lower()
    key = _ALIASES.get(key, key)
    try:
        alg = table[key]
    except KeyError:
        raise AlgorithmError("", f"unknown {ttype.name} algorithm '{name}'") from None
    _check_legacy(alg, allow_legacy)
    return alg


def by_id(
    ttype: TransformType, transform_id: int, key_bits: int | None = None, *, allow_legacy: bool = True
) -> Alg | None:
    """Resolve an IANA transform ID (plus key length for ENCR) to metadata.

    Returns ``None`` for unknown IDs (a peer's unknown transform is simply not
    selected).  ``allow_legacy`` defaults to ``True`` here because peers may
    *offer* anything; policy is enforced by what the local proposal contains.
    """
    table = _BY_TYPE[ttype]
    for alg in table.values():
        if int(alg.id) != transform_id:
            continue
        if isinstance(alg, EncrAlg) and alg.has_key_length_attr and alg.key_bits != key_bits:
            continue
        if alg.legacy and not allow_legacy:
            return None
        return alg
    return None


def encr(name: str, *, allow_legacy: bool = False) -> EncrAlg:
    return lookup(TransformType.ENCR, name, allow_legacy=allow_legacy)  # type: ignore[return-value]


def integ(name: str, *, allow_legacy: bool = False) -> IntegAlg:
    return lookup(TransformType.INTEG, name, allow_legacy=allow_legacy)  # type: ignore[return-value]


def prf(name: str, *, allow_legacy: bool = False) -> PrfAlg:
    return lookup(TransformType.PRF, name, allow_legacy=allow_legacy)  # type: ignore[return-value]


def ke(name: str, *, allow_legacy: bool = False) -> KeAlg:
    return lookup(TransformType.KE, name, allow_legacy=allow_legacy)  # type: ignore[return-value]


def prf_for_integ(alg: IntegAlg) -> PrfAlg:
    """strongSwan derives the PRF from the integrity algorithm when a proposal
    names none (``aes128-sha256-modp2048`` -> ``prfsha256``, ``aesxcbc`` ->
    ``prfaesxcbc``, ``aescmac`` -> ``prfaescmac``)."""
    name = "prf" + alg.name
    return PRF[name]


# --------------------------------------------------------------------------- proposals


@dataclass(frozen=True, slots=True)
class Proposal:
    """One proposal: for each transform type, the acceptable algorithms in
    order of preference.  ``protocol`` is ``ike``, ``esp`` or ``ah``."""

    protocol: str
    encr: tuple[EncrAlg, ...] = ()
    integ: tuple[IntegAlg, ...] = ()
    prf: tuple[PrfAlg, ...] = ()
    ke: tuple[KeAlg, ...] = ()
    esn: tuple[EsnAlg, ...] = ()
    text: str = field(default="", compare=False)

    @property
    def aead(self) -> bool:
        return bool(self.encr) and all(e.aead for e in self.encr)

    def transforms(self) -> list[tuple[TransformType, Alg]]:
        """All transforms, in the order they go on the wire."""
        out: list[tuple[TransformType, Alg]] = []
        out += [(TransformType.ENCR, a) for a in self.encr]
        out += [(TransformType.PRF, a) for a in self.prf]
        out += [(TransformType.INTEG, a) for a in self.integ]
        out += [(TransformType.KE, a) for a in self.ke]
        out += [(TransformType.ESN, a) for a in self.esn]
        return out

    def __str__(self) -> str:
        return self.text or "-".join(a.name for _, a in self.transforms())


def parse_proposal(text: str, protocol: str = "ike", *, allow_legacy: bool = False) -> Proposal:
    """Parse a strongSwan proposal string (``aes128gcm16-prfsha256-x25519``,
    ``aes256-sha256-modp2048``, ``aes128gcm16-x25519-esn``) for ``protocol``
    ``ike``, ``esp`` or ``ah``.  Raises :class:`AlgorithmError` naming the
    token that is unknown, weak or not allowed for the protocol."""
    protocol = protocol.lower()
    if protocol not in ("ike", "esp", "ah"):
        raise AlgorithmError("", f"unknown protocol '{protocol}'")
    encrs: list[EncrAlg] = []
    integs: list[IntegAlg] = []
    prfs: list[PrfAlg] = []
    kes: list[KeAlg] = []
    esns: list[EsnAlg] = []
    tokens = [t for t in text.strip().lower().split("-") if t]
    if not tokens:
        raise AlgorithmError("", "empty proposal")
    for tok in tokens:
        tok = _ALIASES.get(tok, tok)
        for ttype, table, dest in (
            (TransformType.ENCR, ENCR, encrs),
            (TransformType.PRF, PRF, prfs),
            (TransformType.INTEG, INTEG, integs),
            (TransformType.KE, KE, kes),
            (TransformType.ESN, ESN, esns),
        ):
            if tok in table:
                alg = table[tok]
                try:
                    _check_legacy(alg, allow_legacy)
                except AlgorithmError as exc:
                    raise AlgorithmError("", f"in proposal '{text}': {exc.reason}") from None
                dest.append(alg)  # type: ignore[arg-type]
                break
        else:
            raise AlgorithmError("", f"in proposal '{text}': unknown algorithm '{tok}'")
    if protocol == "ah":
        if encrs:
            raise AlgorithmError("", f"in proposal '{text}': AH has no encryption")
        if not integs:
            raise AlgorithmError("", f"in proposal '{text}': AH needs an integrity algorithm")
    else:
        if not encrs:
            raise AlgorithmError("", f"in proposal '{text}': no encryption algorithm")
        aead = [e.aead for e in encrs]
        if any(aead) and not all(aead):
            raise AlgorithmError("", f"in proposal '{text}': AEAD and non-AEAD ciphers cannot be mixed")
        if all(aead) and integs:
            raise AlgorithmError("", f"in proposal '{text}': AEAD ciphers take no integrity algorithm")
        if not all(aead) and not integs:
            raise AlgorithmError("", f"in proposal '{text}': non-AEAD cipher needs an integrity algorithm")
    if protocol == "ike":
        if esns:
            raise AlgorithmError("", f"in proposal '{text}': ESN is a Child SA transform")
        for e in encrs:
            # IANA "Transform Type 1": ENCR_NULL and ENCR_NULL_AUTH_AES_GMAC are not allowed for IKEv2
            if e.id in (EncrId.NULL, EncrId.NULL_AUTH_AES_GMAC):
                raise AlgorithmError("", f"in proposal '{text}': '{e.name}' is not allowed for IKE")
        if not prfs:
            if not integs:
                raise AlgorithmError("", f"in proposal '{text}': AEAD IKE proposal needs a PRF (e.g. prfsha256)")
            prfs = [prf_for_integ(i) for i in integs]
        if not kes:
            raise AlgorithmError("", f"in proposal '{text}': IKE proposal needs a key exchange")
    else:
        if prfs:
            raise AlgorithmError("", f"in proposal '{text}': PRF is an IKE transform")
        if not esns:
            esns = [ESN["noesn"]]
    return Proposal(
        protocol,
        tuple(encrs),
        tuple(integs),
        tuple(prfs),
        tuple(kes),
        tuple(esns),
        text=text,
    )
