"""Child SA deletion (RFC 7296 §1.4.1; model: strongSwan ``child_delete.c``).

The initiator lists its inbound SPIs; the responder deletes the matching SAs
and answers with the SPIs of the paired ones.  If both ends delete the same
SA at once, each deletes its outbound SA while processing the request and
its inbound SA while processing the response, and neither response lists
that SA."""

from __future__ import annotations

from ...constants import ExchangeType, ProtocolId
from ..message import Message
from ..payloads import DeletePayload
from .base import Task, TaskStatus

_PROTO = {"esp": ProtocolId.ESP, "ah": ProtocolId.AH}


class ChildDelete(Task):
    exchange_type = ExchangeType.INFORMATIONAL
    name = "child_delete"

    def __init__(self, session, sa, initiator: bool, *, children=(), reason: str = "deleted locally",  # type: ignore[no-untyped-def]
                 raw: tuple[str, list[int]] | None = None) -> None:
        super().__init__(session, sa, initiator)
        self.children = list(children)
        self.reason = reason
        self.raw = raw
        """(protocol, inbound SPIs) of SAs we never installed (failed creation)."""
        self._removals: list[tuple[object, str]] = []
        self._answer: dict[int, list[bytes]] = {}

    # ------------------------------------------------------------------ initiator

    def build_i(self, msg: Message) -> TaskStatus:
        from ..session import ChildState

        by_proto: dict[int, list[bytes]] = {}
        for c in self.children:
            if c.state is ChildState.DELETED:
                if self.reason != "expired":
                    continue  # gone already (e.g. the peer deleted it first)
            else:
                c.state = ChildState.DELETING
                c.delete_reason = self.reason
            by_proto.setdefault(_PROTO[c.protocol], []).append(c.spi_in.to_bytes(4, "big"))
        if self.raw is not None:
            proto, spis = self.raw
            by_proto.setdefault(_PROTO[proto], []).extend(s.to_bytes(4, "big") for s in spis)
        if not by_proto:
            return TaskStatus.SKIP
        for proto, spis in by_proto.items():
            msg.add(DeletePayload(proto, tuple(spis)))
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        for c in self.children:
            self.session.remove_child(c, self.reason)
        return TaskStatus.SUCCESS

    def abort(self, reason: str) -> None:
        from ..session import ChildState

        for c in self.children:
            if c.state is ChildState.DELETING:
                c.state = ChildState.INSTALLED

    # ------------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> TaskStatus:
        from ..session import ChildState

        s = self.session
        for d in msg.get_all(DeletePayload):
            if d.protocol not in (ProtocolId.ESP, ProtocolId.AH):
                continue
            for raw in d.spis:
                if len(raw) != 4:
                    continue
                c = s.child_by_spi_out(int.from_bytes(raw, "big"))
                if c is None or c.state is ChildState.DELETED:
                    continue
                if c.state is ChildState.DELETING:
                    # both ends delete it: no Delete payload for it in our answer
                    self._removals.append((c, c.delete_reason or "deleted"))
                    continue
                reason = "rekeyed" if c.state is ChildState.REKEYED else "deleted by peer"
                self._answer.setdefault(d.protocol, []).append(c.spi_in.to_bytes(4, "big"))
                self._removals.append((c, reason))
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        for proto, spis in self._answer.items():
            msg.add(DeletePayload(proto, tuple(spis)))
        return TaskStatus.SUCCESS

    def after_response_sent(self, now: float) -> None:
        for c, reason in self._removals:
            self.session.remove_child(c, reason)  # type: ignore[arg-type]
