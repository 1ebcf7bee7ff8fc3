"""IKEv2 message fragmentation (RFC 7383).

The sender serializes the inner payload chain once, cuts it into pieces and
seals each piece in its own Encrypted Fragment (SKF) payload::

    IKE header (Next Payload = SKF, same message ID) |
    SKF header: Next Payload (first inner type in fragment 1, else 0), C, Length,
                Fragment Number (2), Total Fragments (2) |
    IV | ciphertext(piece || padding || pad length) | ICV

AAD/ICV cover the IKE header and the 8-octet SKF header, exactly as for SK.

The receiver verifies every fragment on its own (:class:`Reassembler`),
keeps the decrypted pieces per (message ID, response flag), and decodes the
whole chain once all ``Total Fragments`` are in.  Duplicates and stale
fragments (smaller Total Fragments than already seen) return ``None``; a
larger Total Fragments restarts the collection (the peer re-fragmented with a
smaller size, RFC 7383 §2.6.1).  Memory is bounded: fragments per message,
total octets per message and concurrent messages are parameters.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from ...errors import LocalProtocolError, NotifyError, ParseError
from ..constants import IKE_HEADER_LEN, IKEV2_MAJOR_VERSION, PayloadType
from .message import Header, MalformedHeader, Message, SkContext, _authenticated, peek_header
from .payloads import MalformedMessage, SkfPayload, decode_payloads, encode_payloads

__all__ = [
    "SKF_HEADER_LEN",
    "max_message_size",
    "ReassemblyLimitError",
    "fragment_message",
    "Reassembler",
]

SKF_HEADER_LEN = 8
DEFAULT_MAX_FRAGMENTS = 64
DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGES = 4
_SKF = struct.Struct("!BBHHH")


class ReassemblyLimitError(ParseError):
    """A fragment would exceed the reassembly limits; it (and for the byte
    limit, the partial message) was discarded."""


def max_message_size(mtu: int, *, ipv6: bool, non_esp_marker: bool) -> int:
    """The IKE message size that fits one IP packet of ``mtu`` octets: minus
    the IP header (20 or 40), UDP (8) and, on port 4500, the non-ESP marker
    (4).  RFC 7383 §2.5.1 suggests an MTU of 1280 (IPv6) / 576 (IPv4) when
    the path MTU is unknown."""
    return mtu - (40 if ipv6 else 20) - 8 - (4 if non_esp_marker else 0)


def fragment_message(msg: Message, sk: SkContext, max_size: int) -> list[bytes]:
    """Encrypt ``msg`` (which must be ``encrypted``) into SKF fragments of at
    most ``max_size`` octets each (IKE message size: the caller subtracts
    IP/UDP headers and a non-ESP marker).  Always fragments, even if one
    piece suffices (then Total Fragments = 1); the caller decides whether
    fragmentation is needed (``len(encode_message(msg, sk)) > max_size``)."""
    if not msg.encrypted:
        raise LocalProtocolError("only encrypted messages can be fragmented (RFC 7383 §2.5)")
    first, inner = encode_payloads(msg.payloads)
    piece = sk.max_plaintext(max_size - IKE_HEADER_LEN - SKF_HEADER_LEN)
    if piece < 1:
        raise LocalProtocolError(f"fragment size {max_size} leaves no room for data")
    pieces = [inner[i : i + piece] for i in range(0, len(inner), piece)] or [b""]
    total = len(pieces)
    if total > 0xFFFF:
        raise LocalProtocolError(f"{total} fragments exceed 65535")
    out: list[bytes] = []
    for num, chunk in enumerate(pieces, 1):
        sealed_len = sk.sealed_len(len(chunk))
        length = IKE_HEADER_LEN + SKF_HEADER_LEN + sealed_len
        prefix = msg.header(PayloadType.SKF, length).encode() + _SKF.pack(
            first if num == 1 else 0, 0, SKF_HEADER_LEN + sealed_len, num, total
        )
        out.append(prefix + sk.seal(prefix, chunk))
    return out


def _parse_fragment(data: bytes) -> tuple[Header, SkfPayload]:
    hdr = peek_header(data)
    if hdr.major_version != IKEV2_MAJOR_VERSION:
        raise MalformedHeader(f"major version {hdr.major_version}")
    if hdr.length != len(data):
        raise MalformedHeader(f"length field {hdr.length}, datagram {len(data)}")
    if hdr.next_payload != PayloadType.SKF:
        raise MalformedHeader("not an SKF message")
    payloads = decode_payloads(hdr.next_payload, data[IKE_HEADER_LEN:])
    if len(payloads) != 1 or not isinstance(payloads[0], SkfPayload):
        raise MalformedMessage("SKF message with other payloads")
    return hdr, payloads[0]


@dataclass(slots=True)
class _Partial:
    exchange_type: int
    spi_i: bytes
    spi_r: bytes
    initiator: bool
    minor_version: int
    total: int
    first_payload: int = 0
    pieces: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """Collects the SKF fragments of one IKE SA.

    ``add(data)`` takes one datagram (an IKE message whose first payload is
    SKF) and returns the reassembled :class:`Message` (``encrypted=True``)
    when it completes, else ``None``.  It raises what
    :func:`~aioipsec.ike.v2.message.decode_message` raises for a bad fragment
    (:class:`~aioipsec.errors.IntegrityError` for a tampered one) and
    :class:`ReassemblyLimitError` for a fragment beyond the limits; the state
    of other fragments is kept in both cases (except the byte limit, which
    discards the partial message)."""

    def __init__(
        self,
        sk: SkContext,
        *,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_messages: int = DEFAULT_MAX_MESSAGES,
    ) -> None:
        self.sk = sk
        self.max_fragments = max_fragments
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self._partial: OrderedDict[tuple[int, bool], _Partial] = OrderedDict()
        self.duplicates = 0
        """Fragments ignored as duplicates or stale."""

    def pending(self) -> int:
        """Number of messages being collected."""
        return len(self._partial)

    def discard(self, message_id: int, response: bool) -> None:
        self._partial.pop((message_id, response), None)

    def clear(self) -> None:
        self._partial.clear()

    def open_fragment(self, data: bytes) -> tuple[Header, SkfPayload, bytes]:
        """Parse, verify and decrypt one SKF datagram on its own, without
        touching the reassembly state.  Returns the header, the raw SKF
        payload and the decrypted piece of the inner payload chain."""
        hdr, skf = _parse_fragment(data)
        return hdr, skf, self.sk.open(data[: len(data) - len(skf.data)], skf.data)

    def add(self, data: bytes) -> Message | None:
        hdr, skf = _parse_fragment(data)
        if skf.total_fragments > self.max_fragments:
            raise ReassemblyLimitError(f"{skf.total_fragments} fragments (limit {self.max_fragments})")
        key = (hdr.message_id, hdr.response)
        part = self._partial.get(key)
        if part is not None:
            if skf.total_fragments < part.total or skf.fragment_number in part.pieces and (
                skf.total_fragments == part.total
            ):
                self.duplicates += 1
                return None
        # every fragment is authenticated on its own before it changes state
        piece = self.sk.open(data[: len(data) - len(skf.data)], skf.data)
        if part is not None and (
            part.exchange_type != hdr.exchange_type
            or part.initiator != hdr.initiator
            or (part.spi_i, part.spi_r) != (hdr.spi_i, hdr.spi_r)
        ):
            raise _authenticated(MalformedMessage("fragment does not match the others of its message"))
        if part is None or skf.total_fragments > part.total:
            if part is None and len(self._partial) >= self.max_messages:
                self._partial.popitem(last=False)
            part = _Partial(
                hdr.exchange_type, hdr.spi_i, hdr.spi_r, hdr.initiator, hdr.minor_version, skf.total_fragments
            )
            self._partial[key] = part
        if part.size + len(piece) > self.max_bytes:
            del self._partial[key]
            raise ReassemblyLimitError(f"reassembled message would exceed {self.max_bytes} octets")
        part.pieces[skf.fragment_number] = piece
        part.size += len(piece)
        if skf.fragment_number == 1:
            part.first_payload = skf.next_payload
        if len(part.pieces) < part.total:
            return None
        del self._partial[key]
        chain = b"".join(part.pieces[i] for i in range(1, part.total + 1))
        try:
            inner = decode_payloads(part.first_payload, chain, inner=True)
        except NotifyError as exc:  # MalformedMessage, UnsupportedCriticalPayload
            raise _authenticated(exc) from None
        return Message(
            part.exchange_type,
            part.spi_i,
            part.spi_r,
            hdr.message_id,
            part.initiator,
            hdr.response,
            inner,
            True,
            part.minor_version,
        )
