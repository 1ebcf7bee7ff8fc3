"""``updown`` scripts in the daemon (strongSwan's child option): two
:class:`~aioipsec.daemon.Daemon` objects on an in-memory network, each child
with a real script that appends its environment to a file.

Up runs when the Child SA is installed and down when it is deleted, once per
local/remote selector pair, with charon's PLUTO_* variables; a rekey (Child
or IKE SA) runs neither, as charon; a failing or hanging script is logged
with the child, the peer, the script and its status, and the tunnel works
meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asyncwait import until
from updown_daemons import RECORD, runs, rw_and_gw, write_script

from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.daemon import Daemon
from aioipsec.netutil import icmp_echo, parse_icmp_echo
from aioipsec.transports.memory import memory_pipe

SITE_A = """
[connections.hq]
version = {version}
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["{ike}"]
local  = {{ auth = "psk", id = "{id_a}" }}
remote = {{ auth = "psk", id = "{id_h}" }}

[connections.hq.children.lan]
local_ts  = ["198.51.100.0/24"{extra_local}]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["{esp}"]
updown = "{script_a}"

[secrets.hq]
id = ["{id_a}", "{id_h}"]
secret = "a long pre-shared key for the updown test"
"""

HQ = """
[connections.site-a]
version = {version}
local_addrs  = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
proposals = ["{ike}"]
local  = {{ auth = "psk", id = "{id_h}" }}
remote = {{ auth = "psk", id = "{id_a}" }}

[connections.site-a.children.net]
local_ts  = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"{extra_local}]
esp_proposals = ["{esp}"]
updown = "{script_h}"

[secrets.site-a]
id = ["{id_a}", "{id_h}"]
secret = "a long pre-shared key for the updown test"
"""

V2 = {"version": 2, "ike": "aes128gcm16-prfsha256-x25519", "esp": "aes128gcm16", "id_a": "site-a.example",
      "id_h": "hq.example"}
V1 = {"version": 1, "ike": "aes256-sha256-modp2048", "esp": "aes256-sha256", "id_a": "192.0.2.1", "id_h": "192.0.2.2"}

SECRET_ENV = "AIOIPSEC_UPDOWN_TEST_NOT_INHERITED"


@dataclass
class Pair:
    dir: Path
    a: Daemon
    h: Daemon
    a_app: Any
    h_app: Any
    log_a: Path
    log_h: Path

    async def up(self, n: int = 1) -> Any:
        """Initiate from site-a; wait for ``n`` Child SAs on both ends (IKEv1:
        one Quick Mode per selector pair)."""
        self.a.up("hq")
        proto = await until_session(self.a, "hq")
        await until(lambda: len(proto.children) == n, 10, what=f"{n} Child SA(s)")
        await until(lambda: self.h.endpoint.find_session("site-a") is not None
                    and len(self.h.endpoint.find_session("site-a").children) == n, what="the responder's Child SAs")
        return proto

    async def drain(self) -> None:
        await self.a._updown_drain()
        await self.h._updown_drain()


async def until_session(d: Daemon, name: str) -> Any:
    await until(lambda: d.endpoint.find_session(name) is not None, what=f"session {name}")
    return d.endpoint.find_session(name)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="aioipsec-updown-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.asynccontextmanager
async def make_pair(d: Path, *, v: dict[str, Any] = V2, two_subnets: bool = False, script_a: str | None = None,
                    script_h: str | None = None, timeout: float | None = 10.0,
                    addrs: tuple[str, str] | None = None, child_a: str = "") -> AsyncIterator[Pair]:
    """Two daemons on an in-memory network; each child's ``updown`` records
    its runs (``a.log``, ``h.log``) unless ``script_a``/``script_h`` say otherwise.
    ``addrs`` replaces the outer addresses (site-a's, hq's); ``child_a`` is
    added to site-a's child; ``timeout`` None keeps the daemons' default."""
    rec = write_script(d / "record.sh", RECORD)
    script_a = script_a or f"{rec} {d / 'a.log'}"
    script_h = script_h or f"{rec} {d / 'h.log'}"
    extra = ', "198.51.101.0/24"' if two_subnets else ""
    pa, ph = d / "site-a.toml", d / "hq.toml"
    text_a = textwrap.dedent(SITE_A.format(script_a=script_a, extra_local=extra, **v)).replace(
        f'updown = "{script_a}"', f'updown = "{script_a}"\n{child_a}')
    text_h = textwrap.dedent(HQ.format(script_h=script_h, extra_local=extra, **v))
    if addrs is not None:
        text_a = text_a.replace("192.0.2.1", "@A@").replace("192.0.2.2", addrs[1]).replace("@A@", addrs[0])
        text_h = text_h.replace("192.0.2.1", "@A@").replace("192.0.2.2", addrs[1]).replace("@A@", addrs[0])
    pa.write_text(text_a)
    ph.write_text(text_h)
    net = MemoryNetwork()
    a_gw, a_app = memory_pipe()
    h_gw, h_app = memory_pipe()
    a = Daemon(str(pa), network=net, inner=a_gw)
    h = Daemon(str(ph), network=net, inner=h_gw)
    if timeout is not None:
        a.updown_timeout = h.updown_timeout = timeout
    await h.start()
    await a.start()
    try:
        yield Pair(d, a, h, a_app, h_app, d / "a.log", d / "h.log")
    finally:
        await a.shutdown()
        await h.shutdown()


@pytest.fixture
async def pair(short_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    async with make_pair(short_dir, **getattr(request, "param", {})) as p:
        yield p


@pytest.fixture(autouse=True)
def _daemon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Something in the daemon's environment that no script may see."""
    monkeypatch.setenv(SECRET_ENV, "the daemon's own environment")


