"""Key exchange methods (IKEv2 transform type 4, IKEv1 groups).

``create_key_exchange(alg)`` returns a :class:`KeyExchange`: read
:attr:`~KeyExchange.public_value` (the KE payload's key exchange data), give
the peer's data to :meth:`~KeyExchange.set_peer` (which validates it) and
read :attr:`~KeyExchange.shared_secret`.

Wire formats:

- MODP (RFC 2409 / RFC 3526 groups 1, 2, 5, 14-18): big-endian, left-padded
  with zeros to the prime length, both the public value and g^ir.  The peer's
  value must have exactly that length and satisfy ``1 < y < p - 1``
  (RFC 6989 §2.1; all these primes are safe primes, so the range check is
  the whole check).
- ECP (RFC 5903 groups 19/20/21, and the Brainpool groups 28/29/30 of
  RFC 6954, which takes RFC 5903's formats): ``x || y`` with each coordinate
  padded to the field length, no ``0x04`` prefix; g^ir is the x coordinate
  only.  ``cryptography`` rejects points that are not on the curve (RFC 6989
  §2.3; the Brainpool curves have cofactor 1, so that is the whole check).
  Group 27 (brainpoolP224r1) is not offered: ``cryptography`` lacks it.
- X25519 / X448 (RFC 8031): raw 32 / 56 bytes; an all-zero shared secret is
  rejected (RFC 8031 §2).
- ML-KEM (FIPS 203, IKEv2 via RFC 9370 / draft-ietf-ipsecme-ikev2-mlkem):
  the initiator sends its encapsulation key, the responder encapsulates to it
  and sends the ciphertext; both end with the 32-byte shared secret.

Peer data that fails a check raises :class:`InvalidKeyExchangeData` (a
:class:`~aioipsec.errors.RemoteProtocolError`).  Misuse by the caller (reading
the secret before :meth:`set_peer`, calling it twice) raises
:class:`~aioipsec.errors.LocalProtocolError`.

Primitives come from ``cryptography``.  Finite-field DH is deprecated there
(``CryptographyDeprecationWarning``) and silenced locally; should a future
release remove it, MODP falls back to Python's ``pow`` for the modular
exponentiation (same checks, same wire format, not constant-time).
"""

from __future__ import annotations

import secrets
import warnings
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519

try:  # finite-field DH is deprecated in cryptography and may disappear
    from cryptography.hazmat.primitives.asymmetric import dh as _dh
except ImportError:  # pragma: no cover - depends on the installed cryptography
    _dh = None  # type: ignore[assignment]
try:
    from cryptography.hazmat.primitives.asymmetric import mlkem as _mlkem
except ImportError:  # pragma: no cover - cryptography < 47
    _mlkem = None  # type: ignore[assignment]
try:
    from cryptography.utils import CryptographyDeprecationWarning
except ImportError:  # pragma: no cover
    CryptographyDeprecationWarning = DeprecationWarning  # type: ignore[misc,assignment]

from ..errors import AlgorithmError, LocalProtocolError, RemoteProtocolError
from .transforms import KE, KeAlg, KeId, TransformType, by_id

__all__ = [
    "InvalidKeyExchangeData",
    "KeyExchange",
    "create_key_exchange",
    "modp_prime",
    "supported_key_exchanges",
]


class InvalidKeyExchangeData(RemoteProtocolError):
    """The peer's key exchange data is malformed or fails validation
    (wrong length, MODP value out of range, point not on the curve, all-zero
    X25519/X448 result, ...)."""


# --------------------------------------------------------------------------- MODP groups

