"""The IKEv2 EAP identity where strongSwan uses it instead of the IKE IDi:
the ``IkeSaEstablished`` event (``remote_eap_id`` on the gateway,
``local_eap_id`` on the client, kept by an IKE rekey), ``status`` (JSON and
swanctl's ``EAP: 'alice'``), uniqueness (``unique`` compares the peer's EAP
identity: two EAP users sharing one IDi are two peers, one EAP user from two
IKE identities is one) and the pool lease (an address per EAP user).  Never
the password."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from asyncwait import Side, until
from ikev2_pair import Pair, psk_pair_configs
from updown_daemons import runs, rw_and_gw

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import AuthConfig, PoolConfig, child, connection
from aioipsec.events import ChildSaInstalled, IkeSaDeleted, IkeSaEstablished
from aioipsec.status import endpoint_status, format_status
from aioipsec.transports.memory import memory_pipe

PASSWORDS = {"alice": b"alice-pw-never-logged", "bob": b"bob-pw-never-logged"}


def eap_pair_configs(eap_id: str = "alice"):  # type: ignore[no-untyped-def]
    i, r = psk_pair_configs()
    i.local = AuthConfig(auth="eap-gtc", id="site-a.example", eap_id=eap_id)
    i.eap_secrets = {eap_id: PASSWORDS[eap_id]}
    r.remote = AuthConfig(auth="eap-gtc", id="%any")
    r.eap_secrets = dict(PASSWORDS)
    return i, r


def test_event_carries_the_eap_identity_and_an_ike_rekey_keeps_it() -> None:
    p = Pair(*eap_pair_configs())
    p.initiate()
    p.settle()
    (ei,), (er,) = p.events("i", IkeSaEstablished), p.events("r", IkeSaEstablished)
    # the gateway: the peer's EAP identity next to its IDi; the client: its own
    assert (er.remote_id, er.remote_eap_id, er.local_eap_id) == ("site-a.example", "alice", None)
    assert (ei.remote_id, ei.local_eap_id, ei.remote_eap_id) == ("hq.example", "alice", None)
    assert all(pw.decode() not in repr(ev) for ev in (ei, er) for pw in PASSWORDS.values())
    assert p.r.unique_id() == ("hq", "hq.example", "eap:alice")
    p.i.rekey_ike_sa(p.now)
    p.settle()
    ei2, er2 = p.events("i", IkeSaEstablished)[-1], p.events("r", IkeSaEstablished)[-1]
    assert ei2.rekeyed_from == er2.rekeyed_from == ei.spi_i
    assert (er2.remote_eap_id, ei2.local_eap_id) == ("alice", "alice")
    assert p.r.unique_id() == ("hq", "hq.example", "eap:alice")


def test_without_eap_there_is_no_eap_identity() -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    p.settle()
    for side in ("i", "r"):
        (ev,) = p.events(side, IkeSaEstablished)
        assert ev.local_eap_id is None and ev.remote_eap_id is None
    assert p.r.unique_id() == ("hq", "hq.example", "site-a.example")


# ---------------------------------------------------------------------------- a gateway in memory

GW = "192.0.2.2"
NET = "203.0.113.0/24"
PSK = "eap-identity-gateway-psk"


async def gateway(net: MemoryNetwork) -> Side:
    gw_in, _app = memory_pipe(queue_size=1024)
    cfg = connection("rw", psk=PSK, local_id="gw.example", remote_id="%any", local_addrs=[GW], dpd_delay=0,
                     pools=["rw"], children=[child("net", local_ts=[NET])], unique="replace",
                     remote=AuthConfig(auth="eap-gtc", id="%any"), eap_secrets=dict(PASSWORDS))
    ep = await Endpoint.create(GW, configurations=[cfg], network=net, inner=gw_in,
                               pools=[PoolConfig("rw", "10.3.0.0/28")])
    return Side(ep)


async def client(net: MemoryNetwork, addr: str, ident: str, user: str) -> Side:
    c_in, _app = memory_pipe(queue_size=1024)
    cfg = connection("home", psk=PSK, local_id=ident, remote_id="gw.example", local_addrs=[addr],
                     remote_addrs=[GW], dpd_delay=0, vips=["0.0.0.0"], children=[child("net", remote_ts=[NET])],
                     initial_contact=False, local=AuthConfig(auth="eap-gtc", id=ident, eap_id=user),
                     eap_secrets={user: PASSWORDS[user]})
    side = Side(await Endpoint.create(addr, configurations=[cfg], network=net, inner=c_in))
    side.ep.initiate("home")
    await until(lambda: side.of(ChildSaInstalled), what=f"{user}'s Child SA")
    return side


def gw_rows(gw: Side) -> list[dict[str, Any]]:
    return sorted(endpoint_status(gw.ep)["ike_sas"], key=lambda r: r["remote_addr"])


async def test_uniqueness_status_and_leases_follow_the_eap_identity() -> None:
    net = MemoryNetwork()
    gw = await gateway(net)
    sides = [gw]
    try:
        # two road warriors sharing one IKE identity, two EAP users: both stay (unique = replace)
        alice = await client(net, "192.0.2.10", "rw.example", "alice")
        sides.append(alice)
        bob = await client(net, "192.0.2.11", "rw.example", "bob")
        sides.append(bob)
        await until(lambda: len(gw.of(IkeSaEstablished)) == 2, what="both IKE SAs at the gateway")
        assert not gw.of(IkeSaDeleted)
        rows = gw_rows(gw)
        assert [(r["remote_id"], r["remote_eap_id"], r["local_eap_id"]) for r in rows] == [
            ("rw.example", "alice", None), ("rw.example", "bob", None)]
        # a virtual IP each: the pool leases by EAP identity
        assert [r["remote_vips"] for r in rows] == [["10.3.0.1"], ["10.3.0.2"]]
        assert sorted(ident for _ip, ident, _on in gw.ep.pools["rw"].leases()) == ["alice", "bob"]
        text = format_status(endpoint_status(gw.ep))
        assert "remote 'rw.example' @ 192.0.2.10[4500] EAP: 'alice' [10.3.0.1]" in text, text
        assert "remote 'rw.example' @ 192.0.2.11[4500] EAP: 'bob' [10.3.0.2]" in text, text
        # the client shows the identity it authenticated with
        (crow,) = endpoint_status(alice.ep)["ike_sas"]
        assert (crow["local_eap_id"], crow["remote_eap_id"]) == ("alice", None)
        assert crow["local_vips"] == ["10.3.0.1"]  # the CFG_REPLY of the final response after EAP
        assert "EAP: 'alice'" in format_status(endpoint_status(alice.ep))
        for st in (endpoint_status(gw.ep), endpoint_status(alice.ep)):
            assert all(pw.decode() not in repr(st) for pw in PASSWORDS.values())
        # alice again, from another IKE identity and address: one EAP user, her first IKE SA goes
        old = next(e for e in gw.of(IkeSaEstablished) if e.remote_eap_id == "alice")
        alice2 = await client(net, "192.0.2.12", "laptop.example", "alice")
        sides.append(alice2)
        await until(lambda: gw.of(IkeSaDeleted), what="alice's first IKE SA replaced")
        (gone,) = gw.of(IkeSaDeleted)
        assert gone.spi_i == old.spi_i and gone.reason.startswith("replaced by a new IKE SA with 192.0.2.12")
        rows = gw_rows(gw)
        assert [(r["remote_addr"], r["remote_id"], r["remote_eap_id"]) for r in rows] == [
            ("192.0.2.11[4500]", "rw.example", "bob"), ("192.0.2.12[4500]", "laptop.example", "alice")]
        # the lease stayed with alice
        assert rows[1]["remote_vips"] == ["10.3.0.1"]
    finally:
        for side in reversed(sides):
            await side.close()


# ---------------------------------------------------------------------------- updown (two daemons)

EAP_RW = """
[connections.gw]
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
vips = ["0.0.0.0"]
local  = {{ auth = "eap-gtc", id = "rw.example", eap_id = "alice" }}
remote = {{ auth = "psk", id = "gw.example" }}
[connections.gw.children.net]
remote_ts = ["203.0.113.0/24"]
updown = "{script}"
[secrets.ike]
id = ["rw.example", "gw.example"]
secret = "a long pre-shared key for the EAP updown test"
[secrets.eap-alice]
id = "alice"
secret = "alice-pw-never-logged"
"""
EAP_GW = """
[pools.rw]
addrs = "10.3.0.0/28"
[connections.rw]
local_addrs  = ["192.0.2.2"]
pools = ["rw"]
local  = {{ auth = "psk", id = "gw.example" }}
remote = {{ auth = "eap-gtc", id = "%any" }}
[connections.rw.children.net]
local_ts = ["203.0.113.0/24"]
updown = "{script}"
[secrets.ike]
id = ["rw.example", "gw.example"]
secret = "a long pre-shared key for the EAP updown test"
[secrets.eap-alice]
id = "alice"
secret = "alice-pw-never-logged"
"""


async def test_updown_exports_the_eap_identity_on_the_gateway() -> None:
    d = Path(tempfile.mkdtemp(prefix="aioipsec-eapid-"))
    try:
        async with rw_and_gw(d, EAP_RW, EAP_GW) as (a, h):
            a.up("gw")
            await until(lambda: a.endpoint.find_session("gw") is not None
                        and len(a.endpoint.find_session("gw").children) == 1, 10, what="the client's Child SA")
            await until(lambda: h.endpoint.find_session("rw") is not None and h.endpoint.find_session("rw").children,
                        what="the gateway's Child SA")
            await a._updown_drain()
            await h._updown_drain()
            (rh,) = runs(d / "h.log")
            # the gateway: the EAP identity, as charon's updown plugin (COND_EAP_AUTHENTICATED)
            assert (rh["PLUTO_VERB"], rh["PLUTO_XAUTH_ID"], rh["PLUTO_PEER_ID"]) == ("up-client", "alice", "rw.example")
            assert rh["PLUTO_PEER_SOURCEIP"] == "10.3.0.1"
            (ra,) = runs(d / "a.log")
            # the client authenticated itself: no EAP condition there in charon either
            assert "PLUTO_XAUTH_ID" not in ra, ra
            # its virtual IP came with the final IKE_AUTH response (AUTH without IDr after EAP)
            assert (ra["PLUTO_MY_CLIENT"], ra["PLUTO_MY_SOURCEIP"]) == ("10.3.0.1/32", "10.3.0.1")
            assert not any("alice-pw" in v for env in (ra, rh) for v in env.values())
        down = runs(d / "h.log")[1:]
        assert [(r["PLUTO_VERB"], r.get("PLUTO_XAUTH_ID")) for r in down] == [("down-client", "alice")]
    finally:
        shutil.rmtree(d, ignore_errors=True)
