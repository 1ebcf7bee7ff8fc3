"""IKEv2 payloads (RFC 7296 §3.2-§3.16, RFC 7383 §2.5): one frozen dataclass
per payload type, each with ``encode_body(buf)`` and ``decode_body(buf)``
for the part after the 4-octet generic payload header::

                         1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | Next Payload  |C|  RESERVED   |         Payload Length        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The chain itself (next-payload links, the critical bit, unknown payloads) is
handled by :func:`encode_payloads` / :func:`decode_payloads`.  The SK and SKF
payloads appear here only in their raw, still encrypted form; encryption is
:mod:`aioipsec.ike.v2.message`'s business.

Helpers map SA payload proposals to and from the transform registry
(:func:`proposal_to_sa`, :func:`sa_to_proposals`).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

from ..._cache import BoundedCache
from ..._frozen import fast_init
from ...buffer import Buffer, BufferReadError, BufferWriteError
from ...crypto.transforms import (
    EncrAlg,
    EsnAlg,
    IntegAlg,
    KeAlg,
    PrfAlg,
    Proposal,
    TransformType,
    by_id,
)
from ...errors import InvalidSyntax, ParseError, UnsupportedCriticalPayload
from ...selectors import TrafficSelector
from ..constants import (
    GENERIC_PAYLOAD_HEADER_LEN,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformAttr,
    TsType,
)

__all__ = [
    "MalformedMessage",
    "Payload",
    "TransformAttribute",
    "Transform",
    "SaProposal",
    "SaPayload",
    "KePayload",
    "IdiPayload",
    "IdrPayload",
    "CertPayload",
    "CertReqPayload",
    "AuthPayload",
    "NoncePayload",
    "NotifyPayload",
    "DeletePayload",
    "VendorPayload",
    "TsiPayload",
    "TsrPayload",
    "SkPayload",
    "CpAttribute",
    "CpPayload",
    "EapPayload",
    "SkfPayload",
    "UnknownPayload",
    "PAYLOAD_CLASSES",
    "encode_payloads",
    "decode_payloads",
    "payload_type_of",
    "payload_body",
    "proposal_to_sa",
    "sa_to_proposals",
    "sa_proposal_to_proposal",
    "make_id",
    "id_to_str",
    "MIN_NONCE_LEN",
    "MAX_NONCE_LEN",
]


class MalformedMessage(ParseError, InvalidSyntax):
    """The bytes do not form a valid IKEv2 message or payload.

    It is both a :class:`~aioipsec.errors.ParseError` (drop it when it came
    before authentication) and an :class:`~aioipsec.errors.InvalidSyntax`
    (``notify_type`` 7, the answer to an authenticated malformed request)."""


MIN_NONCE_LEN = 16
MAX_NONCE_LEN = 256

_P = TypeVar("_P", bound="Payload")


class Payload(Protocol):
    """What every payload class provides."""

    payload_type: ClassVar[int]

    def encode_body(self, buf: Buffer) -> None: ...


def _bad(what: str) -> MalformedMessage:
    return MalformedMessage(what)


# Encoders build each header with one struct.pack and return the body as
# bytes (``_body``); ``encode_body(buf)`` appends it.  A field out of range
# raises BufferWriteError, as the Buffer calls did.
_HDR = struct.Struct("!BBH")  # generic payload header, proposal/transform substructure header
_HDR_U16 = struct.Struct("!BBHH")
_TRANSFORM = struct.Struct("!BBHBBH")
_PROPOSAL = struct.Struct("!BBHBBBB")
_TS4 = struct.Struct("!BBHHH4s4s")
_TS6 = struct.Struct("!BBHHH16s16s")
_ZERO3 = b"\x00\x00\x00"


# Decoders of the common payloads parse the body bytes with struct and
# offsets (``_parse(data)``); ``decode_body(buf)`` hands them the rest of the
# buffer.  Truncation raises BufferReadError, as the Buffer calls did.
_U16 = struct.Struct("!H")
_U16U16 = struct.Struct("!HH")


def _short(need: int, at: int, have: int) -> BufferReadError:
    return BufferReadError(f"need {need} bytes at offset {at}, have {max(have - at, 0)}")


_FIELD_ERRORS = (struct.error, OverflowError, ValueError)  # ValueError: bytes((256,))


def _field_error(p: AnyPayload, exc: Exception) -> BufferWriteError:
    return BufferWriteError(f"{type(p).__name__}: a field does not fit: {exc}")


def _body_of(p: AnyPayload) -> bytes:
    try:
        return p._body()  # type: ignore[union-attr]
    except _FIELD_ERRORS as exc:
        raise _field_error(p, exc) from None


# =========================================================================== SA
#
#  Proposal substructure:
#    | Last Substruc |   RESERVED    |         Proposal Length       |
#    | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
#    ~                        SPI (variable)                         ~
#    ~                        <Transforms>                           ~
#  Transform substructure:
#    | Last Substruc |   RESERVED    |        Transform Length       |
#    |Transform Type |   RESERVED    |          Transform ID         |
#    ~                      Transform Attributes                     ~
#  Attribute:
#    |A|       Attribute Type        |    AF=0  Attribute Length     |
#    |                               |    AF=1  Attribute Value      |
#    |                   AF=0  Attribute Value (variable)            |

_LAST = 0
_MORE_PROPOSALS = 2
_MORE_TRANSFORMS = 3

# Enum members read per payload, as module constants: in CPython 3.11
# ``Enum.MEMBER`` goes through the hook of EnumType.__getattr__ (~60 ns
# against a few ns for a global).  Same objects, so behaviour is unchanged.
_NONE = PayloadType.NONE
_KEY_LENGTH = TransformAttr.KEY_LENGTH
_TS_IPV4, _TS_IPV6 = TsType.IPV4_ADDR_RANGE, TsType.IPV6_ADDR_RANGE


@fast_init
@dataclass(frozen=True, slots=True)
class TransformAttribute:
    """One transform attribute: ``value`` is an ``int`` for the short (TV)
    format, ``bytes`` for the variable (TLV) format."""

    attr_type: int
    value: int | bytes

    def _bytes(self) -> bytes:
        v = self.value
        if isinstance(v, int):
            return struct.pack("!HH", 0x8000 | self.attr_type, v)
        return struct.pack("!HH", self.attr_type, len(v)) + v

    @classmethod
    def decode(cls, buf: Buffer) -> TransformAttribute:
        t = buf.pull_uint16()
        if t & 0x8000:
            return cls(t & 0x7FFF, buf.pull_uint16())
        n = buf.pull_uint16()
        return cls(t, buf.pull_bytes(n))


@fast_init
@dataclass(frozen=True, slots=True)
class Transform:
    transform_type: int
    """:class:`~aioipsec.crypto.transforms.TransformType` value."""
    transform_id: int
    attributes: tuple[TransformAttribute, ...] = ()

    @property
    def key_length(self) -> int | None:
        """The Key Length attribute (bits), if present."""
        for a in self.attributes:
            if a.attr_type == _KEY_LENGTH and isinstance(a.value, int):
                return a.value
        return None

    def _bytes(self, last: bool) -> bytes:
        attrs = b"".join([a._bytes() for a in self.attributes]) if self.attributes else b""
        head = _TRANSFORM.pack(
            _LAST if last else _MORE_TRANSFORMS, 0, 8 + len(attrs), self.transform_type, 0, self.transform_id
        )
        return head + attrs if attrs else head

    @classmethod
    def decode(cls, buf: Buffer) -> tuple[Transform, bool]:
        """Returns the transform and whether it was marked last."""
        more = buf.pull_uint8()
        if more not in (_LAST, _MORE_TRANSFORMS):
            raise _bad(f"transform substructure type {more}")
        buf.pull_uint8()
        length = buf.pull_uint16()
        if length < 8:
            raise _bad(f"transform length {length}")
        body = buf.pull_buffer(length - 4)
        ttype = body.pull_uint8()
        body.pull_uint8()
        tid = body.pull_uint16()
        attrs: list[TransformAttribute] = []
        while not body.eof():
            attrs.append(TransformAttribute.decode(body))
        return cls(ttype, tid, tuple(attrs)), more == _LAST


@fast_init
@dataclass(frozen=True, slots=True)
class SaProposal:
    num: int
    """Proposal number (1-based; the responder echoes the chosen one)."""
    protocol: int
    """:class:`~aioipsec.ike.constants.ProtocolId`."""
    spi: bytes = b""
    """8 octets for an IKE rekey, 4 for ESP/AH, empty in IKE_SA_INIT."""
    transforms: tuple[Transform, ...] = ()

    def _bytes(self, last: bool) -> bytes:
        ts = self.transforms
        n = len(ts)
        hit = _ENCODED_TRANSFORMS.get(id(ts)) or _ENCODED_TRANSFORMS.remember(
            id(ts), (ts, b"".join([t._bytes(i == n - 1) for i, t in enumerate(ts)])))
        body = hit[-1]
        spi = self.spi
        head = _PROPOSAL.pack(
            _LAST if last else _MORE_PROPOSALS, 0, 8 + len(spi) + len(body), self.num, self.protocol, len(spi), n
        )
        return head + spi + body

    @classmethod
    def decode(cls, buf: Buffer) -> tuple[SaProposal, bool]:
        more = buf.pull_uint8()
        if more not in (_LAST, _MORE_PROPOSALS):
            raise _bad(f"proposal substructure type {more}")
        buf.pull_uint8()
        length = buf.pull_uint16()
        if length < 8:
            raise _bad(f"proposal length {length}")
        body = buf.pull_buffer(length - 4)
        num = body.pull_uint8()
        protocol = body.pull_uint8()
        spi_size = body.pull_uint8()
        count = body.pull_uint8()
        spi = body.pull_bytes(spi_size)
        transforms: list[Transform] = []
        last = count == 0
        while not body.eof():
            if last:
                raise _bad("data after the last transform")
            t, last = Transform.decode(body)
            transforms.append(t)
        if len(transforms) != count or not last:
            raise _bad(f"proposal says {count} transforms, found {len(transforms)}")
        return cls(num, protocol, spi, tuple(transforms)), more == _LAST

    @classmethod
    def _parse(cls, d: bytes) -> SaProposal:
        """A proposal from its body (after the substructure header, >= 4 octets)."""
        num, protocol, spi_size, count = d[0], d[1], d[2], d[3]
        end = len(d)
        pos = 4 + spi_size
        if pos > end:
            raise _short(spi_size, 4, end)
        spi = d[4:pos]
        key = d[pos:]
        hit = _PARSED_TRANSFORMS.get(key)
        if hit is not None and len(hit) == count:
            return cls(num, protocol, spi, hit)
        transforms: list[Transform] = []
        last = count == 0
        hdr = _TRANSFORM.unpack_from
        while pos < end:
            if last:
                raise _bad("data after the last transform")
            if pos + 4 > end:
                raise _short(4, pos, end)
            more, _r, length = _HDR.unpack_from(d, pos)
            if more not in (_LAST, _MORE_TRANSFORMS):
                raise _bad(f"transform substructure type {more}")
            if length < 8:
                raise _bad(f"transform length {length}")
            if pos + length > end:
                raise _short(length - 4, pos + 4, end)
            _m, _r, _l, ttype, _r2, tid = hdr(d, pos)
            if length == 8:
                transforms.append(Transform(ttype, tid))
            elif length == 12 and d[pos + 8] & 0x80:
                # the common keyed transform: exactly one TV attribute (Key Length)
                atype, value = _U16U16.unpack_from(d, pos + 8)
                transforms.append(Transform(ttype, tid, (TransformAttribute(atype & 0x7FFF, value),)))
            else:
                attrs = Buffer(d[pos + 8 : pos + length])
                found: list[TransformAttribute] = []
                while not attrs.eof():
                    found.append(TransformAttribute.decode(attrs))
                transforms.append(Transform(ttype, tid, tuple(found)))
            last = more == _LAST
            pos += length
        if len(transforms) != count or not last:
            raise _bad(f"proposal says {count} transforms, found {len(transforms)}")
        found_ts = tuple(transforms)
        if len(key) <= _CACHED_TRANSFORMS_MAX:
            _PARSED_TRANSFORMS.remember(key, found_ts)
        return cls(num, protocol, spi, found_ts)


_CACHED_TRANSFORMS_MAX = 512
_PARSED_TRANSFORMS = BoundedCache(256)
"""A proposal's transform substructures (the bytes after its SPI) -> the
parsed transforms (immutable).  Peers offer the same few proposals in every
handshake; only their SPIs change.  A hit is the same parse: same bytes, and
its count must equal the proposal's transform count as after a parse.
Entries of at most ``_CACHED_TRANSFORMS_MAX`` octets (~40 transforms; at
most 128 KiB in all)."""
_ENCODED_TRANSFORMS = BoundedCache(256)
"""id(transforms tuple) -> (that tuple, its encoding): the proposals we send
reuse the same tuples (``tasks.common.to_sa``)."""


@fast_init
@dataclass(frozen=True, slots=True)
class SaPayload:
    payload_type: ClassVar[int] = PayloadType.SA
    proposals: tuple[SaProposal, ...] = ()

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(_body_of(self))

    def _body(self) -> bytes:
        n = len(self.proposals)
        return b"".join([p._bytes(i == n - 1) for i, p in enumerate(self.proposals)])

    @classmethod
    def decode_body(cls, buf: Buffer) -> SaPayload:
        return cls._parse(buf.pull_rest())

    @classmethod
    def _parse(cls, d: bytes) -> SaPayload:
        proposals: list[SaProposal] = []
        last = False
        end = len(d)
        pos = 0
        hdr = _HDR.unpack_from
        while pos < end:
            if last:
                raise _bad("data after the last proposal")
            if pos + 4 > end:
                raise _short(4, pos, end)
            more, _r, length = hdr(d, pos)
            if more not in (_LAST, _MORE_PROPOSALS):
                raise _bad(f"proposal substructure type {more}")
            if length < 8:
                raise _bad(f"proposal length {length}")
            if pos + length > end:
                raise _short(length - 4, pos + 4, end)
            proposals.append(SaProposal._parse(d[pos + 4 : pos + length]))
            last = more == _LAST
            pos += length
        if not proposals:
            raise _bad("SA payload without proposals")
        if not last:
            raise _bad("last proposal not marked last")
        return cls(tuple(proposals))

    @classmethod
    def _decode_body_buffer(cls, buf: Buffer) -> SaPayload:  # the Buffer form, kept for reference tests
        proposals: list[SaProposal] = []
        last = False
        while not buf.eof():
            if last:
                raise _bad("data after the last proposal")
            p, last = SaProposal.decode(buf)
            proposals.append(p)
        if not proposals:
            raise _bad("SA payload without proposals")
        if not last:
            raise _bad("last proposal not marked last")
        return cls(tuple(proposals))


# =========================================================================== KE
#    |   Key Exchange Method Num     |           RESERVED            |
#    ~                       Key Exchange Data                       ~


@fast_init
@dataclass(frozen=True, slots=True)
class KePayload:
    payload_type: ClassVar[int] = PayloadType.KE
    group: int
    """Key exchange method (:class:`~aioipsec.crypto.transforms.KeId`)."""
    data: bytes

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(_body_of(self))

    def _body(self) -> bytes:
        return struct.pack("!HH", self.group, 0) + self.data

    @classmethod
    def decode_body(cls, buf: Buffer) -> KePayload:
        return cls._parse(buf.pull_rest())

    @classmethod
    def _parse(cls, d: bytes) -> KePayload:
        if len(d) < 4:
            raise _short(4, 0, len(d))
        return cls(_U16.unpack_from(d)[0], d[4:])


# =========================================================================== ID
#    |   ID Type     |                 RESERVED                      |
#    ~                   Identification Data                         ~
#
# The AUTH computation signs "RestOfInitIDPayload" = the body: use payload_body().


@fast_init
@dataclass(frozen=True, slots=True)
class _IdPayload:
    id_type: int
    """:class:`~aioipsec.ike.constants.IdType`."""
    data: bytes

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(_body_of(self))

    def _body(self) -> bytes:
        return bytes((self.id_type,)) + _ZERO3 + self.data

    @classmethod
    def decode_body(cls: type[_P], buf: Buffer) -> _P:
        return cls._parse(buf.pull_rest())  # type: ignore[attr-defined, no-any-return]

    @classmethod
    def _parse(cls: type[_P], d: bytes) -> _P:
        if len(d) < 4:
            raise _short(4, 0, len(d))
        return cls(d[0], d[4:])  # type: ignore[call-arg]

    def __str__(self) -> str:
        return id_to_str(self.id_type, self.data)


@fast_init
@dataclass(frozen=True, slots=True)
class IdiPayload(_IdPayload):
    payload_type: ClassVar[int] = PayloadType.IDi


@fast_init
@dataclass(frozen=True, slots=True)
class IdrPayload(_IdPayload):
    payload_type: ClassVar[int] = PayloadType.IDr


def make_id(text: str) -> tuple[int, bytes]:
    """A strongSwan-style identity string to ``(id_type, data)``: an IP
    address, ``user@example`` (RFC822), ``@fqdn`` or ``host.example`` (FQDN),
    ``@#hex`` (KEY_ID).  DER distinguished names are handled by
    :mod:`aioipsec.ike.auth`."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return (IdType.IPV4_ADDR if ip.version == 4 else IdType.IPV6_ADDR), ip.packed
    if text.startswith("@#"):
        return IdType.KEY_ID, bytes.fromhex(text[2:])
    if text.startswith("@"):
        return IdType.FQDN, text[1:].encode()
    if "@" in text:
        return IdType.RFC822_ADDR, text.encode()
    return IdType.FQDN, text.encode()


