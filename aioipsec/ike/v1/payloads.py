"""ISAKMP payload codec (RFC 2408 §3, RFC 2407 §4, RFC 3947, IKE fragmentation).

Every payload is a dataclass with ``encode_body()`` (the bytes after the
4-byte generic header) and a ``decode_body(data)`` classmethod.  Decoders keep
the exact body they were given in ``raw`` (excluded from comparisons): RFC 2409
hashes the SA and ID payload bodies *as sent* (``SAi_b``, ``IDii_b``), so the
session never hashes a re-encoding of what the peer sent.

Generic payload header (all payloads)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    ! Next Payload  !   RESERVED    !         Payload Length        !
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Decoding bad input raises :class:`~aioipsec.errors.ParseError` (or its
subclass ``BufferReadError``) and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ...buffer import Buffer
from ...errors import ParseError
from .constants import (
    DOI_IPSEC,
    FRAGMENT_LAST,
    GENERIC_HEADER_LEN,
    ISAKMP_HEADER_LEN,
    ISAKMP_VERSION,
    SIT_IDENTITY_ONLY,
    PayloadType,
)

__all__ = [
    "Attribute",
    "AttributePayload",
    "CertPayload",
    "CertReqPayload",
    "CfgAttribute",
    "DeletePayload",
    "FragmentPayload",
    "HashPayload",
    "IdPayload",
    "IsakmpHeader",
    "KePayload",
    "NatDDraftPayload",
    "NatDPayload",
    "NatOaDraftPayload",
    "NatOaPayload",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "Proposal",
    "SaPayload",
    "SigPayload",
    "Transform",
    "UnknownPayload",
    "VendorIdPayload",
    "decode_chain",
    "encode_chain",
]

# --------------------------------------------------------------------------- header


@dataclass(slots=True)
class IsakmpHeader:
    """The 28-byte ISAKMP header::

        !                 Initiator Cookie (8)                          !
        !                 Responder Cookie (8)                          !
        ! Next Payload  ! MjVer ! MnVer ! Exchange Type !     Flags     !
        !                          Message ID                           !
        !                            Length                             !
    """

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int = 0
    version: int = ISAKMP_VERSION

    @classmethod
    def decode(cls, data: bytes) -> IsakmpHeader:
        if len(data) < ISAKMP_HEADER_LEN:
            raise ParseError(f"ISAKMP message of {len(data)} bytes is shorter than its header")
        buf = Buffer(data[:ISAKMP_HEADER_LEN])
        spi_i = buf.pull_bytes(8)
        spi_r = buf.pull_bytes(8)
        next_payload = buf.pull_uint8()
        version = buf.pull_uint8()
        exchange = buf.pull_uint8()
        flags = buf.pull_uint8()
        message_id = buf.pull_uint32()
        length = buf.pull_uint32()
        if version >> 4 != 1:
            raise ParseError(f"ISAKMP major version {version >> 4} is not 1")
        if length < ISAKMP_HEADER_LEN or length > len(data):
            raise ParseError(f"ISAKMP length {length} does not fit a datagram of {len(data)} bytes")
        return cls(spi_i, spi_r, next_payload, exchange, flags, message_id, length, version)

    def encode(self) -> bytes:
        buf = Buffer()
        buf.push_bytes(self.spi_i)
        buf.push_bytes(self.spi_r)
        buf.push_uint8(self.next_payload)
        buf.push_uint8(self.version)
        buf.push_uint8(self.exchange)
        buf.push_uint8(self.flags)
        buf.push_uint32(self.message_id)
        buf.push_uint32(self.length)
        return buf.data


# --------------------------------------------------------------------------- base


class Payload:
    """Base of all payloads."""

    ptype: ClassVar[int]
    raw: bytes

    def encode_body(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode_body(cls, data: bytes) -> Payload:
        raise NotImplementedError

    @property
    def type(self) -> int:
        return self.ptype

    def body(self) -> bytes:
        """The body as received (``raw``), or freshly encoded for our own payloads."""
        return self.raw if self.raw else self.encode_body()


def _raw() -> bytes:
    return field(default=b"", compare=False, repr=False)  # type: ignore[return-value]


# --------------------------------------------------------------------------- SA


@dataclass(frozen=True, slots=True)
class Attribute:
    """A data attribute (RFC 2408 §3.3)::

        !A!       Attribute Type        !    AF=0  Attribute Length     !
        !                               !    AF=1  Attribute Value      !
        .                   AF=0  Attribute Value                       .

    ``length`` is ``None`` for the basic (TV, AF=1) format, else the number of
    value bytes of the variable (TLV) format.  The value is kept as an
    integer either way (big-endian), which represents every TLV value."""

    type: int
    value: int
    length: int | None = None

    @classmethod
    def make(cls, type: int, value: int) -> Attribute:
        """Basic format when the value fits 16 bits, else 4 (or 8) value bytes
        (what strongSwan sends for long lifetimes)."""
        if value < 0:
            raise ValueError("attribute value must not be negative")
        if value <= 0xFFFF:
            return cls(type, value)
        return cls(type, value, 4 if value <= 0xFFFFFFFF else 8)

    def encode(self, buf: Buffer) -> None:
        if self.length is None:
            buf.push_uint16(0x8000 | self.type)
            buf.push_uint16(self.value)
        else:
            buf.push_uint16(self.type & 0x7FFF)
            buf.push_uint16(self.length)
            buf.push_bytes(self.value.to_bytes(self.length, "big"))

    @classmethod
    def decode(cls, buf: Buffer) -> Attribute:
        t = buf.pull_uint16()
        if t & 0x8000:
            return cls(t & 0x7FFF, buf.pull_uint16())
        n = buf.pull_uint16()
        return cls(t, int.from_bytes(buf.pull_bytes(n), "big"), n)


@dataclass(slots=True)
class Transform:
    """A transform substructure (payload type 3)::

        ! Next Payload  !   RESERVED    !        Payload Length         !
        !  Transform #  !  Transform-Id !           RESERVED2           !
        ~                        SA Attributes                          ~
    """

    number: int
    transform_id: int
    attributes: list[Attribute] = field(default_factory=list)

    def get(self, attr_type: int) -> int | None:
        """Value of the first attribute of this type, or None."""
        for a in self.attributes:
            if a.type == attr_type:
                return a.value
        return None

    def life(self, type_attr: int, duration_attr: int, life_type: int) -> int | None:
        """A lifetime: the duration attribute following a life-type attribute
        of ``life_type`` (RFC 2407 §4.5: type, then duration)."""
        it = iter(self.attributes)
        for a in it:
            if a.type == type_attr and a.value == life_type:
                for b in it:
                    if b.type == duration_attr:
                        return b.value
                    if b.type == type_attr:
                        break
                return None
        return None

    def encode(self, buf: Buffer, last: bool) -> None:
        start = buf.tell()
        buf.push_uint8(0 if last else PayloadType.TRANSFORM)
        buf.push_uint8(0)
        with buf.push_block(2, start=start):
            buf.push_uint8(self.number)
            buf.push_uint8(self.transform_id)
            buf.push_uint16(0)
            for a in self.attributes:
                a.encode(buf)

    @classmethod
    def decode(cls, data: bytes) -> Transform:
        buf = Buffer(data)
        number = buf.pull_uint8()
        tid = buf.pull_uint8()
        buf.pull_uint16()
        attrs = []
        while not buf.eof():
            attrs.append(Attribute.decode(buf))
        return cls(number, tid, attrs)


@dataclass(slots=True)
class Proposal:
    """A proposal substructure (payload type 2)::

        ! Next Payload  !   RESERVED    !         Payload Length        !
        !  Proposal #   !  Protocol-Id  !    SPI Size   !# of Transforms!
        ~                        SPI (variable)                         ~
        ~                        <Transforms>                           ~
    """

    number: int
    protocol: int
    spi: bytes = b""
    transforms: list[Transform] = field(default_factory=list)

    def encode(self, buf: Buffer, last: bool) -> None:
        if len(self.transforms) > 255 or len(self.spi) > 255:
            raise ValueError("too many transforms or SPI too long")
        start = buf.tell()
        buf.push_uint8(0 if last else PayloadType.PROPOSAL)
        buf.push_uint8(0)
        with buf.push_block(2, start=start):
            buf.push_uint8(self.number)
            buf.push_uint8(self.protocol)
            buf.push_uint8(len(self.spi))
            buf.push_uint8(len(self.transforms))
            buf.push_bytes(self.spi)
            for i, t in enumerate(self.transforms):
                t.encode(buf, i == len(self.transforms) - 1)

    @classmethod
    def decode(cls, data: bytes) -> Proposal:
        buf = Buffer(data)
        number = buf.pull_uint8()
        protocol = buf.pull_uint8()
        spi_size = buf.pull_uint8()
        count = buf.pull_uint8()
        spi = buf.pull_bytes(spi_size)
        transforms = []
        for _nxt, body in _substructures(buf, PayloadType.TRANSFORM, "transform"):
            transforms.append(Transform.decode(body))
        if len(transforms) != count:
            raise ParseError(f"proposal {number} announces {count} transforms but has {len(transforms)}")
        return cls(number, protocol, spi, transforms)


def _substructures(buf: Buffer, expected_next: int, what: str) -> Iterable[tuple[int, bytes]]:
    """Iterate proposal/transform substructures until a next-payload of 0."""
    nxt = expected_next
    while nxt == expected_next:
        if buf.eof():
            raise ParseError(f"{what} substructure missing")
        nxt = buf.pull_uint8()
        buf.pull_uint8()
        length = buf.pull_uint16()
        if length < GENERIC_HEADER_LEN:
            raise ParseError(f"{what} substructure length {length} too small")
        body = buf.pull_bytes(length - GENERIC_HEADER_LEN)
        if nxt not in (0, expected_next):
            raise ParseError(f"{what} substructure followed by payload type {nxt}")
        yield nxt, body
    if not buf.eof():
        raise ParseError(f"{buf.remaining()} stray bytes after the last {what}")


@dataclass(slots=True)
class SaPayload(Payload):
    """Security Association payload (type 1)::

        !                 Domain of Interpretation  (DOI)               !
        !                           Situation                           !
        ~                          <Proposals>                          ~
    """

    ptype: ClassVar[int] = PayloadType.SA
    proposals: list[Proposal] = field(default_factory=list)
    doi: int = DOI_IPSEC
    situation: int = SIT_IDENTITY_ONLY
    raw: bytes = _raw()

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_uint32(self.doi)
        buf.push_uint32(self.situation)
        for i, p in enumerate(self.proposals):
            p.encode(buf, i == len(self.proposals) - 1)
        return buf.data

    @classmethod
    def decode_body(cls, data: bytes) -> SaPayload:
        buf = Buffer(data)
        doi = buf.pull_uint32()
        situation = buf.pull_uint32()
        if situation != SIT_IDENTITY_ONLY:
            raise ParseError(f"SA situation {situation:#x} is not supported (only SIT_IDENTITY_ONLY)")
        proposals = [Proposal.decode(body) for _n, body in _substructures(buf, PayloadType.PROPOSAL, "proposal")]
        return cls(proposals, doi, situation, raw=bytes(data))


# --------------------------------------------------------------------------- opaque payloads


@dataclass(slots=True)
class _DataPayload(Payload):
    data: bytes = b""
    raw: bytes = _raw()

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, data: bytes) -> _DataPayload:
        return cls(bytes(data), raw=bytes(data))


@dataclass(slots=True)
class KePayload(_DataPayload):
    """Key Exchange payload (type 4): the public value."""

    ptype: ClassVar[int] = PayloadType.KE


@dataclass(slots=True)
class HashPayload(_DataPayload):
    """Hash payload (type 8): HASH_I/HASH_R or a Phase 2 HASH."""

    ptype: ClassVar[int] = PayloadType.HASH


@dataclass(slots=True)
class SigPayload(_DataPayload):
    """Signature payload (type 9): SIG_I/SIG_R."""

    ptype: ClassVar[int] = PayloadType.SIG


@dataclass(slots=True)
class NoncePayload(_DataPayload):
    """Nonce payload (type 10)."""

    ptype: ClassVar[int] = PayloadType.NONCE


@dataclass(slots=True)
class VendorIdPayload(_DataPayload):
    """Vendor ID payload (type 13)."""

    ptype: ClassVar[int] = PayloadType.VENDOR_ID


@dataclass(slots=True)
class NatDPayload(_DataPayload):
    """NAT-D payload (type 20, RFC 3947; 130 in the drafts): HASH(CKY-I | CKY-R | IP | Port)."""

    ptype: ClassVar[int] = PayloadType.NAT_D


@dataclass(slots=True)
class NatDDraftPayload(NatDPayload):
    """NAT-D of draft-ietf-ipsec-nat-t-ike-02/03 (type 130)."""

    ptype: ClassVar[int] = PayloadType.NAT_D_DRAFT


@dataclass(slots=True)
class UnknownPayload(Payload):
    """A payload type this codec does not interpret; kept, ignored by the tasks."""

    ptype: ClassVar[int] = -1
    payload_type: int = 0
    data: bytes = b""
    raw: bytes = _raw()

    @property
    def type(self) -> int:
        return self.payload_type

    def encode_body(self) -> bytes:
        return self.data


# --------------------------------------------------------------------------- ID, NAT-OA


@dataclass(slots=True)
class IdPayload(Payload):
    """Identification payload (type 5, IPsec DOI form, RFC 2407 §4.6.2)::

        !   ID Type     !  Protocol ID  !             Port              !
        ~                     Identification Data                       ~
    """

    ptype: ClassVar[int] = PayloadType.ID
    id_type: int = 0
    protocol: int = 0
    port: int = 0
    data: bytes = b""
    raw: bytes = _raw()

    def encode_body(self) -> bytes:
        return bytes((self.id_type, self.protocol)) + self.port.to_bytes(2, "big") + self.data

    @classmethod
    def decode_body(cls, data: bytes) -> IdPayload:
        if len(data) < 4:
            raise ParseError(f"{PayloadType(cls.ptype).name} payload body of {len(data)} bytes is too short")
        return cls(data[0], data[1], int.from_bytes(data[2:4], "big"), bytes(data[4:]), raw=bytes(data))


@dataclass(slots=True)
class NatOaPayload(IdPayload):
    """NAT-OA payload (type 21, RFC 3947 §5.2): same layout as an ID payload
    (ID type IPv4/IPv6 address, reserved fields zero)."""

    ptype: ClassVar[int] = PayloadType.NAT_OA


@dataclass(slots=True)
class NatOaDraftPayload(IdPayload):
    """NAT-OA of the NAT-T drafts (type 131)."""

    ptype: ClassVar[int] = PayloadType.NAT_OA_DRAFT


# --------------------------------------------------------------------------- certificates


@dataclass(slots=True)
class CertPayload(Payload):
    """Certificate payload (type 6): encoding, then the certificate data."""

    ptype: ClassVar[int] = PayloadType.CERT
    encoding: int = 0
    data: bytes = b""
    raw: bytes = _raw()

    def encode_body(self) -> bytes:
        return bytes((self.encoding,)) + self.data

    @classmethod
    def decode_body(cls, data: bytes) -> CertPayload:
        if len(data) < 1:
            raise ParseError("empty CERT payload")
        return cls(data[0], bytes(data[1:]), raw=bytes(data))


@dataclass(slots=True)
class CertReqPayload(CertPayload):
    """Certificate Request payload (type 7): certificate type, then a CA
    (the DER distinguished name; empty means any)."""

    ptype: ClassVar[int] = PayloadType.CERTREQ


# --------------------------------------------------------------------------- notify, delete


@dataclass(slots=True)
class NotifyPayload(Payload):
    """Notification payload (type 11)::

        !              Domain of Interpretation  (DOI)                  !
        !  Protocol-ID  !   SPI Size    !      Notify Message Type      !
        ~                Security Parameter Index (SPI)                 ~
        ~                       Notification Data                       ~
    """

    ptype: ClassVar[int] = PayloadType.NOTIFY
    notify_type: int = 0
    protocol: int = 0
    spi: bytes = b""
    data: bytes = b""
    doi: int = DOI_IPSEC
    raw: bytes = _raw()

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_uint32(self.doi)
        buf.push_uint8(self.protocol)
        buf.push_uint8(len(self.spi))
        buf.push_uint16(self.notify_type)
        buf.push_bytes(self.spi)
        buf.push_bytes(self.data)
        return buf.data

    @classmethod
    def decode_body(cls, data: bytes) -> NotifyPayload:
        buf = Buffer(data)
        doi = buf.pull_uint32()
        protocol = buf.pull_uint8()
        spi_size = buf.pull_uint8()
        notify_type = buf.pull_uint16()
        spi = buf.pull_bytes(spi_size)
        return cls(notify_type, protocol, spi, buf.pull_rest(), doi, raw=bytes(data))


@dataclass(slots=True)
class DeletePayload(Payload):
    """Delete payload (type 12)::

        !              Domain of Interpretation  (DOI)                  !
        !  Protocol-Id  !   SPI Size    !           # of SPIs           !
        ~               Security Parameter Index(es) (SPI)              ~
    """

    ptype: ClassVar[int] = PayloadType.DELETE
    protocol: int = 0
    spis: list[bytes] = field(default_factory=list)
    spi_size: int = 4
    doi: int = DOI_IPSEC
    raw: bytes = _raw()

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_uint32(self.doi)
        buf.push_uint8(self.protocol)
        buf.push_uint8(self.spi_size)
        buf.push_uint16(len(self.spis))
        for spi in self.spis:
            if len(spi) != self.spi_size:
                raise ValueError(f"SPI of {len(spi)} bytes in a delete with SPI size {self.spi_size}")
            buf.push_bytes(spi)
        return buf.data

    @classmethod
    def decode_body(cls, data: bytes) -> DeletePayload:
        buf = Buffer(data)
        doi = buf.pull_uint32()
        protocol = buf.pull_uint8()
        spi_size = buf.pull_uint8()
        count = buf.pull_uint16()
        spis = [buf.pull_bytes(spi_size) for _ in range(count)]
        if not buf.eof():
            raise ParseError(f"{buf.remaining()} stray bytes in DELETE payload")
        return cls(protocol, spis, spi_size, doi, raw=bytes(data))


# --------------------------------------------------------------------------- attribute (Mode Config / XAUTH)

MAX_CFG_ATTRIBUTES = 64
"""Attributes accepted in one attribute payload (more is malformed)."""


@dataclass(frozen=True, slots=True)
class CfgAttribute:
    """A Mode Config / XAUTH attribute (draft-dukes-ike-mode-cfg §3.3): the
    data-attribute format of RFC 2408 §3.3, but a variable (TLV) value is
    bytes (a user name, an address), not a number.  ``tv``: the basic
    format, whose value is two bytes (``XAUTH_TYPE``, ``XAUTH_STATUS``)."""

    type: int
    value: bytes = b""
    tv: bool = False

    @classmethod
    def basic(cls, type: int, value: int) -> CfgAttribute:
        return cls(type, value.to_bytes(2, "big"), True)

    @property
    def int_value(self) -> int:
        return int.from_bytes(self.value, "big")

    def __repr__(self) -> str:  # never show values: a password may be one
        return f"CfgAttribute({self.type}, {len(self.value)} bytes{', TV' if self.tv else ''})"


@dataclass(slots=True)
class AttributePayload(Payload):
    """Attribute payload (type 14, draft-dukes-ike-mode-cfg §3.2)::

        !     Type      !   RESERVED    !           Identifier          !
        ~                           Attributes                          ~
    """

    ptype: ClassVar[int] = PayloadType.ATTRIBUTE
    cfg_type: int = 0
    identifier: int = 0
    attributes: list[CfgAttribute] = field(default_factory=list)
    raw: bytes = _raw()

    def get(self, attr_type: int) -> CfgAttribute | None:
        return next((a for a in self.attributes if a.type == attr_type), None)

    def encode_body(self) -> bytes:
        buf = Buffer()
        buf.push_uint8(self.cfg_type)
        buf.push_uint8(0)
        buf.push_uint16(self.identifier)
        for a in self.attributes:
            if a.tv:
                if len(a.value) != 2:
                    raise ValueError("a basic-format attribute has a 2-byte value")
                buf.push_uint16(0x8000 | a.type)
                buf.push_bytes(a.value)
            else:
                buf.push_uint16(a.type & 0x7FFF)
                buf.push_uint16(len(a.value))
                buf.push_bytes(a.value)
        return buf.data

    @classmethod
    def decode_body(cls, data: bytes) -> AttributePayload:
        if len(data) < 4:
            raise ParseError("attribute payload too short")
        buf = Buffer(data)
        cfg_type = buf.pull_uint8()
        buf.pull_uint8()
        identifier = buf.pull_uint16()
        attrs: list[CfgAttribute] = []
        while not buf.eof():
            if len(attrs) >= MAX_CFG_ATTRIBUTES:
                raise ParseError(f"more than {MAX_CFG_ATTRIBUTES} attributes")
            t = buf.pull_uint16()
            if t & 0x8000:
                attrs.append(CfgAttribute(t & 0x7FFF, buf.pull_bytes(2), True))
            else:
                n = buf.pull_uint16()
                attrs.append(CfgAttribute(t, buf.pull_bytes(n)))
        return cls(cfg_type, identifier, attrs, raw=bytes(data))


# --------------------------------------------------------------------------- fragment


@dataclass(slots=True)
class FragmentPayload(Payload):
    """IKEv1 fragment payload (type 132, Cisco/strongSwan)::

        !          Fragment ID          !  Fragment #   !     Flags     !
        ~                         Fragment Data                         ~

    Flags bit 0 marks the last fragment.  The data are a slice of the whole
    (already encrypted) ISAKMP message, header included."""

    ptype: ClassVar[int] = PayloadType.FRAGMENT
    fragment_id: int = 1
    number: int = 1
    last: bool = False
    data: bytes = b""
    raw: bytes = _raw()

    def encode_body(self) -> bytes:
        return (
            self.fragment_id.to_bytes(2, "big")
            + bytes((self.number, FRAGMENT_LAST if self.last else 0))
            + self.data
        )

    @classmethod
    def decode_body(cls, data: bytes) -> FragmentPayload:
        if len(data) < 4:
            raise ParseError("fragment payload too short")
        return cls(
            int.from_bytes(data[0:2], "big"), data[2], bool(data[3] & FRAGMENT_LAST), bytes(data[4:]), raw=bytes(data)
        )


# --------------------------------------------------------------------------- chains

PAYLOAD_CLASSES: dict[int, type[Payload]] = {
    PayloadType.SA: SaPayload,
    PayloadType.KE: KePayload,
    PayloadType.ID: IdPayload,
    PayloadType.CERT: CertPayload,
    PayloadType.CERTREQ: CertReqPayload,
    PayloadType.HASH: HashPayload,
    PayloadType.SIG: SigPayload,
    PayloadType.NONCE: NoncePayload,
    PayloadType.NOTIFY: NotifyPayload,
    PayloadType.DELETE: DeletePayload,
    PayloadType.VENDOR_ID: VendorIdPayload,
    PayloadType.NAT_D: NatDPayload,
    PayloadType.NAT_D_DRAFT: NatDDraftPayload,
    PayloadType.NAT_OA: NatOaPayload,
    PayloadType.NAT_OA_DRAFT: NatOaDraftPayload,
    PayloadType.FRAGMENT: FragmentPayload,
    PayloadType.ATTRIBUTE: AttributePayload,
}

_NOT_IN_CHAINS = (PayloadType.PROPOSAL, PayloadType.TRANSFORM)


@dataclass(slots=True)
class DecodedChain:
    """Payloads of one message and where they sit in the body."""

    payloads: list[Payload]
    spans: list[tuple[int, int]]
    """(start, end) offset of each payload, generic header included."""
    end: int
    """Offset after the last payload (everything beyond is padding)."""


def decode_chain(first: int, data: bytes) -> DecodedChain:
    """Decode the payload chain starting with type ``first``.

    Trailing bytes after the payload whose next-payload field is 0 are
    padding (encrypted messages) and ignored."""
    payloads: list[Payload] = []
    spans: list[tuple[int, int]] = []
    buf = Buffer(data)
    ptype = first
    while ptype != PayloadType.NONE:
        if ptype in _NOT_IN_CHAINS:
            raise ParseError(f"payload type {ptype} outside an SA payload")
        start = buf.tell()
        nxt = buf.pull_uint8()
        buf.pull_uint8()
        length = buf.pull_uint16()
        if length < GENERIC_HEADER_LEN:
            raise ParseError(f"payload type {ptype} has length {length}")
        body = buf.pull_bytes(length - GENERIC_HEADER_LEN)
        cls = PAYLOAD_CLASSES.get(ptype)
        if cls is None:
            payload: Payload = UnknownPayload(payload_type=ptype, data=body, raw=body)
        else:
            payload = cls.decode_body(body)
        payloads.append(payload)
        spans.append((start, buf.tell()))
        if len(payloads) > 512:
            raise ParseError("too many payloads")
        ptype = nxt
    return DecodedChain(payloads, spans, buf.tell())


def encode_chain(payloads: Sequence[Payload]) -> tuple[int, bytes]:
    """Encode payloads with their generic headers; returns (first type, bytes)."""
    buf = Buffer()
    for i, p in enumerate(payloads):
        nxt = payloads[i + 1].type if i + 1 < len(payloads) else PayloadType.NONE
        start = buf.tell()
        buf.push_uint8(nxt)
        buf.push_uint8(0)
        with buf.push_block(2, start=start):
            buf.push_bytes(p.body())
    first = payloads[0].type if payloads else PayloadType.NONE
    return first, buf.data
