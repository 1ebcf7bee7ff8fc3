"""IKEv2 Redirect (RFC 5685) through the asyncio endpoint, in memory: a
gateway redirects an established client (what the daemon's ``redirect``
command does) and the client's endpoint sets the connection up with the
second gateway, its Child SA and traffic there, then deletes the old IKE SA;
a gateway with ``redirect_init`` sends clients that support it on in
IKE_SA_INIT and serves the others; the loop limit stops a gateway pair that
keeps redirecting to each other, naming the peer."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncwait import Side, until

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.events import (
    ChildSaInstalled,
    IkeRedirected,
    IkeSaDeleted,
    IkeSaEstablished,
    KeyingFailed,
)
from aioipsec.netutil import parse_udp, udp_packet
from aioipsec.status import endpoint_status
from aioipsec.transports.memory import memory_pipe

GW1, GW2, CLIENT = "192.0.2.2", "192.0.2.3", "192.0.2.10"
NET = "203.0.113.0/24"
SERVER = "203.0.113.20"
NET2 = "198.18.0.0/24"
CHILDREN = {NET: "net", NET2: "net2"}
PSK = "redirect-asyncio-psk"


async def gateway(net: MemoryNetwork, addr: str, nets: tuple[str, ...] = (NET,), **kw: Any) -> Side:
    gw_in, app = memory_pipe(queue_size=1024)
    cfg = connection("rw", psk=PSK, local_id="gw.example", remote_id="%any", local_addrs=[addr], dpd_delay=0,
                     children=[child(CHILDREN[n], local_ts=[n]) for n in nets], **kw)
    ep = await Endpoint.create(addr, configurations=[cfg], network=net, inner=gw_in)
    return Side(ep, app)


async def client(net: MemoryNetwork, **kw: Any) -> Side:
    return await client_at(net, CLIENT, **kw)


async def client_at(net: MemoryNetwork, addr: str, nets: tuple[str, ...] = (NET,), **kw: Any) -> Side:
    c_in, app = memory_pipe(queue_size=1024)
    cfg = connection("home", psk=PSK, local_id="client.example", remote_id="gw.example", local_addrs=[addr],
                     remote_addrs=[GW1], dpd_delay=0, children=[child(CHILDREN[n], remote_ts=[n]) for n in nets],
                     **kw)
    ep = await Endpoint.create(addr, configurations=[cfg], network=net, inner=c_in)
    return Side(ep, app)


async def roundtrip(cl: Side, gw: Side, text: bytes) -> None:
    n_gw, n_cl = len(gw.received), len(cl.received)
    cl.app.send_batch([udp_packet(CLIENT, SERVER, 40000, 7, text)])
    await until(lambda: len(gw.received) > n_gw, what=f"the packet at {gw.ep.local_ip}")
    u = parse_udp(gw.received[-1])
    assert u is not None and u[4] == text
    gw.app.send_batch([udp_packet(SERVER, CLIENT, 7, 40000, b"re: " + text)])
    await until(lambda: len(cl.received) > n_cl, what="the answer at the client")


async def test_gateway_redirects_an_established_client() -> None:
    net = MemoryNetwork()
    gw1, gw2 = await gateway(net, GW1), await gateway(net, GW2)
    cl = await client(net)
    try:
        cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the first Child SA")
        await roundtrip(cl, gw1, b"before")
        (proto,) = gw1.ep.sessions
        proto.session.redirect(GW2, gw1.ep.loop.time())
        proto.process()
        await until(lambda: gw2.of(ChildSaInstalled), what="the Child SA with the second gateway")
        await until(lambda: not gw1.ep.sessions, what="the old IKE SA deleted by the client")
        (ev,) = cl.of(IkeRedirected)
        assert (ev.gateway, ev.peer, ev.exchange) == (GW2, f"{GW1}[gw.example]", "INFORMATIONAL")
        await roundtrip(cl, gw2, b"after")
        [sa] = endpoint_status(cl.ep)["ike_sas"]
        assert sa["remote_addr"].startswith(GW2) and sa["redirected_from"] == GW1
        assert sa["state"] == "ESTABLISHED"
    finally:
        for side in (cl, gw1, gw2):
            await side.close()


async def test_redirect_init_and_the_loop_limit() -> None:
    """Two gateways with ``redirect_init`` pointing at each other: the client
    follows five redirects (in IKE_SA_INIT), then gives up naming the peer."""
    net = MemoryNetwork()
    gw1, gw2 = await gateway(net, GW1, redirect_init=GW2), await gateway(net, GW2, redirect_init=GW1)
    cl = await client(net)
    try:
        cl.ep.initiate("home")
        await until(lambda: cl.of(KeyingFailed), what="the initiation giving up")
        redirects = cl.of(IkeRedirected)
        assert [e.gateway for e in redirects] == [GW2, GW1, GW2, GW1, GW2]
        assert all(e.exchange == "IKE_SA_INIT" for e in redirects)
        assert [e.peer for e in redirects] == [GW1, GW2, GW1, GW2, GW1]
        (failed,) = cl.of(KeyingFailed)
        assert "redirect loop" in failed.reason and f"by {GW2}" in failed.reason, failed.reason
        deleted = [e.reason for e in cl.of(IkeSaDeleted)]
        assert deleted[0] == f"redirected to {GW2} by {GW1}"
        assert not cl.of(IkeSaEstablished) and not cl.ep.sessions
    finally:
        for side in (cl, gw1, gw2):
            await side.close()


async def test_redirect_init_only_for_clients_that_support_it() -> None:
    net = MemoryNetwork()
    gw1, gw2 = await gateway(net, GW1, redirect_init=GW2), await gateway(net, GW2)
    cl = await client(net)
    old = await client_at(net, "192.0.2.11", follow_redirects=False)
    try:
        cl.ep.initiate("home")
        old.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled) and old.of(ChildSaInstalled), what="both Child SAs")
        assert [e.gateway for e in cl.of(IkeRedirected)] == [GW2]
        [sa] = endpoint_status(cl.ep)["ike_sas"]
        assert sa["remote_addr"].startswith(GW2) and sa["redirected_from"] == GW1
        [sa] = endpoint_status(old.ep)["ike_sas"]  # no REDIRECT_SUPPORTED: served by the first gateway
        assert sa["remote_addr"].startswith(GW1) and sa["redirected_from"] is None
    finally:
        for side in (cl, old, gw1, gw2):
            await side.close()


async def test_a_redirect_during_a_reauthentication_starts_no_second_ike_sa() -> None:
    """The gateway redirects the old IKE SA while the client's make-before-break
    reauthentication of it is under way: the client must not set up a second
    replacement beside the reauthentication's (two IKE SAs with the same
    Child SAs, the bookkeeping of the first one lost); the redirect is not
    followed, the reauthenticated IKE SA replaces the old one alone."""
    net = MemoryNetwork()
    gw1, gw2 = await gateway(net, GW1), await gateway(net, GW2)
    cl = await client(net)
    try:
        cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the first Child SA")
        (old,) = cl.ep.sessions
        (gw_proto,) = gw1.ep.sessions
        done = cl.ep.reauthenticate(old)
        gw_proto.session.redirect(GW2, gw1.ep.loop.time())
        gw_proto.process()
        new = await asyncio.wait_for(done, 5)
        await until(lambda: old.session.is_closed, what="the old IKE SA deleted")
        await asyncio.sleep(0.2)
        assert cl.of(IkeRedirected) and not gw2.ep.sessions
        assert [p for p in cl.ep.sessions if not p.session.is_closed] == [new]
        await roundtrip(cl, gw1, b"after")
    finally:
        for side in (cl, gw1, gw2):
            await side.close()


async def test_a_redirect_that_cannot_be_followed_leaves_the_ike_sa_rekeying() -> None:
    """Following an INFORMATIONAL REDIRECT suspends the old IKE SA's rekey and
    reauthentication times (it is replaced soon).  When the new IKE SA cannot
    start (here its start raises OSError, as an IPv6 gateway on an IPv4-only
    socket does) or fails at the new gateway (one that accepts none of our
    proposals), the old IKE SA stays: its times are put back and its timer
    re-armed, else it would never rekey again and die at its hard lifetime."""
    net = MemoryNetwork()
    gw1 = await gateway(net, GW1)
    gw2 = await gateway(net, GW2, proposals=["aes256gcm16-prfsha384-ecp384"])
    cl = await client(net, rekey_time=3600, reauth_time=7200)
    try:
        cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the first Child SA")
        (old,) = cl.ep.sessions
        (gw_proto,) = gw1.ep.sessions
        sa = old.session.sa
        times = (sa.rekey_at, sa.reauth_at)
        assert max(times) < float("inf")

        def refuse(*_a: Any, **_kw: Any) -> Any:
            raise OSError(97, "Address family not supported by protocol")

        cl.ep._start = refuse  # type: ignore[method-assign]
        gw_proto.session.redirect(GW2, gw1.ep.loop.time())
        gw_proto.process()
        await until(lambda: cl.of(IkeRedirected), what="the redirect at the client")
        assert (sa.rekey_at, sa.reauth_at) == times and old.session.get_timer() <= min(times)
        assert old._timer_at == old.session.get_timer()
        del cl.ep._start  # the gateway that refuses our proposals this time
        gw_proto.session.redirect(GW2, gw1.ep.loop.time())
        gw_proto.process()
        await until(lambda: len(cl.of(IkeRedirected)) == 2, what="the second redirect at the client")
        await until(lambda: [p for p in cl.ep.sessions if not p.session.is_closed] == [old],
                    what="the IKE SA with the second gateway failed")
        assert (sa.rekey_at, sa.reauth_at) == times and old._timer_at == old.session.get_timer()
        await roundtrip(cl, gw1, b"still here")
    finally:
        for side in (cl, gw1, gw2):
            await side.close()


async def test_a_redirect_of_the_reauthentications_new_ike_sa_is_followed_after_it() -> None:
    """The gateway redirects the new IKE SA of a make-before-break
    reauthentication once it is established but before its second Child SA
    is up.  Following at once overwrote the reauthentication's bookkeeping:
    the old IKE SA was never deleted and its future never resolved.  Now the
    reauthentication finishes first (the old IKE SA deleted, the future
    resolved), then the client follows the redirect with both Child SAs."""
    net = MemoryNetwork()
    gw1, gw2 = await gateway(net, GW1, nets=(NET, NET2)), await gateway(net, GW2, nets=(NET, NET2))
    cl = await client(net, nets=(NET, NET2))
    try:
        cl.ep.initiate("home", more_children=["net2"])
        await until(lambda: len(cl.of(ChildSaInstalled)) == 2, what="both Child SAs")
        (old,) = cl.ep.sessions
        (gw_old,) = gw1.ep.sessions

        def redirect_the_new_one(proto: Any, ev: Any) -> None:
            if isinstance(ev, IkeSaEstablished) and proto is not gw_old and not gw1.of(IkeRedirected):
                # right after IKE_AUTH: the client's CREATE_CHILD_SA for net2 has not been answered yet
                proto.session.redirect(GW2, gw1.ep.loop.time())

        gw1.ep.event_listeners.append(redirect_the_new_one)
        done = cl.ep.reauthenticate(old)
        new = await asyncio.wait_for(done, 5)
        (ev,) = cl.of(IkeRedirected)
        assert ev.gateway == GW2 and new is not old
        await until(lambda: old.session.is_closed, what="the old IKE SA deleted")
        await until(lambda: len(gw2.of(ChildSaInstalled)) == 2, what="both Child SAs at the second gateway")
        await until(lambda: new.session.is_closed, what="the reauthenticated IKE SA deleted after the redirect")
        [sa] = endpoint_status(cl.ep)["ike_sas"]
        assert sa["remote_addr"].startswith(GW2) and sa["redirected_from"] == GW1
        await roundtrip(cl, gw2, b"after")
    finally:
        for side in (cl, gw1, gw2):
            await side.close()
