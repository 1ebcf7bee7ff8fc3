"""Wireshark (tshark) as an independent judge of the IKEv2 encoder: our
messages dissect without malformed/expert warnings, and with the keys in its
ikev2_decryption_table Wireshark decrypts our SK payloads and finds the ICV
correct.  Only a pcap file is written; nothing goes on the network.  Skips
when tshark is not installed."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from aioipsec.crypto import transforms as T
from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.v2.fragment import fragment_message
from aioipsec.ike.v2.message import Message, SkContext, encode_message
from aioipsec.ike.v2.payloads import (
    AuthPayload,
    CpAttribute,
    CpPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    TsiPayload,
    TsrPayload,
    VendorPayload,
    make_id,
    proposal_to_sa,
)
from aioipsec.selectors import TrafficSelector

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


def _ip_udp(payload: bytes, port: int = 500) -> bytes:
    udp = struct.pack("!HHHH", port, port, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                      bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))  # fmt: skip
    return hdr + udp


def _pcap(path: Path, datagrams: list[bytes]) -> None:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # LINKTYPE_RAW
    for d in datagrams:
        pkt = _ip_udp(d)
        out += struct.pack("<IIII", 0, 0, len(pkt), len(pkt)) + pkt
    path.write_bytes(out)


def _tshark(path: Path, *uat: str) -> str:
    args = [TSHARK or "tshark", "-r", str(path), "-V"]
    for u in uat:
        args += ["-o", f"uat:ikev2_decryption_table:{u}"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return res.stdout


def _sa(spi_i: bytes, spi_r: bytes, encr: str, integ: str | None, wname: str, wint: str) -> tuple[SkContext, str]:
    e = T.encr(encr)
    i = T.integ(integ) if integ else None
    ei, er = os.urandom(e.key_len), os.urandom(e.key_len)
    ai, ar = (os.urandom(i.key_len), os.urandom(i.key_len)) if i else (b"", b"")
    ctx = SkContext(e, i, ei, er, ai, ar, is_initiator=True)
    uat = f'{spi_i.hex()},{spi_r.hex()},{ei.hex()},{er.hex()},"{wname}",{ai.hex()},{ar.hex()},"{wint}"'
    return ctx, uat


def _auth(spi_i: bytes, spi_r: bytes) -> Message:
    return Message(
        ExchangeType.IKE_AUTH,
        spi_i,
        spi_r,
        1,
        initiator=True,
        encrypted=True,
        payloads=[
            IdiPayload(*make_id("site-a.example")),
            IdrPayload(*make_id("192.0.2.2")),
            AuthPayload(2, bytes(32)),
            CpPayload(1, (CpAttribute(1), CpAttribute(3))),
            SaPayload((proposal_to_sa(T.parse_proposal("aes128gcm16-esn", "esp"), 1, b"\x01\x02\x03\x04"),)),
            TsiPayload((TrafficSelector.from_cidr("198.51.100.0/24", 6, (443, 443)),)),
            TsrPayload((TrafficSelector.from_cidr("2001:db8::/32"),)),
            NotifyPayload(NotifyType.INITIAL_CONTACT),
            NotifyPayload(NotifyType.REKEY_SA, protocol=3, spi=b"\x0a\x0b\x0c\x0d"),
        ],
    )


def test_tshark_dissects_and_decrypts(tmp_path: Path) -> None:
    spi_a, spi_b, spi_r = b"\x11" * 8, b"\x33" * 8, b"\x22" * 8
    gcm, uat_gcm = _sa(spi_a, spi_r, "aes128gcm16", None, "AES-GCM-128 with 16 octet ICV [RFC5282]", "NONE [RFC4306]")
    cbc, uat_cbc = _sa(spi_b, spi_r, "aes256", "sha256", "AES-CBC-256 [RFC3602]", "HMAC_SHA2_256_128 [RFC4868]")
    init = Message(
        ExchangeType.IKE_SA_INIT,
        spi_a,
        bytes(8),
        0,
        initiator=True,
        payloads=[
            SaPayload((proposal_to_sa(T.parse_proposal("aes128gcm16-prfsha256-x25519"), 1),)),
            KePayload(31, os.urandom(32)),
            NoncePayload(os.urandom(32)),
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, os.urandom(20)),
            NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
            VendorPayload(b"aioipsec"),
        ],
    )
    delete = Message(ExchangeType.INFORMATIONAL, spi_b, spi_r, 2, True, False,
                     [DeletePayload(3, (b"\x01\x02\x03\x04",))], encrypted=True)  # fmt: skip
    pcap = tmp_path / "ike.pcap"
    _pcap(pcap, [encode_message(init), encode_message(_auth(spi_a, spi_r), gcm),
                 encode_message(_auth(spi_b, spi_r), cbc), encode_message(delete, cbc)])  # fmt: skip
    out = _tshark(pcap, uat_gcm, uat_cbc)
    assert "Malformed" not in out and "Expert Info" not in out
    assert out.count("Decrypted Data") == 3
    assert out.count("[correct]") == 3  # the GCM tag and both HMAC ICVs verified by Wireshark
    assert "[incorrect]" not in out
    assert "ID_FQDN: site-a.example" in out
    assert "Starting Addr: 198.51.100.0" in out and "Ending Addr: 198.51.100.255" in out
    assert "Start Port: 443" in out
    assert "Starting Addr: 2001:db8::" in out
    assert "REKEY_SA" in out and "INITIAL_CONTACT" in out and "IKEV2_FRAGMENTATION_SUPPORTED" in out
    assert "Key Exchange Data" in out and "Curve25519" in out
    assert "Payload: Delete (42)" in out


def test_tshark_decrypts_fragments(tmp_path: Path) -> None:
    spi_i, spi_r = b"\x44" * 8, b"\x55" * 8
    ctx, uat = _sa(spi_i, spi_r, "aes256", "sha256", "AES-CBC-256 [RFC3602]", "HMAC_SHA2_256_128 [RFC4868]")
    msg = _auth(spi_i, spi_r)
    frags = fragment_message(msg, ctx, 120)
    assert len(frags) >= 3
    pcap = tmp_path / "frag.pcap"
    _pcap(pcap, frags)
    out = _tshark(pcap, uat)
    assert "Malformed" not in out and "Expert Info" not in out
    assert out.count("Encrypted and Authenticated Fragment") >= len(frags)
    assert out.count("[correct]") == len(frags)  # each fragment's ICV
    # the reassembled message is dissected once all fragments are in
    assert "ID_FQDN: site-a.example" in out
