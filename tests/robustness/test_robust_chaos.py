"""Chaos: many seeded IKEv2 and IKEv1 establishments, Child SA and IKE SA
rekeys and tunnel traffic through the whole asyncio stack over a
``MemoryNetwork`` that loses, duplicates, reorders, corrupts and delays
datagrams.  Time is virtual (``robust_vtime``), so retransmission budgets and
lifetimes are the real ones and a run still takes milliseconds.

Every run ends established (or, where the loss exceeds the retransmission
budget, cleanly failed: an ``IkeError`` in bounded time, never a hang), and
afterwards no task, timer, session, SPI route or SA is left.  Application
packets through the tunnel arrive at most once and unaltered.

ESP on its own under the same chaos (sans-I/O, with a reference model): every
forged, replayed, truncated or corrupted packet is dropped and counted, every
genuine one inside the window is delivered exactly once.
"""

from __future__ import annotations

import asyncio
import random
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import SOAK
from robust_vtime import VirtualTimeLoop

import fuzzlib
from aioipsec.asyncio.client import connect, serve
from aioipsec.asyncio.protocol import IkeError
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.esp import DropReason, EspSa
from aioipsec.esp.ip import ipv4_header
from aioipsec.events import AuthFailed, IkeSaEstablished, IpsecEvent, NegotiationFailed
from aioipsec.transports.memory import LinkModel, memory_pipe

I_IP, R_IP = "192.0.2.1", "192.0.2.2"
I_INNER, R_INNER = "198.51.100.7", "203.0.113.9"
CHAOS = dict(loss=0.1, duplicate=0.1, reorder=0.1, corrupt=0.05, delay=0.01, jitter=0.02)
SEEDS = range(300) if SOAK else range(24)


def udp(src: str, dst: str, payload: bytes) -> bytes:
    body = struct.pack("!HHHH", 4000, 5000, 8 + len(payload), 0) + payload
    return ipv4_header(src, dst, 17, len(body), ident=1) + body


def payload_of(pkt: bytes) -> bytes:
    return pkt[28:]


@dataclass
class Run:
    outcome: str = "?"
    """ok, or failed: <why>."""
    rekeys: int = 0
    ike_rekeys: int = 0
    sent: dict[str, set[bytes]] = field(default_factory=lambda: {"i": set(), "r": set()})
    received: dict[str, list[bytes]] = field(default_factory=lambda: {"i": [], "r": []})
    leaks: list[str] = field(default_factory=list)
    elapsed: float = 0.0


async def _pump(inner: Any, side: str, run: Run) -> None:
    while True:
        for pkt in await inner.recv_batch():
            run.received[side].append(payload_of(pkt))


async def chaos_run(version: int, seed: int, knobs: dict[str, float], *, rekeys: int = 2, traffic: int = 20) -> Run:
    loop = asyncio.get_running_loop()
    run = Run()
    t0 = loop.time()
    net = MemoryNetwork(seed=seed, **knobs)
    ci, cr = fuzzlib.v2_configs(seed) if version == 2 else fuzzlib.v1_configs(seed)
    ci.local_addrs, ci.remote_addrs = [I_IP], [R_IP]
    cr.local_addrs, cr.remote_addrs = [R_IP], [I_IP]
    app_i, dp_i = memory_pipe()
    app_r, dp_r = memory_pipe()
    server = await serve(R_IP, configuration=cr, network=net, inner=dp_r)
    pumps = [loop.create_task(_pump(app_i, "i", run)), loop.create_task(_pump(app_r, "r", run))]
    events: list[IpsecEvent] = []
    client_ep: list[Any] = []
    n = 0

    async def traffic_burst() -> None:
        nonlocal n
        for _ in range(traffic):
            n += 1
            a, b = f"i{seed}-{n}".encode(), f"r{seed}-{n}".encode()
            run.sent["i"].add(a)
            run.sent["r"].add(b)
            app_i.send_batch([udp(I_INNER, R_INNER, a)])
            app_r.send_batch([udp(R_INNER, I_INNER, b)])
            await asyncio.sleep(0.005)
        await asyncio.sleep(1.0)

    try:
        async with connect(R_IP, configuration=ci, network=net, inner=dp_i, timeout=600) as ike:
            ike._endpoint.event_listeners.append(lambda _p, ev: events.append(ev))
            client_ep.append(ike._endpoint)
            child = next(iter(ike.children.values()))
            for _ in range(600):  # the responder installs its SA one message later
                if server.endpoint.dataplane.outbound:
                    break
                await asyncio.sleep(0.1)
            await traffic_burst()
            for _ in range(rekeys):
                child = await asyncio.wait_for(ike.rekey_child_sa(child.spi_in), 600)
                run.rekeys += 1
                await traffic_burst()
            mark = len(events)
            await ike.rekey()
            for _ in range(600):
                if any(isinstance(e, IkeSaEstablished) and e.rekeyed_from for e in events[mark:]):
                    run.ike_rekeys += 1
                    break
                if ike.session.is_closed or any(isinstance(e, (NegotiationFailed, AuthFailed)) for e in events[mark:]):
                    break
                await asyncio.sleep(1.0)
            else:
                run.outcome = "hang"
                return run
            await traffic_burst()
            if run.ike_rekeys:
                run.outcome = "ok"
            elif ike.session.is_established:
                run.outcome = "ike-rekey-failed"  # cleanly: the old IKE SA carries on
            else:
                run.outcome = "failed: IKE SA lost during its rekey"
    except (IkeError, ConnectionError) as exc:
        run.outcome = f"failed: {type(exc).__name__}: {exc}"
    except asyncio.TimeoutError:
        run.outcome = "hang"
    finally:
        await server._close()
        for t in pumps:
            t.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await asyncio.sleep(30)  # let in-flight datagrams land on closed sockets
    run.elapsed = loop.time() - t0
    # ---------------------------------------------------------------- leaks
    for name, ep in [("server", server.endpoint)] + [("client", c) for c in client_ep]:
        if ep.sessions or ep._by_spi or ep._by_init or ep.half_open():
            run.leaks.append(f"{name} sessions={len(ep.sessions)} spis={len(ep._by_spi)} inits={len(ep._by_init)}")
        if ep.dataplane.sad_in or ep.dataplane.outbound:
            run.leaks.append(f"{name} SAs in={len(ep.dataplane.sad_in)} out={len(ep.dataplane.outbound)}")
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if tasks:
        run.leaks.append(f"tasks: {tasks}")
    timers = loop.pending_timers() if isinstance(loop, VirtualTimeLoop) else []
    if timers:
        run.leaks.append(f"timers: {timers}")
    return run