_MODP_PRIMES_HEX: dict[int, str] = {
    # 768-bit MODP group (RFC 2409 §6.1), generator 2
    1: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3620FFFFFFFFFFFFFFFF"
    ),
    # 1024-bit MODP group (RFC 2409 §6.2), generator 2
    2: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF"
    ),
    # 1536-bit MODP group (RFC 3526 §2), generator 2
    5: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF"
    ),
    # 2048-bit MODP group (RFC 3526 §3), generator 2
    14: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
    ),
    # 3072-bit MODP group (RFC 3526 §4), generator 2
    15: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
    ),
    # 4096-bit MODP group (RFC 3526 §5), generator 2
    16: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF"
    ),
    # 6144-bit MODP group (RFC 3526 §6), generator 2
    17: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026"
        "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE"
        "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B"
        "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC"
        "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E"
        "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA"
        "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76"
        "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468"
        "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DCC4024FFFFFFFFFFFFFFFF"
    ),
    # 8192-bit MODP group (RFC 3526 §7), generator 2
    18: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026"
        "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE"
        "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B"
        "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC"
        "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E"
        "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA"
        "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76"
        "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468"
        "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DBE115974A3926F12FEE5E4"
        "38777CB6A932DF8CD8BEC4D073B931BA3BC832B68D9DD300741FA7BF8AFC47ED"
        "2576F6936BA424663AAB639C5AE4F5683423B4742BF1C978238F16CBE39D652D"
        "E3FDB8BEFC848AD922222E04A4037C0713EB57A81A23F0C73473FC646CEA306B"
        "4BCBC8862F8385DDFA9D4B7FA2C087E879683303ED5BDD3A062B3CF5B3A278A6"
        "6D2A13F83F44F82DDF310EE074AB6A364597E899A0255DC164F31CC50846851D"
        "F9AB48195DED7EA1B1D510BD7EE74D73FAF36BC31ECFA268359046F4EB879F92"
        "4009438B481C6CD7889A002ED5EE382BC9190DA6FC026E479558E4475677E9AA"
        "9E3050E2765694DFC81F56E880B96E7160C980DD98EDD3DFFFFFFFFFFFFFFFFF"
    ),
}

_MODP_PRIMES: dict[int, int] = {g: int(h, 16) for g, h in _MODP_PRIMES_HEX.items()}
_MODP_GENERATOR = 2

# Private exponent bits for the pow() fallback: twice the group's security
# strength (NIST SP 800-57 / RFC 3526 §8), as OpenSSL does for these groups.
_MODP_EXPONENT_BITS = {1: 160, 2: 160, 5: 192, 14: 224, 15: 256, 16: 304, 17: 352, 18: 400}

_dh_params: dict[int, Any] = {}


def modp_prime(group: int) -> int:
    """The prime of a supported MODP group (generator is 2)."""
    try:
        return _MODP_PRIMES[group]
    except KeyError:
        raise AlgorithmError("", f"MODP group {group} is not supported") from None


def _use_cryptography_dh() -> bool:
    return _dh is not None


def _dh_parameters(group: int) -> Any:
    params = _dh_params.get(group)
    if params is None:
        assert _dh is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            params = _dh.DHParameterNumbers(_MODP_PRIMES[group], _MODP_GENERATOR).parameters()
        _dh_params[group] = params
    return params


# --------------------------------------------------------------------------- base class


class KeyExchange:
    """One side of one key exchange.  Create with :func:`create_key_exchange`."""

    alg: KeAlg

    def __init__(self, alg: KeAlg) -> None:
        self.alg = alg
        self._shared: bytes | None = None

    @property
    def group(self) -> int:
        """IANA transform ID (the KE payload's group number)."""
        return int(self.alg.id)

    @property
    def public_value(self) -> bytes:
        """Key exchange data for our KE payload."""
        raise NotImplementedError

    def set_peer(self, peer_public: bytes) -> None:
        """Validate the peer's key exchange data and compute the shared secret.

        Raises :class:`InvalidKeyExchangeData` if the data is unacceptable and
        :class:`~aioipsec.errors.LocalProtocolError` if called twice."""
        if self._shared is not None:
            raise LocalProtocolError(f"{self.alg.name}: peer value already set")
        self._shared = self._compute(bytes(peer_public))

    @property
    def shared_secret(self) -> bytes:
        """The shared secret g^ir in its IKE form (see the module docstring)."""
        if self._shared is None:
            raise LocalProtocolError(f"{self.alg.name}: shared secret needs set_peer() first")
        return self._shared

    @property
    def complete(self) -> bool:
        """True once :meth:`set_peer` succeeded."""
        return self._shared is not None

    def _compute(self, peer: bytes) -> bytes:
        raise NotImplementedError

    def _check_length(self, peer: bytes, expected: int) -> None:
        if len(peer) != expected:
            raise InvalidKeyExchangeData(
                f"{self.alg.name}: key exchange data is {len(peer)} bytes, expected {expected}"
            )

    def __repr__(self) -> str:  # never show key material
        return f"<{type(self).__name__} {self.alg.name} complete={self.complete}>"


