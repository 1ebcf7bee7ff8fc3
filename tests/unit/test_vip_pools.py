"""Virtual IP address pools (aioipsec.ike.v2.pools), the CP attribute codec of
IKE_AUTH (aioipsec.ike.v2.tasks.ike_config) and the pool/vips configuration."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aioipsec.config_file import loads_config
from aioipsec.errors import ConfigError
from aioipsec.ike.constants import CfgAttr, CfgType
from aioipsec.ike.v2.payloads import CpAttribute, CpPayload
from aioipsec.ike.v2.pools import AddressPool, build_pools, parse_pool_addrs
from aioipsec.ike.v2.tasks.ike_config import address_attribute, parse_address, request_payload
from aioipsec.buffer import Buffer

ip = ipaddress.ip_address


# ------------------------------------------------------------------ pool ranges

@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("10.3.0.0/28", "10.3.0.1", "10.3.0.14"),  # network and broadcast skipped
        ("10.3.0.0/30", "10.3.0.1", "10.3.0.2"),
        ("10.3.0.0/31", "10.3.0.0", "10.3.0.1"),  # a /31 has no network/broadcast address
        ("10.3.0.5/28", "10.3.0.5", "10.3.0.14"),  # host bits set: starts there
        ("10.3.0.7/32", "10.3.0.7", "10.3.0.7"),
        ("10.3.0.10..10.3.0.12", "10.3.0.10", "10.3.0.12"),
        ("10.3.0.10-10.3.0.12", "10.3.0.10", "10.3.0.12"),  # swanctl's range syntax
        ("fd00::/120", "fd00::1", "fd00::ff"),  # IPv6: only the network address skipped
        ("fd00::10..fd00::11", "fd00::10", "fd00::11"),
    ],
)
def test_pool_ranges(text: str, first: str, last: str) -> None:
    assert parse_pool_addrs(text) == (ip(first), ip(last))


@pytest.mark.parametrize("text", ["10.3.0.9..10.3.0.1", "10.3.0.1..fd00::1", "nonsense", "10.3.0.0/33", "10.3.0.1..x"])
def test_bad_pool_ranges(text: str) -> None:
    with pytest.raises(ValueError):
        parse_pool_addrs(text)


# ------------------------------------------------------------------ leases

def test_addresses_in_order_and_same_identity_gets_same_lease() -> None:
    pool = AddressPool("rw", "10.3.0.0/28")
    assert pool.size == 14
    assert pool.acquire("alice") == ip("10.3.0.1")
    assert pool.acquire("bob") == ip("10.3.0.2")
    # a second IKE SA of alice shares her lease (online twice)
    assert pool.acquire("alice") == ip("10.3.0.1")
    assert pool.online == 2
    assert pool.release("alice", "10.3.0.1")
    assert pool.leases() == [("10.3.0.1", "alice", True), ("10.3.0.2", "bob", True)]
    assert pool.release("alice", "10.3.0.1")
    assert pool.leases() == [("10.3.0.1", "alice", False), ("10.3.0.2", "bob", True)]
    assert (pool.online, pool.offline) == (1, 1)
    # a new identity does not get alice's offline lease while fresh ones exist
    assert pool.acquire("carol") == ip("10.3.0.3")
    # alice reconnects: her lease again
    assert pool.acquire("alice") == ip("10.3.0.1")
    assert (pool.online, pool.offline) == (3, 0)


def test_release_of_unknown_or_wrong_lease_is_refused() -> None:
    pool = AddressPool("rw", "10.3.0.1..10.3.0.2")
    assert not pool.release("alice", "10.3.0.1")
    assert pool.acquire("alice") == ip("10.3.0.1")
    assert not pool.release("alice", "10.3.0.2")
    assert not pool.release("bob", "10.3.0.1")
    assert pool.release("alice", "10.3.0.1")
    assert not pool.release("alice", "10.3.0.1")  # already offline


def test_exhaustion_then_offline_leases_are_taken_over_oldest_first() -> None:
    pool = AddressPool("rw", "10.3.0.1..10.3.0.2")
    assert pool.acquire("a") == ip("10.3.0.1")
    assert pool.acquire("b") == ip("10.3.0.2")
    assert pool.acquire("c") is None  # every address online
    pool.release("b", "10.3.0.2")
    pool.release("a", "10.3.0.1")
    # full, but b went offline first: c gets b's address, b's lease is gone
    assert pool.acquire("c") == ip("10.3.0.2")
    assert pool.leases() == [("10.3.0.1", "a", False), ("10.3.0.2", "c", True)]
    assert pool.acquire("b") == ip("10.3.0.1")  # a's lease, the only offline one
    assert pool.acquire("a") is None


def test_requested_address_is_honoured_when_free() -> None:
    pool = AddressPool("rw", "10.3.0.0/28")
    assert pool.acquire("a", "10.3.0.9") == ip("10.3.0.9")
    assert pool.acquire("b", "10.3.0.9") == ip("10.3.0.1")  # taken: a fresh one
    assert pool.acquire("c", "192.0.2.1") == ip("10.3.0.2")  # outside the pool
    assert pool.acquire("d", "0.0.0.0") == ip("10.3.0.3")
    # fresh allocation skips the requested one already handed out
    for n in range(4, 9):
        assert pool.acquire(f"x{n}") == ip(f"10.3.0.{n}")
    assert pool.acquire("x9") == ip("10.3.0.10")
    assert pool.acquire("a", "10.3.0.14") == ip("10.3.0.9")  # her own lease wins over a request


def test_ipv6_pool_and_dns() -> None:
    pool = AddressPool("v6", "fd00::/64", dns=["fd00::53"])
    assert pool.version == 6 and pool.size == 2**64 - 1
    assert pool.acquire("a") == ip("fd00::1")
    assert pool.acquire("b") == ip("fd00::2")
    assert pool.dns == (ip("fd00::53"),)
    assert "fd00::ffff" in pool and "10.3.0.1" not in pool and "fd01::1" not in pool


def test_build_pools_keeps_unchanged_pools_with_their_leases() -> None:
    from aioipsec.config import PoolConfig

    first = build_pools([PoolConfig("a", "10.3.0.0/28"), PoolConfig("b", "10.4.0.0/28")])
    first["a"].acquire("alice")
    again = build_pools([PoolConfig("a", "10.3.0.0/28"), PoolConfig("b", "10.4.0.0/29")], keep=first)
    assert again["a"] is first["a"] and again["a"].online == 1
    assert again["b"] is not first["b"]


# ------------------------------------------------------------------ CP attributes

def _roundtrip(cp: CpPayload) -> CpPayload:
    buf = Buffer()
    cp.encode_body(buf)
    return CpPayload.decode_body(Buffer(buf.data))


def test_cfg_request_attributes_on_the_wire() -> None:
    cp = request_payload(["0.0.0.0", "::", "10.3.0.7"])
    assert cp.cfg_type == CfgType.CFG_REQUEST
    assert [(a.attr_type, a.value) for a in cp.attributes] == [
        (CfgAttr.INTERNAL_IP4_ADDRESS, b""),
        (CfgAttr.INTERNAL_IP6_ADDRESS, b""),
        (CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 3, 0, 7])),
        (CfgAttr.INTERNAL_IP4_DNS, b""),
        (CfgAttr.INTERNAL_IP6_DNS, b""),
    ]
    buf = Buffer()
    cp.encode_body(buf)
    # CFG type, 3 reserved, then type/length/value per attribute (RFC 7296 §3.15.1)
    assert buf.data[:8] == bytes([1, 0, 0, 0, 0, 1, 0, 0])
    assert _roundtrip(cp) == cp


def test_cfg_reply_addresses_parse() -> None:
    v4 = address_attribute(ip("10.3.0.1"), 4)
    v6 = address_attribute(ip("fd00::1"), 6)
    assert v4.value == bytes([10, 3, 0, 1])
    assert v6.value == ip("fd00::1").packed + b"\x80"  # address and prefix length
    reply = _roundtrip(CpPayload(CfgType.CFG_REPLY, (
        v4, v6,
        CpAttribute(CfgAttr.INTERNAL_IP4_DNS, bytes([10, 3, 0, 53])),
        CpAttribute(CfgAttr.INTERNAL_IP6_DNS, ip("fd00::53").packed),
    )))
    assert [str(parse_address(a)) for a in reply.attributes] == ["10.3.0.1", "fd00::1", "10.3.0.53", "fd00::53"]


@pytest.mark.parametrize(
    "attr",
    [
        CpAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b""),
        CpAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes(4)),
        CpAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b"\x0a\x03\x00"),
        CpAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, ip("fd00::1").packed),  # no prefix octet
        CpAttribute(CfgAttr.INTERNAL_IP6_DNS, b"\x01" * 17),
        CpAttribute(CfgAttr.APPLICATION_VERSION, b"strongSwan"),
    ],
)
def test_malformed_or_empty_attributes_give_no_address(attr: CpAttribute) -> None:
    assert parse_address(attr) is None


# ------------------------------------------------------------------ configuration

CONF = """
[pools.rw]
addrs = "10.3.0.0/28"
dns = ["10.3.0.53"]

