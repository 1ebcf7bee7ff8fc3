"""IKE SA deletion (RFC 7296 §1.4.1; model: strongSwan ``ike_delete.c``).

Deleting the IKE SA deletes all its Child SAs.  After an IKE rekey the same
task deletes the *old* IKE SA (``sa_bound``: it stays on that SA)."""

from __future__ import annotations

from ...constants import ExchangeType, ProtocolId
from ..message import Message
from ..payloads import DeletePayload
from .base import Task, TaskStatus


class IkeDelete(Task):
    exchange_type = ExchangeType.INFORMATIONAL
    name = "ike_delete"

    def __init__(self, session, sa, initiator: bool, *, reason: str = "deleted locally", sa_bound: bool = False) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, sa, initiator)
        self.reason = reason
        self.sa_bound = sa_bound
        """Deletes a replaced IKE SA (after a rekey), not the connection."""

    def _finish(self, reason: str) -> None:
        s = self.session
        if self.sa is s.sa and not self.sa_bound:
            s.close(reason, s.now)
        else:
            s.retire_sa(self.sa, reason)

    def build_i(self, msg: Message) -> TaskStatus:
        from ..session import IkeState

        if self.sa.state is IkeState.CLOSED:
            return TaskStatus.SKIP
        self.sa.state = IkeState.DELETING
        msg.add(DeletePayload(ProtocolId.IKE))
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        self._finish(self.reason)
        return TaskStatus.SUCCESS

    def process_r(self, msg: Message) -> TaskStatus:
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        return TaskStatus.SUCCESS

    def after_response_sent(self, now: float) -> None:
        s = self.session
        if self.sa is s.sa:
            self._finish("deleted by peer")
        else:
            self._finish("rekeyed" if self.sa.rekeyed_away else "deleted by peer")
