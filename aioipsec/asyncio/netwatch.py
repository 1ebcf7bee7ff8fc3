"""Following this host's own address changes, as charon's kernel-netlink
plugin does (``charon.roam_events``): an rtnetlink watcher and the roaming
decision a burst of its events leads to.

* :class:`NetlinkWatcher`: a ``NETLINK_ROUTE`` socket subscribed to the
  address, route and link multicast groups, read with ``loop.add_reader``
  (non-blocking: every queued datagram is read, none waited for).  Each
  message is parsed by the shared helpers of :mod:`aioipsec.netutil`; a
  malformed one is dropped and counted (:attr:`NetlinkWatcher.malformed`),
  a receive overflow (``ENOBUFS``: events were lost) is counted and reported
  as one event, so that the state is looked at again.
* :class:`RoamWatch`: collects a burst of events for :attr:`RoamWatch.delay`
  seconds, then decides (:func:`decide_roam`) whether the endpoint's local
  address must change, and calls ``roam(new, reason)`` (the daemon's
  ``roam`` command path) if so.  The address lookups are injected callables,
  so that the decision can be tested without a kernel.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import netutil
from ..netutil import NetlinkError

logger = logging.getLogger("aioipsec.net")

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
"""The multicast groups watched: addresses, routes (IPv4 and IPv6) and links."""

RT_TABLE_LOCAL = 255
RTN_UNICAST = 1
ROAM_DELAY = 1.0
"""Seconds a burst of events is collected before one roaming decision."""


@dataclass(frozen=True)
class NetEvent:
    """One address, route or link change (or ``kind == "overrun"``: events
    were lost, look again)."""

    kind: str
    """``addr``, ``route``, ``link`` or ``overrun``."""
    new: bool
    """RTM_NEW* (added/changed) rather than RTM_DEL*."""
    index: int | None = None
    """The interface (address, link; a route's output interface)."""
    what: str = ""
    """The address, route destination or interface name, for the log."""

    def __str__(self) -> str:
        if self.kind == "overrun":
            return "netlink receive buffer overrun (events lost)"
        verb = ("new" if self.new else "deleted") if self.kind != "link" else ("changed" if self.new else "deleted")
        return f"{verb} {self.kind} {self.what}".rstrip() + (f" (if {self.index})" if self.index is not None else "")


def parse_event(mtype: int, body: bytes) -> NetEvent | None:
    """The event of one rtnetlink message, None for one that does not bear
    on our addresses (another message type, a route of the ``local`` table
    or not unicast: the kernel's own routes for every address, seen anyway
    as address events).  Raises :class:`~aioipsec.netutil.NetlinkError` if
    malformed."""
    if mtype in (netutil.RTM_NEWADDR, netutil.RTM_DELADDR):
        a = netutil.parse_ifaddr(body)
        return NetEvent("addr", mtype == netutil.RTM_NEWADDR, a.index, f"{a.ip}/{a.prefixlen}")
    if mtype in (netutil.RTM_NEWROUTE, netutil.RTM_DELROUTE):
        r = netutil.parse_route(body)
        if r.table == RT_TABLE_LOCAL or r.type != RTN_UNICAST:
            return None
        dst = f"{r.dst}/{r.dst_len}" if r.dst is not None else "default"
        return NetEvent("route", mtype == netutil.RTM_NEWROUTE, r.oif, dst + (f" via {r.gateway}" if r.gateway else ""))
    if mtype in (netutil.RTM_NEWLINK, netutil.RTM_DELLINK):
        lk = netutil.parse_link(body)
        state = "up" if lk.up else "down"
        return NetEvent("link", mtype == netutil.RTM_NEWLINK, lk.index, f"{lk.name or '?'} {state}")
    return None


def parse_datagram(data: bytes) -> tuple[list[NetEvent], int]:
    """The events of one netlink datagram and how many of its messages were
    malformed (the rest of a datagram after a broken header cannot be
    framed: it counts as one)."""
    events: list[NetEvent] = []
    bad = 0
    try:
        for mtype, body in netutil.nl_messages(data):
            try:
                ev = parse_event(mtype, body)
            except (NetlinkError, ValueError):
                bad += 1
                continue
            if ev is not None:
                events.append(ev)
    except NetlinkError:
        bad += 1
    return events, bad


class NetlinkWatcher:
    """A ``NETLINK_ROUTE`` socket on :data:`GROUPS`, read with the loop's
    reader callback; ``callback(events)`` gets the events of each read that
    had some.  ``sock``: an already bound socket (tests: one end of a
    socketpair), else :meth:`start` opens the netlink socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[list[NetEvent]], Any], *,
                 groups: int = GROUPS, sock: socket.socket | None = None,
                 ignore_index: Callable[[int], bool] | None = None) -> None:
        self.loop = loop
        self.callback = callback
        self.groups = groups
        self.sock = sock
        self.ignore_index = ignore_index
        """Interfaces whose events are dropped (the daemon's own TUN device)."""
        self.malformed = 0
        """Messages dropped as malformed."""
        self.overruns = 0
        """Receive buffer overruns (ENOBUFS): events the kernel dropped."""
        self.events = 0
        self._reading = False

    def start(self) -> None:
        if self.sock is None:
            netlink = getattr(socket, "AF_NETLINK", None)
            if netlink is None:
                raise OSError("no AF_NETLINK on this system")
            s = socket.socket(netlink, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
            try:
                s.bind((0, self.groups))
            except BaseException:
                s.close()
                raise
            self.sock = s
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self._reading = True

    def close(self) -> None:
        if self.sock is None:
            return
        if self._reading:
            self.loop.remove_reader(self.sock.fileno())
            self._reading = False
        self.sock.close()
        self.sock = None

    def _readable(self) -> None:
        events: list[NetEvent] = []
        sock = self.sock
        while sock is not None:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overruns += 1
                    events.append(NetEvent("overrun", True))
                    continue
                logger.warning("netlink watcher: receive failed (%s); no longer following address changes", exc)
                self.close()
                break
            if not data:
                break
            got, bad = parse_datagram(data)
            if bad:
                self.malformed += bad
                logger.debug("netlink watcher: %d malformed message%s dropped", bad, "" if bad == 1 else "s")
            ignore = self.ignore_index
            events.extend(ev for ev in got if ignore is None or ev.index is None or not ignore(ev.index))
        if events:
            self.events += len(events)
            self.callback(events)


def decide_roam(current: str, present: Iterable[str], sources: Sequence[tuple[str, str | None]],
                pinned: Iterable[str] = ()) -> tuple[str | None, str]:
    """Where the endpoint should be now, as charon's ``ike_sa.roam`` decides:
    ``(new address, reason)``, or ``(None, reason)`` to stay.

    ``current``: the endpoint's address; ``present``: the usable addresses
    of interfaces that are up; ``sources``: ``(peer, the kernel's source
    address towards it)`` (None: no route); ``pinned``: the addresses
    configured in ``local_addrs``.

    * ``current`` gone from every interface: move to the kernel's source
      towards the first peer that has a route (none: stay, deferred until
      a route comes, charon's "MOBIKE update deferred");
    * ``current`` still there but the kernel now routes to the first peer
      from another address (a better path, a new default route): move,
      unless ``current`` is configured in ``local_addrs`` (charon keeps a
      statically configured path that still works);
    * else stay."""
    present = set(present)
    routed = [(peer, src) for peer, src in sources if src is not None]
    if current not in present:
        for peer, src in routed:
            if src in present and src != current:
                return src, f"{current} is no longer on any interface that is up; the kernel routes to {peer} from {src}"
        if not sources:
            return None, f"{current} is no longer on any interface that is up; no peer to route to"
        return None, f"{current} is no longer on any interface that is up and there is no route to {sources[0][0]}: roaming deferred"
    if not sources:
        return None, f"{current} still present"
    peer, src = sources[0]
    if src is None or src == current or src not in present:
        return None, f"{current} still present and used towards {peer}"
    if current in set(pinned):
        return None, f"{current} still present and configured in local_addrs (the kernel would use {src} towards {peer})"
    return src, f"the kernel now routes to {peer} from {src}, not {current}"


class RoamWatch:
    """Debounces :class:`NetlinkWatcher` events and makes one roaming
    decision per burst.

    ``current()``: the endpoint's address now; ``peers()``: the peers whose
    route decides (the IKE SAs' peers, else the configured ones);
    ``roam(new, reason)``: move there.  ``addresses()`` (the usable
    addresses of interfaces that are up) and ``route_source(peer)`` default
    to rtnetlink dumps and a connected UDP socket; ``pinned()``: the
    ``local_addrs`` configured; ``on_addresses(present)``: told the usable
    addresses at every check (MOBIKE announces them), before any move.
    ``roam`` None: announce only (a daemon bound to the wildcard address
    answers at every address and never moves; its peers learn the
    addresses), so ``current``, ``peers``, ``route_source`` and ``pinned``
    are not asked."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, current: Callable[[], str],
                 peers: Callable[[], list[str]], roam: Callable[[str, str], Any] | None,
                 pinned: Callable[[], Iterable[str]] = tuple,
                 addresses: Callable[[], Iterable[str]] | None = None,
                 route_source: Callable[[str], str | None] | None = None,
                 delay: float = ROAM_DELAY,
                 on_addresses: Callable[[set[str]], Any] | None = None) -> None:
        self.loop = loop
        self.current = current
        self.peers = peers
        self.roam = roam
        self.pinned = pinned
        self.addresses = addresses or usable_addresses
        self.route_source = route_source or netutil.route_source
        self.delay = delay
        self.on_addresses = on_addresses
        self.pending: list[NetEvent] = []
        """The events of the burst being collected."""
        self.checks = 0
        """Decisions made (bursts handled)."""
        self.roams = 0
        self._timer: asyncio.TimerHandle | None = None
        self._last_reason: str | None = None

    def events(self, events: list[NetEvent]) -> None:
        """Events arrived: the first of a burst arms the timer, the others
        only join the burst (a steady stream cannot postpone the check)."""
        self.pending.extend(events)
        if self._timer is None:
            self._timer = self.loop.call_later(self.delay, self._fire)

    def announce(self) -> None:
        """List the usable addresses and tell ``on_addresses`` (the first
        look, before any event)."""
        if self.on_addresses is not None:
            self._listed("")

    def _listed(self, what: str) -> set[str] | None:
        """The usable addresses now, told to ``on_addresses``; None (and a
        warning starting with ``what``) when they cannot be listed."""
        try:
            present = set(self.addresses())
        except (OSError, NetlinkError) as exc:
            logger.warning("%scannot list the local addresses (%s)", what, exc)
            return None
        if self.on_addresses is not None:
            self.on_addresses(present)
        return present

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pending.clear()

    def _fire(self) -> None:
        self._timer = None
        burst, self.pending = self.pending, []
        try:
            self.check(burst)
        except Exception:
            logger.exception("%s check after %d address/route event%s failed", "address" if self.roam is None
                             else "roaming", len(burst), "" if len(burst) == 1 else "s")

    def check(self, burst: Sequence[NetEvent] = ()) -> str | None:
        """Decide now; returns the address moved to, or None (always when
        announcing only)."""
        self.checks += 1
        if self.roam is None:
            self._listed("address check: ")
            return None
        current = self.current()
        family = socket.AF_INET6 if ":" in current else socket.AF_INET
        peers = [p for p in self.peers() if (":" in p) == (family == socket.AF_INET6)]
        present = self._listed("roaming check: ")
        if present is None:
            return None
        sources = [(p, self.route_source(p)) for p in dict.fromkeys(peers)]
        new, reason = decide_roam(current, present, sources, self.pinned())
        what = ", ".join(str(ev) for ev in burst[:4]) + (f" and {len(burst) - 4} more" if len(burst) > 4 else "")
        if new is None:
            # the same "deferred" is not repeated for every later burst
            level = logging.DEBUG if reason == self._last_reason or "still present" in reason else logging.INFO
            logger.log(level, "address/route change (%s): staying at %s: %s", what or "check", current, reason)
            self._last_reason = reason
            return None
        self._last_reason = None
        logger.info("address/route change (%s): roaming %s -> %s: %s", what or "check", current, new, reason)
        self.roams += 1
        self.roam(new, reason)
        return new


def usable_addresses() -> set[str]:
    """The addresses of this host a socket can be bound to and used from:
    on an interface that is up, not tentative (IPv6 DAD) nor failed."""
    links = netutil.links()
    out = set()
    for a in netutil.local_addresses():
        lk = links.get(a.index)
        if a.ip is not None and a.usable and (lk is None or lk.up):
            out.add(a.ip)
    return out


def loopback_addresses() -> set[str]:
    """The addresses on this host's loopback interfaces (``lo``: 127.0.0.1,
    ::1, and whatever else is put there, e.g. a router ID or an inner
    address).  MOBIKE does not announce them: a peer could never reach us
    there (charon leaves out every address of a loopback interface).  Empty
    when rtnetlink cannot tell."""
    try:
        links = netutil.links()
        return {a.ip for a in netutil.local_addresses()
                if a.ip is not None and (lk := links.get(a.index)) is not None and lk.loopback}
    except (OSError, NetlinkError):
        return set()
