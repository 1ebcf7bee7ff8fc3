"""Transport mode between two aioipsec end hosts in namespaces, with the
TUN-less datagram API (``open_datagram``): each host runs ``serve()`` or
``connect()`` in its own namespace (a spawned Python process), negotiates a
host-to-host transport-mode Child SA on the outer addresses, and exchanges
UDP datagrams through it.  No NAT: ESP is plain IP protocol 50 on the raw
socket the endpoint opens (rawesp plugin); a capture on the wire sees only
ESP, never the payload.

Transport mode *through a TUN device* is not covered: a host-to-host policy
whose TUN route covers the peer's address would route the daemon's own IKE
and ESP datagrams into the TUN device as well.  It needs the daemon's
sockets marked (``SO_MARK``) and a policy-routing rule that sends unmarked
traffic for the peer into the TUN table (what strongSwan gets from XFRM's
per-socket bypass policies); the daemon does not do that today.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from interop.netns import Topology

from .traffic import Capture

PSK = "netns-transport-psk"
COUNT = 20
SECRET = b"end-to-end transport mode payload"


def _configs(me: str, peer: str, name: str) -> object:
    from aioipsec.config import child, connection

    return connection(name, psk=PSK, local_id=me, remote_id=peer, local_addrs=[me], remote_addrs=[peer],
                      dpd_delay=0, retransmit_timeout=0.5, retransmit_tries=4,
                      children=[child("host", local_ts=[f"{me}/32"], remote_ts=[f"{peer}/32"], mode="transport")])


async def run_server(me: str, peer: str, out: str) -> None:
    from aioipsec.asyncio.client import serve

    result: dict[str, object] = {}
    server = await serve(me, configuration=_configs(me, peer, "client"))
    Path(out + ".ready").write_text("1")
    try:
        async def body() -> None:
            while not server.sessions or not next(iter(server.sessions)).children:
                await asyncio.sleep(0.01)
            (proto,) = server.sessions
            sock = proto.open_datagram(7000)
            seen: set[bytes] = set()
            while len(seen) < COUNT:  # echo everything (the client resends what got lost)
                data, (ip, port) = await sock.recvfrom()
                seen.add(data)
                sock.sendto(b"echo:" + data, port, ip)
            (ch,) = proto.children.values()
            result.update(mode=ch.mode, encap=ch.encap,
                          esp_socket=type(server.endpoint.esp_socket).__name__,
                          esp_in=server.endpoint.stats.esp_in)
            Path(out).write_text(json.dumps(result))
            await asyncio.sleep(0.5)  # let the last echoes leave before the client closes

        await asyncio.wait_for(body(), 20)
    except BaseException as exc:  # noqa: BLE001 - reported through the result file
        result["error"] = repr(exc)
    finally:
        if "error" in result or not Path(out).exists():
            Path(out).write_text(json.dumps(result))
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


async def run_client(me: str, peer: str, out: str) -> None:
    from aioipsec.asyncio.client import connect

    result: dict[str, object] = {}
    try:
        async with connect(peer, configuration=_configs(me, peer, "server"), timeout=10) as ike:
            sock = ike.open_datagram(5555)
            echoes = []
            for i in range(COUNT):
                msg = SECRET + b" %d" % i
                # UDP: the first datagram may beat the server's open_datagram(); resend
                for _attempt in range(10):
                    sock.sendto(msg, 7000)
                    try:
                        while True:
                            data, addr = await asyncio.wait_for(sock.recvfrom(), 0.5)
                            if data == b"echo:" + msg:
                                break
                        break
                    except (asyncio.TimeoutError, TimeoutError):
                        continue
                else:
                    raise TimeoutError(f"no echo of datagram {i}")
                echoes.append([data.decode(), list(addr)])
            (ch,) = ike.children.values()
            result.update(echoes=echoes, mode=ch.mode, encap=ch.encap)
    except BaseException as exc:  # noqa: BLE001
        result["error"] = repr(exc)
    finally:
        Path(out).write_text(json.dumps(result))


def _wait_file(path: Path, proc: object, timeout: float) -> dict[str, object]:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, (
            f"{path.name} not written within {timeout}s (process alive: {proc.alive()}, "  # type: ignore[attr-defined]
            f"exit code: {proc.process.exitcode})")  # type: ignore[attr-defined]
        time.sleep(0.05)
    return json.loads(path.read_text()) if path.suffix == ".json" else {}


def test_datagram_api_transport_mode(direct: Topology, tmp_path: Path) -> None:
    left, right = direct.left, direct.right
    srv_out, cli_out = tmp_path / "server.json", tmp_path / "client.json"
    esp = Capture(left.ns, "eth0", "ip proto 50")
    clear = Capture(left.ns, "eth0", "udp port 7000 or udp port 5555")
    srv = right.ns.spawn(run_server, right.outer4, left.outer4, str(srv_out))
    try:
        _wait_file(Path(str(srv_out) + ".ready"), srv, 15)
        cli = left.ns.spawn(run_client, left.outer4, right.outer4, str(cli_out))
        client = _wait_file(cli_out, cli, 30)
        server = _wait_file(srv_out, srv, 25)
        cli.join(10)
        srv.join(10)
    finally:
        for p in (srv,):
            p.stop()
    esp_n, clear_n = esp.stop(), clear.stop()
    assert "error" not in client, client
    assert "error" not in server, server
    assert client["mode"] == server["mode"] == "transport"
    assert client["encap"] is False and server["encap"] is False
    assert server["esp_socket"] == "RawEspSocket"
    assert client["echoes"] == [["echo:" + (SECRET + b" %d" % i).decode(), [right.outer4, 7000]]
                                for i in range(COUNT)]
    assert esp_n >= 2 * COUNT and clear_n == 0, (esp_n, clear_n)
