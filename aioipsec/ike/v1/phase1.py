"""Common Phase 1 helper for Main and Aggressive Mode (model: strongSwan
``sa/ikev1/phase1.c`` and ``keymat_v1.c``).

* ISAKMP SA suites: one IKEv1 transform carries a whole suite (cipher, hash,
  DH group, authentication method, lifetime).  Configured proposals in
  strongSwan syntax (``aes128-sha1-modp2048``) expand to one transform per
  combination; the integrity algorithm names the IKEv1 hash and the PRF is
  HMAC of that hash.
* Keys (RFC 2409 §5)::

      SKEYID   = prf(pre-shared-key, Ni_b | Nr_b)          (PSK)
      SKEYID   = prf(Ni_b | Nr_b, g^xy)                    (signatures)
      SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
      SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
      SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)

* Authentication::

      HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)
      HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)

  ``SAi_b`` is the body of the initiator's SA payload as sent (without the
  generic header), ``IDii_b``/``IDir_b`` the ID payload bodies.  With RSA
  signatures SIG_I/SIG_R are PKCS#1 v1.5 signatures of the raw hash (no
  DigestInfo, like strongSwan's ``SIGN_RSA_EMSA_PKCS1_NULL`` and pluto).
  With ECDSA (RFC 4754, methods 9/10/11 = P-256/P-384/P-521, chosen from
  the curve of our key) HASH_x itself is the digest that is signed, as
  strongSwan's ``SIGN_ECDSA_WITH_NULL`` does (no second hash), and SIG_x is
  ``r | s``, each left-padded to the curve's octet length (RFC 4754 §7).

* NAT-D (RFC 3947 §3.2): ``HASH(CKY-I | CKY-R | IP | Port)`` with the
  negotiated hash; the destination's hash comes first.
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    NoDigestInfo,
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from ...config import ConnectionConfig
from ...crypto.cipher import Encr, make_encr
from ...crypto.kdf import ikev1_encryption_key, ikev1_skeyid_dae, ikev1_skeyid_psk, ikev1_skeyid_sig
from ...crypto.prf import Prf, hash_algorithm
from ...crypto.transforms import (
    ENCR,
    INTEG,
    KE,
    EncrAlg,
    EncrId,
    IntegAlg,
    KeAlg,
    PrfAlg,
    Proposal as ConfigProposal,
    prf_for_integ,
)
from ...errors import AuthenticationFailed as _AuthFailed, LocalProtocolError
from ...selectors import Address
from ..auth import (
    Identity,
    IdType,
    RevocationPending,
    cert_der,
    cert_matches_identity,
    check_remote_revocation,
    identity_matches_config,
    load_der_certificate,
    verify_chain,
)
from .constants import (
    FRAGMENTATION_IKE,
    VID_CISCO_UNITY,
    VID_DPD,
    VID_FRAGMENTATION,
    VID_FRAGMENTATION_FULL,
    VID_NATT_DRAFTS,
    VID_NATT_RFC3947,
    VID_XAUTH,
    CertEncoding,
    Ike1Auth,
    Ike1Encr,
    Ike1Hash,
    IkeTransformId,
    LifeType,
    Phase1Attr,
    ProtocolId,
)
from .errors import AuthenticationFailed, InvalidCertificate, NoProposalChosen, UnverifiedMessage
from .iv import IvManager
from .payloads import (
    Attribute,
    CertPayload,
    CertReqPayload,
    HashPayload,
    IdPayload,
    Payload,
    Proposal,
    SaPayload,
    SigPayload,
    Transform,
    VendorIdPayload,
)

__all__ = [
    "Phase1Keys",
    "Phase1Suite",
    "auth_method_for",
    "base_method",
    "build_sa_payload",
    "derive_keys",
    "ecdsa_sign_digest",
    "ecdsa_verify_digest",
    "hash_i",
    "hash_r",
    "natd_hash",
    "proposal_method",
    "select_suite",
    "suites_from_config",
]

# --------------------------------------------------------------------------- suites

_ENCR_V1 = {EncrId.AES_CBC: Ike1Encr.AES_CBC, EncrId.TRIPLE_DES: Ike1Encr.TRIPLE_DES_CBC, EncrId.DES: Ike1Encr.DES_CBC}
_HASH_V1 = {
    "md5": Ike1Hash.MD5,
    "sha1": Ike1Hash.SHA1,
    "sha256": Ike1Hash.SHA2_256,
    "sha384": Ike1Hash.SHA2_384,
    "sha512": Ike1Hash.SHA2_512,
}
_HASH_FROM_V1 = {v: INTEG[k] for k, v in _HASH_V1.items()}


@dataclass(frozen=True, slots=True)
class Phase1Suite:
    """One ISAKMP SA transform."""

    encr: EncrAlg
    integ: IntegAlg
    """Names the IKEv1 hash (``integ.hash_name``)."""
    ke: KeAlg
    auth: int
    """:class:`Ike1Auth` value."""
    lifetime: int
    """Seconds."""

    @property
    def prf(self) -> PrfAlg:
        return prf_for_integ(self.integ)

    @property
    def hash_name(self) -> str:
        assert self.integ.hash_name is not None
        return self.integ.hash_name

    @property
    def name(self) -> str:
        """strongSwan syntax, e.g. ``aes128-sha1-modp2048``."""
        return f"{self.encr.name}-{self.integ.name}-{self.ke.name}"

    def same_algorithms(self, other: Phase1Suite) -> bool:
        return (self.encr, self.integ, self.ke, self.auth) == (other.encr, other.integ, other.ke, other.auth)

    def to_transform(self, number: int) -> Transform:
        attrs = [Attribute.make(Phase1Attr.ENCRYPTION_ALGORITHM, _ENCR_V1[self.encr.id])]
        if self.encr.has_key_length_attr:
            attrs.append(Attribute.make(Phase1Attr.KEY_LENGTH, self.encr.key_bits))
        attrs += [
            Attribute.make(Phase1Attr.HASH_ALGORITHM, _HASH_V1[self.integ.name]),
            Attribute.make(Phase1Attr.GROUP_DESCRIPTION, int(self.ke.id)),
            Attribute.make(Phase1Attr.AUTHENTICATION_METHOD, self.auth),
            Attribute.make(Phase1Attr.LIFE_TYPE, LifeType.SECONDS),
            Attribute.make(Phase1Attr.LIFE_DURATION, self.lifetime),
        ]
        return Transform(number, IkeTransformId.KEY_IKE, attrs)


def suite_from_transform(t: Transform) -> Phase1Suite | None:
    """The suite a received transform describes, or None if we cannot do it
    (unknown cipher/hash/group, PRF attribute, non-KEY_IKE transform)."""
    if t.transform_id != IkeTransformId.KEY_IKE:
        return None
    known = {a.type for a in t.attributes}
    if Phase1Attr.PRF in known or Phase1Attr.GROUP_TYPE in known or Phase1Attr.GROUP_PRIME in known:
        return None
    e = t.get(Phase1Attr.ENCRYPTION_ALGORITHM)
    h = t.get(Phase1Attr.HASH_ALGORITHM)
    g = t.get(Phase1Attr.GROUP_DESCRIPTION)
    a = t.get(Phase1Attr.AUTHENTICATION_METHOD)
    if e is None or h is None or g is None or a is None:
        return None
    key_len = t.get(Phase1Attr.KEY_LENGTH)
    encr: EncrAlg | None = None
    if e == Ike1Encr.AES_CBC:
        encr = ENCR.get(f"aes{key_len or 128}")
    elif e == Ike1Encr.TRIPLE_DES_CBC and key_len in (None, 192):
        encr = ENCR["3des"]
    elif e == Ike1Encr.DES_CBC and key_len in (None, 64):
        encr = ENCR["des"]
    if encr is None or encr.id not in _ENCR_V1:
        return None
    integ = _HASH_FROM_V1.get(h)  # type: ignore[call-overload]
    if integ is None:
        return None
    ke = next((k for k in KE.values() if int(k.id) == g and k.kind != "mlkem"), None)
    if ke is None:
        return None
    life = t.life(Phase1Attr.LIFE_TYPE, Phase1Attr.LIFE_DURATION, LifeType.SECONDS)
    return Phase1Suite(encr, integ, ke, a, life or 28800)


def suites_from_config(proposals: Sequence[ConfigProposal], auth: int, lifetime: int) -> list[Phase1Suite]:
    """Every IKEv1-capable combination of the configured IKE proposals, in
    preference order (AEAD ciphers, XCBC and ML-KEM have no IKEv1 form)."""
    out: list[Phase1Suite] = []
    for p in proposals:
        for e in p.encr:
            if e.id not in _ENCR_V1:
                continue
            for i in p.integ:
                if i.name not in _HASH_V1:
                    continue
                for k in p.ke:
                    if k.kind == "mlkem":
                        continue
                    s = Phase1Suite(e, i, k, auth, lifetime)
                    if s not in out:
                        out.append(s)
    return out


def build_sa_payload(suites: Sequence[Phase1Suite]) -> SaPayload:
    """The initiator's SA: one ISAKMP proposal, one transform per suite."""
    return SaPayload([Proposal(1, ProtocolId.ISAKMP, b"", [s.to_transform(n + 1) for n, s in enumerate(suites)])])


