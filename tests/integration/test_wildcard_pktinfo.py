"""A responder bound to the wildcard address (a road-warrior gateway with
local_addrs %any) learns the address each IKE datagram was sent to
(IP_PKTINFO / IPV6_RECVPKTINFO): the new session takes it as its local
address, so NAT-D finds no NAT, and its replies leave from it."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork, UdpSocket
from aioipsec.config import child, connection


def _free_port(family: int, host: str) -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _v6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _confs(target: str, port: int, version: int = 2) -> tuple[Any, Any]:
    psk = "wildcard-pktinfo"
    ini = connection("gw", psk=psk, local_id="client.example", remote_id="gw.example", remote_addrs=[target],
                     remote_port=port, dpd_delay=0, version=version,
                     children=[child("net", local_ts=["10.1.0.0/24"], remote_ts=["10.2.0.0/24"])])
    resp = connection("rw", psk=psk, local_id="gw.example", remote_id="client.example", dpd_delay=0, version=version,
                      children=[child("net", local_ts=["10.2.0.0/24"], remote_ts=["10.1.0.0/24"])])
    return ini, resp


@pytest.mark.parametrize(
    "wild,client,target",
    [("0.0.0.0", "127.0.0.2", "127.0.0.3"), ("::", "::1", "::1")],
    ids=["ipv4", "ipv6"],
)
async def test_wildcard_responder_answers_from_the_targeted_address(wild: str, client: str, target: str) -> None:
    family = socket.AF_INET6 if ":" in wild else socket.AF_INET
    if family == socket.AF_INET6 and not _v6_loopback():
        pytest.skip("no IPv6 loopback")
    port, natt = _free_port(family, wild), _free_port(family, wild)
    cport, cnatt = _free_port(family, client), _free_port(family, client)
    ini, resp = _confs(target, port)
    gw = await Endpoint.create(wild, configurations=[resp], port=port, natt_port=natt, raw_esp=False)
    cl = await Endpoint.create(client, configurations=[ini], port=cport, natt_port=cnatt, raw_esp=False)
    assert isinstance(gw.ike_socket, UdpSocket) and gw.ike_socket.pktinfo
    assert isinstance(cl.ike_socket, UdpSocket) and not cl.ike_socket.pktinfo  # a concrete address: pairs
    sources: list[Any] = []
    deliver = cl._on_ike_port

    def spy(batch: list[Any]) -> None:
        sources.extend(addr for _d, addr in batch)
        deliver(batch)

    cl.ike_socket.set_receiver(spy)
    try:
        proto = cl.initiate("gw")
        ch = await asyncio.wait_for(proto.wait_child("net"), 10)
        (rproto,) = gw.sessions
        rch = await asyncio.wait_for(rproto.wait_child("net"), 5)
        assert rproto.session.local_addr == (target, port)
        assert rch.local_addr[0] == target
        # NAT-D over the real address on both ends: no NAT, no UDP encapsulation
        assert rproto.ike_info is not None and not rproto.ike_info.nat_local and not rproto.ike_info.nat_remote
        assert proto.ike_info is not None and not proto.ike_info.nat_local and not proto.ike_info.nat_remote
        assert ch.encap is False and rch.encap is False
        # every answer came from the address the client targeted
        assert sources and set(sources) == {(target, port)}
        assert gw.stats.malformed == 0 and gw.ike_socket.send_errors == 0
    finally:
        await cl.close(timeout=1)
        await gw.close(timeout=1)


async def test_wildcard_memory_socket_gets_the_destination() -> None:
    """The in-memory network delivers datagrams for any address to a socket
    bound to the wildcard address of the family, with the destination, and a
    send from it may name its source (what the real sockets do)."""
    net = MemoryNetwork()
    wild = net.bind(("0.0.0.0", 500))
    peer = net.bind(("192.0.2.7", 500))
    got_w: list[Any] = []
    got_p: list[Any] = []
    wild.set_receiver(got_w.extend)
    peer.set_receiver(got_p.extend)
    peer.sendto(b"a", ("198.51.100.1", 500))
    peer.sendto(b"b", ("203.0.113.9", 500))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert got_w == [(b"a", ("192.0.2.7", 500), "198.51.100.1"), (b"b", ("192.0.2.7", 500), "203.0.113.9")]
    wild.sendto(b"c", ("192.0.2.7", 500), "203.0.113.9")
    wild.sendto(b"d", ("192.0.2.7", 500))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert got_p == [(b"c", ("203.0.113.9", 500)), (b"d", ("0.0.0.0", 500))]
    # a concrete socket ignores a source it cannot send from
    peer.sendto(b"e", ("198.51.100.1", 500), "10.9.9.9")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert got_w[-1] == (b"e", ("192.0.2.7", 500), "198.51.100.1")


@pytest.mark.parametrize("version", [2, 1], ids=["ikev2", "ikev1"])
async def test_wildcard_gateway_on_memory_network(version: int) -> None:
    """The same over the in-memory network: a gateway bound to 0.0.0.0
    reached at 198.51.100.1 has its IKE SA there and NAT-D finds no NAT."""
    net = MemoryNetwork()
    ini, resp = _confs("198.51.100.1", 500, version)
    gw = await Endpoint.create("0.0.0.0", configurations=[resp], network=net)
    cl = await Endpoint.create("192.0.2.7", configurations=[ini], network=net)
    seen: list[Any] = []
    net.tap = lambda src, data, dst: seen.append((src, dst))
    try:
        proto = cl.initiate("gw")
        ch = await asyncio.wait_for(proto.wait_child("net"), 5)
        (rproto,) = gw.sessions
        assert rproto.session.local_addr[0] == "198.51.100.1"
        assert ch.encap is False and proto.ike_info is not None and not proto.ike_info.nat_remote
        replies = [src for src, dst in seen if dst[0] == "192.0.2.7"]
        assert replies and {s[0] for s in replies} == {"198.51.100.1"}
    finally:
        await cl.close(timeout=1)
        await gw.close(timeout=1)


async def test_wildcard_gateway_encapsulated_esp_leaves_from_the_sa_address() -> None:
    """A client behind a NAT: the Child SA is UDP-encapsulated, and the
    gateway bound to 0.0.0.0 sends its ESP (on 4500) from the address the
    client reached it at, not from the wildcard / routing source."""
    from aioipsec.netutil import parse_udp, udp_packet
    from aioipsec.transports.memory import memory_pipe

    net = MemoryNetwork()

    def nat(src: Any, dst: Any) -> Any:
        if src[0] == "10.0.0.2":
            return ("192.0.2.7", src[1] + 10000), dst
        if dst[0] == "192.0.2.7":
            return src, ("10.0.0.2", dst[1] - 10000)
        return src, dst

    net.nat = nat
    ini, resp = _confs("198.51.100.1", 500)
    gw_in, gw_app = memory_pipe()
    cl_in, cl_app = memory_pipe()
    gw = await Endpoint.create("0.0.0.0", configurations=[resp], network=net, inner=gw_in)
    cl = await Endpoint.create("10.0.0.2", configurations=[ini], network=net, inner=cl_in)
    esp_from_gw: list[Any] = []
    net.tap = lambda src, data, dst: esp_from_gw.append(src) if src[1] == 4500 and data[:4] != bytes(4) and len(data) > 8 and dst[0] == "192.0.2.7" else None
    try:
        proto = cl.initiate("gw")
        ch = await asyncio.wait_for(proto.wait_child("net"), 5)
        assert ch.encap is True
        (rproto,) = gw.sessions
        await asyncio.wait_for(rproto.wait_child("net"), 5)
        assert gw.natt_socket is not None and gw.natt_socket.pktinfo and rproto.session.local_addr == ("198.51.100.1", 4500)
        cl_app.send_batch([udp_packet("10.1.0.1", "10.2.0.1", 1, 2, b"ping")])
        (got,) = await asyncio.wait_for(gw_app.recv_batch(), 5)
        gw_app.send_batch([udp_packet("10.2.0.1", "10.1.0.1", 2, 1, b"pong")])
        (back,) = await asyncio.wait_for(cl_app.recv_batch(), 5)
        assert parse_udp(got)[4] == b"ping" and parse_udp(back)[4] == b"pong"  # type: ignore[index]
        assert esp_from_gw == [("198.51.100.1", 4500)]
    finally:
        await cl.close(timeout=1)
        await gw.close(timeout=1)


async def test_wildcard_gateway_answers_a_path_probe_from_the_probed_address() -> None:
    """MOBIKE path probing against a gateway bound to 0.0.0.0 with two
    addresses (both announced): the path to the first one breaks (everything
    sent to it is dropped), the client's DPD is unanswered, and it probes both.
    The gateway must answer the probe that reached its second address from
    that address (as charon answers a request from its destination), or the
    client sees an answer from the broken path's address and never moves."""
    net = MemoryNetwork()
    first, second = "198.51.100.1", "198.51.100.2"
    ini, resp = _confs(first, 500)
    ini.dpd_delay, ini.retransmit_timeout, ini.retransmit_base, ini.retransmit_tries = 1.0, 0.2, 1.0, 1
    gw = await Endpoint.create("0.0.0.0", configurations=[resp], network=net)
    cl = await Endpoint.create("192.0.2.7", configurations=[ini], network=net)
    gw.set_local_addresses([first, second])
    try:
        proto = cl.initiate("gw")
        await asyncio.wait_for(proto.wait_child("net"), 5)
        s = proto.session
        assert s.sa.mobike and s.remote_addr == (first, 4500) and list(s.sa.peer_addrs) == [second]
        spis = (s.sa.spi_i, s.sa.spi_r)
        net.mangle = lambda src, data, dst: None if dst[0] == first else data
        for _ in range(100):
            if s.remote_addr == (second, 4500):
                break
            await asyncio.sleep(0.1)
        assert s.remote_addr == (second, 4500), "the client did not move to the gateway's second address"
        assert not s.is_closed and (s.sa.spi_i, s.sa.spi_r) == spis
        (rproto,) = gw.sessions
        for _ in range(20):  # its UPDATE_SA_ADDRESSES is answered
            if not s.sa.tm.active:
                break
            await asyncio.sleep(0.05)
        assert not s.sa.tm.active and not rproto.session.is_closed
    finally:
        await cl.close(timeout=1)
        await gw.close(timeout=1)


