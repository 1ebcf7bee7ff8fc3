"""Liveness checks and other INFORMATIONAL exchanges (RFC 7296 §1.4, §2.4;
model: strongSwan ``ike_dpd.c``).

:class:`IkeDpd` sends an empty INFORMATIONAL request; its answer proves the
peer alive.  If the retransmissions run out, the session reports
:class:`~aioipsec.events.DpdTimeout` and deletes the IKE SA.
:class:`Informational` answers the peer's INFORMATIONAL requests that carry
no Delete payload (liveness checks, AUTHENTICATION_FAILED after IKE_AUTH,
RFC 4478 AUTH_LIFETIME, status notifies) with an empty response."""

from __future__ import annotations

from ...constants import ExchangeType, NotifyType
from ..message import Message
from .base import Task, TaskStatus
from .ike_auth_lifetime import process_informational_auth_lifetime


class IkeDpd(Task):
    exchange_type = ExchangeType.INFORMATIONAL
    name = "ike_dpd"

    def build_i(self, msg: Message) -> TaskStatus:
        if not self.sa.established:
            return TaskStatus.SKIP
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        return TaskStatus.SUCCESS


class Informational(Task):
    exchange_type = ExchangeType.INFORMATIONAL
    name = "informational"

    def __init__(self, session, sa, initiator: bool) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, sa, initiator)
        self.auth_failed = False

    def process_r(self, msg: Message) -> TaskStatus:
        if msg.has_notify(NotifyType.AUTHENTICATION_FAILED):
            self.auth_failed = True
        process_informational_auth_lifetime(self.session, self.sa, msg, self.session.now)
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        return TaskStatus.SUCCESS

    def after_response_sent(self, now: float) -> None:
        if self.auth_failed:
            s = self.session
            s.auth_failed(self.sa, "IKE_AUTH", "peer reported AUTHENTICATION_FAILED")
            s.close("authentication failed", now)
