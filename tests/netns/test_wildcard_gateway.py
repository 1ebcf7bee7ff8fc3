"""A gateway bound to the wildcard address answers from the address it was
reached at (IP_PKTINFO), in network namespaces.

The right side gets a second address (192.0.2.3) on its interface and runs a
road-warrior aioipsec daemon (local_addrs and remote_addrs %any: it binds
0.0.0.0).  The left aioipsec peer targets 192.0.2.3, and its namespace drops
every UDP datagram and every ESP packet from the gateway's first address
192.0.2.2 (as a peer that only accepts answers from the address it targeted,
or a firewall, would): the IKE SA comes up only if the gateway answers from
192.0.2.3, and the ping gets through only if the ESP (raw or in UDP) leaves
from 192.0.2.3 too.  The
gateway's status shows the IKE SA at 192.0.2.3 and, without forced
encapsulation, NAT-D finds no NAT (plain ESP).  The address and the filter
are removed in a ``finally``."""

from __future__ import annotations

import pytest
from interop.netns import Topology
from interop.strongswan import Connection

from .traffic import ping

PROFILE = "ikev2-psk-gcm"
SECOND = "192.0.2.3"
FIRST = "192.0.2.2"
DROPS = [["INPUT", "-p", proto, "-s", FIRST, "-j", "DROP"] for proto in ("udp", "esp")]


@pytest.mark.parametrize("encap", [False, True], ids=["plain-esp", "udp-encap"])
def test_wildcard_gateway_answers_from_the_targeted_address(direct: Topology, aio, encap: bool) -> None:
    gw_ns, peer_ns = direct.right.ns, direct.left.ns
    conn = Connection.named(PROFILE)
    gw_ns.ip("addr", "add", f"{SECOND}/24", "dev", "eth0")
    try:
        for rule in DROPS:
            peer_ns.run(["iptables", "-I", *rule])
        gw = aio(direct, "right", conn, extra={"ike": {"local_addrs": ["%any"], "remote_addrs": ["%any"]}})
        ike = {"remote_addrs": [SECOND]}
        if encap:
            ike["encap"] = True
        left = aio(direct, "left", conn, extra={"ike": ike})
        assert "listening on 0.0.0.0:500" in gw.logs()
        left.initiate()
        left.wait_established(15)
        gw.wait_established(15)
        (sa,) = gw.status()["ike_sas"]
        assert sa["local_addr"].startswith(SECOND + "["), sa["local_addr"]
        (child,) = sa["children"]
        if not encap:
            assert sa["nat_local"] is False and sa["nat_remote"] is False, sa
            assert child["encap"] is False
        else:
            assert child["encap"] is True
        assert ping(direct.left, direct.right.inner4, count=3) == (3, 3)
        assert ping(direct.right, direct.left.inner4, count=3) == (3, 3)
        (lsa,) = left.status()["ike_sas"]
        assert lsa["remote_addr"].startswith(SECOND + "["), lsa["remote_addr"]
    finally:
        for rule in DROPS:
            peer_ns.run(["iptables", "-D", *rule], check=False)
        gw_ns.ip("addr", "del", f"{SECOND}/24", "dev", "eth0")
