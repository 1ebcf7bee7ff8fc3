"""rtnetlink parsing (:mod:`aioipsec.netutil`), the watcher's reading and
counting (:class:`~aioipsec.asyncio.netwatch.NetlinkWatcher` on a socketpair
fed crafted datagrams), the roaming decision and its debounce
(:class:`~aioipsec.asyncio.netwatch.RoamWatch` with fake address and route
lookups)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

import pytest

from aioipsec import netutil
from aioipsec.asyncio import netwatch
from aioipsec.asyncio.netwatch import (
    NetEvent,
    NetlinkWatcher,
    RoamWatch,
    decide_roam,
    parse_datagram,
)
from aioipsec.config_file import parse_config
from aioipsec.errors import ConfigError


def attr(atype: int, value: bytes) -> bytes:
    hdr = struct.pack("=HH", 4 + len(value), atype)
    return hdr + value + b"\0" * ((-len(value)) % 4)


def msg(mtype: int, body: bytes) -> bytes:
    out = struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body
    return out + b"\0" * ((-len(out)) % 4)


def ip(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def ifaddr(mtype: int, addr: str, index: int = 3, prefix: int = 24, flags: int = 0, *, local: bool = True,
           flags32: int | None = None) -> bytes:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    body = struct.pack("=BBBBI", fam, prefix, flags, 0, index) + attr(1, ip(addr))
    if local and fam == socket.AF_INET:
        body += attr(2, ip(addr))
    if flags32 is not None:
        body += attr(8, struct.pack("=I", flags32))
    return msg(mtype, body)


def route(mtype: int, dst: str | None, dst_len: int, *, table: int = 254, rtype: int = 1, oif: int = 3,
          gw: str | None = None) -> bytes:
    body = struct.pack("=8BI", socket.AF_INET, dst_len, 0, 0, min(table, 255), 3, 0, rtype, 0)
    if dst is not None:
        body += attr(1, ip(dst))
    body += attr(4, struct.pack("=I", oif))
    if gw is not None:
        body += attr(5, ip(gw))
    body += attr(15, struct.pack("=I", table))
    return msg(mtype, body)


def link(mtype: int, index: int, name: str, flags: int) -> bytes:
    body = struct.pack("=BBHiII", 0, 0, 1, index, flags, 0xFFFFFFFF) + attr(3, name.encode() + b"\0")
    return msg(mtype, body)


# ---------------------------------------------------------------- parsing

def test_address_messages_parse() -> None:
    [(mtype, body)] = list(netutil.nl_messages(ifaddr(netutil.RTM_NEWADDR, "192.0.2.3", index=7, prefix=24)))
    a = netutil.parse_ifaddr(body)
    assert mtype == netutil.RTM_NEWADDR
    assert (a.family, a.prefixlen, a.index, a.ip, a.address, a.local) == (socket.AF_INET, 24, 7, "192.0.2.3",
                                                                         "192.0.2.3", "192.0.2.3")
    assert a.usable
    # IPv6: no IFA_LOCAL; the 32-bit IFA_FLAGS attribute wins over the 8-bit header field
    [(_, body)] = list(netutil.nl_messages(ifaddr(netutil.RTM_DELADDR, "2001:db8::5", prefix=64, flags32=0x40)))
    a6 = netutil.parse_ifaddr(body)
    assert (a6.ip, a6.local, a6.flags, a6.usable) == ("2001:db8::5", None, 0x40, False)  # tentative (DAD)


def test_route_and_link_messages_parse() -> None:
    data = route(netutil.RTM_NEWROUTE, None, 0, gw="192.0.2.254", oif=9) + link(netutil.RTM_NEWLINK, 9, "wlan0", 0)
    (t1, b1), (t2, b2) = netutil.nl_messages(data)
    r = netutil.parse_route(b1)
    assert (t1, r.dst, r.dst_len, r.gateway, r.oif, r.table, r.type) == (
        netutil.RTM_NEWROUTE, None, 0, "192.0.2.254", 9, 254, 1)
    lk = netutil.parse_link(b2)
    assert (t2, lk.index, lk.name, lk.up) == (netutil.RTM_NEWLINK, 9, "wlan0", False)


def test_events_of_a_datagram_and_what_is_dropped() -> None:
    data = b"".join([
        ifaddr(netutil.RTM_DELADDR, "192.0.2.1"),
        route(netutil.RTM_NEWROUTE, "192.0.2.1", 32, table=255, rtype=2),  # the kernel's local route: skipped
        route(netutil.RTM_DELROUTE, "0.0.0.0", 0, gw="192.0.2.254"),
        link(netutil.RTM_NEWLINK, 3, "eth0", netutil.IFF_UP),
        msg(netutil.NLMSG_NOOP, b""),  # not an event
    ])
    events, bad = parse_datagram(data)
    assert bad == 0
    assert [(e.kind, e.new, e.index) for e in events] == [("addr", False, 3), ("route", False, 3), ("link", True, 3)]
    assert str(events[0]) == "deleted addr 192.0.2.1/24 (if 3)"
    assert str(events[1]) == "deleted route 0.0.0.0/0 via 192.0.2.254 (if 3)"
    assert str(events[2]) == "changed link eth0 up (if 3)"


@pytest.mark.parametrize(("data", "good", "bad"), [
    (ifaddr(netutil.RTM_NEWADDR, "192.0.2.3")[:-3], 0, 1),            # truncated: the header claims more
    (ifaddr(netutil.RTM_NEWADDR, "192.0.2.3") + b"\x01\x02", 1, 1),    # trailing bytes, less than a header
    (msg(netutil.RTM_NEWADDR, b"\x02\x18"), 0, 1),                     # ifaddrmsg too short
    (msg(netutil.RTM_NEWADDR, struct.pack("=BBBBI", 2, 24, 0, 0, 3) + struct.pack("=HH", 40, 1) + b"\0" * 4)
     + ifaddr(netutil.RTM_NEWADDR, "192.0.2.9"), 1, 1),                # attribute past its message; next one kept
    (msg(netutil.RTM_NEWADDR, struct.pack("=BBBBI", 2, 24, 0, 0, 3) + attr(1, b"\xc0\x00\x02")), 0, 1),  # 3-byte address
    (msg(netutil.RTM_NEWROUTE, b"\0" * 11), 0, 1),
    (msg(netutil.RTM_NEWLINK, b"\0" * 15), 0, 1),
    (struct.pack("=IHHII", 8, netutil.RTM_NEWADDR, 0, 0, 0), 0, 1),   # length below the header's own
])
def test_malformed_messages_are_counted_not_raised(data: bytes, good: int, bad: int) -> None:
    events, n_bad = parse_datagram(data)
    assert (len(events), n_bad) == (good, bad)


def test_local_addresses_and_links_of_this_host() -> None:
    addrs = netutil.local_addresses()
    assert any(a.ip == "127.0.0.1" and socket.if_indextoname(a.index) == "lo" for a in addrs)
    lo = socket.if_nametoindex("lo")
    assert netutil.links()[lo].up and netutil.links()[lo].name == "lo"
    assert "127.0.0.1" in netwatch.usable_addresses()
    on_lo = netwatch.loopback_addresses()
    assert "127.0.0.1" in on_lo
    assert all(socket.if_indextoname(a.index) == "lo" for a in addrs if a.ip in on_lo)
    assert netutil.route_source("127.0.0.1") == "127.0.0.1"
    assert netutil.route_source("not-an-address") is None


# ---------------------------------------------------------------- the watcher

async def test_watcher_reads_every_queued_datagram_counts_malformed_and_ignores_own_interface() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    got: list[list[NetEvent]] = []
    w = NetlinkWatcher(loop, got.append, sock=ours, ignore_index=lambda i: i == 42)
    w.start()
    try:
        theirs.send(ifaddr(netutil.RTM_DELADDR, "192.0.2.1", index=3))
        theirs.send(b"\xff" * 7)  # not even a header
        theirs.send(ifaddr(netutil.RTM_NEWADDR, "10.99.0.1", index=42))  # the TUN device: ignored
        theirs.send(route(netutil.RTM_NEWROUTE, "0.0.0.0", 0, oif=4, gw="198.51.100.1"))
        for _ in range(50):
            await asyncio.sleep(0.01)
            if w.malformed and sum(map(len, got)) >= 2:
                break
        events = [e for batch in got for e in batch]
        assert [(e.kind, e.new, e.index) for e in events] == [("addr", False, 3), ("route", True, 4)]
        assert w.malformed == 1 and w.events == 2
    finally:
        w.close()
        theirs.close()
    assert w.sock is None


async def test_watcher_subscribes_to_rtnetlink() -> None:
    loop = asyncio.get_running_loop()
    w = NetlinkWatcher(loop, lambda evs: None)
    w.start()
    try:
        assert w.sock is not None and w.sock.family == socket.AF_NETLINK
        _pid, groups = w.sock.getsockname()
        assert groups == netwatch.GROUPS == 0x1 | 0x10 | 0x100 | 0x40 | 0x400
        assert not w.sock.getblocking()
    finally:
        w.close()


class ScriptedSocket:
    """recv() returns or raises the scripted items, then would block."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.closed = False

    def recv(self, n: int) -> bytes:
        if not self.script:
            raise BlockingIOError
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self.closed = True


