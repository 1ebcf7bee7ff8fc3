"""Pool attributes beyond the address, in memory: a gateway's pool with
``dns`` (IPv4 and IPv6), ``nbns``, ``subnet`` and (IKEv1, Cisco Unity)
``split_include`` reaches the client in both IKE versions, which reports
them in IkeSaEstablished (``dns``, ``nbns``, ``remote_subnets``); a
malformed attribute is dropped, counted and logged, not fatal."""

from __future__ import annotations

import ipaddress
import logging

from ikev1_pair import Pair as Pair1
from ikev2_pair import Pair as Pair2
from test_ikev1_xauth import configs as v1_configs
from test_ikev1_xauth import open_transactions

from aioipsec.config import PoolConfig, child, connection
from aioipsec.events import ChildSaInstalled, IkeSaEstablished
from aioipsec.ike import cfgattr
from aioipsec.ike.constants import CfgAttr, CfgType
from aioipsec.ike.v1.constants import VID_CISCO_UNITY
from aioipsec.ike.v1.tasks import phase1_task
from aioipsec.ike.v2.pools import AddressPool, build_pools

POOL = PoolConfig("rw", "10.3.0.0/28", dns=["10.3.0.53", "fd00::53"], nbns=["10.3.0.137", "fd00::137"],
                  subnet=["10.1.0.0/16", "fd00:1::/48"], split_include=["10.2.0.0/16", "192.168.7.0/24"])
PSK = "road-warrior-psk"


# ------------------------------------------------------------------ IKEv2


def v2_pair() -> Pair2:
    gw = connection("rw", psk=PSK, local_id="gw.example", remote_id="%any", pools=["rw"],
                    children=[child("net", local_ts=["10.1.0.0/16"])])
    cl = connection("home", psk=PSK, local_id="alice.example", remote_id="gw.example", vips=["0.0.0.0"],
                    children=[child("net", remote_ts=["10.1.0.0/16"])])
    p = Pair2(cl, gw, pools={"rw": AddressPool.from_config(POOL)})
    p.initiate()
    p.run(lambda: bool(p.events("i", ChildSaInstalled)) and bool(p.events("r", ChildSaInstalled)))
    return p


def test_ikev2_client_gets_dns_nbns_and_subnets_from_the_pool() -> None:
    p = v2_pair()
    (ev,) = p.events("i", IkeSaEstablished)
    assert ev.local_vips == ("10.3.0.1",)
    assert ev.dns == ("10.3.0.53", "fd00::53")
    assert ev.nbns == ("10.3.0.137",)  # RFC 7296 has no INTERNAL_IP6_NBNS: not sent in IKEv2
    assert ev.remote_subnets == ("10.1.0.0/16", "fd00:1::/48")  # split includes are IKEv1 Unity only
    assert p.i.stats.cp_attrs_dropped == 0


def test_ikev2_malformed_attribute_is_dropped_counted_and_logged(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    # the gateway encodes its IPv4 subnet with a 3-octet value
    real = cfgattr.network_value
    monkeypatch.setattr(cfgattr, "network_value", lambda n: b"\x0a\x01\x00" if n.version == 4 else real(n))
    with caplog.at_level(logging.WARNING, logger="aioipsec.ike"):
        p = v2_pair()
    (ev,) = p.events("i", IkeSaEstablished)
    assert ev.local_vips == ("10.3.0.1",) and ev.remote_subnets == ("fd00:1::/48",)
    assert p.i.stats.cp_attrs_dropped == 1
    assert f"dropped a CFG_REPLY attribute of {p.i.peer}: INTERNAL_IP4_SUBNET of 3 octets (expected 8)" in caplog.text
    # the line names the connection too (cfgattr.log_dropped, shared with IKEv1's "Mode Config: ...")
    assert f"IKE_SA home: dropped a CFG_REPLY attribute of {p.i.peer}: INTERNAL_IP4_SUBNET" in caplog.text


# ------------------------------------------------------------------ IKEv1 Mode Config


def v1_pair() -> tuple[Pair1, list]:
    ci, cr = v1_configs()
    p = Pair1(ci, cr)
    p.r.pools = build_pools([POOL])
    p.r_sas = []
    done = p.r._phase1_done

    def phase1_done(sa, now):  # type: ignore[no-untyped-def]
        p.r_sas.append(sa)
        done(sa, now)

    p.r._phase1_done = phase1_done
    return p, []


def test_ikev1_client_gets_dns_nbns_subnets_and_unity_split_includes() -> None:
    p, _ = v1_pair()
    p.start()
    assert VID_CISCO_UNITY in p.wire[0].data and VID_CISCO_UNITY in p.wire[1].data  # MM1 and MM2
    (ev,) = p.of("i", IkeSaEstablished)
    assert ev.local_vips == ("10.3.0.1",)
    assert ev.dns == ("10.3.0.53", "fd00::53")
    assert ev.nbns == ("10.3.0.137", "fd00::137")
    assert ev.remote_subnets == ("10.1.0.0/16", "fd00:1::/48", "10.2.0.0/16", "192.168.7.0/24")
    msgs = open_transactions(p)
    (who, req), (_, reply) = msgs[-2:]
    assert (who, req.cfg_type, reply.cfg_type) == ("i", CfgType.REQUEST, CfgType.REPLY)
    assert req.get(CfgAttr.UNITY_SPLIT_INCLUDE).value == b""  # asked for, as strongSwan's unity plugin
    split = reply.get(CfgAttr.UNITY_SPLIT_INCLUDE).value
    assert split == cfgattr.encode_split_include([ipaddress.IPv4Network("10.2.0.0/16"),
                                                  ipaddress.IPv4Network("192.168.7.0/24")])
    assert len(split) == 28
    assert reply.get(CfgAttr.INTERNAL_IP4_SUBNET).value == bytes([10, 1, 0, 0, 255, 255, 0, 0])
    assert p.i.stats["cfg_attrs_dropped"] == 0
    assert p.of("i", ChildSaInstalled)


def test_ikev1_no_split_include_without_the_unity_vendor_id(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = phase1_task.vendor_ids

    def no_unity(cfg, *, initiator, peer=None):  # type: ignore[no-untyped-def]
        out = real(cfg, initiator=initiator, peer=peer)
        return [v for v in out if getattr(v, "data", None) != VID_CISCO_UNITY] if initiator else out

    monkeypatch.setattr(phase1_task, "vendor_ids", no_unity)
    p, _ = v1_pair()
    p.start()
    assert not any(VID_CISCO_UNITY in d.data for d in p.wire[:2])  # the gateway does not announce it either
    (ev,) = p.of("i", IkeSaEstablished)
    assert ev.remote_subnets == ("10.1.0.0/16", "fd00:1::/48") and ev.nbns == ("10.3.0.137", "fd00::137")
    (_, reply) = open_transactions(p)[-1]
    assert reply.get(CfgAttr.UNITY_SPLIT_INCLUDE) is None


def test_ikev1_malformed_attribute_is_dropped_counted_and_logged(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cfgattr, "encode_split_include", lambda nets: bytes(13))
    with caplog.at_level(logging.WARNING, logger="aioipsec.ike"):
        p, _ = v1_pair()
        p.start()
    (ev,) = p.of("i", IkeSaEstablished)
    assert ev.local_vips == ("10.3.0.1",) and ev.remote_subnets == ("10.1.0.0/16", "fd00:1::/48")
    assert p.i.stats["cfg_attrs_dropped"] == 1
    assert f"Mode Config: dropped a REPLY attribute of {p.i.peer}: UNITY_SPLIT_INCLUDE of 13 octets" in caplog.text
