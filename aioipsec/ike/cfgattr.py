"""Configuration attributes of both IKE versions: the values of the IKEv2
Configuration Payload (RFC 7296 §3.15.1) and of IKEv1 Mode Config
(draft-dukes-ike-mode-cfg-02 §3.3, Cisco Unity) share one numbering
(:class:`~aioipsec.ike.constants.CfgAttr`) and this one codec; the payload
classes (IKEv2 ``CpAttribute``, IKEv1 ``CfgAttribute``) only carry
``(type, value)``.  Model: strongSwan's ``ike_config.c`` / ``mode_config.c``
(values) and ``vici_attribute.c`` (pool attributes), ``unity_provider.c``.

Value lengths accepted (anything else is dropped, counted and logged by the
caller, never fatal; an empty value is the request form)::

    INTERNAL_IP4_ADDRESS / _NETMASK / _DNS / _NBNS / _DHCP   4 octets
    INTERNAL_IP6_DNS / _NBNS / _DHCP                         16 octets
    INTERNAL_IP6_ADDRESS   IKEv2: 17 (address | prefix length, RFC 7296 §3.15.1)
                           IKEv1: 16 (the draft) or 17 (strongSwan and Cisco send 17)
    INTERNAL_IP4_SUBNET    8 (address | netmask, the netmask contiguous)
    INTERNAL_IP6_SUBNET    17 (address | prefix length <= 128)
    UNITY_SPLIT_INCLUDE    IKEv1 with a peer that sent the Cisco Unity vendor ID only:
                           entries of 14 octets (address | netmask | 6 octets the Cisco
                           client reads as protocol and ports, zero), the last may be
                           8 (charon's ``split_include`` pool attribute sends one bare
                           address | netmask)

We send IPv6 addresses as 17 octets in both versions, split includes as
14-octet entries, and INTERNAL_IP6_NBNS in IKEv1 only (RFC 5996 dropped it
from IKEv2; one received in IKEv2 is still accepted).

Like charon, a gateway sends *every* attribute of each pool that leased an
address to the peer (``dns``, ``nbns``, ``subnet``; ``split_include`` with
IKEv1 Unity peers), whatever attributes the request listed: the request
only says which address families are wanted.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .constants import CfgAttr

__all__ = [
    "Received",
    "address_value",
    "decode",
    "decode_address",
    "decode_split_include",
    "encode_split_include",
    "log_dropped",
    "network_value",
    "pool_attributes",
    "requested_addresses",
]

logger = logging.getLogger("aioipsec.ike")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_HOSTS = frozenset((CfgAttr.INTERNAL_IP4_DNS, CfgAttr.INTERNAL_IP4_NBNS, CfgAttr.INTERNAL_IP4_DHCP))
_V6_HOSTS = frozenset((CfgAttr.INTERNAL_IP6_DNS, CfgAttr.INTERNAL_IP6_NBNS, CfgAttr.INTERNAL_IP6_DHCP))
_DNS = {4: CfgAttr.INTERNAL_IP4_DNS, 6: CfgAttr.INTERNAL_IP6_DNS}
_NBNS = {4: CfgAttr.INTERNAL_IP4_NBNS, 6: CfgAttr.INTERNAL_IP6_NBNS}
_SUBNET = {4: CfgAttr.INTERNAL_IP4_SUBNET, 6: CfgAttr.INTERNAL_IP6_SUBNET}
_ADDRESS = {4: CfgAttr.INTERNAL_IP4_ADDRESS, 6: CfgAttr.INTERNAL_IP6_ADDRESS}
UNITY_ENTRY = 14
"""Octets of one UNITY_SPLIT_INCLUDE entry: address, netmask, 6 zero octets."""


def ip6_address_lengths(ike_version: int) -> tuple[int, ...]:
    """Accepted lengths of a non-empty INTERNAL_IP6_ADDRESS value."""
    return (17,) if ike_version == 2 else (16, 17)


def _name(attr_type: int) -> str:
    try:
        return CfgAttr(attr_type).name
    except ValueError:
        return str(attr_type)


def _type(attr: Any) -> int:
    t = getattr(attr, "attr_type", None)
    return attr.type if t is None else t


# --------------------------------------------------------------------------- encoding


def address_value(ip: IpAddress | None) -> bytes:
    """INTERNAL_IP4_ADDRESS (4 octets) / INTERNAL_IP6_ADDRESS (address and
    prefix length 128, 17 octets) value; ``ip`` None or unspecified: the
    empty request form."""
    if ip is None or ip.is_unspecified:
        return b""
    return ip.packed + (b"\x80" if ip.version == 6 else b"")


def network_value(net: IpNetwork) -> bytes:
    """INTERNAL_IP4_SUBNET (address | netmask, 8 octets) or
    INTERNAL_IP6_SUBNET (address | prefix length, 17 octets)."""
    if net.version == 4:
        return net.network_address.packed + net.netmask.packed
    return net.network_address.packed + bytes([net.prefixlen])


def encode_split_include(nets: Iterable[ipaddress.IPv4Network]) -> bytes:
    """One UNITY_SPLIT_INCLUDE value: 14 octets per network."""
    return b"".join(n.network_address.packed + n.netmask.packed + bytes(6) for n in nets)


def pool_attributes(pools: Iterable[Any], ike_version: int, *, unity: bool = False) -> list[tuple[int, bytes]]:
    """(type, value) of every attribute of ``pools`` (those that leased an
    address to the peer), in order, each once: DNS, NBNS (IPv6 NBNS in
    IKEv1 only), subnets, and with IKEv1 ``unity`` peers one
    UNITY_SPLIT_INCLUDE of all split includes."""
    out: list[tuple[int, bytes]] = []
    split: list[ipaddress.IPv4Network] = []

    def add(t: int, v: bytes) -> None:
        if (t, v) not in out:
            out.append((t, v))

    for pool in pools:
        for ip in pool.dns:
            add(_DNS[ip.version], ip.packed)
        for ip in getattr(pool, "nbns", ()):
            if ip.version == 4 or ike_version == 1:
                add(_NBNS[ip.version], ip.packed)
        for net in getattr(pool, "subnet", ()):
            add(_SUBNET[net.version], network_value(net))
        for net in getattr(pool, "split_include", ()):
            if net not in split:
                split.append(net)
    if split and unity and ike_version == 1:
        out.append((CfgAttr.UNITY_SPLIT_INCLUDE, encode_split_include(split)))
    return out


# --------------------------------------------------------------------------- decoding


def decode_address(attr_type: int, value: bytes, ike_version: int) -> IpAddress | None:
    """The address of an INTERNAL_IP4/6_ADDRESS, _DNS, _NBNS or _DHCP value
    (and INTERNAL_IP4_NETMASK); None when empty or all zeros.  ValueError
    with the reason for a value of the wrong length."""
    if not value:
        return None
    ip: IpAddress
    if attr_type == CfgAttr.INTERNAL_IP4_ADDRESS or attr_type in _V4_HOSTS or attr_type == CfgAttr.INTERNAL_IP4_NETMASK:
        if len(value) != 4:
            raise ValueError(f"{_name(attr_type)} of {len(value)} octets (expected 4)")
        ip = ipaddress.IPv4Address(value)
    elif attr_type == CfgAttr.INTERNAL_IP6_ADDRESS:
        lengths = ip6_address_lengths(ike_version)
        if len(value) not in lengths:
            want = " or ".join(str(n) for n in lengths)
            raise ValueError(f"INTERNAL_IP6_ADDRESS of {len(value)} octets (expected {want} in IKEv{ike_version})")
        ip = ipaddress.IPv6Address(value[:16])
    elif attr_type in _V6_HOSTS:
        if len(value) != 16:
            raise ValueError(f"{_name(attr_type)} of {len(value)} octets (expected 16)")
        ip = ipaddress.IPv6Address(value)
    else:
        raise ValueError(f"{_name(attr_type)} is no address attribute")
    return None if ip.is_unspecified and attr_type != CfgAttr.INTERNAL_IP4_NETMASK else ip


def decode_subnet(attr_type: int, value: bytes) -> IpNetwork:
    """The network of an INTERNAL_IP4_SUBNET / INTERNAL_IP6_SUBNET value;
    ValueError with the reason when malformed."""
    if attr_type == CfgAttr.INTERNAL_IP4_SUBNET:
        if len(value) != 8:
            raise ValueError(f"INTERNAL_IP4_SUBNET of {len(value)} octets (expected 8)")
        mask = ipaddress.IPv4Address(value[4:])
        try:
            return ipaddress.IPv4Network(f"{ipaddress.IPv4Address(value[:4])}/{mask}", strict=False)
        except ValueError:
            raise ValueError(f"INTERNAL_IP4_SUBNET with the netmask {mask} (not contiguous)") from None
    if len(value) != 17:
        raise ValueError(f"INTERNAL_IP6_SUBNET of {len(value)} octets (expected 17)")
    if value[16] > 128:
        raise ValueError(f"INTERNAL_IP6_SUBNET with prefix length {value[16]}")
    return ipaddress.IPv6Network((ipaddress.IPv6Address(value[:16]), value[16]), strict=False)


def decode_split_include(value: bytes) -> list[ipaddress.IPv4Network]:
    """The networks of a UNITY_SPLIT_INCLUDE value (14-octet entries, the
    last may be 8); ValueError with the reason when malformed."""
    if len(value) < 8 or len(value) % UNITY_ENTRY not in (0, 8):
        raise ValueError(f"UNITY_SPLIT_INCLUDE of {len(value)} octets (expected entries of 14)")
    out: list[ipaddress.IPv4Network] = []
    for i in range(0, len(value) - 7, UNITY_ENTRY):
        addr, mask = ipaddress.IPv4Address(value[i : i + 4]), ipaddress.IPv4Address(value[i + 4 : i + 8])
        try:
            out.append(ipaddress.IPv4Network(f"{addr}/{mask}", strict=False))
        except ValueError:
            raise ValueError(f"UNITY_SPLIT_INCLUDE with the netmask {mask} (not contiguous)") from None
    return out


@dataclass(slots=True)
class Received:
    """What a CFG_REPLY / Mode Config REPLY carried, as strings, each once."""

    addresses: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    nbns: list[str] = field(default_factory=list)
    subnets: list[str] = field(default_factory=list)
    """INTERNAL_IP4/6_SUBNET networks and Unity split includes: networks
    reachable through the peer (RFC 7296 §3.15.2)."""
    netmask: str | None = None
    dropped: list[str] = field(default_factory=list)
    """Why each malformed (or not allowed) attribute was dropped."""


def decode(attributes: Iterable[Any], ike_version: int, *, unity: bool = False) -> Received:
    """The attributes of a reply (``CpAttribute`` or ``CfgAttribute``, or
    anything with a type and a ``value``).  Malformed values are dropped
    (their reasons in :attr:`Received.dropped`); types we do not use
    (APPLICATION_VERSION, DHCP, XAUTH, ...) are ignored; UNITY_SPLIT_INCLUDE
    only counts when ``unity`` (the peer sent the Cisco Unity vendor ID)."""
    out = Received()
    seen: set[tuple[int, str]] = set()  # (list, value): linear in the reply's size

    def add(lst: list[str], v: object) -> None:
        key = (id(lst), str(v))
        if key not in seen:
            seen.add(key)
            lst.append(key[1])

    for a in attributes:
        t, v = _type(a), a.value
        if not v:
            continue
        try:
            if t in (CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP6_ADDRESS):
                ip = decode_address(t, v, ike_version)
                if ip is not None:
                    add(out.addresses, ip)
            elif t == CfgAttr.INTERNAL_IP4_NETMASK:
                out.netmask = str(decode_address(t, v, ike_version))
            elif t in (CfgAttr.INTERNAL_IP4_DNS, CfgAttr.INTERNAL_IP6_DNS):
                ip = decode_address(t, v, ike_version)
                if ip is not None:
                    add(out.dns, ip)
            elif t in (CfgAttr.INTERNAL_IP4_NBNS, CfgAttr.INTERNAL_IP6_NBNS):
                ip = decode_address(t, v, ike_version)
                if ip is not None:
                    add(out.nbns, ip)
            elif t in (CfgAttr.INTERNAL_IP4_SUBNET, CfgAttr.INTERNAL_IP6_SUBNET):
                add(out.subnets, decode_subnet(t, v))
            elif t == CfgAttr.UNITY_SPLIT_INCLUDE:
                if ike_version != 1 or not unity:
                    raise ValueError("UNITY_SPLIT_INCLUDE from a peer that sent no Cisco Unity vendor ID")
                for net in decode_split_include(v):
                    add(out.subnets, net)
        except ValueError as exc:
            out.dropped.append(str(exc))
    return out


def log_dropped(who: str, what: str, peer: Any, reasons: list[str]) -> int:
    """The malformed (or not allowed) attributes of the peer's ``what``
    (CFG_REPLY, REQUEST, ...) that were dropped, one warning each naming the
    peer, never fatal; ``who`` starts the line (``IKE_SA <name>``, ``Mode
    Config``).  Returns how many, for the caller's counter: IKEv2
    ``SessionStats.cp_attrs_dropped``, IKEv1 ``stats["cfg_attrs_dropped"]``."""
    for why in reasons:
        logger.warning("%s: dropped a %s attribute of %s: %s", who, what, peer, why)
    return len(reasons)


def requested_addresses(attributes: Iterable[Any], ike_version: int) -> list[tuple[int, IpAddress | None, str | None]]:
    """(IP version, requested address or None, why a malformed one was
    ignored or None) per address attribute of a request, each version once
    (its first attribute): an address of the wrong length still asks for an
    address of that family, just none in particular."""
    out: dict[int, tuple[int, IpAddress | None, str | None]] = {}
    for a in attributes:
        t = _type(a)
        version = 4 if t == CfgAttr.INTERNAL_IP4_ADDRESS else 6 if t == CfgAttr.INTERNAL_IP6_ADDRESS else 0
        if not version or version in out:
            continue
        try:
            out[version] = (version, decode_address(t, a.value, ike_version), None)
        except ValueError as exc:
            out[version] = (version, None, str(exc))
    return list(out.values())


def address_type(version: int) -> CfgAttr:
    return _ADDRESS[version]


def dns_type(version: int) -> CfgAttr:
    return _DNS[version]
