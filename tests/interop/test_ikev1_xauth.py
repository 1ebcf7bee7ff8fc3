"""IKEv1 XAUTH + Mode Config: a charon road warrior (``version = 1``, ``local { auth =
psk }``, ``local-2 { auth = xauth; xauth_id = alice }``, ``vips = 0.0.0.0``) against the
aioipsec daemon as gateway (``remote-2 = { auth = "xauth" }``, a pool, the ``xauth``
secrets), in network namespaces.

Good password: charon gets 10.3.0.1 from our pool, installs it, its Quick Mode uses it
as the local selector and a ping from it crosses the tunnel.  Wrong password: our SET
carries XAUTH_STATUS 0, charon gives up, and our log names the peer and the user."""

from __future__ import annotations

import re
import time

import pytest

from .aioipsec_peer import TUN_NAME
from .netns import Topology
from .peer import PeerError
from .strongswan import XAUTH_PLUGIN, Connection, StrongSwanError
from .test_ikev2_virtual_ips import VIP, VIP_CHARON, ping_from_vip

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not XAUTH_PLUGIN.exists(),
                       reason=f"{XAUTH_PLUGIN} missing (Debian package libcharon-extauth-plugins)"),
]

PROFILE = "ikev1-main-psk-aes128-sha1"
POOL = {"rw": {"addrs": "10.3.0.0/28"}}


def client(password: str) -> Connection:
    return Connection.named(PROFILE, local_ts="dynamic", ike_options={"vips": "0.0.0.0"},
                            local2={"auth": "xauth", "xauth_id": "alice"},
                            xauth_secrets={"alice": password})


def gateway() -> Connection:
    return Connection.named(PROFILE, remote_ts="dynamic", ike_options={"pools": "rw"}, pools=POOL,
                            remote2={"auth": "xauth"},
                            xauth_secrets={"alice": "alice-xauth-pw", "bob": "bob-xauth-pw"})


def test_strongswan_xauth_client_gets_a_virtual_ip_and_pings(aioipsec, strongswan,
                                                             direct_topology: Topology) -> None:
    topo = direct_topology
    ss = strongswan(topo, "left", client("alice-xauth-pw"), charon_options=VIP_CHARON)
    aio = aioipsec(topo, "right", gateway())
    ss.initiate(timeout=20)
    ss_child = ss.wait_established(20)
    aio_child = aio.wait_established(20)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    logs = ss.logs()
    assert re.search(r"XAuth authentication of 'alice' \(myself\) successful", logs), logs[-3000:]
    ss.wait_log(rf"installing new virtual IP {re.escape(VIP)}", timeout=5)
    assert ss_child.raw["local-ts"] == [f"{VIP}/32"], ss_child.raw
    assert aio_child.raw["remote_ts"] == [f"{VIP}/32"]
    assert aio_child.raw["local_ts"] == [topo.right.inner_net4]
    alog = aio.logs()
    assert "XAUTH user 'alice' authenticated with" in alog
    assert re.search(rf"assigned virtual IP {re.escape(VIP)} from pool rw to {re.escape(topo.left.outer4)}", alog)
    (aio_ike,) = aio.list_sas()
    assert aio_ike.raw["remote_vips"] == [VIP]
    sent, received = ping_from_vip(topo, "left")
    assert (sent, received) == (3, 3)
    for bad in ("invalid HASH", "message parsing failed", "decryption failed", "retransmit"):
        assert bad not in ss.logs(), bad
    # the lease goes offline with the SA (kept for alice)
    ss.terminate()
    aio.wait_gone(timeout=10)
    aio.wait_log(rf"lease {re.escape(VIP)} of alice in pool rw released", timeout=5)
    assert "alice-xauth-pw" not in aio.logs()


