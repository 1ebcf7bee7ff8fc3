"""AH-only Child SAs (RFC 4302) carried by the asyncio data plane, between two
endpoints on an in-memory network.  Port 51 of the memory network stands for
IP protocol 51: what travels there is whole IP packets, exactly what the raw
AH socket sends and receives (``aioipsec_rawesp.RawAhSocket``).

Shown here: tunnel mode (IKEv2 and IKEv1, IPv4 and IPv6 outer) and transport
mode carry traffic both ways and the counters of both ends agree; the wire
shows AH in protocol 51 packets between the gateways, the payload readable
(AH does not encrypt); the mutable TTL may change in flight; a replayed, a
corrupted, a truncated and an unknown-SPI packet are dropped and counted,
never raised; an IPv4 identification of 0 is never sent (the kernel would
rewrite it after the ICV covered it); an IPv6 peer's Destination Options
header in front of AH does not hide the SPI; in transport mode, a correctly keyed
packet with another source or destination than the SA's, or with a protocol or
port outside the selectors, is a policy drop, never delivered (RFC 4301 §5.2);
AH over NAT, or without an AH socket, is refused at install with a clear error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from asyncwait import Host, until
from memory_gateways import memory_gateways

from aioipsec.asyncio.dataplane import DataPlane, ah_spi, ipv4_with_ident
from aioipsec.asyncio.endpoint import AH_MEMORY_PORT, Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import ConnectionConfig, child, connection
from aioipsec.crypto.transforms import integ, parse_proposal
from aioipsec.esp.ip import checksum, header_info, ipv6_header
from aioipsec.events import ChildSaInstalled
from aioipsec.netutil import udp_packet
from aioipsec.selectors import parse_ts

PSK = "memory-ah-test-psk"


@dataclass(frozen=True)
class Net:
    gw_a: str
    gw_b: str
    net_a: str
    net_b: str
    host_a: str
    host_b: str


V4 = Net("192.0.2.1", "192.0.2.2", "198.51.100.0/24", "203.0.113.0/24", "198.51.100.10", "203.0.113.20")
V6 = Net("2001:db8::1", "2001:db8::2", "2001:db8:a::/64", "2001:db8:b::/64", "2001:db8:a::10", "2001:db8:b::20")


def ah_configs(net: Net, *, version: int = 2, mode: str = "tunnel",
               narrow_b: str = "") -> tuple[ConnectionConfig, ConnectionConfig]:
    """(gateway A, gateway B) with one AH-only child (no ESP proposal);
    ``narrow_b`` (``[udp/9]``) narrows B's selector to a protocol and port."""
    extra: dict[str, Any] = {}
    ids = ("a.example", "b.example")
    if version == 1:
        extra = {"proposals": ["aes128-sha256-modp2048"]}
        ids = (net.gw_a, net.gw_b)
    if mode == "transport":
        ts_a, ts_b = f"{net.gw_a}/{32 if ':' not in net.gw_a else 128}", f"{net.gw_b}/{32 if ':' not in net.gw_b else 128}"
    else:
        ts_a, ts_b = net.net_a, net.net_b
    ts_b += narrow_b
    out = []
    for me, peer, my_id, peer_id, lts, rts, name in ((net.gw_a, net.gw_b, ids[0], ids[1], ts_a, ts_b, "to-b"),
                                                     (net.gw_b, net.gw_a, ids[1], ids[0], ts_b, ts_a, "to-a")):
        ch = child("lan", local_ts=[lts], remote_ts=[rts], mode=mode)
        ch.esp_proposals = []
        ch.ah_proposals = [parse_proposal("sha256", "ah")]
        out.append(connection(name, version=version, psk=PSK, local_id=my_id, remote_id=peer_id,
                              local_addrs=[me], remote_addrs=[peer], dpd_delay=0, children=[ch], **extra))
    return out[0], out[1]



@dataclass
class Pair:
    net: MemoryNetwork
    a: Endpoint
    b: Endpoint
    host_a: Host
    host_b: Host
    wire: list[tuple[Any, bytes, Any]]
    addrs: Net

    def ah_wire(self) -> list[bytes]:
        return [d for (_s, d, (_ip, port)) in self.wire if port == AH_MEMORY_PORT]


