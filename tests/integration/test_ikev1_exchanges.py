"""IKEv1 in memory: Main Mode + Quick Mode with and without PFS, Aggressive
Mode, exact message counts, events, log lines, and ESP packets through the
negotiated SAs in both directions."""

from __future__ import annotations

import logging
import struct

import pytest

from aioipsec.esp.sa import esp_sa_pair_from_event
from aioipsec.events import ChildSaInstalled, ExchangeStep, IkeSaEstablished
from aioipsec.ike.v1.constants import ExchangeType, PayloadType
from aioipsec.ike.v1.message import decode_message, peek_header
from aioipsec.ike.v1.payloads import KePayload

from ikev1_pair import ADDR_I, ADDR_R, Pair, psk_configs

MM, AM, QM = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE, ExchangeType.QUICK_MODE


def _established(p: Pair) -> tuple[ChildSaInstalled, ChildSaInstalled]:
    (ike_i,) = p.of("i", IkeSaEstablished)
    (ike_r,) = p.of("r", IkeSaEstablished)
    assert ike_i.version == ike_r.version == 1
    assert ike_i.initiator and not ike_r.initiator
    assert (ike_i.spi_i, ike_i.spi_r) == (ike_r.spi_i, ike_r.spi_r)
    assert ike_i.spi_r != bytes(8)
    (ci,) = p.of("i", ChildSaInstalled)
    (cr,) = p.of("r", ChildSaInstalled)
    # both directions' keys agree
    assert (ci.spi_in, ci.spi_out) == (cr.spi_out, cr.spi_in)
    assert ci.encr_key_out == cr.encr_key_in and ci.integ_key_out == cr.integ_key_in
    assert ci.encr_key_in == cr.encr_key_out and ci.integ_key_in == cr.integ_key_out
    assert ci.encr_key_in != ci.encr_key_out
    assert ci.local_ts == cr.remote_ts and ci.remote_ts == cr.local_ts
    assert ci.ike_spi_i == ike_i.spi_i
    return ci, cr


