"""aioipsec against Libreswan (pluto 4.10, Debian 12's package) in the micro-VM.

Libreswan's data plane is the kernel's XFRM only, and this machine's kernel has no
ESP, so pluto runs in the QEMU micro-VM of :mod:`.vm`; aioipsec runs on the left as
``python -m aioipsec daemon`` (TUN device, plain ESP on the ``rawesp`` raw socket).
Each tunnel case brings the tunnel up from one end, pings between the inner addresses
from both ends, and checks that the SPIs cross-match, that the guest kernel holds the
two SAs as plain ESP with the negotiated algorithms, and that pluto's byte counters and
the kernel's packet counters are aioipsec's.  The transport-mode case exchanges UDP
datagrams between aioipsec's datagram API and an echo server in the guest.

All cases need ``AIOIPSEC_VM_TESTS=1`` (see :mod:`.vm`).
"""

from __future__ import annotations

import time

import pytest

from .libreswan import LibreswanPeer
from .strongswan import Connection
from .test_harness_smoke import ping
from .test_kernel_xfrm import PSK, TRANSPORT, check_transport_sas, transport_exchange
from .vm import MicroVm, VmPeers

pytestmark = [pytest.mark.interop, pytest.mark.vm, pytest.mark.timeout(240)]

PINGS = 3
# profile -> what the guest kernel shows for its ESP algorithm(s)
CASES = {
    "ikev2-psk-gcm": ("rfc4106(gcm(aes))",),
    "ikev1-main-psk-aes256-sha256-pfs": ("cbc(aes)", "hmac(sha256)"),
}


@pytest.mark.parametrize("initiator", ["aioipsec", "libreswan"])
@pytest.mark.parametrize("profile", list(CASES))
def test_libreswan_tunnel(vm_peers: VmPeers, micro_vm: MicroVm, profile: str,
                          initiator: str) -> None:
    topo = micro_vm.topology
    conn = Connection.named(profile)
    ls: LibreswanPeer = vm_peers.libreswan(conn)
    aio = vm_peers.aioipsec(conn)
    if initiator == "aioipsec":
        aio.initiate(timeout=30)
    else:
        ls.initiate(timeout=30)
    # IKEv1: the responder installs its SAs only after Quick Mode message 3: wait on both
    aio_child = aio.wait_established(20)
    ls.wait_established(20)
    (aio_sa,) = aio.list_sas()
    assert aio_sa.version == conn.profile.version
    assert aio_sa.initiator is (initiator == "aioipsec")
    assert aio_child.raw["encap"] is False and aio_child.raw["mode"] == "tunnel"

    states = {s.spi: s for s in micro_vm.xfrm_state() if s.proto == "esp"}
    assert aio_child.spi_out in states and aio_child.spi_in in states, (aio_child, states)
    sa_in, sa_out = states[aio_child.spi_out], states[aio_child.spi_in]   # the guest's view
    left, right = topo.left.outer4, topo.right.outer4
    assert (sa_in.src, sa_in.dst, sa_out.src, sa_out.dst) == (left, right, right, left)
    for sa in (sa_in, sa_out):
        assert sa.encap is None and sa.mode == "tunnel"
        for alg in CASES[profile]:
            assert any(alg in a for a in sa.algorithms), (alg, sa.algorithms)

    assert ping(topo, "left", count=PINGS) == (PINGS, PINGS)
    assert micro_vm.ping(topo.left.inner4, source=topo.right.inner4, count=PINGS) == (PINGS, PINGS)

    aio_child = aio.wait_established(5)
    states = {s.spi: s for s in micro_vm.xfrm_state() if s.proto == "esp"}
    sa_in, sa_out = states[aio_child.spi_out], states[aio_child.spi_in]
    assert aio_child.packets_out == sa_in.packets >= 2 * PINGS
    assert aio_child.packets_in == sa_out.packets >= 2 * PINGS
    traffic = ls.wait_established(5)
    assert (traffic.in_bytes, traffic.out_bytes) == (aio_child.bytes_out, aio_child.bytes_in)
    assert aio_child.raw["integrity_failed"] == 0 and aio_child.raw["replay_failed"] == 0

    # aioipsec deletes the IKE SA: pluto removes the kernel SAs
    aio.terminate()
    deadline = time.monotonic() + 15
    while any(s.spi in (sa_in.spi, sa_out.spi) for s in micro_vm.xfrm_state()):
        assert time.monotonic() < deadline, micro_vm.xfrm_state()
        time.sleep(0.3)


def test_libreswan_transport_mode(vm_peers: VmPeers, micro_vm: MicroVm) -> None:
    """IKEv2 PSK, AES-GCM-16 transport mode (pluto ``type=transport``): UDP datagrams
    from aioipsec's datagram API to an echo server in the guest and back, plain ESP."""
    ls = vm_peers.libreswan(Connection(TRANSPORT, psk=PSK))
    with transport_exchange(micro_vm) as result:
        assert ls.wait_established(5).in_bytes > 0
        # the guest-side SPIs are aioipsec's, crossed
        spi_in, spi_out = result["spi_in"], result["spi_out"]
        assert isinstance(spi_in, int) and isinstance(spi_out, int)
        check_transport_sas(micro_vm, spi_out, spi_in)
