"""A simulated day: Child SAs rekeyed every few minutes and the IKE SA every
half hour by both ends (jittered soft lifetimes, so collisions can happen),
with ESP traffic flowing both ways through ``aioipsec.esp`` SAs built from
the events.  Make-before-break must lose no packet."""

from __future__ import annotations

import pytest
from ikev2_pair import Link, Pair, psk_pair_configs

from aioipsec.esp.sa import esp_sa_pair_from_event
from aioipsec.events import ChildSaDeleted, ChildSaInstalled, IkeSaDeleted, IkeSaEstablished, IpsecEvent

DAY = 86400.0


class MiniDataPlane:
    """What the data plane does with the events: SAs in by SPI, the newest
    outbound SA per child takes over at once, removal on ChildSaDeleted."""

    def __init__(self) -> None:
        self.sad_in: dict[int, object] = {}
        self.outbound: list[tuple[ChildSaInstalled, object]] = []
        self.received: list[bytes] = []
        self.dropped = 0
        self.unknown_spi = 0
        self.installed = 0
        self.deleted = 0

    def event(self, ev: IpsecEvent) -> None:
        if isinstance(ev, ChildSaInstalled):
            sa_in, sa_out = esp_sa_pair_from_event(ev)
            self.sad_in[ev.spi_in] = sa_in
            if ev.outbound:
                self.outbound = [(e, s) for e, s in self.outbound if e.spi_in != ev.rekeyed_from]
                self.outbound.insert(0, (ev, sa_out))
            self.installed += 1
        elif isinstance(ev, ChildSaDeleted):
            self.sad_in.pop(ev.spi_in, None)
            self.outbound = [(e, s) for e, s in self.outbound if e.spi_in != ev.spi_in]
            self.deleted += 1

    def seal(self, payload: bytes) -> bytes | None:
        if not self.outbound:
            return None
        return self.outbound[0][1].seal(payload)  # type: ignore[attr-defined]

    def open(self, data: bytes) -> None:
        spi = int.from_bytes(data[:4], "big")
        sa = self.sad_in.get(spi)
        if sa is None:
            self.unknown_spi += 1
            return
        res = sa.open(data)  # type: ignore[attr-defined]
        if res.ok:
            self.received.append(res.packet)
        else:
            self.dropped += 1


def _inner(n: int, src: str, dst: str) -> bytes:
    """A minimal IPv4/UDP packet carrying a counter (tunnel-mode payload)."""
    import ipaddress
    import struct

    body = n.to_bytes(8, "big")
    udp = struct.pack("!HHHH", 5000, 6000, 8 + len(body), 0) + body
    total = 20 + len(udp)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, n & 0xFFFF, 0, 64, 17, 0,
                      ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return hdr + udp


@pytest.mark.parametrize("seed", [1, 2])
def test_a_day_of_rekeys_with_traffic(seed: int) -> None:
    i_cfg, r_cfg = psk_pair_configs(
        i_kw={"rekey_time": 1800.0, "dpd_delay": 120.0},
        r_kw={"rekey_time": 1800.0, "dpd_delay": 120.0},
        i_child_kw={"rekey_time": 240.0, "life_time": 300.0},
        r_child_kw={"rekey_time": 240.0, "life_time": 300.0},
    )
    p = Pair(i_cfg, r_cfg, seed=seed, link=Link(seed=seed, delay=0.02))
    dp = {"i": MiniDataPlane(), "r": MiniDataPlane()}
    p.on_event = lambda side, ev: dp[side].event(ev)
    p.on_esp = lambda side, data: dp[side].open(data)
    sent = {"i": 0, "r": 0}
    next_send = [0.0]
    interval = 0.5

    def tick() -> None:
        # both directions send a packet every `interval` seconds once SAs exist
        while next_send[0] <= p.now:
            for side, src, dst in (("i", "198.51.100.7", "203.0.113.9"), ("r", "203.0.113.9", "198.51.100.7")):
                data = dp[side].seal(_inner(sent[side], src, dst))
                if data is not None:
                    p.send_esp(side, data)
                    sent[side] += 1
            next_send[0] += interval

    p.initiate()
    assert p.run(lambda: bool(dp["i"].outbound) and bool(dp["r"].outbound), max_time=10)
    next_send[0] = p.now
    # the traffic tick needs timer wake-ups: run in steps of `interval`
    end = p.now + DAY
    while p.now < end:
        target = min(p.now + interval, end)
        p.run(lambda: p.now >= target, max_time=interval + 1, on_tick=tick)
        p.now = max(p.now, target)
        tick()
    # drain what is in flight
    p.run(None, max_time=5)
    for side in ("i", "r"):
        other = "r" if side == "i" else "i"
        assert dp[other].unknown_spi == 0 and dp[other].dropped == 0
        assert len(dp[other].received) == sent[side], (side, sent[side], len(dp[other].received))
        got = [int.from_bytes(pk[-8:], "big") for pk in dp[other].received]
        assert sorted(got) == list(range(sent[side]))
    child_rekeys = len(p.events("i", ChildSaInstalled)) - 1
    ike_rekeys = len(p.events("i", IkeSaEstablished)) - 1
    assert child_rekeys >= DAY / 300 and ike_rekeys >= DAY / 2000
    assert len(p.events("i", IkeSaDeleted)) >= ike_rekeys
    assert all(e.reason in ("rekeyed", "rekey collision") for e in p.events("i", IkeSaDeleted))
    assert all(e.reason in ("rekeyed", "rekey collision") for e in p.events("i", ChildSaDeleted))
    assert p.i.is_established and p.r is not None and p.r.is_established
    assert len(p.i.child_sas) <= 2 and len(p.r.child_sas) <= 2
    assert p.i.stats.internal_errors == 0 and p.r.stats.internal_errors == 0
    assert sent["i"] > DAY / interval * 0.99
