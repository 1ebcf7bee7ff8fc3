"""IKEv2 uniqueness (swanctl ``unique``) on an in-memory road-warrior gateway:
a client loses its state (its endpoint closes without a Delete, as after a
reboot) and connects again from the same address.  With ``unique = "no"``
(the default) its INITIAL_CONTACT makes the gateway delete the old IKE SA and
its Child SAs before answering: one IKE SA (the new SPIs) and one Child SA
pair are left, traffic flows at once, the virtual IP is the same lease and
never went offline in between, and a Delete went to the old SA's peer address.
``never`` keeps both; ``replace`` replaces even without INITIAL_CONTACT;
``keep`` refuses the newcomer with AUTHENTICATION_FAILED (but gives way to
INITIAL_CONTACT, as charon); another identity's IKE SA is never touched."""

from __future__ import annotations

from typing import Any

import pytest
from asyncwait import Side, until

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import PoolConfig, child, connection
from aioipsec.events import (
    AuthFailed,
    ChildSaDeleted,
    ChildSaInstalled,
    IkeSaDeleted,
    IkeSaEstablished,
)
from aioipsec.netutil import parse_udp, udp_packet
from aioipsec.status import endpoint_status
from aioipsec.transports.memory import memory_pipe

GW = "192.0.2.2"
NET = "203.0.113.0/24"
SERVER = "203.0.113.20"
PSK = "unique-asyncio-psk"
ALICE, BOB = "192.0.2.10", "192.0.2.11"


async def gateway(net: MemoryNetwork, unique: str | None) -> Side:
    gw_in, app = memory_pipe(queue_size=1024)
    extra = {} if unique is None else {"unique": unique}
    cfg = connection("rw", psk=PSK, local_id="gw.example", remote_id="%any", local_addrs=[GW], dpd_delay=0,
                     pools=["rw"], children=[child("net", local_ts=[NET])], **extra)
    ep = await Endpoint.create(GW, configurations=[cfg], network=net, inner=gw_in,
                               pools=[PoolConfig("rw", "10.3.0.0/28")])
    return Side(ep, app)


async def client(net: MemoryNetwork, addr: str, ident: str, *, initial_contact: bool = True) -> Side:
    c_in, app = memory_pipe(queue_size=1024)
    cfg = connection("home", psk=PSK, local_id=ident, remote_id="gw.example", local_addrs=[addr],
                     remote_addrs=[GW], dpd_delay=0, vips=["0.0.0.0"], children=[child("net", remote_ts=[NET])],
                     initial_contact=initial_contact)
    ep = await Endpoint.create(addr, configurations=[cfg], network=net, inner=c_in)
    return Side(ep, app)


async def connect(side: Side) -> IkeSaEstablished:
    side.ep.initiate("home")
    await until(lambda: side.of(ChildSaInstalled), what="the client's Child SA")
    (est,) = side.of(IkeSaEstablished)
    return est


def gw_sas(gw: Side) -> list[dict[str, Any]]:
    return endpoint_status(gw.ep)["ike_sas"]


async def roundtrip(cl: Side, gw: Side, vip: str, text: bytes) -> None:
    """A packet from the client's virtual IP reaches the gateway network, the answer comes back."""
    n_gw, n_cl = len(gw.received), len(cl.received)
    cl.app.send_batch([udp_packet(vip, SERVER, 40000, 7, text)])
    await until(lambda: len(gw.received) > n_gw, what="the packet at the gateway network")
    u = parse_udp(gw.received[-1])
    assert u is not None and (u[0], u[4]) == (vip, text)
    gw.app.send_batch([udp_packet(SERVER, vip, 7, 40000, b"re: " + text)])
    await until(lambda: len(cl.received) > n_cl, what="the answer at the client")
    u = parse_udp(cl.received[-1])
    assert u is not None and u[4] == b"re: " + text


