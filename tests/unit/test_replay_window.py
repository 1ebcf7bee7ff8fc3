"""Anti-replay window against a reference model (a set of seen numbers plus
the window rule), for window sizes 64, 1024 and 4096, with and without ESN."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.esp.replay import ReplayWindow

SIZES = [64, 1024, 4096]


class Reference:
    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()
        self.top = 0

    def check(self, seq: int) -> bool:
        if seq <= 0 or seq in self.seen:
            return False
        if self.size == 0:
            return True
        return seq > self.top or self.top - seq < self.size

    def commit(self, seq: int) -> None:
        self.seen.add(seq)
        self.top = max(self.top, seq)


def _ops(base: int, spread: int) -> st.SearchStrategy[list[tuple[int, bool]]]:
    # (sequence number, ICV ok?) pairs clustered around `base`
    return st.lists(
        st.tuples(st.integers(min_value=max(0, base - spread), max_value=base + spread), st.booleans()),
        max_size=300,
    )


def _run(size: int, ops: list[tuple[int, bool]], esn: bool = False) -> None:
    w, ref = ReplayWindow(size, esn=esn), Reference(size)
    for seq, icv_ok in ops:
        got = w.check(seq)
        assert got == ref.check(seq), (seq, w.top)
        if got and icv_ok:  # commit only after the ICV verified
            w.commit(seq)
            ref.commit(seq)
        assert w.top == ref.top


def _steered(data: st.DataObject, size: int, start: int, esn: bool) -> None:
    """Each step picks the next number relative to the current top, so the
    window edges (top - size + 1, top - size) are hit on purpose."""
    w, ref = ReplayWindow(size, esn=esn), Reference(size)
    if start:
        w.set_top(start)
        ref.top = start
        ref.seen.update(range(start - size + 1, start + 1))
    for _ in range(data.draw(st.integers(min_value=1, max_value=120))):
        top = w.top
        back = data.draw(st.sampled_from([0, 1, 2, size - 1, size, size + 1, 3 * size]) | st.integers(0, 2 * size))
        fwd = data.draw(st.sampled_from([1, 2, size - 1, size, size + 1]) | st.integers(1, 3 * size))
        seq = top + fwd if data.draw(st.booleans()) else top - back
        icv_ok = data.draw(st.booleans())
        if esn:
            assert w.infer(seq & 0xFFFFFFFF) == seq or seq <= top - size
        got = w.check(seq)
        assert got == ref.check(seq), (seq, top)
        if got and icv_ok:
            w.commit(seq)
            ref.commit(seq)
        assert w.top == ref.top


@pytest.mark.parametrize("size", SIZES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_window_edges_match_reference(size: int, data: st.DataObject) -> None:
    _steered(data, size, 0, esn=False)


@pytest.mark.parametrize("size", SIZES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_window_edges_across_esn_wrap(size: int, data: st.DataObject) -> None:
    _steered(data, size, (1 << 32) - size - 3, esn=True)


@pytest.mark.parametrize("size", SIZES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_window_matches_reference(size: int, data: st.DataObject) -> None:
    spread = data.draw(st.sampled_from([size // 2, size, 2 * size, 5 * size]))
    ops = data.draw(_ops(spread, spread))
    _run(size, ops)


@pytest.mark.parametrize("size", SIZES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_window_near_32bit_wrap_with_esn(size: int, data: st.DataObject) -> None:
    ops = data.draw(_ops(1 << 32, 3 * size))
    _run(size, ops, esn=True)


@pytest.mark.parametrize("size", SIZES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_esn_inference_recovers_high_bits(size: int, data: st.DataObject) -> None:
    """RFC 4303 App. A2: any number in [T-W+1, T-W+2^32] is recovered from
    its low 32 bits; then check/commit run on the full number."""
    w = ReplayWindow(size, esn=True)
    top = data.draw(st.integers(min_value=size, max_value=(1 << 40)) | st.sampled_from(
        [(1 << 32) - 1, 1 << 32, (1 << 32) + size // 2, (5 << 32) - size // 3]))
    w.set_top(top)
    seq = data.draw(st.integers(min_value=top - size + 1, max_value=top - size + (1 << 32)))
    assert w.infer(seq & 0xFFFFFFFF) == seq


@pytest.mark.parametrize("size", SIZES)
def test_esn_stream_across_wrap(size: int) -> None:
    """In-order and slightly reordered traffic across 2^32 keeps ESN in sync."""
    w = ReplayWindow(size, esn=True)
    start = (1 << 32) - 2 * size
    w.set_top(start)
    seqs = list(range(start + 1, start + 4 * size))
    # swap neighbours to reorder within the window
    for i in range(0, len(seqs) - 1, 3):
        seqs[i], seqs[i + 1] = seqs[i + 1], seqs[i]
    for s in seqs:
        full = w.infer(s & 0xFFFFFFFF)
        assert full == s
        assert w.check(full)
        w.commit(full)
        assert not w.check(full)
    assert w.top == start + 4 * size - 1


def test_disabled_window_accepts_everything_but_zero() -> None:
    w = ReplayWindow(0)
    for s in (5, 5, 1, 100, 1):
        assert w.check(s)
        w.commit(s)
    assert not w.check(0)


def test_old_packet_outside_window_rejected() -> None:
    w = ReplayWindow(64)
    w.commit(1000)
    assert not w.check(1000 - 64)
    assert w.check(1000 - 63)
    assert w.check(1001)


def test_sizes_validated() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(-1)
    ReplayWindow(1 << 20)
