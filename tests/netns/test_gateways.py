"""Gateways end to end in network namespaces: aioipsec daemons with TUN
devices, a bounded ping and a bounded ``iperf3 -t 3`` TCP run across.

* aioipsec ⇄ aioipsec, direct: the first ping triggers IKE (trap) and is
  held, not lost; plain ESP (IP protocol 50 on the rawesp plugin's raw
  socket) without NAT on uvloop, or ESP in UDP 4500 with ``encap = true`` on
  the standard asyncio loop;
* aioipsec ⇄ strongSwan (kernel-libipsec, always ESP-in-UDP), each side
  initiating; the packet counters of both ends agree;
* aioipsec ⇄ aioipsec across the MASQUERADE NAT: NAT detected on both ends,
  ESP floats to 4500, the NATed end sends keepalives, traffic flows;
* hosts in their own namespaces behind each gateway: the gateways forward.

The inner ("host") addresses live on ``lo`` of each gateway namespace
(203.0.113.1 behind left, 203.0.113.129 behind right); the daemon routes the
peer's inner subnet into its TUN device.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from interop.aioipsec_peer import AioipsecPeer
from interop.netns import Namespace, Side, Topology
from interop.strongswan import ChildSa, Connection, StrongSwanPeer

from .traffic import Capture, iperf3, ping

PROFILE = "ikev2-psk-gcm"
MIN_MBPS = 5.0  # sanity floor only: a broken data path gives ~0 (bench/tunnel.py measures)


def only_child(peer: AioipsecPeer | StrongSwanPeer) -> ChildSa:
    children = peer.installed_children()
    assert len(children) == 1, f"{peer.name}: {children}"
    return children[0]


def assert_counters_agree(a: AioipsecPeer | StrongSwanPeer, b: AioipsecPeer | StrongSwanPeer,
                          at_least: int, slack: int = 2) -> None:
    """What one end sent on the SA is what the other received (``slack``: a
    packet or two may be in flight when the counters are read)."""
    ca, cb = only_child(a), only_child(b)
    assert ca.packets_out >= at_least and ca.packets_in >= at_least, ca
    assert abs(ca.packets_out - cb.packets_in) <= slack, (ca, cb)
    assert abs(ca.packets_in - cb.packets_out) <= slack, (ca, cb)
    assert (ca.spi_in, ca.spi_out) == (cb.spi_out, cb.spi_in)


def udp_rcvbuf_errors(ns) -> int:
    """The namespace's UDP receive-buffer drops (``/proc/net/snmp``)."""
    text = ns.run(["cat", "/proc/net/snmp"]).stdout
    head, values = [ln.split() for ln in text.splitlines() if ln.startswith("Udp:")][:2]
    return int(values[head.index("RcvbufErrors")])


def settle() -> None:
    time.sleep(0.5)  # let the last packets of a run land before counters are read


# ---------------------------------------------------------------------------
# 1. aioipsec <-> aioipsec

@pytest.mark.parametrize(("encap", "loop"), [(False, "uvloop"), (True, "asyncio")],
                         ids=["plain-esp-uvloop", "udp-encap-asyncio"])
def test_aioipsec_gateways_trap_ping_iperf(direct: Topology, aio, encap: bool, loop: str) -> None:
    ike_options = {"encap": "yes"} if encap else {}
    args = ("--uvloop", "yes" if loop == "uvloop" else "no")
    left = aio(direct, "left", Connection.named(PROFILE, start_action="trap", ike_options=ike_options),
               daemon_args=args)
    right = aio(direct, "right", Connection.named(PROFILE, ike_options=ike_options), daemon_args=args)
    assert left.list_sas() == [] and right.list_sas() == []
    for peer in (left, right):  # the daemon runs on the loop asked for
        maps = open(f"/proc/{peer.pid}/maps").read()
        assert ("uvloop" in maps) == (loop == "uvloop"), peer
    esp_cap = Capture(direct.left.ns, "eth0", "ip proto 50")
    udp_cap = Capture(direct.left.ns, "eth0", "udp port 4500 and udp[8:4] != 0 and udp[4:2] > 9")

    # the first ping starts IKE; it is held meanwhile and delivered: none lost
    assert ping(direct.left, direct.right.inner4, count=3) == (3, 3)
    assert "acquire: ih/ih triggered by" in left.logs()
    (ike,) = left.list_sas()
    assert ike.initiator and ike.state == "ESTABLISHED"
    lc = only_child(left)
    assert lc.raw["encap"] is encap
    # IKE floats to 4500 in IKE_AUTH (MOBIKE, on by default, as charon does);
    # ESP stays plain unless encapsulation is forced
    assert lc.raw["remote_addr"] == "192.0.2.2[4500]"

    # the other way, then a bounded TCP run
    assert ping(direct.right, direct.left.inner4, count=3) == (3, 3)
    result = iperf3(direct.left, direct.right, seconds=3)
    assert result.mbps > MIN_MBPS, result.mbps
    settle()
    esp_n, udp_n = esp_cap.stop(), udp_cap.stop()
    assert_counters_agree(left, right, at_least=1000)
    if encap:
        assert esp_n == 0 and udp_n >= 1000, (esp_n, udp_n)
    else:
        assert udp_n == 0 and esp_n >= 1000, (esp_n, udp_n)
    st = left.status()
    assert st["endpoint"]["no_sa"] == 0 and st["endpoint"]["held_dropped"] == 0
    for row in (only_child(left).raw, only_child(right).raw):
        assert row["integrity_failed"] == 0 and row["policy_dropped"] == 0
    print(f"\naioipsec<->aioipsec ({'udp-encap' if encap else 'plain ESP'}, {loop}): "
          f"iperf3 TCP {result.mbps:.0f} Mbit/s, retransmits {result.retransmits}")