@pytest.fixture
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    params = dict(getattr(request, "param", {}) or {})
    addrs = params.pop("net", V4)
    net = MemoryNetwork()
    wire: list[tuple[Any, bytes, Any]] = []
    net.tap = lambda src, data, dst: wire.append((src, data, dst))
    ca, cb = ah_configs(addrs, **params)
    async with memory_gateways(net, (addrs.gw_a, ca), (addrs.gw_b, cb), queue_size=4096) as g:
        yield Pair(net, g.a, g.b, g.host_a, g.host_b, wire, addrs)


async def up(p: Pair) -> tuple[Any, Any]:
    """Initiate from A; the installed pipes (A's, B's)."""
    p.a.initiate("to-b")
    await until(lambda: p.a.dataplane.outbound and p.b.dataplane.outbound, what="AH Child SA on both ends")
    (pa,), (pb,) = p.a.dataplane.outbound, p.b.dataplane.outbound
    assert pa.ev.protocol == pb.ev.protocol == "ah"
    return pa, pb


def packets(n: int, src: str, dst: str, start: int = 0) -> list[bytes]:
    return [udp_packet(src, dst, 40000, 9, f"ah-{i:06d}".encode()) for i in range(start, start + n)]


def assert_agree(pa: Any, pb: Any, a_to_b: int, b_to_a: int) -> None:
    assert pa.sa_out.stats.packets_out == pb.sa_in.stats.packets_in == a_to_b
    assert pb.sa_out.stats.packets_out == pa.sa_in.stats.packets_in == b_to_a
    assert (pa.ev.spi_in, pa.ev.spi_out) == (pb.ev.spi_out, pb.ev.spi_in)


def inject(p: Pair, pkt: bytes, to: str) -> None:
    """An on-path attacker's packet to ``to``'s AH socket."""
    sock = p.net.bind(("192.0.2.66" if ":" not in to else "2001:db8::66", AH_MEMORY_PORT))
    try:
        sock.sendto(pkt, (to, AH_MEMORY_PORT))
    finally:
        sock.close()


# ---------------------------------------------------------------------------
# tunnel mode

@pytest.mark.parametrize("pair", [{"version": 2}, {"version": 1}, {"version": 2, "net": V6}], indirect=True,
                         ids=["ikev2-v4", "ikev1-v4", "ikev2-v6"])
async def test_ah_tunnel_carries_traffic_both_ways(pair: Pair) -> None:
    p, n = pair, pair.addrs
    pa, pb = await up(p)
    assert pa.ev.encr is None and pa.ev.integ is not None and not pa.ev.encap
    p.host_a.end.send_batch(packets(20, n.host_a, n.host_b))
    await until(lambda: len(p.host_b.received) == 20, what="A -> B")
    p.host_b.end.send_batch(packets(7, n.host_b, n.host_a))
    await until(lambda: len(p.host_a.received) == 7, what="B -> A")
    assert p.host_b.payloads() == [f"ah-{i:06d}".encode() for i in range(20)]
    assert p.host_a.payloads() == [f"ah-{i:06d}".encode() for i in range(7)]
    assert_agree(pa, pb, 20, 7)
    # on the wire: protocol-51 packets between the gateways, the payload in the clear
    wire = p.ah_wire()
    assert len(wire) == 27
    assert all(header_info(w).next_header == 51 for w in wire)  # type: ignore[union-attr]
    assert ah_spi(wire[0]) == pa.ev.spi_out and b"ah-000000" in wire[0]
    assert p.a.stats.ah_in == 7 and p.b.stats.ah_in == 20 and p.a.stats.esp_in == p.b.stats.esp_in == 0
    if ":" not in n.gw_a:
        assert all(w[4:6] != b"\0\0" for w in wire)  # an IPv4 ID of 0 is never sent
    for ep in (p.a, p.b):
        assert ep.dataplane.stats.no_sa == ep.dataplane.stats.malformed == 0
        assert ep.dataplane.stats.unsupported == 0


