"""Sans-I/O driver for two IKEv2 sessions in memory (model: aioquic's
``client_and_server``/``transfer``, strongSwan's ``exchange_test_helper``).

* Time is a number moved by hand (:attr:`Pair.now`); nothing sleeps.
* Randomness is a seeded generator per side (:class:`ScriptedRandom`);
  nonces (the only 32-byte requests) can be scripted to drive rekey
  collisions to a chosen outcome.
* The responder session is created like the endpoint does it: on the first
  IKE_SA_INIT, optionally behind the stateless COOKIE check.
* :class:`Link` is a tiny seeded lossy link (loss, duplication, delay
  jitter = reordering) for :meth:`Pair.run`.
* An optional NAT in front of the initiator rewrites its source address.

Addresses are documentation ranges only.
"""

from __future__ import annotations

import datetime
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field

from aioipsec.config import ConnectionConfig, GlobalConfig
from aioipsec.events import IpsecEvent
from aioipsec.ike.cookies import CookieJar
from aioipsec.ike.v2.message import peek_header
from aioipsec.ike.v2.session import IkeSessionV2
from aioipsec.selectors import Address

I_ADDR: Address = ("192.0.2.1", 500)
R_ADDR: Address = ("192.0.2.2", 500)
NAT_PUBLIC = "203.0.113.5"
WALL = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


class ScriptedRandom:
    """Deterministic ``random(n)``; ``nonces`` (a list of first bytes, or
    whole 32-byte values) are used, in order, for the next nonce requests."""

    def __init__(self, seed: int) -> None:
        self._rng = _random.Random(seed)
        self.nonces: list[int | bytes] = []
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        self.calls += 1
        data = self._rng.randbytes(n)
        if n == 32 and self.nonces:
            head = self.nonces.pop(0)
            if isinstance(head, bytes):
                return head
            return bytes([head]) + data[1:]
        return data


@dataclass
class Link:
    """A seeded lossy link: each datagram is lost with ``loss``, duplicated
    with ``dup`` and delayed by ``delay`` + up to ``jitter`` seconds (which
    reorders datagrams)."""

    seed: int = 0
    loss: float = 0.0
    dup: float = 0.0
    delay: float = 0.01
    jitter: float = 0.0
    rng: _random.Random = field(init=False)
    lost: int = 0
    duplicated: int = 0

    def __post_init__(self) -> None:
        self.rng = _random.Random(self.seed)

    def schedule(self, now: float) -> list[float]:
        """Delivery times for one datagram sent at ``now`` (empty: lost)."""
        if self.rng.random() < self.loss:
            self.lost += 1
            return []
        times = [now + self.delay + self.rng.random() * self.jitter]
        if self.rng.random() < self.dup:
            self.duplicated += 1
            times.append(now + self.delay + self.rng.random() * self.jitter)
        return times


@dataclass(order=True)
class _InFlight:
    at: float
    seq: int
    src: Address = field(compare=False)
    dst: Address = field(compare=False)
    data: bytes = field(compare=False)


