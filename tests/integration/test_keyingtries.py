"""swanctl ``keyingtries`` on an in-memory network with a short retransmit
schedule (an attempt gives up after about 0.1 s): a peer that is not there
yet, then appears; a peer that refuses us; ``dpd_action = restart`` and
``close_action = start`` re-initiating with the whole budget; ``down`` ending
the attempts.  IKEv2 and IKEv1 (whose sessions initiate their own way: the
retries are the endpoint's)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from asyncwait import until

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import ConnectionConfig
from aioipsec.events import (
    AuthFailed,
    IkeSaEstablished,
    KeyingFailed,
    KeyingRetry,
    NegotiationFailed,
)
from aioipsec.status import endpoint_status, format_status
from aioipsec.testing import CONNECTION, LEFT, RIGHT, pair_configs

VERSIONS = pytest.mark.parametrize("version", [2, 1], ids=["ikev2", "ikev1"])
FAST: dict[str, Any] = {"retransmit_timeout": 0.05, "retransmit_base": 1.0, "retransmit_tries": 1, "dpd_delay": 0}
"""One attempt: the first send, one retransmit 50 ms later, given up 50 ms after that."""
ATTEMPT = 0.1


@dataclass
class Left:
    """Our initiating endpoint, its events and the IKE_SA_INIT / Main Mode
    (Aggressive Mode) requests it sent toward the peer (by initiator SPI)."""

    ep: Endpoint
    net: MemoryNetwork
    cfg: ConnectionConfig
    events: list[Any] = field(default_factory=list)
    inits: list[bytes] = field(default_factory=list)

    def of(self, kind: type) -> list[Any]:
        return [ev for _p, ev in self.events if isinstance(ev, kind)]

    def established(self) -> list[Any]:
        return [p for p in self.ep.sessions if p.session.is_established and not p.session.is_closed and p.children]


def first_request_spi(data: bytes, dst: Any) -> bytes | None:
    """The initiator SPI of a first IKE request (no responder SPI yet) sent to the peer."""
    if dst[0] != RIGHT or dst[1] not in (500, 4500):
        return None
    if dst[1] == 4500:
        data = data[4:]
    if len(data) < 28 or data[8:16] != bytes(8):
        return None
    return data[:8]


@asynccontextmanager
async def left_endpoint(version: int, *, right_psk: bytes | None = None, **options: Any) -> AsyncIterator[Left]:
    options = {**FAST, **options}
    child_options = options.pop("child_options", None)
    left_cfg, _ = pair_configs(version=version, child_options=child_options, **options)
    net = MemoryNetwork()
    ep = await Endpoint.create(LEFT, configurations=[left_cfg], network=net, respond=True)
    left = Left(ep, net, left_cfg)
    ep.event_listeners.append(lambda p, ev: left.events.append((p, ev)))

    def tap(src: Any, data: bytes, dst: Any) -> None:
        spi = first_request_spi(data, dst)
        if spi is not None and spi not in left.inits:
            left.inits.append(spi)

    net.tap = tap
    try:
        yield left
    finally:
        await ep.close(delete=False)


async def right_endpoint(left: Left, version: int, *, psk: bytes | None = None, **options: Any) -> Endpoint:
    """The peer appears (binds its sockets on the network)."""
    options = {**FAST, **options}
    child_options = options.pop("child_options", None)
    _, right_cfg = pair_configs(version=version, child_options=child_options, **options)
    if psk is not None:
        right_cfg.psk = psk
    return await Endpoint.create(RIGHT, configurations=[right_cfg], network=left.net)


@VERSIONS
async def test_three_attempts_then_give_up(version: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    async with left_endpoint(version, keyingtries=3) as left:
        first = left.ep.initiate(CONNECTION)
        assert left.ep.keying_attempt(first) == (1, 3)
        await until(lambda: left.of(KeyingFailed), timeout=5, what="the initiation to give up")
        [failed] = left.of(KeyingFailed)
        assert (failed.connection, failed.peer, failed.attempts, failed.tries) == (CONNECTION, RIGHT, 3, 3)
        assert failed.reason == "peer not responding"
        assert [(r.attempt, r.tries, r.peer) for r in left.of(KeyingRetry)] == [(2, 3, RIGHT), (3, 3, RIGHT)]
        assert len(left.inits) == 3  # three IKE SAs were tried, each a new initiator SPI
        await asyncio.sleep(5 * ATTEMPT)
        assert len(left.inits) == 3 and len(left.of(KeyingRetry)) == 2  # and nothing after giving up
        assert not [p for p in left.ep.sessions if not p.session.is_closed]
        assert left.ep.keying_attempt(first) is None
    text = caplog.text
    assert f"{CONNECTION}: peer {RIGHT} not responding, trying again: attempt 2 of 3" in text
    assert f"{CONNECTION}: peer {RIGHT} not responding, trying again: attempt 3 of 3" in text
    assert "attempt 4" not in text
    assert (f"{CONNECTION}: establishing the IKE SA with {RIGHT} failed, peer not responding: giving up after "
            "3 attempts (keyingtries = 3)") in text


@VERSIONS
async def test_default_is_one_attempt(version: int) -> None:
    async with left_endpoint(version) as left:
        assert left.cfg.keyingtries == 1
        left.ep.initiate(CONNECTION)
        await until(lambda: left.of(KeyingFailed), timeout=5, what="the initiation to give up")
        await asyncio.sleep(3 * ATTEMPT)
        assert left.of(KeyingFailed)[0].attempts == 1 and not left.of(KeyingRetry) and len(left.inits) == 1


@VERSIONS
async def test_forever_until_the_peer_appears(version: int) -> None:
    async with left_endpoint(version, keyingtries=0) as left:
        left.ep.initiate(CONNECTION)
        await until(lambda: len(left.of(KeyingRetry)) >= 3, timeout=5, what="three further attempts")
        # status shows the connection being retried
        st = endpoint_status(left.ep)
        [row] = [r for r in st["ike_sas"] if r["state"] != "CLOSED"]
        assert row["name"] == CONNECTION and row["attempt"] >= 3 and row["keyingtries"] == 0
        assert f"connecting: attempt {row['attempt']}, keyingtries = 0 (until established)" in format_status(st)
        right = await right_endpoint(left, version)
        try:
            await until(lambda: left.established(), timeout=5, what="the IKE SA and Child SA once the peer is there")
            [proto] = left.established()
            assert left.of(IkeSaEstablished) and not left.of(KeyingFailed)
            assert left.ep.keying_attempt(proto) is None  # the initiation is over
            row = next(r for r in endpoint_status(left.ep)["ike_sas"] if r["state"] == "ESTABLISHED")
            assert row["attempt"] is None and row["keyingtries"] is None
            n = len(left.of(KeyingRetry))
            await asyncio.sleep(3 * ATTEMPT)
            assert len(left.of(KeyingRetry)) == n  # no attempt after it is up
        finally:
            await right.close(delete=False)


async def test_authentication_failure_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    """charon: keyingtries repeats attempts the peer did not answer; an
    authentication failure (the peer's AUTHENTICATION_FAILED) is a permanent
    error, the end of the initiation even with keyingtries = 0."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    async with left_endpoint(2, keyingtries=0) as left:
        right = await right_endpoint(left, 2, psk=b"another pre-shared key entirely")
        try:
            left.ep.initiate(CONNECTION)
            await until(lambda: left.of(KeyingFailed), timeout=5, what="the initiation to end")
            await asyncio.sleep(5 * ATTEMPT)
            [failed] = left.of(KeyingFailed)
            assert failed.attempts == 1 and failed.tries == 0
            assert failed.reason == "authentication failed at IKE_AUTH: peer answered AUTHENTICATION_FAILED"
            assert not left.of(KeyingRetry) and len(left.inits) == 1
        finally:
            await right.close(delete=False)
    assert "not trying again (a permanent error" in caplog.text


async def test_authentication_failure_ikev1_is_not_retried() -> None:
    """IKEv1 with a pre-shared key mismatch: the responder cannot decrypt
    MM5 and refuses it; the initiator makes no further attempt."""
    async with left_endpoint(1, keyingtries=0) as left:
        right = await right_endpoint(left, 1, psk=b"another pre-shared key entirely")
        try:
            left.ep.initiate(CONNECTION)
            await until(lambda: left.of(KeyingFailed), timeout=5, what="the initiation to end")
            await asyncio.sleep(5 * ATTEMPT)
            assert left.of(AuthFailed)
            [failed] = left.of(KeyingFailed)
            assert failed.attempts == 1 and failed.reason.startswith("authentication failed at MM5: ")
            assert not left.of(KeyingRetry) and len(left.inits) == 1
        finally:
            await right.close(delete=False)


async def test_no_proposal_chosen_is_not_retried() -> None:
    async with left_endpoint(2, keyingtries=0) as left:
        right = await right_endpoint(left, 2, ike_proposals=["aes256-sha384-modp3072"])
        try:
            left.ep.initiate(CONNECTION)
            await until(lambda: left.of(KeyingFailed), timeout=5, what="the initiation to end")
            await asyncio.sleep(5 * ATTEMPT)
            assert [ev.notify for ev in left.of(NegotiationFailed)] == ["NO_PROPOSAL_CHOSEN"]
            [failed] = left.of(KeyingFailed)
            assert "NO_PROPOSAL_CHOSEN" in failed.reason and failed.attempts == 1
            assert not left.of(KeyingRetry) and len(left.inits) == 1
        finally:
            await right.close(delete=False)


@VERSIONS
async def test_stop_keying_ends_the_attempts(version: int) -> None:
    async with left_endpoint(version, keyingtries=0) as left:
        left.ep.initiate(CONNECTION)
        await until(lambda: len(left.of(KeyingRetry)) >= 2, timeout=5, what="a retry")
        assert left.ep.stop_keying(CONNECTION)
        n = len(left.inits)
        await asyncio.sleep(4 * ATTEMPT)
        assert len(left.inits) == n and not left.of(KeyingFailed)
        assert not left.ep.stop_keying(CONNECTION)


@VERSIONS
async def test_dpd_restart_uses_the_keyingtries_budget(version: int) -> None:
    """The peer vanishes: dead peer detection, dpd_action = restart initiates
    again with the whole keyingtries budget (2 attempts), then gives up."""
    opts: dict[str, Any] = {"keyingtries": 2, "dpd_delay": 0.1, "dpd_timeout": 0.3,
                            "child_options": {"dpd_action": "restart"}}
    async with left_endpoint(version, **opts) as left:
        right = await right_endpoint(left, version, keyingtries=2, dpd_delay=0)
        try:
            left.ep.initiate(CONNECTION)
            await until(lambda: left.established(), timeout=5, what="the tunnel")
        finally:
            await right.close(delete=False)  # gone without a word
        assert len(left.inits) == 1
        await until(lambda: left.of(KeyingFailed), timeout=10, what="the restart to give up")
        [failed] = left.of(KeyingFailed)
        assert failed.attempts == 2 and failed.reason == "peer not responding"
        assert [r.attempt for r in left.of(KeyingRetry)] == [2]
        assert len(left.inits) == 3  # the first IKE SA, then two attempts of the restart


@VERSIONS
async def test_dpd_restart_comes_back_with_the_peer(version: int) -> None:
    opts: dict[str, Any] = {"keyingtries": 0, "dpd_delay": 0.1, "dpd_timeout": 0.3,
                            "child_options": {"dpd_action": "restart"}}
    async with left_endpoint(version, **opts) as left:
        right = await right_endpoint(left, version, dpd_delay=0)
        left.ep.initiate(CONNECTION)
        try:
            await until(lambda: left.established(), timeout=5, what="the tunnel")
            old = left.established()[0]
        finally:
            await right.close(delete=False)
        await until(lambda: len(left.of(KeyingRetry)) >= 2, timeout=10, what="the restart's attempts")
        right = await right_endpoint(left, version, dpd_delay=0)
        try:
            await until(lambda: [p for p in left.established() if p is not old], timeout=5, what="the new tunnel")
            [new] = left.established()
            assert {ev.name for ev in new.children.values()} == {"app"}
        finally:
            await right.close(delete=False)


@VERSIONS
async def test_close_action_start_uses_the_keyingtries_budget(version: int) -> None:
    """The peer deletes the IKE SA and then does not answer new ones:
    close_action = start initiates again, 2 attempts (keyingtries = 2)."""
    async with left_endpoint(version, keyingtries=2, child_options={"close_action": "start"}) as left:
        right = await right_endpoint(left, version)
        try:
            left.ep.initiate(CONNECTION)
            await until(lambda: left.established(), timeout=5, what="the tunnel")
            peer = next(p for p in right.sessions if p.session.is_established)

            def drop_new_ike_sas(src: Any, data: bytes, dst: Any) -> bytes | None:
                return None if first_request_spi(data, dst) is not None else data

            left.net.mangle = drop_new_ike_sas
            await peer.close()
            await until(lambda: left.of(KeyingFailed), timeout=5, what="close_action's initiation to give up")
            [failed] = left.of(KeyingFailed)
            assert failed.attempts == 2 and failed.reason == "peer not responding"
            assert [r.attempt for r in left.of(KeyingRetry)] == [2]
            assert len(left.inits) == 3
        finally:
            await right.close(delete=False)


@VERSIONS
async def test_dpd_trap_installs_a_trap_policy(version: int) -> None:
    """dpd_action = trap: no initiation after the dead peer, a trap policy
    for the child's selectors instead (the next packet negotiates)."""
    opts: dict[str, Any] = {"keyingtries": 0, "dpd_delay": 0.1, "dpd_timeout": 0.3, "mode": "tunnel",
                            "child_options": {"dpd_action": "trap"}}
    async with left_endpoint(version, **opts) as left:
        right = await right_endpoint(left, version, dpd_delay=0, mode="tunnel")
        try:
            left.ep.initiate(CONNECTION)
            await until(lambda: left.established(), timeout=5, what="the tunnel")
            assert not left.ep.dataplane.traps
        finally:
            await right.close(delete=False)
        await until(lambda: left.ep.dataplane.traps, timeout=10, what="the trap policy")
        [trap] = left.ep.dataplane.traps
        assert (trap.conn, trap.child) == (CONNECTION, "app")
        assert [str(t) for t in trap.remote_ts] == ["203.0.113.0/24"]
        await asyncio.sleep(3 * ATTEMPT)
        assert len(left.inits) == 1 and not left.of(KeyingRetry)


@VERSIONS
async def test_every_attempt_asks_for_every_child(version: int) -> None:
    """A second Child SA asked for while the IKE SA is still being attempted
    (the daemon's second child with start_action = start) is negotiated once
    the peer answers a later attempt."""
    async with left_endpoint(version, keyingtries=0) as left:
        second = dataclasses.replace(left.cfg.children["app"], name="app2")
        left.cfg.children["app2"] = second
        proto = left.ep.initiate(CONNECTION)
        left.ep.create_child(proto, "app2")
        await until(lambda: len(left.of(KeyingRetry)) >= 2, timeout=5, what="further attempts")
        right = await right_endpoint(left, version)
        right_cfg = next(iter(right.configurations.values()))
        right_cfg.children["app2"] = dataclasses.replace(right_cfg.children["app"], name="app2")
        try:
            await until(lambda: any({ev.name for ev in p.children.values()} == {"app", "app2"}
                                    for p in left.established()), timeout=5, what="both Child SAs")
        finally:
            await right.close(delete=False)


async def test_an_attempt_that_cannot_start_ends_the_keying(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later attempt whose start raises (here a RuntimeError, as the other
    restart paths already catch) ends the attempts with KeyingFailed naming
    the reason, instead of escaping into the event loop's timer callback."""
    async with left_endpoint(2, keyingtries=3) as left:
        first = left.ep.initiate(CONNECTION)
        assert left.ep.keying_attempt(first) == (1, 3)

        def broken(*_a: Any, **_k: Any) -> Any:
            raise RuntimeError("no socket for this family")

        monkeypatch.setattr(left.ep, "_attempt", broken)
        await until(lambda: left.of(KeyingFailed), timeout=5, what="the keying to end")
        [failed] = left.of(KeyingFailed)
        assert (failed.attempts, failed.tries) == (2, 3)
        assert failed.reason == "could not start: no socket for this family"
        assert left.ep.keying_attempt(first) is None