@pytest.mark.parametrize("pair", [{"version": 2}, {"version": 2, "net": V6}], indirect=True, ids=["v4", "v6"])
async def test_ah_drops_replayed_corrupted_truncated_unknown(pair: Pair) -> None:
    p, n = pair, pair.addrs
    pa, pb = await up(p)
    p.host_a.end.send_batch(packets(3, n.host_a, n.host_b))
    await until(lambda: len(p.host_b.received) == 3, what="first packets")
    first = p.ah_wire()[0]
    sa_in = pb.sa_in.stats

    inject(p, first, n.gw_b)  # replayed
    await until(lambda: sa_in.replay_failed == 1, what="replay counted")

    v4 = ":" not in n.gw_a
    # a fresh packet (next sequence number) with one payload byte flipped
    fresh = pa.sa_out.seal_packet(packets(1, n.host_a, n.host_b, start=99)[0],
                                  **({"ident": 4242} if v4 else {}))
    bad = bytearray(fresh)
    bad[-1] ^= 1
    inject(p, bytes(bad), n.gw_b)
    await until(lambda: sa_in.integrity_failed == 1, what="integrity failure counted")
    # an immutable header field changed (IPv4 ID / IPv6 payload-length-neutral: the source address)
    bad = bytearray(fresh)
    if v4:
        bad[4] ^= 0x10
        bad[10:12] = b"\0\0"
        bad[10:12] = checksum(bytes(bad[:20])).to_bytes(2, "big")
    else:
        bad[23] ^= 1
    inject(p, bytes(bad), n.gw_b)
    await until(lambda: sa_in.integrity_failed == 2, what="covered header field")
    # truncated inside the AH header: malformed, never an exception
    cut = bytearray(fresh[:header_info(fresh).insert_at + 8])  # type: ignore[union-attr]
    if v4:
        cut[2:4] = len(cut).to_bytes(2, "big")
    else:
        cut[4:6] = (len(cut) - 40).to_bytes(2, "big")
    inject(p, bytes(cut), n.gw_b)
    inject(p, b"\x45" + bytes(5), n.gw_b)
    await until(lambda: p.b.dataplane.stats.malformed == 2, what="malformed counted")
    # an SPI nobody installed
    other = bytearray(fresh)
    at = header_info(fresh).insert_at + 4  # type: ignore[union-attr]
    other[at : at + 4] = (pb.ev.spi_in ^ 0x5A5A5A5A).to_bytes(4, "big")
    inject(p, bytes(other), n.gw_b)
    await until(lambda: p.b.dataplane.stats.no_sa == 1, what="unknown SPI counted")

    # the untouched fresh packet, its mutable TTL/hop limit lowered in flight, still verifies
    moved = bytearray(fresh)
    if v4:
        moved[8] -= 3
        moved[10:12] = b"\0\0"
        moved[10:12] = checksum(bytes(moved[:20])).to_bytes(2, "big")
    else:
        moved[7] -= 3
    inject(p, bytes(moved), n.gw_b)
    await until(lambda: len(p.host_b.received) == 4, what="mutable field changed: delivered")
    assert p.host_b.payloads()[-1] == b"ah-000099"
    assert sa_in.packets_in == 4 and sa_in.replay_failed == 1 and sa_in.integrity_failed == 2
    # the SA goes on: traffic both ways after the attack
    p.host_b.end.send_batch(packets(2, n.host_b, n.host_a))
    await until(lambda: len(p.host_a.received) == 2, what="reverse traffic")


# ---------------------------------------------------------------------------
# transport mode

@pytest.mark.parametrize("pair", [{"mode": "transport"}, {"mode": "transport", "net": V6}], indirect=True,
                         ids=["v4", "v6"])
async def test_ah_transport_mode_between_hosts(pair: Pair) -> None:
    p, n = pair, pair.addrs
    pa, pb = await up(p)
    assert pa.ev.mode == pb.ev.mode == "transport"
    sent = packets(5, n.gw_a, n.gw_b)
    if ":" not in n.gw_a:
        assert all(s[4:6] == b"\0\0" for s in sent)  # udp_packet's ID is 0
    p.host_a.end.send_batch(sent)
    await until(lambda: len(p.host_b.received) == 5, what="A -> B")
    p.host_b.end.send_batch(packets(3, n.gw_b, n.gw_a))
    await until(lambda: len(p.host_a.received) == 3, what="B -> A")
    assert p.host_b.payloads() == [f"ah-{i:06d}".encode() for i in range(5)]
    assert_agree(pa, pb, 5, 3)
    wire = p.ah_wire()
    for w, got in zip(wire[:5], p.host_b.received):
        info = header_info(w)
        assert info is not None and info.next_header == 51 and w[-len(b"ah-000000"):] in got
        if ":" not in n.gw_a:
            assert w[4:6] != b"\0\0" and w[4:6] == got[4:6]  # ID chosen before the ICV, delivered as sent
            assert checksum(got[:20]) == 0
    for ep in (p.a, p.b):
        assert ep.dataplane.stats.malformed == ep.dataplane.stats.no_sa == 0


