"""Structured garbage in MOBIKE exchanges (RFC 4555), sealed with the peer's
real SK keys, in both roles of an IKE SA that negotiated MOBIKE:

* at the responder (gateway): INFORMATIONAL requests with and without
  UPDATE_SA_ADDRESSES, NAT_DETECTION_* of every size, COOKIE2 of every size,
  ADDITIONAL_IP4/6_ADDRESS and NO_ADDITIONAL_ADDRESSES with garbage data,
  repeated notifies, other payloads, from the peer's address or a new one;
* at the initiator (road warrior): responses to its UPDATE_SA_ADDRESSES
  (roam) and to its NAT-D liveness check carrying the same garbage.

Nothing raises, internal_errors stays 0, nothing is caught and logged
inside, every datagram moves a counter; a request whose MOBIKE notifies are
malformed (COOKIE2 outside 8..64 octets, a NAT-D hash that is not 20 octets)
is answered INVALID_SYNTAX, counted, and moves nothing; a response whose
NAT-D is malformed moves nothing either; and the IKE SA still answers a DPD."""

from __future__ import annotations

from typing import Any

import fuzzlib
from conftest import SOAK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioipsec.events import LocalAddressChanged, PeerAddressChanged
from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.natd import natd_hash
from aioipsec.ike.v2 import payloads as P2
from aioipsec.ike.v2.message import Message, encode_message

N = 500 if SOAK else 80
SETTINGS = settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck), database=None)

NEW_ADDRS = [("198.51.100.77", 4500), ("198.51.100.77", 500), ("192.0.2.1", 4501), ("2001:db8::7", 4500)]
T = NotifyType


def _counts(s: Any) -> tuple[int, ...]:
    st_ = s.stats
    return (st_.received, st_.dropped_closed, st_.sent, st_.malformed, st_.integrity_failed, st_.unknown_spi,
            st_.invalid_mid, st_.unexpected_response, st_.responses_resent, st_.errors_answered)  # fmt: skip


@st.composite
def mobike_notify(draw: st.DrawFn, sa: Any, addrs: list[tuple[str, int]]) -> tuple[P2.NotifyPayload, str]:
    """(notify, what is malformed in it: ``cookie2``, ``natd`` or nothing)."""
    kind = draw(st.sampled_from(["update", "cookie2", "natd-src", "natd-dst", "add4", "add6", "noadd", "other"]))
    if kind == "update":
        return P2.NotifyPayload(T.UPDATE_SA_ADDRESSES, draw(st.sampled_from([b"", b"", b"x" * 4]))), ""
    if kind == "cookie2":
        n = draw(st.sampled_from([8, 16, 64, 0, 1, 7, 65, 200]))
        return P2.NotifyPayload(T.COOKIE2, draw(st.binary(min_size=n, max_size=n))), "" if 8 <= n <= 64 else "cookie2"
    if kind in ("natd-src", "natd-dst"):
        t = T.NAT_DETECTION_SOURCE_IP if kind == "natd-src" else T.NAT_DETECTION_DESTINATION_IP
        if draw(st.booleans()):  # a real hash of some address
            return P2.NotifyPayload(t, natd_hash(sa.spi_i or bytes(8), sa.spi_r, draw(st.sampled_from(addrs)))), ""
        n = draw(st.sampled_from([20, 0, 1, 19, 21, 32, 64]))
        return P2.NotifyPayload(t, draw(st.binary(min_size=n, max_size=n))), "" if n == 20 else "natd"
    if kind == "add4":
        return P2.NotifyPayload(T.ADDITIONAL_IP4_ADDRESS, draw(st.binary(max_size=20))), ""
    if kind == "add6":
        return P2.NotifyPayload(T.ADDITIONAL_IP6_ADDRESS, draw(st.binary(max_size=20))), ""
    if kind == "noadd":
        return P2.NotifyPayload(T.NO_ADDITIONAL_ADDRESSES, draw(st.binary(max_size=6))), ""
    t = draw(st.sampled_from([T.MOBIKE_SUPPORTED, T.NO_NATS_ALLOWED, T.UNACCEPTABLE_ADDRESSES, T.UNEXPECTED_NAT_DETECTED]))
    return P2.NotifyPayload(t, draw(st.binary(max_size=12))), ""


@st.composite
def mobike_payloads(draw: st.DrawFn, sa: Any, addrs: list[tuple[str, int]]) -> tuple[list[Any], set[str]]:
    items = draw(st.lists(mobike_notify(sa, addrs), max_size=7))
    payloads = [n for n, _ in items]
    bad = {b for _, b in items if b}
    if draw(st.integers(0, 4)) == 0:
        payloads.append(draw(st.sampled_from([P2.DeletePayload(3, (b"\0\0\0\1",)), P2.VendorPayload(b"v"),
                                              P2.CpPayload(1, ())])))  # fmt: skip
    return payloads, bad


