"""``close_action`` (swanctl semantics) with the in-memory pair of
:mod:`aioipsec.testing`: the *left* peer has the option; the right peer (its
peer) deletes the Child SA or the IKE SA.

- ``start``: the Child SA is negotiated again at once (on the same IKE SA
  after a Child delete, on a new IKE SA after an IKE delete);
- ``trap``: a trap policy is installed, the next matching packet negotiates
  and is delivered;
- ``none``: nothing;
- and the option never acts on a local ``down``/close or Child delete."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asyncwait import until

from aioipsec.events import ChildSaInstalled
from aioipsec.netutil import parse_udp, udp_packet
from aioipsec.testing import LEFT_HOST, RIGHT_HOST, IpsecPair, open_pair

VERSIONS = pytest.mark.parametrize("version", [2, 1], ids=["ikev2", "ikev1"])


def pair(version: int = 2) -> Any:
    return open_pair(version=version, mode="tunnel", inner="pipe", dpd_delay=0)


def with_close_action(p: IpsecPair, action: str) -> None:
    """Only the left peer acts (the configuration object its endpoint uses);
    the right peer keeps the default, none."""
    p.left.config.children["app"].close_action = action


async def delivered(p: IpsecPair, payload: bytes) -> None:
    """A packet from the left host reaches the right host through the tunnel."""
    p.left.app.send_batch([udp_packet(LEFT_HOST, RIGHT_HOST, 40000, 9, payload)])
    got = await asyncio.wait_for(p.right.app.recv_batch(), 5)
    assert [parse_udp(x)[4] for x in got] == [payload]  # type: ignore[index]


def installed(p: IpsecPair) -> list[ChildSaInstalled]:
    return [pipe.ev for pipe in p.left.endpoint.dataplane.outbound]


def live_sessions(p: IpsecPair) -> list[Any]:
    return [s for s in p.left.endpoint.sessions if not s.session.is_closed]


@VERSIONS
async def test_start_after_peer_deletes_child_sa(version: int) -> None:
    async with pair(version) as p:
        with_close_action(p, "start")
        old = p.left.child
        assert old is not None and p.right.session is not None and p.right.child is not None
        await p.right.session.delete_child_sa(p.right.child.spi_in)
        await until(lambda: [ev.spi_in for ev in installed(p)] not in ([], [old.spi_in]), what="re-created Child SA")
        (new,) = installed(p)
        assert new.name == "app" and new.spi_in != old.spi_in
        assert live_sessions(p) == [p.left.session]  # on the same IKE SA
        await delivered(p, b"after child delete")


@VERSIONS
async def test_start_after_peer_deletes_ike_sa(version: int) -> None:
    async with pair(version) as p:
        with_close_action(p, "start")
        old = p.left.session
        assert p.right.session is not None
        await p.right.session.close()
        await until(lambda: any(s is not old and s.session.is_established for s in live_sessions(p)) and installed(p),
                    what="a new IKE SA with the Child SA")
        (new,) = live_sessions(p)
        assert new is not old and old.session.is_closed
        await delivered(p, b"after IKE delete")


@VERSIONS
async def test_trap_after_peer_deletes_ike_sa(version: int) -> None:
    async with pair(version) as p:
        with_close_action(p, "trap")
        assert p.right.session is not None
        dp = p.left.endpoint.dataplane
        assert not dp.traps
        await p.right.session.close()
        await until(lambda: dp.traps, what="trap policy")
        (trap,) = dp.traps
        assert (trap.conn, trap.child) == ("pair", "app") and not trap.pending
        assert [str(t) for t in trap.remote_ts] == ["203.0.113.0/24"]
        await asyncio.sleep(0.05)
        assert not live_sessions(p) and not installed(p)  # nothing until traffic
        # the next packet negotiates, waits in the hold queue, and is delivered
        await delivered(p, b"first packet after the trap")
        assert len(live_sessions(p)) == 1 and len(installed(p)) == 1 and trap.acquires == 1


async def test_trap_after_peer_deletes_child_sa() -> None:
    async with pair() as p:
        with_close_action(p, "trap")
        assert p.right.session is not None and p.right.child is not None
        await p.right.session.delete_child_sa(p.right.child.spi_in)
        dp = p.left.endpoint.dataplane
        await until(lambda: dp.traps, what="trap policy")
        assert not installed(p)
        await delivered(p, b"child again")
        assert live_sessions(p) == [p.left.session]  # the Child SA came back on the same IKE SA
        assert len(installed(p)) == 1


@pytest.mark.parametrize("what", ["child", "ike"])
async def test_none_does_nothing(what: str) -> None:
    async with pair() as p:
        assert p.left.config.children["app"].close_action == "none"
        assert p.right.session is not None and p.right.child is not None
        if what == "child":
            await p.right.session.delete_child_sa(p.right.child.spi_in)
        else:
            await p.right.session.close()
        await until(lambda: not installed(p), what="Child SA gone")
        await asyncio.sleep(0.1)
        assert not installed(p) and not p.left.endpoint.dataplane.traps
        assert len(live_sessions(p)) == (1 if what == "child" else 0)
        p.left.app.send_batch([udp_packet(LEFT_HOST, RIGHT_HOST, 40000, 9, b"dropped")])
        await until(lambda: p.left.endpoint.dataplane.stats.no_policy == 1, what="no-policy drop")


@pytest.mark.parametrize("action", ["start", "trap"])
@pytest.mark.parametrize("what", ["child", "ike"])
async def test_local_delete_never_triggers(action: str, what: str) -> None:
    async with pair() as p:
        with_close_action(p, action)
        assert p.left.session is not None and p.left.child is not None
        old = p.left.session
        if what == "child":
            await old.delete_child_sa(p.left.child.spi_in)
        else:
            await old.close()
        await until(lambda: not installed(p), what="Child SA gone")
        await asyncio.sleep(0.1)
        assert not installed(p) and not p.left.endpoint.dataplane.traps
        assert live_sessions(p) == ([old] if what == "child" else [])
