"""IKEv1 Phase 1 against one corrupted datagram: an encrypted Main Mode or
Aggressive Mode message (MM5, MM6, AM3) that does not decrypt, parse or
verify is dropped and counted, with a "probable authentication failure
(PSK mismatch?)" log line naming the peer, and the peer's retransmission
completes the negotiation (Libreswan/pluto and strongSwan behave so).  A
real pre-shared key mismatch still ends as an authentication failure naming
the peer, on the second copy (one retransmission interval later)."""

from __future__ import annotations

import logging

import pytest
from ikev1_pair import Datagram, Pair, psk_configs

from aioipsec.events import AuthFailed, ChildSaInstalled, IkeSaDeleted, IkeSaEstablished, NegotiationFailed
from aioipsec.ike.v1.constants import ExchangeType, Flag
from aioipsec.ike.v1.message import peek_header

MM, AM, INFO = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE, ExchangeType.INFORMATIONAL
PROBABLE = "probable authentication failure (PSK mismatch?)"


def _encrypted(d: Datagram) -> bool:
    return bool(peek_header(d.data).flags & Flag.ENCRYPTION)


def corrupt_once(p: Pair, sender: str, exchange: int, pos: int, bit: int = 0) -> list[Datagram]:
    """Flip one bit of the first encrypted Phase 1 datagram ``sender`` sends
    (MM5 from the initiator, MM6 from the responder, AM3); returns the
    corrupted copy once it went by."""
    original = p.deliver
    hit: list[Datagram] = []

    def deliver(d: Datagram) -> bool:
        if not hit and d.sender == sender and d.exchange == exchange and _encrypted(d):
            raw = bytearray(d.data)
            raw[pos % len(raw)] ^= 1 << bit
            d = Datagram(d.src, d.dst, bytes(raw), d.sender, d.at)
            hit.append(d)
        return original(d)

    p.deliver = deliver  # type: ignore[method-assign]
    return hit


def _up(p: Pair) -> None:
    assert len(p.of("i", IkeSaEstablished)) == len(p.of("r", IkeSaEstablished)) == 1
    ci, cr = p.of("i", ChildSaInstalled), p.of("r", ChildSaInstalled)
    assert len(ci) == len(cr) == 1
    assert ci[0].encr_key_out == cr[0].encr_key_in and ci[0].integ_key_in == cr[0].integ_key_out
    for who in ("i", "r"):
        assert not p.of(who, AuthFailed) and not p.of(who, NegotiationFailed)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "aioipsec.ike"]


def test_corrupted_mm5_is_dropped_and_the_retransmission_completes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p = Pair(*psk_configs(dpd_delay=0))
    hit = corrupt_once(p, "i", MM, 40)  # in the HASH_I payload
    p.start()
    assert hit
    # the responder waits: no error notify, no event, the SA still there
    assert not p.of("r", AuthFailed) and not p.of("i", AuthFailed)
    assert p.r.stats["unverified"] == 1 and p.r.stats["dropped"] == 1
    assert [(d.sender, d.exchange) for d in p.wire][-1] == ("i", MM)
    assert p.r.sas and not p.r.is_closed and not p.i.is_established
    (line,) = [m for m in _warnings(caplog) if PROBABLE in m]
    assert line.startswith("MM5 from 192.0.2.1 dropped") and "waiting for a retransmission" in line
    p.advance(p.now + 30)
    _up(p)
    # the initiator's MM5 retransmission (the uncorrupted bytes) 4 s later completed it
    mm5 = [d for d in p.wire if d.sender == "i" and d.exchange == MM and _encrypted(d)]
    assert len(mm5) == 2 and mm5[0].data != mm5[1].data and mm5[1].at == pytest.approx(mm5[0].at + 4.0)


def test_corrupted_mm6_is_dropped_and_the_retransmission_completes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p = Pair(*psk_configs(dpd_delay=0))
    hit = corrupt_once(p, "r", MM, 40)
    p.start()
    assert hit
    assert not p.of("i", AuthFailed) and not p.of("i", NegotiationFailed)
    assert p.i.stats["unverified"] == 1 and p.i.stats["dropped"] == 1
    # no protected delete went to the responder (it would drop its SA)
    assert [(d.sender, d.exchange) for d in p.wire][-1] == ("r", MM)
    (line,) = [m for m in _warnings(caplog) if PROBABLE in m]
    assert line.startswith("MM6 from 198.51.100.2 dropped")
    p.advance(p.now + 30)
    _up(p)
    # MM5 resent by the initiator's timer, the responder answered with its cached MM6
    mm6 = [d for d in p.wire if d.sender == "r" and d.exchange == MM and _encrypted(d)]
    assert len(mm6) == 2 and mm6[1].at == pytest.approx(mm6[0].at + 4.0)


