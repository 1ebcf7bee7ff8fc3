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
from typing import Any

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
    esp: bool = field(default=False, compare=False)


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
        pools: dict[str, Any] | None = None,
    ) -> None:
        self.now = 0.0
        self.pools = pools
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
        self.on_event: Callable[[str, IpsecEvent], None] | None = None
        """Called for every event as soon as it is produced (side "i"/"r")."""
        self.on_esp: Callable[[str, bytes], None] | None = None
        """Receives ESP datagrams sent with :meth:`send_esp` (receiving side, data)."""

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
                pools=self.pools,
            )
        self.r.receive_datagram(data, src, self.now)

    def cookie_out(self) -> list[bytes]:
        """Stateless COOKIE replies the 'endpoint' produced."""
        return self._pending_cookie_replies()

    def _drain_events(self) -> None:
        for side, s, bucket in (("i", self.i, self.ev_i), ("r", self.r, self.ev_r)):
            if s is None:
                continue
            while (ev := s.next_event()) is not None:
                bucket.append(ev)
                if self.on_event is not None:
                    self.on_event(side, ev)

    def send_esp(self, side: str, data: bytes) -> None:
        """Put an ESP datagram on the simulated wire (same link as IKE)."""
        if side == "i":
            src, dst = self._nat_out(self.i.local_addr), self.r_addr
        else:
            src, dst = self.r_addr, self._nat_out(self.i.local_addr)
        times = self.link.schedule(self.now) if self.link is not None else [self.now]
        for at in times:
            self._seq += 1
            self.wire.append(_InFlight(at, self._seq, src, dst, data, True))

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
                if f.esp:
                    if self.on_esp is not None:
                        self.on_esp("r" if to_r else "i", data)
                    continue
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
                self._drain_events()
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


# --------------------------------------------------------------------------- configurations

def psk_pair_configs(
    *,
    psk: str = "correct horse battery staple",
    i_proposals: list[str] | None = None,
    r_proposals: list[str] | None = None,
    i_esp: list[str] | None = None,
    r_esp: list[str] | None = None,
    i_local_ts: list[str] | None = None,
    i_remote_ts: list[str] | None = None,
    r_local_ts: list[str] | None = None,
    r_remote_ts: list[str] | None = None,
    i_kw: dict | None = None,
    r_kw: dict | None = None,
    i_child_kw: dict | None = None,
    r_child_kw: dict | None = None,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """A matching initiator/responder PSK configuration with one child "lan"."""
    from aioipsec.config import child, connection

    ic = child(
        "lan",
        local_ts=i_local_ts if i_local_ts is not None else ["198.51.100.0/24"],
        remote_ts=i_remote_ts if i_remote_ts is not None else ["203.0.113.0/24"],
        esp_proposals=i_esp,
        **(i_child_kw or {}),
    )
    rc = child(
        "lan",
        local_ts=r_local_ts if r_local_ts is not None else ["203.0.113.0/24"],
        remote_ts=r_remote_ts if r_remote_ts is not None else ["198.51.100.0/24"],
        esp_proposals=r_esp,
        **(r_child_kw or {}),
    )
    i = connection("site-a", psk=psk, local_id="site-a.example", remote_id="hq.example", proposals=i_proposals,
                   children=[ic], **(i_kw or {}))
    r = connection("hq", psk=psk, local_id="hq.example", remote_id="site-a.example", proposals=r_proposals,
                   children=[rc], **(r_kw or {}))
    return i, r


@dataclass
class Pki:
    """A test CA and, per key type, a host certificate + key for each side."""

    ca: object
    ca_key: object
    hosts: dict[str, tuple[object, object]]
    """name -> (certificate, private key)."""


def make_pki(key_types: tuple[str, ...] = ("rsa", "p256", "p384", "ed25519")) -> Pki:
    """CA (ECDSA P-256) plus host certificates ``<kind>-a`` / ``<kind>-b``
    with SANs ``site-a.example`` / ``hq.example``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.x509.oid import NameOID

    def gen(kind: str):  # type: ignore[no-untyped-def]
        if kind == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "p256":
            return ec.generate_private_key(ec.SECP256R1())
        if kind == "p384":
            return ec.generate_private_key(ec.SECP384R1())
        if kind == "ed25519":
            return ed25519.Ed25519PrivateKey.generate()
        raise ValueError(kind)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aioipsec test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    start = WALL - datetime.timedelta(days=1)
    end = WALL + datetime.timedelta(days=365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("aioipsec test CA"))
        .issuer_name(name("aioipsec test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    hosts = {}
    serial = 2
    for kind in key_types:
        for side, fqdn in (("a", "site-a.example"), ("b", "hq.example")):
            key = gen(kind)
            cert = (
                x509.CertificateBuilder()
                .subject_name(name(fqdn))
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(start)
                .not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            serial += 1
            hosts[f"{kind}-{side}"] = (cert, key)
    return Pki(ca, ca_key, hosts)


def cert_pair_configs(
    pki: Pki, kind: str, *, rsa_pss: bool = False, i_kind: str | None = None, r_kind: str | None = None, **kw
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """Certificate-authenticated configurations (both sides trust ``pki.ca``)."""
    from aioipsec.config import AuthConfig

    i, r = psk_pair_configs(**kw)
    ca, ik, rk = pki.ca, i_kind or kind, r_kind or kind
    icert, ikey = pki.hosts[f"{ik}-a"]
    rcert, rkey = pki.hosts[f"{rk}-b"]
    i.psk = r.psk = None
    i.local = AuthConfig(auth="pubkey", id="site-a.example", cert=icert, private_key=ikey, rsa_pss=rsa_pss)
    i.remote = AuthConfig(auth="pubkey", id="hq.example", cacerts=[ca])
    r.local = AuthConfig(auth="pubkey", id="hq.example", cert=rcert, private_key=rkey, rsa_pss=rsa_pss)
    r.remote = AuthConfig(auth="pubkey", id="site-a.example", cacerts=[ca])
    return i, r


def mirror(ev_a, ev_b) -> bool:  # type: ignore[no-untyped-def]
    """Two ChildSaInstalled events describe the same SA pair from both ends."""
    return (
        ev_a.spi_in == ev_b.spi_out
        and ev_a.spi_out == ev_b.spi_in
        and ev_a.encr_key_in == ev_b.encr_key_out
        and ev_a.encr_key_out == ev_b.encr_key_in
        and ev_a.integ_key_in == ev_b.integ_key_out
        and ev_a.integ_key_out == ev_b.integ_key_in
        and ev_a.local_ts == ev_b.remote_ts
        and ev_a.remote_ts == ev_b.local_ts
        and ev_a.encr == ev_b.encr
        and ev_a.integ == ev_b.integ
        and ev_a.esn == ev_b.esn
        and ev_a.mode == ev_b.mode
        and ev_a.encap == ev_b.encap
    )
