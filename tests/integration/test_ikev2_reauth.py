"""IKEv2 reauthentication (swanctl ``reauth_time``), make-before-break, in
memory: a road warrior with a short ``reauth_time`` establishes a second IKE
SA (new IKE SPIs, IKE_AUTH again, no INITIAL_CONTACT, the same Child SA and
virtual IP) and deletes the old one once the new Child SA is up.  Traffic
both ways runs through the whole reauthentication without a loss; both ends
are left with exactly one IKE SA; a gateway with ``unique = "replace"``
replaces the old IKE SA itself (as charon for IKEv2) without breaking the
tunnel; a reauthentication that fails leaves the old IKE SA in place."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncwait import Pump, Side, until

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import PoolConfig, child, connection
from aioipsec.events import (
    ChildSaInstalled,
    IkeSaDeleted,
    IkeSaEstablished,
    ReauthRequired,
)
from aioipsec.netutil import parse_udp
from aioipsec.status import endpoint_status
from aioipsec.transports.memory import memory_pipe

GW = "192.0.2.2"
NET = "203.0.113.0/24"
SERVER = "203.0.113.20"
PSK = "reauth-asyncio-psk"
ALICE = "192.0.2.10"


async def gateway(net: MemoryNetwork, **kw: Any) -> Side:
    gw_in, app = memory_pipe(queue_size=4096)
    cfg = connection("rw", psk=PSK, local_id="gw.example", remote_id="%any", local_addrs=[GW], dpd_delay=0,
                     pools=["rw"], children=[child("net", local_ts=[NET])], **kw)
    ep = await Endpoint.create(GW, configurations=[cfg], network=net, inner=gw_in,
                               pools=[PoolConfig("rw", "10.3.0.0/28")])
    return Side(ep, app, echo_from=SERVER)


async def client(net: MemoryNetwork, **kw: Any) -> Side:
    c_in, app = memory_pipe(queue_size=4096)
    cfg = connection("home", psk=PSK, local_id="alice.example", remote_id="gw.example", local_addrs=[ALICE],
                     remote_addrs=[GW], dpd_delay=0, vips=["0.0.0.0"], children=[child("net", remote_ts=[NET])],
                     **kw)
    ep = await Endpoint.create(ALICE, configurations=[cfg], network=net, inner=c_in)
    return Side(ep, app)


def sas(side: Side) -> list[dict[str, Any]]:
    return endpoint_status(side.ep)["ike_sas"]  # type: ignore[no-any-return]


async def reauth_without_loss(gw: Side, cl: Side, start: Any) -> None:
    (first,) = cl.of(IkeSaEstablished)
    (vip,) = first.local_vips
    (old_child,) = cl.of(ChildSaInstalled)
    (gw_old_child,) = gw.of(ChildSaInstalled)
    pump = Pump(cl, vip, SERVER)
    await until(lambda: pump.sent > 20, what="traffic before the reauthentication")
    await start()
    old = (first.spi_i, first.spi_r)
    await until(lambda: any((e.spi_i, e.spi_r) == old for e in cl.of(IkeSaDeleted)), timeout=8,
                what="the old IKE SA deleted at the client")
    await until(lambda: any((e.spi_i, e.spi_r) == old for e in gw.of(IkeSaDeleted)),
                what="the old IKE SA deleted at the gateway")
    sent_at_delete = pump.sent
    await until(lambda: pump.sent > sent_at_delete + 20, what="traffic after the reauthentication")
    await pump.stop()
    await until(lambda: len(cl.received) == pump.sent, timeout=3,
                what=f"every answer ({pump.sent} sent, {len(gw.received)} at the gateway, {len(cl.received)} back)")
    # no loss, no duplicate, both ways, across the reauthentication
    assert sorted(parse_udp(p)[4] for p in gw.received) == sorted(b"n%d" % i for i in range(pump.sent))  # type: ignore[index]
    assert sorted(parse_udp(p)[4] for p in cl.received) == sorted(b"re: n%d" % i for i in range(pump.sent))  # type: ignore[index]

    # a new IKE SA: new SPIs, IKE_AUTH again with the same identities and virtual IP
    second = [e for e in cl.of(IkeSaEstablished) if (e.spi_i, e.spi_r) != old]
    assert len(second) == 1 and second[0].rekeyed_from is None
    assert second[0].spi_i != first.spi_i and second[0].spi_r != first.spi_r
    assert second[0].local_vips == (vip,) and second[0].remote_id == first.remote_id
    # a new Child SA of the same child with the same selectors, new SPIs
    new_children = [e for e in cl.of(ChildSaInstalled) if e.spi_in != old_child.spi_in]
    assert len(new_children) == 1
    (new_child,) = new_children
    assert new_child.name == "net" and new_child.ike_spi_i == second[0].spi_i
    assert (new_child.local_ts, new_child.remote_ts) == (old_child.local_ts, old_child.remote_ts)
    assert {new_child.spi_in, new_child.spi_out}.isdisjoint({old_child.spi_in, old_child.spi_out})
    # both ends: exactly one IKE SA, the new one, with one Child SA pair
    await until(lambda: len(sas(gw)) == 1, what="one IKE SA at the gateway")
    for side in (cl, gw):
        [sa] = sas(side)
        assert (sa["spi_i"], sa["spi_r"]) == (second[0].spi_i.hex(), second[0].spi_r.hex())
        assert [c["child"] for c in sa["children"]] == ["net"]
    assert gw_old_child.spi_in not in gw.ep.dataplane.sad_in or gw.ep.dataplane.sad_in[gw_old_child.spi_in].deleted
    [gsa] = sas(gw)
    assert gsa["children"][0]["spi_in"] == f"0x{new_child.spi_out:08x}"


async def test_reauth_time_make_before_break_no_loss() -> None:
    net = MemoryNetwork()
    gw = await gateway(net)  # unique = no (the default): no INITIAL_CONTACT, no replacement
    cl = await client(net, reauth_time=1.5, rand_time=0)
    try:
        cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the Child SA")

        async def start() -> None:
            await until(lambda: cl.of(ReauthRequired), timeout=5, what="reauth_time")

        await reauth_without_loss(gw, cl, start)
        (req,) = cl.of(ReauthRequired)
        assert req.children == ("net",)
    finally:
        await cl.close()
        await gw.close()


async def test_reauthenticate_now_under_unique_replace_keeps_the_tunnel() -> None:
    """``Endpoint.reauthenticate`` (the daemon's ``rekey --reauth``) against a
    gateway with ``unique = "replace"``: as charon (its ``check_uniqueness``
    delays the replacement only for an IKEv1 reauthentication), the gateway
    replaces the old IKE SA as soon as the new one is authenticated and
    answers with the new Child SA in the same IKE_AUTH; the client's
    reauthentication completes and no packet is lost."""
    net = MemoryNetwork()
    gw = await gateway(net, unique="replace")
    cl = await client(net)
    try:
        proto = cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the Child SA")
        box: list[Any] = []

        async def start() -> None:
            box.append(cl.ep.reauthenticate(proto))

        await reauth_without_loss(gw, cl, start)
        new = await asyncio.wait_for(box[0], 3)
        assert new is not proto and new.session.is_established and proto.session.is_closed
        (deleted,) = [e for e in gw.of(IkeSaDeleted) if e.spi_i == proto.session.spi_i]
        assert deleted.reason.startswith("replaced by a new IKE SA"), deleted.reason
    finally:
        await cl.close()
        await gw.close()


async def test_a_failed_reauthentication_keeps_the_old_ike_sa() -> None:
    net = MemoryNetwork()
    gw = await gateway(net)
    cl = await client(net, retransmit_timeout=0.2, retransmit_tries=1)
    try:
        proto = cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the Child SA")
        # the gateway stops answering new IKE SAs (its responder is off)
        gw.ep.respond = False
        fut = cl.ep.reauthenticate(proto)
        try:
            await asyncio.wait_for(fut, 5)
        except RuntimeError as exc:
            assert "reauthentication failed" in str(exc)
        else:
            raise AssertionError("the reauthentication should fail")
        assert not proto.session.is_closed and len(sas(cl)) == 1
        assert sas(cl)[0]["spi_i"] == proto.session.spi_i.hex()
    finally:
        await cl.close()
        await gw.close()


async def test_status_shows_when_the_reauthentication_is_due() -> None:
    """``status`` (JSON ``reauth_in``, text "reauth in"), as swanctl --list-sas
    prints it; the gateway, which never reauthenticates, shows none."""
    from aioipsec.status import format_status

    net = MemoryNetwork()
    gw = await gateway(net)
    cl = await client(net, reauth_time=3600, rand_time=0)
    try:
        cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the Child SA")
        (csa,) = endpoint_status(cl.ep)["ike_sas"]
        assert 3590 <= csa["reauth_in"] <= 3600, csa
        assert "reauth in 59m" in format_status(endpoint_status(cl.ep)) or "reauth in 1h" in format_status(
            endpoint_status(cl.ep))
        (gsa,) = endpoint_status(gw.ep)["ike_sas"]
        assert gsa["reauth_in"] is None and "reauth in" not in format_status(endpoint_status(gw.ep))
    finally:
        await cl.close()
        await gw.close()
