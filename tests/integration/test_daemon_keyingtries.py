"""The daemon with ``keyingtries`` from its TOML file: a gateway with
``start_action = "start"`` started while its peer is not there yet keeps
trying and comes up when the peer starts (keyingtries = 0), ``status`` shows
the connection being retried, and the ``down`` control command ends the
attempts.  In-memory network, short retransmit schedule."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncwait import until

from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.control import ControlServer
from aioipsec.daemon import Daemon
from aioipsec.events import KeyingRetry
from aioipsec.netutil import icmp_echo, parse_icmp_echo
from aioipsec.status import format_status
from aioipsec.transports.memory import memory_pipe

SITE_A = """
[connections.hq]
version = {version}
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["{ike}"]
keyingtries = {tries}
retransmit_timeout = "0.05s"
retransmit_base = 1
retransmit_tries = 1
local  = {{ auth = "psk", id = "192.0.2.1" }}
remote = {{ auth = "psk", id = "192.0.2.2" }}

[connections.hq.children.lan]
local_ts  = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["{esp}"]
start_action = "start"

[secrets.hq]
id = ["192.0.2.1", "192.0.2.2"]
secret = "a long pre-shared key for the keyingtries test"
"""

HQ = """
[connections.site-a]
version = {version}
local_addrs  = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
proposals = ["{ike}"]
local  = {{ auth = "psk", id = "192.0.2.2" }}
remote = {{ auth = "psk", id = "192.0.2.1" }}

[connections.site-a.children.lan]
local_ts  = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
esp_proposals = ["{esp}"]

[secrets.site-a]
id = ["192.0.2.1", "192.0.2.2"]
secret = "a long pre-shared key for the keyingtries test"
"""

V = {
    2: {"ike": "aes128gcm16-prfsha256-x25519", "esp": "aes128gcm16"},
    1: {"ike": "aes256-sha256-modp2048", "esp": "aes256-sha256"},
}
VERSIONS = pytest.mark.parametrize("version", [2, 1], ids=["ikev2", "ikev1"])


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="aioipsec-kt-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write(d: Path, version: int, tries: int) -> tuple[Path, Path]:
    pa, ph = d / "site-a.toml", d / "hq.toml"
    pa.write_text(textwrap.dedent(SITE_A.format(version=version, tries=tries, **V[version])))
    ph.write_text(textwrap.dedent(HQ.format(version=version, **V[version])))
    return pa, ph


def retries(events: list[Any]) -> list[int]:
    return [ev.attempt for ev in events if isinstance(ev, KeyingRetry)]


@VERSIONS
async def test_gateway_started_before_its_peer(short_dir: Path, version: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pa, ph = write(short_dir, version, 0)
    net = MemoryNetwork()
    a_gw, a_app = memory_pipe()
    h_gw, h_app = memory_pipe()
    a = Daemon(str(pa), network=net, inner=a_gw)
    assert a.config.connections["hq"].keyingtries == 0
    events: list[Any] = []
    await a.start()
    a.endpoint.event_listeners.append(lambda p, ev: events.append(ev))
    h = None
    try:
        await until(lambda: len(retries(events)) >= 2, timeout=5, what="hq being retried")
        st = await ControlServer(a, str(short_dir / "unused.ctl")).handle({"cmd": "status"})
        [row] = [r for r in st["ike_sas"] if r["state"] != "CLOSED"]
        assert row["name"] == "hq" and row["attempt"] >= 2 and row["keyingtries"] == 0
        assert "connecting: attempt" in format_status(st)
        assert "hq: peer 192.0.2.2 not responding, trying again: attempt 2 (keyingtries = 0: until established)" \
            in caplog.text
        h = Daemon(str(ph), network=net, inner=h_gw)
        await h.start()  # the peer starts
        proto = None

        def up() -> bool:
            nonlocal proto
            proto = a.endpoint.find_session("hq")
            return proto is not None and bool(proto.children)

        await until(up, timeout=5, what="the tunnel once hq is there")
        a_app.send_batch([icmp_echo("198.51.100.10", "203.0.113.10", 7, i, b"keyingtries") for i in range(3)])
        got: list[bytes] = []
        async with asyncio.timeout(3):
            while len(got) < 3:
                got += [p for p in await h_app.recv_batch() if parse_icmp_echo(p)]
        assert len(got) == 3
    finally:
        await a.shutdown()
        if h is not None:
            await h.shutdown()


@VERSIONS
async def test_down_stops_the_attempts(short_dir: Path, version: int) -> None:
    pa, _ = write(short_dir, version, 0)
    net = MemoryNetwork()
    inits: list[bytes] = []

    def tap(src: Any, data: bytes, dst: Any) -> None:
        if dst == ("192.0.2.2", 500) and data[8:16] == bytes(8) and data[:8] not in inits:
            inits.append(data[:8])

    net.tap = tap
    a_gw, _a_app = memory_pipe()
    a = Daemon(str(pa), network=net, inner=a_gw)
    await a.start()
    try:
        await until(lambda: len(inits) >= 3, timeout=5, what="three attempts")
        answer = await ControlServer(a, str(short_dir / "unused.ctl")).handle({"cmd": "down", "name": "hq"})
        assert answer in ("hq: IKE SA deleted; no further attempts", "hq: no IKE SA; no further attempts")
        n = len(inits)
        await asyncio.sleep(0.5)  # five attempts' time
        assert len(inits) == n
        assert a.endpoint.find_session("hq") is None
        assert await a.down("hq") == "hq: no IKE SA"
    finally:
        await a.shutdown()


async def test_three_attempts_from_the_file(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pa, _ = write(short_dir, 2, 3)
    a_gw, _a_app = memory_pipe()
    a = Daemon(str(pa), network=MemoryNetwork(), inner=a_gw)
    await a.start()
    try:
        await until(lambda: "giving up after 3 attempts" in caplog.text, timeout=5, what="giving up")
        await asyncio.sleep(0.3)
        assert "attempt 2 of 3" in caplog.text and "attempt 3 of 3" in caplog.text and "attempt 4" not in caplog.text
        # the daemon logs the event as a warning naming the connection
        assert any(r.levelno == logging.WARNING and r.getMessage().startswith("hq: KeyingFailed(connection='hq', "
                   "peer='192.0.2.2', attempts=3, tries=3, reason='peer not responding')") for r in caplog.records)
    finally:
        await a.shutdown()


async def test_up_wait_follows_the_later_attempts(short_dir: Path) -> None:
    """`up --wait` while keyingtries repeats unanswered attempts: the answer
    is the attempt that succeeds, not the first one's failure."""
    pa, ph = write(short_dir, 2, 0)
    net = MemoryNetwork()
    a_gw, _a_app = memory_pipe()
    h_gw, _h_app = memory_pipe()
    a = Daemon(str(pa), network=net, inner=a_gw)
    events: list[Any] = []
    await a.start()
    a.endpoint.event_listeners.append(lambda p, ev: events.append(ev))
    h = None
    try:
        server = ControlServer(a, str(short_dir / "unused.ctl"))
        waiting = asyncio.ensure_future(server.handle({"cmd": "up", "name": "hq", "wait": True, "timeout": 8}))
        await until(lambda: len(retries(events)) >= 2, timeout=5, what="two further attempts")
        assert not waiting.done()
        h = Daemon(str(ph), network=net, inner=h_gw)
        await h.start()
        answer = await asyncio.wait_for(waiting, 8)
        assert answer.startswith("hq: IKE SA established, IKEv2 "), answer
        assert "hq: CHILD_SA lan installed" in answer
    finally:
        await a.shutdown()
        if h is not None:
            await h.shutdown()
