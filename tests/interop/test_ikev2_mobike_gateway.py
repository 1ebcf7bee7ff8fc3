"""MOBIKE with a multi-homed aioipsec gateway (RFC 4555 §3.5): the reverse of
``test_ikev2_mobike_probe.py``.  Our daemon is the gateway, bound to the
wildcard address (``local_addrs``/``remote_addrs`` ``%any``), with a second
address, 192.0.2.4, added to its namespace before it starts; its rtnetlink
watcher (announce only on the wildcard) hands both addresses to the IKE SAs,
so charon (``mobike = yes``, ``dpd_delay = 1s``) learns the second one in
IKE_AUTH (ADDITIONAL_IP4_ADDRESS).

Then the path to our first address breaks, both ways: iptables DROP rules
(in our namespace everything to 192.0.2.2, in charon's everything from it),
and charon's namespace loses its route to 192.0.2.2 (the connected
192.0.2.0/24 is replaced by a /32 to 192.0.2.4 only: its link towards our
first address is gone).  The route matters: charon 5.9.8 probes the peer's
other addresses only when the kernel gives it no source towards the current
one (a roam event, or a retransmit that finds the route gone).  With the DROP
alone its MOBIKE DPD (an IKE_MOBIKE task) retransmits on the old path and
gives up ("using 192.0.2.1 as address to reach 192.0.2.2/32" at every
retransmit, then "giving up after 3 retransmits"); an ``unreachable``
192.0.2.2/32 route is ignored by its route lookup the same way, and a /32
over another link is accepted with its old source ("keeping connection
path").  Without a route, charon checks the paths ("checking path
192.0.2.1[4500] - 192.0.2.4[4500]"), our gateway answers the probe to
192.0.2.4 from there, and charon sends UPDATE_SA_ADDRESSES there; our gateway
moves its own side of the IKE SA there too (the responder takes both
addresses from the IP header): pings pass again both ways with the same IKE
SPIs, our status shows 192.0.2.4 as the IKE SA's local address and charon's
list-sas shows it as the remote one.

The rules, the route and the address are removed in ``finally`` (the
topology is shared by the interop session).
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

SECOND = "192.0.2.4"  # our gateway's second address (documentation range)
RESUME_WITHIN = 25.0
SUBNET = "192.0.2.0/24"  # the direct topology's link (charon's connected route)
WILDCARD = {"ike": {"local_addrs": ["%any"], "remote_addrs": ["%any"]}}


def _drop_rule(action: str, direction: str, addr: str) -> list[str]:
    return ["iptables", action, "INPUT", direction, addr, "-j", "DROP"]


def test_strongswan_client_moves_to_the_aioipsec_gateways_second_address(
        aioipsec, strongswan, direct_topology: Topology) -> None:
    topo = direct_topology
    gw_ns = topo.right.ns
    first = topo.right.outer4
    client = Connection.named("ikev2-psk-gcm", ike_options={"mobike": "yes"}, dpd_delay="1s")
    gateway = Connection.named("ikev2-psk-gcm")  # aioipsec: mobike defaults to on
    cl_ns = topo.left.ns
    dropping = rerouted = False
    gw_ns.ip("addr", "add", f"{SECOND}/24", "dev", "eth0")
    try:
        aio = aioipsec(topo, "right", gateway, extra=WILDCARD)
        aio.wait_log(r"listening on 0\.0\.0\.0:500", timeout=5)
        aio.wait_log(r"bound to every address: announcing the host's addresses to MOBIKE peers", timeout=5)
        ss = strongswan(topo, "left", client)
        establish(aio, ss, "strongswan")
        # charon learned our second address in IKE_AUTH
        ss.wait_log(r"parsed IKE_AUTH response \d+ \[[^]]*N\(ADD_4_ADDR\)", timeout=5)
        assert f"got additional MOBIKE peer address: {SECOND}" in ss.logs()
        [ike] = aio.status()["ike_sas"]
        assert ike["local_addr"].startswith(f"{first}["), ike
        assert ping_ok(topo, "left")
        [before] = ss.list_sas()
        assert before.raw.get("remote-host") == first, before.raw

        dropping = True
        gw_ns.run(_drop_rule("-I", "-d", first))
        cl_ns.run(_drop_rule("-I", "-s", first))
        mark = time.monotonic()
        # charon loses its route to our first address; one to the second stays
        cl_ns.ip("route", "add", f"{SECOND}/32", "dev", "eth0", "src", topo.left.outer4)
        rerouted = True
        cl_ns.ip("route", "del", SUBNET, "dev", "eth0")
        # charon probes our addresses, we answer at the second one, its update moves both sides
        ss.wait_log(rf"checking path 192\.0\.2\.1\[4500\] - {re.escape(SECOND)}\[4500\]", timeout=RESUME_WITHIN)
        ss.wait_log(r"generating INFORMATIONAL request \d+ \[ N\(UPD_SA_ADDR\)", timeout=RESUME_WITHIN)
        aio.wait_log(rf"now at {re.escape(SECOND)}\[4500\] \(was {re.escape(first)}\[4500\]; "
                     r"MOBIKE update from .* sent there", timeout=RESUME_WITHIN)
        pings_resume(topo, mark + RESUME_WITHIN, "no traffic over the second path")

        after, aio_sa = same_ike_sa(aio, ss, before)
        assert after.raw.get("remote-host") == SECOND, after.raw
        assert aio_sa.raw["local_addr"] == f"{SECOND}[4500]", aio_sa.raw
        installed_children_agree(after, aio_sa)
    finally:
        if dropping:
            for ns, rule in ((gw_ns, _drop_rule("-D", "-d", first)), (cl_ns, _drop_rule("-D", "-s", first))):
                try:
                    ns.run(rule)
                except NetnsError:
                    pass  # the test failed before inserting it
        if rerouted:
            cl_ns.ip("route", "replace", SUBNET, "dev", "eth0", "proto", "kernel", "scope", "link",
                     "src", topo.left.outer4)
            try:
                cl_ns.ip("route", "del", f"{SECOND}/32", "dev", "eth0")
            except NetnsError:
                pass
        try:
            gw_ns.ip("addr", "del", f"{SECOND}/24", "dev", "eth0")
        except NetnsError:
            pass
