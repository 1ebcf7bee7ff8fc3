"""IKEv2 Redirect (RFC 5685) against strongSwan 5.9.8: a charon gateway
(right, 192.0.2.2) redirects the aioipsec client (left) with ``swanctl
--redirect`` to a second charon gateway in a third namespace (gw2,
198.51.100.3, a veth from left's eth1 198.51.100.1); the client sets the
tunnel up there (REDIRECTED_FROM naming the first gateway), deletes the IKE
SA with the first one, and pings pass through the second.

The other way round, the aioipsec gateway's ``redirect`` command sends a
charon client (``follow_redirects`` is charon's default) to the second charon
gateway, and it deletes the IKE SA with us.

Each test builds its own topology (the third namespace rides in the
topology's ``nat`` slot, so its teardown removes it with the others)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .netns import Side, Topology, _new_namespace, _veth, create_topology
from .strongswan import Connection
from .test_harness_smoke import ping

pytestmark = pytest.mark.interop

GW2 = "198.51.100.3"
LEFT2 = "198.51.100.1"


@pytest.fixture
def redirect_topology(interop_run_dir: Path) -> Iterator[tuple[Topology, Topology]]:
    """(topology left <-> right, a view of it with gw2 as the right side)."""
    topo = create_topology("direct", run_dir=interop_run_dir)
    try:
        gw2 = _new_namespace(topo.left.ns.name.replace("left", "gw2"), interop_run_dir)
        topo.nat = gw2  # destroyed with the topology
        _veth(topo.left.ns, "eth1", gw2, "eth0")
        topo.left.ns.ip("addr", "add", f"{LEFT2}/24", "dev", "eth1")
        gw2.ip("addr", "add", f"{GW2}/24", "dev", "eth0")
        gw2.ip("route", "add", "192.0.2.0/24", "via", LEFT2)
        gw2.ip("addr", "add", f"{topo.right.inner4}/32", "dev", "lo")
        right = topo.right
        view = Topology(kind="direct", prefix=topo.prefix, run_dir=topo.run_dir, left=topo.left,
                        right=Side("right", gw2, GW2, None, right.inner4, right.inner_net4, right.inner6,
                                   right.inner_net6, right.fqdn))
        yield topo, view
    finally:
        topo.destroy()


def _ping_ok(topo: Topology, src: str, count: int = 3) -> bool:
    sent, received = ping(topo, src, count=count)
    return sent == count and received == count


def test_charon_gateway_redirects_the_aioipsec_client(aioipsec, strongswan, redirect_topology) -> None:
    topo, view = redirect_topology
    conn = Connection.named("ikev2-psk-gcm")
    gw1 = strongswan(topo, "right", conn)
    gw2 = strongswan(view, "right", conn)
    aio = aioipsec(topo, "left", conn)
    aio.initiate(timeout=15)
    gw1.wait_established(15)
    aio.wait_established(15)
    assert _ping_ok(topo, "left")
    gw1.swanctl("--redirect", "--ike", "ih", "--gateway", GW2)
    gw1.wait_log(r"redirecting peer to " + re.escape(GW2), timeout=10)
    aio.wait_log(rf"redirected to {re.escape(GW2)} by 192\.0\.2\.2\[right\.interop\.example\] \(INFORMATIONAL\)",
                 timeout=10)
    gw2.wait_established(15)
    gw2.wait_log(r"client got redirected from 192\.0\.2\.2", timeout=5)
    # the old IKE SA goes once the new Child SA is up
    deadline = time.monotonic() + 15
    while gw1.list_sas():
        assert time.monotonic() < deadline, f"the first gateway still has {gw1.list_sas()}"
        time.sleep(0.2)
    st = aio.status()
    [row] = st["ike_sas"]
    assert row["remote_addr"].startswith(GW2) and row["redirected_from"] == "192.0.2.2"
    deadline = time.monotonic() + 10
    while not _ping_ok(view, "left", count=2):
        assert time.monotonic() < deadline, "no traffic through the second gateway"
    assert _ping_ok(view, "right")


def test_aioipsec_gateway_redirects_a_charon_client(aioipsec, strongswan, redirect_topology) -> None:
    topo, view = redirect_topology
    conn = Connection.named("ikev2-psk-gcm")
    aio = aioipsec(topo, "right", conn)
    gw2 = strongswan(view, "right", conn)
    client = strongswan(topo, "left", conn)
    client.initiate(timeout=15)
    aio.wait_established(15)
    client.wait_established(15)
    assert _ping_ok(topo, "left")
    out = aio.cli("redirect", "ih", "--gateway", GW2)
    assert out.strip() == f"ih: redirecting 192.0.2.1[left.interop.example] to {GW2}", out
    client.wait_log(rf"redirected to {re.escape(GW2)}", timeout=10)
    gw2.wait_established(15)
    gw2.wait_log(r"client got redirected from 192\.0\.2\.2", timeout=5)
    aio.wait_log(r"acknowledged the redirect to " + re.escape(GW2), timeout=5)
    # charon deletes the IKE SA with us once redirected (else we would after 30 s)
    deadline = time.monotonic() + 15
    while aio.list_sas():
        assert time.monotonic() < deadline, f"the aioipsec gateway still has {aio.list_sas()}"
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while not _ping_ok(view, "left", count=2):
        assert time.monotonic() < deadline, "no traffic through the second gateway"
