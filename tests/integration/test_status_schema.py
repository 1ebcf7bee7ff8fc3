"""``status --json`` keeps its documented schema (aioipsec.status, version 1),
and the text form shows what ``swanctl --list-sas`` / ``show crypto ipsec sa``
show: checked on IKEv2 and IKEv1 pairs with traffic, a replayed and a tampered
packet, on a static-key SA, on an RFC 8784 PPK pair (its PPK_ID, also after an
IKE rekey) and on an AH SA that refused a packet for its IP headers."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from aioipsec.status import endpoint_status, format_status
from aioipsec.testing import IpsecPair, open_pair

OPT_STR = (str, type(None))
OPT_INT = (int, type(None))
OPT_BOOL = (bool, type(None))
OPT_NUM = (int, float, type(None))

# the schema as documented in aioipsec/status.py: exact keys and types
TOP = {"schema": int, "ike_sas": list, "static_children": list, "endpoint": dict}
IKE_SA = {
    "name": str, "version": int, "state": str, "initiator": OPT_BOOL, "local_addr": OPT_STR,
    "remote_addr": OPT_STR, "local_id": OPT_STR, "remote_id": OPT_STR, "local_vips": list, "remote_vips": list,
    "remote_additional_addrs": list,
    "local_eap_id": OPT_STR, "remote_eap_id": OPT_STR, "local_xauth_id": OPT_STR, "remote_xauth_id": OPT_STR,
    "local_round2_id": OPT_STR, "remote_round2_id": OPT_STR,
    "ppk_id": OPT_STR, "spi_i": str, "spi_r": str,
    "proposal": OPT_STR, "nat_local": OPT_BOOL, "nat_remote": OPT_BOOL, "established": OPT_NUM,
    "rekey_in": OPT_INT, "reauth_in": OPT_INT, "expire_in": OPT_INT, "children": list, "attempt": OPT_INT,
    "keyingtries": OPT_INT, "redirected_from": OPT_STR,
}
CHILD = {
    "child": str, "unique_id": int, "mode": str, "protocol": str, "spi_in": str, "spi_out": str,
    "proposal": str, "encap": bool, "esn": bool, "replay_window": int, "local_ts": list, "remote_ts": list,
    "local_addr": str, "remote_addr": str, "installed": (int, float), "rekey_in": OPT_INT, "expire_in": OPT_INT,
    "packets_in": int, "bytes_in": int, "packets_out": int, "bytes_out": int, "replay_failed": int,
    "integrity_failed": int, "malformed": int, "policy_dropped": int, "drops": dict, "header_drops": dict,
}
ENDPOINT = dict.fromkeys(
    ["ike_in", "ike_out", "esp_in", "malformed", "unknown_spi", "cookies_sent", "no_sa", "no_policy", "held_dropped",
     "keepalives_in", "keepalives_out", "no_transport"], int
)
DROP_REASONS = {"replay", "integrity", "padding", "malformed", "spi", "dummy", "policy", "expired"}


def check(obj: dict[str, Any], table: dict[str, Any], where: str) -> None:
    assert set(obj) == set(table), f"{where}: keys {sorted(set(obj) ^ set(table))} differ from the schema"
    for key, typ in table.items():
        value = obj[key]
        # bool is an int in Python: an int field must not be a bool
        ok = isinstance(value, typ) and not (isinstance(value, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)))
        assert ok, f"{where}.{key}: {value!r} is not {typ}"


def validate(st: dict[str, Any]) -> None:
    """The whole document, after a JSON round trip (what `status --json` prints)."""
    st = json.loads(json.dumps(st))
    check(st, TOP, "status")
    assert st["schema"] == 1
    check(st["endpoint"], ENDPOINT, "endpoint")
    children = list(st["static_children"])
    for i, sa in enumerate(st["ike_sas"]):
        check(sa, IKE_SA, f"ike_sas[{i}]")
        assert re.fullmatch(r"[0-9a-f]{16}", sa["spi_i"]) and re.fullmatch(r"[0-9a-f]{16}", sa["spi_r"])
        assert sa["version"] in (1, 2)
        assert re.fullmatch(r".+\[\d+\]", sa["local_addr"] or "x[1]")
        children += sa["children"]
    for c in children:
        check(c, CHILD, f"child {c.get('child')}")
        assert re.fullmatch(r"0x[0-9a-f]{8}", c["spi_in"]) and re.fullmatch(r"0x[0-9a-f]{8}", c["spi_out"])
        assert c["mode"] in ("tunnel", "transport") and c["protocol"] in ("esp", "ah")
        assert all(isinstance(t, str) for t in c["local_ts"] + c["remote_ts"])
        assert set(c["drops"]) <= DROP_REASONS and all(isinstance(v, int) and v > 0 for v in c["drops"].values())
        assert all(isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in c["header_drops"].items())
        assert c["protocol"] == "ah" or c["header_drops"] == {}


async def replay_and_tamper(pair: IpsecPair) -> None:
    """Three datagrams left -> right; the first one replayed, one more tampered."""
    captured: list[tuple[Any, bytes, Any]] = []
    pair.network.tap = lambda src, data, dst: captured.append((src, data, dst))
    a, b = pair.left.open_datagram(5000), pair.right.open_datagram(6000)
    for i in range(3):
        a.sendto(b"x" * (10 + i), 6000)
    for _ in range(3):
        await asyncio.wait_for(b.recvfrom(), 2)
    esp = [(s, d, t) for s, d, t in captured if t[1] in (0, 4500) and d[:4] != bytes(4)]
    src, data, dst = esp[0]
    pair.network._send(src, data, dst)  # replay

    def flip(src: Any, data: bytes, dst: Any) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if dst[1] in (0, 4500) and data[:4] != bytes(4) else data

    pair.network.mangle = flip
    a.sendto(b"tampered", 6000)
    await asyncio.sleep(0.05)
    pair.network.mangle = None
    b.sendto(b"back", 5000)
    await asyncio.wait_for(a.recvfrom(), 2)


@pytest.mark.parametrize("version", [2, 1])
async def test_schema_and_counters(version: int) -> None:
    async with open_pair(version=version) as pair:
        await replay_and_tamper(pair)
        right = endpoint_status(pair.right.endpoint)
        left = endpoint_status(pair.left.endpoint)
        validate(right)
        validate(left)
        [sa] = right["ike_sas"]
        assert (sa["name"], sa["version"], sa["state"], sa["initiator"]) == ("pair", version, "ESTABLISHED", False)
        port = 4500 if version == 2 else 500  # an IKEv2 MOBIKE initiator floats to 4500 (mobike defaults to on)
        assert sa["local_addr"] == f"192.0.2.2[{port}]" and sa["remote_addr"] == f"192.0.2.1[{port}]"
        assert (sa["local_id"], sa["remote_id"]) == ("192.0.2.2", "192.0.2.1")
        assert sa["proposal"] == ("aes128gcm16-prfsha256-x25519" if version == 2 else "aes256-sha256-modp2048")
        assert sa["spi_i"] == left["ike_sas"][0]["spi_i"] and sa["spi_r"] == left["ike_sas"][0]["spi_r"]
        assert sa["established"] is not None and sa["established"] >= 0
        # rekey before expiry; defaults: IKE rekey_time 4 h (minus jitter), hard 4.4 h
        assert sa["rekey_in"] is not None and sa["expire_in"] is not None
        assert 0 < sa["rekey_in"] <= sa["expire_in"] <= round(4.4 * 3600)
        [c] = sa["children"]
        assert c["child"] == "app" and c["mode"] == "transport" and c["protocol"] == "esp"
        assert c["packets_in"] == 3 and c["packets_out"] == 1
        assert c["bytes_in"] > 0 and c["bytes_out"] > 0
        assert c["replay_failed"] == 1 and c["integrity_failed"] == 1
        assert c["drops"] == {"integrity": 1, "replay": 1} and c["header_drops"] == {}
        assert sa["ppk_id"] is None
        assert c["spi_out"] == left["ike_sas"][0]["children"][0]["spi_in"]
        assert 0 < c["rekey_in"] <= c["expire_in"] <= round(3600 * 1.1)
        assert c["replay_window"] == 64
        assert left["endpoint"]["ike_out"] >= 2 and right["endpoint"]["esp_in"] == 5  # 3 + replayed + tampered


async def test_text_reads_like_swanctl_and_cisco() -> None:
    async with open_pair(mode="tunnel") as pair:
        await replay_and_tamper(pair)
        text = format_status(endpoint_status(pair.right.endpoint))
    lines = text.splitlines()
    assert re.fullmatch(r"pair: ESTABLISHED, IKEv2, [0-9a-f]{16}_i [0-9a-f]{16}_r\*", lines[0]), lines[0]
    assert lines[1] == "  local  '192.0.2.2' @ 192.0.2.2[4500]"  # MOBIKE initiator: IKE on 4500
    assert lines[2] == "  remote '192.0.2.1' @ 192.0.2.1[4500]"
    assert lines[3] == "  aes128gcm16-prfsha256-x25519"
    assert re.fullmatch(r"  established \d+(\.\d+)?s ago, rekeying in \dh \d\dm, expires in \dh \d\dm", lines[4]), lines[4]
    assert lines[5] == "  app: #1, INSTALLED, TUNNEL, ESP:aes128gcm16"
    assert re.fullmatch(r"    installed \S+s ago, rekeying in \d+m \d\ds, expires in 1h 0\dm", lines[6]), lines[6]
    assert re.fullmatch(r"    in  [0-9a-f]{8}, +\d+ bytes, +3 packets", lines[7]), lines[7]
    assert re.fullmatch(r"    out [0-9a-f]{8}, +\d+ bytes, +1 packets", lines[8]), lines[8]
    assert lines[9:] == [
        "    local  203.0.113.0/24",
        "    remote 198.51.100.0/24",
        "    #pkts encaps: 1, #pkts decaps: 3, #replay failed: 1, #integrity failed: 1",
        "    drops: integrity 1, replay 1; replay window 64",
    ]


async def test_static_children_and_empty() -> None:
    from aioipsec.asyncio.endpoint import Endpoint
    from aioipsec.asyncio.sockets import MemoryNetwork
    from aioipsec.demo import Options, _configs, _install_static

    net = MemoryNetwork()
    ep_a = await Endpoint.create("192.0.2.1", network=net)
    ep_h = await Endpoint.create("192.0.2.2", network=net)
    try:
        st = endpoint_status(ep_a)
        validate(st)
        assert format_status(st) == "no SAs"
        conf_a, _ = _configs(Options(static=True))
        _install_static(ep_a, ep_h, conf_a)
        st = endpoint_status(ep_a)
        validate(st)
        assert st["ike_sas"] == [] and len(st["static_children"]) == 1
        c = st["static_children"][0]
        assert (c["spi_in"], c["spi_out"], c["encap"], c["rekey_in"], c["expire_in"]) == (
            "0xc0000001", "0xc0000002", True, None, None)
        assert format_status(st).startswith("lan: #0, INSTALLED, TUNNEL-in-UDP, ESP:aes128gcm16\n  installed ")
    finally:
        await ep_a.close()
        await ep_h.close()


PPK = bytes(range(32))


async def test_ppk_id_in_json_and_text_and_kept_by_an_ike_rekey() -> None:
    """RFC 8784: both ends show the PPK_ID in use (never the PPK); an IKE SA
    rekeyed from it (keys from the PPK-mixed SK_d) shows it too."""
    from asyncwait import until

    async with open_pair(ppk_id="ppk-hq", ppks={"ppk-hq": PPK}) as pair:
        for peer in (pair.left, pair.right):
            st = endpoint_status(peer.endpoint)
            validate(st)
            [sa] = st["ike_sas"]
            assert sa["ppk_id"] == "ppk-hq"
            assert PPK.hex() not in json.dumps(st)
            lines = format_status(st).splitlines()
            assert lines[3:5] == ["  aes128gcm16-prfsha256-x25519", "  ppk: 'ppk-hq'"], lines
        [proto] = pair.left.endpoint.sessions
        old = proto.session.sa
        await proto.rekey()
        await until(lambda: proto.session.sa is not old and proto.session.is_established, what="IKE SA rekeyed")
        for peer in (pair.left, pair.right):
            st = endpoint_status(peer.endpoint)
            validate(st)
            [sa] = st["ike_sas"]
            assert sa["spi_i"] != old.spi_i.hex() and sa["ppk_id"] == "ppk-hq"
            assert "\n  ppk: 'ppk-hq'\n" in format_status(st)


async def test_ah_header_drops_in_json_and_text() -> None:
    """An AH SA that refused a packet for the IP header in front of AH (IPv4
    options running past the header): the MALFORMED drop and its reason."""
    from asyncwait import until

    from aioipsec.asyncio.endpoint import AH_MEMORY_PORT, Endpoint
    from aioipsec.asyncio.sockets import MemoryNetwork
    from aioipsec.config import child, connection
    from aioipsec.crypto.transforms import parse_proposal
    from aioipsec.esp.ip import ipv4_header

    def conf(name: str, me: str, peer: str) -> Any:
        ch = child("lan", local_ts=[f"{me}/32"], remote_ts=[f"{peer}/32"], mode="transport")
        ch.esp_proposals = []
        ch.ah_proposals = [parse_proposal("sha256", "ah")]
        return connection(name, psk="status-ah-psk", local_id=me, remote_id=peer, local_addrs=[me],
                          remote_addrs=[peer], dpd_delay=0, children=[ch])

    net = MemoryNetwork()
    a = await Endpoint.create("192.0.2.1", configurations=[conf("to-b", "192.0.2.1", "192.0.2.2")], network=net)
    b = await Endpoint.create("192.0.2.2", configurations=[conf("to-a", "192.0.2.2", "192.0.2.1")], network=net)
    try:
        a.initiate("to-b")
        await until(lambda: a.dataplane.outbound and b.dataplane.outbound, what="AH Child SA on both ends")
        [pb] = b.dataplane.outbound
        # AH for B's inbound SPI behind an IPv4 timestamp option whose length runs past the header
        ah = bytes([17, 5, 0, 0]) + pb.ev.spi_in.to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(16)
        pkt = ipv4_header("192.0.2.1", "192.0.2.2", 51, len(ah) + 8, options=bytes([0x44, 40, 5, 0])) + ah + bytes(8)
        sock = net.bind(("192.0.2.66", AH_MEMORY_PORT))
        try:
            sock.sendto(pkt, ("192.0.2.2", AH_MEMORY_PORT))
        finally:
            sock.close()
        await until(lambda: pb.sa_in.header_drops, what="header drop counted")
        st = endpoint_status(b)
        validate(st)
        [sa] = st["ike_sas"]
        [c] = sa["children"]
        assert c["protocol"] == "ah" and sa["ppk_id"] is None
        assert c["drops"] == {"malformed": 1} and c["malformed"] == 1
        assert c["header_drops"] == {"malformed IPv4 options": 1}
        text = format_status(st)
        assert "  lan: #1, INSTALLED, TRANSPORT, AH:" in text
        assert "    drops: malformed 1; AH header drops: malformed IPv4 options 1; replay window 64" in text.splitlines()
        assert "ppk:" not in text
    finally:
        await asyncio.wait_for(a.close(timeout=1.0), 5)
        await asyncio.wait_for(b.close(timeout=1.0), 5)
