"""IKEv2 messages (RFC 7296 §3.1, §3.14; RFC 5282): header, payload chain,
SK payload encryption, and per-exchange payload rules (model: strongSwan
``encoding/message.c``).

Header::

                         1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       IKE SA Initiator's SPI                  |
    |                       IKE SA Responder's SPI                  |
    |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
    |                          Message ID                           |
    |                            Length                             |

Errors raised by :func:`decode_message` (never anything else):

* :class:`~aioipsec.errors.ParseError` (:class:`MalformedHeader`,
  :class:`~aioipsec.buffer.BufferReadError`) - the framing is broken before
  anything could be authenticated: drop silently.
* :class:`~aioipsec.errors.InvalidMajorVersion` - major version is not 2.
* :class:`~aioipsec.errors.IntegrityError` - the SK payload's ICV/tag does not
  verify: drop and count, silently on the wire.
* :class:`~aioipsec.ike.v2.payloads.MalformedMessage` (both ``ParseError``
  and ``InvalidSyntax``) - a payload is malformed; :func:`is_authenticated`
  is True when it was inside a verified SK payload (answer INVALID_SYNTAX).
* :class:`~aioipsec.errors.UnsupportedCriticalPayload` - unknown payload
  with the critical bit (``exc.data`` = the payload type octet);
  :func:`is_authenticated` tells whether it was inside a verified SK payload.

:func:`check_rules` (InvalidSyntax) is separate: the session runs it on every
decoded message before any task sees it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from ..._cache import BoundedCache
from ..._frozen import fast_init
from ...crypto.cipher import make_encr, make_integ
from ...crypto.transforms import EncrAlg, EncrId, IntegAlg
from ...errors import (
    IntegrityError,
    InvalidMajorVersion,
    InvalidSyntax,
    LocalProtocolError,
    NotifyError,
    ParseError,
)
from ..constants import (
    IKE_HEADER_LEN,
    IKEV2_MAJOR_VERSION,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
)
from .payloads import (
    PAYLOAD_CLASSES,
    AnyPayload,
    MalformedMessage,
    NotifyPayload,
    SkfPayload,
    SkPayload,
    UnknownPayload,
    decode_payloads,
    encode_payloads,
    payload_type_of,
)

__all__ = [
    "Header",
    "MalformedHeader",
    "Message",
    "SkContext",
    "PayloadRule",
    "MessageRule",
    "MESSAGE_RULES",
    "peek_header",
    "encode_message",
    "decode_message",
    "check_rules",
    "is_authenticated",
]

_HEADER = struct.Struct("!8s8sBBBBLL")
_CBC_IDS = frozenset({EncrId.AES_CBC, EncrId.TRIPLE_DES, EncrId.DES})
_T = TypeVar("_T")
_FLAG_I = int(HeaderFlag.INITIATOR)  # plain ints: IntFlag & and | go through Enum.__call__
_FLAG_R = int(HeaderFlag.RESPONSE)


class MalformedHeader(ParseError):
    """The IKE header or the message framing is invalid (not authenticated)."""


# =========================================================================== header


class Header(NamedTuple):
    """The fixed 28-octet header.  The layout is the same in IKEv1, so the
    endpoint demultiplexes versions with :func:`peek_header`.  A named tuple:
    two are built per message received and one per message sent."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    major_version: int
    minor_version: int
    exchange_type: int
    flags: int
    message_id: int
    length: int

    @property
    def initiator(self) -> bool:
        """I flag: sent by the original initiator of the IKE SA."""
        return bool(self.flags & _FLAG_I)

    @property
    def response(self) -> bool:
        return bool(self.flags & _FLAG_R)

    @property
    def is_request(self) -> bool:
        return not self.response

    def encode(self) -> bytes:
        return _HEADER.pack(
            self.spi_i,
            self.spi_r,
            self.next_payload,
            (self.major_version << 4) | (self.minor_version & 0x0F),
            self.exchange_type,
            self.flags,
            self.message_id,
            self.length,
        )


def peek_header(data: bytes) -> Header:
    """Decode only the fixed header (cheap; for demultiplexing).  Raises
    :class:`MalformedHeader` when fewer than 28 octets are given; checks
    neither the version nor the length field."""
    if len(data) < IKE_HEADER_LEN:
        raise MalformedHeader(f"{len(data)} octets, an IKE header needs {IKE_HEADER_LEN}")
    spi_i, spi_r, nxt, ver, exch, flags, mid, length = _HEADER.unpack_from(data)
    return Header(spi_i, spi_r, nxt, ver >> 4, ver & 0x0F, exch, flags, mid, length)