def id_to_str(id_type: int, data: bytes) -> str:
    """Printable form of an identity (for logs and events)."""
    if id_type == IdType.IPV4_ADDR and len(data) == 4:
        return str(ipaddress.IPv4Address(data))
    if id_type == IdType.IPV6_ADDR and len(data) == 16:
        return str(ipaddress.IPv6Address(data))
    if id_type in (IdType.FQDN, IdType.RFC822_ADDR):
        return data.decode("utf-8", "replace")
    if id_type == IdType.KEY_ID:
        return "@#" + data.hex()
    if id_type == IdType.NULL:
        return "%null"
    return f"{id_type}:{data.hex()}"


# =========================================================================== CERT / CERTREQ
#    | Cert Encoding |                                               |
#    +-+-+-+-+-+-+-+-+                                               |
#    ~                Certificate Data / Certification Authority     ~


@fast_init
@dataclass(frozen=True, slots=True)
class CertPayload:
    payload_type: ClassVar[int] = PayloadType.CERT
    encoding: int
    """:class:`~aioipsec.ike.constants.CertEncoding`."""
    data: bytes

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(_body_of(self))

    def _body(self) -> bytes:
        return bytes((self.encoding,)) + self.data

    @classmethod
    def decode_body(cls, buf: Buffer) -> CertPayload:
        return cls(buf.pull_uint8(), buf.pull_rest())


