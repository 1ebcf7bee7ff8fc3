"""``keyingtries`` against a charon that is not running yet: the aioipsec
daemon (``start_action = start``, ``keyingtries = 0``, a short retransmit
schedule) starts first and keeps trying; charon starts a few seconds later;
the tunnel comes up and pings pass both ways.  IKEv2 and IKEv1 Main Mode."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from .netns import Topology
from .strongswan import Connection
from .test_ikev2_strongswan import ping_both_ways

pytestmark = pytest.mark.interop

FAST_RETRIES = {"keyingtries": 0, "retransmit_timeout": "0.5s", "retransmit_base": 1.0, "retransmit_tries": 1}
"""An attempt: IKE_SA_INIT (MM1), one retransmit after 0.5 s, given up 0.5 s later."""


@pytest.mark.parametrize("profile", ["ikev2-psk-gcm", "ikev1-main-psk-aes128-sha1"])
def test_tunnel_comes_up_when_charon_starts_later(aioipsec, strongswan, direct_topology: Topology,
                                                  profile: str) -> None:
    topo = direct_topology
    conn = Connection.named(profile)
    peer = re.escape(topo.right.outer4)
    aio = aioipsec(topo, "left", dataclasses.replace(conn, start_action="start"), extra={"ike": FAST_RETRIES})
    aio.wait_log(rf"ih: peer {peer} not responding, trying again: attempt 3 \(keyingtries = 0: until established\)",
                 timeout=15)
    rows = [sa for sa in aio.status()["ike_sas"] if sa["state"] != "CLOSED"]
    assert rows and rows[0]["attempt"] >= 3 and rows[0]["keyingtries"] == 0, rows
    assert "connecting: attempt" in aio.cli("status")
    time.sleep(2.0)  # charon starts a few seconds after the gateway
    ss = strongswan(topo, "right", conn)
    ss_child = ss.wait_established(30)
    aio_child = aio.wait_established(30)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    ping_both_ways(topo, "left")
    # established: the initiation is over; status no longer shows an attempt
    [row] = [sa for sa in aio.status()["ike_sas"] if sa["state"] == "ESTABLISHED"]
    assert row["attempt"] is None and row["keyingtries"] is None
    assert re.search(rf"ih: IKE SA with {peer} established on attempt \d+ \(keyingtries = 0", aio.logs())
    assert " ERROR " not in aio.logs() and "Traceback" not in aio.logs()
