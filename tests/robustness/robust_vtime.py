"""A virtual-time asyncio event loop for deterministic, instant tests.

``VirtualTimeLoop.time()`` is a number that jumps forward whenever the loop
would sleep: when nothing is ready, the loop advances straight to the next
scheduled callback instead of waiting for it.  Retransmission timeouts,
lifetimes and link delays of the in-memory network therefore cost no real
time, and a run is reproducible (no wall clock).  Only for code that does no
real I/O (``MemoryNetwork``): a real socket would never become readable
while virtual time races ahead.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _VirtualSelector:
    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._real.select(0)
        if events:
            return events
        if timeout is None:
            raise RuntimeError("virtual-time loop would block forever (nothing scheduled)")
        self._loop.advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 1000.0) -> None:
        super().__init__()
        self._vt = start
        self._selector = _VirtualSelector(self._selector, self)  # type: ignore[assignment]

    def time(self) -> float:
        return self._vt

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._vt += seconds

    def pending_timers(self) -> list[asyncio.TimerHandle]:
        """Scheduled callbacks that are not cancelled."""
        return [h for h in self._scheduled if not h.cancelled()]  # type: ignore[attr-defined]


def run_virtual(coro: Coroutine[Any, Any, T], *, start: float = 1000.0) -> T:
    """Run ``coro`` on a fresh virtual-time loop and close it."""
    loop = VirtualTimeLoop(start)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