async def test_a_gateway_bound_to_one_address_announces_no_other() -> None:
    """A gateway whose sockets are bound to one address receives IKE nowhere
    else: told the host has a second address, it must not announce it
    (the client's path probes there would go unanswered), in IKE_AUTH
    (NO_ADDITIONAL_ADDRESSES) nor in an address update later.  Bound to the
    wildcard address it announces both (the test above)."""
    net = MemoryNetwork()
    first, second, third = "198.51.100.1", "198.51.100.2", "198.51.100.3"
    ini, resp = _confs(first, 500)
    gw = await Endpoint.create(first, configurations=[resp], network=net)
    cl = await Endpoint.create("192.0.2.7", configurations=[ini], network=net)
    gw.set_local_addresses([first, second])
    try:
        proto = cl.initiate("gw")
        await asyncio.wait_for(proto.wait_child("net"), 5)
        s = proto.session
        assert s.sa.mobike and s.remote_addr[0] == first and list(s.sa.peer_addrs) == []
        (rproto,) = gw.sessions
        assert rproto.session.sa.my_addrs == () and gw.local_addresses == ()
        assert gw.set_local_addresses([first, second, third]) == []  # no address update either
        assert rproto.session.sa.my_addrs == () and not rproto.session.sa.tm.queued
    finally:
        await cl.close(timeout=1)
        await gw.close(timeout=1)