def test_overrun_is_counted_and_reported_as_an_event() -> None:
    import errno

    got: list[list[NetEvent]] = []
    sock = ScriptedSocket(OSError(errno.ENOBUFS, "No buffer space available"),
                          ifaddr(netutil.RTM_NEWADDR, "192.0.2.3"))
    w = NetlinkWatcher(None, got.append, sock=sock)  # type: ignore[arg-type]
    w._readable()
    [batch] = got
    assert [e.kind for e in batch] == ["overrun", "addr"] and w.overruns == 1 and w.events == 2
    assert str(batch[0]) == "netlink receive buffer overrun (events lost)"
    assert w.sock is sock and not sock.closed  # still watching


def test_a_receive_error_closes_the_watcher_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    import errno

    got: list[list[NetEvent]] = []
    sock = ScriptedSocket(ifaddr(netutil.RTM_DELADDR, "192.0.2.1"), OSError(errno.EBADF, "Bad file descriptor"))
    w = NetlinkWatcher(None, got.append, sock=sock)  # type: ignore[arg-type]
    w._readable()
    assert sock.closed and w.sock is None
    assert [e.kind for e in got[0]] == ["addr"]  # what was read before the error still counts
    assert "receive failed ([Errno 9] Bad file descriptor); no longer following address changes" in caplog.text


