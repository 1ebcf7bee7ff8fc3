"""IKEv1 sessions driven by the asyncio endpoint over an in-memory network:
the responder is created by the endpoint through ``IkeSessionV1.respond``,
UDP encapsulation makes the endpoint use port 4500 with the non-ESP marker,
and closing deletes the SAs on both sides."""

from __future__ import annotations

import asyncio

import pytest
from ikev1_pair import psk_configs

from aioipsec.asyncio.client import connect, serve
from aioipsec.asyncio.sockets import MemoryNetwork


@pytest.mark.parametrize("encap", [False, True])
async def test_connect_serve_over_memory(encap: bool) -> None:
    net = MemoryNetwork()
    ci, cr = psk_configs(dpd_delay=0, encap=encap)
    ci.local_addrs, ci.remote_addrs = ["192.0.2.1"], ["198.51.100.2"]
    cr.local_addrs, cr.remote_addrs = ["198.51.100.2"], ["192.0.2.1"]
    server = await serve("198.51.100.2", configuration=cr, network=net)
    try:
        async with connect("198.51.100.2", configuration=ci, network=net, timeout=10) as ike:
            assert ike.ike_info is not None and ike.ike_info.version == 1
            (child,) = ike.children.values()
            assert child.encap is encap and child.algorithms == "aes128-sha1"
            assert ike.session.nat_t is encap
            await asyncio.sleep(0.05)
            (proto,) = server.sessions
            assert proto.session.is_established
            assert [c.spi_out for c in proto.children.values()] == [child.spi_in]
            if encap:
                assert proto.use_4500 and proto.session.local_addr[1] == 4500
        for _ in range(50):
            if not server.sessions:
                break
            await asyncio.sleep(0.01)
        assert not server.sessions
    finally:
        await server._close()
