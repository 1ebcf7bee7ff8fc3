"""Bounded waiting for the asyncio integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def until(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``cond()`` is true, polling every 5 ms; fail the test with
    ``timed out waiting for <what>`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
