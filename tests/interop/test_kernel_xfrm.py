"""aioipsec against strongSwan with the Linux kernel's XFRM data plane (charon in the VM).

This machine's kernel has no ESP, so charon runs in the QEMU micro-VM of
:mod:`.vm` (Debian's stock kernel) with ``kernel-netlink``: its ESP SAs live in the
guest kernel, which sends and accepts **plain ESP** (IP protocol 50) - no NAT, so
nothing floats to 4500 - and does transport mode, both of which kernel-libipsec
cannot.  aioipsec runs on the left (``python -m aioipsec daemon`` with a TUN device for
tunnel mode; the datagram API for transport mode), its ESP on the raw protocol-50
socket of the ``rawesp`` plugin.

Every case checks both ends: SPIs cross-match, ``ip -s xfrm state`` in the guest
shows the two SAs (plain ESP, the negotiated algorithm, byte and packet counters
matching aioipsec's), and the guest kernel counted no ESP errors.

One case runs behind a port-rewriting NAT, where both ends float to 4500 and the guest
kernel does ESP-in-UDP itself (``espinudp``).

``test_tunnel_plain_esp[aioipsec]`` is the smoke case run by default (one VM boot);
the rest need ``AIOIPSEC_VM_TESTS=1``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .aioipsec_peer import AioipsecPeer
from .strongswan import ChildSa, Connection, Profile
from .test_harness_smoke import ping
from .vm import MicroVm, VmPeers, VmStrongSwanPeer, XfrmState

pytestmark = [pytest.mark.interop, pytest.mark.vm, pytest.mark.timeout(240)]

PINGS = 3
# kernel error counters that must stay zero (ICV failures, bad SPI, replay ...)
XFRM_ERRORS = ("XfrmInError", "XfrmInStateProtoError", "XfrmInStateSeqError",
               "XfrmInStateInvalid", "XfrmInNoStates", "XfrmInTmplMismatch",
               "XfrmOutStateProtoError", "XfrmOutNoStates")


def kernel_sas(vm: MicroVm, spi_in: int, spi_out: int) -> tuple[XfrmState, XfrmState]:
    """The guest's (inbound, outbound) SA for the Child SA whose guest-side SPIs are
    ``spi_in``/``spi_out``; both must exist, as plain ESP."""
    states = {s.spi: s for s in vm.xfrm_state() if s.proto == "esp"}
    assert spi_in in states and spi_out in states, (hex(spi_in), hex(spi_out), vm.xfrm_state())
    sa_in, sa_out = states[spi_in], states[spi_out]
    for sa in (sa_in, sa_out):
        assert sa.encap is None, f"SA {sa.spi:#x} is UDP-encapsulated: {sa.encap}"
    return sa_in, sa_out


def check_pair(aio: AioipsecPeer, ss: VmStrongSwanPeer, vm: MicroVm, *, mode: str,
               alg: str) -> tuple[ChildSa, XfrmState, XfrmState]:
    """SPIs cross-match; the guest kernel holds both SAs, plain ESP, ``mode``, ``alg``."""
    ss_child = ss.wait_established(20)
    aio_child = aio.wait_established(20)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    assert aio_child.raw["encap"] is False and aio_child.raw["mode"] == mode
    sa_in, sa_out = kernel_sas(vm, ss_child.spi_in, ss_child.spi_out)
    for sa in (sa_in, sa_out):
        assert sa.mode == mode
        assert any(alg in a for a in sa.algorithms), sa.algorithms
    vm_addr, aio_addr = vm.side.outer4, aio.side.outer4
    assert (sa_in.src, sa_in.dst) == (aio_addr, vm_addr)
    assert (sa_out.src, sa_out.dst) == (vm_addr, aio_addr)
    return aio_child, sa_in, sa_out


def assert_no_kernel_errors(vm: MicroVm, before: dict[str, int]) -> None:
    after = vm.xfrm_stats()
    grown = {k: after.get(k, 0) - before.get(k, 0) for k in XFRM_ERRORS
             if after.get(k, 0) != before.get(k, 0)}
    assert not grown, f"guest XFRM error counters grew: {grown}"


@pytest.mark.parametrize("initiator", [
    pytest.param("aioipsec", marks=pytest.mark.vm_smoke),
    "strongswan",
])
def test_tunnel_plain_esp(vm_peers: VmPeers, micro_vm: MicroVm, initiator: str) -> None:
    """IKEv2 PSK, AES-GCM-16 tunnel, plain ESP both ways; pings from both ends."""
    topo = micro_vm.topology
    conn = Connection.named("ikev2-psk-gcm")
    before = micro_vm.xfrm_stats()
    ss = vm_peers.strongswan(conn)
    aio = vm_peers.aioipsec(conn)
    if initiator == "aioipsec":
        aio.initiate(timeout=30)
    else:
        ss.initiate(timeout=30)
    check_pair(aio, ss, micro_vm, mode="tunnel", alg="rfc4106(gcm(aes))")

    assert ping(topo, "left", count=PINGS) == (PINGS, PINGS)
    right = topo.right
    assert micro_vm.ping(topo.left.inner4, source=right.inner4, count=PINGS) == (PINGS, PINGS)

    aio_child = aio.wait_established(5)
    sa_in, sa_out = kernel_sas(micro_vm, aio_child.spi_out, aio_child.spi_in)
    # every ping and reply crossed the kernel SAs: aioipsec's counters are the kernel's
    assert aio_child.packets_out == sa_in.packets >= 2 * PINGS
    assert aio_child.packets_in == sa_out.packets >= 2 * PINGS
    # the kernel counts inner bytes, as aioipsec does
    assert aio_child.bytes_out == sa_in.bytes and aio_child.bytes_in == sa_out.bytes
    assert aio_child.raw["integrity_failed"] == 0 and aio_child.raw["replay_failed"] == 0
    assert_no_kernel_errors(micro_vm, before)

    # aioipsec deletes the IKE SA: charon removes the kernel SAs
    aio.terminate()
    deadline = time.monotonic() + 15
    while any(s.spi in (sa_in.spi, sa_out.spi) for s in micro_vm.xfrm_state()):
        assert time.monotonic() < deadline, micro_vm.xfrm_state()
        time.sleep(0.3)


# ---------------------------------------------------------------------------
# transport mode: aioipsec's datagram API (a spawned process in the left namespace)
# against a UDP echo server in the guest

ECHO_PORT = 7000
COUNT = 10
SECRET = b"aioipsec transport mode through the Linux kernel"
PSK = "aioipsec-interop-test-psk-0123456789abcdef"

ECHO_SERVER = r"""
import socket, sys
host, port, count, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, port))
s.settimeout(60)
open(ready, "w").write("1")
for _ in range(count):
    data, addr = s.recvfrom(4096)
    s.sendto(b"echo:" + data, addr)
