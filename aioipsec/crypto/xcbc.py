"""AES-XCBC-MAC (RFC 3566) and AES-XCBC-PRF-128 (RFC 4434).

Built on AES from ``cryptography``; only the XCBC composition is written here.
The CBC-MAC chain ``E[i] = AES-K1(M[i] XOR E[i-1])`` with ``E[0] = 0`` is
exactly AES-CBC encryption under K1 with a zero IV, so the whole message is
pushed through one ``cryptography`` CBC encryptor with its last block
pre-whitened by K2 (complete block) or padded and whitened by K3 (incomplete
or empty block); the MAC is the last ciphertext block.  (A reference
block-by-block implementation on AES-ECB lives in the tests.)

``aes_xcbc_mac`` returns the full 16-byte MAC; AUTH_AES_XCBC_96 truncates it
to 12 bytes, PRF_AES128_XCBC uses all 16.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["BLOCK", "AesXcbc", "aes_xcbc_mac", "aes_xcbc_prf128", "prf128_key"]

BLOCK = 16
_ZERO_IV = bytes(BLOCK)
_ZERO_KEY = bytes(BLOCK)


class AesXcbc:
    """AES-XCBC-MAC keyed once: K1, K2, K3 are derived in ``__init__`` and
    reused for every :meth:`mac` call (ESP/AH integrity, IKE SK payloads).

    ``key`` must be exactly 16 bytes (RFC 3566 §4); use
    :func:`aes_xcbc_prf128` for the PRF's variable-length keys.

    Creating a ``cryptography`` encryptor costs more than MACing a packet, so
    one CBC encryptor under K1 lives as long as the object and is never
    finalized.  Its chaining value after a call is that call's MAC; XOR-ing
    the next message's first block with it gives exactly a zero-IV CBC-MAC
    chain again.  The object therefore keeps state between calls: do not
    share one instance between threads."""

    __slots__ = ("_cipher", "_enc", "_prev", "_k2", "_k3")

    def __init__(self, key: bytes) -> None:
        if len(key) != BLOCK:
            raise ValueError(f"AES-XCBC-MAC key must be 16 bytes, not {len(key)}")
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        k = ecb.update(b"\x01" * BLOCK + b"\x02" * BLOCK + b"\x03" * BLOCK) + ecb.finalize()
        self._k2 = int.from_bytes(k[BLOCK : 2 * BLOCK], "big")
        self._k3 = int.from_bytes(k[2 * BLOCK :], "big")
        self._cipher = Cipher(algorithms.AES(k[:BLOCK]), modes.CBC(_ZERO_IV))
        self._reset()

    def _reset(self) -> None:
        self._enc = self._cipher.encryptor()
        self._prev = 0  # current CBC chaining value, as an integer

    def mac(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the full 16-byte AES-XCBC-MAC of ``data`` (any bytes-like)."""
        n = len(data)
        if n and not n % BLOCK:
            cut = n - BLOCK  # complete last block: whiten with K2
            last = int.from_bytes(data[cut:], "big") ^ self._k2
        else:  # incomplete or empty last block: pad 0x80 00.., whiten with K3
            cut = n - n % BLOCK
            pad_bits = 8 * (BLOCK - 1 - (n - cut))
            last = (int.from_bytes(bytes(data[cut:]) + b"\x80", "big") << pad_bits) ^ self._k3
        enc = self._enc
        try:
            if cut:
                enc.update((int.from_bytes(data[:BLOCK], "big") ^ self._prev).to_bytes(BLOCK, "big"))
                if cut > BLOCK:
                    enc.update(data[BLOCK:cut])
            else:
                last ^= self._prev
            out = enc.update(last.to_bytes(BLOCK, "big"))
        except BaseException:
            self._reset()  # never leave a half-fed chain behind
            raise
        self._prev = int.from_bytes(out, "big")
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
