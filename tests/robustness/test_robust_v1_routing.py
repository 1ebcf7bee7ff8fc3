"""Random ISAKMP headers into a gateway endpoint that routes IKEv1 by its
cookies (CKY-I, CKY-R; commit 093b4eb), while a road warrior's IKEv1 session
is up and its traffic flows.

Hypothesis draws batches of datagrams: cookie pairs made of the live
ISAKMP SA's cookies, unknown and zero ones in every combination, every
exchange type (Main, Aggressive, Quick Mode, Informational, Transaction,
IKEv2 ones, garbage), flags, message IDs and length fields that lie, bodies
of random bytes or of plausible payloads (an SA payload that opens a new
Main Mode, a plaintext DELETE or INITIAL-CONTACT under the live cookies),
from many source addresses and ports and from the road warrior's own
address, on port 500 and 4500.  The endpoint must not raise or log a
caught exception, every datagram moves an endpoint counter, half-open
sessions stay within ``half_open_max``, and the live session is unaffected:
the same session object with its ISAKMP SA and IPsec SAs, traffic still
flows both ways, and a DPD round trip still works."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import fuzzlib
from asyncwait import Host, until
from conftest import SOAK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robust_vtime import VirtualTimeLoop

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import GlobalConfig, child, connection
from aioipsec.ike.v1.payloads import (
    DeletePayload,
    NotifyPayload,
    SaPayload,
    encode_chain,
)
from aioipsec.netutil import udp_packet
from aioipsec.transports.memory import memory_pipe

N = 120 if SOAK else 15
SETTINGS = settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck), database=None)

GW, RW = "192.0.2.2", "198.51.100.10"
NET_GW, NET_RW = "203.0.113.0/24", "10.0.1.0/24"
HOST_GW, HOST_RW = "203.0.113.10", "10.0.1.5"
PSK = "routing-psk"
HALF_OPEN_MAX = 8
HALF_OPEN_SEEN: list[int] = []


def gw_cfg() -> Any:
    return connection("rw", version=1, psk=PSK, proposals=["aes128-sha256-x25519"], local_id="gw.example", remote_id=None, local_addrs=[GW],
                      remote_addrs=["%any"], dpd_delay=30,
                      children=[child("net", local_ts=[NET_GW], remote_ts=["10.0.0.0/16"])])  # fmt: skip


def rw_cfg() -> Any:
    return connection("to-gw", version=1, psk=PSK, proposals=["aes128-sha256-x25519"], local_id="rw.example", remote_id="gw.example",
                      local_addrs=[RW], remote_addrs=[GW], dpd_delay=30,
                      children=[child("net", local_ts=[NET_RW], remote_ts=[NET_GW])])  # fmt: skip


@st.composite
def datagram(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """(description resolved against the live SA later, to the NAT-T port)."""
    return {
        "cky_i": draw(st.sampled_from(["live", "live", "zero", "random", "other-live-r"])),
        "cky_r": draw(st.sampled_from(["live", "zero", "zero", "random", "live-i"])),
        "next": draw(st.sampled_from([1, 8, 5, 11, 12, 14, 132, 0, 255])),
        "version": draw(st.sampled_from([0x10, 0x10, 0x10, 0x20, 0x11, 0x00])),
        "exchange": draw(st.sampled_from([2, 4, 5, 6, 32, 1, 3, 33, 34, 35, 37, 0, 255])),
        "flags": draw(st.sampled_from([0, 1, 2, 3, 4, 7, 0xFF])),
        "mid": draw(st.sampled_from([0, 0, 1, 0xFFFFFFFF, draw(st.integers(0, 0xFFFFFFFF))])),
        "length": draw(st.sampled_from(["right", "right", "short", "long", "zero", "huge"])),
        "body": draw(st.sampled_from(["random", "sa", "delete-isakmp", "delete-esp", "notify", "empty", "mm1", "mm1"])),
        "random": draw(st.binary(max_size=120)),
        "src": draw(st.sampled_from(["rw", "rw-other-port", "many", "many"])),
        "src_n": draw(st.integers(0, 255)),
        "port": draw(st.sampled_from([500, 500, 4500, 1024 + draw(st.integers(0, 60000))])),
    }, draw(st.booleans())


def _mm1() -> bytes:
    w = fuzzlib.V1World(3)
    w.i.initiate(w.now)
    w.collect()
    return w.pending_i[0]


MM1 = _mm1()
"""A genuine Main Mode MM1 (aes128-sha256-x25519): with a fresh CKY-I a new half-open session."""


def build(d: dict[str, Any], live: Any, esp_spis: list[int]) -> tuple[bytes, tuple[str, int]]:
    sa = live.sa
    if d["body"] == "mm1":
        src = (f"203.0.113.{d['src_n']}", d["port"]) if d["src"] == "many" else live.remote_addr
        return d["random"][:8].ljust(8, b"\x77") + MM1[8:], src
    cky = {"live": sa.spi_i, "zero": bytes(8), "random": d["random"][:8].ljust(8, b"\x5a"), "other-live-r": sa.spi_r}
    ckr = {"live": sa.spi_r, "zero": bytes(8), "random": d["random"][-8:].rjust(8, b"\xa5"), "live-i": sa.spi_i}
    body = d["body"]
    if body == "sa":
        first, chain = encode_chain([SaPayload([])])
        chain += d["random"]
    elif body == "delete-isakmp":
        first, chain = encode_chain([DeletePayload(1, [sa.spi_i + sa.spi_r], 16)])
    elif body == "delete-esp":
        first, chain = encode_chain([DeletePayload(3, [s.to_bytes(4, "big") for s in esp_spis] or [bytes(4)])])
    elif body == "notify":
        first, chain = encode_chain([NotifyPayload(24578, 1, sa.spi_i + sa.spi_r, b"")])  # INITIAL-CONTACT
    elif body == "empty":
        first, chain = 0, b""
    else:
        first, chain = d["next"], d["random"]
    total = 28 + len(chain)
    length = {"right": total, "short": max(total - 5, 0), "long": total + 40, "zero": 0, "huge": 0xFFFFFFF0}[d["length"]]
    hdr = cky[d["cky_i"]] + ckr[d["cky_r"]] + bytes([first if body != "random" else d["next"], d["version"],
                                                     d["exchange"], d["flags"]])  # fmt: skip
    data = hdr + struct.pack("!LL", d["mid"], length) + chain
    src = {"rw": live.remote_addr, "rw-other-port": (live.remote_addr[0], d["port"]),
           "many": (f"203.0.113.{d['src_n']}", d["port"])}[d["src"]]  # fmt: skip
    return data, src


async def _traffic(app_from: Any, host_to: Host, src: str, dst: str, payload: bytes) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while payload not in host_to.payloads():
        assert loop.time() < deadline, f"{payload!r} never arrived"
        app_from.send_batch([udp_packet(src, dst, 7, 9, payload)])
        await asyncio.sleep(0.05)


@SETTINGS
@given(st.lists(datagram(), min_size=1, max_size=40))
def test_random_isakmp_headers_leave_the_live_session_alone(batch: list[tuple[dict[str, Any], bool]]) -> None:
    fuzzlib.SWALLOWED.hits.clear()

    async def main() -> None:
        net = MemoryNetwork()
        gw_in, gw_app = memory_pipe(queue_size=1024)
        rw_in, rw_app = memory_pipe(queue_size=1024)
        gc = GlobalConfig(half_open_max=HALF_OPEN_MAX, cookie_threshold=4, init_limit_per_peer=1000)
        gw = await Endpoint.create(GW, configurations=[gw_cfg()], network=net, inner=gw_in, global_config=gc)
        rw = await Endpoint.create(RW, configurations=[rw_cfg()], network=net, inner=rw_in)
        h_gw, h_rw = Host(gw_app), Host(rw_app)
        h_gw.start()
        h_rw.start()
        try:
            rw.initiate("to-gw", "net")
            await until(lambda: rw.dataplane.outbound and gw.dataplane.outbound, what="the road warrior's IPsec SAs")
            [proto] = [p for p in gw.sessions if p.session.is_established]
            live = proto.session
            isakmp = live.sa
            spis = sorted(live.children)
            esp_spis = [*live.children, *(c.spi_out for c in live.children.values())]
            await _traffic(rw_app, h_gw, HOST_RW, HOST_GW, b"before")

            ike: list[tuple[bytes, tuple[str, int]]] = []
            natt: list[tuple[bytes, tuple[str, int]]] = []
            for d, to_natt in batch:
                data, src = build(d, live, esp_spis)
                if to_natt:
                    natt.append((b"\0\0\0\0" + data, src))
                else:
                    ike.append((data, src))
            st_ = gw.stats
            before = st_.ike_in + st_.malformed + st_.keepalives_in + st_.esp_in
            gw._on_ike_port(ike)
            gw._on_natt_port(natt)
            after = st_.ike_in + st_.malformed + st_.keepalives_in + st_.esp_in
            assert after - before >= len(batch), "a datagram moved no endpoint counter"
            fuzzlib.check_nothing_swallowed("IKEv1 routing")
            assert gw.half_open() <= HALF_OPEN_MAX
            half_open = gw.half_open()
            assert len(gw.sessions) <= 1 + HALF_OPEN_MAX
            await asyncio.sleep(0.5)
            # the live session: same object, same ISAKMP SA and IPsec SAs, traffic both ways, DPD
            assert proto in gw.sessions and live.is_established and not live.is_closed
            assert live.sa is isakmp and sorted(live.children) == spis, "the live session's SAs changed"
            assert gw._by_spi.get(isakmp.spi_i + isakmp.spi_r) is proto, "the live cookies route elsewhere"
            await _traffic(rw_app, h_gw, HOST_RW, HOST_GW, b"after")
            await _traffic(gw_app, h_rw, HOST_GW, HOST_RW, b"back")
            [rw_proto] = list(rw.sessions)
            pending = rw_proto.session.sa
            rw_proto.session.dpd(asyncio.get_running_loop().time())
            rw_proto.process()
            assert pending.dpd_pending_since is not None
            await until(lambda: pending.dpd_pending_since is None, what="the R-U-THERE-ACK")
            fuzzlib.check_nothing_swallowed("IKEv1 routing, afterwards")
            # half-open sessions made by the garbage time out
            await asyncio.sleep(120)
            assert gw.half_open() == 0 and proto in gw.sessions
            assert len(gw.sessions) == 1, "sessions made by the garbage outlive it"
            HALF_OPEN_SEEN.append(half_open)
        finally:
            await h_gw.stop()
            await h_rw.stop()
            for ep in (rw, gw):
                await asyncio.wait_for(ep.close(timeout=1.0), 5)

    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_the_garbage_did_open_sessions() -> None:
    """The test above is not vacuous: genuine MM1s in its batches opened
    half-open sessions (up to the limit), which then timed out."""
    if not HALF_OPEN_SEEN:
        test_random_isakmp_headers_leave_the_live_session_alone()
    assert max(HALF_OPEN_SEEN) > 0


# --------------------------------------------------------------------------- regressions (found by the test above)


def test_regression_a_responder_session_whose_first_datagram_opened_nothing_is_closed() -> None:
    """A broken ISAKMP header as the first datagram left an IKEv1 responder
    session with no ISAKMP SA, not closed and without a timer: at the
    endpoint a half-open session forever."""
    from aioipsec.ike.v1 import IkeSessionV1

    for data in (bytes(16) + bytes([1, 0x10, 2, 0]) + struct.pack("!LL", 0, 23),  # length shorter than the header
                 b"\x11" * 8 + bytes(8) + bytes([1, 0x10, 2, 0]) + struct.pack("!LL", 0, 28)):  # MM1 without an SA
        s = IkeSessionV1.respond(configurations=[gw_cfg()], local_addr=(GW, 500), remote_addr=("203.0.113.5", 500))
        s.receive_datagram(data, ("203.0.113.5", 500), 100.0)
        assert s.stats["dropped"] == 1 and s.is_closed and s.get_timer() is None


def test_regression_garbage_mm1s_do_not_use_up_the_half_open_slots() -> None:
    """HALF_OPEN_MAX broken MM1s from as many addresses: the endpoint kept a
    session for each, forever, and refused every new peer after them."""

    async def main() -> None:
        net = MemoryNetwork()
        gw_in, _gw_app = memory_pipe()
        rw_in, _rw_app = memory_pipe()
        gc = GlobalConfig(half_open_max=HALF_OPEN_MAX, cookie_threshold=4, init_limit_per_peer=1000)
        gw = await Endpoint.create(GW, configurations=[gw_cfg()], network=net, inner=gw_in, global_config=gc)
        rw = await Endpoint.create(RW, configurations=[rw_cfg()], network=net, inner=rw_in)
        try:
            for n in range(HALF_OPEN_MAX):
                bad = n.to_bytes(8, "big") + bytes(8) + bytes([1, 0x10, 2, 0]) + struct.pack("!LL", 0, 28 - n % 2 * 5)
                gw._on_ike_port([(bad, (f"203.0.113.{n}", 500))])
            assert gw.stats.ike_in == HALF_OPEN_MAX
            assert gw.half_open() == 0 and not gw.sessions
            rw.initiate("to-gw", "net")
            await until(lambda: rw.dataplane.outbound and gw.dataplane.outbound, what="a new peer's IPsec SAs")
            assert gw.stats.half_open_dropped == 0
        finally:
            for ep in (rw, gw):
                await asyncio.wait_for(ep.close(timeout=1.0), 5)

    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_regression_a_forged_datagram_on_4500_does_not_move_the_live_session_to_4500() -> None:
    """One datagram with the live ISAKMP SA's cookies that reached our port
    4500 from the peer's address made every later IKE message of the
    session leave from 4500 (to the peer's 500, which did not expect it):
    the next R-U-THERE-ACK never arrived."""

    async def main() -> None:
        net = MemoryNetwork()
        gw_in, _gw_app = memory_pipe()
        rw_in, _rw_app = memory_pipe()
        gw = await Endpoint.create(GW, configurations=[gw_cfg()], network=net, inner=gw_in)
        rw = await Endpoint.create(RW, configurations=[rw_cfg()], network=net, inner=rw_in)
        try:
            rw.initiate("to-gw", "net")
            await until(lambda: rw.dataplane.outbound and gw.dataplane.outbound, what="IPsec SAs")
            [proto] = list(gw.sessions)
            sa = proto.session.sa
            forged = sa.spi_i + sa.spi_r + bytes([8, 0x10, 5, 1]) + struct.pack("!LL", 7, 60) + bytes(32)
            gw._on_natt_port([(b"\0\0\0\0" + forged, proto.session.remote_addr)])
            assert not proto.use_4500
            [rwp] = list(rw.sessions)
            rsa = rwp.session.sa
            rwp.session.dpd(asyncio.get_running_loop().time())
            rwp.process()
            await until(lambda: rsa.dpd_pending_since is None, what="the R-U-THERE-ACK")
        finally:
            for ep in (rw, gw):
                await asyncio.wait_for(ep.close(timeout=1.0), 5)

    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
