"""aioipsec against strongSwan (charon, kernel-libipsec), IKEv1, in network namespaces.

Main Mode PSK (aes128-sha1, no PFS; aes256-sha256 with PFS modp2048) and Aggressive Mode
PSK, each initiated by either end, with traffic both ways through the tunnel, and a
Quick Mode rekey under traffic started by either end.  IKEv1 responders install their
SAs only after Quick Mode message 3, so both ends are always waited on.  ECDSA
certificates (RFC 4754, P-256 and P-384) in Main and Aggressive Mode, either end
initiating, and a certificate from an untrusted CA refused by either end.
"""

from __future__ import annotations

import re
import time

import pytest

from .aioipsec_peer import AioipsecPeer, PeerError
from .certs import generate_pki
from .netns import Topology
from .strongswan import Connection, Profile, StrongSwanError, short_lifetimes
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


# ---------------------------------------------------------------------------
# ECDSA certificates (RFC 4754): the auth method (9 = ECDSA-256, 10 = ECDSA-384)
# follows each side's key; FQDN identities from the certificates' subjectAltName

ECDSA_PROFILES_V1 = {p.name: p for p in (
    Profile("ikev1-main-cert-ecdsa", 1, "aes128-sha256-modp2048", "aes128-sha256",
            auth="pubkey", cert_kind="ecdsa"),
    Profile("ikev1-main-cert-ecdsa384", 1, "aes256-sha384-ecp384", "aes256-sha384",
            auth="pubkey", cert_kind="ecdsa384"),
    Profile("ikev1-aggr-cert-ecdsa", 1, "aes128-sha256-modp2048", "aes128-sha256",
            auth="pubkey", cert_kind="ecdsa", aggressive=True),
)}


@pytest.mark.parametrize("initiator", INITIATORS)
@pytest.mark.parametrize("profile", list(ECDSA_PROFILES_V1))
def test_tunnel_ecdsa(aioipsec, strongswan, direct_topology: Topology, profile: str,
                      initiator: str) -> None:
    topo = direct_topology
    prof = ECDSA_PROFILES_V1[profile]
    conn = Connection(prof)
    aio, ss = start_pair(aioipsec, strongswan, topo, conn)
    aio_child, ss_child = establish(aio, ss, initiator)

    (ss_ike,) = ss.list_sas()
    assert ss_ike.version == 1 and ss_ike.raw["encr-alg"] == "AES_CBC"
    assert ss_ike.initiator == (initiator == "strongswan")
    mode = "Aggressive" if prof.aggressive else "Main"
    if initiator == "strongswan":
        assert f"initiating {mode} Mode" in ss.logs()
    else:
        assert re.search(rf"192\.0\.2\.1 is initiating an? {mode} Mode", ss.logs())
        # the method aioipsec proposed, as charon (responder) read it
        method = "ECDSA-384" if prof.cert_kind == "ecdsa384" else "ECDSA-256"
        assert f"looking for {method} signature peer configs" in ss.logs()
    # charon verified aioipsec's ECDSA signature of HASH_I/HASH_R (RFC 4754 r|s,
    # SIGN_ECDSA_WITH_NULL) with the certificate aioipsec sent
    assert re.search(r"authentication of 'left\.interop\.example' with ECDSA_WITH_NULL "
                     r"successful", ss.logs()), "charon did not verify aioipsec's ECDSA signature"
    assert re.search(r"authentication of 'right\.interop\.example' \(myself\) successful",
                     ss.logs())
    (aio_ike,) = aio.list_sas()
    assert aio_ike.version == 1 and aio_ike.state == "ESTABLISHED"
    assert aio_ike.initiator == (initiator == "aioipsec")
    assert (aio_ike.spi_i, aio_ike.spi_r) == (ss_ike.spi_i, ss_ike.spi_r)
    assert aio_ike.raw["proposal"] == prof.proposals
    assert "right.interop.example" in aio_ike.raw["remote_id"]
    assert aio_child.raw["proposal"] == prof.esp_proposals

    ping_both_ways(topo, "left")
    assert_counters_agree(aio, ss, 2 * PINGS)
    for bad in ("retransmit", "invalid HASH", "signature validation failed",
                "message parsing failed", "decryption failed", "AUTHENTICATION_FAILED"):
        assert bad not in ss.logs(), bad
    aio.stop()
    ss.wait_log(r"received DELETE for (IKE_SA|ESP CHILD_SA)", timeout=5)
    assert_clean_log(aio)


@pytest.mark.parametrize("initiator", INITIATORS)
def test_ecdsa_untrusted_certificate(strongswan, direct_topology: Topology, tmp_path,
                                     initiator: str) -> None:
    """aioipsec's certificate and trust anchor come from another CA than charon's:
    whoever receives the other's MM5/MM6 first refuses it.  As responder aioipsec
    reports the authentication failure naming charon (address), as initiator it
    reports charon's AUTHENTICATION_FAILED; no SA is left on either end."""
    topo = direct_topology
    conn = Connection(ECDSA_PROFILES_V1["ikev1-main-cert-ecdsa"])
    ss = strongswan(topo, "right", conn)
    aio = AioipsecPeer(topo, "left")
    try:
        aio.configure(conn, generate_pki(tmp_path / "other-pki", kinds=("ecdsa",)))
        aio.start()
        if initiator == "aioipsec":
            with pytest.raises(PeerError, match="AuthFailed"):
                aio.initiate(timeout=10)
        else:
            with pytest.raises(StrongSwanError):
                ss.initiate(timeout=5)
        deadline = time.monotonic() + 15
        pattern = r"MM\d authentication failed with 192\.0\.2\.2"
        while not re.search(pattern, aio.logs()) and time.monotonic() < deadline:
            time.sleep(0.1)
        log = aio.logs()
        assert re.search(pattern, log), log[-3000:]
        if initiator == "strongswan":
            # aioipsec (responder) checked charon's MM5 certificate chain
            assert re.search(r"MM5 authentication failed with 192\.0\.2\.2\S*: .*trust", log), log[-3000:]
        else:
            # charon (responder) found no trusted key for aioipsec's certificate
            assert re.search(r"no trusted ECDSA public key found for 'left\.interop\.example'"
                             r"|constraint check failed|no issuer certificate found", ss.logs())
        assert not aio.installed_children() and not ss.installed_children()
    finally:
        aio.stop()
