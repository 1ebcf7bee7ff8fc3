"""IKE_AUTH: identities, certificates, CERTREQ, AUTH (PSK and signatures),
configuration selection by identity (RFC 7296 §1.2, §2.15, §3.5-3.8;
RFC 7427).  Models: strongSwan ``ike_auth.c``, ``ike_cert_pre/post.c``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ....config import ConnectionConfig
from ....errors import AuthenticationFailed
from ....events import NegotiationFailed
from ... import auth as A
from ...auth import Identity
from ...constants import AuthMethod, CertEncoding, ExchangeType, NotifyType, ProtocolId, notify_name
from ..message import Message
from ..payloads import AuthPayload, CertPayload, CertReqPayload, DeletePayload, IdiPayload, IdrPayload
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

    # ------------------------------------------------------------------ shared

    def _certs_to_send(self, cfg: ConnectionConfig, peer_asked: bool) -> list[CertPayload]:
        if cfg.local.auth != "pubkey" or cfg.local.cert is None or cfg.send_cert == "never":
            return []
        if cfg.send_cert == "ifasked" and not peer_asked:
            return []
        certs = [cfg.local.cert, *cfg.local.intermediates]
        return [CertPayload(CertEncoding.X509_SIGNATURE, A.cert_der(c)) for c in certs]

    def _auth_payload(self, cfg: ConnectionConfig, octets: bytes) -> AuthPayload:
        if cfg.local.auth == "psk":
            if cfg.psk is None:
                raise AuthenticationFailed("no pre-shared key configured")
            return AuthPayload(AuthMethod.PSK, A.psk_auth_data(self.sa.prf, cfg.psk, octets))
        if cfg.local.private_key is None:
            raise AuthenticationFailed("no private key configured")
        method, data = A.sign(cfg.local.private_key, octets, peer_hashes=self.sa.peer_hashes, rsa_pss=cfg.local.rsa_pss)
        return AuthPayload(method, data)

    def _verify(self, cfg: ConnectionConfig, msg: Message, peer_id: Identity, auth: AuthPayload, octets: bytes) -> str:
        """Verify the peer's AUTH; returns a description, raises AuthenticationFailed."""
        if cfg.remote.auth == "psk":
            if auth.method != AuthMethod.PSK:
                raise AuthenticationFailed(f"peer used auth method {auth.method}, PSK expected")
            if cfg.psk is None:
                raise AuthenticationFailed("no pre-shared key configured")
            if not A.verify_psk(self.sa.prf, cfg.psk, octets, auth.data):
                raise AuthenticationFailed("pre-shared key AUTH mismatch")
            return "pre-shared key"
        if auth.method == AuthMethod.PSK:
            raise AuthenticationFailed("peer used a pre-shared key, a signature is required")
        certs = [
            A.load_der_certificate(c.data)
            for c in msg.get_all(CertPayload)
            if c.encoding == CertEncoding.X509_SIGNATURE
        ]
        pinned: x509.Certificate | None = cfg.remote.cert
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
            chain = A.verify_chain(leaf, inters, cfg.remote.cacerts, at)
            fetched = cfg.remote.revocation_cache
            if cfg.remote.crls or cfg.remote.revocation != "relaxed" or fetched is not None:  # else nothing can fail
                try:
                    A.check_revocation(chain, cfg.remote.crls, cfg.remote.revocation, at,
                                       peer=self.session.peer_label(peer_id), fetched=fetched,
                                       hold=self._may_hold(fetched))
                except A.RevocationPending as exc:
                    pending = exc
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
        since = self.sa.auth_held_at
        if since is None or self.session.now - since < fetched.hold_limit:
            return True
        logger.info(
            "peer %s: certificate status still not fetched after %.0f s; deciding by policy %s",
            self.session.peer, self.session.now - since, self.sa.spis(),
        )
        return False

    def _hold(self, pending: A.RevocationPending) -> None:
        """The message is dropped unanswered (the session counts it in
        ``stats.auth_pending``); the peer's retransmission is processed
        afresh once the fetcher has the status."""
        sa = self.sa
        if sa.auth_held_at is None:
            sa.auth_held_at = self.session.now
            logger.info("peer %s: %s, holding IKE_AUTH %s", pending.peer, pending, sa.spis())

    # ------------------------------------------------------------------ initiator

    def build_i(self, msg: Message) -> TaskStatus:
        s, sa, cfg = self.session, self.sa, self.session.config
        assert sa.keys is not None
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
        octets = A.signed_octets(sa.init_request, sa.nr, ident.body(), sa.prf, sa.keys.sk_pi)
        try:
            msg.add(self._auth_payload(cfg, octets))
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
        if msg.has_notify(NotifyType.AUTHENTICATION_FAILED):
            s.auth_failed(sa, "IKE_AUTH", "peer answered AUTHENTICATION_FAILED")
            self.failure_reason = "authentication failed"
            return TaskStatus.FAILED
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
        octets = A.signed_octets(sa.init_response, sa.ni, peer_id.body(), sa.prf, sa.keys.sk_pr)
        try:
            how = self._verify(cfg, msg, peer_id, auth, octets)
        except A.RevocationPending:
            sa.remote_id = before  # the same response, resent, is processed afresh
            raise
        s.step("IKE_AUTH authenticated", sa, peer_id=str(peer_id), method=how)
        if s.cp_failure:
            return self._cp_required(s.cp_failure)
        s.ike_established(sa, s.now)
        process_auth_lifetime(s, sa, msg, s.now)
        return TaskStatus.SUCCESS

    def _cp_required(self, why: str) -> TaskStatus:
        """We requested a virtual IP and got none (IkeConfig parsed the reply):
        like strongSwan, the IKE SA fails; the peer is told with a Delete."""
        s, sa = self.session, self.sa
        peer = s.peer_label(sa.remote_id)
        reason = f"{why} (peer {peer})"
        logger.warning("FAILED_CP_REQUIRED IKE_AUTH peer=%s %s: %s", peer, sa.spis(), why)
        s.emit(NegotiationFailed(peer, "IKE_AUTH", "FAILED_CP_REQUIRED", reason))
        mid = sa.tm.active.mid + 1 if sa.tm.active is not None else sa.tm.my_mid  # IKE_AUTH still outstanding
        info = s.new_message(sa, ExchangeType.INFORMATIONAL, response=False, mid=mid)
        info.payloads = [DeletePayload(ProtocolId.IKE)]
        s.send_one_shot(sa, info)
        self.failure_reason = f"FAILED_CP_REQUIRED: {reason}"
        return TaskStatus.FAILED

    # ------------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> TaskStatus:
        s, sa = self.session, self.sa
        assert sa.keys is not None
        idi = msg.get(IdiPayload)
        auth = msg.get(AuthPayload)
        if idi is None:
            raise AuthenticationFailed("IKE_AUTH request without IDi")
        peer_id = Identity(idi.id_type, idi.data)
        before_id = sa.remote_id
        sa.remote_id = peer_id
        if auth is None:
            raise AuthenticationFailed("IKE_AUTH without AUTH payload (EAP is not supported)")
        idr = msg.get(IdrPayload)
        wanted = Identity(idr.id_type, idr.data) if idr is not None else None
        chosen = None
        for cfg in s.candidates:
            if not A.identity_matches_config(peer_id, cfg.remote.id):
                continue
            if wanted is not None:
                mine = _configured_id(cfg.local.id)
                if mine is not None and not mine.matches(wanted):
                    continue
            if (auth.method == AuthMethod.PSK) != (cfg.remote.auth == "psk"):
                continue
            chosen = cfg
            break
        if chosen is None:
            raise AuthenticationFailed(f"no configuration matches peer identity '{peer_id}'")
        before = s.config
        s.config = chosen
        octets = A.signed_octets(sa.init_request, sa.nr, peer_id.body(), sa.prf, sa.keys.sk_pi)
        try:
            how = self._verify(chosen, msg, peer_id, auth, octets)
        except A.RevocationPending:
            # held: leave the SA as before this request (nothing else processed
            # it yet: IkeAuth is the first task), so its retransmission starts afresh
            s.config, sa.remote_id = before, before_id
            raise
        self.peer_certreq = bool(msg.get_all(CertReqPayload))
        self.initial_contact = msg.has_notify(NotifyType.INITIAL_CONTACT)
        s.step("IKE_AUTH authenticated", sa, peer_id=str(peer_id), method=how)
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        s, sa, cfg = self.session, self.sa, self.session.config
        assert sa.keys is not None
        # swanctl unique, as charon's ike_auth build_r: once the peer is
        # authenticated and every task processed the request (its virtual IP
        # leased), before the answer: older IKE SAs of the same identities go
        # (their Child SAs with them), or this one is refused (keep)
        if s.unique_check is not None and s.unique_check(s, self.initial_contact):
            raise AuthenticationFailed(
                f"cancelling IKE_SA setup due to uniqueness policy (unique = keep): peer '{sa.remote_id}' "
                f"already has an IKE SA of {cfg.name}")
        ident = s.local_identity()
        sa.local_id = ident
        msg.add(IdrPayload(ident.id_type, ident.data))
        for c in self._certs_to_send(cfg, self.peer_certreq):
            msg.add(c)
        octets = A.signed_octets(sa.init_response, sa.ni, ident.body(), sa.prf, sa.keys.sk_pr)
        msg.add(self._auth_payload(cfg, octets))
        add_auth_lifetime(s, sa, msg)
        return TaskStatus.SUCCESS

    def after_response_sent(self, now: float) -> None:
        self.session.ike_established(self.sa, now)
