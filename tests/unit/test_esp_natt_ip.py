"""IP header helpers and RFC 3948 NAT-T helpers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioipsec.esp import natt
from aioipsec.esp.ip import checksum, header_info, ipv4_header, ipv6_header, pack_addr


def test_checksum_rfc1071_example() -> None:
    # RFC 1071 §3 example words 0001 f203 f4f5 f6f7 -> sum ddf2, checksum 220d
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    hdr = ipv4_header("192.0.2.1", "198.51.100.2", 17, 100, ttl=3, ident=0x1234)
    assert checksum(hdr) == 0
    assert hdr[8] == 3 and hdr[9] == 17 and int.from_bytes(hdr[2:4], "big") == 120


def test_pack_addr_forms() -> None:
    assert pack_addr("192.0.2.1") == bytes([192, 0, 2, 1])
    assert pack_addr(bytes(16)) == bytes(16)
    assert pack_addr(0xC0000201) == bytes([192, 0, 2, 1])
    assert len(pack_addr("2001:db8::1")) == 16
    with pytest.raises(ValueError):
        pack_addr(b"\x01\x02")


def test_header_info_ipv4_and_ipv6_extension_walk() -> None:
    v4 = ipv4_header("192.0.2.1", "192.0.2.2", 6, 8) + bytes(8)
    i = header_info(v4)
    assert (i.version, i.insert_at, i.nh_offset, i.next_header, i.total_len) == (4, 20, 9, 6, 28)
    # IPv6: HbH -> Routing -> DstOpts -> UDP: ESP goes before the final DstOpts
    udp = bytes(8)
    hbh = bytes([43, 0]) + bytes(6)
    rh = bytes([60, 0, 0, 0]) + bytes(4)
    dst = bytes([17, 0]) + bytes(6)
    pkt = ipv6_header("2001:db8::1", "2001:db8::2", 0, 32) + hbh + rh + dst + udp
    i = header_info(pkt)
    assert (i.version, i.insert_at, i.nh_offset, i.next_header) == (6, 56, 48, 60)
    # Destination Options before a Routing header stay in front
    pkt2 = ipv6_header("2001:db8::1", "2001:db8::2", 60, 24) + bytes([43, 0]) + bytes(6) + bytes([17, 0, 0, 0]) + bytes(4) + udp
    assert header_info(pkt2).insert_at == 56


@given(st.binary(max_size=80))
def test_header_info_never_raises(blob: bytes) -> None:
    info = header_info(blob)
    if info is not None:
        assert info.insert_at <= info.total_len <= len(blob)


def test_udp4500_demux() -> None:
    assert natt.classify(b"\xff") is natt.UdpKind.KEEPALIVE
    assert natt.classify(natt.NON_ESP_MARKER + b"ike...") is natt.UdpKind.IKE
    assert natt.classify(b"\x00\x00\x12\x34" + bytes(20)) is natt.UdpKind.ESP
    assert natt.classify(b"\x01\x02") is natt.UdpKind.INVALID
    assert natt.is_esp_in_udp(b"\x00\x00\x12\x34" + bytes(20))
    assert not natt.is_esp_in_udp(natt.NON_ESP_MARKER + bytes(20))
    assert not natt.is_esp_in_udp(natt.NAT_KEEPALIVE)
    assert natt.is_keepalive(natt.NAT_KEEPALIVE)
    assert natt.strip_non_esp_marker(natt.add_non_esp_marker(b"msg")) == b"msg"
    assert natt.strip_non_esp_marker(b"\x01\x02\x03\x04msg") is None
    assert natt.udp_header(4500, 4500, 100) == struct.pack("!HHHH", 4500, 4500, 108, 0)


def _l4_ok(pkt: bytes) -> bool:
    info = header_info(pkt)
    seg = pkt[info.insert_at : info.total_len]
    if info.version == 4:
        pseudo = pkt[12:20] + struct.pack("!BBH", 0, info.next_header, len(seg))
    else:
        pseudo = pkt[8:40] + struct.pack("!IxxxB", len(seg), info.next_header)
    return checksum(pseudo + seg) == 0


@pytest.mark.parametrize("proto", [6, 17])
@pytest.mark.parametrize("v", [4, 6])
def test_transport_checksum_fixed_after_nat(proto: int, v: int) -> None:
    if proto == 6:
        seg = struct.pack("!HHIIBBHHH", 1000, 80, 1, 0, 0x50, 0x02, 1024, 0xBEEF, 0) + b"data"
    else:
        seg = struct.pack("!HHHH", 1000, 53, 8 + 4, 0xBEEF) + b"data"
    if v == 4:
        pkt = ipv4_header("203.0.113.5", "192.0.2.2", proto, len(seg)) + seg
    else:
        pkt = ipv6_header("2001:db8::5", "2001:db8::2", proto, len(seg)) + seg
    assert not _l4_ok(pkt)
    fixed = natt.fix_transport_checksum(pkt)
    assert _l4_ok(fixed) and len(fixed) == len(pkt)
    assert natt.fix_transport_checksum(b"\x00junk") == b"\x00junk"