async def ping(p: Pair, n: int) -> int:
    p.a_app.send_batch([icmp_echo("198.51.100.10", "203.0.113.10", 0x55, i, b"updown") for i in range(1, n + 1)])
    got: list[bytes] = []
    try:
        async with asyncio.timeout(3):
            while len(got) < n:
                got += [x for x in await p.h_app.recv_batch() if parse_icmp_echo(x)]
    except TimeoutError:
        pass
    return len(got)


def check_clean(env: dict[str, str]) -> None:
    """Only PATH and PLUTO_* (and what sh itself sets): not the daemon's environment."""
    extra = set(env) - {"PATH", "PWD", "SHLVL", "_", "OLDPWD"}
    assert all(k.startswith("PLUTO_") for k in extra), sorted(extra)
    assert SECRET_ENV not in env


@pytest.mark.parametrize(
    ("pair", "version"),
    [({"two_subnets": True}, 2), ({"v": V1}, 1)],
    indirect=["pair"], ids=["ikev2", "ikev1"],
)
async def test_up_and_down_runs(pair: Pair, version: int) -> None:
    p = pair
    # IKEv2: one Child SA with two local selectors (IKEv1 here: one pair)
    mine = ["198.51.100.0/24", "198.51.101.0/24"] if version == 2 else ["198.51.100.0/24"]
    n = len(mine)
    proto = await p.up()
    await p.drain()
    ra = runs(p.log_a)
    # one run per local/remote selector pair, as charon
    assert [r["PLUTO_VERB"] for r in ra] == ["up-client"] * n
    assert sorted(r["PLUTO_MY_CLIENT"] for r in ra) == mine
    ids = V2 if version == 2 else V1
    for r in ra:
        check_clean(r)
        assert r["PLUTO_CONNECTION"] == "lan"  # charon: the child's name
        assert (r["PLUTO_ME"], r["PLUTO_PEER"]) == ("192.0.2.1", "192.0.2.2")
        assert (r["PLUTO_MY_ID"], r["PLUTO_PEER_ID"]) == (ids["id_a"], ids["id_h"])
        assert r["PLUTO_PEER_CLIENT"] == "203.0.113.0/24"
        assert (r["PLUTO_PROTO"], r["PLUTO_VERSION"], r["PLUTO_INTERFACE"]) == ("esp", "1.1", "unknown")
        assert (r["PLUTO_MY_PROTOCOL"], r["PLUTO_MY_PORT"]) == ("0", "0")
        assert "PLUTO_MY_SOURCEIP" not in r and "PLUTO_UDP_ENC" not in r
    assert len({r["PLUTO_REQID"] for r in ra}) == 1 and len({r["PLUTO_UNIQUEID"] for r in ra}) == 1
    rh = runs(p.log_h)
    assert [r["PLUTO_VERB"] for r in rh] == ["up-client"] * n
    assert {(r["PLUTO_CONNECTION"], r["PLUTO_ME"], r["PLUTO_PEER"], r["PLUTO_MY_CLIENT"]) for r in rh} == {
        ("net", "192.0.2.2", "192.0.2.1", "203.0.113.0/24")}
    assert sorted(r["PLUTO_PEER_CLIENT"] for r in rh) == mine
    assert {(r["PLUTO_MY_ID"], r["PLUTO_PEER_ID"]) for r in rh} == {(ids["id_h"], ids["id_a"])}
    # no key of the Child SA anywhere in what the scripts saw
    text = p.log_a.read_text() + p.log_h.read_text()
    for ev in proto.children.values():
        for key in (ev.encr_key_in, ev.encr_key_out, ev.integ_key_in, ev.integ_key_out):
            if key:
                assert key.hex() not in text and key.hex().upper() not in text
    assert await ping(p, 2) == 2

    await p.a.down("hq")
    await until(lambda: p.h.endpoint.find_session("site-a") is None, what="the peer's delete")
    await p.drain()
    ra2 = runs(p.log_a)
    assert [r["PLUTO_VERB"] for r in ra2[n:]] == ["down-client"] * n
    assert sorted(r["PLUTO_MY_CLIENT"] for r in ra2[n:]) == mine
    assert {(r["PLUTO_MY_CLIENT"], r["PLUTO_REQID"]) for r in ra2[n:]} == {
        (r["PLUTO_MY_CLIENT"], r["PLUTO_REQID"]) for r in ra}, "down names the SA up named"
    assert [r["PLUTO_VERB"] for r in runs(p.log_h)[n:]] == ["down-client"] * n


