"""``aioipsec daemon -c FILE``: a site-to-site gateway from a config file.

Creates the TUN device (tunnel-mode children), installs routes for the remote
selectors through it (removed on exit), listens on 500/4500, starts children
with ``start_action = "start"``, installs trap policies for ``"trap"``, and
serves the control socket (:mod:`aioipsec.control`).  SIGTERM/SIGINT delete
the SAs cleanly; SIGHUP re-reads the file (changes apply to new SAs).

Logging (:mod:`aioipsec.logging`): ``-v`` one line per exchange step for every
group, ``-vv`` details, ``--debug ike=2,esp=1`` per group like charon's
``--debug-ike``; default: IKE steps and daemon events, warnings otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .asyncio.netwatch import ROAM_DELAY
from .config_file import Configuration, load_config
from .errors import ConfigError, LocalProtocolError
from .netutil import interface_of, route_source
from .selectors import TrafficSelector

logger = logging.getLogger("aioipsec.daemon")


def _route_source(remote: str) -> str:
    """:func:`netutil.route_source`, raising where there is no route: the
    daemon cannot start without a local address."""
    source = route_source(remote)
    if source is None:
        raise OSError(f"no route to {remote}: no local address to start from")
    return source


TRANSPORT_TABLE = 161
"""Routing table (and rule priority) for transport-mode peers through the TUN device."""
BYPASS_MARK = 0xA1
"""Firewall mark of the daemon's own sockets: they skip :data:`TRANSPORT_TABLE`."""


def route_prefixes(ts: TrafficSelector) -> list[str]:
    """The CIDR prefixes a route for selector ``ts`` needs: one for a subnet
    or an address, the minimal covering set for a range (``ip route`` takes
    prefixes only).  Protocol and ports are ignored: routes are per address."""
    return [str(net) for net in ipaddress.summarize_address_range(ts.start_addr, ts.end_addr)]


UPDOWN_TIMEOUT = 10.0
"""Seconds an ``updown`` run may take before it is killed (with its process group)."""
UPDOWN_OUTPUT_LINES = 50
"""Lines of an ``updown`` run's output logged (the rest is read and dropped)."""
_IPPROTO_ICMP, _IPPROTO_ICMPV6 = 1, 58


def _subnet(ts: TrafficSelector) -> str | None:
    """``addr/prefixlen`` when the selector's range is exactly one prefix
    (strongSwan's ``to_subnet``), else None (the variable is left out)."""
    nets = route_prefixes(ts)
    return nets[0] if len(nets) == 1 else None


def _updown_port(me: TrafficSelector, other: TrafficSelector, local: bool) -> int:
    """charon's ``get_port``: the selector's first port; for ICMP the type
    (local) or code (remote) out of the port field (RFC 4301 encoding)."""
    if max(me.proto, other.proto) in (_IPPROTO_ICMP, _IPPROTO_ICMPV6):
        port = max(me.start_port, other.start_port)
        return port >> 8 if local else port & 0xFF
    return me.start_port if local else other.start_port


