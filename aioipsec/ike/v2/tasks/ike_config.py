"""Virtual IPs in IKE_AUTH: the Configuration Payload (RFC 7296 §2.19,
§3.15; model: strongSwan ``ike_config.c``).

Initiator (``vips`` configured): CP(CFG_REQUEST) with INTERNAL_IP4_ADDRESS /
INTERNAL_IP6_ADDRESS (empty, or the address we would like) and the matching
DNS attributes; the CFG_REPLY's addresses become :attr:`IkeSessionV2.local_vips`.
Getting none is recorded in :attr:`IkeSessionV2.cp_failure`; IKE_AUTH then
fails the IKE SA (``FAILED_CP_REQUIRED``) once the peer is authenticated.
This task is queued *before* IkeAuth so the reply is known when the IKE SA
is declared established (its event carries the addresses); it only parses.

Responder (the chosen connection has ``pools``): one lease per requested
family from the first pool of that family that has an address for the
peer's identity, answered in CP(CFG_REPLY) with the pools' DNS servers.
No address for a request: N(INTERNAL_ADDRESS_FAILURE) and no Child SA
(RFC 7296 §3.10.1).  Leases are released when the session closes; an IKE
rekey keeps them (CP is only exchanged in IKE_AUTH).
"""

from __future__ import annotations

import ipaddress

from ...constants import CfgAttr, CfgType, ExchangeType, NotifyType
from ..message import Message
from ..payloads import AuthPayload, CpAttribute, CpPayload, IdrPayload
from .base import Task, TaskStatus
from .common import notify

_ADDR_ATTR = {4: CfgAttr.INTERNAL_IP4_ADDRESS, 6: CfgAttr.INTERNAL_IP6_ADDRESS}
_DNS_ATTR = {4: CfgAttr.INTERNAL_IP4_DNS, 6: CfgAttr.INTERNAL_IP6_DNS}


def address_attribute(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, version: int) -> CpAttribute:
    """INTERNAL_IP4_ADDRESS (4 octets) / INTERNAL_IP6_ADDRESS (16 octets and
    a prefix length); ``ip`` None or unspecified: the empty request form."""
    if ip is None or ip.is_unspecified:
        return CpAttribute(_ADDR_ATTR[version])
    return CpAttribute(_ADDR_ATTR[version], ip.packed + (b"\x80" if version == 6 else b""))


def parse_address(attr: CpAttribute) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of an INTERNAL_IP4/6_ADDRESS or _DNS attribute; None when
    empty, all zeros or of the wrong length (dropped, not fatal)."""
    v = attr.value
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    if attr.attr_type in (CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP4_DNS) and len(v) == 4:
        ip = ipaddress.IPv4Address(v)
    elif attr.attr_type == CfgAttr.INTERNAL_IP6_ADDRESS and len(v) == 17:
        ip = ipaddress.IPv6Address(v[:16])
    elif attr.attr_type == CfgAttr.INTERNAL_IP6_DNS and len(v) == 16:
        ip = ipaddress.IPv6Address(v)
    else:
        return None
    return None if ip.is_unspecified else ip


def request_payload(vips: list[str]) -> CpPayload:
    """CP(CFG_REQUEST) for the configured ``vips``."""
    attrs: list[CpAttribute] = []
    families: list[int] = []
    for text in vips:
        ip = ipaddress.ip_address(text)
        attrs.append(address_attribute(ip, ip.version))
        if ip.version not in families:
            families.append(ip.version)
    attrs += [CpAttribute(_DNS_ATTR[v]) for v in families]
    return CpPayload(CfgType.CFG_REQUEST, tuple(attrs))


class IkeConfig(Task):
    exchange_type = ExchangeType.IKE_AUTH
    combinable = True
    name = "ike_config"

    def __init__(self, session, sa, initiator: bool) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, sa, initiator)
        self.reply: CpPayload | None = None
        self.failed = False

    # ------------------------------------------------------------------ initiator

    def build_i(self, msg: Message) -> TaskStatus:
        vips = self.session.config.vips
        if not vips:
            return TaskStatus.SKIP
        msg.add(request_payload(list(vips)))
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        s = self.session
        if msg.get(IdrPayload) is None or msg.get(AuthPayload) is None:
            return TaskStatus.SUCCESS  # IKE_AUTH refused: IkeAuth reports it
        cp = next((c for c in msg.get_all(CpPayload) if c.cfg_type == CfgType.CFG_REPLY), None)
        got: list[str] = []
        dns: list[str] = []
        if cp is not None:
            for a in cp.attributes:
                ip = parse_address(a)
                if ip is None:
                    continue
                if a.attr_type in (CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP6_ADDRESS):
                    if str(ip) not in got:
                        got.append(str(ip))
                elif a.attr_type in (CfgAttr.INTERNAL_IP4_DNS, CfgAttr.INTERNAL_IP6_DNS) and str(ip) not in dns:
                    dns.append(str(ip))
        s.local_vips = got
        s.dns_servers = dns
        if not got:
            if msg.has_notify(NotifyType.INTERNAL_ADDRESS_FAILURE):
                why = "peer answered INTERNAL_ADDRESS_FAILURE"
            elif cp is None:
                why = "peer sent no configuration reply"
            else:
                why = "peer's configuration reply holds no address"
            s.cp_failure = f"virtual IP requested ({', '.join(s.config.vips)}) but none assigned: {why}"
        return TaskStatus.SUCCESS

    # ------------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> TaskStatus:
        s = self.session
        cp = next((c for c in msg.get_all(CpPayload) if c.cfg_type == CfgType.CFG_REQUEST), None)
        if cp is None or not s.config.pools:
            return TaskStatus.SUCCESS
        wanted: dict[int, ipaddress.IPv4Address | ipaddress.IPv6Address | None] = {}
        for a in cp.attributes:
            if a.attr_type == CfgAttr.INTERNAL_IP4_ADDRESS:
                wanted.setdefault(4, parse_address(a))
            elif a.attr_type == CfgAttr.INTERNAL_IP6_ADDRESS:
                wanted.setdefault(6, parse_address(a))
        if not wanted:
            return TaskStatus.SUCCESS
        attrs: list[CpAttribute] = []
        dns: list[CpAttribute] = []
        for version, requested in wanted.items():
            lease = s.lease_address(version, requested)
            if lease is None:
                continue
            pool, ip = lease
            attrs.append(address_attribute(ip, version))
            for d in pool.dns:
                a = CpAttribute(_DNS_ATTR[d.version], d.packed)
                if a not in dns:
                    dns.append(a)
        if not attrs:
            self.failed = True
            s.cp_failure = "no address left in pools " + ", ".join(s.config.pools)
            s.step("IKE_AUTH no virtual IP", self.sa, pools=",".join(s.config.pools), peer_id=str(self.sa.remote_id))
            return TaskStatus.SUCCESS
        self.reply = CpPayload(CfgType.CFG_REPLY, tuple(attrs + dns))
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        if self.failed:
            msg.add(notify(NotifyType.INTERNAL_ADDRESS_FAILURE))
        elif self.reply is not None:
            msg.add(self.reply)
        return TaskStatus.SUCCESS
