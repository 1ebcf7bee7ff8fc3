"""The IKE endpoint: sockets on 500 and 4500, IKE-vs-ESP demux, routing by
SPI, responder session creation (with COOKIE under load), and the data plane.

Model: aioquic ``QuicServer`` (peek at the header only, route by connection id,
answer stateless retries) and strongSwan's ``receiver.c`` (non-ESP marker demux
on 4500, NAT keepalives).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import ConnectionConfig, GlobalConfig
from ..events import (
    AuthFailed,
    ChildSaDeleted,
    ChildSaInstalled,
    DpdTimeout,
    IkeRedirected,
    IkeSaDeleted,
    IkeSaEstablished,
    IpsecEvent,
    KeyingFailed,
    KeyingRetry,
    LocalAddressChanged,
    NegotiationFailed,
    PeerAddressChanged,
    ReauthRequired,
)
from ..netutil import route_source
from ..selectors import Address, TrafficSelector
from .dataplane import DataPlane
from .protocol import SessionProtocol
from .sockets import DatagramSocket, MemoryNetwork, UdpSocket, is_wildcard

logger = logging.getLogger("aioipsec.net")
ike_logger = logging.getLogger("aioipsec.ike")

NON_ESP_MARKER = b"\x00\x00\x00\x00"
IKE_HEADER_LEN = 28
KEEPALIVE_INTERVAL = 20.0
RATE_TABLE_MAX = 4096
"""Addresses tracked by the per-peer IKE_SA_INIT rate limit."""
_RESTART_ERRORS = (ValueError, KeyError, OSError, RuntimeError)
"""What starting a new initiator IKE SA (``_start`` / ``_attempt``) from an
event handler -- following a REDIRECT, make-before-break reauthentication,
break-before-make reestablishing -- may raise: logged and that restart given
up, instead of escaping into the event loop (there is no caller to raise to).
``_retry`` and ``_dpd_restart`` catch ``(ValueError, KeyError, OSError)``
only, without ``RuntimeError``."""


def _utc_now() -> datetime.datetime:
    """The wall clock the sans-I/O sessions check certificate validity against."""
    return datetime.datetime.now(datetime.timezone.utc)


def _open_raw_esp(host: str, *, required: bool) -> DatagramSocket | None:
    """A raw protocol-50 socket bound to ``host`` (``aioipsec_rawesp``), or
    None when the plugin is missing or the process lacks CAP_NET_RAW (unless
    ``required``)."""
    try:
        from aioipsec_rawesp import RawEspSocket
    except ImportError:
        if required:
            raise
        return None
    try:
        sock = RawEspSocket.open(host)
    except OSError as exc:
        if required:
            raise
        logger.debug("no raw ESP socket on %s (%s): plain ESP cannot be sent", host, exc)
        return None
    logger.info("plain ESP (IP protocol 50) on a raw socket bound to %s", host)
    return sock  # type: ignore[return-value]


def _open_raw_ah(host: str, *, required: bool) -> DatagramSocket | None:
    """A raw protocol-51 socket carrying whole IP packets (``aioipsec_rawesp``'s
    ``RawAhSocket``), or None when the plugin is missing or the process lacks
    CAP_NET_RAW (unless ``required``).  AH has no UDP encapsulation: without
    this socket an AH Child SA cannot be carried (it is refused at install)."""
    try:
        from aioipsec_rawesp import RawAhSocket
    except ImportError:
        if required:
            raise
        logger.warning("AH is configured but the rawesp plugin is missing: AH Child SAs will be refused")
        return None
    try:
        sock = RawAhSocket.open(host)
    except OSError as exc:
        if required:
            raise
        logger.warning("no raw AH socket on %s (%s): AH Child SAs will be refused", host, exc)
        return None
    logger.info("AH (IP protocol 51) on a raw socket bound to %s", host)
    return sock  # type: ignore[return-value]


def _behind_nat(proto: SessionProtocol) -> bool:
    """Whether the IKE SA of ``proto`` finds this end behind a NAT now: the
    session's current state (a MOBIKE update redoes NAT detection), else what
    it said when it was established."""
    sa = getattr(proto.session, "sa", None)
    live = getattr(sa, "nat_local", None)
    if isinstance(live, bool):
        return live
    info = proto.ike_info
    return bool(info is not None and info.nat_local)


def _configures_ah(configurations: Sequence[ConnectionConfig] | ConnectionConfig) -> bool:
    confs = [configurations] if isinstance(configurations, ConnectionConfig) else configurations
    return any(ch.ah_proposals for c in confs for ch in c.children.values())


AH_MEMORY_PORT = 51
"""On a :class:`MemoryNetwork`, the port that stands for IP protocol 51 (AH:
whole IP packets); port 0 stands for protocol 50."""


def _ike_version(data: bytes) -> int:
    return data[17] >> 4 if len(data) >= IKE_HEADER_LEN else 0


@dataclass(eq=False)
class _Keying:
    """One initiation of a connection under swanctl ``keyingtries``: its
    attempts are IKE SAs (sessions) started one after the other."""

    conn: str
    children: list[str]
    """Child SAs to negotiate (the first with the IKE SA); each attempt asks again."""
    remote: Address
    tries: int
    """keyingtries: attempts allowed, 0 = until established."""
    attempt: int = 1
    proto: SessionProtocol | None = None
    """The current attempt."""
    config: ConnectionConfig | None = None
    """The configuration each attempt uses instead of the endpoint's (a
    break-before-make reauthentication: no INITIAL_CONTACT, the virtual IPs
    asked for again)."""
    failure: str = ""
    """A permanent error the current attempt reported (never retried)."""
    handle: asyncio.Handle | None = field(default=None, repr=False)
    waiters: list[asyncio.Future[SessionProtocol | None]] = field(default_factory=list, repr=False)
    """:meth:`Endpoint.next_attempt` futures, set when the next attempt
    starts (its session) or when no attempt follows (None)."""

    def resolve(self, proto: SessionProtocol | None) -> None:
        """Tell the waiters what follows the current attempt: ``proto``, or
        None (no further attempt)."""
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(proto)


@dataclass
class _Reauth:
    """An IKEv2 reauthentication under way: the new session ``new`` replaces
    ``old`` once the Child SAs ``pending`` are up.  Make-before-break: ``new``
    starts at once and ``old`` is deleted at the end.  Break-before-make
    (``GlobalConfig.make_before_break = False``): ``old`` is deleted first,
    ``new`` is None until it is gone and ``restart`` (the configuration,
    peer and children to initiate) is used then; None once started or
    stopped (``stop_keying``)."""

    old: SessionProtocol
    new: SessionProtocol | None
    pending: set[str]
    done: asyncio.Future[SessionProtocol] = field(repr=False)
    restart: tuple[ConnectionConfig, Address, list[str]] | None = None
    redirect: str = ""
    """Not a reauthentication: the gateway redirected the established IKE SA
    ``old`` to this address (RFC 5685; ``new`` goes there)."""
    redirect_next: IkeRedirected | None = field(default=None, repr=False)
    """The gateway redirected ``new`` (INFORMATIONAL) before its Child SAs
    were up: followed once ``new`` has replaced ``old``."""


def _tries_text(k: _Keying) -> str:
    return f"attempt {k.attempt} of {k.tries}" if k.tries else f"attempt {k.attempt} (keyingtries = 0: until established)"


class EndpointStats:
    def __init__(self) -> None:
        self.ike_in = 0
        self.ike_out = 0
        self.esp_in = 0
        self.ah_in = 0
        self.keepalives_in = 0
        self.keepalives_out = 0
        self.malformed = 0
        self.unknown_spi = 0
        self.cookies_sent = 0
        self.rate_limited = 0
        self.half_open_dropped = 0


class Endpoint:
    """Owns the sockets and every IKE session of one local address."""

    def __init__(
        self,
        *,
        configurations: Sequence[ConnectionConfig] | ConnectionConfig = (),
        ike_socket: DatagramSocket,
        natt_socket: DatagramSocket | None = None,
        esp_socket: DatagramSocket | None = None,
        ah_socket: DatagramSocket | None = None,
        inner: Any | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        random: Callable[[int], bytes] = os.urandom,
        global_config: GlobalConfig | None = None,
        respond: bool = True,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        pools: Any = None,
    ) -> None:
        if isinstance(configurations, ConnectionConfig):
            configurations = [configurations]
        self.loop = loop or asyncio.get_running_loop()
        self.configurations: dict[str, ConnectionConfig] = {c.name: c for c in configurations}
        self.global_config = global_config or GlobalConfig()
        self.random = random
        self.respond = respond
        self.pools: dict[str, Any] = {}
        """Virtual IP address pools by name (:class:`~aioipsec.ike.v2.pools.AddressPool`),
        shared by every responder session; see :meth:`set_pools`."""
        self.set_pools(pools)
        self.ike_socket = ike_socket
        self.natt_socket = natt_socket
        self.esp_socket = esp_socket
        self.ah_socket = ah_socket
        """Whole IP packets of IP protocol 51 (AH), both ways; None: AH Child
        SAs are refused at install."""
        self.local_ip = ike_socket.local_addr[0]
        self.sessions: set[SessionProtocol] = set()
        self._half_open: set[SessionProtocol] = set()
        """Sessions whose IKE SA has not been established yet (O(1) count per IKE_SA_INIT)."""
        self._by_spi: dict[bytes, SessionProtocol] = {}
        """IKEv2 sessions by IKE SPI (8 bytes: either SPI, both are ours to
        route by); IKEv1 sessions by the cookie pair CKY-I + CKY-R of each of
        their ISAKMP SAs (16 bytes; CKY-R zero while our Main/Aggressive Mode
        awaits the responder's cookie)."""
        self._spis_of: dict[SessionProtocol, set[bytes]] = {}
        self._by_init: dict[tuple[bytes, str], SessionProtocol] = {}
        self._keying: dict[str, _Keying] = {}
        """Initiations not established yet, by connection name (keyingtries)."""
        self._reauths: dict[SessionProtocol, _Reauth] = {}
        """Reauthentications under way, by the new session (and by the old one)."""
        self._rate: dict[str, tuple[float, int]] = {}
        self.stats = EndpointStats()
        self.dataplane = DataPlane(self, inner)
        self.event_listeners: list[Callable[[SessionProtocol, IpsecEvent], None]] = []
        self._closed = False
        self._keepalive_interval = keepalive_interval
        self._keepalive_task: asyncio.Task[None] | None = None
        ike_socket.set_receiver(self._on_ike_port)
        if natt_socket is not None:
            natt_socket.set_receiver(self._on_natt_port)
        if esp_socket is not None:
            esp_socket.set_receiver(self._on_esp_socket)
        if ah_socket is not None:
            ah_socket.set_receiver(self._on_ah_socket)
        for conn in self.configurations.values():
            for child in conn.children.values():
                if child.start_action == "trap":
                    self.dataplane.add_trap(conn.name, child.name, child.local_ts, child.remote_ts)
        self.dataplane.start()

    # ---------------------------------------------------------------- factory

    @classmethod
    async def create(
        cls,
        host: str,
        *,
        configurations: Sequence[ConnectionConfig] | ConnectionConfig = (),
        network: MemoryNetwork | None = None,
        port: int = 500,
        natt_port: int = 4500,
        **kw: Any,
    ) -> Endpoint:
        """Bind the IKE sockets on ``host`` (real UDP, or ``network`` for an
        in-memory network) and return a running endpoint.

        Plain ESP (no NAT, ``encap = false``) needs a raw IP protocol 50
        socket: pass ``esp_socket=``, or let ``raw_esp`` decide (None: open
        one with the ``rawesp`` plugin when the process may, else send no
        plain ESP and count it as ``no_transport``; True: must open one;
        False: never).

        AH needs a raw IP protocol 51 socket too (no UDP encapsulation exists
        for it): pass ``ah_socket=``, or let ``raw_ah`` decide (None: open one
        when a configured child has ``ah_proposals`` and the process may;
        True: must open one; False: never)."""
        loop = asyncio.get_running_loop()
        esp: DatagramSocket | None
        ah: DatagramSocket | None = None
        if network is not None:
            ike: DatagramSocket = network.bind((host, port))
            natt: DatagramSocket = network.bind((host, natt_port))
            esp = network.bind((host, 0))  # stands for IP protocol 50 in memory
            ah = network.bind((host, AH_MEMORY_PORT))  # IP protocol 51: whole IP packets
        else:
            ike = UdpSocket.bind(loop, host, port)
            try:
                natt = UdpSocket.bind(loop, host, natt_port)
            except BaseException:
                ike.close()
                raise
            esp = kw.pop("esp_socket", None)
            raw_esp = kw.pop("raw_esp", None)
            if esp is None and raw_esp is not False:
                esp = _open_raw_esp(host, required=bool(raw_esp))
            ah = kw.pop("ah_socket", None)
            raw_ah = kw.pop("raw_ah", None)
            if ah is None and (raw_ah or (raw_ah is None and _configures_ah(configurations))):
                ah = _open_raw_ah(host, required=bool(raw_ah))
        ep = cls(configurations=configurations, ike_socket=ike, natt_socket=natt, esp_socket=esp, ah_socket=ah,
                 loop=loop, **kw)
        ep._network = network
        return ep

    _network: MemoryNetwork | None = None
    """The in-memory network the sockets were bound on by :meth:`create` (:meth:`roam` binds there too)."""

    def open_ah_if_configured(self) -> bool:
        """After :attr:`configurations` changed (a daemon ``reload``): open the
        raw AH socket, as :meth:`create` does at start, when a child now has
        ``ah_proposals`` and none is open.  Without it an AH Child SA of the
        new configuration would be refused at install.  Returns whether an AH
        socket is open now (False when none is configured or the process may
        not open one: a warning says so)."""
        if self.ah_socket is not None:
            return True
        if not _configures_ah(list(self.configurations.values())):
            return False
        net = self._network
        sock = net.bind((self.local_ip, AH_MEMORY_PORT)) if net is not None else _open_raw_ah(self.local_ip, required=False)
        if sock is None:
            return False
        sock.set_receiver(self._on_ah_socket)
        self.ah_socket = sock
        return True

    # ---------------------------------------------------------------- roaming

    def _bind_sockets(self, host: str) -> tuple[DatagramSocket, DatagramSocket | None, DatagramSocket | None,
                                                DatagramSocket | None]:
        """Sockets like the current ones (same ports, the same raw sockets
        present), bound to ``host``."""
        port = self.ike_socket.local_addr[1]
        natt_port = self.natt_socket.local_addr[1] if self.natt_socket is not None else None
        net = self._network
        if net is not None:
            ike: DatagramSocket = net.bind((host, port))
            natt = net.bind((host, natt_port)) if natt_port is not None else None
            esp = net.bind((host, 0)) if self.esp_socket is not None else None
            ah = net.bind((host, AH_MEMORY_PORT)) if self.ah_socket is not None else None
            return ike, natt, esp, ah
        ike = UdpSocket.bind(self.loop, host, port)
        try:
            natt = UdpSocket.bind(self.loop, host, natt_port) if natt_port is not None else None
        except BaseException:
            ike.close()
            raise
        esp = _open_raw_esp(host, required=False) if self.esp_socket is not None else None
        ah = _open_raw_ah(host, required=False) if self.ah_socket is not None else None
        return ike, natt, esp, ah

    def roam(self, host: str, *, sockets: tuple[Any, Any, Any, Any] | None = None) -> list[SessionProtocol]:
        """Our address changed to ``host`` (a roaming client: new Wi-Fi,
        DHCP lease, the old address removed from the interface).  The
        endpoint binds its sockets there (``sockets``: the IKE, NAT-T, raw
        ESP and raw AH sockets to use instead, e.g. for an endpoint built
        without :meth:`create`) and closes the old ones; then each
        established IKE SA that negotiated MOBIKE sends UPDATE_SA_ADDRESSES
        from the new address (RFC 4555 §3.5) and, once the peer answers,
        its Child SAs follow (:class:`~aioipsec.events.LocalAddressChanged`).
        An IKE SA of ours without MOBIKE (IKEv1, or a peer without it) cannot
        move: as strongSwan does, it is deleted and initiated again from the
        new address.  ``host`` equal to the current address binds nothing and
        only sends the updates (a NAT mapping that changed).  Returns the
        sessions that were moved or re-initiated."""
        if host != self.local_ip:
            new = sockets or self._bind_sockets(host)
            old = (self.ike_socket, self.natt_socket, self.esp_socket, self.ah_socket)
            self.ike_socket, self.natt_socket, self.esp_socket, self.ah_socket = new
            receivers = (self._on_ike_port, self._on_natt_port, self._on_esp_socket, self._on_ah_socket)
            for sock, receiver in zip(new, receivers):
                if sock is not None:
                    sock.set_receiver(receiver)
            for sock in old:
                if sock is not None and sock not in new:
                    sock.close()
            logger.info("local address %s -> %s: sockets bound on %s", self.local_ip, host, host)
            self.local_ip = host
        now = self.loop.time()
        out: list[SessionProtocol] = []
        for proto in list(self.sessions):
            s = proto.session
            if getattr(s, "is_closed", False) or not getattr(s, "is_established", False):
                continue  # still negotiating: its retransmissions leave from the new address
            if not getattr(s, "is_initiator", False):
                continue  # a peer of ours that is the initiator moves the IKE SA itself (or not)
            sa = getattr(s, "sa", None)
            if getattr(sa, "mobike", False) and hasattr(s, "roam"):
                nat_port = self.natt_socket.local_addr[1] if self.natt_socket is not None else 4500
                port = nat_port if getattr(s, "nat_t", False) else self.ike_socket.local_addr[1]
                ike_logger.info("%s: roaming to %s, MOBIKE update to %s", proto.name, host, s.peer)
                s.roam((host, port), now)
                proto.process()
                out.append(proto)
            else:
                out.append(self._reinitiate(proto, host))
        return out

    local_addresses: tuple[str, ...] = ()
    """The addresses MOBIKE announces to the peers as our additional addresses
    (RFC 4555 §3.4; :meth:`set_local_addresses`): the host's addresses when
    the sockets are bound to the wildcard address, none otherwise."""

    def set_local_addresses(self, addresses: Iterable[str]) -> list[SessionProtocol]:
        """The host's addresses are now ``addresses`` (the daemon's rtnetlink
        view).  Only addresses we receive IKE on are announced: all of them
        when the sockets are bound to the wildcard address, none when they
        are bound to one address (a peer's path probes to another address
        would get no answer; the IKE SAs send NO_ADDITIONAL_ADDRESSES).  New
        IKEv2 sessions announce them in IKE_AUTH; an established MOBIKE IKE
        SA whose announced set changes sends an address update (charon does
        on any address change).  Returns the sessions that did."""
        given = tuple(sorted(set(addresses)))
        if not is_wildcard(self.local_ip):
            if given and given != (self.local_ip,):
                logger.debug("bound to %s: the host's other addresses are not announced (no IKE received there)",
                             self.local_ip)
            given = ()
        self.local_addresses = given
        now = self.loop.time()
        out = []
        for proto in list(self.sessions):
            s = proto.session
            announce = getattr(s, "set_local_addresses", None)
            if announce is None or getattr(s, "is_closed", False):
                continue
            if announce(self.local_addresses, now):
                proto.process()
                out.append(proto)
        return out

    def _announce_to(self, session: Any) -> None:
        """A new session learns the addresses it announces in IKE_AUTH."""
        announce = getattr(session, "set_local_addresses", None)
        if self.local_addresses and announce is not None:
            announce(self.local_addresses, self.loop.time())

    def _reinitiate(self, proto: SessionProtocol, host: str) -> SessionProtocol:
        """An IKE SA of ours that cannot follow our address change (no
        MOBIKE): delete it and set up the connection again from ``host``."""
        s = proto.session
        children = list(dict.fromkeys(ev.name for ev in proto.children.values()))
        ike_logger.info("%s: local address now %s and no MOBIKE with %s: deleting the IKE SA and initiating again",
                        proto.name, host, getattr(s, "peer", proto.remote_addr[0]))
        remote = proto.remote_addr
        try:
            s.delete(self.loop.time())
        except Exception:
            ike_logger.debug("delete before re-initiation failed", exc_info=True)
        proto.process()
        conf = self.configurations.get(proto.name)
        return self.initiate(proto.name, children[0] if children else None,
                             remote=None if conf is not None and conf.remote_addrs else (remote[0], 500),
                             more_children=children[1:])

    def set_pools(self, pools: Any) -> None:
        """Use ``pools``: :class:`~aioipsec.config.PoolConfig` objects (a list,
        or a dict by name) or ready :class:`~aioipsec.ike.v2.pools.AddressPool`
        objects.  A pool whose name and settings are unchanged keeps its
        leases (configuration reload)."""
        from ..ike.v2.pools import AddressPool, build_pools

        if not pools:
            self.pools = {}
            return
        items = list(pools.values()) if isinstance(pools, dict) else list(pools)
        ready = {p.name: p for p in items if isinstance(p, AddressPool)}
        configs = [p for p in items if not isinstance(p, AddressPool)]
        self.pools = {**build_pools(configs, keep=self.pools), **ready}

    # ---------------------------------------------------------------- receive

    def _on_ike_port(self, batch: list[tuple[bytes, Address]]) -> None:
        for item in batch:
            if len(item) > 2:  # a wildcard-bound socket adds the datagram's destination address
                self._ike_received(item[0], item[1], False, item[2])  # type: ignore[misc]
            else:
                self._ike_received(item[0], item[1], False)

    def _on_natt_port(self, batch: list[tuple[bytes, Address]]) -> None:
        esp: list[bytes] = []
        append = esp.append
        marker = NON_ESP_MARKER
        for item in batch:
            data = item[0]
            if len(data) >= 8 and data[:4] != marker:  # ESP, the common case, first
                append(data)
            elif data[:4] == marker:
                if esp:
                    # ESP that arrived before this IKE message is processed first: a
                    # DELETE for the old SA of a rekey must not overtake its last packets
                    self.stats.esp_in += len(esp)
                    self.dataplane.inbound_datagrams(esp)
                    esp = []
                    append = esp.append
                if len(item) > 2:
                    self._ike_received(data[4:], item[1], True, item[2])  # type: ignore[misc]
                else:
                    self._ike_received(data[4:], item[1], True)
            elif len(data) == 1 and data[0] == 0xFF:
                self.stats.keepalives_in += 1  # RFC 3948 NAT keepalive: ignore
            else:
                self.stats.malformed += 1
        if esp:
            self.stats.esp_in += len(esp)
            self.dataplane.inbound_datagrams(esp)

    def _on_esp_socket(self, batch: list[tuple[bytes, Address]]) -> None:
        # item[0]: a socket bound to the wildcard address adds the destination
        self.stats.esp_in += len(batch)
        self.dataplane.inbound_datagrams([item[0] for item in batch])

    def _on_ah_socket(self, batch: list[tuple[bytes, Address]]) -> None:
        self.stats.ah_in += len(batch)
        self.dataplane.inbound_ah([item[0] for item in batch])

    def _ike_received(self, data: bytes, addr: Address, on_4500: bool, dst: str | None = None) -> None:
        """An IKE message from ``addr``; ``dst``: the address it was sent to
        (given by a socket bound to the wildcard address; a new responder
        session takes it as its local address)."""
        if len(data) < IKE_HEADER_LEN:
            self.stats.malformed += 1
            return
        self.stats.ike_in += 1
        spi_i, spi_r = data[0:8], data[8:16]
        version = _ike_version(data)
        proto = None
        if version == 1:
            proto = self._v1_route(spi_i, spi_r, addr)
        elif spi_r != bytes(8):
            proto = self._by_spi.get(spi_r) or self._by_spi.get(spi_i)
        else:
            # a retransmitted IKE_SA_INIT, or an answer to our own request that
            # carries no responder SPI (INVALID_KE_PAYLOAD, COOKIE): route by
            # the initiator SPI, which is ours then
            proto = self._by_init.get((spi_i, addr[0])) or self._by_spi.get(spi_i)
        if proto is None:
            if spi_r != bytes(8) or not self.respond:
                self.stats.unknown_spi += 1
                logger.debug("IKE message for unknown SPI %s from %s dropped", spi_i.hex(), addr)
                return
            proto = self._new_responder(version, data, addr, on_4500, dst)
            if proto is None:
                return
            self._by_init[(spi_i, addr[0])] = proto
            proto.datagram_received(data, addr, on_4500)
            if getattr(proto.session, "is_closed", False):
                # its first message was refused (a malformed MM1 closes an IKEv1
                # session without an event): do not keep it as a half-open session
                proto._finish(None)
            return
        proto.datagram_received(data, addr, on_4500, dst)  # its process() routes the session's SPIs here

    def _v1_route(self, spi_i: bytes, spi_r: bytes, addr: Address) -> SessionProtocol | None:
        """The session of an IKEv1 message, by its ISAKMP cookies (as charon
        and pluto do; never by the peer's address, which hosts behind one NAT
        share).  CKY-R zero: a retransmitted MM1/AM1 (its CKY-I from that
        address), or a notify answering our own MM1/AM1; an unknown CKY-I
        there is a new Phase 1 (a new responder session).  Otherwise the
        pair (CKY-I, CKY-R) of an ISAKMP SA, or our own Main/Aggressive Mode
        whose responder cookie this message (MM2/AM2) brings."""
        zero = bytes(8)
        if spi_r == zero:
            return self._by_init.get((spi_i, addr[0])) or self._by_spi.get(spi_i + zero)
        return self._by_spi.get(spi_i + spi_r) or self._by_spi.get(spi_i + zero)

    def _v1_renewal(self, proto: SessionProtocol) -> bool:
        """An IKEv1 Phase 1 that a peer started (a new session: new cookies)
        is established: when it renews the ISAKMP SA of another session of
        the same peer (same connection and identities, same IP address, no
        INITIAL-CONTACT: :meth:`IkeSessionV1.adopts`), that session takes the
        new ISAKMP SA over and keeps its IPsec SAs (what a session of a peer
        always did when its renewal reached it); this one is forgotten."""
        for other in list(self.sessions):
            adopts = getattr(other.session, "adopts", None)
            if other is proto or adopts is None or not adopts(proto.session):
                continue
            inits = [k for k, v in self._by_init.items() if v is proto]
            other.session.adopt(proto.session, self.loop.time())
            other.use_4500 = proto.use_4500  # IKE goes on where the renewal came from (floated or not)
            self.forget(proto)
            for key in inits:
                self._by_init[key] = other  # a late retransmitted MM1 finds its ISAKMP SA there
            other.process()  # its events (established, peer moved), and routes the new cookies there
            return True
        return False

    def _v1_unique(self, proto: SessionProtocol) -> None:
        """swanctl ``unique`` (IKEv1): a Phase 1 just established with the
        identities of another session (the peer came back from another
        address, or restarted: each Phase 1 a peer starts is a new session)
        replaces it and its IPsec SAs."""
        replaces = getattr(proto.session, "replaces", None)
        if replaces is None:
            return
        kept_out_by = getattr(proto.session, "kept_out_by", None)
        keeper = next((p for p in self.sessions if p is not proto and kept_out_by(p.session)), None)
        if keeper is not None:  # unique = keep: the older one stays, this one goes
            ike_logger.info("%s: deleting the new ISAKMP SA with %s: %s already has one from %s (unique = keep)",
                            proto.name, proto.session.peer, keeper.session.unique_id()[2], keeper.session.peer)
            proto.session.delete(self.loop.time(), "refused: an ISAKMP SA of the same identities is up (unique = keep)")
            self.loop.call_soon(proto.process)  # we are inside its process(): its deletes go out next
            return
        for other in [p for p in self.sessions if p is not proto and replaces(p.session)]:
            other.session.replaced_by(proto.session, self.loop.time())
            other.process()

    def _v2_unique(self, session: Any, initial_contact: bool) -> bool:
        """swanctl ``unique`` (IKEv2), called by a responder's IKE_AUTH once
        the peer is authenticated, before the answer: the established IKE SAs
        of the same connection and identities it replaces are deleted now,
        their Child SAs with them (:meth:`IkeSessionV2.unique_duplicates`);
        True refuses the new one (``keep``)."""
        refuse, dups = session.unique_duplicates((p.session for p in self.sessions), initial_contact)
        if refuse:
            return True
        now = self.loop.time()
        for other in dups:
            proto = next((p for p in self.sessions if p.session is other), None)
            other.replaced_by(session, now, initial_contact)
            if proto is not None:
                proto.process()  # its Delete leaves, its Child SAs leave the data plane
        return False

    def _rate_ok(self, ip: str) -> bool:
        """At most ``init_limit_per_peer`` new IKE SAs per address per second.
        The table holds at most RATE_TABLE_MAX addresses in the order their
        one-second windows started, so expiry pops from the front (O(1) per
        packet, even under a flood from many forged addresses)."""
        now = self.loop.time()  # the loop clock, like every other timer here
        rate = self._rate
        entry = rate.get(ip)
        if entry is None or now - entry[0] >= 1.0:
            rate.pop(ip, None)
            start, count = now, 0
        else:
            start, count = entry
        count += 1
        rate[ip] = (start, count)
        if len(rate) > RATE_TABLE_MAX:
            for k in list(itertools.islice(rate, len(rate) - RATE_TABLE_MAX)):
                del rate[k]  # the oldest windows: expired, or forgotten early under a flood
        return count <= self.global_config.init_limit_per_peer

    def half_open(self) -> int:
        """IKE SAs not established yet (kept in a set: this runs for every
        IKE_SA_INIT of a flood, so it must not scan every session)."""
        return len(self._half_open)

    def _candidates(self, version: int, addr: Address) -> list[ConnectionConfig]:
        out = []
        for c in self.configurations.values():
            if c.version != version:
                continue
            if c.remote_addrs and not any(a in ("%any", "0.0.0.0", "::", addr[0]) for a in c.remote_addrs):
                continue
            out.append(c)
        return out

    def _new_responder(self, version: int, data: bytes, addr: Address, on_4500: bool,
                       dst: str | None = None) -> SessionProtocol | None:
        if not self._rate_ok(addr[0]):
            self.stats.rate_limited += 1
            return None
        if self.half_open() >= self.global_config.half_open_max:
            self.stats.half_open_dropped += 1
            return None
        configs = self._candidates(version, addr)
        if not configs:
            logger.info("no connection configured for IKEv%d peer %s; ignored", version, addr[0])
            return None
        # bound to the wildcard address: the session is at the address the peer
        # used (NAT-D is computed over it, replies leave from it), as charon
        local_ip = dst if dst and is_wildcard(self.local_ip) else self.local_ip
        local = (local_ip, (self.natt_socket.local_addr[1] if on_4500 and self.natt_socket else self.ike_socket.local_addr[1]))
        if version == 2:
            from ..ike.v2.session import IkeSessionV2

            check_cookie = getattr(IkeSessionV2, "check_cookie", None)
            if check_cookie is not None:
                reply = check_cookie(
                    data, addr, self.half_open(), self.global_config, now=self.loop.time(), random=self.random,
                    endpoint_state=self._cookie_state(),
                )
                if reply is not None:  # b"": drop silently; bytes: a COOKIE to send
                    if reply:
                        self.stats.cookies_sent += 1
                        self.send_ike(reply, addr, on_4500, dst)
                    else:
                        self.stats.half_open_dropped += 1
                    return None
            session = IkeSessionV2.respond(
                configurations=configs,
                local_addr=local,
                remote_addr=addr,
                random=self.random,
                global_config=self.global_config,
                wall_clock=_utc_now,
                pools=self.pools,
                unique_check=self._v2_unique,
            )
            self._announce_to(session)
        elif version == 1:
            from ..ike.v1.session import IkeSessionV1

            session = IkeSessionV1.respond(
                configurations=configs,
                local_addr=local,
                remote_addr=addr,
                random=self.random,
                global_config=self.global_config,
                wall_clock=_utc_now,
                pools=self.pools,  # Mode Config after XAUTH
            )
        else:
            self.stats.malformed += 1
            return None
        proto = SessionProtocol(self, session, getattr(session, "name", None) or configs[0].name)
        self.sessions.add(proto)
        self._half_open.add(proto)
        return proto

    _cookie_secret_state: Any = None

    def _cookie_state(self) -> Any:
        if self._cookie_secret_state is None:
            try:
                from ..ike.cookies import CookieJar

                self._cookie_secret_state = CookieJar(random=self.random)
            except Exception:
                self._cookie_secret_state = False
        return self._cookie_secret_state or None

    def _index(self, proto: SessionProtocol) -> None:
        """Route the session's current IKE SPIs to it and stop routing the
        ones it no longer has (IKE SAs rekeyed away).  Called by
        :meth:`SessionProtocol.process` after every input, timer and request,
        once its output is sent.  A session already forgotten (closed by the
        datagram just processed) is not re-added."""
        if proto not in self.sessions:
            return
        s = proto.session
        spis = self._spis_of.setdefault(proto, set())
        pairs = getattr(s, "cookie_pairs", None)  # IKEv1: CKY-I + CKY-R
        current = set(pairs) if pairs is not None else {
            spi
            for spi in (getattr(s, "spi_i", None), getattr(s, "spi_r", None), *getattr(s, "all_spis", ()))
            if spi and spi != bytes(8)
        }
        for spi in spis - current:
            if self._by_spi.get(spi) is proto:
                del self._by_spi[spi]
        for spi in current - spis:
            self._by_spi[spi] = proto
        spis.clear()
        spis.update(current)

    # ---------------------------------------------------------------- send

    def send_ike(self, data: bytes, addr: Address, use_4500: bool, src: str | None = None) -> None:
        """Send an IKE message to ``addr``; ``src``: the session's local
        address, the source when the socket is bound to the wildcard address
        (``IP_PKTINFO``; ignored otherwise)."""
        self.stats.ike_out += 1
        if use_4500 and self.natt_socket is not None:
            sock, data = self.natt_socket, NON_ESP_MARKER + data
        else:
            sock = self.ike_socket
        if src and getattr(sock, "pktinfo", False) and not is_wildcard(src):
            sock.sendto(data, addr, src)
        else:
            sock.sendto(data, addr)

    def send_esp(self, datagrams: Sequence[bytes], remote: Address, encap: bool, src: str | None = None) -> None:
        """``src``: the Child SA's local address, the source of the ESP when
        the socket that carries it (NAT-T or raw ESP) is bound to the wildcard
        address."""
        to = self._esp_route(remote, encap, src, len(datagrams))
        if to is not None:
            sock, dst, src = to
            if src:
                sock.send_batch(datagrams, dst, src)
            else:
                sock.send_batch(datagrams, dst)

    def send_esp_parts(self, heads: Sequence[bytes], bodies: Sequence[bytes], remote: Address, encap: bool,
                       src: str | None = None) -> None:
        """:meth:`send_esp` of the packets ``heads[i] + bodies[i]``
        (:meth:`~aioipsec.esp.EspSa.seal_batch_parts`): a socket that can
        send them gathered (``send_parts``) gets them so, others joined."""
        to = self._esp_route(remote, encap, src, len(bodies))
        if to is None:
            return
        sock, dst, src = to
        send_parts = getattr(sock, "send_parts", None)
        if send_parts is None:
            sock.send_batch(list(map(operator.add, heads, bodies)), dst, *((src,) if src else ()))
        elif src:
            send_parts(heads, bodies, dst, src)
        else:
            send_parts(heads, bodies, dst)

    def _esp_route(self, remote: Address, encap: bool, src: str | None, n: int) -> tuple[Any, Address, str | None] | None:
        """(socket, destination, source or None) for ``n`` ESP packets to
        ``remote``; None (counted as ``no_transport``) when no socket carries them."""
        if encap and self.natt_socket is not None:
            sock, dst = self.natt_socket, remote
        elif self.esp_socket is not None:
            sock, dst = self.esp_socket, (remote[0], 0)
        else:
            self.dataplane.stats.no_transport += n
            return None
        return sock, dst, src if src and getattr(sock, "pktinfo", False) and not is_wildcard(src) else None

    def send_ah(self, packets: Sequence[bytes], remote: Address) -> None:
        """Whole AH-protected IP packets (never encapsulated)."""
        if self.ah_socket is not None:
            # a raw socket ignores the port; in memory it names the AH "protocol"
            self.ah_socket.send_batch(packets, (remote[0], AH_MEMORY_PORT))
        else:
            self.dataplane.stats.no_transport += len(packets)

    def keepalive_peers(self) -> set[Address]:
        """Where NAT keepalives go: the peers of encapsulating Child SAs whose
        IKE SA found *this* end behind a NAT (RFC 3948 §4: the NATed peer
        keeps its mapping alive)."""
        peers = set()
        for p in self.dataplane.sad_in.values():
            if p.encap and p.owner is not None and _behind_nat(p.owner):
                peers.add(p.remote)
        return peers

    def _start_keepalives(self) -> None:
        if self._keepalive_task is None and self.natt_socket is not None and self._keepalive_interval > 0:
            self._keepalive_task = self.loop.create_task(self._keepalives())

    async def _keepalives(self) -> None:
        """RFC 3948 §4: a one-byte 0xFF datagram every 20 s (by default) to
        each peer while we are behind a NAT; received ones are ignored."""
        while True:
            await asyncio.sleep(self._keepalive_interval)
            if self.natt_socket is None:
                continue
            for peer in self.keepalive_peers():
                self.natt_socket.sendto(b"\xff", peer)
                self.stats.keepalives_out += 1

    # ---------------------------------------------------------------- sessions

    def initiate(self, name: str, child: str | None = None, *, remote: Address | None = None,
                 more_children: Sequence[str] = ()) -> SessionProtocol:
        """Start an IKE SA for connection ``name`` (and its first Child SA, or
        ``child``; then ``more_children`` on it).  Returns the first attempt:
        when it ends unanswered, up to ``keyingtries`` attempts follow, each
        a new session (:class:`~aioipsec.events.KeyingRetry`, and
        :class:`~aioipsec.events.KeyingFailed` when they end without an IKE
        SA); :meth:`stop_keying` ends them.  A new ``initiate`` of the same
        connection replaces the attempts of an earlier one."""
        conn = self.configurations[name]
        if remote is None:
            if not conn.remote_addrs:
                raise ValueError(f"connection {name} has no remote_addrs")
            remote = (conn.remote_addrs[0], conn.remote_port)
        if child is None and conn.children:
            child = next(iter(conn.children))
        children = list(dict.fromkeys([c for c in (child, *more_children) if c is not None]))
        earlier = self._keying.pop(name, None)
        if earlier is not None and earlier.handle is not None:
            earlier.handle.cancel()
        k = _Keying(name, children, remote, conn.keyingtries)
        try:
            proto = self._attempt(k, conn)
        except Exception:
            if earlier is not None:
                earlier.resolve(None)
            raise
        self._keying[name] = k
        if earlier is not None:
            earlier.resolve(proto)  # its waiters follow this initiation
        return proto

    def _attempt(self, k: _Keying, conn: ConnectionConfig) -> SessionProtocol:
        """One attempt of ``k``: a new session that initiates the IKE SA."""
        return self._start(k.config or conn, k.conn, k.remote, k.children, k)

    def _start(self, conn: ConnectionConfig, name: str, remote: Address, children: Sequence[str],
               k: _Keying | None = None, redirected: IkeRedirected | None = None) -> SessionProtocol:
        """A new initiator session of ``conn`` toward ``remote`` with the
        Child SAs ``children`` (the first one in IKE_AUTH); the attempt of
        ``k`` if given; following the redirect ``redirected`` if given."""
        local_ip = self.local_ip
        if is_wildcard(local_ip) and self._network is None:
            # bound to the wildcard address: from where the kernel routes to the peer
            local_ip = route_source(remote[0]) or local_ip
        local = (local_ip, self.ike_socket.local_addr[1])
        if conn.version == 1:
            from ..ike.v1.session import IkeSessionV1 as Session
        else:
            from ..ike.v2.session import IkeSessionV2 as Session  # type: ignore[assignment]
        session = Session(
            configuration=conn,
            is_initiator=True,
            local_addr=local,
            remote_addr=remote,
            random=self.random,
            wall_clock=_utc_now,
        )
        self._announce_to(session)
        if redirected is not None:  # RFC 5685: REDIRECTED_FROM, and the redirects so far (loop protection)
            session.redirected_from = redirected.from_addr
            session.redirect_history = redirected.redirects
        proto = SessionProtocol(self, session, name)
        self.sessions.add(proto)
        self._half_open.add(proto)
        if k is not None:
            k.proto = proto
            k.failure = ""
        now = self.loop.time()
        session.initiate(now, child=children[0] if children else None)
        for child in children[1:]:
            session.create_child_sa(child, now)
        proto.process()  # routes the session's SPIs here
        return proto

    # ---------------------------------------------------------------- redirect (RFC 5685)

    def _redirected(self, proto: SessionProtocol, ev: IkeRedirected) -> SessionProtocol | None:
        """The gateway redirected ``proto`` (:class:`IkeRedirected`): the
        connection is set up again toward ``ev.gateway`` with the same Child
        SAs, as a new IKE SA.  Redirected in IKE_SA_INIT / IKE_AUTH (the
        session closed itself): the attempt moves there (keyingtries goes on
        against the new gateway).  Redirected on an established IKE SA: the
        old one is deleted once the new one and its Child SAs are up (as a
        make-before-break reauthentication)."""
        conf = self.configurations.get(proto.name) or proto.session.config
        remote = (ev.gateway, conf.remote_port)
        children = [c for c in ev.children if c in conf.children]
        k = self._keying.get(proto.name)
        if k is not None and k.proto is not proto:
            k = None
        if k is not None:
            k.remote = remote
        try:
            new = self._start(conf, proto.name, remote, children, k, redirected=ev)
        except _RESTART_ERRORS as exc:
            ike_logger.error("%s: redirected to %s by %s, but the new IKE SA could not start: %s", proto.name,
                             ev.gateway, ev.peer, exc)
            if ev.exchange == "INFORMATIONAL":  # the established IKE SA stays: it rekeys again
                self._redirect_not_followed(proto, ev.gateway, f"the new IKE SA could not start: {exc}")
            return None
        ike_logger.info("%s: redirected to %s by %s (%s): new IKE SA %s_i with %s, %d Child SA(s)%s", proto.name,
                        ev.gateway, ev.peer, ev.exchange, new.session.spi_i.hex(), ev.gateway, len(children),
                        "; the old IKE SA goes once they are up" if ev.exchange == "INFORMATIONAL" else "")
        if ev.exchange == "INFORMATIONAL":
            done: asyncio.Future[SessionProtocol] = self.loop.create_future()
            r = _Reauth(proto, new, set(children), done, redirect=ev.gateway)
            self._reauths[new] = self._reauths[proto] = r
        return new

    def _redirect_not_followed(self, proto: SessionProtocol, gateway: str, why: str) -> None:
        """The REDIRECT of the established IKE SA ``proto`` to ``gateway`` is
        not followed after all: it rekeys and reauthenticates again (its
        timer re-armed)."""
        undo = getattr(proto.session, "redirect_not_followed", None)
        if undo is not None and undo(gateway, why, self.loop.time()):
            proto.transmit()

    # ---------------------------------------------------------------- reauthentication

    def reauthenticate(self, proto: SessionProtocol) -> asyncio.Future[SessionProtocol]:
        """IKEv2 reauthentication of ``proto`` now (what ``reauth_time``
        does): a future for the new session, set once it has replaced
        ``proto`` (its Child SAs up, the old IKE SA being deleted), failed
        when the new IKE SA could not be established.  ``LookupError`` when
        ``proto`` is not an established IKEv2 IKE SA we initiated.  With
        ``GlobalConfig.make_before_break = False`` the old IKE SA is deleted
        first and the new one initiated once it is gone (no traffic in
        between); ``stop_keying`` meanwhile fails the future ("stopped")."""
        s = proto.session
        if not hasattr(s, "reauthenticate") or not s.is_established:
            raise LookupError(f"{proto.name}: no established IKEv2 IKE SA to reauthenticate")
        if not s.is_initiator:
            raise LookupError(f"{proto.name}: only the initiator of the IKE SA reauthenticates it here")
        r = self._reauths.get(proto)
        if r is not None and r.old is proto:
            return r.done
        s.reauthenticate(self.loop.time())
        proto.process()  # ReauthRequired -> _start_reauth
        r = self._reauths.get(proto)
        if r is None:
            fut: asyncio.Future[SessionProtocol] = self.loop.create_future()
            fut.set_exception(RuntimeError(f"{proto.name}: the reauthentication could not start"))
            return fut
        return r.done

    def _start_reauth(self, proto: SessionProtocol, ev: ReauthRequired) -> None:
        """Make-before-break (charon's default ``make_before_break = yes``):
        a new IKE SA with the same configuration, no INITIAL_CONTACT, the
        same Child SAs and virtual IPs; the old one goes when they are up.
        With ``GlobalConfig.make_before_break = False`` break-before-make
        instead (:meth:`_break_before_make`)."""
        old = proto.session
        conn = self.configurations.get(proto.name) or old.config
        vips = list(ev.local_vips) if conn.vips and ev.local_vips else list(conn.vips)
        cfg = replace(conn, initial_contact=False, vips=vips)
        children = [c for c in ev.children if c in cfg.children]
        remote = (old.remote_addr[0], cfg.remote_port)
        done: asyncio.Future[SessionProtocol] = self.loop.create_future()
        if not getattr(self.global_config, "make_before_break", True):
            self._break_before_make(proto, ev, _Reauth(proto, None, set(children), done, (cfg, remote, children)))
            return
        try:
            new = self._start(cfg, proto.name, remote, children)
        except _RESTART_ERRORS as exc:
            ike_logger.error("%s: reauthentication with %s could not start: %s", proto.name, remote[0], exc)
            return
        r = _Reauth(proto, new, set(children), done)
        self._reauths[new] = self._reauths[proto] = r
        ike_logger.info("%s: reauthenticating IKE SA %s_i %s_r with %s: new IKE SA %s_i, %d Child SA(s) again%s",
                        proto.name, ev.spi_i.hex(), ev.spi_r.hex(), remote[0], new.session.spi_i.hex(),
                        len(children), f", virtual IP {', '.join(vips)} again" if ev.local_vips else "")

    def _break_before_make(self, proto: SessionProtocol, ev: ReauthRequired, r: _Reauth) -> None:
        """Break-before-make (charon's ``make_before_break = no``, its
        default before 6.0, for peers that mishandle two IKE SAs at once):
        delete the old IKE SA (INFORMATIONAL; its Child SAs go with it) now;
        once it is closed -- the peer answered, or the delete went
        unanswered (charon: "trying to reestablish IKE_SA anyway") -- the
        connection is initiated again (:meth:`_reestablish`).  No traffic
        passes in between."""
        assert r.restart is not None
        cfg, remote, children = r.restart
        self._reauths[proto] = r
        ike_logger.info("%s: reauthenticating IKE SA %s_i %s_r with %s break-before-make (make_before_break = "
                        "no): deleting it first, then a new IKE SA, %d Child SA(s) again%s; no traffic until then",
                        proto.name, ev.spi_i.hex(), ev.spi_r.hex(), remote[0], len(children),
                        f", virtual IP {', '.join(cfg.vips)} again" if ev.local_vips else "")
        proto.session.delete(self.loop.time())
        proto.process()

    def _reestablish(self, r: _Reauth, why: str) -> None:
        """Break-before-make, the old IKE SA gone (``why``): initiate the
        connection again with the Child SAs it had, under ``keyingtries``
        (an unanswered attempt is followed by another, as an ``up``; ``down``
        ends them)."""
        restart, r.restart = r.restart, None
        if restart is None or self._closed:
            return
        cfg, remote, children = restart
        name = r.old.name
        if name not in self.configurations:
            self._end_reauth(r, "the connection was removed")
            return
        if name in self._keying:
            # something else (an acquire, an ``up``) initiates it already: no second IKE SA
            self._end_reauth(r, "the connection is being initiated already")
            return
        k = _Keying(name, list(children), remote, cfg.keyingtries, config=cfg)
        try:
            new = self._attempt(k, cfg)
        except _RESTART_ERRORS as exc:
            self._end_reauth(r, f"could not start: {exc}")
            return
        self._keying[name] = k
        r.new = new
        if not new.session.is_closed:
            self._reauths[new] = r
        ike_logger.info("%s: old IKE SA with %s closed (%s): initiating the new IKE SA %s_i, %d Child SA(s)",
                        name, remote[0], why, new.session.spi_i.hex(), len(children))

    def _reauth_event(self, r: _Reauth, proto: SessionProtocol, ev: IpsecEvent) -> None:
        if proto is r.old:
            if isinstance(ev, IkeSaDeleted) and getattr(proto.session, "is_closed", False):
                self._reauths.pop(proto, None)  # the old one is gone (by us, the peer or expiry)
                if r.restart is not None and r.new is None:
                    # after every listener saw it go (status, updown: down, then up)
                    self.loop.call_soon(self._reestablish, r, ev.reason)
            return
        if isinstance(ev, ChildSaInstalled) and ev.rekeyed_from is None:
            r.pending.discard(ev.name)
        elif isinstance(ev, NegotiationFailed) and proto.session.is_established:
            r.pending.clear()  # a Child SA failed: charon too goes on with the ones that came up
        elif isinstance(ev, IkeSaDeleted) and getattr(proto.session, "is_closed", False):
            self._end_reauth(r, f"the new IKE SA failed: {ev.reason}")
            return
        if not r.pending and proto.session.is_established and not r.done.done():
            self._finish_reauth(r)

    def _finish_reauth(self, r: _Reauth) -> None:
        """The new IKE SA and its Child SAs are up: delete the old IKE SA
        (INFORMATIONAL; its Child SAs go with it)."""
        assert r.new is not None
        self._reauths.pop(r.new, None)
        old = r.old.session
        ike_logger.info("%s: %s: IKE SA %s_i %s_r replaces %s_i %s_r with %s%s", r.new.name,
                        f"redirected to {r.redirect}" if r.redirect else "reauthenticated", r.new.session.spi_i.hex(),
                        r.new.session.spi_r.hex(), old.spi_i.hex(), old.spi_r.hex(), old.peer,
                        "" if old.is_closed else ", deleting the old one")
        if not old.is_closed:
            old.delete(self.loop.time())
            r.old.process()
        r.done.set_result(r.new)
        ev, r.redirect_next = r.redirect_next, None
        if ev is not None and not self._closed and not r.new.session.is_closed:
            # the gateway redirected the new IKE SA meanwhile: follow now, with its Child SAs as they are
            children = tuple(dict.fromkeys(c.name for c in r.new.session.children.values() if c.is_active))
            self._redirected(r.new, replace(ev, children=children))

    def _end_reauth(self, r: _Reauth, why: str) -> None:
        if r.new is not None:
            self._reauths.pop(r.new, None)
        if self._reauths.get(r.old) is r:
            del self._reauths[r.old]
        bbm = r.restart is not None or r.old.session.is_closed
        r.restart = None
        if bbm:  # break-before-make: the old IKE SA is deleted (or being deleted)
            ike_logger.warning("%s: reauthentication (break-before-make) with %s ended (%s); the old IKE SA "
                               "%s_i %s_r is deleted: the connection is down%s", r.old.name, r.old.session.peer, why,
                               r.old.session.spi_i.hex(), r.old.session.spi_r.hex(),
                               " (keyingtries: trying again)" if self.keying(r.old.name) else "")
        elif r.redirect:
            ike_logger.warning("%s: the IKE SA with %s (redirected there by %s) failed (%s); the old IKE SA %s_i %s_r "
                               "stays", r.old.name, r.redirect, r.old.session.peer, why, r.old.session.spi_i.hex(),
                               r.old.session.spi_r.hex())
            self._redirect_not_followed(r.old, r.redirect, f"the new IKE SA failed: {why}")
        else:
            ike_logger.warning("%s: reauthentication with %s failed (%s); the old IKE SA %s_i %s_r stays until it "
                               "expires", r.old.name, r.old.session.peer, why, r.old.session.spi_i.hex(),
                               r.old.session.spi_r.hex())
        if not r.done.done():
            r.done.set_exception(RuntimeError(f"{r.old.name}: reauthentication failed: {why}"))
            r.done.exception()  # retrieved: nobody may be waiting for it

    def create_child(self, proto: SessionProtocol, child: str) -> None:
        """Negotiate Child SA ``child`` on ``proto``'s IKE SA (queued while it
        is being established; a further attempt of it asks for it too)."""
        k = self._keying.get(proto.name)
        if k is not None and k.proto is proto and child not in k.children:
            k.children.append(child)
        proto.session.create_child_sa(child, self.loop.time())
        proto.process()

    def stop_keying(self, name: str) -> bool:
        """End the attempts of connection ``name``'s initiation (``down``):
        no further attempt starts; the one under way is left to the caller.
        True when there were attempts."""
        stopped = False
        for r in {id(r): r for r in self._reauths.values()}.values():
            if r.old.name == name and r.restart is not None:
                self._end_reauth(r, "stopped")  # break-before-make: the old IKE SA goes, no new one
                stopped = True
        k = self._keying.pop(name, None)
        if k is None:
            return stopped
        if k.handle is not None:
            k.handle.cancel()
        k.resolve(None)
        if k.attempt > 1 or k.tries != 1:
            ike_logger.info("%s: no more attempts to establish the IKE SA with %s (stopped at %s)",
                            name, k.remote[0], _tries_text(k))
        return True

    def keying(self, name: str) -> bool:
        """An initiation of connection ``name`` is still making attempts
        (keyingtries): a failed attempt is followed by another."""
        return name in self._keying

    def next_attempt(self, name: str, proto: SessionProtocol) -> asyncio.Future[SessionProtocol | None]:
        """The attempt that follows ``proto`` in connection ``name``'s
        initiation (keyingtries): a future set with its session when the
        endpoint starts it (at once when it has), or with None when none
        follows (the initiation ended, gave up or had a permanent error).  A
        new :meth:`initiate` of ``name`` counts as the next attempt."""
        fut: asyncio.Future[SessionProtocol | None] = self.loop.create_future()
        k = self._keying.get(name)
        if k is None:
            fut.set_result(None)
        elif k.proto is not proto:
            fut.set_result(k.proto)
        elif k.failure:
            fut.set_result(None)  # a permanent error: never retried
        else:
            k.waiters.append(fut)
            fut.add_done_callback(lambda f: f in k.waiters and k.waiters.remove(f))  # a waiter that gave up
        return fut

    def _end_keying(self, k: _Keying) -> None:
        """``k`` makes no further attempt: out of the keying state, its
        waiters told."""
        if self._keying.get(k.conn) is k:
            del self._keying[k.conn]
        k.resolve(None)

    def keying_attempt(self, proto: SessionProtocol) -> tuple[int, int] | None:
        """(attempt, keyingtries) when ``proto`` is an attempt of an initiation
        not established yet, else None (``status``)."""
        k = self._keying.get(proto.name)
        if k is None or k.proto is not proto:
            return None
        return k.attempt, k.tries

    def _keying_event(self, k: _Keying, proto: SessionProtocol, ev: IpsecEvent) -> None:
        """Follow an attempt: established ends the initiation; closed
        unanswered starts the next attempt or gives up; closed by a permanent
        error gives up (charon retries only "peer not responding")."""
        if isinstance(ev, IkeSaEstablished):
            self._end_keying(k)
            if k.attempt > 1:
                ike_logger.info("%s: IKE SA with %s established on %s", k.conn, k.remote[0], _tries_text(k))
        elif isinstance(ev, AuthFailed):
            k.failure = f"authentication failed at {ev.step}: {ev.reason}"
            k.resolve(None)
        elif isinstance(ev, NegotiationFailed):
            if ev.notify != "TIMEOUT" and not k.failure:
                k.failure = f"{ev.exchange} failed: {ev.notify or 'error'} {ev.reason}".strip()
                k.resolve(None)
        elif isinstance(ev, IkeSaDeleted) and getattr(proto.session, "is_closed", False):
            if self._closed:
                return
            if ev.reason == "deleted locally" and not k.failure:
                self._end_keying(k)  # our own delete: whoever did it knows (no failure, no event)
                ike_logger.debug("%s: initiation ended by a local delete on %s", k.conn, _tries_text(k))
                return
            if ev.reason == "retransmits exhausted" and not k.failure:
                if k.tries == 0 or k.attempt < k.tries:
                    k.handle = self.loop.call_soon(self._retry, k)
                    return
                reason = "peer not responding"
                ike_logger.warning("%s: establishing the IKE SA with %s failed, peer not responding: giving up "
                                   "after %d attempt%s (keyingtries = %d)", k.conn, k.remote[0], k.attempt,
                                   "" if k.attempt == 1 else "s", k.tries)
            else:
                reason = k.failure or ev.reason
                # the failure itself was reported (AuthFailed / NegotiationFailed, warnings): info here
                ike_logger.info("%s: establishing the IKE SA with %s failed on %s: %s; not trying again (a "
                                "permanent error: keyingtries repeats unanswered attempts only)",
                                k.conn, k.remote[0], _tries_text(k), reason)
            self._end_keying(k)
            self.loop.call_soon(self._emit, proto, KeyingFailed(k.conn, k.remote[0], k.attempt, k.tries, reason))

    def _retry(self, k: _Keying) -> None:
        k.handle = None
        if self._closed or self._keying.get(k.conn) is not k:
            return
        conn = self.configurations.get(k.conn)
        old = k.proto
        assert old is not None
        if conn is None:
            self._end_keying(k)
            ike_logger.warning("%s: no such connection any more (reloaded): no further attempt", k.conn)
            self._emit(old, KeyingFailed(k.conn, k.remote[0], k.attempt, k.tries, "connection removed"))
            return
        k.attempt += 1
        ike_logger.info("%s: peer %s not responding, trying again: %s", k.conn, k.remote[0], _tries_text(k))
        self._emit(old, KeyingRetry(k.conn, k.remote[0], k.attempt, k.tries))
        try:
            k.resolve(self._attempt(k, conn))
        except _RESTART_ERRORS as exc:
            self._end_keying(k)
            ike_logger.error("%s: attempt %d toward %s could not start: %s", k.conn, k.attempt, k.remote[0], exc)
            self._emit(old, KeyingFailed(k.conn, k.remote[0], k.attempt, k.tries, f"could not start: {exc}"))

    def _emit(self, proto: SessionProtocol, ev: IpsecEvent) -> None:
        """An endpoint event (not a session's) to the listeners."""
        for listener in self.event_listeners:
            try:
                listener(proto, ev)
            except Exception:
                logger.exception("event listener failed")

    def retry_held(self, settled: set[tuple[bytes, int]] | None = None) -> None:
        """The revocation fetcher finished the certificates ``settled``
        (``RevocationFetcher.on_settled``): every session holding a handshake
        message for one of them processes it again now and sends what that
        produced, as after a received datagram (no wait for a retransmission)."""
        now = self.loop.time()
        for proto in list(self.sessions):
            retry = getattr(proto.session, "retry_held", None)
            if retry is None:
                continue
            try:
                if retry(now, settled):
                    proto.process()
            except Exception:  # a session must never break the others
                logger.exception("session %s failed on its held handshake message", proto.name)

    def find_session(self, conn: str) -> SessionProtocol | None:
        for p in self.sessions:
            if p.name == conn and not getattr(p.session, "is_closed", False):
                return p
        return None

    def acquire(self, conn: str, child: str, selector: TrafficSelector, *, remote: Address | None = None) -> None:
        """A trap policy saw a first packet: negotiate (the seed's first ping).
        ``remote``: the peer when the connection has no ``remote_addrs``."""
        ike_logger.info("acquire: %s/%s triggered by %s", conn, child, selector)
        proto = self.find_session(conn)
        if proto is None:
            self.initiate(conn, child, remote=None if self.configurations[conn].remote_addrs else remote)
        else:
            if not any(c.name == child for c in proto.children.values()):
                self.create_child(proto, child)

    def handle_session_event(self, proto: SessionProtocol, ev: IpsecEvent) -> None:
        k = self._keying.get(proto.name)
        if k is not None and k.proto is proto:
            self._keying_event(k, proto, ev)
        r = self._reauths.get(proto)
        if isinstance(ev, ReauthRequired):
            if r is None and not self._closed:
                self._start_reauth(proto, ev)
        elif isinstance(ev, IkeRedirected):
            busy = r is not None and r.old is proto
            later = r is not None and r.new is proto and ev.exchange == "INFORMATIONAL" and not busy
            if later and not self._closed:
                # the new IKE SA of a reauthentication (or of an earlier
                # redirect), its Child SAs not all up yet: following now would
                # drop that replacement (the old IKE SA never deleted)
                assert r is not None
                ike_logger.info("%s: REDIRECT to %s by %s: followed once this IKE SA has replaced %s_i (%s)",
                                proto.name, ev.gateway, ev.peer, r.old.session.spi_i.hex(),
                                f"redirected to {r.redirect}" if r.redirect else "reauthentication")
                r.redirect_next = ev
            elif busy and not self._closed:
                # a reauthentication (or an earlier redirect) of this IKE SA is
                # under way: a second replacement would duplicate its Child SAs
                ike_logger.warning("%s: REDIRECT to %s by %s not followed: the IKE SA is being replaced already "
                                   "(%s)", proto.name, ev.gateway, ev.peer,
                                   f"redirected to {r.redirect}" if r and r.redirect else "reauthentication")
                self._redirect_not_followed(proto, ev.gateway, "the IKE SA is being replaced already")
            new = None if self._closed or busy or later else self._redirected(proto, ev)
            if new is not None and r is not None and r.new is proto and ev.exchange != "INFORMATIONAL":
                # the new IKE SA of a reauthentication was redirected: the one it goes on with replaces it
                self._reauths.pop(proto, None)
                r.new = new
                self._reauths[new] = r
        elif r is not None:
            self._reauth_event(r, proto, ev)
        if isinstance(ev, ChildSaInstalled):
            proto.close_pending.pop(ev.name, None)
            self.dataplane.install(proto, ev)
        elif isinstance(ev, ChildSaDeleted):
            self.dataplane.remove(ev)
            self._child_deleted(proto, ev)
        elif isinstance(ev, PeerAddressChanged):
            encap = getattr(ev, "encap", None)
            moved = self.dataplane.peer_moved(proto, ev.new_addr, encap)
            logger.info("%s: peer moved %s[%d] -> %s[%d] (%s): %d Child SA(s) follow",
                        proto.name, ev.old_addr[0], ev.old_addr[1], ev.new_addr[0], ev.new_addr[1],
                        "NAT mapping changed" if encap is None else
                        f"MOBIKE, UDP encapsulation {'on' if encap else 'off'}", moved)
        elif isinstance(ev, LocalAddressChanged):
            moved = self.dataplane.local_moved(proto, ev.new_addr, ev.encap)
            logger.info("%s: we moved %s[%d] -> %s[%d] (MOBIKE update answered by %s, UDP encapsulation %s): "
                        "%d Child SA(s) follow", proto.name, ev.old_addr[0], ev.old_addr[1], ev.new_addr[0],
                        ev.new_addr[1], ev.peer, "unchanged" if ev.encap is None else ("on" if ev.encap else "off"),
                        moved)
            if _behind_nat(proto):
                self._start_keepalives()
        elif isinstance(ev, IkeSaEstablished):
            self._half_open.discard(proto)
            if ev.version == 1:
                if not ev.initiator and self._v1_renewal(proto):
                    return  # the session it joined reports it
                self._v1_unique(proto)
            if ev.nat_local:
                self._start_keepalives()
        elif isinstance(ev, (AuthFailed, NegotiationFailed, DpdTimeout)):
            self.dataplane.acquire_failed(proto.name)
            if isinstance(ev, DpdTimeout):
                self._dpd_action(proto)
        elif isinstance(ev, IkeSaDeleted) and getattr(proto.session, "is_closed", False):
            # a Child SA being negotiated on it is gone with it (no failure event for that)
            self.dataplane.acquire_failed(proto.name)
            closed, proto.close_pending = proto.close_pending, {}
            if ev.reason == "deleted by peer" and closed:
                self.loop.call_soon(self._close_action, proto, closed, True)
        for listener in self.event_listeners:
            try:
                listener(proto, ev)
            except Exception:
                logger.exception("event listener failed")

    # ---------------------------------------------------------------- close_action

    def _child_config(self, proto: SessionProtocol, child: str) -> tuple[str, Any]:
        """(connection name, child config or None) of ``proto``'s child ``child``;
        the endpoint's configurations win (a reload replaces them)."""
        s = proto.session
        conn = getattr(s, "name", None) or proto.name
        cfg = self.configurations.get(conn) or getattr(s, "config", None) or getattr(s, "cfg", None)
        return conn, (cfg.children.get(child) if cfg is not None else None)

    def _child_deleted(self, proto: SessionProtocol, ev: ChildSaDeleted) -> None:
        """swanctl ``close_action``: only when the *peer* closes the Child SA
        (reason ``deleted by peer``) or its IKE SA (see handle_session_event);
        never on our own delete, a rekey, an expiry or a dead peer."""
        if ev.reason not in ("deleted by peer", "ike sa deleted"):
            return
        _conn, cfg = self._child_config(proto, ev.name)
        if cfg is None or cfg.close_action == "none":
            return
        # the installed event (still in proto.children: the protocol pops it after this)
        proto.close_pending[ev.name] = proto.children.get(ev.spi_in)
        if ev.reason == "deleted by peer":
            self.loop.call_soon(self._close_action, proto, {ev.name: proto.close_pending[ev.name]}, False)

    def _close_action(self, proto: SessionProtocol, children: dict[str, ChildSaInstalled | None], ike_gone: bool) -> None:
        if self._closed:
            return
        if not ike_gone and getattr(proto.session, "is_closed", False):
            return  # the IKE SA went too: if the peer deleted it, its own close_action covers this child
        peer = proto.remote_addr
        start: list[str] = []
        for name, installed in children.items():
            conn, cfg = self._child_config(proto, name)
            if cfg is None:
                continue
            what = "IKE SA" if ike_gone else "CHILD_SA"
            ike_logger.info("%s: %s %s closed by peer %s, close_action = %s", conn, what, name, peer[0], cfg.close_action)
            if cfg.close_action == "trap":
                if any(t.conn == conn and t.child == name for t in self.dataplane.traps):
                    continue
                local_ts = list(cfg.local_ts) or (list(installed.local_ts) if installed else [])
                remote_ts = list(cfg.remote_ts) or (list(installed.remote_ts) if installed else [])
                self.dataplane.add_trap(conn, name, local_ts, remote_ts, remote=peer)
            elif cfg.close_action == "start":
                start.append(name)
        if not start:
            return
        conn = getattr(proto.session, "name", None) or proto.name
        now = self.loop.time()
        try:
            if not ike_gone:
                for name in start:
                    proto.session.create_child_sa(name, now)
                proto.process()
                return
            target = self.find_session(conn)
            if target is None:
                conf = self.configurations.get(conn)
                remote = None if conf is not None and conf.remote_addrs else peer
                self.initiate(conn, start[0], remote=remote, more_children=start[1:])  # keyingtries: a new budget
                return
            for name in start:
                self.create_child(target, name)
        except Exception as exc:
            ike_logger.error("%s: close_action = start toward %s failed: %s", conn, peer[0], exc)

    # ---------------------------------------------------------------- dpd_action

    def _dpd_action(self, proto: SessionProtocol) -> None:
        """swanctl ``dpd_action`` of the Child SAs of an IKE SA whose peer was
        declared dead (its IKE SA is being deleted): ``restart`` initiates
        them again at once, with the connection's whole ``keyingtries``
        budget (charon re-establishes the IKE SA); ``trap`` installs a trap
        policy so the next matching packet negotiates; ``clear``: nothing."""
        installed: dict[str, ChildSaInstalled] = {}
        for ev in proto.children.values():
            installed.setdefault(ev.name, ev)
        restart: list[str] = []
        peer = proto.remote_addr
        for name, ev in installed.items():
            conn, cfg = self._child_config(proto, name)
            if cfg is None or cfg.dpd_action == "clear":
                continue
            ike_logger.info("%s: CHILD_SA %s with dead peer %s, dpd_action = %s", conn, name, peer[0], cfg.dpd_action)
            if cfg.dpd_action == "restart":
                restart.append(name)
            elif cfg.dpd_action == "trap" and not any(t.conn == conn and t.child == name for t in self.dataplane.traps):
                self.dataplane.add_trap(conn, name, list(cfg.local_ts) or list(ev.local_ts),
                                        list(cfg.remote_ts) or list(ev.remote_ts), remote=peer)
        if restart:
            self.loop.call_soon(self._dpd_restart, proto, restart, peer)

    def _dpd_restart(self, proto: SessionProtocol, children: list[str], peer: Address) -> None:
        if self._closed:
            return
        conn = getattr(proto.session, "name", None) or proto.name
        try:
            target = self.find_session(conn)
            if target is not None and target is not proto:
                # the peer came back already (it initiated): the children go onto its IKE SA
                for name in children:
                    if not any(c.name == name for c in target.children.values()):
                        self.create_child(target, name)
                return
            if target is proto and not getattr(proto.session, "is_closed", False):
                proto.session.delete(self.loop.time())
                proto.process()
            conf = self.configurations.get(conn)
            remote = None if conf is not None and conf.remote_addrs else (peer[0], conf.remote_port if conf else 500)
            self.initiate(conn, children[0], remote=remote, more_children=children[1:])
        except (ValueError, KeyError, OSError) as exc:
            ike_logger.error("%s: dpd_action = restart toward %s failed: %s", conn, peer[0], exc)

    def forget(self, proto: SessionProtocol) -> None:
        self.sessions.discard(proto)
        self._half_open.discard(proto)
        for spi in self._spis_of.pop(proto, set()):
            if self._by_spi.get(spi) is proto:
                del self._by_spi[spi]
        for key in [k for k, v in self._by_init.items() if v is proto]:
            del self._by_init[key]
        self.dataplane.remove_owner(proto)
        proto.cancel_timer()

    # ---------------------------------------------------------------- close

    async def close(self, *, delete: bool = True, timeout: float = 3.0) -> None:
        """Delete every IKE SA (unless ``delete=False``), stop timers and tasks,
        close the sockets."""
        if self._closed:
            return
        self._closed = True
        for name in list(self._keying):
            self.stop_keying(name)
        if delete:
            pending = [p.close(timeout) for p in list(self.sessions) if getattr(p.session, "is_established", False)]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for p in list(self.sessions):
            p._finish(None)
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            try:
                await self._keepalive_task
            except (asyncio.CancelledError, Exception):
                pass
        await self.dataplane.close()
        for s in (self.ike_socket, self.natt_socket, self.esp_socket, self.ah_socket):
            if s is not None:
                s.close()

