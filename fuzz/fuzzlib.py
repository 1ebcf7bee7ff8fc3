"""Fuzz targets for every parser of aioipsec, shared by the atheris harnesses
in this directory and by the robustness suite (``tests/robustness``).

Each target is a plain function ``target(data: bytes) -> None`` that drives one
parser (or a whole session / endpoint) with ``data`` and enforces its
contract:

* codecs may raise only their documented errors (subclasses of
  :class:`~aioipsec.errors.RemoteProtocolError`: ``ParseError``,
  ``IntegrityError``, ``NotifyError``; the config loader ``ConfigError``);
* sessions, the ESP/AH data plane and the endpoint never raise; bad input is
  dropped and counted (and a session's ``internal_errors`` stays 0, which
  means no bug was swallowed by the defensive ``except Exception``);
* state that input can grow (reassembly buffers, passive exchanges, per-peer
  tables, half-open sessions) stays under a stated bound.

A violation raises :class:`ContractViolation` (or lets the unexpected
exception through), which atheris reports as a crash with the input.

Nothing here needs atheris: ``Reader`` plays the part of
``atheris.FuzzedDataProvider`` so hypothesis (or a replay of a crash file)
can drive the same targets.  Everything is deterministic for a given input:
randomness is seeded, time is a number.  Addresses are documentation ranges.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import struct
import tomllib
from collections.abc import Callable
from typing import Any

from aioipsec.config import ConnectionConfig, GlobalConfig, child, connection
from aioipsec.crypto import transforms as T
from aioipsec.errors import ConfigError, RemoteProtocolError

__all__ = ["ContractViolation", "Reader", "TARGETS", "seeds", "mutate"]

class ContractViolation(AssertionError):
    """A parser broke its contract (wrong exception, no counter moved, state over its bound)."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise ContractViolation(what)


class _SwallowedExceptions(logging.Handler):
    """Records log records that carry a traceback: a defensive ``except``
    somewhere logged an exception it caught (``logger.exception`` in the
    IKEv2 session, ``exc_info=True`` in the IKEv1 one).  For a parser fed
    garbage that is a bug hidden from the caller, so targets fail on it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.hits.append(f"{record.name}: {record.getMessage()} ({record.exc_info[0].__name__})")


SWALLOWED = _SwallowedExceptions()
logging.getLogger("aioipsec").addHandler(SWALLOWED)


def check_nothing_swallowed(what: str) -> None:
    hits, SWALLOWED.hits = SWALLOWED.hits, []
    check(not hits, f"{what}: exception caught and logged inside: {hits[:3]}")


# =========================================================================== input reader


class Reader:
    """Consumes a fuzz input the way ``atheris.FuzzedDataProvider`` does, but
    deterministic and dependency-free (so crash inputs replay anywhere)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def u8(self) -> int:
        b = self.take(1)
        return b[0] if b else 0

    def u16(self) -> int:
        return int.from_bytes(self.take(2).ljust(2, b"\0"), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4).ljust(4, b"\0"), "big")

    def pick(self, seq: list[Any] | tuple[Any, ...]) -> Any:
        return seq[self.u8() % len(seq)]

    def chunk(self, limit: int = 4096) -> bytes:
        """A length-prefixed piece (u16 length, capped)."""
        return self.take(min(self.u16(), limit))

    def rest(self) -> bytes:
        return self.take(self.remaining())


def mutate(seed: bytes, r: Reader, max_ops: int = 8) -> bytes:
    """Apply a few byte-level mutations chosen by ``r`` to ``seed``."""
    data = bytearray(seed)
    for _ in range(1 + r.u8() % max_ops):
        if r.remaining() == 0:
            break
        op, pos, val = r.u8() % 7, r.u16(), r.u8()
        if not data:
            data.append(val)
            continue
        i = pos % len(data)
        if op == 0:
            data[i] ^= 1 << (val % 8)
        elif op == 1:
            data[i] = val
        elif op == 2:
            del data[i:]
        elif op == 3:
            data[i:i] = bytes([val]) * (1 + val % 16)
        elif op == 4:
            del data[i : i + 1 + val % 16]
        elif op == 5 and i + 2 <= len(data):
            data[i : i + 2] = struct.pack("!H", val * 257 if val & 1 else val)
        else:
            data[i:i] = r.chunk(64)
    return bytes(data)


def fix_ike_length(data: bytes) -> bytes:
    """Set the IKE/ISAKMP header length field to the datagram length."""
    if len(data) < 28:
        return data
    return data[:24] + struct.pack("!L", len(data)) + data[28:]


def seeded(seed: int) -> Callable[[int], bytes]:
    rng = _random.Random(seed)
    return rng.randbytes


# =========================================================================== configurations

I_ADDR = ("192.0.2.1", 500)
R_ADDR = ("192.0.2.2", 500)
PSK = "robustness fuzz psk"

V2_SUITES = [
    ("aes128gcm16-prfsha256-x25519", "aes128gcm16"),
    ("aes256-sha256-ecp256", "aes128-sha256"),
    ("chacha20poly1305-prfsha256-x25519", "chacha20poly1305"),
]
V1_SUITES = [
    ("aes128-sha256-x25519", "aes128-sha256"),
    ("aes256-sha1-ecp256", "aes128gcm16"),
]


def v2_configs(suite: int = 0, **kw: Any) -> tuple[ConnectionConfig, ConnectionConfig]:
    ike, esp = V2_SUITES[suite % len(V2_SUITES)]
    ci = child("lan", local_ts=["198.51.100.0/24"], remote_ts=["203.0.113.0/24"], esp_proposals=[esp])
    cr = child("lan", local_ts=["203.0.113.0/24"], remote_ts=["198.51.100.0/24"], esp_proposals=[esp])
    common = dict(psk=PSK, proposals=[ike], dpd_delay=30.0, **kw)
    i = connection("site-a", local_id="site-a.example", remote_id="hq.example", children=[ci], **common)
    r = connection("hq", local_id="hq.example", remote_id="site-a.example", children=[cr], **common)
    return i, r


