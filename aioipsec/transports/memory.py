"""In-memory transports for tests and demos.

:class:`LinkModel` is a sans-I/O model of a bad network: ``send(item, now)``
queues an item, ``deliver(now)`` returns what has arrived by ``now`` and
``next_deadline()`` says when the next item will.  Loss, duplication,
reordering, delay, jitter and corruption are drawn from a seeded
``random.Random``, so the same seed and the same calls give the same run.

The asyncio wrappers:

- :func:`memory_pipe` returns two connected :class:`MemoryInnerTransport`
  ends (cleartext packets, like a TUN device and the application behind it);
- :func:`memory_link` returns two connected :class:`MemoryOuterTransport`
  ends with addresses, each direction through its own :class:`LinkModel`.

Queues are bounded; overflow is dropped and counted, never blocks.
"""

from __future__ import annotations

import asyncio
import heapq
import random as _random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..selectors import Address
from .base import register_transport

__all__ = [
    "LinkModel",
    "LinkStats",
    "MemoryInnerTransport",
    "MemoryOuterTransport",
    "memory_pipe",
    "memory_link",
]


@dataclass(slots=True)
class LinkStats:
    sent: int = 0
    """Items handed to ``send``."""
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    dropped_full: int = 0
    """Items dropped because ``capacity`` items were already in flight."""


def _corrupt(item: Any, rng: _random.Random) -> Any:
    """Flip one bit of ``item`` (bytes) or of its first element (a tuple
    whose first element is bytes, e.g. ``(data, src, dst)``)."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytearray(item)
        if data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        return bytes(data)
    if isinstance(item, tuple) and item and isinstance(item[0], (bytes, bytearray, memoryview)):
        return (_corrupt(item[0], rng), *item[1:])
    return item


class LinkModel:
    """One direction of a simulated link.

    ``loss``, ``duplicate``, ``reorder`` and ``corrupt`` are probabilities per
    item; ``delay`` and ``jitter`` are seconds (delivery at
    ``now + delay + uniform(0, jitter)``).  A reordered item is held back
    until the next item has been sent (it then arrives right after it) or
    ``reorder_hold`` seconds have passed.  At most ``capacity`` items are in
    flight; more are dropped and counted."""

    def __init__(
        self,
        *,
        seed: int = 0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        corrupt: float = 0.0,
        capacity: int = 4096,
        reorder_hold: float = 0.01,
    ) -> None:
        for k, v in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder), ("corrupt", corrupt)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{k} must be a probability, not {v}")
        if delay < 0 or jitter < 0:
            raise ValueError("delay and jitter must be >= 0")
        self.loss, self.duplicate, self.reorder, self.corrupt = loss, duplicate, reorder, corrupt
        self.delay, self.jitter = delay, jitter
        self.capacity = capacity
        self.reorder_hold = reorder_hold
        self.stats = LinkStats()
        self._rng = _random.Random(seed)
        self._heap: list[tuple[float, int, Any]] = []
        self._held: list[tuple[float, float, Any]] = []  # (deadline, due, item)
        self._order = 0

    @property
    def in_flight(self) -> int:
        return len(self._heap) + len(self._held)

    def _push(self, due: float, item: Any) -> None:
        self._order += 1
        heapq.heappush(self._heap, (due, self._order, item))

    def send(self, item: Any, now: float) -> None:
        """Put ``item`` (usually bytes) on the link at time ``now``."""
        st, rng = self.stats, self._rng
        st.sent += 1
        if self.in_flight >= self.capacity:
            st.dropped_full += 1
            return
        if self.loss and rng.random() < self.loss:
            st.lost += 1
            return
        if self.corrupt and rng.random() < self.corrupt:
            item = _corrupt(item, rng)
            st.corrupted += 1
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            copies = 2
            st.duplicated += 1
        for _ in range(copies):
            due = now + self.delay + (rng.uniform(0.0, self.jitter) if self.jitter else 0.0)
            if self.reorder and rng.random() < self.reorder:
                st.reordered += 1
                self._held.append((now + self.reorder_hold + self.delay, due, item))
                continue
            self._push(due, item)
            if self._held:  # held items go right after this one
                held, self._held = self._held, []
                for _deadline, hdue, hitem in held:
                    self._push(max(hdue, due), hitem)

    def deliver(self, now: float) -> list[Any]:
        """Items that have arrived by ``now``, in arrival order."""
        if self._held:
            keep = []
            for entry in self._held:
                if entry[0] <= now:
                    self._push(max(entry[0], entry[1]), entry[2])
                else:
                    keep.append(entry)
            self._held = keep
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        self.stats.delivered += len(out)
        return out

    def next_deadline(self) -> float | None:
        """When the next item arrives (absolute time), or ``None``."""
        times = [self._heap[0][0]] if self._heap else []
        times += [max(d, due) for d, due, _ in self._held]
        return min(times) if times else None


# --------------------------------------------------------------------------- asyncio wrappers


class _BoundedQueue:
    """A bounded FIFO with one waiting consumer; overflow is counted."""

    def __init__(self, size: int, batch: int) -> None:
        self.items: deque[Any] = deque()
        self.size = size
        self.batch = batch
        self.dropped = 0
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def put_many(self, items: Sequence[Any]) -> None:
        room = self.size - len(self.items)
        if room < len(items):
            self.dropped += len(items) - max(room, 0)
            items = items[: max(room, 0)]
        if items:
            self.items.extend(items)
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def get_batch(self) -> list[Any]:
        while not self.items:
            if self.closed:
                raise ConnectionError("transport closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        n = min(self.batch, len(self.items))
        return [self.items.popleft() for _ in range(n)]

    def close(self) -> None:
        self.closed = True
        self._wake()


class MemoryInnerTransport:
    """One end of an in-memory cleartext packet pipe; ``peer`` is the other."""

    def __init__(self, *, mtu: int = 1500, queue_size: int = 1024, batch_size: int = 64) -> None:
        self.mtu = mtu
        self.peer: MemoryInnerTransport | None = None
        self._q = _BoundedQueue(queue_size, batch_size)
        self.sent = 0
        self.received = 0
        self.send_dropped = 0
        """Packets sent while the peer was gone or closed."""

    @property
    def dropped(self) -> int:
        """Packets dropped because this end's receive queue was full."""
        return self._q.dropped

    async def recv_batch(self) -> list[bytes]:
        batch: list[bytes] = await self._q.get_batch()
        self.received += len(batch)
        return batch

    def send_batch(self, packets: Sequence[bytes]) -> None:
        peer = self.peer
        if peer is None or peer._q.closed or self._q.closed:
            self.send_dropped += len(packets)
            return
        self.sent += len(packets)
        peer._q.put_many([bytes(p) for p in packets])

    def close(self) -> None:
        self._q.close()


