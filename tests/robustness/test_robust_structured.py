"""Structured garbage with valid credentials: hypothesis builds well-formed
payloads with random but plausible contents (proposals with real and bogus
transforms, selectors, notifies of every kind, deletes naming real and
invented SPIs, IDs, CP, EAP...), puts them in the right exchange with the
right message ID, and seals them with the peer's real keys (IKEv2 SK; IKEv1
Phase 1 key, IV chain and HASH(1)).  So every check after authentication runs
on nonsense: the session must answer or drop, never raise, never count an
internal error, and stay usable (a DPD round trip still works afterwards)."""

from __future__ import annotations

from typing import Any

from conftest import SOAK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzlib
from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.v2 import payloads as P2
from aioipsec.ike.v2.message import Message, encode_message
from aioipsec.selectors import TrafficSelector

N = 600 if SOAK else 120
SETTINGS = settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck), database=None)

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)

# =========================================================================== IKEv2 payloads

TRANSFORMS = [  # (type, id, key length attribute or None)
    (1, 20, 128), (1, 20, 256), (1, 12, 128), (1, 12, 256), (1, 28, None), (1, 3, None), (1, 99, 128),
    (2, 5, None), (2, 7, None), (2, 2, None), (3, 12, None), (3, 14, None), (3, 2, None),
    (4, 31, None), (4, 19, None), (4, 14, None), (4, 2, None), (4, 0, None), (5, 0, None), (5, 1, None),
    (6, 36, None), (9, 1, None), (7, 1, None),
]  # fmt: skip


@st.composite
def transform(draw: st.DrawFn) -> P2.Transform:
    if draw(st.integers(0, 9)) == 0:
        ttype, tid, kl = draw(u8), draw(u16), draw(st.one_of(st.none(), u16))
    else:
        ttype, tid, kl = draw(st.sampled_from(TRANSFORMS))
    attrs = (P2.TransformAttribute(14, kl),) if kl is not None else ()
    return P2.Transform(ttype, tid, attrs)


@st.composite
def proposal(draw: st.DrawFn) -> P2.SaProposal:
    proto = draw(st.sampled_from([1, 3, 2, 0, 9]))
    spi_len = draw(st.sampled_from([0, 4, 8, 3]))
    return P2.SaProposal(draw(st.integers(1, 4)), proto, draw(st.binary(min_size=spi_len, max_size=spi_len)),
                         tuple(draw(st.lists(transform(), max_size=8))))  # fmt: skip


@st.composite
def selector(draw: st.DrawFn) -> TrafficSelector:
    v = draw(st.sampled_from([4, 6]))
    top = (1 << (32 if v == 4 else 128)) - 1
    a, b = sorted((draw(st.integers(0, top)), draw(st.integers(0, top))))
    if draw(st.booleans()):
        a, b = b, a  # start > end
    p1, p2 = draw(u16), draw(u16)
    return TrafficSelector(a, b, v, draw(st.sampled_from([0, 6, 17, 1, 58, 255])), min(p1, p2), max(p1, p2))


NOTIFY_TYPES = [int(t) for t in NotifyType] + [0, 1, 99, 8191, 16383, 40000, 65535]


def v2_payloads(children: list[int]) -> st.SearchStrategy[Any]:
    spi4 = st.one_of(
        st.sampled_from(children or [0]).map(lambda s: s.to_bytes(4, "big")),
        st.binary(min_size=4, max_size=4),
    )
    return st.one_of(
        st.builds(P2.SaPayload, st.lists(proposal(), min_size=1, max_size=3).map(tuple)),
        st.builds(P2.KePayload, st.sampled_from([31, 19, 14, 2, 0, 999]), st.binary(max_size=300)),
        st.builds(P2.NoncePayload, st.binary(min_size=16, max_size=80)),
        st.builds(P2.TsiPayload, st.lists(selector(), max_size=4).map(tuple)),
        st.builds(P2.TsrPayload, st.lists(selector(), max_size=4).map(tuple)),
        st.builds(P2.NotifyPayload, st.sampled_from(NOTIFY_TYPES), st.binary(max_size=40), st.sampled_from([0, 1, 2, 3]),
                  st.one_of(st.just(b""), spi4, st.binary(max_size=8))),  # fmt: skip
        st.builds(P2.DeletePayload, st.sampled_from([1, 2, 3, 0, 7]),
                  st.one_of(st.lists(spi4, max_size=4), st.lists(st.binary(min_size=8, max_size=8), max_size=2)).map(tuple)),  # fmt: skip
        st.builds(P2.IdiPayload, st.sampled_from([1, 2, 3, 5, 9, 11, 0]), st.binary(max_size=40)),
        st.builds(P2.IdrPayload, st.sampled_from([1, 2, 3, 5, 9, 11, 0]), st.binary(max_size=40)),
        st.builds(P2.AuthPayload, st.sampled_from([1, 2, 3, 9, 14, 0]), st.binary(max_size=80)),
        st.builds(P2.CertPayload, st.sampled_from([4, 11, 12, 0]), st.binary(max_size=80)),
        st.builds(P2.CertReqPayload, st.sampled_from([4, 0]), st.binary(max_size=60)),
        st.builds(P2.CpPayload, st.sampled_from([1, 2, 3, 4]),
                  st.lists(st.builds(P2.CpAttribute, st.integers(0, 30), st.binary(max_size=20)), max_size=4).map(tuple)),  # fmt: skip
        st.builds(P2.EapPayload, st.integers(1, 4), u8, st.binary(max_size=20)),
        st.builds(P2.VendorPayload, st.binary(max_size=20)),
        st.builds(P2.UnknownPayload, st.integers(60, 200), st.booleans(), st.binary(max_size=16)),
    )


