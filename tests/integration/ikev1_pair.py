"""Two IKEv1 sessions wired back to back in memory (model: aioquic's
``client_and_server`` / strongSwan's ``exchange_test_helper``).

Time is a number moved by hand, randomness comes from seeded PRNGs, and
every datagram passes through :meth:`Pair.deliver`, where a test can drop,
duplicate or inspect it.  An optional NAT in front of the initiator rewrites
its source address and port, like a masquerading router with port changes
(strongSwan interop notes, pitfall 12).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field

from aioipsec.config import ConnectionConfig, child, connection
from aioipsec.events import IpsecEvent
from aioipsec.ike.v1 import IkeSessionV1
from aioipsec.ike.v1.message import peek_header
from aioipsec.selectors import Address

ADDR_I = ("192.0.2.1", 500)
ADDR_R = ("198.51.100.2", 500)


def seeded(seed: int) -> Callable[[int], bytes]:
    rng = _random.Random(seed)
    return lambda n: rng.randbytes(n)


def psk_configs(
    *,
    proposals: list[str] | None = None,
    esp: list[str] | None = None,
    esp_r: list[str] | None = None,
    proposals_r: list[str] | None = None,
    psk_i: str = "s3cret-psk",
    psk_r: str | None = None,
    aggressive: bool = False,
    ids: tuple[str | None, str | None] = (None, None),
    **kw: object,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """A matching initiator/responder pair of IKEv1 PSK configurations
    (site-to-site tunnel 10.1.0.0/16 <-> 10.2.0.0/16)."""
    child_kw = {k[6:]: v for k, v in kw.items() if k.startswith("child_")}
    conn_kw = {k: v for k, v in kw.items() if not k.startswith("child_")}
    legacy = bool(conn_kw.get("legacy", False))
    ci = child(
        "net", local_ts=["10.1.0.0/16"], remote_ts=["10.2.0.0/16"], esp_proposals=esp or ["aes128-sha1"], legacy=legacy, **child_kw
    )
    cr = child(
        "net",
        local_ts=["10.2.0.0/16"],
        remote_ts=["10.1.0.0/16"],
        esp_proposals=esp_r or esp or ["aes128-sha1"],
        legacy=legacy,
        **child_kw,
    )
    i = connection(
        "ikev1",
        version=1,
        proposals=proposals or ["aes128-sha1-modp2048"],
        psk=psk_i,
        local_id=ids[0],
        remote_id=ids[1],
        children=[ci],
        aggressive=aggressive,
        **conn_kw,
    )
    r = connection(
        "ikev1",
        version=1,
        proposals=proposals_r or proposals or ["aes128-sha1-modp2048"],
        psk=psk_r if psk_r is not None else psk_i,
        local_id=ids[1],
        remote_id=ids[0],
        children=[cr],
        aggressive=aggressive,
        **conn_kw,
    )
    return i, r


@dataclass
class Datagram:
    src: Address
    dst: Address
    data: bytes
    sender: str
    """``i`` or ``r``."""
    at: float = 0.0
    """Time it was sent."""

    @property
    def exchange(self) -> int:
        return peek_header(self.data).exchange


@dataclass
class Nat:
    """Source NAT in front of the initiator: private (ip, port) -> public."""

    public_ip: str = "203.0.113.7"
    next_port: int = 40000
    out: dict[Address, Address] = field(default_factory=dict)

    def map(self, src: Address) -> Address:
        if src not in self.out:
            self.out[src] = (self.public_ip, self.next_port)
            self.next_port += 1
        return self.out[src]

    def unmap(self, dst: Address) -> Address | None:
        for priv, pub in self.out.items():
            if pub == dst:
                return priv
        return None


class Pair:
    """An initiator ``i`` and a responder ``r`` (created through
    :meth:`IkeSessionV1.respond`, as the endpoint does)."""

    def __init__(
        self,
        cfg_i: ConnectionConfig,
        cfg_r: ConnectionConfig,
        *,
        seed: int = 1,
        nat: Nat | None = None,
        addr_i: Address = ADDR_I,
        addr_r: Address = ADDR_R,
        wall_clock: Callable | None = None,
    ) -> None:
        self.now = 1000.0
        self.nat = nat
        self.i = IkeSessionV1(
            configuration=cfg_i,
            is_initiator=True,
            local_addr=addr_i,
            remote_addr=addr_r,
            random=seeded(seed),
            wall_clock=wall_clock,
        )
        seen_i = nat.map(addr_i) if nat else addr_i
        self.r = IkeSessionV1.respond(
            configurations=[cfg_r],
            local_addr=addr_r,
            remote_addr=seen_i,
            random=seeded(seed + 1000),
            wall_clock=wall_clock,
        )
        self.wire: list[Datagram] = []
        """Every datagram delivered (or dropped), in order."""
        self.dropped: list[Datagram] = []
        self.events: dict[str, list[IpsecEvent]] = {"i": [], "r": []}
        self.drop: Callable[[Datagram], bool] = lambda d: False
        self.r_alive = True

    # ------------------------------------------------------------------ plumbing

    def session(self, who: str) -> IkeSessionV1:
        return self.i if who == "i" else self.r

    def _collect(self) -> None:
        for who in ("i", "r"):
            s = self.session(who)
            while (ev := s.next_event()) is not None:
                self.events[who].append(ev)

    def _outgoing(self, who: str) -> list[Datagram]:
        s = self.session(who)
        out = []
        for data, dst in s.datagrams_to_send(self.now):
            src = s.local_addr
            if who == "i" and self.nat is not None:
                src = self.nat.map(src)
            out.append(Datagram(src, dst, data, who, self.now))
        return out

    def deliver(self, d: Datagram) -> bool:
        """Hand one datagram to its receiver unless the test drops it."""
        self.wire.append(d)
        if self.drop(d) or (d.sender == "i" and not self.r_alive):
            self.dropped.append(d)
            return False
        if d.sender == "i":
            assert d.dst[0] == self.r.local_addr[0], f"initiator sent to {d.dst}"
            self.r.receive_datagram(d.data, d.src, self.now)
        else:
            dst = d.dst
            if self.nat is not None:
                priv = self.nat.unmap(dst)
                assert priv is not None, f"responder sent to unmapped {dst}"
                dst = priv
            assert dst[0] == self.i.local_addr[0], f"responder sent to {d.dst}"
            self.i.receive_datagram(d.data, d.src, self.now)
        return True

    def pump(self, max_rounds: int = 50) -> int:
        """Move datagrams both ways until both sides are quiet; returns how
        many were moved."""
        moved = 0
        for _ in range(max_rounds):
            batch = self._outgoing("i") + self._outgoing("r")
            if not batch:
                break
            for d in batch:
                self.deliver(d)
                moved += 1
        else:
            raise AssertionError("pump did not settle")
        self._collect()
        return moved

    def advance(self, until: float, max_steps: int = 10000) -> None:
        """Run timers (and the traffic they cause) up to time ``until``."""
        for _ in range(max_steps):
            self.pump()
            timers = [t for t in (self.i.get_timer(), self.r.get_timer()) if t is not None and t <= until]
            if not timers:
                self.now = max(self.now, until)
                return
            self.now = max(self.now, min(timers))
            for s in (self.i, self.r):
                t = s.get_timer()
                if t is not None and t <= self.now:
                    s.handle_timer(self.now)
        raise AssertionError("advance did not settle")

    def start(self, child: str | None = "net") -> None:
        self.i.initiate(self.now, child=child)
        self.pump()

    # ------------------------------------------------------------------ queries

    def of(self, who: str, cls: type) -> list:
        return [e for e in self.events[who] if isinstance(e, cls)]

    def steps(self, who: str) -> list[str]:
        from aioipsec.events import ExchangeStep

        return [e.text for e in self.events[who] if isinstance(e, ExchangeStep)]

    def clear_events(self) -> None:
        self._collect()
        self.events = {"i": [], "r": []}
