"""AES-CMAC (RFC 4494 integrity, RFC 4615 PRF) and the Brainpool groups
(RFC 6954) end to end: two gateways on an in-memory network negotiate IKE
and ESP with them, and packets cross the tunnel both ways.

The interop counterpart (against charon) is
tests/interop/test_ikev2_algorithms.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from asyncwait import until
from memory_gateways import Gateways, memory_gateways

from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import child, connection
from aioipsec.netutil import udp_packet

GW_A, GW_B = "192.0.2.1", "192.0.2.2"
NET_A, NET_B = "198.51.100.0/24", "203.0.113.0/24"
HOST_A, HOST_B = "198.51.100.10", "203.0.113.20"
PSK = "memory-algorithms-test-psk"


@dataclass(frozen=True)
class Case:
    ike: str            # both ends' IKE proposal
    esp: str            # both ends' ESP proposal
    ike_selected: str   # IkeSaEstablished.algorithms
    integ: str | None   # the Child SA's integrity algorithm


CASES = [
    Case("aes128-aescmac-prfaescmac-ecp256bp", "aes128-aescmac",
         "aes128-aescmac-prfaescmac-ecp256bp", "aescmac"),
    # no PRF named: the integrity algorithm's (as strongSwan does)
    Case("aes256-aescmac-ecp384bp", "aes256-aescmac",
         "aes256-aescmac-prfaescmac-ecp384bp", "aescmac"),
    Case("aes256gcm16-prfaescmac-ecp512bp", "aes128gcm16",
         "aes256gcm16-prfaescmac-ecp512bp", None),
]


Pair = Gateways


@pytest.fixture
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    case: Case = request.param
    common = {"psk": PSK, "dpd_delay": 0, "proposals": [case.ike]}
    ca = connection("to-b", local_id="a.example", remote_id="b.example", local_addrs=[GW_A],
                    remote_addrs=[GW_B], children=[child("lan", local_ts=[NET_A], remote_ts=[NET_B],
                                                         esp_proposals=[case.esp])], **common)
    cb = connection("to-a", local_id="b.example", remote_id="a.example", local_addrs=[GW_B],
                    remote_addrs=[GW_A], children=[child("lan", local_ts=[NET_B], remote_ts=[NET_A],
                                                         esp_proposals=[case.esp])], **common)
    async with memory_gateways(MemoryNetwork(), (GW_A, ca), (GW_B, cb), queue_size=256) as p:
        yield p


@pytest.mark.parametrize("pair", [pytest.param(c, id=c.ike) for c in CASES], indirect=True)
async def test_ike_and_esp_with_cmac_and_brainpool(pair: Pair, request: pytest.FixtureRequest) -> None:
    case: Case = request.node.callspec.params["pair"]
    p = pair
    proto = p.a.initiate("to-b")
    ike = await asyncio.wait_for(proto.wait_established(), 5)
    ch = await asyncio.wait_for(proto.wait_child("lan"), 5)
    await until(lambda: p.b.dataplane.sad_in, what="responder SA")
    (peer,) = p.b.sessions
    peer_ike = await asyncio.wait_for(peer.wait_established(), 5)
    assert ike.algorithms == peer_ike.algorithms == case.ike_selected
    assert ch.encr is not None and ch.encr.name == case.esp.split("-")[0]
    assert (ch.integ.name if ch.integ else None) == case.integ
    if case.integ == "aescmac":
        assert len(ch.integ_key_in) == len(ch.integ_key_out) == 16 and ch.integ_key_in != ch.integ_key_out

    out = [udp_packet(HOST_A, HOST_B, 40000, 9, b"a->b %d" % i) for i in range(5)]
    back = [udp_packet(HOST_B, HOST_A, 9, 40000, b"b->a %d" % i) for i in range(5)]
    p.host_a.end.send_batch(out)
    await until(lambda: len(p.host_b.received) == 5, what="packets a -> b")
    p.host_b.end.send_batch(back)
    await until(lambda: len(p.host_a.received) == 5, what="packets b -> a")
    assert sorted(p.host_b.received) == sorted(out) and sorted(p.host_a.received) == sorted(back)
    (pipe,) = p.a.dataplane.outbound
    assert (pipe.sa_out.integ_alg.name if pipe.sa_out.integ_alg else None) == case.integ
    assert pipe.sa_out.stats.packets_out == 5