# ---------------------------------------------------------------- the decision

PEER = "198.51.100.2"


def test_decide_address_gone_moves_to_the_routed_source() -> None:
    new, why = decide_roam("192.0.2.1", {"192.0.2.3", "127.0.0.1"}, [(PEER, "192.0.2.3")])
    assert new == "192.0.2.3"
    assert why == "192.0.2.1 is no longer on any interface that is up; the kernel routes to 198.51.100.2 from 192.0.2.3"
    # configured in local_addrs makes no difference once the address is gone (charon with MOBIKE)
    assert decide_roam("192.0.2.1", {"192.0.2.3"}, [(PEER, "192.0.2.3")], pinned={"192.0.2.1"})[0] == "192.0.2.3"


def test_decide_address_gone_without_a_route_is_deferred() -> None:
    new, why = decide_roam("192.0.2.1", {"127.0.0.1"}, [(PEER, None)])
    assert new is None and "no route to 198.51.100.2: roaming deferred" in why
    assert decide_roam("192.0.2.1", set(), [])[0] is None
    # the first peer has no route, the second has: it decides
    assert decide_roam("192.0.2.1", {"192.0.2.3"}, [(PEER, None), ("203.0.113.5", "192.0.2.3")])[0] == "192.0.2.3"


def test_decide_better_source_moves_unless_pinned() -> None:
    assert decide_roam("192.0.2.1", {"192.0.2.1", "192.0.2.3"}, [(PEER, "192.0.2.3")]) == (
        "192.0.2.3", "the kernel now routes to 198.51.100.2 from 192.0.2.3, not 192.0.2.1")
    new, why = decide_roam("192.0.2.1", {"192.0.2.1", "192.0.2.3"}, [(PEER, "192.0.2.3")], pinned=["192.0.2.1"])
    assert new is None and "configured in local_addrs" in why


def test_decide_stays_when_nothing_changed() -> None:
    assert decide_roam("192.0.2.1", {"192.0.2.1"}, [(PEER, "192.0.2.1")])[0] is None
    assert decide_roam("192.0.2.1", {"192.0.2.1"}, [(PEER, None)])[0] is None
    # the kernel names a source we cannot use (tentative, on a down link): stay
    assert decide_roam("192.0.2.1", {"192.0.2.1"}, [(PEER, "192.0.2.9")])[0] is None


class Fake:
    def __init__(self) -> None:
        self.current = "192.0.2.1"
        self.present = {"192.0.2.1"}
        self.routes = {PEER: "192.0.2.1"}
        self.roamed: list[tuple[str, str]] = []
        self.lookups = 0

    def addresses(self) -> set[str]:
        self.lookups += 1
        return set(self.present)

    def roam(self, new: str, reason: str) -> None:
        self.roamed.append((new, reason))
        self.current = new

    def watch(self, loop: asyncio.AbstractEventLoop, delay: float = 0.05, **kw: object) -> RoamWatch:
        return RoamWatch(loop, current=lambda: self.current, peers=lambda: [PEER, "2001:db8::9"], roam=self.roam,
                         addresses=self.addresses, route_source=self.routes.get, delay=delay, **kw)  # type: ignore[arg-type]


EV = NetEvent("addr", False, 3, "192.0.2.1/24")


