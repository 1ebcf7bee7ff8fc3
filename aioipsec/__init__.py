"""aioipsec: IPsec (IKEv2, IKEv1, ESP, AH) for asyncio on sans-I/O state machines.

Importing :mod:`aioipsec` stays cheap and does not import asyncio: the
sans-I/O core (``aioipsec.esp``, ``aioipsec.ike``, ``aioipsec.crypto``) must
not depend on it.  ``connect``/``serve`` load the asyncio layer on first use.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "connect": "aioipsec.asyncio.client",
    "serve": "aioipsec.asyncio.client",
    "Server": "aioipsec.asyncio.client",
    "MemoryNetwork": "aioipsec.asyncio.sockets",
    "Endpoint": "aioipsec.asyncio.endpoint",
    "IkeError": "aioipsec.asyncio.protocol",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'aioipsec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)