# ---------------------------------------------------------------------------
# 2. aioipsec <-> strongSwan

@pytest.mark.strongswan
@pytest.mark.parametrize("initiator", ["aioipsec", "strongswan"])
def test_strongswan_gateway_traffic(direct: Topology, aio, charon, initiator: str) -> None:
    conn = Connection.named(PROFILE)
    ss = charon(direct, "right", conn)
    left = aio(direct, "left", conn)
    if initiator == "aioipsec":
        left.initiate()
    else:
        ss.initiate()
    ss.wait_established(15)
    left.wait_established(15)
    assert ping(direct.left, direct.right.inner4, count=3) == (3, 3)
    assert ping(direct.right, direct.left.inner4, count=3) == (3, 3)
    settle()
    assert_counters_agree(left, ss, at_least=6, slack=0)
    udp_drops_before = udp_rcvbuf_errors(direct.right.ns)
    # TCP from the initiator's side to the responder's
    if initiator == "aioipsec":
        result = iperf3(direct.left, direct.right, seconds=3)
    else:
        result = iperf3(direct.right, direct.left, seconds=3)
    assert result.mbps > MIN_MBPS, result.mbps
    settle()
    lc = only_child(left)
    assert lc.raw["encap"] is True  # kernel-libipsec always encapsulates
    # every packet one end sent the other received, or the kernel dropped it
    # at charon's full UDP socket (kernel-libipsec reads slower than TCP sends)
    udp_drops = udp_rcvbuf_errors(direct.right.ns) - udp_drops_before
    a, b = only_child(left), only_child(ss)
    assert a.packets_out >= 1000 and a.packets_in >= 1000, a
    assert abs(a.packets_out - (b.packets_in + udp_drops)) <= 2, (a.packets_out, b.packets_in, udp_drops)
    assert abs(a.packets_in - b.packets_out) <= 2, (a.packets_in, b.packets_out)
    assert lc.raw["integrity_failed"] == 0 and lc.raw["replay_failed"] == 0
    print(f"\naioipsec<->strongSwan ({initiator} initiates): iperf3 TCP {result.mbps:.0f} Mbit/s, "
          f"{udp_drops} ESP datagrams dropped at charon's UDP socket")


# ---------------------------------------------------------------------------
# 3. across the NAT

def test_aioipsec_gateways_across_nat(nat: Topology, aio) -> None:
    assert nat.nat is not None
    conn = Connection.named(PROFILE)
    right = aio(nat, "right", conn)
    left = aio(nat, "left", conn)
    # keepalives: one-byte 0xFF datagrams (UDP length 9) leaving the NAT
    keepalives = Capture(nat.nat, "eth-right", "udp and udp[4:2] = 9 and udp[8] = 0xff")
    t0 = time.monotonic()
    left.initiate()
    right.wait_established(15)
    lsa, rsa = left.list_sas()[0].raw, right.list_sas()[0].raw
    assert lsa["nat_local"] is True and rsa["nat_remote"] is True
    assert lsa["remote_addr"] == "198.51.100.2[4500]"          # floated to 4500
    ip, port = rsa["remote_addr"].rstrip("]").split("[")
    assert ip == "198.51.100.254" and 40000 <= int(port) <= 49999  # the NAT's mapping
    assert only_child(left).raw["encap"] is True and only_child(right).raw["encap"] is True

    assert ping(nat.left, nat.right.inner4, count=3) == (3, 3)
    assert ping(nat.right, nat.left.inner4, count=3) == (3, 3)  # back through the mapping
    result = iperf3(nat.left, nat.right, seconds=3)
    assert result.mbps > MIN_MBPS, result.mbps
    settle()
    assert_counters_agree(left, right, at_least=1000)

    # RFC 3948 §4: the NATed end sends a keepalive every 20 s (the default)
    n = keepalives.wait_for(1, timeout=max(1.0, 26 - (time.monotonic() - t0)))
    keepalives.stop()
    assert n >= 1, "no NAT keepalive from the NATed end within 26 s"
    assert right.status()["endpoint"]["malformed"] == 0
    print(f"\naioipsec<->aioipsec across NAT: iperf3 TCP {result.mbps:.0f} Mbit/s, keepalives seen: {n}")


