"""Helpers shared by the IKEv2 tasks: SA payload <-> proposals, traffic
selector narrowing, key derivations, notify construction."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from ...._cache import BoundedCache
from ....crypto.kdf import IkeV2Keys, ikev2_child_keymat, ikev2_derive_keys, ikev2_skeyseed
from ....crypto.kex import InvalidKeyExchangeData, KeyExchange
from ....crypto.transforms import PrfAlg, Proposal
from ....errors import InvalidSyntax, NoProposalChosen
from ....selectors import TrafficSelector
from ...constants import NotifyType, TransformAttr
from ...proposals import Selected, WireProposal, WireTransform, select
from ..message import Message
from ..payloads import NotifyPayload, SaPayload, SaProposal, Transform, TransformAttribute

MAX_KE_RETRIES = 3
"""INVALID_KE_PAYLOAD answers followed per exchange (IKE_SA_INIT, IKE or Child rekey, Child creation)."""


def from_sa(p: SaProposal) -> WireProposal:
    """A codec proposal as a :class:`WireProposal` (for selection)."""
    ts = p.transforms
    hit = _WIRE_OF.get(id(ts)) or _WIRE_OF.remember(
        id(ts), (ts, tuple(WireTransform(t.transform_type, t.transform_id, t.key_length) for t in ts)))
    return WireProposal(p.num, p.protocol, p.spi, hit[-1])


_WIRE_OF = BoundedCache(256)
"""id(codec transforms) -> (them, as WireTransforms).  Received proposals
share their transform tuples (the payload parser caches them by their bytes),
so each offer's wire form, and the selection on it, is found by identity."""
_SA_OF = BoundedCache(256)
"""The other way, for :func:`to_sa` (our configured proposals' wire
transforms come from ``proposals.to_wire``'s cache)."""


@functools.lru_cache(maxsize=256)
def _sa_transform(t: WireTransform) -> Transform:
    # cached: both are immutable, and the transforms we send are the few configured
    attrs: tuple[TransformAttribute, ...] = ()
    if t.key_length is not None:
        attrs = (TransformAttribute(TransformAttr.KEY_LENGTH, t.key_length),)
    return Transform(t.type, t.id, attrs)


def to_sa(w: WireProposal) -> SaProposal:
    ws = w.transforms
    hit = _SA_OF.get(id(ws)) or _SA_OF.remember(id(ws), (ws, tuple(map(_sa_transform, ws))))
    return SaProposal(w.number, w.protocol, w.spi, hit[-1])


def sa_payload(proposals: Iterable[WireProposal]) -> SaPayload:
    return SaPayload(tuple(to_sa(p) for p in proposals))


def offered(msg: Message) -> list[WireProposal]:
    sa = msg.get(SaPayload)
    if sa is None:
        raise InvalidSyntax("SA payload missing")
    return [from_sa(p) for p in sa.proposals]


def select_with_ke(offers: Sequence[WireProposal], configured: Sequence[Proposal], ke_group: int | None) -> Selected:
    """Select like strongSwan: if the peer's KE payload uses a group that the
    chosen proposal also allows, prefer that group (saves a round trip)."""
    sel = select(offers, configured)
    if ke_group is None or sel.ke is None or int(sel.ke.id) == ke_group:
        return sel
    promoted = [
        Proposal(
            p.protocol,
            p.encr,
            p.integ,
            p.prf,
            tuple(sorted(p.ke, key=lambda k: int(k.id) != ke_group)),
            p.esn,
            p.text,
        )
        for p in configured
    ]
    try:
        alt = select(offers, promoted)
    except NoProposalChosen:
        return sel
    if alt.ke is not None and int(alt.ke.id) == ke_group and alt.number == sel.number:
        return alt
    return sel


def notify(ntype: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> NotifyPayload:
    if data or protocol or spi:
        return NotifyPayload(int(ntype), data, protocol, spi)
    return _BARE_NOTIFIES.get(ntype) or _BARE_NOTIFIES.remember(ntype, NotifyPayload(int(ntype)))


_BARE_NOTIFIES = BoundedCache(256)
"""One (frozen) status notify without data per type: a handshake sends ~8."""


def notify_group(n: NotifyPayload) -> int:
    return int.from_bytes(n.data[:2], "big") if len(n.data) >= 2 else 0


def set_peer_ke(ke: KeyExchange, data: bytes) -> None:
    try:
        ke.set_peer(data)
    except InvalidKeyExchangeData as exc:
        raise InvalidSyntax(f"invalid key exchange data: {exc}") from None


def derive_ike_keys(
    prf: PrfAlg, sel: Selected, skeyseed: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> IkeV2Keys:
    assert sel.encr is not None
    return ikev2_derive_keys(prf, skeyseed, ni, nr, spi_i, spi_r, sel.encr, sel.integ)


def initial_ike_keys(sel: Selected, shared: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes) -> IkeV2Keys:
    assert sel.prf is not None
    return derive_ike_keys(sel.prf, sel, ikev2_skeyseed(sel.prf, ni, nr, shared), ni, nr, spi_i, spi_r)


def child_keys(
    prf: PrfAlg, sk_d: bytes, sel: Selected, ni: bytes, nr: bytes, shared: bytes | None, *, exchange_initiator: bool
) -> tuple[bytes, bytes, bytes, bytes]:
    """KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr) split as encr_i | integ_i |
    encr_r | integ_r (RFC 7296 §2.17); returned as (encr_in, encr_out,
    integ_in, integ_out) for our side of the exchange."""
    e = sel.encr.key_len if sel.encr is not None else 0
    a = sel.integ.key_len if sel.integ is not None else 0
    km = ikev2_child_keymat(prf, sk_d, ni, nr, 2 * (e + a), shared)
    encr_i, integ_i = km[:e], km[e : e + a]
    encr_r, integ_r = km[e + a : 2 * e + a], km[2 * e + a :]
    if exchange_initiator:
        return encr_r, encr_i, integ_r, integ_i
    return encr_i, encr_r, integ_i, integ_r


def narrow(configured: Sequence[TrafficSelector], proposed: Sequence[TrafficSelector]) -> list[TrafficSelector]:
    """Traffic selector narrowing as strongSwan does it: every intersection of
    a configured selector with a proposed one, in configured order, without
    duplicates (RFC 7296 §2.9)."""
    out: list[TrafficSelector] = []
    for c in configured:
        for p in proposed:
            i = c.intersect(p)
            if i is not None and i not in out:
                out.append(i)
    return out


def lowest_nonce_loses(ours: tuple[bytes, bytes], theirs: tuple[bytes, bytes]) -> bool:
    """RFC 7296 §2.8.1: True when *our* exchange holds the lowest of the four
    nonces, i.e. we lost the collision and delete what we created."""
    return min(ours) < min(theirs)


NOTIFY = NotifyType
