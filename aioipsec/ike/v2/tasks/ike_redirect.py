"""IKEv2 Redirect Mechanism (RFC 5685; model: strongSwan ``ike_redirect.c``
and the redirect parts of ``ike_init.c``, ``ike_auth.c`` and ``ike_sa.c``).

A client announces REDIRECT_SUPPORTED in IKE_SA_INIT (REDIRECTED_FROM with
the first gateway's address once redirected).  A gateway may answer
IKE_SA_INIT with REDIRECT (its data echoes our Ni, §4.2), put REDIRECT in
the IKE_AUTH response (§6), or send it in an INFORMATIONAL on an established
IKE SA (§5).  The session then emits :class:`~aioipsec.events.IkeRedirected`
and whoever drives it (the endpoint) sets the connection up again toward the
new gateway.  At most :data:`MAX_REDIRECTS` redirects within
:data:`REDIRECT_LOOP_PERIOD` seconds are followed (charon's
``MAX_REDIRECTS`` / ``REDIRECT_LOOP_DETECT_PERIOD``).

Redirect data (§9.1/§9.2)::

    GW Ident Type (1) | GW Ident Len (1) | New Responder GW Identity | Nonce Data (IKE_SA_INIT only)
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable

from ...constants import ExchangeType, NotifyType
from ..message import Message
from .base import Task, TaskStatus
from .common import notify

logger = logging.getLogger("aioipsec.ike")

MAX_REDIRECTS = 5
"""Redirects followed within :data:`REDIRECT_LOOP_PERIOD` (charon's ``MAX_REDIRECTS``)."""
REDIRECT_LOOP_PERIOD = 300.0
"""Seconds (charon's ``REDIRECT_LOOP_DETECT_PERIOD``)."""

GW_IPV4 = 1
GW_IPV6 = 2
GW_FQDN = 3

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FQDN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


class InvalidRedirect(ValueError):
    """Malformed REDIRECT / REDIRECTED_FROM data (the reason is the text)."""


def unusable_gateway(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, ours: Iterable[str] = ()) -> str:
    """Why ``ip`` cannot be the address of a gateway to redirect to, or "":
    an unspecified, loopback, multicast or broadcast address, or one of
    ``ours`` (following could only fail or loop back to us).  The client
    refuses such a REDIRECT; the gateway neither sends nor configures one."""
    if ip.is_unspecified:
        return "the target is the unspecified address"
    if ip.is_loopback:
        return "the target is a loopback address"
    if ip.is_multicast:
        return "the target is a multicast address"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the target is the broadcast address"
    mine = set()
    for a in ours:
        try:
            mine.add(ipaddress.ip_address(a.split("%", 1)[0]))
        except ValueError:
            continue  # %any, a range: no one address
    if ip in mine or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped in mine):
        return "the target is our own address"
    return ""


def redirect_data(gateway: str, nonce: bytes = b"") -> bytes:
    """The notify data naming ``gateway`` (an IPv4/IPv6 address, else an
    FQDN), followed by ``nonce`` (IKE_SA_INIT: the initiator's Ni)."""
    try:
        ip = ipaddress.ip_address(gateway)
    except ValueError:
        if len(gateway) > 253 or not _FQDN.fullmatch(gateway):
            raise ValueError("neither an IP address nor a host name") from None
        ident = gateway.encode("ascii")
        kind = GW_FQDN
    else:
        ident = ip.packed
        kind = GW_IPV4 if ip.version == 4 else GW_IPV6
    return bytes((kind, len(ident))) + ident + nonce


def parse_redirect(data: bytes) -> tuple[int, str, bytes]:
    """(GW ident type, gateway as text, the nonce data that follows);
    :class:`InvalidRedirect` when the data is malformed."""
    if len(data) < 2:
        raise InvalidRedirect(f"{len(data)} bytes of data, at least 2 needed")
    kind, length = data[0], data[1]
    ident = data[2 : 2 + length]
    if len(ident) != length:
        raise InvalidRedirect(f"GW identity length {length} exceeds the {len(data) - 2} bytes present")
    if kind == GW_IPV4:
        if length != 4:
            raise InvalidRedirect(f"IPv4 GW identity of {length} bytes")
        gateway = str(ipaddress.IPv4Address(ident))
    elif kind == GW_IPV6:
        if length != 16:
            raise InvalidRedirect(f"IPv6 GW identity of {length} bytes")
        gateway = str(ipaddress.IPv6Address(ident))
    elif kind == GW_FQDN:
        if length == 0:
            raise InvalidRedirect("empty FQDN GW identity")
        try:
            gateway = ident.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidRedirect("FQDN GW identity is not ASCII") from None
        if not gateway.isprintable():
            raise InvalidRedirect("FQDN GW identity has control characters")
    else:
        raise InvalidRedirect(f"unknown GW identity type {kind}")
    return kind, gateway, data[2 + length :]


class IkeRedirect(Task):
    """INFORMATIONAL with REDIRECT on an established IKE SA.  Initiator: the
    gateway (``IkeSessionV2.redirect``) sends it; responder: the client
    follows it (``IkeSessionV2.redirect_received``) after answering."""

    exchange_type = ExchangeType.INFORMATIONAL
    name = "ike_redirect"

    def __init__(self, session, sa, initiator: bool, gateway: str = "") -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, sa, initiator)
        self.gateway = gateway
        self.to: tuple[int, str] | None = None

    def build_i(self, msg: Message) -> TaskStatus:
        if not self.sa.established:
            return TaskStatus.SKIP
        msg.add(notify(NotifyType.REDIRECT, redirect_data(self.gateway)))
        self.session.step("REDIRECT sent", self.sa, gateway=self.gateway)
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        self.session.redirect_answered(self.sa, self.gateway)
        return TaskStatus.SUCCESS

    def process_r(self, msg: Message) -> TaskStatus:
        s = self.session
        n = msg.get_notify(NotifyType.REDIRECT)
        if n is None:
            return TaskStatus.SUCCESS
        if not s.is_initiator:
            # RFC 5685 §5: the gateway (the original responder) redirects its
            # client, never the other way: a client must not make us set a
            # connection up toward an address it chose
            s.stats.redirects_invalid += 1
            logger.warning("REDIRECT in INFORMATIONAL from %s ignored: only the gateway redirects, and we are it",
                           s.peer_label())
            return TaskStatus.SUCCESS
        self.to = s.parse_redirect(n.data, "INFORMATIONAL")
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        return TaskStatus.SUCCESS

    def after_response_sent(self, now: float) -> None:
        if self.to is not None:
            self.session.redirect_received(self.sa, *self.to, "INFORMATIONAL", now)
