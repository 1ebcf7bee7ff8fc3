"""``Endpoint.next_attempt``: what ``up --wait`` awaits (instead of polling
the endpoint) to follow keyingtries from one attempt to the next."""

from __future__ import annotations

import asyncio

import pytest
from asyncwait import until
from test_keyingtries import VERSIONS, left_endpoint, right_endpoint

from aioipsec.asyncio.protocol import IkeError
from aioipsec.events import KeyingFailed
from aioipsec.testing import CONNECTION


@VERSIONS
async def test_each_attempt_leads_to_the_next_then_to_none(version: int) -> None:
    async with left_endpoint(version, keyingtries=3) as left:
        proto = left.ep.initiate(CONNECTION)
        seen = [proto]
        while True:
            fut = left.ep.next_attempt(CONNECTION, proto)
            assert not fut.done()  # the attempt is still under way
            nxt = await asyncio.wait_for(fut, 5)
            if nxt is None:
                break
            assert nxt not in seen and left.ep.keying_attempt(nxt) == (len(seen) + 1, 3)
            seen.append(nxt)
            proto = nxt
        assert len(seen) == 3 and len(left.inits) == 3
        await until(lambda: left.of(KeyingFailed), timeout=1, what="KeyingFailed")
        assert [f.attempts for f in left.of(KeyingFailed)] == [3]
        # asked afterwards: the initiation is over
        assert left.ep.next_attempt(CONNECTION, proto).result() is None


@VERSIONS
async def test_an_attempt_already_started_is_given_at_once(version: int) -> None:
    async with left_endpoint(version, keyingtries=0) as left:
        first = left.ep.initiate(CONNECTION)
        second = await asyncio.wait_for(left.ep.next_attempt(CONNECTION, first), 5)
        assert second is not None and second is not first
        assert left.ep.next_attempt(CONNECTION, first).result() is second
        left.ep.stop_keying(CONNECTION)


@VERSIONS
async def test_stop_keying_and_a_new_initiation_answer_the_waiters(version: int) -> None:
    async with left_endpoint(version, keyingtries=0) as left:
        first = left.ep.initiate(CONNECTION)
        stopped = left.ep.next_attempt(CONNECTION, first)
        left.ep.stop_keying(CONNECTION)
        assert stopped.done() and stopped.result() is None
        again = left.ep.initiate(CONNECTION)
        replaced = left.ep.next_attempt(CONNECTION, again)
        newest = left.ep.initiate(CONNECTION)
        assert replaced.done() and replaced.result() is newest
        left.ep.stop_keying(CONNECTION)


@VERSIONS
async def test_a_permanent_failure_has_no_next_attempt(version: int) -> None:
    async with left_endpoint(version, keyingtries=0) as left:
        right = await right_endpoint(left, version, psk=b"not the same secret at all")
        try:
            first = left.ep.initiate(CONNECTION)
            with pytest.raises((IkeError, ConnectionError)):
                await asyncio.wait_for(first.wait_established(), 5)
            assert await asyncio.wait_for(left.ep.next_attempt(CONNECTION, first), 1) is None
            assert len(left.inits) == 1
        finally:
            await right.close(delete=False)
