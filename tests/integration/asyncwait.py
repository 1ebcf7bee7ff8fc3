"""Helpers of the asyncio integration tests: bounded waiting, and the host
behind a gateway's in-memory pipe."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aioipsec.netutil import parse_udp
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
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    def payloads(self) -> list[bytes]:
        """UDP payloads of the IP packets received, in order."""
        return [u[4] for u in map(parse_udp, self.received) if u is not None]
