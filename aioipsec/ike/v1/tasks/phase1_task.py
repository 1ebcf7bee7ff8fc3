"""Behaviour shared by the Main Mode and Aggressive Mode tasks: key
exchange and nonces, key derivation, identities, authentication payloads,
vendor IDs and NAT-D (the task half of strongSwan's ``phase1_t``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from ....crypto.kex import InvalidKeyExchangeData, KeyExchange
from ....errors import LocalProtocolError
from ...auth import RevocationPending
from ..constants import MAX_NONCE, MIN_NONCE, NONCE_SIZE, Ike1Auth, NotifyType, ProtocolId
from ..errors import AuthenticationFailed, InvalidKeyInformation, PayloadMalformed, UnverifiedMessage
from ..message import Message
from ..payloads import CertReqPayload, IdPayload, KePayload, NoncePayload, NotifyPayload, Payload
from ..phase1 import (
    Phase1Suite,
    base_method,
    build_auth_payloads,
    certreq_payloads,
    derive_keys,
    hash_i,
    hash_r,
    id_payload,
    identity_of,
    local_identity,
    peer_matches,
    process_vendor_ids,
    proposal_method,
    suites_from_config,
    vendor_ids,
    verify_psk_hash,
    verify_signature,
)
from ..task_manager import Task
from .natd import nat_any, natd_payloads, process_natd

if TYPE_CHECKING:
    from ..sa import IsakmpSa
    from ..session import IkeSessionV1

logger = logging.getLogger("aioipsec.ike")


class Phase1Task(Task):
    """Common state of one Phase 1 exchange."""

    phase1: ClassVar[bool] = True

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, initiator: bool) -> None:
        super().__init__(session, sa, initiator, 0)
        self.method = 0
        self.suites: list[Phase1Suite] = []
        self.kex: KeyExchange | None = None
        self.ni = b""
        self.nr = b""
        self.gxi = b""
        self.gxr = b""
        self.sai_b = b""
        self.idii_b = b""
        self.idir_b = b""
        self.peer_wants_cert = False
        self.auth_held_at: float | None = None
        """When a message of this Phase 1 was first held for the peer
        certificate's revocation status being fetched (bounds the hold)."""

    # ------------------------------------------------------------------ config

    def _our_suites(self) -> list[Phase1Suite]:
        cfg = self.sa.cfg
        wire = proposal_method(cfg)
        self.method = base_method(wire)
        suites = suites_from_config(cfg.proposals, wire, int(cfg.hard_lifetime))
        if not suites:
            raise LocalProtocolError(f"connection {cfg.name}: no IKEv1-capable IKE proposal (AEAD ciphers have no IKEv1 form)")
        return suites

    # ------------------------------------------------------------------ KE and nonces

    def _start_kex(self) -> None:
        assert self.sa.suite is not None
        self.kex = self.session._new_kex(self.sa.suite.ke)

    def _my_nonce(self) -> bytes:
        return self.session.random(NONCE_SIZE)

    @staticmethod
    def _nonce_of(msg: Message) -> bytes:
        n = msg.get(NoncePayload)
        assert n is not None  # guaranteed by the payload rules
        if not MIN_NONCE <= len(n.data) <= MAX_NONCE:
            raise PayloadMalformed(f"nonce of {len(n.data)} bytes (RFC 2409: 8..256)")
        return n.data

    def _peer_ke(self, msg: Message) -> bytes:
        ke = msg.get(KePayload)
        assert ke is not None and self.kex is not None
        try:
            self.kex.set_peer(ke.data)
        except InvalidKeyExchangeData as exc:
            raise InvalidKeyInformation(str(exc)) from None
        return ke.data

    def _derive(self) -> None:
        sa, suite, kex = self.sa, self.sa.suite, self.kex
        assert suite is not None and kex is not None
        sa.keys = derive_keys(
            suite,
            psk=sa.cfg.psk,
            ni=self.ni,
            nr=self.nr,
            shared=kex.shared_secret,
            cky_i=sa.spi_i,
            cky_r=sa.spi_r,
            gxi=self.gxi,
            gxr=self.gxr,
        )

    # ------------------------------------------------------------------ identities and auth

    def _own_id(self) -> IdPayload:
        ident = local_identity(self.sa.cfg, self.session.local_addr)
        self.sa.local_id = ident
        return id_payload(ident)

    def _peer_id(self, msg: Message, *, check: bool = True) -> bytes:
        p = msg.get(IdPayload)
        assert p is not None
        ident = identity_of(p)
        self.sa.remote_id = ident
        self.session._peer_known(self.sa)
        if check:
            self._check_peer_id()
        return p.body()

    def _check_peer_id(self) -> None:
        ident = self.sa.remote_id
        assert ident is not None
        if not peer_matches(self.sa.cfg, ident):
            raise AuthenticationFailed(f"peer identity {ident} does not match the configured {self.sa.cfg.remote.id}")

    def _verified_peer_id(self, msg: Message) -> bytes:
        """ID and HASH/SIG of MM5 or MM6: the proof is checked before the
        identity is judged, so that a corrupted ID payload reads as an
        unverifiable message (dropped once, see ``TaskManagerV1._tolerate``)
        rather than as an identity mismatch (fatal at once).  Returns the ID
        payload body (IDii_b or IDir_b)."""
        p = msg.get(IdPayload)
        assert p is not None
        body = p.body()
        before_b = self.idir_b if self.initiator else self.idii_b
        if self.initiator:
            self.idir_b = body
        else:
            self.idii_b = body
        if self.method == Ike1Auth.PSK:
            self._verify_auth(msg)  # HASH_x covers the ID payload body
            self._peer_id(msg)
            return body
        before = self.sa.remote_id
        self._peer_id(msg, check=False)  # the certificate must match it
        try:
            self._verify_auth(msg)
        except UnverifiedMessage:
            self.sa.remote_id = before
            raise
        except RevocationPending:
            # held: the task as before this copy (the IV chain only moves on
            # for an accepted message), so the peer's retransmission, the
            # same bytes, decrypts and is processed afresh
            self.sa.remote_id = before
            if self.initiator:
                self.idir_b = before_b
            else:
                self.idii_b = before_b
            raise
        self._check_peer_id()
        return body

    def _auth_hash(self, initiator_side: bool) -> bytes:
        keys = self.sa.keys
        assert keys is not None
        if initiator_side:
            return hash_i(keys, self.gxi, self.gxr, self.sa.spi_i, self.sa.spi_r, self.sai_b, self.idii_b)
        return hash_r(keys, self.gxi, self.gxr, self.sa.spi_i, self.sa.spi_r, self.sai_b, self.idir_b)

    def _auth_payloads(self) -> list[Payload]:
        cfg = self.sa.cfg
        send = cfg.send_cert == "always" or (cfg.send_cert == "ifasked" and self.peer_wants_cert)
        return build_auth_payloads(cfg, self.method, self._auth_hash(self.initiator), send)

    def _verify_auth(self, msg: Message) -> None:
        self._verify_proof(self._auth_hash(not self.initiator), msg)

    def _verify_proof(self, expected: bytes, msg: Message) -> None:
        """HASH_x (PSK) or SIG_x over ``expected`` from the peer's identity
        (``sa.remote_id``, which its certificate must match)."""
        if self.method == Ike1Auth.PSK:
            verify_psk_hash(expected, msg.payloads)
            return
        assert self.sa.remote_id is not None
        at = self.session._wall_time()
        try:
            verify_signature(self.sa.cfg, self.sa.remote_id, expected, msg.payloads, at, self.method,
                             hold=self._may_hold())
        except RevocationPending as exc:
            # the proof verified: the identity is judged now (a mismatch fails
            # at once), only then is the message held
            self._proven()
            self._check_peer_id()
            self._hold(exc)
            raise

    def _proven(self) -> None:
        """The peer's HASH_x/SIG_x verified though the message is held."""

    def _may_hold(self) -> bool:
        """May the message be held for a certificate whose revocation status
        is being fetched?  Yes (with a fetcher's cache) until this Phase 1
        has been held for ``hold_limit`` seconds (session time); then the
        status is decided with what is cached, by policy.  Never once the
        exchange is done (a later copy of MM5 is only re-verified)."""
        fetched = self.sa.cfg.remote.revocation_cache
        if fetched is None or self.done:
            return False
        return fetched.may_hold(self.auth_held_at, self.session.now, peer=self.session.peer,
                                sa=f"(cookies {self.sa.cookies})")

    def _hold(self, pending: RevocationPending) -> None:
        """The message is dropped unanswered and unaccepted (the task
        manager counts it in ``stats["auth_pending"]`` and keeps it on
        ``held``): processed afresh by the session's ``retry_held`` as soon
        as the fetcher has the status (or the peer's retransmission is)."""
        if self.auth_held_at is None:
            self.auth_held_at = self.session.now
            logger.info("peer %s: %s, holding %s (cookies %s)",
                        self.session.peer, pending, self.step, self.sa.cookies)

    def _certreqs(self) -> list[Payload]:
        if self.method != Ike1Auth.PSK and self.sa.cfg.send_certreq:
            return certreq_payloads(self.sa.cfg)
        return []

    def _note_certreq(self, msg: Message) -> None:
        if msg.get(CertReqPayload) is not None:
            self.peer_wants_cert = True

    def _initial_contact(self) -> list[Payload]:
        if not self.sa.cfg.initial_contact or self.sa.rekeyed_from is not None or self.session._had_contact:
            return []
        return [
            NotifyPayload(
                notify_type=NotifyType.INITIAL_CONTACT, protocol=ProtocolId.ISAKMP, spi=self.sa.spi_i + self.sa.spi_r
            )
        ]

    def _note_notifies(self, msg: Message) -> None:
        for n in msg.notifies():
            if n.notify_type == NotifyType.INITIAL_CONTACT:
                self.session._initial_contact(self.sa)

    # ------------------------------------------------------------------ vendor IDs and NAT-D

    def _vids(self) -> list[Payload]:
        return vendor_ids(self.sa.cfg, initiator=self.initiator, peer=self.sa.features)

    def _process_vids(self, msg: Message) -> None:
        process_vendor_ids(msg.payloads, self.sa.features)

    def _natd_out(self) -> list[Payload]:
        return natd_payloads(self.sa, self.session.remote_addr, self.session.local_addr, self.session.random)

    def _natd_in(self, msg: Message) -> None:
        if not self.sa.features.natt:
            return
        ip = self.session.local_addr[0]
        local = [self.session.local_addr, (ip, 500), (ip, 4500)]
        remote = msg.src or self.session.remote_addr
        if process_natd(self.sa, msg.payloads, local, remote):
            self.session._nat_detected(self.sa)

    def _float_if_nat(self) -> None:
        if nat_any(self.sa):
            self.session._float(self.sa)

    # ------------------------------------------------------------------ misc

    def failed(self, reason: str, notify: str, now: float) -> None:
        self.session._phase1_failed(self.sa, self, notify, reason, now)
