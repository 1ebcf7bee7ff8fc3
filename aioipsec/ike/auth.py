"""IKEv2 authentication: identities, AUTH payload data, certificates.

* Identities (RFC 7296 §3.5): IPv4, IPv6, FQDN, RFC822 and DER DN, parsed
  from strongSwan-style strings (``192.0.2.1``, ``host.example``,
  ``user@example``, ``@fqdn``, ``C=CH, O=example, CN=host``).
* The signed octets (RFC 7296 §2.15)::

      InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
      ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload)

* PSK: ``AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)``.
* Signatures: RSA PKCS#1 v1.5 and RSASSA-PSS, ECDSA P-256/384/521 and Ed25519
  through RFC 7427 "Digital Signature" (auth method 14: an ASN.1
  AlgorithmIdentifier in front of the signature), plus the classic methods
  1 (RSA, SHA-1) and 9/10/11 (ECDSA, RFC 4754) for peers without RFC 7427.
* Certificates: CERTREQ hashes (SHA-1 of the CA's SubjectPublicKeyInfo),
  chain verification against trust anchors with ``cryptography``'s X.509
  verification API (relaxed extension policies: IKE certificates need no
  TLS EKU), falling back to signature + validity checks when that API is
  missing, and identity-to-certificate matching.
* Revocation: loaded CRLs checked for every certificate of a verified chain
  below its anchor, with strongSwan's ``strict`` / ``ifuri`` / ``relaxed``
  policies (:func:`check_revocation`), plus what the I/O layer fetched from
  OCSP responders and CRL distribution points (:class:`RevocationCache`;
  fetching is in :mod:`aioipsec.asyncio.revocation_fetch`, never here).

All comparisons of MACs use :func:`hmac.compare_digest`.  Nothing here logs
except :func:`check_revocation` (which CRL was used; never keys).
"""

from __future__ import annotations

import datetime
import enum
import functools
import hashlib
import hmac
import ipaddress
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .._cache import BoundedCache
from .._frozen import fast_init
from ..errors import AuthenticationFailed

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.x509.verification import Store

    from ..config import AuthConfig

# ``cryptography.x509`` is imported lazily: it pulls in ``email`` and with it
# ``socket``, which the sans-I/O core must not import (DESIGN.md §1).

KEY_PAD = b"Key Pad for IKEv2"

Prf = Callable[[bytes, bytes], bytes]
"""``prf(key, data) -> bytes`` of the negotiated IKE PRF."""


class IdType(enum.IntEnum):
    IPV4_ADDR = 1
    FQDN = 2
    RFC822_ADDR = 3
    IPV6_ADDR = 5
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


# ID types tested per handshake (Identity.__str__ for log lines and events), as
# module constants: in CPython 3.11 ``Enum.MEMBER`` goes through the hook of
# EnumType.__getattr__ (~60 ns against a few ns for a global).  Same objects.
_ID_IPV4, _ID_IPV6, _ID_FQDN, _ID_DN = IdType.IPV4_ADDR, IdType.IPV6_ADDR, IdType.FQDN, IdType.DER_ASN1_DN
_ID_NAMES = (IdType.FQDN, IdType.RFC822_ADDR)


class AuthMethod(enum.IntEnum):
    RSA_SIG = 1
    SHARED_KEY_MIC = 2
    DSS_SIG = 3
    ECDSA_256 = 9
    ECDSA_384 = 10
    ECDSA_521 = 11
    DIGITAL_SIGNATURE = 14


class HashAlgorithm(enum.IntEnum):
    """RFC 7427 §4 hash algorithm identifiers (SIGNATURE_HASH_ALGORITHMS)."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5


SIGNATURE_HASH_ALGORITHMS = 16431
SUPPORTED_HASHES = (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY)

CERT_X509_SIGNATURE = 4
"""Certificate encoding of CERT and CERTREQ payloads: X.509 certificate - signature."""

# --------------------------------------------------------------------------- minimal DER


class _DerError(ValueError):
    pass


def _der_read(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Read one TLV at ``pos``: (tag, value, next position)."""
    if pos + 2 > len(data):
        raise _DerError("truncated")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise _DerError("bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise _DerError("truncated value")
    return tag, data[pos : pos + length], pos + length


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        tag, value, pos = _der_read(data, pos)
        out.append((tag, value))
    return out


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


@functools.lru_cache(maxsize=64)
def _oid_encode(dotted: str) -> bytes:
    # cached: the OIDs are our constants, encoded for every signature we make
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, bytes(body))


