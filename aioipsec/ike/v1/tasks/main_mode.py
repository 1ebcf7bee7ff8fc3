"""Main Mode (RFC 2409 §5, Identity Protection exchange; model: strongSwan
``sa/ikev1/tasks/main_mode.c``)::

    MM1  I -> R  HDR, SA, VID*
    MM2  R -> I  HDR, SA, VID*
    MM3  I -> R  HDR, KE, Ni, [CERTREQ], [NAT-D, NAT-D]
    MM4  R -> I  HDR, KE, Nr, [CERTREQ], [NAT-D, NAT-D]
    MM5  I -> R  HDR*, IDii, HASH_I | [CERT] SIG_I, [N(INITIAL-CONTACT)]
    MM6  R -> I  HDR*, IDir, HASH_R | [CERT] SIG_R

The initiator floats to port 4500 after MM4 when NAT-D shows a NAT.

MM1 and MM2 are unauthenticated, and MM2 carries nothing that could be
verified before MM4/MM6 (only the responder cookie and the chosen SA), so
an on-path attacker can answer our MM1 first with a copy of MM2 under its
own responder cookie.  strongSwan and Libreswan bind the cookie of the
first MM2 and stall.  Here, as RFC 7296 §2.4 advises IKEv2 initiators (be
prepared to accept several answers to the first message and go on with one
that works), the initiator keeps every other acceptable MM2 that arrives
while it waits for MM4 (:meth:`MainModeTask.other_mm2`, at most
:data:`MAX_MM2_ALTERNATIVES`) and, when MM3 is due for a retransmission,
sends MM3 under the next responder cookie instead
(:meth:`MainModeTask.switch`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ....crypto.kex import KeyExchange
from ..constants import ExchangeType, Flag, ProtocolId
from ..errors import NoProposalChosen, UnverifiedMessage
from ..message import Message
from ..payloads import IdPayload, KePayload, NoncePayload, Payload, Proposal, SaPayload
from ..phase1 import (
    PeerFeatures,
    Phase1Suite,
    accept_reply,
    base_method,
    build_sa_payload,
)
from .phase1_task import Phase1Task

if TYPE_CHECKING:
    from ....selectors import Address
    from ..sa import IsakmpSa
    from ..session import IkeSessionV1

logger = logging.getLogger("aioipsec.ike")

MAX_MM2_ALTERNATIVES = 4
"""Responder cookies, besides the one whose MM2 came first, whose MM2 the
initiator keeps while it waits for MM4.  A turn of one costs one MM3, in
place of a retransmission (see :meth:`MainModeTask.switch`); an MM2 under a further
cookie is dropped and counted (``stats["mm2_alternatives_dropped"]``), so an
attacker that answers MM1 with more forged copies than this before the real
responder does still stalls Main Mode until the retransmissions run out (as
one that drops our packets can anyway)."""


@dataclass(eq=False, slots=True)
class Mm2Choice:
    """One responder's MM2 (its cookie, vendor IDs, CERTREQs and source
    address), the suite it chose from our offer, and the MM3 built for it
    (sent again as the same bytes when this responder's turn comes round
    again)."""

    msg: Message
    suite: Phase1Suite
    mm3: Message | None = None

    @property
    def spi_r(self) -> bytes:
        return self.msg.spi_r

    @property
    def addr(self) -> Address | None:
        return self.msg.src


class MainModeTask(Phase1Task):
    name: ClassVar[str] = "MM"
    exchange: ClassVar[int] = ExchangeType.IDENTITY_PROTECTION

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, initiator: bool) -> None:
        super().__init__(session, sa, initiator)
        self.step = "MM2" if initiator else "MM1"
        self.mm2s: list[Mm2Choice] = []
        """Initiator: the acceptable MM2s for our MM1 in the order they came
        (one per responder cookie); ``mm2s[mm2_at]`` is the one MM3 answers."""
        self.mm2_at = 0
        self.kexes: dict[int, KeyExchange] = {}
        """Our key exchange per DH group: one responder's MM3 keeps its KE
        (and nonce) when another's turn came in between."""

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
        choice = self._mm2_choice(msg)
        self.mm2s, self.mm2_at = [choice], 0
        return self._adopt(choice)

    def _mm2_choice(self, msg: Message) -> Mm2Choice:
        """The responder cookie and suite of an MM2 answering our MM1; raises
        NoProposalChosen if it is not acceptable."""
        reply = msg.get(SaPayload)
        assert reply is not None
        suite = accept_reply(self.suites, reply)
        if msg.spi_r == bytes(8):
            raise NoProposalChosen("MM2 without a responder cookie")
        return Mm2Choice(msg, suite)

    def _adopt(self, choice: Mm2Choice) -> Message:
        """Go on with the responder of ``choice``: its cookie, its suite, what
        its MM2 announced; MM3 for it (KE and nonce are kept across
        responders, a new KE only for another DH group)."""
        sa = self.sa
        sa.spi_r, sa.suite = choice.spi_r, choice.suite
        sa.features = PeerFeatures()
        self.peer_wants_cert = False
        self._process_vids(choice.msg)
        self._note_certreq(choice.msg)
        group = int(choice.suite.ke.id)
        kex = self.kexes.get(group)
        if kex is None:
            self._start_kex()
            assert self.kex is not None
            self.kexes[group] = self.kex
        else:
            self.kex = kex
        if not self.ni:
            self.ni = self._my_nonce()
        self.gxi = self.kex.public_value
        self.step_sent, self.step = "MM3", "MM4"
        if choice.mm3 is None:
            choice.mm3 = self._msg([KePayload(self.gxi), NoncePayload(self.ni), *self._certreqs(), *self._natd_out()])
        return choice.mm3

    def other_mm2(self, msg: Message) -> None:
        """An MM2 for our MM1 under another responder cookie, while we wait
        for MM4 (MM3 sent under the cookie of the first MM2): kept, if its SA
        is one we offered, as an alternative for :meth:`switch`.  The first
        MM2 may have been an on-path attacker's, sent faster than the real
        responder's; nothing in MM2 tells them apart.  A copy under a cookie
        already kept is ignored; raises NoProposalChosen for an SA we did
        not offer (dropped and counted by the caller)."""
        session = self.session
        if any(c.spi_r == msg.spi_r for c in self.mm2s):
            session.stats["dropped"] += 1
            logger.debug("MM2 from %s under responder cookie %s again: ignored (cookies %s)",
                         session.peer, msg.spi_r.hex(), self.sa.cookies)
            return
        choice = self._mm2_choice(msg)
        if len(self.mm2s) > MAX_MM2_ALTERNATIVES:
            session.stats["mm2_alternatives_dropped"] += 1
            session.stats["dropped"] += 1
            logger.info("MM2 from %s under another responder cookie %s dropped: %d alternatives kept already "
                        "(cookies %s)", session.peer, msg.spi_r.hex(), MAX_MM2_ALTERNATIVES, self.sa.cookies)
            return
        self.mm2s.append(choice)
        session.stats["mm2_alternatives"] += 1
        logger.info("MM2 from %s under another responder cookie %s (%s): kept as alternative %d for when MM3 "
                    "goes unanswered (cookies %s)", session.peer, msg.spi_r.hex(), choice.suite.name,
                    len(self.mm2s) - 1, self.sa.cookies)

    def switch(self, now: float) -> Message | None:
        """MM3 is due for a retransmission and no MM4 came: with MM2s of
        other responder cookies kept (:meth:`other_mm2`), go on with the
        next one (its address, cookie and suite) and return its MM3, to be
        sent instead of the retransmission; None: resend as usual.  The
        responders take turns in the order their MM2 came, the one left
        going last, so a real responder whose MM3 or MM4 was lost gets its
        MM3 again (the same bytes, which it answers with its MM4) when its
        turn comes round.  Each switch takes the place of one
        retransmission (``retransmit_tries``, same back-off)."""
        if not self.initiator or self.step != "MM4" or len(self.mm2s) < 2:
            return None
        left = self.mm2s[self.mm2_at]
        self.mm2_at = (self.mm2_at + 1) % len(self.mm2s)
        choice = self.mm2s[self.mm2_at]
        session = self.session
        session.stats["mm2_switches"] += 1
        logger.info("MM3 to %s unanswered under responder cookie %s: going on with the MM2 under responder "
                    "cookie %s (%d of %d), cookies %s/%s", session.peer, left.spi_r.hex(), choice.spi_r.hex(),
                    self.mm2_at + 1, len(self.mm2s), self.sa.spi_i.hex(), choice.spi_r.hex())
        if choice.addr is not None and choice.addr != session.remote_addr:
            # where that MM2 came from, as for the first one (TaskManagerV1._accepted)
            logger.info("peer %s now at %s:%d", session.remote_addr[0], choice.addr[0], choice.addr[1])
            session.remote_addr = choice.addr
        return self._adopt(choice)

    def _process_mm4(self, msg: Message, now: float) -> Message:
        self.mm2s, self.kexes = [], {}  # the responder is this one: no more switching
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
