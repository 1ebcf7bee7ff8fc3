"""In-memory transports: the seeded link model repeats exactly and applies
its knobs at roughly the set rates; pipes and links move batches with
bounded queues; the transport registry resolves names and plugins."""

from __future__ import annotations

import asyncio
import importlib.metadata

import pytest

from aioipsec.errors import ConfigError
from aioipsec.transports import InnerTransport, OuterTransport, get_transport, register_transport, unregister_transport
from aioipsec.transports import base as tbase
from aioipsec.transports.memory import LinkModel, memory_link, memory_pipe

N = 4000


def run(model: LinkModel, n: int = N, step: float = 0.001) -> list[tuple[float, bytes]]:
    """Send n numbered datagrams one per step; collect (time, datagram)."""
    got: list[tuple[float, bytes]] = []
    t = 0.0
    for i in range(n):
        model.send(i.to_bytes(4, "big") + b"payload", t)
        got += [(t, d) for d in model.deliver(t)]
        t += step
    while (dl := model.next_deadline()) is not None:
        got += [(dl, d) for d in model.deliver(dl)]
    return got


KNOBS = dict(loss=0.1, duplicate=0.05, reorder=0.05, delay=0.002, jitter=0.003, corrupt=0.05)


def test_same_seed_same_run() -> None:
    a = run(LinkModel(seed=42, **KNOBS))
    b = run(LinkModel(seed=42, **KNOBS))
    c = run(LinkModel(seed=43, **KNOBS))
    assert a == b
    assert a != c


@pytest.mark.parametrize("knob", ["loss", "duplicate", "reorder", "corrupt"])
@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_rates_roughly_as_set(knob: str, rate: float) -> None:
    model = LinkModel(seed=7, **{knob: rate})
    got = [d for _t, d in run(model)]
    numbers = [int.from_bytes(d[:4], "big") for d in got]
    if knob == "loss":
        measured = 1 - len(set(numbers)) / N
    elif knob == "duplicate":
        measured = len(got) / N - 1
    elif knob == "corrupt":
        measured = sum(d[4:] != b"payload" or int.from_bytes(d[:4], "big") >= N for d in got) / N
    else:  # reorder: items that arrive after a higher-numbered one
        highest, late = -1, 0
        for x in numbers:
            if x < highest:
                late += 1
            highest = max(highest, x)
        measured = late / N
    assert abs(measured - rate) < 0.25 * rate + 0.01, (knob, measured)
    assert getattr(model.stats, {"loss": "lost", "duplicate": "duplicated", "reorder": "reordered",
                                 "corrupt": "corrupted"}[knob]) > 0


def test_clean_link_keeps_order_and_delay() -> None:
    model = LinkModel(delay=0.5)
    model.send(b"a", 0.0)
    model.send(b"b", 0.1)
    assert model.deliver(0.4) == []
    assert model.next_deadline() == 0.5
    assert model.deliver(0.5) == [b"a"]
    assert model.deliver(10) == [b"b"]
    assert model.next_deadline() is None


def test_reordered_item_follows_next_one() -> None:
    model = LinkModel(seed=1, reorder=1.0)
    model.send(b"first", 0.0)
    assert model.deliver(0.0) == []  # held back
    model.reorder = 0.0
    model.send(b"second", 0.001)
    assert model.deliver(0.001) == [b"second", b"first"]


def test_capacity_drops_are_counted() -> None:
    model = LinkModel(delay=1.0, capacity=10)
    for i in range(15):
        model.send(bytes([i]), 0.0)
    assert model.stats.dropped_full == 5
    assert len(model.deliver(2.0)) == 10


def test_tuple_items_are_corrupted_in_their_bytes() -> None:
    model = LinkModel(seed=3, corrupt=1.0)
    model.send((b"\x00" * 8, ("192.0.2.1", 4500)), 0.0)
    (data, addr), = model.deliver(0.0)
    assert data != b"\x00" * 8 and addr == ("192.0.2.1", 4500)


def test_bad_knobs_rejected() -> None:
    with pytest.raises(ValueError):
        LinkModel(loss=1.5)
    with pytest.raises(ValueError):
        LinkModel(delay=-1)


# ----------------------------------------------------------------- asyncio wrappers


async def test_memory_pipe_batches_and_bounds() -> None:
    a, b = memory_pipe(queue_size=8, batch_size=5)
    assert isinstance(a, InnerTransport)
    a.send_batch([bytes([i]) for i in range(10)])
    assert b.dropped == 2
    assert await b.recv_batch() == [bytes([i]) for i in range(5)]
    assert await b.recv_batch() == [bytes([i]) for i in range(5, 8)]
    waiter = asyncio.ensure_future(b.recv_batch())
    await asyncio.sleep(0)
    assert not waiter.done()
    a.send_batch([b"late"])
    assert await asyncio.wait_for(waiter, 1) == [b"late"]
    b.close()
    with pytest.raises(ConnectionError):
        await b.recv_batch()
    a.send_batch([b"x"])
    assert a.send_dropped == 1


async def test_memory_link_delivers_with_addresses_and_delay() -> None:
    a, b = memory_link(delay=0.01)
    assert isinstance(a, OuterTransport)
    a.send_batch([b"one", b"two"], ("192.0.2.2", 4500))
    a.send_batch([b"lost"], ("192.0.2.99", 4500))
    assert a.misaddressed == 1
    got = await asyncio.wait_for(b.recv_batch(), 1)
    assert got == [(b"one", ("192.0.2.1", 4500)), (b"two", ("192.0.2.1", 4500))]
    b.send_batch([b"back"], a.local_addr)
    assert await asyncio.wait_for(a.recv_batch(), 1) == [(b"back", ("192.0.2.2", 4500))]
    a.close()
    b.close()


async def test_memory_link_loss_is_seeded() -> None:
    async def once() -> list[bytes]:
        a, b = memory_link(seed=9, loss=0.3)
        a.send_batch([bytes([i]) for i in range(100)], b.local_addr)
        await asyncio.sleep(0)
        got = [d for d, _ in await asyncio.wait_for(b.recv_batch(), 1)]
        while b._q.items:
            got += [d for d, _ in await b.recv_batch()]
        return got

    first, second = await once(), await once()
    assert first == second and 50 < len(first) < 90


# ----------------------------------------------------------------- registry


def test_registry_names_instances_and_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    t = get_transport("memory")
    assert isinstance(t, InnerTransport) and t.peer is not None
    mine = object()
    assert get_transport(mine) is mine  # an explicit instance wins
    with pytest.raises(ConfigError):
        get_transport("no-such-transport")

    class Plugin:
        def __init__(self, **kw: object) -> None:
            self.kw = kw

    ep = importlib.metadata.EntryPoint("fake", f"{__name__}:FAKE_PLUGIN", tbase.ENTRY_POINT_GROUP)
    monkeypatch.setitem(globals(), "FAKE_PLUGIN", Plugin)
    monkeypatch.setattr(tbase, "_entry_points", lambda name=None: [ep] if name in (None, "fake") else [])
    try:
        p = get_transport("fake", mtu=1400)
        assert isinstance(p, Plugin) and p.kw == {"mtu": 1400}
        assert "fake" in tbase.available_transports()
    finally:
        unregister_transport("fake")
    register_transport("custom", lambda **kw: ("custom", kw))
    try:
        assert get_transport("custom", x=1) == ("custom", {"x": 1})
        with pytest.raises(ValueError):
            register_transport("custom", lambda **kw: None)
    finally:
        unregister_transport("custom")


def test_plugin_autoload_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tbase.DISABLE_AUTOLOAD_ENV, "1")
    assert tbase._entry_points() == []
