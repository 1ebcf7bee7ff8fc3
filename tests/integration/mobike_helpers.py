"""The roaming initiator's half of MOBIKE (RFC 4555), as tasks a test queues
on an aioipsec initiator session, so the responder side can be driven by
real, encrypted messages: :class:`AnnounceMobike` adds MOBIKE_SUPPORTED to
IKE_AUTH (strongSwan ``ike_mobike`` build_i), :class:`MobikeInformational`
sends an INFORMATIONAL with UPDATE_SA_ADDRESSES, NAT-D, COOKIE2 or address
list notifies (whichever the test asks for) and keeps the response."""

from __future__ import annotations

from typing import Any

from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.natd import natd_hash
from aioipsec.ike.v2.message import Message
from aioipsec.ike.v2.tasks.base import Task, TaskStatus
from aioipsec.ike.v2.tasks.common import notify
from aioipsec.selectors import Address


class AnnounceMobike(Task):
    exchange_type = ExchangeType.IKE_AUTH
    combinable = True
    name = "test_announce_mobike"

    def __init__(self, session: Any, sa: Any) -> None:
        super().__init__(session, sa, True)
        self.answered: bool | None = None

    def build_i(self, msg: Message) -> TaskStatus:
        msg.add(notify(NotifyType.MOBIKE_SUPPORTED))
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        self.answered = msg.has_notify(NotifyType.MOBIKE_SUPPORTED)
        return TaskStatus.SUCCESS


def announce(session: Any) -> AnnounceMobike:
    """Queue MOBIKE_SUPPORTED for the IKE_AUTH of ``session`` (call right
    after ``initiate``: IKE_SA_INIT is out, IKE_AUTH still queued)."""
    t = AnnounceMobike(session, session.sa)
    session.sa.tm.queued.append(t)
    return t


class MobikeInformational(Task):
    exchange_type = ExchangeType.INFORMATIONAL
    name = "test_mobike_informational"

    def __init__(self, session: Any, *, update: bool = True, natd_source: Address | None = None,
                 cookie2: bytes | None = None, extra: list[tuple[int, bytes]] | None = None,
                 natd_dest: Address | None = None) -> None:
        super().__init__(session, session.sa, True)
        self.update = update
        self.natd_source = natd_source
        """Our address as we see it (hashed into NAT_DETECTION_SOURCE_IP); None: no NAT-D."""
        self.natd_dest = natd_dest
        """The peer's address we sent to (NAT_DETECTION_DESTINATION_IP); None: the session's remote address."""
        self.cookie2 = cookie2
        self.extra = extra or []
        self.response: Message | None = None

    def build_i(self, msg: Message) -> TaskStatus:
        s, sa = self.session, self.sa
        if self.update:
            msg.add(notify(NotifyType.UPDATE_SA_ADDRESSES))
        if self.natd_source is not None:
            msg.add(notify(NotifyType.NAT_DETECTION_SOURCE_IP, natd_hash(sa.spi_i, sa.spi_r, self.natd_source)))
            msg.add(notify(NotifyType.NAT_DETECTION_DESTINATION_IP, natd_hash(sa.spi_i, sa.spi_r, self.natd_dest or s.remote_addr)))
        if self.cookie2 is not None:
            msg.add(notify(NotifyType.COOKIE2, self.cookie2))
        for ntype, data in self.extra:
            msg.add(notify(ntype, data))
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        self.response = msg
        return TaskStatus.SUCCESS


def send_informational(session: Any, now: float, **kw: Any) -> tuple[MobikeInformational, bytes]:
    """Queue and send one :class:`MobikeInformational`; returns it and the datagram."""
    t = MobikeInformational(session, **kw)
    session.sa.tm.queue(t)
    session._kick(now)
    [(data, _)] = session.datagrams_to_send(now)
    return t, data