"""


async def transport_client(me: str, peer: str, out: str) -> None:
    """In the left namespace: connect() with a transport-mode child, send COUNT
    datagrams to the guest's echo server, record the echoes; keep the SAs until the
    test has read the kernel's view (``OUT.close`` appears, at most 60 s)."""
    import asyncio

    from aioipsec.asyncio.client import connect
    from aioipsec.config import child, connection

    conf = connection("vm", psk=PSK, local_id="left.interop.example",
                      remote_id="right.interop.example", local_addrs=[me], remote_addrs=[peer],
                      proposals=["aes128gcm16-prfsha256-x25519"], dpd_delay=0,
                      retransmit_timeout=1.0, retransmit_tries=6,
                      children=[child("ih", local_ts=[f"{me}/32"], remote_ts=[f"{peer}/32"],
                                      esp_proposals=["aes128gcm16"], mode="transport")])
    result: dict[str, object] = {}
    written = False
    try:
        async with connect(peer, configuration=conf, timeout=30) as ike:
            sock = ike.open_datagram(5555)
            echoes = []
            for i in range(COUNT):
                sock.sendto(SECRET + b" %d" % i, ECHO_PORT)
                data, addr = await asyncio.wait_for(sock.recvfrom(), 10)
                echoes.append([data.decode(), list(addr)])
            (ch,) = ike.children.values()
            stats = ike._endpoint.stats
            result.update(echoes=echoes, mode=ch.mode, encap=ch.encap, spi_in=ch.spi_in,
                          spi_out=ch.spi_out, esp_in=stats.esp_in,
                          esp_socket=type(ike._endpoint.esp_socket).__name__)
            Path(out).write_text(json.dumps(result))
            written = True
            close = Path(out + ".close")
            for _ in range(600):
                if close.exists():
                    break
                await asyncio.sleep(0.1)
    except BaseException as exc:  # noqa: BLE001 - reported through the result file
        result["error"] = repr(exc)
    finally:
        if not written or "error" in result:
            Path(out).write_text(json.dumps(result))


def _wait_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} not written within {timeout}s"
        time.sleep(0.1)


