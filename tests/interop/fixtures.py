"""Fixture code shared by ``tests/interop/conftest.py`` and
``tests/netns/conftest.py``: the per-run state directory, topologies torn
down after use, "did this test fail" and stopping a test's peers with
their log tails printed on failure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from .netns import Topology, cleanup_stale_runs, create_topology, make_run_dir


class _Peer(Protocol):
    name: str
    dir: Path

    def stop(self) -> Any: ...

    def logs(self) -> str: ...


def run_dir(request: pytest.FixtureRequest, reason: str | None, label: str) -> Iterator[Path]:
    """Body of a session fixture: skip with ``reason`` if any; else remove what
    dead runs left, yield a fresh run directory, and remove it afterwards
    unless a test failed or ``AIOIPSEC_INTEROP_KEEP=1``."""
    if reason is not None:
        pytest.skip(reason)
    cleanup_stale_runs()
    path = make_run_dir()
    yield path
    if os.environ.get("AIOIPSEC_INTEROP_KEEP") == "1" or request.session.testsfailed:
        print(f"\n{label} state kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


def topology(kind: str, run_dir: Path) -> Iterator[Topology]:
    """A ``kind`` topology, destroyed (processes by PID, namespaces) afterwards."""
    topo = create_topology(kind, run_dir=run_dir)
    try:
        yield topo
    finally:
        topo.destroy()


def keep_report(item: pytest.Item, report: pytest.TestReport, prefix: str) -> None:
    """Record ``report`` on ``item`` for :func:`failed` (from a makereport hook)."""
    setattr(item, f"{prefix}_rep_{report.when}", report)


def failed(request: pytest.FixtureRequest, prefix: str) -> bool:
    """Whether the test's call phase failed (or never reported)."""
    rep = getattr(request.node, f"{prefix}_rep_call", None)
    return rep is None or rep.failed


def stop_peers(peers: Iterable[_Peer], failed: bool, what: str, lines: int = 60) -> None:
    """Stop ``peers`` in reverse order; after a failure print the last
    ``lines`` lines of each one's log (``what`` names the log)."""
    peers = list(peers)
    for peer in reversed(peers):
        peer.stop()
    if failed:
        for peer in peers:
            tail = "\n".join(peer.logs().splitlines()[-lines:])
            print(f"\n----- {peer.name} ({peer.dir}) {what} tail -----\n{tail}")
