"""In-memory address pools for virtual IPs (IKEv2 Configuration Payload,
RFC 7296 §3.15; model: strongSwan ``libcharon/attributes/mem_pool.c``).

A lease belongs to a peer *identity*: while an IKE SA of that identity holds
it, it is *online*; when the last one goes away it stays reserved for that
identity (*offline*), so a reconnect gets the same address back.  Fresh
addresses are handed out in order; when none is left, the oldest offline
lease of another identity is taken over; when every address is online the
pool is exhausted (:meth:`AddressPool.acquire` returns None).

Sans-I/O and shared: one :class:`AddressPool` per configured pool serves
every responder session of an endpoint.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from ...config import PoolConfig

logger = logging.getLogger("aioipsec.ike")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["AddressPool", "build_pools", "parse_pool_addrs"]


def parse_pool_addrs(text: str) -> tuple[IpAddress, IpAddress]:
    """(first, last) address handed out by ``text``: a subnet (``10.3.0.0/28``
    gives 10.3.0.1 .. 10.3.0.14; an IPv6 subnet skips only its network
    address) or a range ``a..b`` / ``a-b``.  Raises ValueError."""
    text = text.strip()
    for sep in ("..", "-"):
        if sep in text and "/" not in text:
            a_s, b_s = text.split(sep, 1)
            a, b = ipaddress.ip_address(a_s.strip()), ipaddress.ip_address(b_s.strip())
            if a.version != b.version:
                raise ValueError(f"range {text} mixes IPv4 and IPv6")
            if int(b) < int(a):
                raise ValueError(f"range {text} ends before it starts")
            return a, b
    iface = ipaddress.ip_interface(text)
    net = iface.network
    first, last = iface.ip, net.broadcast_address
    if net.num_addresses > 2:
        if first == net.network_address:
            first = first + 1
        if net.version == 4:
            last = last - 1
    if int(last) < int(first):
        raise ValueError(f"subnet {text} holds no address to hand out")
    return first, last


class AddressPool:
    """One pool of virtual IPs with leases per identity."""

    def __init__(
        self, name: str, addrs: str, dns: Iterable[str] = (), *, nbns: Iterable[str] = (),
        subnet: Iterable[str] = (), split_include: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.addrs = addrs
        first, last = parse_pool_addrs(addrs)
        self.version = first.version
        self.first = first
        self.last = last
        self.size = int(last) - int(first) + 1
        self.dns: tuple[IpAddress, ...] = tuple(ipaddress.ip_address(d) for d in dns)
        self.nbns: tuple[IpAddress, ...] = tuple(ipaddress.ip_address(d) for d in nbns)
        self.subnet: tuple[IpNetwork, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in subnet)
        self.split_include: tuple[ipaddress.IPv4Network, ...] = tuple(
            ipaddress.IPv4Network(n, strict=False) for n in split_include
        )
        """Attributes sent with a lease of this pool (:func:`aioipsec.ike.cfgattr.pool_attributes`)."""
        self._lease: dict[str, int] = {}
        """identity -> offset of its lease (online or offline)."""
        self._owner: dict[int, str] = {}
        """offset -> identity holding it."""
        self._online: dict[str, int] = {}
        """identity -> number of IKE SAs holding its lease."""
        self._offline: OrderedDict[str, None] = OrderedDict()
        """Identities whose lease is offline, oldest first."""
        self._next = 0
        """Lowest offset never handed out (those below are all owned or were)."""

    @classmethod
    def from_config(cls, cfg: PoolConfig) -> AddressPool:
        return cls(cfg.name, cfg.addrs, cfg.dns, nbns=cfg.nbns, subnet=cfg.subnet, split_include=cfg.split_include)

    def same_config(self, cfg: PoolConfig) -> bool:
        return cfg.addrs == self.addrs and (self.dns, self.nbns, self.subnet, self.split_include) == (
            tuple(ipaddress.ip_address(d) for d in cfg.dns),
            tuple(ipaddress.ip_address(d) for d in cfg.nbns),
            tuple(ipaddress.ip_network(n, strict=False) for n in cfg.subnet),
            tuple(ipaddress.IPv4Network(n, strict=False) for n in cfg.split_include),
        )

    def __contains__(self, addr: object) -> bool:
        try:
            ip = ipaddress.ip_address(addr)  # type: ignore[arg-type]
        except ValueError:
            return False
        return ip.version == self.version and int(self.first) <= int(ip) <= int(self.last)

    def _addr(self, offset: int) -> IpAddress:
        return self.first + offset

    def _take(self, identity: str, offset: int) -> IpAddress:
        old = self._owner.get(offset)
        if old is not None:  # an offline lease taken over
            del self._lease[old]
            self._offline.pop(old, None)
        self._owner[offset] = identity
        self._lease[identity] = offset
        self._online[identity] = 1
        return self._addr(offset)

    def acquire(self, identity: str, requested: str | IpAddress | None = None) -> IpAddress | None:
        """An address for ``identity``: its own lease if it has one, else the
        ``requested`` address if free, else a fresh one, else the oldest
        offline lease of another identity.  None: every address is online."""
        offset = self._lease.get(identity)
        if offset is not None:
            self._online[identity] = self._online.get(identity, 0) + 1
            self._offline.pop(identity, None)
            return self._addr(offset)
        if requested is not None:
            ip = ipaddress.ip_address(requested)
            if not ip.is_unspecified and ip in self:
                want = int(ip) - int(self.first)
                if want not in self._owner:
                    return self._take(identity, want)
        while self._next < self.size and self._next in self._owner:
            self._next += 1
        if self._next < self.size:
            offset = self._next
            self._next += 1
            return self._take(identity, offset)
        if self._offline:
            victim = next(iter(self._offline))
            return self._take(identity, self._lease[victim])
        return None

    def release(self, identity: str, address: str | IpAddress) -> bool:
        """An IKE SA of ``identity`` holding ``address`` is gone; the lease
        goes offline when no other one holds it.  False if it held none."""
        offset = self._lease.get(identity)
        if offset is None or self._addr(offset) != ipaddress.ip_address(address) or identity not in self._online:
            return False
        self._online[identity] -= 1
        if self._online[identity] <= 0:
            del self._online[identity]
            self._offline[identity] = None
        return True

    def holds(self, identity: str) -> bool:
        """Whether an IKE SA of ``identity`` holds its lease (online)."""
        return identity in self._online

    @property
    def online(self) -> int:
        return len(self._online)

    @property
    def offline(self) -> int:
        return len(self._offline)

    def leases(self) -> list[tuple[str, str, bool]]:
        """(address, identity, online) of every lease, by address."""
        return [
            (str(self._addr(off)), ident, ident in self._online) for off, ident in sorted(self._owner.items())
        ]

    def __repr__(self) -> str:
        return f"<AddressPool {self.name} {self.addrs} size={self.size} online={self.online} offline={self.offline}>"


def lease_from(
    pools: Mapping[str, AddressPool], names: Iterable[str], identity: str, version: int,
    requested: str | IpAddress | None, what: str, peer: str,
) -> tuple[AddressPool, IpAddress, str] | None:
    """The first address of IP ``version`` that the pools ``names`` (in order)
    lease to ``identity``, with its pool and the pool's name; unknown and
    exhausted pools are skipped with a warning (``what``: the log prefix, e.g.
    "IKE_SA gw"; ``peer``: who asked).  Shared by IKEv2 CP and IKEv1 Mode Config."""
    for name in names:
        pool = pools.get(name)
        if pool is None:
            logger.warning("%s: pool %s is not known to this endpoint (peer %s)", what, name, peer)
            continue
        if pool.version != version:
            continue
        ip = pool.acquire(identity, requested)
        if ip is None:
            logger.warning("%s: pool %s exhausted, no address for %s", what, name, peer)
            continue
        return pool, ip, name
    return None


def build_pools(
    configs: Iterable[PoolConfig], keep: Mapping[str, AddressPool] | None = None
) -> dict[str, AddressPool]:
    """Pools by name; a pool of ``keep`` with the same name and settings is
    reused with its leases (configuration reload)."""
    out: dict[str, AddressPool] = {}
    for cfg in configs:
        old = (keep or {}).get(cfg.name)
        out[cfg.name] = old if old is not None and old.same_config(cfg) else AddressPool.from_config(cfg)
    return out