@pytest.mark.parametrize("pair", [{}, {"v": V1}], indirect=True, ids=["ikev2", "ikev1"])
async def test_rekeys_run_neither_down_nor_up(pair: Pair) -> None:
    p = pair
    proto = await p.up()
    await p.drain()
    assert len(runs(p.log_a)) == 1 and len(runs(p.log_h)) == 1
    (old,) = list(proto.children)
    new = await asyncio.wait_for(proto.rekey_child_sa(old), 10)
    assert new.rekeyed_from == old
    await until(lambda: list(proto.children) == [new.spi_in], what="the old Child SA's delete")
    # the responder rekeys too (its own initiative)
    hp = p.h.endpoint.find_session("site-a")
    await until(lambda: len(hp.children) == 1, what="the responder's old SA gone")
    (h_old,) = list(hp.children)
    await asyncio.wait_for(hp.rekey_child_sa(h_old), 10)
    await until(lambda: len(hp.children) == 1 and len(proto.children) == 1, what="the second rekey's delete")
    # and the IKE SA
    spi_before = proto.session.spi_i
    await proto.rekey()
    await until(lambda: proto.session.spi_i != spi_before, what="the IKE rekey")
    await p.drain()
    assert [r["PLUTO_VERB"] for r in runs(p.log_a)] == ["up-client"]
    assert [r["PLUTO_VERB"] for r in runs(p.log_h)] == ["up-client"]
    assert await ping(p, 2) == 2
    reqid = runs(p.log_a)[0]["PLUTO_REQID"]
    await p.a.down("hq")
    await p.drain()
    down = runs(p.log_a)[1:]
    assert [(r["PLUTO_VERB"], r["PLUTO_REQID"]) for r in down] == [("down-client", reqid)]
    await until(lambda: len(runs(p.log_h)) == 2, what="the responder's down run")