EXCHANGES = [ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL, ExchangeType.IKE_AUTH, ExchangeType.IKE_SA_INIT, 40]


def _dpd_still_works(w: fuzzlib.V2World, side: str) -> None:
    s = w.i if side == "i" else w.r
    if not s.is_established or s.sa.tm.active is not None or s.sa.tm.queued:
        return
    other = w.r if side == "i" else w.i
    if not other.is_established:
        return
    before = s.stats.received
    s.dpd(w.now)
    w.settle()
    assert s.stats.received > before, "the IKE SA no longer answers"


@SETTINGS
@given(st.data())
def test_ikev2_authenticated_structured_requests(data: st.DataObject) -> None:
    """Requests from the peer (right SPIs, next message ID, valid SK) with
    structured random payloads, to an established responder or initiator."""
    w = fuzzlib.V2World(data.draw(st.integers(0, 3)), data.draw(st.integers(0, 2))).establish()
    side = data.draw(st.sampled_from("ir"))
    target, peer = (w.i, w.r) if side == "i" else (w.r, w.i)
    children = [c.spi_out for c in peer.children.values()] + [c.spi_in for c in peer.children.values()]
    for _ in range(data.draw(st.integers(1, 3))):
        psa = peer.sa
        msg = Message(
            data.draw(st.sampled_from(EXCHANGES)), psa.spi_i or bytes(8), psa.spi_r, psa.tm.my_mid,
            initiator=psa.initiator, response=False, encrypted=True,
            payloads=data.draw(st.lists(v2_payloads(children), max_size=7)),
        )  # fmt: skip
        psa.tm.my_mid += 1  # the peer used this message ID
        target.receive_datagram(encode_message(msg, psa.sk), fuzzlib.R_ADDR if side == "i" else fuzzlib.I_ADDR, w.now)
        assert target.stats.internal_errors == 0
        out = target.datagrams_to_send(w.now)
        assert len(out) <= 1 or target.sa.use_fragmentation, "more than one answer to one request"
        if target.is_closed:
            break
    target.handle_timer(w.now + 60)
    assert target.stats.internal_errors == 0
    fuzzlib.check_nothing_swallowed("IKEv2 structured requests")
    _dpd_still_works(w, side)


@SETTINGS
@given(st.data())
def test_ikev2_authenticated_structured_responses(data: st.DataObject) -> None:
    """Responses to our own outstanding request (CREATE_CHILD_SA, Child or IKE
    rekey, DPD, delete) carrying structured random payloads."""
    w = fuzzlib.V2World(data.draw(st.integers(0, 3))).establish()
    what = data.draw(st.sampled_from(["child", "rekey", "ike-rekey", "dpd", "delete"]))
    if what == "child":
        w.i.create_child_sa("lan", w.now)
    elif what == "rekey":
        w.i.rekey_child_sa(next(iter(w.i.children)), w.now)
    elif what == "ike-rekey":
        w.i.rekey_ike_sa(w.now)
    elif what == "dpd":
        w.i.dpd(w.now)
    else:
        w.i.delete(w.now)
    w.collect()
    act = w.i.sa.tm.active
    assert act is not None
    children = [c.spi_in for c in w.r.children.values()]
    rsa = w.r.sa
    msg = Message(
        act.exchange_type, rsa.spi_i or bytes(8), rsa.spi_r, act.mid, initiator=False, response=True, encrypted=True,
        payloads=data.draw(st.lists(v2_payloads(children), max_size=8)),
    )  # fmt: skip
    w.i.receive_datagram(encode_message(msg, rsa.sk), fuzzlib.R_ADDR, w.now)
    assert w.i.stats.internal_errors == 0
    w.i.datagrams_to_send(w.now)
    for dt in (1, 10, 100, 1000):
        w.i.handle_timer(w.now + dt)
    assert w.i.stats.internal_errors == 0
    t = w.i.get_timer()
    assert t is None or t >= w.now


