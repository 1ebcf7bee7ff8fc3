"""UDP encapsulation of ESP (RFC 3948) and NAT-T helpers.

On port 4500 one UDP socket carries three things, told apart by the first
bytes of the payload (RFC 3948 §2.2, §2.3; strongSwan ``receiver.c``):

- four zero bytes (the non-ESP marker): an IKE message follows;
- exactly one byte ``0xFF``: a NAT-keepalive, to be ignored;
- anything else: an ESP packet (its SPI is never zero).
"""

from __future__ import annotations

import enum
import struct

from .ip import PROTO_TCP, PROTO_UDP, checksum, header_info, ipv4_header, ipv6_header, pack_addr

__all__ = [
    "NON_ESP_MARKER",
    "NAT_KEEPALIVE",
    "NATT_PORT",
    "UdpKind",
    "classify",
    "is_esp_in_udp",
    "is_keepalive",
    "add_non_esp_marker",
    "strip_non_esp_marker",
    "udp_header",
    "fix_transport_checksum",
    "transport_packet",
]

NATT_PORT = 4500
NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"
"""The one-byte NAT-keepalive payload (RFC 3948 §2.3)."""


class UdpKind(enum.IntEnum):
    """What a UDP/4500 payload carries."""

    ESP = 0
    IKE = 1
    KEEPALIVE = 2
    INVALID = 3


def classify(payload: bytes) -> UdpKind:
    """Demultiplex a UDP/4500 payload by its first bytes."""
    n = len(payload)
    if n == 1:
        return UdpKind.KEEPALIVE if payload[0] == 0xFF else UdpKind.INVALID
    if n >= 4 and payload[:4] == NON_ESP_MARKER:
        return UdpKind.IKE
    if n >= 8:  # SPI (non-zero) + sequence number at least
        return UdpKind.ESP
    return UdpKind.INVALID


def is_esp_in_udp(payload: bytes) -> bool:
    """True when a UDP/4500 payload is an ESP packet (not IKE, not keepalive)."""
    return len(payload) >= 8 and payload[:4] != NON_ESP_MARKER


def is_keepalive(payload: bytes) -> bool:
    return payload == NAT_KEEPALIVE


def add_non_esp_marker(ike_message: bytes) -> bytes:
    """Prefix an IKE message for sending on port 4500."""
    return NON_ESP_MARKER + ike_message


def strip_non_esp_marker(payload: bytes) -> bytes | None:
    """The IKE message inside a UDP/4500 payload, or ``None`` if it is not IKE."""
    if len(payload) >= 4 and payload[:4] == NON_ESP_MARKER:
        return payload[4:]
    return None


def udp_header(sport: int, dport: int, payload_len: int) -> bytes:
    """UDP header for an ESP-in-UDP packet; checksum 0 (RFC 3948 §2.1 allows
    a zero checksum for IPv4; IPv6 needs the socket layer to compute one)."""
    return struct.pack("!HHHH", sport, dport, 8 + payload_len, 0)


def fix_transport_checksum(packet: bytes) -> bytes:
    """Recompute the TCP/UDP checksum of a transport-mode packet after
    decapsulation behind a NAT (RFC 3948 §3.1.2, "incrementally or fully
    recomputed"): the peer computed it over its own, pre-NAT addresses.
    Other protocols and malformed packets are returned unchanged."""
    info = header_info(packet)
    if info is None or info.next_header not in (PROTO_TCP, PROTO_UDP):
        return packet
    off, end = info.insert_at, info.total_len
    seg = bytearray(packet[off:end])
    ck_at = 16 if info.next_header == PROTO_TCP else 6
    if len(seg) < ck_at + 2:
        return packet
    if info.next_header == PROTO_UDP and info.version == 4 and seg[6:8] == b"\x00\x00":
        return packet  # IPv4 UDP without checksum stays without
    seg[ck_at : ck_at + 2] = b"\x00\x00"
    if info.version == 4:
        pseudo = packet[12:20] + struct.pack("!BBH", 0, info.next_header, len(seg))
    else:
        pseudo = packet[8:40] + struct.pack("!IxxxB", len(seg), info.next_header)
    ck = checksum(pseudo + seg)
    if ck == 0 and info.next_header == PROTO_UDP:
        ck = 0xFFFF
    struct.pack_into("!H", seg, ck_at, ck)
    return bytes(packet[:off]) + bytes(seg) + bytes(packet[end:])


def transport_packet(
    payload: bytes, next_header: int, src: str | bytes | int, dst: str | bytes | int, *, ttl: int = 64
) -> bytes:
    """Rebuild the IP packet of a transport-mode payload received over UDP
    encapsulation (the outer header is gone): a fresh IPv4/IPv6 header from
    ``src`` to ``dst`` and, for TCP/UDP, the checksum recomputed for these
    addresses (RFC 3948 §3.1.2; the peer's NAT may have changed them)."""
    s = pack_addr(src)
    if len(s) == 4:
        pkt = ipv4_header(s, dst, next_header, len(payload), ttl=ttl) + payload
    else:
        pkt = ipv6_header(s, dst, next_header, len(payload), hop_limit=ttl) + payload
    return fix_transport_checksum(pkt)