FAIL = """\
#!/bin/sh
echo "cannot add the rule for $PLUTO_PEER_CLIENT" >&2
exit 1
"""
HANG = """\
#!/bin/sh
echo $$ >> "$1"
sleep 30
"""


async def test_failing_script_is_logged_and_the_tunnel_works(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    fail = write_script(short_dir / "fail.sh", FAIL)
    caplog.set_level(logging.INFO, logger="aioipsec.daemon")
    async with make_pair(short_dir, script_a=str(fail)) as p:
        await p.up()
        assert await ping(p, 3) == 3
        await p.drain()
        text = caplog.text
        assert f"hq/lan with 192.0.2.2: updown up-client {fail} failed with exit status 1" in text
        assert "hq/lan with 192.0.2.2: updown: cannot add the rule for 203.0.113.0/24" in text
        assert await ping(p, 2) == 2
        await p.a.down("hq")
        await p.drain()
        assert f"hq/lan with 192.0.2.2: updown down-client {fail} failed with exit status 1" in caplog.text


async def test_hanging_script_is_killed_and_never_blocks(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    hang = write_script(short_dir / "hang.sh", HANG)
    pids = short_dir / "pids"
    caplog.set_level(logging.INFO, logger="aioipsec.daemon")
    async with make_pair(short_dir, script_a=f"{hang} {pids}", timeout=0.8) as p:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await p.up()
        await until(lambda: pids.exists() and pids.read_text().strip(), what="the script started")
        # the script is sleeping: IKE and ESP go on meanwhile
        assert p.a._updown_tasks, "the up run is still going"
        assert await ping(p, 3) == 3
        assert (await p.a.clear("hq")) == "cleared: hq"  # IKE works while the down run waits its turn
        await p.drain()
        took = loop.time() - t0
        assert f"hq/lan with 192.0.2.2: updown up-client {hang} did not finish within 0.8s: killed" in caplog.text
        assert f"hq/lan with 192.0.2.2: updown down-client {hang} did not finish within 0.8s: killed" in caplog.text
        assert took < 10, took
        for pid in pids.read_text().split():
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid), 0)
        await p.up()
        assert await ping(p, 2) == 2


SERIAL = """\
#!/bin/sh
echo "start $PLUTO_VERB" >> "$1"
sleep 0.3
echo "end $PLUTO_VERB" >> "$1"
"""


async def test_runs_of_a_child_are_serial_up_before_down(short_dir: Path) -> None:
    s = write_script(short_dir / "serial.sh", SERIAL)
    out = short_dir / "order"
    async with make_pair(short_dir, script_a=f"{s} {out}") as p:
        await p.up()
        await p.a.down("hq")  # at once: the up run is still sleeping
        await p.drain()
        assert out.read_text().splitlines() == ["start up-client", "end up-client", "start down-client",
                                                "end down-client"]


RW = """
[connections.gw]
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
vips = ["0.0.0.0"]
local  = {{ auth = "psk", id = "rw.example" }}
remote = {{ auth = "psk", id = "gw.example" }}
[connections.gw.children.net]
remote_ts = ["203.0.113.0/24"]
updown = "{script}"
[secrets.gw]
secret = "a long pre-shared key for the updown test"
"""
GW = """
[pools.rw]
addrs = "10.3.0.0/28"
dns = ["10.3.0.53"]
[connections.rw]
local_addrs  = ["192.0.2.2"]
pools = ["rw"]
local  = {{ auth = "psk", id = "gw.example" }}
remote = {{ auth = "psk" }}
[connections.rw.children.net]
local_ts = ["203.0.113.0/24"]
updown = "{script}"
[secrets.rw]
secret = "a long pre-shared key for the updown test"
"""


