"""Virtual IPs (IKEv2 Configuration Payload) end to end, sans-I/O in memory:
a road-warrior client with ``vips = ["0.0.0.0"]`` against a gateway with an
address pool (strongSwan's ``pools``).

Shown: the CP request/reply on the wire, the lease in both sides' events,
Child SA selectors narrowed to the lease, a second identity's lease, the
same lease on reconnect, IKE rekey keeping it, exhaustion failing the
client with FAILED_CP_REQUIRED (and no Child SA on either side), IPv6."""

from __future__ import annotations

import logging

import pytest
from ikev2_pair import Pair

from aioipsec.config import ConnectionConfig, child, connection
from aioipsec.events import ChildSaInstalled, IkeSaDeleted, IkeSaEstablished, NegotiationFailed
from aioipsec.ike.constants import CfgAttr, CfgType, ExchangeType
from aioipsec.ike.v2.message import decode_message
from aioipsec.ike.v2.payloads import CpPayload
from aioipsec.ike.v2.pools import AddressPool

PSK = "road-warrior-psk"
GW_NET = "203.0.113.0/24"


def gateway(pools: list[str] | None = None) -> ConnectionConfig:
    return connection(
        "rw", psk=PSK, local_id="gw.example", remote_id="%any", pools=pools if pools is not None else ["rw"],
        children=[child("net", local_ts=[GW_NET])],
    )


def client(ident: str = "alice.example", vips: list[str] | None = None) -> ConnectionConfig:
    return connection(
        "home", psk=PSK, local_id=ident, remote_id="gw.example", vips=vips if vips is not None else ["0.0.0.0"],
        children=[child("net", remote_ts=[GW_NET])],
    )


def connect(pools: dict[str, AddressPool], ident: str = "alice.example", *, seed: int = 1, **kw) -> Pair:  # type: ignore[no-untyped-def]
    p = Pair(client(ident, **kw), gateway(), pools=pools, seed=seed)
    p.initiate()
    assert p.roundtrip() == (1, 1)  # IKE_SA_INIT
    p.roundtrip()  # IKE_AUTH
    return p


def established(p: Pair, side: str) -> IkeSaEstablished:
    (ev,) = p.events(side, IkeSaEstablished)
    return ev


def child_ts(p: Pair, side: str) -> tuple[list[str], list[str]]:
    (ev,) = p.events(side, ChildSaInstalled)
    return [str(t) for t in ev.local_ts], [str(t) for t in ev.remote_ts]


def test_client_gets_the_first_address_and_selectors_are_narrowed_to_it() -> None:
    pools = {"rw": AddressPool("rw", "10.3.0.0/28", dns=["10.3.0.53"])}
    wire: list[tuple[str, bytes]] = []
    p = Pair(client(), gateway(), pools=pools)
    p.on_deliver = lambda d, data: (wire.append((d, data)), data)[1]
    p.initiate()
    p.run(lambda: bool(p.events("i", ChildSaInstalled)) and bool(p.events("r", ChildSaInstalled)))
    ei, er = established(p, "i"), established(p, "r")
    assert ei.local_vips == ("10.3.0.1",) and ei.remote_vips == () and ei.dns == ("10.3.0.53",)
    assert er.remote_vips == ("10.3.0.1",) and er.local_vips == ()
    # strongSwan: the client's dynamic local_ts is its virtual IP; the gateway's dynamic remote_ts the lease
    assert child_ts(p, "i") == (["10.3.0.1/32"], [GW_NET])
    assert child_ts(p, "r") == ([GW_NET], ["10.3.0.1/32"])
    assert p.i.local_vips == ["10.3.0.1"] and p.r is not None and p.r.remote_vips == ["10.3.0.1"]
    assert pools["rw"].leases() == [("10.3.0.1", "alice.example", True)]
    # the wire: CFG_REQUEST with empty INTERNAL_IP4_ADDRESS and DNS, TSi any; CFG_REPLY with the lease
    req_raw = next(d for k, d in wire if k == "i>r" and d[18] == ExchangeType.IKE_AUTH)
    resp_raw = next(d for k, d in wire if k == "r>i" and d[18] == ExchangeType.IKE_AUTH)
    assert p.r is not None
    req = decode_message(req_raw, p.r.sa.sk)
    resp = decode_message(resp_raw, p.i.sa.sk)
    (cpreq,) = req.get_all(CpPayload)
    assert cpreq.cfg_type == CfgType.CFG_REQUEST
    assert [(a.attr_type, a.value) for a in cpreq.attributes] == [
        (CfgAttr.INTERNAL_IP4_ADDRESS, b""), (CfgAttr.INTERNAL_IP4_DNS, b"")]
    from aioipsec.ike.v2.payloads import TsiPayload

    assert [str(t) for t in req.get(TsiPayload).selectors] == ["0.0.0.0/0"]  # type: ignore[union-attr]
    (cprep,) = resp.get_all(CpPayload)
    assert cprep.cfg_type == CfgType.CFG_REPLY
    assert [(a.attr_type, a.value) for a in cprep.attributes] == [
        (CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 3, 0, 1])), (CfgAttr.INTERNAL_IP4_DNS, bytes([10, 3, 0, 53]))]


