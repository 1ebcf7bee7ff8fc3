"""Checks shared by the MOBIKE interop tests (``test_ikev2_mobike*.py``): pings
over the direct topology's tunnel, and that an IKE SA moved to new addresses
is still the one it was (same SPIs at both ends, the installed Child SAs
matching and carrying the pings)."""

from __future__ import annotations

import time

from .netns import Topology
from .strongswan import ChildSa, IkeSa
from .test_harness_smoke import ping


def ping_ok(topo: Topology, src: str, count: int = 3) -> bool:
    """``count`` pings from ``src``, all answered."""
    sent, received = ping(topo, src, count=count)
    return sent == count and received == count


def pings_resume(topo: Topology, deadline: float, what: str) -> None:
    """Pings from the left pass (2 of 2) before ``deadline`` (a
    ``time.monotonic()`` value; else the test fails with ``what``), then
    pings from the right pass too."""
    while not ping_ok(topo, "left", count=2):
        assert time.monotonic() < deadline, what
    assert ping_ok(topo, "right")


def same_ike_sa(aio, ss, before: IkeSa) -> tuple[IkeSa, IkeSa]:
    """charon's and aioipsec's only IKE SA (``after``, ``aio_sa``), both with
    ``before``'s SPIs."""
    [after] = ss.list_sas()
    assert (after.spi_i, after.spi_r) == (before.spi_i, before.spi_r), "a new IKE SA was made"
    [aio_sa] = aio.list_sas()
    assert (aio_sa.spi_i, aio_sa.spi_r) == (before.spi_i, before.spi_r)
    return after, aio_sa


def installed_children_agree(after: IkeSa, aio_sa: IkeSa) -> tuple[ChildSa, ChildSa]:
    """The one installed Child SA of each end (charon's, aioipsec's): one
    SA pair, and aioipsec's carried at least two packets each way."""
    [ss_now] = [c for c in after.children if c.state == "INSTALLED"]
    [aio_now] = [c for c in aio_sa.children if c.state == "INSTALLED"]
    assert (aio_now.spi_in, aio_now.spi_out) == (ss_now.spi_out, ss_now.spi_in)
    assert aio_now.packets_in >= 2 and aio_now.packets_out >= 2, aio_now
    return ss_now, aio_now
