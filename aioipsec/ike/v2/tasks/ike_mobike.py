"""MOBIKE, responder side (RFC 4555; model: strongSwan ``ike_mobike.c``).

In IKE_AUTH, an initiator that sent MOBIKE_SUPPORTED gets it back when the
chosen connection has ``mobike`` on (§3.3); the IKE SA then uses MOBIKE:

* Its INFORMATIONAL requests are answered where they came from, and the peer
  address is *not* updated implicitly from them (strongSwan: "with MOBIKE,
  we do no implicit updates"): the initiator decides the address pair
  (§3.1) and probes paths with ordinary INFORMATIONAL requests first.
* An UPDATE_SA_ADDRESSES request moves the IKE SA and its Child SAs to the
  source of that (authenticated) request, even when we are behind a NAT
  ourselves: the peer asked for it explicitly (§3.5).  NAT detection is
  redone from its NAT_DETECTION_* notifies, and UDP encapsulation of the
  Child SAs follows the new NAT state (§3.5: encapsulation may be turned on
  or off); the data plane learns both from :class:`PeerAddressChanged`.
* NAT_DETECTION_* notifies in any of its INFORMATIONAL requests are
  answered with our own (§3.5), COOKIE2 is echoed (§3.7).
* ADDITIONAL_IP4/6_ADDRESS and NO_ADDITIONAL_ADDRESSES are accepted and
  ignored: as a gateway we never initiate a path change towards the peer.
"""

from __future__ import annotations

import logging

from ....errors import InvalidSyntax
from ...constants import ExchangeType, NotifyType
from ...natd import check_natd
from ..message import Message
from .base import Task, TaskStatus
from .common import notify
from .ike_natd import add_natd, apply_natd

logger = logging.getLogger("aioipsec.ike")

COOKIE2_MIN, COOKIE2_MAX = 8, 64
"""RFC 4555 §4.7: the COOKIE2 data is 8 to 64 octets."""

_ADDRESS_LIST = (
    NotifyType.ADDITIONAL_IP4_ADDRESS,
    NotifyType.ADDITIONAL_IP6_ADDRESS,
    NotifyType.NO_ADDITIONAL_ADDRESSES,
)


class IkeMobike(Task):
    """Responder task for IKE_AUTH (MOBIKE_SUPPORTED) and for every
    INFORMATIONAL request of an IKE SA that uses MOBIKE."""

    exchange_type = ExchangeType.INFORMATIONAL
    name = "ike_mobike"

    def __init__(self, session, sa, initiator: bool) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, sa, initiator)
        self.announce = False
        self.update = False
        self.cookie2: bytes | None = None
        self.natd: tuple[list[bytes], list[bytes]] | None = None
        self.source = sa.request_addr

    # ------------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> TaskStatus:
        s = self.session
        if msg.exchange_type == ExchangeType.IKE_AUTH:
            if msg.has_notify(NotifyType.MOBIKE_SUPPORTED):
                if s.config.mobike:
                    self.announce = True
                else:
                    logger.info("peer %s supports MOBIKE, but it is disabled in connection %s", s.peer, s.config.name)
            return TaskStatus.SUCCESS
        src: list[bytes] = []
        dst: list[bytes] = []
        addresses = 0
        for n in msg.notifies:
            t = n.notify_type
            if t == NotifyType.UPDATE_SA_ADDRESSES:
                self.update = True
            elif t == NotifyType.COOKIE2:
                if not COOKIE2_MIN <= len(n.data) <= COOKIE2_MAX:
                    raise InvalidSyntax(f"COOKIE2 of {len(n.data)} bytes (8..64 expected)")
                self.cookie2 = n.data
            elif t == NotifyType.NAT_DETECTION_SOURCE_IP:
                src.append(n.data)
            elif t == NotifyType.NAT_DETECTION_DESTINATION_IP:
                dst.append(n.data)
            elif t in _ADDRESS_LIST:
                addresses += 1
        if addresses:
            logger.debug("peer %s sent %d MOBIKE address list notifies; ignored (we never move the path)",
                         s.peer, addresses)
        if src or dst:
            self.natd = (src, dst)
        if self.update:
            self._update()
        return TaskStatus.SUCCESS

    def _update(self) -> None:
        """UPDATE_SA_ADDRESSES (RFC 4555 §3.5): follow the peer to the
        request's source and redo NAT detection for the new path."""
        s, sa = self.session, self.sa
        new = self.source or s.remote_addr
        if self.natd is not None:
            src, dst = self.natd
            res = check_natd(sa.spi_i or bytes(8), sa.spi_r, src, dst, s.local_addr, new)
            apply_natd(sa, res, s.config.encap)
        s.mobike_moved(sa, new, natd=self.natd is not None)

    def build_r(self, msg: Message) -> TaskStatus:
        s, sa = self.session, self.sa
        if msg.exchange_type == ExchangeType.IKE_AUTH:
            if self.announce:
                msg.add(notify(NotifyType.MOBIKE_SUPPORTED))
                sa.mobike = True
                s.step("MOBIKE enabled", sa)
            return TaskStatus.SUCCESS
        if self.natd is not None:
            add_natd(s, msg, sa.spi_i or bytes(8), sa.spi_r, self.source or s.remote_addr)
        if self.cookie2 is not None:
            msg.add(notify(NotifyType.COOKIE2, self.cookie2))
        return TaskStatus.SUCCESS