async def test_a_client_that_lost_its_state_replaces_its_ike_sa_with_initial_contact() -> None:
    net = MemoryNetwork()
    gw = await gateway(net, None)  # the default: unique = no
    assert gw.ep.configurations["rw"].unique == "no"
    alice = await client(net, ALICE, "alice.example")
    bob = await client(net, BOB, "bob.example")
    alice2 = None
    try:
        first = await connect(alice)
        await connect(bob)
        (vip,) = first.local_vips
        await roundtrip(alice, gw, vip, b"before")
        old_spis = (first.spi_i.hex(), first.spi_r.hex())
        old_child_spis = {e.spi_in for e in gw.of(ChildSaInstalled) if e.remote_addr[0] == ALICE}
        assert len(old_child_spis) == 1
        pool = gw.ep.pools["rw"]
        online_after_release: list[int] = []
        release = pool.release

        def watched(identity: str, address: Any) -> bool:
            ok = release(identity, address)
            online_after_release.append(int(identity in pool._online))
            return ok

        pool.release = watched  # type: ignore[method-assign]
        deletes_to_alice: list[bytes] = []

        def tap(_src: Any, data: bytes, dst: Any) -> None:
            # IKE on 4500 after the non-ESP marker, an INFORMATIONAL of the old IKE SA
            if dst[0] == ALICE and data[:4] == bytes(4) and data[4:12].hex() == old_spis[0] and data[22] == 37:
                deletes_to_alice.append(data)

        net.tap = tap
        # alice's machine reboots: no Delete, and comes back from the same address
        await alice.close(delete=False)
        alice2 = await client(net, ALICE, "alice.example")
        gw.events.clear()
        second = await connect(alice2)
        await until(lambda: any(isinstance(e, IkeSaDeleted) for e in gw.events), what="the old IKE SA deleted")
        # traffic flows at once, from the same virtual IP
        assert second.local_vips == (vip,)
        await roundtrip(alice2, gw, vip, b"after")
        # the gateway: alice's old IKE SA and Child SAs are gone, with a Delete to her old address
        (gone,) = gw.of(IkeSaDeleted)
        assert (gone.spi_i.hex(), gone.spi_r.hex()) == old_spis
        assert gone.reason == f"replaced by a new IKE SA with {ALICE}[4500] (INITIAL_CONTACT)"
        assert {e.spi_in for e in gw.of(ChildSaDeleted)} == old_child_spis
        assert len(deletes_to_alice) == 1
        sas = gw_sas(gw)
        mine = [s for s in sas if s["remote_addr"].startswith(ALICE) or s.get("remote_id") == "alice.example"]
        assert len(sas) == 2 and len(mine) == 1, sas  # alice's new one and bob's
        assert (mine[0]["spi_i"], mine[0]["spi_r"]) == (second.spi_i.hex(), second.spi_r.hex())
        assert len(mine[0]["children"]) == 1
        # one Child SA pair with alice in the data plane, the new one, sending and receiving
        dp = gw.ep.dataplane
        (new_child,) = [e for e in gw.of(ChildSaInstalled) if e.remote_addr[0] == ALICE]
        assert [spi for spi, p in dp.sad_in.items() if p.remote[0] == ALICE] == [new_child.spi_in]
        assert len([p for p in dp.outbound if p.remote[0] == ALICE]) == 1
        # the lease moved without going offline in between
        assert online_after_release == [1]
        assert pool.leases() == [("10.3.0.1", "alice.example", True), ("10.3.0.2", "bob.example", True)]
        assert pool._online["alice.example"] == 1 and pool.holds("alice.example")
        # bob (another identity) was not touched
        assert not [e for e in bob.events if isinstance(e, (IkeSaDeleted, ChildSaDeleted))]
        await roundtrip(bob, gw, "10.3.0.2", b"bob still")
    finally:
        net.tap = None
        for side in (alice2, bob, gw):
            if side is not None:
                await side.close()


async def restart(net: MemoryNetwork, gw: Side, unique: str, *, initial_contact: bool) -> tuple[Side, Side, Side]:
    """alice connects, loses her state and connects again; returns (old alice, new alice, bob)."""
    alice = await client(net, ALICE, "alice.example", initial_contact=initial_contact)
    bob = await client(net, BOB, "bob.example", initial_contact=initial_contact)
    await connect(alice)
    await connect(bob)
    await alice.close(delete=False)
    alice2 = await client(net, ALICE, "alice.example", initial_contact=initial_contact)
    alice2.ep.initiate("home")
    return alice, alice2, bob


@pytest.mark.parametrize(("unique", "initial_contact"), [("never", True), ("no", False)])
async def test_never_and_no_without_initial_contact_keep_both(unique: str, initial_contact: bool) -> None:
    net = MemoryNetwork()
    gw = await gateway(net, unique)
    _old, alice2, bob = await restart(net, gw, unique, initial_contact=initial_contact)
    try:
        await until(lambda: alice2.of(ChildSaInstalled), what="the new Child SA")
        assert len(gw_sas(gw)) == 3  # alice's stale one stays until DPD or expiry
        assert not gw.of(IkeSaDeleted) and not gw.of(ChildSaDeleted)
    finally:
        for side in (alice2, bob, gw):
            await side.close()


async def test_replace_replaces_without_initial_contact() -> None:
    net = MemoryNetwork()
    gw = await gateway(net, "replace")
    _old, alice2, bob = await restart(net, gw, "replace", initial_contact=False)
    try:
        await until(lambda: alice2.of(ChildSaInstalled), what="the new Child SA")
        await until(lambda: gw.of(IkeSaDeleted), what="the old IKE SA deleted")
        (gone,) = gw.of(IkeSaDeleted)
        assert gone.reason == f"replaced by a new IKE SA with {ALICE}[4500] (unique = replace)"
        sas = gw_sas(gw)
        (est,) = alice2.of(IkeSaEstablished)
        assert len(sas) == 2
        assert (est.spi_i.hex(), est.spi_r.hex()) in {(s["spi_i"], s["spi_r"]) for s in sas}
        await roundtrip(alice2, gw, est.local_vips[0], b"replaced")
        assert not [e for e in bob.events if isinstance(e, (IkeSaDeleted, ChildSaDeleted))]
    finally:
        for side in (alice2, bob, gw):
            await side.close()


async def test_keep_refuses_the_newcomer_unless_it_lost_its_state() -> None:
    net = MemoryNetwork()
    gw = await gateway(net, "keep")
    _old, alice2, bob = await restart(net, gw, "keep", initial_contact=False)
    try:
        await until(lambda: alice2.of(AuthFailed) or alice2.of(IkeSaDeleted), what="the refusal")
        assert not alice2.of(IkeSaEstablished)
        (failed,) = alice2.of(AuthFailed)
        assert "AUTHENTICATION_FAILED" in failed.reason
        (refused,) = gw.of(AuthFailed)
        assert "uniqueness policy (unique = keep)" in refused.reason
        sas = gw_sas(gw)
        assert len(sas) == 2 and not gw.of(ChildSaDeleted)  # the first one of alice and bob's
        # the same client with INITIAL_CONTACT: it lost its state, so it replaces the old one
        await alice2.close(delete=False)
        alice3 = await client(net, ALICE, "alice.example", initial_contact=True)
        try:
            est = await connect(alice3)
            await until(lambda: gw.of(IkeSaDeleted), what="the old IKE SA deleted")
            assert len(gw_sas(gw)) == 2
            await roundtrip(alice3, gw, est.local_vips[0], b"kept out no more")
        finally:
            await alice3.close()
    finally:
        for side in (bob, gw):
            await side.close()
