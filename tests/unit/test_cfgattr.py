"""The configuration attribute codec shared by IKEv2 CP and IKEv1 Mode Config
(aioipsec.ike.cfgattr): round trips, the accepted lengths of each version,
malformed values dropped with a reason (never an exception), the pool
attributes a gateway sends, and the pool keys of the configuration file."""

from __future__ import annotations

import ipaddress
import logging
from types import SimpleNamespace

import pytest

from aioipsec.config_file import ConfigError, loads_config
from aioipsec.ike import cfgattr
from aioipsec.ike.constants import CfgAttr, CfgType
from aioipsec.ike.v1 import constants as v1c
from aioipsec.ike.v1.payloads import CfgAttribute
from aioipsec.ike.v2.payloads import CpAttribute
from aioipsec.ike.v2.pools import AddressPool

ip = ipaddress.ip_address
net = ipaddress.ip_network


def test_one_set_of_enums_for_both_versions() -> None:
    assert v1c.CfgAttr is CfgAttr and v1c.CfgType is CfgType
    assert CfgType.REQUEST == CfgType.CFG_REQUEST == 1 and CfgType.ACK == CfgType.CFG_ACK == 4
    assert (CfgAttr.INTERNAL_IP6_NBNS, CfgAttr.XAUTH_STATUS, CfgAttr.UNITY_SPLIT_INCLUDE) == (11, 16527, 28676)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("cls", [CpAttribute, CfgAttribute])
def test_round_trip_of_every_attribute_we_send(version: int, cls: type) -> None:
    pool = AddressPool("p", "10.3.0.0/28", dns=["10.3.0.53", "fd00::53"], nbns=["10.3.0.137", "fd00::137"],
                       subnet=["10.1.0.0/16", "fd00:1::/48"], split_include=["10.2.0.0/16", "192.168.7.0/24"])
    attrs = [cls(cfgattr.address_type(4), cfgattr.address_value(ip("10.3.0.1"))),
             cls(cfgattr.address_type(6), cfgattr.address_value(ip("fd00::1")))]
    attrs += [cls(t, v) for t, v in cfgattr.pool_attributes([pool], version, unity=True)]
    got = cfgattr.decode(attrs, version, unity=True)
    assert got.dropped == []
    assert got.addresses == ["10.3.0.1", "fd00::1"]
    assert got.dns == ["10.3.0.53", "fd00::53"]
    # INTERNAL_IP6_NBNS and Unity split includes exist in IKEv1 only
    assert got.nbns == (["10.3.0.137", "fd00::137"] if version == 1 else ["10.3.0.137"])
    split = ["10.2.0.0/16", "192.168.7.0/24"] if version == 1 else []
    assert got.subnets == ["10.1.0.0/16", "fd00:1::/48", *split]


def test_values_on_the_wire() -> None:
    assert cfgattr.address_value(ip("fd00::1")) == ip("fd00::1").packed + b"\x80"
    assert cfgattr.address_value(ip("0.0.0.0")) == b"" and cfgattr.address_value(None) == b""
    assert cfgattr.network_value(net("10.1.0.0/16")) == bytes([10, 1, 0, 0, 255, 255, 0, 0])
    assert cfgattr.network_value(net("fd00:1::/48")) == ip("fd00:1::").packed + bytes([48])
    # Cisco Unity: address, netmask and 6 zero octets per network, all in one attribute
    assert cfgattr.encode_split_include([net("10.2.0.0/16"), net("10.9.9.0/24")]) == (
        bytes([10, 2, 0, 0, 255, 255, 0, 0]) + bytes(6) + bytes([10, 9, 9, 0, 255, 255, 255, 0]) + bytes(6))


def test_ipv6_address_lengths_per_version() -> None:
    a16 = CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, ip("fd00::7").packed)
    a17 = CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, ip("fd00::7").packed + b"\x40")
    assert cfgattr.decode([a16, a17], 1).addresses == ["fd00::7"]  # the draft's 16 and strongSwan's 17
    assert cfgattr.decode([a17], 2).addresses == ["fd00::7"]
    got = cfgattr.decode([a16], 2)  # RFC 7296: 17 octets
    assert got.addresses == [] and got.dropped == ["INTERNAL_IP6_ADDRESS of 16 octets (expected 17 in IKEv2)"]


