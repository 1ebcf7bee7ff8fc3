"""NAT detection in Phase 1 (RFC 3947 §3; model: strongSwan
``sa/ikev1/tasks/isakmp_natd.c``).

NAT-D payloads travel in MM3/MM4 (Main Mode) and AM2/AM3 (Aggressive
Mode), once both sides announced NAT-T with a vendor ID.  The first NAT-D
hashes the address the message is sent *to*, the following ones the
sender's own address(es).  A receiver whose own address does not match the
first hash is behind a NAT; when no other hash matches the address the
message came from, the peer is.  Either way both float to port 4500 and
UDP-encapsulate ESP (modes 3/4).  ``encap = true`` fakes the source hash
(random bytes) so the peer sees a NAT and both encapsulate (strongSwan's
``encap = yes``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from ....selectors import Address
from ..constants import PayloadType
from ..payloads import NatDDraftPayload, NatDPayload, Payload
from ..phase1 import hash_len, natd_hash
from ..sa import IsakmpSa


def natd_payloads(sa: IsakmpSa, dest: Address, src: Address, random: Callable[[int], bytes]) -> list[Payload]:
    """[NAT-D(dest), NAT-D(src)] for a message from ``src`` to ``dest``."""
    if not sa.features.natt or sa.suite is None:
        return []
    h = sa.suite.hash_name
    cls = NatDDraftPayload if sa.features.natt_draft else NatDPayload
    dst_hash = natd_hash(h, sa.spi_i, sa.spi_r, dest)
    src_hash = random(hash_len(h)) if sa.cfg.encap else natd_hash(h, sa.spi_i, sa.spi_r, src)
    return [cls(dst_hash), cls(src_hash)]


def process_natd(
    sa: IsakmpSa, payloads: Iterable[Payload], local: Iterable[Address], remote: Address
) -> bool:
    """Evaluate the peer's NAT-D payloads of a message that arrived on one of
    the ``local`` addresses (port 500 or 4500: a sans-I/O session does not
    know which socket received it) from ``remote``; sets
    ``sa.nat_local``/``sa.nat_remote``.  Returns True if NAT-D payloads were
    present."""
    if sa.suite is None:
        return False
    hashes = [p.data for p in payloads if p.type in (PayloadType.NAT_D, PayloadType.NAT_D_DRAFT)]
    if len(hashes) < 2:
        return False
    h = sa.suite.hash_name
    mine = [natd_hash(h, sa.spi_i, sa.spi_r, a) for a in local]
    theirs = natd_hash(h, sa.spi_i, sa.spi_r, remote)
    sa.nat_local = not any(hmac.compare_digest(hashes[0], m) for m in mine)
    sa.nat_remote = not any(hmac.compare_digest(x, theirs) for x in hashes[1:])
    return True


def nat_any(sa: IsakmpSa) -> bool:
    """Use UDP encapsulation: a NAT was seen, or forced by configuration."""
    return sa.features.natt and (sa.nat_local or sa.nat_remote or sa.cfg.encap)
