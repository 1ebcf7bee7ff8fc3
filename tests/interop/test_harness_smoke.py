"""The harness proves itself with two strongSwan peers (both charon, kernel-libipsec).

These tests check the test bed, not aioipsec: if they fail, interop failures of
aioipsec mean nothing.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest

from .netns import Topology, create_topology, list_netns, netns_exists, pid_alive
from .strongswan import ChildSa, Connection, StrongSwanError, StrongSwanPeer, wait_both

pytestmark = pytest.mark.interop

PING_COUNT = 3


def ping(topology: Topology, src: str = "left", *, count: int = PING_COUNT,
         family: int = 4) -> tuple[int, int]:
    """Bounded ping from ``src``'s inner address to the other side's; (sent, received)."""
    me, peer = topology.side(src), topology.other(src)
    source, dest = (me.inner4, peer.inner4) if family == 4 else (me.inner6, peer.inner6)
    proc = me.ns.run(["ping", f"-{family}", "-c", str(count), "-i", "0.2", "-W", "3",
                      "-I", source, dest], timeout=count + 5, check=False)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    if m is None:    # e.g. "connect: Network is unreachable": nothing was sent
        assert proc.returncode != 0, f"unexpected ping output: {proc.stdout!r}"
        return 0, 0
    return int(m.group(1)), int(m.group(2))


def counters(peer: StrongSwanPeer) -> ChildSa:
    (child,) = peer.installed_children()
    return child


async def udp_echo(host: str, port: int, count: int, timeout: float) -> None:
    """Echo ``count`` UDP datagrams on host:port, then return (run inside a namespace)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    seen = 0

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            nonlocal seen
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]
            seen += 1
            if seen >= count and not done.done():
                done.set_result(None)

    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, port))
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        transport.close()


