"""RFC 7383 fragmentation: split / reassemble, order, duplicates, tampering, limits."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.crypto import transforms as T
from aioipsec.errors import IntegrityError, LocalProtocolError
from aioipsec.ike.constants import CertEncoding, ExchangeType, PayloadType
from aioipsec.ike.v2.fragment import (
    SKF_HEADER_LEN,
    Reassembler,
    ReassemblyLimitError,
    fragment_message,
    max_message_size,
)
from aioipsec.ike.v2.message import (
    Message,
    SkContext,
    decode_message,
    encode_message,
    is_authenticated,
    peek_header,
)
from aioipsec.ike.v2.payloads import (
    AuthPayload,
    CertPayload,
    IdiPayload,
    MalformedMessage,
    NotifyPayload,
    SkfPayload,
    VendorPayload,
    make_id,
)

SUITES = [("aes128gcm16", None), ("aes256", "sha256"), ("chacha20poly1305", None), ("aes128", "sha1")]


def pair(encr_name: str, integ_name: str | None) -> tuple[SkContext, SkContext]:
    encr = T.encr(encr_name)
    integ = T.integ(integ_name) if integ_name else None
    ei, er = os.urandom(encr.key_len), os.urandom(encr.key_len)
    ai, ar = (os.urandom(integ.key_len), os.urandom(integ.key_len)) if integ else (b"", b"")
    return (
        SkContext(encr, integ, ei, er, ai, ar, is_initiator=True),
        SkContext(encr, integ, ei, er, ai, ar, is_initiator=False),
    )


PAIRS = {s: pair(*s) for s in SUITES}
GCM = PAIRS[("aes128gcm16", None)]


def big_auth(mid: int = 1, cert_len: int = 3000) -> Message:
    return Message(
        ExchangeType.IKE_AUTH,
        b"\x11" * 8,
        b"\x22" * 8,
        mid,
        initiator=True,
        encrypted=True,
        payloads=[
            IdiPayload(*make_id("site-a.example")),
            CertPayload(CertEncoding.X509_SIGNATURE, bytes(range(256)) * (cert_len // 256) + b"x"),
            AuthPayload(14, os.urandom(256)),
            NotifyPayload(16384),
        ],
    )


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("max_size", [576, 1280])
def test_split_and_reassemble(suite: tuple[str, str | None], max_size: int) -> None:
    init, resp = PAIRS[suite]
    msg = big_auth()
    frags = fragment_message(msg, init, max_size)
    assert len(frags) > 1
    whole = len(encode_message(msg, init))
    assert whole > max_size
    for i, f in enumerate(frags, 1):
        assert len(f) <= max_size
        hdr = peek_header(f)
        assert hdr.next_payload == PayloadType.SKF and hdr.message_id == 1 and hdr.length == len(f)
        assert hdr.exchange_type == ExchangeType.IKE_AUTH and hdr.initiator and not hdr.response
        (skf,) = decode_message(f).payloads
        assert isinstance(skf, SkfPayload)
        assert (skf.fragment_number, skf.total_fragments) == (i, len(frags))
        assert skf.next_payload == (PayloadType.IDi if i == 1 else 0)
    # all but the last are filled to the limit (no wasted fragments)
    assert all(len(f) > max_size - init.block_size - 1 for f in frags[:-1])
    re = Reassembler(resp)
    out = [re.add(f) for f in frags]
    assert out[:-1] == [None] * (len(frags) - 1)
    done = out[-1]
    assert done is not None and done.encrypted
    assert done == msg
    assert re.pending() == 0


def test_single_fragment_and_empty_message() -> None:
    init, resp = GCM
    msg = Message(ExchangeType.INFORMATIONAL, b"\x11" * 8, b"\x22" * 8, 7, True, True, [], encrypted=True)
    (only,) = fragment_message(msg, init, 1280)
    (skf,) = decode_message(only).payloads
    assert isinstance(skf, SkfPayload) and (skf.fragment_number, skf.total_fragments) == (1, 1)
    assert skf.next_payload == 0
    done = Reassembler(resp).add(only)
    assert done == msg


def test_out_of_order() -> None:
    init, resp = GCM
    msg = big_auth()
    frags = fragment_message(msg, init, 400)
    assert len(frags) >= 5
    rng = random.Random(7)
    order = list(range(len(frags)))
    rng.shuffle(order)
    re = Reassembler(resp)
    results = [re.add(frags[i]) for i in order]
    assert all(r is None for r in results[:-1])
    assert results[-1] == msg


def test_duplicates_are_ignored() -> None:
    init, resp = GCM
    msg = big_auth()
    frags = fragment_message(msg, init, 576)
    re = Reassembler(resp)
    assert re.add(frags[0]) is None
    assert re.add(frags[0]) is None
    assert re.add(frags[1]) is None
    assert re.add(frags[0]) is None
    assert re.duplicates == 2
    for f in frags[2:-1]:
        assert re.add(f) is None
    assert re.add(frags[-1]) == msg
    # a retransmission of the whole message reassembles again (the session
    # recognises the message ID); nothing is left behind
    assert re.pending() == 0


def test_tampered_fragment_is_dropped_and_state_kept() -> None:
    for suite in (("aes128gcm16", None), ("aes256", "sha256")):
        init, resp = PAIRS[suite]
        msg = big_auth()
        frags = fragment_message(msg, init, 576)
        re = Reassembler(resp)
        assert re.add(frags[0]) is None
        bad = bytearray(frags[1])
        bad[len(bad) // 2] ^= 0x10
        with pytest.raises(IntegrityError):
            re.add(bytes(bad))
        # a forged "larger total" fragment must not wipe the partial message
        forged = bytearray(frags[2])
        forged[28 + 6 : 28 + 8] = (len(frags) + 5).to_bytes(2, "big")
        with pytest.raises(IntegrityError):
            re.add(bytes(forged))
        assert re.pending() == 1
        for f in frags[1:-1]:
            assert re.add(f) is None
        assert re.add(frags[-1]) == msg


def test_limit_fragment_count() -> None:
    init, resp = GCM
    frags = fragment_message(big_auth(), init, 300)
    re = Reassembler(resp, max_fragments=len(frags) - 1)
    with pytest.raises(ReassemblyLimitError):
        re.add(frags[0])
    assert re.pending() == 0
    ok = Reassembler(resp, max_fragments=len(frags))
    assert [ok.add(f) for f in frags][-1] is not None


def test_limit_total_bytes() -> None:
    init, resp = GCM
    frags = fragment_message(big_auth(cert_len=3000), init, 576)
    re = Reassembler(resp, max_bytes=1500)
    with pytest.raises(ReassemblyLimitError):
        for f in frags:
            assert re.add(f) is None
    assert re.pending() == 0  # the partial message was discarded


def test_limit_concurrent_messages() -> None:
    init, resp = GCM
    msgs = [big_auth(mid=m) for m in (1, 2, 3)]
    sets = [fragment_message(m, init, 576) for m in msgs]
    re = Reassembler(resp, max_messages=2)
    for frags in sets:
        assert re.add(frags[0]) is None
    assert re.pending() == 2  # message 1 (the oldest) was evicted
    # message 1 lost its first fragment: the rest does not complete it
    assert all(re.add(f) is None for f in sets[0][1:])
    # message 3 still completes
    for f in sets[2][1:-1]:
        assert re.add(f) is None
    assert re.add(sets[2][-1]) == msgs[2]


def test_request_and_response_with_same_id_are_separate() -> None:
    init, resp = GCM
    req = big_auth(mid=4)
    rsp = big_auth(mid=4)
    rsp.response = True
    f_req = fragment_message(req, init, 576)
    f_rsp = fragment_message(rsp, init, 576)
    re = Reassembler(resp)
    got = []
    for a, b in zip(f_req, f_rsp, strict=True):
        got += [re.add(a), re.add(b)]
    done = [g for g in got if g is not None]
    assert len(done) == 2
    assert {d.response for d in done} == {False, True}


def test_refragmented_retransmission_restarts() -> None:
    """RFC 7383 §2.6.1: more Total Fragments than stored -> start over;
    fewer -> the fragment is stale and ignored."""
    init, resp = GCM
    msg = big_auth()
    coarse = fragment_message(msg, init, 1280)
    fine = fragment_message(msg, init, 576)
    assert len(fine) > len(coarse)
    re = Reassembler(resp)
    assert re.add(coarse[0]) is None
    assert re.add(fine[0]) is None  # restarts with the larger total
    assert re.add(coarse[1]) is None  # stale: ignored
    assert re.duplicates == 1
    for f in fine[1:-1]:
        assert re.add(f) is None
    assert re.add(fine[-1]) == msg


def test_fragment_mismatching_its_message() -> None:
    init, resp = GCM
    a = big_auth(mid=9)
    b = big_auth(mid=9)
    b.exchange_type = ExchangeType.CREATE_CHILD_SA
    fa = fragment_message(a, init, 576)
    fb = fragment_message(b, init, 576)
    re = Reassembler(resp)
    re.add(fa[0])
    with pytest.raises(MalformedMessage) as exc:
        re.add(fb[1])
    assert is_authenticated(exc.value)
    assert re.pending() == 1


def test_max_message_size() -> None:
    assert max_message_size(1280, ipv6=True, non_esp_marker=True) == 1280 - 40 - 8 - 4
    assert max_message_size(576, ipv6=False, non_esp_marker=False) == 548


def test_sender_errors() -> None:
    init, _ = GCM
    plain = Message(ExchangeType.IKE_SA_INIT, bytes(8), bytes(8), 0, payloads=[VendorPayload(b"x")])
    with pytest.raises(LocalProtocolError):
        fragment_message(plain, init, 576)
    with pytest.raises(LocalProtocolError):
        fragment_message(big_auth(), init, 28 + SKF_HEADER_LEN + init.iv_len + init.icv_len)


def test_reassembler_rejects_non_fragments() -> None:
    init, resp = GCM
    whole = encode_message(big_auth(cert_len=10), init)
    with pytest.raises(Exception) as exc:
        Reassembler(resp).add(whole)
    assert "SKF" in str(exc.value)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.binary(max_size=600), min_size=0, max_size=6),
    st.integers(120, 1500),
    st.randoms(use_true_random=False),
    st.sampled_from(SUITES),
)
def test_hypothesis_split_shuffle_reassemble(
    blobs: list[bytes], max_size: int, rng: random.Random, suite: tuple[str, str | None]
) -> None:
    init, resp = PAIRS[suite]
    msg = Message(ExchangeType.INFORMATIONAL, b"\x01" * 8, b"\x02" * 8, 11, False, False,
                  [VendorPayload(b) for b in blobs], encrypted=True)  # fmt: skip
    frags = fragment_message(msg, resp, max_size)  # the responder sends this one
    assert all(len(f) <= max_size for f in frags)
    rng.shuffle(frags)
    re = Reassembler(init)
    results = [re.add(f) for f in frags]
    assert results[:-1] == [None] * (len(frags) - 1)
    assert results[-1] == msg
