"""Aggressive Mode (RFC 2409 §5; model: strongSwan
``sa/ikev1/tasks/aggressive_mode.c``)::

    AM1  I -> R  HDR, SA, KE, Ni, IDii, VID*, [CERTREQ]
    AM2  R -> I  HDR, SA, KE, Nr, IDir, HASH_R | [CERT] SIG_R, VID*, [NAT-D, NAT-D]
    AM3  I -> R  HDR*, HASH_I | [CERT] SIG_I, [NAT-D, NAT-D], [N(INITIAL-CONTACT)]

Only one DH group can be offered (the KE goes in the first message).  AM3
is sent encrypted like strongSwan does; an unencrypted AM3 is accepted too.
The responder resends AM2 until AM3 arrives; the initiator keeps AM3 and
resends it when AM2 comes again.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, ClassVar

from ....crypto.kex import InvalidKeyExchangeData, KeyExchange
from ....errors import LocalProtocolError
from ...auth import Identity, RevocationPending
from ..constants import ExchangeType, Flag, ProtocolId
from ..errors import Ikev1Error, InvalidKeyInformation, NoProposalChosen
from ..message import Message
from ..payloads import IdPayload, KePayload, NoncePayload, Payload, Proposal, SaPayload
from ..phase1 import (
    Phase1Keys,
    Phase1Suite,
    accept_reply,
    base_method,
    build_sa_payload,
    derive_keys,
    hash_r,
    identity_of,
)
from .phase1_task import Phase1Task

if TYPE_CHECKING:
    from ..sa import IsakmpSa
    from ..session import IkeSessionV1


class AggressiveModeTask(Phase1Task):
    name: ClassVar[str] = "AM"
    exchange: ClassVar[int] = ExchangeType.AGGRESSIVE
    responder_retransmits: ClassVar[bool] = True

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, initiator: bool) -> None:
        super().__init__(session, sa, initiator)
        self.step = "AM2" if initiator else "AM1"
        self.am2_unproven = False
        """Initiator: the AM2 being processed has not verified (yet)."""
        self.am2_claimed: tuple[bytes, Identity | None] | None = None
        """Initiator: responder cookie and identity before the AM2 being
        processed claimed its own (restored if that copy is dropped)."""

    def _msg(self, payloads: list[Payload], encrypted: bool = False) -> Message:
        return Message(self.exchange, 0, self.sa.spi_i, self.sa.spi_r, payloads, Flag.ENCRYPTION if encrypted else 0)

    # ------------------------------------------------------------------ initiator

    def initiate(self, now: float) -> Message:
        suites = self._our_suites()
        group = suites[0].ke
        self.suites = [s for s in suites if s.ke == group]
        if not self.suites:  # pragma: no cover - suites[0] always qualifies
            raise LocalProtocolError("no proposal")
        self.sa.suite = self.suites[0]
        sa_payload = build_sa_payload(self.suites)
        self.sai_b = sa_payload.encode_body()
        self._start_kex()
        assert self.kex is not None
        self.gxi = self.kex.public_value
        self.ni = self._my_nonce()
        idp = self._own_id()
        self.idii_b = idp.encode_body()
        self.step_sent, self.step = "AM1", "AM2"
        return self._msg(
            [sa_payload, KePayload(self.gxi), NoncePayload(self.ni), idp, *self._vids(), *self._certreqs()]
        )

    def process(self, msg: Message, now: float) -> Message | None:
        if self.step == "AM2":
            return self._process_am2(msg, now)
        if self.step == "AM1":
            return self._process_am1(msg, now)
        return self._process_am3(msg, now)

    def _process_am2(self, msg: Message, now: float) -> Message:
        """AM2 travels in clear and nothing in it is authenticated before
        HASH_R/SIG_R verifies: until then the suite, the key exchange, the
        keys and the responder's claims are only tried, so that one
        corrupted copy is dropped (see :meth:`may_be_corrupted`) and the
        responder's retransmission starts afresh."""
        sa = self.sa
        self.am2_unproven = True
        self.am2_claimed = (sa.spi_r, sa.remote_id)
        try:
            suite, keys, kex, gxr, nr, idir_b = self._try_am2(msg)
        except Ikev1Error:
            raise  # dropped once (unverified_dropped undoes the claims) or fatal
        except RevocationPending:
            # held for the certificate status being fetched: nothing of this
            # copy stays (trial keys and key exchange are dropped), the AM2
            # our AM1 retransmission brings back is processed afresh
            self.unverified_dropped()
            raise
        except BaseException:
            self.unverified_dropped()  # dropped as malformed: nothing of it stays
            raise
        # HASH_R/SIG_R verified: the copy is the responder's
        self.am2_unproven = False
        self.am2_claimed = None
        sa.suite, sa.keys, self.kex = suite, keys, kex
        self.gxr, self.nr, self.idir_b = gxr, nr, idir_b
        self.session._peer_known(sa)
        self._check_peer_id()
        self._process_vids(msg)
        self._note_certreq(msg)
        self._note_notifies(msg)
        self._natd_in(msg)
        self._float_if_nat()
        self.step_sent, self.step = "AM3", ""
        self.done = True
        return self._msg([*self._auth_payloads(), *self._natd_out(), *self._initial_contact()], encrypted=True)

    def _try_am2(self, msg: Message) -> tuple[Phase1Suite, Phase1Keys, KeyExchange, bytes, bytes, bytes]:
        """Everything AM2 proposes, checked by its HASH_R/SIG_R; raises if
        it is not acceptable or does not verify."""
        sa = self.sa
        reply = msg.get(SaPayload)
        idp = msg.get(IdPayload)
        assert reply is not None and idp is not None
        suite = accept_reply(self.suites, reply)
        if msg.spi_r == bytes(8):
            raise NoProposalChosen("AM2 without a responder cookie")
        # claimed: a failure of this copy names this identity and is notified
        # under this cookie; both are undone if the copy is dropped
        sa.spi_r = msg.spi_r
        sa.remote_id = identity_of(idp)
        kex, gxr = self._trial_kex(msg)
        nr = self._nonce_of(msg)
        idir_b = idp.body()
        keys = derive_keys(
            suite,
            psk=sa.cfg.psk,
            ni=self.ni,
            nr=nr,
            shared=kex.shared_secret,
            cky_i=sa.spi_i,
            cky_r=sa.spi_r,
            gxi=self.gxi,
            gxr=gxr,
        )
        self._verify_proof(hash_r(keys, self.gxi, gxr, sa.spi_i, sa.spi_r, self.sai_b, idir_b), msg)
        return suite, keys, kex, gxr, nr, idir_b

    def _trial_kex(self, msg: Message) -> tuple[KeyExchange, bytes]:
        """Our key exchange completed with the peer's KE data, on a copy: a
        key exchange takes the peer's value once, and the value of a copy of
        AM2 that does not verify must not be the one kept."""
        ke = msg.get(KePayload)
        assert ke is not None and self.kex is not None
        trial = copy.copy(self.kex)
        try:
            trial.set_peer(ke.data)
        except InvalidKeyExchangeData as exc:
            raise InvalidKeyInformation(str(exc)) from None
        return trial, ke.data

    def may_be_corrupted(self, exc: Ikev1Error, encrypted: bool) -> bool:
        """AM2 is refused for whatever reason before HASH_R/SIG_R verified
        (a transform we did not offer, no responder cookie, a KE or nonce
        that is not acceptable, a certificate that does not fit, the proof
        itself): any of it may be one corrupted byte on the way, and the
        responder resends AM2.  Once the proof verified (an identity that is
        not the configured one) it is the responder's word: fatal at once."""
        if self.initiator and self.step == "AM2":
            return self.am2_unproven
        return super().may_be_corrupted(exc, encrypted)

    def _proven(self) -> None:
        # AM2 held with its proof verified: an identity that is not the
        # configured one is the responder's word, fatal at once
        if self.initiator and self.step == "AM2":
            self.am2_unproven = False

    def unverified_dropped(self) -> None:
        if self.am2_claimed is not None:
            self.sa.spi_r, self.sa.remote_id = self.am2_claimed
            self.am2_claimed = None

    # ------------------------------------------------------------------ responder

    def _process_am1(self, msg: Message, now: float) -> Message:
        sa = self.sa
        offer = msg.get(SaPayload)
        idp = msg.get(IdPayload)
        assert offer is not None and idp is not None
        self.sai_b = offer.body()
        prop, transform, suite = self.session._select_phase1(sa, offer, aggressive=True, peer_id=identity_of(idp))
        self.method = base_method(suite.auth)
        sa.suite = suite
        self._process_vids(msg)
        self._note_certreq(msg)
        self.idii_b = self._peer_id(msg)
        self._start_kex()
        assert self.kex is not None
        self.gxi = self._peer_ke(msg)
        self.ni = self._nonce_of(msg)
        self.nr = self._my_nonce()
        self.gxr = self.kex.public_value
        self._derive()
        own = self._own_id()
        self.idir_b = own.encode_body()
        answer = SaPayload([Proposal(prop.number, ProtocolId.ISAKMP, prop.spi, [transform])])
        self.step_sent, self.step = "AM2", "AM3"
        return self._msg(
            [
                answer,
                KePayload(self.gxr),
                NoncePayload(self.nr),
                own,
                *self._auth_payloads(),
                *self._vids(),
                *self._natd_out(),
                *self._certreqs(),
            ]
        )

    def _process_am3(self, msg: Message, now: float) -> None:
        self._verify_auth(msg)
        self._note_notifies(msg)
        self._natd_in(msg)
        if self.sa.nat_t:
            self.session._float(self.sa)
        self.step = ""
        self.done = True
        return None
