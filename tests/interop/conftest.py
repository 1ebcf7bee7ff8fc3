"""Fixtures for the interop tests: test beds in network namespaces, charon peers, a PKI.

Tests marked ``interop`` (every test of a module with ``pytestmark =
pytest.mark.interop``) are skipped with the reason when this machine cannot run them:
not root, ``ip netns`` unusable, or strongSwan missing (``make test`` runs
``scripts/install-system-deps.sh`` first, which installs it as root).  Each of them
gets a pytest-timeout of :data:`INTEROP_TIMEOUT` seconds, and every wait inside the
harness is bounded on its own.

Fixtures:

* ``interop_run_dir`` (session): this run's state directory (configs, logs, pid
  records); what dead earlier runs left behind is removed first.  Kept after the
  session if a test failed or ``AIOIPSEC_INTEROP_KEEP=1``.
* ``direct_topology`` / ``nat_topology`` (session): shared test beds; each test starts
  its own peers in them and the ``strongswan`` fixture stops those afterwards.
* ``interop_pki`` (session): CA + left/right certificates (ECDSA P-256/P-384/P-521, Ed25519, Ed448, RSA-3072).
* ``strongswan`` (function): a factory ``strongswan(topology, side, connection,
  log_keys=False)`` that configures and starts a charon; all are stopped (by PID) at
  the end of the test, and on failure their log tails are printed.
* ``aioipsec`` (function): a factory ``aioipsec(topology, side, connection)`` that
  configures and starts an aioipsec daemon (:class:`~.aioipsec_peer.AioipsecPeer`);
  all are stopped (SIGTERM, then SIGKILL, by PID) at the end of the test, and on
  failure their log tails are printed.
* ``process_peer`` (function): a factory ``process_peer(topology, side, args,
  ready=REGEX)`` that starts ``<venv python> ARGS`` in the side's namespace (e.g. an
  aioipsec daemon) and waits for REGEX in its output; stopped by PID after the test.
* ``micro_vm`` (function, tests marked ``vm``): the session's QEMU micro-VM
  (:mod:`.vm`, real Linux XFRM) on the right of its own direct topology (NAT
  topology: ``vm(topology="nat")``), booted on first use and halted as soon as the
  next test is not a ``vm`` test;
  ``vm_peers`` (function): ``vm_peers.strongswan(conn)`` / ``.libreswan(conn)`` in
  the VM, ``vm_peers.aioipsec(conn)`` on the left; all stopped after the test.  VM
  tests run with ``AIOIPSEC_VM_TESTS=1``; unset, only those also marked
  ``vm_smoke`` (see :func:`.vm.vm_tests_skip_reason`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .certs import TestPki, generate_pki
from . import fixtures
from .aioipsec_peer import AioipsecPeer
from .netns import Topology, netns_usable
from .peer import ProcessPeer
from .strongswan import Connection, StrongSwanPeer, charon_available
from .vm import MicroVm, VmBed, VmPeers, vm_tests_skip_reason, vm_unavailable

INTEROP_TIMEOUT = 60
_reason_cache: list[str | None] = []


def interop_unavailable() -> str | None:
    """Why interop tests cannot run here (None if they can).  Probed once per session."""
    if not _reason_cache:
        reason = netns_usable()
        if reason is None:
            reason = charon_available()
        _reason_cache.append(reason)
    return _reason_cache[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_timeout = config.pluginmanager.hasplugin("timeout")
    for item in items:
        if item.get_closest_marker("interop") is None:
            continue
        if has_timeout and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(INTEROP_TIMEOUT))
        reason = interop_unavailable()
        if reason is None and item.get_closest_marker("vm") is not None:
            smoke = item.get_closest_marker("vm_smoke") is not None
            reason = vm_tests_skip_reason(smoke=smoke) or vm_unavailable()
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: needs the QEMU micro-VM peer (tests/interop/vm.py)")
    config.addinivalue_line("markers", "vm_smoke: the VM test that runs without AIOIPSEC_VM_TESTS=1")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    fixtures.keep_report(item, report, "interop")
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return fixtures.failed(request, "interop")


@pytest.fixture(scope="session")
def interop_run_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    yield from fixtures.run_dir(request, interop_unavailable(), "interop")


@pytest.fixture(scope="session")
def direct_topology(interop_run_dir: Path) -> Iterator[Topology]:
    yield from fixtures.topology("direct", interop_run_dir)


@pytest.fixture(scope="session")
def nat_topology(interop_run_dir: Path) -> Iterator[Topology]:
    yield from fixtures.topology("nat", interop_run_dir)


@pytest.fixture(scope="session")
def interop_pki(interop_run_dir: Path) -> TestPki:
    return generate_pki(interop_run_dir / "pki")


StrongSwanFactory = Callable[..., StrongSwanPeer]


@pytest.fixture
def strongswan(request: pytest.FixtureRequest, interop_pki: TestPki
               ) -> Iterator[StrongSwanFactory]:
    peers: list[StrongSwanPeer] = []

    def start(topology: Topology, side: str, connection: Connection, *,
              log_keys: bool = False, **kwargs: Any) -> StrongSwanPeer:
        peer = StrongSwanPeer(topology, side, log_keys=log_keys, **kwargs)
        peers.append(peer)
        peer.configure(connection, interop_pki)
        peer.start()
        return peer

    yield start
    fixtures.stop_peers(peers, _failed(request), "charon.log")


@pytest.fixture
def process_peer(request: pytest.FixtureRequest) -> Iterator[Callable[..., ProcessPeer]]:
    peers: list[ProcessPeer] = []

    def start(topology: Topology, side: str, args: list[str], *, ready: str | None = None,
              timeout: float = 10.0, **kwargs: Any) -> ProcessPeer:
        peer = ProcessPeer(topology, side, args, ready=ready, **kwargs)
        peers.append(peer)
        peer.start(timeout)
        return peer

    yield start
    for peer in reversed(peers):
        peer.stop()
    if _failed(request):
        for peer in peers:
            print(f"\n----- {peer.name} output -----\n{peer.logs()[-4000:]}")


AioipsecFactory = Callable[..., AioipsecPeer]


@pytest.fixture
def aioipsec(request: pytest.FixtureRequest, interop_pki: TestPki
             ) -> Iterator[AioipsecFactory]:
    peers: list[AioipsecPeer] = []

    def start(topology: Topology, side: str, connection: Connection, **kwargs: Any
              ) -> AioipsecPeer:
        peer = AioipsecPeer(topology, side, **kwargs)
        peers.append(peer)
        peer.configure(connection, interop_pki)
        peer.start()
        return peer

    yield start
    fixtures.stop_peers(peers, _failed(request), "aioipsec.log", lines=80)


# ---------------------------------------------------------------------------
# the micro-VM (tests/interop/vm.py): one per session, only while vm tests run

_vm_beds: list[VmBed] = []


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # after the test's own fixtures are gone: halt the VM unless the next test uses it
    if nextitem is None or nextitem.get_closest_marker("vm") is None:
        for bed in _vm_beds:
            bed.close()


@pytest.fixture(scope="session")
def vm_bed(interop_run_dir: Path) -> Iterator[VmBed]:
    bed = VmBed(interop_run_dir)
    _vm_beds.append(bed)
    yield bed
    bed.close()


@pytest.fixture
def micro_vm(request: pytest.FixtureRequest, vm_bed: VmBed) -> MicroVm:
    """The VM on the right of a direct topology, or of the NAT topology for tests
    marked ``vm(topology="nat")``."""
    marker = request.node.get_closest_marker("vm")
    kind = marker.kwargs.get("topology", "direct") if marker is not None else "direct"
    return vm_bed.get(kind)


@pytest.fixture
def vm_peers(request: pytest.FixtureRequest, micro_vm: MicroVm) -> Iterator[VmPeers]:
    peers = VmPeers(micro_vm)
    yield peers
    peers.stop_all()
    if _failed(request):
        print(peers.log_tails())
