"""A road-warrior gateway daemon (no local_addrs, remote_addrs %any) binds
0.0.0.0; a client reaches it at one of its addresses: the IKE SA's local
address in ``status`` is that address and NAT-D finds no NAT (no UDP
encapsulation), over the in-memory network (which delivers the destination
address to a wildcard-bound socket, as IP_PKTINFO does)."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.daemon import Daemon
from aioipsec.status import endpoint_status, format_status
from aioipsec.transports.memory import memory_pipe

CLIENT = """
[connections.gw]
local_addrs  = ["192.0.2.7"]
remote_addrs = ["198.51.100.1"]
local  = {{ auth = "psk", id = "client.example" }}
remote = {{ auth = "psk", id = "gw.example" }}

[connections.gw.children.net]
local_ts  = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]
start_action = "start"

[secrets.gw]
secret = "a long pre-shared key for the wildcard test"
"""

GATEWAY = """
[connections.rw]
{remote}
local  = {{ auth = "psk", id = "gw.example" }}
remote = {{ auth = "psk", id = "client.example" }}

[connections.rw.children.net]
local_ts  = ["10.2.0.0/24"]
remote_ts = ["10.1.0.0/24"]

[secrets.rw]
secret = "a long pre-shared key for the wildcard test"
"""


@pytest.mark.parametrize("remote", ['remote_addrs = ["%any"]', ""], ids=["remote-any", "no-remote"])
async def test_gateway_bound_to_wildcard_shows_the_targeted_address(tmp_path: Path, remote: str) -> None:
    pc, pg = tmp_path / "client.toml", tmp_path / "gw.toml"
    pc.write_text(textwrap.dedent(CLIENT.format()))
    pg.write_text(textwrap.dedent(GATEWAY.format(remote=remote)))
    net = MemoryNetwork()
    c_in, _c_app = memory_pipe()
    g_in, _g_app = memory_pipe()
    g = Daemon(str(pg), network=net, inner=g_in)
    c = Daemon(str(pc), network=net, inner=c_in)
    assert g._local_host() == "0.0.0.0"
    await g.start()
    await c.start()
    try:
        proto = c.endpoint.find_session("gw")
        assert proto is not None
        await asyncio.wait_for(proto.wait_child("net"), 5)
        st: Any = endpoint_status(g.endpoint)
        (sa,) = st["ike_sas"]
        assert sa["local_addr"].startswith("198.51.100.1")
        assert sa["nat_local"] is False and sa["nat_remote"] is False
        assert [ch["encap"] for ch in sa["children"]] == [False]
        assert "0.0.0.0" not in format_status(st)
    finally:
        await c.shutdown()
        await g.shutdown()
