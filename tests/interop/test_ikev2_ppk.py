"""RFC 8784 Postquantum Preshared Keys between aioipsec and charon 5.9.8
(swanctl ``ppk_id``, ``ppk_required``, ``secrets.ppk<n>``): a tunnel with the
PPK mixed in, each end initiating, pings through it; a mismatched PPK refused.
aioipsec is on the left, charon on the right (direct topology)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from .netns import Topology
from .strongswan import Connection, StrongSwanError
from .test_ikev2_strongswan import (
    INITIATORS,
    assert_clean_log,
    assert_counters_agree,
    establish,
    ping_both_ways,
    start_pair,
)

pytestmark = pytest.mark.interop

PPK_ID = "ppk-interop"
PPK = "0x" + "a7" * 32
OTHER_PPK = "0x" + "b3" * 32


def ppk_conn(secret: str = PPK, *, required: bool = True) -> Connection:
    return Connection.named("ikev2-psk-gcm", ppk_secrets={PPK_ID: secret},
                            ike_options={"ppk_id": PPK_ID, "ppk_required": "yes" if required else "no"})


@pytest.mark.parametrize("initiator", INITIATORS)
def test_ppk_tunnel(aioipsec, strongswan, direct_topology: Topology, initiator: str) -> None:
    """Both ends require the PPK: established with it (charon: "using PPK for
    PPK_ID"), Child SA keys both ends agree on (the pings pass)."""
    topo = direct_topology
    conn = ppk_conn()
    aio, ss = start_pair(aioipsec, strongswan, topo, conn)
    establish(aio, ss, initiator)
    ss.wait_log(rf"using PPK for PPK_ID '{PPK_ID}'", timeout=5)
    aio.wait_log(rf"PPK used .*ppk_id={PPK_ID}", timeout=5)
    ping_both_ways(topo, "left")
    assert_counters_agree(aio, ss, 2 * 3)
    assert "a7a7a7a7" not in aio.logs().lower()  # the PPK is never logged
    aio.stop()
    assert_clean_log(aio)


# PPK_IDs that are identities other than a string: charon sends the identity's
# encoding (DER for a DN, the 4 octets of an IPv4 address), and so do we
DN_PPK_ID = "C=CH, O=strongSwan, CN=ppk"
IP_PPK_ID = "192.0.2.77"


@pytest.mark.parametrize(("ppk_id", "initiator"), [
    (DN_PPK_ID, "aioipsec"), (DN_PPK_ID, "strongswan"),
    # charon's responder reads a received PPK_ID back as a DN or as a string
    # (identification_create_from_data), so an IP address PPK_ID it sends
    # works only in this direction, even between two charons
    (IP_PPK_ID, "strongswan"),
])
def test_ppk_id_dn_and_ip(aioipsec, strongswan, direct_topology: Topology, ppk_id: str, initiator: str) -> None:
    """A DN or IP address ppk_id, the same string on both ends, both
    requiring the PPK: the PPK_IDs match (charon "using PPK for PPK_ID", our
    "PPK used" and status ppk_id in the configured string form), the Child
    SA keys agree (the pings pass).  Before, we compared the string with
    the PPK_ID charon sends (the DER, the 4 octets): both charon-initiated
    cases failed.  Our DER goes to charon (it read our string as a DN too)."""
    topo = direct_topology
    conn = Connection.named("ikev2-psk-gcm", ppk_secrets={ppk_id: PPK},
                            ike_options={"ppk_id": ppk_id, "ppk_required": "yes"})
    aio, ss = start_pair(aioipsec, strongswan, topo, conn)
    establish(aio, ss, initiator)
    ss.wait_log(rf"using PPK for PPK_ID '{re.escape(ppk_id)}'", timeout=5)
    aio.wait_log(rf"PPK used .*ppk_id={re.escape(ppk_id)}", timeout=5)
    [sa] = aio.status()["ike_sas"]
    assert sa["ppk_id"] == ppk_id
    ping_both_ways(topo, "left")
    assert_counters_agree(aio, ss, 2 * 3)
    aio.stop()
    assert_clean_log(aio)


@pytest.mark.parametrize("initiator", INITIATORS)
def test_ppk_mismatch_refused(aioipsec, strongswan, direct_topology: Topology, initiator: str) -> None:
    """The same PPK_ID, different PPKs: the responder cannot verify the AUTH
    (AUTHENTICATION_FAILED); no SA stays up."""
    topo = direct_topology
    conn = ppk_conn(required=False)
    wrong = replace(conn, ppk_secrets={PPK_ID: OTHER_PPK})
    aio, ss = start_pair(aioipsec, strongswan, topo, conn, ss_conn=wrong)
    with pytest.raises((StrongSwanError, Exception), match="(?i)initiate|auth"):
        if initiator == "aioipsec":
            aio.initiate(timeout=10)
        else:
            ss.initiate(timeout=10)
    if initiator == "aioipsec":
        ss.wait_log(r"IKE_AUTH response \d+ \[ .*N\(AUTH_FAILED\)", timeout=5)
    else:
        ss.wait_log(r"received AUTHENTICATION_FAILED notify error", timeout=5)
    peer_ip = topo.right.outer4
    aio.wait_log(rf"(?i)AUTHENTICATION_FAILED.*{re.escape(peer_ip)}", timeout=5)
    assert ss.installed_children() == [] and aio.installed_children() == []
    aio.stop()
    assert_clean_log(aio)


def test_ppk_required_gateway_refuses_client_without_ppk(aioipsec, strongswan, direct_topology: Topology) -> None:
    """Our gateway requires a PPK; a charon client without one is refused, and
    our log names the peer and why."""
    topo = direct_topology
    plain = Connection.named("ikev2-psk-gcm")
    aio, ss = start_pair(aioipsec, strongswan, topo, plain, aio_conn=ppk_conn())
    with pytest.raises((StrongSwanError, Exception), match="(?i)initiate|auth"):
        ss.initiate(timeout=10)
    ss.wait_log(r"received AUTHENTICATION_FAILED notify error", timeout=5)
    aio.wait_log(rf"AUTHENTICATION_FAILED.*{re.escape(topo.right.outer4)}.*PPK required but peer .*USE_PPK",
                 timeout=5)
    assert aio.installed_children() == []
    aio.stop()
    assert_clean_log(aio)
