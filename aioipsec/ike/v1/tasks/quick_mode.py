"""Quick Mode (RFC 2409 §5.5; model: strongSwan ``sa/ikev1/tasks/quick_mode.c``)::

    QM1  I -> R  HDR*, HASH(1), SA, Ni, [KE], [IDci, IDcr], [NAT-OA, NAT-OA]
    QM2  R -> I  HDR*, HASH(2), SA, Nr, [KE], [IDci, IDcr], [N(RESPONDER-LIFETIME)]
    QM3  I -> R  HDR*, HASH(3)

    HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ])
    HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [ | KE ] [ | IDci | IDcr ])
    HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)
    KEYMAT  = prf+(SKEYID_d, [ g(qm)^xy | ] protocol | SPI | Ni_b | Nr_b)

("message after HASH" means the encoded payloads, generic headers included.)
A KE payload (PFS) is sent when the ESP proposals name a group.  The
initiator installs its SAs once QM2 verified (before sending QM3), the
responder when QM3 arrives.  A responder whose configured lifetime is
shorter than the offered one answers with a RESPONDER-LIFETIME notify
(RFC 2407 §4.6.3.1) and both sides use the shorter lifetime.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ....buffer import Buffer
from ....config import ChildConfig
from ....crypto.kdf import ikev1_keymat
from ....crypto.kex import InvalidKeyExchangeData, KeyExchange
from ....crypto.transforms import (
    INTEG,
    EncrAlg,
    EncrId,
    IntegAlg,
    KeAlg,
    TransformType,
    by_id,
)
from ....errors import IntegrityError, ParseError
from ....selectors import TrafficSelector
from ...auth import Identity
from ..constants import (
    MAX_NONCE,
    MIN_NONCE,
    NONCE_SIZE,
    AhTransformId,
    EncapMode,
    EspTransformId,
    ExchangeType,
    Flag,
    IdType,
    Ike1AuthAlg,
    LifeType,
    NotifyType,
    Phase2Attr,
    ProtocolId,
    notify_is_error,
    notify_name,
)
from ..errors import (
    InvalidIdInformation,
    InvalidKeyInformation,
    NoProposalChosen,
    PayloadMalformed,
)
from ..message import Message
from ..payloads import (
    Attribute,
    HashPayload,
    IdPayload,
    KePayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    Transform,
    encode_chain,
)
from ..task_manager import Task

if TYPE_CHECKING:
    from ..sa import ChildSa, IsakmpSa
    from ..session import IkeSessionV1

DEFAULT_LIFETIME = 28800
"""RFC 2407 §4.5: a Phase 2 SA without lifetime attributes lives 8 hours."""
_WILDCARD4 = TrafficSelector.any(4)
"""0.0.0.0/0, any protocol and port: what a Cisco Unity client proposes for the gateway."""

# --------------------------------------------------------------------------- algorithm maps

_ESP_ID = {
    EncrId.DES: EspTransformId.DES,
    EncrId.TRIPLE_DES: EspTransformId.TRIPLE_DES,
    EncrId.NULL: EspTransformId.NULL,
    EncrId.AES_CBC: EspTransformId.AES_CBC,
    EncrId.AES_CTR: EspTransformId.AES_CTR,
    EncrId.AES_CCM_8: EspTransformId.AES_CCM_8,
    EncrId.AES_CCM_12: EspTransformId.AES_CCM_12,
    EncrId.AES_CCM_16: EspTransformId.AES_CCM_16,
    EncrId.AES_GCM_8: EspTransformId.AES_GCM_8,
    EncrId.AES_GCM_12: EspTransformId.AES_GCM_12,
    EncrId.AES_GCM_16: EspTransformId.AES_GCM_16,
    EncrId.NULL_AUTH_AES_GMAC: EspTransformId.NULL_AUTH_AES_GMAC,
}
_ENCR_FROM_ESP = {int(v): k for k, v in _ESP_ID.items()}
_AUTH_ALG = {
    "md5": Ike1AuthAlg.HMAC_MD5,
    "sha1": Ike1AuthAlg.HMAC_SHA,
    "sha256": Ike1AuthAlg.HMAC_SHA2_256,
    "sha384": Ike1AuthAlg.HMAC_SHA2_384,
    "sha512": Ike1AuthAlg.HMAC_SHA2_512,
    "aesxcbc": Ike1AuthAlg.AES_XCBC_MAC,
}
_AH_ID = {
    "md5": AhTransformId.MD5,
    "sha1": AhTransformId.SHA,
    "sha256": AhTransformId.SHA2_256,
    "sha384": AhTransformId.SHA2_384,
    "sha512": AhTransformId.SHA2_512,
    "aesxcbc": AhTransformId.AES_XCBC_MAC,
}


_INTEG_FROM_AUTH: dict[int, IntegAlg] = {int(v): INTEG[k] for k, v in _AUTH_ALG.items()}


def encap_mode(mode: str, udp: bool, draft: bool) -> int:
    if not udp:
        return EncapMode.TUNNEL if mode == "tunnel" else EncapMode.TRANSPORT
    if draft:
        return EncapMode.UDP_TUNNEL_DRAFT if mode == "tunnel" else EncapMode.UDP_TRANSPORT_DRAFT
    return EncapMode.UDP_TUNNEL if mode == "tunnel" else EncapMode.UDP_TRANSPORT


def decode_mode(value: int | None) -> tuple[str, bool] | None:
    """(mode, udp) of an Encapsulation Mode attribute (absent: tunnel)."""
    return {
        None: ("tunnel", False),
        EncapMode.TUNNEL: ("tunnel", False),
        EncapMode.TRANSPORT: ("transport", False),
        EncapMode.UDP_TUNNEL: ("tunnel", True),
        EncapMode.UDP_TRANSPORT: ("transport", True),
        EncapMode.UDP_TUNNEL_DRAFT: ("tunnel", True),
        EncapMode.UDP_TRANSPORT_DRAFT: ("transport", True),
    }.get(value)


@dataclass(frozen=True, slots=True)
class QmSuite:
    """One Phase 2 transform: cipher (None for AH), integrity, PFS group."""

    protocol: int
    encr: EncrAlg | None
    integ: IntegAlg | None
    ke: KeAlg | None

    @property
    def name(self) -> str:
        parts = [a.name for a in (self.encr, self.integ, self.ke) if a is not None]
        return "-".join(parts)

    def keymat_len(self) -> int:
        return (self.encr.key_len if self.encr else 0) + (self.integ.key_len if self.integ else 0)

    def to_transform(self, number: int, mode: int, lifetime: int, life_kb: int) -> Transform:
        attrs: list[Attribute] = []
        if self.protocol == ProtocolId.ESP:
            assert self.encr is not None
            tid = int(_ESP_ID[self.encr.id])
            if self.encr.has_key_length_attr:
                attrs.append(Attribute.make(Phase2Attr.KEY_LENGTH, self.encr.key_bits))
        else:
            assert self.integ is not None
            tid = int(_AH_ID[self.integ.name])
        if self.integ is not None:
            attrs.append(Attribute.make(Phase2Attr.AUTH_ALGORITHM, _AUTH_ALG[self.integ.name]))
        if self.ke is not None:
            attrs.append(Attribute.make(Phase2Attr.GROUP_DESCRIPTION, int(self.ke.id)))
        attrs.append(Attribute.make(Phase2Attr.ENCAPSULATION_MODE, mode))
        if lifetime:
            attrs.append(Attribute.make(Phase2Attr.SA_LIFE_TYPE, LifeType.SECONDS))
            attrs.append(Attribute.make(Phase2Attr.SA_LIFE_DURATION, lifetime))
        if life_kb:
            attrs.append(Attribute.make(Phase2Attr.SA_LIFE_TYPE, LifeType.KILOBYTES))
            attrs.append(Attribute.make(Phase2Attr.SA_LIFE_DURATION, life_kb))
        return Transform(number, tid, attrs)


def suite_from_transform(protocol: int, t: Transform) -> QmSuite | None:
    """What an offered ESP/AH transform asks for, or None if we cannot do it."""
    if t.get(Phase2Attr.EXTENDED_SEQUENCE_NUMBER):
        return None
    auth = t.get(Phase2Attr.AUTH_ALGORITHM)
    integ = _INTEG_FROM_AUTH.get(auth) if auth is not None else None
    if auth is not None and integ is None:
        return None
    ke: KeAlg | None = None
    g = t.get(Phase2Attr.GROUP_DESCRIPTION)
    if g is not None:
        ke = by_id(TransformType.KE, g)  # type: ignore[assignment]
        if ke is None or ke.kind == "mlkem":
            return None
    if protocol == ProtocolId.ESP:
        eid = _ENCR_FROM_ESP.get(t.transform_id)
        if eid is None:
            return None
        key_bits = t.get(Phase2Attr.KEY_LENGTH)
        if eid == EncrId.AES_CBC and key_bits is None:
            key_bits = 128  # early RFC 3602 implementations omit it
        encr = by_id(TransformType.ENCR, eid, key_bits)
        if encr is None:
            return None
        assert isinstance(encr, EncrAlg)
        if encr.aead and integ is not None:
            return None
        if not encr.aead and integ is None and encr.id != EncrId.NULL:
            return None
        return QmSuite(protocol, encr, integ, ke)
    if protocol == ProtocolId.AH:
        if integ is None or _AH_ID.get(integ.name) != t.transform_id:
            return None
        return QmSuite(protocol, None, integ, ke)
    return None


def configured_suites(cfg: ChildConfig, preferred_group: KeAlg | None) -> tuple[int, list[QmSuite], KeAlg | None]:
    """(protocol, suites in preference order, PFS group) from a child config.
    With PFS, only proposals naming the chosen group remain (the group of the
    ISAKMP SA if one names it, else the first configured one)."""
    if cfg.ah_proposals:
        protocol, proposals = ProtocolId.AH, cfg.ah_proposals
    else:
        protocol, proposals = ProtocolId.ESP, cfg.esp_proposals
    groups = [k for p in proposals for k in p.ke if k.kind != "mlkem"]
    group: KeAlg | None = None
    if groups:
        group = preferred_group if preferred_group in groups else groups[0]
    out: list[QmSuite] = []
    for p in proposals:
        if group is not None and group not in p.ke:
            continue
        encrs: list[EncrAlg | None] = list(p.encr) if protocol == ProtocolId.ESP else [None]
        for e in encrs:
            if e is not None and e.id not in _ESP_ID:
                continue
            integs: list[IntegAlg | None] = [None] if (e is not None and e.aead) else list(p.integ)
            for i in integs:
                if i is not None and i.name not in _AUTH_ALG:
                    continue
                s = QmSuite(protocol, e, i, group)
                if s not in out:
                    out.append(s)
    return protocol, out, group


# --------------------------------------------------------------------------- IDs <-> selectors


def ts_to_id(ts: TrafficSelector) -> IdPayload:
    """A traffic selector as an IPsec DOI ID payload: a host address, a
    subnet, or a range; protocol, and the port when it is a single one."""
    n = 4 if ts.version == 4 else 16
    start = ts.start.to_bytes(n, "big")
    size = ts.end - ts.start + 1
    if ts.start == ts.end:
        id_type, data = (IdType.IPV4_ADDR if n == 4 else IdType.IPV6_ADDR), start
    elif size & (size - 1) == 0 and ts.start % size == 0:
        prefix = n * 8 - (size.bit_length() - 1)
        mask = ((1 << (n * 8)) - 1) ^ ((1 << (n * 8 - prefix)) - 1)
        id_type = IdType.IPV4_ADDR_SUBNET if n == 4 else IdType.IPV6_ADDR_SUBNET
        data = start + mask.to_bytes(n, "big")
    else:
        id_type = IdType.IPV4_ADDR_RANGE if n == 4 else IdType.IPV6_ADDR_RANGE
        data = start + ts.end.to_bytes(n, "big")
    port = ts.start_port if ts.start_port == ts.end_port else 0
    return IdPayload(id_type=id_type, protocol=ts.proto, port=port, data=data)


def id_to_ts(p: IdPayload) -> TrafficSelector:
    """The traffic selector of a Quick Mode ID payload (InvalidIdInformation
    for types that are not addresses, subnets or ranges)."""
    t, d = p.id_type, p.data
    ports = (p.port, p.port) if p.port else (0, 65535)
    if t in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
        n = 4 if t == IdType.IPV4_ADDR else 16
        if len(d) != n:
            raise InvalidIdInformation(f"ID address of {len(d)} bytes")
        a = int.from_bytes(d, "big")
        return TrafficSelector(a, a, 4 if n == 4 else 6, p.protocol, *ports)
    if t in (IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR_SUBNET):
        n = 4 if t == IdType.IPV4_ADDR_SUBNET else 16
        if len(d) != 2 * n:
            raise InvalidIdInformation(f"ID subnet of {len(d)} bytes")
        net, mask = int.from_bytes(d[:n], "big"), int.from_bytes(d[n:], "big")
        full = (1 << (8 * n)) - 1
        start = net & mask
        return TrafficSelector(start, start | (full ^ mask), 4 if n == 4 else 6, p.protocol, *ports)
    if t in (IdType.IPV4_ADDR_RANGE, IdType.IPV6_ADDR_RANGE):
        n = 4 if t == IdType.IPV4_ADDR_RANGE else 16
        if len(d) != 2 * n:
            raise InvalidIdInformation(f"ID range of {len(d)} bytes")
        a, b = int.from_bytes(d[:n], "big"), int.from_bytes(d[n:], "big")
        if a > b:
            raise InvalidIdInformation("ID range ends before it starts")
        return TrafficSelector(a, b, 4 if n == 4 else 6, p.protocol, *ports)
    raise InvalidIdInformation(f"ID type {t} cannot be a traffic selector")


def host_ts(ip: str) -> TrafficSelector:
    a = ipaddress.ip_address(ip)
    return TrafficSelector(int(a), int(a), a.version)


def _life_attrs(seconds: int, kb: int) -> bytes:
    buf = Buffer()
    if seconds:
        Attribute.make(Phase2Attr.SA_LIFE_TYPE, LifeType.SECONDS).encode(buf)
        Attribute.make(Phase2Attr.SA_LIFE_DURATION, seconds).encode(buf)
    if kb:
        Attribute.make(Phase2Attr.SA_LIFE_TYPE, LifeType.KILOBYTES).encode(buf)
        Attribute.make(Phase2Attr.SA_LIFE_DURATION, kb).encode(buf)
    return buf.data


def _parse_life_attrs(data: bytes) -> tuple[int | None, int | None]:
    buf = Buffer(data)
    attrs = []
    while not buf.eof():
        attrs.append(Attribute.decode(buf))
    t = Transform(0, 0, attrs)
    return (
        t.life(Phase2Attr.SA_LIFE_TYPE, Phase2Attr.SA_LIFE_DURATION, LifeType.SECONDS),
        t.life(Phase2Attr.SA_LIFE_TYPE, Phase2Attr.SA_LIFE_DURATION, LifeType.KILOBYTES),
    )


# --------------------------------------------------------------------------- the task


class QuickModeTask(Task):
    name: ClassVar[str] = "QM"
    exchange: ClassVar[int] = ExchangeType.QUICK_MODE
    responder_retransmits: ClassVar[bool] = True

    def __init__(
        self,
        session: IkeSessionV1,
        sa: IsakmpSa,
        initiator: bool,
        mid: int,
        child: ChildConfig | None = None,
        rekey: ChildSa | None = None,
    ) -> None:
        super().__init__(session, sa, initiator, mid)
        self.child = child
        self.rekey = rekey
        self.step = "QM2" if initiator else "QM1"
        self.protocol = ProtocolId.ESP
        self.offers: list[QmSuite] = []
        self.suite: QmSuite | None = None
        self.group: KeAlg | None = None
        self.kex: KeyExchange | None = None
        self.ni = b""
        self.nr = b""
        self.spi_i = 0
        self.spi_r = 0
        self.mode = "tunnel"
        self.udp = False
        self.lifetime = 0
        self.life_kb = 0
        self.tsi: TrafficSelector | None = None
        self.tsr: TrafficSelector | None = None
        self.ids: list[IdPayload] = []
        self.replaced: ChildSa | None = None
        """Initiator of a rekey: the SA to delete once QM3 is sent."""

    @property
    def mid_bytes(self) -> bytes:
        return self.mid.to_bytes(4, "big")

    def _keys(self):  # type: ignore[no-untyped-def]
        keys = self.sa.keys
        assert keys is not None
        return keys

    def _message(self, payloads: list[Payload]) -> Message:
        return Message(self.exchange, self.mid, self.sa.spi_i, self.sa.spi_r, payloads, Flag.ENCRYPTION)

    def _check_hash(self, msg: Message, data: bytes, which: str) -> None:
        h = msg.payloads[0]
        assert isinstance(h, HashPayload)
        expected = self._keys().prf_a(data)
        if not hmac.compare_digest(h.data, expected):
            raise IntegrityError(f"{which} mismatch")

    def _nonce(self, msg: Message) -> bytes:
        n = msg.get(NoncePayload)
        assert n is not None
        if not MIN_NONCE <= len(n.data) <= MAX_NONCE:
            raise PayloadMalformed(f"nonce of {len(n.data)} bytes")
        return n.data

    def _peer_ke(self, msg: Message) -> None:
        ke = msg.get(KePayload)
        if self.group is None:
            if ke is not None:
                raise InvalidKeyInformation("KE payload without PFS")
            return
        if ke is None:
            raise InvalidKeyInformation(f"PFS with {self.group.name} but no KE payload")
        assert self.kex is not None
        try:
            self.kex.set_peer(ke.data)
        except InvalidKeyExchangeData as exc:
            raise InvalidKeyInformation(str(exc)) from None

    def _ids(self, msg: Message) -> list[IdPayload]:
        ids = [p for p in msg.payloads if type(p) is IdPayload]
        if len(ids) not in (0, 2):
            raise PayloadMalformed(f"{len(ids)} ID payloads (0 or 2 expected)")
        return ids

    # ------------------------------------------------------------------ initiator

    def initiate(self, now: float) -> Message:
        sa, session = self.sa, self.session
        cfg = self.child
        assert cfg is not None
        pref = sa.suite.ke if sa.suite is not None else None
        self.protocol, self.offers, self.group = configured_suites(cfg, pref)
        if not self.offers:
            raise NoProposalChosen(f"child {cfg.name}: no IKEv1-capable ESP/AH proposal")
        self.mode = cfg.mode
        self.udp = sa.nat_t
        self.spi_i = session._alloc_spi()
        self.lifetime = int(cfg.hard_lifetime)
        self.life_kb = cfg.life_bytes // 1000 if cfg.life_bytes else 0
        mode = encap_mode(self.mode, self.udp, sa.features.natt_draft)
        transforms = [s.to_transform(n + 1, mode, self.lifetime, self.life_kb) for n, s in enumerate(self.offers)]
        sa_payload = SaPayload([Proposal(1, self.protocol, self.spi_i.to_bytes(4, "big"), transforms)])
        self.ni = session.random(NONCE_SIZE)
        rest: list[Payload] = [sa_payload, NoncePayload(self.ni)]
        if self.group is not None:
            self.kex = session._new_kex(self.group)
            rest.append(KePayload(self.kex.public_value))
        if self.rekey is not None:
            self.tsi, self.tsr = self.rekey.local_ts, self.rekey.remote_ts
        else:
            self.tsi, self.tsr = session._child_ts(cfg)
        self.ids = [ts_to_id(self.tsi), ts_to_id(self.tsr)]
        rest += self.ids
        if self.udp and self.mode == "transport":
            rest += [_nat_oa(session.local_addr[0]), _nat_oa(session.remote_addr[0])]
        _first, chain = encode_chain(rest)
        hash1 = self._keys().prf_a(self.mid_bytes + chain)
        self.step_sent, self.step = "QM1", "QM2"
        return self._message([HashPayload(hash1), *rest])

    def process(self, msg: Message, now: float) -> Message | None:
        if self.step == "QM2":
            return self._process_qm2(msg, now)
        if self.step == "QM1":
            return self._process_qm1(msg, now)
        return self._process_qm3(msg, now)

    def _process_qm2(self, msg: Message, now: float) -> Message:
        self._check_hash(msg, self.mid_bytes + self.ni + msg.after_first(), "HASH(2)")
        for n in msg.notifies():
            if notify_is_error(n.notify_type):
                raise NoProposalChosen(f"peer answered with {notify_name(n.notify_type)}")
            if n.notify_type == NotifyType.RESPONDER_LIFETIME:
                try:
                    seconds, kb = _parse_life_attrs(n.data)
                except ParseError:
                    raise PayloadMalformed("malformed RESPONDER-LIFETIME") from None
                if seconds:
                    self.lifetime = min(self.lifetime, seconds) if self.lifetime else seconds
                if kb:
                    self.life_kb = min(self.life_kb, kb) if self.life_kb else kb
        answers = msg.all(SaPayload)
        if len(answers) != 1 or len(answers[0].proposals) != 1:
            raise NoProposalChosen("QM2 must carry one SA with one proposal")
        prop = answers[0].proposals[0]
        if prop.protocol != self.protocol or len(prop.spi) != 4 or len(prop.transforms) != 1:
            raise NoProposalChosen("QM2 proposal does not answer ours")
        chosen = suite_from_transform(prop.protocol, prop.transforms[0])
        if chosen is None or chosen not in self.offers:
            raise NoProposalChosen("responder chose a transform we did not offer")
        self.suite = chosen
        self.spi_r = int.from_bytes(prop.spi, "big")
        self.nr = self._nonce(msg)
        self._peer_ke(msg)
        ids = self._ids(msg)
        if ids:
            tsi, tsr = id_to_ts(ids[0]), id_to_ts(ids[1])
            assert self.tsi is not None and self.tsr is not None
            if self.mode == "transport" and self.udp:
                # a NATed peer answers with the addresses it sees (strongSwan)
                tsi, tsr = _nat_hosts(tsi, self.tsi), _nat_hosts(tsr, self.tsr)
            if not (tsi.is_subset_of(self.tsi) and tsr.is_subset_of(self.tsr)):
                raise InvalidIdInformation(f"responder answered with selectors {tsi} === {tsr}, not within ours")
            self.tsi, self.tsr = tsi, tsr
        self._install(now)
        hash3 = self._keys().prf_a(b"\x00" + self.mid_bytes + self.ni + self.nr)
        self.step_sent, self.step = "QM3", ""
        self.done = True
        return self._message([HashPayload(hash3)])

    # ------------------------------------------------------------------ responder

    def _process_qm1(self, msg: Message, now: float) -> Message:
        sa, session = self.sa, self.session
        self._check_hash(msg, self.mid_bytes + msg.after_first(), "HASH(1)")
        offers = msg.all(SaPayload)
        if len(offers) != 1:
            raise NoProposalChosen("only one SA payload per Quick Mode is supported")
        self.ids = self._ids(msg)
        if self.ids:
            self.tsi, self.tsr = id_to_ts(self.ids[0]), id_to_ts(self.ids[1])
        else:
            self.tsi, self.tsr = host_ts(session.remote_addr[0]), host_ts(session.local_addr[0])
        first_mode = _first_mode(offers[0])
        if first_mode == ("transport", True):
            # transport mode through a NAT: the peer's selectors name its private
            # address; the SA is between the outer addresses (strongSwan does so)
            self.tsi = _nat_hosts(self.tsi, host_ts(session.remote_addr[0]))
            self.tsr = _nat_hosts(self.tsr, host_ts(session.local_addr[0]))
        child = session._select_child(sa, self.tsi, self.tsr)
        if child is None and self.ids and sa.features.unity and self.tsr == _WILDCARD4:
            # a Cisco Unity client given split includes proposes 0.0.0.0/0 for our
            # side (strongSwan unity_narrow.c narrow_pre, Cisco clients): as charon's
            # narrow_responder_post, install our configured side, echo the IDs
            for cfg in sa.cfg.children.values():
                local = session._child_ts(cfg)[0]
                if session._child_contains(cfg, self.tsi, local):
                    child, self.tsr = cfg, local
                    break
        if child is None:
            raise InvalidIdInformation(f"no child configuration matches {self.tsi} === {self.tsr}")
        self.child = child
        self.ni = self._nonce(msg)
        pref = sa.suite.ke if sa.suite is not None else None
        protocol, mine, group = configured_suites(child, pref)
        prop, transform, suite, mode, udp = self._select(offers[0], protocol, mine, group, child)
        self.protocol, self.suite, self.group = protocol, suite, suite.ke
        self.mode, self.udp = mode, udp
        self.spi_i = int.from_bytes(prop.spi, "big")
        if self.group is not None:
            self.kex = session._new_kex(self.group)
        self._peer_ke(msg)
        offered_s = transform.life(Phase2Attr.SA_LIFE_TYPE, Phase2Attr.SA_LIFE_DURATION, LifeType.SECONDS)
        offered_kb = transform.life(Phase2Attr.SA_LIFE_TYPE, Phase2Attr.SA_LIFE_DURATION, LifeType.KILOBYTES)
        if offered_s is None and offered_kb is None:
            offered_s = DEFAULT_LIFETIME
        mine_s = int(child.hard_lifetime)
        mine_kb = child.life_bytes // 1000 if child.life_bytes else 0
        self.lifetime = min(offered_s, mine_s) if offered_s else mine_s
        self.life_kb = min(offered_kb, mine_kb) if (offered_kb and mine_kb) else (offered_kb or mine_kb or 0)
        self.spi_r = session._alloc_spi()
        self.nr = session.random(NONCE_SIZE)
        answer = SaPayload([Proposal(prop.number, protocol, self.spi_r.to_bytes(4, "big"), [transform])])
        rest: list[Payload] = [answer, NoncePayload(self.nr)]
        if self.kex is not None:
            rest.append(KePayload(self.kex.public_value))
        rest += self.ids
        lower_s = self.lifetime if (offered_s and self.lifetime < offered_s) else 0
        lower_kb = self.life_kb if (offered_kb and self.life_kb < offered_kb) else 0
        if lower_s or lower_kb:
            rest.append(
                NotifyPayload(
                    notify_type=NotifyType.RESPONDER_LIFETIME,
                    protocol=protocol,
                    spi=self.spi_r.to_bytes(4, "big"),
                    data=_life_attrs(lower_s, lower_kb),
                )
            )
        _first, chain = encode_chain(rest)
        hash2 = self._keys().prf_a(self.mid_bytes + self.ni + chain)
        self.step_sent, self.step = "QM2", "QM3"
        return self._message([HashPayload(hash2), *rest])

    def _select(
        self, offer: SaPayload, protocol: int, mine: list[QmSuite], group: KeAlg | None, child: ChildConfig
    ) -> tuple[Proposal, Transform, QmSuite, str, bool]:
        numbers = [p.number for p in offer.proposals]
        candidates: list[tuple[Proposal, Transform, QmSuite, str, bool]] = []
        for prop in offer.proposals:
            if numbers.count(prop.number) > 1 or prop.protocol != protocol or len(prop.spi) != 4:
                continue  # SA bundles (ESP+AH, IPComp) are not supported
            for t in prop.transforms:
                s = suite_from_transform(prop.protocol, t)
                m = decode_mode(t.get(Phase2Attr.ENCAPSULATION_MODE))
                if s is None or m is None:
                    continue
                candidates.append((prop, t, s, m[0], m[1]))
        for want in mine:
            for prop, t, s, mode, udp in candidates:
                if s == want and mode == child.mode:
                    return prop, t, s, mode, udp
        offered = ", ".join(f"{s.name}/{mode}" for _p, _t, s, mode, _u in candidates) or "nothing usable"
        raise NoProposalChosen(f"child {child.name}: no acceptable proposal, peer offered {offered}")

    def _process_qm3(self, msg: Message, now: float) -> None:
        self._check_hash(msg, b"\x00" + self.mid_bytes + self.ni + self.nr, "HASH(3)")
        self._install(now)
        self.step = ""
        self.done = True
        return None

    # ------------------------------------------------------------------ keys

    def _install(self, now: float) -> None:
        suite = self.suite
        assert suite is not None and self.child is not None and self.tsi is not None and self.tsr is not None
        keys = self._keys()
        shared = self.kex.shared_secret if self.kex is not None else None
        n = suite.keymat_len()

        def keymat(spi: int) -> tuple[bytes, bytes]:
            km = ikev1_keymat(keys.prf_alg, keys.skeyid_d, self.protocol, spi.to_bytes(4, "big"), self.ni, self.nr, n, shared)
            e = suite.encr.key_len if suite.encr else 0
            return km[:e], km[e:]

        if self.initiator:
            spi_in, spi_out, local_ts, remote_ts = self.spi_i, self.spi_r, self.tsi, self.tsr
        else:
            spi_in, spi_out, local_ts, remote_ts = self.spi_r, self.spi_i, self.tsr, self.tsi
        ein, iin = keymat(spi_in)
        eout, iout = keymat(spi_out)
        self.session._install_child(
            self.sa,
            self,
            spi_in=spi_in,
            spi_out=spi_out,
            local_ts=local_ts,
            remote_ts=remote_ts,
            keys=(ein, eout, iin, iout),
            now=now,
        )

    def failed(self, reason: str, notify: str, now: float) -> None:
        self.session._qm_failed(self.sa, self, notify, reason, now)


def _first_mode(offer: SaPayload) -> tuple[str, bool] | None:
    """The encapsulation mode of the first transform (what strongSwan reads)."""
    for prop in offer.proposals:
        for t in prop.transforms:
            return decode_mode(t.get(Phase2Attr.ENCAPSULATION_MODE))
    return None


def _nat_hosts(got: TrafficSelector, host: TrafficSelector) -> TrafficSelector:
    """A single-host selector replaced by ``host`` (protocol and ports kept)."""
    if got.start != got.end or got.version != host.version:
        return got
    return TrafficSelector(host.start, host.end, host.version, got.proto, got.start_port, got.end_port)


def _nat_oa(ip: str) -> NatOaPayload:
    """NAT-OA of an address (RFC 3947 §5.2: ID_IPV4_ADDR/ID_IPV6_ADDR, same
    numbers as the Phase 1 address identities)."""
    addr = Identity.from_address(ip)
    return NatOaPayload(id_type=addr.id_type, data=addr.data)
