"""IKEv1 Main Mode initiator against forged MM2s: an on-path attacker
answers our MM1 with copies of the responder's MM2 under its own responder
cookies.  MM2 carries only the cookie and the chosen SA, nothing that could
be verified before MM4/MM6, so the initiator keeps every acceptable MM2 that
arrives while it waits for MM4 (at most ``MAX_MM2_ALTERNATIVES`` besides the
first) and, each time MM3 is due for a retransmission, sends MM3 under the
next responder cookie instead (``MainModeTask.switch``).  See also
``test_ikev1_corruption.py::test_forged_mm2_before_the_real_one_does_not_stall_main_mode``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pytest
from ikev1_pair import Datagram, Pair, psk_configs

from aioipsec.config import connection
from aioipsec.events import (
    AuthFailed,
    ChildSaInstalled,
    IkeSaEstablished,
    NegotiationFailed,
)
from aioipsec.ike.v1.constants import ExchangeType, Flag, Ike1Auth
from aioipsec.ike.v1.message import Message, decode_message, encode_message, peek_header
from aioipsec.ike.v1.payloads import KePayload, NoncePayload, SaPayload
from aioipsec.ike.v1.phase1 import build_sa_payload, suites_from_config
from aioipsec.ike.v1.tasks.main_mode import MAX_MM2_ALTERNATIVES

MM = ExchangeType.IDENTITY_PROTECTION
ZERO = bytes(8)

Forgery = bytes | tuple[bytes, Callable[[bytes], bytes]]
"""A responder cookie for a copy of the real MM2, or (cookie, rewrite of the copy)."""


def _copy(d: Datagram, f: Forgery) -> Datagram:
    cookie, rewrite = (f, None) if isinstance(f, bytes) else f
    data = d.data[:8] + cookie + d.data[16:]
    if rewrite is not None:
        data = rewrite(data)
    return Datagram(d.src, d.dst, data, "r", d.at)


def forge(p: Pair, before: Sequence[Forgery] = (), after: Sequence[Forgery] = ()) -> list[bytes]:
    """Around the responder's first MM2, deliver forged copies under the
    cookies ``before`` (ahead of it, faster than the real responder) and
    ``after``; returns [the real responder cookie] once it went by."""
    original = p.deliver
    real: list[bytes] = []

    def deliver(d: Datagram) -> bool:
        if real or d.sender != "r" or d.exchange != MM:
            return original(d)
        real.append(d.data[8:16])
        for f in before:
            original(_copy(d, f))
        ok = original(d)
        for f in after:
            original(_copy(d, f))
        return ok

    p.deliver = deliver  # type: ignore[method-assign]
    return real


def offering(proposal: str) -> Callable[[bytes], bytes]:
    """Rewrite an MM2 so that its SA chose ``proposal``."""
    cfg = connection("x", version=1, proposals=[proposal], psk="x", legacy=True)
    (suite,) = suites_from_config(cfg.proposals, Ike1Auth.PSK, 28800)

    def rewrite(data: bytes) -> bytes:
        msg, _ = decode_message(data)
        payloads = [build_sa_payload([suite]) if isinstance(x, SaPayload) else x for x in msg.payloads]
        return encode_message(Message(msg.exchange, 0, msg.spi_i, msg.spi_r, payloads, 0))[0]

    return rewrite


def mm3s(p: Pair) -> list[Datagram]:
    """The initiator's MM3s as sent (in clear, with a responder cookie)."""
    return [
        d for d in p.wire
        if d.sender == "i" and d.exchange == MM and not peek_header(d.data).flags & Flag.ENCRYPTION
        and d.data[8:16] != ZERO
    ]


