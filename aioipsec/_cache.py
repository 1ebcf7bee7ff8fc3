"""A bounded cache for values that repeat from one handshake to the next.

Peers offer the same proposals, identities, selectors and status notifies
in every handshake, so the IKEv2 codec and proposal selection remember what
they computed from them.  Two kinds of key:

- bytes from the wire (a payload body): the value is what parsing those
  bytes gives, an immutable object;
- the ``id()`` of objects the value was computed from: the entry keeps those
  objects (``(kept, ..., value)``), so no id is reused while it is cached and
  an equal id means the same object.

Keys may come from the wire, so a cache never grows past its size: when full
it is emptied (and refilled by the next lookups) rather than filled for good
by one peer.
"""

from __future__ import annotations

from typing import Any

ALL_CACHES: list[BoundedCache] = []
"""Every cache made (module-level ones: a handful), for :func:`clear_all`."""


def clear_all() -> None:
    """Empty every cache (tests compare results with and without them)."""
    for cache in ALL_CACHES:
        cache.clear()


class BoundedCache(dict[Any, Any]):
    """A ``dict`` whose :meth:`remember` empties it when it holds ``size``
    entries.  Lookups are plain ``dict.get`` (C, no Python call)."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        ALL_CACHES.append(self)

    def remember(self, key: Any, value: Any) -> Any:
        """Store ``value`` under ``key`` and return it."""
        if len(self) >= self.size:
            self.clear()
        self[key] = value
        return value