def run_virtual(coro: Any) -> Any:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def _check_run(run: Run, seed: int) -> None:
    assert run.outcome != "hang", f"seed {seed}: hung"
    assert not run.leaks, f"seed {seed}: {run.leaks}"
    for side, other in (("i", "r"), ("r", "i")):
        got = run.received[side]
        assert len(got) == len(set(got)), f"seed {seed}: a packet was delivered twice to {side}"
        assert set(got) <= run.sent[other], f"seed {seed}: {side} received packets nobody sent (corruption passed)"


@pytest.mark.parametrize("version", [2, 1])
def test_chaos_establish_rekey_traffic(version: int) -> None:
    """Loss 10 %, duplication 10 %, reordering 10 %, corruption 5 %, delay
    10-30 ms, both directions: every seed establishes, rekeys its Child SA
    twice and its IKE SA once (or fails cleanly), leaks nothing, and tunnel
    traffic is never duplicated or altered."""
    runs = {seed: run_virtual(chaos_run(version, seed, CHAOS)) for seed in SEEDS}
    for seed, run in runs.items():
        _check_run(run, seed)
    ok = [s for s, r in runs.items() if r.outcome == "ok"]
    failed = {s: r.outcome for s, r in runs.items() if r.outcome != "ok"}
    # IKEv2: a failure needs 5 lost tries of one exchange, rare at these rates.
    # IKEv1 authenticates nothing before MM5/AM2: a corrupted KE in MM3/MM4
    # gives the two sides different keys (MM5 then fails on every copy:
    # AUTHENTICATION_FAILED), a corrupted MM2 responder cookie strands Main
    # Mode until its retransmissions run out, a corrupted MM2 proposal reads
    # as NO_PROPOSAL_CHOSEN, so 5 % corruption costs it some runs; each such
    # failure is clean.  (A corrupted MM5/MM6/AM2/AM3 copy alone is dropped
    # and the retransmission completes: over 100 seeds 84 IKEv1 runs
    # succeeded, 77 before that change; IKEv2 93.)
    assert len(ok) >= len(runs) * (0.9 if version == 2 else 0.6), f"too many failures: {failed}"
    delivered = sum(len(r.received["i"]) + len(r.received["r"]) for r in runs.values())
    sent = sum(len(r.sent["i"]) + len(r.sent["r"]) for r in runs.values())
    assert delivered >= sent * 0.6, f"only {delivered}/{sent} tunnel packets arrived"
    assert sum(r.rekeys for r in runs.values()) >= 2 * len(ok)


@pytest.mark.parametrize("version", [2, 1])
def test_chaos_without_corruption_nearly_always_succeeds(version: int) -> None:
    """The same chaos minus corruption: at least 90 % of the runs (IKEv1
    included) establish and rekey everything; the rest fail cleanly."""
    knobs = {**CHAOS, "corrupt": 0.0}
    runs = {seed: run_virtual(chaos_run(version, 1000 + seed, knobs)) for seed in SEEDS}
    for seed, run in runs.items():
        _check_run(run, seed)
    failed = {s: r.outcome for s, r in runs.items() if r.outcome != "ok"}
    assert len(failed) <= len(runs) * 0.1, f"too many failures: {failed}"


