"""DoS resistance (RFC 7296 §2.6, RFC 7383 §2.6): half-open IKE SAs bounded,
stateless COOKIEs above a threshold with rotated secrets, per-peer rate
limits with a bounded table, bounded IKE fragment reassembly, and a flood of
forged IKE_SA_INIT over real loopback UDP that stays under a stated memory
bound while a legitimate peer still connects (with a cookie)."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import socket
import sys
import time
import tracemalloc
from typing import Any

import pytest
from conftest import SOAK
from hypothesis import given, settings
from hypothesis import strategies as st
from robust_vtime import VirtualTimeLoop

import fuzzlib
from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import GlobalConfig
from aioipsec.errors import RemoteProtocolError
from aioipsec.ike.constants import NotifyType
from aioipsec.ike.v2.message import decode_message, encode_message
from aioipsec.ike.v2.payloads import NotifyPayload

R_IP = "192.0.2.2"


def init_request(seed: int = 1) -> bytes:
    """A genuine IKE_SA_INIT request (x25519, 32-byte nonce)."""
    w = fuzzlib.V2World(seed)
    w.i.initiate(w.now)
    w.collect()
    return w.pending_i[0]


def with_spi(req: bytes, spi: bytes) -> bytes:
    return spi + req[8:]


def with_cookie(req: bytes, cookie: bytes) -> bytes:
    msg = decode_message(req)
    msg.payloads.insert(0, NotifyPayload(NotifyType.COOKIE, cookie))
    return encode_message(msg)


_INIT_SEEDS = [init_request(1), with_cookie(init_request(2), bytes(range(36)))]


def memory_endpoint(net: MemoryNetwork, gcfg: GlobalConfig, loop: asyncio.AbstractEventLoop) -> Endpoint:
    _i, r = fuzzlib.v2_configs(0)
    return Endpoint(
        configurations=[r],
        ike_socket=net.bind((R_IP, 500)),
        natt_socket=net.bind((R_IP, 4500)),
        esp_socket=net.bind((R_IP, 0)),
        loop=loop,
        global_config=gcfg,
    )


def run(coro: Any) -> Any:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


# =========================================================================== sans-network endpoint checks


def test_half_open_sessions_are_bounded_even_with_valid_cookies() -> None:
    """Attackers that can receive replies (so they answer every COOKIE) from
    many addresses: the endpoint never holds more than half_open_max
    half-open IKE SAs; the rest is dropped and counted."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        net = MemoryNetwork(loop=loop)
        gcfg = GlobalConfig(cookie_threshold=5, half_open_max=40, init_limit_per_peer=1000)
        ep = memory_endpoint(net, gcfg, loop)
        req = init_request()
        cookies: dict[tuple[str, int], bytes] = {}
        socks = []
        for n in range(120):
            s = net.bind((f"203.0.113.{n + 1}", 500))
            s.set_receiver(lambda batch, a=s.local_addr: [cookies.__setitem__(a, d) for d, _ in batch])
            socks.append(s)
        spis = {s.local_addr: os.urandom(8) for s in socks}
        for s in socks:
            s.sendto(with_spi(req, spis[s.local_addr]), (R_IP, 500))
        await asyncio.sleep(0.01)
        for s in socks:  # answer the COOKIE challenge like a real initiator
            reply = cookies.get(s.local_addr)
            if reply is not None:
                m = decode_message(reply)
                if m.notifies and m.notifies[0].notify_type == NotifyType.COOKIE:
                    s.sendto(with_cookie(with_spi(req, spis[s.local_addr]), m.notifies[0].data), (R_IP, 500))
        await asyncio.sleep(0.01)
        assert ep.half_open() <= gcfg.half_open_max
        assert ep.half_open() == gcfg.half_open_max
        assert ep.stats.cookies_sent >= 120 - gcfg.cookie_threshold
        assert ep.stats.half_open_dropped > 0
        # half-open SAs time out (30 s) and free their slots
        await asyncio.sleep(31)
        assert ep.half_open() == 0 and not ep.sessions and not ep._by_init
        await ep.close()

    run(main())


