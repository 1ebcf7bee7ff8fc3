"""IKEv2 reauthentication break-before-make against charon (network
namespaces): the aioipsec daemon, reloaded with ``[daemon] make_before_break =
false``, runs ``aioipsec rekey ih --reauth``: it deletes its IKE SA first
(charon logs the DELETE it received and that the IKE SA is deleted) and only
then initiates a new one (charon's next ``IKE_SA_INIT``), which comes up with
new SPIs and the same child; pings pass again afterwards."""

from __future__ import annotations

import time

import pytest

from .netns import Topology
from .strongswan import Connection
from .test_harness_smoke import ping
from .test_ikev2_strongswan import establish

pytestmark = pytest.mark.interop


def test_rekey_reauth_break_before_make_against_charon(aioipsec, strongswan, direct_topology: Topology) -> None:
    topo = direct_topology
    conn = Connection.named("ikev2-psk-gcm")
    ss = strongswan(topo, "right", conn)
    aio = aioipsec(topo, "left", conn)
    establish(aio, ss, "aioipsec")
    (ike0,) = ss.list_sas()
    (child0,) = ike0.children
    # the running daemon picks the option up on reload (it is the endpoint's GlobalConfig)
    with open(aio.config_path, "a") as f:
        f.write("\n[daemon]\nmake_before_break = false\n")
    aio.cli("reload")
    ss_mark = len(ss.logs())
    out = aio.cli("rekey", "ih", "--reauth", timeout=30)
    assert "IKE SA reauthenticated" in out, out
    deadline = time.monotonic() + 10
    while True:
        sas = ss.list_sas()
        if len(sas) == 1 and (sas[0].spi_i, sas[0].spi_r) != (ike0.spi_i, ike0.spi_r) and sas[0].children:
            break
        assert time.monotonic() < deadline, f"charon never listed one new IKE SA: {sas}"
        time.sleep(0.1)
    (ike1,) = sas
    assert ike1.state == "ESTABLISHED" and not ike1.initiator
    (child1,) = ike1.children
    assert child1.name == child0.name and child1.state == "INSTALLED"
    assert (child1.spi_in, child1.spi_out) != (child0.spi_in, child0.spi_out)
    # charon saw the old IKE SA's DELETE (and deleted it) before the new IKE_SA_INIT arrived
    logs = ss.logs()[ss_mark:]
    deleted_at = logs.find("received DELETE for IKE_SA")
    init_at = logs.find("IKE_SA_INIT request")  # charon: "parsed IKE_SA_INIT request 0 [ ... ]"
    assert deleted_at != -1 and init_at != -1, logs[-3000:]
    assert deleted_at < init_at, logs[-3000:]
    alogs = aio.logs()
    assert "break-before-make" in alogs and "reauthenticated: IKE SA" in alogs, alogs[-3000:]
    sent, received = ping(topo, "left", count=3)
    assert (sent, received) == (3, 3)
