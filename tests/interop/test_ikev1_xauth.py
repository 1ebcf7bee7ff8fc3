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

from .netns import Topology
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