@fast_init
@dataclass(frozen=True, slots=True)
class CertReqPayload:
    payload_type: ClassVar[int] = PayloadType.CERTREQ
    encoding: int
    data: bytes = b""
    """For X.509: concatenated SHA-1 hashes of trusted CAs' public keys."""

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(_body_of(self))

    def _body(self) -> bytes:
        return bytes((self.encoding,)) + self.data

    @classmethod
    def decode_body(cls, buf: Buffer) -> CertReqPayload:
        return cls(buf.pull_uint8(), buf.pull_rest())


# =========================================================================== AUTH
#    | Auth Method   |                RESERVED                       |
#    ~                      Authentication Data                      ~


@fast_init
@dataclass(frozen=True, slots=True)
class AuthPayload:
    payload_type: ClassVar[int] = PayloadType.AUTH
    method: int
    """:class:`~aioipsec.ike.constants.AuthMethod`."""
    data: bytes

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(_body_of(self))

    def _body(self) -> bytes:
        return bytes((self.method,)) + _ZERO3 + self.data

    @classmethod
    def decode_body(cls, buf: Buffer) -> AuthPayload:
        return cls._parse(buf.pull_rest())

    @classmethod
    def _parse(cls, d: bytes) -> AuthPayload:
        if len(d) < 4:
            raise _short(4, 0, len(d))
        return cls(d[0], d[4:])


