"""AES-CMAC (RFC 4493), AES-CMAC-96 (RFC 4494) and AES-CMAC-PRF-128 (RFC 4615).

The MAC itself is ``cryptography``'s CMAC over AES; only the RFC 4615 key
adjustment is written here.  ``AUTH_AES_CMAC_96`` (ESP/AH/IKE integrity,
IANA integrity id 8) truncates the 16-byte MAC to 12 bytes and takes a
16-byte key; ``PRF_AES128_CMAC`` (IKEv2 PRF id 8) uses all 16 bytes and
takes a key of any length.

Unlike AES-XCBC-PRF-128 (RFC 4434, zero-pads short keys), RFC 4615 §3 runs
every key that is not exactly 16 bytes, shorter or longer, through
AES-CMAC under the all-zero key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

__all__ = ["BLOCK", "AesCmac", "aes_cmac", "aes_cmac_prf128", "prf128_cmac_key"]

BLOCK = 16
_ZERO_KEY = bytes(BLOCK)


class AesCmac:
    """AES-CMAC keyed once: the keyed ``cryptography`` CMAC context (with
    its subkeys) is built in ``__init__`` and copied for each :meth:`mac`.

    ``key`` must be exactly 16 bytes (RFC 4494 §2: AES-128); use
    :func:`aes_cmac_prf128` for the PRF's variable-length keys."""

    __slots__ = ("_tmpl",)

    def __init__(self, key: bytes) -> None:
        if len(key) != BLOCK:
            raise ValueError(f"AES-CMAC key must be 16 bytes, not {len(key)}")
        self._tmpl = cmac.CMAC(algorithms.AES(bytes(key)))

    def mac(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the full 16-byte AES-CMAC of ``data`` (any bytes-like)."""
        c = self._tmpl.copy()
        c.update(data)
        return c.finalize()

    def mac_parts(self, *parts: bytes | bytearray | memoryview) -> bytes:
        """AES-CMAC of the concatenation of ``parts`` without joining them."""
        c = self._tmpl.copy()
        for p in parts:
            c.update(p)
        return c.finalize()

    def __repr__(self) -> str:  # never show key material
        return "AesCmac()"


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """Full 16-byte AES-CMAC (RFC 4493) of ``data`` under a 16-byte key."""
    return AesCmac(key).mac(data)


def prf128_cmac_key(key: bytes) -> bytes:
    """RFC 4615 §3 key adjustment: a 16-byte key is used as is, any other
    length (shorter or longer) becomes AES-CMAC(0^128, key)."""
    if len(key) == BLOCK:
        return bytes(key)
    return AesCmac(_ZERO_KEY).mac(key)


def aes_cmac_prf128(key: bytes, data: bytes) -> bytes:
    """AES-CMAC-PRF-128 (RFC 4615): AES-CMAC with any key length."""
    return AesCmac(prf128_cmac_key(key)).mac(data)