# =========================================================================== IKEv1 payloads


def v1_payloads(children: list[int]) -> st.SearchStrategy[Any]:
    from aioipsec.ike.v1 import payloads as P1

    attr = st.builds(P1.Attribute.make, st.sampled_from([1, 2, 3, 4, 5, 6, 11, 12, 14, 16, 32001]), st.integers(0, 70000))
    transform1 = st.builds(P1.Transform, st.integers(0, 3), st.sampled_from([1, 2, 3, 12, 18, 20, 0, 99]),
                           st.lists(attr, max_size=6))  # fmt: skip
    spi = st.one_of(st.sampled_from(children or [0]).map(lambda s: s.to_bytes(4, "big")), st.binary(min_size=4, max_size=4))
    prop = st.builds(P1.Proposal, st.integers(0, 3), st.sampled_from([1, 2, 3, 4, 0]), st.one_of(spi, st.binary(max_size=8)),
                     st.lists(transform1, max_size=3))  # fmt: skip
    return st.one_of(
        st.builds(P1.SaPayload, st.lists(prop, max_size=3)),
        st.builds(P1.NoncePayload, st.binary(min_size=8, max_size=64)),
        st.builds(P1.KePayload, st.binary(max_size=300)),
        st.builds(P1.IdPayload, st.sampled_from([1, 2, 3, 4, 5, 7, 8, 9, 11, 0]), st.sampled_from([0, 6, 17]), u16,
                  st.binary(max_size=36)),  # fmt: skip
        st.builds(P1.NotifyPayload, st.sampled_from([1, 14, 16, 17, 24, 24576, 36136, 36137, 40001, 0]),
                  st.sampled_from([1, 3, 2, 0]), st.one_of(spi, st.binary(max_size=16)), st.binary(max_size=12)),  # fmt: skip
        st.builds(P1.DeletePayload, st.sampled_from([3, 2, 1, 0]), st.lists(spi, max_size=3)),
        st.builds(P1.VendorIdPayload, st.binary(max_size=20)),
        st.builds(P1.HashPayload, st.binary(max_size=40)),
    )


@SETTINGS
@given(st.data())
def test_ikev1_authenticated_structured_messages(data: st.DataObject) -> None:
    """Quick Mode and Informational messages from the peer, encrypted under
    the real Phase 1 key with the right IV and a correct HASH(1), carrying
    structured random payloads."""
    from aioipsec.ike.v1.message import Message as M1, encode_message as enc1
    from aioipsec.ike.v1.payloads import HashPayload, encode_chain

    fuzzlib.SWALLOWED.hits.clear()
    w = fuzzlib.V1World(data.draw(st.integers(0, 3)), data.draw(st.integers(0, 1)))
    w.i.initiate(w.now, child="net")
    w.settle()
    side = data.draw(st.sampled_from("ir"))
    target, peer = (w.i, w.r) if side == "i" else (w.r, w.i)
    children = [c.spi_in for c in peer.children.values()] + [c.spi_out for c in peer.children.values()]
    for _ in range(data.draw(st.integers(1, 3))):
        psa = peer.sa
        exchange = data.draw(st.sampled_from([32, 5, 5, 6]))
        mid = data.draw(st.integers(1, 0xFFFFFFFF))
        payloads = data.draw(st.lists(v1_payloads(children), max_size=6))
        _first, chain = encode_chain(payloads)
        good_hash = data.draw(st.integers(0, 5)) > 0
        h = psa.keys.prf_a(mid.to_bytes(4, "big") + chain) if good_hash else bytes(32)
        msg = M1(exchange, mid, psa.spi_i, psa.spi_r, [HashPayload(h), *payloads], 1)
        raw, _ = enc1(msg, psa.keys.encr, psa.keys.iv.get_iv(mid))
        target.receive_datagram(raw, fuzzlib.R_ADDR if side == "i" else fuzzlib.I_ADDR, w.now)
        target.datagrams_to_send(w.now)
    for dt in (1, 30, 300):
        target.handle_timer(w.now + dt)
    fuzzlib._v1_bounds(target)
    fuzzlib.check_nothing_swallowed("IKEv1 structured")