# =========================================================================== Nonce


@fast_init
@dataclass(frozen=True, slots=True)
class NoncePayload:
    """Ni / Nr.  The decoder enforces 16..256 octets (RFC 7296 §3.9) and raises
    :class:`MalformedMessage` (INVALID_SYNTAX) otherwise."""

    payload_type: ClassVar[int] = PayloadType.NONCE
    data: bytes

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(self.data)

    def _body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def decode_body(cls, buf: Buffer) -> NoncePayload:
        return cls._parse(buf.pull_rest())

    @classmethod
    def _parse(cls, data: bytes) -> NoncePayload:
        if not MIN_NONCE_LEN <= len(data) <= MAX_NONCE_LEN:
            raise _bad(f"nonce of {len(data)} octets (16..256 allowed)")
        return cls(data)


# =========================================================================== Notify
#    |  Protocol ID  |   SPI Size    |      Notify Message Type      |
#    ~                Security Parameter Index (SPI)                 ~
#    ~                       Notification Data                       ~


@fast_init
@dataclass(frozen=True, slots=True)
class NotifyPayload:
    payload_type: ClassVar[int] = PayloadType.NOTIFY
    notify_type: int
    """:class:`~aioipsec.ike.constants.NotifyType` (unknown types stay ``int``)."""
    data: bytes = b""
    protocol: int = 0
    """:class:`~aioipsec.ike.constants.ProtocolId`; 0 when no SPI."""
    spi: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.notify_type < 16384

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(_body_of(self))

    def _body(self) -> bytes:
        spi = self.spi
        return _HDR.pack(self.protocol, len(spi), self.notify_type) + spi + self.data

    @classmethod
    def decode_body(cls, buf: Buffer) -> NotifyPayload:
        return cls._parse(buf.pull_rest())

    @classmethod
    def _parse(cls, d: bytes) -> NotifyPayload:
        if len(d) < 4:
            raise _short(4, 0, len(d))
        protocol, spi_size, ntype = _HDR.unpack_from(d)
        if 4 + spi_size > len(d):
            raise _short(spi_size, 4, len(d))
        member = _NOTIFY_MEMBERS.get(ntype)
        return cls(ntype if member is None else member, d[4 + spi_size :], protocol, d[4 : 4 + spi_size])


