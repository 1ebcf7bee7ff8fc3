"""Resource hygiene: closing an endpoint cancels every task and timer it
started, and many connect/close cycles leave no tasks, file descriptors or
memory behind (tracemalloc, /proc/self/fd)."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
import tracemalloc
from typing import Any

import pytest
from conftest import SOAK
from robust_vtime import VirtualTimeLoop

import fuzzlib
from aioipsec.asyncio.client import connect, serve
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.transports.memory import memory_pipe

CYCLES = 200 if SOAK else 50
MEMORY_GROWTH_BOUND = 1024 * 1024
"""Stated bound on traced memory growth over all the cycles (after warm-up)."""


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _ours(h: asyncio.Handle) -> bool:
    cb = getattr(h, "_callback", None)
    owner = getattr(cb, "__self__", None)
    mod = type(owner).__module__ if owner is not None else getattr(cb, "__module__", "")
    return "aioipsec" in str(mod)


def _aioipsec_timers(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
    return [h for h in getattr(loop, "_scheduled", []) if not h.cancelled() and _ours(h)]


def _configs(version: int, i_ip: str, r_ip: str, **kw: Any) -> tuple[Any, Any]:
    ci, cr = fuzzlib.v2_configs(0, **kw) if version == 2 else fuzzlib.v1_configs(0, **kw)
    ci.local_addrs, ci.remote_addrs = [i_ip], [r_ip]
    cr.local_addrs, cr.remote_addrs = [r_ip], [i_ip]
    return ci, cr


async def _cycle(version: int, i_ip: str, r_ip: str, *, network: MemoryNetwork | None, encap: bool = False) -> None:
    ci, cr = _configs(version, i_ip, r_ip, encap=encap)
    app, dp = memory_pipe()
    server = await serve(r_ip, configuration=cr, network=network)
    try:
        async with connect(r_ip, configuration=ci, network=network, inner=dp, timeout=30) as ike:
            assert ike.session.is_established and ike.children
    finally:
        await server._close()
    app.close()


# =========================================================================== endpoint close


@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("encap", [False, True])
def test_close_cancels_every_task_and_timer(version: int, encap: bool) -> None:
    """After connect()/serve() close (IKE SA deleted, keepalives running when
    encapsulated), no task and no timer of the endpoints is left on the loop."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        baseline = set(asyncio.all_tasks())
        net = MemoryNetwork(loop=loop)
        ci, cr = _configs(version, "192.0.2.1", "192.0.2.2", encap=encap)
        app, dp = memory_pipe()
        server = await serve("192.0.2.2", configuration=cr, network=net)
        async with connect("192.0.2.2", configuration=ci, network=net, inner=dp, timeout=30) as ike:
            endpoint = ike._endpoint
            await asyncio.sleep(45)  # timers run: DPD, keepalives
            assert _aioipsec_timers(loop), "nothing scheduled while connected?"
            assert asyncio.all_tasks() - baseline, "no task while connected?"  # the inner reader at least
        await server._close()
        app.close()
        assert endpoint._closed and not endpoint.sessions
        left = [t for t in asyncio.all_tasks() - baseline if t is not asyncio.current_task()]
        assert not left, left
        await asyncio.sleep(0)
        assert not _aioipsec_timers(loop), _aioipsec_timers(loop)
        assert loop.pending_timers() == []  # type: ignore[attr-defined]

    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_close_without_delete_and_with_half_open_sessions() -> None:
    """An endpoint closed with delete=False while it holds established and
    half-open sessions cancels their timers too."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        net = MemoryNetwork(loop=loop)
        ci, cr = _configs(2, "192.0.2.1", "192.0.2.2")
        server = await serve("192.0.2.2", configuration=cr, network=net)
        async with connect("192.0.2.2", configuration=ci, network=net, timeout=30):
            pass
        w = fuzzlib.V2World(1)
        w.i.initiate(w.now)
        w.collect()
        sock = net.bind(("192.0.2.1", 600))
        sock.set_receiver(lambda batch: None)
        for n in range(5):
            sock.sendto(fuzzlib.fix_ike_length(n.to_bytes(8, "big") + w.pending_i[0][8:]), ("192.0.2.2", 500))
        await asyncio.sleep(0.1)
        assert server.endpoint.half_open() == 5
        await server.endpoint.close(delete=False)
        assert not server.endpoint.sessions
        assert not _aioipsec_timers(loop)

    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


# =========================================================================== many cycles


def _measure(label: str, before: tuple[int, int, int], after: tuple[int, int, int]) -> str:
    return (
        f"{label}: tasks {before[0]}->{after[0]}, fds {before[1]}->{after[1]}, "
        f"traced memory {before[2] / 1e6:.2f}->{after[2] / 1e6:.2f} MB"
    )


async def _cycles(version: int, i_ip: str, r_ip: str, network_factory: Any, n: int) -> str:
    loop = asyncio.get_running_loop()

    def snap() -> tuple[int, int, int]:
        gc.collect()
        return len(asyncio.all_tasks()), _fds(), tracemalloc.get_traced_memory()[0]

    for _ in range(5):  # warm-up: imports, caches, first-use allocations
        await _cycle(version, i_ip, r_ip, network=network_factory())
    await asyncio.sleep(0.05)
    before = snap()
    for _ in range(n):
        await _cycle(version, i_ip, r_ip, network=network_factory())
    await asyncio.sleep(0.05)
    after = snap()
    report = _measure(f"IKEv{version} x{n}", before, after)
    assert after[0] <= before[0], report
    assert after[1] <= before[1], report
    assert after[2] - before[2] < MEMORY_GROWTH_BOUND, report
    assert not _aioipsec_timers(loop), report
    return report


@pytest.mark.parametrize("version", [2, 1])
def test_many_connect_close_cycles_in_memory(version: int) -> None:
    """50 connect/close cycles over an in-memory network: no growth in tasks,
    timers, file descriptors or traced memory (bound: MEMORY_GROWTH_BOUND)."""
    tracemalloc.start()
    loop = VirtualTimeLoop()
    try:
        report = loop.run_until_complete(
            _cycles(version, "192.0.2.1", "192.0.2.2", lambda: MemoryNetwork(), CYCLES)
        )
        print(report)
    finally:
        loop.close()
        tracemalloc.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="binds UDP 500/4500 on loopback addresses: needs root")
@pytest.mark.parametrize("version", [2, 1])
async def test_many_connect_close_cycles_over_loopback(version: int) -> None:
    """50 aioipsec.connect()/serve() cycles over real UDP sockets on
    per-run loopback addresses: file descriptors, tasks, timers and traced
    memory do not grow."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    prefix = f"127.{rng.randrange(64, 250)}.{rng.randrange(1, 250)}"
    tracemalloc.start()
    try:
        report = await _cycles(version, f"{prefix}.1", f"{prefix}.2", lambda: None, CYCLES)
        print(report)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("version", [2, 1])
