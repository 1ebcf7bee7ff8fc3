"""An application's test that runs its traffic through a real IPsec tunnel.

The ``ipsec_pair`` fixture comes from aioipsec's pytest plugin (installed with
the package): two in-memory peers that have negotiated IKEv2 and an ESP
Child SA.  Run it with ``pytest examples/test_example.py`` (pytest-asyncio
is needed for ``async def`` tests).
"""

import asyncio

import pytest


class EchoServer(asyncio.DatagramProtocol):
    """The application under test: an ordinary asyncio UDP echo server."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data.upper(), addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.replies = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.replies.put_nowait((data, addr))


@pytest.mark.asyncio
async def test_echo_through_the_tunnel(ipsec_pair):
    # the server runs on the right peer, the client on the left one, both
    # unchanged asyncio protocols; their datagrams are sealed in ESP
    await ipsec_pair.right.create_datagram_endpoint(EchoServer, local_port=7)
    transport, client = await ipsec_pair.left.create_datagram_endpoint(Client, local_port=40000, remote_port=7)
    transport.sendto(b"hello")
    data, addr = await asyncio.wait_for(client.replies.get(), 5)
    assert data == b"HELLO"
    assert addr == (ipsec_pair.right.host, 7)

    # what crossed the tunnel is counted like `aioipsec status` shows it
    child = ipsec_pair.left.status()["ike_sas"][0]["children"][0]
    assert child["packets_out"] == 1 and child["packets_in"] == 1
    assert child["integrity_failed"] == 0


@pytest.mark.asyncio
async def test_datagram_sockets(ipsec_pair):
    # lower level: a UDP "socket" on each peer
    a = ipsec_pair.left.open_datagram(5000)
    b = ipsec_pair.right.open_datagram(6000)
    a.sendto(b"ping", 6000)
    data, (ip, port) = await asyncio.wait_for(b.recvfrom(), 5)
    assert (data, ip, port) == (b"ping", ipsec_pair.left.host, 5000)


@pytest.mark.asyncio
async def test_ikev1_tunnel_mode(ipsec_pair_factory):
    # other options: IKEv1, tunnel mode, lossy links (link={"loss": 0.1, "seed": 1}), ...
    pair = await ipsec_pair_factory(version=1, mode="tunnel")
    a = pair.left.open_datagram(5000)    # from a host inside the left network
    b = pair.right.open_datagram(6000)
    a.sendto(b"over IKEv1", 6000)
    data, (ip, _) = await asyncio.wait_for(b.recvfrom(), 5)
    assert data == b"over IKEv1" and ip == pair.left.host
    assert pair.left.child.mode == "tunnel"
