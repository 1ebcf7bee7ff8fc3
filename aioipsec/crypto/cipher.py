"""Encryption and integrity objects for ESP, AH and the IKE SK payload.

``make_encr(alg, keymat)`` and ``make_integ(alg, key)`` turn transform
metadata (:mod:`aioipsec.crypto.transforms`) into objects that hold the
``cryptography`` primitives for the lifetime of an SA, so nothing is keyed per
packet.  Every primitive comes from ``cryptography``; the only compositions
written here are the ones the RFCs define on top of them (RFC 3686 counter
block, RFC 4106/4309/7634 nonce = salt || IV, RFC 4543 GMAC, truncated ICVs).

Conventions, shared by ESP and IKE:

- ``keymat`` is the keying material taken from the KDF: key || salt, exactly
  ``alg.key_len`` bytes (salt: 4 bytes for GCM/GMAC/CTR/ChaCha20-Poly1305,
  3 for CCM).
- AEAD ``encrypt`` returns ciphertext || tag (tag truncated to ``icv_len``);
  ``decrypt`` raises :class:`~aioipsec.errors.IntegrityError` when the tag
  does not verify.
- CBC modes take a block-aligned plaintext (the caller pads: ESP and IKE pad
  differently).  CTR is RFC 3686 (counter block = salt || IV || 0x00000001).
- GMAC (ENCR_NULL_AUTH_AES_GMAC, RFC 4543) authenticates without encrypting:
  ``encrypt`` returns plaintext || GMAC(aad || plaintext).
"""

from __future__ import annotations

import hmac
import warnings

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from ..errors import AlgorithmError, IntegrityError, LocalProtocolError, ParseError
from .transforms import EncrAlg, EncrId, IntegAlg, IntegId

__all__ = [
    "Encr",
    "Integ",
    "make_encr",
    "make_integ",
    "des_supported",
]

try:  # cryptography >= 43 keeps 3DES in the "decrepit" namespace
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
except ImportError:  # pragma: no cover - older cryptography
    _TripleDES = getattr(algorithms, "TripleDES", None)


def des_supported() -> bool:
    """True when this ``cryptography`` build still offers (Triple)DES."""
    if _TripleDES is None:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Cipher(_TripleDES(bytes(range(24))), modes.CBC(bytes(8))).encryptor()
    except Exception:  # pragma: no cover - depends on the OpenSSL build
        return False
    return True


# --------------------------------------------------------------------------- encryption


class Encr:
    """An encryption transform keyed for one SA (one direction)."""

    __slots__ = ("alg", "iv_len", "block_size", "icv_len", "aead")

    alg: EncrAlg

    def __init__(self, alg: EncrAlg) -> None:
        self.alg = alg
        self.iv_len = alg.iv_len
        self.block_size = alg.block_size
        self.icv_len = alg.icv_len
        self.aead = alg.aead

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        raise NotImplementedError

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
        raise NotImplementedError

    def _check_iv(self, iv: bytes) -> None:
        if len(iv) != self.iv_len:
            raise LocalProtocolError(f"{self.alg.name}: IV must be {self.iv_len} bytes, not {len(iv)}")

    def __repr__(self) -> str:  # never show key material
        return f"<{type(self).__name__} {self.alg.name}>"


class AeadEncr(Encr):
    """AES-GCM-16, ChaCha20-Poly1305 and AES-CCM: one ``cryptography`` AEAD
    object per SA.  ``aead_obj`` and ``salt`` are public so the ESP hot path
    can call ``aead_obj.encrypt(salt + iv, ...)`` directly."""

    __slots__ = ("aead_obj", "salt")

    def __init__(self, alg: EncrAlg, aead_obj: AESGCM | AESCCM | ChaCha20Poly1305, salt: bytes) -> None:
        super().__init__(alg)
        self.aead_obj = aead_obj
        self.salt = salt

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        self._check_iv(iv)
        return self.aead_obj.encrypt(self.salt + iv, plaintext, aad)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
        self._check_iv(iv)
        if len(ciphertext) < self.icv_len:
            raise IntegrityError(f"{self.alg.name}: ciphertext shorter than its tag")
        try:
            return self.aead_obj.decrypt(self.salt + iv, ciphertext, aad)
        except InvalidTag:
            raise IntegrityError(f"{self.alg.name}: tag mismatch") from None