def _oid_decode(value: bytes) -> str:
    if not value:
        raise _DerError("empty OID")
    parts = [min(value[0] // 40, 2), value[0] - 40 * min(value[0] // 40, 2)]
    n = 0
    for b in value[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(n)
            n = 0
    return ".".join(str(p) for p in parts)


_SEQ, _SET, _NULL = 0x30, 0x31, b"\x05\x00"

OID_SHA1 = "1.3.14.3.2.26"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_SHA384 = "2.16.840.1.101.3.4.2.2"
OID_SHA512 = "2.16.840.1.101.3.4.2.3"
OID_RSA_SHA1 = "1.2.840.113549.1.1.5"
OID_RSA_SHA256 = "1.2.840.113549.1.1.11"
OID_RSA_SHA384 = "1.2.840.113549.1.1.12"
OID_RSA_SHA512 = "1.2.840.113549.1.1.13"
OID_RSA_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_ECDSA_SHA1 = "1.2.840.10045.4.1"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OID_ECDSA_SHA384 = "1.2.840.10045.4.3.3"
OID_ECDSA_SHA512 = "1.2.840.10045.4.3.4"
OID_ED25519 = "1.3.101.112"
OID_ED448 = "1.3.101.113"

_HASH_BY_OID: dict[str, type[hashes.HashAlgorithm]] = {
    OID_SHA1: hashes.SHA1,
    OID_SHA256: hashes.SHA256,
    OID_SHA384: hashes.SHA384,
    OID_SHA512: hashes.SHA512,
}
_OID_BY_HASH = {v.name: k for k, v in _HASH_BY_OID.items()}
_RSA_OIDS = {OID_RSA_SHA1: hashes.SHA1, OID_RSA_SHA256: hashes.SHA256, OID_RSA_SHA384: hashes.SHA384, OID_RSA_SHA512: hashes.SHA512}
_ECDSA_OIDS = {
    OID_ECDSA_SHA1: hashes.SHA1,
    OID_ECDSA_SHA256: hashes.SHA256,
    OID_ECDSA_SHA384: hashes.SHA384,
    OID_ECDSA_SHA512: hashes.SHA512,
}
_HASH_ALG_ID: dict[str, HashAlgorithm] = {
    "sha1": HashAlgorithm.SHA1,
    "sha256": HashAlgorithm.SHA2_256,
    "sha384": HashAlgorithm.SHA2_384,
    "sha512": HashAlgorithm.SHA2_512,
}


def algorithm_identifier(oid: str, params: bytes | None = None) -> bytes:
    """DER AlgorithmIdentifier: SEQUENCE { OID, params } (params omitted if None)."""
    return _der(_SEQ, _oid_encode(oid) + (params if params is not None else b""))


def _hash_alg_id(h: hashes.HashAlgorithm) -> bytes:
    return algorithm_identifier(_OID_BY_HASH[h.name], _NULL)


def pss_algorithm_identifier(h: hashes.HashAlgorithm) -> bytes:
    """RSASSA-PSS AlgorithmIdentifier with hash ``h``, MGF1(``h``) and a salt of
    the hash length, encoded as strongSwan and RFC 7427 App. A.4.3 do."""
    params = (
        _der(0xA0, _hash_alg_id(h))
        + _der(0xA1, algorithm_identifier(OID_MGF1, _hash_alg_id(h)))
        + _der(0xA2, _der(0x02, bytes([h.digest_size])))
    )
    return algorithm_identifier(OID_RSA_PSS, _der(_SEQ, params))


# --------------------------------------------------------------------------- identities

OID_COMMON_NAME = "2.5.4.3"
_DN_ATTRS: dict[str, str] = {
    "C": "2.5.4.6",
    "ST": "2.5.4.8",
    "L": "2.5.4.7",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "CN": OID_COMMON_NAME,
    "E": "1.2.840.113549.1.9.1",
    "EMAILADDRESS": "1.2.840.113549.1.9.1",
    "DC": "0.9.2342.19200300.100.1.25",
    "SN": "2.5.4.4",
    "SERIALNUMBER": "2.5.4.5",
    "UID": "0.9.2342.19200300.100.1.1",
    "T": "2.5.4.12",
    "G": "2.5.4.42",
}
"""strongSwan DN attribute names -> dotted OIDs."""
_DN_NAMES = {
    "2.5.4.6": "C",
    "2.5.4.8": "ST",
    "2.5.4.7": "L",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    OID_COMMON_NAME: "CN",
    "1.2.840.113549.1.9.1": "E",
    "0.9.2342.19200300.100.1.25": "DC",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "0.9.2342.19200300.100.1.1": "UID",
    "2.5.4.12": "T",
    "2.5.4.42": "G",
}


def _split_dn(text: str) -> list[tuple[str, str]]:
    """Split ``C=CH, O=ex\\, inc, CN=host`` (commas or slashes) into pairs."""
    parts: list[str] = []
    cur = []
    escaped = False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",/":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    out = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        key, sep, value = p.partition("=")
        if not sep:
            raise ValueError(f"bad DN component '{p}'")
        out.append((key.strip(), value.strip()))
    return out


def dn_from_string(text: str) -> x509.Name:
    """A DN in strongSwan order (``C=CH, O=example, CN=host``: the first
    component is the outermost RDN) as an ``x509.Name``."""
    from cryptography import x509

    attrs = []
    for key, value in _split_dn(text):
        dotted = _DN_ATTRS.get(key.upper(), key)
        try:
            oid = x509.ObjectIdentifier(dotted)
        except ValueError:
            raise ValueError(f"unknown DN attribute '{key}'") from None
        attrs.append(x509.NameAttribute(oid, value))
    if not attrs:
        raise ValueError("empty DN")
    return x509.Name(attrs)


def parse_dn_der(der: bytes) -> tuple[tuple[str, str], ...]:
    """A DER Name as ((oid, value), ...) in RDN order; raises ValueError."""
    tag, body, end = _der_read(der)
    if tag != _SEQ or end != len(der):
        raise _DerError("DN is not a SEQUENCE")
    out = []
    for set_tag, rdn in _der_items(body):
        if set_tag != _SET:
            raise _DerError("RDN is not a SET")
        for seq_tag, atv in _der_items(rdn):
            if seq_tag != _SEQ:
                raise _DerError("bad AttributeTypeAndValue")
            items = _der_items(atv)
            if len(items) != 2 or items[0][0] != 0x06:
                raise _DerError("bad AttributeTypeAndValue")
            value = items[1][1]
            if items[1][0] == 0x1E:  # BMPString
                text = value.decode("utf-16-be", "replace")
            else:
                text = value.decode("utf-8", "replace")
            out.append((_oid_decode(items[0][1]), text))
    return tuple(out)


def _name_attrs(name: x509.Name) -> tuple[tuple[str, str], ...]:
    return tuple((a.oid.dotted_string, str(a.value)) for a in name)


def _dn_text(attrs: Iterable[tuple[str, str]]) -> str:
    return ", ".join(
        f"{_DN_NAMES.get(oid, oid)}={value.replace(',', chr(92) + ',')}" for oid, value in attrs
    )


@fast_init
@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity: type and raw data of an ID payload."""

    id_type: int
    data: bytes

    ANY = "%any"

    @classmethod
    def from_string(cls, text: str) -> Identity:
        """Parse strongSwan syntax: IP address, ``@fqdn`` or ``fqdn``,
        ``user@domain``, ``C=.., O=.., CN=..`` (DN), ``@#hex`` (KEY_ID)."""
        return _identity_from_string(cls, text)

    @classmethod
    def _from_string(cls, text: str) -> Identity:
        text = text.strip()
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            return cls(IdType.IPV4_ADDR if ip.version == 4 else IdType.IPV6_ADDR, ip.packed)
        if text.startswith("@#"):
            return cls(IdType.KEY_ID, bytes.fromhex(text[2:]))
        if text.startswith("@"):
            return cls(IdType.FQDN, text[1:].encode())
        if "=" in text:
            return cls(IdType.DER_ASN1_DN, dn_from_string(text).public_bytes())
        if "@" in text:
            return cls(IdType.RFC822_ADDR, text.encode())
        return cls(IdType.FQDN, text.encode())

    @classmethod
    def from_address(cls, addr: str) -> Identity:
        ip = ipaddress.ip_address(addr)
        return cls(IdType.IPV4_ADDR if ip.version == 4 else IdType.IPV6_ADDR, ip.packed)

    @classmethod
    def from_body(cls, body: bytes) -> Identity:
        """From RestOfIDPayload (type, 3 reserved bytes, data)."""
        if len(body) < 4:
            raise ValueError("ID payload too short")
        return cls(body[0], bytes(body[4:]))

    def body(self) -> bytes:
        """RestOfIDPayload: ID type | RESERVED(3) | identification data."""
        return bytes([self.id_type, 0, 0, 0]) + self.data

    def dn_attrs(self) -> tuple[tuple[str, str], ...] | None:
        if self.id_type != IdType.DER_ASN1_DN:
            return None
        try:
            return parse_dn_der(self.data)
        except _DerError:
            return None

    def matches(self, other: Identity) -> bool:
        """Equality, with DNs compared attribute by attribute (string types
        such as PrintableString vs UTF8String do not matter) and FQDN/RFC822
        compared case-insensitively."""
        if self.id_type != other.id_type:
            return False
        if self.id_type == _ID_DN:
            a, b = self.dn_attrs(), other.dn_attrs()
            return a is not None and a == b
        if self.id_type in _ID_NAMES:
            return self.data.lower() == other.data.lower()
        return self.data == other.data

    def __str__(self) -> str:
        t = self.id_type
        try:
            if t == _ID_IPV4 and len(self.data) == 4:
                return str(ipaddress.IPv4Address(self.data))
            if t == _ID_IPV6 and len(self.data) == 16:
                return str(ipaddress.IPv6Address(self.data))
            if t in _ID_NAMES:
                return self.data.decode("utf-8", "replace")
            if t == _ID_DN:
                attrs = self.dn_attrs()
                if attrs is not None:
                    return _dn_text(attrs)
            if t == IdType.KEY_ID:
                return "@#" + self.data.hex()
        except ValueError:
            pass
        return f"({t}:{self.data.hex()})"


@functools.lru_cache(maxsize=256)
def _identity_from_string(cls: type[Identity], text: str) -> Identity:
    """Identities are immutable and the same few configured strings are parsed
    for every IKE SA (an IP address is tried first, and failing costs an exception)."""
    return cls._from_string(text)


def identity_matches_config(received: Identity, configured: str | None) -> bool:
    """Does the peer's ID satisfy the configured remote ID (``None`` / ``%any``: anything)?"""
    if configured is None or configured.strip() in ("%any", "%any6", ""):
        return True
    try:
        want = Identity.from_string(configured)
    except ValueError:
        return False
    if want.id_type == _ID_FQDN and received.id_type == _ID_FQDN and want.data.startswith(b"*."):
        return received.data.lower().endswith(want.data[1:].lower())
    return want.matches(received)


# --------------------------------------------------------------------------- AUTH data


def signed_octets(message: bytes, peer_nonce: bytes, id_body: bytes, prf: Prf, sk_p: bytes) -> bytes:
    """``RealMessage | NonceData | prf(SK_p, RestOfIDPayload)`` (RFC 7296 §2.15).

    ``message`` is our own IKE_SA_INIT message (the initiator's request or the
    responder's response), ``peer_nonce`` the other side's nonce, ``id_body``
    our ID payload's body and ``sk_p`` our SK_pi / SK_pr."""
    return message + peer_nonce + prf(sk_p, id_body)


def psk_auth_data(prf: Prf, psk: bytes, octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)."""
    return prf(prf(psk, KEY_PAD), octets)


def verify_psk(prf: Prf, psk: bytes, octets: bytes, auth_data: bytes) -> bool:
    return hmac.compare_digest(psk_auth_data(prf, psk, octets), auth_data)


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

_CURVE_HASH = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512}
_CURVE_METHOD = {
    "secp256r1": AuthMethod.ECDSA_256,
    "secp384r1": AuthMethod.ECDSA_384,
    "secp521r1": AuthMethod.ECDSA_521,
}
_METHOD_CURVE = {v: k for k, v in _CURVE_METHOD.items()}


def _pick_hash(peer_hashes: Iterable[int], prefer: Sequence[type[hashes.HashAlgorithm]]) -> hashes.HashAlgorithm:
    have = set(peer_hashes)
    for h in prefer:
        if _HASH_ALG_ID[h.name] in have:
            return h()
    return prefer[0]()


def sign(
    key: PrivateKey,
    octets: bytes,
    *,
    peer_hashes: Iterable[int] | None = None,
    rsa_pss: bool = False,
) -> tuple[int, bytes]:
    """Sign the AUTH octets; returns (auth method, auth data).

    With ``peer_hashes`` (the peer's SIGNATURE_HASH_ALGORITHMS, RFC 7427)
    method 14 is used; without, RSA falls back to method 1 (PKCS#1 v1.5 with
    SHA-1) and ECDSA to methods 9/10/11.  Ed25519/Ed448 need RFC 7427."""
    hashes_ = list(peer_hashes) if peer_hashes is not None else None
    if isinstance(key, rsa.RSAPrivateKey):
        if hashes_ is None:
            if rsa_pss:
                raise AuthenticationFailed("RSASSA-PSS needs RFC 7427 support by the peer")
            return AuthMethod.RSA_SIG, key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
        h = _pick_hash(hashes_, (hashes.SHA256, hashes.SHA384, hashes.SHA512))
        if rsa_pss:
            sig = key.sign(octets, padding.PSS(padding.MGF1(h), h.digest_size), h)
            alg = pss_algorithm_identifier(h)
        else:
            sig = key.sign(octets, padding.PKCS1v15(), h)
            oid = {v.name: k for k, v in _RSA_OIDS.items()}[h.name]
            alg = algorithm_identifier(oid, _NULL)
        return AuthMethod.DIGITAL_SIGNATURE, bytes([len(alg)]) + alg + sig
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curve = key.curve.name
        if curve not in _CURVE_HASH:
            raise AuthenticationFailed(f"unsupported curve {curve}")
        h = _CURVE_HASH[curve]()
        der_sig = key.sign(octets, ec.ECDSA(h))
        if hashes_ is None:
            r, s = decode_dss_signature(der_sig)
            size = (key.curve.key_size + 7) // 8
            return _CURVE_METHOD[curve], r.to_bytes(size, "big") + s.to_bytes(size, "big")
        oid = {v.name: k for k, v in _ECDSA_OIDS.items()}[h.name]
        alg = algorithm_identifier(oid)
        return AuthMethod.DIGITAL_SIGNATURE, bytes([len(alg)]) + alg + der_sig
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        if hashes_ is None or HashAlgorithm.IDENTITY not in hashes_:
            raise AuthenticationFailed("EdDSA needs RFC 7427/8420 support (hash 'Identity') by the peer")
        oid = OID_ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) else OID_ED448
        alg = algorithm_identifier(oid)
        return AuthMethod.DIGITAL_SIGNATURE, bytes([len(alg)]) + alg + key.sign(octets)
    raise AuthenticationFailed(f"unsupported private key type {type(key).__name__}")


def _parse_pss(params: bytes) -> tuple[hashes.HashAlgorithm, hashes.HashAlgorithm, int]:
    """RSASSA-PSS-params -> (hash, mgf1 hash, salt length); defaults per RFC 4055."""
    h: hashes.HashAlgorithm = hashes.SHA1()
    mgf: hashes.HashAlgorithm = hashes.SHA1()
    salt = 20
    for tag, value in _der_items(params):
        if tag == 0xA0:
            _, alg, _ = _der_read(value)
            (t, oid), *_ = _der_items(alg)
            h = _HASH_BY_OID[_oid_decode(oid)]()
        elif tag == 0xA1:
            _, alg, _ = _der_read(value)
            items = _der_items(alg)
            if _oid_decode(items[0][1]) != OID_MGF1 or len(items) < 2:
                raise _DerError("unsupported mask generation function")
            (t, oid), *_ = _der_items(items[1][1])
            mgf = _HASH_BY_OID[_oid_decode(oid)]()
        elif tag == 0xA2:
            _, num, _ = _der_read(value)
            salt = int.from_bytes(num, "big")
        elif tag == 0xA3:
            _, num, _ = _der_read(value)
            if int.from_bytes(num, "big") != 1:
                raise _DerError("unsupported trailer field")
    return h, mgf, salt


def verify_signature(public_key: PublicKey, method: int, auth_data: bytes, octets: bytes) -> str:
    """Verify a signature AUTH payload; returns a short description of the
    scheme (``RSA_EMSA_PSS_SHA2_256``, ``ECDSA_WITH_SHA384_DER``, ...).

    Raises :class:`AuthenticationFailed` on any mismatch or malformed data."""
    try:
        if method == AuthMethod.RSA_SIG:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise AuthenticationFailed("auth method RSA but the key is not RSA")
            public_key.verify(auth_data, octets, padding.PKCS1v15(), hashes.SHA1())
            return "RSA_EMSA_PKCS1_SHA1"
        if method in _METHOD_CURVE:
            if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != _METHOD_CURVE[
                AuthMethod(method)
            ]:
                raise AuthenticationFailed("ECDSA auth method does not match the key's curve")
            size = (public_key.curve.key_size + 7) // 8
            if len(auth_data) != 2 * size:
                raise AuthenticationFailed("ECDSA signature has the wrong length")
            r = int.from_bytes(auth_data[:size], "big")
            s = int.from_bytes(auth_data[size:], "big")
            h = _CURVE_HASH[public_key.curve.name]()
            public_key.verify(encode_dss_signature(r, s), octets, ec.ECDSA(h))
            return f"ECDSA_WITH_{h.name.upper()}"
        if method != AuthMethod.DIGITAL_SIGNATURE:
            raise AuthenticationFailed(f"unsupported auth method {method}")
        if not auth_data:
            raise AuthenticationFailed("empty signature")
        alg_len = auth_data[0]
        alg = auth_data[1 : 1 + alg_len]
        sig = auth_data[1 + alg_len :]
        if len(alg) != alg_len:
            raise AuthenticationFailed("truncated AlgorithmIdentifier")
        tag, body, end = _der_read(alg)
        if tag != _SEQ or end != len(alg):
            raise AuthenticationFailed("malformed AlgorithmIdentifier")
        items = _der_items(body)
        if not items or items[0][0] != 0x06:
            raise AuthenticationFailed("malformed AlgorithmIdentifier")
        oid = _oid_decode(items[0][1])
        params = items[1] if len(items) > 1 else None
        if oid in _RSA_OIDS:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise AuthenticationFailed("RSA signature but the key is not RSA")
            h = _RSA_OIDS[oid]()
            public_key.verify(sig, octets, padding.PKCS1v15(), h)
            return f"RSA_EMSA_PKCS1_{h.name.upper()}"
        if oid == OID_RSA_PSS:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise AuthenticationFailed("RSA-PSS signature but the key is not RSA")
            if params is None or params[0] != _SEQ:
                raise AuthenticationFailed("RSA-PSS without parameters")
            h, mgf, salt = _parse_pss(params[1])
            public_key.verify(sig, octets, padding.PSS(padding.MGF1(mgf), salt), h)
            return f"RSA_EMSA_PSS_{h.name.upper()}"
        if oid in _ECDSA_OIDS:
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise AuthenticationFailed("ECDSA signature but the key is not EC")
            h = _ECDSA_OIDS[oid]()
            public_key.verify(sig, octets, ec.ECDSA(h))
            return f"ECDSA_WITH_{h.name.upper()}_DER"
        if oid == OID_ED25519:
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                raise AuthenticationFailed("Ed25519 signature but the key is not Ed25519")
            public_key.verify(sig, octets)
            return "ED25519"
        if oid == OID_ED448:
            if not isinstance(public_key, ed448.Ed448PublicKey):
                raise AuthenticationFailed("Ed448 signature but the key is not Ed448")
            public_key.verify(sig, octets)
            return "ED448"
        raise AuthenticationFailed(f"unsupported signature algorithm {oid}")
    except InvalidSignature:
        raise AuthenticationFailed("signature verification failed") from None
    except (_DerError, KeyError, IndexError, ValueError, TypeError) as exc:
        if isinstance(exc, AuthenticationFailed):
            raise
        raise AuthenticationFailed(f"malformed signature data: {exc}") from None


# --------------------------------------------------------------------------- certificates


@functools.lru_cache(maxsize=256)
def spki_sha1(cert: x509.Certificate) -> bytes:
    """SHA-1 of the certificate's SubjectPublicKeyInfo (CERTREQ authority hash).
    Cached: it is asked for our configured CA certificates on every handshake
    that sends or matches a CERTREQ (certificates are immutable)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki).digest()


def certreq_data(cacerts: Iterable[x509.Certificate]) -> bytes:
    """Certification Authority field of a CERTREQ: concatenated SHA-1 hashes."""
    return b"".join(spki_sha1(c) for c in cacerts)


def certreq_matches(data: bytes, cacerts: Iterable[x509.Certificate]) -> bool:
    """Does a received CERTREQ (possibly empty: "any") name one of ``cacerts``?"""
    if not data:
        return True
    wanted = {data[i : i + 20] for i in range(0, len(data) - len(data) % 20, 20)}
    return any(spki_sha1(c) in wanted for c in cacerts)


def load_der_certificate(data: bytes) -> x509.Certificate:
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise AuthenticationFailed(f"unparsable certificate: {exc}") from None


@functools.lru_cache(maxsize=256)
def cert_der(cert: x509.Certificate) -> bytes:
    """DER of ``cert`` (cached: our own certificates go into every IKE_AUTH)."""
    return cert.public_bytes(serialization.Encoding.DER)


def cert_matches_identity(cert: x509.Certificate, identity: Identity) -> bool:
    """Is ``identity`` the certificate's subject DN or one of its subjectAltNames?"""
    from cryptography import x509

    if identity.id_type == IdType.DER_ASN1_DN:
        attrs = identity.dn_attrs()
        return attrs is not None and attrs == _name_attrs(cert.subject)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if identity.id_type == IdType.FQDN:
        name = identity.data.decode("utf-8", "replace").lower()
        if san is not None and any(d.lower() == name for d in san.get_values_for_type(x509.DNSName)):
            return True
        # strongSwan also accepts an FQDN equal to the subject CN only if the
        # SAN is absent; we follow the stricter SAN rule but allow that case.
        if san is None:
            return any(
                a.oid.dotted_string == OID_COMMON_NAME and str(a.value).lower() == name for a in cert.subject
            )
        return False
    if identity.id_type == IdType.RFC822_ADDR:
        mail = identity.data.decode("utf-8", "replace").lower()
        return san is not None and any(m.lower() == mail for m in san.get_values_for_type(x509.RFC822Name))
    if identity.id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
        try:
            ip = ipaddress.ip_address(identity.data)
        except ValueError:
            return False
        return san is not None and ip in san.get_values_for_type(x509.IPAddress)
    return False


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime.datetime,
) -> list[x509.Certificate]:
    """Verify ``leaf`` up to one of ``anchors`` at time ``at``; returns the chain.

    Uses ``cryptography.x509.verification`` with a permissive end-entity
    policy (IKE certificates carry no TLS EKU and may have no SAN) and a CA
    policy that only insists on basicConstraints.  Without that API (old
    ``cryptography``), or when an Ed25519/Ed448 CA may have issued a certificate
    of the chain (that verifier's Web PKI profile refuses EdDSA keys in CA
    certificates: "Forbidden public key algorithm"), checks signatures,
    validity periods, the intermediates' CA flag and every CA's path length
    and key usage (keyCertSign) along the issuer chain by hand (no name
    constraints).  Raises :class:`AuthenticationFailed`."""
    if not anchors:
        raise AuthenticationFailed("no trust anchors configured")
    when = at if at.tzinfo is not None else at.replace(tzinfo=datetime.UTC)
    key = (leaf, tuple(intermediates), tuple(anchors))
    hit = _VERIFIED.get(key)
    if hit is not None and hit[0] <= when <= hit[1]:
        return list(hit[2])
    chain = _verify_chain(leaf, intermediates, anchors, at)
    _VERIFIED.remember(key, (max(c.not_valid_before_utc for c in chain),
                             min(c.not_valid_after_utc for c in chain), tuple(chain)))
    return chain


_VERIFIED = BoundedCache(256)
""":func:`verify_chain`'s chains by (leaf, intermediates, anchors), with the
span of time in which every certificate of the chain is valid: a peer
presents the same chain at every (re)authentication, and checking it costs
~90 us with one P-256 CA (strongSwan keeps verified issuer signatures in its
``cert_cache`` likewise).  A chain is returned from here only for a time
inside that span; the checks that follow a verified chain (revocation,
identity, the AUTH signature) are made every time.  Only chains that
verified are kept."""


def forget_verified_chains() -> None:
    """Empty :func:`verify_chain`'s memory (every chain is verified afresh;
    ``bench/ike.py``'s ``ecdsa-p256-fresh``, tests)."""
    _VERIFIED.clear()


def _verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime.datetime,
) -> list[x509.Certificate]:
    from cryptography import x509

    if _eddsa_issuer(leaf, intermediates, anchors):
        return _verify_chain_manually(leaf, intermediates, anchors, at)
    try:
        from cryptography.x509.verification import (
            Criticality,
            ExtensionPolicy,
            PolicyBuilder,
            VerificationError,
        )
    except ImportError:  # pragma: no cover - old cryptography
        return _verify_chain_manually(leaf, intermediates, anchors, at)
    ca_policy = ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    verifier = (
        PolicyBuilder()
        .store(_trust_store(tuple(anchors)))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, list(intermediates))
    except VerificationError as exc:
        raise AuthenticationFailed(f"certificate chain not trusted: {exc}") from None
    return list(verified.chain)


def _eddsa_issuer(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]
) -> bool:
    """Whether a CA certificate named as the issuer of ``leaf`` or of one of
    ``intermediates`` (among those and ``anchors``) has an Ed25519/Ed448 key."""
    issuers = {leaf.issuer, *(c.issuer for c in intermediates)}
    return any(
        c.subject in issuers and isinstance(c.public_key(), ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
        for c in (*intermediates, *anchors)
    )


@functools.lru_cache(maxsize=64)
def _trust_store(anchors: tuple[x509.Certificate, ...]) -> Store:
    """One verification ``Store`` per set of trust anchors (immutable), reused
    across handshakes: a fresh store parses its anchors' keys again on every
    chain check (~14 us of a ~85 us check with one P-256 CA)."""
    from cryptography.x509.verification import Store

    return Store(list(anchors))


def _verify_issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _verify_chain_manually(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime.datetime,
) -> list[x509.Certificate]:
    from cryptography import x509

    def may_issue(ca: x509.Certificate, below: int, what: str) -> None:
        # RFC 5280 §4.2.1.9/§4.2.1.3: a CA's path length limits the CA
        # certificates below it; a key usage, if present, must allow keyCertSign
        try:
            bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if what == "intermediate" and (bc is None or not bc.ca):
            raise AuthenticationFailed("intermediate is not a CA")
        if bc is not None and bc.path_length is not None and below > bc.path_length:
            raise AuthenticationFailed(f"{what} {ca.subject.rfc4514_string()}: path length {bc.path_length} "
                                       f"exceeded ({below} CA certificates below it)")
        try:
            ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            return
        if not ku.key_cert_sign:
            raise AuthenticationFailed(f"{what} {ca.subject.rfc4514_string()}: key usage without keyCertSign")

    chain = [leaf]
    current = leaf
    pool = list(intermediates)
    for _ in range(8):
        if not (current.not_valid_before_utc <= at <= current.not_valid_after_utc):
            raise AuthenticationFailed(f"certificate {current.subject.rfc4514_string()} not valid now")
        for anchor in anchors:
            if anchor.subject == current.issuer and _verify_issued(current, anchor):
                if not (anchor.not_valid_before_utc <= at <= anchor.not_valid_after_utc):
                    raise AuthenticationFailed("trust anchor not valid now")
                may_issue(anchor, len(chain) - 1, "trust anchor")
                return chain + [anchor]
        for inter in pool:
            if inter.subject == current.issuer and _verify_issued(current, inter):
                may_issue(inter, len(chain) - 1, "intermediate")
                chain.append(inter)
                pool.remove(inter)
                current = inter
                break
        else:
            raise AuthenticationFailed("certificate chain not trusted: issuer not found")
    raise AuthenticationFailed("certificate chain too long")


# --------------------------------------------------------------------------- revocation (CRLs, OCSP)

REVOCATION_POLICIES = ("strict", "ifuri", "relaxed")
"""swanctl ``remote.revocation``: ``strict`` needs a current status (CRL or
OCSP) for every certificate, ``ifuri`` only for those naming a CRL
distribution point or OCSP responder, ``relaxed`` (the default) fails only on
a revoked certificate."""

OCSP_NO_NEXT_UPDATE = datetime.timedelta(hours=1)
"""How long an OCSP response without nextUpdate counts as current after its
thisUpdate (and is cached)."""

OCSP_CLOCK_SKEW = datetime.timedelta(minutes=5)
"""A response whose thisUpdate is further than this in the future is refused."""

_log = logging.getLogger("aioipsec.ike")


@fast_init
@dataclass(frozen=True, slots=True)
class RevocationStatus:
    """The revocation check of one certificate of a verified chain (strongSwan's
    ``cert_validation_t``): ``good`` (a current OCSP response says good or a
    current CRL of its issuer does not list it), ``stale`` (only a CRL or OCSP
    response past its nextUpdate vouches for it), ``skipped`` (no status and no
    CRL distribution point or OCSP URI for it) or ``failed`` (no status,
    though it names a distribution point or responder)."""

    subject: str
    status: str
    crl: str | None = None
    """What answered: the CRL (issuer, number, thisUpdate/nextUpdate, file or
    URI) or the OCSP response (responder, URI); ``None``: nothing."""
    source: Literal["OCSP", "CRL"] | None = None
    """Which kind of answer :attr:`crl` describes; ``None``: nothing answered."""


@fast_init
@dataclass(frozen=True, slots=True)
class OcspStatus:
    """A verified OCSP answer for one certificate (:func:`verify_ocsp_response`)."""

    status: str
    """``good``, ``revoked`` or ``unknown``."""
    this_update: datetime.datetime
    next_update: datetime.datetime | None
    responder: str
    """Who signed it: ``the issuing CA`` or ``delegated responder 'DN'``."""
    uri: str = ""
    """The responder URI it was fetched from."""
    revoked_at: datetime.datetime | None = None
    reason: str | None = None

    @property
    def expires(self) -> datetime.datetime:
        """Until when it is current (and cached): nextUpdate, or
        :data:`OCSP_NO_NEXT_UPDATE` after thisUpdate."""
        return self.next_update if self.next_update is not None else self.this_update + OCSP_NO_NEXT_UPDATE

    def current(self, at: datetime.datetime) -> bool:
        return at <= self.expires

    @property
    def label(self) -> str:
        nxt = f"nextUpdate {self.next_update:%Y-%m-%d %H:%M:%S}Z" if self.next_update else "no nextUpdate"
        return (
            f"OCSP response of {self.responder} from {self.uri or '(unknown URI)'} "
            f"(thisUpdate {self.this_update:%Y-%m-%d %H:%M:%S}Z, {nxt})"
        )


def _uris(names: Iterable[object]) -> list[str]:
    from cryptography import x509

    return [n.value for n in names if isinstance(n, x509.UniformResourceIdentifier)]


def cert_crl_uris(cert: x509.Certificate) -> list[str]:
    """The URIs of ``cert``'s CRL distribution points (any scheme)."""
    from cryptography import x509

    try:
        cdps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [u for dp in cdps for u in _uris(dp.full_name or ())]


def cert_ocsp_uris(cert: x509.Certificate) -> list[str]:
    """The OCSP responder URIs of ``cert``'s Authority Information Access."""
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID

    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return _uris(d.access_location for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP)


def cert_key(cert: x509.Certificate) -> tuple[bytes, int]:
    """What identifies ``cert`` for its revocation status: its issuer's name
    (DER) and its serial number, as OCSP and CRLs name a certificate.  The
    key of :attr:`RevocationCache.ocsp`, ``wanted``, ``pending`` and
    ``settled``, of :attr:`RevocationPending.keys`, and of the fetcher's
    schedule (:mod:`aioipsec.asyncio.revocation_fetch`)."""
    return cert.issuer.public_bytes(), cert.serial_number


HOLD_LIMIT = 11.0
"""Default :attr:`RevocationCache.hold_limit` (the fetcher sets twice its
timeout plus one second: an OCSP request, then a CRL download)."""


class RevocationPending(Exception):
    """Raised by :func:`check_revocation` (with ``hold=True``) instead of
    deciding when a certificate of the chain has no status yet and the
    fetcher is getting it (:attr:`RevocationCache.pending`): the caller
    drops the message unanswered, as if lost, and decides on the peer's
    retransmission.  Not an :class:`AuthenticationFailed`."""

    def __init__(self, peer: str, subjects: list[str], uris: list[str],
                 keys: frozenset[tuple[bytes, int]] = frozenset()) -> None:
        self.peer = peer
        self.subjects = subjects
        self.uris = uris
        self.keys = keys
        """The certificates waited for (issuer DER, serial): the held message
        is processed again once the fetcher settled one of them."""
        super().__init__(
            f"status of certificate {', '.join(repr(s) for s in subjects)} being fetched from "
            f"{', '.join(uris) if uris else '(no URI)'}"
        )


class RevocationCache:
    """Revocation information fetched by the I/O layer
    (:mod:`aioipsec.asyncio.revocation_fetch`) for the sans-I/O checks: OCSP
    answers by certificate, CRLs by the URI they came from, and the URIs
    configured per CA (``remote.ocsp_uris`` / ``crl_uris``).  The check
    (:func:`check_revocation`) reads it and asks for what it lacks with
    :meth:`want`: it never fetches, and never reads the clock."""

    def __init__(self) -> None:
        self.ocsp: dict[tuple[bytes, int], OcspStatus] = {}
        self.crls: dict[str, x509.CertificateRevocationList] = {}
        self.ca_ocsp_uris: dict[bytes, list[str]] = {}
        """Configured OCSP responders by the DER subject of the CA (the issuer)."""
        self.ca_crl_uris: dict[bytes, list[str]] = {}
        """Configured CRL URIs by the DER subject of the CA (the issuer)."""
        self.wanted: dict[tuple[bytes, int], tuple[x509.Certificate, x509.Certificate]] = {}
        """Certificates (with their issuer) whose status is missing or stale."""
        self.on_want: Callable[[], None] | None = None
        """Called when :attr:`wanted` got an entry (the fetcher wakes up).
        Set: a fetcher is attached, and a check may hold the handshake
        (:class:`RevocationPending`) while a certificate is :attr:`pending`."""
        self.pending: set[tuple[bytes, int]] = set()
        """Certificates wanted or being fetched right now: a handshake
        needing one of them is held until the fetcher is done with it."""
        self.settled: set[tuple[bytes, int]] = set()
        """Certificates the fetcher was done with (answered or not) and is
        not fetching now: asking for one again does not hold a handshake (a
        failed fetch is retried on the fetcher's schedule, not per handshake)."""
        self.hold_limit: float = HOLD_LIMIT
        """Seconds (session time) a handshake is held at most for a pending
        certificate; then it is decided with what is cached."""

    def ocsp_uris(self, cert: x509.Certificate) -> list[str]:
        return list(dict.fromkeys([*cert_ocsp_uris(cert), *self.ca_ocsp_uris.get(cert.issuer.public_bytes(), ())]))

    def crl_uris(self, cert: x509.Certificate) -> list[str]:
        return list(dict.fromkeys([*cert_crl_uris(cert), *self.ca_crl_uris.get(cert.issuer.public_bytes(), ())]))

    def ocsp_for(self, cert: x509.Certificate) -> OcspStatus | None:
        return self.ocsp.get(cert_key(cert))

    def may_hold(self, held_since: float | None, now: float, *, peer: str, sa: str) -> bool:
        """May a handshake first held at ``held_since`` (session time; None:
        not held yet) be held again at ``now`` for a certificate being
        fetched?  Yes until :attr:`hold_limit` seconds passed; then (logged,
        naming ``peer`` and the SA label ``sa``) its status is decided with
        what is cached, by policy."""
        if held_since is None or now - held_since < self.hold_limit:
            return True
        _log.info("peer %s: certificate status still not fetched after %.0f s; deciding by policy %s",
                  peer, now - held_since, sa)
        return False

    def want(self, cert: x509.Certificate, issuer: x509.Certificate) -> None:
        key = cert_key(cert)
        if self.on_want is not None and key not in self.settled:
            self.pending.add(key)
        if key in self.wanted:
            return
        self.wanted[key] = (cert, issuer)
        if self.on_want is not None:
            self.on_want()


def _spk_bits(key: object) -> bytes:
    """The subjectPublicKey BIT STRING contents (what OCSP's issuerKeyHash hashes)."""
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raise ValueError(f"unsupported issuer key type {type(key).__name__}")


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None = None) -> bytes:
    """DER OCSPRequest (RFC 6960 §4.1) for ``cert``, SHA-1 CertID (what every
    responder understands), with a nonce extension when ``nonce`` is given."""
    from cryptography import x509
    from cryptography.x509 import ocsp

    b = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce is not None:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


