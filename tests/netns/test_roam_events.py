"""``roam_events`` with a real kernel: an aioipsec client (left) roams by
itself when the address it uses disappears, and an aioipsec gateway (right)
follows by MOBIKE.

The client namespace has two addresses on the gateway's subnet: 192.0.2.1
(primary, in use) and 192.0.2.3 (secondary; ``promote_secondaries`` so that
deleting the primary promotes it instead of taking it along).  The test
deletes 192.0.2.1 with ``ip addr del`` and sends no ``roam`` command: the
daemon's rtnetlink watcher sees the address go, decides after its 1 s burst
window that the kernel now routes to the gateway from 192.0.2.3, rebinds
there and sends UPDATE_SA_ADDRESSES.  The gateway keeps the IKE SA (same
SPIs) with the new client address, and pings through the tunnel resume
within 15 s.  The addresses and the sysctl are restored in ``finally``.
"""

from __future__ import annotations

import re
import time

from interop.netns import NetnsError, Topology
from interop.strongswan import Connection

from .traffic import ping

PROFILE = "ikev2-psk-gcm"
SECOND = "192.0.2.3"  # the client's second address (documentation range)
RESUME_WITHIN = 15.0


def test_client_follows_its_address_change_without_a_roam_command(direct: Topology, aio) -> None:
    topo = direct
    gw = aio(topo, "right", Connection.named(PROFILE))
    client = aio(topo, "left", Connection.named(PROFILE))
    client.wait_log(r"following address changes at 192\.0\.2\.1 \(roam_events\)", timeout=5)
    assert "following address changes" in gw.logs()  # bound to its local_addrs, so it watches too
    client.initiate()
    client.wait_log(r"MOBIKE enabled 192\.0\.2\.2\[4500\]", timeout=5)
    assert ping(topo.left, topo.right.inner4) == (3, 3)
    [before] = gw.list_sas()
    old = topo.left.outer4
    assert before.raw["remote_addr"] == f"{old}[4500]", before.raw
    ns = topo.left.ns
    promote = ns.run(["sysctl", "-n", "net.ipv4.conf.eth0.promote_secondaries"]).stdout.strip()

    # the topology is shared by this module: whatever happens, the client gets
    # its address (and the sysctl) back
    try:
        ns.sysctl("net.ipv4.conf.eth0.promote_secondaries=1")
        ns.ip("addr", "add", f"{SECOND}/24", "dev", "eth0")
        time.sleep(1.5)  # its own burst: a new address alone moves nothing (192.0.2.1 is still the source)
        assert client.list_sas()[0].raw["local_addr"] == f"{old}[4500]"
        mark = time.monotonic()
        ns.ip("addr", "del", f"{old}/24", "dev", "eth0")

        client.wait_log(rf"roaming to {re.escape(SECOND)} by itself \(roam_events\): {re.escape(old)} is no longer "
                        rf"on any interface that is up; the kernel routes to 192\.0\.2\.2 from {re.escape(SECOND)}",
                        timeout=RESUME_WITHIN)
        # the gateway got UPDATE_SA_ADDRESSES from the new address and moved the IKE SA
        gw.wait_log(rf"peer {re.escape(old)}\[4500\] now at {re.escape(SECOND)}\[4500\] \(MOBIKE update",
                    timeout=RESUME_WITHIN)
        while ping(topo.left, topo.right.inner4, count=2, wait=1.0) != (2, 2):
            assert time.monotonic() - mark < RESUME_WITHIN, "no traffic over the new address"
        resumed = time.monotonic() - mark
        assert resumed < RESUME_WITHIN
        assert ping(topo.right, topo.left.inner4) == (3, 3)

        [after] = gw.list_sas()
        assert (after.spi_i, after.spi_r) == (before.spi_i, before.spi_r), "a new IKE SA was made"
        assert after.raw["remote_addr"] == f"{SECOND}[4500]", after.raw
        [client_sa] = client.list_sas()
        assert (client_sa.spi_i, client_sa.spi_r) == (before.spi_i, before.spi_r)
        assert client_sa.raw["local_addr"] == f"{SECOND}[4500]", client_sa.raw
    finally:
        try:
            ns.ip("addr", "del", f"{SECOND}/24", "dev", "eth0")
        except NetnsError:
            pass  # the test failed before adding it
        ns.ip("addr", "replace", f"{old}/24", "dev", "eth0")
        ns.sysctl(f"net.ipv4.conf.eth0.promote_secondaries={promote or 0}")
