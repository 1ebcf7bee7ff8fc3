"""The identity of an IKEv2 peer's second certificate or PSK round (RFC 4739,
``remote-2 auth = pubkey | psk``) where charon uses the last round's identity
(``ike_sa_t.get_other_eap_id``): uniqueness (``unique`` compares it: one
machine certificate with two users' certificates is two peers, one user
from two machines is one) and the pool lease (an address per user).  The
IKE identity (``remote_id``, ``PLUTO_PEER_ID``) stays the first round's, and
``PLUTO_XAUTH_ID`` is not set (charon sets it only after EAP or XAUTH)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from asyncwait import Side, until
from ikev2_pair import Pair, cert_pair_configs, make_pki
from test_ikev2_multiauth import user_cert
from updown_daemons import runs, rw_and_gw

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import AuthConfig, PoolConfig, child, connection
from aioipsec.events import AuthFailed, ChildSaInstalled, IkeSaDeleted, IkeSaEstablished
from aioipsec.ike.v2.pools import AddressPool
from aioipsec.status import endpoint_status, format_status
from aioipsec.transports.memory import memory_pipe


@pytest.fixture(scope="module")
def pki():
    return make_pki(("p256",))


# ---------------------------------------------------------------------------- sans-I/O: certificates


def machine_and_user(pki, user: str, pools: dict[str, AddressPool], seed: int) -> Pair:  # type: ignore[no-untyped-def]
    """The machine certificate (``site-a.example``) in round 1, ``user``'s
    certificate in round 2, against a gateway with ``unique = replace`` and
    a pool; the pair established."""
    i, r = cert_pair_configs(pki, "p256")
    cert, key = user_cert(pki, user)
    i.local2 = AuthConfig(auth="pubkey", id=user, cert=cert, private_key=key)
    r.remote2 = AuthConfig(auth="pubkey", id="%any", cacerts=[pki.ca])
    i.vips, r.pools, r.unique = ["0.0.0.0"], ["rw"], "replace"
    p = Pair(i, r, pools=pools, seed=seed)
    p.initiate()
    p.settle()
    assert p.events("r", ChildSaInstalled) and p.events("i", ChildSaInstalled)
    return p


def test_uniqueness_and_leases_follow_the_round2_certificate(pki) -> None:
    pools = {"rw": AddressPool("rw", "10.3.0.0/28")}
    alice = machine_and_user(pki, "alice@example", pools, 1)
    bob = machine_and_user(pki, "bob@example", pools, 2)
    (ea,), (eb,) = alice.events("r", IkeSaEstablished), bob.events("r", IkeSaEstablished)
    # the IKE identity is the machine's for both; the users are told apart by round 2
    assert (ea.remote_id, ea.remote_round2_id) == ("site-a.example", "alice@example")
    assert (eb.remote_id, eb.remote_round2_id) == ("site-a.example", "bob@example")
    assert alice.r.unique_id() == ("hq", "hq.example", "alice@example")
    assert bob.r.unique_id() == ("hq", "hq.example", "bob@example")
    # unique = replace: one machine, two users are not duplicates
    assert bob.r.unique_duplicates([alice.r], initial_contact=False) == (False, [])
    # an address each, leased to the user
    assert (ea.remote_vips, eb.remote_vips) == (("10.3.0.1",), ("10.3.0.2",))
    assert sorted(ident for _ip, ident, _on in pools["rw"].leases()) == ["alice@example", "bob@example"]
    # alice again (the same machine certificate): her first IKE SA is the duplicate, and her address stays hers
    alice2 = machine_and_user(pki, "alice@example", pools, 3)
    assert alice2.r.unique_duplicates([alice.r, bob.r], initial_contact=False) == (False, [alice.r])
    (ea2,) = alice2.events("r", IkeSaEstablished)
    assert ea2.remote_vips == ("10.3.0.1",)
    # an IKE rekey keeps the round-2 identity, so uniqueness still sees the user
    bob.i.rekey_ike_sa(bob.now)
    bob.settle()
    assert bob.events("r", IkeSaEstablished)[-1].remote_round2_id == "bob@example"
    assert bob.r.unique_id() == ("hq", "hq.example", "bob@example")


def test_without_a_second_round_the_ike_identity_is_used(pki) -> None:
    i, r = cert_pair_configs(pki, "p256")
    p = Pair(i, r)
    p.initiate()
    p.settle()
    (er,) = p.events("r", IkeSaEstablished)
    assert er.remote_round2_id is None and p.r.sa.peer_auth_id() == "site-a.example"
    assert p.r.unique_id() == ("hq", "hq.example", "site-a.example")


# ---------------------------------------------------------------------------- endpoints: a PSK second round

GW = "192.0.2.2"
NET = "203.0.113.0/24"
PSK = "round-1 shared group key"
USER_PSK = b"round-2 user key, never logged"


async def gateway(net: MemoryNetwork, unique: str) -> Side:
    gw_in, _app = memory_pipe(queue_size=1024)
    cfg = connection("rw", psk=PSK, local_id="gw.example", remote_id="%any", local_addrs=[GW], dpd_delay=0,
                     pools=["rw"], children=[child("net", local_ts=[NET])], unique=unique,
                     remote2=AuthConfig(auth="psk", id="%any"), psk2=USER_PSK)
    ep = await Endpoint.create(GW, configurations=[cfg], network=net, inner=gw_in,
                               pools=[PoolConfig("rw", "10.3.0.0/28")])
    return Side(ep)


async def client(net: MemoryNetwork, addr: str, user: str, *, wait: bool = True) -> Side:
    """A road warrior: the group PSK as ``rw.example``, then ``user`` with
    its own PSK."""
    c_in, _app = memory_pipe(queue_size=1024)
    cfg = connection("home", psk=PSK, local_id="rw.example", remote_id="gw.example", local_addrs=[addr],
                     remote_addrs=[GW], dpd_delay=0, vips=["0.0.0.0"], children=[child("net", remote_ts=[NET])],
                     initial_contact=False, local2=AuthConfig(auth="psk", id=user), psk2=USER_PSK)
    side = Side(await Endpoint.create(addr, configurations=[cfg], network=net, inner=c_in))
    side.ep.initiate("home")
    if wait:
        await until(lambda: side.of(ChildSaInstalled), what=f"{user}'s Child SA")
    return side


def gw_rows(gw: Side) -> list[dict[str, Any]]:
    return sorted(endpoint_status(gw.ep)["ike_sas"], key=lambda r: r["remote_addr"])


async def test_unique_replace_and_leases_follow_the_round2_psk_identity() -> None:
    net = MemoryNetwork()
    gw = await gateway(net, "replace")
    sides = [gw]
    try:
        # two users behind one group identity: both stay, an address each
        alice = await client(net, "192.0.2.10", "alice@example")
        sides.append(alice)
        bob = await client(net, "192.0.2.11", "bob@example")
        sides.append(bob)
        await until(lambda: len(gw.of(IkeSaEstablished)) == 2, what="both IKE SAs at the gateway")
        assert not gw.of(IkeSaDeleted)
        rows = gw_rows(gw)
        assert [(r["remote_id"], r["remote_round2_id"], r["remote_vips"]) for r in rows] == [
            ("rw.example", "alice@example", ["10.3.0.1"]), ("rw.example", "bob@example", ["10.3.0.2"])]
        assert sorted(ident for _ip, ident, _on in gw.ep.pools["rw"].leases()) == ["alice@example", "bob@example"]
        text = format_status(endpoint_status(gw.ep))
        assert "remote 'rw.example' @ 192.0.2.10[4500] round 2: 'alice@example' [10.3.0.1]" in text, text
        # alice again from another address: one user, her first IKE SA goes; the lease stays hers
        old = next(e for e in gw.of(IkeSaEstablished) if e.remote_round2_id == "alice@example")
        alice2 = await client(net, "192.0.2.12", "alice@example")
        sides.append(alice2)
        await until(lambda: gw.of(IkeSaDeleted), what="alice's first IKE SA replaced")
        (gone,) = gw.of(IkeSaDeleted)
        assert gone.spi_i == old.spi_i and gone.reason.startswith("replaced by a new IKE SA with 192.0.2.12")
        rows = gw_rows(gw)
        assert [(r["remote_addr"], r["remote_round2_id"], r["remote_vips"]) for r in rows] == [
            ("192.0.2.11[4500]", "bob@example", ["10.3.0.2"]), ("192.0.2.12[4500]", "alice@example", ["10.3.0.1"])]
        assert all(USER_PSK.decode() not in repr(endpoint_status(s.ep)) for s in sides)
    finally:
        for side in reversed(sides):
            await side.close()


async def test_unique_keep_refuses_the_same_round2_identity_only() -> None:
    net = MemoryNetwork()
    gw = await gateway(net, "keep")
    sides = [gw]
    try:
        alice = await client(net, "192.0.2.10", "alice@example")
        sides.append(alice)
        bob = await client(net, "192.0.2.11", "bob@example")  # another user: accepted
        sides.append(bob)
        await until(lambda: len(gw.of(IkeSaEstablished)) == 2, what="both IKE SAs at the gateway")
        alice2 = await client(net, "192.0.2.12", "alice@example", wait=False)
        sides.append(alice2)
        await until(lambda: gw.of(AuthFailed), what="alice's second IKE SA refused")
        (fail,) = gw.of(AuthFailed)
        assert "uniqueness policy (unique = keep)" in fail.reason and "round 2 'alice@example'" in fail.reason
        # only the refused attempt went; alice's first IKE SA and bob's stay
        assert len(gw.of(IkeSaEstablished)) == 2
        assert all(d.spi_i not in {e.spi_i for e in gw.of(IkeSaEstablished)} for d in gw.of(IkeSaDeleted))
        await until(lambda: len(gw_rows(gw)) == 2, what="the refused attempt gone")
        assert [(r["remote_addr"], r["remote_round2_id"]) for r in gw_rows(gw)] == [
            ("192.0.2.10[4500]", "alice@example"), ("192.0.2.11[4500]", "bob@example")]
    finally:
        for side in reversed(sides):
            await side.close()


# ---------------------------------------------------------------------------- updown (two daemons)

SECRETS = """
[secrets.ike]
id = ["rw.example", "gw.example"]
secret = "a long group key for the round-2 updown test"
[secrets.ike-alice]
id = ["alice@example"]
secret = "alice's own key, never logged"
"""
R2_RW = """
[connections.gw]
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
vips = ["0.0.0.0"]
local  = {{ auth = "psk", id = "rw.example" }}
local-2 = {{ auth = "psk", id = "alice@example" }}
remote = {{ auth = "psk", id = "gw.example" }}
[connections.gw.children.net]
remote_ts = ["203.0.113.0/24"]
updown = "{script}"
""" + SECRETS
R2_GW = """
[pools.rw]
addrs = "10.3.0.0/28"
[connections.rw]
local_addrs  = ["192.0.2.2"]
pools = ["rw"]
local  = {{ auth = "psk", id = "gw.example" }}
remote = {{ auth = "psk", id = "%any" }}
remote-2 = {{ auth = "psk", id = "alice@example" }}
[connections.rw.children.net]
local_ts = ["203.0.113.0/24"]
updown = "{script}"
""" + SECRETS


async def test_updown_after_a_psk_second_round() -> None:
    """The gateway's lease is the user's (alice@example); the updown
    environment keeps the IKE identity in PLUTO_PEER_ID and, as charon
    (PLUTO_XAUTH_ID only with COND_EAP_AUTHENTICATED / COND_XAUTH_AUTHENTICATED),
    has no PLUTO_XAUTH_ID after a PSK round."""
    d = Path(tempfile.mkdtemp(prefix="aioipsec-r2id-"))
    try:
        async with rw_and_gw(d, R2_RW, R2_GW) as (a, h):
            a.up("gw")
            await until(lambda: a.endpoint.find_session("gw") is not None
                        and len(a.endpoint.find_session("gw").children) == 1, 10, what="the client's Child SA")
            await until(lambda: h.endpoint.find_session("rw") is not None and h.endpoint.find_session("rw").children,
                        what="the gateway's Child SA")
            await a._updown_drain()
            await h._updown_drain()
            assert h.endpoint.pools["rw"].leases() == [("10.3.0.1", "alice@example", True)]
            (rh,) = runs(d / "h.log")
            assert (rh["PLUTO_VERB"], rh["PLUTO_PEER_ID"], rh["PLUTO_PEER_SOURCEIP"]) == (
                "up-client", "rw.example", "10.3.0.1")
            assert "PLUTO_XAUTH_ID" not in rh, rh
            (ra,) = runs(d / "a.log")
            assert "PLUTO_XAUTH_ID" not in ra and ra["PLUTO_MY_SOURCEIP"] == "10.3.0.1"
            assert not any("never logged" in v for env in (ra, rh) for v in env.values())
    finally:
        shutil.rmtree(d, ignore_errors=True)