def select_suite(
    configured: Sequence[Phase1Suite], offer: SaPayload
) -> tuple[Proposal, Transform, Phase1Suite]:
    """Responder side: the first configured suite the initiator offered
    (strongSwan's ``prefer_configured_proposals``).  Returns the offered
    proposal and transform (echoed unchanged in the reply) and the suite with
    the lifetime both sides use (the lower one)."""
    offered: list[tuple[Proposal, Transform, Phase1Suite]] = []
    for prop in offer.proposals:
        if prop.protocol != ProtocolId.ISAKMP:
            continue
        for t in prop.transforms:
            s = suite_from_transform(t)
            if s is not None:
                offered.append((prop, t, s))
    for mine in configured:
        for prop, t, theirs in offered:
            if mine.same_algorithms(theirs):
                life = min(mine.lifetime, theirs.lifetime) if theirs.lifetime else mine.lifetime
                return prop, t, Phase1Suite(mine.encr, mine.integ, mine.ke, mine.auth, life)
    names = ", ".join(f"{s.name}/{_auth_name(s.auth)}" for _p, _t, s in offered) or "nothing usable"
    raise NoProposalChosen(f"no acceptable ISAKMP proposal: peer offered {names}")


def accept_reply(configured: Sequence[Phase1Suite], reply: SaPayload) -> Phase1Suite:
    """Initiator side: the responder must have picked one of our transforms."""
    if len(reply.proposals) != 1 or len(reply.proposals[0].transforms) != 1:
        raise NoProposalChosen("responder must answer with exactly one proposal and one transform")
    s = suite_from_transform(reply.proposals[0].transforms[0])
    if s is None:
        raise NoProposalChosen("responder chose a transform we cannot use")
    for mine in configured:
        if mine.same_algorithms(s):
            life = min(mine.lifetime, s.lifetime) if s.lifetime else mine.lifetime
            return Phase1Suite(mine.encr, mine.integ, mine.ke, mine.auth, life)
    raise NoProposalChosen(f"responder chose {s.name}, which we did not offer")


