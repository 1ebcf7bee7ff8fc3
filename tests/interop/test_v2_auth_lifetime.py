"""RFC 4478 AUTH_LIFETIME against charon (network namespaces), charon the
responder with ``reauth_time = 20s``, the aioipsec daemon the initiator
*without* a ``reauth_time`` of its own.

Since strongSwan 5.9.4 a charon responder sends AUTH_LIFETIME only when it
cannot reauthenticate the IKE SA itself (``ike_sa_can_reauthenticate``: it
assigned the peer a virtual IP, or the peer authenticated with EAP/XAUTH);
otherwise it reauthenticates actively at its ``reauth_time``.  So:

* plain site-to-site: charon's IKE_AUTH response carries no AUTH_LIFETIME
  and the daemon schedules nothing (documented, quick);
* a road warrior with a virtual IP from charon's pool: charon sends
  AUTH_LIFETIME 20, the daemon reauthenticates at 18 s (the lifetime minus
  10 %), make-before-break: charon then lists one IKE SA with new SPIs (it
  answered a new IKE_SA_INIT) before the 20 s are up, never had to start a
  reauthentication itself, and pings from the virtual IP across it all pass;
* the reverse, the daemon the responder with ``reauth_time``: charon
  honours its AUTH_LIFETIME (reauthenticates at the lifetime minus its
  ``over_time``).
"""

from __future__ import annotations

import re
import time

import pytest

from .netns import Topology
from .strongswan import Connection
from .test_harness_smoke import ping
from .test_ikev2_strongswan import establish, start_pair
from .test_ikev2_virtual_ips import VIP, ping_from_vip

pytestmark = pytest.mark.interop

LIFETIME = 20
CHARON_REAUTH = {"reauth_time": f"{LIFETIME}s", "rand_time": "0s", "over_time": "10s"}


def test_charon_without_virtual_ip_sends_no_auth_lifetime(aioipsec, strongswan,
                                                         direct_topology: Topology) -> None:
    topo = direct_topology
    plain = Connection.named("ikev2-psk-gcm")
    aio, ss = start_pair(aioipsec, strongswan, topo, plain,
                         ss_conn=Connection.named("ikev2-psk-gcm", ike_options=CHARON_REAUTH))
    establish(aio, ss, "aioipsec")
    ss.wait_log(rf"scheduling reauthentication in {LIFETIME}s", timeout=5)
    assert re.search(r"generating IKE_AUTH response 1 \[ IDr AUTH SA TSi TSr \]", ss.logs()), ss.logs()[-3000:]
    assert "AUTH_LFT" not in ss.logs() and "AUTH_LIFETIME" not in aio.logs()