# --------------------------------------------------------------------------- MODP


class ModpKeyExchange(KeyExchange):
    """Finite-field Diffie-Hellman over an RFC 2409 / RFC 3526 MODP group."""

    def __init__(self, alg: KeAlg, private: bytes | None = None) -> None:
        super().__init__(alg)
        group = int(alg.id)
        self._p = modp_prime(group)
        self._len = (self._p.bit_length() + 7) // 8
        self._key: Any = None  # cryptography DHPrivateKey
        self._x = 0  # pow() fallback only
        x: int | None = None
        if private is not None:
            x = int.from_bytes(private, "big")
            if not 1 < x < self._p - 1:
                raise LocalProtocolError(f"{alg.name}: private value out of range")
        if _use_cryptography_dh():
            assert _dh is not None
            params = _dh_parameters(group)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                if x is None:
                    self._key = params.generate_private_key()
                else:  # pinned (vectors): cryptography wants the public half too
                    pn = params.parameter_numbers()
                    pub = _dh.DHPublicNumbers(pow(_MODP_GENERATOR, x, self._p), pn)
                    self._key = _dh.DHPrivateNumbers(x, pub).private_key()
            y = self._key.public_key().public_numbers().y
        else:
            if x is None:
                bits = _MODP_EXPONENT_BITS[group]
                x = secrets.randbits(bits) | (1 << (bits - 1))
            self._x = x
            y = pow(_MODP_GENERATOR, x, self._p)
        self._public = y.to_bytes(self._len, "big")

    @property
    def public_value(self) -> bytes:
        return self._public

    def _compute(self, peer: bytes) -> bytes:
        self._check_length(peer, self._len)
        y = int.from_bytes(peer, "big")
        if not 1 < y < self._p - 1:  # RFC 6989 §2.1: rejects 0, 1, p-1 and >= p
            raise InvalidKeyExchangeData(f"{self.alg.name}: public value out of range (RFC 6989)")
        if self._key is not None:
            assert _dh is not None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                pn = self._key.parameters().parameter_numbers()
                try:
                    peer_key = _dh.DHPublicNumbers(y, pn).public_key()
                    secret = self._key.exchange(peer_key)
                except ValueError as exc:
                    raise InvalidKeyExchangeData(f"{self.alg.name}: {exc}") from None
            secret = secret.rjust(self._len, b"\0")
        else:
            secret = pow(y, self._x, self._p).to_bytes(self._len, "big")
        if int.from_bytes(secret, "big") <= 1:  # cannot happen with a safe prime; fail closed
            raise InvalidKeyExchangeData(f"{self.alg.name}: degenerate shared secret")
        return secret


# --------------------------------------------------------------------------- ECP (RFC 5903, RFC 6954)

_CURVES: dict[KeId, type[ec.EllipticCurve]] = {
    KeId.ECP_256: ec.SECP256R1,
    KeId.ECP_384: ec.SECP384R1,
    KeId.ECP_521: ec.SECP521R1,
    KeId.ECP_256_BP: ec.BrainpoolP256R1,
    KeId.ECP_384_BP: ec.BrainpoolP384R1,
    KeId.ECP_512_BP: ec.BrainpoolP512R1,
}


