"""The task protocol (model: strongSwan ``sa/task.h``).

A task builds or processes its payloads of one message.  The role is bound
in the constructor: an initiator task runs ``build`` (our request) then
``process`` (the response); a responder task ``process`` (the request) then
``build`` (our response).  Several tasks may share one exchange
(IKE_SA_INIT: init + NAT-D; IKE_AUTH: auth + first Child SA).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, ClassVar

from ..message import Message

if TYPE_CHECKING:
    from ..session import IkeSa, IkeSessionV2


class TaskStatus(enum.Enum):
    SUCCESS = "success"
    """Done; the task is removed."""
    FAILED = "failed"
    """The IKE SA cannot continue: the session tears it down."""
    RETRY = "retry"
    """Initiator: send the same exchange again with the same message ID
    (IKE_SA_INIT after COOKIE or INVALID_KE_PAYLOAD)."""
    REQUEUE = "requeue"
    """Initiator: run this task again in a new exchange (e.g. CREATE_CHILD_SA
    after INVALID_KE_PAYLOAD)."""
    SKIP = "skip"
    """build(): nothing to do any more (e.g. the Child SA to rekey is gone);
    the task is dropped and adds nothing to the message."""
    NEED_MORE = "need-more"
    """IkeAuth with EAP (RFC 7296 §2.16): the authentication continues in
    another IKE_AUTH exchange (message ID + 1); the exchange's other tasks
    wait for its final round (see ``ike_auth.EapRounds``)."""


class ResponseDropped(Exception):
    """Raised by an initiator task's ``process``: the response is consumed
    here and no other task sees it.  The exchange stays active (a forged or
    malformed REDIRECT is ignored: our retransmission brings the real
    answer) unless the task closed the session."""


class Task:
    """Base class: subclasses implement ``build_i``/``process_i`` and
    ``process_r``/``build_r``."""

    exchange_type: ClassVar[int]
    combinable: ClassVar[bool] = False
    """May share a request with other queued tasks of the same exchange."""
    name: ClassVar[str] = "task"

    def __init__(self, session: IkeSessionV2, sa: IkeSa, initiator: bool) -> None:
        self.session = session
        self.sa = sa
        self.initiator = initiator

    # ``build``/``process`` dispatch on the role at each call: bound methods
    # stored on the instance would make every task a reference cycle that
    # only the cyclic garbage collector frees
    def build(self, msg: Message) -> TaskStatus:
        return self.build_i(msg) if self.initiator else self.build_r(msg)

    def process(self, msg: Message) -> TaskStatus:
        return self.process_i(msg) if self.initiator else self.process_r(msg)

    # --- initiator
    def build_i(self, msg: Message) -> TaskStatus:
        raise NotImplementedError

    def process_i(self, msg: Message) -> TaskStatus:
        raise NotImplementedError

    # --- responder
    def process_r(self, msg: Message) -> TaskStatus:
        raise NotImplementedError

    def build_r(self, msg: Message) -> TaskStatus:
        raise NotImplementedError

    # --- hooks
    def after_response_sent(self, now: float) -> None:
        """Responder: called once the response left (events, state changes)."""

    def abort(self, reason: str) -> None:
        """Initiator: the exchange will never complete (IKE SA gone, timeout)."""

    def migrate(self, sa: IkeSa) -> None:
        """Move a queued task to a new IKE SA (after an IKE rekey)."""
        self.sa = sa

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'i' if self.initiator else 'r'}>"