class TruncatedGcmEncr(Encr):
    """AES-GCM with an 8- or 12-byte ICV (ENCR_AES_GCM_8/12).  A truncated GCM
    tag is the leading bytes of the full tag, so encryption uses ``AESGCM``
    and cuts the tag; decryption uses ``Cipher(AES, GCM(nonce, tag,
    min_tag_length))``, which verifies a short tag."""

    __slots__ = ("aead_obj", "salt", "_aes", "_cut")

    def __init__(self, alg: EncrAlg, key: bytes, salt: bytes) -> None:
        super().__init__(alg)
        self.aead_obj = AESGCM(key)
        self.salt = salt
        self._aes = algorithms.AES(key)
        self._cut = 16 - alg.icv_len

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        self._check_iv(iv)
        return self.aead_obj.encrypt(self.salt + iv, plaintext, aad)[: -self._cut]

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
        self._check_iv(iv)
        icv = self.icv_len
        if len(ciphertext) < icv:
            raise IntegrityError(f"{self.alg.name}: ciphertext shorter than its tag")
        ct, tag = ciphertext[:-icv], ciphertext[-icv:]
        dec = Cipher(self._aes, modes.GCM(self.salt + iv, tag, min_tag_length=icv)).decryptor()
        if aad:
            dec.authenticate_additional_data(aad)
        out = dec.update(ct)
        try:
            return out + dec.finalize()
        except InvalidTag:
            raise IntegrityError(f"{self.alg.name}: tag mismatch") from None


class GmacEncr(Encr):
    """ENCR_NULL_AUTH_AES_GMAC (RFC 4543): no confidentiality; the tag is
    GCM's over ``aad || plaintext`` with an empty plaintext."""

    __slots__ = ("aead_obj", "salt")

    def __init__(self, alg: EncrAlg, key: bytes, salt: bytes) -> None:
        super().__init__(alg)
        self.aead_obj = AESGCM(key)
        self.salt = salt

    def mac(self, iv: bytes, data: bytes) -> bytes:
        """The 16-byte GMAC of ``data`` with nonce salt || iv."""
        return self.aead_obj.encrypt(self.salt + iv, b"", data)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        self._check_iv(iv)
        return plaintext + self.aead_obj.encrypt(self.salt + iv, b"", aad + plaintext)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
        self._check_iv(iv)
        if len(ciphertext) < 16:
            raise IntegrityError(f"{self.alg.name}: shorter than its tag")
        pt, tag = ciphertext[:-16], ciphertext[-16:]
        try:
            self.aead_obj.decrypt(self.salt + iv, tag, aad + pt)
        except InvalidTag:
            raise IntegrityError(f"{self.alg.name}: tag mismatch") from None
        return pt


class CbcEncr(Encr):
    """AES-CBC (RFC 3602) and legacy 3DES/DES-CBC.  The block cipher object
    is built once; only the per-packet mode object (which carries the IV) is
    created per call, as ``cryptography`` requires."""

    __slots__ = ("_algo",)

    def __init__(self, alg: EncrAlg, algo: algorithms.AES | object) -> None:
        super().__init__(alg)
        self._algo = algo

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        self._check_iv(iv)
        if len(plaintext) % self.block_size:
            raise LocalProtocolError(f"{self.alg.name}: plaintext not a multiple of {self.block_size}")
        enc = Cipher(self._algo, modes.CBC(iv)).encryptor()  # type: ignore[arg-type]
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
        self._check_iv(iv)
        if len(ciphertext) % self.block_size:
            raise ParseError(f"{self.alg.name}: ciphertext not a multiple of {self.block_size}")
        dec = Cipher(self._algo, modes.CBC(iv)).decryptor()  # type: ignore[arg-type]
        return dec.update(ciphertext) + dec.finalize()


class CtrEncr(Encr):
    """AES-CTR for ESP/IKE (RFC 3686, RFC 5930): counter block =
    salt(4) || IV(8) || 0x00000001."""

    __slots__ = ("_algo", "salt")

    _ONE = b"\x00\x00\x00\x01"

    def __init__(self, alg: EncrAlg, key: bytes, salt: bytes) -> None:
        super().__init__(alg)
        self._algo = algorithms.AES(key)
        self.salt = salt

    def _crypt(self, iv: bytes, data: bytes) -> bytes:
        self._check_iv(iv)
        c = Cipher(self._algo, modes.CTR(self.salt + iv + self._ONE)).encryptor()
        return c.update(data) + c.finalize()

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        return self._crypt(iv, plaintext)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
        return self._crypt(iv, ciphertext)


class NullEncr(Encr):
    """ENCR_NULL (RFC 2410): integrity-only ESP."""

    __slots__ = ()

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        return bytes(plaintext)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
        return bytes(ciphertext)


