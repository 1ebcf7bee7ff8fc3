"""Helpers of the asyncio integration tests: bounded waiting, the host
behind a gateway's in-memory pipe, and an endpoint with its events and
inner pipe (:class:`Side`), and a stream of numbered packets from it
(:class:`Pump`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aioipsec.netutil import parse_udp, udp_packet
from aioipsec.transports.memory import MemoryInnerTransport


async def until(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``cond()`` is true, polling every 5 ms; fail the test with
    ``timed out waiting for <what>`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@dataclass
class Host:
    """The network behind a gateway: the application end of its memory pipe,
    drained by a task into ``received``."""

    end: MemoryInnerTransport
    received: list[bytes] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        async def run() -> None:
            while True:
                self.received.extend(await self.end.recv_batch())

        self.task = asyncio.get_running_loop().create_task(run())

    async def stop(self) -> None:
        await _cancel(self.task)

    def payloads(self) -> list[bytes]:
        """UDP payloads of the IP packets received, in order."""
        return [u[4] for u in map(parse_udp, self.received) if u is not None]


class Side:
    """An endpoint under test: its events in order and the application end
    ``app`` of its inner pipe (if given), drained by a task into ``received``.  With
    ``echo_from`` the hosts behind it answer every UDP packet from that
    address (port 7, payload ``b"re: "`` + the request's)."""

    def __init__(self, ep: Any, app: Any = None, *, echo_from: str | None = None) -> None:
        self.ep = ep
        self.app = app
        self.echo_from = echo_from
        self.received: list[bytes] = []
        self.events: list[Any] = []
        ep.event_listeners.append(lambda _p, ev: self.events.append(ev))
        self.task = None if app is None else asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.app.recv_batch()
            self.received.extend(batch)
            if self.echo_from is not None:
                replies = []
                for pkt in batch:
                    u = parse_udp(pkt)
                    if u is not None:
                        replies.append(udp_packet(self.echo_from, u[0], 7, u[1], b"re: " + u[4]))
                self.app.send_batch(replies)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def index(self, pred: Callable[[Any], Any]) -> int:
        """Position of the first event for which ``pred`` is true."""
        return next(i for i, e in enumerate(self.events) if pred(e))

    async def close(self, delete: bool = True) -> None:
        await _cancel(self.task)
        await asyncio.wait_for(self.ep.close(delete=delete, timeout=1.0), 5)


class Pump:
    """Sends a numbered UDP packet (``b"n0"``, ``b"n1"``, ...) from ``vip``
    to port 7 of ``server`` through ``side``'s inner pipe every few ms until
    stopped."""

    def __init__(self, side: Side, vip: str, server: str) -> None:
        self.side, self.vip, self.server, self.sent = side, vip, server, 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.side.app.send_batch([udp_packet(self.vip, self.server, 40000, 7, b"n%d" % self.sent)])
            self.sent += 1
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel a draining task and wait until it has ended."""
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