def test_charon_auth_lifetime_makes_aioipsec_reauthenticate(aioipsec, strongswan,
                                                            direct_topology: Topology) -> None:
    topo = direct_topology
    client = Connection.named("ikev2-psk-gcm", local_ts="dynamic", ike_options={"vips": "0.0.0.0"})
    gateway = Connection.named("ikev2-psk-gcm", remote_ts="dynamic", pools={"rw": {"addrs": "10.3.0.0/28"}},
                               ike_options={"pools": "rw", **CHARON_REAUTH})
    aio, ss = start_pair(aioipsec, strongswan, topo, client, aio_conn=client, ss_conn=gateway)
    establish(aio, ss, "aioipsec")
    t0 = time.monotonic()
    (ike0,) = ss.list_sas()
    assert not ike0.initiator
    (child0,) = ike0.children
    # charon's IKE_AUTH response carried the notify (its message summary: N(AUTH_LFT))
    assert re.search(r"generating IKE_AUTH response 1 \[[^\]]*N\(AUTH_LFT\)", ss.logs()), ss.logs()[-3000:]
    aio.wait_log(rf"received AUTH_LIFETIME of {LIFETIME} s from {re.escape(topo.right.outer4)}\[[^\]]*\], "
                 rf"reauthenticating in {LIFETIME - 2} s", timeout=5)
    assert "reauthenticating IKE SA" not in aio.logs()

    # pings 0.2 s apart from about 14 s to 21 s, across the reauthentication at 18 s
    time.sleep(max(0.0, t0 + 14 - time.monotonic()))
    sent, received = ping_from_vip(topo, "left", count=35)
    assert (sent, received) == (35, 35), f"pings lost across the reauthentication: {received}/{sent}"
    deadline = t0 + LIFETIME + 5
    while True:
        sas = ss.list_sas()
        if len(sas) == 1 and (sas[0].spi_i, sas[0].spi_r) != (ike0.spi_i, ike0.spi_r) and sas[0].children:
            break
        assert time.monotonic() < deadline, f"charon never listed one new IKE SA: {sas}"
        time.sleep(0.1)
    (ike1,) = sas
    assert ike1.state == "ESTABLISHED" and not ike1.initiator, "charon answered a new IKE_SA_INIT"
    assert ike1.spi_i != ike0.spi_i and ike1.spi_r != ike0.spi_r
    assert ike1.raw.get("remote-vips") == [VIP], ike1.raw
    (child1,) = ike1.children
    assert child1.name == child0.name and child1.state == "INSTALLED"
    assert (child1.spi_in, child1.spi_out) != (child0.spi_in, child0.spi_out)
    # vici's "established": seconds since; the new IKE SA came before the 20 s were up
    up_at = time.monotonic() - int(ike1.raw["established"]) - t0
    assert up_at < LIFETIME, f"reauthenticated {up_at:.0f} s after the first IKE SA, lifetime {LIFETIME} s"
    logs = aio.logs()
    assert "reauthenticating IKE SA" in logs and "reauthenticated: IKE SA" in logs, logs[-3000:]
    assert logs.count(f"received AUTH_LIFETIME of {LIFETIME} s") == 2, "the new IKE SA got one too"
    # charon did not have to act itself (its reauth job for the old IKE SA finds it gone)
    time.sleep(max(0.0, t0 + LIFETIME + 1 - time.monotonic()))
    assert "did not reauthenticate as requested" not in ss.logs()
    assert "reauthenticating IKE_SA" not in ss.logs(), ss.logs()[-3000:]
    sent, received = ping_from_vip(topo, "left", count=3)
    assert (sent, received) == (3, 3)


def test_aioipsec_gateway_auth_lifetime_makes_charon_reauthenticate(aioipsec, strongswan,
                                                                    direct_topology: Topology) -> None:
    """The reverse: the daemon answers with ``reauth_time = 20s``; charon, the
    initiator without one (``over_time = 5s``: its margin), logs the notify
    and reauthenticates at 15 s, a new IKE SA the daemon answers."""
    topo = direct_topology
    client = Connection.named("ikev2-psk-gcm", ike_options={"over_time": "5s"})
    plain = Connection.named("ikev2-psk-gcm")
    ss = strongswan(topo, "left", client)
    aio = aioipsec(topo, "right", plain, extra={"ike": {"reauth_time": f"{LIFETIME}s", "rand_time": "0s"}})
    establish(aio, ss, "strongswan")
    t0 = time.monotonic()
    (ike0,) = ss.list_sas()
    assert ike0.initiator
    ss.wait_log(rf"received AUTH_LIFETIME of {LIFETIME}s, scheduling reauthentication in {LIFETIME - 5}s", timeout=5)
    deadline = t0 + LIFETIME + 3
    while True:
        sas = [sa for sa in ss.list_sas() if sa.state == "ESTABLISHED" and sa.children]
        if len(sas) == 1 and (sas[0].spi_i, sas[0].spi_r) != (ike0.spi_i, ike0.spi_r):
            break
        assert time.monotonic() < deadline, f"charon did not reauthenticate: {sas}"
        time.sleep(0.2)
    assert sas[0].initiator
    assert time.monotonic() - t0 > LIFETIME - 5 - 1, "not before its AUTH_LIFETIME minus over_time"
    assert re.search(r"reauthenticating IKE_SA ih\[1\]", ss.logs()), ss.logs()[-3000:]
    aio.wait_established(10)
    sent, received = ping(topo, "left", count=3)
    assert (sent, received) == (3, 3)