async def test_virtual_ips_and_dns(short_dir: Path) -> None:
    async with rw_and_gw(short_dir, RW, GW) as (a, h):
        a.up("gw")
        proto = await until_session(a, "gw")
        await asyncio.wait_for(proto.wait_child("net"), 10)
        await until(lambda: h.endpoint.find_session("rw") is not None and h.endpoint.find_session("rw").children,
                    what="the gateway's Child SA")
        await a._updown_drain()
        await h._updown_drain()
        (ra,) = runs(short_dir / "a.log")
        # the road warrior's selector is its virtual IP, in PLUTO_MY_SOURCEIP as charon
        assert (ra["PLUTO_VERB"], ra["PLUTO_MY_CLIENT"], ra["PLUTO_MY_SOURCEIP"], ra["PLUTO_MY_SOURCEIP4_1"]) == (
            "up-client", "10.3.0.1/32", "10.3.0.1", "10.3.0.1")
        assert ra["PLUTO_DNS4_1"] == "10.3.0.53" and "PLUTO_PEER_SOURCEIP" not in ra
        (rh,) = runs(short_dir / "h.log")
        assert (rh["PLUTO_PEER_CLIENT"], rh["PLUTO_PEER_SOURCEIP"], rh["PLUTO_CONNECTION"]) == (
            "10.3.0.1/32", "10.3.0.1", "net")
        assert "PLUTO_MY_SOURCEIP" not in rh
    assert [r["PLUTO_VERB"] for r in runs(short_dir / "a.log")] == ["up-client", "down-client"], "shutdown runs down"
    assert [r["PLUTO_VERB"] for r in runs(short_dir / "h.log")] == ["up-client", "down-client"]


async def test_interface_is_the_outer_one_holding_our_address(short_dir: Path) -> None:
    # 127.0.0.1 is this host's own (on "lo"): PLUTO_INTERFACE names
    # the interface holding PLUTO_ME, as charon's get_interface; without a TUN
    # device (an inner transport here) PLUTO_TUN_INTERFACE is left out
    lo = socket.if_indextoname(1)
    async with make_pair(short_dir, addrs=("127.0.0.1", "127.0.0.2")) as p:
        await p.up()
        await p.drain()
        (ra,) = runs(p.log_a)
        (rh,) = runs(p.log_h)
        assert (ra["PLUTO_ME"], ra["PLUTO_INTERFACE"]) == ("127.0.0.1", lo)
        # 127.0.0.2 is routed to lo (127.0.0.0/8) but no interface holds it: charon's "unknown"
        assert (rh["PLUTO_ME"], rh["PLUTO_INTERFACE"]) == ("127.0.0.2", "unknown")
        assert "PLUTO_TUN_INTERFACE" not in ra and "PLUTO_XAUTH_ID" not in ra
        await p.a.down("hq")
        await p.drain()
        down = runs(p.log_a)[1]
        assert (down["PLUTO_VERB"], down["PLUTO_INTERFACE"]) == ("down-client", lo)