@pytest.mark.parametrize("pair", [{"mode": "transport", "net": V6}], indirect=True, ids=["v6"])
async def test_ah_behind_a_destination_options_header_reaches_its_sa(pair: Pair) -> None:
    """RFC 4302 §3.1.1: a peer may put a Destination Options header in front
    of AH (alone, or after a Routing header); the data plane finds the SPI
    behind it, and the SA verifies and delivers the packet with the header."""
    p, n = pair, pair.addrs
    pa, pb = await up(p)
    codec = pa.sa_out.codec
    payload = udp_packet(n.gw_a, n.gw_b, 40000, 9, b"behind-dstopts")[40:]
    dstopts = bytes([51, 0, 0x1E, 4]) + b"\x11\x22\x33\x44"  # next header AH, one immutable option
    via = ipaddress.IPv6Address("2001:db8:7::1").packed
    routing = bytes([60, 2, 0, 0]) + bytes(4) + via  # type 0, no segment left, then the Destination Options
    for seq, (first, chain) in enumerate(((60, dstopts), (43, routing + dstopts)), 1):
        hdr = ipv6_header(n.gw_a, n.gw_b, first, len(chain) + codec.ah_len(6) + len(payload)) + chain
        sealed = codec.seal(hdr, 6, 17, payload, seq, None)
        assert sealed is not None and ah_spi(sealed) == pb.ev.spi_in
        inject(p, sealed, n.gw_b)
        await until(lambda seq=seq: len(p.host_b.received) == seq, what="delivered")  # type: ignore[misc]
        # delivered with its extension headers, AH cut out: the Destination Options name UDP
        kept = chain[:-8] + bytes([17]) + chain[-7:]
        assert p.host_b.received[-1] == ipv6_header(n.gw_a, n.gw_b, first, len(kept) + len(payload)) + kept + payload
    assert pb.sa_in.stats.packets_in == 2 and pb.sa_in.header_drops == {}
    assert p.b.dataplane.stats.malformed == p.b.dataplane.stats.no_sa == 0


def _other(addr: str) -> str:
    """An address next to ``addr`` (same family, same network)."""
    return str(ipaddress.ip_address(addr) + 0x40)


def _sealed(pa: Any, pkt: bytes) -> bytes:
    """``pkt`` sealed on A's outbound AH SA with the real key: its ICV verifies at B."""
    sealed = pa.sa_out.seal_packet(pkt, **({"ident": 777} if pkt[0] >> 4 == 4 else {}))
    assert sealed is not None
    return sealed


@pytest.mark.parametrize("pair", [{"mode": "transport"}, {"mode": "transport", "net": V6}], indirect=True,
                         ids=["v4", "v6"])