def _verify_signed(key: object, signature: bytes, data: bytes, algo: hashes.HashAlgorithm | None) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey) and algo is not None:
            key.verify(signature, data, padding.PKCS1v15(), algo)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
            key.verify(signature, data, ec.ECDSA(algo))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def verify_ocsp_response(
    der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    at: datetime.datetime,
    *,
    nonce: bytes | None = None,
    uri: str = "",
) -> OcspStatus:
    """Parse and verify an OCSP response (RFC 6960) for ``cert`` issued by
    ``issuer``, at time ``at``: status ``successful``; signed by ``issuer``
    or by a delegated responder certificate that ``issuer`` signed, with the
    OCSP signing EKU and valid at ``at`` (carried in the response and named by
    its responder ID); a nonce, when the response has one, equal to
    ``nonce``; thisUpdate not in the future; a single response for ``cert``.
    A response past its nextUpdate is returned (its :meth:`~OcspStatus.current`
    is False): the check treats it like a stale CRL.  Raises ValueError naming
    what was wrong."""
    from cryptography import x509
    from cryptography.x509 import ocsp
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        resp = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise ValueError(f"malformed OCSP response: {exc}") from None
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise ValueError(f"OCSP responder answered {resp.response_status.name.lower()}")
    try:
        tbs, signature, algo = resp.tbs_response_bytes, resp.signature, resp.signature_hash_algorithm
        rid_name, rid_hash = resp.responder_name, resp.responder_key_hash
        extra = list(resp.certificates)
        singles = list(resp.responses)
        exts = resp.extensions
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType, UnsupportedAlgorithm) as exc:
        # UnsupportedAlgorithm: an unknown signature algorithm OID (hypothesis found one flipped bit)
        raise ValueError(f"malformed OCSP response: {exc}") from None

    def named(c: x509.Certificate) -> bool:
        if rid_name is not None:
            return c.subject == rid_name
        try:
            return rid_hash is not None and hmac.compare_digest(rid_hash, hashlib.sha1(_spk_bits(c.public_key())).digest())
        except ValueError:
            return False

    responder = None
    if named(issuer):
        if not _verify_signed(issuer.public_key(), signature, tbs, algo):
            raise ValueError("OCSP response signature does not verify with the issuing CA's key")
        responder = "the issuing CA"
    else:
        for c in extra:
            if not named(c):
                continue
            if c.issuer != issuer.subject:
                raise ValueError(f"OCSP responder certificate '{_dn_text(_name_attrs(c.subject))}' is not issued by the CA")
            if not _verify_issued(c, issuer):
                raise ValueError(
                    f"OCSP responder certificate '{_dn_text(_name_attrs(c.subject))}' is not signed by the CA"
                )
            try:
                eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                eku = None
            if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                raise ValueError(
                    f"OCSP responder certificate '{_dn_text(_name_attrs(c.subject))}' lacks the OCSP signing EKU"
                )
            if not (c.not_valid_before_utc <= at <= c.not_valid_after_utc):
                raise ValueError(f"OCSP responder certificate '{_dn_text(_name_attrs(c.subject))}' is not valid now")
            if not _verify_signed(c.public_key(), signature, tbs, algo):
                raise ValueError("OCSP response signature does not verify with the responder certificate's key")
            responder = f"delegated responder '{_dn_text(_name_attrs(c.subject))}'"
            break
        if responder is None:
            raise ValueError("OCSP response is signed neither by the issuing CA nor by a responder certificate it carries")
    try:
        got = exts.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        got = None
    if nonce is not None and got is not None and got != nonce:
        raise ValueError("OCSP response nonce does not match the request's")
    name_der = issuer.subject.public_bytes()
    bits = _spk_bits(issuer.public_key())
    for single in singles:
        if single.serial_number != cert.serial_number:
            continue
        try:
            h = single.hash_algorithm
            hn, hk = hashes.Hash(h), hashes.Hash(h)
        except (ValueError, UnsupportedAlgorithm):
            continue
        hn.update(name_der)
        hk.update(bits)
        # public values, compared in constant time like every hash here (crypto-hygiene test)
        if not (hmac.compare_digest(single.issuer_name_hash, hn.finalize())
                and hmac.compare_digest(single.issuer_key_hash, hk.finalize())):
            continue
        this, nxt = single.this_update_utc, single.next_update_utc
        if this > at + OCSP_CLOCK_SKEW:
            raise ValueError(f"OCSP response thisUpdate {this:%Y-%m-%d %H:%M:%S}Z is in the future")
        status = single.certificate_status
        if status == ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason
            return OcspStatus("revoked", this, nxt, responder, uri, single.revocation_time_utc,
                              reason.value if reason is not None else None)
        return OcspStatus("good" if status == ocsp.OCSPCertStatus.GOOD else "unknown", this, nxt, responder, uri)
    raise ValueError(f"OCSP response has no status for serial {cert.serial_number:#x}")


