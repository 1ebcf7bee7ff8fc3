"""Trap policies after an acquire that does not end in a Child SA: the trap
must not stay "pending" (every later packet held, no negotiation ever again).

Two gateways on an in-memory network (A traps NET_A <-> NET_B); B refuses,
stays silent, or A cannot negotiate at all.  A later packet triggers a new
acquire, no sooner than ``ACQUIRE_RETRY_INTERVAL`` after a failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from asyncwait import until

from aioipsec.asyncio import dataplane as dataplane_mod
from aioipsec.asyncio.dataplane import TrapPolicy
from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.events import IkeSaDeleted, NegotiationFailed
from aioipsec.netutil import udp_packet
from aioipsec.transports.memory import memory_pipe

GW_A, GW_B = "192.0.2.1", "192.0.2.2"
HOST_A, HOST_B = "198.51.100.10", "203.0.113.20"
PSK = "trap-acquire-test-psk"


def conf_a(**kw: Any) -> Any:
    kw.setdefault("remote_addrs", [GW_B])
    return connection("to-b", psk=PSK, local_id="a.example", remote_id="b.example", local_addrs=[GW_A], dpd_delay=0,
                      proposals=["aes128gcm16-prfsha256-x25519"],
                      children=[child("lan", local_ts=["198.51.100.0/24"], remote_ts=["203.0.113.0/24"],
                                      start_action="trap")], **kw)


def conf_b(proposals: list[str]) -> Any:
    return connection("to-a", psk=PSK, local_id="b.example", remote_id="a.example", local_addrs=[GW_B],
                      remote_addrs=[GW_A], dpd_delay=0, proposals=proposals,
                      children=[child("lan", local_ts=["203.0.113.0/24"], remote_ts=["198.51.100.0/24"])])


@dataclass
class Gw:
    a: Endpoint
    b: Endpoint
    app_a: Any
    events: list[Any]
    ike_inits: list[bytes]
    """Initiator SPIs of the IKE_SA_INIT requests A sent."""

    @property
    def trap(self) -> TrapPolicy:
        (trap,) = self.a.dataplane.traps
        return trap

    def send(self, n: int = 1) -> None:
        self.app_a.send_batch([udp_packet(HOST_A, HOST_B, 40000, 9, b"x") for _ in range(n)])


@pytest.fixture
async def gw(request: pytest.FixtureRequest) -> AsyncIterator[Gw]:
    opts = getattr(request, "param", {})
    net = MemoryNetwork()
    inits: list[bytes] = []

    def tap(src: Any, data: bytes, dst: Any) -> None:
        if src == (GW_A, 500) and len(data) >= 28 and data[18] == 34 and data[8:16] == bytes(8):
            if data[:8] not in inits:
                inits.append(data[:8])

    net.tap = tap
    a_gw, a_app = memory_pipe()
    a = await Endpoint.create(GW_A, configurations=[conf_a(**opts.get("a", {}))], network=net, inner=a_gw)
    b_confs = [conf_b(opts["b_proposals"])] if "b_proposals" in opts else []
    b = await Endpoint.create(GW_B, configurations=b_confs, network=net)
    events: list[Any] = []
    a.event_listeners.append(lambda _p, ev: events.append(ev))
    try:
        yield Gw(a, b, a_app, events, inits)
    finally:
        await asyncio.wait_for(a.close(timeout=0.5), 5)
        await asyncio.wait_for(b.close(timeout=0.5), 5)


@pytest.mark.parametrize("gw", [{"b_proposals": ["aes256-sha256-modp2048"]}], indirect=True)
async def test_refused_acquire_retried_by_a_later_packet_rate_limited(gw: Gw, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataplane_mod, "ACQUIRE_RETRY_INTERVAL", 0.3)
    gw.send()
    await until(lambda: any(isinstance(e, NegotiationFailed) for e in gw.events), what="NO_PROPOSAL_CHOSEN")
    assert gw.trap.acquires == 1 and not gw.trap.pending and len(gw.ike_inits) == 1
    # at once: held, not negotiated again (a refusing peer is not asked per packet)
    gw.send(3)
    await asyncio.sleep(0.05)
    assert gw.trap.acquires == 1 and len(gw.ike_inits) == 1
    assert len(gw.trap.held) == 4
    # after the interval the next packet negotiates again (and is refused again)
    await asyncio.sleep(0.3)
    gw.send()
    await until(lambda: len(gw.ike_inits) == 2, what="a second IKE_SA_INIT")
    assert gw.trap.acquires == 2
    await until(lambda: sum(isinstance(e, NegotiationFailed) for e in gw.events) == 2, what="second refusal")
    assert not gw.trap.pending


async def test_acquire_that_cannot_start_is_not_stuck_pending(gw: Gw, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The connection no longer names a peer (as after an edit): the acquire
    raises inside the data plane; it is logged, the trap is not left pending."""
    monkeypatch.setattr(dataplane_mod, "ACQUIRE_RETRY_INTERVAL", 0.1)
    gw.a.configurations["to-b"].remote_addrs = []
    with caplog.at_level(logging.ERROR, "aioipsec.esp"):
        gw.send()
        await until(lambda: gw.trap.acquires == 1, what="first acquire")
        await asyncio.sleep(0.02)
    assert "acquire for to-b/lan failed: connection to-b has no remote_addrs" in caplog.text
    assert not gw.trap.pending and not gw.a.sessions
    # the peer is configured again: a later packet negotiates
    gw.a.configurations["to-b"].remote_addrs = [GW_B]
    await asyncio.sleep(0.15)
    gw.send()
    await until(lambda: gw.trap.acquires == 2 and len(gw.ike_inits) == 1, what="second acquire")


async def test_half_open_acquire_closed_locally_then_traffic_acquires_again(gw: Gw) -> None:
    """B is silent; the operator takes the half-open IKE SA down (no failure
    event for it, only IkeSaDeleted): the next packet negotiates again."""
    gw.send()
    await until(lambda: gw.a.sessions, what="acquire")
    assert gw.trap.pending
    (proto,) = gw.a.sessions
    await asyncio.wait_for(proto.close(timeout=0.2), 5)
    assert any(isinstance(e, IkeSaDeleted) for e in gw.events)
    assert not gw.trap.pending
    await asyncio.sleep(dataplane_mod.ACQUIRE_RETRY_INTERVAL + 0.05)
    gw.send()
    await until(lambda: len(gw.ike_inits) == 2, what="a new IKE_SA_INIT")
    assert gw.trap.acquires == 2


async def test_acquire_without_outcome_times_out(gw: Gw, monkeypatch: pytest.MonkeyPatch) -> None:
    """Safety net: a pending acquire with no outcome at all is given up after
    ACQUIRE_TIMEOUT, so traffic is not held forever without a negotiation."""
    monkeypatch.setattr(dataplane_mod, "ACQUIRE_TIMEOUT", 0.2)
    gw.send()
    await until(lambda: gw.trap.acquires == 1, what="acquire")
    gw.send()
    await until(lambda: len(gw.trap.held) == 2, what="second packet held")
    assert gw.trap.acquires == 1 and gw.trap.pending  # still pending: no new acquire
    await asyncio.sleep(0.25)
    gw.send()
    await until(lambda: gw.trap.acquires == 2, what="acquire after the timeout")
    assert gw.trap.pending
