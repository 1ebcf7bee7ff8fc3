"""Make-before-break reauthentication in the data-plane glue: a Child SA of a
*new* IKE SA (another owner session of the same connection and peer) with the
same child and selectors as an installed one is a reauthentication's.  The
side that answered it (the gateway) keeps sending on the old SA until the
peer sends on the new one or the old one is deleted, as for a Child rekey; an
old SA deleted with its IKE SA while its successor is up keeps receiving for
the rekey grace (the peer's last packets on it may still be on their way)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from test_dataplane_rekey_switch import (
    ALG,
    PKT,
    REPLY,
    FakeEndpoint,
    Inner,
    event,
    spi_of,
)

from aioipsec.asyncio import dataplane as dp_mod
from aioipsec.asyncio.dataplane import DataPlane
from aioipsec.esp.sa import EspSa
from aioipsec.events import ChildSaDeleted


class Owner:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def plane() -> Any:
    loop = asyncio.new_event_loop()
    ep = FakeEndpoint(loop)
    inner = Inner()
    dp = DataPlane(ep, inner)  # type: ignore[arg-type]
    yield dp, ep, inner, loop
    loop.close()


def test_reauth_responder_keeps_sending_on_the_old_sa_until_deleted(plane: Any) -> None:
    dp, ep, _inner, _loop = plane
    k = [os.urandom(20) for _ in range(4)]
    old_ike, new_ike = Owner("rw"), Owner("rw")
    dp.install(old_ike, event(0x100, 0x200, k[0], k[1], initiator=False, rekeyed_from=None))  # type: ignore[arg-type]
    dp.install(new_ike, event(0x101, 0x201, k[2], k[3], initiator=False, rekeyed_from=None))  # type: ignore[arg-type]
    dp.outbound_packets([PKT])
    assert [spi_of(d) for d, _ in ep.sent] == [0x200]  # the peer may not have installed 0x101 yet
    dp.remove(ChildSaDeleted("lan", 0x100, 0x200, "ike sa deleted"))
    dp.outbound_packets([PKT])
    assert [spi_of(d) for d, _ in ep.sent] == [0x200, 0x201]


def test_reauth_responder_switches_on_traffic_from_the_new_sa(plane: Any) -> None:
    dp, ep, inner, _loop = plane
    k = [os.urandom(20) for _ in range(4)]
    dp.install(Owner("rw"), event(0x100, 0x200, k[0], k[1], initiator=False, rekeyed_from=None))  # type: ignore[arg-type]
    dp.install(Owner("rw"), event(0x101, 0x201, k[2], k[3], initiator=False, rekeyed_from=None))  # type: ignore[arg-type]
    peer_out = EspSa(spi=0x101, encr=ALG, encr_key=k[2], inbound=False)
    dp.inbound_datagrams([peer_out.seal(REPLY)])
    assert inner.got == [REPLY]
    dp.outbound_packets([PKT])
    assert [spi_of(d) for d, _ in ep.sent] == [0x201]


def test_reauth_initiator_switches_at_once_and_the_old_sa_lingers_inbound(plane: Any) -> None:
    dp, ep, inner, _loop = plane
    k = [os.urandom(20) for _ in range(4)]
    old_ike, new_ike = Owner("home"), Owner("home")
    dp.install(old_ike, event(0x100, 0x200, k[0], k[1], initiator=True, rekeyed_from=None))  # type: ignore[arg-type]
    dp.install(new_ike, event(0x101, 0x201, k[2], k[3], initiator=True, rekeyed_from=None))  # type: ignore[arg-type]
    dp.outbound_packets([PKT])
    assert [spi_of(d) for d, _ in ep.sent] == [0x201]
    # the old IKE SA is deleted with its Child SA; the session is forgotten
    dp.remove(ChildSaDeleted("lan", 0x100, 0x200, "ike sa deleted"))
    dp.remove_owner(old_ike)  # type: ignore[arg-type]
    # a packet the peer sent on the old SA before it saw the delete still gets in
    late = EspSa(spi=0x100, encr=ALG, encr_key=k[0], inbound=False).seal(REPLY)
    dp.inbound_datagrams([late])
    assert inner.got == [REPLY]
    assert 0x100 in dp._grace and dp_mod.REKEYED_INBOUND_GRACE > 0


def test_an_unrelated_sa_of_another_connection_is_not_a_successor(plane: Any) -> None:
    dp, ep, _inner, _loop = plane
    k = [os.urandom(20) for _ in range(4)]
    dp.install(Owner("a"), event(0x100, 0x200, k[0], k[1], initiator=False, rekeyed_from=None))  # type: ignore[arg-type]
    dp.install(Owner("b"), event(0x101, 0x201, k[2], k[3], initiator=False, rekeyed_from=None))  # type: ignore[arg-type]
    dp.outbound_packets([PKT])
    assert [spi_of(d) for d, _ in ep.sent] == [0x201]  # the newest SA, as before
    dp.remove(ChildSaDeleted("lan", 0x101, 0x201, "deleted by peer"))
    assert 0x101 not in dp.sad_in  # no grace: nothing took its place