@pytest.mark.parametrize("version", [2, 1])
def test_chaos_clean_runs_deliver_everything(version: int) -> None:
    """Duplication and delay without loss, corruption or reordering: every
    run succeeds and every tunnel packet arrives exactly once, across Child
    SA and IKE SA rekeys (make-before-break)."""
    knobs = dict(duplicate=0.3, delay=0.02)
    for seed in range(6):
        run = run_virtual(chaos_run(version, seed, knobs, rekeys=1, traffic=10))
        _check_run(run, seed)
        assert run.outcome == "ok", f"seed {seed}: {run.outcome}"
        for side, other in (("i", "r"), ("r", "i")):
            assert set(run.received[side]) == run.sent[other], f"seed {seed}: lost packets without loss"


@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("loss", [1.0, 0.9])
def test_loss_beyond_the_retransmission_budget_fails_cleanly(version: int, loss: float) -> None:
    """With (almost) everything lost, connect() fails with IkeError once the
    retransmissions are spent (timeout 4 s x 1.8^n, 5 tries: ~90 s plus the
    last wait), and nothing is left behind."""
    for seed in range(3):
        run = run_virtual(chaos_run(version, seed, dict(loss=loss, delay=0.01), rekeys=0, traffic=1))
        assert not run.leaks, run.leaks
        if loss == 1.0:
            assert run.outcome.startswith("failed: IkeError"), run.outcome
            assert run.elapsed <= 4 * sum(1.8**k for k in range(6)) + 60, run.elapsed
        else:
            assert run.outcome != "hang"


# =========================================================================== ESP under chaos


class ReferenceWindow:
    """The RFC 4303 §3.4.3 receiver, spelled out: a packet is new if it is
    above the highest seen, or inside the window and not seen."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.top = 0
        self.seen: set[int] = set()

    def accept(self, seq: int) -> bool:
        if seq == 0:
            return False
        if seq > self.top:
            self.top = seq
            self.seen.add(seq)
            return True
        if seq <= self.top - self.size or seq in self.seen:
            return False
        self.seen.add(seq)
        return True


@pytest.mark.parametrize("suite", ["aes128gcm16", "aes128-sha256", "chacha20poly1305"])
@pytest.mark.parametrize("seed", range(4))
def test_esp_under_chaos_matches_reference(suite: str, seed: int) -> None:
    """ESP packets through a lossy, duplicating, reordering, corrupting,
    delaying link, mixed with an attacker's forgeries, replays and
    truncations: each result is what a reference receiver predicts, every
    drop is counted under its reason, nothing is delivered twice."""
    window = 64
    sender, receiver = _esp_pair(suite, window)
    rng = random.Random(seed)
    link = LinkModel(seed=seed, loss=0.05, duplicate=0.1, reorder=0.2, corrupt=0.05, delay=0.01, jitter=0.03)
    sent: dict[bytes, int] = {}
    now = 0.0
    arrivals: list[bytes] = []
    for k in range(1, 1201):
        [d] = sender.seal_batch([udp("198.51.100.1", "203.0.113.1", b"pkt%d" % k)])
        sent[d] = k
        link.send(d, now)
        if rng.random() < 0.05:  # attacker: a replay of something already sent
            arrivals.append(rng.choice(list(sent)))
        if rng.random() < 0.03:  # attacker: forgery with the right SPI and a fresh sequence number
            arrivals.append(d[:4] + struct.pack("!L", k + 5) + rng.randbytes(len(d) - 8))
        if rng.random() < 0.03:  # attacker: truncation
            arrivals.append(d[: rng.randrange(0, len(d))])
        now += 0.001
        arrivals += link.deliver(now)
    now += 10
    arrivals += link.deliver(now)
    assert link.stats.corrupted and link.stats.duplicated and link.stats.reordered and link.stats.lost
    ref = ReferenceWindow(window)
    expected_ok = 0
    delivered: list[bytes] = []
    for i in range(0, len(arrivals), 16):
        batch = arrivals[i : i + 16]
        results = receiver.open_batch(batch, now=1.0)
        assert len(results) == len(batch)
        for d, res in zip(batch, results):
            seq = sent.get(d)
            if seq is not None and ref.accept(seq):
                assert res.ok, f"genuine packet {seq} inside the window dropped: {res.drop}"
                expected_ok += 1
                delivered.append(res.packet)
            else:
                assert not res.ok, "a forged, corrupted, truncated or replayed packet was delivered"
                if seq is not None:
                    assert res.drop is DropReason.REPLAY
    st = receiver.stats
    assert st.packets_in == expected_ok == len(delivered) == len(set(delivered))
    assert sum(st.drops.values()) == len(arrivals) - expected_ok
    assert st.replay_failed > 0 and st.integrity_failed > 0


def _esp_pair(suite: str, window: int) -> tuple[EspSa, EspSa]:
    from aioipsec.crypto import transforms as T

    enc, _, integ = suite.partition("-")
    e = T.encr(enc)
    kw: dict[str, Any] = dict(spi=0xC0DE0001, encr=e, encr_key=bytes(range(3, 3 + e.key_len)), replay_window=window)
    if integ:
        i = T.integ(integ)
        kw.update(integ=i, integ_key=bytes(range(7, 7 + i.key_len)))
    return EspSa(inbound=False, **kw), EspSa(inbound=True, **kw)
