"""DPD probes only an idle peer: ESP arriving from the peer counts as
liveness, as an IKE message does (strongSwan: a DPD is sent "only if no IKE
or ESP/AH packet has been received for the configured DPD delay"; RFC 3706
§5.3 for IKEv1).  Two in-memory peers with dpd_delay = 0.5 s exchange tunnel
traffic for 2 s: no liveness check goes out; then they fall silent and the
checks start again."""

from __future__ import annotations

import asyncio

import pytest

from aioipsec.testing import open_pair

DPD_DELAY = 0.5
INFORMATIONAL = {2: 37, 1: 5}  # IKEv2 INFORMATIONAL, ISAKMP Informational


def informational_count(log: list[bytes], version: int) -> int:
    """IKE Informational messages among the datagrams seen on the wire (IKE
    header at offset 0 on port 500, after the 4-byte non-ESP marker on 4500)."""
    n = 0
    for data in log:
        hdr = data[4:] if data[:4] == b"\x00\x00\x00\x00" else data
        if len(hdr) >= 28 and hdr[18] == INFORMATIONAL[version] and hdr[17] in (0x20, 0x10):
            n += 1
    return n


@pytest.mark.parametrize("version", [2, 1])
async def test_traffic_from_the_peer_defers_dpd(version: int) -> None:
    async with open_pair(version=version, dpd_delay=DPD_DELAY) as pair:
        ike: list[bytes] = []
        pair.network.tap = lambda src, data, dst: ike.append(data) if 500 in (src[1], dst[1]) or 4500 in (src[1], dst[1]) else None
        a = pair.left.open_datagram(5000)
        b = pair.right.open_datagram(6000)
        got = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 4 * DPD_DELAY
        while loop.time() < end:
            a.sendto(b"ping", 6000)
            b.sendto(b"pong", 5000)
            await asyncio.sleep(DPD_DELAY / 5)
            got += len(await asyncio.wait_for(a.recvfrom(), 1.0)) > 0
            got += len(await asyncio.wait_for(b.recvfrom(), 1.0)) > 0
        assert got >= 20  # traffic flowed both ways the whole time
        during = informational_count(ike, version)
        assert during == 0, f"{during} liveness messages while ESP flowed both ways"
        # idle: now the peers check each other again
        await asyncio.sleep(3 * DPD_DELAY)
        assert informational_count(ike, version) >= 2