def _auth_name(a: int) -> str:
    try:
        return Ike1Auth(a).name.lower()
    except ValueError:
        return str(a)


ECDSA_METHODS = {"secp256r1": Ike1Auth.ECDSA_256, "secp384r1": Ike1Auth.ECDSA_384, "secp521r1": Ike1Auth.ECDSA_521}
"""Curve -> IKEv1 authentication method (RFC 4754 §6; strongSwan picks the
method from the size of its ECDSA key the same way)."""
_METHOD_CURVE = {int(v): k for k, v in ECDSA_METHODS.items()}
_CURVE_LABEL = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_DIGEST_BY_SIZE: dict[int, type[hashes.HashAlgorithm]] = {
    16: hashes.MD5,
    20: hashes.SHA1,
    32: hashes.SHA256,
    48: hashes.SHA384,
    64: hashes.SHA512,
}


def _prehashed(digest: bytes) -> ec.ECDSA:
    """ECDSA over a digest as given: HASH_x is the prf output of the
    negotiated hash, so its length names that hash."""
    alg = _DIGEST_BY_SIZE.get(len(digest))
    if alg is None:
        raise LocalProtocolError(f"no hash of {len(digest)} bytes to sign with ECDSA")
    return ec.ECDSA(Prehashed(alg()))


