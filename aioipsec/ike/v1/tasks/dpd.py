"""Dead Peer Detection (RFC 3706; model: strongSwan ``isakmp_dpd.c`` and the
DPD handling of ``task_manager_v1.c``).

Both sides announce DPD with a vendor ID.  When nothing was received from
the peer for ``dpd_delay`` seconds, an R-U-THERE notify (protected
Informational, SPI = CKY-I | CKY-R, data = 32-bit sequence number) goes out,
and again every ``dpd_delay`` while it stays unanswered.  The peer answers
each with R-U-THERE-ACK carrying the same number.  If ``dpd_timeout``
seconds pass after the first unanswered R-U-THERE without anything from the
peer, it is declared dead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..constants import NotifyType
from ..payloads import NotifyPayload
from .informational import isakmp_notify

if TYPE_CHECKING:
    from ..sa import IsakmpSa


def r_u_there(sa: IsakmpSa, seq: int) -> NotifyPayload:
    return isakmp_notify(sa, NotifyType.R_U_THERE, (seq & 0xFFFFFFFF).to_bytes(4, "big"))


def r_u_there_ack(sa: IsakmpSa, seq: int) -> NotifyPayload:
    return isakmp_notify(sa, NotifyType.R_U_THERE_ACK, (seq & 0xFFFFFFFF).to_bytes(4, "big"))


def enabled(sa: IsakmpSa) -> bool:
    return sa.established and not sa.superseded and sa.cfg.dpd_delay > 0 and sa.features.dpd


def next_time(sa: IsakmpSa) -> float | None:
    """When the DPD logic of ``sa`` wants to run next."""
    if not enabled(sa):
        return None
    times = []
    if sa.dpd_next_at is not None:
        times.append(sa.dpd_next_at)
    else:
        times.append(sa.last_inbound + sa.cfg.dpd_delay)
    if sa.dpd_pending_since is not None:
        times.append(sa.dpd_pending_since + sa.cfg.dpd_timeout)
    return min(times)


def is_dead(sa: IsakmpSa, now: float) -> bool:
    return sa.dpd_pending_since is not None and now >= sa.dpd_pending_since + sa.cfg.dpd_timeout


def due(sa: IsakmpSa, now: float) -> bool:
    """Time to send an R-U-THERE."""
    at = sa.dpd_next_at if sa.dpd_next_at is not None else sa.last_inbound + sa.cfg.dpd_delay
    return now >= at


def sent(sa: IsakmpSa, now: float) -> None:
    if sa.dpd_pending_since is None:
        sa.dpd_pending_since = now
    sa.dpd_next_at = now + sa.cfg.dpd_delay if sa.cfg.dpd_delay > 0 else None


def alive(sa: IsakmpSa, now: float) -> None:
    """Anything authentic from the peer proves it alive."""
    sa.last_inbound = now
    sa.dpd_pending_since = None
    sa.dpd_next_at = None
