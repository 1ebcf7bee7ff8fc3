"""Every connection profile of the harness, proven with two strongSwan peers.

aioipsec's interop tests will replace one of the two charons with aioipsec; these
cases show that each rendered configuration is one strongSwan itself accepts and
carries traffic with, from either side, and that the rekey overrides take effect.
"""

from __future__ import annotations

import time

import pytest

from .netns import Topology
from .strongswan import PROFILES, Connection, short_lifetimes, wait_both
from .test_harness_smoke import PING_COUNT, ping

pytestmark = pytest.mark.interop

# what charon reports for each profile: (IKE encr-alg, ESP encr-alg, ESP integ-alg)
EXPECTED = {
    "ikev2-psk-gcm": ("AES_GCM_16", "AES_GCM_16", None),
    "ikev2-psk-chacha20": ("AES_GCM_16", "CHACHA20_POLY1305", None),
    "ikev2-psk-aescbc-sha256": ("AES_GCM_16", "AES_CBC", "HMAC_SHA2_256_128"),
    "ikev2-cert-ecdsa": ("AES_GCM_16", "AES_GCM_16", None),
    "ikev2-cert-rsa": ("AES_GCM_16", "AES_GCM_16", None),
    "ikev1-main-psk-aes128-sha1": ("AES_CBC", "AES_CBC", "HMAC_SHA1_96"),
    "ikev1-main-psk-aes256-sha256-pfs": ("AES_CBC", "AES_CBC", "HMAC_SHA2_256_128"),
    "ikev1-aggr-psk": ("AES_CBC", "AES_CBC", "HMAC_SHA2_256_128"),
}


def test_expected_covers_every_profile() -> None:
    assert set(EXPECTED) == set(PROFILES)


@pytest.mark.parametrize("initiator", ["left", "right"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profile_establishes_and_carries_traffic(strongswan, direct_topology: Topology,
                                                 profile: str, initiator: str) -> None:
    topo = direct_topology
    conn = Connection.named(profile)
    responder = "right" if initiator == "left" else "left"
    resp = strongswan(topo, responder, conn)
    init = strongswan(topo, initiator, conn)
    init.initiate()
    ichild, rchild = wait_both(init, resp)
    assert (ichild.spi_in, ichild.spi_out) == (rchild.spi_out, rchild.spi_in)
    (ike,) = init.list_sas()
    ike_encr, esp_encr, esp_integ = EXPECTED[profile]
    assert ike.version == PROFILES[profile].version
    assert ike.raw["encr-alg"] == ike_encr
    assert ichild.raw["encr-alg"] == esp_encr
    assert ichild.raw.get("integ-alg") == esp_integ
    if PROFILES[profile].aggressive:
        assert "initiating Aggressive Mode" in init.logs()
    if profile == "ikev1-main-psk-aes256-sha256-pfs":
        assert ichild.raw.get("dh-group") == "MODP_2048"        # PFS in Quick Mode
    if profile == "ikev2-cert-rsa":
        # RSA-3072 certificates do not fit one datagram: RFC 7383 fragments
        assert "EF(1/" in init.logs() or "EF(1/" in resp.logs()
    sent, received = ping(topo, initiator)
    assert (sent, received) == (PING_COUNT, PING_COUNT)


def test_short_lifetimes_rekey_child_and_ike(strongswan, direct_topology: Topology) -> None:
    topo = direct_topology
    ike_opts, child_opts = short_lifetimes(ike_rekey=4, child_rekey=2)
    conn = Connection.named("ikev2-psk-gcm", ike_options=ike_opts, child_options=child_opts)
    right = strongswan(topo, "right", conn)
    left = strongswan(topo, "left", conn)
    left.initiate()
    first, _ = wait_both(left, right)
    (ike,) = left.list_sas()
    deadline = time.monotonic() + 12
    rekeyed_child = rekeyed_ike = False
    while time.monotonic() < deadline and not (rekeyed_child and rekeyed_ike):
        sas = left.list_sas()
        rekeyed_ike = rekeyed_ike or any(
            (sa.spi_i, sa.spi_r) != (ike.spi_i, ike.spi_r) for sa in sas
            if sa.state == "ESTABLISHED")
        rekeyed_child = rekeyed_child or any(
            c.spi_in != first.spi_in for c in left.installed_children())
        time.sleep(0.2)
    assert rekeyed_child, "CHILD_SA not rekeyed within 12 s (rekey_time 2 s)"
    assert rekeyed_ike, "IKE_SA not rekeyed within 12 s (rekey_time 4 s)"
    assert "rekeying" in left.logs() or "rekeying" in right.logs()
    sent, received = ping(topo)
    assert (sent, received) == (PING_COUNT, PING_COUNT)


def test_ipv6_outer_and_inner(strongswan, direct_topology: Topology) -> None:
    topo = direct_topology
    conn = Connection.named("ikev2-psk-gcm", family=6)
    right = strongswan(topo, "right", conn)
    left = strongswan(topo, "left", conn)
    left.initiate()
    lchild, _ = wait_both(left, right)
    (ike,) = left.list_sas()
    assert ike.raw["remote-host"] == "2001:db8:1::2"
    assert lchild.raw["remote-ts"] == ["2001:db8:b::/64"]
    sent, received = ping(topo, family=6)
    assert (sent, received) == (PING_COUNT, PING_COUNT)