def test_drop_decisions_send_nothing() -> None:
    """Above the threshold, an IKE_SA_INIT with a wrong cookie and a
    malformed one are dropped without any reply (the endpoint used to send an
    empty datagram, a free reflector, and count it as a cookie)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        net = MemoryNetwork(loop=loop)
        sent: list[tuple[Any, bytes, Any]] = []
        net.tap = lambda src, data, dst: sent.append((src, data, dst))
        gcfg = GlobalConfig(cookie_threshold=0, half_open_max=10, init_limit_per_peer=1000)
        ep = memory_endpoint(net, gcfg, loop)
        req = init_request()
        attacker = net.bind(("203.0.113.9", 500))
        attacker.set_receiver(lambda batch: None)
        attacker.sendto(with_cookie(req, os.urandom(36)), (R_IP, 500))  # forged cookie
        mangled = bytearray(req)
        mangled[30:32] = b"\xff\xff"  # first payload longer than the datagram: framing broken
        attacker.sendto(bytes(mangled), (R_IP, 500))
        await asyncio.sleep(0.01)
        replies = [d for src, d, dst in sent if src[0] == R_IP]
        assert replies == [], f"dropped requests were answered: {replies}"
        assert ep.stats.cookies_sent == 0 and not ep.sessions
        assert ep.stats.ike_in == 2
        await ep.close()

    run(main())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_light_cookie_parser_agrees_with_the_full_decoder(data: st.DataObject) -> None:
    """The cookie check walks only the payload headers (it runs for every
    packet of a flood).  On genuine and mutated IKE_SA_INIT requests it never
    raises, and whenever the full decoder accepts a request it extracts the
    same SPI, nonce, cookie and message ID."""
    from aioipsec.ike.cookies import parse_init_for_cookie
    from aioipsec.ike.v2.payloads import NoncePayload

    base = data.draw(st.sampled_from(_INIT_SEEDS))
    raw = fuzzlib.mutate(base, fuzzlib.Reader(data.draw(st.binary(max_size=40))))
    if data.draw(st.booleans()):
        raw = fuzzlib.fix_ike_length(raw)
    light = parse_init_for_cookie(raw)
    try:
        full = decode_message(raw)
    except RemoteProtocolError:
        return
    nonce = full.get(NoncePayload)
    if full.exchange_type != 34 or full.response or not full.initiator or full.spi_r != bytes(8) or nonce is None:
        assert light is None
        return
    assert light is not None
    first = full.payloads[0]
    cookie = first.data if isinstance(first, NotifyPayload) and first.notify_type == NotifyType.COOKIE else None
    assert (light.spi_i, light.nonce, light.cookie, light.message_id) == (full.spi_i, nonce.data, cookie, full.message_id)


def test_cookie_reply_bytes_match_the_encoder() -> None:
    from aioipsec.ike.cookies import ParsedInit, build_cookie_reply
    from aioipsec.ike.v2.message import Message

    parsed = ParsedInit(b"\x11" * 8, b"n" * 32, None, 0)
    msg = Message(34, b"\x11" * 8, bytes(8), 0, initiator=False, response=True,
                  payloads=[NotifyPayload(NotifyType.COOKIE, b"c" * 36)])  # fmt: skip
    assert build_cookie_reply(parsed, b"c" * 36) == encode_message(msg)


def test_cookie_secret_rotation_at_the_endpoint() -> None:
    """The endpoint's cookie secret rotates on loop time (120 s): a cookie
    stays good across one rotation, not across two."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        net = MemoryNetwork(loop=loop)
        gcfg = GlobalConfig(cookie_threshold=0, half_open_max=100, init_limit_per_peer=1000)
        ep = memory_endpoint(net, gcfg, loop)
        req = init_request()
        got: list[bytes] = []
        peer = net.bind(("203.0.113.20", 500))
        peer.set_receiver(lambda batch: got.extend(d for d, _ in batch))
        peer.sendto(req, (R_IP, 500))
        await asyncio.sleep(0.01)
        [reply] = got
        cookie = decode_message(reply).notifies[0].data
        await asyncio.sleep(250)  # two rotations later
        peer.sendto(with_cookie(req, cookie), (R_IP, 500))
        await asyncio.sleep(0.01)
        assert not ep.sessions, "a cookie from two secrets ago was accepted"
        got.clear()
        peer.sendto(req, (R_IP, 500))
        await asyncio.sleep(0.01)
        cookie = decode_message(got[-1]).notifies[0].data
        await asyncio.sleep(130)  # one rotation later: still valid
        peer.sendto(with_cookie(req, cookie), (R_IP, 500))
        await asyncio.sleep(0.01)
        assert len(ep.sessions) == 1
        await ep.close()

    run(main())


