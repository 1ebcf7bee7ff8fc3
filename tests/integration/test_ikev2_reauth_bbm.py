"""IKEv2 reauthentication break-before-make (strongswan.conf's
``charon.make_before_break = no``, our ``GlobalConfig.make_before_break =
False`` / ``[daemon] make_before_break = false``), in memory: the client
deletes its old IKE SA (and so its Child SA) *before* any new IKE_SA_INIT
goes out -- checked on the wire and in the event order at both ends -- then
initiates the connection again: a new IKE SA with new SPIs, the same child
and virtual IP, and numbered packets flow again (traffic stops in between,
unlike make-before-break).  ``reauth_time`` then schedules the next
reauthentication of the new IKE SA; an unanswered delete still leads to the
new IKE SA (charon: "trying to reestablish IKE_SA anyway"); ``stop_keying``
(``down``) during the delete means no new IKE SA."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncwait import Pump, Side, until

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import GlobalConfig, PoolConfig, child, connection
from aioipsec.events import (
    ChildSaDeleted,
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
PSK = "reauth-bbm-psk"
ALICE = "192.0.2.10"
IKE_SA_INIT, INFORMATIONAL = 34, 37


async def gateway(net: MemoryNetwork) -> Side:
    gw_in, app = memory_pipe(queue_size=4096)
    cfg = connection("rw", psk=PSK, local_id="gw.example", remote_id="%any", local_addrs=[GW], dpd_delay=0,
                     pools=["rw"], children=[child("net", local_ts=[NET])])
    ep = await Endpoint.create(GW, configurations=[cfg], network=net, inner=gw_in,
                               pools=[PoolConfig("rw", "10.3.0.0/28")])
    return Side(ep, app, echo_from=SERVER)


async def client(net: MemoryNetwork, **kw: Any) -> Side:
    c_in, app = memory_pipe(queue_size=4096)
    cfg = connection("home", psk=PSK, local_id="alice.example", remote_id="gw.example", local_addrs=[ALICE],
                     remote_addrs=[GW], dpd_delay=0, vips=["0.0.0.0"], children=[child("net", remote_ts=[NET])],
                     **kw)
    ep = await Endpoint.create(ALICE, configurations=[cfg], network=net, inner=c_in,
                               global_config=GlobalConfig(make_before_break=False))
    return Side(ep, app)


class Wire:
    """Every IKE datagram on the network, in order: (source address,
    exchange type, response?, SPIi)."""

    def __init__(self, net: MemoryNetwork) -> None:
        self.log: list[tuple[str, int, bool, bytes]] = []
        net.tap = self._tap

    def _tap(self, src: Any, data: bytes, dst: Any) -> None:
        if dst[1] == 4500:
            if data[:4] != bytes(4):
                return  # ESP in UDP, a keepalive
            data = data[4:]
        elif dst[1] != 500:
            return  # ESP, AH
        if len(data) >= 28:
            self.log.append((src[0], data[18], bool(data[19] & 0x20), data[:8]))

    def first(self, exchange: int, spi_i: bytes, *, response: bool = False) -> int:
        return next(i for i, (_s, x, r, spi) in enumerate(self.log) if (x, r, spi) == (exchange, response, spi_i))

    def inits(self) -> list[int]:
        return [i for i, (s, x, r, _spi) in enumerate(self.log) if (s, x, r) == (ALICE, IKE_SA_INIT, False)]


def drop_informational(spi_i: bytes) -> Any:
    """A ``MemoryNetwork.mangle`` that drops the INFORMATIONAL exchanges of
    the IKE SA ``spi_i`` (port 500, or 4500 behind the non-ESP marker)."""

    def mangle(_src: Any, data: bytes, dst: Any) -> bytes | None:
        ike = data[4:] if dst[1] == 4500 and data[:4] == bytes(4) else data if dst[1] == 500 else b""
        return None if len(ike) >= 28 and ike[:8] == spi_i and ike[18] == INFORMATIONAL else data

    return mangle


def sas(side: Side) -> list[dict[str, Any]]:
    return endpoint_status(side.ep)["ike_sas"]  # type: ignore[no-any-return]


def answers(cl: Side) -> set[int]:
    return {int(parse_udp(p)[4][len(b"re: n"):]) for p in cl.received}  # type: ignore[index]


async def test_reauth_time_break_before_make() -> None:
    net = MemoryNetwork()
    wire = Wire(net)
    gw = await gateway(net)
    cl = await client(net, reauth_time=1.5, rand_time=0)
    marks: dict[str, int] = {}
    try:
        cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the Child SA")
        (first,) = cl.of(IkeSaEstablished)
        (vip,) = first.local_vips
        (old_child,) = cl.of(ChildSaInstalled)
        pump = Pump(cl, vip, SERVER)

        def mark(_p: Any, ev: Any) -> None:  # packets sent once the new Child SA is in (client side)
            if isinstance(ev, ChildSaInstalled) and ev.spi_in != old_child.spi_in:
                marks.setdefault("new_child", pump.sent)

        cl.ep.event_listeners.append(mark)
        await until(lambda: pump.sent > 20 and len(cl.received) > 10, what="traffic before the reauthentication")
        await until(lambda: len(cl.of(IkeSaEstablished)) == 2, timeout=6, what="the new IKE SA")
        await until(lambda: "new_child" in marks, what="the new Child SA")
        await until(lambda: pump.sent > marks["new_child"] + 20, what="traffic after the reauthentication")
        sent = pump.sent
        await pump.stop()
        await until(lambda: set(range(marks["new_child"], sent)) <= answers(cl), timeout=3,
                    what="every packet sent after the new Child SA answered")

        old = (first.spi_i, first.spi_r)
        second = cl.of(IkeSaEstablished)[1]
        (req,) = [e for e in cl.of(ReauthRequired) if (e.spi_i, e.spi_r) == old]
        assert req.children == ("net",)
        # on the wire: the client's delete of the old IKE SA, and the gateway's answer, before any new IKE_SA_INIT
        delete_at = wire.first(INFORMATIONAL, first.spi_i)
        answered_at = wire.first(INFORMATIONAL, first.spi_i, response=True)
        new_init_at = wire.first(IKE_SA_INIT, second.spi_i)
        assert wire.inits()[0] < delete_at < answered_at < new_init_at == wire.inits()[1]
        assert wire.log[delete_at][0] == ALICE and wire.log[answered_at][0] == GW
        # events at both ends: the old IKE SA and its Child SA down, then the new ones up
        for side in (cl, gw):
            old_gone = side.index(lambda e: isinstance(e, IkeSaDeleted) and (e.spi_i, e.spi_r) == old)
            child_gone = side.index(lambda e: isinstance(e, ChildSaDeleted)
                                    and e.spi_in in (old_child.spi_in, old_child.spi_out))
            new_up = side.index(lambda e: isinstance(e, IkeSaEstablished) and e.spi_i == second.spi_i)
            new_child = side.index(lambda e: isinstance(e, ChildSaInstalled) and e.ike_spi_i == second.spi_i)
            assert child_gone < new_up and old_gone < new_up < new_child
        assert cl.of(IkeSaDeleted)[0].reason == "deleted locally"
        assert gw.of(IkeSaDeleted)[0].reason == "deleted by peer"
        # a new IKE SA (IKE_AUTH again, not a rekey): new SPIs, same virtual IP, same child and selectors
        assert second.rekeyed_from is None and second.spi_i != first.spi_i and second.spi_r != first.spi_r
        assert second.local_vips == (vip,) and second.remote_id == first.remote_id
        (new_child,) = [e for e in cl.of(ChildSaInstalled) if e.ike_spi_i == second.spi_i]
        assert new_child.name == "net" and (new_child.local_ts, new_child.remote_ts) == (old_child.local_ts,
                                                                                         old_child.remote_ts)
        assert {new_child.spi_in, new_child.spi_out}.isdisjoint({old_child.spi_in, old_child.spi_out})
        # the answers are the packets sent, no duplicate
        got = [parse_udp(p)[4] for p in cl.received]  # type: ignore[index]
        assert len(got) == len(set(got))
        for side in (cl, gw):
            [sa] = sas(side)
            assert (sa["spi_i"], sa["spi_r"]) == (second.spi_i.hex(), second.spi_r.hex())
        # reauth_time schedules the next one on the new IKE SA: break-before-make again
        await until(lambda: len(cl.of(IkeSaEstablished)) == 3, timeout=6, what="the next reauthentication")
        third = cl.of(IkeSaEstablished)[2]
        assert cl.index(lambda e: isinstance(e, IkeSaDeleted) and e.spi_i == second.spi_i) < cl.index(
            lambda e: e is third)
        assert wire.first(INFORMATIONAL, second.spi_i) < wire.first(IKE_SA_INIT, third.spi_i)
        await until(lambda: len(sas(gw)) == 1 and len(sas(cl)) == 1, what="one IKE SA at each end")
    finally:
        await cl.close()
        await gw.close()


async def test_reauthenticate_now_break_before_make() -> None:
    """``Endpoint.reauthenticate`` (``aioipsec rekey NAME --reauth``): its
    future is the new session once its Child SA is up; the old one is closed."""
    net = MemoryNetwork()
    wire = Wire(net)
    gw = await gateway(net)
    cl = await client(net)
    try:
        proto = cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the Child SA")
        old_i = proto.session.spi_i
        new = await asyncio.wait_for(cl.ep.reauthenticate(proto), 5)
        assert new is not proto and new.session.is_established and proto.session.is_closed
        assert [c.name for c in new.children.values()] == ["net"]
        assert wire.first(INFORMATIONAL, old_i, response=True) < wire.first(IKE_SA_INIT, new.session.spi_i)
        assert not cl.ep.keying("home")
        await until(lambda: len(sas(gw)) == 1, what="one IKE SA at the gateway")
        assert sas(gw)[0]["spi_i"] == new.session.spi_i.hex()
    finally:
        await cl.close()
        await gw.close()


async def test_an_unanswered_delete_still_reestablishes() -> None:
    """As charon ("delete during reauthentication failed, trying to
    reestablish IKE_SA anyway"): the gateway never sees the delete."""
    net = MemoryNetwork()
    wire = Wire(net)
    gw = await gateway(net)
    cl = await client(net, retransmit_timeout=0.2, retransmit_tries=1)
    try:
        proto = cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the Child SA")
        old_i = proto.session.spi_i
        net.mangle = drop_informational(old_i)
        fut = cl.ep.reauthenticate(proto)
        new = await asyncio.wait_for(fut, 8)
        (gone,) = [e for e in cl.of(IkeSaDeleted) if e.spi_i == old_i]
        assert gone.reason != "deleted locally"  # closed unanswered
        assert new.session.is_established and [c.name for c in new.children.values()] == ["net"]
        assert wire.first(INFORMATIONAL, old_i) < wire.first(IKE_SA_INIT, new.session.spi_i)
        assert not gw.of(IkeSaDeleted)  # the gateway keeps the old one until it expires
    finally:
        net.mangle = None
        await cl.close()
        await gw.close()


async def test_stop_keying_during_the_delete_means_no_new_ike_sa() -> None:
    """``down`` (``Endpoint.stop_keying``) while the old IKE SA is being
    deleted: it goes, and no new IKE SA follows."""
    net = MemoryNetwork()
    wire = Wire(net)
    gw = await gateway(net)
    cl = await client(net, retransmit_timeout=0.2, retransmit_tries=1)
    try:
        proto = cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the Child SA")
        old_i = proto.session.spi_i
        net.mangle = drop_informational(old_i)
        fut = cl.ep.reauthenticate(proto)
        assert cl.ep.stop_keying("home")
        await until(lambda: proto.session.is_closed, timeout=5, what="the old IKE SA closed")
        await asyncio.sleep(0.3)
        assert len(wire.inits()) == 1 and not sas(cl)
        try:
            await asyncio.wait_for(fut, 1)
        except RuntimeError as exc:
            assert "stopped" in str(exc)
        else:
            raise AssertionError("the reauthentication should have been stopped")
    finally:
        net.mangle = None
        await cl.close()
        await gw.close()


async def test_make_before_break_is_the_default() -> None:
    """Without the option the new IKE_SA_INIT goes out before the old IKE SA's delete."""
    assert GlobalConfig().make_before_break is True
    net = MemoryNetwork()
    wire = Wire(net)
    gw = await gateway(net)
    c_in, app = memory_pipe(queue_size=64)
    cfg = connection("home", psk=PSK, local_id="alice.example", remote_id="gw.example", local_addrs=[ALICE],
                     remote_addrs=[GW], dpd_delay=0, children=[child("net", remote_ts=[NET])])
    cl = Side(await Endpoint.create(ALICE, configurations=[cfg], network=net, inner=c_in), app)
    try:
        proto = cl.ep.initiate("home")
        await until(lambda: cl.of(ChildSaInstalled), what="the Child SA")
        new = await asyncio.wait_for(cl.ep.reauthenticate(proto), 5)
        await until(lambda: proto.session.is_closed, what="the old IKE SA deleted")
        assert wire.first(IKE_SA_INIT, new.session.spi_i) < wire.first(INFORMATIONAL, proto.session.spi_i)
    finally:
        await cl.close()
        await gw.close()
