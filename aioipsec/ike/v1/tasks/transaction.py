"""Transaction exchanges: XAUTH (draft-beaulieu-ike-xauth-02) and Mode Config
(draft-dukes-ike-mode-cfg-02); model: strongSwan ``sa/ikev1/tasks/xauth.c``
and ``mode_config.c``.

Each exchange is a request and its answer under one fresh message ID::

    HDR*, HASH, ATTR          HASH = prf(SKEYID_a, M-ID | ATTR)

(the HASH of either message covers the message ID and every payload after
the HASH, as for Informationals; strongSwan ``keymat_v1`` get_hash_phase2).
The IV is the Phase-2 one, ``hash(last Phase 1 CBC block | M-ID)`` for the
first message, then the CBC chain of the exchange (:mod:`..iv`).

On a gateway that requires XAUTH (``remote-2 = { auth = "xauth" }``) the
Phase 1 responder starts it once Phase 1 is complete::

    XAUTH-REQUEST  gw -> client  REQUEST(XAUTH_TYPE, XAUTH_USER_NAME, XAUTH_USER_PASSWORD)
    XAUTH-REPLY    client -> gw  REPLY(XAUTH_USER_NAME=user, XAUTH_USER_PASSWORD=password)
    XAUTH-SET      gw -> client  SET(XAUTH_STATUS=1 or 0)         (a new message ID)
    XAUTH-ACK      client -> gw  ACK(XAUTH_STATUS)

A wrong REPLY (unknown user, wrong password, no name or password) gets a
new XAUTH-REQUEST under a new message ID, without a SET in between, until
``remote-2`` ``xauth_tries`` (default 3) REPLYs failed; only then the SET
says 0 (libreswan and Cisco gateways ask again; charon's asks once).  The
client answers every REQUEST with its configured password (as charon), so
a wrong one costs it ``xauth_tries`` round trips, bounded by the gateway.

and then answers the client's Mode Config pull (strongSwan's default)::

    MODECFG-REQUEST  client -> gw  REQUEST(INTERNAL_IP4_ADDRESS, [INTERNAL_IP4_DNS] ...)
    MODECFG-REPLY    gw -> client  REPLY(INTERNAL_IP4_ADDRESS=lease, INTERNAL_IP4_NETMASK,
                                         the leasing pools' DNS, NBNS, SUBNET, [UNITY_SPLIT_INCLUDE])

Every attribute of the pools that leased is sent whatever the request
listed (as charon); UNITY_SPLIT_INCLUDE only to a peer that sent the Cisco
Unity vendor ID, and a client takes one only from such a gateway.  Values
are encoded and decoded by :mod:`aioipsec.ike.cfgattr` (shared with IKEv2);
malformed ones are dropped, counted (``stats["cfg_attrs_dropped"]``) and
logged with the peer.

The client half (``local-2 = { auth = "xauth" }``, ``vips``) is here too:
it answers the REQUEST and the SET and pulls its address.

A message that does not verify or does not fit the step is dropped and
counted (the peer retransmits); no value of an XAUTH attribute is logged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from ....errors import IntegrityError, ParseError
from ... import cfgattr
from ..constants import (
    XAUTH_STATUS_FAIL,
    XAUTH_STATUS_OK,
    XAUTH_TYPE_GENERIC,
    CfgAttr,
    CfgType,
    ExchangeType,
)
from ..message import Message
from ..payloads import AttributePayload, CfgAttribute
from ..task_manager import Task
from .informational import hash_matches, hashed_message

if TYPE_CHECKING:
    from ..sa import IsakmpSa
    from ..session import IkeSessionV1

__all__ = [
    "ModeCfgRequestTask",
    "TransactionResponderTask",
    "TransactionTask",
    "XauthRequestTask",
    "XauthStatusTask",
    "address_attributes",
    "modecfg_reply",
]

_XAUTH_TYPES = frozenset(a for a in CfgAttr if CfgAttr.XAUTH_TYPE <= a <= CfgAttr.XAUTH_ANSWER)
_BASIC_XAUTH = frozenset((CfgAttr.XAUTH_TYPE, CfgAttr.XAUTH_STATUS))
"""XAUTH attributes whose value is a number of 16 bits (draft-beaulieu-ike-xauth §4.1: basic)."""


def _cfg_name(t: int) -> str:
    try:
        return CfgType(t).name.removeprefix("CFG_")  # the IKEv1 names are the aliases without CFG_
    except ValueError:
        return str(t)


class TransactionTask(Task):
    """One Transaction exchange (two messages under one message ID)."""

    name: ClassVar[str] = "TRANSACTION"
    exchange: ClassVar[int] = ExchangeType.TRANSACTION

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, initiator: bool, mid: int) -> None:
        super().__init__(session, sa, initiator, mid)
        self.identifier = 0

    def _keys(self):  # type: ignore[no-untyped-def]
        keys = self.sa.keys
        assert keys is not None
        return keys

    def _message(self, cfg_type: int, attributes: list[CfgAttribute]) -> Message:
        attr = AttributePayload(cfg_type=cfg_type, identifier=self.identifier, attributes=attributes)
        return hashed_message(self.sa, self.exchange, self.mid, [attr])

    def _attributes(self, msg: Message, *expected: int) -> AttributePayload:
        """The verified attribute payload of ``msg`` (its HASH checked), of
        one of the ``expected`` types; anything else raises ParseError (the
        message is dropped and counted)."""
        if not hash_matches(self._keys(), self.mid, msg):
            raise IntegrityError("Transaction HASH mismatch")
        attr = msg.get(AttributePayload)
        assert attr is not None
        if expected and attr.cfg_type not in expected:
            raise ParseError(
                f"attribute payload of type {_cfg_name(attr.cfg_type)}, expected {' or '.join(_cfg_name(t) for t in expected)}"
            )
        for a in attr.attributes:
            if a.type in _BASIC_XAUTH and len(a.value) > 2:
                # a 16-bit number (basic format); echoed as one in our answer
                raise ParseError(f"{CfgAttr(a.type).name} with a value of {len(a.value)} bytes (at most 2)")
        return attr

    def failed(self, reason: str, notify: str, now: float) -> None:
        self.session._transaction_failed(self.sa, self, notify, reason, now)


# --------------------------------------------------------------------------- gateway: XAUTH


class XauthRequestTask(TransactionTask):
    """Gateway: ask for the user name and password, check them.

    ``attempt`` counts the tries (1 for the first REQUEST); after a wrong
    answer the session starts the next try with a new task (a new REQUEST
    under a new message ID, no SET in between) until ``remote-2``
    ``xauth_tries`` answers failed."""

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, mid: int, attempt: int = 1) -> None:
        super().__init__(session, sa, True, mid)
        self.attempt = attempt
        self.user: str | None = None
        self.ok = False
        self.reason = ""

    def initiate(self, now: float) -> Message:
        self.identifier = int.from_bytes(self.session.random(2), "big")
        self.step_sent, self.step = "XAUTH-REQUEST", "XAUTH-REPLY"
        return self._message(
            CfgType.REQUEST,
            [
                CfgAttribute.basic(CfgAttr.XAUTH_TYPE, XAUTH_TYPE_GENERIC),
                CfgAttribute(CfgAttr.XAUTH_USER_NAME),
                CfgAttribute(CfgAttr.XAUTH_USER_PASSWORD),
            ],
        )

    def process(self, msg: Message, now: float) -> None:
        attr = self._attributes(msg, CfgType.REPLY)
        xtype = attr.get(CfgAttr.XAUTH_TYPE)
        name = attr.get(CfgAttr.XAUTH_USER_NAME)
        password = attr.get(CfgAttr.XAUTH_USER_PASSWORD)
        if xtype is not None and xtype.int_value != XAUTH_TYPE_GENERIC:
            self.reason = f"XAUTH type {xtype.int_value} is not supported (generic only)"
        elif name is None or password is None:
            self.reason = "the client answered without a user name and password"
        else:
            self.user = name.value.decode("utf-8", "replace")
            self.ok, self.reason = self.session._xauth_verify(self.user, password.value)
        self.step = ""
        self.done = True


class XauthStatusTask(TransactionTask):
    """Gateway: tell the client the result (SET), wait for its ACK."""

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, mid: int, ok: bool, user: str | None, reason: str) -> None:
        super().__init__(session, sa, True, mid)
        self.ok = ok
        self.user = user
        self.reason = reason

    def initiate(self, now: float) -> Message:
        self.identifier = int.from_bytes(self.session.random(2), "big")
        self.step_sent, self.step = "XAUTH-SET", "XAUTH-ACK"
        status = XAUTH_STATUS_OK if self.ok else XAUTH_STATUS_FAIL
        return self._message(CfgType.SET, [CfgAttribute.basic(CfgAttr.XAUTH_STATUS, status)])

    def process(self, msg: Message, now: float) -> None:
        self._attributes(msg, CfgType.ACK)
        self.step = ""
        self.done = True


# --------------------------------------------------------------------------- client: Mode Config pull


class ModeCfgRequestTask(TransactionTask):
    """Client: ask for a virtual IP of each requested family (and DNS)."""

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, mid: int, vips: list[str]) -> None:
        super().__init__(session, sa, True, mid)
        self.vips = vips
        self.addresses: list[str] = []
        self.dns: list[str] = []
        self.nbns: list[str] = []
        self.subnets: list[str] = []
        """INTERNAL_IP4/6_SUBNET and (Unity gateways) UNITY_SPLIT_INCLUDE networks."""

    def initiate(self, now: float) -> Message:
        self.identifier = int.from_bytes(self.session.random(2), "big")
        attrs: list[CfgAttribute] = []
        for v in self.vips:
            ip = ipaddress.ip_address(v)
            value = b"" if ip.is_unspecified else ip.packed
            if ip.version == 4:
                attrs += [CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, value), CfgAttribute(CfgAttr.INTERNAL_IP4_DNS)]
            else:
                attrs += [
                    CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, value + bytes([128]) if value else b""),
                    CfgAttribute(CfgAttr.INTERNAL_IP6_DNS),
                ]
        if self.sa.features.unity:
            attrs.append(CfgAttribute(CfgAttr.UNITY_SPLIT_INCLUDE))  # as strongSwan's unity plugin asks
        self.step_sent, self.step = "MODECFG-REQUEST", "MODECFG-REPLY"
        return self._message(CfgType.REQUEST, attrs)

    def process(self, msg: Message, now: float) -> None:
        attr = self._attributes(msg, CfgType.REPLY)
        got = cfgattr.decode(attr.attributes, 1, unity=self.sa.features.unity)
        dropped(self.session, "REPLY", got.dropped)
        self.addresses, self.dns, self.nbns, self.subnets = got.addresses, got.dns, got.nbns, got.subnets
        self.step = ""
        self.done = True


# --------------------------------------------------------------------------- the peer's exchanges


class TransactionResponderTask(TransactionTask):
    """A Transaction the peer started: on a gateway a Mode Config REQUEST,
    on an XAUTH client the gateway's XAUTH REQUEST or SET."""

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, mid: int) -> None:
        super().__init__(session, sa, False, mid)
        self.step = "TRANSACTION"
        self.kind = ""
        """``modecfg``, ``xauth-request`` or ``xauth-set``, once processed."""
        self.status: int | None = None

    def process(self, msg: Message, now: float) -> Message:
        attr = self._attributes(msg, CfgType.REQUEST, CfgType.SET)
        self.identifier = attr.identifier
        xauth = any(a.type in _XAUTH_TYPES for a in attr.attributes)
        session, sa = self.session, self.sa
        if attr.cfg_type == CfgType.SET:
            status = attr.get(CfgAttr.XAUTH_STATUS)
            if status is None or not sa.cfg.xauth_client or sa.gate != "xauth":
                raise ParseError("unexpected SET")
            self.kind, self.status = "xauth-set", status.int_value
            self.step_sent, self.step, self.done = "XAUTH-ACK", "", True
            return self._message(CfgType.ACK, [CfgAttribute.basic(CfgAttr.XAUTH_STATUS, status.int_value)])
        if xauth:
            if not sa.cfg.xauth_client or sa.gate != "xauth":
                raise ParseError("XAUTH request but we are no XAUTH client (no local-2 xauth round)")
            self.kind = "xauth-request"
            self.step_sent, self.step, self.done = "XAUTH-REPLY", "", True
            return self._message(CfgType.REPLY, session._xauth_credentials(sa, attr))
        if sa.initiator or sa.gate:
            raise ParseError("Mode Config request " + ("before XAUTH completed" if sa.gate else "from a Phase 1 responder"))
        self.kind = "modecfg"
        self.step_sent, self.step, self.done = "MODECFG-REPLY", "", True
        return self._message(CfgType.REPLY, session._modecfg_answer(sa, attr))