class EcpKeyExchange(KeyExchange):
    """ECDH over a NIST or Brainpool prime curve with RFC 5903 encodings."""

    def __init__(self, alg: KeAlg, private: bytes | None = None) -> None:
        super().__init__(alg)
        self._curve = _CURVES[alg.id]()
        self._coord = (self._curve.key_size + 7) // 8
        if private is None:
            self._key = ec.generate_private_key(self._curve)
        else:
            try:
                self._key = ec.derive_private_key(int.from_bytes(private, "big"), self._curve)
            except ValueError as exc:
                raise LocalProtocolError(f"{alg.name}: bad private value: {exc}") from None
        point = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self._public = point[1:]

    @property
    def public_value(self) -> bytes:
        return self._public

    def _compute(self, peer: bytes) -> bytes:
        self._check_length(peer, 2 * self._coord)
        try:
            # validates that the point lies on the curve (and is not infinity)
            peer_key = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, b"\x04" + peer)
            secret = self._key.exchange(ec.ECDH(), peer_key)
        except ValueError:
            raise InvalidKeyExchangeData(f"{self.alg.name}: point is not on the curve") from None
        return secret.rjust(self._coord, b"\0")


# --------------------------------------------------------------------------- X25519 / X448 (RFC 8031)


class EcxKeyExchange(KeyExchange):
    """X25519 / X448; the KE data is the raw u-coordinate."""

    def __init__(self, alg: KeAlg, private: bytes | None = None) -> None:
        super().__init__(alg)
        self._mod: Any = x25519 if alg.id == KeId.CURVE25519 else x448
        priv_cls = self._mod.X25519PrivateKey if alg.id == KeId.CURVE25519 else self._mod.X448PrivateKey
        self._pub_cls = self._mod.X25519PublicKey if alg.id == KeId.CURVE25519 else self._mod.X448PublicKey
        if private is None:
            self._key = priv_cls.generate()
        else:
            try:
                self._key = priv_cls.from_private_bytes(bytes(private))
            except ValueError as exc:
                raise LocalProtocolError(f"{alg.name}: bad private value: {exc}") from None
        self._public = self._key.public_key().public_bytes_raw()

    @property
    def public_value(self) -> bytes:
        return self._public

    def _compute(self, peer: bytes) -> bytes:
        self._check_length(peer, self.alg.public_len)
        try:
            secret = self._key.exchange(self._pub_cls.from_public_bytes(peer))
        except ValueError:  # OpenSSL refuses an all-zero result
            raise InvalidKeyExchangeData(f"{self.alg.name}: all-zero shared secret (RFC 8031 §2)") from None
        if not any(secret):
            raise InvalidKeyExchangeData(f"{self.alg.name}: all-zero shared secret (RFC 8031 §2)")
        return secret


# --------------------------------------------------------------------------- ML-KEM


def _mlkem_classes(alg: KeAlg) -> tuple[Any, Any, int]:
    """(private key class, public key class, ciphertext length)."""
    names = {
        KeId.ML_KEM_512: ("MLKEM512", 768),
        KeId.ML_KEM_768: ("MLKEM768", 1088),
        KeId.ML_KEM_1024: ("MLKEM1024", 1568),
    }
    prefix, ct_len = names[alg.id]
    priv = getattr(_mlkem, f"{prefix}PrivateKey", None) if _mlkem is not None else None
    pub = getattr(_mlkem, f"{prefix}PublicKey", None) if _mlkem is not None else None
    if priv is None or pub is None:
        raise AlgorithmError("", f"{alg.name} is not supported by the installed cryptography package")
    return priv, pub, ct_len


