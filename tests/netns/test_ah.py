"""AH-only Child SAs (RFC 4302) end to end: two aioipsec daemons in network
namespaces (the ``direct`` topology: left 192.0.2.1 / 2001:db8:1::1 == right
192.0.2.2 / 2001:db8:1::2), children configured with ``ah_proposals`` and no
ESP.  AH has no UDP encapsulation, so every packet is IP protocol 51 on the
raw AH socket the endpoint opens (rawesp plugin), carrying whole IP packets.

* tunnel mode over IPv4: the first ping triggers IKE; pings both ways; only
  AH on the wire (no ESP, no UDP 4500); the counters of both ends agree; an AH
  packet captured on the wire and sent again (a replay) and one with a
  sequence number it was not signed with (corrupted) are dropped and counted
  on the receiving SA, and traffic goes on;
* tunnel mode over IPv6 (the IPv6 header is rebuilt from recvmsg data before
  verification, and sent with IPV6_HDRINCL);
* transport mode between the two hosts' own addresses, through the daemon's
  TUN device (its marked AH socket bypasses the transport-mode route).
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from interop.aioipsec_peer import AioipsecPeer
from interop.netns import Namespace, Topology
from interop.strongswan import Connection

from .test_gateways import assert_counters_agree, only_child
from .traffic import Capture, iperf3, ping

PSK = "netns-ah-psk"

AH_TOML = """\
[tun]
name = "aioipsec0"
mtu = 1400

[connections.ih]
version = 2
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
proposals = ["aes128gcm16-prfsha256-x25519"]
dpd_delay = "0s"
retransmit_timeout = "1s"
local = {{ auth = "psk", id = "{me}" }}
remote = {{ auth = "psk", id = "{peer}" }}

[connections.ih.children.ih]
local_ts = ["{lts}"]
remote_ts = ["{rts}"]
ah_proposals = ["sha256"]
mode = "{mode}"
start_action = "{start}"