# =========================================================================== message


@dataclass(slots=True)
class Message:
    """One IKEv2 message: header fields and the (inner, decrypted) payloads.

    ``encrypted`` says whether the payloads travel inside an SK payload.
    A message decoded without an SK context keeps a raw :class:`SkPayload`
    (or :class:`SkfPayload`) as its only payload and ``encrypted=False``."""

    exchange_type: int
    spi_i: bytes
    spi_r: bytes
    message_id: int
    initiator: bool = False
    """I flag: sender is the original initiator of the IKE SA."""
    response: bool = False
    """R flag."""
    payloads: list[AnyPayload] = field(default_factory=list)
    encrypted: bool = False
    minor_version: int = 0

    @property
    def is_request(self) -> bool:
        return not self.response

    @property
    def flags(self) -> int:
        return (_FLAG_I if self.initiator else 0) | (_FLAG_R if self.response else 0)

    def header(self, next_payload: int, length: int) -> Header:
        return Header(
            self.spi_i,
            self.spi_r,
            next_payload,
            IKEV2_MAJOR_VERSION,
            self.minor_version,
            self.exchange_type,
            self.flags,
            self.message_id,
            length,
        )

    # --- lookups used by tasks

    def get(self, cls: type[_T]) -> _T | None:
        """The first payload of class ``cls``, or None."""
        for p in self.payloads:
            if type(p) is cls:
                return p  # type: ignore[return-value]
        return None

    def get_all(self, cls: type[_T]) -> list[_T]:
        return [p for p in self.payloads if type(p) is cls]  # type: ignore[misc]

    # type(p) is NotifyPayload, not isinstance: the class has no subclasses,
    # and these scans run ~30 times per handshake (bench/ike.py)

    @property
    def notifies(self) -> list[NotifyPayload]:
        return [p for p in self.payloads if type(p) is NotifyPayload]  # type: ignore[misc]

    def get_notify(self, notify_type: int) -> NotifyPayload | None:
        """The first notify of ``notify_type``, or None."""
        for p in self.payloads:
            if type(p) is NotifyPayload and p.notify_type == notify_type:  # type: ignore[union-attr]
                return p  # type: ignore[return-value]
        return None

    def has_notify(self, notify_type: int) -> bool:
        for p in self.payloads:  # get_notify's loop: ~10 calls per handshake
            if type(p) is NotifyPayload and p.notify_type == notify_type:  # type: ignore[union-attr]
                return True
        return False

    def error_notify(self) -> NotifyPayload | None:
        """The first error notify (type < 16384), or None."""
        for p in self.notifies:
            if p.is_error:
                return p
        return None

    def add(self, *payloads: AnyPayload) -> None:
        self.payloads.extend(payloads)

    def payload_names(self) -> str:
        """``IDi AUTH SA TSi TSr N(INIT_CONTACT)``: the payload list of :meth:`__str__`."""
        return payload_names(self.payloads)

    def __str__(self) -> str:
        """``IKE_AUTH request 1 [ IDi AUTH SA TSi TSr N(INIT_CONTACT) ]`` (strongSwan log style)."""
        exch = _EXCHANGE_NAMES.get(self.exchange_type, self.exchange_type)
        kind = "response" if self.response else "request"
        return f"{exch} {kind} {self.message_id} [ {self.payload_names()} ]"


def payload_names(payloads: Iterable[Any]) -> str:
    """``IDi AUTH SA TSi TSr N(INIT_CONTACT)`` for a list of payloads."""
    names = []
    by_class = _NAMES_BY_CLASS
    for p in payloads:
        tp = type(p)
        name = by_class.get(tp)
        if name is not None:
            names.append(name)
        elif tp is NotifyPayload:
            nt = p.notify_type  # type: ignore[union-attr]
            names.append(_NOTIFY_LABELS.get(nt) or f"N({nt})")
        else:
            t = payload_type_of(p)
            names.append(_PAYLOAD_NAMES.get(t) or f"UNKNOWN({t})")
    return " ".join(names)