async def test_down_reuses_the_interface_of_the_up_run(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # charon caches the interface per reqid: the address may be gone when the SA goes down
    import aioipsec.daemon as daemon_mod

    async with make_pair(short_dir, addrs=("127.0.0.1", "127.0.0.2")) as p:
        await p.up()
        await p.drain()
        monkeypatch.setattr(daemon_mod, "interface_of", lambda addr: None)
        await p.a.down("hq")
        await p.drain()
        assert [(r["PLUTO_VERB"], r["PLUTO_INTERFACE"]) for r in runs(p.log_a)] == [
            ("up-client", socket.if_indextoname(1)), ("down-client", socket.if_indextoname(1))]


async def test_child_updown_timeout_from_the_config(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    hang = write_script(short_dir / "hang.sh", HANG)
    pids = short_dir / "pids"
    caplog.set_level(logging.INFO, logger="aioipsec.daemon")
    # the daemons keep their default (10 s): the child's own updown_timeout applies
    async with make_pair(short_dir, script_a=f"{hang} {pids}", timeout=None, child_a='updown_timeout = "0.6s"') as p:
        assert p.a.updown_timeout == 10.0
        t0 = asyncio.get_running_loop().time()
        await p.up()
        await p.drain()
        took = asyncio.get_running_loop().time() - t0
        assert f"hq/lan with 192.0.2.2: updown up-client {hang} did not finish within 0.6s: killed" in caplog.text
        assert took < 5, took
        # hq's child has none: its (recording) run is not affected
        assert [r["PLUTO_VERB"] for r in runs(p.log_h)] == ["up-client"]


XAUTH_RW = """
[connections.gw]
version = 1
proposals = ["aes256-sha256-modp2048"]
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
vips = ["0.0.0.0"]
local  = {{ auth = "psk", id = "rw.example" }}
remote = {{ auth = "psk", id = "gw.example" }}
local-2 = {{ auth = "xauth", xauth_id = "alice" }}
[connections.gw.children.net]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["aes256-sha256"]
updown = "{script}"
[secrets.ike]
secret = "a long group pre-shared key for the updown test"
[secrets.xauth-alice]
id = "alice"
secret = "alice's password"
"""
XAUTH_GW = """
[pools.rw]
addrs = "10.3.0.0/28"
[connections.rw]
version = 1
proposals = ["aes256-sha256-modp2048"]
local_addrs  = ["192.0.2.2"]
pools = ["rw"]
local  = {{ auth = "psk", id = "gw.example" }}
remote = {{ auth = "psk" }}
remote-2 = {{ auth = "xauth" }}
[connections.rw.children.net]
local_ts = ["203.0.113.0/24"]
esp_proposals = ["aes256-sha256"]
updown = "{script}"
[secrets.ike]
secret = "a long group pre-shared key for the updown test"
[secrets.xauth-alice]
id = "alice"
secret = "alice's password"
"""


async def test_ikev1_xauth_id_and_mode_config_address(short_dir: Path) -> None:
    async with rw_and_gw(short_dir, XAUTH_RW, XAUTH_GW) as (a, h):
        a.up("gw")
        proto = await until_session(a, "gw")
        await until(lambda: len(proto.children) == 1, 10, what="the client's Child SA")
        await until(lambda: h.endpoint.find_session("rw") is not None and h.endpoint.find_session("rw").children,
                    what="the gateway's Child SA")
        await a._updown_drain()
        await h._updown_drain()
        (rh,) = runs(short_dir / "h.log")
        # the gateway: the user the peer passed XAUTH with, as charon's updown plugin
        assert (rh["PLUTO_VERB"], rh["PLUTO_XAUTH_ID"], rh["PLUTO_PEER_ID"]) == ("up-client", "alice", "rw.example")
        assert (rh["PLUTO_PEER_CLIENT"], rh["PLUTO_PEER_SOURCEIP"]) == ("10.3.0.1/32", "10.3.0.1")
        check_clean(rh)
        (ra,) = runs(short_dir / "a.log")
        # the client authenticated itself: charon sets no XAUTH condition there
        assert "PLUTO_XAUTH_ID" not in ra
        assert (ra["PLUTO_MY_CLIENT"], ra["PLUTO_MY_SOURCEIP"]) == ("10.3.0.1/32", "10.3.0.1")
    down = runs(short_dir / "h.log")[1:]
    assert [(r["PLUTO_VERB"], r.get("PLUTO_XAUTH_ID")) for r in down] == [("down-client", "alice")]
