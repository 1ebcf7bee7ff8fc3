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
from collections.abc import Callable
from dataclasses import dataclass

from ..selectors import Address

COOKIE = 16390
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
        return hashlib.sha256(nonce + ipaddress.ip_address(ip).packed + spi_i + secret).digest()

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


@dataclass(frozen=True, slots=True)
class ParsedInit:
    """What the cookie check needs from an IKE_SA_INIT request."""

    spi_i: bytes
    nonce: bytes
    cookie: bytes | None
    """Data of N(COOKIE) if it is the first payload."""
    message_id: int


def parse_init_for_cookie(data: bytes) -> ParsedInit | None:
    """Decode an IKE_SA_INIT request far enough for the cookie check; None if
    it is not a well-formed one.  Never raises."""
    from ..errors import IpsecError
    from .constants import ExchangeType, NotifyType
    from .v2.message import decode_message
    from .v2.payloads import NoncePayload, NotifyPayload

    try:
        msg = decode_message(data)
    except (IpsecError, ValueError):
        return None
    if msg.exchange_type != ExchangeType.IKE_SA_INIT or msg.response or msg.spi_r != bytes(8) or not msg.initiator:
        return None
    nonce = msg.get(NoncePayload)
    if nonce is None:
        return None
    first = msg.payloads[0] if msg.payloads else None
    cookie = None
    if isinstance(first, NotifyPayload) and first.notify_type == NotifyType.COOKIE:
        cookie = first.data
    return ParsedInit(msg.spi_i, nonce.data, cookie, msg.message_id)


def build_cookie_reply(parsed: ParsedInit, cookie: bytes) -> bytes:
    """IKE_SA_INIT response carrying only N(COOKIE), responder SPI zero."""
    from .constants import ExchangeType, NotifyType
    from .v2.message import Message, encode_message
    from .v2.payloads import NotifyPayload

    msg = Message(
        ExchangeType.IKE_SA_INIT,
        parsed.spi_i,
        bytes(8),
        parsed.message_id,
        initiator=False,
        response=True,
        payloads=[NotifyPayload(NotifyType.COOKIE, cookie)],
    )
    return encode_message(msg)


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
