"""The operator's ``rekey`` against charon (IKEv2, network namespaces): after
``aioipsec rekey ih --child ih`` and ``rekey ih --ike`` charon's ``swanctl
--list-sas`` shows the SPIs our command printed, and traffic flows."""

from __future__ import annotations

import re
import time

import pytest

from .netns import Topology
from .strongswan import Connection
from .test_ikev2_strongswan import establish, ping_both_ways, start_pair

pytestmark = pytest.mark.interop


def test_operator_rekey_child_then_ike(aioipsec, strongswan, direct_topology: Topology) -> None:
    topo = direct_topology
    aio, ss = start_pair(aioipsec, strongswan, topo, Connection.named("ikev2-psk-gcm"))
    old, _ = establish(aio, ss, "aioipsec")
    ping_both_ways(topo, "left", count=1)

    out = aio.cli("rekey", "ih", "--child", "ih")
    m = re.fullmatch(rf"ih: CHILD_SA ih rekeyed, SPIs 0x{old.spi_in:08x}_i 0x{old.spi_out:08x}_o -> "
                     r"0x([0-9a-f]{8})_i 0x([0-9a-f]{8})_o", out.strip())
    assert m, out
    new_in, new_out = (int(x, 16) for x in m.groups())
    deadline = time.monotonic() + 5
    while True:
        children = [c for sa in ss.list_sas() for c in sa.children if c.state == "INSTALLED"]
        if [(c.spi_in, c.spi_out) for c in children] == [(new_out, new_in)]:
            break
        assert time.monotonic() < deadline, f"charon never listed only the new Child SA: {children}"
        time.sleep(0.1)
    ping_both_ways(topo, "left", count=2)

    (ike0,) = ss.list_sas()
    out = aio.cli("rekey", "ih", "--ike")
    m = re.fullmatch(rf"ih: IKE SA rekeyed, SPIs {ike0.spi_i:016x}_i {ike0.spi_r:016x}_r -> ([0-9a-f]{{16}})_i "
                     r"([0-9a-f]{16})_r, 1 CHILD_SA kept", out.strip())
    assert m, out
    spi_i, spi_r = (int(x, 16) for x in m.groups())
    deadline = time.monotonic() + 5
    while True:
        sas = [(sa.spi_i, sa.spi_r, len(sa.children)) for sa in ss.list_sas()]
        if sas == [(spi_i, spi_r, 1)]:
            break
        assert time.monotonic() < deadline, f"charon never listed only the new IKE SA: {sas}"
        time.sleep(0.1)
    ping_both_ways(topo, "left", count=2)
