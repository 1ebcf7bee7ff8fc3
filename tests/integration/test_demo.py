"""The demo is what `make demo` runs: it must negotiate (or install static
keys), carry every ping, and count the replayed and the tampered packet."""

from __future__ import annotations

import io
import re

import pytest

from aioipsec.demo import Options, run_demo


def _counters(text: str) -> list[tuple[int, int]]:
    """(replay, integrity) of each inbound row of the SA table."""
    rows = re.findall(r"^\s+\S+\s+lan\s+in\s+0x[0-9a-f]+\s+\S+\s+\d+\s+\d+\s+(\d+)\s+(\d+)", text, re.M)
    return [(int(a), int(b)) for a, b in rows]


@pytest.mark.parametrize("opts", [Options(static=True), Options(), Options(ikev1=True)], ids=["static", "ikev2", "ikev1"])
async def test_demo_story(opts: Options) -> None:
    out = io.StringIO()
    rc = await run_demo(opts, out)
    text = out.getvalue()
    assert rc == 0, text
    assert f"{opts.count} sent, {opts.count} replies" in text
    rows = _counters(text)
    assert len(rows) == 2
    assert sum(r for r, _ in rows) == 1  # the replayed packet
    assert sum(i for _, i in rows) == 1  # the tampered packet
    if not opts.static:
        steps = ("MM1 sent", "QM1 sent") if opts.ikev1 else ("IKE_SA_INIT", "IKE_AUTH")
        for step in steps:
            assert step in text
