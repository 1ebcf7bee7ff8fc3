"""The ESP/AH data plane: sans-I/O, never imports asyncio or socket.

- :mod:`.sa`: :class:`EspSa` / :class:`AhSa` (one direction each), counters,
  lifetimes, :func:`esp_sa_pair_from_event`;
- :mod:`.packet`: ESP framing (:class:`EspCodec`), :class:`OpenResult`,
  :class:`DropReason`;
- :mod:`.replay`: the anti-replay window; :mod:`.ah`: AH framing and
  mutable-field zeroing; :mod:`.ip`: IPv4/IPv6 header helpers;
  :mod:`.natt`: UDP encapsulation (RFC 3948).
"""

from .packet import DropReason, OpenResult
from .replay import ReplayWindow
from .sa import AhSa, EspSa, SaCounters, esp_sa_pair_from_event

__all__ = ["AhSa", "DropReason", "EspSa", "OpenResult", "ReplayWindow", "SaCounters", "esp_sa_pair_from_event"]
