"""aioipsec against strongSwan (charon, kernel-libipsec), IKEv1, in network namespaces.

Main Mode PSK (aes128-sha1, no PFS; aes256-sha256 with PFS modp2048) and Aggressive Mode
PSK, each initiated by either end, with traffic both ways through the tunnel, and a
Quick Mode rekey under traffic started by either end.  IKEv1 responders install their
SAs only after Quick Mode message 3, so both ends are always waited on.
"""

from __future__ import annotations

import re
import time

import pytest

from .netns import Topology
from .strongswan import Connection, short_lifetimes
from .test_harness_smoke import ping
from .test_harness_profiles import EXPECTED
from .test_ikev2_strongswan import (
    INITIATORS, PINGS, _background_ping, _ping_result, assert_clean_log, assert_counters_agree,
    establish, ping_both_ways, start_pair,
)

pytestmark = pytest.mark.interop

PROFILES_V1 = ["ikev1-main-psk-aes128-sha1", "ikev1-main-psk-aes256-sha256-pfs",
               "ikev1-aggr-psk"]
# (IKE proposal, ESP proposal) as aioipsec's status reports them
NAMES = {
    "ikev1-main-psk-aes128-sha1": ("aes128-sha1-modp2048", "aes128-sha1"),
    "ikev1-main-psk-aes256-sha256-pfs": ("aes256-sha256-modp2048", "aes256-sha256-modp2048"),
    "ikev1-aggr-psk": ("aes256-sha256-modp2048", "aes128-sha256-modp2048"),
}


@pytest.mark.parametrize("initiator", INITIATORS)
@pytest.mark.parametrize("profile", PROFILES_V1)
def test_tunnel(aioipsec, strongswan, direct_topology: Topology, profile: str,
                initiator: str) -> None:
    topo = direct_topology
    conn = Connection.named(profile)
    aio, ss = start_pair(aioipsec, strongswan, topo, conn)
    aio_child, ss_child = establish(aio, ss, initiator)

    ike_encr, esp_encr, esp_integ = EXPECTED[profile]
    (ss_ike,) = ss.list_sas()
    assert ss_ike.version == 1 and ss_ike.raw["encr-alg"] == ike_encr
    assert ss_ike.initiator == (initiator == "strongswan")
    assert ss_child.raw["encr-alg"] == esp_encr and ss_child.raw.get("integ-alg") == esp_integ
    assert ss_child.raw["encap"] == "yes"
    # PFS in Quick Mode where the ESP proposal has a group
    pfs = "MODP_2048" if "modp2048" in conn.profile.esp_proposals else None
    assert ss_child.raw.get("dh-group") == pfs
    mode = "Aggressive" if "aggr" in profile else "Main"
    if initiator == "strongswan":
        assert f"initiating {mode} Mode" in ss.logs()
    else:
        assert re.search(rf"192\.0\.2\.1 is initiating an? {mode} Mode", ss.logs())
    (aio_ike,) = aio.list_sas()
    assert aio_ike.version == 1 and aio_ike.state == "ESTABLISHED"
    assert aio_ike.initiator == (initiator == "aioipsec")
    assert (aio_ike.spi_i, aio_ike.spi_r) == (ss_ike.spi_i, ss_ike.spi_r)
    ike_name, esp_name = NAMES[profile]
    assert aio_ike.raw["proposal"] == ike_name
    assert aio_child.raw["proposal"] == esp_name
    assert aio_child.raw["encap"] is True and aio_ike.raw["remote_addr"].endswith("[4500]")

    ping_both_ways(topo, "left")
    assert_counters_agree(aio, ss, 2 * PINGS)
    for bad in ("unsupported IKE version", "retransmit", "invalid HASH", "message parsing failed",
                "INVALID_PAYLOAD_TYPE", "decryption failed"):
        assert bad not in ss.logs(), bad

    # stopping the daemon deletes its SAs (Informational DELETEs)
    aio.stop()
    ss.wait_log(r"received DELETE for (IKE_SA|ESP CHILD_SA)", timeout=5)
    assert_clean_log(aio)


@pytest.mark.parametrize("rekeyer", INITIATORS)
def test_quick_mode_rekey_under_traffic(aioipsec, strongswan, direct_topology: Topology,
                                        rekeyer: str) -> None:
    """Short Child SA lifetimes on one end (which also initiates): Quick Mode rekeys
    every 3 s while a ping runs; few or no packets may be lost."""
    topo = direct_topology
    _, child_opts = short_lifetimes(child_rekey=3, version=1)
    plain = Connection.named("ikev1-main-psk-aes128-sha1")
    short = Connection.named("ikev1-main-psk-aes128-sha1", child_options=child_opts)
    aio, ss = start_pair(aioipsec, strongswan, topo, plain,
                         aio_conn=short if rekeyer == "aioipsec" else plain,
                         ss_conn=short if rekeyer == "strongswan" else plain)
    first, _ = establish(aio, ss, rekeyer)
    count, interval = 40, 0.2                           # 8 s of traffic
    pinger = _background_ping(topo, "left", count, interval)
    deadline = time.monotonic() + count * interval + 5
    spis = {first.spi_in}
    while pinger.poll() is None and time.monotonic() < deadline:
        spis.update(c.spi_in for c in aio.installed_children())
        time.sleep(0.2)
    sent, received = _ping_result(pinger, timeout=5)
    print(f"\nIKEv1 QM rekey (rekeyer {rekeyer}): {received}/{sent} pings, "
          f"{len(spis) - 1} Child SA rekeys")
    direction = "sent" if rekeyer == "aioipsec" else "received"
    assert re.search(rf"QM1 {direction}", aio.logs()), f"no QM1 {direction} in aioipsec's log"
    assert len(spis) >= 3, f"Child SA rekeyed {len(spis) - 1} times in 8 s, not >= 2"
    assert sent == count and received >= count - 2, f"{received}/{sent} pings through rekeys"
    # one ISAKMP SA; the current Child SAs agree and carry traffic
    time.sleep(0.5)                                     # IKEv1: the responder lags behind
    aio_now, ss_now = aio.wait_established(), ss.wait_established()
    assert (aio_now.spi_in, aio_now.spi_out) == (ss_now.spi_out, ss_now.spi_in)
    ping_both_ways(topo, "left")


@pytest.mark.parametrize("deleter", INITIATORS)
def test_delete(aioipsec, strongswan, direct_topology: Topology, deleter: str) -> None:
    """The end that did not initiate deletes the ISAKMP SA; the other forgets it too."""
    topo = direct_topology
    aio, ss = start_pair(aioipsec, strongswan, topo, Connection.named("ikev1-main-psk-aes128-sha1"))
    establish(aio, ss, "strongswan" if deleter == "aioipsec" else "aioipsec")
    ping_both_ways(topo, "left", count=1)
    if deleter == "aioipsec":
        aio.terminate()
        aio.wait_gone(timeout=5)
        ss.wait_log(r"received DELETE for IKE_SA ih\[\d+\]", timeout=5)
        deadline = time.monotonic() + 5
        while ss.list_sas() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ss.list_sas() == []
    else:
        ss.terminate()
        assert ss.list_sas() == []
        aio.wait_gone(timeout=5)
    sent, received = ping(topo, "left", count=1)
    assert received == 0, "traffic still flows after the delete"