# ---------------------------------------------------------------------------
# 4. hosts behind the gateways (forwarding through the TUN devices)

@pytest.fixture
def hosts_topology(netns_run_dir) -> Iterator[tuple[Topology, Side, Side]]:
    """A fresh direct topology plus a host namespace behind each gateway:
    lhost 203.0.113.10/25 -> left gateway (203.0.113.126) ... right gateway
    (203.0.113.254) <- rhost 203.0.113.140/25."""
    from interop.netns import _new_namespace, _veth, create_topology

    topo = create_topology("direct", run_dir=netns_run_dir)
    hosts: list[Namespace] = []
    try:
        sides = []
        for gw, host_ip, gw_ip in ((topo.left, "203.0.113.10", "203.0.113.126"),
                                   (topo.right, "203.0.113.140", "203.0.113.254")):
            # named and recorded like the topology's own (stale-run cleanup finds it)
            ns = _new_namespace(gw.ns.name.rsplit("-", 1)[0] + f"-{gw.name[0]}host", topo.run_dir)
            hosts.append(ns)
            _veth(ns, "eth0", gw.ns, "host0")
            ns.ip("addr", "add", f"{host_ip}/25", "dev", "eth0")
            ns.ip("route", "add", "default", "via", gw_ip)
            gw.ns.ip("addr", "add", f"{gw_ip}/25", "dev", "host0")
            gw.ns.sysctl("net.ipv4.ip_forward=1")
            sides.append(Side(f"{gw.name}-host", ns, host_ip, None, host_ip, gw.inner_net4, "", "", ""))
        yield topo, sides[0], sides[1]
    finally:
        for ns in hosts:
            ns.stop_processes()
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=10)
        topo.destroy()


def test_hosts_behind_gateways(hosts_topology, aio) -> None:
    """The real gateway case: packets from a host are forwarded by the left
    gateway's kernel into its TUN device, protected, and forwarded by the right
    gateway to the host behind it.  The first ping (from the host) triggers IKE."""
    topo, lhost, rhost = hosts_topology
    left = aio(topo, "left", Connection.named(PROFILE, start_action="trap", ike_options={"encap": "yes"}))
    right = aio(topo, "right", Connection.named(PROFILE, ike_options={"encap": "yes"}))
    assert ping(lhost, rhost.inner4, count=3) == (3, 3)
    assert ping(rhost, lhost.inner4, count=3) == (3, 3)
    result = iperf3(lhost, rhost, seconds=3)
    assert result.mbps > MIN_MBPS, result.mbps
    settle()
    assert_counters_agree(left, right, at_least=1000)
    print(f"\nhost -> gateway => gateway -> host: iperf3 TCP {result.mbps:.0f} Mbit/s")


# ---------------------------------------------------------------------------
# 5. Child SA rekeys under load: make-before-break, nothing lost

@pytest.mark.parametrize("encap", [True, False], ids=["udp-encap", "plain-esp"])
def test_rekey_under_load_loses_nothing(direct: Topology, aio, encap: bool) -> None:
    """A steady UDP stream (iperf3, 20 Mbit/s, 1000-byte datagrams) for 7 s
    while the left gateway rekeys its Child SA every 2 s: the receiver counts
    every datagram (iperf3's own loss count is zero) across the rekeys, and
    no ESP packet met an SA already deleted (``no_sa``)."""
    from interop.strongswan import short_lifetimes

    _ike, child = short_lifetimes(child_rekey=2)
    ike = {"encap": "yes"} if encap else {}
    left = aio(direct, "left", Connection.named(PROFILE, child_options=child, ike_options=ike))
    right = aio(direct, "right", Connection.named(PROFILE, ike_options=ike))
    left.initiate()
    right.wait_established(15)
    first = only_child(left).spi_in
    result = iperf3(direct.left, direct.right, seconds=7, udp_bitrate="20M", length=1000)
    s = result.raw["end"]["sum"]
    rekeys = len(re.findall(r"established with SPIs .* \(rekeyed [0-9a-f]{8}\)", left.logs()))
    assert rekeys >= 2, f"only {rekeys} rekeys during the run"
    assert only_child(left).spi_in != first
    assert right.status()["endpoint"]["no_sa"] == 0
    assert s["packets"] > 10000 and s["lost_packets"] == 0, s
    print(f"\nrekey under load: {rekeys} rekeys, {s['packets']} datagrams, {s['lost_packets']} lost")