[secrets.ih]
secret = "{psk}"
"""


@pytest.fixture
def ah_peers(direct: Topology) -> Iterator[list[AioipsecPeer]]:
    peers: list[AioipsecPeer] = []
    yield peers
    for p in reversed(peers):
        p.stop()


def start_pair(topo: Topology, peers: list[AioipsecPeer], *, mode: str = "tunnel",
               family: int = 4) -> tuple[AioipsecPeer, AioipsecPeer]:
    """(left, right) daemons with an AH-only child; left traps, right responds."""
    started: dict[str, AioipsecPeer] = {}
    for side, start in (("right", "none"), ("left", "trap")):
        me, other = topo.side(side), topo.other(side)
        if family == 6:
            assert me.outer6 and other.outer6
            me_addr, peer_addr = me.outer6, other.outer6
            lts, rts = me.inner_net6, other.inner_net6
        else:
            me_addr, peer_addr = me.outer4, other.outer4
            lts, rts = me.inner_net4, other.inner_net4
        if mode == "transport":
            bits = 32 if family == 4 else 128
            lts, rts = f"{me_addr}/{bits}", f"{peer_addr}/{bits}"
        peer = AioipsecPeer(topo, side)
        peer.configure(Connection.named("ikev2-psk-gcm"))  # then replaced by the AH file
        peer.config_path.write_text(AH_TOML.format(me=me_addr, peer=peer_addr, lts=lts, rts=rts, mode=mode,
                                                   start=start, psk=PSK))
        peers.append(peer)
        peer.start()
        started[side] = peer
    return started["left"], started["right"]


def sniff_one(ns: Namespace, family: int, trigger: object, timeout: float = 5.0) -> tuple[bytes, str]:
    """The first AH packet that reaches ``ns`` while ``trigger()`` runs (a raw
    protocol-51 socket gets a copy of each), as (data, sender).  IPv4: the
    whole packet; IPv6: what follows the IPv6 header."""
    with ns.entered():
        s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_RAW, 51)
    try:
        trigger()  # type: ignore[operator]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0.2)
            if r:
                data, addr = s.recvfrom(65535)
                return data, addr[0]
        raise AssertionError("no AH packet seen")
    finally:
        s.close()


def inject(ns: Namespace, family: int, pkt: bytes, dst: str) -> None:
    """Send ``pkt`` (IPv4: a whole packet, IP_HDRINCL; IPv6: the AH onwards)
    from ``ns`` to ``dst`` as IP protocol 51."""
    with ns.entered():
        s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_RAW, 51)
    try:
        if family == 4:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        s.sendto(pkt, (dst, 0))
    finally:
        s.close()


def wait_counter(peer: AioipsecPeer, key: str, value: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = int(only_child(peer).raw[key])
        if got >= value or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_ah_gateways_tunnel(direct: Topology, ah_peers: list[AioipsecPeer], family: int) -> None:
    left, right = start_pair(direct, ah_peers, family=family)
    lside, rside = direct.left, direct.right
    l_in, r_in = (lside.inner6, rside.inner6) if family == 6 else (lside.inner4, rside.inner4)
    r_outer = rside.outer6 if family == 6 else rside.outer4
    proto = "ip6 proto 51" if family == 6 else "ip proto 51"
    ah_cap = Capture(lside.ns, "eth0", proto)
    # ESP, ESP in UDP 4500 or a clear echo (not neighbour discovery and router
    # solicitations); IKE floats to 4500 (MOBIKE), so UDP 4500 counts only with
    # an SPI where IKE has its non-ESP marker, and not the 1-byte keepalives
    other_cap = Capture(lside.ns, "eth0", "ip proto 50 or ip6 proto 50 or (udp port 4500 and udp[8:4] != 0"
                                          " and udp[4:2] > 9) or icmp"
                                          " or (icmp6 and (ip6[40] == 128 or ip6[40] == 129))")

    # the first ping triggers IKE (held meanwhile), then both ways
    assert ping(lside, r_in, count=3, source=l_in) == (3, 3)
    assert "acquire: ih/ih triggered by" in left.logs()
    assert ping(rside, l_in, count=3, source=r_in) == (3, 3)
    lc, rc = only_child(left), only_child(right)
    for c in (lc, rc):
        assert c.raw["protocol"] == "ah" and c.raw["encap"] is False and c.raw["mode"] == "tunnel"
    time.sleep(0.5)
    assert_counters_agree(left, right, at_least=6, slack=0)

    # a replayed and a corrupted AH packet, injected from left's namespace
    pkt, sender = sniff_one(rside.ns, family, lambda: ping(lside, r_in, count=1, source=l_in))
    assert sender == (lside.outer6 if family == 6 else lside.outer4)
    ah_at = 0 if family == 6 else (pkt[0] & 0x0F) * 4
    assert int.from_bytes(pkt[ah_at + 4 : ah_at + 8], "big") == rc.spi_in
    before = only_child(right).raw
    inject(lside.ns, family, pkt, r_outer)
    assert wait_counter(right, "replay_failed", before["replay_failed"] + 1) == before["replay_failed"] + 1
    bad = bytearray(pkt)
    seq = int.from_bytes(bad[ah_at + 8 : ah_at + 12], "big")
    bad[ah_at + 8 : ah_at + 12] = (seq + 1000).to_bytes(4, "big")  # inside the window, not what was signed
    inject(lside.ns, family, bytes(bad), r_outer)
    assert (wait_counter(right, "integrity_failed", before["integrity_failed"] + 1)
            == before["integrity_failed"] + 1)
    after = only_child(right).raw
    assert after["packets_in"] == before["packets_in"]  # neither was delivered
    # the SA goes on
    assert ping(lside, r_in, count=2, source=l_in) == (2, 2)
    assert ping(rside, l_in, count=2, source=r_in) == (2, 2)
    time.sleep(0.5)
    ah_n, other_n = ah_cap.stop(), other_cap.stop()
    assert other_n == 0, f"{other_n} ESP/UDP-4500/clear ICMP packets on the wire"
    assert ah_n >= 2 * 11, ah_n
    assert_counters_agree(left, right, at_least=8, slack=0)
    for peer in (left, right):
        st = peer.status()["endpoint"]
        assert st["no_sa"] == 0 and st["malformed"] == 0 and st["no_transport"] == 0, st


def test_ah_transport_mode_through_tun(direct: Topology, ah_peers: list[AioipsecPeer]) -> None:
    left, right = start_pair(direct, ah_peers, mode="transport")
    lside, rside = direct.left, direct.right
    ah_cap = Capture(lside.ns, "eth0", "ip proto 51")
    clear = Capture(lside.ns, "eth0", "icmp or tcp or ip proto 50")
    # a plain ping between the hosts' own addresses: the first one triggers IKE
    assert ping(lside, rside.outer4, count=3, source=lside.outer4) == (3, 3)
    assert ping(rside, lside.outer4, count=3, source=rside.outer4) == (3, 3)
    result = iperf3(lside, rside, seconds=2, client_ip=lside.outer4, server_ip=rside.outer4)
    assert result.mbps > 5.0, result.mbps
    time.sleep(0.5)
    ah_n, clear_n = ah_cap.stop(), clear.stop()
    lc, rc = only_child(left), only_child(right)
    assert lc.raw["mode"] == rc.raw["mode"] == "transport" and lc.raw["protocol"] == "ah"
    assert clear_n == 0, f"{clear_n} packets without AH"  # tcpdump's "icmp"/"tcp" do not match AH-wrapped ones
    assert ah_n >= 1000, ah_n
    assert_counters_agree(left, right, at_least=500)
    for c in (lc, rc):
        assert c.raw["integrity_failed"] == 0 and c.raw["replay_failed"] == 0 and c.raw["malformed"] == 0


# ---------------------------------------------------------------------------
# the raw AH socket alone: what the kernel does to the covered header fields

@pytest.mark.parametrize(("family", "hdrincl6"), [(4, False), (6, True), (6, False)],
                         ids=["ipv4-hdrincl", "ipv6-hdrincl", "ipv6-kernel-header"])
def test_raw_ah_socket_keeps_covered_fields(direct: Topology, family: int, hdrincl6: bool) -> None:
    """Packets sealed by AhSa, sent on left's RawAhSocket and read on right's,
    verify: IPv4 with IP_HDRINCL; IPv6 with IPV6_HDRINCL and, without it, with
    the header the kernel builds (the covered fields are the same), the
    receiver rebuilding the IPv6 header either way.  IPv4 only: an ID of 0
    in a packet without DF is replaced by the kernel after the ICV covered
    it, so that packet fails -- why the data plane never sends ID 0."""
    import os

    from aioipsec.crypto.transforms import integ
    from aioipsec.esp.sa import AhSa
    from aioipsec.netutil import udp_packet
    from aioipsec.transports._batch import drain
    from aioipsec_rawesp import RawAhSocket

    src = direct.left.outer6 if family == 6 else direct.left.outer4
    dst = direct.right.outer6 if family == 6 else direct.right.outer4
    assert src and dst
    with direct.left.ns.entered():
        tx = RawAhSocket.open(src, ipv6_hdrincl=hdrincl6)
    with direct.right.ns.entered():
        rx = RawAhSocket.open(dst)
    try:
        assert tx.hdrincl6 is (family == 6 and hdrincl6)
        assert rx.hdrincl6 is (family == 6)  # this kernel offers IPV6_HDRINCL
        key = os.urandom(32)
        out = AhSa(spi=0x51, integ=integ("sha256"), integ_key=key, inbound=False, outer_src=src, outer_dst=dst)
        inn = AhSa(spi=0x51, integ=integ("sha256"), integ_key=key, inbound=True)
        inner = [udp_packet("203.0.113.1", "203.0.113.129", 1000 + i, 9, b"raw AH %d" % i) for i in range(3)]
        extra = {"ident": 4242} if family == 4 else {"flow_label": 0x12345}
        sealed = [out.seal_packet(p, ttl=9, tos=0x28, **extra) for p in inner]
        if family == 4:
            sealed.append(out.seal_packet(inner[0], ident=0, df=False))
        tx.send_batch(sealed, (dst, 0))  # type: ignore[arg-type]
        assert tx.sent == len(sealed) and tx.send_errors == 0
        got: list[tuple[bytes, tuple[str, int]]] = []
        deadline = time.monotonic() + 5
        while len(got) < len(sealed) and time.monotonic() < deadline:
            select.select([rx._sock], [], [], 0.2)
            got += drain(rx._read, dst, __import__("logging").getLogger("test"))
        assert len(got) == len(sealed), got
        results = [inn.open_packet(p) for p, _ in got]
        assert all(sender == (src, 0) for _, sender in got)
        assert [r.packet for r in results[:3]] == inner
        assert inn.stats.packets_in == 3
        if family == 4:
            assert got[3][0][4:6] != b"\0\0"  # the kernel chose an ID ...
            assert results[3].drop is not None and inn.stats.integrity_failed == 1  # ... the ICV did not cover
    finally:
        tx.close()
        rx.close()
