"""IKEv2 reauthentication against charon (network namespaces): the aioipsec
daemon initiates with ``reauth_time = 4s``; at that time it establishes a new
IKE SA (IKE_SA_INIT + IKE_AUTH) with the same Child SA and deletes the old one
(make-before-break).  charon's ``list_sas`` then shows one IKE SA with new
SPIs carrying the same child, and pings running all through it all pass."""

from __future__ import annotations

import time

import pytest

from .netns import Topology
from .strongswan import Connection
from .test_harness_smoke import ping
from .test_ikev2_strongswan import establish

pytestmark = pytest.mark.interop


def test_reauth_time_against_charon_keeps_pings_passing(aioipsec, strongswan, direct_topology: Topology) -> None:
    topo = direct_topology
    conn = Connection.named("ikev2-psk-gcm")
    ss = strongswan(topo, "right", conn)
    aio = aioipsec(topo, "left", conn, extra={"ike": {"reauth_time": "4s", "rand_time": "0s"}})
    establish(aio, ss, "aioipsec")
    (ike0,) = ss.list_sas()
    (child0,) = ike0.children
    # 30 pings 0.2 s apart from the aioipsec side: about 6 s, across the reauthentication at 4 s
    sent, received = ping(topo, "left", count=30)
    assert (sent, received) == (30, 30), f"pings lost across the reauthentication: {received}/{sent}"
    deadline = time.monotonic() + 8
    while True:
        sas = ss.list_sas()
        if len(sas) == 1 and (sas[0].spi_i, sas[0].spi_r) != (ike0.spi_i, ike0.spi_r) and sas[0].children:
            break
        assert time.monotonic() < deadline, f"charon never listed one new IKE SA: {sas}"
        time.sleep(0.1)
    (ike1,) = sas
    assert ike1.state == "ESTABLISHED" and not ike1.initiator, "charon answered a new IKE_SA_INIT"
    (child1,) = ike1.children
    assert child1.name == child0.name and child1.state == "INSTALLED"
    assert (child1.spi_in, child1.spi_out) != (child0.spi_in, child0.spi_out)
    logs = aio.logs()
    assert "reauthenticating IKE SA" in logs and "reauthenticated: IKE SA" in logs, logs[-3000:]
    sent, received = ping(topo, "right", count=3)
    assert (sent, received) == (3, 3)
