"""A charon road warrior that loses its state against the aioipsec daemon
gateway (IKEv2, virtual IP from a pool, the default ``unique = "no"``): charon
is killed by PID with SIGKILL (no DELETE reaches the gateway) and started
again; it reconnects with INITIAL_CONTACT, and the gateway replaces the stale
IKE SA and Child SA at once: its status shows one IKE SA, the new SPIs, the
same virtual IP, and pings from it pass right away."""

from __future__ import annotations

import os
import re
import signal

import pytest

from .netns import Topology
from .strongswan import Connection
from .test_ikev2_strongswan import establish
from .test_ikev2_virtual_ips import VIP, VIP_CHARON, ping_from_vip

pytestmark = pytest.mark.interop


def test_charon_client_killed_and_restarted_replaces_its_ike_sa(aioipsec, strongswan,
                                                                 direct_topology: Topology) -> None:
    topo = direct_topology
    client = Connection.named("ikev2-psk-gcm", local_ts="dynamic", ike_options={"vips": "0.0.0.0"})
    gateway = Connection.named("ikev2-psk-gcm", remote_ts="dynamic", ike_options={"pools": "rw"},
                               pools={"rw": {"addrs": "10.3.0.0/28"}})
    ss = strongswan(topo, "left", client, charon_options=VIP_CHARON)
    aio = aioipsec(topo, "right", gateway)
    establish(aio, ss, "strongswan")
    (old,) = aio.list_sas()
    assert ping_from_vip(topo, "left") == (3, 3)
    # the client's machine "crashes": SIGKILL by PID, no DELETE sent
    assert ss.process is not None and ss.pid is not None
    os.kill(ss.pid, signal.SIGKILL)
    ss.process.popen.wait(timeout=10)
    assert not ss.alive()
    ss.start()
    ss.initiate(timeout=15)
    ss.wait_established(15)
    assert re.search(r"generating IKE_AUTH request 1 \[ IDi N\(INIT_CONTACT\)", ss.logs()), ss.logs()[-2000:]
    aio.wait_log(rf"IKE_SA ih {old.spi_i:016x}_i {old.spi_r:016x}_r with \S+ and its 1 Child SA\(s\) replaced: "
                 r"peer 'left\.interop\.example' established IKE SA .* \(INITIAL_CONTACT\)", timeout=5)
    aio.wait_log(r"lease 10\.3\.0\.1 of left\.interop\.example in pool rw released \(still online: another IKE SA "
                 r"of that identity holds it\)", timeout=5)
    # one IKE SA on the gateway: the new one, with one Child SA and the same virtual IP
    (new,) = aio.list_sas()
    assert (new.spi_i, new.spi_r) != (old.spi_i, old.spi_r)
    (ss_sa,) = ss.list_sas()
    assert (new.spi_i, new.spi_r) == (ss_sa.spi_i, ss_sa.spi_r)
    assert len(new.children) == 1
    (st,) = aio.status()["ike_sas"]
    assert st["remote_vips"] == [VIP]
    # traffic flows right away (no wait for DPD or expiry of the stale SA)
    assert ping_from_vip(topo, "left") == (3, 3)
