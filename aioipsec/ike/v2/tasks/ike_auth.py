"""IKE_AUTH: identities, certificates, CERTREQ, AUTH (PSK and signatures),
configuration selection by identity (RFC 7296 §1.2, §2.15, §3.5-3.8;
RFC 7427), EAP (§2.16) and a second authentication round (RFC 4739): EAP,
or a certificate or PSK as a first round's.
Models: strongSwan ``ike_auth.c``, ``ike_cert_pre/post.c``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ....config import AuthConfig, ConnectionConfig
from ....crypto.kdf import IkeV2Keys
from ....errors import AuthenticationFailed
from ....events import NegotiationFailed
from ... import auth as A
from ...auth import Identity
from ...constants import (
    AuthMethod,
    CertEncoding,
    EapCode,
    ExchangeType,
    IdType,
    NotifyType,
    notify_name,
)
from ..eap import (
    AUTH_METHODS,
    METHOD_NAMES,
    EapError,
    EapPacket,
    EapPeer,
    EapServer,
    EapType,
    ServerState,
)
from ..message import Message
from ..payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
)
from . import ppk
from .base import Task, TaskStatus
from .common import notify
from .ike_auth_lifetime import add_auth_lifetime, process_auth_lifetime

if TYPE_CHECKING:
    from cryptography import x509


logger = logging.getLogger("aioipsec.ike")


def _configured_id(text: str | None) -> Identity | None:
    if text is None or text.strip() in ("", "%any", "%any6"):
        return None
    return Identity.from_string(text)


@dataclass(eq=False)
class EapRounds:
    """An IKE_AUTH with EAP in progress (RFC 7296 §2.16), kept on the IKE SA
    (``IkeSa.eap``) across its IKE_AUTH exchanges (message IDs 1, 2, ...).

    Initiator: after the request without AUTH, the session gives only
    ``task`` each response until the final one (the answer to our AUTH),
    which all the exchange's tasks process.  Responder: ``tasks`` (the
    exchange's other tasks) and ``request`` (the first IKE_AUTH request:
    its SA, TS, CP) wait for the final AUTH; then they process ``request``
    and build into the final response."""

    task: IkeAuth
    peer: EapPeer | None = None
    server: EapServer | None = None
    out: EapPacket | None = None
    """The EAP packet our next message carries."""
    final: bool = False
    """Initiator: our AUTH went out (EAP succeeded); responder: the peer's
    final AUTH verified."""
    tasks: list[Any] = field(default_factory=list)
    request: Message | None = None
    verified: bool = False
    """Initiator: the gateway's IDr and AUTH (first response) verified."""
    round2: bool = False
    """A second authentication round (RFC 4739; ``local-2`` / ``remote-2``):
    the first round's AUTH (psk/pubkey) is done; EAP follows in new
    IKE_AUTH exchanges, the initiator identified as :attr:`round2_id`.
    Responder: :attr:`server` is None until the round's IDi arrives."""
    round2_id: Identity | None = None
    """The initiator's IDi of the second round (what its AUTH after EAP covers)."""
    idi_due: bool = False
    """Initiator: the second round's IDi (no AUTH: EAP follows) is still to send."""
    auth: str = ""
    """A second round with ``pubkey`` or ``psk`` (no EAP; ``""``: EAP): the
    initiator sends IDi, CERT and AUTH as in a first round (signed over the
    IKE_SA_INIT request, Nr and the new IDi, keyed with SK_pi); the
    responder verifies it and answers without AUTH (charon's sequence)."""

    @property
    def identity(self) -> str:
        if self.auth and self.round2_id is not None:
            return str(self.round2_id)
        if self.peer is not None:
            return self.peer.identity.decode(errors="replace")
        return (self.server.identity if self.server is not None else None) or "?"

    @property
    def method_name(self) -> str:
        m = self.peer.method if self.peer is not None else (self.server.method if self.server else None)
        return METHOD_NAMES.get(m, "EAP") if m is not None else "EAP"  # type: ignore[call-overload]


def _peer_methods(auth: str, legacy: bool) -> tuple[int, ...]:
    if auth in AUTH_METHODS:
        return (AUTH_METHODS[auth],)
    return (EapType.GTC, EapType.MD5) if legacy else (EapType.GTC,)


def _eap_peer(cfg: ConnectionConfig, auth: str, name: str, which: str) -> EapPeer:
    """Our EAP peer (client) as ``name`` with its secret, for the first
    round (``auth``: ``local``'s) or the second (``local-2``'s; ``which``
    ends the error text).  Raises AuthenticationFailed without a secret."""
    secret = cfg.eap_secrets.get(name)
    if secret is None:
        raise AuthenticationFailed(f"no EAP secret for EAP identity '{name}'{which}")
    return EapPeer(name.encode(), secret, _peer_methods(auth, cfg.legacy))