@pytest.mark.parametrize(
    ("attr_type", "value", "why"),
    [
        (CfgAttr.INTERNAL_IP4_ADDRESS, b"\x0a\x03\x00", "INTERNAL_IP4_ADDRESS of 3 octets (expected 4)"),
        (CfgAttr.INTERNAL_IP4_DNS, bytes(16), "INTERNAL_IP4_DNS of 16 octets (expected 4)"),
        (CfgAttr.INTERNAL_IP6_DNS, b"\x01" * 17, "INTERNAL_IP6_DNS of 17 octets (expected 16)"),
        (CfgAttr.INTERNAL_IP4_NBNS, b"\x01", "INTERNAL_IP4_NBNS of 1 octets (expected 4)"),
        (CfgAttr.INTERNAL_IP4_SUBNET, bytes(4), "INTERNAL_IP4_SUBNET of 4 octets (expected 8)"),
        (CfgAttr.INTERNAL_IP4_SUBNET, bytes([10, 1, 0, 0, 255, 0, 255, 0]),
         "INTERNAL_IP4_SUBNET with the netmask 255.0.255.0 (not contiguous)"),
        (CfgAttr.INTERNAL_IP6_SUBNET, bytes(16), "INTERNAL_IP6_SUBNET of 16 octets (expected 17)"),
        (CfgAttr.INTERNAL_IP6_SUBNET, bytes(16) + b"\x81", "INTERNAL_IP6_SUBNET with prefix length 129"),
        (CfgAttr.UNITY_SPLIT_INCLUDE, bytes(13), "UNITY_SPLIT_INCLUDE of 13 octets (expected entries of 14)"),
    ],
)
@pytest.mark.parametrize("version", [1, 2])
def test_malformed_values_are_dropped_with_a_reason(attr_type: int, value: bytes, why: str, version: int) -> None:
    good = CpAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 3, 0, 1]))
    got = cfgattr.decode([CpAttribute(attr_type, value), good], version, unity=True)
    assert got.addresses == ["10.3.0.1"] and got.dns == got.nbns == got.subnets == []
    if attr_type == CfgAttr.UNITY_SPLIT_INCLUDE and version == 2:
        why = "UNITY_SPLIT_INCLUDE from a peer that sent no Cisco Unity vendor ID"
    assert got.dropped == [why]


def test_split_include_needs_the_unity_vendor_id_and_accepts_charons_bare_entry() -> None:
    two = cfgattr.encode_split_include([net("10.2.0.0/16"), net("10.9.9.0/24")])
    a = CfgAttribute(CfgAttr.UNITY_SPLIT_INCLUDE, two)
    assert cfgattr.decode([a], 1, unity=True).subnets == ["10.2.0.0/16", "10.9.9.0/24"]
    got = cfgattr.decode([a], 1, unity=False)
    assert got.subnets == [] and got.dropped == ["UNITY_SPLIT_INCLUDE from a peer that sent no Cisco Unity vendor ID"]
    # charon's split_include pool attribute: one address | netmask, 8 octets
    bare = CfgAttribute(CfgAttr.UNITY_SPLIT_INCLUDE, bytes([172, 16, 0, 0, 255, 240, 0, 0]))
    assert cfgattr.decode([bare], 1, unity=True).subnets == ["172.16.0.0/12"]


def test_empty_zero_and_unused_attributes_are_ignored_not_dropped() -> None:
    attrs = [CpAttribute(CfgAttr.INTERNAL_IP4_ADDRESS), CpAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes(4)),
             CpAttribute(CfgAttr.APPLICATION_VERSION, b"strongSwan"), CpAttribute(CfgAttr.INTERNAL_DNS_DOMAIN, b"x"),
             CpAttribute(0x3FFF, b"\x01\x02")]
    got = cfgattr.decode(attrs, 2)
    assert got == cfgattr.Received()


def test_requested_addresses_keep_a_malformed_request_as_any_address() -> None:
    attrs = [CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b"\x01\x02"), CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 3, 0, 9])),
             CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, ip("fd00::9").packed), CfgAttribute(CfgAttr.INTERNAL_IP4_DNS)]
    assert cfgattr.requested_addresses(attrs, 1) == [
        (4, None, "INTERNAL_IP4_ADDRESS of 2 octets (expected 4)"), (6, ip("fd00::9"), None)]
    assert cfgattr.requested_addresses(attrs, 2)[1] == (
        6, None, "INTERNAL_IP6_ADDRESS of 16 octets (expected 17 in IKEv2)")