def decode_crl_fields(crl: x509.CertificateRevocationList) -> None:
    """Decode what ``cryptography`` parses on first use (the issuer name, the
    extensions, every entry's extensions), so that a malformed CRL fails where
    it is loaded or fetched, not in every later revocation check; raises
    ValueError."""
    list(crl.issuer)
    crl.extensions  # noqa: B018
    for entry in crl:
        entry.extensions  # noqa: B018


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL, PEM or DER, with its extensions and entries decoded up front
    (a malformed one fails here, not in every later check); raises ValueError."""
    from cryptography import x509

    try:
        crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
        decode_crl_fields(crl)
    except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        # InvalidVersion: one flipped bit in the version field (hypothesis)
        raise ValueError(f"not a certificate revocation list (PEM or DER): {exc}") from None
    return crl


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    from cryptography import x509

    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def _crl_label(crl: x509.CertificateRevocationList) -> str:
    number = _crl_number(crl)
    nxt = crl.next_update_utc
    return (
        f"CRL of '{_dn_text(_name_attrs(crl.issuer))}'"
        + (f" #{number}" if number is not None else "")
        + f" (thisUpdate {crl.last_update_utc:%Y-%m-%d %H:%M:%S}Z, "
        + (f"nextUpdate {nxt:%Y-%m-%d %H:%M:%S}Z)" if nxt is not None else "no nextUpdate)")
    )


def _crl_sort_key(crl: x509.CertificateRevocationList) -> tuple[int, datetime.datetime]:
    number = _crl_number(crl)
    return (-1 if number is None else number), crl.last_update_utc


def _is_delta_crl(crl: x509.CertificateRevocationList) -> bool:
    from cryptography import x509

    try:
        crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    except x509.ExtensionNotFound:
        return False
    return True


def _has_crl_uri(cert: x509.Certificate) -> bool:
    """Does ``cert`` name a CRL distribution point with a URI (what strongSwan
    would fetch; a cert with one but no CRL loaded or fetched is ``failed``)?"""
    return bool(cert_crl_uris(cert))


def _issuer_crls(
    cert: x509.Certificate, issuer: x509.Certificate, crls: Iterable[x509.CertificateRevocationList]
) -> list[x509.CertificateRevocationList]:
    """The complete (not delta) CRLs of ``cert``'s issuer whose signature
    verifies with ``issuer``'s key; others (another CA's, forged) are ignored."""
    out = []
    for crl in crls:
        if crl.issuer != cert.issuer or _is_delta_crl(crl):
            continue
        try:
            valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except (TypeError, ValueError):
            valid = False
        if valid:
            out.append(crl)
    return out


def _cert_crl_status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime.datetime,
    sources: dict[int, str] | None = None,
) -> RevocationStatus:
    """Raises AuthenticationFailed when a CRL of the issuer lists ``cert``.
    ``sources`` names the URI a fetched CRL (by ``id``) came from; the others
    are from files."""
    from cryptography import x509

    def label(crl: x509.CertificateRevocationList) -> str:
        src = (sources or {}).get(id(crl))
        return f"{_crl_label(crl)} from {src}" if src else f"{_crl_label(crl)} from file"

    subject = _dn_text(_name_attrs(cert.subject))
    usable = _issuer_crls(cert, issuer, crls)
    for crl in usable:
        # like strongSwan, a listing counts in any CRL of the issuer, stale or not
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            continue
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = None
        detail = f"reason {reason}, " if reason else ""
        raise AuthenticationFailed(
            f"certificate '{subject}' is revoked ({detail}since "
            f"{entry.revocation_date_utc:%Y-%m-%d %H:%M:%S}Z, serial {cert.serial_number:#x}, {label(crl)})"
        )
    if not usable:
        return RevocationStatus(subject, "failed" if _has_crl_uri(cert) else "skipped")
    best = max(usable, key=_crl_sort_key)
    nxt = best.next_update_utc
    current = best.last_update_utc <= at and (nxt is None or at <= nxt)
    return RevocationStatus(subject, "good" if current else "stale", label(best), "CRL")


def _cert_status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime.datetime,
    fetched: RevocationCache | None,
) -> RevocationStatus:
    """OCSP answer (fetched) and CRLs (files and fetched) for one certificate;
    raises AuthenticationFailed when either says revoked."""
    if fetched is None:
        return _cert_crl_status(cert, issuer, crls, at)
    subject = _dn_text(_name_attrs(cert.subject))
    by_ocsp: RevocationStatus | None = None
    answer = fetched.ocsp_for(cert)
    if answer is not None:
        if answer.status == "revoked":
            detail = f"reason {answer.reason}, " if answer.reason else ""
            since = f"since {answer.revoked_at:%Y-%m-%d %H:%M:%S}Z, " if answer.revoked_at else ""
            raise AuthenticationFailed(
                f"certificate '{subject}' is revoked ({detail}{since}serial {cert.serial_number:#x}, {answer.label})"
            )
        if answer.status == "good":
            by_ocsp = RevocationStatus(subject, "good" if answer.current(at) else "stale", answer.label, "OCSP")
    crl_uris = fetched.crl_uris(cert)
    extra = [(u, fetched.crls[u]) for u in crl_uris if u in fetched.crls]
    by_crl = _cert_crl_status(cert, issuer, [*crls, *(c for _u, c in extra)], at, {id(c): u for u, c in extra})
    for st in (by_ocsp, by_crl):
        if st is not None and st.status == "good":
            return st
    for st in (by_ocsp, by_crl):
        if st is not None and st.status == "stale":
            fetched.want(cert, issuer)
            return st
    if crl_uris or fetched.ocsp_uris(cert):
        fetched.want(cert, issuer)
        return RevocationStatus(subject, "failed")
    return RevocationStatus(subject, "skipped")


def check_revocation(
    chain: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    policy: str,
    at: datetime.datetime,
    *,
    peer: str = "",
    fetched: RevocationCache | None = None,
    hold: bool = False,
) -> list[RevocationStatus]:
    """Revocation check of a chain from :func:`verify_chain` (leaf first,
    trust anchor last): every certificate below the anchor against the
    loaded CRLs of its issuer and, with ``fetched`` (the daemon's
    :class:`RevocationCache`), the OCSP answers and CRLs fetched from its
    OCSP responder and distribution points, as strongSwan's ``revocation``
    plugin does.  Nothing is fetched here: a certificate whose status is
    missing or stale is put on ``fetched.wanted`` for the fetcher.

    A revoked certificate fails under every ``policy`` (a revocation counts
    in any CRL or OCSP answer of its issuer, stale or not); then ``strict``
    needs status ``good`` for each certificate and ``ifuri`` ``good`` or
    ``skipped`` (strongSwan's constraint check).  A CRL or OCSP answer past
    its nextUpdate gives ``stale``, logged as a warning, which only
    ``relaxed`` accepts.  Logs (``aioipsec.ike``) which source answered
    (OCSP URI, CRL URI or file) for which certificate of ``peer``; raises
    :class:`AuthenticationFailed`.

    ``hold``: a certificate without any status (``failed``) that the
    fetcher is getting right now (:attr:`RevocationCache.pending`) is not
    decided by policy: after the whole chain was checked (a revocation known
    for another certificate still fails at once) :class:`RevocationPending`
    is raised, naming the certificates and their URIs."""
    if policy not in REVOCATION_POLICIES:
        raise AuthenticationFailed(f"unknown revocation policy {policy!r}")
    out = []
    held: list[x509.Certificate] = []
    for cert, issuer in itertools.pairwise(chain):
        try:
            st = _cert_status(cert, issuer, crls, at, fetched)
        except AuthenticationFailed as exc:
            _log.warning("revocation check peer=%s: %s", peer, exc)
            raise
        out.append(st)
        if hold and fetched is not None and st.status == "failed" and cert_key(cert) in fetched.pending:
            held.append(cert)
            continue
        kind = "OCSP" if st.source == "OCSP" else "CRL"
        if st.status == "good":
            _log.info("%s check peer=%s: certificate '%s' not revoked, %s", kind, peer, st.subject, st.crl)
        elif st.status == "stale":
            _log.warning(
                "%s check peer=%s: certificate '%s' not revoked, but %s is stale (used anyway)",
                kind, peer, st.subject, st.crl,
            )
        elif fetched is None:
            _log.info(
                "CRL check peer=%s: no CRL for certificate '%s'%s", peer, st.subject,
                " (it names a CRL distribution point; CRLs are not fetched)" if st.status == "failed" else "",
            )
        else:
            _log.info(
                "revocation check peer=%s: no CRL or OCSP answer for certificate '%s'%s", peer, st.subject,
                " (it names a CRL distribution point or OCSP responder: none answered yet, fetching)"
                if st.status == "failed" else "",
            )
        if (policy == "strict" and st.status != "good") or (policy == "ifuri" and st.status not in ("good", "skipped")):
            why = {
                "stale": f"only a stale {st.crl}",
                "skipped": "no CRL of its issuer loaded" + (" and no OCSP responder or CRL URI known" if fetched else ""),
                "failed": "no CRL of its issuer loaded, though it names a CRL distribution point" if fetched is None
                else "no CRL of its issuer loaded or fetched and no OCSP answer, though it names a "
                "CRL distribution point or OCSP responder (fetching; a later attempt may succeed)",
            }[st.status]
            raise AuthenticationFailed(
                f"revocation status of certificate '{st.subject}' unknown: {why} (revocation = {policy})"
            )
    if held:
        assert fetched is not None
        uris = [u for c in held for u in (*fetched.ocsp_uris(c), *fetched.crl_uris(c))]
        raise RevocationPending(peer, [_dn_text(_name_attrs(c.subject)) for c in held], list(dict.fromkeys(uris)),
                                frozenset(cert_key(c) for c in held))
    return out


def check_remote_revocation(
    chain: Sequence[x509.Certificate],
    remote: AuthConfig,
    at: datetime.datetime,
    *,
    peer: str,
    hold: bool = False,
) -> RevocationPending | None:
    """:func:`check_revocation` of a verified ``chain`` with the remote
    side's configuration (``remote.crls``, ``remote.revocation``,
    ``remote.revocation_cache``), as IKEv2 IKE_AUTH and IKEv1 Phase 1 do it;
    skipped when nothing can fail (``relaxed``, no CRL, no fetcher).  Raises
    :class:`AuthenticationFailed`; the :class:`RevocationPending` of
    ``hold`` is returned instead, for the caller to raise once the peer's
    signature verified (a forged one fails at once, never held)."""
    fetched = remote.revocation_cache
    if not (remote.crls or remote.revocation != "relaxed" or fetched is not None):
        return None
    try:
        check_revocation(chain, remote.crls, remote.revocation, at, peer=peer, fetched=fetched, hold=hold)
    except RevocationPending as exc:
        return exc
    return None