class Pair:
    """An initiator and (lazily created) responder joined by a wire."""

    def __init__(
        self,
        i_cfg: ConnectionConfig,
        r_cfg: ConnectionConfig | list[ConnectionConfig],
        *,
        seed: int = 1,
        link: Link | None = None,
        nat: bool = False,
        cookies: bool = False,
        global_config: GlobalConfig | None = None,
        i_addr: Address = I_ADDR,
        r_addr: Address = R_ADDR,
        wall: datetime.datetime = WALL,
    ) -> None:
        self.now = 0.0
        self.rand_i = ScriptedRandom(seed)
        self.rand_r = ScriptedRandom(seed + 1000)
        self.i_addr = i_addr
        self.r_addr = r_addr
        self.r_cfgs = r_cfg if isinstance(r_cfg, list) else [r_cfg]
        self.global_config = global_config or GlobalConfig()
        self.wall = wall
        self.i = IkeSessionV2(
            configuration=i_cfg,
            is_initiator=True,
            local_addr=i_addr,
            remote_addr=r_addr,
            random=self.rand_i,
            global_config=self.global_config,
            wall_clock=lambda: self.wall,
        )
        self.r: IkeSessionV2 | None = None
        self.link = link
        self.nat = nat
        self.cookies = cookies
        self.jar = CookieJar(random=_random.Random(seed + 7).randbytes)
        self.half_open = 0
        self.cookie_replies = 0
        self.dropped_inits = 0
        self.wire: list[_InFlight] = []
        self._seq = 0
        self.ev_i: list[IpsecEvent] = []
        self.ev_r: list[IpsecEvent] = []
        self.sent_i = 0
        self.sent_r = 0
        self.on_deliver: Callable[[str, bytes], bytes | None] | None = None
        """Hook (direction "i>r"/"r>i", data) -> data to deliver or None to drop."""

    # ------------------------------------------------------------------ addresses / NAT

    def _nat_out(self, addr: Address) -> Address:
        return (NAT_PUBLIC, 40000 + addr[1]) if self.nat else addr

    def _nat_in(self, addr: Address) -> Address:
        if self.nat and addr[0] == NAT_PUBLIC:
            return (self.i_addr[0], addr[1] - 40000)
        return addr

    # ------------------------------------------------------------------ manual stepping

    def initiate(self, child: str | None = None) -> None:
        self.i.initiate(self.now, child=child)

    def out_i(self) -> list[bytes]:
        """Drain the initiator's outgoing datagrams."""
        dgs = [d for d, _ in self.i.datagrams_to_send(self.now)]
        self.sent_i += len(dgs)
        return dgs

    def out_r(self) -> list[bytes]:
        if self.r is None:
            return []
        dgs = [d for d, _ in self.r.datagrams_to_send(self.now)]
        self.sent_r += len(dgs)
        return dgs

    def _pending_cookie_replies(self) -> list[bytes]:
        out, self._cookie_out = getattr(self, "_cookie_out", []), []
        return out

    def to_r(self, datagrams: list[bytes]) -> None:
        """Deliver datagrams from the initiator to the responder."""
        for d in datagrams:
            src = self._nat_out(self.i.local_addr)
            self._deliver_r(d, src)
        self._drain_events()

    def to_i(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            src = self.r.local_addr if self.r is not None else self.r_addr
            self.i.receive_datagram(d, src, self.now)
        self._drain_events()

    def _deliver_r(self, data: bytes, src: Address) -> None:
        if self.r is None:
            try:
                hdr = peek_header(data)
            except Exception:
                return
            if hdr.spi_r != bytes(8) or hdr.response:
                return
            if self.cookies:
                reply = IkeSessionV2.check_cookie(
                    data, src, self.half_open, self.global_config, now=self.now, endpoint_state=self.jar
                )
                if reply == b"":
                    self.dropped_inits += 1
                    return
                if reply is not None:
                    self.cookie_replies += 1
                    self._cookie_out = getattr(self, "_cookie_out", []) + [reply]
                    return
            self.r = IkeSessionV2.respond(
                configurations=self.r_cfgs,
                local_addr=self.r_addr,
                remote_addr=src,
                random=self.rand_r,
                global_config=self.global_config,
                wall_clock=lambda: self.wall,
            )
        self.r.receive_datagram(data, src, self.now)

    def cookie_out(self) -> list[bytes]:
        """Stateless COOKIE replies the 'endpoint' produced."""
        return self._pending_cookie_replies()

    def _drain_events(self) -> None:
        for s, bucket in ((self.i, self.ev_i), (self.r, self.ev_r)):
            if s is None:
                continue
            while (ev := s.next_event()) is not None:
                bucket.append(ev)

    def roundtrip(self) -> tuple[int, int]:
        """One flight each way: i -> r, then r -> i.  Returns the counts."""
        a = self.out_i()
        self.to_r(a)
        b = self.out_r() + self.cookie_out()
        self.to_i(b)
        return len(a), len(b)

    def settle(self, max_rounds: int = 50) -> int:
        """Move datagrams both ways until nothing is in flight; returns rounds."""
        for n in range(max_rounds):
            a = self.out_i()
            self.to_r(a)
            b = self.out_r() + self.cookie_out()
            self.to_i(b)
            if not a and not b:
                return n
        raise AssertionError("no quiescence")

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer on the way (no delivery)."""
        end = self.now + seconds
        for _ in range(100000):
            t = self.next_timer()
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            for s in self.sessions():
                if s.get_timer() is not None and s.get_timer() <= self.now:  # type: ignore[operator]
                    s.handle_timer(self.now)
        self.now = end
        self._drain_events()

    def fire_timers(self) -> None:
        for s in self.sessions():
            t = s.get_timer()
            if t is not None and t <= self.now:
                s.handle_timer(self.now)
        self._drain_events()

    def sessions(self) -> list[IkeSessionV2]:
        return [s for s in (self.i, self.r) if s is not None]

    def next_timer(self) -> float | None:
        ts = [t for s in self.sessions() if (t := s.get_timer()) is not None]
        return min(ts) if ts else None

    # ------------------------------------------------------------------ simulated network

    def _enqueue(self, data: bytes, src: Address, dst: Address) -> None:
        times = self.link.schedule(self.now) if self.link is not None else [self.now]
        for at in times:
            self._seq += 1
            self.wire.append(_InFlight(at, self._seq, src, dst, data))

    def _collect(self) -> None:
        for d, dst in self.i.datagrams_to_send(self.now):
            self.sent_i += 1
            self._enqueue(d, self._nat_out(self.i.local_addr), dst)
        if self.r is not None:
            for d, dst in self.r.datagrams_to_send(self.now):
                self.sent_r += 1
                self._enqueue(d, self.r.local_addr, dst)
        for d in self.cookie_out():
            self._enqueue(d, self.r_addr, self._nat_out(self.i.local_addr))

    def run(self, until: Callable[[], bool] | None = None, *, max_time: float = 600.0, on_tick: Callable[[], None] | None = None) -> bool:
        """Run the simulated network (link model, timers) until ``until()``
        holds or ``max_time`` simulated seconds passed.  Bounded."""
        limit = self.now + max_time
        for _ in range(1_000_000):
            self._collect()
            self._drain_events()
            if on_tick is not None:
                on_tick()
            if until is not None and until():
                return True
            cands = [f.at for f in self.wire]
            t = self.next_timer()
            if t is not None:
                cands.append(t)
            if not cands:
                return until is None
            nxt = min(cands)
            if nxt > limit:
                self.now = limit
                return until is None
            self.now = max(self.now, nxt)
            due = sorted(f for f in self.wire if f.at <= self.now)
            self.wire = [f for f in self.wire if f.at > self.now]
            for f in due:
                data = f.data
                to_r = f.dst[0] == self.r_addr[0]
                if self.on_deliver is not None:
                    res = self.on_deliver("i>r" if to_r else "r>i", data)
                    if res is None:
                        continue
                    data = res
                if to_r:
                    self._deliver_r(data, f.src)
                else:
                    src = f.src
                    self.i.receive_datagram(data, src, self.now)
            self.fire_timers()
        raise AssertionError("simulation did not end")

    # ------------------------------------------------------------------ events

    def events(self, side: str, kind: type | tuple[type, ...] | None = None) -> list[IpsecEvent]:
        self._drain_events()
        evs = self.ev_i if side == "i" else self.ev_r
        return [e for e in evs if kind is None or isinstance(e, kind)]

    def clear_events(self) -> None:
        self._drain_events()
        self.ev_i.clear()
        self.ev_r.clear()