def _dpd_answered(w: fuzzlib.V2World, s: Any) -> None:
    if s.is_closed or s.sa.tm.active is not None or s.sa.tm.queued:
        return
    before = s.stats.received
    s.dpd(w.now)
    w.settle()
    assert s.stats.received > before, "the IKE SA no longer answers a DPD"


@SETTINGS
@given(st.data())
def test_mobike_responder_gets_garbage_informational_requests(data: st.DataObject) -> None:
    fuzzlib.SWALLOWED.hits.clear()
    w = fuzzlib.V2World(data.draw(st.integers(0, 3)), data.draw(st.integers(0, 2)), mobike=True).establish()
    r, i = w.r, w.i
    assert r.sa.mobike
    addrs = [r.remote_addr, r.local_addr, *NEW_ADDRS]
    for _ in range(data.draw(st.integers(1, 3))):
        psa = i.sa
        payloads, bad = data.draw(mobike_payloads(psa, addrs))
        src = data.draw(st.sampled_from([r.remote_addr, *NEW_ADDRS]))
        msg = Message(ExchangeType.INFORMATIONAL, psa.spi_i, psa.spi_r, psa.tm.my_mid, initiator=True,
                      response=False, encrypted=True, payloads=payloads)  # fmt: skip
        psa.tm.my_mid += 1
        old_remote, before = r.remote_addr, _counts(r)
        errors = r.stats.errors_answered
        r.receive_datagram(encode_message(msg, psa.sk), src, w.now)
        out = r.datagrams_to_send(w.now)
        events = []
        while (ev := r.next_event()) is not None:
            events.append(ev)
        assert r.stats.internal_errors == 0
        assert _counts(r) != before, "an INFORMATIONAL request left no trace"
        assert len(out) == 1, "not exactly one answer to one request"
        update = any(isinstance(p, P2.NotifyPayload) and p.notify_type == T.UPDATE_SA_ADDRESSES for p in payloads)
        if bad:
            assert r.stats.errors_answered == errors + 1, "malformed MOBIKE notify not answered INVALID_SYNTAX"
            assert r.remote_addr == old_remote, "moved on a malformed UPDATE_SA_ADDRESSES"
            assert not [e for e in events if isinstance(e, PeerAddressChanged)]
        elif not update:
            assert r.remote_addr == old_remote, "moved without UPDATE_SA_ADDRESSES (RFC 4555: no implicit update)"
        else:
            assert r.remote_addr == src, "an authenticated, well-formed UPDATE_SA_ADDRESSES was not followed"
        assert out[0][1] == src, "a MOBIKE request is answered where it came from"
        fuzzlib.check_nothing_swallowed("MOBIKE responder")
        if r.is_closed:
            break
    r.handle_timer(w.now + 1)
    assert r.stats.internal_errors == 0
    _dpd_answered(w, r)
    fuzzlib.check_nothing_swallowed("MOBIKE responder, DPD")


