"""Transport protocols (DESIGN.md §5) and the transport registry.

Resolution of a name, in order (model: pytest's built-ins + ``pytest11``
entry points, pluggy's lazy loading):

1. an explicit object is returned as is;
2. a name registered with :func:`register_transport`;
3. a built-in module (``memory``, ``udp``), imported on first use; importing
   it registers its factory;
4. an entry point of group ``aioipsec.transports`` with that name, unless
   ``AIOIPSEC_DISABLE_PLUGIN_AUTOLOAD`` is set in the environment.

This module imports neither asyncio nor any transport implementation.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigError
from ..selectors import Address

__all__ = [
    "ENTRY_POINT_GROUP",
    "InnerTransport",
    "OuterTransport",
    "register_transport",
    "unregister_transport",
    "get_transport",
    "available_transports",
]

logger = logging.getLogger("aioipsec.transports")

ENTRY_POINT_GROUP = "aioipsec.transports"
DISABLE_AUTOLOAD_ENV = "AIOIPSEC_DISABLE_PLUGIN_AUTOLOAD"


@runtime_checkable
class InnerTransport(Protocol):
    """Cleartext IP packets: a TUN device, an in-memory pipe, an app's socket."""

    mtu: int

    async def recv_batch(self) -> list[bytes]:
        """Wait for and return at least one packet (a batch)."""
        ...

    def send_batch(self, packets: Sequence[bytes]) -> None:
        """Hand packets over; never blocks, drops and counts when full."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class OuterTransport(Protocol):
    """Protected datagrams: UDP 4500 encapsulation, raw ESP, in-memory link."""

    async def recv_batch(self) -> list[tuple[bytes, Address]]:
        """Wait for and return at least one ``(datagram, sender)`` pair."""
        ...

    def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None:
        """Send datagrams to ``addr``; never blocks, drops and counts when full."""
        ...


Factory = Callable[..., Any]

_REGISTRY: dict[str, Factory] = {}
_BUILTIN_MODULES = {
    "memory": "aioipsec.transports.memory",
    "udp": "aioipsec.transports.udp",
}


def register_transport(name: str, factory: Factory, *, replace: bool = False) -> None:
    """Register ``factory(**kw) -> transport`` under ``name``.  A name is
    registered once; pass ``replace=True`` to override it."""
    if name in _REGISTRY and not replace and _REGISTRY[name] is not factory:
        raise ValueError(f"transport {name!r} is already registered")
    _REGISTRY[name] = factory


def unregister_transport(name: str) -> None:
    _REGISTRY.pop(name, None)


def _entry_points(name: str | None = None) -> list[importlib.metadata.EntryPoint]:
    if os.environ.get(DISABLE_AUTOLOAD_ENV):
        return []
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return [ep for ep in eps if name is None or ep.name == name]


def available_transports() -> list[str]:
    """Names that :func:`get_transport` may resolve (plugins not loaded)."""
    names = set(_REGISTRY) | set(_BUILTIN_MODULES)
    names.update(ep.name for ep in _entry_points())
    return sorted(names)


def _resolve(name: str) -> Factory:
    factory = _REGISTRY.get(name)
    if factory is not None:
        return factory
    module = _BUILTIN_MODULES.get(name)
    if module is not None:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError("transport", f"built-in transport {name!r} is unavailable: {exc}") from exc
        factory = _REGISTRY.get(name)
        if factory is not None:
            return factory
    for ep in _entry_points(name):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the host down
            raise ConfigError("transport", f"plugin transport {name!r} ({ep.value}) failed to load: {exc}") from exc
        logger.debug("loaded transport plugin %s from %s", name, ep.value)
        register_transport(name, obj, replace=True)
        return obj
    known = ", ".join(available_transports()) or "none"
    raise ConfigError("transport", f"unknown transport {name!r} (known: {known})")


def get_transport(name_or_instance: Any, **kw: Any) -> Any:
    """A transport object: an explicit instance as is, else the factory
    registered (or discovered) under the name, called with ``**kw``."""
    if not isinstance(name_or_instance, str):
        if kw:
            raise TypeError("options are only accepted with a transport name")
        return name_or_instance
    return _resolve(name_or_instance)(**kw)
