"""``aioipsec roam ADDRESS``: the daemon is told its address changed (the
control command ``roam``); it rebinds there, the IKEv2 SA (MOBIKE, on by
default) sends UPDATE_SA_ADDRESSES, and the tunnel carries traffic again on
the same IKE SA.  Same two in-memory daemons as ``test_cli_daemon.py``."""

from __future__ import annotations

import asyncio

from test_cli_daemon import Gateways, gateways, ping, short_dir  # noqa: F401  (fixtures)

NEW = "192.0.2.77"


async def test_roam_moves_the_ike_sa_and_traffic_resumes(gateways: Gateways) -> None:  # noqa: F811
    g = gateways
    rc, _, err = await g.cli("up", "hq")
    assert rc == 0, err
    assert await ping(g, 2) == 2
    spis = (g.a.endpoint.find_session("hq").session.sa.spi_i, g.a.endpoint.find_session("hq").session.sa.spi_r)

    rc, out, err = await g.cli("roam", NEW)
    assert (rc, out.strip(), err) == (0, f"roamed 192.0.2.1 -> {NEW}: hq", "")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while f"@ {NEW}[4500]" not in (await g.cli("status"))[1]:
        assert loop.time() < deadline, "status never showed the new address"
        await asyncio.sleep(0.05)
    _, text, _ = await g.cli("status", ctl=g.ctl_h)
    assert f"  remote 'site-a.example' @ {NEW}[4500]" in text  # the gateway followed
    assert await ping(g, 3) == 3
    s = g.a.endpoint.find_session("hq").session
    assert (s.sa.spi_i, s.sa.spi_r) == spis and s.local_addr == (NEW, 4500)


async def test_roam_needs_an_address(gateways: Gateways) -> None:  # noqa: F811
    rc, _, err = await gateways.cli("roam", "not-an-address")
    assert rc == 1 and err.strip() == "error: roam needs an IP address, not 'not-an-address'"
