"""``updown`` tests with two :class:`~aioipsec.daemon.Daemon` objects on an
in-memory network: the script that records each run's environment, its
reader, and a road warrior with its gateway set up from TOML templates."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.daemon import Daemon
from aioipsec.transports.memory import memory_pipe

RECORD = """\
#!/bin/sh
# appends its whole environment, one block per run
{ echo "--- $PLUTO_VERB"; env | sort; echo "==="; } >> "$1"
"""


def runs(log: Path) -> list[dict[str, str]]:
    """The environments the script recorded, in order."""
    if not log.exists():
        return []
    out = []
    for block in log.read_text().split("===\n"):
        lines = [ln for ln in block.splitlines() if ln and not ln.startswith("--- ")]
        if lines:
            out.append(dict(ln.split("=", 1) for ln in lines))
    return out


def write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@asynccontextmanager
async def rw_and_gw(d: Path, rw: str, gw: str) -> AsyncIterator[tuple[Daemon, Daemon]]:
    """The road warrior ``a`` and its gateway ``h`` from the templates ``rw``
    and ``gw`` (``rw.toml``, ``gw.toml`` in ``d``), whose ``{script}`` is
    :data:`RECORD` appending to ``a.log`` and ``h.log``; the gateway starts
    first.  Both are shut down (the road warrior first) on leaving."""
    rec = write_script(d / "record.sh", RECORD)
    pa, ph = d / "rw.toml", d / "gw.toml"
    pa.write_text(textwrap.dedent(rw.format(script=f"{rec} {d / 'a.log'}")))
    ph.write_text(textwrap.dedent(gw.format(script=f"{rec} {d / 'h.log'}")))
    net = MemoryNetwork()
    a_gw, _a_app = memory_pipe()
    h_gw, _h_app = memory_pipe()
    a = Daemon(str(pa), network=net, inner=a_gw)
    h = Daemon(str(ph), network=net, inner=h_gw)
    await h.start()
    await a.start()
    try:
        yield a, h
    finally:
        await a.shutdown()
        await h.shutdown()