def test_long_lived_server_many_clients(version: int) -> None:
    """One server endpoint, 50 clients that connect, rekey (Child SA and IKE
    SA) and close one after the other: the server's sessions, SPI routes,
    per-peer tables and SAs go back to empty and its traced memory does not
    grow (a per-session SPI route used to survive every IKE rekey)."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        net = MemoryNetwork(loop=loop)
        ci, cr = _configs(version, "192.0.2.1", "192.0.2.2")
        server = await serve("192.0.2.2", configuration=cr, network=net)
        ep = server.endpoint

        async def one() -> None:
            async with connect("192.0.2.2", configuration=ci, network=net, timeout=30) as ike:
                child = next(iter(ike.children.values()))
                await asyncio.wait_for(ike.rekey_child_sa(child.spi_in), 60)
                await ike.rekey()
                await asyncio.sleep(5)
            await asyncio.sleep(5)

        try:
            for _ in range(5):
                await one()
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(CYCLES):
                await one()
                assert not ep.sessions and not ep._by_spi and not ep._spis_of and not ep._by_init
                assert not ep.dataplane.sad_in and not ep.dataplane.outbound
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            assert after - before < MEMORY_GROWTH_BOUND, (before, after)
            return f"IKEv{version} server x{CYCLES} clients: traced memory {before / 1e6:.2f}->{after / 1e6:.2f} MB"
        finally:
            await server._close()

    tracemalloc.start()
    loop = VirtualTimeLoop()
    try:
        print(loop.run_until_complete(main()))
    finally:
        loop.close()
        tracemalloc.stop()