# names by value, looked up per message (enum_or_int + .name per payload cost
# several times more: the summary is built for every message sent and received)
_EXCHANGE_NAMES: dict[int, str] = {int(e): e.name for e in ExchangeType}
_PAYLOAD_NAMES: dict[int, str] = {int(e): e.name for e in PayloadType}
_NOTIFY_LABELS: dict[int, str] = {int(e): f"N({e.name})" for e in NotifyType}
_NAMES_BY_CLASS: dict[type, str] = {
    cls: _PAYLOAD_NAMES[cls.payload_type]
    for cls in PAYLOAD_CLASSES.values()
    if cls is not NotifyPayload and cls.payload_type in _PAYLOAD_NAMES
}
"""Payload class -> summary name, for every class whose name does not depend on its fields."""


# =========================================================================== SK context


class SkContext:
    """Encryption and integrity of one IKE SA, both directions (RFC 7296
    §3.14; AEAD per RFC 5282 with AAD = IKE header through the SK header).

    Outbound uses SK_ei/SK_ai when ``is_initiator`` (original initiator of
    this IKE SA), else SK_er/SK_ar; inbound the other pair.  IVs come from
    the injected ``random``."""

    __slots__ = (
        "encr_alg",
        "integ_alg",
        "is_initiator",
        "_random",
        "_enc_out",
        "_enc_in",
        "_int_out",
        "_int_in",
        "iv_len",
        "icv_len",
        "block_size",
        "aead",
    )

    def __init__(
        self,
        encr: EncrAlg,
        integ: IntegAlg | None,
        sk_ei: bytes,
        sk_er: bytes,
        sk_ai: bytes = b"",
        sk_ar: bytes = b"",
        *,
        is_initiator: bool,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if encr.aead and integ is not None:
            raise LocalProtocolError("an AEAD cipher takes no integrity algorithm")
        if not encr.aead and integ is None:
            raise LocalProtocolError(f"{encr.name} needs an integrity algorithm")
        self.encr_alg = encr
        self.integ_alg = integ
        self.is_initiator = is_initiator
        self._random = random
        ei, er = make_encr(encr, sk_ei), make_encr(encr, sk_er)
        self._enc_out, self._enc_in = (ei, er) if is_initiator else (er, ei)
        self._int_out: Any = None
        self._int_in: Any = None
        if integ is not None:
            ai, ar = make_integ(integ, sk_ai), make_integ(integ, sk_ar)
            self._int_out, self._int_in = (ai, ar) if is_initiator else (ar, ai)
        self.aead = encr.aead
        self.iv_len = encr.iv_len
        self.icv_len = encr.icv_len if encr.aead else integ.icv_len  # type: ignore[union-attr]
        # CBC pads to the cipher block; AEAD and counter modes need no
        # alignment in IKE (RFC 5282 §3, RFC 7634 App. B: block size 1)
        self.block_size = encr.block_size if encr.id in _CBC_IDS else 1

    @classmethod
    def from_keys(
        cls,
        encr: EncrAlg,
        integ: IntegAlg | None,
        keys: Any,
        *,
        is_initiator: bool,
        random: Callable[[int], bytes] = os.urandom,
    ) -> SkContext:
        """From an :class:`~aioipsec.crypto.kdf.IkeV2Keys`."""
        return cls(
            encr,
            integ,
            keys.sk_ei,
            keys.sk_er,
            keys.sk_ai,
            keys.sk_ar,
            is_initiator=is_initiator,
            random=random,
        )

    def __repr__(self) -> str:  # never show key material
        integ = self.integ_alg.name if self.integ_alg else "-"
        return f"<SkContext {self.encr_alg.name}/{integ} {'initiator' if self.is_initiator else 'responder'}>"

    # --- sizes

    def sealed_len(self, plain_len: int) -> int:
        """Length of IV || ciphertext || ICV for ``plain_len`` octets of payloads."""
        bs = self.block_size
        padded = (plain_len + 1 + bs - 1) // bs * bs
        return self.iv_len + padded + self.icv_len

    def max_plaintext(self, sealed_budget: int) -> int:
        """The most payload octets that fit ``sealed_budget`` octets of
        IV || ciphertext || ICV (may be negative when nothing fits)."""
        bs = self.block_size
        return (sealed_budget - self.iv_len - self.icv_len) // bs * bs - 1

    # --- crypto

    def seal(self, prefix: bytes, plaintext: bytes) -> bytes:
        """Pad and encrypt ``plaintext`` (the inner payload chain).  ``prefix``
        is every octet of the message before the SK body (IKE header, any
        payloads, SK/SKF header), with the final length already in place.
        Returns IV || ciphertext || ICV."""
        bs = self.block_size
        pad = (-(len(plaintext) + 1)) % bs
        padded = plaintext + bytes(pad) + bytes([pad])
        iv = self._random(self.iv_len)
        if self.aead:
            return iv + self._enc_out.encrypt(iv, padded, prefix)
        ct = self._enc_out.encrypt(iv, padded)
        return iv + ct + self._int_out.sign(prefix + iv + ct)

    def open(self, prefix: bytes, body: bytes) -> bytes:
        """Verify and decrypt an SK/SKF body; returns the inner payload
        octets without padding.  :class:`IntegrityError` when the ICV/tag
        fails (or the body is too short to carry one)."""
        iv_len, icv_len = self.iv_len, self.icv_len
        if len(body) < iv_len + icv_len + 1:
            raise IntegrityError("encrypted payload too short")
        iv = body[:iv_len]
        if self.aead:
            padded = self._enc_in.decrypt(iv, body[iv_len:], prefix)
        else:
            ct = body[iv_len:-icv_len]
            if not self._int_in.verify(prefix + body[:-icv_len], body[-icv_len:]):
                raise IntegrityError("ICV mismatch")
            if not ct or len(ct) % self.block_size:
                raise _authenticated(MalformedMessage(f"ciphertext of {len(ct)} octets is not block aligned"))
            padded = self._enc_in.decrypt(iv, ct)
        if not padded:
            raise _authenticated(MalformedMessage("empty encrypted payload"))
        pad = padded[-1]
        if pad + 1 > len(padded):
            raise _authenticated(MalformedMessage(f"pad length {pad} exceeds the decrypted data"))
        return padded[: len(padded) - pad - 1]


_E = TypeVar("_E", bound=Exception)


def _authenticated(exc: _E) -> _E:
    """Mark an error found inside a verified SK payload: the peer proved it
    holds the keys, so the session may answer it (INVALID_SYNTAX,
    UNSUPPORTED_CRITICAL_PAYLOAD) inside the IKE SA.  Read it with
    :func:`is_authenticated`."""
    exc.authenticated = True  # type: ignore[attr-defined]
    return exc


def is_authenticated(exc: BaseException) -> bool:
    """True when ``exc`` was raised after the message's ICV verified."""
    return bool(getattr(exc, "authenticated", False))


# =========================================================================== encode / decode


def encode_message(msg: Message, sk: SkContext | None = None) -> bytes:
    """Serialize ``msg``; with ``msg.encrypted`` its payloads go into an SK
    payload sealed with ``sk``."""
    if not msg.encrypted:
        first, body = encode_payloads(msg.payloads)
        total = IKE_HEADER_LEN + len(body)
        return msg.header(first, total).encode() + body
    if sk is None:
        raise LocalProtocolError("an encrypted message needs an SK context")
    first, inner = encode_payloads(msg.payloads)
    sealed_len = sk.sealed_len(len(inner))
    total = IKE_HEADER_LEN + 4 + sealed_len
    prefix = msg.header(PayloadType.SK, total).encode() + struct.pack("!BBH", first, 0, 4 + sealed_len)
    return prefix + sk.seal(prefix, inner)


def decode_message(data: bytes, sk: SkContext | None = None, *, hdr: Header | None = None) -> Message:
    """Parse (and with ``sk``, verify and decrypt) one IKEv2 message.

    See the module docstring for the exceptions.  An SKF (fragment) message
    comes back undecrypted as a single :class:`SkfPayload`: fragments go to
    :class:`~aioipsec.ike.v2.fragment.Reassembler`.  ``hdr``: the caller's
    :func:`peek_header` of ``data``, not parsed again."""
    if hdr is None:
        hdr = peek_header(data)
    if hdr.major_version != IKEV2_MAJOR_VERSION:
        raise InvalidMajorVersion(f"major version {hdr.major_version}")
    if hdr.length != len(data):
        raise MalformedHeader(f"length field {hdr.length}, datagram {len(data)}")
    payloads = decode_payloads(hdr.next_payload, data[IKE_HEADER_LEN:])
    msg = Message(
        hdr.exchange_type,
        hdr.spi_i,
        hdr.spi_r,
        hdr.message_id,
        hdr.initiator,
        hdr.response,
        payloads,
        False,
        hdr.minor_version,
    )
    if not payloads or not isinstance(payloads[-1], (SkPayload, SkfPayload)):
        return msg
    if len(payloads) > 1:
        raise MalformedMessage("payloads in front of the encrypted payload")
    skp = payloads[-1]
    if sk is None or isinstance(skp, SkfPayload):
        return msg
    prefix = data[: len(data) - len(skp.data)]
    plain = sk.open(prefix, skp.data)
    try:
        msg.payloads = decode_payloads(skp.next_payload, plain, inner=True)
    except NotifyError as exc:  # MalformedMessage, UnsupportedCriticalPayload
        raise _authenticated(exc) from None
    msg.encrypted = True
    return msg


# =========================================================================== payload rules

MAX_NOTIFY = 32
MAX_VID = 20
MAX_CERT = 8
MAX_CERTREQ = 20
MAX_DELETE = 20
UNLIMITED = 1 << 16


@fast_init
@dataclass(frozen=True, slots=True)
class PayloadRule:
    payload_type: int
    min: int = 0
    max: int = 1


@fast_init
@dataclass(frozen=True, slots=True)
class MessageRule:
    """Payloads allowed in one (exchange, request/response)."""

    exchange_type: int
    is_request: bool
    encrypted: bool
    """The payloads must come inside an SK payload."""
    rules: tuple[PayloadRule, ...]
    notify_sufficient: bool = False
    """An error notify (or COOKIE / REDIRECT) alone satisfies the minimum
    counts (e.g. an IKE_SA_INIT response with only N(COOKIE))."""
    max_by_type: dict[int, int] = field(init=False, repr=False, compare=False, hash=False)
    """``rules`` as payload type -> maximum count (derived, for :func:`check_rules`)."""
    required: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False, hash=False)
    """(payload type, minimum count) of the rules with a minimum, in rule order."""

    def __post_init__(self) -> None:
        max_by_type: dict[int, int] = {}
        for r in self.rules:
            max_by_type.setdefault(r.payload_type, r.max)  # rule_for: the first rule of a type
        object.__setattr__(self, "max_by_type", max_by_type)
        object.__setattr__(self, "required", tuple((r.payload_type, r.min) for r in self.rules if r.min > 0))

    def rule_for(self, payload_type: int) -> PayloadRule | None:
        for r in self.rules:
            if r.payload_type == payload_type:
                return r
        return None


