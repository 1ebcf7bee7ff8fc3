"""RFC 4478 AUTH_LIFETIME in IKE_AUTH (model: strongSwan's
``ike_auth_lifetime.c`` and ``ike_sa.c`` ``set_auth_lifetime``).

* Responder with ``reauth_time``: the IKE_AUTH response tells the initiator
  how long its authentication is good for (``reauth_time`` minus jitter, in
  whole seconds); we never start the reauthentication ourselves, but close
  the IKE SA ``over_time`` past that if the initiator has not replaced it
  (``IkeSa.reauth_by``, kept across IKE rekeys; the hard lifetime of charon's
  responder, the earlier of rekey and reauthentication plus ``over_time``).
* Initiator: an AUTH_LIFETIME in the IKE_AUTH response moves ``reauth_at``
  to the received lifetime minus a margin when that is earlier than our own
  ``reauth_time``, and the hard lifetime to the received lifetime (at least
  ``MIN_GRACE`` seconds, as charon gives).  charon's margin is its
  ``over_time``; here it is the smaller of ``over_time`` and a tenth of the
  lifetime, so a peer's lifetime shorter than our ``over_time`` (charon:
  reauthenticate at once, and again on every new IKE SA) still leaves the
  IKE SA most of it.  A zero lifetime or a notify whose data is not 4
  bytes is ignored, logged and counted (``SessionStats.auth_lifetime_ignored``).
* Later, in an INFORMATIONAL request (RFC 4478 §3: the responder may send
  it at any time, e.g. charon's ``ike_auth_lifetime`` task queued on its own):
  the original initiator reschedules exactly as for IKE_AUTH on its current,
  established IKE SA; the peer gets the empty response every INFORMATIONAL
  gets (:class:`~.ike_dpd.Informational`).  We do not reauthenticate as the
  responder, so a responder ignores it (debug log).  charon differs here: it
  applies a received AUTH_LIFETIME whatever its role (``set_auth_lifetime``),
  and as a responder with virtual IPs or EAP answers with its own.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING

from ...constants import NotifyType
from .common import notify

if TYPE_CHECKING:
    from ..message import Message
    from ..session import IkeSa, IkeSessionV2


logger = logging.getLogger("aioipsec.ike")

MIN_GRACE = 10.0
"""The hard lifetime set by a received AUTH_LIFETIME is at least this far
away (charon: "give at least some seconds to reauthenticate")."""

MARGIN_SHARE = 0.1
"""Reauthenticate at the latest this share of the received lifetime before it ends."""


def add_auth_lifetime(s: IkeSessionV2, sa: IkeSa, msg: Message) -> None:
    """Responder, IKE_AUTH response: AUTH_LIFETIME when ``reauth_time`` is
    set; records when the IKE SA goes if nobody reauthenticated it."""
    cfg = s.config
    if cfg.reauth_time <= 0:
        return
    lifetime = max(1, int(cfg.reauth_time - s.jitter(cfg.jitter)))
    sa.reauth_by = s.now + lifetime + cfg.over
    msg.add(notify(NotifyType.AUTH_LIFETIME, struct.pack("!I", lifetime)))
    logger.debug("IKE_SA %s %s: AUTH_LIFETIME %d s sent to %s", cfg.name, sa.spis(), lifetime, s.peer)


def process_auth_lifetime(s: IkeSessionV2, sa: IkeSa, msg: Message, now: float) -> None:
    """Initiator, IKE_AUTH response (after the IKE SA is established): an
    AUTH_LIFETIME schedules the reauthentication before it ends."""
    n = msg.get_notify(NotifyType.AUTH_LIFETIME)
    if n is None:
        return
    peer = s.peer_label(sa.remote_id)
    if len(n.data) != 4:
        s.stats.auth_lifetime_ignored += 1
        logger.warning("IKE_SA %s %s: invalid AUTH_LIFETIME from %s (%d bytes of data, 4 expected), ignored",
                       s.config.name, sa.spis(), peer, len(n.data))
        return
    (lifetime,) = struct.unpack("!I", n.data)
    if lifetime == 0:
        s.stats.auth_lifetime_ignored += 1
        logger.warning("IKE_SA %s %s: AUTH_LIFETIME of 0 s from %s, ignored", s.config.name, sa.spis(), peer)
        return
    over = s.config.over
    margin = min(over, lifetime * MARGIN_SHARE) if over > 0 else lifetime * MARGIN_SHARE
    due = now + lifetime - margin
    if due < sa.reauth_at:
        sa.reauth_at = due
        logger.info("IKE_SA %s %s: received AUTH_LIFETIME of %d s from %s, reauthenticating in %.0f s",
                    s.config.name, sa.spis(), lifetime, peer, lifetime - margin)
    else:
        logger.info("IKE_SA %s %s: received AUTH_LIFETIME of %d s from %s, reauthentication already due in %.0f s",
                    s.config.name, sa.spis(), lifetime, peer, sa.reauth_at - now)
    sa.reauth_by = now + max(float(lifetime), MIN_GRACE)
    sa.expire_at = min(sa.expire_at, sa.reauth_by)


def process_informational_auth_lifetime(s: IkeSessionV2, sa: IkeSa, msg: Message, now: float) -> None:
    """An INFORMATIONAL request carrying AUTH_LIFETIME: the original
    initiator moves its reauthentication as :func:`process_auth_lifetime`
    does for IKE_AUTH; anyone else ignores it."""
    if not msg.has_notify(NotifyType.AUTH_LIFETIME):
        return
    if not s.is_initiator:
        logger.debug("IKE_SA %s %s: AUTH_LIFETIME in INFORMATIONAL from %s ignored: we are not the original "
                     "initiator (only it reauthenticates)", s.config.name, sa.spis(), s.peer_label(sa.remote_id))
        return
    if sa is not s.sa or not sa.established:
        logger.debug("IKE_SA %s %s: AUTH_LIFETIME in INFORMATIONAL from %s ignored: the IKE SA is not the "
                     "established current one", s.config.name, sa.spis(), s.peer_label(sa.remote_id))
        return
    process_auth_lifetime(s, sa, msg, now)
