"""IKEv1 XAUTH (draft-beaulieu-ike-xauth) and Mode Config (draft-dukes-ike-mode-cfg):
a gateway with ``remote-2 = { auth = "xauth" }`` and a pool, and a road warrior
with ``local-2 = { auth = "xauth" }`` and ``vips = ["0.0.0.0"]``, in memory.

The gateway's messages are also decrypted and checked here with the Phase-2
IV rule and HASH = prf(SKEYID_a, M-ID | ATTR) computed independently."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from ikev1_pair import ADDR_I, Pair

from aioipsec.config import AuthConfig, PoolConfig, child, connection
from aioipsec.events import AuthFailed, ChildSaInstalled, IkeSaDeleted, IkeSaEstablished
from aioipsec.ike.v1.constants import (
    VID_XAUTH,
    CfgAttr,
    CfgType,
    ExchangeType,
    Flag,
    PayloadType,
)
from aioipsec.ike.v1.message import Message, decode_message, encode_message
from aioipsec.ike.v1.payloads import (
    AttributePayload,
    CfgAttribute,
    HashPayload,
    UnknownPayload,
    encode_chain,
)
from aioipsec.ike.v2.pools import build_pools
from aioipsec.selectors import parse_ts

PSK = "group-secret"


def configs(password: str = "alice-pw", *, xauth_client: bool = True):
    client = connection(
        "rw",
        version=1,
        proposals=["aes128-sha256-modp2048"],
        psk=PSK,
        local_id="rw.example",
        remote_id="gw.example",
        vips=["0.0.0.0"],
        local2=AuthConfig(auth="xauth", xauth_id="alice") if xauth_client else None,
        xauth_secrets={"alice": password.encode()},
        children=[child("net", remote_ts=["10.2.0.0/16"], esp_proposals=["aes128-sha256"])],
    )
    gw = connection(
        "gw",
        version=1,
        proposals=["aes128-sha256-modp2048"],
        psk=PSK,
        local_id="gw.example",
        pools=["rw"],
        remote2=AuthConfig(auth="xauth"),
        xauth_secrets={"alice": b"alice-pw", "bob": b"bob-pw"},
        children=[child("net", local_ts=["10.2.0.0/16"], esp_proposals=["aes128-sha256"])],
    )
    return client, gw


def make_pair(password: str = "alice-pw", **kw) -> tuple[Pair, dict]:
    ci, cr = configs(password, **kw)
    p = Pair(ci, cr)
    pools = build_pools([PoolConfig("rw", "10.3.0.0/28", dns=["10.3.0.53"])])
    p.r.pools = pools
    # remember the gateway's ISAKMP SAs (and keys) past their deletion
    p.r_sas = []
    done = p.r._phase1_done

    def phase1_done(sa, now):
        p.r_sas.append(sa)
        done(sa, now)

    p.r._phase1_done = phase1_done
    return p, pools


def transactions(p: Pair) -> list:
    return [d for d in p.wire if d.exchange == ExchangeType.TRANSACTION]


def open_transactions(p: Pair) -> list[tuple[str, AttributePayload]]:
    """Decrypt every Transaction datagram (IV: hash(last Phase 1 block | M-ID),
    then the CBC chain of that exchange) and check its HASH independently."""
    keys = p.r_sas[-1].keys
    chains: dict[int, bytes] = {}
    out = []
    seen = set()
    for d in transactions(p):
        if d.data in seen:
            continue  # a retransmission
        seen.add(d.data)
        hdr = d.data[:28]
        mid = int.from_bytes(hdr[20:24], "big")
        assert hdr[19] & Flag.ENCRYPTION
        iv = chains.get(mid) or hashlib.sha256(keys.iv.phase1_iv + mid.to_bytes(4, "big")).digest()[:16]
        msg, last = decode_message(d.data, keys.encr, iv)
        chains[mid] = last
        assert isinstance(msg.payloads[0], HashPayload)
        want = hmac.new(keys.skeyid_a, mid.to_bytes(4, "big") + msg.after_first(), "sha256").digest()
        assert msg.payloads[0].data == want
        out.append((d.sender, msg.get(AttributePayload)))
    return out


def test_xauth_and_mode_config_give_the_client_a_pool_address_for_quick_mode() -> None:
    p, pools = make_pair()
    p.start()
    assert VID_XAUTH in p.wire[1].data  # MM2 announces XAUTH, as strongSwan and Cisco gateways do
    steps = p.steps("r")
    for s in ("XAUTH-REQUEST sent", "XAUTH-REPLY received", "XAUTH-SET sent", "XAUTH-ACK received",
              "XAUTH complete", "MODECFG-REPLY sent", "IPsec SA established"):
        assert s in steps, (s, steps)
    # request, reply, set, ack, Mode Config request and reply: in that order, before Quick Mode
    msgs = open_transactions(p)
    kinds = [(who, a.cfg_type) for who, a in msgs]
    assert kinds == [("r", CfgType.REQUEST), ("i", CfgType.REPLY), ("r", CfgType.SET), ("i", CfgType.ACK),
                     ("i", CfgType.REQUEST), ("r", CfgType.REPLY)]
    req = msgs[0][1]
    assert {a.type for a in req.attributes} == {CfgAttr.XAUTH_TYPE, CfgAttr.XAUTH_USER_NAME, CfgAttr.XAUTH_USER_PASSWORD}
    assert msgs[1][1].get(CfgAttr.XAUTH_USER_NAME).value == b"alice"
    assert msgs[1][1].get(CfgAttr.XAUTH_USER_PASSWORD).value == b"alice-pw"
    assert msgs[2][1].get(CfgAttr.XAUTH_STATUS) == CfgAttribute.basic(CfgAttr.XAUTH_STATUS, 1)
    reply = msgs[5][1]
    assert reply.identifier == msgs[4][1].identifier
    assert reply.get(CfgAttr.INTERNAL_IP4_ADDRESS).value == bytes([10, 3, 0, 1])
    assert reply.get(CfgAttr.INTERNAL_IP4_NETMASK).value == b"\xff" * 4
    assert reply.get(CfgAttr.INTERNAL_IP4_DNS).value == bytes([10, 3, 0, 53])
    first_qm = next(n for n, d in enumerate(p.wire) if d.exchange == ExchangeType.QUICK_MODE)
    last_tr = max(n for n, d in enumerate(p.wire) if d.exchange == ExchangeType.TRANSACTION)
    assert last_tr < first_qm

    est_i = p.of("i", IkeSaEstablished)
    assert est_i and est_i[-1].local_vips == ("10.3.0.1",) and est_i[-1].dns == ("10.3.0.53",)
    assert p.of("r", IkeSaEstablished)[-1].remote_vips == ("10.3.0.1",)
    [ci] = p.of("i", ChildSaInstalled)
    [cr] = p.of("r", ChildSaInstalled)
    assert ci.local_ts == (parse_ts("10.3.0.1/32"),) and ci.remote_ts == (parse_ts("10.2.0.0/16"),)
    assert cr.remote_ts == (parse_ts("10.3.0.1/32"),) and cr.local_ts == (parse_ts("10.2.0.0/16"),)
    assert pools["rw"].leases() == [("10.3.0.1", "alice", True)]
    assert p.r.sa.xauth_user == "alice"

    # the SA goes: the lease goes offline (kept for alice), and comes back on reconnect
    p.i.delete(p.now)
    p.pump()
    assert p.r.is_closed
    assert pools["rw"].leases() == [("10.3.0.1", "alice", False)]


def test_no_ike_sa_established_and_no_quick_mode_before_xauth() -> None:
    p, _ = make_pair()
    # the client never answers the XAUTH REQUEST
    p.drop = lambda d: d.sender == "i" and d.exchange == ExchangeType.TRANSACTION
    p.start()
    assert "IKE Phase 1 complete" in p.steps("r")
    assert not p.of("r", IkeSaEstablished) and not p.of("i", IkeSaEstablished)
    assert not [d for d in p.wire if d.exchange == ExchangeType.QUICK_MODE]
    p.advance(p.now + 200)
    [gone] = p.of("r", IkeSaDeleted)
    assert gone.reason == "retransmits exhausted"


def test_wrong_password_gets_status_0_and_the_sa_is_deleted(caplog: pytest.LogCaptureFixture) -> None:
    p, pools = make_pair(password="guess-123")
    with caplog.at_level(logging.INFO, logger="aioipsec.ike"):
        p.start()
    msgs = open_transactions(p)
    # the gateway asks xauth_tries (default 3) times, then the SET says 0
    # (test_ikev1_xauth_tries.py covers the tries)
    assert [a.cfg_type for _, a in msgs[:6]] == [CfgType.REQUEST, CfgType.REPLY] * 3
    assert msgs[6][1].get(CfgAttr.XAUTH_STATUS) == CfgAttribute.basic(CfgAttr.XAUTH_STATUS, 0)
    [fail] = p.of("r", AuthFailed)
    assert fail.step == "XAUTH" and ADDR_I[0] in fail.peer and "rw.example" in fail.peer
    assert "'alice'" in fail.reason and "wrong password" in fail.reason
    assert [e.reason for e in p.of("r", IkeSaDeleted)] == ["XAUTH failed"]
    assert p.r.is_closed and p.i.is_closed  # the client was told (a protected delete)
    assert p.of("i", AuthFailed)[0].step == "XAUTH"
    assert not p.of("r", IkeSaEstablished) and not p.of("r", ChildSaInstalled)
    assert pools["rw"].leases() == []
    logged = caplog.text
    assert "XAUTH authentication failed with 192.0.2.1[rw.example]: user 'alice'" in logged
    assert "guess-123" not in logged


def test_unknown_user_fails_the_same_way() -> None:
    ci, cr = configs()
    cr.xauth_secrets = {"bob": b"bob-pw"}
    p = Pair(ci, cr)
    p.start()
    [fail] = p.of("r", AuthFailed)
    assert "unknown XAUTH user 'alice'" in fail.reason
    assert p.r.is_closed


def test_phase1_without_xauth_on_an_xauth_gateway_is_refused() -> None:
    """A client that does not do XAUTH offers plain PSK, which an XAUTH
    gateway does not accept (it proposes XAUTHInitPreShared)."""
    p, _ = make_pair(xauth_client=False)
    p.start()
    assert not p.of("r", IkeSaEstablished)
    assert not transactions(p)


def forged(p: Pair, mid: int, body: bytes, *, good_hash: bool = True) -> bytes:
    """A Transaction from the client under its own keys and the right IV,
    with ``body`` as attribute payload."""
    keys = p.i.sa.keys
    attr = UnknownPayload(payload_type=PayloadType.ATTRIBUTE, data=body)
    _f, chain = encode_chain([attr])
    h = keys.prf_a(mid.to_bytes(4, "big") + chain)
    if not good_hash:
        h = bytes(len(h))
    msg = Message(ExchangeType.TRANSACTION, mid, p.i.sa.spi_i, p.i.sa.spi_r, [HashPayload(h), attr], Flag.ENCRYPTION)
    data, _last = encode_message(msg, keys.encr, keys.iv.get_iv(mid))
    return data


def test_malformed_transactions_are_dropped_and_counted() -> None:
    p, _ = make_pair()
    # hold the client's XAUTH REPLY back until the forgeries went in
    held = []
    p.drop = lambda d: d.sender == "i" and d.exchange == ExchangeType.TRANSACTION and not held.append(d)
    p.start()
    assert held
    before = p.r.stats["dropped"]
    bad = [
        forged(p, 0x1111, bytes([1, 0, 0, 7]) + bytes([0, 1, 0, 9, 10])),   # TLV longer than the payload
        forged(p, 0x2222, bytes([1, 0, 0, 7, 0, 1, 0, 0]), good_hash=False),  # HASH does not verify
        forged(p, 0x3333, bytes([4, 0, 0, 7])),                             # an ACK nobody asked for
        forged(p, 0x4444, bytes([1, 0, 0, 7, 0, 1, 0, 0])),                 # Mode Config before XAUTH
        forged(p, 0x5555, b"\x01"),                                         # attribute payload too short
    ]
    for data in bad:
        p.r.receive_datagram(data, ADDR_I, p.now)
    assert p.r.stats["dropped"] - before == len(bad)
    assert not p.r.sa.tm.passive  # nothing left behind
    assert not p.r.datagrams_to_send(p.now)  # no answer to any of them
    p.drop = lambda d: False
    for d in held[:1]:
        p.deliver(d)
    p.pump()
    assert p.of("i", ChildSaInstalled) and p.of("r", ChildSaInstalled)


def test_aggressive_mode_with_xauth_as_cisco_clients_run_it() -> None:
    ci, cr = configs()
    ci.aggressive = cr.aggressive = True
    p = Pair(ci, cr)
    p.r.pools = build_pools([PoolConfig("rw", "10.3.0.0/28")])
    p.start()
    assert [d.exchange for d in p.wire[:3]] == [ExchangeType.AGGRESSIVE] * 3
    assert "XAUTH complete" in p.steps("r")
    [ci_sa] = p.of("i", ChildSaInstalled)
    assert ci_sa.local_ts == (parse_ts("10.3.0.1/32"),)
    assert p.of("r", ChildSaInstalled)


def test_reconnect_gets_the_same_lease_and_mode_config_retransmission_gets_the_same_reply() -> None:
    p, pools = make_pair()
    # the first Mode Config REPLY is lost: the client's retransmitted REQUEST gets the cached answer
    lost = []
    p.drop = lambda d: d.sender == "r" and d.exchange == ExchangeType.TRANSACTION and len(transactions(p)) == 6 \
        and not lost and not lost.append(d)
    p.start()
    assert lost
    p.drop = lambda d: False
    p.advance(p.now + 10)
    assert p.of("i", ChildSaInstalled)
    assert pools["rw"].leases() == [("10.3.0.1", "alice", True)]
    p.i.delete(p.now)
    p.pump()
    p.clear_events()
    p.i.initiate(p.now, child="net")
    p.pump()
    assert p.of("i", IkeSaEstablished)[-1].local_vips == ("10.3.0.1",)
    assert pools["rw"].leases() == [("10.3.0.1", "alice", True)]
