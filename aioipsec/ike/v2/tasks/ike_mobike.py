"""MOBIKE (RFC 4555; model: strongSwan ``ike_mobike.c``).

Initiator side (a roaming client):

* IKE_AUTH carries MOBIKE_SUPPORTED when the connection has ``mobike`` on;
  the IKE SA uses MOBIKE (``sa.mobike``) only when the response has it too.
  Such an initiator already runs IKE_AUTH on port 4500 (IkeNatd floats when
  the peer supports NAT detection, as charon does), so a later NAT on the
  path needs no port change.
* :meth:`IkeSessionV2.roam` queues an INFORMATIONAL with
  UPDATE_SA_ADDRESSES, NAT_DETECTION_* for the new address and a random
  COOKIE2 (§3.5, §3.7).  Its answer must echo the COOKIE2 (else the IKE SA
  is closed, §3.7); NAT detection is redone from the answer's NAT-D, then
  the session moves its local address and the Child SAs
  (:class:`~aioipsec.events.LocalAddressChanged`).  No answer: the peer is
  dead (:class:`~aioipsec.events.DpdTimeout`), like a liveness check.
* Behind a NAT, liveness checks carry NAT-D (strongSwan's MOBIKE DPD): when
  the peer's NAT_DETECTION_DESTINATION_IP differs from the last one (the
  NAT's mapping of us changed) or none was seen yet on this IKE SA, an
  UPDATE_SA_ADDRESSES follows, because a MOBIKE responder no longer follows
  a mapping change by itself.

Responder side (a gateway): it agrees to MOBIKE, answers the initiator's
requests and follows its moves, but never moves the IKE SA by itself (the
initiator decides the address pair, §3.1).  In IKE_AUTH, an initiator that
sent MOBIKE_SUPPORTED gets it back when the chosen connection has
``mobike`` on (§3.3); the IKE SA then uses MOBIKE:

* The initiator's INFORMATIONAL requests are answered where they came
  from, and the peer address is *not* updated implicitly from them
  (strongSwan: "with MOBIKE, we do no implicit updates"): the initiator
  probes paths with ordinary INFORMATIONAL requests first.
* An UPDATE_SA_ADDRESSES request moves the IKE SA and its Child SAs to the
  source of that (authenticated) request, even when we are behind a NAT
  ourselves: the peer asked for it explicitly (§3.5).  NAT detection is
  redone from its NAT_DETECTION_* notifies, and UDP encapsulation of the
  Child SAs follows the new NAT state (§3.5: encapsulation may be turned on
  or off); the data plane learns both from :class:`PeerAddressChanged`.
* NAT_DETECTION_* notifies in any of its INFORMATIONAL requests are
  answered with our own (§3.5), COOKIE2 is echoed (§3.7).  A COOKIE2
  outside 8..64 octets or a NAT-D that is not a 20-octet hash makes the
  request malformed (INVALID_SYNTAX, nothing moves); such a NAT-D in a
  response of the peer is rejected and counted the same way.

Address lists (§3.4, §3.6; charon's ``build_address_list`` and
``process_payloads``), in both roles:

* IKE_AUTH (with MOBIKE_SUPPORTED, request and response) carries our
  additional addresses: the session's :attr:`IkeSa.my_addrs` (the host's
  addresses the caller told :meth:`IkeSessionV2.set_local_addresses`)
  without the IKE SA's own address, at most :data:`MAX_SENT_ADDRESSES` of
  them (charon's limit), or NO_ADDITIONAL_ADDRESSES when there are none.
  An INFORMATIONAL of the ``addresses`` role carries the same list, sent
  when that set changes and after a move of our address (UPDATE_SA_ADDRESSES
  itself carries none, as charon's initiator sends it).
* The peer's ADDITIONAL_IP4/6_ADDRESS notifies, in IKE_AUTH or in any of its
  INFORMATIONAL requests, replace :attr:`IkeSa.peer_addrs` (its current
  address left out, at most :data:`MAX_PEER_ADDRESSES`, the rest dropped
  with a log line); NO_ADDITIONAL_ADDRESSES alone empties it.  One of the
  wrong length (not 4 / 16 octets) is counted (``stats.malformed``) and
  ignored; the rest of the message is processed.  The list is kept (status
  shows it); receiving one never moves the IKE SA.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from ....errors import InvalidSyntax
from ....selectors import Address
from ...constants import NATT_PORT, ExchangeType, NotifyType
from ...natd import check_natd
from ..message import Message
from .base import Task, TaskStatus
from .common import notify
from .ike_natd import add_natd, apply_natd, natd_hashes

logger = logging.getLogger("aioipsec.ike")

COOKIE2_MIN, COOKIE2_MAX = 8, 64
"""RFC 4555 §4.7: the COOKIE2 data is 8 to 64 octets."""
COOKIE2_LEN = 16
"""Length of the COOKIE2 we send (strongSwan's too)."""

MAX_PEER_ADDRESSES = 16
"""At most this many additional addresses of the peer are kept."""
MAX_SENT_ADDRESSES = 8
"""At most this many of ours are sent (charon's MAX_ADDITIONAL_ADDRS: some
implementations do not take many more notifies)."""

_ADDRESS_LEN = {NotifyType.ADDITIONAL_IP4_ADDRESS: 4, NotifyType.ADDITIONAL_IP6_ADDRESS: 16}


def add_address_list(session, sa, msg: Message, local: str) -> None:  # type: ignore[no-untyped-def]
    """ADDITIONAL_IP4/6_ADDRESS for our addresses other than ``local`` (the
    IKE SA's), or NO_ADDITIONAL_ADDRESSES when there are none (RFC 4555 §3.4)."""
    added = 0
    for a in sa.my_addrs:
        if a == local:
            continue
        ip = ipaddress.ip_address(a)
        kind = NotifyType.ADDITIONAL_IP6_ADDRESS if ip.version == 6 else NotifyType.ADDITIONAL_IP4_ADDRESS
        msg.add(notify(kind, ip.packed))
        added += 1
        if added >= MAX_SENT_ADDRESSES:
            break
    if not added:
        msg.add(notify(NotifyType.NO_ADDITIONAL_ADDRESSES))


def read_address_list(session, sa, msg: Message, peer: Address | None = None) -> bool:  # type: ignore[no-untyped-def]
    """Take the peer's address list from ``msg`` into ``sa.peer_addrs``
    (``peer``: where the peer is now, left out; default its address);
    whether the message had one.  Malformed notifies are counted and skipped;
    with none valid and no NO_ADDITIONAL_ADDRESSES the old list stays."""
    s = session
    current = (peer or s.remote_addr)[0]
    found: list[str] = []
    clear = valid = False
    dropped = 0
    for n in msg.notifies:
        t = n.notify_type
        if t == NotifyType.NO_ADDITIONAL_ADDRESSES:
            clear = True
            continue
        want = _ADDRESS_LEN.get(t)
        if want is None:
            continue
        if len(n.data) != want:
            s.stats.malformed += 1
            logger.warning("peer %s: %s of %d octets (%d expected) ignored", s.peer,
                           "ADDITIONAL_IP6_ADDRESS" if want == 16 else "ADDITIONAL_IP4_ADDRESS", len(n.data), want)
            continue
        valid = True
        a = str(ipaddress.ip_address(n.data))
        if a == current or a in found:
            continue
        if len(found) >= MAX_PEER_ADDRESSES:
            dropped += 1
            continue
        found.append(a)
    if dropped:
        logger.info("peer %s sent more than %d additional addresses; %d ignored", s.peer, MAX_PEER_ADDRESSES, dropped)
    if not valid and not clear:
        return False
    if found != sa.peer_addrs:
        logger.info("peer %s: additional addresses %s", s.peer, ", ".join(found) or "none")
    sa.peer_addrs = found
    return True


class IkeMobike(Task):
    """Responder task for IKE_AUTH (MOBIKE_SUPPORTED) and for every
    INFORMATIONAL request of an IKE SA that uses MOBIKE.

    Initiator task in one of four roles: ``auth`` (MOBIKE_SUPPORTED and our
    address list in IKE_AUTH), ``roam_to`` (UPDATE_SA_ADDRESSES from that
    new local address), ``check`` (a liveness check with NAT-D, behind a
    NAT) or ``addresses`` (our changed address list, either side)."""

    exchange_type = ExchangeType.INFORMATIONAL
    name = "ike_mobike"

    def __init__(self, session, sa, initiator: bool, *, auth: bool = False,  # type: ignore[no-untyped-def]
                 roam_to: Address | None = None, check: bool = False, addresses: bool = False) -> None:
        super().__init__(session, sa, initiator)
        self.announce = False
        self.update = False
        self.cookie2: bytes | None = None
        self.natd: tuple[list[bytes], list[bytes]] | None = None
        self.source = sa.request_addr
        self.dst = sa.request_dst
        """Responder: our address the request was sent to (None: not known)."""
        self.auth = auth
        if auth:
            # shares the IKE_AUTH request with IkeAuth (instance attributes:
            # the class is an INFORMATIONAL task otherwise)
            self.exchange_type = ExchangeType.IKE_AUTH  # type: ignore[misc]
            self.combinable = True  # type: ignore[misc]
        self.roam_to = roam_to
        """Initiator: the local address to move the IKE SA to (UPDATE_SA_ADDRESSES)."""
        self.check = check
        """Initiator: a liveness check carrying NAT-D (we are behind a NAT)."""
        self.addresses = addresses
        """Initiator: an address list update (our local addresses changed)."""
        self.failure_reason = ""

    @property
    def liveness(self) -> bool:
        """An initiator INFORMATIONAL of ours: no answer means a dead peer."""
        return self.initiator and not self.auth

    @property
    def list_only(self) -> bool:
        """An initiator address list update alone (no move, no NAT-D check):
        no NAT-D is sent and the response needs no processing."""
        return self.addresses and self.roam_to is None and not self.check

    # ------------------------------------------------------------------ initiator

    def build_i(self, msg: Message) -> TaskStatus:
        s, sa = self.session, self.sa
        if self.auth:
            if not s.config.mobike:
                return TaskStatus.SKIP
            msg.add(notify(NotifyType.MOBIKE_SUPPORTED))
            add_address_list(s, sa, msg, s.local_addr[0])
            return TaskStatus.SUCCESS
        if not sa.established or not sa.mobike:
            return TaskStatus.SKIP
        spi_i, spi_r = sa.spi_i or bytes(8), sa.spi_r
        local = self.roam_to or s.local_addr
        if self.roam_to is not None:
            msg.add(notify(NotifyType.UPDATE_SA_ADDRESSES))
        if self.addresses:
            add_address_list(s, sa, msg, local[0])
        if self.list_only:
            s.step("MOBIKE address update", sa, addresses=str(len(sa.my_addrs)))
            return TaskStatus.SUCCESS
        add_natd(s, msg, spi_i, spi_r, s.remote_addr, local)
        if self.roam_to is not None:
            self.cookie2 = s.random(COOKIE2_LEN)
            msg.add(notify(NotifyType.COOKIE2, self.cookie2))
            s.step("MOBIKE update", sa, local=f"{local[0]}[{local[1]}]")
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        s, sa = self.session, self.sa
        if self.auth:
            if msg.has_notify(NotifyType.MOBIKE_SUPPORTED):
                sa.mobike = True
                s.step("MOBIKE enabled", sa)
                read_address_list(s, sa, msg)
            elif msg.error_notify() is None:
                logger.info("peer %s does not support MOBIKE: the IKE SA cannot follow an address change", s.peer)
            return TaskStatus.SUCCESS
        try:
            src, dst = natd_hashes(msg)
        except InvalidSyntax:
            # rejected (logged by the session); the IKE SA stays where it is
            s.stats.malformed += 1
            raise
        if self.list_only:
            return TaskStatus.SUCCESS
        if self.roam_to is None:
            # liveness check with NAT-D: did the NAT's mapping of us change?
            if dst and (sa.natd_dst is None or not hmac.compare_digest(dst[0], sa.natd_dst)):
                known = sa.natd_dst is not None
                sa.natd_dst = dst[0]
                logger.info("peer %s: %s; sending a MOBIKE update", s.peer,
                            "our NAT mapping changed" if known else "our NAT mapping is not known yet")
                s.queue_roam(s.local_addr)
            return TaskStatus.SUCCESS
        got = msg.get_notify(NotifyType.COOKIE2)
        if got is None or self.cookie2 is None or got.data != self.cookie2:
            # RFC 4555 §3.7: a response without our COOKIE2 closes the IKE SA
            self.failure_reason = "MOBIKE: COOKIE2 missing or wrong in the UPDATE_SA_ADDRESSES response"
            logger.warning("peer %s: %s; closing the IKE SA %s", s.peer, self.failure_reason, sa.spis())
            return TaskStatus.FAILED
        natd = bool(src or dst)
        if natd:
            res = check_natd(sa.spi_i or bytes(8), sa.spi_r, src, dst, self.roam_to, s.remote_addr)
            apply_natd(sa, res, s.config.encap)
            if dst:
                sa.natd_dst = dst[0]
        moved = self.roam_to[0] != s.local_addr[0]
        s.local_moved(sa, self.roam_to, natd=natd)
        if moved and sa.my_addrs and not any(isinstance(t, IkeMobike) and t.addresses for t in sa.tm.queued):
            # our address list without the new address (charon: an address list update after a move)
            sa.tm.queue(IkeMobike(s, sa, True, addresses=True))
        return TaskStatus.SUCCESS

    # ------------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> TaskStatus:
        s = self.session
        if msg.exchange_type == ExchangeType.IKE_AUTH:
            if msg.has_notify(NotifyType.MOBIKE_SUPPORTED):
                if s.config.mobike:
                    self.announce = True
                    read_address_list(s, self.sa, msg)
                else:
                    logger.info("peer %s supports MOBIKE, but it is disabled in connection %s", s.peer, s.config.name)
            return TaskStatus.SUCCESS
        src, dst = natd_hashes(msg)
        for n in msg.notifies:
            t = n.notify_type
            if t == NotifyType.UPDATE_SA_ADDRESSES:
                self.update = True
            elif t == NotifyType.COOKIE2:
                if not COOKIE2_MIN <= len(n.data) <= COOKIE2_MAX:
                    raise InvalidSyntax(f"COOKIE2 of {len(n.data)} bytes (8..64 expected)")
                self.cookie2 = n.data
        read_address_list(s, self.sa, msg, self.source)
        if src or dst:
            self.natd = (src, dst)
        if self.update:
            self._update()
        return TaskStatus.SUCCESS

    def _local(self) -> Address:
        """Our end of the path the request came on: the address it was sent
        to (when known) on the IKE SA's port."""
        local = self.session.local_addr
        return local if self.dst is None else (self.dst, local[1])

    def _update(self) -> None:
        """UPDATE_SA_ADDRESSES (RFC 4555 §3.5): "the responder updates the IP
        addresses of the IKE SA with the values from the IP header": follow
        the peer to the request's source and, when it was sent to another
        address of ours (a multi-homed gateway the peer reached there), move
        our side to that address too; redo NAT detection for the new path."""
        s, sa = self.session, self.sa
        new = self.source or s.remote_addr
        local = s.local_addr
        if self.dst is not None and self.dst != local[0]:
            # MOBIKE runs on 4500 (§3.3): so did this request if it came from there
            local = (self.dst, NATT_PORT if new[1] == NATT_PORT else local[1])
        if self.natd is not None:
            src, dst = self.natd
            res = check_natd(sa.spi_i or bytes(8), sa.spi_r, src, dst, local, new)
            apply_natd(sa, res, s.config.encap)
        if local[0] != s.local_addr[0]:
            s.local_moved(sa, local, natd=self.natd is not None, responder=True)
        s.mobike_moved(sa, new, natd=self.natd is not None)

    def build_r(self, msg: Message) -> TaskStatus:
        s, sa = self.session, self.sa
        if msg.exchange_type == ExchangeType.IKE_AUTH:
            if self.announce:
                msg.add(notify(NotifyType.MOBIKE_SUPPORTED))
                add_address_list(s, sa, msg, s.local_addr[0])
                sa.mobike = True
                s.step("MOBIKE enabled", sa)
            return TaskStatus.SUCCESS
        if self.natd is not None:
            # our NAT-D for the path the request came on (after an update: where we are now)
            add_natd(s, msg, sa.spi_i or bytes(8), sa.spi_r, self.source or s.remote_addr, self._local())
        if self.cookie2 is not None:
            msg.add(notify(NotifyType.COOKIE2, self.cookie2))
        return TaskStatus.SUCCESS