class MlKemKeyExchange(KeyExchange):
    """ML-KEM as an IKEv2 key exchange.

    Initiator: ``public_value`` is the encapsulation key; ``set_peer`` takes
    the responder's ciphertext and decapsulates.  Responder: ``set_peer``
    takes the initiator's encapsulation key and encapsulates; afterwards
    ``public_value`` is the ciphertext.  ``private`` (initiator only) is the
    64-byte FIPS 203 seed ``d || z``."""

    def __init__(self, alg: KeAlg, private: bytes | None = None, responder: bool = False) -> None:
        super().__init__(alg)
        priv_cls, self._pub_cls, self._ct_len = _mlkem_classes(alg)
        self.responder = responder
        self._key: Any = None
        self._public: bytes | None = None
        if responder:
            if private is not None:
                raise LocalProtocolError(
                    f"{alg.name}: the responder's encapsulation randomness cannot be pinned"
                )
            return
        if private is None:
            self._key = priv_cls.generate()
        else:
            try:
                self._key = priv_cls.from_seed_bytes(bytes(private))
            except ValueError as exc:
                raise LocalProtocolError(f"{alg.name}: bad seed: {exc}") from None
        self._public = self._key.public_key().public_bytes_raw()

    @property
    def public_value(self) -> bytes:
        if self._public is None:
            raise LocalProtocolError(f"{self.alg.name}: responder ciphertext needs set_peer() first")
        return self._public

    def _compute(self, peer: bytes) -> bytes:
        if self.responder:
            self._check_length(peer, self.alg.public_len)
            try:
                ek = self._pub_cls.from_public_bytes(peer)  # FIPS 203 encapsulation key check
                secret, ct = ek.encapsulate()
            except ValueError:
                raise InvalidKeyExchangeData(f"{self.alg.name}: invalid encapsulation key") from None
            self._public = bytes(ct)
            return bytes(secret)
        self._check_length(peer, self._ct_len)
        try:
            return bytes(self._key.decapsulate(peer))
        except ValueError:  # pragma: no cover - decapsulation uses implicit rejection
            raise InvalidKeyExchangeData(f"{self.alg.name}: invalid ciphertext") from None


# --------------------------------------------------------------------------- factory

_BY_KIND = {"modp": ModpKeyExchange, "ecp": EcpKeyExchange, "ecx": EcxKeyExchange}


def _resolve(alg: KeAlg | int) -> KeAlg:
    if isinstance(alg, KeAlg):
        return alg
    found = by_id(TransformType.KE, int(alg))
    if found is None:
        raise AlgorithmError("", f"key exchange method {int(alg)} is not supported")
    return found  # type: ignore[return-value]


def create_key_exchange(
    alg: KeAlg | int, *, private: bytes | None = None, responder: bool = False
) -> KeyExchange:
    """Create our side of a key exchange.

    ``alg`` is registry metadata or an IANA transform ID; unknown IDs (and
    ML-KEM variants the installed ``cryptography`` lacks) raise
    :class:`~aioipsec.errors.AlgorithmError`.  ``private`` pins the private
    value (MODP exponent / EC scalar big-endian, X25519/X448 raw bytes, ML-KEM
    ``d || z`` seed) so that published vectors reproduce.  ``responder`` only
    matters for ML-KEM, whose two sides differ.  Legacy policy is not checked
    here: the configuration layer decides which groups may be negotiated."""
    ke = _resolve(alg)
    if ke.kind == "mlkem":
        return MlKemKeyExchange(ke, private, responder)
    try:
        cls = _BY_KIND[ke.kind]
    except KeyError:
        raise AlgorithmError("", f"key exchange method {ke.name} is not supported") from None
    try:
        return cls(ke, private)
    except UnsupportedAlgorithm as exc:  # pragma: no cover - depends on the OpenSSL build
        raise AlgorithmError("", f"{ke.name} is not supported here: {exc}") from None


def supported_key_exchanges() -> list[KeAlg]:
    """Registry entries that :func:`create_key_exchange` can instantiate here."""
    out = []
    for ke in KE.values():
        if ke.kind == "mlkem":
            try:
                _mlkem_classes(ke)
            except AlgorithmError:
                continue
        out.append(ke)
    return out