def v1_configs(suite: int = 0, *, aggressive: bool = False, **kw: Any) -> tuple[ConnectionConfig, ConnectionConfig]:
    ike, esp = V1_SUITES[suite % len(V1_SUITES)]
    ci = child("net", local_ts=["198.51.100.0/24"], remote_ts=["203.0.113.0/24"], esp_proposals=[esp])
    cr = child("net", local_ts=["203.0.113.0/24"], remote_ts=["198.51.100.0/24"], esp_proposals=[esp])
    common = dict(version=1, psk=PSK, proposals=[ike], aggressive=aggressive, dpd_delay=30.0, **kw)
    i = connection("v1-a", local_id="site-a.example", remote_id="hq.example", children=[ci], **common)
    r = connection("v1-hq", local_id="hq.example", remote_id="site-a.example", children=[cr], **common)
    return i, r


# =========================================================================== IKEv2 worlds


class V2World:
    """An initiator and a responder (created like the endpoint does it) with
    a transcript of every datagram, stepped by hand."""

    def __init__(self, seed: int = 1, suite: int = 0, **kw: Any) -> None:
        from aioipsec.ike.v2.session import IkeSessionV2

        self.now = 100.0
        self.cfg_i, self.cfg_r = v2_configs(suite, **kw)
        self.i = IkeSessionV2(
            configuration=self.cfg_i, is_initiator=True, local_addr=I_ADDR, remote_addr=R_ADDR, random=seeded(seed)
        )
        self.r = IkeSessionV2.respond(
            configurations=[self.cfg_r], local_addr=R_ADDR, remote_addr=I_ADDR, random=seeded(seed + 1000)
        )
        self.transcript: list[bytes] = []
        self.pending_i: list[bytes] = []
        """Sent by i, not delivered yet."""
        self.pending_r: list[bytes] = []

    def collect(self) -> None:
        for d, _ in self.i.datagrams_to_send(self.now):
            self.pending_i.append(d)
            self.transcript.append(d)
        for d, _ in self.r.datagrams_to_send(self.now):
            self.pending_r.append(d)
            self.transcript.append(d)
        while self.i.next_event() is not None:
            pass
        while self.r.next_event() is not None:
            pass

    def i_to_r(self) -> None:
        self.collect()
        batch, self.pending_i = self.pending_i, []
        for d in batch:
            self.r.receive_datagram(d, I_ADDR, self.now)
        self.collect()

    def r_to_i(self) -> None:
        self.collect()
        batch, self.pending_r = self.pending_r, []
        for d in batch:
            self.i.receive_datagram(d, R_ADDR, self.now)
        self.collect()

    def settle(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            self.collect()
            if not self.pending_i and not self.pending_r:
                return
            self.i_to_r()
            self.r_to_i()

    def establish(self) -> V2World:
        self.i.initiate(self.now)
        self.settle()
        check(self.i.is_established and self.r.is_established, "v2 world did not establish")
        return self


def _v2_state(name: str, seed: int, suite: int) -> tuple[V2World, str]:
    """Build world ``seed`` in state ``name``; returns (world, target side)."""
    w = V2World(seed, suite)
    if name == "i-init-sent":
        w.i.initiate(w.now)
        w.collect()
        return w, "i"
    if name == "r-fresh":
        w.i.initiate(w.now)
        w.collect()
        return w, "r"
    if name == "r-init-done":
        w.i.initiate(w.now)
        w.i_to_r()
        w.r_to_i()  # i now has keys and has sent IKE_AUTH (pending, not delivered)
        return w, "r"
    if name == "i-auth-sent":
        w.i.initiate(w.now)
        w.i_to_r()
        w.r_to_i()
        return w, "i"
    w.establish()
    if name in ("i-established", "r-established"):
        return w, name[0]
    spi_in = next(iter(w.i.children))
    if name == "i-child-rekey-sent":
        w.i.rekey_child_sa(spi_in, w.now)
        w.collect()
        return w, "i"
    if name == "r-child-rekey-received":
        w.i.rekey_child_sa(spi_in, w.now)
        w.i_to_r()
        return w, "r"
    if name == "i-ike-rekey-sent":
        w.i.rekey_ike_sa(w.now)
        w.collect()
        return w, "i"
    if name == "i-deleting":
        w.i.delete(w.now)
        w.collect()
        return w, "i"
    if name == "r-closed":
        w.i.delete(w.now)
        w.i_to_r()
        return w, "r"
    raise ValueError(name)


V2_STATES = [
    "i-init-sent",
    "r-fresh",
    "r-init-done",
    "i-auth-sent",
    "i-established",
    "r-established",
    "i-child-rekey-sent",
    "r-child-rekey-received",
    "i-ike-rekey-sent",
    "i-deleting",
    "r-closed",
]


def seal_v2(sk: Any, spi_i: bytes, spi_r: bytes, exchange: int, flags: int, mid: int, first: int, inner: bytes) -> bytes:
    """An SK message with an arbitrary inner payload chain, sealed with ``sk``
    (the peer's keys): the receiver's ICV check passes, so the inner parsers
    and the tasks see the bytes (authenticated garbage)."""
    from aioipsec.ike.v2.message import Header

    sealed_len = sk.sealed_len(len(inner))
    total = 28 + 4 + sealed_len
    hdr = Header(spi_i, spi_r, 46, 2, 0, exchange, flags, mid, total).encode()
    prefix = hdr + struct.pack("!BBH", first, 0, 4 + sealed_len)
    return prefix + sk.seal(prefix, inner)


V2_EXCHANGES = [34, 35, 36, 37, 43, 44, 0, 255]


def ikev2_session(data: bytes) -> None:
    """One IKEv2 session in one of :data:`V2_STATES` gets a few fuzzed
    datagrams (raw, header-framed, a mutated transcript message, or an inner
    payload chain sealed with the peer's real keys), then its timers run.
    Nothing may raise, ``internal_errors`` stays 0, and every datagram moves
    a counter."""
    r = Reader(data)
    SWALLOWED.hits.clear()
    state = r.pick(V2_STATES)
    w, side = _v2_state(state, seed=r.u8() % 4, suite=r.u8())
    target = w.i if side == "i" else w.r
    peer = w.r if side == "i" else w.i
    for _ in range(1 + r.u8() % 4):
        _v2_one(r, w, state, target, peer, R_ADDR if side == "i" else I_ADDR)
        if r.remaining() == 0:
            break
    # the session keeps working: timers run, output drains
    for dt in (0.5, 40.0):
        t = target.get_timer()
        check(t is None or t >= 0, "negative timer")
        target.handle_timer(w.now + dt)
        target.datagrams_to_send(w.now + dt)
        while target.next_event() is not None:
            pass
    check(target.stats.internal_errors == 0, f"{state}: internal error in timers after input")
    check_nothing_swallowed(state)


def _v2_one(r: Reader, w: V2World, state: str, target: Any, peer: Any, src: tuple[str, int]) -> None:
    mode = r.u8() % 5
    if r.u8() % 8 == 0:
        src = r.pick([(src[0], 4500), ("203.0.113.77", 500), (src[0], 1234)])
    sa = target.sa
    spi_i, spi_r = sa.spi_i or bytes(8), sa.spi_r
    if mode == 0:
        datagram = r.chunk(2000)
    elif mode == 1:
        flags = r.u8()
        hdr = spi_i + spi_r + bytes([r.u8(), 0x20, r.pick(V2_EXCHANGES), flags]) + r.take(4).ljust(4, b"\0")
        datagram = fix_ike_length(hdr + bytes(4) + r.chunk(2000))
    elif mode == 2 and w.transcript:
        datagram = mutate(r.pick(w.transcript), r)
        if r.u8() & 1:
            datagram = fix_ike_length(datagram)
    else:
        psa = peer.sa
        if psa.sk is None:
            datagram = fix_ike_length(spi_i + spi_r + bytes([46, 0x20, r.pick(V2_EXCHANGES), 0x08]) + bytes(8) + r.chunk(2000))
        else:
            exchange = r.pick(V2_EXCHANGES)
            flags = (0x08 if psa.initiator else 0) | (0x20 if r.u8() & 1 else 0)
            mid_choice = r.u8() % 4
            if mid_choice == 0:
                mid = psa.tm.my_mid
            elif mid_choice == 1:
                mid = max(psa.tm.my_mid - 1, 0)
            else:
                mid = r.u32() % 8
            datagram = seal_v2(psa.sk, psa.spi_i or bytes(8), psa.spi_r, exchange, flags, mid, r.u8(), r.chunk(2000))
    before = _v2_counts(target)
    closed_before = target.is_closed
    target.receive_datagram(datagram, src, w.now)
    check(target.stats.internal_errors == 0, f"{state}: internal error on input")
    check(_v2_counts(target) != before or closed_before, f"{state}: datagram left no trace in the counters")


def _v2_counts(s: Any) -> tuple[int, ...]:
    st = s.stats
    return (st.received, st.dropped_closed, st.sent, st.malformed, st.integrity_failed, st.unknown_spi,
            st.invalid_mid, st.unexpected_response, st.responses_resent, st.errors_answered,
            st.fragments_received)  # fmt: skip


# =========================================================================== IKEv2 codec

_SK_CACHE: dict[str, tuple[Any, Any]] = {}


def sk_pair(name: str) -> tuple[Any, Any]:
    """Fixed (initiator, responder) SK contexts for codec fuzzing."""
    from aioipsec.ike.v2.message import SkContext

    if name not in _SK_CACHE:
        encr_name, _, integ_name = name.partition("/")
        encr = T.encr(encr_name)
        integ = T.integ(integ_name) if integ_name else None
        rnd = seeded(len(name))
        ei, er = rnd(encr.key_len), rnd(encr.key_len)
        ai, ar = (rnd(integ.key_len), rnd(integ.key_len)) if integ else (b"", b"")
        _SK_CACHE[name] = (
            SkContext(encr, integ, ei, er, ai, ar, is_initiator=True, random=seeded(1)),
            SkContext(encr, integ, ei, er, ai, ar, is_initiator=False, random=seeded(2)),
        )
    return _SK_CACHE[name]


SK_SUITES = ["aes128gcm16", "aes256/sha256", "chacha20poly1305", "aes128/aesxcbc"]


def _consume_v2_message(msg: Any) -> None:
    """What tasks do with a decoded message: rules, proposals, IDs, selectors."""
    from aioipsec.errors import InvalidSyntax
    from aioipsec.ike.v2 import payloads as P
    from aioipsec.ike.v2.message import check_rules

    try:
        check_rules(msg)
    except InvalidSyntax:
        pass
    for p in msg.payloads:
        str(p)
        if isinstance(p, P.SaPayload):
            P.sa_to_proposals(p)
        elif isinstance(p, (P.IdiPayload, P.IdrPayload)):
            P.id_to_str(p.id_type, p.data)
    str(msg)


def ikev2_message(data: bytes) -> None:
    """decode_message (plain, with SK contexts, and authenticated inner chains),
    payload chains and rules: only RemoteProtocolError subclasses."""
    from aioipsec.ike.v2.message import decode_message, is_authenticated
    from aioipsec.ike.v2.payloads import MalformedMessage, decode_payloads
    from aioipsec.errors import UnsupportedCriticalPayload

    r = Reader(data)
    mode = r.u8() % 4
    if mode == 0:
        raw = r.rest()
        for ctx in (None, *(sk_pair(s)[1] for s in SK_SUITES[:2])):
            try:
                msg = decode_message(raw, ctx)
            except RemoteProtocolError:
                continue
            _consume_v2_message(msg)
    elif mode == 1:
        first, inner = r.u8(), bool(r.u8() & 1)
        try:
            payloads = decode_payloads(first, r.rest(), inner=inner)
        except RemoteProtocolError:
            return
        from aioipsec.ike.v2.message import Message

        _consume_v2_message(Message(r.u8(), bytes(8), bytes(8), 0, payloads=payloads))
    else:
        # authenticated: valid ICV around a fuzzed inner chain
        i_sk, r_sk = sk_pair(r.pick(SK_SUITES))
        exchange, first = r.pick(V2_EXCHANGES), r.u8()
        raw = seal_v2(i_sk, b"\x11" * 8, b"\x22" * 8, exchange, 0x08, r.u32(), first, r.rest())
        if mode == 3:
            raw = mutate(raw, r)
        try:
            msg = decode_message(raw, r_sk)
        except (MalformedMessage, UnsupportedCriticalPayload) as exc:
            check(is_authenticated(exc) or mode == 3, "inner-chain error not marked authenticated")
            return
        except RemoteProtocolError:
            check(mode == 3, "a correctly sealed message failed outside the inner chain")
            return
        _consume_v2_message(msg)


def ikev2_fragments(data: bytes) -> None:
    """One Reassembler fed a sequence of SKF datagrams (valid fragments of
    fuzzed messages, mutations, forgeries).  Only RemoteProtocolError; memory
    stays within max_messages x max_bytes."""
    from aioipsec.ike.v2.fragment import Reassembler, fragment_message
    from aioipsec.ike.v2.message import Message
    from aioipsec.ike.v2.payloads import UnknownPayload

    r = Reader(data)
    i_sk, r_sk = sk_pair(r.pick(SK_SUITES))
    re = Reassembler(r_sk, max_fragments=16, max_bytes=4096, max_messages=3)
    pool: list[bytes] = []
    for _ in range(64):
        if r.remaining() == 0:
            break
        op = r.u8() % 4
        if op == 0 or not pool:
            body = r.chunk(3000)
            msg = Message(r.pick(V2_EXCHANGES), b"\x11" * 8, b"\x22" * 8, r.u8() % 4, initiator=True,
                          response=bool(r.u8() & 1), payloads=[UnknownPayload(200, False, body)], encrypted=True)  # fmt: skip
            pool = fragment_message(msg, i_sk, 120 + r.u16() % 600)
            fr = pool[r.u8() % len(pool)]
        elif op == 1:
            fr = pool[r.u8() % len(pool)]
        elif op == 2:
            fr = mutate(pool[r.u8() % len(pool)], r)
        else:
            fr = r.chunk(1500)
        try:
            msg = re.add(fr)
        except RemoteProtocolError:
            msg = None
        if msg is not None:
            _consume_v2_message(msg)
        check(re.pending() <= re.max_messages, "reassembler holds more messages than its limit")
        held = sum(p.size for p in re._partial.values())
        check(held <= re.max_messages * re.max_bytes, f"reassembler holds {held} octets")


# =========================================================================== IKEv1


def v1_xauth_configs(suite: int = 0, *, aggressive: bool = False) -> tuple[ConnectionConfig, ConnectionConfig]:
    """An XAUTH road warrior (``local-2 = xauth``, user alice, a Mode Config
    pull of ``0.0.0.0``) and an XAUTH gateway (``remote-2 = xauth``, pool
    ``rw``: give the responder session :func:`xauth_pools`)."""
    from aioipsec.config import AuthConfig

    ike, esp = V1_SUITES[suite % len(V1_SUITES)]
    common: dict[str, Any] = {"version": 1, "psk": PSK, "proposals": [ike], "aggressive": aggressive, "dpd_delay": 30.0}
    i = connection("v1-rw", local_id="rw.example", remote_id="hq.example", vips=["0.0.0.0"],
                   local2=AuthConfig(auth="xauth", xauth_id="alice"), xauth_secrets={"alice": b"alice-pw"},
                   children=[child("net", remote_ts=["203.0.113.0/24"], esp_proposals=[esp])], **common)  # fmt: skip
    r = connection("v1-gw", local_id="hq.example", pools=["rw"], remote2=AuthConfig(auth="xauth"),
                   xauth_secrets={"alice": b"alice-pw", "bob": b"bob-pw"},
                   children=[child("net", local_ts=["203.0.113.0/24"], esp_proposals=[esp])], **common)  # fmt: skip
    return i, r


def xauth_pools() -> Any:
    from aioipsec.config import PoolConfig
    from aioipsec.ike.v2.pools import build_pools

    return build_pools([PoolConfig("rw", "10.3.0.0/28", dns=["10.3.0.53"])])


class V1World:
    def __init__(self, seed: int = 1, suite: int = 0, aggressive: bool = False, *,
                 xauth: bool = False, **kw: Any) -> None:  # fmt: skip
        from aioipsec.ike.v1 import IkeSessionV1

        self.now = 1000.0
        if xauth:
            self.cfg_i, self.cfg_r = v1_xauth_configs(suite, aggressive=aggressive)
        else:
            self.cfg_i, self.cfg_r = v1_configs(suite, aggressive=aggressive, **kw)
        self.i = IkeSessionV1(
            configuration=self.cfg_i, is_initiator=True, local_addr=I_ADDR, remote_addr=R_ADDR, random=seeded(seed)
        )
        self.r = IkeSessionV1.respond(
            configurations=[self.cfg_r], local_addr=R_ADDR, remote_addr=I_ADDR, random=seeded(seed + 1000),
            pools=xauth_pools() if xauth else None,
        )
        self.transcript: list[bytes] = []
        self.pending_i: list[bytes] = []
        self.pending_r: list[bytes] = []

    def collect(self) -> None:
        for d, _ in self.i.datagrams_to_send(self.now):
            self.pending_i.append(d)
            self.transcript.append(d)
        for d, _ in self.r.datagrams_to_send(self.now):
            self.pending_r.append(d)
            self.transcript.append(d)
        while self.i.next_event() is not None:
            pass
        while self.r.next_event() is not None:
            pass

    def step(self, n: int = 1) -> None:
        """Deliver n single flights, alternating i->r and r->i."""
        for _ in range(n):
            self.collect()
            if self.pending_i:
                batch, self.pending_i = self.pending_i, []
                for d in batch:
                    self.r.receive_datagram(d, I_ADDR, self.now)
            elif self.pending_r:
                batch, self.pending_r = self.pending_r, []
                for d in batch:
                    self.i.receive_datagram(d, R_ADDR, self.now)
            self.collect()

    def settle(self, rounds: int = 40) -> None:
        for _ in range(rounds):
            self.collect()
            if not self.pending_i and not self.pending_r:
                return
            self.step()


V1_STATES = [
    "i-mm1-sent",
    "r-fresh",
    "r-mm2-sent",
    "i-mm3-sent",
    "r-mm4-sent",
    "i-mm5-sent",
    "i-am1-sent",
    "r-am2-sent",
    "i-established",
    "r-established",
    "r-qm2-sent",
    "i-deleting",
]


def _v1_state(name: str, seed: int, suite: int) -> tuple[V1World, str]:
    aggressive = "-am" in name
    w = V1World(seed, suite, aggressive=aggressive)
    side = name[0]
    steps = {
        "i-mm1-sent": 0, "r-fresh": 0, "r-mm2-sent": 1, "i-mm3-sent": 2, "r-mm4-sent": 3, "i-mm5-sent": 4,
        "i-am1-sent": 0, "r-am2-sent": 1,
    }  # fmt: skip
    if name in steps:
        w.i.initiate(w.now, child=None)
        w.step(steps[name])
        w.collect()
        return w, side
    w.i.initiate(w.now, child="net")
    w.settle()
    check(w.i.is_established and w.r.is_established, "v1 world did not establish")
    if name == "r-qm2-sent":
        w.i.create_child_sa("net", w.now)
        w.step(1)
    elif name == "i-deleting":
        w.i.delete(w.now)
        w.collect()
    return w, side


def seal_v1(sa: Any, exchange: int, mid: int, first: int, chain: bytes, flags: int = 1) -> bytes:
    """An encrypted ISAKMP message with an arbitrary payload chain, under the
    SA's Phase 1 key and the IV its peer will expect for ``mid``."""
    from aioipsec.ike.v1.payloads import IsakmpHeader

    keys = sa.keys
    bs = keys.encr.block_size
    body = chain + bytes((-len(chain)) % bs)
    if not body:
        body = bytes(bs)
    ct = keys.encr.encrypt(keys.iv.get_iv(mid), body)
    hdr = IsakmpHeader(sa.spi_i, sa.spi_r, first, exchange, flags, mid, 28 + len(ct)).encode()
    return hdr + ct


V1_EXCHANGES = [2, 4, 5, 32, 6, 1, 33, 0]


def ikev1_session(data: bytes) -> None:
    """One IKEv1 session in one of :data:`V1_STATES` gets one fuzzed datagram
    (raw, header-framed, mutated transcript, or a payload chain encrypted
    with the real Phase 1 key and IV), then its timers run.  Nothing may
    raise; the passive-exchange table stays bounded."""
    r = Reader(data)
    SWALLOWED.hits.clear()
    state = r.pick(V1_STATES)
    w, side = _v1_state(state, seed=r.u8() % 4, suite=r.u8())
    target = w.i if side == "i" else w.r
    peer = w.r if side == "i" else w.i
    src = R_ADDR if side == "i" else I_ADDR
    if r.u8() % 8 == 0:
        src = r.pick([(src[0], 4500), ("203.0.113.77", 500)])
    for _ in range(1 + r.u8() % 4):
        _v1_one(r, w, target, peer, src)
        if r.remaining() == 0:
            break
    for dt in (0.5, 40.0):
        target.handle_timer(w.now + dt)
        target.datagrams_to_send(w.now + dt)
        while target.next_event() is not None:
            pass
    _v1_bounds(target)
    check_nothing_swallowed(state)


def _v1_one(r: Reader, w: V1World, target: Any, peer: Any, src: tuple[str, int]) -> None:
    tsa = target.sa
    cookies = (tsa.spi_i + tsa.spi_r) if tsa is not None else bytes(16)
    mode = r.u8() % 5
    if mode == 0:
        datagram = r.chunk(2000)
    elif mode == 1:
        hdr = cookies + bytes([r.u8(), 0x10, r.pick(V1_EXCHANGES), r.u8() & 7]) + r.take(4).ljust(4, b"\0")
        datagram = fix_ike_length(hdr + bytes(4) + r.chunk(2000))
    elif mode == 2 and w.transcript:
        datagram = mutate(r.pick(w.transcript), r)
        if r.u8() & 1:
            datagram = fix_ike_length(datagram)
    else:
        psa = peer.sa
        if psa is None or psa.keys is None:
            datagram = fix_ike_length(cookies + bytes([8, 0x10, 5, 1]) + bytes(8) + r.chunk(2000))
        else:
            exchange = r.pick(V1_EXCHANGES)
            mid = 0 if exchange in (2, 4) else (r.u32() or 1)
            datagram = seal_v1(psa, exchange, mid, r.u8(), r.chunk(2000))
    target.receive_datagram(datagram, src, w.now)


def _v1_bounds(s: Any) -> None:
    from aioipsec.ike.v1.session import MAX_CONNECTING

    check(sum(1 for sa in s.sas if not sa.established) <= MAX_CONNECTING + 1, "too many half-open ISAKMP SAs")
    for sa in s.sas:
        tm = sa.tm
        check(len(tm.passive) <= 64, f"{len(tm.passive)} passive exchanges kept")
        check(len(getattr(tm, "responding", {})) <= 64, "too many cached responses")
    check(len(s._frags) <= 64 and len(s._frag_last) <= 64, "IKEv1 fragment table grows")


def ikev1_message(data: bytes) -> None:
    """ISAKMP decode_message (plain and encrypted) and check_rules for every
    step: only ParseError / Ikev1Error (both RemoteProtocolError)."""
    from aioipsec.ike.v1.message import RULES, check_rules, decode_message
    from aioipsec.ike.v1.payloads import decode_chain

    r = Reader(data)
    mode = r.u8() % 3
    if mode == 0:
        raw = r.rest()
        msgs = []
        try:
            msgs.append(decode_message(raw)[0])
        except RemoteProtocolError:
            pass
        encr = _v1_encr()
        try:
            msgs.append(decode_message(raw, encr, bytes(16))[0])
        except RemoteProtocolError:
            pass
        payloads = [m.payloads for m in msgs]
    else:
        try:
            payloads = [decode_chain(r.u8(), r.rest()).payloads]
        except RemoteProtocolError:
            return
    for pl in payloads:
        for p in pl:
            str(p)
        for step in RULES:
            try:
                check_rules(step, pl)
            except RemoteProtocolError:
                pass


_V1_ENCR: Any = None


def _v1_encr() -> Any:
    global _V1_ENCR
    if _V1_ENCR is None:
        from aioipsec.crypto.cipher import make_encr

        _V1_ENCR = make_encr(T.encr("aes128"), bytes(range(16)))
    return _V1_ENCR


# =========================================================================== ESP / AH

_ESP: dict[str, Any] = {}


def _esp_sas(suite: str) -> tuple[Any, Any]:
    from aioipsec.esp import EspSa

    if suite not in _ESP:
        enc, _, integ = suite.partition("-")
        e = T.encr(enc)
        kw: dict[str, Any] = dict(spi=0xC0FFEE01, encr=e, encr_key=bytes(range(e.key_len)), replay_window=64)
        if integ:
            i = T.integ(integ)
            kw.update(integ=i, integ_key=bytes(range(i.key_len)))
        _ESP[suite] = (EspSa(inbound=False, **kw), EspSa(inbound=True, **kw))
    return _ESP[suite]


ESP_SUITES = ["aes128gcm16", "chacha20poly1305", "aes128-sha256", "aes128-aesxcbc"]


def _ipv4(payload: bytes) -> bytes:
    from aioipsec.esp.ip import ipv4_header

    udp = struct.pack("!HHHH", 1000, 2000, 8 + len(payload), 0) + payload
    return ipv4_header("198.51.100.1", "203.0.113.9", 17, len(udp), ident=7) + udp


def esp_open(data: bytes) -> None:
    """EspSa.open_batch / open_packet and AhSa on fuzzed datagrams and on
    mutations of genuine packets: never raises; each datagram yields exactly
    one result; a mutated genuine packet is never delivered as the original
    unless the mutation was a no-op; counters account for every drop."""
    from aioipsec.esp import natt

    r = Reader(data)
    suite = r.pick(ESP_SUITES)
    out, inn = _esp_sas(suite)
    genuine = out.seal_batch([_ipv4(r.chunk(200))])
    batch: list[bytes] = []
    originals: list[bytes | None] = []
    for _ in range(1 + r.u8() % 6):
        op = r.u8() % 3
        if op == 0:
            batch.append(r.chunk(300))
            originals.append(None)
        else:
            g = genuine[0] if op == 1 else out.seal_batch([_ipv4(r.chunk(64))])[0]
            m = mutate(g, r)
            batch.append(m)
            originals.append(g)
    before = sum(inn.stats.drops.values()) + inn.stats.packets_in
    results = inn.open_batch(batch, now=1.0)
    check(len(results) == len(batch), "open_batch lost results")
    after = sum(inn.stats.drops.values()) + inn.stats.packets_in
    check(after - before == len(batch), f"{len(batch)} datagrams, counters moved {after - before}")
    for data_in, orig, res in zip(batch, originals, results):
        if orig is not None and data_in != orig and res.ok:
            # only an ICV-preserving change could be accepted: none exists for a flipped byte
            raise ContractViolation("a mutated ESP packet was accepted")
    # whole packets, AH, NAT-T helpers
    blob = r.chunk(400)
    inn.open_packet(blob, now=1.0)
    natt.classify(blob)
    natt.strip_non_esp_marker(blob)
    try:
        natt.transport_packet(blob, 17, "198.51.100.1", "203.0.113.9")
    except (ValueError, RemoteProtocolError):
        pass
    ah = _ah_sa()
    ah.open_packet(blob, now=1.0)
    ah.open_batch([blob, r.chunk(200)], now=1.0)


_AH: Any = None


def _ah_sa() -> Any:
    global _AH
    if _AH is None:
        from aioipsec.esp import AhSa

        i = T.integ("sha256")
        _AH = AhSa(spi=0xA11, integ=i, integ_key=bytes(i.key_len), inbound=True)
    return _AH


# =========================================================================== endpoint

_ENDPOINT: dict[str, Any] = {}


def _endpoint() -> Any:
    """One endpoint on an in-memory network, reused (its state must stay bounded)."""
    if "ep" not in _ENDPOINT:
        from aioipsec.asyncio.endpoint import Endpoint
        from aioipsec.asyncio.sockets import MemoryNetwork

        loop = asyncio.new_event_loop()
        net = MemoryNetwork(loop=loop)
        i2, r2 = v2_configs(0)
        i1, r1 = v1_configs(0)
        gc = GlobalConfig(cookie_threshold=4, half_open_max=16, init_limit_per_peer=1000)
        ike = net.bind((R_ADDR[0], 500))
        natt_sock = net.bind((R_ADDR[0], 4500))
        esp = net.bind((R_ADDR[0], 0))
        ep = Endpoint(configurations=[r2, r1], ike_socket=ike, natt_socket=natt_sock, esp_socket=esp, loop=loop,
                      random=seeded(7), global_config=gc)  # fmt: skip
        w = V2World(3)
        w.i.initiate(w.now)
        w.collect()
        v1 = V1World(3)
        v1.i.initiate(v1.now)
        v1.collect()
        _ENDPOINT.update(ep=ep, loop=loop, net=net, seeds=[w.pending_i[0], v1.pending_i[0]], n=0)
    return _ENDPOINT


def endpoint_demux(data: bytes) -> None:
    """Endpoint._on_ike_port / _on_natt_port with fuzzed batches (garbage,
    mutated IKE_SA_INITs/MM1s from many sources, non-ESP-marked IKE, ESP,
    keepalives): nothing raises; every datagram moves a counter; sessions,
    per-peer rate entries and routing tables stay bounded."""
    env = _endpoint()
    ep, loop = env["ep"], env["loop"]
    r = Reader(data)
    batch_ike: list[tuple[bytes, tuple[str, int]]] = []
    batch_natt: list[tuple[bytes, tuple[str, int]]] = []
    for _ in range(1 + r.u8() % 8):
        src = (f"203.0.113.{r.u8()}", 500 + r.u8() % 3)
        kind = r.u8() % 6
        if kind == 0:
            d = r.chunk(600)
        elif kind in (1, 2):
            d = mutate(env["seeds"][kind - 1], r)
            if r.u8() & 1:
                d = fix_ike_length(d)
        elif kind == 3:
            d = env["seeds"][r.u8() & 1]
            d = r.take(8).ljust(8, b"\1") + d[8:]  # a fresh IKE_SA_INIT / MM1 (new SPI)
        elif kind == 4:
            d = b"\xff"
        else:
            d = r.take(4).ljust(4, b"\1") + r.chunk(200)  # ESP-looking
        if r.u8() & 1:
            batch_ike.append((d, src))
        else:
            if kind in (1, 2, 3) and r.u8() & 1:
                d = b"\0\0\0\0" + d
            batch_natt.append((d, src))
    st = ep.stats
    before = (st.ike_in + st.malformed + st.keepalives_in + st.esp_in)
    ep._on_ike_port(batch_ike)
    ep._on_natt_port(batch_natt)
    after = (st.ike_in + st.malformed + st.keepalives_in + st.esp_in)
    check(after - before >= len(batch_ike) + len(batch_natt), "a datagram moved no endpoint counter")
    for p in list(ep.sessions):
        check(p.session.stats.internal_errors == 0 if hasattr(p.session.stats, "internal_errors") else True,
              "session internal error")  # fmt: skip
    gc = ep.global_config
    check(ep.half_open() <= gc.half_open_max, f"{ep.half_open()} half-open sessions (max {gc.half_open_max})")
    check(len(ep._rate) <= 4096 + 1, f"per-peer rate table has {len(ep._rate)} entries")
    check(len(ep._by_init) <= len(ep.sessions) + 1, "routing table outlives its sessions")
    check_nothing_swallowed("endpoint")
    env["n"] += 1
    if env["n"] % 200 == 0:  # let half-open sessions time out, keep the loop state small
        for p in list(ep.sessions):
            p.session.handle_timer(loop.time() + 3600)
            p.process()
        loop.run_until_complete(asyncio.sleep(0))


# =========================================================================== config loader

_CONN_KEYS = ["version", "local_addrs", "remote_addrs", "local_port", "remote_port", "proposals", "aggressive",
              "encap", "fragmentation", "dpd_delay", "rekey_time", "over_time", "local", "remote", "children",
              "legacy", "mobike", "unknown"]  # fmt: skip
_CHILD_KEYS = ["local_ts", "remote_ts", "esp_proposals", "ah_proposals", "mode", "start_action", "rekey_time",
               "life_time", "replay_window", "dpd_action", "rekey_bytes", "life_packets", "bogus"]  # fmt: skip
_AUTH_KEYS = ["auth", "id", "certs", "cacerts", "key", "rsa_pss", "what"]
_STRINGS = ["aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048", "3des-md5-modp1024", "aes128-sha1",
            "192.0.2.1", "%any", "198.51.100.0/24", "2001:db8::/32", "10.0.0.1-10.0.0.9", "0.0.0.0/0[udp/500]",
            "psk", "pubkey", "tunnel", "transport", "trap", "start", "30s", "4h", "1d", "-5s", "9999999999h",
            "site-a.example", "", "\x00", "aes999", "x25519-aes", "C=CH, O=x, CN=y", "/nonexistent/file.pem"]  # fmt: skip


def _value(r: Reader, depth: int) -> Any:
    k = r.u8() % 9
    if k == 0:
        return r.pick(_STRINGS)
    if k == 1:
        return r.u32() - (1 << 31) if r.u8() & 1 else r.u8()
    if k == 2:
        return bool(r.u8() & 1)
    if k == 3:
        return [r.pick(_STRINGS) for _ in range(r.u8() % 4)]
    if k == 4:
        return float(r.u16()) / 7.0
    if k == 5 and depth < 3:
        return {r.pick(_AUTH_KEYS + _CHILD_KEYS): _value(r, depth + 1) for _ in range(r.u8() % 4)}
    if k == 6:
        return r.take(r.u8() % 16).decode("latin-1")
    if k == 7:
        return [_value(r, depth + 1) for _ in range(r.u8() % 3)] if depth < 3 else []
    return r.u16()


def _config_doc(r: Reader) -> dict[str, Any]:
    conns: dict[str, Any] = {}
    for n in range(r.u8() % 3):
        c: dict[str, Any] = {}
        for _ in range(r.u8() % 12):
            key = r.pick(_CONN_KEYS)
            if key in ("local", "remote"):
                c[key] = {r.pick(_AUTH_KEYS): _value(r, 1) for _ in range(r.u8() % 4)}
            elif key == "children":
                c[key] = {f"c{j}": {r.pick(_CHILD_KEYS): _value(r, 2) for _ in range(r.u8() % 6)} for j in range(r.u8() % 3)}
            else:
                c[key] = _value(r, 1)
        conns[f"conn{n}"] = c
    doc: dict[str, Any] = {"connections": conns}
    if r.u8() & 1:
        doc["secrets"] = {"s": {"id": [r.pick(_STRINGS)], "secret": r.pick(_STRINGS)}}
    if r.u8() % 4 == 0:
        doc["global"] = {r.pick(["cookie_threshold", "half_open_max", "nope"]): _value(r, 1)}
    if r.u8() % 4 == 0:
        doc["tun"] = {r.pick(["name", "mtu", "x"]): _value(r, 1)}
    return doc


def config_loader(data: bytes) -> None:
    """parse_config on structured documents built from the real key names with
    fuzzed values, and on arbitrary TOML text: only ConfigError (a ValueError
    naming the key) may come out."""
    from aioipsec.config_file import parse_config

    r = Reader(data)
    if r.u8() & 1:
        try:
            doc = tomllib.loads(r.rest().decode("utf-8", "replace"))
        except tomllib.TOMLDecodeError:
            return
    else:
        doc = _config_doc(r)
    try:
        parse_config(doc, file="fuzz.toml")
    except ConfigError as exc:
        check(bool(str(exc)), "ConfigError without a message")


# =========================================================================== registry

TARGETS: dict[str, Callable[[bytes], None]] = {
    "ikev2_message": ikev2_message,
    "ikev2_fragments": ikev2_fragments,
    "ikev2_session": ikev2_session,
    "ikev1_message": ikev1_message,
    "ikev1_session": ikev1_session,
    "esp_open": esp_open,
    "endpoint_demux": endpoint_demux,
    "config_loader": config_loader,
}


def seeds(name: str) -> list[bytes]:
    """A few starting inputs per target (the atheris corpus is seeded with them)."""
    out = [b"", bytes(64), b"\xff" * 64]
    rng = _random.Random(name)
    for _ in range(8):
        out.append(rng.randbytes(rng.randrange(8, 400)))
    if name == "ikev2_session":
        out += [bytes([s, 0, 0, m]) + rng.randbytes(120) for s in range(len(V2_STATES)) for m in range(5)]
    elif name == "ikev1_session":
        out += [bytes([s, 0, 0, 1, m]) + rng.randbytes(120) for s in range(len(V1_STATES)) for m in range(5)]
    elif name == "ikev2_message":
        w = V2World(1).establish()
        out += [b"\0" + d for d in w.transcript]
    elif name == "ikev1_message":
        w1 = V1World(1)
        w1.i.initiate(w1.now, child="net")
        w1.settle()
        out += [b"\0" + d for d in w1.transcript]
    elif name == "config_loader":
        out.append(
            b"\x01"
            + b"""[connections.hq]
version = 2
remote_addrs = ["192.0.2.2"]
proposals = ["aes128gcm16-prfsha256-x25519"]
local = { auth = "psk", id = "a.example" }
remote = { auth = "psk", id = "b.example" }
[connections.hq.children.lan]
local_ts = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
[secrets.hq]
id = ["a.example"]
secret = "x"
"""
        )
    return out


def main(name: str, argv: list[str] | None = None) -> None:
    """Run target ``name`` under atheris (libFuzzer flags in ``argv``)."""
    import os
    import sys
    import tempfile

    import atheris  # noqa: F401 - only needed for long runs

    argv = list(sys.argv if argv is None else argv)
    target = TARGETS[name]
    # quiet: sessions log every exchange step; SWALLOWED still sees WARNING+
    logging.getLogger("aioipsec").setLevel(logging.WARNING)
    logging.getLogger("aioipsec").propagate = False
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if not corpus:  # seed a scratch corpus so the run starts from real messages
        d = tempfile.mkdtemp(prefix=f"aioipsec-fuzz-{name}-")
        for n, s in enumerate(seeds(name)):
            with open(os.path.join(d, f"seed{n}"), "wb") as f:
                f.write(s)
        argv.append(d)
    for s in seeds(name):  # import everything the target touches, then instrument it all
        try:
            target(s)
        except Exception:
            pass
    atheris.instrument_all()
    atheris.Setup(argv, target)
    atheris.Fuzz()