async def test_ah_transport_drops_forged_addresses(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    """RFC 4301 §5.2: a transport-mode AH packet is delivered only from the
    SA's remote to its local address.  A peer holding the key that seals a
    packet with another source or destination (the ICV verifies) has it
    dropped and counted as a policy drop, never delivered."""
    p, n = pair, pair.addrs
    pa, pb = await up(p)
    forged = [
        udp_packet(_other(n.gw_a), n.gw_b, 40000, 9, b"forged-src"),
        udp_packet(n.gw_a, _other(n.gw_b), 40000, 9, b"forged-dst"),
        udp_packet(_other(n.gw_a), _other(n.gw_b), 40000, 9, b"forged-both"),
    ]
    with caplog.at_level(logging.DEBUG, logger="aioipsec.esp"):
        for i, pkt in enumerate(forged, 1):
            inject(p, _sealed(pa, pkt), n.gw_b)
            await until(lambda i=i: pb.sa_in.stats.packets_in == i, what="verified")  # type: ignore[misc]
    assert pb.policy_dropped == 3 and pb.sa_in.stats.integrity_failed == 0
    assert p.b.dataplane.child_stats(pb.ev.spi_in)["policy_dropped"] == 3
    assert any(n.gw_a in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)
    # normal traffic still flows, and only it was delivered
    p.host_a.end.send_batch(packets(2, n.gw_a, n.gw_b))
    await until(lambda: len(p.host_b.received) == 2, what="A -> B")
    p.host_b.end.send_batch(packets(1, n.gw_b, n.gw_a))
    await until(lambda: len(p.host_a.received) == 1, what="B -> A")
    assert p.host_b.payloads() == [b"ah-000000", b"ah-000001"]
    assert pb.policy_dropped == 3 and pa.policy_dropped == 0


@pytest.mark.parametrize("pair", [{"mode": "transport", "narrow_b": "[udp/9]"},
                                  {"mode": "transport", "narrow_b": "[udp/9]", "net": V6}], indirect=True,
                         ids=["v4", "v6"])
async def test_ah_transport_drops_ports_outside_narrowed_selectors(pair: Pair) -> None:
    """The delivered packet's protocol and ports must lie inside the Child
    SA's selectors (B's side narrowed to UDP port 9): a correctly keyed
    packet to another port, or of another protocol, is a policy drop."""
    p, n = pair, pair.addrs
    pa, pb = await up(p)
    (ts,) = pb.ev.local_ts
    assert (ts.proto, ts.start_port, ts.end_port) == (17, 9, 9)
    wrong_port = udp_packet(n.gw_a, n.gw_b, 40000, 10, b"wrong-port")
    wrong_proto = bytearray(udp_packet(n.gw_a, n.gw_b, 40000, 9, b"wrong-proto"))
    if n.gw_a.count(":"):
        wrong_proto[6] = 6  # TCP
    else:
        wrong_proto[9] = 6
        wrong_proto[10:12] = b"\0\0"
        wrong_proto[10:12] = checksum(bytes(wrong_proto[:20])).to_bytes(2, "big")
    for i, pkt in enumerate((wrong_port, bytes(wrong_proto)), 1):
        inject(p, _sealed(pa, pkt), n.gw_b)
        await until(lambda i=i: pb.sa_in.stats.packets_in == i, what="verified")  # type: ignore[misc]
    assert pb.policy_dropped == 2
    # UDP to port 9 flows both ways
    p.host_a.end.send_batch(packets(3, n.gw_a, n.gw_b))
    await until(lambda: len(p.host_b.received) == 3, what="A -> B")
    p.host_b.end.send_batch([udp_packet(n.gw_b, n.gw_a, 9, 40000, b"reply")])
    await until(lambda: len(p.host_a.received) == 1, what="B -> A")
    assert p.host_b.payloads() == [f"ah-{i:06d}".encode() for i in range(3)]
    assert pb.policy_dropped == 2 and pa.policy_dropped == 0


@pytest.mark.parametrize("pair", [{"mode": "transport", "narrow_b": "[udp/9]", "net": V6}], indirect=True, ids=["v6"])
async def test_ah_transport_selectors_look_behind_destination_options(pair: Pair) -> None:
    """RFC 4301 §4.4.1.1: the selector check takes the protocol and ports
    behind the IPv6 extension headers.  A keyed packet with a Destination
    Options header in front of its UDP header (kept on delivery) is delivered
    to B's narrowed [udp/9], dropped to port 10 (it was dropped either way
    when the check read the Destination Options' number as the protocol)."""
    p, n = pair, pair.addrs
    pa, pb = await up(p)
    codec = pa.sa_out.codec
    dstopts = bytes([17, 0, 0x1E, 4]) + b"\x11\x22\x33\x44"  # next header UDP, one immutable option
    for seq, port in enumerate((9, 10), 1):
        payload = udp_packet(n.gw_a, n.gw_b, 40000, port, f"dstopts-{port}".encode())[40:]
        hdr = ipv6_header(n.gw_a, n.gw_b, 51, codec.ah_len(6) + len(dstopts) + len(payload))
        sealed = codec.seal(hdr, 6, 60, dstopts + payload, seq, None)
        assert sealed is not None and ah_spi(sealed) == pb.ev.spi_in
        inject(p, sealed, n.gw_b)
        await until(lambda seq=seq: pb.sa_in.stats.packets_in == seq, what="verified")  # type: ignore[misc]
    await until(lambda: len(p.host_b.received) == 1, what="delivered")
    good = udp_packet(n.gw_a, n.gw_b, 40000, 9, b"dstopts-9")[40:]
    assert p.host_b.received == [ipv6_header(n.gw_a, n.gw_b, 60, len(dstopts) + len(good)) + dstopts + good]
    assert pb.policy_dropped == 1 and pb.sa_in.header_drops == {}


# ---------------------------------------------------------------------------
# refused at install

class _FakeEndpoint:
    def __init__(self, loop: Any, ah_socket: Any) -> None:
        self.loop = loop
        self.ah_socket = ah_socket
        self.sent: list[bytes] = []

    def send_ah(self, packets: list[bytes], remote: Any) -> None:
        self.sent += packets


def _ah_event(*, encap: bool) -> ChildSaInstalled:
    k = os.urandom(32)
    return ChildSaInstalled(
        name="lan", protocol="ah", mode="tunnel", spi_in=0x100, spi_out=0x200, encr=None, integ=integ("sha256"),
        encr_key_in=b"", encr_key_out=b"", integ_key_in=k, integ_key_out=k, esn=False,
        local_ts=(parse_ts(V4.net_a),), remote_ts=(parse_ts(V4.net_b),),
        local_addr=(V4.gw_a, 4500 if encap else 500), remote_addr=(V4.gw_b, 4500 if encap else 500),
        encap=encap, initiator=True,
    )


@pytest.mark.parametrize(("encap", "socket", "why"), [
    (True, object(), "AH cannot traverse NAT"),
    (False, None, "no raw AH socket"),
])
async def test_ah_refused_with_nat_or_without_socket(caplog: pytest.LogCaptureFixture, encap: bool, socket: Any,
                                                     why: str) -> None:
    ep = _FakeEndpoint(asyncio.get_running_loop(), socket)
    dp = DataPlane(ep, None)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="aioipsec.esp"):
        assert dp.install(None, _ah_event(encap=encap)) is None
    assert dp.stats.unsupported == 1 and 0x100 not in dp.sad_in and not dp.outbound
    (rec,) = [r for r in caplog.records if "not installed" in r.getMessage()]
    assert why in rec.getMessage() and V4.gw_b in rec.getMessage()


