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
peer's identity, answered in CP(CFG_REPLY) with every attribute of the
pools that leased (DNS, NBNS, subnets: as charon, whatever the request
listed; :mod:`aioipsec.ike.cfgattr`).  No address for a request:
N(INTERNAL_ADDRESS_FAILURE) and no Child SA (RFC 7296 §3.10.1).  Leases are
released when the session closes; an IKE rekey keeps them (CP is only
exchanged in IKE_AUTH).

The initiator records the reply's DNS servers, NBNS servers and subnets
(INTERNAL_IP4/6_SUBNET, networks reachable through the peer) for
:class:`~aioipsec.events.IkeSaEstablished`; malformed attributes are dropped,
counted (``stats.cp_attrs_dropped``) and logged with the peer.
"""

from __future__ import annotations

import ipaddress

from ... import cfgattr
from ...constants import CfgType, ExchangeType, NotifyType
from ..message import Message
from ..payloads import AuthPayload, CpAttribute, CpPayload
from .base import Task, TaskStatus
from .common import notify


def address_attribute(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, version: int) -> CpAttribute:
    """INTERNAL_IP4_ADDRESS (4 octets) / INTERNAL_IP6_ADDRESS (16 octets and
    a prefix length); ``ip`` None or unspecified: the empty request form."""
    return CpAttribute(cfgattr.address_type(version), cfgattr.address_value(ip))


def parse_address(attr: CpAttribute) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of an INTERNAL_IP4/6_ADDRESS, _DNS or _NBNS attribute;
    None when empty, all zeros or of the wrong length (dropped, not fatal;
    IKEv2 lengths: :mod:`aioipsec.ike.cfgattr`)."""
    try:
        return cfgattr.decode_address(attr.attr_type, attr.value, 2)
    except ValueError:
        return None


def request_payload(vips: list[str]) -> CpPayload:
    """CP(CFG_REQUEST) for the configured ``vips``."""
    attrs: list[CpAttribute] = []
    families: list[int] = []
    for text in vips:
        ip = ipaddress.ip_address(text)
        attrs.append(address_attribute(ip, ip.version))
        if ip.version not in families:
            families.append(ip.version)
    attrs += [CpAttribute(cfgattr.dns_type(v)) for v in families]
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
        eap = self.sa.eap
        if msg.get(AuthPayload) is None and not (
            eap is not None and eap.auth and eap.final and msg.error_notify() is None
        ):
            # IKE_AUTH refused: IkeAuth reports it (the final response after
            # EAP carries AUTH and the CFG_REPLY without IDr, RFC 7296 §2.16;
            # after a certificate/PSK second round, RFC 4739, it has no AUTH
            # at all, as charon answers: its CFG_REPLY counts all the same)
            return TaskStatus.SUCCESS
        cp = next((c for c in msg.get_all(CpPayload) if c.cfg_type == CfgType.CFG_REPLY), None)
        got = cfgattr.decode(cp.attributes if cp is not None else (), 2)
        self._dropped(got.dropped, "CFG_REPLY")
        s.local_vips = got.addresses
        s.dns_servers = got.dns
        s.nbns_servers = got.nbns
        s.remote_subnets = got.subnets
        if not got.addresses:
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
        wanted = cfgattr.requested_addresses(cp.attributes, 2)
        self._dropped([why for _, _, why in wanted if why], "CFG_REQUEST")
        if not wanted:
            return TaskStatus.SUCCESS
        attrs: list[CpAttribute] = []
        pools = []
        for version, requested, _ in wanted:
            lease = s.lease_address(version, requested)
            if lease is None:
                continue
            pool, ip = lease
            attrs.append(address_attribute(ip, version))
            pools.append(pool)
        if not attrs:
            self.failed = True
            s.cp_failure = "no address left in pools " + ", ".join(s.config.pools)
            s.step("IKE_AUTH no virtual IP", self.sa, pools=",".join(s.config.pools), peer_id=str(self.sa.remote_id))
            return TaskStatus.SUCCESS
        attrs += [CpAttribute(t, v) for t, v in cfgattr.pool_attributes(pools, 2)]
        self.reply = CpPayload(CfgType.CFG_REPLY, tuple(attrs))
        return TaskStatus.SUCCESS

    def _dropped(self, reasons: list[str], what: str) -> None:
        """Malformed attributes of the peer's ``what``: counted and logged, not
        fatal (:func:`aioipsec.ike.cfgattr.log_dropped`, shared with IKEv1)."""
        s = self.session
        if n := cfgattr.log_dropped(f"IKE_SA {s.config.name}", what, s.peer, reasons):
            s.stats.cp_attrs_dropped += n

    def build_r(self, msg: Message) -> TaskStatus:
        if self.failed:
            msg.add(notify(NotifyType.INTERNAL_ADDRESS_FAILURE))
        elif self.reply is not None:
            msg.add(self.reply)
        return TaskStatus.SUCCESS
