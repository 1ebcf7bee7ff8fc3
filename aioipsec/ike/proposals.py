"""Proposal offering and selection (RFC 7296 §2.7, §3.3), shared by IKEv2 and IKEv1.

Configured proposals are :class:`~aioipsec.crypto.transforms.Proposal`
objects (lists of acceptable algorithms per transform type).  On the wire a
proposal is a numbered list of transforms; :class:`WireProposal` is that
form, independent of the payload codec.

Selection follows strongSwan's defaults: configured proposals are tried in
order (``prefer_configured_proposals = yes``), against each offered
proposal in order; inside a transform type the first configured algorithm
the peer offered wins.  Unknown transforms in an offer are ignored.  The
responder answers with the offered proposal's number and one transform of
each type (RFC 7296 §3.3.1).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .._cache import BoundedCache
from .._frozen import fast_init
from ..crypto.transforms import (
    Alg,
    EncrAlg,
    EsnAlg,
    IntegAlg,
    IntegId,
    KeAlg,
    KeId,
    PrfAlg,
    Proposal,
    TransformType,
    by_id,
)
from ..errors import NoProposalChosen


class ProtocolId(enum.IntEnum):
    IKE = 1
    AH = 2
    ESP = 3


PROTOCOL_BY_NAME = {"ike": ProtocolId.IKE, "ah": ProtocolId.AH, "esp": ProtocolId.ESP}


class WireTransform(NamedTuple):
    """One transform substructure: type, IANA ID, Key Length attribute (bits).

    A named tuple: several are built, compared and hashed per exchange, which
    tuples do in C (a frozen dataclass runs Python ``__init__``/``__eq__``)."""

    type: int
    id: int
    key_length: int | None = None


class WireProposal(NamedTuple):
    """One proposal substructure as on the wire (a named tuple, like
    :class:`WireTransform`: several are built per exchange)."""

    number: int
    protocol: int
    spi: bytes = b""
    transforms: tuple[WireTransform, ...] = ()

    def of_type(self, ttype: TransformType) -> list[WireTransform]:
        return [t for t in self.transforms if t.type == ttype]


_TRANSFORM_TYPES = tuple(TransformType)
# the transform types _match reads for every offer, as module constants: in
# CPython 3.11 ``Enum.MEMBER`` goes through the hook of EnumType.__getattr__
# (~60 ns against a few ns for a global).  Same objects.
_ENCR, _PRF, _INTEG, _KE, _ESN = (
    TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.KE, TransformType.ESN)


@functools.lru_cache(maxsize=512)
def _wire(ttype: TransformType, alg: Alg) -> WireTransform:
    # cached: WireTransform is immutable and the registry's algorithms are few
    key_length = None
    if isinstance(alg, EncrAlg) and alg.has_key_length_attr:
        key_length = alg.key_bits
    return WireTransform(int(ttype), int(alg.id), key_length)


def to_wire(
    proposals: Sequence[Proposal],
    *,
    spi: bytes = b"",
    strip_ke: bool = False,
    ke_first: KeAlg | None = None,
) -> list[WireProposal]:
    """Configured proposals as numbered wire proposals (numbers 1, 2, ...).

    ``strip_ke`` drops key exchange transforms (Child SA proposals in
    IKE_AUTH, RFC 7296 §1.2); ``ke_first`` moves that group to the front of
    each proposal that contains it (the group our KE payload uses, e.g. after
    INVALID_KE_PAYLOAD)."""
    out = []
    for number, prop in enumerate(proposals, start=1):
        key = (id(prop), strip_ke, id(ke_first))
        hit = _TRANSFORMS.get(key) or _TRANSFORMS.remember(key, (prop, ke_first, _transforms(prop, strip_ke, ke_first)))
        out.append(WireProposal(number, PROTOCOL_BY_NAME[prop.protocol], spi, hit[-1]))
    return out


_TRANSFORMS = BoundedCache(512)
"""to_wire's transforms per configured proposal and ``ke_first`` (by
identity, both kept in the entry): configurations send the same few
proposals in every handshake, and building the transforms costs ~4 us
(bench/ike.py: two calls per handshake)."""


def _transforms(prop: Proposal, strip_ke: bool, ke_first: KeAlg | None) -> tuple[WireTransform, ...]:
    kes: Iterable[KeAlg] = () if strip_ke else prop.ke
    if ke_first is not None and ke_first in kes:
        kes = [ke_first] + [k for k in kes if k != ke_first]
    transforms: list[WireTransform] = []
    transforms += [_wire(TransformType.ENCR, a) for a in prop.encr]
    transforms += [_wire(TransformType.PRF, a) for a in prop.prf]
    transforms += [_wire(TransformType.INTEG, a) for a in prop.integ]
    transforms += [_wire(TransformType.KE, a) for a in kes]
    transforms += [_wire(TransformType.ESN, a) for a in prop.esn]
    return tuple(transforms)


@fast_init
@dataclass(frozen=True, slots=True)
class Selected:
    """A negotiated proposal: one algorithm per transform type."""

    number: int
    protocol: int
    spi: bytes = b""
    encr: EncrAlg | None = None
    integ: IntegAlg | None = None
    prf: PrfAlg | None = None
    ke: KeAlg | None = None
    esn: EsnAlg | None = None
    extra_ke: tuple[KeAlg, ...] = field(default=())

    def to_wire(self, *, spi: bytes | None = None, number: int | None = None) -> WireProposal:
        """The single-transform-per-type answer (responder) for this proposal."""
        algs = (self.encr, self.prf, self.integ, self.ke, self.esn)
        key = tuple(map(id, algs))
        hit = _ANSWERS.get(key) or _ANSWERS.remember(key, (algs, self._transforms()))
        return WireProposal(
            self.number if number is None else number, self.protocol, self.spi if spi is None else spi, hit[-1])

    def _transforms(self) -> tuple[WireTransform, ...]:
        transforms: list[WireTransform] = []
        if self.encr is not None:
            transforms.append(_wire(TransformType.ENCR, self.encr))
        if self.prf is not None:
            transforms.append(_wire(TransformType.PRF, self.prf))
        if self.integ is not None:
            transforms.append(_wire(TransformType.INTEG, self.integ))
        if self.ke is not None:
            transforms.append(_wire(TransformType.KE, self.ke))
        if self.esn is not None:
            transforms.append(_wire(TransformType.ESN, self.esn))
        return tuple(transforms)

    @property
    def esn_enabled(self) -> bool:
        return self.esn is not None and self.esn.name == "esn"

    def __str__(self) -> str:
        """strongSwan proposal syntax: ``aes128gcm16-prfsha256-x25519``."""
        names = [a.name for a in (self.encr, self.integ, self.prf, self.ke) if a is not None]
        if self.esn is not None and self.esn.name == "esn":
            names.append("esn")
        return "-".join(names)


_ANSWERS = BoundedCache(512)
""":meth:`Selected.to_wire`'s transforms per (encr, prf, integ, ke, esn), by
identity, the algorithms kept in the entry: one tuple per answer, which the
SA payload encoder then finds encoded (``tasks.common.to_sa``,
``payloads.SaProposal``)."""


def describe_offers(offers: Sequence[WireProposal]) -> str:
    """Offered proposals in strongSwan syntax for log lines and failure reasons:
    ``aes256-sha256-prfsha256-modp2048, chacha20poly1305`` (unknown transforms as
    ``TYPE:id``, ESN only when offered)."""
    order = (TransformType.ENCR, TransformType.INTEG, TransformType.PRF, TransformType.KE)
    out = []
    for offer in offers:
        names = []
        for ttype in order:
            for t in offer.of_type(ttype):
                alg = by_id(ttype, t.id, t.key_length)
                names.append(alg.name if alg is not None else f"{ttype.name}:{t.id}")
        if any(t.id == 1 for t in offer.of_type(TransformType.ESN)):
            names.append("esn")
        out.append("-".join(names) or "(empty)")
    return ", ".join(out) or "nothing"


def _pick(
    configured: Sequence[Alg], offered: Sequence[WireTransform], ttype: TransformType
) -> Alg | None:
    for alg in configured:
        want = _wire(ttype, alg)
        for t in offered:
            if t.id == want.id and (t.key_length or None) == (want.key_length or None):
                return alg
    return None


def _match(prop: Proposal, offer: WireProposal, *, strip_ke: bool) -> Selected | None:
    ts = offer.transforms
    key = (id(prop), id(ts), strip_ke)
    algs = (_MATCHED.get(key) or _MATCHED.remember(key, (prop, ts, _match_algs(prop, ts, strip_ke))))[-1]
    if algs is None:
        return None
    return Selected(offer.number, offer.protocol, offer.spi, *algs)


_MATCHED = BoundedCache(512)
""":func:`_match`'s outcome per configured proposal and offered transforms,
by identity, both kept in the entry: received proposals share their
transform tuples (``tasks.common.from_sa``), and a gateway sees the same few
offers in every handshake.  The outcome depends on nothing else."""


def _match_algs(
    prop: Proposal, transforms: tuple[WireTransform, ...], strip_ke: bool
) -> tuple[Alg | None, ...] | None:
    """The algorithms (encr, integ, prf, ke, esn) ``prop`` takes from an
    offer of ``transforms``, or ``None`` when it takes none."""
    encr = integ = prf = ke = esn = None
    # the offer's transforms by type, in order: one pass, not one scan per type
    by_type: dict[int, list[WireTransform]] = {}
    for t in transforms:
        by_type.setdefault(t.type, []).append(t)
    offered = by_type.get
    if prop.encr:
        encr = _pick(prop.encr, offered(_ENCR, ()), _ENCR)
        if encr is None:
            return None
    elif _ENCR in by_type:
        return None
    offered_integ = offered(_INTEG, ())
    if prop.integ:
        integ = _pick(prop.integ, offered_integ, _INTEG)
        if integ is None:
            return None
    elif offered_integ and not any(t.id == IntegId.NONE for t in offered_integ):
        return None
    if prop.protocol == "ike":
        prf = _pick(prop.prf, offered(_PRF, ()), _PRF)
        if prf is None:
            return None
    offered_ke = offered(_KE, ())
    if not strip_ke:
        if prop.ke:
            ke = _pick(prop.ke, offered_ke, _KE)
            if ke is None:
                return None
        elif offered_ke and not any(t.id == KeId.NONE for t in offered_ke):
            return None
    if prop.protocol != "ike":
        offered_esn = offered(_ESN, ())
        if offered_esn:
            esn = _pick(prop.esn, offered_esn, _ESN)
            if esn is None:
                return None
        else:
            # No ESN transform offered: only "no ESN" can be assumed.
            esn = next((e for e in prop.esn if e.name == "noesn"), None)
            if esn is None:
                return None
    return (encr, integ, prf, ke, esn)


def select(
    offered: Sequence[WireProposal],
    configured: Sequence[Proposal],
    *,
    strip_ke: bool = False,
) -> Selected:
    """Responder: pick the first configured proposal any offer satisfies.

    Raises :class:`NoProposalChosen` when nothing matches.  ``strip_ke``
    ignores key exchange transforms on both sides (Child SA in IKE_AUTH)."""
    for prop in configured:
        proto = PROTOCOL_BY_NAME[prop.protocol]
        for offer in offered:
            if offer.protocol != proto:
                continue
            sel = _match(prop, offer, strip_ke=strip_ke)
            if sel is not None:
                return sel
    raise NoProposalChosen("no acceptable proposal")


def accept_response(
    sent: Sequence[WireProposal],
    received: Sequence[WireProposal],
    configured: Sequence[Proposal],
    *,
    strip_ke: bool = False,
) -> Selected:
    """Initiator: check the responder's choice against what we offered.

    The answer must be one proposal carrying the number of one of ours, with
    exactly one transform of each type we offered, each one we offered.
    Raises :class:`NoProposalChosen` if not."""
    if len(received) != 1:
        raise NoProposalChosen(f"responder returned {len(received)} proposals")
    answer = received[0]
    ours = next((p for p in sent if p.number == answer.number and p.protocol == answer.protocol), None)
    if ours is None:
        raise NoProposalChosen(f"responder chose proposal #{answer.number} that we did not offer")
    for t in answer.transforms:
        if t not in ours.transforms and not (t.type == TransformType.INTEG and t.id == IntegId.NONE):
            raise NoProposalChosen(f"responder chose transform {t} that we did not offer")
    answer_counts: dict[int, int] = {}
    for t in answer.transforms:
        answer_counts[t.type] = answer_counts.get(t.type, 0) + 1
    our_types = {t.type for t in ours.transforms}
    for ttype in _TRANSFORM_TYPES:
        n = answer_counts.get(ttype, 0)
        if n > 1:
            raise NoProposalChosen(f"responder returned several {ttype.name} transforms")
        if not n and ttype in our_types:
            if ttype == TransformType.KE and strip_ke:
                continue
            if ttype == TransformType.ESN:
                continue  # treated as "no ESN" below
            raise NoProposalChosen(f"responder returned no {ttype.name} transform")
    prop = configured[answer.number - 1] if 0 < answer.number <= len(configured) else None
    if prop is None:
        raise NoProposalChosen("proposal number out of range")
    sel = _match(prop, answer, strip_ke=strip_ke)
    if sel is None:
        raise NoProposalChosen("responder's choice does not match our proposal")
    return sel


def ke_groups(configured: Sequence[Proposal]) -> list[KeAlg]:
    """All key exchange methods of the configured proposals, in preference order."""
    out: list[KeAlg] = []
    for prop in configured:
        for k in prop.ke:
            if k not in out:
                out.append(k)
    return out


def first_ke(configured: Sequence[Proposal]) -> KeAlg | None:
    groups = ke_groups(configured)
    return groups[0] if groups else None


def ke_group_acceptable(configured: Sequence[Proposal], group: int) -> KeAlg | None:
    """The configured KE method with IANA ID ``group`` (INVALID_KE_PAYLOAD retry), or None."""
    return next((k for k in ke_groups(configured) if int(k.id) == group), None)
