"""The CLI's control commands against running daemons.

Two :class:`~aioipsec.daemon.Daemon` objects (site-a and hq) run in this
test's event loop on an in-memory network, each with a real control socket;
``aioipsec --control SOCK <command>`` runs in a worker thread exactly as from
a shell, and what it prints is checked."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aioipsec import cli
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
key_export = {key_export}
local  = {{ auth = "psk", id = "{id_a}" }}
remote = {{ auth = "psk", id = "{id_h}" }}

[connections.hq.children.lan]
local_ts  = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["{esp}"]
start_action = "{start}"

[secrets.hq]
id = ["{id_a}", "{id_h}"]
secret = "a long pre-shared key for the CLI test"
"""

HQ = """
[connections.site-a]
version = {version}
local_addrs  = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
proposals = ["{ike}"]
key_export = {key_export}
local  = {{ auth = "psk", id = "{id_h}" }}
remote = {{ auth = "psk", id = "{id_a}" }}

[connections.site-a.children.lan]
local_ts  = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
esp_proposals = ["{esp}"]

[secrets.site-a]
id = ["{id_a}", "{id_h}"]
secret = "a long pre-shared key for the CLI test"
"""

V2 = dict(version=2, ike="aes128gcm16-prfsha256-x25519", esp="aes128gcm16", id_a="site-a.example", id_h="hq.example")
V1 = dict(version=1, ike="aes256-sha256-modp2048", esp="aes256-sha256", id_a="192.0.2.1", id_h="192.0.2.2")


@dataclass
class Gateways:
    dir: Path
    a: Daemon
    h: Daemon
    a_app: Any
    h_app: Any
    ctl_a: str
    ctl_h: str

    async def cli(self, *args: str, ctl: str | None = None) -> tuple[int, str, str]:
        """Run ``aioipsec --control CTL args...`` in a thread; (rc, stdout, stderr)."""
        return await run_cli("--control", ctl or self.ctl_a, *args)