@contextmanager
def transport_exchange(vm: MicroVm) -> Iterator[dict[str, object]]:
    """Run :func:`transport_client` in the left namespace against a UDP echo server in
    the guest; yields the client's result (echoes checked) while its SAs still exist,
    so the caller can read the peer's and the kernel's view; then lets it close."""
    topo = vm.topology
    left, right = topo.left, topo.right
    run_dir = topo.run_dir
    script, ready = run_dir / "vm-echo.py", run_dir / "vm-echo.ready"
    out = run_dir / "transport-client.json"
    for p in (ready, out, Path(f"{out}.close")):
        p.unlink(missing_ok=True)
    script.write_text(ECHO_SERVER)
    echo_pid = vm.spawn(["python3", str(script), right.outer4, str(ECHO_PORT), str(COUNT),
                         str(ready)], log=run_dir / "vm-echo.log")
    client = None
    try:
        _wait_file(ready, 30)
        client = left.ns.spawn(transport_client, left.outer4, right.outer4, str(out))
        _wait_file(out, 90)
        result = json.loads(out.read_text())
        assert "error" not in result, result
        assert result["mode"] == "transport" and result["encap"] is False
        assert result["esp_socket"] == "RawEspSocket"
        assert result["echoes"] == [["echo:" + (SECRET + b" %d" % i).decode(),
                                     [right.outer4, ECHO_PORT]] for i in range(COUNT)]
        yield result
    finally:
        Path(f"{out}.close").write_text("1")
        if client is not None:
            client.join(20)
            client.stop()
        vm.kill(echo_pid)


def check_transport_sas(vm: MicroVm, spi_in: int, spi_out: int) -> None:
    """The guest kernel's two transport-mode SAs (guest-side SPIs) counted every datagram."""
    left, right = vm.topology.left, vm.topology.right
    sa_in, sa_out = kernel_sas(vm, spi_in, spi_out)
    assert sa_in.mode == sa_out.mode == "transport"
    assert (sa_in.src, sa_in.dst) == (left.outer4, right.outer4)
    assert sa_in.packets == sa_out.packets == COUNT
    assert any("rfc4106(gcm(aes))" in a for a in sa_in.algorithms), sa_in.algorithms


TRANSPORT = Profile("ikev2-psk-gcm", 2, "aes128gcm16-prfsha256-x25519", "aes128gcm16",
                    mode="transport")


def test_transport_mode(vm_peers: VmPeers, micro_vm: MicroVm) -> None:
    """IKEv2 PSK, AES-GCM-16 transport mode between the outer addresses, plain ESP:
    UDP datagrams from aioipsec's datagram API to an echo server in the guest and back."""
    before = micro_vm.xfrm_stats()
    ss = vm_peers.strongswan(Connection(TRANSPORT, psk=PSK))
    with transport_exchange(micro_vm) as result:
        # charon's transport-mode Child SA has aioipsec's SPIs; the kernel counted all
        ss_child = ss.wait_established(5)
        assert ss_child.raw["mode"] == "TRANSPORT"
        assert (ss_child.spi_in, ss_child.spi_out) == (result["spi_out"], result["spi_in"])
        check_transport_sas(micro_vm, ss_child.spi_in, ss_child.spi_out)
    assert_no_kernel_errors(micro_vm, before)


# ---------------------------------------------------------------------------
# behind a NAT (its own topology: last, so the direct-topology VM boots once less)

@pytest.mark.vm(topology="nat")
def test_nat_udp_encapsulation(vm_peers: VmPeers, micro_vm: MicroVm) -> None:
    """aioipsec behind a port-rewriting NAT: both ends detect it, float to 4500 and
    speak ESP-in-UDP (RFC 3948), which the guest kernel decapsulates itself
    (``espinudp`` SAs towards the NAT's rewritten port)."""
    topo = micro_vm.topology
    nat_addr = "198.51.100.254"
    conn = Connection.named("ikev2-psk-gcm")
    before = micro_vm.xfrm_stats()
    ss = vm_peers.strongswan(conn)
    aio = vm_peers.aioipsec(conn)
    aio.initiate(timeout=30)
    ss_child = ss.wait_established(20)
    aio_child = aio.wait_established(20)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    assert aio_child.raw["encap"] is True and ss_child.raw.get("encap") == "yes"
    (aio_sa,) = aio.list_sas()
    assert aio_sa.raw["nat_local"] is True and aio_sa.raw["remote_addr"].endswith("[4500]")

    assert ping(topo, "left", count=PINGS) == (PINGS, PINGS)
    assert micro_vm.ping(topo.left.inner4, source=topo.right.inner4, count=PINGS) == (PINGS, PINGS)

    states = {s.spi: s for s in micro_vm.xfrm_state() if s.proto == "esp"}
    sa_in, sa_out = states[ss_child.spi_in], states[ss_child.spi_out]
    assert (sa_in.src, sa_out.dst) == (nat_addr, nat_addr)
    for sa in (sa_in, sa_out):
        assert sa.encap is not None and sa.encap.startswith("espinudp"), sa.encap
    # the guest sends to the NAT's rewritten source port, not to 4500
    port = int(sa_out.encap.split("dport ")[1].split()[0])  # type: ignore[union-attr]
    assert 40000 <= port <= 49999, sa_out.encap
    aio_child = aio.wait_established(5)
    assert aio_child.packets_out == sa_in.packets >= 2 * PINGS
    assert aio_child.packets_in == sa_out.packets >= 2 * PINGS
    assert_no_kernel_errors(micro_vm, before)
