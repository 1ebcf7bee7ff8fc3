"""``[daemon] roam_events``: the daemon follows its own address changes.
The two in-memory daemons of ``test_cli_daemon.py``; the rtnetlink socket
is replaced by a fake watcher whose callback the test calls with the events
a kernel would send, and the address and route lookups by fakes: the
decision, the debounce and the ``roam`` command path are the daemon's own.
(``tests/netns/test_roam_events.py`` does it with a real kernel.)"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import pytest
from test_cli_daemon import Gateways, gateways, ping, short_dir  # noqa: F401  (fixtures)

from aioipsec.asyncio import netwatch
from aioipsec.asyncio.netwatch import NetEvent

NEW = "192.0.2.77"


class FakeWatcher:
    made: ClassVar[list[FakeWatcher]] = []

    def __init__(self, loop: Any, callback: Any, **kw: Any) -> None:
        self.callback = callback
        self.kw = kw
        self.started = self.closed = False
        FakeWatcher.made.append(self)

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True


async def test_address_gone_moves_the_ike_sa_without_a_roam_command(
        gateways: Gateways, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.INFO)
    g = gateways
    assert g.a.netwatch is None  # an in-memory network: no kernel events to follow
    rc, _, err = await g.cli("up", "hq")
    assert rc == 0, err
    assert await ping(g, 2) == 2
    s = g.a.endpoint.find_session("hq").session
    spis = (s.sa.spi_i, s.sa.spi_r)

    FakeWatcher.made.clear()
    monkeypatch.setattr(netwatch, "NetlinkWatcher", FakeWatcher)
    monkeypatch.setattr(g.a, "network", None)  # as a daemon on real sockets
    monkeypatch.setattr(g.a, "roam_delay", 0.05)
    g.a._roam_events()
    [nw] = FakeWatcher.made
    rw = g.a.roamwatch
    assert nw.started and g.a.netwatch is nw and nw.callback == rw.events
    assert "following address changes at 192.0.2.1 (roam_events)" in caplog.text
    assert g.a._roam_peers() == ["192.0.2.2"] and g.a._pinned_addrs() == {"192.0.2.1"}
    present = {"192.0.2.1", NEW}
    rw.addresses = lambda: set(present)
    rw.route_source = lambda peer: (NEW if "192.0.2.1" not in present else "192.0.2.1") if peer == "192.0.2.2" else None
    # the first look (MOBIKE): the daemon's sockets are bound to 192.0.2.1, it
    # receives no IKE at NEW, so NEW is not announced (no address update)
    [gw] = list(g.h.endpoint.sessions)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    seen: list[set[str]] = []
    told = rw.on_addresses
    rw.on_addresses = lambda present: (seen.append(set(present)), told(present))  # type: ignore[assignment]
    while not seen:
        assert loop.time() < deadline, "the first look never happened"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    assert seen == [{"192.0.2.1", NEW}] and g.a.endpoint.local_addresses == ()
    assert gw.session.sa.peer_addrs == [] and "MOBIKE address update sent" not in caplog.text

    # a new address alone changes nothing: 192.0.2.1 is still there and still the route's source
    nw.callback([NetEvent("addr", True, 3, f"{NEW}/24")])
    await asyncio.sleep(0.15)
    assert rw.checks == 1 and g.a.endpoint.local_ip == "192.0.2.1"

    # the address in use goes: after the burst, the daemon roams by itself
    present.discard("192.0.2.1")
    nw.callback([NetEvent("addr", False, 3, "192.0.2.1/24")])
    nw.callback([NetEvent("route", False, 3, "192.0.2.0/24")])
    deadline = loop.time() + 5
    while f"@ {NEW}[4500]" not in (await g.cli("status"))[1]:
        assert loop.time() < deadline, "status never showed the new address"
        await asyncio.sleep(0.05)
    assert rw.checks == 2 and rw.roams == 1
    while gw.session.sa.peer_addrs != []:  # the address update after the move: NO_ADDITIONAL_ADDRESSES
        assert loop.time() < deadline, "the gateway kept the gone address"
        await asyncio.sleep(0.02)
    assert (f"roaming 192.0.2.1 -> {NEW}: 192.0.2.1 is no longer on any interface that is up; "
            f"the kernel routes to 192.0.2.2 from {NEW}") in caplog.text
    assert f"roaming to {NEW} by itself (roam_events): 192.0.2.1 is no longer on any interface" in caplog.text
    assert f"roamed 192.0.2.1 -> {NEW}; IKE SAs updated or re-initiated: hq" in caplog.text
    _, text, _ = await g.cli("status", ctl=g.ctl_h)
    assert f"  remote 'site-a.example' @ {NEW}[4500]" in text  # the gateway followed (MOBIKE)
    assert await ping(g, 3) == 3
    s = g.a.endpoint.find_session("hq").session
    assert (s.sa.spi_i, s.sa.spi_r) == spis and s.local_addr == (NEW, 4500)

    # roam_events = false in a reload stops the watcher
    g.a.config.daemon.roam_events = False
    g.a._roam_events()
    assert nw.closed and g.a.netwatch is None and g.a.roamwatch is None
    assert "no longer following address changes: roam_events = false" in caplog.text


async def test_not_for_a_daemon_bound_where_it_was_told(gateways: Gateways,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    g = gateways
    FakeWatcher.made.clear()
    monkeypatch.setattr(netwatch, "NetlinkWatcher", FakeWatcher)
    monkeypatch.setattr(g.a, "network", None)
    g.a.config.daemon.address = "192.0.2.1"
    g.a._roam_events()
    assert g.a.netwatch is None and FakeWatcher.made == []


async def test_a_daemon_on_the_wildcard_announces_its_addresses_and_never_roams(
        gateways: Gateways, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """Bound to the wildcard address the daemon answers at every address:
    its watcher only announces the host's addresses (MOBIKE: the peer learns
    them, and an address update follows a change), as charon does, so a
    client whose path breaks can move to another one of ours."""
    caplog.set_level(logging.INFO)
    g = gateways
    rc, _, err = await g.cli("up", "hq")
    assert rc == 0, err
    [gw] = list(g.h.endpoint.sessions)
    assert gw.session.sa.peer_addrs == []
    FakeWatcher.made.clear()
    monkeypatch.setattr(netwatch, "NetlinkWatcher", FakeWatcher)
    monkeypatch.setattr(g.a, "network", None)
    monkeypatch.setattr(g.a, "roam_delay", 0.05)
    monkeypatch.setattr(g.a.endpoint, "local_ip", "0.0.0.0")
    present = {"192.0.2.1", NEW, "203.0.113.129"}
    monkeypatch.setattr(netwatch, "usable_addresses", lambda: set(present))
    # an address on lo (a router ID, an inner address) is never announced: no peer reaches it
    monkeypatch.setattr(netwatch, "loopback_addresses", lambda: {"127.0.0.1", "203.0.113.129"})
    g.a._roam_events()
    [nw] = FakeWatcher.made
    rw = g.a.roamwatch
    assert nw.started and g.a.netwatch is nw and rw.roam is None
    assert "bound to every address: announcing the host's addresses to MOBIKE peers (roam_events)" in caplog.text
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while gw.session.sa.peer_addrs != [NEW]:  # the first look: an address update tells the peer
        assert loop.time() < deadline, "the peer never learned our second address"
        await asyncio.sleep(0.02)
    assert g.a.endpoint.local_addresses == ("192.0.2.1", NEW)
    # our address in use goes: no move (a wildcard daemon never roams), only a new list
    present.discard("192.0.2.1")
    third = "192.0.2.78"
    present.add(third)
    nw.callback([NetEvent("addr", False, 3, "192.0.2.1/24"), NetEvent("addr", True, 3, f"{third}/24")])
    while g.a.endpoint.local_addresses != tuple(sorted((NEW, third))):
        assert loop.time() < deadline, "the new addresses were never announced"
        await asyncio.sleep(0.02)
    assert rw.checks == 1 and rw.roams == 0
    s = g.a.endpoint.find_session("hq").session
    assert s.local_addr[0] == "192.0.2.1" and "roaming" not in caplog.text
    g.a._stop_roam_events()