# =========================================================================== Delete
#    | Protocol ID   |   SPI Size    |          Num of SPIs          |
#    ~               Security Parameter Index(es) (SPI)              ~


@fast_init
@dataclass(frozen=True, slots=True)
class DeletePayload:
    """``DeletePayload(ProtocolId.IKE)`` deletes the IKE SA (no SPIs);
    ``DeletePayload(ProtocolId.ESP, (spi1, spi2))`` deletes Child SAs by
    their inbound SPIs (4 octets each)."""

    payload_type: ClassVar[int] = PayloadType.DELETE
    protocol: int
    spis: tuple[bytes, ...] = ()

    def encode_body(self, buf: Buffer) -> None:
        if self.spis:
            size = len(self.spis[0])
            if any(len(s) != size for s in self.spis):
                raise ValueError("all SPIs of a Delete payload must have the same size")
        else:
            size = 0 if self.protocol == ProtocolId.IKE else 4
        buf.push_uint8(self.protocol)
        buf.push_uint8(size)
        buf.push_uint16(len(self.spis))
        for s in self.spis:
            buf.push_bytes(s)

    @classmethod
    def decode_body(cls, buf: Buffer) -> DeletePayload:
        protocol = buf.pull_uint8()
        size = buf.pull_uint8()
        count = buf.pull_uint16()
        if count and not size:
            raise _bad("Delete payload with SPIs of size 0")
        spis = tuple(buf.pull_bytes(size) for _ in range(count))
        if not buf.eof():
            raise _bad("trailing data in Delete payload")
        return cls(protocol, spis)


# =========================================================================== Vendor ID


@fast_init
@dataclass(frozen=True, slots=True)
class VendorPayload:
    payload_type: ClassVar[int] = PayloadType.VENDOR
    data: bytes

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(self.data)

    def _body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def decode_body(cls, buf: Buffer) -> VendorPayload:
        return cls(buf.pull_rest())


# =========================================================================== TS
#    | Number of TSs |                 RESERVED                      |
#  Selector:
#    |   TS Type     |IP Protocol ID*|       Selector Length         |
#    |           Start Port*         |           End Port*           |
#    ~                         Starting Address*                     ~
#    ~                         Ending Address*                       ~


@fast_init
@dataclass(frozen=True, slots=True)
class _TsPayload:
    selectors: tuple[TrafficSelector, ...] = ()

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(_body_of(self))

    def _body(self) -> bytes:
        parts = [bytes((len(self.selectors),)) + _ZERO3]
        for ts in self.selectors:
            if ts.version == 4:
                parts.append(_TS4.pack(_TS_IPV4, ts.proto, 16, ts.start_port, ts.end_port,
                                       ts.start.to_bytes(4, "big"), ts.end.to_bytes(4, "big")))
            else:
                parts.append(_TS6.pack(_TS_IPV6, ts.proto, 40, ts.start_port, ts.end_port,
                                       ts.start.to_bytes(16, "big"), ts.end.to_bytes(16, "big")))
        return b"".join(parts)

    @classmethod
    def decode_body(cls: type[_P], buf: Buffer) -> _P:
        return cls._parse(buf.pull_rest())  # type: ignore[attr-defined, no-any-return]

    @classmethod
    def _parse(cls: type[_P], d: bytes) -> _P:
        end = len(d)
        if end < 4:
            raise _short(4, 0, end)
        count = d[0]
        pos = 4
        selectors: list[TrafficSelector] = []
        for _ in range(count):
            if pos + 4 > end:
                raise _short(4, pos, end)
            ts_type, proto, length = _HDR.unpack_from(d, pos)
            if ts_type == _TS_IPV4:
                alen, version = 4, 4
            elif ts_type == _TS_IPV6:
                alen, version = 16, 6
            else:
                raise _bad(f"unsupported traffic selector type {ts_type}")
            if length != 8 + 2 * alen:
                raise _bad(f"traffic selector length {length} for type {ts_type}")
            if pos + length > end:
                raise _short(length - 4, pos + 4, end)
            sp, ep = _U16U16.unpack_from(d, pos + 4)
            a = pos + 8
            start = int.from_bytes(d[a : a + alen], "big")
            stop = int.from_bytes(d[a + alen : a + 2 * alen], "big")
            selectors.append(TrafficSelector(start, stop, version, proto, sp, ep))
            pos += length
        if pos != end:
            raise _bad("trailing data in TS payload")
        return cls(tuple(selectors))  # type: ignore[call-arg]

    @classmethod
    def _decode_body_buffer(cls: type[_P], buf: Buffer) -> _P:  # the Buffer form, kept for reference tests
        count = buf.pull_uint8()
        buf.pull_bytes(3)
        selectors: list[TrafficSelector] = []
        for _ in range(count):
            ts_type = buf.pull_uint8()
            proto = buf.pull_uint8()
            length = buf.pull_uint16()
            if ts_type == _TS_IPV4:
                alen, version = 4, 4
            elif ts_type == _TS_IPV6:
                alen, version = 16, 6
            else:
                raise _bad(f"unsupported traffic selector type {ts_type}")
            if length != 8 + 2 * alen:
                raise _bad(f"traffic selector length {length} for type {ts_type}")
            sp = buf.pull_uint16()
            ep = buf.pull_uint16()
            start = int.from_bytes(buf.pull_bytes(alen), "big")
            end = int.from_bytes(buf.pull_bytes(alen), "big")
            selectors.append(TrafficSelector(start, end, version, proto, sp, ep))
        if not buf.eof():
            raise _bad("trailing data in TS payload")
        return cls(tuple(selectors))  # type: ignore[call-arg]