def updown_envs(
    up: bool,
    ev: Any,
    *,
    connection: str,
    me: str,
    peer: str,
    peer_port: int,
    my_id: str,
    peer_id: str,
    reqid: int,
    uniqueid: int,
    interface: str,
    tun_interface: str | None = None,
    xauth_id: str | None = None,
    local_vips: tuple[str, ...] = (),
    remote_vips: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    path: str | None = None,
) -> list[dict[str, str]]:
    """The environments of one ``updown`` event of the Child SA installed by
    ``ev`` (a :class:`~aioipsec.events.ChildSaInstalled`): one per pair of
    local and remote selector, as charon's updown plugin runs the script
    (``PLUTO_*`` names and verbs of its ``invoke_once``).  Only addresses,
    identities, selectors and names: never key material.

    ``connection`` is what charon puts in ``PLUTO_CONNECTION``: the child's
    name.  ``PLUTO_VERB`` is ``up-client`` / ``down-client``, ``-host`` when
    the local selector is our own (IKE) address alone (transport mode, or a
    host-to-host tunnel), with ``-v6`` for IPv6 (of ``me`` for a host, of the
    selector otherwise).

    ``interface`` is charon's ``PLUTO_INTERFACE``: the outer interface, the
    one that holds ``me`` (``unknown`` if none does); ``tun_interface`` our
    own ``PLUTO_TUN_INTERFACE``, the TUN device the tunnel's cleartext goes
    through (strongSwan's kernel-libipsec exports none; left out without
    one).  ``xauth_id`` is ``PLUTO_XAUTH_ID``: the user name the peer passed
    IKEv1 XAUTH with, or its IKEv2 EAP identity (on the gateway, as charon's
    ``COND_XAUTH_AUTHENTICATED`` / ``COND_EAP_AUTHENTICATED``)."""
    base = {"PATH": path if path is not None else os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    me_ip = ipaddress.ip_address(me)
    out = []
    for lts in ev.local_ts:
        for rts in ev.remote_ts:
            is_host = lts.start == lts.end and lts.version == me_ip.version and lts.start == int(me_ip)
            v6 = me_ip.version == 6 if is_host else lts.version == 6
            env = dict(base)
            env["PLUTO_VERSION"] = "1.1"
            env["PLUTO_VERB"] = f"{'up' if up else 'down'}-{'host' if is_host else 'client'}{'-v6' if v6 else ''}"
            env["PLUTO_CONNECTION"] = connection
            env["PLUTO_INTERFACE"] = interface
            if tun_interface is not None:
                env["PLUTO_TUN_INTERFACE"] = tun_interface
            env["PLUTO_REQID"] = str(reqid)
            env["PLUTO_PROTO"] = ev.protocol
            env["PLUTO_UNIQUEID"] = str(uniqueid)
            env["PLUTO_ME"] = me
            env["PLUTO_MY_ID"] = my_id
            mine = _subnet(lts)
            if mine is not None:
                env["PLUTO_MY_CLIENT"] = mine
            env["PLUTO_MY_PORT"] = str(_updown_port(lts, rts, True))
            env["PLUTO_MY_PROTOCOL"] = str(lts.proto)
            env["PLUTO_PEER"] = peer
            env["PLUTO_PEER_ID"] = peer_id
            theirs = _subnet(rts)
            if theirs is not None:
                env["PLUTO_PEER_CLIENT"] = theirs
            env["PLUTO_PEER_PORT"] = str(_updown_port(lts, rts, False))
            env["PLUTO_PEER_PROTOCOL"] = str(rts.proto)
            if xauth_id is not None:
                env["PLUTO_XAUTH_ID"] = xauth_id
            for side, vips in (("MY", local_vips), ("PEER", remote_vips)):
                n4 = n6 = 0
                for i, vip in enumerate(vips):
                    if i == 0:
                        env[f"PLUTO_{side}_SOURCEIP"] = vip  # legacy: the first one
                    if ipaddress.ip_address(vip).version == 4:
                        n4 += 1
                        env[f"PLUTO_{side}_SOURCEIP4_{n4}"] = vip
                    else:
                        n6 += 1
                        env[f"PLUTO_{side}_SOURCEIP6_{n6}"] = vip
            if ev.encap:
                env["PLUTO_UDP_ENC"] = str(peer_port)
            n4 = n6 = 0
            for server in dns:
                if ipaddress.ip_address(server).version == 4:
                    n4 += 1
                    env[f"PLUTO_DNS4_{n4}"] = server
                else:
                    n6 += 1
                    env[f"PLUTO_DNS6_{n6}"] = server
            out.append(env)
    return out


@dataclass(eq=False)
class _UpdownChild:
    """A Child SA with an ``updown`` command, from its first install to its
    deletion; rekeys keep it (their SAs join ``spis``)."""

    reqid: int
    argv: list[str]
    proto: Any
    connection: str
    key: tuple[str, str, str]
    """What its runs are serialised by: connection, child, peer."""
    ev: Any
    """The latest install (selectors, protocol, UDP encapsulation)."""
    spis: set[int] = field(default_factory=set)
    down: bool = False
    timeout: float | None = None
    """The child's ``updown_timeout``; None: :attr:`Daemon.updown_timeout`."""
    interface: str | None = None
    """PLUTO_INTERFACE as found for the up run; the down run reuses it (the
    address may be gone by then), as charon caches it per reqid."""
    xauth_id: str | None = None
    """PLUTO_XAUTH_ID of the up run, kept for the down run."""


class Daemon:
    updown_timeout: float = UPDOWN_TIMEOUT
    """Seconds an ``updown`` run may take (then it is killed and logged)."""

    def __init__(
        self,
        path: str,
        *,
        control: str | None = None,
        tun: bool = True,
        uvloop: bool | None = None,
        network: Any = None,
        inner: Any = None,
    ) -> None:
        """``network`` (a :class:`~aioipsec.asyncio.sockets.MemoryNetwork`)
        and ``inner`` (an inner transport) replace real sockets and the TUN
        device: a daemon inside a test."""
        self.path = path
        self.control_path = control
        self.use_tun = tun
        self.network = network
        self.inner = inner
        self.config: Configuration = load_config(path)
        self.endpoint: Any = None
        self.tun: Any = None
        self.routes: list[list[str]] = []
        self.vips: dict[str, Any] = {}
        """Virtual IPs assigned to us and added to the TUN device, with the
        session (SessionProtocol) that holds each."""
        self.control: Any = None
        self._stop = asyncio.Event()
        self._updown: dict[tuple[int, int], _UpdownChild] = {}
        """Child SAs with an updown command by (id of their session, inbound SPI)."""
        self._updown_last: dict[tuple[str, str, str], asyncio.Future[None]] = {}
        """The latest run per child and peer: the next one waits for it."""
        self._updown_tasks: set[asyncio.Future[None]] = set()
        self._updown_ids: dict[int, int] = {}
        """PLUTO_UNIQUEID per session (id of its SessionProtocol)."""
        self._updown_next = 1
        self._updown_next_uid = 1
        self.netwatch: Any = None
        """The rtnetlink watcher (:class:`~aioipsec.asyncio.netwatch.NetlinkWatcher`) while ``roam_events`` is on."""
        self.roamwatch: Any = None
        """Its debounce and roaming decision (:class:`~aioipsec.asyncio.netwatch.RoamWatch`)."""
        self._log_crls(self.config)
        from .asyncio.revocation_fetch import RevocationFetcher

        self.revocation = RevocationFetcher(timeout=self.config.daemon.fetch_timeout)
        """OCSP and CRL distribution point fetching for every certificate-authenticated remote."""
        self.revocation.configure(self.config.connections.values())

    @staticmethod
    def _log_crls(config: Configuration) -> None:
        """Which CRLs a (re)load read, as charon's credential loading lists
        them: issuer, CRL number, this and next update, entries (info); a
        stale one (past its next update) is a warning, as the revocation
        check will treat it so."""
        import datetime

        from .ike.auth import _crl_label

        now = datetime.datetime.now(datetime.UTC)
        files = config.crl_files if len(config.crl_files) == len(config.crls) else ["(no file)"] * len(config.crls)
        for crl, path in zip(config.crls, files, strict=True):
            nxt = crl.next_update_utc
            stale = nxt is not None and nxt < now
            (logger.warning if stale else logger.info)(
                "CRL loaded from %s: %s, %d revoked%s", path, _crl_label(crl), len(crl),
                " -- stale, its next update has passed" if stale else "")

    def _local_host(self) -> str:
        if self.config.daemon.address:
            return self.config.daemon.address
        for conn in self.config.connections.values():
            for a in conn.local_addrs:
                if a not in ("%any", "0.0.0.0", "::"):
                    return a
        for conn in self.config.connections.values():
            for a in conn.remote_addrs:
                if a not in ("%any", "%any6", "0.0.0.0", "::"):
                    return _route_source(a)
        # a road-warrior gateway: every address, each IKE SA at the one its
        # peer reached (the endpoint's sockets get each datagram's destination)
        return "0.0.0.0"

    async def start(self) -> None:
        from .asyncio.endpoint import Endpoint

        inner = self.inner
        self.revocation.start()
        # tunnel mode: the remote selectors are routed into the TUN device;
        # transport mode: the peer's own address is, by policy routing that the
        # daemon's marked sockets bypass (see _install_transport_policy)
        need_tun = any(
            ch.mode in ("tunnel", "transport") for c in self.config.connections.values() for ch in c.children.values()
        )
        if need_tun and self.use_tun and inner is None:
            from aioipsec_tun import TunTransport

            name = self.config.tun.get("name", "aioipsec0")
            self.tun = TunTransport(name, mtu=self.config.tun.get("mtu", 1400))
            inner = self.tun
            logger.info("TUN device %s up (mtu %d)", self.tun.name, self.tun.mtu)
            self._install_routes()
        host = self._local_host()
        dc = self.config.daemon
        self.endpoint = await Endpoint.create(
            host,
            configurations=list(self.config.connections.values()),
            inner=inner,
            global_config=self.config.global_config,
            network=self.network,
            port=dc.port,
            natt_port=dc.port_nat_t,
            keepalive_interval=dc.keep_alive,
            pools=list(self.config.pools.values()),
        )
        # a handshake held for a certificate status goes on as soon as it is fetched
        self.revocation.on_settled = self.endpoint.retry_held
        self.endpoint.event_listeners.append(self._log_event)
        self.endpoint.event_listeners.append(self._vip_event)
        self.endpoint.event_listeners.append(self._updown_event)
        if self.tun is not None:
            self._install_transport_policy()
        logger.info("listening on %s:%d and %s:%d", host, dc.port, host, dc.port_nat_t)
        self._roam_events()
        if self.control_path:
            from .control import ControlServer

            self.control = ControlServer(self, self.control_path)
            await self.control.start()
        for conn in self.config.connections.values():
            for child in conn.children.values():
                if child.start_action == "start":
                    self.up(conn.name, child.name)

    def _remote_nets(self, mode: str) -> list[tuple[str, int]]:
        """(prefix, IP version) of every remote selector of the children in
        ``mode``; a range selector (``a..b``) gives the fewest CIDR prefixes
        that cover it exactly (:func:`route_prefixes`).  Each prefix once."""
        nets: list[tuple[str, int]] = []
        seen: set[str] = set()
        for conn in self.config.connections.values():
            for child in conn.children.values():
                if child.mode != mode:
                    continue
                remote = list(child.remote_ts)
                if not remote:
                    # dynamic remote side of a gateway with pools: the leases
                    remote = [self._pool_ts(name) for name in conn.pools if name in self.config.pools]
                for ts in remote:
                    for net in route_prefixes(ts):
                        if net not in seen:
                            seen.add(net)
                            nets.append((net, ts.version))
        return nets

    def _pool_ts(self, name: str) -> TrafficSelector:
        from .ike.v2.pools import parse_pool_addrs

        first, last = parse_pool_addrs(self.config.pools[name].addrs)
        return TrafficSelector(int(first), int(last), first.version)

    def _install_routes(self) -> None:
        assert self.tun is not None
        for net, _version in self._remote_nets("tunnel"):
            self._run_route(["ip", "route", "replace", net, "dev", self.tun.name],
                            ["ip", "route", "del", net, "dev", self.tun.name])

    def _install_transport_policy(self) -> None:
        """Transport-mode children through the TUN device: the peer's address
        (the remote selectors) is routed into the TUN device in table
        :data:`TRANSPORT_TABLE`, which a rule applies to every packet *not*
        marked :data:`BYPASS_MARK`; the daemon marks its own IKE and ESP
        sockets, so they still reach the peer directly (what strongSwan gets
        from XFRM's per-socket bypass policies)."""
        assert self.tun is not None
        nets = self._remote_nets("transport")
        if not nets:
            return
        ep = self.endpoint
        for sock in (ep.ike_socket, ep.natt_socket, ep.esp_socket, getattr(ep, "ah_socket", None)):
            set_mark = getattr(sock, "set_mark", None)
            if set_mark is not None:
                set_mark(BYPASS_MARK)
        table = str(TRANSPORT_TABLE)
        for version in sorted({v for _n, v in nets}):
            fam = "-4" if version == 4 else "-6"
            rule = ["not", "fwmark", hex(BYPASS_MARK), "lookup", table, "pref", table]
            self._run_route(["ip", fam, "rule", "add", *rule], ["ip", fam, "rule", "del", *rule])
        for net, version in nets:
            fam = "-4" if version == 4 else "-6"
            self._run_route(["ip", fam, "route", "replace", net, "dev", self.tun.name, "table", table],
                            ["ip", fam, "route", "del", net, "dev", self.tun.name, "table", table])

    def _run_route(self, cmd: list[str], undo: list[str]) -> None:
        """:meth:`_run_ip`; on success ``undo`` is run at shutdown (:meth:`_remove_routes`)."""
        if self._run_ip(cmd):
            self.routes.append(undo)

    def _remove_routes(self) -> None:
        for cmd in self.routes:
            subprocess.run(cmd, capture_output=True)
        self.routes.clear()

    def _vip_event(self, proto: Any, ev: Any) -> None:
        """A virtual IP assigned to us goes onto the TUN device (so traffic
        into the tunnel leaves from it) while its IKE SA lives, like
        strongSwan's kernel interface installs it."""
        from .events import IkeSaDeleted, IkeSaEstablished

        if self.tun is None:
            return
        if isinstance(ev, IkeSaEstablished):
            for vip in ev.local_vips:
                if self.vips.get(vip) is proto:
                    continue
                self.vips[vip] = proto
                self._vip_addr("replace", vip)
        elif isinstance(ev, IkeSaDeleted) and getattr(proto.session, "is_closed", False):
            for vip in [v for v, p in self.vips.items() if p is proto]:
                self._del_vip(vip)

    def _del_vip(self, vip: str) -> None:
        self.vips.pop(vip, None)
        self._vip_addr("del", vip)

    def _vip_addr(self, op: str, vip: str) -> None:
        """``ip addr <op> <vip>/32 (or /128) dev <tun>``."""
        plen = 32 if ipaddress.ip_address(vip).version == 4 else 128
        self._run_ip(["ip", "addr", op, f"{vip}/{plen}", "dev", self.tun.name])

    def _run_ip(self, cmd: list[str]) -> bool:
        """One ``ip`` command (the ``subprocess.run`` seam of routes and
        addresses), logged; whether it succeeded."""
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            logger.info("%s", " ".join(cmd[1:]))
            return True
        logger.warning("%s failed: %s", " ".join(cmd), r.stderr.strip())
        return False

    # ------------------------------------------------------------------ updown

    def _updown_event(self, proto: Any, ev: Any) -> None:
        """strongSwan's updown plugin: a child's ``updown`` command runs when
        its Child SA is installed (up) and when it is deleted (down), not for
        a rekey (charon's ``child_updown`` fires for neither the new SA nor
        the replaced one), once per local/remote selector pair."""
        from .events import ChildSaDeleted, ChildSaInstalled, IkeSaDeleted

        if isinstance(ev, ChildSaInstalled):
            if ev.rekeyed_from is not None:
                rec = self._updown.get((id(proto), ev.rekeyed_from))
                if rec is not None and not rec.down:
                    rec.spis.add(ev.spi_in)
                    self._updown[(id(proto), ev.spi_in)] = rec
                    if ev.outbound:
                        rec.ev = ev
                return  # a rekey (or one of a child we never ran up for)
            conn, cfg = self.endpoint._child_config(proto, ev.name)
            if cfg is None or not getattr(cfg, "updown", None):
                return
            try:
                argv = shlex.split(cfg.updown)
            except ValueError as exc:
                logger.warning("%s: CHILD_SA %s: updown %r unusable: %s", proto.name, ev.name, cfg.updown, exc)
                return
            if not argv:
                return
            rec = _UpdownChild(self._updown_next, argv, proto, conn, (conn, ev.name, str(ev.remote_addr[0])), ev,
                               timeout=getattr(cfg, "updown_timeout", None))
            self._updown_next += 1
            rec.spis.add(ev.spi_in)
            self._updown[(id(proto), ev.spi_in)] = rec
            self._updown_run(rec, True)
        elif isinstance(ev, ChildSaDeleted):
            rec = self._updown.pop((id(proto), ev.spi_in), None)
            if rec is None:
                return
            rec.spis.discard(ev.spi_in)
            if not rec.spis and not rec.down:
                rec.down = True
                self._updown_run(rec, False)
        elif isinstance(ev, IkeSaDeleted) and getattr(proto.session, "is_closed", False):
            self._updown_all_down(proto)

    def _updown_all_down(self, proto: Any) -> None:
        """charon: an IKE SA going down takes its Child SAs down with it (the
        ones no ChildSaDeleted reported)."""
        for key, rec in list(self._updown.items()):
            if rec.proto is proto:
                del self._updown[key]
                if not rec.down:
                    rec.down = True
                    self._updown_run(rec, False)
        self._updown_ids.pop(id(proto), None)

    def _updown_run(self, rec: _UpdownChild, up: bool) -> None:
        """Build the environments now (the SA's state at the event) and queue
        the runs after the child's previous ones (up before down)."""
        proto = rec.proto
        s = proto.session
        info = getattr(proto, "ike_info", None)
        local = getattr(s, "local_addr", None) or rec.ev.local_addr
        remote = getattr(s, "remote_addr", None) or rec.ev.remote_addr
        uid = self._updown_ids.get(id(proto))
        if uid is None:
            uid = self._updown_ids[id(proto)] = self._updown_next_uid
            self._updown_next_uid += 1
        label = f"{rec.key[0]}/{rec.key[1]} with {remote[0]}"
        if up:
            # charon looks the interface up for the up run and caches it
            rec.interface = interface_of(str(local[0]))
            # PLUTO_XAUTH_ID: on the gateway, the IKEv2 EAP identity or the IKEv1 XAUTH user the peer
            # passed (charon's COND_EAP_AUTHENTICATED / COND_XAUTH_AUTHENTICATED), as the session put
            # them in its IkeSaEstablished (each None on a client or without EAP/XAUTH); not the IDi of a
            # second certificate/PSK round (RFC 4739): charon sets it only under those two conditions
            eap_id = getattr(info, "remote_eap_id", None)
            rec.xauth_id = eap_id if eap_id is not None else getattr(info, "remote_xauth_id", None)
        try:
            envs = updown_envs(
                up, rec.ev, connection=rec.ev.name, me=str(local[0]), peer=str(remote[0]), peer_port=int(remote[1]),
                my_id=str(info.local_id) if info else "", peer_id=str(info.remote_id) if info else "",
                reqid=rec.reqid, uniqueid=uid, interface=rec.interface or "unknown",
                tun_interface=self.tun.name if self.tun is not None else None, xauth_id=rec.xauth_id,
                local_vips=tuple(getattr(info, "local_vips", ()) or ()),
                remote_vips=tuple(getattr(info, "remote_vips", ()) or ()), dns=tuple(getattr(info, "dns", ()) or ()),
            )
        except Exception:
            logger.exception("%s: cannot build the updown environment", label)
            return
        prev = self._updown_last.get(rec.key)
        timeout = rec.timeout if rec.timeout is not None else self.updown_timeout
        task = asyncio.ensure_future(self._updown_chain(prev, rec.argv, envs, label, timeout))
        self._updown_last[rec.key] = task
        self._updown_tasks.add(task)

        def done(t: asyncio.Future[None]) -> None:
            self._updown_tasks.discard(t)
            if self._updown_last.get(rec.key) is t:
                del self._updown_last[rec.key]

        task.add_done_callback(done)

    async def _updown_chain(self, prev: asyncio.Future[None] | None, argv: list[str],
                            envs: list[dict[str, str]], label: str, timeout: float) -> None:
        if prev is not None:
            await asyncio.wait([prev])  # its own outcome is logged by it
        for env in envs:
            try:
                await self._updown_exec(argv, env, label, timeout)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: updown %s %s failed", label, env.get("PLUTO_VERB"), argv[0])

    async def _updown_exec(self, argv: list[str], env: dict[str, str], label: str, timeout: float) -> None:
        """One run: no shell, stdin from /dev/null, stdout and stderr logged
        line by line (``updown: ...``), killed after ``timeout`` seconds (the
        child's ``updown_timeout``, else :attr:`updown_timeout`)."""
        verb = env["PLUTO_VERB"]
        what = f"{label}: updown {verb} {argv[0]}"
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            logger.warning("%s could not be started: %s", what, exc.strerror or exc)
            return
        assert proc.stdout is not None
        stdout = proc.stdout

        async def read() -> None:
            n = 0
            while True:
                try:
                    line = await stdout.readline()
                except ValueError:  # a line past the stream limit: drop a chunk
                    await stdout.read(65536)
                    continue
                if not line:
                    return
                n += 1
                if n <= UPDOWN_OUTPUT_LINES:
                    logger.info("%s: updown: %s", label, line.decode(errors="replace").rstrip())

        try:
            await asyncio.wait_for(asyncio.gather(read(), proc.wait()), timeout)
        except TimeoutError:
            exited = proc.returncode
            try:
                os.killpg(proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            await proc.wait()
            if exited is None:
                logger.warning("%s did not finish within %gs: killed", what, timeout)
            else:
                logger.warning("%s exited with status %d but left its output open past %gs (a background "
                               "process?): its process group was killed", what, exited, timeout)
            return
        if proc.returncode == 0:
            logger.info("%s: done", what)
        elif proc.returncode < 0:
            logger.warning("%s killed by signal %d", what, -proc.returncode)
        else:
            logger.warning("%s failed with exit status %d", what, proc.returncode)

    async def _updown_drain(self) -> None:
        """Wait for the queued runs (each bounded by the timeout): the down
        runs of a shutdown finish before the daemon exits."""
        while self._updown_tasks:
            await asyncio.gather(*list(self._updown_tasks), return_exceptions=True)

    def _log_event(self, proto: Any, ev: Any) -> None:
        from .events import (
            AuthFailed,
            DpdTimeout,
            ExchangeStep,
            KeyingFailed,
            NegotiationFailed,
        )
        from .logging import describe_event

        if isinstance(ev, ExchangeStep):
            return  # the session logs its steps itself
        # describe_event never shows key fields (ChildSaInstalled carries the ESP keys)
        failed = (AuthFailed, NegotiationFailed, DpdTimeout)
        # a KeyingFailed after a permanent error repeats that error's warning:
        # a warning only when the attempts went unanswered
        giving_up = isinstance(ev, KeyingFailed) and ev.reason == "peer not responding"
        level = logging.WARNING if isinstance(ev, failed) or giving_up else logging.INFO
        logger.log(level, "%s: %s", getattr(proto, "name", "-"), describe_event(ev))

    def up(self, conn: str, child: str | None = None) -> str:
        if conn not in self.config.connections:
            raise KeyError(f"no connection named {conn}")
        existing = self.endpoint.find_session(conn)
        if existing is not None and not child:
            # `up NAME` on a connection that is up (or coming up): nothing new
            return f"{conn}: already {'up' if getattr(existing.session, 'is_established', False) else 'connecting'}"
        if existing is not None and child:
            self.endpoint.create_child(existing, child)  # a further attempt of a connecting IKE SA asks for it too
            return f"creating CHILD_SA {child} on existing IKE SA {conn}"
        self.endpoint.initiate(conn, child)
        return f"initiating {conn}"

    async def down(self, conn: str, child: str | None = None, timeout: float = 10.0) -> str:
        """Delete the connection's IKE SA; an initiation still being
        attempted (``keyingtries``) makes no further attempt.  With ``child``
        (``swanctl --terminate --child``): delete only that child's Child SAs
        (INFORMATIONAL / IKEv1 delete) and wait for them to go; the IKE SA stays."""
        if child is not None:
            return await self._down_child(conn, child, timeout)
        stopped = self.endpoint.stop_keying(conn)
        p = self.endpoint.find_session(conn)
        if p is None:
            return f"{conn}: no IKE SA" + ("; no further attempts" if stopped else "")
        await p.close()
        return f"{conn}: IKE SA deleted" + ("; no further attempts" if stopped else "")

    def _established(self, conn: str) -> Any:
        if conn not in self.config.connections:
            raise KeyError(f"no connection named {conn}")
        p = self.endpoint.find_session(conn)
        if p is None:
            raise LookupError(f"{conn}: no IKE SA")
        if not getattr(p.session, "is_established", False):
            raise LookupError(f"{conn}: the IKE SA is not established yet")
        return p

    def require_child(self, conn: str, child: str, error: type[Exception] = KeyError) -> None:
        """Raise ``error`` naming both when the (known) connection ``conn`` has
        no child ``child``: the one check the daemon's operations and the
        control commands share, each with its own exception type."""
        if child not in self.config.connections[conn].children:
            raise error(f"connection {conn} has no child named {child}")

    @staticmethod
    def _live_children(p: Any, name: str | None, *, installed_only: bool) -> list[Any]:
        """The ChildSaInstalled events of ``p``'s Child SAs (of ``name``) that
        are still in use: not replaced by a rekey, not being deleted; with
        ``installed_only`` not being rekeyed either."""
        out = []
        for spi, ev in sorted(p.children.items()):
            if name is not None and ev.name != name:
                continue
            c = p.session.children.get(spi)
            if c is None or getattr(c, "rekeyed", False):  # IKEv1 flags
                continue
            if installed_only and getattr(c, "rekeying", False):
                continue
            state = getattr(getattr(c, "state", None), "name", None)  # IKEv2 ChildState
            if state is not None and state not in (("INSTALLED",) if installed_only else ("INSTALLED", "REKEYING")):
                continue
            out.append(ev)
        return out

    def _watch(self, p: Any, match: Any) -> asyncio.Future[Any]:
        """A future for the first event of session ``p`` that ``match``es;
        it fails when a negotiation of ``p`` fails or its IKE SA is gone."""
        from .events import IkeSaDeleted, NegotiationFailed
        from .logging import describe_event

        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def listener(proto: Any, ev: Any) -> None:
            if proto is not p or fut.done():
                return
            if match(ev):
                fut.set_result(ev)
            elif isinstance(ev, NegotiationFailed):
                fut.set_exception(RuntimeError(f"{p.name}: {describe_event(ev)}"))
            elif isinstance(ev, IkeSaDeleted) and getattr(p.session, "is_closed", False):
                fut.set_exception(RuntimeError(f"{p.name}: the IKE SA was deleted"))

        listeners = self.endpoint.event_listeners
        listeners.append(listener)
        fut.add_done_callback(lambda _f: listeners.remove(listener) if listener in listeners else None)
        return fut

    async def _wait_all(self, futs: list[asyncio.Future[Any]], timeout: float, what: str) -> list[Any]:
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futs), timeout))
        except TimeoutError:
            raise TimeoutError(f"{what}: no answer within {timeout:g}s") from None
        finally:
            for f in futs:
                if not f.done():
                    f.cancel()

    async def _on_children(self, p: Any, olds: list[Any], op: Any, match_of: Any, timeout: float, what: str) -> list[Any]:
        """Run the session's ``op(spi_in, now)`` (rekey or delete) on each of
        ``olds`` and wait for the event ``match_of(spi_in)`` of every one."""
        futs = [self._watch(p, match_of(old.spi_in)) for old in olds]
        try:
            now = asyncio.get_running_loop().time()
            for old in olds:
                op(old.spi_in, now)
        except Exception:
            for f in futs:
                f.cancel()
            raise
        p.process()
        return await self._wait_all(futs, timeout, what)

    async def rekey(self, conn: str, child: str | None = None, ike: bool = False, timeout: float = 30.0,
                    *, reauth: bool = False) -> str:
        """``swanctl --rekey``: rekey now through the session's own rekey
        (IKEv2 CREATE_CHILD_SA; IKEv1 a Quick Mode that replaces the IPsec SA,
        or a new Phase 1 that replaces the ISAKMP SA, make-before-break) and
        wait for the new SA.  ``ike``: the IKE SA (its Child SAs stay);
        ``child``: that child's Child SAs; neither: every Child SA.
        ``reauth`` (``swanctl --rekey --reauth``): an IKEv2 reauthentication,
        a new IKE SA and Child SAs, then the old ones deleted (IKEv1: the
        same as ``ike``, its Phase 1 rekey already is one)."""
        from .events import ChildSaInstalled, IkeSaEstablished

        p = self._established(conn)
        if child is not None:
            self.require_child(conn, child)
        loop = asyncio.get_running_loop()
        if reauth and hasattr(p.session, "reauthenticate"):
            s = p.session
            old_i, old_r = s.spi_i, s.spi_r
            try:
                new = await asyncio.wait_for(self.endpoint.reauthenticate(p), timeout)
            except TimeoutError:
                raise TimeoutError(f"{conn}: reauthentication: no new IKE SA within {timeout:g}s") from None
            ns = new.session
            kids = self._live_children(new, None, installed_only=False)
            logger.info("%s: IKE SA reauthenticated on request, %s_i %s_r -> %s_i %s_r", conn, old_i.hex(),
                        old_r.hex(), ns.spi_i.hex(), ns.spi_r.hex())
            head = (f"{conn}: IKE SA reauthenticated, SPIs {old_i.hex()}_i {old_r.hex()}_r -> {ns.spi_i.hex()}_i "
                    f"{ns.spi_r.hex()}_r, {len(kids)} CHILD_SA{'' if len(kids) == 1 else 's'} created again")
            lines = [head]
            lines += [f"{conn}: CHILD_SA {ev.name} 0x{ev.spi_in:08x}_i 0x{ev.spi_out:08x}_o" for ev in kids]
            return "\n".join(lines)
        ike = ike or reauth
        if ike:
            s = p.session
            old_i, old_r = s.spi_i, s.spi_r
            fut = self._watch(p, lambda ev: isinstance(ev, IkeSaEstablished) and (ev.spi_i, ev.spi_r) != (old_i, old_r))
            try:
                s.rekey_ike_sa(loop.time())
            except Exception:
                fut.cancel()
                raise
            p.process()
            (ev,) = await self._wait_all([fut], timeout, f"{conn}: IKE rekey")
            kept = len(self._live_children(p, None, installed_only=False))
            logger.info("%s: IKE SA rekeyed on request, %s_i %s_r -> %s_i %s_r", conn, old_i.hex(), old_r.hex(),
                        ev.spi_i.hex(), ev.spi_r.hex())
            return (f"{conn}: IKE SA rekeyed, SPIs {old_i.hex()}_i {old_r.hex()}_r -> {ev.spi_i.hex()}_i "
                    f"{ev.spi_r.hex()}_r, {kept} CHILD_SA{'' if kept == 1 else 's'} kept")
        olds = self._live_children(p, child, installed_only=True)
        if not olds:
            raise LookupError(f"{conn}: no installed CHILD_SA" + (f" {child}" if child else "") + " to rekey")
        news = await self._on_children(
            p, olds, p.session.rekey_child_sa,
            lambda spi: lambda ev: isinstance(ev, ChildSaInstalled) and ev.rekeyed_from == spi,
            timeout, f"{conn}: CHILD_SA rekey")
        lines = []
        for old, new in zip(olds, news):
            logger.info("%s: CHILD_SA %s rekeyed on request, 0x%08x_i 0x%08x_o -> 0x%08x_i 0x%08x_o", conn,
                        new.name, old.spi_in, old.spi_out, new.spi_in, new.spi_out)
            lines.append(f"{conn}: CHILD_SA {new.name} rekeyed, SPIs 0x{old.spi_in:08x}_i 0x{old.spi_out:08x}_o -> "
                         f"0x{new.spi_in:08x}_i 0x{new.spi_out:08x}_o")
        return "\n".join(lines)

    async def _down_child(self, conn: str, child: str, timeout: float) -> str:
        from .events import ChildSaDeleted

        if conn not in self.config.connections:
            raise KeyError(f"no connection named {conn}")
        self.require_child(conn, child)
        p = self.endpoint.find_session(conn)
        if p is None:
            return f"{conn}: no IKE SA"
        olds = self._live_children(p, child, installed_only=False)
        if not olds:
            return f"{conn}: no CHILD_SA {child}"
        await self._on_children(
            p, olds, p.session.delete_child_sa,
            lambda spi: lambda ev: isinstance(ev, ChildSaDeleted) and ev.spi_in == spi,
            timeout, f"{conn}: CHILD_SA {child} delete")
        spis = ", ".join(f"0x{o.spi_in:08x}_i 0x{o.spi_out:08x}_o" for o in olds)
        return f"{conn}: CHILD_SA {child} deleted (SPIs {spis}); the IKE SA stays"

    def list_pools(self, leases: bool = False) -> list[dict[str, Any]]:
        """``swanctl --list-pools [--leases]``: every address pool (shared
        by IKEv2 configuration payloads and IKEv1 Mode Config) with its
        lease counts, and with ``leases`` each lease."""
        out = []
        for name, pool in sorted((self.endpoint.pools or {}).items()):
            row: dict[str, Any] = {
                "name": name, "addrs": pool.addrs, "first": str(pool.first), "last": str(pool.last),
                "size": pool.size, "online": pool.online, "offline": pool.offline,
            }
            if leases:
                row["leases"] = [{"address": a, "identity": ident, "online": on} for a, ident, on in pool.leases()]
            out.append(row)
        return out

    async def clear(self, conn: str | None = None) -> str:
        """The seed's "clear crypto session": delete the IKE SAs (all, or
        ``conn``'s) and renegotiate: at once for children with
        ``start_action = "start"``, on the next packet for ``"trap"``."""
        if conn is not None and conn not in self.config.connections:
            raise KeyError(f"no connection named {conn}")
        names = [conn] if conn else list(self.config.connections)
        done, restarted = [], []
        for n in names:
            self.endpoint.stop_keying(n)  # start_action = start below begins a new budget
            p = self.endpoint.find_session(n)
            if p is not None:
                await p.close()
                done.append(n)
                cfg = self.config.connections[n]
                for child in cfg.children.values():
                    if child.start_action == "start":
                        self.up(n, child.name)
                        restarted.append(n)
                        break
        logger.info("cleared %s%s", ", ".join(done) or "nothing",
                    f"; renegotiating {', '.join(restarted)}" if restarted else "")
        return f"cleared: {', '.join(done) or 'nothing'}" + (f"; renegotiating: {', '.join(restarted)}" if restarted else "")

    roam_delay: float = ROAM_DELAY
    """Seconds a burst of address/route events is collected before one
    roaming decision (:class:`~aioipsec.asyncio.netwatch.RoamWatch`)."""

    def _roam_events(self) -> None:
        """Start or stop following our own address changes (``[daemon]
        roam_events``, charon's ``charon.roam_events``) as the configuration
        says.  A daemon bound to one address it chose itself follows it
        (roams); one bound to the wildcard address never moves (it answers at
        every address) but announces the host's addresses to its MOBIKE
        peers, and an address update when they change (as charon does), so a
        client can move to another address of ours when its path breaks.
        Not with ``[daemon] address`` (told where to be), not on an in-memory
        network."""
        from .asyncio.netwatch import NetlinkWatcher, RoamWatch

        ep = self.endpoint
        wildcard = ep is not None and ipaddress.ip_address(ep.local_ip).is_unspecified
        why = None
        if not self.config.daemon.roam_events:
            why = "roam_events = false"
        elif self.network is not None:
            why = "not on a kernel network"
        elif self.config.daemon.address and not wildcard:
            why = f"bound to daemon.address {self.config.daemon.address}"
        elif ep is None:
            why = "not started"
        if why is not None:
            if self.netwatch is not None:
                logger.info("no longer following address changes: %s", why)
                self._stop_roam_events()
            return
        if self.roamwatch is not None and (self.roamwatch.roam is None) != wildcard:
            self._stop_roam_events()  # the binding changed: the other mode starts below
        if self.netwatch is not None:
            return
        assert ep is not None
        loop = asyncio.get_running_loop()
        rw = RoamWatch(loop, current=lambda: self.endpoint.local_ip, peers=self._roam_peers,
                       roam=None if wildcard else self._auto_roam, pinned=self._pinned_addrs,
                       delay=self.roam_delay, on_addresses=self._local_addresses)
        nw = NetlinkWatcher(loop, rw.events, ignore_index=self._own_interface)
        try:
            nw.start()
        except OSError as exc:
            logger.warning("cannot follow address changes (rtnetlink: %s)%s", exc,
                           "" if wildcard else "; use the roam command")
            return
        self.netwatch, self.roamwatch = nw, rw
        if wildcard:
            logger.info("bound to every address: announcing the host's addresses to MOBIKE peers (roam_events)")
        else:
            logger.info("following address changes at %s (roam_events)", ep.local_ip)
        loop.call_soon(rw.announce)  # MOBIKE's first address list, once the loop runs

    def _local_addresses(self, present: Iterable[str]) -> None:
        """The host's usable addresses now: MOBIKE announces them to the peers
        as our additional addresses (charon sends an address update on any
        address change).  Not those of a loopback interface, which no peer
        can reach (as charon)."""
        from .asyncio.netwatch import loopback_addresses

        present = set(present) - loopback_addresses()
        sent = self.endpoint.set_local_addresses(present)
        if sent:
            logger.info("local addresses now %s; MOBIKE address update sent to %s",
                        ", ".join(sorted(present)) or "none", ", ".join(sorted(p.name for p in sent)))

    def _stop_roam_events(self) -> None:
        if self.roamwatch is not None:
            self.roamwatch.cancel()
        if self.netwatch is not None:
            self.netwatch.close()
        self.netwatch = self.roamwatch = None

    def _own_interface(self, index: int) -> bool:
        """Events of our own TUN device (virtual IPs, routes to the remote
        subnets) do not move the endpoint."""
        if self.tun is None:
            return False
        try:
            return socket.if_nametoindex(self.tun.name) == index
        except OSError:
            return False

    def _roam_peers(self) -> list[str]:
        """The peers whose route decides where we are: those of the IKE SAs
        we initiated (the ones a roam moves), else the configured ones."""
        peers = []
        for p in list(self.endpoint.sessions):
            s = p.session
            if getattr(s, "is_initiator", False) and not getattr(s, "is_closed", False):
                peers.append(str(p.remote_addr[0]))
        if not peers:
            for conn in self.config.connections.values():
                for a in conn.remote_addrs:
                    try:
                        ip = ipaddress.ip_address(a)
                    except ValueError:
                        continue  # %any, a range or a name
                    if not ip.is_unspecified:
                        peers.append(str(ip))
        return list(dict.fromkeys(peers))

    def _pinned_addrs(self) -> set[str]:
        return {a for conn in self.config.connections.values() for a in conn.local_addrs}

    def _auto_roam(self, address: str, reason: str) -> None:
        """The :class:`~aioipsec.asyncio.netwatch.RoamWatch` decided: the
        ``roam`` command's path, with the reason in the daemon's log."""
        logger.info("roaming to %s by itself (roam_events): %s", address, reason)
        try:
            self.roam(address)
        except OSError as exc:
            logger.warning("roaming to %s (%s) failed: %s; waiting for the next address change", address, reason, exc)

    def redirect(self, conn: str, gateway: str, peer: str | None = None) -> str:
        """``swanctl --redirect --ike NAME --gateway ADDR``: send REDIRECT
        (RFC 5685, in an INFORMATIONAL) to the clients of connection ``conn``'s
        established IKEv2 IKE SAs (``peer``: only the one at that address or
        with that identity), which announced REDIRECT_SUPPORTED; they set the
        connection up with ``gateway`` and delete the IKE SA here (else it is
        deleted after 30 s).  ``LookupError`` when no IKE SA could be redirected."""
        if conn not in self.config.connections:
            raise KeyError(f"no connection named {conn}")
        now = asyncio.get_running_loop().time()
        done: list[str] = []
        refused: list[str] = []
        for p in sorted(self.endpoint.sessions, key=lambda p: p.session.spi_i):
            s = p.session
            if p.name != conn or not hasattr(s, "redirect") or not s.is_established:
                continue
            label = s.peer_label()
            if peer is not None and peer not in (s.peer, str(s.sa.remote_id)):
                continue
            try:
                s.redirect(gateway, now)
            except LocalProtocolError as exc:
                refused.append(f"{label}: {exc}")
                continue
            p.process()
            done.append(label)
        if not done:
            why = "; ".join(refused) or "no established IKEv2 IKE SA" + (f" with {peer}" if peer else "")
            raise LookupError(f"{conn}: nothing redirected to {gateway}: {why}")
        logger.info("%s: redirecting %s to %s", conn, ", ".join(done), gateway)
        lines = [f"{conn}: redirecting {label} to {gateway}" for label in done]
        lines += [f"{conn}: not redirected: {r}" for r in refused]
        return "\n".join(lines)

    def roam(self, address: str) -> str:
        """Our address changed to ``address`` (a roaming client; the control
        command ``roam``): the endpoint binds its sockets there, IKE SAs with
        MOBIKE send UPDATE_SA_ADDRESSES from it, the others are initiated
        again (:meth:`~aioipsec.asyncio.endpoint.Endpoint.roam`).  With
        ``roam_events`` (the default) the daemon calls this itself when
        rtnetlink shows its address gone or a new source towards the peer
        (:meth:`_roam_events`); without it whatever manages the interface
        (a DHCP hook, NetworkManager dispatcher) tells the daemon."""
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"roam needs an IP address, not {address!r}") from None
        ep = self.endpoint
        old = ep.local_ip
        moved = ep.roam(address)
        if self.tun is not None and self._remote_nets("transport"):
            for sock in (ep.ike_socket, ep.natt_socket, ep.esp_socket, getattr(ep, "ah_socket", None)):
                set_mark = getattr(sock, "set_mark", None)
                if set_mark is not None:
                    set_mark(BYPASS_MARK)  # the new sockets bypass the transport-mode table too
        names = ", ".join(sorted(p.name for p in moved)) or "none"
        logger.info("roamed %s -> %s; IKE SAs updated or re-initiated: %s", old, address, names)
        return f"roamed {old} -> {address}: {names}"

    def reload(self) -> str:
        try:
            new = load_config(self.path)
        except ConfigError as exc:
            logger.error("reload failed, keeping the old configuration: %s", exc)
            return f"reload failed: {exc}"
        old = self.config
        self.config = new
        self._log_crls(new)
        self.revocation.timeout = new.daemon.fetch_timeout
        self.revocation.configure(new.connections.values())
        self.endpoint.configurations = dict(new.connections)
        self.endpoint.open_ah_if_configured()  # an AH child added by the reload needs the raw AH socket
        self.endpoint.global_config = new.global_config
        self.endpoint.set_pools(list(new.pools.values()))  # unchanged pools keep their leases
        self._roam_events()
        # trap policies follow the file; held packets of a kept trap stay held
        dp = self.endpoint.dataplane
        kept = {(t.conn, t.child): t for t in dp.traps}
        dp.traps = []
        for conn in new.connections.values():
            for child in conn.children.values():
                if child.start_action != "trap":
                    continue
                t = kept.get((conn.name, child.name))
                if t is not None and list(t.local_ts) == list(child.local_ts) and list(t.remote_ts) == list(child.remote_ts):
                    dp.traps.append(t)
                else:
                    dp.add_trap(conn.name, child.name, child.local_ts, child.remote_ts)
        added = sorted(set(new.connections) - set(old.connections))
        removed = sorted(set(old.connections) - set(new.connections))
        logger.info(
            "configuration reloaded: %d connections%s%s (applies to new SAs)", len(new.connections),
            f", added {', '.join(added)}" if added else "", f", removed {', '.join(removed)}" if removed else "",
        )
        return f"reloaded {len(new.connections)} connections" + (f"; added: {', '.join(added)}" if added else "") + (
            f"; removed: {', '.join(removed)}" if removed else "")

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        try:
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.shutdown()

    def _sighup(self) -> None:
        logger.info("SIGHUP: reloading %s", self.path)
        self.reload()

    async def shutdown(self) -> None:
        n = len(self.endpoint.sessions) if self.endpoint is not None else 0
        logger.info("shutting down: deleting %d IKE SA%s", n, "" if n == 1 else "s")
        self._stop_roam_events()
        if self.control is not None:
            await self.control.close()
        await self.revocation.close()
        if self.endpoint is not None:
            await self.endpoint.close()
            # SAs that went without a ChildSaDeleted still get their down run
            for proto in {id(r.proto): r.proto for r in self._updown.values()}.values():
                self._updown_all_down(proto)
        await self._updown_drain()
        if self.tun is not None:
            for vip in list(self.vips):
                self._del_vip(vip)
        self._remove_routes()
        if self.tun is not None:
            self.tun.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="aioipsec daemon", description="run a gateway from a config file")
    ap.add_argument("-c", "--config", required=True, help="TOML configuration file")
    ap.add_argument("--control", help="Unix socket path for `aioipsec --control PATH ...` commands")
    ap.add_argument("--no-tun", action="store_true", help="do not create a TUN device")
    ap.add_argument("--uvloop", choices=("auto", "yes", "no"), default="auto", help="event loop (default: uvloop if installed)")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="-v: one line per exchange step in every group, -vv: details")
    ap.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    ap.add_argument("--debug", metavar="GROUP=LEVEL,...", default="",
                    help="per-group levels like charon's (-1..4), groups: ike esp net cfg dmn ctl tnl")
    ns = ap.parse_args(argv)
    from . import logging as aiolog

    try:
        groups = aiolog.parse_debug(ns.debug)
    except ValueError as exc:
        ap.error(str(exc))
    verbosity = 0 if ns.quiet else ns.verbose
    if not ns.quiet and not ns.verbose:
        groups = {"ike": 1, "dmn": 1, **groups}  # charon's default: exchange steps are logged
    aiolog.configure(verbosity, groups)
    try:
        daemon = Daemon(ns.config, control=ns.control, tun=not ns.no_tun)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    runner = _loop_runner(ns.uvloop)
    runner(daemon.run())
    return 0


def _loop_runner(choice: str) -> Any:
    if choice != "no":
        try:
            import uvloop

            return uvloop.run
        except ImportError:
            if choice == "yes":
                raise
    return asyncio.run
