"""ISAKMP messages: encoding, CBC encryption (the E flag), decoding, and the
payload rules of each exchange step, checked centrally before any task runs
(model: strongSwan ``encoding/message.c``).

An encrypted IKEv1 message is the header followed by the CBC encryption of
the payload chain, zero-padded to the block size; the IV comes from the
:class:`~aioipsec.ike.v1.iv.IvManager` (IKEv1 carries no IV on the wire).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from ...crypto.cipher import Encr
from ...errors import ParseError
from .constants import ISAKMP_HEADER_LEN, ExchangeType, Flag, PayloadType
from .errors import InvalidPayloadType, PayloadMalformed
from .payloads import (
    DeletePayload,
    HashPayload,
    IsakmpHeader,
    NotifyPayload,
    Payload,
    UnknownPayload,
    decode_chain,
    encode_chain,
)

__all__ = ["Message", "RULES", "check_rules", "decode_message", "encode_message", "peek_header"]

P = TypeVar("P", bound=Payload)


@dataclass(slots=True)
class Message:
    """One ISAKMP message, decoded or to be sent."""

    exchange: int
    message_id: int
    spi_i: bytes
    spi_r: bytes
    payloads: list[Payload] = field(default_factory=list)
    flags: int = 0
    body: bytes = b""
    """Decoded: the plaintext payload chain without padding."""
    spans: list[tuple[int, int]] = field(default_factory=list)
    """Decoded: (start, end) of each payload in ``body``."""
    raw: bytes = b""
    """Decoded: the datagram as received."""
    src: tuple[str, int] | None = None
    """Decoded: the address the datagram came from."""

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & Flag.ENCRYPTION)

    def get(self, cls: type[P]) -> P | None:
        for p in self.payloads:
            if type(p) is cls or (isinstance(p, cls) and p.type == cls.ptype):
                return p
        return None

    def all(self, cls: type[P]) -> list[P]:
        return [p for p in self.payloads if isinstance(p, cls)]

    def of_type(self, *ptypes: int) -> list[Payload]:
        return [p for p in self.payloads if p.type in ptypes]

    def notifies(self) -> list[NotifyPayload]:
        return self.all(NotifyPayload)

    def deletes(self) -> list[DeletePayload]:
        return self.all(DeletePayload)

    def after_first(self) -> bytes:
        """The payload chain after the first payload (the HASH of a Phase 2
        message covers exactly these bytes, RFC 2409 §5.5)."""
        if not self.spans:
            return b""
        return self.body[self.spans[0][1] : self.spans[-1][1]]

    def describe(self) -> str:
        """``QUICK_MODE mid=0x1234 [HASH, SA, NONCE, ID, ID]`` for logs."""
        try:
            ex = ExchangeType(self.exchange).name
        except ValueError:
            ex = str(self.exchange)
        names = []
        for p in self.payloads:
            try:
                names.append(PayloadType(p.type).name)
            except ValueError:
                names.append(str(p.type))
        return f"{ex} mid={self.message_id:#010x} [{', '.join(names)}]"


def peek_header(data: bytes) -> IsakmpHeader:
    """Decode only the header (raises ParseError)."""
    return IsakmpHeader.decode(data)


def encode_message(msg: Message, encr: Encr | None = None, iv: bytes | None = None) -> tuple[bytes, bytes]:
    """Encode ``msg``; with ``encr`` the payload chain is encrypted under ``iv``
    and the E flag set.  Returns (datagram, last ciphertext block or b"")."""
    first, chain = encode_chain(msg.payloads)
    flags = msg.flags & ~Flag.ENCRYPTION
    last_block = b""
    if encr is not None:
        if iv is None:
            raise ValueError("an IV is required to encrypt")
        bs = encr.block_size
        pad = (-len(chain)) % bs
        chain = encr.encrypt(iv, chain + bytes(pad))
        last_block = chain[-bs:]
        flags |= Flag.ENCRYPTION
    header = IsakmpHeader(
        msg.spi_i, msg.spi_r, first, msg.exchange, flags, msg.message_id, ISAKMP_HEADER_LEN + len(chain)
    )
    msg.flags = flags
    return header.encode() + chain, last_block


def decode_message(
    data: bytes, encr: Encr | None = None, iv: bytes | None = None, header: IsakmpHeader | None = None
) -> tuple[Message, bytes]:
    """Decode a datagram; an encrypted one needs ``encr`` and ``iv``.

    Returns (message, last ciphertext block or b"").  Raises
    :class:`ParseError` for anything malformed (including a payload chain
    that does not parse after decryption, the usual symptom of wrong keys)."""
    if header is None:
        header = IsakmpHeader.decode(data)
    data = bytes(data[: header.length])
    payload_bytes = data[ISAKMP_HEADER_LEN:]
    last_block = b""
    if header.flags & Flag.ENCRYPTION:
        if encr is None or iv is None:
            raise ParseError("encrypted message but no keys")
        bs = encr.block_size
        if not payload_bytes or len(payload_bytes) % bs:
            raise ParseError(f"encrypted body of {len(payload_bytes)} bytes is not a multiple of {bs}")
        last_block = payload_bytes[-bs:]
        payload_bytes = encr.decrypt(iv, payload_bytes)
    chain = decode_chain(header.next_payload, payload_bytes)
    msg = Message(
        header.exchange,
        header.message_id,
        header.spi_i,
        header.spi_r,
        chain.payloads,
        header.flags,
        payload_bytes[: chain.end],
        chain.spans,
        data,
    )
    return msg, last_block


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Rule:
    """Allowed payloads of one exchange step: type -> (min, max)."""

    counts: dict[int, tuple[int, int]]
    one_of: tuple[int, ...] = ()
    """Exactly one of these payload types must be present (HASH or SIG)."""
    hash_first: bool = False
    """A HASH payload must be the first payload (Phase 2 exchanges)."""


_MANY = 32
_VID = {PayloadType.VENDOR_ID: (0, _MANY)}
_N = {PayloadType.NOTIFY: (0, _MANY)}
_CR = {PayloadType.CERTREQ: (0, _MANY)}
_NATD = {PayloadType.NAT_D: (0, 8), PayloadType.NAT_D_DRAFT: (0, 8)}
_AUTH = {PayloadType.HASH: (0, 1), PayloadType.SIG: (0, 1), PayloadType.CERT: (0, 8)}
_QM = {
    PayloadType.HASH: (1, 1),
    PayloadType.SA: (1, 2),
    PayloadType.NONCE: (1, 1),
    PayloadType.KE: (0, 1),
    PayloadType.ID: (0, 2),
    PayloadType.NAT_OA: (0, 2),
    PayloadType.NAT_OA_DRAFT: (0, 2),
    **_N,
    **_VID,
}

RULES: dict[str, Rule] = {
    "MM1": Rule({PayloadType.SA: (1, 1), **_VID, **_N}),
    "MM2": Rule({PayloadType.SA: (1, 1), **_VID, **_N, **_CR}),
    "MM3": Rule({PayloadType.KE: (1, 1), PayloadType.NONCE: (1, 1), **_NATD, **_VID, **_CR, **_N}),
    "MM4": Rule({PayloadType.KE: (1, 1), PayloadType.NONCE: (1, 1), **_NATD, **_VID, **_CR, **_N}),
    "MM5": Rule({PayloadType.ID: (1, 1), **_AUTH, **_CR, **_N, **_VID}, one_of=(PayloadType.HASH, PayloadType.SIG)),
    "MM6": Rule({PayloadType.ID: (1, 1), **_AUTH, **_CR, **_N, **_VID}, one_of=(PayloadType.HASH, PayloadType.SIG)),
    "AM1": Rule(
        {PayloadType.SA: (1, 1), PayloadType.KE: (1, 1), PayloadType.NONCE: (1, 1), PayloadType.ID: (1, 1), **_VID, **_CR, **_N}
    ),
    "AM2": Rule(
        {
            PayloadType.SA: (1, 1),
            PayloadType.KE: (1, 1),
            PayloadType.NONCE: (1, 1),
            PayloadType.ID: (1, 1),
            **_AUTH,
            **_NATD,
            **_VID,
            **_CR,
            **_N,
        },
        one_of=(PayloadType.HASH, PayloadType.SIG),
    ),
    "AM3": Rule({**_AUTH, **_NATD, **_N, **_VID}, one_of=(PayloadType.HASH, PayloadType.SIG)),
    "QM1": Rule(_QM, hash_first=True),
    "QM2": Rule(_QM, hash_first=True),
    "QM3": Rule({PayloadType.HASH: (1, 1), **_N}, hash_first=True),
    "INFO": Rule({PayloadType.HASH: (0, 1), PayloadType.DELETE: (0, _MANY), **_N, **_VID}),
    "INFO*": Rule({PayloadType.HASH: (1, 1), PayloadType.DELETE: (0, _MANY), **_N, **_VID}, hash_first=True),
}

TRANSACTION_STEPS = ("TRANSACTION", "XAUTH-REPLY", "XAUTH-ACK", "MODECFG-REPLY")
"""Steps of Transaction exchanges (XAUTH, Mode Config): what a task waits for
(``TRANSACTION``: the peer's first message, a REQUEST or a SET)."""
for _step in TRANSACTION_STEPS:
    RULES[_step] = Rule({PayloadType.HASH: (1, 1), PayloadType.ATTRIBUTE: (1, 1), **_N, **_VID}, hash_first=True)


def check_rules(step: str, payloads: Sequence[Payload]) -> None:
    """Raise :class:`InvalidPayloadType` / :class:`PayloadMalformed` unless
    ``payloads`` satisfy the rule of ``step`` (``MM1``..``QM3``, ``INFO``,
    ``INFO*`` = protected informational).  Unknown payload types are ignored,
    as RFC 2408 allows for unsupported optional payloads."""
    rule = RULES[step]
    counts: dict[int, int] = {}
    for p in payloads:
        if isinstance(p, UnknownPayload):
            continue
        t = p.type
        if t not in rule.counts:
            raise InvalidPayloadType(f"{step}: payload {_name(t)} not allowed")
        counts[t] = counts.get(t, 0) + 1
    for t, (lo, hi) in rule.counts.items():
        n = counts.get(t, 0)
        if not lo <= n <= hi:
            raise PayloadMalformed(f"{step}: {n} {_name(t)} payload(s), expected {lo}..{hi}")
    if rule.one_of and sum(counts.get(t, 0) for t in rule.one_of) != 1:
        raise PayloadMalformed(f"{step}: exactly one of {', '.join(_name(t) for t in rule.one_of)} expected")
    if rule.hash_first and (not payloads or not isinstance(payloads[0], HashPayload)):
        raise PayloadMalformed(f"{step}: HASH must be the first payload")


def _name(t: int) -> str:
    try:
        return PayloadType(t).name
    except ValueError:
        return str(t)
