"""A configuration reload that adds an AH child opens the raw AH socket
(IP protocol 51), as Endpoint.create does at start; before, the socket was
only opened at start, so an AH child added by ``reload`` was refused at
install ("no raw AH socket")."""

from __future__ import annotations

import os

import pytest

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.config import child, connection

PSK = "ah-reload-test-psk"


def _conf(name: str, *, ah: bool):
    ch = child("net", local_ts=["198.51.100.0/24"], remote_ts=["203.0.113.0/24"],
               esp_proposals=[] if ah else ["aes128gcm16"], ah_proposals=["sha256"] if ah else [])
    return connection(name, psk=PSK, local_id="a.example", remote_id="b.example", children=[ch],
                      remote_addrs=["127.0.0.1"])


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw IP protocol 51 socket needs root (CAP_NET_RAW)")
async def test_reload_adding_an_ah_child_opens_the_raw_ah_socket() -> None:
    ep = await Endpoint.create("127.0.0.1", configurations=[_conf("esp-only", ah=False)], port=0, natt_port=0)
    try:
        assert ep.ah_socket is None  # nothing wanted AH at start
        assert ep.open_ah_if_configured() is False and ep.ah_socket is None
        # what the daemon's reload does: new configurations, then the AH socket
        ep.configurations = {c.name: c for c in (_conf("esp-only", ah=False), _conf("ah", ah=True))}
        assert ep.open_ah_if_configured() is True
        sock = ep.ah_socket
        assert sock is not None and type(sock).__name__ == "RawAhSocket"
        assert sock.local_addr[0] == "127.0.0.1"
        assert ep.open_ah_if_configured() is True and ep.ah_socket is sock  # opened once
    finally:
        await ep.close()


def _free_udp_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


DAEMON_CONF = """
[daemon]
address = "127.0.0.1"
port = {port}
port_nat_t = {natt}

[connections.site-b]
local_addrs  = ["127.0.0.1"]
remote_addrs = ["127.0.0.2"]
local  = {{ auth = "psk", id = "a.example" }}
remote = {{ auth = "psk", id = "b.example" }}

[connections.site-b.children.net]
local_ts  = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
{proposals}

[secrets.site-b]
id = ["a.example", "b.example"]
secret = "a long pre-shared key for the AH reload test"
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw IP protocol 51 socket needs root (CAP_NET_RAW)")
async def test_daemon_reload_that_switches_a_child_to_ah_opens_the_raw_ah_socket(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aioipsec.daemon import Daemon
    from aioipsec.transports.memory import memory_pipe

    port, natt = _free_udp_ports(2)
    path = tmp_path / "gw.toml"
    path.write_text(DAEMON_CONF.format(port=port, natt=natt, proposals='esp_proposals = ["aes128gcm16"]'))
    d = Daemon(str(path), inner=memory_pipe()[0])
    await d.start()
    try:
        assert d.endpoint.ah_socket is None
        path.write_text(DAEMON_CONF.format(port=port, natt=natt, proposals='ah_proposals = ["sha256"]'))
        assert d.reload().startswith("reloaded"), "the AH configuration loads"
        sock = d.endpoint.ah_socket
        assert sock is not None and type(sock).__name__ == "RawAhSocket"
    finally:
        await d.shutdown()