@SETTINGS
@given(st.data())
def test_mobike_initiator_gets_garbage_responses(data: st.DataObject) -> None:
    """Responses to our UPDATE_SA_ADDRESSES (roam) or our NAT-D liveness
    check, under the right message ID and the peer's keys."""
    fuzzlib.SWALLOWED.hits.clear()
    w = fuzzlib.V2World(data.draw(st.integers(0, 3)), data.draw(st.integers(0, 2)), mobike=True).establish()
    i, r = w.i, w.r
    role = data.draw(st.sampled_from(["roam", "check"]))
    old_local = i.local_addr
    new_local = ("198.51.100.33", 4500)
    if role == "roam":
        i.roam(new_local, w.now)
    else:
        i.sa.nat_local = True  # behind a NAT: liveness checks carry NAT-D
        w.now += i.config.dpd_delay + 1
        i.handle_timer(w.now)
    sent = i.datagrams_to_send(w.now)
    assert len(sent) == 1
    act = i.sa.tm.active
    assert act is not None and act.exchange_type == ExchangeType.INFORMATIONAL
    task = act.tasks[0]
    payloads, bad = data.draw(mobike_payloads(i.sa, [new_local, old_local, i.remote_addr, *NEW_ADDRS]))
    if role == "roam" and data.draw(st.booleans()):
        payloads.append(P2.NotifyPayload(T.COOKIE2, task.cookie2))  # the right one (maybe next to a wrong one)
    rsa = r.sa
    msg = Message(ExchangeType.INFORMATIONAL, rsa.spi_i, rsa.spi_r, act.mid, initiator=False, response=True,
                  encrypted=True, payloads=payloads)  # fmt: skip
    natd_before = i.sa.natd_dst
    before = _counts(i)
    i.receive_datagram(encode_message(msg, rsa.sk), i.remote_addr, w.now)
    events = []
    while (ev := i.next_event()) is not None:
        events.append(ev)
    assert i.stats.internal_errors == 0
    assert _counts(i) != before, "a response left no trace"
    moved = [e for e in events if isinstance(e, LocalAddressChanged)]
    if "natd" in bad:
        assert i.local_addr == old_local and not moved, "moved on a response with a malformed NAT-D"
        assert i.sa is None or i.is_closed or i.sa.natd_dst == natd_before, "a malformed NAT-D was remembered"
        assert i.stats.malformed == before[3] + 1, "a response with a malformed NAT-D was not counted"
    first_cookie2 = next((p for p in payloads if isinstance(p, P2.NotifyPayload) and p.notify_type == T.COOKIE2), None)
    if role == "roam" and "natd" not in bad and (first_cookie2 is None or first_cookie2.data != task.cookie2):
        assert i.is_closed and not moved, "an UPDATE_SA_ADDRESSES response without our COOKIE2 (RFC 4555 §3.7)"
    if role == "check":
        assert i.local_addr == old_local and not moved, "a liveness check moved the IKE SA by itself"
    fuzzlib.check_nothing_swallowed(f"MOBIKE initiator ({role})")
    i.datagrams_to_send(w.now)
    for dt in (1, 10, 100):
        i.handle_timer(w.now + dt)
    assert i.stats.internal_errors == 0
    fuzzlib.check_nothing_swallowed(f"MOBIKE initiator ({role}), timers")


def _notifies(*items: tuple[int, bytes]) -> list[Any]:
    return [P2.NotifyPayload(t, d) for t, d in items]


def test_regression_update_with_a_short_natd_hash_is_refused_and_moves_nothing() -> None:
    """Found by the test above: a NAT-D of the wrong size was compared like a
    hash (so it read as a NAT) and the UPDATE_SA_ADDRESSES moved the IKE SA
    and turned UDP encapsulation on."""
    w = fuzzlib.V2World(0, mobike=True).establish()
    r, psa = w.r, w.i.sa
    old = r.remote_addr
    msg = Message(ExchangeType.INFORMATIONAL, psa.spi_i, psa.spi_r, psa.tm.my_mid, initiator=True, response=False,
                  encrypted=True, payloads=_notifies((T.UPDATE_SA_ADDRESSES, b""), (T.NAT_DETECTION_SOURCE_IP, b""),
                                                     (T.NAT_DETECTION_DESTINATION_IP, bytes(19))))  # fmt: skip
    psa.tm.my_mid += 1
    r.receive_datagram(encode_message(msg, psa.sk), NEW_ADDRS[0], w.now)
    [(answer, to)] = r.datagrams_to_send(w.now)
    assert r.stats.errors_answered == 1 and r.remote_addr == old and to == NEW_ADDRS[0]
    from aioipsec.ike.v2.message import decode_message

    assert decode_message(answer, psa.sk).notifies[0].notify_type == T.INVALID_SYNTAX
    assert not [e for e in iter(r.next_event, None) if isinstance(e, PeerAddressChanged)]
    assert all(not c.encap for c in r.children.values())


def test_regression_liveness_check_with_a_wrong_size_natd_triggers_no_update() -> None:
    """A 19-byte NAT_DETECTION_DESTINATION_IP in the answer to our NAT-D
    liveness check was remembered as our NAT mapping and started an
    UPDATE_SA_ADDRESSES (and one after every later check)."""
    w = fuzzlib.V2World(0, mobike=True).establish()
    i, rsa = w.i, w.r.sa
    i.sa.nat_local = True
    w.now += i.config.dpd_delay + 1
    i.handle_timer(w.now)
    i.datagrams_to_send(w.now)
    act = i.sa.tm.active
    msg = Message(ExchangeType.INFORMATIONAL, rsa.spi_i, rsa.spi_r, act.mid, initiator=False, response=True,
                  encrypted=True, payloads=_notifies((T.NAT_DETECTION_SOURCE_IP, bytes(20)),
                                                     (T.NAT_DETECTION_DESTINATION_IP, bytes(19))))  # fmt: skip
    i.receive_datagram(encode_message(msg, rsa.sk), i.remote_addr, w.now)
    assert i.stats.malformed == 1 and i.sa.natd_dst is None
    assert i.sa.tm.active is None and not i.sa.tm.queued, "an UPDATE_SA_ADDRESSES was queued"
    assert not i.datagrams_to_send(w.now)
    assert i.stats.internal_errors == 0
