"""IKEv2 task manager: message IDs, the request window, retransmission and
the responder's cache (model: strongSwan ``sa/ikev2/task_manager_v2.c``).

One manager per IKE SA.  It owns:

* the **queue** of tasks we want to initiate, and the one **active**
  exchange (window size 1: a new request only after the previous response);
* **message IDs**: ``my_mid`` for our next request, ``peer_mid`` for the
  next request we expect (RFC 7296 §2.2);
* **retransmission**: ``timeout * base**n`` seconds, shortened by up to
  ``jitter`` (fraction) from the injected ``random``, ``tries`` resends,
  then the exchange is given up (the session tears the IKE SA down);
* the **response cache**: the datagrams of the last response, resent as they
  are when the peer retransmits its last request (``mid == peer_mid - 1``).

It knows nothing about payloads: the session builds and processes the
messages through the tasks (see :mod:`aioipsec.ike.v2.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..._frozen import fast_init

if TYPE_CHECKING:
    from .tasks.base import Task

RETRANSMIT_TIMEOUT = 4.0
RETRANSMIT_BASE = 1.8
RETRANSMIT_TRIES = 5
RETRANSMIT_LIMIT = 0.0
"""Upper bound of a single timeout (0: none)."""


@fast_init
@dataclass(frozen=True, slots=True)
class RetransmitPolicy:
    """Retransmission schedule (strongSwan ``retransmit_*`` settings)."""

    timeout: float = RETRANSMIT_TIMEOUT
    base: float = RETRANSMIT_BASE
    tries: int = RETRANSMIT_TRIES
    jitter: float = 0.0
    """Fraction (0..1) by which each timeout is randomly shortened."""
    limit: float = RETRANSMIT_LIMIT

    def delay(self, attempt: int, random: Callable[[int], bytes]) -> float:
        """Seconds to wait after send number ``attempt`` (0 = first send)."""
        t = self.timeout * self.base**attempt
        if self.limit:
            t = min(t, self.limit)
        if self.jitter > 0:
            t -= t * self.jitter * random_fraction(random)
        return t

    def total(self) -> float:
        """Seconds from the first send until the exchange is given up (no jitter)."""
        return sum(
            min(self.timeout * self.base**n, self.limit) if self.limit else self.timeout * self.base**n
            for n in range(self.tries + 1)
        )


def random_fraction(random: Callable[[int], bytes]) -> float:
    """A float in [0, 1) from four bytes of the injected randomness."""
    return int.from_bytes(random(4), "big") / 2**32


@dataclass(slots=True)
class ActiveExchange:
    """Our outstanding request."""

    mid: int
    exchange_type: int
    tasks: list[Task]
    packets: list[bytes] = field(default_factory=list)
    attempt: int = 0
    deadline: float = 0.0
    started: float = 0.0


@dataclass(slots=True)
class CachedResponse:
    mid: int
    packets: list[bytes]


class TaskManagerV2:
    """Message IDs, window, retransmission and response cache of one IKE SA."""

    def __init__(self, *, policy: RetransmitPolicy, random: Callable[[int], bytes]) -> None:
        self.policy = policy
        self._random = random
        self.my_mid = 0
        """Message ID of our next request."""
        self.peer_mid = 0
        """Message ID of the next request we expect from the peer."""
        self.queued: list[Task] = []
        self.active: ActiveExchange | None = None
        self.last_response: CachedResponse | None = None
        self.retransmits = 0
        """Requests resent (ours) over the SA's life."""
        self.responses_resent = 0
        """Cached responses resent for retransmitted requests."""
        self.exchange_started = False
        """We have sent at least one request on this SA."""

    # ------------------------------------------------------------------ queue

    def queue(self, task: Task, *, first: bool = False) -> None:
        if first:
            self.queued.insert(0, task)
        else:
            self.queued.append(task)

    def has_queued(self, kind: type) -> bool:
        return any(isinstance(t, kind) for t in self.queued)

    def is_active(self, kind: type) -> bool:
        return self.active is not None and any(isinstance(t, kind) for t in self.active.tasks)

    def active_task(self, kind: type) -> Task | None:
        if self.active is None:
            return None
        return next((t for t in self.active.tasks if isinstance(t, kind)), None)

    def next_exchange(self) -> list[Task]:
        """Pop the tasks that go into our next request (the queue head and,
        for IKE_SA_INIT / IKE_AUTH, the tasks sharing its exchange)."""
        if self.active is not None or not self.queued:
            return []
        head = self.queued.pop(0)
        tasks = [head]
        if head.combinable:
            rest = []
            for t in self.queued:
                if t.combinable and t.exchange_type == head.exchange_type:
                    tasks.append(t)
                else:
                    rest.append(t)
            self.queued = rest
        return tasks

    # ------------------------------------------------------------------ our requests

    def start(self, exchange_type: int, tasks: list[Task], packets: list[bytes], now: float) -> ActiveExchange:
        """Record a request that is being sent for the first time."""
        act = ActiveExchange(self.my_mid, exchange_type, tasks, packets, 0, 0.0, now)
        act.deadline = now + self.policy.delay(0, self._random)
        self.active = act
        return act

    def restart(self, packets: list[bytes], now: float) -> None:
        """The active request is rebuilt and sent again from scratch (IKE_SA_INIT
        retried with a COOKIE or another KE group: same message ID 0)."""
        assert self.active is not None
        self.active.packets = packets
        self.active.attempt = 0
        self.active.deadline = now + self.policy.delay(0, self._random)

    def complete(self) -> ActiveExchange:
        """The response to the active request arrived: advance the message ID."""
        assert self.active is not None
        act = self.active
        self.active = None
        self.my_mid = (self.my_mid + 1) & 0xFFFFFFFF
        return act

    def abandon(self) -> ActiveExchange | None:
        """Forget the active exchange (IKE SA going away)."""
        act = self.active
        self.active = None
        return act

    def timer(self) -> float | None:
        return self.active.deadline if self.active is not None else None

    def on_timer(self, now: float) -> tuple[str, list[bytes]]:
        """``("retransmit", packets)``, ``("give-up", [])`` or ``("idle", [])``."""
        act = self.active
        if act is None or now < act.deadline:
            return "idle", []
        if act.attempt >= self.policy.tries:
            return "give-up", []
        act.attempt += 1
        act.deadline = now + self.policy.delay(act.attempt, self._random)
        self.retransmits += 1
        return "retransmit", list(act.packets)

    # ------------------------------------------------------------------ peer requests

    def classify_request(self, mid: int) -> str:
        """``"new"`` (process it), ``"retransmit"`` (resend the cached response)
        or ``"invalid"`` (drop: old or from the future, RFC 7296 §2.3)."""
        if mid == self.peer_mid:
            return "new"
        if self.last_response is not None and mid == self.last_response.mid:
            return "retransmit"
        return "invalid"

    def responded(self, mid: int, packets: list[bytes]) -> None:
        """We answered request ``mid``: cache the response and expect the next."""
        self.last_response = CachedResponse(mid, list(packets))
        self.peer_mid = (mid + 1) & 0xFFFFFFFF

    def cached_response(self) -> list[bytes]:
        self.responses_resent += 1
        return list(self.last_response.packets) if self.last_response else []
