"""MOBIKE (RFC 4555) against strongSwan: a charon road warrior (``mobike =
yes``) connects to an aioipsec gateway, pings through the tunnel, then its
address changes (a second documentation address is added in its namespace and
the first removed, as on a new network).  charon notices through netlink,
probes the new path and sends UPDATE_SA_ADDRESSES from it; the gateway follows
without a new IKE SA (same IKE SPIs, same Child SA), and pings resume.

The other way round, the aioipsec daemon is the road warrior and a charon
gateway (``mobike = yes``, strongSwan's default) follows it: the daemon is
told of its new address with the control command ``roam``, rebinds there and
sends UPDATE_SA_ADDRESSES; or, with no command, its rtnetlink watcher
(``[daemon] roam_events``, on by default as charon's ``charon.roam_events``)
sees the address go and it roams by itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .mobike_checks import installed_children_agree, ping_ok, pings_resume, same_ike_sa
from .netns import NetnsError, Topology
from .strongswan import Connection
from .test_ikev2_strongswan import establish

pytestmark = pytest.mark.interop

NEW_ADDR = "192.0.2.3"  # the client's address on its "new network" (same documentation subnet)


@contextmanager
def _old_address_back(topo: Topology, old: str) -> Iterator[None]:
    """The direct topology is shared by the whole interop session: whatever
    happens inside, the client leaves NEW_ADDR and gets ``old`` back for the
    tests after this one."""
    try:
        yield
    finally:
        try:
            topo.left.ns.ip("addr", "del", f"{NEW_ADDR}/24", "dev", "eth0")
        except NetnsError:
            pass  # the test failed before adding it
        topo.left.ns.ip("addr", "replace", f"{old}/24", "dev", "eth0")


def test_strongswan_client_roams_and_the_aioipsec_gateway_follows(aioipsec, strongswan,
                                                                   direct_topology: Topology) -> None:
    topo = direct_topology
    client = Connection.named("ikev2-psk-gcm", ike_options={"mobike": "yes"})
    gateway = Connection.named("ikev2-psk-gcm")  # aioipsec: mobike defaults to on
    ss = strongswan(topo, "left", client)
    aio = aioipsec(topo, "right", gateway)
    _, ss_child = establish(aio, ss, "strongswan")
    assert re.search(r"peer supports MOBIKE", ss.logs()), "charon did not see MOBIKE_SUPPORTED"
    assert ping_ok(topo, "left")
    [before] = ss.list_sas()
    old = topo.left.outer4

    with _old_address_back(topo, old):
        # the client moves to a new network: its address goes away, a new one comes
        # (in this order: deleting a subnet's primary address takes its secondaries along)
        topo.left.ns.ip("addr", "del", f"{old}/24", "dev", "eth0")
        ss.wait_log(r"MOBIKE update deferred|old path is not available", timeout=10)
        topo.left.ns.ip("addr", "add", f"{NEW_ADDR}/24", "dev", "eth0")
        aio.wait_log(rf"peer {re.escape(old)}\[\d+\] now at {re.escape(NEW_ADDR)}\[4500\] \(MOBIKE update", timeout=20)
        # charon probed the new path with an empty INFORMATIONAL (answered where it came
        # from, or it would never send the update), then sent the update; our answer
        # carries NAT-D and its COOKIE2 (a mismatch would make charon close the IKE SA)
        log = ss.wait_log(r"generating INFORMATIONAL request (\d+) \[ N\(UPD_SA_ADDR\)", timeout=5)
        ss.wait_log(rf"parsed INFORMATIONAL response {log.group(1)} \[ N\(NATD_S_IP\) N\(NATD_D_IP\) N\(COOKIE2\) \]",
                    timeout=5)
        assert re.search(r"checking path 192\.0\.2\.3\[4500\] - 192\.0\.2\.2\[4500\]", ss.logs())

        pings_resume(topo, time.monotonic() + 10, "no traffic over the new address")
        after, aio_sa = same_ike_sa(aio, ss, before)
        assert after.raw.get("local-host") == NEW_ADDR, after.raw
        # kernel-libipsec cannot move an SA to new addresses in place (its update_sa is
        # "not supported"), so charon rekeys the Child SA right after the update
        # (CREATE_CHILD_SA on the same IKE SA); with an updatable kernel it keeps it
        ss_now, _ = installed_children_agree(after, aio_sa)
        if (ss_now.spi_in, ss_now.spi_out) != (ss_child.spi_in, ss_child.spi_out):
            assert re.search(r"CHILD_SA ih\{1\} state change: UPDATING => INSTALLED\s.*queueing CHILD_REKEY task",
                             ss.logs(), re.S)
        assert ss_now.packets_in >= 2 and ss_now.packets_out >= 2, ss_now


def test_aioipsec_client_roams_and_the_strongswan_gateway_follows(aioipsec, strongswan,
                                                                  direct_topology: Topology) -> None:
    topo = direct_topology
    gateway = Connection.named("ikev2-psk-gcm", ike_options={"mobike": "yes"})
    client = Connection.named("ikev2-psk-gcm")  # aioipsec: mobike defaults to on
    ss = strongswan(topo, "right", gateway)
    aio = aioipsec(topo, "left", client)
    establish(aio, ss, "aioipsec")
    assert re.search(r"peer supports MOBIKE", ss.logs()), "charon did not see our MOBIKE_SUPPORTED"
    aio.wait_log(r"MOBIKE enabled 192\.0\.2\.2\[4500\]", timeout=5)  # charon answered it: IKE on 4500
    assert ping_ok(topo, "left")
    [before] = ss.list_sas()
    assert before.raw.get("remote-host") == topo.left.outer4, before.raw
    old = topo.left.outer4

    with _old_address_back(topo, old):
        # the client moves to a new network (the old address goes first: deleting a
        # subnet's primary address takes its secondaries along) and is told so
        topo.left.ns.ip("addr", "del", f"{old}/24", "dev", "eth0")
        topo.left.ns.ip("addr", "add", f"{NEW_ADDR}/24", "dev", "eth0")
        answer = aio.control({"cmd": "roam", "address": NEW_ADDR})
        assert answer == f"roamed {old} -> {NEW_ADDR}: ih", answer
        # charon got UPDATE_SA_ADDRESSES with NAT-D and COOKIE2 from the new address ...
        ss.wait_log(r"parsed INFORMATIONAL request \d+ \[ N\(UPD_SA_ADDR\) N\(NATD_S_IP\) N\(NATD_D_IP\) "
                    r"N\(COOKIE2\) \]", timeout=10)
        # ... and its answer (COOKIE2 echoed, else we would close the IKE SA) moved us
        aio.wait_log(rf"IKE_SA ih .* now at {re.escape(NEW_ADDR)}\[4500\] \(was {re.escape(old)}\[4500\]; "
                     r"MOBIKE update answered", timeout=10)

        pings_resume(topo, time.monotonic() + 15, "no traffic over the new address")
        after, aio_sa = same_ike_sa(aio, ss, before)
        assert after.raw.get("remote-host") == NEW_ADDR, after.raw
        assert aio_sa.raw["local_addr"] == f"{NEW_ADDR}[4500]", aio_sa.raw
        # kernel-libipsec cannot move its SAs in place: charon may rekey the Child SA
        # after the update (on the same IKE SA); whichever is installed carries the pings
        installed_children_agree(after, aio_sa)


def test_aioipsec_client_follows_its_address_change_by_itself(aioipsec, strongswan,
                                                              direct_topology: Topology) -> None:
    """As above, but no ``roam`` command: the daemon watches rtnetlink."""
    topo = direct_topology
    gateway = Connection.named("ikev2-psk-gcm", ike_options={"mobike": "yes"})
    client = Connection.named("ikev2-psk-gcm")
    ss = strongswan(topo, "right", gateway)
    aio = aioipsec(topo, "left", client)
    old = topo.left.outer4
    aio.wait_log(rf"following address changes at {re.escape(old)} \(roam_events\)", timeout=5)
    establish(aio, ss, "aioipsec")
    aio.wait_log(r"MOBIKE enabled 192\.0\.2\.2\[4500\]", timeout=5)
    assert ping_ok(topo, "left")
    [before] = ss.list_sas()

    with _old_address_back(topo, old):
        mark = time.monotonic()
        topo.left.ns.ip("addr", "del", f"{old}/24", "dev", "eth0")
        topo.left.ns.ip("addr", "add", f"{NEW_ADDR}/24", "dev", "eth0")
        aio.wait_log(rf"roaming to {re.escape(NEW_ADDR)} by itself \(roam_events\): {re.escape(old)} is no longer "
                     rf"on any interface that is up; the kernel routes to 192\.0\.2\.2 from {re.escape(NEW_ADDR)}",
                     timeout=10)
        ss.wait_log(r"parsed INFORMATIONAL request \d+ \[ N\(UPD_SA_ADDR\) N\(NATD_S_IP\) N\(NATD_D_IP\) "
                    r"N\(COOKIE2\) \]", timeout=10)
        aio.wait_log(rf"IKE_SA ih .* now at {re.escape(NEW_ADDR)}\[4500\] \(was {re.escape(old)}\[4500\]; "
                     r"MOBIKE update answered", timeout=10)
        pings_resume(topo, mark + 15, "no traffic over the new address within 15 s")
        [after] = ss.list_sas()
        assert (after.spi_i, after.spi_r) == (before.spi_i, before.spi_r), "a new IKE SA was made"
        assert after.raw.get("remote-host") == NEW_ADDR, after.raw
        [aio_sa] = aio.list_sas()
        assert aio_sa.raw["local_addr"] == f"{NEW_ADDR}[4500]", aio_sa.raw