def _curve_octets(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def ecdsa_sign_digest(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    """RFC 4754 §7 signature of ``digest`` (not hashed again): ``r | s``,
    each the curve's octet length, big-endian."""
    r, s = decode_dss_signature(key.sign(digest, _prehashed(digest)))
    size = _curve_octets(key.curve)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def ecdsa_verify_digest(pub: ec.EllipticCurvePublicKey, digest: bytes, sig: bytes) -> bool:
    """Whether ``sig`` (``r | s``, RFC 4754 §7) signs ``digest`` under ``pub``;
    False for a signature of the wrong length."""
    size = _curve_octets(pub.curve)
    if len(sig) != 2 * size:
        return False
    r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
    try:
        pub.verify(encode_dss_signature(r, s), digest, _prehashed(digest))
    except (InvalidSignature, ValueError):
        return False
    return True


def method_label(method: int) -> str:
    """``RSA``, ``ECDSA-256`` ...: for log lines and errors."""
    if method == Ike1Auth.RSA_SIG:
        return "RSA"
    curve = _METHOD_CURVE.get(method)
    return f"ECDSA-{_CURVE_LABEL[curve][2:]}" if curve else _auth_name(method)


def auth_method_for(cfg: ConnectionConfig) -> int:
    """Our Phase 1 authentication method from the configuration: PSK, RSA
    signatures, or ECDSA with the method of our key's curve."""
    if cfg.local.auth == "psk":
        if cfg.psk is None:
            raise LocalProtocolError(f"connection {cfg.name}: auth = psk but no pre-shared key configured")
        return Ike1Auth.PSK
    key = cfg.local.private_key
    if key is None or cfg.local.cert is None:
        raise LocalProtocolError(f"connection {cfg.name}: pubkey authentication needs cert and private_key")
    if isinstance(key, rsa.RSAPrivateKey):
        return Ike1Auth.RSA_SIG
    if isinstance(key, ec.EllipticCurvePrivateKey):
        method = ECDSA_METHODS.get(key.curve.name)
        if method is None:
            raise LocalProtocolError(
                f"connection {cfg.name}: IKEv1 ECDSA (RFC 4754) supports P-256, P-384 and P-521 keys, not {key.curve.name}"
            )
        return method
    raise LocalProtocolError(
        f"connection {cfg.name}: IKEv1 signature authentication supports RSA and ECDSA keys, not {type(key).__name__}"
    )


_XAUTH_METHODS = {Ike1Auth.PSK: Ike1Auth.XAUTH_INIT_PSK, Ike1Auth.RSA_SIG: Ike1Auth.XAUTH_INIT_RSA}
_BASE_METHODS = {
    Ike1Auth.XAUTH_INIT_PSK: Ike1Auth.PSK,
    Ike1Auth.XAUTH_RESP_PSK: Ike1Auth.PSK,
    Ike1Auth.XAUTH_INIT_RSA: Ike1Auth.RSA_SIG,
    Ike1Auth.XAUTH_RESP_RSA: Ike1Auth.RSA_SIG,
}


def base_method(method: int) -> int:
    """The Phase 1 method an XAUTH method (draft-beaulieu-ike-xauth §8:
    XAUTHInitPreShared ...) runs: keys and HASH/SIG are those of PSK or RSA."""
    return int(_BASE_METHODS.get(method, method))  # type: ignore[call-overload]


def proposal_method(cfg: ConnectionConfig) -> int:
    """The authentication method we propose or accept for ``cfg``: with a
    second XAUTH round (either side), XAUTHInitPreShared/XAUTHInitRSA -- the
    Phase 1 initiator is the XAUTH client, as strongSwan's calc_auth_method
    and Cisco clients have it; else :func:`auth_method_for`."""
    method = auth_method_for(cfg)
    if not (cfg.xauth_server or cfg.xauth_client):
        return method
    xauth = _XAUTH_METHODS.get(method)  # type: ignore[call-overload]
    if xauth is None:
        raise LocalProtocolError(f"connection {cfg.name}: XAUTH works with PSK or RSA Phase 1 authentication only")
    return int(xauth)


# --------------------------------------------------------------------------- keys


class Phase1Keys:
    """SKEYID and friends of one ISAKMP SA, the cipher and the IV chains.
    ``repr`` never shows key material."""

    __slots__ = ("suite", "prf_alg", "skeyid", "skeyid_d", "skeyid_a", "enc_key", "encr", "iv", "_prf_auth", "_prf_a")

    def __init__(self, suite: Phase1Suite, skeyid: bytes, d: bytes, a: bytes, e: bytes, gxi: bytes, gxr: bytes) -> None:
        self.suite = suite
        self.prf_alg = suite.prf
        self.skeyid = skeyid
        self.skeyid_d = d
        self.skeyid_a = a
        key = ikev1_encryption_key(self.prf_alg, e, suite.encr.key_len)
        self.enc_key = key
        """Phase 1 encryption key (only exported for Wireshark when key export is allowed)."""
        self.encr: Encr = make_encr(suite.encr, key)
        self.iv = IvManager(suite.hash_name, suite.encr.block_size)
        self.iv.init_phase1(gxi, gxr)
        self._prf_auth = Prf(self.prf_alg, skeyid)
        self._prf_a = Prf(self.prf_alg, a)

    def prf_auth(self, data: bytes) -> bytes:
        """prf(SKEYID, data): HASH_I/HASH_R."""
        return self._prf_auth(data)

    def prf_a(self, data: bytes) -> bytes:
        """prf(SKEYID_a, data): Phase 2 and informational HASHes."""
        return self._prf_a(data)

    def __repr__(self) -> str:
        return f"Phase1Keys({self.suite.name})"


def derive_keys(
    suite: Phase1Suite,
    *,
    psk: bytes | None,
    ni: bytes,
    nr: bytes,
    shared: bytes,
    cky_i: bytes,
    cky_r: bytes,
    gxi: bytes,
    gxr: bytes,
) -> Phase1Keys:
    """All Phase 1 keys (RFC 2409 §5); ``psk`` for PSK authentication."""
    prf_alg = suite.prf
    if base_method(suite.auth) == Ike1Auth.PSK:
        if psk is None:
            raise LocalProtocolError("pre-shared key missing")
        skeyid = ikev1_skeyid_psk(prf_alg, psk, ni, nr)
    else:
        skeyid = ikev1_skeyid_sig(prf_alg, ni, nr, shared)
    d, a, e = ikev1_skeyid_dae(prf_alg, skeyid, shared, cky_i, cky_r)
    return Phase1Keys(suite, skeyid, d, a, e, gxi, gxr)


def hash_i(keys: Phase1Keys, gxi: bytes, gxr: bytes, cky_i: bytes, cky_r: bytes, sai_b: bytes, idii_b: bytes) -> bytes:
    """HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)."""
    return keys.prf_auth(gxi + gxr + cky_i + cky_r + sai_b + idii_b)


def hash_r(keys: Phase1Keys, gxi: bytes, gxr: bytes, cky_i: bytes, cky_r: bytes, sai_b: bytes, idir_b: bytes) -> bytes:
    """HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)."""
    return keys.prf_auth(gxr + gxi + cky_r + cky_i + sai_b + idir_b)


# --------------------------------------------------------------------------- identities


def local_identity(cfg: ConnectionConfig, local_addr: Address) -> Identity:
    """Our identity: the configured one, else the certificate subject (pubkey)
    or our address (PSK, the classic Main Mode choice)."""
    if cfg.local.id:
        return Identity.from_string(cfg.local.id)
    if cfg.local.auth != "psk" and cfg.local.cert is not None:
        return Identity(IdType.DER_ASN1_DN, cfg.local.cert.subject.public_bytes())
    return Identity.from_address(local_addr[0])


def id_payload(identity: Identity) -> IdPayload:
    """Phase 1 ID payload (protocol and port 0, as strongSwan sends)."""
    return IdPayload(id_type=identity.id_type, protocol=0, port=0, data=identity.data)


def identity_of(p: IdPayload) -> Identity:
    return Identity(p.id_type, p.data)


def peer_matches(cfg: ConnectionConfig, identity: Identity) -> bool:
    return identity_matches_config(identity, cfg.remote.id)


# --------------------------------------------------------------------------- authentication payloads


def build_auth_payloads(
    cfg: ConnectionConfig, method: int, auth_hash: bytes, send_certs: bool
) -> list[Payload]:
    """HASH_x for PSK; [CERT...] SIG_x for RSA or ECDSA signatures."""
    if method == Ike1Auth.PSK:
        return [HashPayload(auth_hash)]
    out: list[Payload] = []
    if send_certs and cfg.local.cert is not None:
        out.append(CertPayload(encoding=CertEncoding.X509_SIGNATURE, data=cert_der(cfg.local.cert)))
        for c in cfg.local.intermediates:
            out.append(CertPayload(encoding=CertEncoding.X509_SIGNATURE, data=cert_der(c)))
    key = cfg.local.private_key
    if method == Ike1Auth.RSA_SIG:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise LocalProtocolError("IKEv1 RSA signatures need an RSA private key")
        out.append(SigPayload(key.sign(auth_hash, padding.PKCS1v15(), NoDigestInfo())))
        return out
    curve = _METHOD_CURVE.get(method)
    if curve is None:
        raise LocalProtocolError(f"IKEv1 authentication method {_auth_name(method)} is not supported")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != curve:
        raise LocalProtocolError(f"IKEv1 {method_label(method)} signatures need a {_CURVE_LABEL[curve]} private key")
    out.append(SigPayload(ecdsa_sign_digest(key, auth_hash)))
    return out


def verify_psk_hash(expected: bytes, payloads: Iterable[Payload]) -> None:
    got = next((p for p in payloads if isinstance(p, HashPayload)), None)
    if got is None:
        raise UnverifiedMessage("HASH payload missing")
    if not hmac.compare_digest(got.data, expected):
        raise UnverifiedMessage("HASH mismatch")


def verify_signature(
    cfg: ConnectionConfig,
    identity: Identity,
    auth_hash: bytes,
    payloads: Sequence[Payload],
    at: datetime.datetime,
    method: int = Ike1Auth.RSA_SIG,
    *,
    hold: bool = False,
) -> x509.Certificate:
    """Verify SIG_x with the peer's certificate (CERT payloads of the
    message), the certificate chain against ``cfg.remote.cacerts`` at time
    ``at``, and that the certificate belongs to ``identity``.  ``method`` is
    the negotiated authentication method: RSA, or ECDSA, where the peer's key
    must be on the method's curve.

    ``hold``: a certificate whose revocation status the fetcher is getting
    right now is not decided by policy: once everything else verified
    (chain, identity, signature: a forged SIG_x fails at once) the
    :class:`~aioipsec.ike.auth.RevocationPending` of
    :func:`~aioipsec.ike.auth.check_revocation` is raised, and the caller
    drops the message as if lost."""
    sig = next((p for p in payloads if isinstance(p, SigPayload)), None)
    if sig is None:
        raise UnverifiedMessage("SIG payload missing")
    certs: list[x509.Certificate] = []
    for p in payloads:
        if isinstance(p, CertPayload) and not isinstance(p, CertReqPayload):
            if p.encoding != CertEncoding.X509_SIGNATURE:
                continue
            try:
                certs.append(load_der_certificate(p.data))
            except _AuthFailed as exc:
                raise InvalidCertificate(str(exc)) from None
    if not certs:
        raise AuthenticationFailed("peer sent no certificate")
    pending: RevocationPending | None = None
    try:
        # cryptography parses extensions and the key on first use: a
        # certificate that loaded may still be malformed there (ValueError)
        leaf = next((c for c in certs if cert_matches_identity(c, identity)), None)
        if leaf is None:
            raise AuthenticationFailed(f"no certificate of the peer matches its identity {identity}")
        try:
            chain = verify_chain(leaf, [c for c in certs if c is not leaf], list(cfg.remote.cacerts), at)
            # a pending status is raised once the signature verified
            pending = check_remote_revocation(chain, cfg.remote, at, peer=str(identity), hold=hold)
        except _AuthFailed as exc:
            raise AuthenticationFailed(str(exc)) from None
        pub = leaf.public_key()
    except ValueError as exc:
        raise InvalidCertificate(f"malformed certificate: {exc}") from None
    curve = _METHOD_CURVE.get(method)
    if curve is not None:
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            raise AuthenticationFailed(f"negotiated {method_label(method)} but the peer certificate has no ECDSA key")
        if pub.curve.name != curve:
            have = _CURVE_LABEL.get(pub.curve.name, pub.curve.name)
            raise AuthenticationFailed(f"negotiated {method_label(method)} but the peer certificate has a {have} key")
        if not ecdsa_verify_digest(pub, auth_hash, sig.data):
            raise UnverifiedMessage(f"{method_label(method)} signature of {identity} does not verify")
    else:
        if method != Ike1Auth.RSA_SIG:
            raise AuthenticationFailed(f"authentication method {_auth_name(method)} is not supported")
        if not isinstance(pub, rsa.RSAPublicKey):
            raise AuthenticationFailed("peer certificate has no RSA key")
        try:
            pub.verify(sig.data, auth_hash, padding.PKCS1v15(), NoDigestInfo())
        except (InvalidSignature, ValueError):
            raise UnverifiedMessage("signature does not verify") from None
    if pending is not None:
        # only a peer that proved its key is held
        raise pending
    return leaf


def certreq_payloads(cfg: ConnectionConfig) -> list[Payload]:
    """CERTREQ per trust anchor (X.509 signature, CA = DER subject), or one
    empty CERTREQ when none is configured."""
    if not cfg.remote.cacerts:
        return [CertReqPayload(encoding=CertEncoding.X509_SIGNATURE, data=b"")]
    return [CertReqPayload(encoding=CertEncoding.X509_SIGNATURE, data=c.subject.public_bytes()) for c in cfg.remote.cacerts]


# --------------------------------------------------------------------------- vendor IDs, NAT-D


@dataclass(slots=True)
class PeerFeatures:
    natt: bool = False
    natt_draft: bool = False
    dpd: bool = False
    fragmentation: bool = False
    strongswan: bool = False
    unity: bool = False
    """The peer sent the Cisco Unity vendor ID (Mode Config UNITY_SPLIT_INCLUDE)."""


def vendor_ids(cfg: ConnectionConfig, *, initiator: bool, peer: PeerFeatures | None = None) -> list[Payload]:
    """Our vendor IDs: NAT-T (RFC 3947; the drafts only when answering a
    draft peer), DPD, and IKE fragmentation when enabled."""
    out: list[Payload] = []
    out.append(VendorIdPayload(VID_DPD))
    if cfg.xauth_server or cfg.xauth_client:
        out.append(VendorIdPayload(VID_XAUTH))  # as strongSwan and Cisco send with XAUTH
    if (cfg.vips if initiator else (cfg.pools and peer is not None and peer.unity)):
        out.append(VendorIdPayload(VID_CISCO_UNITY))  # Mode Config client / gateway answering one
    if cfg.fragmentation and (initiator or (peer is not None and peer.fragmentation)):
        out.append(VendorIdPayload(VID_FRAGMENTATION_FULL))
    if initiator or (peer is not None and peer.natt and not peer.natt_draft):
        out.append(VendorIdPayload(VID_NATT_RFC3947))
    elif peer is not None and peer.natt_draft:
        out.append(VendorIdPayload(VID_NATT_DRAFTS[0]))
    return out


def process_vendor_ids(payloads: Iterable[Payload], features: PeerFeatures) -> None:
    for p in payloads:
        if not isinstance(p, VendorIdPayload):
            continue
        d = p.data
        if d == VID_NATT_RFC3947:
            features.natt = True
            features.natt_draft = False
        elif d in VID_NATT_DRAFTS and not features.natt:
            features.natt = True
            features.natt_draft = True
        elif d == VID_DPD:
            features.dpd = True
        elif d == VID_CISCO_UNITY:
            features.unity = True
        elif len(d) == 20 and d[:16] == VID_FRAGMENTATION:
            features.fragmentation = bool(int.from_bytes(d[16:], "big") & FRAGMENTATION_IKE)
        elif d[:16] == bytes.fromhex("882fe56d6fd20dbc2251613b2ebe5beb"):
            features.strongswan = True


def natd_hash(hash_name: str, cky_i: bytes, cky_r: bytes, addr: Address) -> bytes:
    """HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash (RFC 3947 §3.2)."""
    ip, port = addr
    h = hashes.Hash(hash_algorithm(hash_name))
    h.update(cky_i + cky_r + ipaddress.ip_address(ip).packed + port.to_bytes(2, "big"))
    return h.finalize()


def hash_len(hash_name: str) -> int:
    return hash_algorithm(hash_name).digest_size
