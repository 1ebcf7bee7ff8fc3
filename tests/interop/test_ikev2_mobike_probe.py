"""MOBIKE path probing (RFC 4555 §3.7/§3.8) against strongSwan: an aioipsec
client and a charon gateway (``mobike = yes``) with two addresses.

charon's namespace gets a second address, 192.0.2.4, before charon starts, so
that charon announces it in IKE_AUTH (ADDITIONAL_IP4_ADDRESS; our status shows
it in ``remote_additional_addrs``).  Then the first path breaks: an iptables
DROP rule in charon's namespace discards every UDP datagram to 192.0.2.2.  No
address changes, so charon sees nothing and does not move by itself (it roams
on address events, and its ``dpd_delay`` is 0): only our probing can recover.
Our client's DPD (1 s, short retransmits) goes unanswered, so it sends the
same request to 192.0.2.2 and 192.0.2.4; charon answers from 192.0.2.4 (it
answers a request from its destination), our client moves the IKE SA there and
tells charon with UPDATE_SA_ADDRESSES; pings pass again, same IKE SPIs, and
charon's ``swanctl --list-sas`` shows 192.0.2.4 as its local address.

The rule and the address are removed in ``finally`` (the topology is shared by
the interop session).
"""

from __future__ import annotations

import re
import time

import pytest

from .mobike_checks import installed_children_agree, ping_ok, pings_resume, same_ike_sa
from .netns import NetnsError, Topology
from .strongswan import Connection
from .test_ikev2_strongswan import establish

pytestmark = pytest.mark.interop

SECOND = "192.0.2.4"  # charon's second address (documentation range)
RESUME_WITHIN = 25.0
# a quick DPD and give-up: 1 s idle, 0.5 s + 0.7 s retransmits, then probing
CLIENT_IKE = {"retransmit_timeout": "0.5s", "retransmit_base": 1.4, "retransmit_tries": 2}


def _drop_rule(action: str, addr: str) -> list[str]:
    return ["iptables", action, "INPUT", "-d", addr, "-p", "udp", "-j", "DROP"]


def test_aioipsec_client_probes_and_moves_to_the_strongswan_gateways_second_address(
        aioipsec, strongswan, direct_topology: Topology) -> None:
    topo = direct_topology
    gw_ns = topo.right.ns
    first = topo.right.outer4
    gateway = Connection.named("ikev2-psk-gcm", ike_options={"mobike": "yes"})
    client = Connection.named("ikev2-psk-gcm", dpd_delay="1s")
    dropping = False
    gw_ns.ip("addr", "add", f"{SECOND}/24", "dev", "eth0")
    try:
        ss = strongswan(topo, "right", gateway)
        aio = aioipsec(topo, "left", client, extra={"ike": CLIENT_IKE})
        establish(aio, ss, "aioipsec")
        aio.wait_log(r"MOBIKE enabled 192\.0\.2\.2\[4500\]", timeout=5)
        # charon announced its other address in IKE_AUTH
        assert re.search(r"sending IKE_AUTH response .*N\(ADD_4_ADDR\)|"
                         r"generating IKE_AUTH response \d+ \[[^]]*N\(ADD_4_ADDR\)", ss.logs()), \
            "charon announced no additional address"
        [ike] = aio.status()["ike_sas"]
        assert SECOND in ike["remote_additional_addrs"], ike
        assert ping_ok(topo, "left")
        [before] = ss.list_sas()
        assert before.raw.get("local-host") == first, before.raw

        gw_ns.run(_drop_rule("-I", first))
        dropping = True
        mark = time.monotonic()
        aio.wait_log(rf"path to .* failed; probing {re.escape(first)}\[4500\], {re.escape(SECOND)}\[4500\]",
                     timeout=RESUME_WITHIN)
        aio.wait_log(rf"answered the path probe \(round \d+\) at {re.escape(SECOND)}\[4500\]; moving there",
                     timeout=RESUME_WITHIN)
        # our UPDATE_SA_ADDRESSES (NAT-D, COOKIE2) reached charon at its second address
        ss.wait_log(r"parsed INFORMATIONAL request \d+ \[ N\(UPD_SA_ADDR\) N\(NATD_S_IP\) N\(NATD_D_IP\) "
                    r"N\(COOKIE2\) \]", timeout=10)
        pings_resume(topo, mark + RESUME_WITHIN, "no traffic over the second path")
        # charon saw no address change and did not move first: the move is ours
        assert not re.search(r"old path is not available|MOBIKE update deferred|"
                             r"sending address list update", ss.logs())

        after, aio_sa = same_ike_sa(aio, ss, before)
        assert after.raw.get("local-host") == SECOND, after.raw
        assert after.raw.get("remote-host") == topo.left.outer4, after.raw
        assert aio_sa.raw["remote_addr"] == f"{SECOND}[4500]", aio_sa.raw
        # kernel-libipsec cannot move its SAs in place: charon may rekey the Child
        # SA after the update; whichever is installed carries the pings
        installed_children_agree(after, aio_sa)
    finally:
        if dropping:
            gw_ns.run(_drop_rule("-D", first))
        try:
            gw_ns.ip("addr", "del", f"{SECOND}/24", "dev", "eth0")
        except NetnsError:
            pass
