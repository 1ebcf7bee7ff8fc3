"""Pseudo-random functions (IKEv2 transform type 2, IKEv1 HMAC) and prf+.

``Prf(alg, key)`` is keyed once and called many times: for HMAC PRFs the
keyed ``cryptography`` HMAC context is built once and copied per call; for
AES-XCBC-PRF-128 the RFC 4434 key adjustment and the K1/K2/K3 subkeys are
computed once; for AES-CMAC-PRF-128 the RFC 4615 key adjustment is done once
and the keyed ``cryptography`` CMAC context copied per call.

``prf_plus`` is RFC 7296 §2.13::

    prf+ (K,S) = T1 | T2 | T3 | ...
    T1 = prf (K, S | 0x01)
    Tn = prf (K, Tn-1 | S | n)     n <= 255
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

from ..errors import AlgorithmError
from .cmac import AesCmac, prf128_cmac_key
from .transforms import PrfAlg, PrfId
from .xcbc import AesXcbc, prf128_key

__all__ = ["Prf", "hash_algorithm", "prf", "prf_plus"]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


_BY_NAME: dict[str, hashes.HashAlgorithm] = {}
"""Names already resolved -> hash object (stateless, so one instance is shared)."""


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """``cryptography`` hash object for a hashlib-style name (``sha1``,
    ``sha256``, ...; ``SHA-256`` and ``sha2_256`` are accepted too)."""
    h = _BY_NAME.get(name)
    if h is not None:
        return h
    key = name.lower().replace("-", "").replace("_", "")
    key = {"sha2256": "sha256", "sha2384": "sha384", "sha2512": "sha512"}.get(key, key)
    try:
        h = _HASHES[key]()
    except KeyError:
        raise AlgorithmError("", f"unknown hash algorithm '{name}'") from None
    if len(_BY_NAME) < 64:  # bounded: names come from code and config, not the wire
        _BY_NAME[name] = h
    return h


class Prf:
    """A PRF keyed once; ``prf(data)`` returns ``alg.out_len`` bytes.

    HMAC PRFs take keys of any length (RFC 2104 hashes long keys);
    AES-XCBC-PRF-128 adjusts the key per RFC 4434 (zero-pad short keys,
    XCBC-MAC(0^128, K) for long ones), AES-CMAC-PRF-128 per RFC 4615
    (CMAC(0^128, K) for every key that is not 16 bytes).  Like
    :class:`~.xcbc.AesXcbc`, an instance is for one thread at a time."""

    __slots__ = ("alg", "_hmac", "_xcbc")

    def __init__(self, alg: PrfAlg, key: bytes) -> None:
        self.alg = alg
        self._xcbc: AesXcbc | AesCmac | None = None
        if alg.hash_name is not None:
            self._hmac: hmac.HMAC | None = hmac.HMAC(
                key if type(key) is bytes else bytes(key), hash_algorithm(alg.hash_name)
            )
            return
        self._hmac = None
        if alg.id == PrfId.AES128_XCBC:
            self._xcbc = AesXcbc(prf128_key(bytes(key)))
        elif alg.id == PrfId.AES128_CMAC:
            self._xcbc = AesCmac(prf128_cmac_key(bytes(key)))
        else:
            raise AlgorithmError("", f"PRF '{alg.name}' is not implemented")

    @property
    def out_len(self) -> int:
        return self.alg.out_len

    def __call__(self, data: bytes) -> bytes:
        h = self._hmac
        if h is not None:
            h = h.copy()
            h.update(data)
            return h.finalize()
        assert self._xcbc is not None
        return self._xcbc.mac(data)

    def __repr__(self) -> str:  # never show key material
        return f"Prf({self.alg.name})"


def prf(alg: PrfAlg, key: bytes, data: bytes) -> bytes:
    """One-shot ``prf(key, data)``.  An HMAC PRF is keyed, fed and finalized
    once: no keyed context is kept to be copied (:class:`Prf` copies it per
    call so that it can be called again)."""
    name = alg.hash_name
    if name is not None:
        # hash_algorithm's cache read inline (14 calls per handshake)
        h = hmac.HMAC(key if type(key) is bytes else bytes(key), _BY_NAME.get(name) or hash_algorithm(name))
        h.update(data)
        return h.finalize()
    return Prf(alg, key)(data)


def prf_plus(alg: PrfAlg, key: bytes, seed: bytes, length: int) -> bytes:
    """RFC 7296 §2.13 prf+ truncated to ``length`` bytes.

    Raises ``ValueError`` if ``length`` is negative or needs more than 255
    PRF blocks."""
    if length < 0:
        raise ValueError("prf+ length must not be negative")
    f = Prf(alg, key)
    blocks = -(-length // f.out_len)
    if blocks > 255:
        raise ValueError(
            f"prf+ with {alg.name} yields at most {255 * f.out_len} bytes, {length} requested"
        )
    seed = bytes(seed)
    t = f(seed + b"\x01")
    if blocks == 1:
        return t[:length]
    out = [t]
    for n in range(2, blocks + 1):
        t = f(t + seed + bytes((n,)))
        out.append(t)
    return b"".join(out)[:length]