class IkeAuth(Task):
    exchange_type = ExchangeType.IKE_AUTH
    combinable = True
    name = "ike_auth"

    def __init__(self, session, sa, initiator: bool) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, sa, initiator)
        self.failure_reason = ""
        self.peer_certreq = False
        self.initial_contact = False
        """Responder: the peer's IKE_AUTH carried INITIAL_CONTACT (RFC 7296 §3.10.1)."""
        self.ppk: ppk.PpkKeys | None = None
        """RFC 8784: the IKE SA keys without and with the PPK (``tasks.ppk``)."""

    @property
    def eap(self) -> EapRounds | None:
        """EAP authentication of the initiator (RFC 7296 §2.16) in progress:
        kept on the IKE SA only (``IkeSa.eap``, which the session reads to
        route the later rounds to this task)."""
        return self.sa.eap

    # ------------------------------------------------------------------ shared

    def _certs_to_send(self, cfg: ConnectionConfig, peer_asked: bool, a: AuthConfig | None = None) -> list[CertPayload]:
        a = a or cfg.local  # local-2 for a second certificate round
        if a.auth != "pubkey" or a.cert is None or cfg.send_cert == "never":
            return []
        if cfg.send_cert == "ifasked" and not peer_asked:
            return []
        certs = [a.cert, *a.intermediates]
        return [CertPayload(CertEncoding.X509_SIGNATURE, A.cert_der(c)) for c in certs]

    def _auth_payload(self, cfg: ConnectionConfig, octets: bytes, round2: bool = False) -> AuthPayload:
        """Our AUTH of the first round (``local``) or, ``round2``, of a
        ``local-2`` certificate or PSK round (its key, :attr:`psk2`)."""
        a, psk = (cfg.local2, cfg.psk2) if round2 else (cfg.local, cfg.psk)
        assert a is not None
        if a.auth == "psk":
            if psk is None:
                raise AuthenticationFailed("no pre-shared key configured" + (" (local-2)" if round2 else ""))
            return AuthPayload(AuthMethod.PSK, A.psk_auth_data(self.sa.prf, psk, octets))
        if a.private_key is None:
            raise AuthenticationFailed("no private key configured" + (" (local-2)" if round2 else ""))
        method, data = A.sign(a.private_key, octets, peer_hashes=self.sa.peer_hashes, rsa_pss=a.rsa_pss)
        return AuthPayload(method, data)

    def _verify(self, cfg: ConnectionConfig, msg: Message, peer_id: Identity, auth: AuthPayload, octets: bytes,
                round2: bool = False) -> str:
        """Verify the peer's AUTH (``round2``: of its ``remote-2``
        certificate or PSK round); returns a description, raises
        AuthenticationFailed."""
        a, psk = (cfg.remote2, cfg.psk2) if round2 else (cfg.remote, cfg.psk)
        assert a is not None
        if a.auth == "psk":
            if auth.method != AuthMethod.PSK:
                raise AuthenticationFailed(f"peer used auth method {auth.method}, PSK expected")
            if psk is None:
                raise AuthenticationFailed("no pre-shared key configured")
            if not A.verify_psk(self.sa.prf, psk, octets, auth.data):
                raise AuthenticationFailed("pre-shared key AUTH mismatch")
            return "pre-shared key"
        if auth.method == AuthMethod.PSK:
            raise AuthenticationFailed("peer used a pre-shared key, a signature is required")
        certs = [
            A.load_der_certificate(c.data)
            for c in msg.get_all(CertPayload)
            if c.encoding == CertEncoding.X509_SIGNATURE
        ]
        pinned: x509.Certificate | None = a.cert
        if not certs:
            if pinned is None:
                raise AuthenticationFailed("peer sent no certificate")
            certs = [pinned]
        leaf, inters = certs[0], certs[1:]
        pending: A.RevocationPending | None = None
        if pinned is not None and leaf == pinned:
            pass
        else:
            assert self.session.wall_clock is not None  # required by the session for non-PSK remote auth
            at = self.session.wall_clock()
            chain = A.verify_chain(leaf, inters, a.cacerts, at)
            pending = A.check_remote_revocation(chain, a, at, peer=self.session.peer_label(peer_id),
                                                hold=self._may_hold(a.revocation_cache))
        if not A.cert_matches_identity(leaf, peer_id):
            raise AuthenticationFailed(f"identity '{peer_id}' is not confirmed by the certificate")
        scheme = A.verify_signature(leaf.public_key(), auth.method, auth.data, octets)
        if pending is not None:
            # only a peer that proved its key is held (a forged AUTH fails now)
            self._hold(pending)
            raise pending
        return f"{scheme} signature of '{leaf.subject.rfc4514_string()}'"

    def _may_hold(self, fetched: A.RevocationCache | None) -> bool:
        """May the check hold this message for a certificate being fetched?
        Yes until the IKE SA has been held for ``fetched.hold_limit``
        seconds (session time); then the status is decided with what is
        cached, by policy."""
        if fetched is None:
            return False
        return fetched.may_hold(self.sa.auth_held_at, self.session.now, peer=self.session.peer, sa=self.sa.spis())

    def _hold(self, pending: A.RevocationPending) -> None:
        """The message is dropped unanswered (the session counts it in
        ``stats.auth_pending``) and kept on ``IkeSa.auth_held``: processed
        afresh by the session's ``retry_held`` as soon as the fetcher has
        the status (or the peer's retransmission is)."""
        sa = self.sa
        if sa.auth_held_at is None:
            sa.auth_held_at = self.session.now
            logger.info("peer %s: %s, holding IKE_AUTH %s", pending.peer, pending, sa.spis())

    # ------------------------------------------------------------------ initiator

    def build_i(self, msg: Message) -> TaskStatus:
        s, sa, cfg = self.session, self.sa, self.session.config
        assert sa.keys is not None
        if self.eap is not None:
            return self._eap_build_i(msg)
        ident = s.local_identity()
        sa.local_id = ident
        msg.add(IdiPayload(ident.id_type, ident.data))
        for c in self._certs_to_send(cfg, sa.peer_certreq is not None):
            msg.add(c)
        if cfg.remote.auth == "pubkey" and cfg.send_certreq and cfg.remote.cacerts:
            msg.add(CertReqPayload(CertEncoding.X509_SIGNATURE, A.certreq_data(cfg.remote.cacerts)))
        want = _configured_id(cfg.remote.id)
        if want is not None:
            msg.add(IdrPayload(want.id_type, want.data))
        try:
            ppk.mix_i(self, cfg)  # RFC 8784: the PPK into SK_d/SK_pi/SK_pr first
            octets = A.signed_octets(sa.init_request, sa.nr, ident.body(), sa.prf, sa.keys.sk_pi)
            if cfg.local.auth.startswith("eap"):
                self._eap_start_i(cfg, ident)  # no AUTH: EAP follows (RFC 7296 §2.16)
            else:
                msg.add(self._auth_payload(cfg, octets))
                if cfg.local2 is not None:
                    self._round2_plan_i(cfg, ident, msg)
                ppk.add_notifies_i(self, msg, cfg, ident)
        except AuthenticationFailed as exc:
            self.failure_reason = f"cannot authenticate: {exc}"
            self.session.emit(NegotiationFailed(s.peer, "IKE_AUTH", "", self.failure_reason))
            return TaskStatus.FAILED
        if cfg.initial_contact:
            msg.add(notify(NotifyType.INITIAL_CONTACT))
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        s, sa, cfg = self.session, self.sa, self.session.config
        assert sa.keys is not None
        eap = self.eap
        if msg.has_notify(NotifyType.AUTHENTICATION_FAILED):
            extra = f" ({eap.method_name} of EAP identity '{eap.identity}')" if eap is not None else ""
            if eap is not None and eap.auth:
                extra = f" (second round, local-2 auth = {eap.auth} as '{eap.identity}')" if eap.final else ""
            s.auth_failed(sa, "IKE_AUTH", f"peer answered AUTHENTICATION_FAILED{extra}")
            self.failure_reason = "authentication failed"
            return TaskStatus.FAILED
        if eap is not None and eap.verified:
            return self._eap_final_i(msg) if eap.final else self._eap_process_i(msg)
        idr = msg.get(IdrPayload)
        auth = msg.get(AuthPayload)
        if idr is None or auth is None:
            err = msg.error_notify()
            name = notify_name(err.notify_type) if err else "INVALID_SYNTAX"
            s.emit(NegotiationFailed(s.peer, "IKE_AUTH", name, "IKE_AUTH refused"))
            self.failure_reason = f"{name} received"
            return TaskStatus.FAILED
        peer_id = Identity(idr.id_type, idr.data)
        before = sa.remote_id
        sa.remote_id = peer_id
        if not A.identity_matches_config(peer_id, cfg.remote.id):
            raise AuthenticationFailed(f"peer identity '{peer_id}' does not match '{cfg.remote.id}'")
        ppk.settle_i(self, msg, cfg)  # RFC 8784: did the responder use the PPK?
        octets = A.signed_octets(sa.init_response, sa.ni, peer_id.body(), sa.prf, sa.keys.sk_pr)
        try:
            how = self._verify(cfg, msg, peer_id, auth, octets)
        except A.RevocationPending:
            sa.remote_id = before  # the same response, resent, is processed afresh
            raise
        s.step("IKE_AUTH authenticated", sa, peer_id=str(peer_id), method=how)
        if eap is not None:
            eap.verified = True
            if eap.idi_due:  # RFC 4739: the first round is done; our second round's IDi next
                return TaskStatus.NEED_MORE
            return self._eap_process_i(msg)
        return self._established_i(msg)

    def _established_i(self, msg: Message) -> TaskStatus:
        s, sa = self.session, self.sa
        redirect = msg.get_notify(NotifyType.REDIRECT)
        if redirect is not None:
            # RFC 5685 §6: followed once the gateway is authenticated (here);
            # malformed data is ignored (counted) as charon does
            to = s.parse_redirect(redirect.data, "IKE_AUTH")
            if to is not None:
                s.redirect_received(sa, *to, "IKE_AUTH", s.now)
                self.failure_reason = s.closed_reason
                return TaskStatus.FAILED
        if s.cp_failure:
            return self._cp_required(s.cp_failure)
        s.ike_established(sa, s.now)
        process_auth_lifetime(s, sa, msg, s.now)
        return TaskStatus.SUCCESS

    # ------------------------------------------------------------------ EAP, both roles

    def _eap_auth_key_octets(self, own: bool, keys: IkeV2Keys | None = None) -> tuple[bytes, bytes]:
        """The shared key and signed octets of the AUTH after EAP (``own``:
        ours, else the peer's).  EAP-MD5/GTC make no MSK, so the key is
        SK_pi for the initiator's AUTH and SK_pr for the responder's (RFC
        7296 §2.16), as charon's ``eap_authenticator``; ``keys``: other than
        the IKE SA's (RFC 8784: the peer's AUTH checked with the PPK's)."""
        sa = self.sa
        keys = keys or sa.keys
        assert keys is not None
        ident = sa.local_id if own else sa.remote_id
        eap = self.eap
        if own == self.initiator and eap is not None and eap.round2_id is not None:
            ident = eap.round2_id  # RFC 4739: the second round's IDi
        assert ident is not None
        if own == self.initiator:  # the initiator's AUTH
            return keys.sk_pi, A.signed_octets(sa.init_request, sa.nr, ident.body(), sa.prf, keys.sk_pi)
        return keys.sk_pr, A.signed_octets(sa.init_response, sa.ni, ident.body(), sa.prf, keys.sk_pr)

    def _eap_auth(self) -> AuthPayload:
        """Our AUTH after EAP Success (see :meth:`_eap_auth_key_octets`)."""
        key, octets = self._eap_auth_key_octets(own=True)
        return AuthPayload(AuthMethod.PSK, A.psk_auth_data(self.sa.prf, key, octets))

    def _eap_auth_ok(self, auth: AuthPayload, keys: IkeV2Keys | None = None) -> bool:
        """Is ``auth`` the peer's AUTH after EAP Success (see :meth:`_eap_auth_key_octets`)?"""
        key, octets = self._eap_auth_key_octets(own=False, keys=keys)
        return auth.method == AuthMethod.PSK and A.verify_psk(self.sa.prf, key, octets, auth.data)

    # ------------------------------------------------------------------ EAP, initiator (client)

    def _eap_start_i(self, cfg: ConnectionConfig, ident: Identity) -> None:
        name = cfg.eap_user() or str(ident)
        self.sa.eap = EapRounds(self, peer=_eap_peer(cfg, cfg.local.auth, name, ""))

    def _round2_plan_i(self, cfg: ConnectionConfig, ident: Identity, msg: Message) -> None:
        """``local-2`` (RFC 4739): our first IKE_AUTH, which carries our AUTH,
        announces the EAP round that follows (ANOTHER_AUTH_FOLLOWS); the
        gateway answers this round alone and waits for the next."""
        r2 = cfg.local2
        assert r2 is not None
        if not self.sa.multiple_auth:
            raise AuthenticationFailed(f"local-2 (auth = {r2.auth}) needs a second authentication round, but the peer "
                                       "did not send MULTIPLE_AUTH_SUPPORTED in IKE_SA_INIT (RFC 4739)")
        if r2.auth in ("pubkey", "psk"):
            # RFC 4739 §3: the round's IDi, CERT and AUTH, as a first round's, in the next IKE_AUTH
            if r2.auth == "psk" and cfg.psk2 is None:
                raise AuthenticationFailed("no pre-shared key configured for local-2 (auth = psk)")
            if r2.auth == "pubkey" and (r2.private_key is None or r2.cert is None):
                raise AuthenticationFailed("no certificate and private key configured for local-2 (auth = pubkey)")
            idi = _configured_id(r2.id)
            if idi is None:  # swanctl: a certificate's subject, else the first round's identity
                idi = Identity(IdType.DER_ASN1_DN, r2.cert.subject.public_bytes()) if r2.auth == "pubkey" else ident
            msg.add(notify(NotifyType.MULTIPLE_AUTH_SUPPORTED))
            msg.add(notify(NotifyType.ANOTHER_AUTH_FOLLOWS))
            self.sa.eap = EapRounds(self, round2=True, round2_id=idi, idi_due=True, auth=r2.auth)
            return
        name = cfg.eap_user(round2=True) or str(ident)
        peer = _eap_peer(cfg, r2.auth, name, " (local-2)")
        idi = Identity.from_string(r2.id or r2.eap_id) if (r2.id or r2.eap_id) else ident
        msg.add(notify(NotifyType.MULTIPLE_AUTH_SUPPORTED))
        msg.add(notify(NotifyType.ANOTHER_AUTH_FOLLOWS))
        self.sa.eap = EapRounds(self, peer=peer, round2=True, round2_id=idi, idi_due=True)

    def _eap_build_i(self, msg: Message) -> TaskStatus:
        """A later IKE_AUTH request: our EAP response, or (after EAP Success)
        our AUTH keyed with SK_pi: EAP-MD5/GTC make no MSK (RFC 7296 §2.16)."""
        sa, eap = self.sa, self.eap
        assert eap is not None and sa.keys is not None and sa.local_id is not None
        if eap.idi_due and eap.auth:  # RFC 4739 second round with a certificate or PSK
            return self._round2_auth_i(msg)
        if eap.idi_due:  # RFC 4739 second round: IDi without AUTH, EAP follows
            assert eap.round2_id is not None
            eap.idi_due = False
            msg.add(IdiPayload(eap.round2_id.id_type, eap.round2_id.data))
            self.session.step("IKE_AUTH round 2 started", sa, eap_id=eap.identity, round2_id=str(eap.round2_id))
            return TaskStatus.SUCCESS
        if eap.out is not None:
            out, eap.out = eap.out, None
            msg.add(EapPayload(out.code, out.identifier, out.data))
            return TaskStatus.SUCCESS
        ppk.mix_eap_i(self)  # RFC 8784: the PPK goes in at the AUTH after EAP
        msg.add(self._eap_auth())
        ppk.add_eap_notifies_i(self, msg, self.session.config)
        eap.final = True
        return TaskStatus.SUCCESS

    def _round2_auth_i(self, msg: Message) -> TaskStatus:
        """``local-2`` with ``pubkey`` / ``psk`` (RFC 4739): IDi (the round's
        identity), our CERT (as the first round: if asked for, or always) and
        AUTH computed as in the first round (the IKE_SA_INIT request, Nr,
        prf(SK_pi, the new IDi)).  The answer has no AUTH (the gateway
        authenticated itself in the first round) and the Child SA."""
        s, sa, cfg, eap = self.session, self.sa, self.session.config, self.eap
        assert eap is not None and eap.round2_id is not None and sa.keys is not None
        r2 = cfg.local2
        assert r2 is not None
        idi = eap.round2_id
        eap.idi_due = False
        msg.add(IdiPayload(idi.id_type, idi.data))
        for c in self._certs_to_send(cfg, sa.peer_certreq is not None, r2):
            msg.add(c)
        octets = A.signed_octets(sa.init_request, sa.nr, idi.body(), sa.prf, sa.keys.sk_pi)
        msg.add(self._auth_payload(cfg, octets, round2=True))
        eap.final = True
        s.step("IKE_AUTH round 2 started", sa, round2_id=str(idi), method=r2.auth)
        return TaskStatus.SUCCESS

    def _eap_process_i(self, msg: Message) -> TaskStatus:
        """An EAP request, Success or Failure from the gateway."""
        s, eap = self.session, self.eap
        assert eap is not None and eap.peer is not None
        payload = msg.get(EapPayload)
        if payload is None:
            raise AuthenticationFailed(f"IKE_AUTH response without EAP payload ({eap.method_name} of "
                                       f"EAP identity '{eap.identity}')")
        try:
            packet = EapPacket.from_parts(payload.code, payload.identifier, payload.data)
        except EapError as exc:
            s.stats.malformed += 1
            raise AuthenticationFailed(f"malformed EAP request: {exc}") from None
        before = eap.peer.malformed
        reply = eap.peer.process(packet)
        if eap.peer.result == EapCode.FAILURE:
            raise AuthenticationFailed(f"{eap.method_name} authentication of EAP identity '{eap.identity}' "
                                       "failed (EAP Failure)")
        if eap.peer.result == EapCode.SUCCESS:
            s.step("EAP succeeded", self.sa, eap_id=eap.identity, method=eap.method_name)
            return TaskStatus.NEED_MORE
        if reply is None:
            s.stats.malformed += eap.peer.malformed - before
            raise AuthenticationFailed(f"unexpected EAP message (code {packet.code}, type {packet.type})")
        eap.out = reply
        return TaskStatus.NEED_MORE

    def _eap_final_i(self, msg: Message) -> TaskStatus:
        """The gateway's AUTH keyed with SK_pr, then SA/TS (Child SA)."""
        sa, eap = self.sa, self.eap
        assert eap is not None and sa.keys is not None and sa.remote_id is not None
        if eap.auth:  # a certificate/PSK second round: the gateway's AUTH came in the first round
            sa.eap = None
            sa.local_round2_id = eap.identity  # the IkeSaEstablished event and status carry it
            return self._established_i(msg)
        auth = msg.get(AuthPayload)
        if auth is None:
            raise AuthenticationFailed("no AUTH in the final IKE_AUTH response after EAP")
        ppk.settle_i(self, msg, self.session.config)  # RFC 8784: did the gateway use the PPK?
        if not self._eap_auth_ok(auth):
            raise AuthenticationFailed("the gateway's AUTH after EAP does not match (SK_pr)")
        sa.eap = None
        sa.local_eap_id = eap.identity  # the IkeSaEstablished event and status carry it
        return self._established_i(msg)

    def _cp_required(self, why: str) -> TaskStatus:
        """We requested a virtual IP and got none (IkeConfig parsed the reply):
        like strongSwan, the IKE SA fails; the peer is told with a Delete."""
        s, sa = self.session, self.sa
        peer = s.peer_label(sa.remote_id)
        reason = f"{why} (peer {peer})"
        logger.warning("FAILED_CP_REQUIRED IKE_AUTH peer=%s %s: %s", peer, sa.spis(), why)
        s.emit(NegotiationFailed(peer, "IKE_AUTH", "FAILED_CP_REQUIRED", reason))
        s.send_ike_delete(sa)  # past the IKE_AUTH still outstanding
        self.failure_reason = f"FAILED_CP_REQUIRED: {reason}"
        return TaskStatus.FAILED

    # ------------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> TaskStatus:
        s, sa = self.session, self.sa
        assert sa.keys is not None
        if self.eap is not None:
            return self._eap_process_r(msg)
        idi = msg.get(IdiPayload)
        auth = msg.get(AuthPayload)
        if idi is None:
            raise AuthenticationFailed("IKE_AUTH request without IDi")
        peer_id = Identity(idi.id_type, idi.data)
        before_id = sa.remote_id
        sa.remote_id = peer_id
        idr = msg.get(IdrPayload)
        wanted = Identity(idr.id_type, idr.data) if idr is not None else None
        another = msg.has_notify(NotifyType.ANOTHER_AUTH_FOLLOWS)  # RFC 4739
        chosen = None
        round2_mismatch: ConnectionConfig | None = None
        for cfg in s.candidates:
            if not A.identity_matches_config(peer_id, cfg.remote.id):
                continue
            if wanted is not None:
                mine = _configured_id(cfg.local.id)
                if mine is not None and not mine.matches(wanted):
                    continue
            if auth is None:  # EAP (RFC 7296 §2.16)
                if cfg.remote.auth not in AUTH_METHODS:
                    continue
            elif (auth.method == AuthMethod.PSK) != (cfg.remote.auth == "psk"):
                continue
            if (cfg.remote2 is not None) != another:
                round2_mismatch = round2_mismatch or cfg
                continue
            chosen = cfg
            break
        if chosen is None and round2_mismatch is not None:
            r2 = round2_mismatch.remote2
            raise AuthenticationFailed(
                f"peer '{peer_id}' did not announce a second authentication round (no ANOTHER_AUTH_FOLLOWS), "
                f"which {round2_mismatch.name} requires (remote-2 auth = {r2.auth})" if r2 is not None else
                f"peer '{peer_id}' announced a second authentication round (ANOTHER_AUTH_FOLLOWS), "
                f"but {round2_mismatch.name} has no remote-2")
        if chosen is None:
            how = " for EAP (IKE_AUTH without AUTH)" if auth is None else ""
            raise AuthenticationFailed(f"no configuration matches peer identity '{peer_id}'{how}")
        r2 = chosen.remote2
        if r2 is not None and (chosen.remote.auth in AUTH_METHODS or r2.auth not in (*AUTH_METHODS, "pubkey", "psk")):
            # the loader refuses these; a configuration built in code must not
            # let the peer finish after one round (or fail on the second)
            raise AuthenticationFailed(
                f"{chosen.name}: remote-2 auth = {r2.auth} after remote auth = {chosen.remote.auth} is not supported "
                "(a second round is pubkey, psk or EAP-MD5/GTC after a psk/pubkey round)")
        before = s.config
        s.config = chosen
        keys, auth = ppk.select_r(self, chosen, msg, auth)  # RFC 8784
        if auth is None:
            return self._eap_start_r(chosen, msg)
        octets = A.signed_octets(sa.init_request, sa.nr, peer_id.body(), sa.prf, keys.sk_pi)
        try:
            how = self._verify(chosen, msg, peer_id, auth, octets)
        except A.RevocationPending:
            # held: leave the SA as before this request (nothing else processed
            # it yet: IkeAuth is the first task), so its retransmission starts afresh
            s.config, sa.remote_id = before, before_id
            raise
        ppk.apply_r(self, keys)
        self.peer_certreq = bool(msg.get_all(CertReqPayload))
        self.initial_contact = msg.has_notify(NotifyType.INITIAL_CONTACT)
        s.step("IKE_AUTH authenticated", sa, peer_id=str(peer_id), method=how)
        if another:  # RFC 4739: the remote-2 round comes first; the other tasks wait
            assert r2 is not None
            sa.eap = EapRounds(self, round2=True, auth=r2.auth if r2.auth in ("pubkey", "psk") else "")
            return TaskStatus.NEED_MORE
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        s, sa, cfg = self.session, self.sa, self.session.config
        assert sa.keys is not None
        if self.eap is not None:
            return self._eap_build_r(msg)
        self._unique(cfg)
        self._add_own_idr_auth(msg)
        ppk.add_notify_r(self, msg)
        add_auth_lifetime(s, sa, msg)
        return TaskStatus.SUCCESS

    def _add_own_idr_auth(self, msg: Message) -> None:
        """Responder: our IDr, the certificates the peer may want and our
        AUTH (the non-EAP answer, and the first EAP round's)."""
        s, sa, cfg = self.session, self.sa, self.session.config
        assert sa.keys is not None
        ident = s.local_identity()
        sa.local_id = ident
        msg.add(IdrPayload(ident.id_type, ident.data))
        for c in self._certs_to_send(cfg, self.peer_certreq):
            msg.add(c)
        octets = A.signed_octets(sa.init_response, sa.ni, ident.body(), sa.prf, sa.keys.sk_pr)
        msg.add(self._auth_payload(cfg, octets))

    def _unique(self, cfg: ConnectionConfig) -> None:
        # swanctl unique, as charon's ike_auth build_r: once the peer is
        # authenticated and every task processed the request (its virtual IP
        # leased), before the answer: older IKE SAs of the same identities go
        # (their Child SAs with them), or this one is refused (keep)
        s, sa = self.session, self.sa
        if s.unique_check is not None and s.unique_check(s, self.initial_contact):
            raise AuthenticationFailed(
                f"cancelling IKE_SA setup due to uniqueness policy (unique = keep): peer '{sa.remote_id}'"
                f"{'' if sa.remote_eap_id is None else f' (EAP identity {sa.remote_eap_id!r})'}"
                f"{'' if sa.remote_round2_id is None else f' (round 2 {sa.remote_round2_id!r})'} "
                f"already has an IKE SA of {cfg.name}")

    def after_response_sent(self, now: float) -> None:
        if self.eap is not None and not self.eap.final:
            return  # an EAP round: not established before the final AUTH
        self.session.ike_established(self.sa, now)

    # ------------------------------------------------------------------ EAP, responder (gateway)

    def _eap_server(self, cfg: ConnectionConfig, a: AuthConfig) -> EapServer:
        """Our EAP authenticator for the peer's round ``a`` (``remote`` or
        ``remote-2``): its method, the connection's users, its ``eap_id``."""
        return EapServer(AUTH_METHODS[a.auth], cfg.eap_secrets, self.session.random, allowed_id=a.eap_id)

    def _eap_start_r(self, cfg: ConnectionConfig, msg: Message) -> TaskStatus:
        """IKE_AUTH without AUTH: the peer authenticates with EAP.  We answer
        with IDr, our AUTH and EAP Request/Identity; the other tasks wait."""
        s = self.session
        server = self._eap_server(cfg, cfg.remote)
        eap = self.sa.eap = EapRounds(self, server=server, out=server.start())
        self.peer_certreq = bool(msg.get_all(CertReqPayload))
        self.initial_contact = msg.has_notify(NotifyType.INITIAL_CONTACT)
        s.step("IKE_AUTH EAP started", self.sa, peer_id=str(self.sa.remote_id), method=eap.method_name)
        return TaskStatus.NEED_MORE

    def _eap_process_r(self, msg: Message) -> TaskStatus:
        """A later IKE_AUTH request: the peer's EAP response, or its final
        AUTH (keyed with SK_pi) after our EAP Success."""
        s, sa, eap = self.session, self.sa, self.eap
        if eap is not None and eap.round2 and eap.server is None:
            return self._round2_start_r(msg)
        assert eap is not None and eap.server is not None and sa.keys is not None and sa.remote_id is not None
        server = eap.server
        if server.state is ServerState.SUCCESS:
            auth = msg.get(AuthPayload)
            who = f"{eap.method_name} identity '{eap.identity}'"
            if auth is None:
                raise AuthenticationFailed(f"no AUTH after EAP Success ({who})")
            keys, auth = ppk.select_r(self, s.config, msg, auth)  # RFC 8784: the PPK goes in here
            if not self._eap_auth_ok(auth, keys):
                raise AuthenticationFailed(f"AUTH after EAP does not match (SK_pi; {who})")
            if msg.has_notify(NotifyType.ANOTHER_AUTH_FOLLOWS):
                raise AuthenticationFailed(f"peer announced another authentication round after EAP ({who}; "
                                           "ANOTHER_AUTH_FOLLOWS): not supported")
            ppk.apply_r(self, keys)
            eap.final = True
            # what charon's get_other_eap_id gives: uniqueness, the pool lease,
            # PLUTO_XAUTH_ID and remote-eap-id use it instead of the IDi
            sa.remote_eap_id = server.identity
            s.step("IKE_AUTH authenticated", sa, peer_id=str(sa.remote_id), method=f"{who} (EAP)")
            return TaskStatus.SUCCESS
        payload = msg.get(EapPayload)
        packet: EapPacket | None = None
        if payload is not None:
            try:
                packet = EapPacket.from_parts(payload.code, payload.identifier, payload.data)
            except EapError:
                packet = None
        before = server.malformed
        eap.out = server.process(packet)
        s.stats.malformed += server.malformed - before
        if server.state is ServerState.FAILURE:
            s.auth_failed(sa, "IKE_AUTH", server.reason + (" (second round, remote-2)" if eap.round2 else ""))
            self.failure_reason = f"authentication failed: {server.reason}"
            return TaskStatus.FAILED
        if server.state is ServerState.SUCCESS:
            s.step("EAP succeeded", sa, eap_id=eap.identity, method=eap.method_name)
        return TaskStatus.NEED_MORE

    def _round2_start_r(self, msg: Message) -> TaskStatus:
        """RFC 4739: the peer's second round (``remote-2``): its IDi without
        AUTH.  We answer EAP Request/Identity alone (our IDr and AUTH went
        in the first round); the round then runs as a first EAP round."""
        s, sa, cfg, eap = self.session, self.sa, self.session.config, self.eap
        r2 = cfg.remote2
        assert eap is not None and r2 is not None
        if eap.auth:
            try:
                return self._round2_verify_r(msg)
            except AuthenticationFailed as exc:
                raise AuthenticationFailed(f"{exc} (second round, remote-2 auth = {r2.auth})") from None
        idi = msg.get(IdiPayload)
        if idi is None:
            raise AuthenticationFailed(f"second authentication round (remote-2 auth = {r2.auth}) without IDi")
        ident = Identity(idi.id_type, idi.data)
        if msg.get(AuthPayload) is not None:
            raise AuthenticationFailed(f"second authentication round of '{ident}' with AUTH: "
                                       f"remote-2 requires auth = {r2.auth} (IDi without AUTH)")
        if not A.identity_matches_config(ident, r2.id):
            raise AuthenticationFailed(f"second-round identity '{ident}' does not match remote-2 id '{r2.id}'")
        server = self._eap_server(cfg, r2)
        eap.server, eap.round2_id, eap.out = server, ident, server.start()
        s.step("IKE_AUTH round 2 EAP started", sa, peer_id=str(sa.remote_id), round2_id=str(ident),
               method=eap.method_name)
        return TaskStatus.NEED_MORE

    def _round2_verify_r(self, msg: Message) -> TaskStatus:
        """RFC 4739: the peer's ``remote-2`` round with a certificate or PSK:
        IDi, CERT, AUTH, verified as a first round's (over the IKE_SA_INIT
        request, Nr and the new IDi; keyed with SK_pi).  Then the waiting
        tasks process the first request and we answer without AUTH, as
        charon.  Nothing is changed before the AUTH verified (a certificate
        status being fetched holds the message: it is processed afresh)."""
        s, sa, cfg, eap = self.session, self.sa, self.session.config, self.eap
        r2 = cfg.remote2
        assert eap is not None and r2 is not None and sa.keys is not None
        idi = msg.get(IdiPayload)
        if idi is None:
            raise AuthenticationFailed("second authentication round without IDi")
        ident = Identity(idi.id_type, idi.data)
        auth = msg.get(AuthPayload)
        if auth is None:
            raise AuthenticationFailed(f"second authentication round of '{ident}' without AUTH")
        if not A.identity_matches_config(ident, r2.id):
            raise AuthenticationFailed(f"second-round identity '{ident}' does not match remote-2 id '{r2.id}'")
        octets = A.signed_octets(sa.init_request, sa.nr, ident.body(), sa.prf, sa.keys.sk_pi)
        how = self._verify(cfg, msg, ident, auth, octets, round2=True)
        if msg.has_notify(NotifyType.ANOTHER_AUTH_FOLLOWS):
            raise AuthenticationFailed(f"peer announced another authentication round after its second ('{ident}'; "
                                       "ANOTHER_AUTH_FOLLOWS): not supported")
        eap.round2_id, eap.final = ident, True
        sa.remote_round2_id = str(ident)
        s.step("IKE_AUTH authenticated", sa, peer_id=str(sa.remote_id), round2_id=str(ident),
               method=f"{how} (second round)")
        return TaskStatus.SUCCESS

    def _eap_build_r(self, msg: Message) -> TaskStatus:
        s, sa, cfg, eap = self.session, self.sa, self.session.config, self.eap
        assert eap is not None and sa.keys is not None
        if eap.final:  # the peer's AUTH verified: ours, keyed with SK_pr (no MSK, RFC 7296 §2.16)
            self._unique(cfg)
            sa.eap = None
            if not eap.auth:  # after a certificate/PSK second round we answer without AUTH (charon)
                msg.add(self._eap_auth())
            if not eap.round2:
                ppk.add_notify_r(self, msg)
            add_auth_lifetime(s, sa, msg)
            return TaskStatus.SUCCESS
        if sa.local_id is None:  # the first round: we authenticate ourselves now
            self._add_own_idr_auth(msg)
            ppk.add_notify_r(self, msg)  # RFC 4739: a PPK used in a first psk/pubkey round
        out, eap.out = eap.out, None
        if out is not None:
            msg.add(EapPayload(out.code, out.identifier, out.data))
        if eap.server is not None and eap.server.state is ServerState.FAILURE:
            msg.add(notify(NotifyType.AUTHENTICATION_FAILED))
        return TaskStatus.SUCCESS
