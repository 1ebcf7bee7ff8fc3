"""Main Mode (RFC 2409 §5, Identity Protection exchange; model: strongSwan
``sa/ikev1/tasks/main_mode.c``)::

    MM1  I -> R  HDR, SA, VID*
    MM2  R -> I  HDR, SA, VID*
    MM3  I -> R  HDR, KE, Ni, [CERTREQ], [NAT-D, NAT-D]
    MM4  R -> I  HDR, KE, Nr, [CERTREQ], [NAT-D, NAT-D]
    MM5  I -> R  HDR*, IDii, HASH_I | [CERT] SIG_I, [N(INITIAL-CONTACT)]
    MM6  R -> I  HDR*, IDir, HASH_R | [CERT] SIG_R

The initiator floats to port 4500 after MM4 when NAT-D shows a NAT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..constants import ExchangeType, Flag, ProtocolId
from ..errors import NoProposalChosen, UnverifiedMessage
from ..message import Message
from ..payloads import IdPayload, KePayload, NoncePayload, Payload, Proposal, SaPayload
from ..phase1 import accept_reply, base_method, build_sa_payload
from .phase1_task import Phase1Task

if TYPE_CHECKING:
    from ..sa import IsakmpSa
    from ..session import IkeSessionV1


class MainModeTask(Phase1Task):
    name: ClassVar[str] = "MM"
    exchange: ClassVar[int] = ExchangeType.IDENTITY_PROTECTION

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, initiator: bool) -> None:
        super().__init__(session, sa, initiator)
        self.step = "MM2" if initiator else "MM1"

    def _msg(self, payloads: list[Payload], encrypted: bool = False) -> Message:
        return Message(
            self.exchange, 0, self.sa.spi_i, self.sa.spi_r, payloads, Flag.ENCRYPTION if encrypted else 0
        )

    # ------------------------------------------------------------------ initiator

    def initiate(self, now: float) -> Message:
        self.suites = self._our_suites()
        sa_payload = build_sa_payload(self.suites)
        self.sai_b = sa_payload.encode_body()
        self.step_sent, self.step = "MM1", "MM2"
        return self._msg([sa_payload, *self._vids()])

    def process(self, msg: Message, now: float) -> Message | None:
        handler = {
            "MM2": self._process_mm2,
            "MM4": self._process_mm4,
            "MM6": self._process_mm6,
            "MM1": self._process_mm1,
            "MM3": self._process_mm3,
            "MM5": self._process_mm5,
        }[self.step]
        return handler(msg, now)

    def _process_mm2(self, msg: Message, now: float) -> Message:
        sa = self.sa
        reply = msg.get(SaPayload)
        assert reply is not None
        sa.suite = accept_reply(self.suites, reply)
        if msg.spi_r == bytes(8):
            raise NoProposalChosen("MM2 without a responder cookie")
        sa.spi_r = msg.spi_r
        self._process_vids(msg)
        self._note_certreq(msg)
        self._start_kex()
        assert self.kex is not None
        self.ni = self._my_nonce()
        self.gxi = self.kex.public_value
        self.step_sent, self.step = "MM3", "MM4"
        return self._msg([KePayload(self.gxi), NoncePayload(self.ni), *self._certreqs(), *self._natd_out()])

    def _process_mm4(self, msg: Message, now: float) -> Message:
        self.gxr = self._peer_ke(msg)
        self.nr = self._nonce_of(msg)
        self._note_certreq(msg)
        self._natd_in(msg)
        self._derive()
        self._float_if_nat()
        idp = self._own_id()
        self.idii_b = idp.encode_body()
        self.step_sent, self.step = "MM5", "MM6"
        return self._msg([idp, *self._auth_payloads(), *self._initial_contact()], encrypted=True)

    def _process_mm6(self, msg: Message, now: float) -> None:
        self._verified_peer_id(msg)
        self._note_notifies(msg)
        self.done = True
        return None

    # ------------------------------------------------------------------ responder

    def _process_mm1(self, msg: Message, now: float) -> Message:
        sa = self.sa
        offer = msg.get(SaPayload)
        assert offer is not None
        self.sai_b = offer.body()
        prop, transform, suite = self.session._select_phase1(sa, offer, aggressive=False, peer_id=None)
        self.method = base_method(suite.auth)
        sa.suite = suite
        self._process_vids(msg)
        answer = SaPayload([Proposal(prop.number, ProtocolId.ISAKMP, prop.spi, [transform])])
        self.step_sent, self.step = "MM2", "MM3"
        return self._msg([answer, *self._vids()])

    def _process_mm3(self, msg: Message, now: float) -> Message:
        self._start_kex()
        assert self.kex is not None
        self.gxi = self._peer_ke(msg)
        self.ni = self._nonce_of(msg)
        self._note_certreq(msg)
        self._natd_in(msg)
        self.nr = self._my_nonce()
        self.gxr = self.kex.public_value
        self._derive()
        self.step_sent, self.step = "MM4", "MM5"
        return self._msg([KePayload(self.gxr), NoncePayload(self.nr), *self._certreqs(), *self._natd_out()])

    def _process_mm5(self, msg: Message, now: float) -> Message:
        self._verified_peer_id(msg)
        self._note_notifies(msg)
        if self.sa.nat_t:
            self.session._float(self.sa)
        idp = self._own_id()
        self.idir_b = idp.encode_body()
        self.step_sent, self.step = "MM6", ""
        self.done = True
        return self._msg([idp, *self._auth_payloads()], encrypted=True)

    def reverify(self, msg: Message) -> None:
        """Responder after MM6: another copy of MM5 (the task manager decrypted
        it with the IV of the first and checked the payload rules) must carry
        the same ID and verify, else it raises."""
        p = msg.get(IdPayload)
        if p is None or p.body() != self.idii_b:
            raise UnverifiedMessage("MM5 with another identity")
        self._verify_auth(msg)
