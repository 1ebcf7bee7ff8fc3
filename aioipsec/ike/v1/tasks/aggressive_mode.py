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

from typing import TYPE_CHECKING, ClassVar

from ....errors import LocalProtocolError
from ..constants import ExchangeType, Flag, ProtocolId
from ..errors import NoProposalChosen
from ..message import Message
from ..payloads import IdPayload, KePayload, NoncePayload, Payload, Proposal, SaPayload
from ..phase1 import accept_reply, build_sa_payload, identity_of
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
        sa = self.sa
        reply = msg.get(SaPayload)
        assert reply is not None
        sa.suite = accept_reply(self.suites, reply)
        if msg.spi_r == bytes(8):
            raise NoProposalChosen("AM2 without a responder cookie")
        sa.spi_r = msg.spi_r
        self._process_vids(msg)
        self._note_certreq(msg)
        self.gxr = self._peer_ke(msg)
        self.nr = self._nonce_of(msg)
        self.idir_b = self._peer_id(msg)
        self._derive()
        self._verify_auth(msg)
        self._note_notifies(msg)
        self._natd_in(msg)
        self._float_if_nat()
        self.step_sent, self.step = "AM3", ""
        self.done = True
        return self._msg([*self._auth_payloads(), *self._natd_out(), *self._initial_contact()], encrypted=True)

    # ------------------------------------------------------------------ responder

    def _process_am1(self, msg: Message, now: float) -> Message:
        sa = self.sa
        offer = msg.get(SaPayload)
        idp = msg.get(IdPayload)
        assert offer is not None and idp is not None
        self.sai_b = offer.body()
        prop, transform, suite = self.session._select_phase1(sa, offer, aggressive=True, peer_id=identity_of(idp))
        self.method = suite.auth
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
