"""IKEv1 XAUTH tries against charon 5.9.8 as the road warrior (``local-2 { auth =
xauth; xauth_id = alice }``), the aioipsec daemon as gateway (``remote-2 = { auth =
"xauth" }``, default ``xauth_tries`` 3), in network namespaces.

Wrong password: our gateway asks again after each wrong REPLY -- a new TRANSACTION
request, no SET in between -- charon answers every one with the same password (its
xauth-generic has no retry limit of its own), and after the third our SET says 0 and
both ends are gone: the gateway bounds it.  Good password: our ``status`` shows charon's
XAUTH user (``remote_xauth_id``; charon 5.9.8's ``--list-sas`` shows no ``local-xauth-id``
for its own client side)."""

from __future__ import annotations

import re
import time

import pytest

from .netns import Topology
from .strongswan import XAUTH_PLUGIN, StrongSwanError
from .test_ikev1_xauth import client, gateway
from .test_ikev2_virtual_ips import VIP_CHARON

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not XAUTH_PLUGIN.exists(),
                       reason=f"{XAUTH_PLUGIN} missing (Debian package libcharon-extauth-plugins)"),
]

# charon's log lines for the XAUTH REQUEST it parsed and the REPLY it generated
XAUTH_REQUEST = re.compile(r"parsed TRANSACTION request \d+ \[ HASH CPRQ\(X_TYPE X_USER X_PWD\) \]")
XAUTH_REPLY = re.compile(r"generating TRANSACTION response \d+ \[ HASH CPRP\((?:X_TYPE )?X_USER X_PWD\) \]")


def test_charon_with_a_wrong_password_is_asked_three_times(aioipsec, strongswan,
                                                            direct_topology: Topology) -> None:
    topo = direct_topology
    ss = strongswan(topo, "left", client("not-alices-password"), charon_options=VIP_CHARON)
    aio = aioipsec(topo, "right", gateway())
    with pytest.raises(StrongSwanError):
        ss.initiate(timeout=20)
    peer = re.escape(topo.left.outer4) + r"\S*"
    aio.wait_log(rf"XAUTH authentication failed with {peer}: user 'alice': wrong password for XAUTH user "
                 r"'alice' \(try 3/3, no tries left\)", timeout=15)
    alog = aio.logs()
    for n in (1, 2):
        assert re.search(rf"XAUTH try {n}/3 of user 'alice' from {peer} failed: wrong password", alog), alog[-3000:]
    assert "try 3/3 of user" not in alog  # the third failure is the last: no fourth REQUEST
    ss.wait_log(r"XAuth authentication of 'alice' \(myself\) failed", timeout=10)
    slog = ss.logs()
    # charon got three REQUESTs, answered each, and saw one SET (status 0)
    assert len(XAUTH_REQUEST.findall(slog)) == 3, slog[-4000:]
    assert len(XAUTH_REPLY.findall(slog)) == 3, slog[-4000:]
    assert len(re.findall(r"parsed TRANSACTION request \d+ \[ HASH CPS\(X_STATUS\) \]", slog)) == 1, slog[-4000:]
    deadline = time.monotonic() + 10
    while (aio.list_sas() or ss.list_sas()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert aio.list_sas() == [] and ss.list_sas() == []
    assert aio.installed_children() == []
    assert "not-alices-password" not in aio.logs()


def test_our_status_shows_charons_xauth_user(aioipsec, strongswan, direct_topology: Topology) -> None:
    topo = direct_topology
    ss = strongswan(topo, "left", client("alice-xauth-pw"), charon_options=VIP_CHARON)
    aio = aioipsec(topo, "right", gateway())
    ss.initiate(timeout=20)
    ss.wait_established(20)
    aio.wait_established(20)
    (aio_ike,) = aio.list_sas()
    assert aio_ike.raw["remote_xauth_id"] == "alice", aio_ike.raw
    assert aio_ike.raw["local_xauth_id"] is None
    # charon 5.9.8's own --list-sas shows no local-xauth-id for its client side; its log names the user
    assert re.search(r"XAuth authentication of 'alice' \(myself\) successful", ss.logs())
    assert len(XAUTH_REQUEST.findall(ss.logs())) == 1  # the right password: asked once