def test_second_identity_gets_the_next_address_and_reconnect_the_same_lease() -> None:
    pools = {"rw": AddressPool("rw", "10.3.0.0/28")}
    a = connect(pools, "alice.example")
    b = connect(pools, "bob.example", seed=2)
    assert established(a, "i").local_vips == ("10.3.0.1",)
    assert established(b, "i").local_vips == ("10.3.0.2",)
    assert child_ts(b, "r") == ([GW_NET], ["10.3.0.2/32"])
    # alice goes away: her lease goes offline (released), not to someone else
    a.i.delete(a.now)
    a.roundtrip()
    assert a.r is not None and a.r.is_closed
    assert pools["rw"].leases() == [("10.3.0.1", "alice.example", False), ("10.3.0.2", "bob.example", True)]
    c = connect(pools, "carol.example", seed=3)
    assert established(c, "i").local_vips == ("10.3.0.3",)
    again = connect(pools, "alice.example", seed=4)
    assert established(again, "i").local_vips == ("10.3.0.1",)
    assert child_ts(again, "i") == (["10.3.0.1/32"], [GW_NET])
    assert pools["rw"].online == 3


def test_ike_rekey_keeps_the_lease() -> None:
    pools = {"rw": AddressPool("rw", "10.3.0.0/28")}
    p = connect(pools)
    assert p.r is not None
    p.clear_events()
    p.i.rekey_ike_sa(p.now)
    p.settle()
    ei, er = p.events("i", IkeSaEstablished), p.events("r", IkeSaEstablished)
    assert len(ei) == 1 and ei[0].rekeyed_from is not None and ei[0].local_vips == ("10.3.0.1",)
    assert len(er) == 1 and er[0].remote_vips == ("10.3.0.1",)
    assert [e.reason for e in p.events("r", IkeSaDeleted)] == ["rekeyed"]  # the old IKE SA only
    assert not p.r.is_closed and pools["rw"].leases() == [("10.3.0.1", "alice.example", True)]
    # a later Child SA (CREATE_CHILD_SA) uses the virtual IP as its dynamic local side
    p.i.create_child_sa("net", p.now)
    p.settle()
    (new_child,) = p.events("i", ChildSaInstalled)
    assert [str(t) for t in new_child.local_ts] == ["10.3.0.1/32"]
    p.i.delete(p.now)
    p.settle()
    assert p.r.is_closed and pools["rw"].leases() == [("10.3.0.1", "alice.example", False)]


def test_exhausted_pool_fails_the_client_with_failed_cp_required(caplog: pytest.LogCaptureFixture) -> None:
    pools = {"rw": AddressPool("rw", "10.3.0.1..10.3.0.1")}
    first = connect(pools, "alice.example")
    assert established(first, "i").local_vips == ("10.3.0.1",)
    caplog.set_level(logging.INFO, "aioipsec.ike")
    p = connect(pools, "bob.example", seed=2)
    (failed,) = p.events("i", NegotiationFailed)
    assert failed.notify == "FAILED_CP_REQUIRED" and failed.exchange == "IKE_AUTH"
    assert failed.peer == "192.0.2.2[gw.example]"
    assert "INTERNAL_ADDRESS_FAILURE" in failed.reason
    assert p.i.is_closed and p.i.closed_reason.startswith("FAILED_CP_REQUIRED")
    assert not p.events("i", IkeSaEstablished) and not p.events("i", ChildSaInstalled)
    assert not p.events("r", ChildSaInstalled)  # RFC 7296 §3.10.1: no Child SA with INTERNAL_ADDRESS_FAILURE
    assert "pool rw exhausted, no address for 192.0.2.1[bob.example]" in caplog.text
    assert "FAILED_CP_REQUIRED IKE_AUTH peer=192.0.2.2[gw.example]" in caplog.text
    # the client deleted the IKE SA at once; the gateway let it go, the pool is untouched
    p.roundtrip()
    assert p.r is not None and p.r.is_closed
    assert [e.reason for e in p.events("r", IkeSaDeleted)] == ["deleted by peer"]
    assert pools["rw"].leases() == [("10.3.0.1", "alice.example", True)]


def test_gateway_without_pools_fails_the_client_but_a_plain_client_is_served() -> None:
    p = Pair(client(), gateway(pools=[]), pools={})
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    (failed,) = p.events("i", NegotiationFailed)
    assert failed.notify == "FAILED_CP_REQUIRED" and "no configuration reply" in failed.reason
    # a client that requests nothing gets nothing and keeps its own address as selector
    pools = {"rw": AddressPool("rw", "10.3.0.0/28")}
    q = connect(pools, vips=[])
    assert established(q, "i").local_vips == () and established(q, "r").remote_vips == ()
    assert child_ts(q, "r") == ([GW_NET], ["192.0.2.1/32"])
    assert pools["rw"].leases() == []


def test_requested_address_and_ipv6() -> None:
    pools = {"rw": AddressPool("rw", "10.3.0.0/28"), "rw6": AddressPool("rw6", "fd00:3::/120", dns=["fd00:3::53"])}
    gw = gateway(pools=["rw", "rw6"])
    gw.children["net"].local_ts = []
    from aioipsec.selectors import parse_ts

    gw.children["net"].local_ts = [parse_ts(GW_NET), parse_ts("2001:db8:3::/48")]
    cl = client(vips=["10.3.0.9", "::"])
    cl.children["net"].remote_ts = [parse_ts(GW_NET), parse_ts("2001:db8:3::/48")]
    p = Pair(cl, gw, pools=pools)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    ei = established(p, "i")
    assert ei.local_vips == ("10.3.0.9", "fd00:3::1") and ei.dns == ("fd00:3::53",)
    assert child_ts(p, "i") == (["10.3.0.9/32", "fd00:3::1/128"], [GW_NET, "2001:db8:3::/48"])
    assert child_ts(p, "r") == ([GW_NET, "2001:db8:3::/48"], ["10.3.0.9/32", "fd00:3::1/128"])