def test_per_peer_rate_limit() -> None:
    """One address gets init_limit_per_peer IKE_SA_INITs per second through;
    the rest is dropped and counted."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        net = MemoryNetwork(loop=loop)
        gcfg = GlobalConfig(cookie_threshold=1000, half_open_max=1000, init_limit_per_peer=7)
        ep = memory_endpoint(net, gcfg, loop)
        req = init_request()
        peer = net.bind(("203.0.113.30", 500))
        peer.set_receiver(lambda batch: None)
        for _ in range(50):
            peer.sendto(with_spi(req, os.urandom(8)), (R_IP, 500))
        await asyncio.sleep(0.01)
        assert len(ep.sessions) == 7
        assert ep.stats.rate_limited == 43
        await ep.close()

    run(main())


def test_rate_table_is_bounded_under_many_sources() -> None:
    """Forged IKE_SA_INITs from 20 000 distinct addresses within one second:
    the per-peer rate table stays bounded (it grew without limit, and every
    packet rescanned it)."""
    from aioipsec.asyncio import endpoint as endpoint_mod

    async def main() -> None:
        loop = asyncio.get_running_loop()
        net = MemoryNetwork(loop=loop)
        gcfg = GlobalConfig(cookie_threshold=0, half_open_max=10, init_limit_per_peer=5)
        ep = memory_endpoint(net, gcfg, loop)
        req = init_request()
        cap = getattr(endpoint_mod, "RATE_TABLE_MAX", 4096)
        t0 = time.perf_counter()
        for n in range(20_000):
            ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            ep._on_ike_port([(with_spi(req, n.to_bytes(8, "big")), (ip, 500))])
        elapsed = time.perf_counter() - t0
        assert len(ep._rate) <= cap + 1
        assert ep.stats.cookies_sent == 20_000
        assert elapsed < 30, f"{elapsed:.1f} s for 20 000 packets"
        await ep.close()

    run(main())


# =========================================================================== IKE fragment reassembly


def test_ikev2_fragments_need_keys_and_reassembly_is_bounded() -> None:
    """IKEv2: unauthenticated fragments change no state; authenticated ones
    are bounded per IKE SA (messages x octets)."""
    from aioipsec.ike.v2.fragment import fragment_message
    from aioipsec.ike.v2.message import Message
    from aioipsec.ike.v2.payloads import UnknownPayload

    w = fuzzlib.V2World(5).establish()
    r = w.r
    re = r.sa.reassembler
    assert re is not None
    # forged: right SPIs and message ID, garbage SKF body
    mid = w.i.sa.tm.my_mid
    for k in range(200):
        fake = fuzzlib.fix_ike_length(
            r.spi_i + r.spi_r + bytes([53, 0x20, 37, 0x08]) + mid.to_bytes(4, "big") + bytes(4)
            + bytes([0, 0, 0, 48]) + (1).to_bytes(2, "big") + (9).to_bytes(2, "big") + os.urandom(40)
        )  # fmt: skip
        r.receive_datagram(fake, fuzzlib.I_ADDR, w.now)
    assert re.pending() == 0 and r.stats.integrity_failed == 200
    # authenticated but never completed: one message ID after the other, big pieces
    sk = w.i.sa.sk
    for mid in range(mid, mid + 40):
        msg = Message(37, r.spi_i, r.spi_r, mid, initiator=True, encrypted=True,
                      payloads=[UnknownPayload(200, False, os.urandom(3000))])  # fmt: skip
        frags = fragment_message(msg, sk, 600)
        for f in frags[:-1]:  # the last one never comes
            r.receive_datagram(f, fuzzlib.I_ADDR, w.now)
        assert re.pending() <= re.max_messages
        assert sum(p.size for p in re._partial.values()) <= re.max_messages * re.max_bytes
    assert r.stats.internal_errors == 0 and r.is_established


def test_ikev1_fragment_table_is_bounded() -> None:
    """IKEv1 fragments are not authenticated: anyone who sees the cookies can
    send them.  Never-completed fragment IDs must not pile up without bound."""
    from aioipsec.ike.v1.message import Message, encode_message as enc1
    from aioipsec.ike.v1.payloads import FragmentPayload

    w = fuzzlib.V1World(5)
    w.i.initiate(w.now, child="net")
    w.settle()
    r = w.r
    sa = r.sa
    for fid in range(1, 3001):
        frag = Message(2, 0, sa.spi_i, sa.spi_r, [FragmentPayload(fragment_id=fid, number=1, last=False, data=os.urandom(1000))])
        r.receive_datagram(enc1(frag)[0], fuzzlib.I_ADDR, w.now)
    held = sum(len(p) for parts in r._frags.values() for p in parts.values())
    assert len(r._frags) <= 64, f"{len(r._frags)} incomplete fragment IDs kept ({held} octets)"
    assert held <= 4 * r.global_config.fragment_reassembly_max
    assert set(r._frag_last) <= set(r._frags)
    # a real fragmented message still reassembles after the flood
    whole = enc1(Message(5, 0, sa.spi_i, sa.spi_r, []))[0]
    pieces = [whole[:20], whole[20:]]
    for n, piece in enumerate(pieces, 1):
        frag = Message(2, 0, sa.spi_i, sa.spi_r, [FragmentPayload(fragment_id=9999, number=n, last=n == 2, data=piece)])
        r.receive_datagram(enc1(frag)[0], fuzzlib.I_ADDR, w.now)
    assert r.stats["reassembled"] == 1 and (sa.spi_i, 9999) not in r._frags


def test_ikev1_forged_quick_mode_messages_do_not_pile_up() -> None:
    """Forged Quick Mode messages (random message IDs, garbage encrypted body)
    on an established ISAKMP SA are dropped; they must not leave a passive
    exchange behind each (memory grew by one QuickModeTask per datagram)."""
    w = fuzzlib.V1World(6)
    w.i.initiate(w.now, child="net")
    w.settle()
    r = w.r
    sa = r.sa
    before = r.stats["dropped"]
    for k in range(1000):
        mid = random.Random(k).randrange(1, 1 << 32)
        body = os.urandom(96)
        hdr = sa.spi_i + sa.spi_r + bytes([8, 0x10, 32, 1]) + mid.to_bytes(4, "big") + (28 + len(body)).to_bytes(4, "big")
        r.receive_datagram(hdr + body, fuzzlib.I_ADDR, w.now)
    assert r.stats["dropped"] >= before + 1000
    assert len(sa.tm.passive) <= 64, f"{len(sa.tm.passive)} passive Quick Mode exchanges kept"
    assert r.is_established


# =========================================================================== the loopback flood


def _free_prefix() -> str:
    rng = random.Random(os.getpid() ^ time.time_ns())
    return f"127.{rng.randrange(64, 250)}.{rng.randrange(1, 250)}"


def _port_pair() -> int:
    for _ in range(50):
        p = random.randrange(20000, 60000, 2)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free UDP port pair")


FLOOD_SECONDS = 20.0 if SOAK else 4.0
FLOOD_SOURCES = 200
FLOOD_RATE = 3000
"""Forged IKE_SA_INIT per second in the traced flood: inside what the endpoint
handles here under tracemalloc, which makes it 2-5x slower (it handles some
50k/s through the cookie path without, and drops the rate-limited rest at
~350k/s).  A flood beyond the endpoint's capacity overflows the kernel socket
buffer, which then drops legitimate datagrams as well."""
MEMORY_BOUND = 32 * 1024 * 1024
"""Stated bound on the memory the endpoint may add under the flood (tracemalloc)."""
RSS_BOUND = 64 * 1024 * 1024
"""Stated bound on resident memory growth under the untraced, unthrottled flood."""

FLOODER = r"""
import os, socket, sys, time
prefix, server, port, seconds, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
req = bytes.fromhex(sys.argv[6]); forged = bytes.fromhex(sys.argv[7]); rate = float(sys.argv[8])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind((f"{prefix}.{10 + i}", 0))
    socks.append(s)