async def test_ah_installed_when_a_socket_is_there_and_no_nat() -> None:
    ep = _FakeEndpoint(asyncio.get_running_loop(), object())
    dp = DataPlane(ep, None)  # type: ignore[arg-type]
    pipe = dp.install(None, _ah_event(encap=False))
    assert pipe is not None and dp.stats.unsupported == 0
    # the ID counter wraps from 65535 to 1, never 0
    pipe.ident = 0xFFFE
    dp.outbound_packets(packets(3, V4.host_a, V4.host_b))
    assert [d[4:6] for d in ep.sent] == [b"\xff\xff", b"\x00\x01", b"\x00\x02"]


def test_ah_helpers() -> None:
    pkt = udp_packet("192.0.2.1", "192.0.2.2", 1, 2, b"x")
    assert ipv4_with_ident(pkt, 0x1234)[4:6] == b"\x12\x34"
    assert ipv4_with_ident(pkt, 0x1234)[:4] == pkt[:4] and ipv4_with_ident(pkt, 0x1234)[6:] == pkt[6:]
    assert ah_spi(pkt) is None  # UDP, not AH
    assert ah_spi(b"\x45") is None and ah_spi(b"") is None
    ah = pkt[:9] + b"\x33" + pkt[10:20] + b"\x11\x04\x00\x00" + (0xDEADBEEF).to_bytes(4, "big") + bytes(4)
    ah = ah[:2] + len(ah).to_bytes(2, "big") + ah[4:]
    assert ah_spi(ah) == 0xDEADBEEF
    assert ah_spi(ah[:-5][:2] + (len(ah) - 5).to_bytes(2, "big") + ah[4:-5]) is None  # AH header cut short