_SUFFICIENT_STATUS = frozenset({NotifyType.COOKIE, NotifyType.REDIRECT})

PT = PayloadType


def _r(t: int, lo: int = 0, hi: int = 1) -> PayloadRule:
    return PayloadRule(t, lo, hi)


_NV = (_r(PT.NOTIFY, 0, MAX_NOTIFY), _r(PT.VENDOR, 0, MAX_VID))

_RULE_LIST = (
    MessageRule(
        ExchangeType.IKE_SA_INIT,
        True,
        False,
        (_r(PT.SA, 1), _r(PT.KE, 1), _r(PT.NONCE, 1), *_NV),
    ),
    MessageRule(
        ExchangeType.IKE_SA_INIT,
        False,
        False,
        (_r(PT.SA, 1), _r(PT.KE, 1), _r(PT.NONCE, 1), _r(PT.CERTREQ, 0, MAX_CERTREQ), *_NV),
        notify_sufficient=True,
    ),
    MessageRule(
        ExchangeType.IKE_AUTH,
        True,
        True,
        (
            _r(PT.IDi),
            _r(PT.CERT, 0, MAX_CERT),
            _r(PT.CERTREQ, 0, MAX_CERTREQ),
            _r(PT.IDr),
            _r(PT.AUTH),
            _r(PT.EAP),
            _r(PT.SA),
            _r(PT.TSi),
            _r(PT.TSr),
            _r(PT.CP),
            *_NV,
        ),
    ),
    MessageRule(
        ExchangeType.IKE_AUTH,
        False,
        True,
        (
            _r(PT.IDr),
            _r(PT.CERT, 0, MAX_CERT),
            _r(PT.AUTH),
            _r(PT.EAP),
            _r(PT.SA),
            _r(PT.TSi),
            _r(PT.TSr),
            _r(PT.CP),
            *_NV,
        ),
        notify_sufficient=True,
    ),
    MessageRule(
        ExchangeType.CREATE_CHILD_SA,
        True,
        True,
        (_r(PT.SA, 1), _r(PT.NONCE, 1), _r(PT.KE), _r(PT.TSi), _r(PT.TSr), *_NV),
    ),
    MessageRule(
        ExchangeType.CREATE_CHILD_SA,
        False,
        True,
        (_r(PT.SA, 1), _r(PT.NONCE, 1), _r(PT.KE), _r(PT.TSi), _r(PT.TSr), *_NV),
        notify_sufficient=True,
    ),
    MessageRule(
        ExchangeType.INFORMATIONAL,
        True,
        True,
        (_r(PT.DELETE, 0, MAX_DELETE), _r(PT.CP), *_NV),
    ),
    MessageRule(
        ExchangeType.INFORMATIONAL,
        False,
        True,
        (_r(PT.DELETE, 0, MAX_DELETE), _r(PT.CP), *_NV),
    ),
    MessageRule(ExchangeType.IKE_INTERMEDIATE, True, True, (_r(PT.KE), *_NV)),
    MessageRule(ExchangeType.IKE_INTERMEDIATE, False, True, (_r(PT.KE), *_NV), notify_sufficient=True),
    MessageRule(ExchangeType.IKE_FOLLOWUP_KE, True, True, (_r(PT.KE, 1), *_NV)),
    MessageRule(ExchangeType.IKE_FOLLOWUP_KE, False, True, (_r(PT.KE, 1), *_NV), notify_sufficient=True),
)

