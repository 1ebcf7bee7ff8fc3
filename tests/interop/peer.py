"""What an interop test needs from either end of a tunnel: charon or an aioipsec process.

:class:`Peer` is the interface a test is written against;
:class:`~.strongswan.StrongSwanPeer` implements it today.  The aioipsec side will implement it by subclassing
:class:`ProcessPeer` (its process, logs and PID handling are here already) once the
asyncio layer and the control interface land, e.g. starting
``ip netns exec <ns> <venv python> -m aioipsec daemon -c <file>`` and reading SAs and
counters from ``aioipsec status``.  A test then reads the same :class:`IkeSa` /
:class:`ChildSa` records (SPIs, packet and byte counters) from both ends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from .netns import NamespaceProcess, Side, Topology
from .strongswan import ChildSa, IkeSa


class PeerError(RuntimeError):
    """A peer process died or a bounded wait ran out."""


@runtime_checkable
class Peer(Protocol):
    """One IKE/IPsec endpoint in a test-bed namespace."""

    side: Side

    @property
    def name(self) -> str: ...

    def start(self, timeout: float = ...) -> None: ...

    def stop(self, grace: float = ...) -> None: ...

    def alive(self) -> bool: ...

    def initiate(self, child: str = ..., ike: str = ..., timeout: float = ...) -> str: ...

    def wait_established(self, timeout: float = ..., child: str = ...) -> ChildSa: ...

    def list_sas(self) -> list[IkeSa]: ...

    def logs(self) -> str: ...


class ProcessPeer:
    """A Python process (this interpreter, i.e. the project's venv) in a side's namespace.

    ``ProcessPeer(topology, "left", ["-m", "aioipsec", "daemon", "-c", conf],
    ready=r"listening")``: :meth:`start` launches it and waits until ``ready`` appears in
    its output; :meth:`stop` stops it by PID.  Its combined stdout/stderr is
    :meth:`logs`.  Subclasses add the control side (initiate, list_sas ...).
    """

    def __init__(self, topology: Topology, side: str, args: Sequence[str], *,
                 ready: str | None = None, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.topology = topology
        self.side = topology.side(side)
        self.args = list(args)
        self.ready = ready
        self.env = env
        self.log = log
        self.process: NamespaceProcess | None = None

    @property
    def name(self) -> str:
        return f"process-{self.side.name}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 10.0) -> None:
        self.process = self.side.ns.python(self.args, log=self.log, env=self.env)
        if self.ready is not None:
            self.wait_log(self.ready, timeout)

    def stop(self, grace: float = 5.0) -> None:
        if self.process is not None:
            self.process.stop(grace)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def logs(self) -> str:
        return self.process.output() if self.process is not None else ""

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until ``pattern`` appears in the output; fail early if the process dies."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.logs())
            if m:
                return m
            if not self.alive():
                raise PeerError(f"{self.name} exited before {pattern!r}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise PeerError(f"{pattern!r} not in {self.name}'s output after "
                                      f"{timeout}s:\n{self.logs()[-2000:]}")
            time.sleep(0.05)

