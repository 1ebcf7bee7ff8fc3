"""Transport mode between two aioipsec end hosts in namespaces, with the
TUN-less datagram API (``open_datagram``): each host runs ``serve()`` or
``connect()`` in its own namespace (a spawned Python process), negotiates a
host-to-host transport-mode Child SA on the outer addresses, and exchanges
UDP datagrams through it.  No NAT: ESP is plain IP protocol 50 on the raw
socket the endpoint opens (rawesp plugin); a capture on the wire sees only
ESP, never the payload.

Transport mode *through the daemon's TUN device*: a host-to-host policy
whose route covers the peer's own address would also catch the daemon's IKE
and ESP datagrams; the daemon routes the peer's address into the TUN device
in a separate table applied to unmarked packets only, and marks its own
sockets (``SO_MARK``), the way strongSwan's XFRM socket bypass policies do.
A plain ``ping`` and an iperf3 run between the outer addresses are then
protected (ESP only on the wire), and the first ping triggers IKE.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path


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


TRANSPORT_TOML = """\
[tun]
name = "aioipsec0"
mtu = 1400

[connections.ih]
version = 2
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
proposals = ["aes128gcm16-prfsha256-x25519"]
dpd_delay = "0s"
retransmit_timeout = "1s"
local = {{ auth = "psk", id = "{me}" }}
remote = {{ auth = "psk", id = "{peer}" }}

[connections.ih.children.ih]
local_ts = ["{me}/32"]
remote_ts = ["{peer}/32"]
esp_proposals = ["aes128gcm16"]
mode = "transport"
start_action = "{start}"

[secrets.ih]
secret = "{psk}"
"""


def test_transport_mode_through_tun(direct: Topology) -> None:
    from interop.aioipsec_peer import AioipsecPeer
    from interop.strongswan import Connection

    from .traffic import iperf3, ping

    left, right = direct.left, direct.right
    peers = []
    try:
        for side, start in (("right", "none"), ("left", "trap")):
            me, other = direct.side(side), direct.other(side)
            peer = AioipsecPeer(direct, side)
            peer.configure(Connection.named("ikev2-psk-gcm"))  # then replaced by the transport-mode file
            peer.config_path.write_text(TRANSPORT_TOML.format(me=me.outer4, peer=other.outer4, start=start, psk=PSK))
            peers.append(peer)
            peer.start()
        esp = Capture(left.ns, "eth0", "ip proto 50")
        clear = Capture(left.ns, "eth0", "icmp or tcp")
        # a plain ping between the hosts' own addresses: the first one triggers IKE
        assert ping(left, right.outer4, count=3, source=left.outer4) == (3, 3)
        assert ping(right, left.outer4, count=3, source=right.outer4) == (3, 3)
        result = iperf3(left, right, seconds=2, client_ip=left.outer4, server_ip=right.outer4)
        assert result.mbps > 5.0, result.mbps
        esp_n, clear_n = esp.stop(), clear.stop()
        lp, rp = peers[1], peers[0]
        (lc,) = lp.installed_children()
        (rc,) = rp.installed_children()
        assert lc.raw["mode"] == rc.raw["mode"] == "transport"
        assert lc.raw["local_ts"] == [f"{left.outer4}/32"] and lc.raw["encap"] is False
        assert clear_n == 0, f"{clear_n} ICMP/TCP packets in the clear"
        assert esp_n >= 1000
        assert abs(lc.packets_out - rc.packets_in) <= 2 and abs(lc.packets_in - rc.packets_out) <= 2
        assert "acquire: ih/ih triggered by" in lp.logs()
        rules = left.ns.run(["ip", "rule"]).stdout
        assert "not from all fwmark 0xa1 lookup 161" in rules
        for p in reversed(peers):
            p.stop()
        # the daemon removed its rule and routes on exit
        assert "lookup 161" not in left.ns.run(["ip", "rule"]).stdout
        assert left.ns.run(["ip", "route", "show", "table", "161"], check=False).stdout.strip() == ""
    finally:
        for p in reversed(peers):
            p.stop()