async def test_a_burst_is_one_check_after_the_delay() -> None:
    f = Fake()
    rw = f.watch(asyncio.get_running_loop())
    rw.events([EV])
    f.present, f.routes[PEER] = {"192.0.2.3"}, "192.0.2.3"
    rw.events([NetEvent("addr", True, 3, "192.0.2.3/24")])
    rw.events([NetEvent("route", False, 3, "default")])
    assert rw.checks == 0 and len(rw.pending) == 3  # nothing decided inside the burst
    await asyncio.sleep(0.1)
    assert rw.checks == 1 and f.lookups == 1 and rw.pending == []
    [(new, reason)] = f.roamed
    assert new == "192.0.2.3" and reason.startswith("192.0.2.1 is no longer on any interface")
    # the next event is a new burst; now nothing changed
    rw.events([NetEvent("link", True, 3, "eth0 up")])
    await asyncio.sleep(0.1)
    assert rw.checks == 2 and len(f.roamed) == 1


async def test_a_steady_stream_does_not_postpone_the_check() -> None:
    f = Fake()
    rw = f.watch(asyncio.get_running_loop(), delay=0.1)
    f.present = {"192.0.2.7"}
    f.routes[PEER] = "192.0.2.7"
    for _ in range(8):  # an event every 30 ms for 240 ms
        rw.events([EV])
        await asyncio.sleep(0.03)
    assert rw.checks >= 2 and f.roamed[0][0] == "192.0.2.7"


async def test_a_failed_lookup_or_roam_is_logged_and_the_next_burst_checks_again(
        caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def broken() -> set[str]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("netlink dump timed out")
        return {"192.0.2.3"}

    def failing_roam(new: str, reason: str) -> None:
        raise RuntimeError("bind failed")

    rw = RoamWatch(asyncio.get_running_loop(), current=lambda: "192.0.2.1", peers=lambda: [PEER],
                   roam=failing_roam, addresses=broken, route_source=lambda p: "192.0.2.3", delay=0.01)
    rw.events([EV])
    await asyncio.sleep(0.05)
    assert "cannot list the local addresses (netlink dump timed out)" in caplog.text
    rw.events([EV])
    await asyncio.sleep(0.05)
    assert rw.checks == 2 and "roaming check after 1 address/route event failed" in caplog.text


async def test_cancel_drops_the_pending_burst() -> None:
    f = Fake()
    rw = f.watch(asyncio.get_running_loop(), delay=0.02)
    f.present = {"192.0.2.3"}
    rw.events([EV])
    rw.cancel()
    await asyncio.sleep(0.05)
    assert rw.checks == 0 and f.roamed == []


def test_check_considers_only_peers_of_our_family_and_logs_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="aioipsec.net")
    f = Fake()
    f.present = {"192.0.2.3"}
    f.routes.update({PEER: "192.0.2.3", "2001:db8::9": "2001:db8::1"})
    rw = f.watch(asyncio.new_event_loop())
    try:
        assert rw.check([EV]) == "192.0.2.3"
    finally:
        rw.loop.close()
    assert ("address/route change (deleted addr 192.0.2.1/24 (if 3)): roaming 192.0.2.1 -> 192.0.2.3: "
            "192.0.2.1 is no longer on any interface that is up; the kernel routes to 198.51.100.2 from 192.0.2.3"
            ) in caplog.text


async def test_announce_only_tells_the_addresses_and_never_roams() -> None:
    """roam=None (a daemon bound to the wildcard address): the first look
    and every burst only tell ``on_addresses``; even with the address the
    endpoint had gone and the kernel routing from another, nothing moves,
    and neither the peers nor the routes are asked."""
    f = Fake()
    told: list[set[str]] = []

    def ask() -> list[str]:
        raise AssertionError("an announce-only watcher asked for the peers")

    rw = RoamWatch(asyncio.get_running_loop(), current=lambda: "0.0.0.0", peers=ask, roam=None,
                   addresses=f.addresses, route_source=lambda p: "192.0.2.3", delay=0.02,
                   on_addresses=told.append)
    f.present = {"192.0.2.1", "192.0.2.4"}
    rw.announce()
    assert told == [{"192.0.2.1", "192.0.2.4"}]
    f.present = {"192.0.2.3"}
    rw.events([EV, NetEvent("addr", True, 3, "192.0.2.3/24")])
    await asyncio.sleep(0.08)
    assert rw.checks == 1 and rw.roams == 0 and f.roamed == []
    assert told == [{"192.0.2.1", "192.0.2.4"}, {"192.0.2.3"}]
    assert rw.check([EV]) is None and told[-1] == {"192.0.2.3"}


# ---------------------------------------------------------------- the key

def test_roam_events_key() -> None:
    assert parse_config({}).daemon.roam_events is True
    assert parse_config({"daemon": {"roam_events": False}}).daemon.roam_events is False
    with pytest.raises(ConfigError, match=r"daemon\.roam_events: expected true or false, got"):
        parse_config({"daemon": {"roam_events": "yes"}})