# --------------------------------------------------------------------------- addresses


def dropped(session: Any, what: str, reasons: list[str]) -> None:
    """Malformed attributes of the peer's Mode Config ``what``: counted
    (``stats["cfg_attrs_dropped"]``) and logged with the peer, not fatal
    (:func:`aioipsec.ike.cfgattr.log_dropped`, shared with IKEv2)."""
    if n := cfgattr.log_dropped("Mode Config", what, session.peer, reasons):
        session.stats["cfg_attrs_dropped"] += n


def address_attributes(address: str) -> list[CfgAttribute]:
    """INTERNAL_IP4_ADDRESS + INTERNAL_IP4_NETMASK (a host mask: iOS and
    Cisco clients want one) or INTERNAL_IP6_ADDRESS (address | prefix
    length 128); the pools' DNS servers follow in :func:`modecfg_reply`."""
    ip = ipaddress.ip_address(address)
    out = [CfgAttribute(cfgattr.address_type(ip.version), cfgattr.address_value(ip))]
    if ip.version == 4:
        out.append(CfgAttribute(CfgAttr.INTERNAL_IP4_NETMASK, b"\xff" * 4))
    return out


def modecfg_reply(leases: Iterable[tuple[Any, Any]], *, unity: bool = False) -> list[CfgAttribute]:
    """A Mode Config REPLY's attributes for ``leases`` ((pool, address) per
    family): each address (with a host netmask for IPv4), then every
    attribute of the pools that leased (:func:`aioipsec.ike.cfgattr.pool_attributes`;
    UNITY_SPLIT_INCLUDE when ``unity``)."""
    leases = list(leases)
    out: list[CfgAttribute] = []
    for _, ip in leases:
        out += address_attributes(str(ip))
    out += [CfgAttribute(t, v) for t, v in cfgattr.pool_attributes([p for p, _ in leases], 1, unity=unity)]
    return out
