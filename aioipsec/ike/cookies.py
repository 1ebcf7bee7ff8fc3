"""Stateless COOKIE (RFC 7296 §2.6) against IKE_SA_INIT floods.

When too many IKE SAs are half open, the responder answers an IKE_SA_INIT
without a valid cookie with nothing but ``N(COOKIE)`` and keeps no state::

    Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)

Here the version is a 4-byte generation counter and the hash SHA-256, so a
cookie is 36 bytes (the RFC allows 1..64).  The secret is rotated on a
schedule; cookies made with the previous secret are still accepted, so a
rotation never breaks a handshake in progress.

:func:`decide_ike_sa_init` is the helper the endpoint calls for every
IKE_SA_INIT request before it creates a session.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..selectors import Address
from .constants import ExchangeType, HeaderFlag, NotifyType, PayloadType

COOKIE = int(NotifyType.COOKIE)
COOKIE_ROTATE_INTERVAL = 120.0
_VERSION_LEN = 4
COOKIE_LEN = _VERSION_LEN + 32


class CookieJar:
    """The current and previous cookie secret, rotated every ``interval`` s.

    Sans-I/O: randomness and time are injected; call :meth:`maybe_rotate`
    (or pass ``now`` to :meth:`make` / :meth:`verify`) to rotate."""

    def __init__(
        self, *, random: Callable[[int], bytes], interval: float = COOKIE_ROTATE_INTERVAL, now: float = 0.0
    ) -> None:
        self._random = random
        self.interval = interval
        self._version = 0
        self._secret = random(32)
        self._previous: tuple[int, bytes] | None = None
        self._rotated_at = now

    @property
    def version(self) -> int:
        return self._version

    def rotate(self, now: float) -> None:
        """Start a new secret; the old one stays valid for one more interval."""
        self._previous = (self._version, self._secret)
        self._version = (self._version + 1) & 0xFFFFFFFF
        self._secret = self._random(32)
        self._rotated_at = now

    def maybe_rotate(self, now: float) -> None:
        elapsed = now - self._rotated_at
        if elapsed >= self.interval:
            self.rotate(now)
            if elapsed >= 2 * self.interval:
                # rotation is lazy (on use): after a quiet spell the secret we
                # just retired is older than its one-interval grace, so it goes too
                self._previous = None

    @staticmethod
    def _hash(secret: bytes, nonce: bytes, ip: str, spi_i: bytes) -> bytes:
        return hashlib.sha256(nonce + _packed(ip) + spi_i + secret).digest()

    def make(self, nonce: bytes, addr: Address, spi_i: bytes, now: float | None = None) -> bytes:
        """The cookie for an initiator (nonce Ni, source address, SPIi)."""
        if now is not None:
            self.maybe_rotate(now)
        return self._version.to_bytes(_VERSION_LEN, "big") + self._hash(self._secret, nonce, addr[0], spi_i)

    def verify(self, cookie: bytes, nonce: bytes, addr: Address, spi_i: bytes, now: float | None = None) -> bool:
        """Was ``cookie`` made by us (current or previous secret) for this initiator?"""
        if now is not None:
            self.maybe_rotate(now)
        if len(cookie) != COOKIE_LEN:
            return False
        version = int.from_bytes(cookie[:_VERSION_LEN], "big")
        if version == self._version:
            secret = self._secret
        elif self._previous is not None and version == self._previous[0]:
            secret = self._previous[1]
        else:
            return False
        return hmac.compare_digest(cookie[_VERSION_LEN:], self._hash(secret, nonce, addr[0], spi_i))


def _packed(ip: str) -> bytes:
    """The address octets (IPv4 without ``ipaddress``, which costs more than
    the rest of a cookie; it runs for every IKE_SA_INIT of a flood)."""
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        try:
            return bytes([int(p) for p in parts])
        except ValueError:
            pass
    return ipaddress.ip_address(ip).packed


@dataclass(frozen=True, slots=True)
class ParsedInit:
    """What the cookie check needs from an IKE_SA_INIT request."""

    spi_i: bytes
    nonce: bytes
    cookie: bytes | None
    """Data of N(COOKIE) if it is the first payload."""
    message_id: int


# plain ints: the walk below compares them per payload of every IKE_SA_INIT of a flood
_IKE_SA_INIT = int(ExchangeType.IKE_SA_INIT)
_PT_NONCE, _PT_NOTIFY = int(PayloadType.NONCE), int(PayloadType.NOTIFY)
_PT_SK, _PT_SKF = int(PayloadType.SK), int(PayloadType.SKF)
_FLAG_I, _FLAG_R = int(HeaderFlag.INITIATOR), int(HeaderFlag.RESPONSE)
_MAX_PAYLOADS = 64


def parse_init_for_cookie(data: bytes) -> ParsedInit | None:
    """Walk an IKE_SA_INIT request far enough for the cookie check (header,
    generic payload headers, the Nonce, a leading N(COOKIE)); None if it is
    not a well-framed one.  Never raises.

    This runs for every IKE_SA_INIT under a flood, before any state exists,
    so it does not decode the SA/KE payloads (that costs ~5x more); the
    session that is created afterwards decodes and checks everything."""
    n = len(data)
    if n < 28 or n > 65535:
        return None
    spi_i, spi_r = data[0:8], data[8:16]
    nxt, version, exchange, flags = data[16], data[17], data[18], data[19]
    mid, length = struct.unpack_from("!LL", data, 20)
    if (
        version >> 4 != 2
        or exchange != _IKE_SA_INIT
        or flags & _FLAG_R
        or not flags & _FLAG_I
        or spi_r != bytes(8)
        or length != n
    ):
        return None
    pos, nonce, cookie, count = 28, None, None, 0
    while nxt:
        if pos + 4 > n or count >= _MAX_PAYLOADS or nxt in (_PT_SK, _PT_SKF):
            return None
        this, nxt = nxt, data[pos]
        plen = (data[pos + 2] << 8) | data[pos + 3]
        if plen < 4 or pos + plen > n:
            return None
        if this == _PT_NONCE:
            if nonce is None:
                if not 16 <= plen - 4 <= 256:
                    return None
                nonce = data[pos + 4 : pos + plen]
        elif this == _PT_NOTIFY and count == 0 and plen >= 8:
            spi_size = data[pos + 5]
            if (data[pos + 6] << 8) | data[pos + 7] == COOKIE:
                if 8 + spi_size > plen:
                    return None
                cookie = data[pos + 8 + spi_size : pos + plen]
        pos += plen
        count += 1
    if pos != n or nonce is None:
        return None
    return ParsedInit(spi_i, nonce, cookie, mid)


def build_cookie_reply(parsed: ParsedInit, cookie: bytes) -> bytes:
    """IKE_SA_INIT response carrying only N(COOKIE), responder SPI zero
    (byte for byte what ``encode_message`` makes of it, built directly)."""
    notify = struct.pack("!BBHBBH", 0, 0, 8 + len(cookie), 0, 0, COOKIE) + cookie
    header = parsed.spi_i + bytes(8) + struct.pack(
        "!BBBBLL", _PT_NOTIFY, 0x20, _IKE_SA_INIT, _FLAG_R, parsed.message_id, 28 + len(notify)
    )
    return header + notify


class InitDecision(enum.Enum):
    CREATE = "create"
    """Create a responder session for this request."""
    COOKIE = "cookie"
    """Answer with ``reply`` (an IKE_SA_INIT response carrying only N(COOKIE))."""
    DROP = "drop"
    """Drop silently (malformed, not an IKE_SA_INIT request, wrong cookie, hard limit)."""


@dataclass(frozen=True, slots=True)
class CookieVerdict:
    decision: InitDecision
    reply: bytes = b""
    reason: str = ""


def decide_ike_sa_init(
    data: bytes,
    addr: Address,
    half_open: int,
    secrets: CookieJar,
    *,
    threshold: int,
    half_open_max: int | None = None,
    now: float | None = None,
) -> CookieVerdict:
    """Decide what to do with a raw IKE_SA_INIT request from ``addr``.

    Below ``threshold`` half-open SAs every request creates a session.  At or
    above it, a request must carry a valid ``N(COOKIE)`` as its first payload;
    one without gets a stateless COOKIE reply, one with a wrong cookie is
    dropped.  Above ``half_open_max`` everything is dropped.  Never raises on
    malformed input."""
    parsed = parse_init_for_cookie(data)
    if parsed is None:
        return CookieVerdict(InitDecision.DROP, reason="not a well-formed IKE_SA_INIT request")
    if half_open_max is not None and half_open >= half_open_max:
        return CookieVerdict(InitDecision.DROP, reason="too many half-open IKE SAs")
    if half_open < threshold:
        return CookieVerdict(InitDecision.CREATE)
    if parsed.cookie is None:
        cookie = secrets.make(parsed.nonce, addr, parsed.spi_i, now)
        return CookieVerdict(InitDecision.COOKIE, build_cookie_reply(parsed, cookie), "cookie required")
    if secrets.verify(parsed.cookie, parsed.nonce, addr, parsed.spi_i, now):
        return CookieVerdict(InitDecision.CREATE)
    return CookieVerdict(InitDecision.DROP, reason="invalid cookie")


CookieSecrets = CookieJar