[pools.rw6]
addrs = "fd00::10..fd00::20"

[connections.gw]
pools = ["rw", "rw6"]
local  = {{ auth = "psk", id = "gw.example" }}
remote = {{ auth = "psk" }}
{extra}

[connections.gw.children.net]
local_ts = ["203.0.113.0/24"]

[connections.client]
remote_addrs = ["192.0.2.2"]
vips = {vips}
local  = {{ auth = "psk", id = "client.example" }}
remote = {{ auth = "psk", id = "gw.example" }}

[connections.client.children.net]
remote_ts = ["203.0.113.0/24"]

[secrets.any]
secret = "0x0123456789"
"""


def load(vips: str = '["0.0.0.0", "::"]', extra: str = "", pools_text: str | None = None) -> Any:
    text = CONF.format(vips=vips, extra=extra)
    if pools_text is not None:
        text = text.replace('[pools.rw]\naddrs = "10.3.0.0/28"\ndns = ["10.3.0.53"]', pools_text)
    return loads_config(textwrap.dedent(text), file="rw.toml")


def test_config_loads_pools_and_vips() -> None:
    cfg = load()
    assert cfg.pools["rw"].addrs == "10.3.0.0/28" and cfg.pools["rw"].dns == ["10.3.0.53"]
    assert cfg.pools["rw6"].dns == []
    assert cfg.connections["gw"].pools == ["rw", "rw6"]
    assert cfg.connections["client"].vips == ["0.0.0.0", "::"]
    assert cfg.connections["gw"].vips == [] and cfg.connections["client"].pools == []


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"vips": '["0.0.0.0", "dynamic"]'},
         'rw.toml: connections.client.vips[1]: expected "0.0.0.0", "::" or an IP address, got "dynamic"'),
        ({"vips": "0"}, "rw.toml: connections.client.vips: expected a list of strings, got 0"),
        ({"pools_text": '[pools.rw]\naddrs = "10.3.0.0/33"'},
         'rw.toml: pools.rw.addrs: expected a subnet or an address range a..b, got "10.3.0.0/33"'),
        ({"pools_text": '[pools.rw]\naddrs = "10.3.0.9..10.3.0.1"'},
         "rw.toml: pools.rw.addrs: expected a subnet or an address range a..b"),
        ({"pools_text": '[pools.rw]\ndns = ["10.3.0.53"]'}, 'rw.toml: pools.rw: missing "addrs"'),
        ({"pools_text": '[pools.rw]\naddrs = "10.3.0.0/28"\ndns = ["ns.example"]'},
         'rw.toml: pools.rw.dns[0]: expected an IP address, got "ns.example"'),
        ({"pools_text": '[pools.rw]\naddrs = "10.3.0.0/28"\nadrs = 1'},
         'rw.toml: pools.rw.adrs: unknown key; did you mean "addrs"?'),
        ({"pools_text": '[pools.rw]\naddrs = "fd00::18/126"'}, 'rw.toml: pools.rw6.addrs: overlaps pool "rw"'),
    ],
)
def test_config_errors_name_the_field(kw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**kw)
    assert str(info.value).startswith(message), str(info.value)


def test_unknown_pool_named_by_a_connection() -> None:
    text = textwrap.dedent(CONF.format(vips="[]", extra="")).replace('pools = ["rw", "rw6"]', 'pools = ["rw", "rw7"]')
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="rw.toml")
    assert str(info.value) == 'rw.toml: connections.gw.pools[1]: no pool named "rw7" (defined: rw, rw6)'


def test_ikev1_vips_are_a_mode_config_pull_of_the_initiator() -> None:
    # an IKEv1 client asks for its address by Mode Config (after XAUTH with local-2)
    text = textwrap.dedent(CONF.format(vips='["0.0.0.0"]', extra="")).replace(
        "[connections.client]\n", "[connections.client]\nversion = 1\n")
    cfg = loads_config(text, file="rw.toml")
    assert cfg.connections["client"].version == 1 and cfg.connections["client"].vips == ["0.0.0.0"]
    # ... which only the Phase 1 initiator starts: a responder-only connection cannot pull
    no_peer = text.replace('[connections.client]\nversion = 1\nremote_addrs = ["192.0.2.2"]\n',
                           "[connections.client]\nversion = 1\n")
    assert no_peer != text
    with pytest.raises(ConfigError) as info:
        loads_config(no_peer, file="rw.toml")
    assert str(info.value).startswith("rw.toml: connections.client.vips: IKEv1 virtual IPs are pulled by Mode Config"
                                      " after a Phase 1 we start: the connection needs remote_addrs"), str(info.value)
    # an XAUTH gateway assigns addresses and asks for none
    gw = text.replace('[connections.client]\nversion = 1\n',
                      '[connections.client]\nversion = 1\nremote-2 = { auth = "xauth" }\n') + \
        '\n[secrets.xauth-alice]\nid = "alice"\nsecret = "pw"\n'
    with pytest.raises(ConfigError) as info:
        loads_config(gw, file="rw.toml")
    assert str(info.value).startswith('rw.toml: connections.client.vips: an XAUTH gateway (remote-2 = { auth = "xauth" })'
                                      " assigns virtual IPs from its pools; it asks for none"), str(info.value)


# ------------------------------------------------------------------ daemon: the VIP on the TUN device

def test_daemon_puts_the_virtual_ip_on_the_tun_and_routes_pools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    import aioipsec.daemon as daemon_mod
    from aioipsec.events import IkeSaDeleted, IkeSaEstablished

    cmds: list[list[str]] = []

    def rec(cmd: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        cmds.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(daemon_mod.subprocess, "run", rec)
    p = tmp_path / "rw.toml"
    p.write_text(textwrap.dedent(CONF.format(vips='["0.0.0.0"]', extra="")))
    d = daemon_mod.Daemon(str(p), tun=False)
    d.tun = SimpleNamespace(name="ipsec0")
    # the gateway's dynamic remote side is its pools: routed into the TUN
    d._install_routes()
    assert ["ip", "route", "replace", "10.3.0.0/28", "dev", "ipsec0"] not in cmds  # network/broadcast not leased
    assert ["ip", "route", "replace", "10.3.0.1/32", "dev", "ipsec0"] in cmds
    assert ["ip", "route", "replace", "fd00::10/124", "dev", "ipsec0"] in cmds
    assert ["ip", "route", "replace", "203.0.113.0/24", "dev", "ipsec0"] in cmds
    cmds.clear()
    proto = SimpleNamespace(session=SimpleNamespace(is_closed=False))
    est = IkeSaEstablished(bytes(8), bytes(8), 2, True, ("192.0.2.1", 500), ("192.0.2.2", 500), "c", "g", "x",
                           local_vips=("10.3.0.1", "fd00::10"))
    d._vip_event(proto, est)
    d._vip_event(proto, est)  # an IKE rekey: already there
    assert cmds == [["ip", "addr", "replace", "10.3.0.1/32", "dev", "ipsec0"],
                    ["ip", "addr", "replace", "fd00::10/128", "dev", "ipsec0"]]
    cmds.clear()
    d._vip_event(proto, IkeSaDeleted(bytes(8), bytes(8), "rekeyed"))  # session still open: kept
    assert cmds == []
    proto.session.is_closed = True
    d._vip_event(proto, IkeSaDeleted(bytes(8), bytes(8), "deleted locally"))
    assert cmds == [["ip", "addr", "del", "10.3.0.1/32", "dev", "ipsec0"],
                    ["ip", "addr", "del", "fd00::10/128", "dev", "ipsec0"]]
    assert d.vips == {}