@pytest.mark.parametrize("sender", ["i", "r"], ids=["MM5", "MM6"])
def test_any_single_bit_flip_in_mm5_or_mm6_is_survived(sender: str) -> None:
    """Every byte position of the datagram (header included), one bit
    flipped: the negotiation always completes.  A flip in the last CBC block
    of MM5 that lands in an unauthenticated part (the INITIAL-CONTACT
    notify's SPI) is accepted by the responder and poisons the IV of its
    MM6: the responder re-encrypts MM6 for the initiator's clean MM5
    retransmission."""
    size = len(_reference_wire()[4 if sender == "i" else 5].data)
    failures = []
    for pos in range(size):
        p = Pair(*psk_configs(dpd_delay=0))
        corrupt_once(p, sender, MM, pos, bit=pos % 8)
        p.start()
        p.advance(p.now + 60)
        try:
            _up(p)
        except AssertionError:
            failures.append(pos)
    assert failures == []


def test_mm5_corrupted_where_no_hash_covers_it_gets_mm6_encrypted_again(caplog: pytest.LogCaptureFixture) -> None:
    """The last CBC block of MM5 holds the SPI of the INITIAL-CONTACT notify,
    which no hash covers: a flipped bit there goes unnoticed, but that block
    is the IV of MM6, so the initiator cannot decrypt MM6 (dropped once) and
    resends MM5; that copy verifies under the same IV and the responder
    answers it with MM6 encrypted under its last block."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p = Pair(*psk_configs(dpd_delay=0))
    hit = corrupt_once(p, "i", MM, -1)
    p.start()
    assert hit and p.r.stats["unverified"] == 0 and p.r.is_established
    assert p.i.stats["unverified"] == 1 and not p.i.is_established
    p.advance(p.now + 30)
    _up(p)
    assert p.r.stats["reanswered"] == 1
    mm6 = [d for d in p.wire if d.sender == "r" and d.exchange == MM and _encrypted(d)]
    assert len(mm6) == 2 and mm6[0].data != mm6[1].data
    assert any(
        "MM5 from 192.0.2.1" in m and "MM6 encrypted again" in m for m in (r.getMessage() for r in caplog.records)
    )


def _reference_wire() -> list[Datagram]:
    p = Pair(*psk_configs(dpd_delay=0))
    p.start()
    return p.wire


def test_corrupted_am3_is_dropped_and_the_retransmission_completes(caplog: pytest.LogCaptureFixture) -> None:
    """Aggressive Mode: the responder drops an AM3 it cannot verify, resends
    AM2 on its timer, and the initiator answers with its kept AM3."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p = Pair(*psk_configs(aggressive=True, ids=("a.example", "b.example"), dpd_delay=0))
    hit = corrupt_once(p, "i", AM, 30)
    p.start()
    assert hit
    assert p.r.stats["unverified"] == 1 and not p.of("r", AuthFailed)
    assert any(m.startswith("AM3 from 192.0.2.1[a.example] dropped") and PROBABLE in m for m in _warnings(caplog))
    p.advance(p.now + 30)
    _up(p)


def test_single_bit_flips_in_am3_are_survived() -> None:
    """AM3, one bit flipped at each byte position except the last CBC block:
    the negotiation completes (a wrong next-payload byte, an undecryptable
    body, a HASH_I that does not verify are all dropped once).  The last
    block holds only the INITIAL-CONTACT SPI and padding, which nothing
    authenticates: such a copy is accepted and its last block, the base of
    every Quick Mode IV, differs from the initiator's.  AM3 is the last
    message, so unlike MM5 nothing comes back to repair it (open case)."""
    cfg = {"aggressive": True, "ids": ("a.example", "b.example"), "dpd_delay": 0}
    ref = Pair(*psk_configs(**cfg))  # type: ignore[arg-type]
    ref.start()
    (am3,) = [d for d in ref.wire if d.sender == "i" and d.exchange == AM and _encrypted(d)]
    failures = []
    for pos in range(len(am3.data) - 16):
        p = Pair(*psk_configs(**cfg))  # type: ignore[arg-type]
        corrupt_once(p, "i", AM, pos, bit=pos % 8)
        p.start()
        p.advance(p.now + 60)
        try:
            _up(p)
        except AssertionError:
            failures.append(pos)
    assert failures == []