MESSAGE_RULES: dict[tuple[int, bool], MessageRule] = {(r.exchange_type, r.is_request): r for r in _RULE_LIST}
"""(exchange type, is_request) -> rule.  Exchanges not listed are not checked."""


def _where(msg: Message) -> str:
    """``IKE_AUTH request``: the start of a :func:`check_rules` error (built only on error)."""
    exch = _EXCHANGE_NAMES.get(msg.exchange_type, msg.exchange_type)
    return f"{exch} {'response' if msg.response else 'request'}"


def check_rules(msg: Message) -> None:
    """Check ``msg`` against :data:`MESSAGE_RULES`; raise
    :class:`~aioipsec.errors.InvalidSyntax` naming the first violation.

    Unknown (non-critical) payloads are ignored.  Exchange types without a
    rule pass (the session answers them as it sees fit)."""
    rule = MESSAGE_RULES.get((msg.exchange_type, not msg.response))
    if rule is None:
        return
    # the outcome depends only on the rule, whether the message was encrypted,
    # and its payload classes with the notify types: the same few shapes pass
    # in every handshake, so those that passed are remembered
    shape = (id(rule), msg.encrypted, *[p.notify_type if type(p) is NotifyPayload else type(p) for p in msg.payloads])  # type: ignore[union-attr]
    if shape not in _PASSED:
        _check_rule(msg, rule)
        _PASSED.remember(shape, True)