def test_pool_attributes_only_what_the_pool_has_each_once() -> None:
    a = SimpleNamespace(dns=(ip("10.3.0.53"),), nbns=(), subnet=(net("10.1.0.0/16"),), split_include=(net("10.2.0.0/16"),))
    b = SimpleNamespace(dns=(ip("10.3.0.53"), ip("fd00::53")), nbns=(ip("fd00::137"),), subnet=(), split_include=())
    assert cfgattr.pool_attributes([a, b], 2) == [
        (CfgAttr.INTERNAL_IP4_DNS, ip("10.3.0.53").packed),
        (CfgAttr.INTERNAL_IP4_SUBNET, bytes([10, 1, 0, 0, 255, 255, 0, 0])),
        (CfgAttr.INTERNAL_IP6_DNS, ip("fd00::53").packed),
    ]
    v1 = cfgattr.pool_attributes([a, b], 1)
    assert (CfgAttr.INTERNAL_IP6_NBNS, ip("fd00::137").packed) in v1
    assert all(t != CfgAttr.UNITY_SPLIT_INCLUDE for t, _ in v1)  # no Unity peer
    assert cfgattr.pool_attributes([a], 1, unity=True)[-1][0] == CfgAttr.UNITY_SPLIT_INCLUDE


# ------------------------------------------------------------------ configuration file

POOL = """
[pools.rw]
addrs = "10.3.0.0/28"
{keys}
"""


def test_pool_keys_parse() -> None:
    cfg = loads_config(POOL.format(keys='dns = ["10.3.0.53", "fd00::53"]\nnbns = "10.3.0.137"\n'
                                        'subnet = ["10.1.2.3/16", "fd00:1::/48"]\nsplit_include = ["10.2.0.0/16"]'))
    p = cfg.pools["rw"]
    assert (p.dns, p.nbns, p.subnet, p.split_include) == (
        ["10.3.0.53", "fd00::53"], ["10.3.0.137"], ["10.1.0.0/16", "fd00:1::/48"], ["10.2.0.0/16"])
    pool = AddressPool.from_config(p)
    assert pool.subnet == (net("10.1.0.0/16"), net("fd00:1::/48")) and pool.same_config(p)


@pytest.mark.parametrize(
    ("keys", "field", "text"),
    [
        ('nbns = ["wins"]', "pools.rw.nbns[0]", 'expected an IP address, got "wins"'),
        ('subnet = ["10.1.0.0/16", "10.1.0.0/33"]', "pools.rw.subnet[1]", "expected a subnet"),
        ('split_include = ["fd00::/64"]', "pools.rw.split_include[0]", "IPv4 subnet"),
        ("subnet = 5", "pools.rw.subnet", "expected a list of strings"),
        ('wins = ["10.0.0.1"]', "pools.rw", "wins"),
    ],
)
def test_pool_key_errors_name_the_field(keys: str, field: str, text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        loads_config(POOL.format(keys=keys))
    assert field in str(exc.value) and text in str(exc.value)


def test_log_dropped_logs_each_reason_with_the_peer_and_returns_the_count(caplog: pytest.LogCaptureFixture) -> None:
    # the one helper of IKEv2 CP (SessionStats.cp_attrs_dropped) and IKEv1 Mode Config (stats["cfg_attrs_dropped"])
    with caplog.at_level(logging.WARNING, logger="aioipsec.ike"):
        assert cfgattr.log_dropped("Mode Config", "REPLY", "192.0.2.2[500]", []) == 0
        assert caplog.records == []
        n = cfgattr.log_dropped("IKE_SA hq", "CFG_REPLY", "192.0.2.2[500]", ["first reason", "second reason"])
    assert n == 2
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("aioipsec.ike", logging.WARNING, "IKE_SA hq: dropped a CFG_REPLY attribute of 192.0.2.2[500]: first reason"),
        ("aioipsec.ike", logging.WARNING, "IKE_SA hq: dropped a CFG_REPLY attribute of 192.0.2.2[500]: second reason"),
    ]