def test_main_mode_quick_mode_no_pfs(caplog: pytest.LogCaptureFixture) -> None:
    """strongSwan template d1: MM PSK aes128-sha1-modp2048, ESP aes128-sha1, no PFS."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    ci_cfg, cr_cfg = psk_configs(dpd_delay=0)
    p = Pair(ci_cfg, cr_cfg)
    p.start()
    assert [(d.sender, d.exchange) for d in p.wire] == [
        ("i", MM), ("r", MM), ("i", MM), ("r", MM), ("i", MM), ("r", MM), ("i", QM), ("r", QM), ("i", QM)
    ]
    assert [peek_header(d.data).flags & 1 for d in p.wire] == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    ci, cr = _established(p)
    assert ci.algorithms == "aes128-sha1" and ci.encr is not None and ci.encr.name == "aes128"
    assert len(ci.encr_key_in) == 16 and len(ci.integ_key_in) == 20
    assert ci.mode == "tunnel" and not ci.encap and ci.protocol == "esp"
    assert (ci.local_addr, ci.remote_addr) == (ADDR_I, ADDR_R)
    assert str(ci.local_ts[0]) == "10.1.0.0/16" and str(ci.remote_ts[0]) == "10.2.0.0/16"
    assert ci.lifetime_hard == cr.lifetime_hard == 3960.0
    assert p.of("i", IkeSaEstablished)[0].algorithms == "aes128-sha1-modp2048"
    # no KE payload in Quick Mode without PFS
    keys = p.i.sas[0].keys
    assert keys is not None
    assert p.steps("i") == [
        "MM1 sent", "MM2 received", "MM3 sent", "MM4 received", "MM5 sent", "MM6 received",
        "IKE Phase 1 complete", "QM1 sent", "QM2 received", "IPsec SA established", "QM3 sent",
    ]
    assert p.steps("r") == [
        "MM1 received", "MM2 sent", "MM3 received", "MM4 sent", "MM5 received", "MM6 sent",
        "IKE Phase 1 complete", "QM1 received", "QM2 sent", "QM3 received", "IPsec SA established",
    ]
    cookies = p.i.sas[0].cookies
    lines = [r.getMessage() for r in caplog.records if r.name == "aioipsec.ike"]
    assert f"MM1 received peer=192.0.2.1 cookies={cookies}" in lines
    assert f"IKE Phase 1 complete peer=198.51.100.2[198.51.100.2] cookies={cookies}" in lines
    assert f"IPsec SA established peer=192.0.2.1[192.0.2.1] cookies={cookies}" in lines
    step = p.of("i", ExchangeStep)[0]
    assert step.peer == "198.51.100.2" and step.details == {"cookies": p.wire and step.details["cookies"]}
    # nothing left to do but timers
    assert p.pump() == 0
    assert not any(str(ci.encr_key_in.hex()) in line for line in lines), "key material must never be logged"


def test_main_mode_quick_mode_with_pfs() -> None:
    """strongSwan template d2: aes256-sha256-modp2048, ESP aes256-sha256 PFS modp2048."""
    ci_cfg, cr_cfg = psk_configs(proposals=["aes256-sha256-modp2048"], esp=["aes256-sha256-modp2048"], dpd_delay=0)
    p = Pair(ci_cfg, cr_cfg)
    p.start()
    assert len(p.wire) == 9
    ci, cr = _established(p)
    assert ci.algorithms == "aes256-sha256-modp2048"
    assert len(ci.encr_key_in) == 32 and len(ci.integ_key_in) == 32 and ci.integ is not None and ci.integ.icv_len == 16
    # QM1 and QM2 carry KE payloads of 256 bytes (decrypt with the initiator's keys)
    keys = p.i.sas[0].keys
    assert keys is not None
    mm6 = p.wire[5].data
    qm1 = p.wire[6].data
    from aioipsec.ike.v1.iv import IvManager

    iv = IvManager("sha256", 16)
    iv.init_phase1(b"", b"")
    iv.update_iv(0, mm6[-16:])
    iv.confirm_iv(0)
    msg, _ = decode_message(qm1, keys.encr, iv.get_iv(peek_header(qm1).message_id))
    ke = msg.get(KePayload)
    assert ke is not None and len(ke.data) == 256
    assert [p_.type for p_ in msg.payloads] == [
        PayloadType.HASH, PayloadType.SA, PayloadType.NONCE, PayloadType.KE, PayloadType.ID, PayloadType.ID
    ]


def test_pfs_changes_the_keys() -> None:
    """Same nonces and cookies (seeded), with and without PFS: different KEYMAT."""
    a = Pair(*psk_configs(esp=["aes128-sha1"], dpd_delay=0))
    a.start()
    b = Pair(*psk_configs(esp=["aes128-sha1-modp2048"], dpd_delay=0))
    b.start()
    ka = a.of("i", ChildSaInstalled)[0]
    kb = b.of("i", ChildSaInstalled)[0]
    assert ka.spi_in == kb.spi_in
    assert ka.encr_key_in != kb.encr_key_in


def test_aggressive_mode() -> None:
    """strongSwan template e: AM PSK aes256-sha256-modp2048, FQDN IDs, ESP aes128-sha256 PFS modp2048."""
    ci_cfg, cr_cfg = psk_configs(
        proposals=["aes256-sha256-modp2048"],
        esp=["aes128-sha256-modp2048"],
        aggressive=True,
        ids=("site-a.example", "hq.example"),
        dpd_delay=0,
    )
    p = Pair(ci_cfg, cr_cfg)
    p.start()
    assert [(d.sender, d.exchange) for d in p.wire] == [
        ("i", AM), ("r", AM), ("i", AM), ("i", QM), ("r", QM), ("i", QM)
    ]
    # AM1 and AM2 in the clear, AM3 encrypted (as strongSwan sends it)
    assert [peek_header(d.data).flags & 1 for d in p.wire[:3]] == [0, 0, 1]
    ci, cr = _established(p)
    assert ci.algorithms == "aes128-sha256-modp2048"
    ike_i, ike_r = p.of("i", IkeSaEstablished)[0], p.of("r", IkeSaEstablished)[0]
    assert (ike_i.local_id, ike_i.remote_id) == ("site-a.example", "hq.example")
    assert (ike_r.local_id, ike_r.remote_id) == ("hq.example", "site-a.example")
    assert p.steps("i")[:4] == ["AM1 sent", "AM2 received", "AM3 sent", "IKE Phase 1 complete"]
    assert p.steps("r")[:4] == ["AM1 received", "AM2 sent", "AM3 received", "IKE Phase 1 complete"]


def test_second_child_and_legacy_3des() -> None:
    """A second Quick Mode over the same ISAKMP SA; 3DES/MD5 Phase 1 when
    legacy algorithms are allowed (8-byte CBC blocks, SKEYID_e expansion)."""
    ci_cfg, cr_cfg = psk_configs(proposals=["3des-md5-modp1024"], esp=["3des-sha1"], legacy=True, dpd_delay=0)
    p = Pair(ci_cfg, cr_cfg)
    p.start()
    ci, cr = _established(p)
    assert ci.algorithms == "3des-sha1" and len(ci.encr_key_in) == 24
    assert p.i.sas[0].keys is not None and p.i.sas[0].keys.encr.block_size == 8
    p.clear_events()
    p.i.create_child_sa("net", p.now)
    p.pump()
    assert len(p.wire) == 12
    second_i = p.of("i", ChildSaInstalled)
    second_r = p.of("r", ChildSaInstalled)
    assert len(second_i) == len(second_r) == 1 and second_i[0].rekeyed_from is None
    # the responder cannot tell a second SA for the same selectors from a
    # rekey (IKEv1 has no marker) and treats it as one, like strongSwan
    assert second_r[0].rekeyed_from == cr.spi_in
    assert len(p.i.children) == 2 and len(p.r.children) == 2


def _ipv4(src: str, dst: str, payload: bytes) -> bytes:
    def a(x: str) -> bytes:
        return bytes(int(o) for o in x.split("."))

    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, 17, 0, a(src), a(dst))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:] + payload


@pytest.mark.parametrize("esp", [["aes128-sha1"], ["aes256-sha256-modp2048"], ["aes128gcm16"]])
def test_esp_packets_through_negotiated_sas(esp: list[str]) -> None:
    p = Pair(*psk_configs(esp=esp, dpd_delay=0))
    p.start()
    ci, cr = _established(p)
    in_i, out_i = esp_sa_pair_from_event(ci)
    in_r, out_r = esp_sa_pair_from_event(cr)
    for n in range(3):
        pkt = _ipv4("10.1.0.5", "10.2.0.7", b"ping %d" % n)
        sealed = out_i.seal(pkt)
        assert sealed is not None and sealed[:4] == ci.spi_out.to_bytes(4, "big")
        res = in_r.open(sealed)
        assert res.ok and res.packet == pkt
        back = _ipv4("10.2.0.7", "10.1.0.5", b"pong %d" % n)
        sealed = out_r.seal(back)
        assert sealed is not None
        res = in_i.open(sealed)
        assert res.ok and res.packet == back


def test_ipv6_outer_and_inner() -> None:
    from aioipsec.config import child

    i, r = psk_configs(dpd_delay=0)
    i.children = {"net": child("net", local_ts=["2001:db8:a::/64"], remote_ts=["2001:db8:b::/64"])}
    r.children = {"net": child("net", local_ts=["2001:db8:b::/64"], remote_ts=["2001:db8:a::/64"])}
    p = Pair(i, r, addr_i=("2001:db8::1", 500), addr_r=("2001:db8::2", 500))
    p.start()
    assert len(p.wire) == 9
    ci, cr = _established(p)
    assert p.of("i", IkeSaEstablished)[0].remote_id == "2001:db8::2"
    assert str(cr.local_ts[0]) == "2001:db8:b::/64" and ci.remote_addr == ("2001:db8::2", 500)


def test_transport_mode_host_to_host() -> None:
    """Transport mode with dynamic selectors: the outer addresses."""
    from aioipsec.config import child

    i, r = psk_configs(dpd_delay=0)
    i.children = {"h": child("h", mode="transport")}
    r.children = {"h": child("h", mode="transport")}
    p = Pair(i, r)
    p.i.initiate(p.now, child="h")
    p.pump()
    ci, cr = _established(p)
    assert ci.mode == cr.mode == "transport" and not ci.encap
    assert str(ci.local_ts[0]) == "192.0.2.1/32" and str(ci.remote_ts[0]) == "198.51.100.2/32"