sent = k = 0
t0 = time.monotonic()
end = t0 + seconds
while time.monotonic() < end:
    for s in socks:
        k += 1
        data = forged if k % 5 == 0 else req
        try:
            s.sendto(k.to_bytes(8, "big") + data[8:], (server, port))
            sent += 1
        except OSError:
            pass
    if rate:
        ahead = sent / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
"""


async def test_ike_sa_init_flood_over_loopback_memory_bound_and_legit_peer_connects() -> None:
    """A separate process floods forged IKE_SA_INITs (a fresh SPI each, one in
    five with a forged COOKIE) from 200 loopback addresses at FLOOD_RATE
    against an endpoint on real UDP sockets, for FLOOD_SECONDS and on until a
    legitimate initiator, started a second into the flood, has answered the
    COOKIE challenge and connected.  Traced memory stays under MEMORY_BOUND,
    half-open SAs under their limit, and the flood is counted."""
    await _flood(FLOOD_RATE, require_connect=True)


FAST_FLOOD_RATE = 20000
"""The untraced flood: half of it passes the per-peer limit (200 sources x 50/s)
into the cookie path, the rest is dropped by the rate limiter."""


async def test_fast_flood_rss_bound_and_legit_peer_connects() -> None:
    """The same flood at FAST_FLOOD_RATE without tracemalloc: resident memory
    grows by less than RSS_BOUND, and the legitimate peer still connects."""
    await _flood(FAST_FLOOD_RATE, require_connect=True, traced=False)


@pytest.mark.skipif(not SOAK, reason="unthrottled floods: AIOIPSEC_SOAK=1")
@pytest.mark.parametrize("traced", [False, True])
async def test_unthrottled_flood_memory_bound(traced: bool) -> None:
    """As fast as another process can send (300-400k datagrams/s here):
    memory and half-open SAs stay bounded.  Whether the legitimate peer's
    datagrams find room in the overflowing socket buffer depends on how the
    two shared cores are split between flooder and endpoint (it connected in
    0.06-8 s in most untraced runs here, never when traced), so it is printed,
    not asserted."""
    await _flood(0, require_connect=False, traced=traced)


def _rss() -> int:
    import resource

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


async def _flood(rate: float, *, require_connect: bool, traced: bool = True) -> None:
    loop = asyncio.get_running_loop()
    prefix = _free_prefix()
    server_ip, client_ip = f"{prefix}.1", f"{prefix}.2"
    port = _port_pair()
    ci, cr = fuzzlib.v2_configs(0)
    ci.local_port = ci.remote_port = cr.local_port = cr.remote_port = port
    gcfg = GlobalConfig(cookie_threshold=10, half_open_max=100, init_limit_per_peer=50)
    req = init_request(3)
    forged_cookie = with_cookie(req, os.urandom(36))
    server = client = flooder = None
    gc.collect()
    if traced:
        tracemalloc.start()
    rss0 = _rss()
    try:
        base = tracemalloc.get_traced_memory()[0]
        server = await Endpoint.create(server_ip, configurations=[cr], port=port, natt_port=port + 1,
                                       global_config=gcfg, raw_esp=False)  # fmt: skip
        start = loop.time()
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOODER, prefix, server_ip, str(port), "60", str(FLOOD_SOURCES),
            req.hex(), forged_cookie.hex(), str(rate), stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(1.0)
        client = await Endpoint.create(client_ip, configurations=[ci], port=port, natt_port=port + 1,
                                       respond=False, raw_esp=False)  # fmt: skip
        t_connect = loop.time()
        proto = client.initiate(ci.name, remote=(server_ip, port))
        try:
            established = await asyncio.wait_for(proto.wait_established(), 45 if require_connect else FLOOD_SECONDS)
            t_connect = loop.time() - t_connect
            assert established.remote_addr[0] == server_ip
            assert flooder.returncode is None, "the flood ended before the legitimate peer connected"
        except (asyncio.TimeoutError, Exception):
            if require_connect:
                raise
            t_connect = float("nan")
        await asyncio.sleep(max(0.0, start + FLOOD_SECONDS - loop.time()))
        flooder.terminate()
        await flooder.wait()
        flood_time = loop.time() - start
        current, peak = tracemalloc.get_traced_memory()
        rss = _rss() - rss0
        st = server.stats
        assert st.ike_in > 1000, f"the endpoint only saw {st.ike_in} datagrams"
        assert st.cookies_sent > 0
        assert server.half_open() <= gcfg.half_open_max
        if traced:
            assert peak - base < MEMORY_BOUND, f"flood peak {(peak - base) / 1e6:.1f} MB over the bound"
            mem = f"traced memory peak +{(peak - base) / 1e6:.1f} MB (bound {MEMORY_BOUND / 1e6:.0f} MB)"
        else:
            assert rss < RSS_BOUND, f"RSS grew {rss / 1e6:.1f} MB"
            mem = f"RSS +{rss / 1e6:.1f} MB (bound {RSS_BOUND / 1e6:.0f} MB)"
        print(
            f"flood ({rate or 'unthrottled'}/s{', traced' if traced else ''}): {flood_time:.1f} s from {FLOOD_SOURCES} "
            f"addresses; endpoint processed {st.ike_in} ({st.ike_in / flood_time:.0f}/s), cookies {st.cookies_sent}, "
            f"rate-limited {st.rate_limited}, half-open {server.half_open()}; {mem}; "
            f"legitimate peer established after {t_connect:.2f} s"
        )
    finally:
        if traced:
            tracemalloc.stop()
        if flooder is not None and flooder.returncode is None:
            flooder.kill()
            await flooder.wait()
        if client is not None:
            await client.close()
        if server is not None:
            await server.close(delete=False)


class _CountingSet(set):  # type: ignore[type-arg]
    iterations = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        type(self).iterations += 1
        return super().__iter__()


def test_per_packet_work_does_not_scan_the_sessions() -> None:
    """With many sessions held (half-open IKEv2, established IKEv1), forged
    IKE_SA_INIT and Main Mode first messages are handled without walking the
    session table (it cost O(sessions) per packet: 1.3k forged IKE_SA_INIT/s
    with 1000 half-open SAs, 380k/s after)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        net = MemoryNetwork(loop=loop)
        gcfg = GlobalConfig(cookie_threshold=1000, half_open_max=150, init_limit_per_peer=1000)
        ep = memory_endpoint(net, gcfg, loop)
        _i1, r1 = fuzzlib.v1_configs(0)
        ep.configurations[r1.name] = r1
        for c in ep.configurations.values():
            c.remote_addrs = []
        counting = _CountingSet(ep.sessions)
        ep.sessions = counting
        req = init_request()
        for n in range(150):
            ep._on_ike_port([(with_spi(req, os.urandom(8)), (f"10.1.0.{n + 1}", 500))])
        assert ep.half_open() == 150
        w1 = fuzzlib.V1World(2)
        w1.i.initiate(w1.now, child=None)
        w1.collect()
        mm1 = w1.pending_i[0]
        _CountingSet.iterations = 0
        for n in range(2000):
            ep._on_ike_port([(with_spi(req, os.urandom(8)), (f"10.2.{n >> 8}.{n & 255}", 500))])
            ep._on_ike_port([(with_spi(mm1, os.urandom(8)), (f"10.3.{n >> 8}.{n & 255}", 500))])
        assert ep.stats.half_open_dropped == 4000
        assert _CountingSet.iterations == 0, f"the session table was walked {_CountingSet.iterations} times"
        await ep.close(delete=False)

    run(main())


