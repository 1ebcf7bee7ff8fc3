"""Error paths: every one answered with the right notify (or dropped and
counted when no answer is due), and none escapes receive_datagram."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikev2_pair import Pair, psk_pair_configs

from aioipsec.events import ChildSaInstalled, IkeSaEstablished, NegotiationFailed
from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.v2.message import Message, decode_message, encode_message, peek_header
from aioipsec.ike.v2.payloads import KePayload, NotifyPayload, TsiPayload, TsrPayload, UnknownPayload


def notifies(data: bytes, sk=None) -> list[int]:  # type: ignore[no-untyped-def]
    return [n.notify_type for n in decode_message(data, sk).notifies]


# --------------------------------------------------------------------------- IKE_SA_INIT


def test_no_proposal_chosen_for_ike() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_proposals=["aes256-sha256-modp2048"], r_proposals=["aes128gcm16-prfsha256-x25519"])
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.to_r(p.out_i())
    [resp] = p.out_r()
    hdr = peek_header(resp)
    assert hdr.response and hdr.spi_r == bytes(8)
    assert notifies(resp) == [NotifyType.NO_PROPOSAL_CHOSEN]
    assert p.r is not None and p.r.is_closed
    assert p.events("r", NegotiationFailed)[0].notify == "NO_PROPOSAL_CHOSEN"
    p.to_i([resp])
    [nf] = p.events("i", NegotiationFailed)
    assert nf.exchange == "IKE_SA_INIT" and nf.notify == "NO_PROPOSAL_CHOSEN"
    assert p.i.is_closed and p.out_i() == []


def test_invalid_ke_payload_retry() -> None:
    """We guess x25519; the responder only does ecp256: it answers
    INVALID_KE_PAYLOAD(19), we retry with ecp256 and message ID 0."""
    i_cfg, r_cfg = psk_pair_configs(
        i_proposals=["aes128gcm16-prfsha256-x25519-ecp256"], r_proposals=["aes128gcm16-prfsha256-ecp256"]
    )
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    [req1] = p.out_i()
    assert decode_message(req1).get(KePayload).group == 31
    p.to_r([req1])
    [resp1] = p.out_r()
    assert notifies(resp1) == [NotifyType.INVALID_KE_PAYLOAD]
    assert decode_message(resp1).notifies[0].data == (19).to_bytes(2, "big")
    assert peek_header(resp1).spi_r == bytes(8)
    assert p.r is not None and not p.r.is_closed  # waits for the retry
    p.to_i([resp1])
    [req2] = p.out_i()
    msg2 = decode_message(req2)
    assert msg2.get(KePayload).group == 19 and msg2.message_id == 0 and msg2.spi_i == peek_header(req1).spi_i
    p.to_r([req2])
    p.to_i(p.out_r())
    assert p.roundtrip() == (1, 1)
    assert p.i.is_established and p.r.is_established
    assert p.events("i", IkeSaEstablished)[0].algorithms == "aes128gcm16-prfsha256-ecp256"


def test_invalid_ke_with_unacceptable_group_fails() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_proposals=["aes128gcm16-prfsha256-x25519"], r_proposals=["aes128gcm16-prfsha256-x25519-ecp384"])
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    req = p.out_i()
    # the responder happens to prefer ecp384 but x25519 is acceptable: no retry needed
    p.to_r(req)
    assert notifies(p.out_r()[0]) != [NotifyType.INVALID_KE_PAYLOAD]
    # a responder that insists on a group we do not have: the initiator gives up
    i2, r2 = psk_pair_configs(i_proposals=["aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048"],
                              r_proposals=["aes256-sha256-ecp384"])
    p2 = Pair(i2, r2)
    p2.initiate()
    p2.to_r(p2.out_i())
    [resp] = p2.out_r()
    assert notifies(resp) == [NotifyType.NO_PROPOSAL_CHOSEN]


def test_responder_uses_initiators_ke_group_when_acceptable() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_proposals=["aes128gcm16-prfsha256-ecp256-x25519"],
                                    r_proposals=["aes128gcm16-prfsha256-x25519-ecp256"])
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    assert p.roundtrip() == (1, 1)
    assert p.roundtrip() == (1, 1)
    assert p.events("i", IkeSaEstablished)[0].algorithms.endswith("ecp256")


# --------------------------------------------------------------------------- Child SA errors in IKE_AUTH


def test_ts_unacceptable_in_ike_auth_keeps_ike_sa() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_remote_ts=["10.99.0.0/16"])
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.to_r(p.out_i())
    [resp] = p.out_r()
    assert p.r is not None
    assert NotifyType.TS_UNACCEPTABLE in notifies(resp, p.i.sa.sk)
    p.to_i([resp])
    assert p.i.is_established and p.r.is_established
    assert not p.events("i", ChildSaInstalled) and not p.events("r", ChildSaInstalled)
    assert p.events("i", NegotiationFailed)[0].notify == "TS_UNACCEPTABLE"
    assert p.events("r", NegotiationFailed)[0].notify == "TS_UNACCEPTABLE"


def test_no_proposal_chosen_for_esp_in_ike_auth() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_esp=["aes256gcm16"], r_esp=["aes128-sha256"])
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    assert p.i.is_established and p.r is not None and p.r.is_established
    assert p.events("i", NegotiationFailed)[0].notify == "NO_PROPOSAL_CHOSEN"
    assert not p.events("i", ChildSaInstalled)


def test_traffic_selector_narrowing() -> None:
    """The responder only allows a /25 and one host of the initiator's /24s:
    both ends install the narrowed selectors."""
    i_cfg, r_cfg = psk_pair_configs(
        i_local_ts=["198.51.100.0/24"], i_remote_ts=["203.0.113.0/24"],
        r_local_ts=["203.0.113.0/25", "203.0.113.200/32"], r_remote_ts=["198.51.100.0/24[tcp/443]"],
    )
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    [ci] = p.events("i", ChildSaInstalled)
    [cr] = p.events("r", ChildSaInstalled)
    assert [str(t) for t in ci.remote_ts] == ["203.0.113.0/25", "203.0.113.200/32"]
    assert [str(t) for t in ci.local_ts] == ["198.51.100.0/24[6/443]"]
    assert ci.local_ts == cr.remote_ts and ci.remote_ts == cr.local_ts


def test_initiator_rejects_widened_selectors() -> None:
    """A responder answering with selectors wider than proposed is refused."""
    i_cfg, r_cfg = psk_pair_configs()
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.to_r(p.out_i())
    [resp] = p.out_r()
    msg = decode_message(resp, p.i.sa.sk)
    from aioipsec.selectors import TrafficSelector

    msg.payloads = [TsrPayload((TrafficSelector.any(),)) if isinstance(x, TsrPayload) else x for x in msg.payloads]
    assert p.r is not None
    forged = encode_message(msg, p.r.sa.sk)
    p.to_i([forged])
    assert p.i.is_established
    assert p.events("i", NegotiationFailed)[0].notify == "TS_UNACCEPTABLE"
    assert not p.events("i", ChildSaInstalled)


# --------------------------------------------------------------------------- malformed input


def established() -> Pair:
    p = Pair(*psk_pair_configs())
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    return p


@pytest.mark.parametrize("data", [b"", b"\x00" * 10, b"\xff" * 28, bytes(100)])
def test_garbage_is_dropped_and_counted(data: bytes) -> None:
    p = established()
    assert p.r is not None
    before = p.r.stats.malformed + p.r.stats.unknown_spi
    p.to_r([data])
    assert p.out_r() == []
    assert p.r.stats.malformed + p.r.stats.unknown_spi == before + 1
    assert p.r.is_established


def test_integrity_failure_dropped_silently() -> None:
    p = established()
    p.i.dpd(p.now)
    [req] = p.out_i()
    bad = bytearray(req)
    bad[-1] ^= 1
    p.to_r([bytes(bad)])
    assert p.r is not None and p.out_r() == [] and p.r.stats.integrity_failed == 1
    p.to_r([req])
    assert len(p.out_r()) == 1


def test_duplicate_request_gets_cached_response() -> None:
    p = established()
    p.i.dpd(p.now)
    [req] = p.out_i()
    p.to_r([req])
    [resp1] = p.out_r()
    p.to_r([req])
    [resp2] = p.out_r()
    assert resp1 == resp2
    assert p.r is not None and p.r.stats.responses_resent == 1
    p.to_i([resp1, resp2])
    assert p.i.stats.unexpected_response == 1


def test_old_and_future_message_ids_are_dropped() -> None:
    p = established()
    assert p.r is not None
    for mid in (0, 5):
        msg = Message(ExchangeType.INFORMATIONAL, p.i.spi_i, p.i.spi_r, mid, initiator=True, encrypted=True)
        p.to_r([encode_message(msg, p.i.sa.sk)])
        assert p.out_r() == []
    assert p.r.stats.invalid_mid == 2


def test_authenticated_malformed_request_gets_invalid_syntax() -> None:
    """A CREATE_CHILD_SA request without its mandatory SA payload."""
    p = established()
    msg = Message(ExchangeType.CREATE_CHILD_SA, p.i.spi_i, p.i.spi_r, 2, initiator=True, encrypted=True)
    msg.payloads = [NotifyPayload(NotifyType.USE_TRANSPORT_MODE)]
    p.to_r([encode_message(msg, p.i.sa.sk)])
    [resp] = p.out_r()
    assert notifies(resp, p.i.sa.sk) == [NotifyType.INVALID_SYNTAX]
    assert p.r is not None and p.r.is_established


def test_unsupported_critical_payload() -> None:
    p = established()
    msg = Message(ExchangeType.INFORMATIONAL, p.i.spi_i, p.i.spi_r, 2, initiator=True, encrypted=True)
    msg.payloads = [UnknownPayload(200, True, b"xx")]
    p.to_r([encode_message(msg, p.i.sa.sk)])
    [resp] = p.out_r()
    m = decode_message(resp, p.i.sa.sk)
    assert [n.notify_type for n in m.notifies] == [NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD]
    assert m.notifies[0].data == bytes([200])
    # the message ID was consumed: the next request (mid 3) works
    p.i.sa.tm.my_mid = 3
    p.i.dpd(p.now)
    p.to_r(p.out_i())
    assert len(p.out_r()) == 1


def test_unknown_noncritical_payload_ignored() -> None:
    p = established()
    msg = Message(ExchangeType.INFORMATIONAL, p.i.spi_i, p.i.spi_r, 2, initiator=True, encrypted=True)
    msg.payloads = [UnknownPayload(200, False, b"xx")]
    p.to_r([encode_message(msg, p.i.sa.sk)])
    [resp] = p.out_r()
    assert decode_message(resp, p.i.sa.sk).payloads == []


def test_malformed_ike_sa_init_request_is_answered() -> None:
    i_cfg, r_cfg = psk_pair_configs()
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    [req] = p.out_i()
    msg = decode_message(req)
    msg.payloads = [x for x in msg.payloads if not isinstance(x, KePayload)]
    p.to_r([encode_message(msg)])
    [resp] = p.out_r()
    assert notifies(resp) == [NotifyType.INVALID_SYNTAX]


def test_reflected_message_is_dropped() -> None:
    p = established()
    p.i.dpd(p.now)
    [req] = p.out_i()
    p.to_i([req])  # our own request back at us: wrong I flag
    assert p.i.stats.malformed == 1 and p.out_i() == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=10_000))
def test_fuzzed_input_never_raises(data: bytes, flip: int) -> None:
    """Random bytes, and valid messages with one bit flipped, to both sides."""
    p = established()
    assert p.r is not None
    p.i.dpd(p.now)
    [req] = p.out_i()
    mutated = bytearray(req)
    pos = flip % (len(mutated) * 8)
    mutated[pos // 8] ^= 1 << (pos % 8)
    for d in (data, bytes(mutated), req[:28] + data):
        p.r.receive_datagram(d, ("192.0.2.1", 500), p.now)
        p.i.receive_datagram(d, ("192.0.2.2", 500), p.now)
    assert p.r.stats.internal_errors == 0 and p.i.stats.internal_errors == 0


def test_fuzzed_ike_sa_init_to_fresh_responder() -> None:
    i_cfg, r_cfg = psk_pair_configs()
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    [req] = p.out_i()
    for pos in range(28, len(req)):
        for bit in (0, 7):
            q = Pair(i_cfg, r_cfg)
            mutated = bytearray(req)
            mutated[pos] ^= 1 << bit
            q.to_r([bytes(mutated)])
            if q.r is not None:
                assert q.r.stats.internal_errors == 0
                out = q.out_r()
                assert len(out) <= 1


def test_header_length_mismatch_dropped() -> None:
    p = established()
    p.i.dpd(p.now)
    [req] = p.out_i()
    bad = req[:24] + struct.pack("!L", len(req) + 4) + req[28:]
    p.to_r([bad])
    assert p.r is not None and p.out_r() == [] and p.r.stats.malformed == 1


def test_proposal_spi_size_errors_answered() -> None:
    """A CREATE_CHILD_SA whose ESP proposal has an 8-octet SPI."""
    p = established()
    from aioipsec.crypto.transforms import parse_proposal
    from aioipsec.ike.proposals import to_wire
    from aioipsec.ike.v2.payloads import NoncePayload
    from aioipsec.ike.v2.tasks.common import sa_payload

    msg = Message(ExchangeType.CREATE_CHILD_SA, p.i.spi_i, p.i.spi_r, 2, initiator=True, encrypted=True)
    ts_i = TsiPayload(tuple(p.i.child_sas[0].local_ts))
    ts_r = TsrPayload(tuple(p.i.child_sas[0].remote_ts))
    msg.payloads = [sa_payload(to_wire([parse_proposal("aes128gcm16", "esp")], spi=b"12345678")), NoncePayload(b"n" * 32), ts_i, ts_r]
    p.to_r([encode_message(msg, p.i.sa.sk)])
    [resp] = p.out_r()
    assert notifies(resp, p.i.sa.sk) == [NotifyType.INVALID_SYNTAX]


def _mutations(data: bytes, rng) -> list[bytes]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(6):
        b = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(b))
            b[pos] ^= 1 << rng.randrange(8)
        out.append(bytes(b))
    out.append(data[: rng.randrange(len(data))])
    out.append(data + bytes(rng.randrange(1, 9)))
    hdr_only = bytearray(data[:28]) + bytes(rng.randbytes(rng.randrange(0, 64)))
    hdr_only[24:28] = len(hdr_only).to_bytes(4, "big")
    out.append(bytes(hdr_only))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_mutated_copies_of_every_message_never_break_a_session(seed: int) -> None:
    """Before each real datagram of a full life (establish, Child rekey, IKE
    rekey, delete), both sessions get mutated copies of it.  Nothing may
    raise or count as an internal error, and the real exchange still works
    once past IKE_SA_INIT (whose unauthenticated copies may legitimately win)."""
    import random

    rng = random.Random(seed)
    i_cfg, r_cfg = psk_pair_configs(i_kw={"dpd_delay": 0}, r_kw={"dpd_delay": 0})
    p = Pair(i_cfg, r_cfg, seed=seed)

    def noisy_deliver(direction: str, data: bytes) -> bytes:
        authenticated = peek_header(data).exchange_type != ExchangeType.IKE_SA_INIT
        if authenticated:
            for m in _mutations(data, rng):
                if direction == "i>r" and p.r is not None:
                    p.r.receive_datagram(m, p.i.local_addr, p.now)
                elif direction == "r>i":
                    p.i.receive_datagram(m, p.r_addr, p.now)
        return data

    p.on_deliver = noisy_deliver
    p.initiate()
    assert p.run(lambda: p.r is not None and p.r.is_established and p.i.is_established and bool(p.i.child_sas), max_time=120)
    c = p.i.child_sas[0]
    p.i.rekey_child_sa(c.spi_in, p.now)
    assert p.run(lambda: len(p.r.child_sas) == 1 and p.r.child_sas[0].spi_out != c.spi_in, max_time=120)
    p.r.rekey_ike_sa(p.now)
    assert p.run(lambda: len(p.events("i", IkeSaEstablished)) == 2 and not p.i.old_sas, max_time=120)
    p.i.delete(p.now)
    assert p.run(lambda: p.i.is_closed and p.r.is_closed, max_time=120)
    for s in (p.i, p.r):
        assert s.stats.internal_errors == 0
        assert s.stats.integrity_failed > 0
    # IKE_SA_INIT: mutated copies straight to a fresh responder each
    q = Pair(i_cfg, r_cfg, seed=seed)
    q.initiate()
    [init] = q.out_i()
    for m in _mutations(init, rng) * 3:
        fresh = Pair(i_cfg, r_cfg, seed=seed)
        fresh.to_r([m])
        if fresh.r is not None:
            assert fresh.r.stats.internal_errors == 0
            for out in fresh.out_r():
                fresh.to_i([out])
                assert fresh.i.stats.internal_errors == 0


@pytest.mark.parametrize("seed", range(3))
def test_mutated_ike_sa_init_responses(seed: int) -> None:
    import random

    rng = random.Random(seed)
    i_cfg, r_cfg = psk_pair_configs()
    for _ in range(20):
        p = Pair(i_cfg, r_cfg, seed=seed)
        p.initiate()
        p.to_r(p.out_i())
        [resp] = p.out_r()
        for m in _mutations(resp, rng):
            p.i.receive_datagram(m, p.r_addr, p.now)
            assert p.i.stats.internal_errors == 0
        p.to_r(p.out_i())
        p.to_i(p.out_r())
        assert p.i.stats.internal_errors == 0
        assert p.r is not None and p.r.stats.internal_errors == 0