@fast_init
@dataclass(frozen=True, slots=True)
class TsiPayload(_TsPayload):
    payload_type: ClassVar[int] = PayloadType.TSi


@fast_init
@dataclass(frozen=True, slots=True)
class TsrPayload(_TsPayload):
    payload_type: ClassVar[int] = PayloadType.TSr


# =========================================================================== SK / SKF (raw)
#  SK:   generic header (Next Payload = first inner payload) | IV | ciphertext | ICV
#  SKF:  generic header | Fragment Number (2) | Total Fragments (2) | IV | ciphertext | ICV


@fast_init
@dataclass(frozen=True, slots=True)
class SkPayload:
    """The Encrypted payload as it is on the wire (IV || ciphertext || ICV).

    Only seen when a message is decoded without an SK context; otherwise
    :func:`~aioipsec.ike.v2.message.decode_message` replaces it by the
    decrypted inner payloads."""

    payload_type: ClassVar[int] = PayloadType.SK
    next_payload: int
    """Type of the first inner payload."""
    data: bytes

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(self.data)

    def _body(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def decode_body(cls, buf: Buffer, next_payload: int = 0) -> SkPayload:
        return cls(next_payload, buf.pull_rest())


@fast_init
@dataclass(frozen=True, slots=True)
class SkfPayload:
    """One Encrypted Fragment payload (RFC 7383 §2.5), still encrypted."""

    payload_type: ClassVar[int] = PayloadType.SKF
    next_payload: int
    """First inner payload type in fragment 1, 0 in the others."""
    fragment_number: int
    total_fragments: int
    data: bytes
    """IV || ciphertext || ICV."""

    def encode_body(self, buf: Buffer) -> None:
        buf.push_uint16(self.fragment_number)
        buf.push_uint16(self.total_fragments)
        buf.push_bytes(self.data)

    @classmethod
    def decode_body(cls, buf: Buffer, next_payload: int = 0) -> SkfPayload:
        num = buf.pull_uint16()
        total = buf.pull_uint16()
        if not 1 <= num <= total:
            raise _bad(f"fragment {num} of {total}")
        return cls(next_payload, num, total, buf.pull_rest())


# =========================================================================== CP
#    |   CFG Type    |                    RESERVED                   |
#    ~                   Configuration Attributes                    ~
#  Attribute:
#    |R|         Attribute Type      |            Length             |
#    ~                             Value                             ~


@fast_init
@dataclass(frozen=True, slots=True)
class CpAttribute:
    attr_type: int
    """:class:`~aioipsec.ike.constants.CfgAttr`."""
    value: bytes = b""


@fast_init
@dataclass(frozen=True, slots=True)
class CpPayload:
    payload_type: ClassVar[int] = PayloadType.CP
    cfg_type: int
    """:class:`~aioipsec.ike.constants.CfgType`."""
    attributes: tuple[CpAttribute, ...] = ()

    def encode_body(self, buf: Buffer) -> None:
        buf.push_uint8(self.cfg_type)
        buf.push_bytes(b"\x00\x00\x00")
        for a in self.attributes:
            buf.push_uint16(a.attr_type & 0x7FFF)
            buf.push_uint16(len(a.value))
            buf.push_bytes(a.value)

    @classmethod
    def decode_body(cls, buf: Buffer) -> CpPayload:
        cfg_type = buf.pull_uint8()
        buf.pull_bytes(3)
        attrs: list[CpAttribute] = []
        while not buf.eof():
            t = buf.pull_uint16() & 0x7FFF
            n = buf.pull_uint16()
            attrs.append(CpAttribute(t, buf.pull_bytes(n)))
        return cls(cfg_type, tuple(attrs))


# =========================================================================== EAP
#    |     Code      | Identifier    |           Length              |
#    |     Type      | Type_Data...


@fast_init
@dataclass(frozen=True, slots=True)
class EapPayload:
    """An EAP message (RFC 3748) carried opaque: the header plus ``data``
    (Type and Type-Data; empty for Success/Failure)."""

    payload_type: ClassVar[int] = PayloadType.EAP
    code: int
    """:class:`~aioipsec.ike.constants.EapCode`."""
    identifier: int
    data: bytes = b""

    @property
    def eap_type(self) -> int | None:
        return self.data[0] if self.data else None

    def encode_body(self, buf: Buffer) -> None:
        buf.push_uint8(self.code)
        buf.push_uint8(self.identifier)
        buf.push_uint16(4 + len(self.data))
        buf.push_bytes(self.data)

    @classmethod
    def decode_body(cls, buf: Buffer) -> EapPayload:
        code = buf.pull_uint8()
        ident = buf.pull_uint8()
        length = buf.pull_uint16()
        data = buf.pull_rest()
        if length != 4 + len(data):
            raise _bad(f"EAP length {length} in a payload of {4 + len(data)} octets")
        return cls(code, ident, data)


# =========================================================================== unknown


@fast_init
@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload type this codec does not know (kept, never acted upon).

    A message with an unknown payload whose critical bit is set is rejected
    with :class:`~aioipsec.errors.UnsupportedCriticalPayload` instead."""

    type: int
    critical: bool
    data: bytes

    def encode_body(self, buf: Buffer) -> None:
        buf.push_bytes(self.data)

    def _body(self) -> bytes:
        return bytes(self.data)


AnyPayload = (
    SaPayload
    | KePayload
    | IdiPayload
    | IdrPayload
    | CertPayload
    | CertReqPayload
    | AuthPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorPayload
    | TsiPayload
    | TsrPayload
    | SkPayload
    | CpPayload
    | EapPayload
    | SkfPayload
    | UnknownPayload
)

PAYLOAD_CLASSES: dict[int, type] = {
    cls.payload_type: cls  # type: ignore[attr-defined]
    for cls in (
        SaPayload,
        KePayload,
        IdiPayload,
        IdrPayload,
        CertPayload,
        CertReqPayload,
        AuthPayload,
        NoncePayload,
        NotifyPayload,
        DeletePayload,
        VendorPayload,
        TsiPayload,
        TsrPayload,
        SkPayload,
        CpPayload,
        EapPayload,
        SkfPayload,
    )
}
"""Known payload type -> class."""

_ENCRYPTED_TYPES = (PayloadType.SK, PayloadType.SKF)


# =========================================================================== chains


def payload_type_of(p: AnyPayload) -> int:
    return p.type if isinstance(p, UnknownPayload) else p.payload_type


def payload_body(p: AnyPayload) -> bytes:
    """The payload's body (what follows the generic header), e.g. the
    "RestOfInitIDPayload" that AUTH signs."""
    if hasattr(p, "_body"):
        return _body_of(p)
    buf = Buffer()
    p.encode_body(buf)
    return buf.data


def encode_payloads(payloads: Sequence[AnyPayload], buf: Buffer | None = None) -> tuple[int, bytes]:
    """Encode a payload chain.  Returns ``(type of the first payload, bytes)``;
    the first type goes into the enclosing header's Next Payload field.

    An SK/SKF payload must be last: its Next Payload field names the first
    *inner* payload (``SkPayload.next_payload``)."""
    n = len(payloads)
    parts: list[bytes] = []
    types = [p.type if type(p) is UnknownPayload else p.payload_type for p in payloads]  # type: ignore[union-attr]
    pack = _HDR.pack
    for i, p in enumerate(payloads):
        if types[i] in _ENCRYPTED_TYPES:
            if i != n - 1:
                raise ValueError("an SK/SKF payload must be the last payload")
            nxt = p.next_payload  # type: ignore[union-attr]
        else:
            nxt = types[i + 1] if i + 1 < n else _NONE
        # payload_body() inlined for the common payloads (two calls less each)
        body_of = getattr(p, "_body", None)
        if body_of is not None:
            try:
                body = body_of()
            except _FIELD_ERRORS as exc:
                raise _field_error(p, exc) from None
        else:
            body = payload_body(p)
        try:
            parts.append(pack(nxt, 0x80 if type(p) is UnknownPayload and p.critical else 0, 4 + len(body)))
        except struct.error:
            raise BufferWriteError(f"payload of {4 + len(body)} bytes does not fit its 2-byte length") from None
        parts.append(body)
    data = b"".join(parts)
    if buf is not None:
        buf.push_bytes(data)
    return (types[0] if payloads else PayloadType.NONE), data


def decode_payloads(first_type: int, data: bytes, *, inner: bool = False) -> list[AnyPayload]:
    """Decode a payload chain starting with ``first_type``.

    Raises :class:`MalformedMessage` for a structural error (lengths,
    trailing bytes, an SK payload that is not last or inside another SK),
    :class:`~aioipsec.errors.UnsupportedCriticalPayload` (data = the payload
    type octet) for an unknown payload with the critical bit; unknown
    non-critical payloads become :class:`UnknownPayload`."""
    if type(data) is not bytes:
        data = bytes(data)
    out: list[AnyPayload] = []
    ptype = first_type
    end = len(data)
    pos = 0
    hdr = _HDR.unpack_from
    try:
        while ptype != _NONE:
            if pos + 4 > end:
                raise _short(4, pos, end)
            nxt, flags, length = hdr(data, pos)
            if length < GENERIC_PAYLOAD_HEADER_LEN:
                raise _bad(f"payload length {length}")
            stop = pos + length
            if stop > end:
                raise _short(length - GENERIC_PAYLOAD_HEADER_LEN, pos + 4, end)
            body = data[pos + 4 : stop]
            pos = stop
            parse = _PARSERS.get(ptype)
            if parse is not None:
                shared = _SHARED.get(ptype)
                if shared is not None and len(body) <= _SHARED_MAX:
                    out.append(shared.get(body) or shared.remember(body, parse(body)))
                else:
                    out.append(parse(body))
            elif ptype in _ENCRYPTED_TYPES:
                if inner:
                    raise _bad("encrypted payload inside an encrypted payload")
                if pos != end:
                    raise _bad("the encrypted payload is not the last payload")
                out.append(PAYLOAD_CLASSES[ptype].decode_body(Buffer(body), nxt))
                return out
            else:
                cls = PAYLOAD_CLASSES.get(ptype)
                if cls is None:
                    if flags & 0x80:
                        raise UnsupportedCriticalPayload(f"unknown critical payload type {ptype}", bytes([ptype]))
                    out.append(UnknownPayload(ptype, False, body))
                else:
                    out.append(cls.decode_body(Buffer(body)))
            ptype = nxt
    except BufferReadError as exc:
        raise _bad(f"truncated payload: {exc}") from None
    except struct.error as exc:  # pragma: no cover - every unpack above is bounds-checked first
        raise _bad(f"truncated payload: {exc}") from None
    if pos != end:
        raise _bad(f"{end - pos} octets after the last payload")
    return out


_NOTIFY_MEMBERS: dict[int, NotifyType] = dict(NotifyType._value2member_map_)  # type: ignore[arg-type]
_PARSERS: dict[int, Callable[[bytes], AnyPayload]] = {
    cls.payload_type: cls._parse  # type: ignore[attr-defined]
    for cls in (SaPayload, KePayload, IdiPayload, IdrPayload, AuthPayload, NoncePayload, NotifyPayload, TsiPayload, TsrPayload)
}
"""Payload types whose decoders parse bytes directly (the others get a Buffer)."""

_SHARED_SIZE, _SHARED_MAX = 256, 64
_SHARED: dict[int, BoundedCache] = {
    t: BoundedCache(_SHARED_SIZE)
    for t in (PayloadType.NOTIFY, PayloadType.IDi, PayloadType.IDr, PayloadType.TSi, PayloadType.TSr)}
"""Body -> decoded payload, per payload type, for the types whose bodies
repeat from one handshake to the next (status notifies, a peer's identities,
its traffic selectors): a hit is the same frozen object a parse of the same
bytes would equal.  Bodies of at most ``_SHARED_MAX`` octets; the NAT-D
hashes change every time and pass through."""


# =========================================================================== proposals <-> registry

_PROTOCOL_IDS = {"ike": ProtocolId.IKE, "ah": ProtocolId.AH, "esp": ProtocolId.ESP}
_PROTOCOL_NAMES = {v: k for k, v in _PROTOCOL_IDS.items()}


def proposal_to_sa(proposal: Proposal, num: int, spi: bytes = b"") -> SaProposal:
    """One configured proposal as an SA payload proposal (transforms in the
    registry's wire order, ENCR with a Key Length attribute when it has one)."""
    transforms: list[Transform] = []
    for ttype, alg in proposal.transforms():
        attrs: tuple[TransformAttribute, ...] = ()
        if isinstance(alg, EncrAlg) and alg.has_key_length_attr:
            attrs = (TransformAttribute(TransformAttr.KEY_LENGTH, alg.key_bits),)
        transforms.append(Transform(int(ttype), int(alg.id), attrs))
    return SaProposal(num, _PROTOCOL_IDS[proposal.protocol], spi, tuple(transforms))


def sa_proposal_to_proposal(sap: SaProposal) -> Proposal | None:
    """The algorithms of a received proposal that the registry knows, as a
    :class:`Proposal`; ``None`` when the protocol is unknown, a transform
    type is unknown (RFC 7296 §3.3.6: the proposal cannot be accepted) or a
    transform type lists only unknown algorithms.  Transforms with
    attributes other than Key Length are skipped as unknown."""
    protocol = _PROTOCOL_NAMES.get(sap.protocol)  # type: ignore[call-overload]
    if protocol is None:
        return None
    found: dict[int, list[object]] = {}
    seen_types: set[int] = set()
    for t in sap.transforms:
        try:
            ttype = TransformType(t.transform_type)
        except ValueError:
            return None
        seen_types.add(ttype)
        if any(a.attr_type != TransformAttr.KEY_LENGTH for a in t.attributes):
            continue
        alg = by_id(ttype, t.transform_id, t.key_length)
        if alg is None:
            continue
        if ttype != TransformType.ENCR and t.key_length is not None:
            continue
        if isinstance(alg, EncrAlg) and not alg.has_key_length_attr and t.key_length is not None:
            continue
        lst = found.setdefault(ttype, [])
        if alg not in lst:
            lst.append(alg)
    for ttype in seen_types:
        if ttype not in found:
            # e.g. only KE "NONE" (0) listed: no key exchange, fine; anything else unusable
            if ttype == TransformType.KE and all(
                t.transform_id == 0 for t in sap.transforms if t.transform_type == TransformType.KE
            ):
                continue
            return None

    def typed(ttype: TransformType, kind: type) -> tuple:  # type: ignore[type-arg]
        return tuple(a for a in found.get(ttype, []) if isinstance(a, kind))

    return Proposal(
        protocol,
        typed(TransformType.ENCR, EncrAlg),
        typed(TransformType.INTEG, IntegAlg),
        typed(TransformType.PRF, PrfAlg),
        typed(TransformType.KE, KeAlg),
        typed(TransformType.ESN, EsnAlg),
    )


def sa_to_proposals(sa: SaPayload | Iterable[SaProposal]) -> list[tuple[SaProposal, Proposal | None]]:
    """Each proposal of an SA payload with its registry form (see
    :func:`sa_proposal_to_proposal`), in the peer's order of preference."""
    props = sa.proposals if isinstance(sa, SaPayload) else tuple(sa)
    return [(p, sa_proposal_to_proposal(p)) for p in props]
