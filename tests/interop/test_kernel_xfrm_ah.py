"""AH (RFC 4302) between aioipsec and the Linux kernel's XFRM AH: charon with
``kernel-netlink`` in the QEMU micro-VM of :mod:`.vm` (its AH SAs live in the
guest kernel), aioipsec on the left (``python -m aioipsec daemon``, TUN device,
whole IP packets on the raw protocol-51 socket of the ``rawesp`` plugin).

Both ends are configured from the ``ikev2-psk-gcm`` profile with the ESP
proposal replaced by ``ah_proposals = sha256`` (HMAC-SHA-256-128), no ESP.  The
guest kernel verifies every AH packet aioipsec sent (its ICV over the outer
IPv4 header included) and aioipsec every one the kernel sent: pings both
ways, SPIs cross-match, the guest holds two AH SAs whose packet counters are
aioipsec's, and no XFRM error counter grew.

Opt-in like the other VM cases: ``AIOIPSEC_VM_TESTS=1``.
"""

from __future__ import annotations

import re

import pytest

from .aioipsec_peer import AioipsecPeer
from .strongswan import Connection
from .test_harness_smoke import ping
from .test_kernel_xfrm import PINGS, XFRM_ERRORS
from .vm import VM_RETRANSMIT_TRIES, MicroVm, VmPeers, VmStrongSwanPeer

pytestmark = [pytest.mark.interop, pytest.mark.vm, pytest.mark.timeout(240)]


def ah_strongswan(peers: VmPeers, conn: Connection) -> VmStrongSwanPeer:
    peer = VmStrongSwanPeer(peers.vm)
    peers.started.append(peer)
    peer.configure(conn)
    path = peer.swanctl_dir / "swanctl.conf"
    text, n = re.subn(r"(?m)^(\s*)esp_proposals = .*$", r"\1ah_proposals = sha256", path.read_text())
    assert n == 1, text
    path.write_text(text)
    peer.start()
    return peer


def ah_aioipsec(peers: VmPeers, conn: Connection) -> AioipsecPeer:
    peer = AioipsecPeer(peers.topology, peers.topology.other(peers.vm.side.name).name)
    peers.started.append(peer)
    peer.configure(conn)
    text, n = re.subn(r"(?m)^esp_proposals = .*$", 'ah_proposals = ["sha256"]', peer.config_path.read_text())
    assert n == 1, text
    text = re.sub(r"(?m)^retransmit_tries = \d+$", f"retransmit_tries = {VM_RETRANSMIT_TRIES}", text)
    peer.config_path.write_text(text)
    peer.start()
    return peer


@pytest.mark.parametrize("initiator", ["aioipsec", "strongswan"])
def test_tunnel_ah(vm_peers: VmPeers, micro_vm: MicroVm, initiator: str) -> None:
    topo = micro_vm.topology
    conn = Connection.named("ikev2-psk-gcm")
    before = micro_vm.xfrm_stats()
    ss = ah_strongswan(vm_peers, conn)
    aio = ah_aioipsec(vm_peers, conn)
    if initiator == "aioipsec":
        aio.initiate(timeout=30)
    else:
        ss.initiate(timeout=30)
    ss_child = ss.wait_established(20)
    aio_child = aio.wait_established(20)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    assert aio_child.raw["protocol"] == "ah" and aio_child.raw["encap"] is False
    assert aio_child.raw["mode"] == "tunnel"

    assert ping(topo, "left", count=PINGS) == (PINGS, PINGS)
    assert micro_vm.ping(topo.left.inner4, source=topo.right.inner4, count=PINGS) == (PINGS, PINGS)

    states = {s.spi: s for s in micro_vm.xfrm_state()}
    assert ss_child.spi_in in states and ss_child.spi_out in states, micro_vm.xfrm_state()
    sa_in, sa_out = states[ss_child.spi_in], states[ss_child.spi_out]
    for sa in (sa_in, sa_out):
        assert sa.proto == "ah" and sa.mode == "tunnel" and sa.encap is None, sa.raw
        assert any("hmac(sha256)" in a for a in sa.algorithms), sa.algorithms
    assert (sa_in.src, sa_in.dst) == (topo.left.outer4, topo.right.outer4)
    aio_child = aio.wait_established(5)
    # every packet each end sent, the other verified and counted
    assert aio_child.packets_out == sa_in.packets >= 2 * PINGS
    assert aio_child.packets_in == sa_out.packets >= 2 * PINGS
    assert aio_child.raw["integrity_failed"] == 0 and aio_child.raw["replay_failed"] == 0
    after = micro_vm.xfrm_stats()
    grown = {k: after.get(k, 0) - before.get(k, 0) for k in XFRM_ERRORS if after.get(k, 0) != before.get(k, 0)}
    assert not grown, f"guest XFRM error counters grew: {grown}"