def test_wrong_xauth_password_fails_with_the_peer_and_user_in_our_log(aioipsec, strongswan,
                                                                       direct_topology: Topology) -> None:
    topo = direct_topology
    ss = strongswan(topo, "left", client("not-alices-password"), charon_options=VIP_CHARON)
    aio = aioipsec(topo, "right", gateway())
    with pytest.raises(StrongSwanError):
        ss.initiate(timeout=15)
    aio.wait_log(r"XAUTH authentication failed with " + re.escape(topo.left.outer4) + r"\S*: user 'alice'",
                 timeout=10)
    assert "AuthFailed(" in aio.logs() and "not-alices-password" not in aio.logs()
    ss.wait_log(r"XAuth authentication of 'alice' \(myself\) failed", timeout=10)
    deadline = time.monotonic() + 10
    while (aio.list_sas() or ss.list_sas()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert aio.list_sas() == [] and ss.list_sas() == []
    assert aio.installed_children() == []


# ---------------------------------------------------------------- the aioipsec daemon as XAUTH client

def charon_gateway(users: dict[str, str]) -> Connection:
    return Connection.named(PROFILE, remote_ts="dynamic", ike_options={"pools": "rw"}, pools=POOL,
                            remote2={"auth": "xauth"}, xauth_secrets=users)


def test_aioipsec_xauth_client_gets_a_virtual_ip_from_charon_and_pings(aioipsec, strongswan,
                                                                      direct_topology: Topology) -> None:
    topo = direct_topology
    ss = strongswan(topo, "right", charon_gateway({"alice": "alice-xauth-pw"}))
    aio = aioipsec(topo, "left", client("alice-xauth-pw"))
    aio.initiate(timeout=20)
    aio_child = aio.wait_established(20)
    ss_child = ss.wait_established(20)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    slog = ss.logs()
    assert re.search(r"XAuth authentication of 'alice' successful", slog), slog[-3000:]
    ss.wait_log(rf"assigning virtual IP {re.escape(VIP)} to peer 'alice'", timeout=5)
    # our Quick Mode is narrowed to the address charon's pool gave us
    assert aio_child.raw["local_ts"] == [f"{VIP}/32"]
    assert ss_child.raw["remote-ts"] == [f"{VIP}/32"], ss_child.raw
    (aio_ike,) = aio.list_sas()
    assert aio_ike.raw["local_vips"] == [VIP]
    alog = aio.logs()
    assert "XAUTH user 'alice' authenticated with" in alog
    assert re.search(rf"Mode Config: virtual IP {re.escape(VIP)} assigned by {re.escape(topo.right.outer4)}", alog)
    # the daemon put the address on its TUN device, and traffic from it crosses the tunnel
    addrs = topo.left.ns.run(["ip", "-4", "addr", "show", "dev", TUN_NAME], timeout=5).stdout
    assert f"inet {VIP}/32" in addrs, addrs
    sent, received = ping_from_vip(topo, "left")
    assert (sent, received) == (3, 3)
    assert "alice-xauth-pw" not in aio.logs()
    aio.stop()
    ss.wait_log(r"received DELETE for IKE_SA ih\[\d+\]", timeout=5)
    ss.wait_log(rf"lease {re.escape(VIP)} by 'alice' went offline", timeout=5)


def test_aioipsec_xauth_client_with_a_wrong_password_fails_naming_the_peer(aioipsec, strongswan,
                                                                           direct_topology: Topology) -> None:
    topo = direct_topology
    ss = strongswan(topo, "right", charon_gateway({"alice": "alice-xauth-pw"}))
    aio = aioipsec(topo, "left", client("not-alices-password"))
    with pytest.raises(PeerError, match=r"initiate ih/ih failed: .*XAUTH"):
        aio.initiate(timeout=15)
    aio.wait_log(r"XAUTH authentication failed with " + re.escape(topo.right.outer4) + r"\S*: user 'alice'",
                 timeout=10)
    alog = aio.logs()
    assert "AuthFailed(" in alog and "not-alices-password" not in alog
    ss.wait_log(r"XAuth authentication of 'alice' failed", timeout=10)
    deadline = time.monotonic() + 10
    while (aio.list_sas() or ss.list_sas()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert aio.list_sas() == [] and ss.list_sas() == []
    assert aio.installed_children() == []
    addrs = topo.left.ns.run(["ip", "-4", "addr", "show", "dev", TUN_NAME], timeout=5).stdout
    assert VIP not in addrs, addrs