def test_wrong_psk_fails_on_the_second_copy_of_mm5(caplog: pytest.LogCaptureFixture) -> None:
    """A real mismatch: the first MM5 is dropped like a corrupted one, the
    retransmission (the same bytes) 4 s later ends the negotiation as an
    authentication failure naming the peer, on both sides."""
    caplog.set_level(logging.INFO, logger="aioipsec.ike")
    p = Pair(*psk_configs(psk_r="not-the-same", dpd_delay=0))
    t0 = p.now
    p.start()
    assert not p.of("r", AuthFailed) and p.r.stats["unverified"] == 1
    p.advance(t0 + 60)
    (fr,) = p.of("r", AuthFailed)
    assert fr.step == "MM5" and fr.peer == "192.0.2.1" and "pre-shared key" in fr.reason
    (fi,) = p.of("i", AuthFailed)
    assert fi.step == "MM5" and fi.peer == "198.51.100.2" and "AUTHENTICATION_FAILED" in fi.reason
    assert p.r.stats["unverified"] == 2
    mm5 = [d for d in p.wire if d.sender == "i" and d.exchange == MM and _encrypted(d)]
    assert len(mm5) == 2 and mm5[0].data == mm5[1].data
    (notify,) = [d for d in p.wire if d.exchange == INFO]
    assert notify.sender == "r" and notify.at == pytest.approx(t0 + 4.0)
    assert p.i.is_closed and p.r.is_closed and p.i.get_timer() is None
    assert p.of("r", IkeSaDeleted)[0].reason == "authentication failed"
    warnings = _warnings(caplog)
    assert any(m.startswith("MM5 from 192.0.2.1 dropped") and PROBABLE in m for m in warnings)
    assert any(m.startswith("MM5 authentication failed with 192.0.2.1") for m in warnings)


def test_undecryptable_mm6_then_silence_is_an_authentication_failure() -> None:
    """The initiator dropped an MM6 it could not decrypt and its MM5
    retransmissions then go unanswered: when they run out the failure is
    reported as a probable authentication failure, not a plain timeout."""
    p = Pair(*psk_configs(dpd_delay=0))
    corrupt_once(p, "r", MM, 40)
    p.start()
    p.r_alive = False
    p.advance(p.now + 600)
    (fi,) = p.of("i", AuthFailed)
    assert fi.step == "MM6" and fi.peer == "198.51.100.2" and "pre-shared key" in fi.reason
    assert "5 retransmits" in fi.reason
    assert not p.of("i", NegotiationFailed) and p.i.is_closed and p.i.get_timer() is None


def test_corrupted_mm5_then_silence_ends_the_half_open_sa_as_an_authentication_failure() -> None:
    p = Pair(*psk_configs(dpd_delay=0))
    corrupt_once(p, "i", MM, 40)
    p.start()
    assert p.r.stats["unverified"] == 1
    p.r_alive = False  # the retransmissions never arrive
    p.advance(p.now + 60)
    (fr,) = p.of("r", AuthFailed)
    assert fr.step == "MM5" and fr.peer == "192.0.2.1" and "pre-shared key" in fr.reason
    assert p.r.is_closed and p.of("r", IkeSaDeleted)[0].reason == "half-open timeout"


def test_forged_mm2_before_the_real_one_does_not_stall_main_mode() -> None:
    """An on-path attacker answers MM1 first with a copy of MM2 under its own
    responder cookie: the initiator adopts that cookie and sends MM3 under it
    (the real responder drops it: unknown cookies).  It used to drop the real
    MM2 as a message for unknown cookies and stall until its retransmissions
    ran out (as strongSwan and Libreswan do); now it keeps the real MM2 as an
    alternative and, when MM3 is due for a retransmission, sends MM3 under
    the real responder's cookie instead (see test_ikev1_forged_mm2.py)."""
    p = Pair(*psk_configs(dpd_delay=0))
    original = p.deliver
    forged: list[Datagram] = []

    def deliver(d: Datagram) -> bool:
        if not forged and d.sender == "r" and d.exchange == MM:
            fake = Datagram(d.src, d.dst, d.data[:8] + b"\xee" * 8 + d.data[16:], "r", d.at)
            forged.append(fake)
            original(fake)
        return original(d)

    p.deliver = deliver  # type: ignore[method-assign]
    p.start()
    p.advance(p.now + 200)
    assert forged
    _up(p)
