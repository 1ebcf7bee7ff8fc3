"""Logs never carry key material.

Negotiations (IKEv2 and IKEv1: establish, traffic, replay and tamper, child
rekey, IKE rekey, DPD, delete; a wrong PSK; a daemon's event log) run with
every aioipsec logger at DEBUG through :func:`aioipsec.logging.configure`.
Every key generated, taken from the events and the sessions, is then looked
for in all the captured output: hex (both cases), its first 8 bytes in hex,
Python's bytes repr and base64.  None may appear."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from aioipsec import logging as aiolog
from aioipsec.events import ChildSaInstalled, IkeSaEstablished
from aioipsec.keyexport import session_keys
from aioipsec.testing import PSK, IpsecPair, open_pair


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = aiolog.configure(2, stream=buf)
    root = logging.getLogger("aioipsec")
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        root.propagate = True
        root.setLevel(logging.NOTSET)
        for name in aiolog.GROUPS.values():
            logging.getLogger(name).setLevel(logging.NOTSET)


class KeyCollector:
    """Every key seen: Child SA keys from the events, IKE keys from the sessions."""

    def __init__(self) -> None:
        self.keys: set[bytes] = {PSK}

    def attach(self, pair: IpsecPair) -> None:
        for peer in (pair.left, pair.right):
            peer.endpoint.event_listeners.append(self.on_event)
        self.snapshot(pair)

    def on_event(self, proto: Any, ev: Any) -> None:
        if isinstance(ev, ChildSaInstalled):
            self.keys |= {ev.encr_key_in, ev.encr_key_out, ev.integ_key_in, ev.integ_key_out}
        if proto is not None and isinstance(ev, (IkeSaEstablished, ChildSaInstalled)):
            self.session(proto.session)

    def session(self, s: Any) -> None:
        for k in session_keys(s):
            self.keys |= {v for n, v in k.items() if isinstance(v, bytes) and n not in ("spi_i", "spi_r")}
        for sa in [getattr(s, "sa", None), *getattr(s, "old_sas", []), *(getattr(s, "sas", None) or [])]:
            keys = getattr(sa, "keys", None)
            for name in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr", "skeyid", "skeyid_d", "skeyid_a"):
                v = getattr(keys, name, None)
                if isinstance(v, bytes):
                    self.keys.add(v)
        for child in getattr(s, "children", {}).values():
            for v in getattr(child, "keys", ()) or ():
                if isinstance(v, bytes):
                    self.keys.add(v)

    def snapshot(self, pair: IpsecPair) -> None:
        for peer in (pair.left, pair.right):
            if peer.session is not None:
                self.session(peer.session.session)
            for pipe in peer.endpoint.dataplane.sad_in.values():
                self.on_event(None, pipe.ev)

    def assert_absent(self, text: str, min_keys: int = 8) -> None:
        keys = [k for k in self.keys if len(k) >= 8]
        assert len(keys) >= min_keys, "the scenario generated keys"
        low = text.lower()
        compact = re.sub(r"[\s:]", "", low)
        for k in keys:
            for needle in (k.hex(), k[:8].hex()):
                assert needle not in low and needle not in compact, f"key material ({len(k)} bytes) in the log"
            assert repr(k)[2:-1] not in text
            assert base64.b64encode(k).decode()[:16] not in text


async def _traffic_and_attacks(pair: IpsecPair) -> None:
    captured: list[tuple[Any, bytes, Any]] = []
    prev = pair.network.tap
    pair.network.tap = lambda s, d, t: captured.append((s, d, t))
    a, b = pair.left.open_datagram(5000), pair.right.open_datagram(6000)
    a.sendto(b"one", 6000)
    await asyncio.wait_for(b.recvfrom(), 2)
    s, d, t = next((s, d, t) for s, d, t in captured if t[1] in (0, 4500) and d[:4] != bytes(4))
    pair.network._send(s, d, t)  # replay -> PKT_REPLAY_ERR
    pair.network.mangle = lambda s, d, t: d[:-1] + bytes([d[-1] ^ 1]) if t[1] in (0, 4500) and d[:4] != bytes(4) else d
    a.sendto(b"tampered", 6000)
    await asyncio.sleep(0.05)
    pair.network.mangle = None
    pair.network.tap = prev
    a.close()
    b.close()


async def _lifecycle(pair: IpsecPair, keys: KeyCollector) -> None:
    keys.attach(pair)
    await _traffic_and_attacks(pair)
    left = pair.left.session
    assert left is not None and pair.left.child is not None
    await asyncio.wait_for(left.rekey_child_sa(pair.left.child.spi_in), 5)
    await left.rekey()
    await asyncio.sleep(0.2)
    await left.dpd()
    await asyncio.sleep(0.1)
    keys.snapshot(pair)


@pytest.mark.parametrize("version", [2, 1])
async def test_no_key_material_in_debug_logs(debug_log: io.StringIO, version: int) -> None:
    keys = KeyCollector()
    options: dict[str, Any] = {"ike_proposals": ["aes256-sha256-modp2048"], "esp_proposals": ["aes256-sha256"]}
    async with open_pair(version=version, **options) as pair:
        await _lifecycle(pair, keys)
    async with open_pair(version=version, mode="tunnel") as pair:  # AEAD (IKEv2) / defaults
        await _lifecycle(pair, keys)
    text = debug_log.getvalue()
    # the log is the real thing: every group at DEBUG, lines tagged by group
    assert all(logging.getLogger(n).isEnabledFor(logging.DEBUG) for n in aiolog.GROUPS.values())
    assert "[IKE] INFO" in text and "[ESP] WARNING PKT_REPLAY_ERR" in text
    steps = ("IKE_SA_INIT sent", "IKE_AUTH received", "CREATE_CHILD_SA sent") if version == 2 else ("MM1 sent", "QM1 sent")
    for step in steps:
        assert step in text, step
    keys.assert_absent(text)


async def test_no_key_material_when_authentication_fails(debug_log: io.StringIO) -> None:
    from aioipsec.testing import pair_configs

    left_cfg, right_cfg = pair_configs()
    right_cfg.psk = b"a different pre-shared key entirely"
    from aioipsec.asyncio.endpoint import Endpoint
    from aioipsec.asyncio.sockets import MemoryNetwork

    net = MemoryNetwork()
    r = await Endpoint.create("192.0.2.2", configurations=[right_cfg], network=net)
    lft = await Endpoint.create("192.0.2.1", configurations=[left_cfg], network=net, respond=False)
    keys = KeyCollector()
    keys.keys.add(right_cfg.psk)
    try:
        proto = lft.initiate(left_cfg.name)
        with pytest.raises(Exception, match="(?i)auth"):
            await asyncio.wait_for(proto.wait_established(), 5)
        for ep in (lft, r):
            for p in ep.sessions:
                keys.session(p.session)
        keys.session(proto.session)
    finally:
        await lft.close()
        await r.close()
    text = debug_log.getvalue()
    assert "AUTHENTICATION_FAILED" in text
    keys.assert_absent(text, min_keys=4)


async def test_daemon_event_log_has_no_keys(debug_log: io.StringIO, tmp_path: Any) -> None:
    """The daemon logs every event (ChildSaInstalled without its keys)."""
    from aioipsec.asyncio.sockets import MemoryNetwork
    from aioipsec.daemon import Daemon

    from test_cli_daemon import write_configs

    pa, ph = write_configs(tmp_path, start="start")
    net = MemoryNetwork()
    h = Daemon(str(ph), network=net, tun=False)
    a = Daemon(str(pa), network=net, tun=False)
    keys = KeyCollector()
    await h.start()
    h.endpoint.event_listeners.append(keys.on_event)
    await a.start()  # start_action = "start": initiates at once
    a.endpoint.event_listeners.append(keys.on_event)
    try:
        proto = a.endpoint.find_session("hq")
        assert proto is not None
        await asyncio.wait_for(proto.wait_child("lan"), 5)
        await asyncio.wait_for(proto.rekey_child_sa(next(iter(proto.children))), 5)
    finally:
        await a.shutdown()
        await h.shutdown()
    text = debug_log.getvalue()
    assert "[DMN] INFO hq: ChildSaInstalled(name='lan', protocol='esp', mode='tunnel', spi_in=0x" in text
    assert "[DMN] INFO shutting down: deleting 1 IKE SA" in text
    keys.assert_absent(text)


def test_parse_debug_groups() -> None:
    assert aiolog.parse_debug("ike=2, esp=1,net=-1") == {"ike": 2, "esp": 1, "net": -1}
    assert aiolog.parse_debug("") == {}
    with pytest.raises(ValueError, match="bad debug group 'kernel=1'"):
        aiolog.parse_debug("kernel=1")
    with pytest.raises(ValueError, match="bad debug level in 'ike=9'"):
        aiolog.parse_debug("ike=9")
    assert [aiolog.level_for(n) for n in (-1, 0, 1, 2, 4)] == [
        logging.CRITICAL + 10, logging.WARNING, logging.INFO, logging.DEBUG, logging.DEBUG,
    ]


def test_configure_levels_per_group(debug_log: io.StringIO) -> None:
    buf = io.StringIO()
    handler = aiolog.configure(0, {"ike": 2, "esp": -1}, stream=buf)
    try:
        logging.getLogger("aioipsec.ike.v2").debug("IKE_SA_INIT sent 192.0.2.2[500] 0102030405060708_i")
        logging.getLogger("aioipsec.esp").warning("PKT_REPLAY_ERR spi=0x01020304 seq=1 count=1")
        logging.getLogger("aioipsec.net").info("not shown at level 0")
        logging.getLogger("aioipsec.net").warning("shown")
    finally:
        logging.getLogger("aioipsec").removeHandler(handler)
    lines = [line.split(" ", 2)[2] for line in buf.getvalue().splitlines()]
    assert lines == ["[IKE] DEBUG IKE_SA_INIT sent 192.0.2.2[500] 0102030405060708_i", "[NET] WARNING shown"]


def test_describe_event_hides_keys_and_formats_spis() -> None:
    from aioipsec.crypto.transforms import parse_proposal
    from aioipsec.events import ChildSaDeleted, IkeSaDeleted
    from aioipsec.selectors import parse_ts

    encr = parse_proposal("aes128gcm16", "esp").encr[0]
    ev = ChildSaInstalled(
        name="lan", protocol="esp", mode="tunnel", spi_in=0xC0000001, spi_out=0xC0000002, encr=encr, integ=None,
        encr_key_in=bytes(range(20)), encr_key_out=bytes(range(20, 40)), integ_key_in=b"", integ_key_out=b"",
        esn=False, local_ts=(parse_ts("198.51.100.0/24"),), remote_ts=(parse_ts("203.0.113.0/24"),),
        local_addr=("192.0.2.1", 4500), remote_addr=("192.0.2.2", 4500), encap=True, initiator=True,
        lifetime_soft=3292.2039,
    )
    text = aiolog.describe_event(ev)
    assert text.startswith("ChildSaInstalled(name='lan', protocol='esp', mode='tunnel', spi_in=0xc0000001, "
                           "spi_out=0xc0000002, encr=aes128gcm16, integ=None, esn=False, "
                           "local_ts=[198.51.100.0/24], remote_ts=[203.0.113.0/24], ")
    assert "lifetime_soft=3292.2" in text and "key" not in text.replace("ike_spi_i", "")
    assert bytes(range(20)).hex()[:16] not in text
    assert aiolog.describe_event(IkeSaDeleted(b"\x01" * 8, b"\x02" * 8, "dead peer")) == (
        "IkeSaDeleted(spi_i=0101010101010101, spi_r=0202020202020202, reason='dead peer')")
    assert aiolog.describe_event(ChildSaDeleted("lan", 1, 2, "rekeyed")) == (
        "ChildSaDeleted(name='lan', spi_in=0x00000001, spi_out=0x00000002, reason='rekeyed')")
