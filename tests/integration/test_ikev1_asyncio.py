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


async def test_forged_mm2_ahead_of_the_real_one_through_the_endpoint() -> None:
    """The endpoint routes IKEv1 by cookie pair: while our Main Mode waits
    for MM4, an MM2 under another responder cookie must still reach the
    session (``IkeSessionV1.cookie_pairs`` lists CKY-I + zero then).  An
    on-path attacker delivers a copy of the real MM2 under its own cookie
    first; the initiator's MM3 under that cookie goes unanswered, its
    retransmission goes to the real responder's cookie instead, and the
    connection comes up."""
    net = MemoryNetwork()
    fast = {"dpd_delay": 0, "retransmit_timeout": 0.2, "retransmit_base": 1.0, "retransmit_tries": 3}
    ci, cr = psk_configs(**fast)
    ci.local_addrs, ci.remote_addrs = ["192.0.2.1"], ["198.51.100.2"]
    cr.local_addrs, cr.remote_addrs = ["198.51.100.2"], ["192.0.2.1"]
    forged: list[bytes] = []

    def tap(src: tuple[str, int], data: bytes, dst: tuple[str, int]) -> None:
        # the responder's MM2: Main Mode (exchange 2), message ID 0, not encrypted, a responder cookie
        if forged or src[0] != "198.51.100.2" or len(data) < 28 or data[18] != 2 or data[19] & 1:
            return
        if data[8:16] == bytes(8) or data[20:24] != bytes(4):
            return
        forged.append(data[:8] + b"\xee" * 8 + data[16:])
        net.loop.call_soon(net._deliver, dst, [(forged[0], src)])  # ahead of the real one (scheduled after us)

    net.tap = tap
    server = await serve("198.51.100.2", configuration=cr, network=net)
    try:
        async with connect("198.51.100.2", configuration=ci, network=net, timeout=10) as ike:
            assert forged
            stats = ike.session.stats
            assert stats["mm2_alternatives"] == 1 and stats["mm2_switches"] >= 1
            assert ike.session.is_established and ike.children
            await asyncio.sleep(0.05)
            (proto,) = server.sessions
            assert proto.session.is_established
            assert ike.session.sa.spi_r == proto.session.sa.spi_r != b"\xee" * 8
    finally:
        await server._close()
