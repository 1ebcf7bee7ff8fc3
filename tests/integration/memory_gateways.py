"""Two gateways on an in-memory network for the data-plane tests: each an
:class:`Endpoint` on a :class:`MemoryNetwork` with an in-memory inner pipe
whose application end is a started :class:`Host` (the hosts behind it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from asyncwait import Host

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import ConnectionConfig
from aioipsec.transports.memory import memory_pipe


@dataclass
class Gateways:
    a: Endpoint
    b: Endpoint
    host_a: Host
    host_b: Host


@asynccontextmanager
async def memory_gateways(net: MemoryNetwork, a: tuple[str, ConnectionConfig], b: tuple[str, ConnectionConfig], *,
                          queue_size: int | None = None) -> AsyncIterator[Gateways]:
    """Gateway A at ``a[0]`` with configuration ``a[1]``, gateway B likewise,
    both on ``net``; their hosts are started.  On exit the hosts stop and
    each endpoint closes (1 s to delete its SAs, 5 s at the most).
    ``queue_size``: the inner pipes' (``memory_pipe``'s default if None)."""
    pipe_kw = {} if queue_size is None else {"queue_size": queue_size}
    a_gw, a_app = memory_pipe(**pipe_kw)
    b_gw, b_app = memory_pipe(**pipe_kw)
    ep_a = await Endpoint.create(a[0], configurations=[a[1]], network=net, inner=a_gw)
    ep_b = await Endpoint.create(b[0], configurations=[b[1]], network=net, inner=b_gw)
    g = Gateways(ep_a, ep_b, Host(a_app), Host(b_app))
    g.host_a.start()
    g.host_b.start()
    try:
        yield g
    finally:
        await g.host_a.stop()
        await g.host_b.stop()
        await asyncio.wait_for(ep_a.close(timeout=1.0), 5)
        await asyncio.wait_for(ep_b.close(timeout=1.0), 5)
