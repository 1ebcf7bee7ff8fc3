"""IKE_SA_INIT NAT-D notifies of the wrong size (not a 20-octet SHA-1 hash).

charon's notify payload verification rejects such a message (the request is
answered with INVALID_SYNTAX and the half-open IKE SA is gone); the shared
reader (``ike_natd.natd_hashes``, as MOBIKE already did) does the same here.
Before, the hash was compared as it was, so it could only ever read as a NAT:
the responder answered normally and both sides floated to port 4500."""

from __future__ import annotations

import dataclasses

import pytest
from ikev2_pair import Pair, psk_pair_configs

from aioipsec.events import IkeSaEstablished, NegotiationFailed
from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.v2.message import decode_message, encode_message
from aioipsec.ike.v2.payloads import NotifyPayload
from aioipsec.ike.v2.tasks.ike_natd import NATD_LEN, natd_hashes


def _resize_natd(data: bytes, which: int, size: int) -> bytes:
    """``data`` (an unencrypted IKE_SA_INIT) with the NAT-D notify ``which``
    cut or padded to ``size`` octets."""
    msg = decode_message(data)
    payloads = []
    for p in msg.payloads:
        if isinstance(p, NotifyPayload) and p.notify_type == which:
            p = dataclasses.replace(p, data=(p.data + bytes(size))[:size])
        payloads.append(p)
    msg.payloads = payloads
    return encode_message(msg)


@pytest.mark.parametrize("which", [NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP],
                         ids=["source", "destination"])
@pytest.mark.parametrize("size", [0, NATD_LEN - 1, NATD_LEN + 1])
def test_request_with_a_wrong_size_natd_is_answered_invalid_syntax(which: NotifyType, size: int) -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    [init] = p.out_i()
    p.to_r([_resize_natd(init, which, size)])
    assert p.r is not None
    [answer] = p.out_r()
    reply = decode_message(answer)
    assert reply.exchange_type == ExchangeType.IKE_SA_INIT and reply.response
    assert [n.notify_type for n in reply.notifies] == [NotifyType.INVALID_SYNTAX]
    assert reply.spi_r == bytes(8)
    assert p.r.is_closed and p.r.stats.errors_answered == 1
    [failed] = p.events("r", NegotiationFailed)
    assert failed.exchange == "IKE_SA_INIT" and failed.notify == "INVALID_SYNTAX" and f"{size} bytes" in failed.reason
    assert not p.events("r", IkeSaEstablished)


@pytest.mark.parametrize("which", [NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP],
                         ids=["source", "destination"])
def test_response_with_a_wrong_size_natd_fails_the_initiator(which: NotifyType) -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    p.to_r(p.out_i())
    [answer] = p.out_r()
    p.to_i([_resize_natd(answer, which, NATD_LEN - 1)])
    assert p.i.is_closed and p.i.stats.malformed == 1
    assert not p.out_i(), "IKE_AUTH was sent after an invalid IKE_SA_INIT response"
    assert p.i.local_addr[1] == 500 and not p.i.nat_t
    [failed] = p.events("i", NegotiationFailed)
    assert failed.exchange == "IKE_SA_INIT" and failed.notify == "INVALID_SYNTAX"


def test_the_20_octet_hashes_still_pass() -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    [init] = p.out_i()
    src, dst = natd_hashes(decode_message(init))
    assert [len(h) for h in src + dst] == [NATD_LEN, NATD_LEN]
    p.to_r([init])
    p.to_i(p.out_r())
    assert p.roundtrip() == (1, 1)
    assert p.events("i", IkeSaEstablished) and p.events("r", IkeSaEstablished)
