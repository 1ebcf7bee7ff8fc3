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

from .netns import NetnsError, Topology
from .strongswan import Connection
from .test_harness_smoke import ping
from .test_ikev2_strongswan import establish

pytestmark = pytest.mark.interop

SECOND = "192.0.2.4"  # charon's second address (documentation range)
RESUME_WITHIN = 25.0
# a quick DPD and give-up: 1 s idle, 0.5 s + 0.7 s retransmits, then probing
CLIENT_IKE = {"retransmit_timeout": "0.5s", "retransmit_base": 1.4, "retransmit_tries": 2}


def _ping_ok(topo: Topology, src: str, count: int = 3) -> bool:
    sent, received = ping(topo, src, count=count)
    return sent == count and received == count


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
        assert _ping_ok(topo, "left")
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
        while not _ping_ok(topo, "left", count=2):
            assert time.monotonic() - mark < RESUME_WITHIN, "no traffic over the second path"
        assert _ping_ok(topo, "right")
        # charon saw no address change and did not move first: the move is ours
        assert not re.search(r"old path is not available|MOBIKE update deferred|"
                             r"sending address list update", ss.logs())

        [after] = ss.list_sas()
        assert (after.spi_i, after.spi_r) == (before.spi_i, before.spi_r), "a new IKE SA was made"
        assert after.raw.get("local-host") == SECOND, after.raw
        assert after.raw.get("remote-host") == topo.left.outer4, after.raw
        [aio_sa] = aio.list_sas()
        assert (aio_sa.spi_i, aio_sa.spi_r) == (before.spi_i, before.spi_r)
        assert aio_sa.raw["remote_addr"] == f"{SECOND}[4500]", aio_sa.raw
        # kernel-libipsec cannot move its SAs in place: charon may rekey the Child
        # SA after the update; whichever is installed carries the pings
        [ss_now] = [c for c in after.children if c.state == "INSTALLED"]
        [aio_now] = [c for c in aio_sa.children if c.state == "INSTALLED"]
        assert (aio_now.spi_in, aio_now.spi_out) == (ss_now.spi_out, ss_now.spi_in)
        assert aio_now.packets_in >= 2 and aio_now.packets_out >= 2, aio_now
    finally:
        if dropping:
            gw_ns.run(_drop_rule("-D", first))
        try:
            gw_ns.ip("addr", "del", f"{SECOND}/24", "dev", "eth0")
        except NetnsError:
            pass
