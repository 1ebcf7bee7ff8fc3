"""AES-XCBC-MAC (RFC 3566) and AES-XCBC-PRF-128 (RFC 4434).

Built on AES from ``cryptography``; only the XCBC composition is written here.
The CBC-MAC chain ``E[i] = AES-K1(M[i] XOR E[i-1])`` with ``E[0] = 0`` is
exactly AES-CBC encryption under K1 with a zero IV, so the whole message is
pushed through one ``cryptography`` CBC encryptor with its last block
pre-whitened by K2 (complete block) or padded and whitened by K3 (incomplete
or empty block); the MAC is the last ciphertext block.

``aes_xcbc_mac`` returns the full 16-byte MAC; AUTH_AES_XCBC_96 truncates it
to 12 bytes, PRF_AES128_XCBC uses all 16.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["BLOCK", "AesXcbc", "aes_xcbc_mac", "aes_xcbc_prf128", "prf128_key"]

BLOCK = 16
_ZERO_IV = bytes(BLOCK)
_ZERO_KEY = bytes(BLOCK)


def _xor16(a: bytes | memoryview, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(BLOCK, "big")


class AesXcbc:
    """AES-XCBC-MAC keyed once: K1, K2, K3 are derived in ``__init__`` and
    reused for every :meth:`mac` call (ESP/AH integrity, IKE SK payloads).

    ``key`` must be exactly 16 bytes (RFC 3566 §4); use
    :func:`aes_xcbc_prf128` for the PRF's variable-length keys."""

    __slots__ = ("_cipher", "_k2", "_k3")

    def __init__(self, key: bytes) -> None:
        if len(key) != BLOCK:
            raise ValueError(f"AES-XCBC-MAC key must be 16 bytes, not {len(key)}")
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        k = ecb.update(b"\x01" * BLOCK + b"\x02" * BLOCK + b"\x03" * BLOCK) + ecb.finalize()
        k1 = k[:BLOCK]
        self._k2 = k[BLOCK : 2 * BLOCK]
        self._k3 = k[2 * BLOCK :]
        self._cipher = Cipher(algorithms.AES(k1), modes.CBC(_ZERO_IV))

    def mac(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the full 16-byte AES-XCBC-MAC of ``data`` (any bytes-like)."""
        view = memoryview(data)
        n = len(view)
        if n and n % BLOCK == 0:
            cut = n - BLOCK
            last = _xor16(view[cut:], self._k2)
        else:
            cut = n - n % BLOCK
            tail = bytes(view[cut:]) + b"\x80"
            last = _xor16(tail + bytes(BLOCK - len(tail)), self._k3)
        enc = self._cipher.encryptor()
        if cut:
            enc.update(view[:cut])  # chain value is carried inside the encryptor
        out = enc.update(last)
        enc.finalize()
        return out


def aes_xcbc_mac(key: bytes, data: bytes) -> bytes:
    """Full 16-byte AES-XCBC-MAC (RFC 3566) of ``data`` under a 16-byte key."""
    return AesXcbc(key).mac(data)


def prf128_key(key: bytes) -> bytes:
    """RFC 4434 §2 key adjustment: a key shorter than 16 bytes is padded with
    zeros on the right, a longer one is replaced by AES-XCBC-MAC(0^128, key)."""
    if len(key) == BLOCK:
        return key
    if len(key) < BLOCK:
        return key + bytes(BLOCK - len(key))
    return AesXcbc(_ZERO_KEY).mac(key)


def aes_xcbc_prf128(key: bytes, data: bytes) -> bytes:
    """AES-XCBC-PRF-128 (RFC 4434): AES-XCBC-MAC with any key length."""
    return AesXcbc(prf128_key(key)).mac(data)
