"""Make-before-break in the data-plane glue: the rekey *initiator* sends on
the new SA at once; the rekey *responder* keeps sending on the old SA until the
initiator deletes it or sends on the new one (strongSwan's behaviour), so no
packet reaches the initiator before it has installed the new SA."""

from __future__ import annotations

import os
from typing import Any

import pytest

from aioipsec.asyncio.dataplane import DataPlane
from aioipsec.crypto.transforms import encr
from aioipsec.esp.sa import EspSa
from aioipsec.events import ChildSaDeleted, ChildSaInstalled
from aioipsec.netutil import udp_packet
from aioipsec.selectors import parse_ts

ALG = encr("aes128gcm16")


class FakeEndpoint:
    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.sent: list[tuple[bytes, Any]] = []

    def send_esp(self, datagrams: list[bytes], remote: Any, encap: bool, src: str | None = None) -> None:
        self.sent += [(d, remote) for d in datagrams]

    def send_esp_parts(self, heads: list[bytes], bodies: list[bytes], remote: Any, encap: bool,
                       src: str | None = None) -> None:
        self.send_esp([h + b for h, b in zip(heads, bodies, strict=True)], remote, encap, src)


class Inner:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def send_batch(self, pkts: list[bytes]) -> None:
        self.got += pkts


def event(spi_in: int, spi_out: int, kin: bytes, kout: bytes, *, initiator: bool, rekeyed_from: int | None) -> ChildSaInstalled:
    return ChildSaInstalled(
        name="lan", protocol="esp", mode="tunnel", spi_in=spi_in, spi_out=spi_out, encr=ALG, integ=None,
        encr_key_in=kin, encr_key_out=kout, integ_key_in=b"", integ_key_out=b"", esn=False,
        local_ts=(parse_ts("198.51.100.0/24"),), remote_ts=(parse_ts("203.0.113.0/24"),),
        local_addr=("192.0.2.1", 4500), remote_addr=("192.0.2.2", 4500), encap=True, initiator=initiator,
        rekeyed_from=rekeyed_from,
    )


PKT = udp_packet("198.51.100.7", "203.0.113.7", 1000, 2000, b"data")
REPLY = udp_packet("203.0.113.7", "198.51.100.7", 2000, 1000, b"reply")


def spi_of(datagram: bytes) -> int:
    return int.from_bytes(datagram[:4], "big")


@pytest.fixture
def plane() -> Any:
    import asyncio

    loop = asyncio.new_event_loop()
    ep = FakeEndpoint(loop)
    inner = Inner()
    dp = DataPlane(ep, inner)  # type: ignore[arg-type]
    yield dp, ep, inner
    loop.close()


def test_rekey_initiator_switches_at_once(plane: Any) -> None:
    dp, ep, _inner = plane
    k = [os.urandom(20) for _ in range(4)]
    dp.install(None, event(0x100, 0x200, k[0], k[1], initiator=True, rekeyed_from=None))
    dp.install(None, event(0x101, 0x201, k[2], k[3], initiator=True, rekeyed_from=0x100))
    dp.outbound_packets([PKT])
    assert [spi_of(d) for d, _ in ep.sent] == [0x201]


def test_rekey_responder_waits_for_delete(plane: Any) -> None:
    dp, ep, _inner = plane
    k = [os.urandom(20) for _ in range(4)]
    dp.install(None, event(0x100, 0x200, k[0], k[1], initiator=False, rekeyed_from=None))
    dp.install(None, event(0x101, 0x201, k[2], k[3], initiator=False, rekeyed_from=0x100))
    dp.outbound_packets([PKT])
    assert [spi_of(d) for d, _ in ep.sent] == [0x200]  # still the old SA
    dp.remove(ChildSaDeleted("lan", 0x100, 0x200, "rekeyed"))
    dp.outbound_packets([PKT])
    assert [spi_of(d) for d, _ in ep.sent] == [0x200, 0x201]


def test_rekey_responder_switches_on_traffic_from_the_new_sa(plane: Any) -> None:
    dp, ep, inner = plane
    k = [os.urandom(20) for _ in range(4)]
    dp.install(None, event(0x100, 0x200, k[0], k[1], initiator=False, rekeyed_from=None))
    dp.install(None, event(0x101, 0x201, k[2], k[3], initiator=False, rekeyed_from=0x100))
    # the peer (rekey initiator) seals with the key we open with on the new SA
    peer_out = EspSa(spi=0x101, encr=ALG, encr_key=k[2], inbound=False)
    dp.inbound_datagrams([peer_out.seal(REPLY)])
    assert inner.got == [REPLY]
    dp.outbound_packets([PKT])
    assert [spi_of(d) for d, _ in ep.sent] == [0x201]
    assert 0x100 in dp.sad_in  # the old inbound SA stays until its delete


def test_ah_child_sa_is_refused_clearly(plane: Any) -> None:
    """An AH Child SA the data plane cannot carry (here: the event says NAT, and
    this fake endpoint has no raw AH socket) is refused with a count, never
    installed to fail per packet (tests/integration/test_dataplane_ah_memory.py
    covers AH that is carried)."""
    import dataclasses

    from aioipsec.crypto.transforms import integ

    dp, ep, _inner = plane
    k = os.urandom(32)
    ev = dataclasses.replace(
        event(0x100, 0x200, b"", b"", initiator=True, rekeyed_from=None),
        protocol="ah", encr=None, integ=integ("sha256"), integ_key_in=k, integ_key_out=k,
    )
    assert dp.install(None, ev) is None
    assert dp.stats.unsupported == 1 and 0x100 not in dp.sad_in
    dp.outbound_packets([PKT])
    assert ep.sent == [] and dp.stats.no_policy == 1
