"""Informational exchanges (RFC 2408 §4.8, RFC 2409 §5.7; model: strongSwan
``informational.c``, ``isakmp_delete.c``, ``quick_delete.c``).

One-shot messages, never retransmitted, each with a fresh random message
ID.  Once the ISAKMP SA has keys they are encrypted and protected::

    HDR*, HASH(1), N/D         HASH(1) = prf(SKEYID_a, M-ID | N/D)

Their IV is ``hash(last Phase 1 CBC block | M-ID)`` and they never move the
IV chain.  Before keys exist (a Phase 1 error) a notify goes in the clear.
An unprotected informational received once the SA is established is
dropped (anyone could forge it); during Phase 1 an unprotected error notify
is taken as the peer's reason for giving up, as strongSwan does.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from ....errors import ParseError
from ....selectors import Address
from ..constants import ExchangeType, Flag, NotifyType, ProtocolId, notify_is_error, notify_name
from ..errors import Ikev1Error
from ..message import Message, check_rules, decode_message
from ..payloads import DeletePayload, HashPayload, IsakmpHeader, NotifyPayload, Payload, encode_chain

if TYPE_CHECKING:
    from ..phase1 import Phase1Keys
    from ..sa import IsakmpSa
    from ..session import IkeSessionV1

logger = logging.getLogger("aioipsec.ike")


def hashed_message(sa: IsakmpSa, exchange: int, mid: int, payloads: list[Payload]) -> Message:
    """``HDR*, HASH(1), payloads`` with HASH(1) = prf(SKEYID_a, M-ID | payloads):
    a protected Informational, and every Transaction message (XAUTH, Mode
    Config: draft-dukes-ike-mode-cfg §3.1 uses the same hash)."""
    assert sa.keys is not None
    _first, chain = encode_chain(payloads)
    h = sa.keys.prf_a(mid.to_bytes(4, "big") + chain)
    return Message(exchange, mid, sa.spi_i, sa.spi_r, [HashPayload(h), *payloads], Flag.ENCRYPTION)


def hash_matches(keys: Phase1Keys, mid: int, msg: Message) -> bool:
    """Whether the HASH(1) that leads ``msg`` (the payload rules put it
    first) is prf(SKEYID_a, M-ID | the payloads after it)."""
    h = msg.payloads[0]
    assert isinstance(h, HashPayload)
    return hmac.compare_digest(h.data, keys.prf_a(mid.to_bytes(4, "big") + msg.after_first()))


def build_informational(sa: IsakmpSa, payloads: list[Payload], mid: int, protect: bool) -> Message:
    """An Informational message; ``protect`` adds HASH(1) and encrypts."""
    if protect and sa.keys is not None:
        return hashed_message(sa, ExchangeType.INFORMATIONAL, mid, payloads)
    return Message(ExchangeType.INFORMATIONAL, mid, sa.spi_i, sa.spi_r, list(payloads), 0)


def isakmp_notify(sa: IsakmpSa, notify_type: int, data: bytes = b"") -> NotifyPayload:
    """A notify about the ISAKMP SA (SPI = CKY-I | CKY-R)."""
    return NotifyPayload(notify_type=notify_type, protocol=ProtocolId.ISAKMP, spi=sa.spi_i + sa.spi_r, data=data)


def delete_isakmp(sa: IsakmpSa) -> DeletePayload:
    return DeletePayload(protocol=ProtocolId.ISAKMP, spis=[sa.spi_i + sa.spi_r], spi_size=16)


def delete_ipsec(protocol: int, spis: list[int]) -> DeletePayload:
    """Delete of IPsec SAs: our inbound SPIs (RFC 2408 §3.15)."""
    return DeletePayload(protocol=protocol, spis=[s.to_bytes(4, "big") for s in spis], spi_size=4)


def process_informational(
    session: IkeSessionV1, sa: IsakmpSa, data: bytes, header: IsakmpHeader, addr: Address, now: float
) -> None:
    """Decrypt, verify and act on one received Informational message."""
    keys = sa.keys
    encrypted = bool(header.flags & Flag.ENCRYPTION)
    try:
        if encrypted:
            if keys is None:
                raise ParseError("encrypted Informational before keys exist")
            # one-shot: the IV is derived afresh and the chain is not moved on
            msg, _last = decode_message(data, keys.encr, keys.iv.get_iv(header.message_id), header)
            keys.iv.forget(header.message_id)
            check_rules("INFO*", msg.payloads)
            if not hash_matches(keys, header.message_id, msg):
                raise ParseError("HASH(1) mismatch")
        else:
            msg, _last = decode_message(data, header=header)
            check_rules("INFO", msg.payloads)
    except (ParseError, Ikev1Error) as exc:
        if encrypted and not sa.established:
            session._undecryptable_info(sa, exc, now)
        else:
            session._dropped(sa, "INFO", exc)
        return
    if not encrypted and sa.established:
        session._dropped(sa, "INFO", ValueError("unprotected Informational on an established SA"))
        return
    msg.src = addr
    if encrypted:
        sa.last_inbound = now
        replayed = header.message_id in sa.info_mids
        if not replayed:
            sa.info_mids.append(header.message_id)
        session._peer_seen(sa, addr, now, replayed=replayed)
    for n in msg.notifies():
        _notify(session, sa, n, encrypted, now)
    for d in msg.deletes():
        _delete(session, sa, d, now)


def _notify(session: IkeSessionV1, sa: IsakmpSa, n: NotifyPayload, protected: bool, now: float) -> None:
    t = n.notify_type
    if t in (NotifyType.R_U_THERE, NotifyType.R_U_THERE_ACK):
        if not protected or len(n.data) != 4:
            return
        seq = int.from_bytes(n.data, "big")
        if t == NotifyType.R_U_THERE:
            session._dpd_request(sa, seq, now)
        else:
            session._dpd_ack(sa, seq, now)
        return
    if t == NotifyType.INITIAL_CONTACT:
        if protected:
            session._initial_contact(sa)
        return
    if notify_is_error(t):
        session._error_notify(sa, n, protected, now)
        return
    logger.info("%s notify from %s ignored (cookies %s)", notify_name(t), session.peer, sa.cookies)


def _delete(session: IkeSessionV1, sa: IsakmpSa, d: DeletePayload, now: float) -> None:
    if d.protocol == ProtocolId.ISAKMP:
        for spi in d.spis:
            session._peer_deleted_isakmp(sa, spi, now)
    elif d.protocol in (ProtocolId.ESP, ProtocolId.AH) and d.spi_size == 4:
        for spi in d.spis:
            session._peer_deleted_child(int.from_bytes(spi, "big"), now)
