"""Configuration attributes beyond the virtual IP against charon 5.9.8, in network
namespaces: DNS (IPv4 and IPv6), NBNS and INTERNAL_IP4/6_SUBNET in the IKEv2
Configuration Payload, and IKEv1 Mode Config with the Cisco Unity
UNITY_SPLIT_INCLUDE; each product once as the gateway (pool) and once as the client.
Each test takes a few seconds (the four about 5 s here).

What charon shows of what it received: the attribute names in its message summary
(``CPRP(ADDR DNS DNS6 NBNS SUBNET)``), ``processing <type> attribute`` for each, and,
with ``enc = 3``, the parsed payload bytes, from which :func:`charon_parsed_cp` takes
the attribute values as charon decoded them.  This charon has no handler for DNS,
NBNS or SUBNET (no resolve/attr plugin: the harness must not touch the host's
resolv.conf), so it logs ``handling <type> attribute failed`` for each: received
and parsed, not used.  The unity plugin does use a split include (see the IKEv1 tests).

Our side reports what a client received in the daemon's IkeSaEstablished log line
(``dns``, ``nbns``, ``remote_subnets``; ``status --json`` does not carry them).
The harness renders only ``addrs``/``dns`` of a pool for the daemon and loads no
unity plugin into charon: both are extended per test through ``monkeypatch``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

import pytest

from . import aioipsec_peer
from . import strongswan as ss_mod
from .netns import Topology
from .strongswan import XAUTH_PLUGIN, Connection
from .test_ikev2_strongswan import establish
from .test_ikev2_virtual_ips import VIP, VIP_CHARON, ping_from_vip

pytestmark = pytest.mark.interop

ADDRS = "10.3.0.0/28"
DNS4, DNS6 = "10.3.0.53", "2001:db8:53::53"
NBNS = "10.3.0.137"
# configuration attribute types (RFC 7296 §3.15.1, Cisco Unity)
IP4_ADDRESS, IP4_DNS, IP4_NBNS, IP6_DNS, IP4_SUBNET, IP6_SUBNET = 1, 3, 4, 10, 13, 15
UNITY_SPLIT_INCLUDE = 28676


def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def our_pool_keys(monkeypatch: pytest.MonkeyPatch, **keys: Sequence[str]) -> None:
    """Give the aioipsec daemon's ``[pools.rw]`` the extra ``keys`` (dns, nbns, subnet,
    split_include): the harness renders only ``addrs``/``dns``, so its TOML renderer is
    wrapped for this test (monkeypatch undoes it)."""
    render = aioipsec_peer.render_aioipsec_config
    lines = "".join(f"{k} = {aioipsec_peer._toml_value(list(v))}\n" for k, v in keys.items())

    def patched(*args, **kwargs):  # type: ignore[no-untyped-def]
        text = render(*args, **kwargs)
        assert "[pools.rw]\n" in text, text
        return text.replace("[pools.rw]\n", "[pools.rw]\n" + lines, 1)

    monkeypatch.setattr(aioipsec_peer, "render_aioipsec_config", patched)


def charon_plugins(monkeypatch: pytest.MonkeyPatch, *extra: str) -> None:
    """Load ``extra`` charon plugins too (the harness's list has no unity plugin)."""
    monkeypatch.setattr(ss_mod, "BASE_PLUGINS", ss_mod.BASE_PLUGINS + "".join(f" {p}" for p in extra))


_PARSING_CP = re.compile(r"parsing CONFIGURATION(?:_V1)? payload, \d+ bytes left\n"
                         r".*parsing payload from => (\d+) bytes.*\n((?:.*\] <[^>]*>\s+\d+: .*\n)+)")
_HEX = re.compile(r"\]\s<[^>]*>\s+\d+: ((?:[0-9A-F]{2} )+)")


def charon_parsed_cp(log: str) -> list[list[tuple[int, bytes]]]:
    """The (type, value) attributes of every configuration payload (IKEv2 CP, IKEv1
    attribute payload) charon parsed, from its ``enc = 3`` hex dumps, in log order.
    Both have 8 octets before the attributes; IKEv1's basic (TV) form is 2 octets."""
    out = []
    for m in _PARSING_CP.finditer(log):
        data = b"".join(bytes.fromhex(h.group(1)) for h in _HEX.finditer(m.group(2)))
        body = data[: int.from_bytes(data[2:4], "big")]
        attrs, i = [], 8
        while i + 4 <= len(body):
            word = int.from_bytes(body[i : i + 2], "big")
            if word & 0x8000:
                attrs.append((word & 0x7FFF, body[i + 2 : i + 4]))
                i += 4
                continue
            n = int.from_bytes(body[i + 2 : i + 4], "big")
            attrs.append((word & 0x7FFF, body[i + 4 : i + 4 + n]))
            i += 4 + n
        out.append(attrs)
    return out


def with_address(cps: list[list[tuple[int, bytes]]]) -> list[tuple[int, bytes]]:
    """The one parsed payload that assigns an IPv4 address (the reply)."""
    (reply,) = [a for a in cps if (IP4_ADDRESS, packed(VIP)) in a]
    return reply


def established(log: str) -> str:
    """The daemon's last IkeSaEstablished log line."""
    found = re.findall(r"IkeSaEstablished\(.*", log)
    assert found, log[-3000:]
    return found[-1]


# --------------------------------------------------------------------------- IKEv2


def test_charon_client_receives_dns_nbns_and_subnet_from_our_pool(aioipsec, strongswan, monkeypatch,
                                                                 direct_topology: Topology) -> None:
    """Our gateway's pool has dns (IPv4 + IPv6), nbns and subnet (IPv4 + IPv6): charon
    (``vips = 0.0.0.0``, asking only for CPRQ(ADDR)) gets all of them, as charon's own
    gateway sends every pool attribute, and parses each with the length it expects
    (an IPv6 DNS of 16 octets, an IPv6 subnet of 17).  Its log::

        parsed IKE_AUTH response 1 [ IDr AUTH CPRP(ADDR DNS DNS6 NBNS SUBNET SUBNET6) SA TSi TSr ]
        processing INTERNAL_IP4_DNS attribute
        handling INTERNAL_IP4_DNS attribute failed        (no handler plugin loaded)
        ... the same for INTERNAL_IP6_DNS, INTERNAL_IP4_NBNS, INTERNAL_IP4/6_SUBNET
        installing new virtual IP 10.3.0.1
    """
    topo = direct_topology
    subnet, subnet6 = topo.right.inner_net4, topo.right.inner_net6
    client = Connection.named("ikev2-psk-gcm", local_ts="dynamic", ike_options={"vips": "0.0.0.0"})
    gateway = Connection.named("ikev2-psk-gcm", remote_ts="dynamic", ike_options={"pools": "rw"},
                               pools={"rw": {"addrs": ADDRS}})
    our_pool_keys(monkeypatch, dns=[DNS4, DNS6], nbns=[NBNS], subnet=[subnet, subnet6])
    ss = strongswan(topo, "left", client, charon_options=VIP_CHARON, debug={"enc": 3})
    aio = aioipsec(topo, "right", gateway)
    establish(aio, ss, "strongswan")
    ss.wait_log(rf"installing new virtual IP {re.escape(VIP)}", timeout=5)
    slog = ss.logs()
    assert re.search(r"generating IKE_AUTH request 1 \[ .*CPRQ\(ADDR\) ", slog)
    assert re.search(r"parsed IKE_AUTH response 1 \[ IDr AUTH CPRP\(ADDR DNS DNS6 NBNS SUBNET SUBNET6\) SA TSi TSr \]",
                     slog)
    for name in ("INTERNAL_IP4_DNS", "INTERNAL_IP6_DNS", "INTERNAL_IP4_NBNS", "INTERNAL_IP4_SUBNET",
                 "INTERNAL_IP6_SUBNET"):
        assert f"processing {name} attribute" in slog, name
        assert f"handling {name} attribute failed" in slog, name  # parsed; no plugin to use it
    net, net6 = ipaddress.IPv4Network(subnet), ipaddress.IPv6Network(subnet6)
    assert with_address(charon_parsed_cp(slog)) == [
        (IP4_ADDRESS, packed(VIP)),
        (IP4_DNS, packed(DNS4)),
        (IP6_DNS, packed(DNS6)),  # 16 octets: charon would refuse another length
        (IP4_NBNS, packed(NBNS)),
        (IP4_SUBNET, net.network_address.packed + net.netmask.packed),
        (IP6_SUBNET, net6.network_address.packed + bytes([net6.prefixlen])),  # 17 octets
    ]
    assert "invalid" not in slog.lower() and "parsing failed" not in slog
    sent, received = ping_from_vip(topo, "left")
    assert (sent, received) == (3, 3)


def test_our_client_reports_dns_nbns_and_subnet_from_charons_pool(aioipsec, strongswan,
                                                                  direct_topology: Topology) -> None:
    """charon's pool ``dns = 10.3.0.53, 2001:db8:53::53``, ``nbns``, ``subnet``; charon
    logs ``building INTERNAL_IP4_DNS attribute`` ... and ``generating IKE_AUTH response 1
    [ IDr AUTH CPRP(ADDR DNS DNS6 NBNS SUBNET) SA TSi TSr ]`` (the IPv6 DNS too, to a
    client that asked for IPv4 only); the daemon reports them all in IkeSaEstablished."""
    topo = direct_topology
    client = Connection.named("ikev2-psk-gcm", local_ts="dynamic", ike_options={"vips": "0.0.0.0"})
    pool = {"addrs": ADDRS, "dns": f"{DNS4}, {DNS6}", "nbns": NBNS, "subnet": topo.right.inner_net4}
    gateway = Connection.named("ikev2-psk-gcm", remote_ts="dynamic", ike_options={"pools": "rw"},
                               pools={"rw": pool})
    ss = strongswan(topo, "right", gateway)
    aio = aioipsec(topo, "left", client)
    establish(aio, ss, "aioipsec")
    slog = ss.logs()
    assert re.search(r"parsed IKE_AUTH request 1 \[ CPRQ\(ADDR DNS\) ", slog)
    assert re.search(r"generating IKE_AUTH response 1 \[ IDr AUTH CPRP\(ADDR DNS DNS6 NBNS SUBNET\) SA TSi TSr \]",
                     slog)
    alog = aio.logs()
    ev = established(alog)
    assert f"local_vips=('{VIP}',)" in ev, ev
    assert f"dns=('{DNS4}', '{DNS6}')" in ev, ev
    assert f"nbns=('{NBNS}',)" in ev, ev
    assert f"remote_subnets=('{topo.right.inner_net4}',)" in ev, ev
    assert "dropped a CFG_REPLY attribute" not in alog
    sent, received = ping_from_vip(topo, "left")
    assert (sent, received) == (3, 3)


# --------------------------------------------------------------------------- IKEv1 Mode Config, Cisco Unity

V1 = "ikev1-main-psk-aes128-sha1"
needs_xauth = pytest.mark.skipif(not XAUTH_PLUGIN.exists(),
                                 reason=f"{XAUTH_PLUGIN} missing (Debian package libcharon-extauth-plugins)")


def v1_client() -> Connection:
    return Connection.named(V1, local_ts="dynamic", ike_options={"vips": "0.0.0.0"},
                            local2={"auth": "xauth", "xauth_id": "alice"},
                            xauth_secrets={"alice": "alice-xauth-pw"})


def v1_gateway(pool: Mapping[str, str]) -> Connection:
    return Connection.named(V1, remote_ts="dynamic", ike_options={"pools": "rw"}, pools={"rw": dict(pool)},
                            remote2={"auth": "xauth"}, xauth_secrets={"alice": "alice-xauth-pw"})


@needs_xauth
def test_charon_unity_client_receives_our_split_include(aioipsec, strongswan, monkeypatch,
                                                        direct_topology: Topology) -> None:
    """charon with the unity plugin and ``cisco_unity = yes`` sends the Cisco Unity
    vendor ID and asks ``CPRQ(ADDR U_SPLITINC U_LOCALLAN)``; our gateway answers the
    pool's attributes and its split include 203.0.113.128/26.  charon then proposes
    0.0.0.0/0 as our side of Quick Mode (unity_narrow.c: ``changing proposed traffic
    selectors for other: 0.0.0.0/0``) and, after our answer, ``narrowed CHILD_SA to
    UNITY_SPLIT_INCLUDE 203.0.113.128/26``.  Before the fix of this test's commit our
    gateway refused that Quick Mode: ``INVALID_ID_INFORMATION child ?: no child
    configuration matches 10.3.0.1/32 === 0.0.0.0/0``; now it echoes the IDs and
    installs its configured local selector, as a charon gateway does."""
    topo = direct_topology
    split = "203.0.113.128/26"
    our_pool_keys(monkeypatch, dns=[DNS4], nbns=[NBNS], subnet=[topo.right.inner_net4], split_include=[split])
    charon_plugins(monkeypatch, "unity")
    ss = strongswan(topo, "left", v1_client(), charon_options={**VIP_CHARON, "cisco_unity": "yes"},
                    debug={"enc": 3})
    aio = aioipsec(topo, "right", v1_gateway({"addrs": ADDRS}))
    ss.initiate(timeout=15)
    ss_child = ss.wait_established(10)
    aio_child = aio.wait_established(10)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    slog = ss.logs()
    assert "received Cisco Unity vendor ID" in slog  # our gateway answers the client's
    assert re.search(r"generating TRANSACTION request \d+ \[ HASH CPRQ\(ADDR U_SPLITINC U_LOCALLAN\) \]", slog)
    assert re.search(r"parsed TRANSACTION response \d+ \[ HASH CPRP\(ADDR MASK DNS NBNS SUBNET U_SPLITINC\) \]",
                     slog)
    assert "processing UNITY_SPLIT_INCLUDE attribute" in slog
    assert "handling UNITY_SPLIT_INCLUDE attribute failed" not in slog  # the unity plugin took it
    net = ipaddress.IPv4Network(split)
    reply = with_address(charon_parsed_cp(slog))
    assert (UNITY_SPLIT_INCLUDE, net.network_address.packed + net.netmask.packed + bytes(6)) in reply
    assert (IP4_DNS, packed(DNS4)) in reply and (IP4_NBNS, packed(NBNS)) in reply
    assert re.search(r"changing proposed traffic selectors for other:\n.* 0\.0\.0\.0/0", slog)
    assert f"narrowed CHILD_SA to UNITY_SPLIT_INCLUDE {split}" in slog
    assert ss_child.raw["local-ts"] == [f"{VIP}/32"] and ss_child.raw["remote-ts"] == [split], ss_child.raw
    # our side installs its configured selector (charon's gateway: narrow_responder_post)
    assert aio_child.raw["local_ts"] == [topo.right.inner_net4]
    assert aio_child.raw["remote_ts"] == [f"{VIP}/32"]
    assert "INVALID_ID_INFORMATION" not in aio.logs()
    sent, received = ping_from_vip(topo, "left")  # to 203.0.113.129, inside the split include
    assert (sent, received) == (3, 3)


@needs_xauth
def test_our_client_reports_split_include_from_a_charon_unity_gateway(aioipsec, strongswan, monkeypatch,
                                                                      direct_topology: Topology) -> None:
    """charon gateway, unity plugin, ``cisco_unity = yes``, pool ``split_include =
    198.51.100.0/24`` (and dns, nbns): charon sends two UNITY_SPLIT_INCLUDE attributes,
    its unity_provider's from the child's local selector (``sending UNITY_SPLIT_INCLUDE:
    203.0.113.128/25``) and the pool's, ``CPRP(ADDR U_SPLITINC DNS NBNS U_SPLITINC)``; our
    IKEv1 client (it sent the Unity vendor ID with ``vips``) reports both as
    remote_subnets."""
    topo = direct_topology
    charon_plugins(monkeypatch, "unity")
    pool = {"addrs": ADDRS, "dns": DNS4, "nbns": NBNS, "split_include": "198.51.100.0/24"}
    ss = strongswan(topo, "right", v1_gateway(pool), charon_options={"cisco_unity": "yes"})
    aio = aioipsec(topo, "left", v1_client())
    aio.initiate(timeout=15)
    aio_child = aio.wait_established(10)
    ss_child = ss.wait_established(10)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    slog = ss.logs()
    assert "received Cisco Unity vendor ID" in slog
    assert re.search(r"parsed TRANSACTION request \d+ \[ HASH CPRQ\(ADDR DNS U_SPLITINC\) \]", slog)
    assert f"sending UNITY_SPLIT_INCLUDE: {topo.right.inner_net4}" in slog
    assert re.search(r"generating TRANSACTION response \d+ \[ HASH CPRP\(ADDR U_SPLITINC DNS NBNS U_SPLITINC\) \]",
                     slog)
    alog = aio.logs()
    ev = established(alog)
    assert f"local_vips=('{VIP}',)" in ev, ev
    assert f"dns=('{DNS4}',)" in ev and f"nbns=('{NBNS}',)" in ev, ev
    assert f"remote_subnets=('{topo.right.inner_net4}', '198.51.100.0/24')" in ev, ev
    assert "dropped a REPLY attribute" not in alog
    assert aio_child.raw["local_ts"] == [f"{VIP}/32"]
    sent, received = ping_from_vip(topo, "left")
    assert (sent, received) == (3, 3)
