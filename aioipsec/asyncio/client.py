"""``connect()`` and ``serve()``: the public asyncio API (model: aioquic
``asyncio/client.py`` and ``server.py``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ..config import ConnectionConfig, GlobalConfig
from .endpoint import Endpoint
from .protocol import SessionProtocol
from .sockets import MemoryNetwork


def _inner(inner: Any) -> Any:
    if inner is None or not isinstance(inner, str):
        return inner
    from ..transports.base import get_transport

    return get_transport(inner)


@asynccontextmanager
async def connect(
    remote: str,
    *,
    configuration: ConnectionConfig,
    local: str | None = None,
    port: int | None = None,
    inner: Any = None,
    network: MemoryNetwork | None = None,
    child: str | None = None,
    random: Callable[[int], bytes] = os.urandom,
    timeout: float = 30.0,
    wait_child: bool = True,
) -> AsyncIterator[SessionProtocol]:
    """Negotiate an IKE SA (and its first Child SA) with ``remote``; yields
    once both are up and deletes them on exit.

    ``local`` is the local address to bind (default: the first of the
    configuration's ``local_addrs``, else ``0.0.0.0``); ``inner`` an inner
    transport (an object or a registered name such as ``"tun"``) whose packets
    are protected; ``network`` an in-memory network instead of real UDP."""
    host = local or (configuration.local_addrs[0] if configuration.local_addrs else "0.0.0.0")
    endpoint = await Endpoint.create(
        host,
        configurations=[configuration],
        network=network,
        port=configuration.local_port,
        inner=_inner(inner),
        random=random,
        respond=False,
    )
    try:
        proto = endpoint.initiate(configuration.name, child, remote=(remote, port or configuration.remote_port))
        await asyncio.wait_for(proto.wait_established(), timeout)
        if wait_child and configuration.children:
            await asyncio.wait_for(proto.wait_child(child), timeout)
        proto.endpoint = endpoint  # type: ignore[attr-defined]
        yield proto
    finally:
        await endpoint.close()


class Server:
    """What :func:`serve` returns; like ``asyncio.Server``."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._closed = asyncio.Event()

    @property
    def sessions(self) -> set[SessionProtocol]:
        return self.endpoint.sessions

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        await self.endpoint.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()


async def serve(
    host: str,
    *,
    configuration: Sequence[ConnectionConfig] | ConnectionConfig,
    inner: Any = None,
    network: MemoryNetwork | None = None,
    port: int = 500,
    random: Callable[[int], bytes] = os.urandom,
    global_config: GlobalConfig | None = None,
) -> Server:
    """Answer IKE on ``host`` (500 and 4500) for the given connections."""
    endpoint = await Endpoint.create(
        host,
        configurations=configuration,
        network=network,
        port=port,
        inner=_inner(inner),
        random=random,
        global_config=global_config,
    )
    return Server(endpoint)