def memory_pipe(*, mtu: int = 1500, queue_size: int = 1024, batch_size: int = 64) -> tuple[MemoryInnerTransport, MemoryInnerTransport]:
    """Two connected inner transports: what one sends, the other receives."""
    a = MemoryInnerTransport(mtu=mtu, queue_size=queue_size, batch_size=batch_size)
    b = MemoryInnerTransport(mtu=mtu, queue_size=queue_size, batch_size=batch_size)
    a.peer, b.peer = b, a
    return a, b


class MemoryOuterTransport:
    """One end of an in-memory datagram link with a local address; datagrams
    to the peer's address pass through this end's :class:`LinkModel`."""

    def __init__(self, local_addr: Address, model: LinkModel, *, queue_size: int = 1024, batch_size: int = 64) -> None:
        self.local_addr = local_addr
        self.model = model
        self.peer: MemoryOuterTransport | None = None
        self._q = _BoundedQueue(queue_size, batch_size)
        self._timer: asyncio.TimerHandle | None = None
        self.sent = 0
        self.received = 0
        self.misaddressed = 0
        """Datagrams sent to an address other than the peer's (dropped)."""

    @property
    def dropped(self) -> int:
        return self._q.dropped

    async def recv_batch(self) -> list[tuple[bytes, Address]]:
        batch: list[tuple[bytes, Address]] = await self._q.get_batch()
        self.received += len(batch)
        return batch

    def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None:
        peer = self.peer
        if peer is None or tuple(addr) != tuple(peer.local_addr):
            self.misaddressed += len(datagrams)
            return
        if self._q.closed or peer._q.closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for d in datagrams:
            self.model.send((bytes(d), self.local_addr), now)
        self.sent += len(datagrams)
        self._pump()

    def _pump(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        peer = self.peer
        loop = asyncio.get_running_loop()
        items = self.model.deliver(loop.time())
        if items and peer is not None:
            peer._q.put_many(items)
        deadline = self.model.next_deadline()
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._pump)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._q.close()


def memory_link(
    *,
    addr_a: Address = ("192.0.2.1", 4500),
    addr_b: Address = ("192.0.2.2", 4500),
    seed: int = 0,
    queue_size: int = 1024,
    batch_size: int = 64,
    **knobs: Any,
) -> tuple[MemoryOuterTransport, MemoryOuterTransport]:
    """Two connected outer transports; ``knobs`` (loss, duplicate, reorder,
    delay, jitter, corrupt, capacity, reorder_hold) apply to both directions,
    each with its own generator (seeds ``seed`` and ``seed + 1``)."""
    a = MemoryOuterTransport(addr_a, LinkModel(seed=seed, **knobs), queue_size=queue_size, batch_size=batch_size)
    b = MemoryOuterTransport(addr_b, LinkModel(seed=seed + 1, **knobs), queue_size=queue_size, batch_size=batch_size)
    a.peer, b.peer = b, a
    return a, b


def _memory_factory(**kw: Any) -> MemoryInnerTransport:
    """``get_transport("memory")``: one end of a new pipe; the other end is
    its ``peer`` attribute."""
    a, _b = memory_pipe(**kw)
    return a


register_transport("memory", _memory_factory, replace=True)
