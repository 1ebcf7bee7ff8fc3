"""Outer transports on real sockets: the ``udp`` built-in and the ``rawesp``
plugin (IP protocol 50 on raw sockets; needs root), alone and as the
endpoint's ESP socket between two aioipsec endpoints on loopback."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any

import pytest

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.config import child, connection
from aioipsec.netutil import ipv4_header, parse_udp, udp_packet
from aioipsec.transports import available_transports, get_transport
from aioipsec.transports.memory import memory_pipe

rawesp = pytest.importorskip("aioipsec_rawesp")


def need_raw() -> None:
    if os.geteuid() != 0:
        pytest.skip("raw IP sockets need root (CAP_NET_RAW)")


# ---------------------------------------------------------------------------
# udp

async def test_udp_transport_batches_and_close() -> None:
    assert "udp" in available_transports()
    a = get_transport("udp", host="127.0.0.1", port=0)
    b = get_transport("udp", host="127.0.0.1", port=0)
    try:
        a.send_batch([b"one", b"two", b"three"], b.local_addr)
        got: list[Any] = []
        while len(got) < 3:
            got += await asyncio.wait_for(b.recv_batch(), 5)
        assert got == [(d, a.local_addr) for d in (b"one", b"two", b"three")]
        assert a.sent == 3 and b.received == 3
        # callback mode (what the endpoint uses)
        seen: list[Any] = []
        a.set_receiver(seen.extend)
        b.sendto(b"back", a.local_addr)
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.005)
        assert seen == [(b"back", b.local_addr)]
    finally:
        a.close()
        b.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(b.recv_batch(), 1)


# ---------------------------------------------------------------------------
# rawesp

def test_strip_ipv4_header() -> None:
    pkt = ipv4_header("192.0.2.1", "192.0.2.2", 50, 12) + b"\x00\x00\x10\x00" + bytes(8)
    assert rawesp.strip_ipv4_header(pkt) == (b"\x00\x00\x10\x00" + bytes(8), "192.0.2.1")
    assert rawesp.strip_ipv4_header(b"\x45" + bytes(10)) is None        # short
    assert rawesp.strip_ipv4_header(b"\x60" + bytes(40)) is None        # IPv6
    assert rawesp.strip_ipv4_header(b"\x4f" + bytes(30)) is None        # IHL past the end
    with pytest.raises(ValueError):
        rawesp.RawEspSocket.open("127.0.0.1", protocol=17)


async def test_rawesp_plugin_loopback() -> None:
    need_raw()
    assert "rawesp" in available_transports()
    a = get_transport("rawesp", host="127.0.0.1")
    b = rawesp.RawEspSocket.open("127.0.0.2")
    try:
        assert isinstance(a, rawesp.RawEspSocket) and a.local_addr == ("127.0.0.1", 0)
        datagrams = [bytes([0, 0, 0x12, 0x34, 0, 0, 0, i]) + b"payload" for i in range(1, 6)]
        a.send_batch(datagrams, ("127.0.0.2", 4500))   # the port is ignored
        got: list[Any] = []
        while len(got) < 5:
            got += await asyncio.wait_for(b.recv_batch(), 5)
        # the IP header is gone, the sender is known, nothing else was read
        assert got == [(d, ("127.0.0.1", 0)) for d in datagrams]
        # a socket bound to another address does not see them
        await asyncio.sleep(0.02)
        assert a.received == 0
    finally:
        a.close()
        b.close()


async def test_rawesp_between_endpoints_plain_esp() -> None:
    """Two endpoints on loopback, no NAT, ``encap = false``: ESP leaves as IP
    protocol 50 through the raw sockets (nothing on UDP 4500) and the tunnel
    carries traffic both ways."""
    need_raw()
    ips = ("127.0.0.1", "127.0.0.2")
    for ip in ips:
        for port in (500, 4500):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((ip, port))
            except OSError as exc:
                pytest.skip(f"{ip}:{port} unavailable: {errno.errorcode.get(exc.errno or 0, exc)}")
            finally:
                s.close()
    psk = "rawesp-loopback"
    ca = connection("b", psk=psk, local_id="a.example", remote_id="b.example", local_addrs=[ips[0]],
                    remote_addrs=[ips[1]], dpd_delay=0,
                    children=[child("net", local_ts=["198.51.100.0/24"], remote_ts=["203.0.113.0/24"])])
    cb = connection("a", psk=psk, local_id="b.example", remote_id="a.example", local_addrs=[ips[1]],
                    remote_addrs=[ips[0]], dpd_delay=0,
                    children=[child("net", local_ts=["203.0.113.0/24"], remote_ts=["198.51.100.0/24"])])
    a_gw, a_app = memory_pipe()
    b_gw, b_app = memory_pipe()
    ea = await Endpoint.create(ips[0], configurations=[ca], inner=a_gw, esp_socket=rawesp.RawEspSocket.open(ips[0]))
    eb = await Endpoint.create(ips[1], configurations=[cb], inner=b_gw, esp_socket=rawesp.RawEspSocket.open(ips[1]))
    try:
        proto = ea.initiate("b")
        ch = await asyncio.wait_for(proto.wait_child("net"), 5)
        assert ch.encap is False
        a_app.send_batch([udp_packet("198.51.100.1", "203.0.113.1", 1, 2, b"a%d" % i) for i in range(20)])
        got: list[bytes] = []
        while len(got) < 20:
            got += await asyncio.wait_for(b_app.recv_batch(), 5)
        b_app.send_batch([udp_packet("203.0.113.1", "198.51.100.1", 2, 1, b"reply")])
        (back,) = await asyncio.wait_for(a_app.recv_batch(), 5)
        assert [parse_udp(p)[4] for p in got] == [b"a%d" % i for i in range(20)]  # type: ignore[index]
        assert parse_udp(back)[4] == b"reply"  # type: ignore[index]
        assert ea.esp_socket.sent == 20 and eb.esp_socket.received == 20  # type: ignore[union-attr]
        assert eb.esp_socket.sent == 1 and ea.esp_socket.received == 1    # type: ignore[union-attr]
        assert ea.stats.esp_in == 1 and eb.stats.esp_in == 20
        assert ea.dataplane.stats.no_transport == 0
    finally:
        await ea.close(timeout=1)
        await eb.close(timeout=1)


# ---------------------------------------------------------------------------
# UDP GSO (send) and GRO (receive) on the endpoint's sockets

@pytest.mark.parametrize("parts", [False, True], ids=["whole", "parts"])
@pytest.mark.parametrize("gso", [True, False], ids=["gso", "no-gso"])
async def test_udp_socket_batches_keep_every_datagram_in_order(gso: bool, parts: bool) -> None:
    """send_batch, and send_parts (head + body of each datagram, as a sealed
    ESP batch: gathered by the kernel under GSO, joined without)."""
    from aioipsec.asyncio.sockets import UdpSocket

    loop = asyncio.get_running_loop()
    a = UdpSocket.bind(loop, "127.0.0.1", 0)
    b = UdpSocket.bind(loop, "127.0.0.1", 0)
    a.gso = gso
    got: list[Any] = []
    b.set_receiver(got.extend)
    try:
        # runs of equal sizes (GSO candidates), a shorter one closing a run,
        # singles, and more than GSO_MAX_SEGMENTS in one run
        datagrams = [bytes([i % 251]) * 1400 for i in range(100)] + [b"short"] + [b"x" * 700, b"y" * 900]
        datagrams += [bytes([i]) * 64 for i in range(50)] + [b"\xff"]
        if parts:
            # 16-byte heads, and some empty heads (whole datagrams in the body)
            heads = [b"" if i % 3 == 0 else d[:16] for i, d in enumerate(datagrams)]
            a.send_parts(heads, [d[len(h):] for h, d in zip(heads, datagrams)], b.local_addr)
        else:
            a.send_batch(datagrams, b.local_addr)
        for _ in range(400):
            if len(got) >= len(datagrams):
                break
            await asyncio.sleep(0.005)
        assert [d for d, _ in got] == datagrams
        assert all(addr == a.local_addr for _, addr in got)
        assert a.sent == len(datagrams) and a.send_errors == 0
        if gso:
            assert a.gso_sends >= 3  # 100 x 1400 needs two sends at least, 50 x 64 one
            if b.gro:  # loopback keeps GSO packets whole: the receiver splits them again
                assert b.gro_reads >= 1
        else:
            assert a.gso_sends == 0
    finally:
        a.close()
        b.close()
