"""Virtual IPs (IKEv2 Configuration Payload) between aioipsec and strongSwan, in
network namespaces: a road warrior with ``vips = 0.0.0.0`` and a gateway with an
address pool (``pools { rw { addrs = 10.3.0.0/28 } }``), each product in each role.

The client's virtual IP (10.3.0.1, the pool's first address) must be reported by
both ends, be the client's Child SA local selector and the gateway's remote one,
sit on the client's TUN device, and carry a ping to the gateway's inner address.
"""

from __future__ import annotations

import re

import pytest

from .aioipsec_peer import TUN_NAME
from .netns import Topology
from .strongswan import Connection
from .test_ikev2_strongswan import establish, start_pair

pytestmark = pytest.mark.interop

POOL = {"rw": {"addrs": "10.3.0.0/28", "dns": "10.3.0.53"}}
VIP = "10.3.0.1"
# the harness's charons do not install virtual IPs (install_virtual_ip = no); a client must
VIP_CHARON = {"install_virtual_ip": "yes"}


def ping_from_vip(topo: Topology, src: str, count: int = 3) -> tuple[int, int]:
    me, peer = topo.side(src), topo.other(src)
    proc = me.ns.run(["ping", "-4", "-c", str(count), "-i", "0.2", "-W", "3", "-I", VIP, peer.inner4],
                     timeout=count + 8, check=False)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    assert m is not None, proc.stdout + proc.stderr
    return int(m.group(1)), int(m.group(2))


def test_strongswan_client_gets_a_virtual_ip_from_aioipsec(aioipsec, strongswan,
                                                            direct_topology: Topology) -> None:
    topo = direct_topology
    client = Connection.named("ikev2-psk-gcm", local_ts="dynamic", ike_options={"vips": "0.0.0.0"})
    # no dns: this charon has no handler for it (no resolve plugin) and would log a failure
    gateway = Connection.named("ikev2-psk-gcm", remote_ts="dynamic", ike_options={"pools": "rw"},
                               pools={"rw": {"addrs": "10.3.0.0/28"}})
    ss = strongswan(topo, "left", client, charon_options=VIP_CHARON)
    aio = aioipsec(topo, "right", gateway)
    aio_child, ss_child = establish(aio, ss, "strongswan")
    # charon installed the address it was given, and its child is narrowed to it
    ss.wait_log(rf"installing new virtual IP {re.escape(VIP)}", timeout=5)
    assert ss_child.raw["local-ts"] == [f"{VIP}/32"], ss_child.raw
    assert aio_child.raw["remote_ts"] == [f"{VIP}/32"]
    assert aio_child.raw["local_ts"] == [topo.right.inner_net4]
    assert re.search(rf"assigned virtual IP {re.escape(VIP)} from pool rw to "
                     rf"{re.escape(topo.left.outer4)}\[left\.interop\.example\]", aio.logs())
    assert f"remote_vips=('{VIP}',)" in aio.logs()
    assert re.search(r"parsed IKE_AUTH response 1 \[ IDr AUTH CPRP\(ADDR\) SA TSi TSr \]", ss.logs())
    sent, received = ping_from_vip(topo, "left")
    assert (sent, received) == (3, 3)
    # the lease goes back to the pool with the IKE SA; a reconnect gets it again
    ss.terminate()
    aio.wait_gone(timeout=5)
    aio.wait_log(rf"lease {re.escape(VIP)} of left\.interop\.example in pool rw released", timeout=5)
    ss.initiate(timeout=15)
    ss.wait_established(15)
    aio.wait_established(15)
    assert aio.logs().count(f"assigned virtual IP {VIP} from pool rw") == 2


def test_aioipsec_client_gets_a_virtual_ip_from_strongswan(aioipsec, strongswan,
                                                            direct_topology: Topology) -> None:
    topo = direct_topology
    client = Connection.named("ikev2-psk-gcm", local_ts="dynamic", ike_options={"vips": "0.0.0.0"})
    gateway = Connection.named("ikev2-psk-gcm", remote_ts="dynamic", ike_options={"pools": "rw"}, pools=POOL)
    aio, ss = start_pair(aioipsec, strongswan, topo, client, aio_side="left", aio_conn=client, ss_conn=gateway)
    aio_child, ss_child = establish(aio, ss, "aioipsec")
    ss.wait_log(rf"assigning virtual IP {re.escape(VIP)} to peer 'left\.interop\.example'", timeout=5)
    assert aio_child.raw["local_ts"] == [f"{VIP}/32"]
    assert ss_child.raw["remote-ts"] == [f"{VIP}/32"], ss_child.raw
    assert f"local_vips=('{VIP}',)" in aio.logs() and "dns=('10.3.0.53',)" in aio.logs()
    # the daemon put the address on its TUN device
    addrs = topo.left.ns.run(["ip", "-4", "addr", "show", "dev", TUN_NAME], timeout=5).stdout
    assert f"inet {VIP}/32" in addrs, addrs
    sent, received = ping_from_vip(topo, "left")
    assert (sent, received) == (3, 3)
    aio.stop()
    ss.wait_log(r"received DELETE for IKE_SA ih\[\d+\]", timeout=5)
    ss.wait_log(rf"lease {re.escape(VIP)} by 'left\.interop\.example' went offline", timeout=5)


def test_aioipsec_client_fails_cleanly_when_strongswan_has_no_pool(aioipsec, strongswan,
                                                                    direct_topology: Topology) -> None:
    topo = direct_topology
    client = Connection.named("ikev2-psk-gcm", local_ts="dynamic", ike_options={"vips": "0.0.0.0"})
    plain = Connection.named("ikev2-psk-gcm", remote_ts="dynamic")
    aio, ss = start_pair(aioipsec, strongswan, topo, client, aio_side="left", aio_conn=client, ss_conn=plain)
    with pytest.raises(Exception):
        aio.initiate(timeout=10)
    aio.wait_log(rf"FAILED_CP_REQUIRED IKE_AUTH peer={re.escape(topo.right.outer4)}", timeout=5)
    ss.wait_log(r"received DELETE for IKE_SA ih\[\d+\]", timeout=5)
    assert aio.installed_children() == [] and ss.list_sas() == []
