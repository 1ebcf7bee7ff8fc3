"""The public asyncio API end to end: ``connect()`` / ``serve()`` with inner
transports, ``open_datagram()`` over a transport-mode SA, NAT keepalives, and
the same story on the standard event loop and on uvloop, over the in-memory
network and over real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Coroutine
from typing import Any

import pytest
from asyncwait import until

from aioipsec.asyncio.client import connect, serve
from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import ConnectionConfig, child, connection
from aioipsec.netutil import parse_udp, udp_packet
from aioipsec.transports.memory import memory_pipe

PSK = "asyncio-api-test-psk"
NET_C, NET_S = "198.51.100.0/24", "203.0.113.0/24"
HOST_C, HOST_S = "198.51.100.10", "203.0.113.20"


def tunnel_configs(client_ip: str, server_ip: str, **kw: Any) -> tuple[ConnectionConfig, ConnectionConfig]:
    c = connection("srv", psk=PSK, local_id="client.example", remote_id="server.example",
                   local_addrs=[client_ip], remote_addrs=[server_ip], dpd_delay=0,
                   children=[child("net", local_ts=[NET_C], remote_ts=[NET_S])], **kw)
    s = connection("cli", psk=PSK, local_id="server.example", remote_id="client.example",
                   local_addrs=[server_ip], remote_addrs=["%any"], dpd_delay=0,
                   children=[child("net", local_ts=[NET_S], remote_ts=[NET_C])], **kw)
    return c, s


def transport_configs(client_ip: str, server_ip: str, **kw: Any) -> tuple[ConnectionConfig, ConnectionConfig]:
    c = connection("srv", psk=PSK, local_id="client.example", remote_id="server.example",
                   local_addrs=[client_ip], remote_addrs=[server_ip], dpd_delay=0,
                   children=[child("host", local_ts=[f"{client_ip}/32"], remote_ts=[f"{server_ip}/32"],
                                   mode="transport")], **kw)
    s = connection("cli", psk=PSK, local_id="server.example", remote_id="client.example",
                   local_addrs=[server_ip], remote_addrs=[client_ip], dpd_delay=0,
                   children=[child("host", local_ts=[f"{server_ip}/32"], remote_ts=[f"{client_ip}/32"],
                                   mode="transport")], **kw)
    return c, s


async def tunnel_story(client_ip: str, server_ip: str, network: MemoryNetwork | None, **kw: Any) -> dict[str, Any]:
    """connect() to serve() with memory pipes as the hosts behind each end;
    N packets each way; exit deletes the SAs on both sides."""
    cc, sc = tunnel_configs(client_ip, server_ip, **kw)
    c_gw, c_app = memory_pipe()
    s_gw, s_app = memory_pipe()
    n = 50
    server = await serve(server_ip, configuration=sc, network=network, inner=s_gw)
    try:
        async with connect(server_ip, configuration=cc, network=network, inner=c_gw, timeout=10) as ike:
            assert ike.ike_info is not None
            (ch,) = ike.children.values()
            assert ch.name == "net" and ch.mode == "tunnel"
            c_app.send_batch([udp_packet(HOST_C, HOST_S, 1000, 2000, b"c%03d" % i) for i in range(n)])
            got_s: list[bytes] = []
            while len(got_s) < n:
                got_s += await asyncio.wait_for(s_app.recv_batch(), 5)
            s_app.send_batch([udp_packet(HOST_S, HOST_C, 2000, 1000, b"s%03d" % i) for i in range(n)])
            got_c: list[bytes] = []
            while len(got_c) < n:
                got_c += await asyncio.wait_for(c_app.recv_batch(), 5)
            await until(lambda: len(server.sessions) == 1, what="server session")
            (sproto,) = server.sessions
            (sch,) = sproto.children.values()
            assert (sch.spi_in, sch.spi_out) == (ch.spi_out, ch.spi_in)
            result = {
                "to_server": [parse_udp(p)[4] for p in got_s],  # type: ignore[index]
                "to_client": [parse_udp(p)[4] for p in got_c],  # type: ignore[index]
                "encap": ch.encap,
            }
        # leaving connect() deleted the IKE SA: the server forgets it
        await until(lambda: not server.sessions, what="server session deleted")
        assert not server.endpoint.dataplane.sad_in
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
    assert result["to_server"] == [b"c%03d" % i for i in range(n)]
    assert result["to_client"] == [b"s%03d" % i for i in range(n)]
    return result


def run_on(loop_kind: str, coro: Coroutine[Any, Any, Any]) -> Any:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(coro)
    return asyncio.run(coro)


# ---------------------------------------------------------------------------
# connect() / serve()

async def test_connect_serve_tunnel_over_memory_network() -> None:
    await tunnel_story("192.0.2.1", "192.0.2.2", MemoryNetwork())


async def test_connect_serve_failure_raises_and_cleans_up() -> None:
    net = MemoryNetwork()
    cc, sc = tunnel_configs("192.0.2.1", "192.0.2.2")
    sc.psk = b"a different secret"
    server = await serve("192.0.2.2", configuration=sc, network=net)
    try:
        with pytest.raises(Exception) as info:
            async with connect("192.0.2.2", configuration=cc, network=net, timeout=5):
                raise AssertionError("must not establish with the wrong PSK")
        assert "AUTHENTICATION_FAILED" in str(info.value) or "authentication" in str(info.value).lower()
        # the client endpoint closed its sockets: the addresses can be bound again
        net.bind(("192.0.2.1", 500)).close()
        net.bind(("192.0.2.1", 4500)).close()
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


# ---------------------------------------------------------------------------
# the datagram API over transport mode

async def test_open_datagram_over_transport_mode() -> None:
    net = MemoryNetwork()
    wire: list[bytes] = []
    net.tap = lambda src, data, dst: wire.append(data)
    cc, sc = transport_configs("192.0.2.1", "192.0.2.2")
    server = await serve("192.0.2.2", configuration=sc, network=net)
    try:
        async with connect("192.0.2.2", configuration=cc, network=net, timeout=10) as ike:
            (ch,) = ike.children.values()
            assert ch.mode == "transport"
            await until(lambda: len(server.sessions) == 1, what="server session")
            (sproto,) = server.sessions
            srv_sock = sproto.open_datagram(7000)
            cli_sock = ike.open_datagram(5555)

            async def echo() -> None:
                for _ in range(3):
                    data, (ip, port) = await srv_sock.recvfrom()
                    srv_sock.sendto(b"echo:" + data, port, ip)

            task = asyncio.get_running_loop().create_task(echo())
            secret = b"transport-mode datagram payload 0123456789"
            replies = []
            for i in range(3):
                cli_sock.sendto(secret + b"%d" % i, 7000)
                replies.append(await asyncio.wait_for(cli_sock.recvfrom(), 5))
            await asyncio.wait_for(task, 5)
            assert replies == [(b"echo:" + secret + b"%d" % i, ("192.0.2.2", 7000)) for i in range(3)]
            # the payload never crossed the network in the clear
            assert not any(secret in d for d in wire)
            # a datagram to a port nobody opened is dropped and counted
            hub = server.endpoint.dataplane.inner
            before = hub.unclaimed
            cli_sock.sendto(b"nobody listens", 7001)
            await until(lambda: hub.unclaimed == before + 1, what="unclaimed datagram")
            with pytest.raises(OSError):
                ike.open_datagram(5555)  # already open
            cli_sock.close()
            srv_sock.close()
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


# ---------------------------------------------------------------------------
# NAT keepalives (RFC 3948 §4)

async def test_nat_keepalives_sent_by_the_natted_end_and_ignored_on_receive() -> None:
    net = MemoryNetwork()
    keepalives: list[tuple[Any, Any]] = []

    def tap(src: Any, data: bytes, dst: Any) -> None:
        if data == b"\xff":
            keepalives.append((src, dst))

    net.tap = tap
    # encap = true fakes our NAT-D hash: the client believes it is behind a NAT
    cc, sc = tunnel_configs("192.0.2.1", "192.0.2.2", encap=True)
    sc.encap = False
    interval = 0.05
    server_ep = await Endpoint.create("192.0.2.2", configurations=[sc], network=net, keepalive_interval=interval)
    client_ep = await Endpoint.create("192.0.2.1", configurations=[cc], network=net, respond=False,
                                      keepalive_interval=interval)
    try:
        proto = client_ep.initiate("srv")
        await asyncio.wait_for(proto.wait_child("net"), 5)
        assert proto.ike_info is not None and proto.ike_info.nat_local
        (ch,) = proto.children.values()
        assert ch.encap and ch.remote_addr == ("192.0.2.2", 4500)
        await asyncio.sleep(interval * 6.5)
        sent = client_ep.stats.keepalives_out
        assert 4 <= sent <= 8, sent
        assert set(keepalives) == {(("192.0.2.1", 4500), ("192.0.2.2", 4500))}
        # the server (not behind a NAT) sends none; it counts and ignores what it gets
        assert server_ep.stats.keepalives_out == 0
        assert server_ep.stats.keepalives_in == len(keepalives)
        assert server_ep.stats.malformed == 0 and server_ep.dataplane.stats.no_sa == 0
        (sproto,) = server_ep.sessions
        assert sproto.session.is_established
    finally:
        await client_ep.close(timeout=1)
        await server_ep.close(timeout=1)
    # closing stops the keepalives
    n = len(keepalives)
    await asyncio.sleep(interval * 3)
    assert len(keepalives) == n


async def test_no_keepalives_without_nat() -> None:
    net = MemoryNetwork()
    cc, sc = tunnel_configs("192.0.2.1", "192.0.2.2")
    server_ep = await Endpoint.create("192.0.2.2", configurations=[sc], network=net, keepalive_interval=0.02)
    client_ep = await Endpoint.create("192.0.2.1", configurations=[cc], network=net, keepalive_interval=0.02)
    try:
        proto = client_ep.initiate("srv")
        await asyncio.wait_for(proto.wait_child("net"), 5)
        await asyncio.sleep(0.15)
        assert client_ep.stats.keepalives_out == 0 and server_ep.stats.keepalives_out == 0
    finally:
        await client_ep.close(timeout=1)
        await server_ep.close(timeout=1)


# ---------------------------------------------------------------------------
# both event loops, in memory and over real UDP on loopback

@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_event_loops_memory_network(loop_kind: str) -> None:
    async def main() -> None:
        await tunnel_story("192.0.2.1", "192.0.2.2", MemoryNetwork())

    run_on(loop_kind, main())


def _loopback_ike_ports_free(ips: tuple[str, ...]) -> str | None:
    for ip in ips:
        for port in (500, 4500):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((ip, port))
            except OSError as exc:
                if exc.errno == errno.EACCES:
                    return "binding UDP 500/4500 needs root (CAP_NET_BIND_SERVICE)"
                return f"{ip}:{port} is busy: {exc}"
            finally:
                s.close()
    return None


@pytest.mark.parametrize("encap", [False, True], ids=["plain-esp", "encap"])
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_event_loops_real_udp_loopback(loop_kind: str, encap: bool) -> None:
    """Real sockets on 127.0.0.1 and 127.0.0.2 (ports 500/4500, so root).
    Without a NAT, ESP leaves as IP protocol 50 on the raw socket the
    endpoints open (``rawesp`` plugin); with ``encap`` it goes in UDP 4500."""
    reason = _loopback_ike_ports_free(("127.0.0.1", "127.0.0.2"))
    if reason is not None:
        pytest.skip(reason)
    if not encap:
        pytest.importorskip("aioipsec_rawesp")

    async def main() -> None:
        r = await tunnel_story("127.0.0.1", "127.0.0.2", None, encap=encap)
        assert r["encap"] is encap

    run_on(loop_kind, main())


def test_keepalive_decision_follows_the_live_nat_state() -> None:
    """Whether this end sends NAT keepalives comes from the IKE SA's current
    NAT state (a MOBIKE update redoes NAT detection), falling back to what
    IkeSaEstablished said (sessions without that state)."""
    from types import SimpleNamespace

    from aioipsec.asyncio.endpoint import _behind_nat

    def proto(live: object, established: bool | None) -> Any:
        info = None if established is None else SimpleNamespace(nat_local=established)
        sa = SimpleNamespace(nat_local=live) if live is not None else None
        return SimpleNamespace(session=SimpleNamespace(sa=sa), ike_info=info)

    assert _behind_nat(proto(True, False)) is True  # found behind a NAT after a move
    assert _behind_nat(proto(False, True)) is False  # moved out of the NAT
    assert _behind_nat(proto(None, True)) is True
    assert _behind_nat(proto(None, None)) is False