async def test_wildcard_gateway_moves_its_side_to_the_probed_address() -> None:
    """The probe above, then the client's UPDATE_SA_ADDRESSES sent to the
    gateway's second address: the gateway moves its own side of the IKE SA
    there too (RFC 4555 §3.5, as charon), so its ESP leaves from the second
    address.  Here the first address is cut off both ways: ESP from it (what
    the gateway sent before) never reaches the client."""
    from aioipsec.netutil import parse_udp, udp_packet
    from aioipsec.transports.memory import memory_pipe

    net = MemoryNetwork()
    first, second = "198.51.100.1", "198.51.100.2"
    ini, resp = _confs(first, 500)
    ini.dpd_delay, ini.retransmit_timeout, ini.retransmit_base, ini.retransmit_tries = 1.0, 0.2, 1.0, 1
    gw_in, gw_app = memory_pipe()
    cl_in, cl_app = memory_pipe()
    gw = await Endpoint.create("0.0.0.0", configurations=[resp], network=net, inner=gw_in)
    cl = await Endpoint.create("192.0.2.7", configurations=[ini], network=net, inner=cl_in)
    gw.set_local_addresses([first, second])
    try:
        proto = cl.initiate("gw")
        await asyncio.wait_for(proto.wait_child("net"), 5)
        s = proto.session
        (rproto,) = gw.sessions
        await asyncio.wait_for(rproto.wait_child("net"), 5)
        rs = rproto.session
        assert rs.local_addr == (first, 4500)
        spis = (s.sa.spi_i, s.sa.spi_r)
        net.mangle = lambda src, data, dst: None if first in (src[0], dst[0]) else data
        for _ in range(100):
            if s.remote_addr == (second, 4500) and not s.sa.tm.active:
                break
            await asyncio.sleep(0.1)
        assert s.remote_addr == (second, 4500) and not s.sa.tm.active, "the client did not move"
        assert rs.local_addr == (second, 4500) and not rs.is_closed and (rs.sa.spi_i, rs.sa.spi_r) == spis
        # ESP both ways over the new path, the gateway's from its second address
        cl_app.send_batch([udp_packet("10.1.0.1", "10.2.0.1", 1, 2, b"ping")])
        (got,) = await asyncio.wait_for(gw_app.recv_batch(), 5)
        gw_app.send_batch([udp_packet("10.2.0.1", "10.1.0.1", 2, 1, b"pong")])
        (back,) = await asyncio.wait_for(cl_app.recv_batch(), 5)
        assert parse_udp(got)[4] == b"ping" and parse_udp(back)[4] == b"pong"  # type: ignore[index]
    finally:
        await cl.close(timeout=1)
        await gw.close(timeout=1)