_PASSED = BoundedCache(256)
"""Message shapes (rule id, encrypted, payload classes / notify types) that
:func:`_check_rule` passed; the rules are module constants (ids stable)."""


def _check_rule(msg: Message, rule: MessageRule) -> None:
    counts: dict[int, int] = {}
    for p in msg.payloads:
        tp = type(p)
        if tp is UnknownPayload:
            continue  # unknown non-critical payloads are ignored (RFC 7296 §2.5)
        if tp is SkPayload or tp is SkfPayload:
            raise InvalidSyntax(f"{_where(msg)}: encrypted payload was not decrypted")
        t = p.payload_type  # type: ignore[union-attr]
        counts[t] = counts.get(t, 0) + 1
    if rule.encrypted and not msg.encrypted:
        raise InvalidSyntax(f"{_where(msg)}: payloads must be encrypted")
    if not rule.encrypted and msg.encrypted:
        raise InvalidSyntax(f"{_where(msg)}: must not be encrypted")
    max_by_type = rule.max_by_type
    for t, n in counts.items():
        most = max_by_type.get(t)
        if most is None or n > most:
            name = _PAYLOAD_NAMES.get(t, t)
            if most is None:
                raise InvalidSyntax(f"{_where(msg)}: {name} payload not allowed")
            raise InvalidSyntax(f"{_where(msg)}: {n} {name} payloads, at most {most} allowed")
    if rule.notify_sufficient and PayloadType.NOTIFY in counts and any(
        p.is_error or p.notify_type in _SUFFICIENT_STATUS  # type: ignore[union-attr]
        for p in msg.payloads
        if type(p) is NotifyPayload
    ):
        return
    for t, least in rule.required:
        if counts.get(t, 0) < least:
            name = _PAYLOAD_NAMES.get(t, t)
            raise InvalidSyntax(f"{_where(msg)}: {name} payload missing")