async def run_cli(*args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                return cli.main(list(args))
            except SystemExit as exc:  # argparse errors
                return int(exc.code or 0)

    rc = await asyncio.wait_for(asyncio.to_thread(call), 60)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path may be longer
    d = Path(tempfile.mkdtemp(prefix="aioipsec-cli-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write_configs(d: Path, *, start: str = "none", key_export: bool = False, v: dict[str, Any] = V2) -> tuple[Path, Path]:
    ke = "true" if key_export else "false"
    pa, ph = d / "site-a.toml", d / "hq.toml"
    pa.write_text(textwrap.dedent(SITE_A.format(start=start, key_export=ke, **v)))
    ph.write_text(textwrap.dedent(HQ.format(key_export=ke, **v)))
    return pa, ph


@pytest.fixture
async def gateways(short_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Gateways]:
    opts = getattr(request, "param", {})
    pa, ph = write_configs(short_dir, **opts)
    net = MemoryNetwork()
    a_gw, a_app = memory_pipe()
    h_gw, h_app = memory_pipe()
    a = Daemon(str(pa), control=str(short_dir / "a.ctl"), network=net, inner=a_gw)
    h = Daemon(str(ph), control=str(short_dir / "h.ctl"), network=net, inner=h_gw)
    await h.start()
    await a.start()
    try:
        yield Gateways(short_dir, a, h, a_app, h_app, str(short_dir / "a.ctl"), str(short_dir / "h.ctl"))
    finally:
        await a.shutdown()
        await h.shutdown()
    assert not os.path.exists(short_dir / "a.ctl"), "the control socket is removed on shutdown"


async def ping(g: Gateways, n: int) -> int:
    """Bob (198.51.100.10) sends n echo requests to Lima; how many arrive."""
    g.a_app.send_batch([icmp_echo("198.51.100.10", "203.0.113.10", 0x77, i, b"cli test") for i in range(1, n + 1)])
    got: list[bytes] = []
    try:
        async with asyncio.timeout(3):
            while len(got) < n:
                got += [p for p in await g.h_app.recv_batch() if parse_icmp_echo(p)]
    except TimeoutError:
        pass
    return len(got)


async def test_up_status_down(gateways: Gateways) -> None:
    g = gateways
    rc, out, err = await g.cli("status")
    assert (rc, out.strip(), err) == (0, "no SAs", "")

    rc, out, err = await g.cli("up", "hq")
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("hq: IKE SA established, IKEv2 aes128gcm16-prfsha256-x25519, site-a.example <-> hq.example, SPIs ")
    assert lines[1].startswith("hq: CHILD_SA lan installed, tunnel esp aes128gcm16, SPIs 0x")
    assert lines[1].endswith("198.51.100.0/24 === 203.0.113.0/24")

    assert await ping(g, 3) == 3
    rc, out, err = await g.cli("status")
    assert rc == 0, err
    text = out
    assert text.startswith("hq: ESTABLISHED, IKEv2, ")
    # a MOBIKE initiator (mobike defaults to on) runs IKE on 4500 from IKE_AUTH on
    assert "  local  'site-a.example' @ 192.0.2.1[4500]" in text
    assert "  remote 'hq.example' @ 192.0.2.2[4500]" in text
    assert "  aes128gcm16-prfsha256-x25519" in text
    assert "  lan: #1, INSTALLED, TUNNEL, ESP:aes128gcm16" in text
    assert "#pkts encaps: 3, #pkts decaps: 0, #replay failed: 0, #integrity failed: 0" in text
    assert "    local  198.51.100.0/24\n    remote 203.0.113.0/24" in text

    # the responder's view, by name
    rc, out, err = await g.cli("status", "site-a", ctl=g.ctl_h)
    assert rc == 0, err
    assert "#pkts encaps: 0, #pkts decaps: 3" in out

    rc, out, err = await g.cli("status", "--json")
    st = json.loads(out)
    assert st["schema"] == 1
    [sa] = st["ike_sas"]
    assert (sa["name"], sa["state"], sa["initiator"], sa["local_id"]) == ("hq", "ESTABLISHED", True, "site-a.example")
    assert sa["children"][0]["packets_out"] == 3

    rc, out, err = await g.cli("down", "hq")
    assert (rc, out.strip()) == (0, "hq: IKE SA deleted")
    rc, out, _ = await g.cli("status")
    assert out.strip() == "no SAs"
    rc, out, _ = await g.cli("status", ctl=g.ctl_h)
    assert out.strip() == "no SAs", "the peer saw the delete"


@pytest.mark.parametrize("gateways", [{"start": "start"}], indirect=True)
async def test_clear_renegotiates_start_children(gateways: Gateways) -> None:
    g = gateways
    rc, out, err = await g.cli("up", "hq")  # already started by start_action; waits for it
    assert rc == 0, err
    old = json.loads((await g.cli("status", "--json"))[1])["ike_sas"][0]
    rc, out, err = await g.cli("clear", "hq")
    assert (rc, out.strip()) == (0, "cleared: hq; renegotiating: hq"), err
    rc, out, err = await g.cli("up", "hq")
    assert rc == 0, err
    new = json.loads((await g.cli("status", "--json"))[1])["ike_sas"]
    assert len(new) == 1 and new[0]["spi_i"] != old["spi_i"]
    assert await ping(g, 2) == 2


@pytest.mark.parametrize("gateways", [{"start": "trap"}], indirect=True)
async def test_clear_then_traffic_renegotiates_trap(gateways: Gateways) -> None:
    g = gateways
    assert await ping(g, 2) == 2, "the first packet triggers IKE, held packets follow"
    rc, out, _ = await g.cli("clear")
    assert out.strip() == "cleared: hq"
    assert json.loads((await g.cli("status", "--json"))[1])["ike_sas"] == []
    assert await ping(g, 2) == 2
    assert len(json.loads((await g.cli("status", "--json"))[1])["ike_sas"]) == 1


async def test_errors_are_reported_not_fatal(gateways: Gateways) -> None:
    g = gateways
    rc, out, err = await g.cli("up", "nowhere")
    assert rc == 1 and err.strip() == "error: no connection named 'nowhere' (loaded: hq)"
    rc, out, err = await g.cli("up", "hq", "nochild")
    assert rc == 1 and err.strip() == "error: connection hq has no child named nochild"
    rc, out, err = await g.cli("down", "hq")
    assert (rc, out.strip()) == (0, "hq: no IKE SA")
    rc, out, err = await g.cli("keys", "--wireshark", str(g.dir / "ws"))
    assert rc == 1 and err.strip() == "error: key export is not enabled (set key_export = true in a connection)"
    assert not (g.dir / "ws").exists()
    rc, out, err = await g.cli("bogus")
    assert rc == 2 and "unknown control command 'bogus'" in err
    rc, out, err = await run_cli("--control", str(g.dir / "missing.ctl"), "status")
    assert rc == 1 and "no daemon control socket at" in err
    # a raw bad request on the socket gets an error answer; the daemon keeps serving
    from aioipsec.control import request

    with pytest.raises(RuntimeError, match="unknown command 'explode'"):
        await request(g.ctl_a, {"cmd": "explode"})
    reader, writer = await asyncio.open_unix_connection(g.ctl_a)
    writer.write(b"not json\n")
    answer = json.loads(await reader.readline())
    writer.close()
    assert answer["ok"] is False and "JSONDecodeError" in answer["error"]
    rc, out, _ = await g.cli("status")
    assert rc == 0
    assert stat.S_IMODE(os.stat(g.ctl_a).st_mode) == 0o600


async def test_arguments_of_the_wrong_type_are_refused(gateways: Gateways) -> None:
    """Every argument of a control request is checked for its JSON type: a
    list, number or string where another type belongs is answered with an
    error naming the field (not a TypeError from deeper down), and nothing
    is started."""
    from aioipsec.control import request

    g = gateways
    bad = [
        ({"cmd": "up", "name": "hq", "child": ["lan"]}, "child must be a name"),
        ({"cmd": "up", "name": "hq", "child": 5}, "child must be a name"),
        ({"cmd": "up", "name": "hq", "wait": "yes"}, "wait must be true or false"),
        ({"cmd": "up", "name": "hq", "wait": True, "timeout": "soon"}, "timeout must be a number of seconds"),
        ({"cmd": "up", "name": "hq", "timeout": [1]}, "timeout must be a number of seconds"),
        ({"cmd": "up", "name": ["hq"]}, "name must be a string"),
        ({"cmd": "down", "name": "hq", "child": {"a": 1}}, "child must be a name"),
        ({"cmd": "rekey", "name": "hq", "child": ["lan"]}, "child must be a name"),
        ({"cmd": "rekey", "name": "hq", "ike": 1}, "ike must be true or false"),
        ({"cmd": "list-pools", "leases": "no"}, "leases must be true or false"),
        ({"cmd": "clear", "name": 7}, "name must be a string"),
        ({"cmd": "roam", "address": ["192.0.2.9"]}, "roam needs an address"),
        ({"cmd": "redirect", "name": "hq", "gateway": ["192.0.2.9"]}, "redirect needs a gateway"),
        ({"cmd": "redirect", "name": "hq", "gateway": "192.0.2.9", "peer": 1}, "peer must be a string"),
        ({"cmd": "keys", "dir": ["/tmp"]}, "key export is not enabled"),
        ({"cmd": "status", "name": {}}, "name must be a string"),
    ]
    for req, error in bad:
        with pytest.raises(RuntimeError) as info:
            await request(g.ctl_a, req)
        assert str(info.value).startswith(error), (req, str(info.value))
    assert g.a.endpoint.find_session("hq") is None, "no refused request started an IKE SA"
    assert (await g.cli("status"))[1].strip() == "no SAs"


async def test_reload_applies_to_new_sas(gateways: Gateways) -> None:
    g = gateways
    assert (await g.cli("up", "hq"))[0] == 0
    before = json.loads((await g.cli("status", "--json"))[1])["ike_sas"][0]
    # a broken file is refused and the running configuration kept
    good = Path(g.a.path).read_text()
    Path(g.a.path).write_text(good.replace('start_action = "none"', 'start_action = "sometimes"'))
    rc, out, err = await g.cli("reload")
    assert rc == 0
    assert out.strip() == (
        f'reload failed: {g.a.path}: connections.hq.children.lan.start_action: '
        'expected "none", "trap", "start", got "sometimes"'
    )
    # a good change: a second connection and key export; the existing SA is untouched
    Path(g.a.path).write_text(
        good.replace("key_export = false", "key_export = true")
        + '\n[connections.backup]\nremote_addrs = ["192.0.2.3"]\n'
        + '\n[secrets.backup]\nid = ["192.0.2.3"]\nsecret = "another pre-shared key"\n'
    )
    rc, out, err = await g.cli("reload")
    assert (rc, out.strip()) == (0, "reloaded 2 connections; added: backup")
    conns = json.loads((await g.cli("list-conns"))[1])
    assert [c["name"] for c in conns] == ["hq", "backup"]
    assert conns[0]["key_export"] is True
    after = json.loads((await g.cli("status", "--json"))[1])["ike_sas"][0]
    assert after["spi_i"] == before["spi_i"] and after["state"] == "ESTABLISHED"
    rc, out, err = await g.cli("keys", "--wireshark", str(g.dir / "ws"))
    assert rc == 0, err
    assert out.startswith(f"wrote {g.dir / 'ws'}: esp_sa (2 records), ikev2_decryption_table (1 records), "
                          "ikev1_decryption_table (0 records)")


@pytest.mark.parametrize("gateways", [{"v": V1, "key_export": True}], indirect=True)
async def test_ikev1_up_status_keys(gateways: Gateways) -> None:
    g = gateways
    rc, out, err = await g.cli("up", "hq")
    assert rc == 0, err
    assert out.startswith("hq: IKE SA established, IKEv1 aes256-sha256-modp2048, 192.0.2.1 <-> 192.0.2.2")
    assert await ping(g, 2) == 2
    rc, out, err = await g.cli("status")
    assert "hq: ESTABLISHED, IKEv1" in out and "#pkts encaps: 2" in out, out
    rc, out, err = await g.cli("keys", "--wireshark", str(g.dir / "ws1"))
    assert rc == 0, err
    assert "esp_sa (2 records), ikev2_decryption_table (0 records), ikev1_decryption_table (1 records)" in out
    for f in ("esp_sa", "ikev2_decryption_table", "ikev1_decryption_table"):
        assert stat.S_IMODE(os.stat(g.dir / "ws1" / f).st_mode) == 0o600


async def test_check_command(short_dir: Path) -> None:
    pa, _ = write_configs(short_dir)
    rc, out, err = await run_cli("check", "-c", str(pa))
    assert rc == 0, err
    assert out.splitlines() == [
        "hq: IKEv2 192.0.2.1 <-> 192.0.2.2 proposals aes128gcm16-prfsha256-x25519",
        "  local  psk 'site-a.example'",
        "  remote psk 'hq.example'",
        "  lan: tunnel 198.51.100.0/24 === 203.0.113.0/24 esp aes128gcm16 start_action=none",
        f"{pa}: OK, 1 connection",
    ]
    pa.write_text(pa.read_text().replace("remote_ts", "remote_tss"))
    rc, out, err = await run_cli("check", "-c", str(pa))
    assert rc == 1
    assert err.strip() == f'error: {pa}: connections.hq.children.lan.remote_tss: unknown key; did you mean "remote_ts"?'


async def test_redirect_command_moves_the_client(gateways: Gateways) -> None:
    """``aioipsec redirect NAME --gateway ADDR`` (swanctl --redirect) on hq:
    site-a's daemon follows the REDIRECT (RFC 5685) and sets the connection
    up toward the new address, its status saying where it came from."""
    g = gateways
    rc, out, err = await g.cli("up", "hq")
    assert rc == 0, err
    rc, out, err = await g.cli("redirect", "site-a", "--gateway", "192.0.2.9", "--peer", "192.0.2.7", ctl=g.ctl_h)
    assert rc == 1 and "nothing redirected to 192.0.2.9: no established IKEv2 IKE SA with 192.0.2.7" in err
    rc, out, err = await g.cli("redirect", "site-a", "--gateway", "not an address", ctl=g.ctl_h)
    assert rc == 1 and "cannot redirect to 'not an address'" in err
    # targets no gateway can have: refused, whether an IKE SA is there or not
    for target, why in (("0.0.0.0", "the unspecified address"), ("::1", "a loopback address"),
                        ("224.0.0.1", "a multicast address"), ("255.255.255.255", "the broadcast address")):
        for conn, ctl in (("site-a", g.ctl_h), ("hq", g.ctl_a)):
            rc, out, err = await g.cli("redirect", conn, "--gateway", target, ctl=ctl)
            assert (rc, err.strip()) == (1, f"error: cannot redirect to '{target}': the target is {why}"), err
    rc, out, err = await g.cli("redirect", "site-a", "--gateway", "192.0.2.2", ctl=g.ctl_h)
    assert rc == 1 and "cannot redirect to '192.0.2.2': the target is our own address" in err, err
    rc, out, err = await g.cli("redirect", "site-a", "--gateway", "192.0.2.9", "--peer", "site-a.example",
                               ctl=g.ctl_h)
    assert (rc, out.strip(), err) == (0, "site-a: redirecting 192.0.2.1[site-a.example] to 192.0.2.9", "")
    for _ in range(200):
        st = json.loads((await g.cli("status", "--json"))[1])
        if any(sa["remote_addr"].startswith("192.0.2.9") for sa in st["ike_sas"]):
            break
        await asyncio.sleep(0.01)
    new = [sa for sa in st["ike_sas"] if sa["remote_addr"].startswith("192.0.2.9")]
    assert new and new[0]["redirected_from"] == "192.0.2.2" and new[0]["state"] == "CONNECTING"
    rc, out, err = await g.cli("status")
    assert "redirected to 192.0.2.9[500] by 192.0.2.2" in out
    rc, out, err = await g.cli("redirect", "nope", "--gateway", "192.0.2.9")
    assert rc == 1 and "no connection named 'nope'" in err