# a plain Python process in a namespace, started like a future `python -m aioipsec daemon`
ECHO_SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(20)
print("READY", flush=True)
data, addr = s.recvfrom(100)
s.sendto(data[::-1], addr)
print("ECHOED", len(data), flush=True)
"""


def udp_roundtrip(topology: Topology, src: str, port: int, payload: bytes,
                  timeout: float = 10.0) -> bytes:
    """Send ``payload`` from ``src``'s inner address to the other side's, resending every
    0.2 s until a reply arrives (bounded); returns the reply."""
    me, peer = topology.side(src), topology.other(src)
    with me.ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.bind((me.inner4, 0))
        sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.sendto(payload, (peer.inner4, port))
            try:
                return sock.recv(1000)
            except TimeoutError:
                pass
    raise AssertionError(f"no UDP reply from {peer.inner4}:{port} within {timeout}s")


def test_ikev2_psk_gcm_tunnel_and_clean_teardown(strongswan) -> None:
    conn = Connection.named("ikev2-psk-gcm")
    with create_topology("direct") as topo:
        names = [ns.name for ns in topo.namespaces]
        assert all(netns_exists(n) for n in names)
        # without a tunnel the inner addresses are unreachable
        sent, received = ping(topo, count=1)
        assert received == 0

        right = strongswan(topo, "right", conn)
        left = strongswan(topo, "left", conn, log_keys=True)
        left.initiate()
        lchild, rchild = wait_both(left, right)
        assert lchild.raw["encr-alg"] == "AES_GCM_16" and lchild.raw["mode"] == "TUNNEL"
        assert lchild.raw["encap"] == "yes"          # kernel-libipsec: always ESP-in-UDP
        assert (lchild.spi_in, lchild.spi_out) == (rchild.spi_out, rchild.spi_in)
        (ike,) = left.list_sas()
        assert ike.initiator and ike.version == 2 and ike.state == "ESTABLISHED"
        assert ike.raw["remote-port"] == "4500"

        sent, received = ping(topo)
        assert (sent, received) == (PING_COUNT, PING_COUNT)
        lafter, rafter = counters(left), counters(right)
        for before, after in ((lchild, lafter), (rchild, rafter)):
            assert after.packets_out >= before.packets_out + PING_COUNT
            assert after.packets_in >= before.packets_in + PING_COUNT
            assert after.bytes_in > before.bytes_in
        # a Python coroutine in the right namespace answers UDP through the tunnel
        echo = topo.right.ns.spawn(udp_echo, topo.right.inner4, 7777, 1, 10.0)
        assert udp_roundtrip(topo, "left", 7777, b"through the tunnel") == b"through the tunnel"
        assert echo.join(10) == 0
        assert counters(right).packets_in > rafter.packets_in

        # keys and SPIs from the --log-keys log match what charon reports
        keys = left.keys()
        assert keys.child_spis[-1] == ("ih", lchild.spi_in, lchild.spi_out)
        assert len(keys.last("encryption initiator key")) == 20   # AES-128 key + 4-byte salt
        assert len(keys.last("Sk_ei secret")) == 20
        assert keys.last("encryption initiator key") != keys.last("encryption responder key")

        left.terminate()
        assert left.list_sas() == []
        right.wait_log(r"deleting IKE_SA ih\[\d+\]|IKE_SA deleted", timeout=5)
        pids = [left.pid, right.pid, echo.pid]
        topo_ref = topo
    # the context manager destroyed the test bed: nothing of it is left
    assert topo_ref.destroyed
    assert not any(n in list_netns() for n in names)
    assert not any(netns_exists(n) for n in names)
    assert not any(pid is not None and pid_alive(pid) for pid in pids)


def test_ikev1_main_mode_psk_right_initiates(strongswan, process_peer,
                                             direct_topology) -> None:
    topo = direct_topology
    conn = Connection.named("ikev1-main-psk-aes128-sha1")
    left = strongswan(topo, "left", conn)
    right = strongswan(topo, "right", conn)
    right.initiate()
    # the IKEv1 responder installs its SAs only once it has processed Quick Mode 3
    lchild, rchild = wait_both(left, right)
    assert (lchild.spi_in, lchild.spi_out) == (rchild.spi_out, rchild.spi_in)
    assert rchild.raw["encr-alg"] == "AES_CBC" and rchild.raw["integ-alg"] == "HMAC_SHA1_96"
    assert "initiating Main Mode" in right.logs()
    assert re.search(r"192\.0\.2\.2 is initiating a Main Mode IKE_SA", left.logs())
    sent, received = ping(topo, "right")
    assert (sent, received) == (PING_COUNT, PING_COUNT)
    assert counters(left).packets_in >= PING_COUNT
    assert counters(left).packets_out >= PING_COUNT
    echo = process_peer(topo, "left", ["-c", ECHO_SCRIPT, topo.left.inner4, "7778"],
                        ready="READY")
    assert udp_roundtrip(topo, "right", 7778, b"main mode") == b"edom niam"
    echo.wait_log(r"ECHOED 9", timeout=5)
    assert echo.process is not None and echo.process.wait(5) == 0


def test_wrong_psk_is_refused(strongswan, direct_topology) -> None:
    topo = direct_topology
    conn = Connection.named("ikev2-psk-gcm")
    left = strongswan(topo, "left", conn.with_wrong_psk())
    right = strongswan(topo, "right", conn)
    with pytest.raises(StrongSwanError, match="initiate"):
        left.initiate(timeout=8)
    assert "AUTHENTICATION_FAILED" in left.logs()
    assert left.installed_children() == [] and right.installed_children() == []


def test_nat_topology_floats_and_rewrites_ports(strongswan, nat_topology) -> None:
    topo = nat_topology
    conn = Connection.named("ikev2-psk-gcm")
    right = strongswan(topo, "right", conn)
    left = strongswan(topo, "left", conn)
    left.initiate()
    wait_both(left, right)
    (ike,) = right.list_sas()
    # right sees left as the NAT router, with a port from the MASQUERADE range
    assert ike.raw["remote-host"] == "198.51.100.254"
    assert 40000 <= int(ike.raw["remote-port"]) <= 49999
    assert ike.raw.get("nat-remote") == "yes"
    sent, received = ping(topo)
    assert (sent, received) == (PING_COUNT, PING_COUNT)
