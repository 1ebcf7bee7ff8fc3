"""Operator commands swanctl users expect: ``rekey`` (``swanctl --rekey
--child/--ike``), ``down --child`` (``swanctl --terminate --child``) and
``list-pools [--leases]`` (``swanctl --list-pools --leases``), through the CLI
against two in-memory daemons as in ``test_cli_daemon.py``."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from test_cli_daemon import V1, V2, Gateways, ping, run_cli, short_dir, write_configs  # noqa: F401  (fixtures)

from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.daemon import Daemon
from aioipsec.transports.memory import memory_pipe

DMZ_A = """
[connections.hq.children.dmz]
local_ts  = ["198.51.101.0/24"]
remote_ts = ["203.0.114.0/24"]
esp_proposals = ["{esp}"]
"""
DMZ_H = """
[connections.site-a.children.dmz]
local_ts  = ["203.0.114.0/24"]
remote_ts = ["198.51.101.0/24"]
esp_proposals = ["{esp}"]
"""


@pytest.fixture(params=[V2, V1], ids=["ikev2", "ikev1"])
async def gws(short_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Gateways]:  # noqa: F811
    """Site A and HQ with two children each (lan, dmz), IKEv2 and IKEv1."""
    v = request.param
    pa, ph = write_configs(short_dir, v=v)
    pa.write_text(pa.read_text() + textwrap.dedent(DMZ_A.format(esp=v["esp"])))
    ph.write_text(ph.read_text() + textwrap.dedent(DMZ_H.format(esp=v["esp"])))
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


async def status(g: Gateways, ctl: str | None = None) -> list[dict[str, Any]]:
    rc, out, err = await g.cli("status", "--json", ctl=ctl)
    assert rc == 0, err
    return json.loads(out)["ike_sas"]  # type: ignore[no-any-return]


async def until_status(g: Gateways, ok: Callable[[list[dict[str, Any]]], bool], ctl: str | None = None,
                       what: str = "") -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 8
    while True:
        st = await status(g, ctl)
        if ok(st):
            return st
        assert loop.time() < deadline, f"status never showed {what}: {st}"
        await asyncio.sleep(0.05)


def pairs(sa: dict[str, Any], name: str | None = None) -> list[tuple[str, str, str]]:
    return sorted((c["child"], c["spi_in"], c["spi_out"]) for c in sa["children"] if name in (None, c["child"]))


async def up_both(g: Gateways) -> None:
    for child in ("lan", "dmz"):
        rc, _out, err = await g.cli("up", "hq", child)
        assert rc == 0, err
    await until_status(g, lambda st: len(st) == 1 and len(st[0]["children"]) == 2, ctl=g.ctl_h,
                       what="both Child SAs at HQ")


async def test_rekey_child_new_spis_traffic_on_new_sa(gws: Gateways) -> None:
    g = gws
    await up_both(g)
    assert await ping(g, 2) == 2
    [sa] = await status(g)
    [(_, old_in, old_out)] = pairs(sa, "lan")
    dmz = pairs(sa, "dmz")

    rc, out, err = await g.cli("rekey", "hq", "--child", "lan")
    assert rc == 0, err
    m = re.fullmatch(rf"hq: CHILD_SA lan rekeyed, SPIs {old_in}_i {old_out}_o -> (0x[0-9a-f]{{8}})_i "
                     r"(0x[0-9a-f]{8})_o", out.strip())
    assert m, out
    new_in, new_out = m.groups()
    assert {new_in, new_out}.isdisjoint({old_in, old_out})

    # the old pair is gone on both ends (IKEv1: after the short delete delay), dmz untouched
    [sa] = await until_status(g, lambda st: pairs(st[0], "lan") == [("lan", new_in, new_out)], what="the new lan pair")
    assert pairs(sa, "dmz") == dmz and sa["spi_i"] and sa["state"] == "ESTABLISHED"
    [hsa] = await until_status(g, lambda st: pairs(st[0], "lan") == [("lan", new_out, new_in)], ctl=g.ctl_h,
                               what="the new lan pair at HQ")
    assert await ping(g, 3) == 3
    [sa] = await status(g)
    [lan] = [c for c in sa["children"] if c["child"] == "lan"]
    assert lan["packets_out"] == 3, "the new SA carries (and counts) the traffic"
    [hsa] = await status(g, g.ctl_h)
    [hlan] = [c for c in hsa["children"] if c["child"] == "lan"]
    assert hlan["spi_in"] == new_out and hlan["packets_in"] == 3


async def test_rekey_without_child_rekeys_every_child(gws: Gateways) -> None:
    g = gws
    await up_both(g)
    [sa] = await status(g)
    before = pairs(sa)
    rc, out, err = await g.cli("rekey", "hq")
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert sorted(line.split(",")[0] for line in lines) == ["hq: CHILD_SA dmz rekeyed", "hq: CHILD_SA lan rekeyed"]
    [sa] = await until_status(g, lambda st: len(st[0]["children"]) == 2 and not set(pairs(st[0])) & set(before),
                              what="two new pairs")
    assert await ping(g, 2) == 2


async def test_rekey_ike_keeps_children(gws: Gateways) -> None:
    g = gws
    await up_both(g)
    [sa] = await status(g)
    children = pairs(sa)
    old = (sa["spi_i"], sa["spi_r"])

    rc, out, err = await g.cli("rekey", "hq", "--ike")
    assert rc == 0, err
    m = re.fullmatch(rf"hq: IKE SA rekeyed, SPIs {old[0]}_i {old[1]}_r -> ([0-9a-f]{{16}})_i ([0-9a-f]{{16}})_r, "
                     r"2 CHILD_SAs kept", out.strip())
    assert m, out
    new = m.groups()
    assert new[0] != old[0] and new[1] != old[1]
    [sa] = await status(g)
    assert (sa["spi_i"], sa["spi_r"]) == new and sa["state"] == "ESTABLISHED"
    assert pairs(sa) == children, "the Child SAs are kept"
    [hsa] = await until_status(g, lambda st: len(st) == 1 and (st[0]["spi_i"], st[0]["spi_r"]) == new, ctl=g.ctl_h,
                               what="the new IKE SPIs at HQ")
    assert len(hsa["children"]) == 2
    assert await ping(g, 2) == 2
    # the new IKE SA works: a Child SA rekey runs over it
    rc, out, err = await g.cli("rekey", "hq", "--child", "dmz")
    assert rc == 0, err
    assert len(g.a.endpoint.event_listeners) == 3, "the rekeys' event watchers are gone again"


async def test_down_child_removes_only_that_child(gws: Gateways) -> None:
    g = gws
    await up_both(g)
    [sa] = await status(g)
    ike = (sa["spi_i"], sa["spi_r"])
    [(_, d_in, d_out)] = pairs(sa, "dmz")
    lan = pairs(sa, "lan")

    rc, out, err = await g.cli("down", "hq", "--child", "dmz")
    assert (rc, out.strip(), err) == (0, f"hq: CHILD_SA dmz deleted (SPIs {d_in}_i {d_out}_o); the IKE SA stays", "")
    [sa] = await status(g)
    assert pairs(sa) == lan and (sa["spi_i"], sa["spi_r"]) == ike and sa["state"] == "ESTABLISHED"
    [hsa] = await until_status(g, lambda st: [c["child"] for c in st[0]["children"]] == ["lan"], ctl=g.ctl_h,
                               what="only lan at HQ")
    assert (hsa["spi_i"], hsa["spi_r"]) == ike
    assert await ping(g, 2) == 2
    rc, out, err = await g.cli("down", "hq", "--child", "dmz")
    assert (rc, out.strip()) == (0, "hq: no CHILD_SA dmz")
    # and it can come back on the same IKE SA
    rc, out, err = await g.cli("up", "hq", "dmz")
    assert rc == 0, err
    [sa] = await status(g)
    assert (sa["spi_i"], sa["spi_r"]) == ike and len(sa["children"]) == 2


async def test_operator_errors_name_the_connection(gws: Gateways) -> None:
    g = gws
    rc, out, err = await g.cli("rekey", "nowhere")
    assert rc == 1 and err.strip() == "error: no connection named 'nowhere' (loaded: hq)"
    rc, out, err = await g.cli("rekey", "hq", "--child", "nochild")
    assert rc == 1 and err.strip() == "error: connection hq has no child named nochild"
    rc, out, err = await g.cli("down", "hq", "--child", "nochild")
    assert rc == 1 and err.strip() == "error: connection hq has no child named nochild"
    rc, out, err = await g.cli("down", "nowhere", "--child", "lan")
    assert rc == 1 and err.strip() == "error: no connection named 'nowhere' (loaded: hq)"
    rc, out, err = await g.cli("rekey", "hq", "--ike")
    assert rc == 1 and err.strip() == "error: hq: no IKE SA"
    rc, out, err = await g.cli("down", "hq", "--child", "lan")
    assert (rc, out.strip()) == (0, "hq: no IKE SA")
    rc, out, err = await g.cli("rekey", "hq", "--ike", "--child", "lan")
    assert rc == 2 and "not allowed with argument" in err
    rc, out, err = await g.cli("up", "hq", "lan")
    assert rc == 0, err
    rc, out, err = await g.cli("rekey", "hq", "--child", "dmz")
    assert rc == 1 and err.strip() == "error: hq: no installed CHILD_SA dmz to rekey"
    from aioipsec.control import request

    with pytest.raises(RuntimeError, match="rekey either the IKE SA or a child, not both"):
        await request(g.ctl_a, {"cmd": "rekey", "name": "hq", "child": "lan", "ike": True})
    with pytest.raises(RuntimeError, match="ike must be true or false"):
        await request(g.ctl_a, {"cmd": "rekey", "name": "hq", "ike": "yes"})
    with pytest.raises(RuntimeError, match="timeout must be a number"):
        await request(g.ctl_a, {"cmd": "rekey", "name": "hq", "timeout": -1})
    rc, out, err = await g.cli("list-pools")
    assert (rc, out.strip()) == (0, "no pools")
    rc, out, err = await g.cli("status")
    assert rc == 0 and "lan: #" in out, "the daemon still serves"


RW = """
[connections.gw]
version = {version}
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["{ike}"]
vips = ["0.0.0.0"]
local  = {{ auth = "psk", id = "{rw_id}" }}
remote = {{ auth = "psk", id = "{gw_id}" }}
[connections.gw.children.net]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["{esp}"]
[secrets.gw]
id = ["{rw_id}", "{gw_id}"]
secret = "a long pre-shared key for the pools test"
"""
GW = """
[pools.rw]
addrs = "10.3.0.0/28"
[connections.rw]
version = {version}
local_addrs  = ["192.0.2.2"]
proposals = ["{ike}"]
pools = ["rw"]
local  = {{ auth = "psk", id = "{gw_id}" }}
remote = {{ auth = "psk" }}
[connections.rw.children.net]
local_ts = ["203.0.113.0/24"]
esp_proposals = ["{esp}"]
[secrets.rw]
id = ["{rw_id}", "{gw_id}"]
secret = "a long pre-shared key for the pools test"
"""


async def test_list_pools_online_then_offline(short_dir: Path) -> None:  # noqa: F811
    v = dict(V2, rw_id="rw.example", gw_id="gw.example")
    pa, ph = short_dir / "rw.toml", short_dir / "gw.toml"
    pa.write_text(textwrap.dedent(RW.format(**v)))
    ph.write_text(textwrap.dedent(GW.format(**v)))
    net = MemoryNetwork()
    a_gw, _a_app = memory_pipe()
    h_gw, _h_app = memory_pipe()
    a = Daemon(str(pa), control=str(short_dir / "a.ctl"), network=net, inner=a_gw)
    h = Daemon(str(ph), control=str(short_dir / "h.ctl"), network=net, inner=h_gw)
    gw_ctl = str(short_dir / "h.ctl")
    await h.start()
    await a.start()
    try:
        rc, out, err = await run_cli("--control", gw_ctl, "list-pools", "--leases")
        assert (rc, out.strip()) == (0, "rw: 10.3.0.0/28 (10.3.0.1 - 10.3.0.14), size 14, online 0, offline 0"), err
        rc, out, err = await run_cli("--control", str(short_dir / "a.ctl"), "up", "gw")
        assert rc == 0, err
        rc, out, err = await run_cli("--control", gw_ctl, "list-pools", "--leases")
        assert rc == 0, err
        assert out.splitlines() == [
            "rw: 10.3.0.0/28 (10.3.0.1 - 10.3.0.14), size 14, online 1, offline 0",
            "  10.3.0.1                                online  'rw.example'",
        ]
        rc, out, err = await run_cli("--control", gw_ctl, "list-pools")
        assert out.splitlines() == ["rw: 10.3.0.0/28 (10.3.0.1 - 10.3.0.14), size 14, online 1, offline 0"]
        rc, out, err = await run_cli("--control", gw_ctl, "list-pools", "--leases", "--json")
        assert json.loads(out) == [{
            "name": "rw", "addrs": "10.3.0.0/28", "first": "10.3.0.1", "last": "10.3.0.14", "size": 14,
            "online": 1, "offline": 0, "leases": [{"address": "10.3.0.1", "identity": "rw.example", "online": True}],
        }]
        rc, out, err = await run_cli("--control", str(short_dir / "a.ctl"), "down", "gw")
        assert (rc, out.strip()) == (0, "gw: IKE SA deleted"), err
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            rc, out, err = await run_cli("--control", gw_ctl, "list-pools", "--leases", "--json")
            [pool] = json.loads(out)
            if pool["offline"] == 1:
                break
            assert loop.time() < deadline, pool
            await asyncio.sleep(0.05)
        assert (pool["online"], pool["leases"]) == (0, [{"address": "10.3.0.1", "identity": "rw.example",
                                                         "online": False}])
        rc, out, err = await run_cli("--control", gw_ctl, "list-pools", "--leases")
        assert out.splitlines()[1] == "  10.3.0.1                                offline 'rw.example'"
    finally:
        await a.shutdown()
        await h.shutdown()


async def test_rekey_without_answer_times_out_cleanly(gws: Gateways) -> None:
    g = gws
    await up_both(g)
    g.h.endpoint._ike_received = lambda *a, **k: None  # HQ goes silent (IKE only)
    rc, out, err = await g.cli("rekey", "hq", "--child", "lan", "--timeout", "0.5")
    assert (rc, err.strip()) == (1, "error: hq: CHILD_SA rekey: no answer within 0.5s")
    rc, out, err = await g.cli("rekey", "hq", "--ike", "--timeout", "0.5")
    assert (rc, err.strip()) == (1, "error: hq: IKE rekey: no answer within 0.5s")
    assert len(g.a.endpoint.event_listeners) == 3, "the watchers are gone after a timeout too"
    rc, out, err = await g.cli("status")
    assert rc == 0 and out.startswith("hq: ")
