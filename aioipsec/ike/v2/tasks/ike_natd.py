"""NAT detection in IKE_SA_INIT (RFC 7296 §2.23; model: strongSwan
``ike_natd.c``).  ``encap = true`` fakes our source hash so that both sides
believe we are behind a NAT and encapsulate ESP in UDP.  An initiator with
``mobike`` on moves to port 4500 whenever the peer supports NAT detection."""

from __future__ import annotations

from ....errors import InvalidSyntax
from ....selectors import Address
from ...constants import ExchangeType, NotifyType
from ...natd import NatdResult, check_natd, fake_natd, natd_hash
from ..message import Message
from ..payloads import SaPayload
from .base import Task, TaskStatus
from .common import notify

NATD_LEN = 20
"""A NAT_DETECTION_*_IP notify carries a SHA-1 hash (RFC 7296 §3.10.1)."""

# read for every notify of IKE_SA_INIT, as module constants: in CPython 3.11
# ``Enum.MEMBER`` goes through the hook of EnumType.__getattr__ (~60 ns).
_NATD_SRC, _NATD_DST = NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP


def natd_hashes(msg: Message) -> tuple[list[bytes], list[bytes]]:
    """The hashes of ``msg``'s NAT_DETECTION_SOURCE_IP and
    NAT_DETECTION_DESTINATION_IP notifies (IKE_SA_INIT, MOBIKE).  A hash of
    another length than :data:`NATD_LEN` makes the message malformed
    (:class:`InvalidSyntax`), as charon's notify payload verification does:
    compared like a hash it could only ever read as a NAT."""
    src: list[bytes] = []
    dst: list[bytes] = []
    for n in msg.notifies:
        t = n.notify_type
        if t == _NATD_SRC:
            src.append(n.data)
        elif t == _NATD_DST:
            dst.append(n.data)
        else:
            continue
        if len(n.data) != NATD_LEN:
            raise InvalidSyntax(f"{n.notify_type.name} of {len(n.data)} bytes ({NATD_LEN} expected)")
    return src, dst


def add_natd(session, msg: Message, spi_i: bytes, spi_r: bytes, remote: Address,  # type: ignore[no-untyped-def]
             local: Address | None = None) -> None:
    """N(NAT_DETECTION_SOURCE_IP) for our address (``local``, default the
    session's; faked with ``encap``) and N(NAT_DETECTION_DESTINATION_IP) for
    ``remote`` (IKE_SA_INIT; MOBIKE)."""
    src = fake_natd(session.random) if session.config.encap else natd_hash(spi_i, spi_r, local or session.local_addr)
    msg.add(notify(_NATD_SRC, src))
    msg.add(notify(_NATD_DST, natd_hash(spi_i, spi_r, remote)))


def apply_natd(sa, res: NatdResult, encap: bool) -> None:  # type: ignore[no-untyped-def]
    """The IKE SA's NAT state from a NAT detection result; ``encap`` counts
    as us being behind a NAT when the peer supports NAT detection."""
    sa.natd_supported = res.supported
    sa.nat_local = res.local_behind_nat or (res.supported and encap)
    sa.nat_remote = res.remote_behind_nat


class IkeNatd(Task):
    exchange_type = ExchangeType.IKE_SA_INIT
    combinable = True
    name = "ike_natd"

    def _add(self, msg: Message, spi_r: bytes) -> None:
        add_natd(self.session, msg, msg.spi_i, spi_r, self.session.remote_addr)

    def _check(self, msg: Message, spi_r: bytes) -> None:
        s, sa = self.session, self.sa
        src, dst = natd_hashes(msg)
        res = check_natd(msg.spi_i, spi_r, src, dst, s.local_addr, s.remote_addr)
        apply_natd(sa, res, s.config.encap)
        sa.nat_forced = s.config.encap
        if res.supported and (sa.nat_local or sa.nat_remote):
            s.step(
                "NAT detected",
                sa,
                local=str(sa.nat_local).lower(),
                remote=str(sa.nat_remote).lower(),
                forced=str(s.config.encap).lower(),
            )

    def build_i(self, msg: Message) -> TaskStatus:
        self._add(msg, bytes(8))
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        if msg.get(SaPayload) is None:
            return TaskStatus.SUCCESS  # COOKIE / error response: nothing to check
        try:
            self._check(msg, msg.spi_r)
        except InvalidSyntax:
            self.session.stats.malformed += 1  # a NAT-D of the wrong size: the negotiation fails
            raise
        sa = self.sa
        # a MOBIKE initiator floats to 4500 even without a NAT, so a NAT that
        # shows up later needs no port change (RFC 4555 §3.3; charon does so
        # whenever the peer supports NAT detection)
        if sa.nat_local or sa.nat_remote or (self.session.config.mobike and sa.natd_supported):
            self.session.switch_to_natt()
        return TaskStatus.SUCCESS

    def process_r(self, msg: Message) -> TaskStatus:
        self._check(msg, bytes(8))
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        if self.sa.natd_supported:
            self._add(msg, self.sa.spi_r)
        return TaskStatus.SUCCESS

    def after_response_sent(self, now: float) -> None:
        if self.sa.nat_local or self.sa.nat_remote:
            self.session.switch_to_natt()