def make_encr(alg: EncrAlg, keymat: bytes) -> Encr:
    """Build the encryption object for ``alg`` from ``keymat`` (key || salt,
    ``alg.key_len`` bytes).  Raises :class:`AlgorithmError` if this
    ``cryptography`` build lacks the cipher (DES), :class:`LocalProtocolError`
    for a wrong keying-material length."""
    if len(keymat) != alg.key_len:
        raise LocalProtocolError(f"{alg.name}: keying material must be {alg.key_len} bytes, not {len(keymat)}")
    key_len = alg.key_len - alg.salt_len
    key, salt = bytes(keymat[:key_len]), bytes(keymat[key_len:])
    eid = alg.id
    if eid == EncrId.AES_GCM_16:
        return AeadEncr(alg, AESGCM(key), salt)
    if eid in (EncrId.AES_GCM_8, EncrId.AES_GCM_12):
        return TruncatedGcmEncr(alg, key, salt)
    if eid in (EncrId.AES_CCM_8, EncrId.AES_CCM_12, EncrId.AES_CCM_16):
        return AeadEncr(alg, AESCCM(key, tag_length=alg.icv_len), salt)
    if eid == EncrId.CHACHA20_POLY1305:
        return AeadEncr(alg, ChaCha20Poly1305(key), salt)
    if eid == EncrId.NULL_AUTH_AES_GMAC:
        return GmacEncr(alg, key, salt)
    if eid == EncrId.AES_CBC:
        return CbcEncr(alg, algorithms.AES(key))
    if eid == EncrId.AES_CTR:
        return CtrEncr(alg, key, salt)
    if eid in (EncrId.TRIPLE_DES, EncrId.DES):
        if _TripleDES is None or not des_supported():
            raise AlgorithmError("", f"{alg.name} is not offered by this cryptography build")
        # DES is 3DES-EDE with K1 = K2 = K3 (EDE collapses to a single DES).
        des_key = key * 3 if eid == EncrId.DES else key
        return CbcEncr(alg, _TripleDES(des_key))
    if eid == EncrId.NULL:
        return NullEncr(alg)
    raise AlgorithmError("", f"encryption algorithm {alg.name} is not implemented")


# --------------------------------------------------------------------------- integrity


class Integ:
    """An integrity transform keyed for one SA: ``sign`` returns the ICV
    truncated to ``alg.icv_len``; ``verify`` compares in constant time."""

    __slots__ = ("alg", "icv_len")

    alg: IntegAlg

    def __init__(self, alg: IntegAlg) -> None:
        self.alg = alg
        self.icv_len = alg.icv_len

    def sign(self, data: bytes) -> bytes:
        raise NotImplementedError

    def sign_parts(self, *parts: bytes) -> bytes:
        """ICV of the concatenation of ``parts``."""
        return self.sign(b"".join(parts))

    def verify(self, data: bytes, icv: bytes) -> bool:
        return hmac.compare_digest(self.sign(data), icv)

    def __repr__(self) -> str:  # never show key material
        return f"<{type(self).__name__} {self.alg.name}>"


class HmacInteg(Integ):
    """HMAC-SHA1-96, HMAC-SHA2-256-128/384-192/512-256, HMAC-MD5-96: the key
    is set up once in a template ``HMAC`` object that is copied per message."""

    __slots__ = ("_tmpl",)

    def __init__(self, alg: IntegAlg, key: bytes) -> None:
        super().__init__(alg)
        hash_cls = {
            "md5": hashes.MD5,
            "sha1": hashes.SHA1,
            "sha256": hashes.SHA256,
            "sha384": hashes.SHA384,
            "sha512": hashes.SHA512,
        }[alg.hash_name or ""]
        self._tmpl = _hmac.HMAC(key, hash_cls())

    def sign(self, data: bytes) -> bytes:
        h = self._tmpl.copy()
        h.update(data)
        return h.finalize()[: self.icv_len]

    def sign_parts(self, *parts: bytes) -> bytes:
        """ICV of the concatenation of ``parts`` without joining them."""
        h = self._tmpl.copy()
        for p in parts:
            h.update(p)
        return h.finalize()[: self.icv_len]


class XcbcInteg(Integ):
    """AES-XCBC-MAC-96 (RFC 3566) on :mod:`aioipsec.crypto.xcbc`."""

    __slots__ = ("_mac",)

    def __init__(self, alg: IntegAlg, key: bytes) -> None:
        super().__init__(alg)
        from .xcbc import AesXcbc

        self._mac = AesXcbc(key)

    def sign(self, data: bytes) -> bytes:
        return self._mac.mac(data)[: self.icv_len]


class CmacInteg(Integ):
    """AES-CMAC-96 (RFC 4494) on ``cryptography``'s CMAC
    (:mod:`aioipsec.crypto.cmac`)."""

    __slots__ = ("_mac",)

    def __init__(self, alg: IntegAlg, key: bytes) -> None:
        super().__init__(alg)
        from .cmac import AesCmac

        self._mac = AesCmac(key)

    def sign(self, data: bytes) -> bytes:
        return self._mac.mac(data)[: self.icv_len]

    def sign_parts(self, *parts: bytes) -> bytes:
        """ICV of the concatenation of ``parts`` without joining them."""
        return self._mac.mac_parts(*parts)[: self.icv_len]


def make_integ(alg: IntegAlg, key: bytes) -> Integ:
    """Build the integrity object for ``alg`` keyed with ``key``
    (``alg.key_len`` bytes)."""
    if len(key) != alg.key_len:
        raise LocalProtocolError(f"{alg.name}: key must be {alg.key_len} bytes, not {len(key)}")
    if alg.id == IntegId.AES_XCBC_96:
        return XcbcInteg(alg, bytes(key))
    if alg.id == IntegId.AES_CMAC_96:
        return CmacInteg(alg, bytes(key))
    if alg.hash_name:
        return HmacInteg(alg, bytes(key))
    raise AlgorithmError("", f"integrity algorithm {alg.name} is not implemented")
