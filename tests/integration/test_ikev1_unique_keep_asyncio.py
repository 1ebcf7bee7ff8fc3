"""IKEv1 ``unique = "keep"`` through the asyncio endpoint, in memory: a site
that lost its state comes back from another address *without* INITIAL-CONTACT;
the gateway keeps its first ISAKMP SA and IPsec SA and deletes the newcomer's
ISAKMP SA once its Phase 1 is established (the site is told: its session
closes, deleted by the peer).  With INITIAL-CONTACT the newcomer replaces the
old session instead (charon's behaviour: the peer says it lost that state)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asyncwait import until
from test_ikev1_new_phase1_new_address import SITE2, gw_cfg, site_cfg
from test_nat_rebinding import GW, SITE

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.events import IkeSaDeleted
from aioipsec.transports.memory import memory_pipe


@pytest.mark.parametrize("initial_contact", [False, True])
async def test_keep_deletes_the_newcomer_unless_it_sent_initial_contact(initial_contact: bool) -> None:
    net = MemoryNetwork()
    gw_ep = await Endpoint.create(GW, configurations=[gw_cfg(unique="keep")], network=net,
                                  inner=memory_pipe(queue_size=64)[0])
    site_ep = await Endpoint.create(SITE, configurations=[site_cfg(SITE)], network=net,
                                    inner=memory_pipe(queue_size=64)[0])
    events: list[Any] = []
    gw_ep.event_listeners.append(lambda p, ev: events.append((p, ev)))
    site2_events: list[Any] = []
    site2_ep = None
    try:
        site_ep.initiate("to-gw", "lan")
        await until(lambda: gw_ep.dataplane.outbound, what="the first IPsec SA")
        (old,) = gw_ep.sessions
        await asyncio.wait_for(site_ep.close(delete=False), 5)
        cfg2 = site_cfg(SITE2)
        cfg2.initial_contact = initial_contact
        site2_ep = await Endpoint.create(SITE2, configurations=[cfg2], network=net,
                                         inner=memory_pipe(queue_size=64)[0])
        site2_ep.event_listeners.append(lambda p, ev: site2_events.append(ev))
        site2_ep.initiate("to-gw", "lan")
        if initial_contact:
            await until(lambda: old.session.is_closed, what="the old session replaced")
            await until(lambda: [p.remote[0] for p in gw_ep.dataplane.outbound] == [SITE2], what="the new IPsec SA")
            return
        await until(lambda: any(isinstance(ev, IkeSaDeleted) and p is not old for p, ev in events),
                    what="the newcomer deleted")
        (refused,) = [ev for p, ev in events if isinstance(ev, IkeSaDeleted) and p is not old]
        assert "unique = keep" in refused.reason
        assert not old.session.is_closed and [p.remote[0] for p in gw_ep.dataplane.outbound] == [SITE]
        assert [p for p in gw_ep.sessions if not p.session.is_closed] == [old]
        await until(lambda: any(isinstance(ev, IkeSaDeleted) for ev in site2_events), what="the site told")
    finally:
        if site2_ep is not None:
            await asyncio.wait_for(site2_ep.close(timeout=1.0), 5)
        await asyncio.wait_for(gw_ep.close(timeout=1.0), 5)