def _up(p: Pair, cookie: bytes) -> None:
    assert len(p.of("i", IkeSaEstablished)) == len(p.of("r", IkeSaEstablished)) == 1
    ci, cr = p.of("i", ChildSaInstalled), p.of("r", ChildSaInstalled)
    assert len(ci) == len(cr) == 1 and ci[0].encr_key_out == cr[0].encr_key_in
    for who in ("i", "r"):
        assert not p.of(who, AuthFailed) and not p.of(who, NegotiationFailed)
    assert p.i.spi_r == p.r.spi_r == cookie and p.i.spi_i == p.r.spi_i


def _reference() -> Pair:
    p = Pair(*psk_configs(dpd_delay=0))
    p.start()
    p.advance(p.now + 200)
    return p


def test_forged_mm2_after_the_real_one_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """The real MM2 first, a forged one after it: kept as an alternative
    (logged, naming the peer) but never used, because MM4 comes before MM3 is
    due again; the initiator sends exactly what it sends without the
    forgery.  Once past MM4 a further MM2 is dropped as a message for
    unknown cookies, as before."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    ref = _reference()
    p = Pair(*psk_configs(dpd_delay=0))
    real = forge(p, after=[b"\xee" * 8])
    p.start()
    p.advance(p.now + 200)
    _up(p, real[0])
    assert p.i.stats["mm2_alternatives"] == 1 and p.i.stats["mm2_switches"] == 0
    assert any("MM2 from 198.51.100.2 under another responder cookie eeeeeeeeeeeeeeee" in r.getMessage()
               for r in caplog.records)
    sent = [(d.data, d.at) for d in p.wire if d.sender == "i"]
    assert sent == [(d.data, d.at) for d in ref.wire if d.sender == "i"]
    # after MM4: another MM2 is no longer of interest
    assert p.i.cookie_pairs == [p.i.spi_i + real[0]]
    mm2 = next(d for d in p.wire if d.sender == "r" and d.exchange == MM)
    late = _copy(mm2, b"\xdd" * 8)
    unknown = p.i.stats["unknown_spi"]
    p.deliver(late)
    assert p.i.stats["unknown_spi"] == unknown + 1 and p.i.stats["mm2_alternatives"] == 1
    assert p.i.datagrams_to_send(p.now) == []


def test_lost_mm3_with_a_forged_mm2_kept_comes_back_to_the_real_responder() -> None:
    """The real MM2 first, a forged one after it, and the first MM3 lost:
    the first retransmission goes to the forged cookie, the second to the
    real responder again (the same bytes as the lost MM3), which answers
    it: a forged MM2 after the real one cannot take the negotiation away
    for good."""
    p = Pair(*psk_configs(dpd_delay=0))
    real = forge(p, after=[b"\xee" * 8])
    lost: list[Datagram] = []

    def drop(d: Datagram) -> bool:
        if not lost and real and d.sender == "i" and d.data[8:16] == real[0] and d.exchange == MM:
            lost.append(d)  # the first MM3
            return True
        return False

    p.drop = drop
    t0 = p.now
    p.start()
    p.advance(p.now + 200)
    _up(p, real[0])
    sent = mm3s(p)
    assert [d.data[8:16] for d in sent] == [real[0], b"\xee" * 8, real[0]]
    assert [d.at - t0 for d in sent] == pytest.approx([0.0, 4.0, 4.0 + 7.2])
    assert sent[0].data == sent[2].data  # the real responder's MM3 again, KE and nonce kept
    assert p.i.stats["mm2_switches"] == 2


def test_several_forged_mm2s_before_the_real_one_end_established() -> None:
    """Three forged MM2s ahead of the real one (the first adopted, two kept,
    the real one the third alternative): MM3 goes to each responder cookie
    in turn at each retransmission, every one rebuilt for its cookies (NAT-D
    differs, KE and nonce are the same), and the real responder's answer
    completes Main Mode at the third retransmission, 24 s after the first
    MM3.  (A fourth would come at 47.5 s with the default timing, after the
    responder dropped its half-open SA: 30 s here and in charon.)"""
    p = Pair(*psk_configs(dpd_delay=0))
    forged = [bytes([0xE0 + n]) * 8 for n in range(3)]
    real = forge(p, before=forged)
    t0 = p.now
    p.start()
    assert p.i.cookie_pairs == [p.i.spi_i + forged[0], p.i.spi_i + ZERO]  # other MM2s still routed here
    p.advance(p.now + 200)
    _up(p, real[0])
    sent = mm3s(p)
    assert [d.data[8:16] for d in sent] == [*forged, real[0]]
    assert len({d.data for d in sent}) == 4
    kes = {(decode_message(d.data)[0].get(KePayload).data, decode_message(d.data)[0].get(NoncePayload).data)
           for d in sent}
    assert len(kes) == 1
    assert sent[-1].at - t0 == pytest.approx(4.0 + 7.2 + 12.96)
    assert p.i.stats["mm2_alternatives"] == 3 and p.i.stats["mm2_switches"] == 3
    assert p.r.stats["unknown_spi"] == 3  # the MM3s under forged cookies
    assert p.i.cookie_pairs == [p.i.spi_i + real[0]]


def test_forged_mm2s_beyond_the_bound_are_dropped_and_counted() -> None:
    """One more forged MM2 than the bound ahead of the real one: the real
    one is dropped and counted, the initiator goes round the kept forged
    cookies (never more MM3s than retransmit_tries allows) and the
    negotiation fails as a timeout, as it did with one forged MM2 before."""
    p = Pair(*psk_configs(dpd_delay=0))
    forged = [bytes([0xE0 + n]) * 8 for n in range(MAX_MM2_ALTERNATIVES + 1)]
    real = forge(p, before=forged)
    p.start()
    p.advance(p.now + 600)
    assert p.i.stats["mm2_alternatives"] == MAX_MM2_ALTERNATIVES
    assert p.i.stats["mm2_alternatives_dropped"] == 1
    sent = [d.data[8:16] for d in mm3s(p)]
    assert real[0] not in sent
    assert sent == [*forged, forged[0]] and len(sent) == 1 + p.i.cfg.retransmit_tries
    (fail,) = p.of("i", NegotiationFailed)
    assert "no answer to MM3 after 5 retransmits" in fail.reason
    assert not p.of("i", IkeSaEstablished) and p.i.get_timer() is None


def test_forged_mm2_with_an_sa_we_never_offered_is_not_an_alternative() -> None:
    """A forged MM2 that chose a suite we never offered, between the first
    (forged, acceptable) MM2 and the real one: dropped and counted, not kept,
    so the first retransmission goes straight to the real responder."""
    p = Pair(*psk_configs(dpd_delay=0))
    bad = b"\xbb" * 8
    real = forge(p, before=[b"\xee" * 8, (bad, offering("3des-md5-modp1024"))])
    t0 = p.now
    p.start()
    assert p.i.stats["mm2_alternatives"] == 1  # the real one only
    p.advance(p.now + 200)
    _up(p, real[0])
    sent = mm3s(p)
    assert [d.data[8:16] for d in sent] == [b"\xee" * 8, real[0]]
    assert sent[1].at - t0 == pytest.approx(4.0)
    assert p.i.stats["mm2_switches"] == 1


def test_forged_mm2_that_chose_another_dh_group() -> None:
    """We offer two DH groups; the forged MM2 chose the second, the real
    responder the first: MM3 for the real responder carries a key exchange
    of its group (a new one), and Main Mode completes with it."""
    proposals = ["aes128-sha1-modp2048", "aes128-sha1-modp3072"]
    p = Pair(*psk_configs(dpd_delay=0, proposals=proposals, proposals_r=proposals[:1]))
    real = forge(p, before=[(b"\xee" * 8, offering("aes128-sha1-modp3072"))])
    p.start()
    p.advance(p.now + 200)
    _up(p, real[0])
    first, second = mm3s(p)
    assert len(first.data) > len(second.data)  # a 384-byte KE, then a 256-byte one
    assert p.i.sa is not None and p.i.sa.suite is not None and p.i.sa.suite.ke.name == "modp2048"
