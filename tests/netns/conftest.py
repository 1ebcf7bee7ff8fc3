"""Fixtures for end-to-end tests in network namespaces (``tests/netns``).

These tests run real aioipsec daemons (``python -m aioipsec daemon``, TUN
device, raw ESP or UDP 4500) and strongSwan charons in namespaces with a
per-run prefix, reusing the interop harness (``tests/interop/netns.py``,
``strongswan.py``, ``aioipsec_peer.py``) rather than copying it.  They need
root; without it (or without ``ip netns``, iperf3, strongSwan for the cases
that use it) they are skipped with the reason.

Fixtures:

* ``direct`` / ``nat`` (module scope): the interop topologies
  (left 192.0.2.1 == right 192.0.2.2; left behind a MASQUERADE NAT), destroyed
  after the module (processes stopped by PID, namespaces deleted);
* ``aio`` (function): ``aio(topo, side, connection, daemon_args=(...))``
  starts an aioipsec daemon from the harness's rendering of ``connection``;
* ``charon`` (function): ``charon(topo, side, connection)`` starts a
  strongSwan peer (kernel-libipsec);

all peers are stopped by PID after each test; on failure their log tails are
printed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from interop import fixtures
from interop.aioipsec_peer import AioipsecPeer
from interop.netns import Topology, netns_usable
from interop.strongswan import Connection, StrongSwanPeer, charon_available

NETNS_TIMEOUT = 90
_reasons: dict[str, str | None] = {}


def netns_unavailable() -> str | None:
    if "netns" not in _reasons:
        reason = netns_usable()
        for tool in ("iperf3", "tcpdump", "ping"):
            if reason is None and shutil.which(tool) is None:
                reason = f"{tool} is not installed; run scripts/install-system-deps.sh as root"
        _reasons["netns"] = reason
    return _reasons["netns"]


def strongswan_unavailable() -> str | None:
    if "strongswan" not in _reasons:
        _reasons["strongswan"] = netns_unavailable() or charon_available()
    return _reasons["strongswan"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_timeout = config.pluginmanager.hasplugin("timeout")
    here = Path(__file__).parent
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.netns)
        if has_timeout and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(NETNS_TIMEOUT))
        reason = netns_unavailable()
        if reason is None and item.get_closest_marker("strongswan") is not None:
            reason = strongswan_unavailable()
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "strongswan: needs a strongSwan (charon) peer")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    fixtures.keep_report(item, report, "netns")
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return fixtures.failed(request, "netns")


@pytest.fixture(scope="session")
def netns_run_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    yield from fixtures.run_dir(request, netns_unavailable(), "netns")


@pytest.fixture(scope="module")
def direct(netns_run_dir: Path) -> Iterator[Topology]:
    yield from fixtures.topology("direct", netns_run_dir)


@pytest.fixture(scope="module")
def nat(netns_run_dir: Path) -> Iterator[Topology]:
    yield from fixtures.topology("nat", netns_run_dir)


AioFactory = Callable[..., AioipsecPeer]


@pytest.fixture
def aio(request: pytest.FixtureRequest) -> Iterator[AioFactory]:
    peers: list[AioipsecPeer] = []

    def start(topology: Topology, side: str, connection: Connection, *, extra_toml: str = "",
              daemon_args: tuple[str, ...] = (), **kwargs: Any) -> AioipsecPeer:
        peer = AioipsecPeer(topology, side, **kwargs)
        peer.args += list(daemon_args)
        peers.append(peer)
        peer.configure(connection)
        if extra_toml:
            peer.config_path.write_text(peer.config_path.read_text() + "\n" + extra_toml)
        peer.start()
        return peer

    yield start
    fixtures.stop_peers(peers, _failed(request), "log")


@pytest.fixture
def charon(request: pytest.FixtureRequest) -> Iterator[Callable[..., StrongSwanPeer]]:
    if strongswan_unavailable() is not None:
        pytest.skip(str(strongswan_unavailable()))
    peers: list[StrongSwanPeer] = []

    def start(topology: Topology, side: str, connection: Connection, **kwargs: Any) -> StrongSwanPeer:
        peer = StrongSwanPeer(topology, side, **kwargs)
        peers.append(peer)
        peer.configure(connection)
        peer.start()
        return peer

    yield start
    fixtures.stop_peers(peers, _failed(request), "charon.log")