def test_forged_quick_mode_datagrams_do_not_break_an_exchange_in_progress() -> None:
    """Between QM1 and QM2, 20 forged Quick Mode datagrams (fresh message
    IDs, garbage body: all it takes is the cookies, visible on the path) reach
    the initiator.  They are dropped, and the real QM2 still decrypts: IV
    chains are created only by accepted messages (the forged ones used to
    push the chain of the exchange in progress out of the 16-entry LRU)."""
    w = fuzzlib.V1World(3)
    w.i.initiate(w.now, child="net")
    w.settle()
    i, r = w.i, w.r
    i.create_child_sa("net", w.now)
    w.collect()
    qm1, w.pending_i = w.pending_i, []
    for d in qm1:
        r.receive_datagram(d, fuzzlib.I_ADDR, w.now)
    w.collect()
    qm2, w.pending_r = w.pending_r, []
    sa = i.sa
    for k in range(20):
        body = os.urandom(96)
        mid = random.Random(k).randrange(1, 1 << 32)
        hdr = sa.spi_i + sa.spi_r + bytes([8, 0x10, 32, 1]) + mid.to_bytes(4, "big") + (28 + len(body)).to_bytes(4, "big")
        i.receive_datagram(hdr + body, fuzzlib.R_ADDR, w.now)
    assert i.stats["dropped"] == 20
    for d in qm2:
        i.receive_datagram(d, fuzzlib.R_ADDR, w.now)
    w.settle()
    assert i.stats["dropped"] == 20 and len(i.children) == 2 and len(r.children) == 2
