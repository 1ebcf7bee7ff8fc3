"""IKEv2 Redirect (RFC 5685) between IKEv2 sessions in memory: a client
redirected in IKE_SA_INIT (nonce echoed or not), in IKE_AUTH and in an
INFORMATIONAL, set up again with a second gateway; REDIRECT_SUPPORTED /
REDIRECTED_FROM announced only when ``follow_redirects`` is on; the loop limit
(5 within 300 s); malformed REDIRECT data counted and ignored."""

from __future__ import annotations

import pytest
from ikev2_pair import I_ADDR, R_ADDR, Pair, psk_pair_configs

from aioipsec.config import ConnectionConfig
from aioipsec.errors import LocalProtocolError
from aioipsec.events import (
    IkeRedirected,
    IkeSaDeleted,
    IkeSaEstablished,
    NegotiationFailed,
)
from aioipsec.ike.constants import ExchangeType, NotifyType
from aioipsec.ike.v2.message import Message, decode_message, encode_message
from aioipsec.ike.v2.payloads import NotifyPayload
from aioipsec.ike.v2.tasks.ike_redirect import parse_redirect, redirect_data

GW2 = ("192.0.2.3", 500)
NO_TIMERS = {"dpd_delay": 0}


def configs(follow: bool = True) -> tuple[ConnectionConfig, ConnectionConfig]:
    return psk_pair_configs(i_kw={**NO_TIMERS, "follow_redirects": follow}, r_kw=NO_TIMERS)


def first_request(p: Pair) -> Message:
    p.initiate()
    return decode_message(p.out_i()[0])


def init_redirect(p: Pair, data: bytes) -> bytes:
    """An IKE_SA_INIT response carrying only N(REDIRECT) with ``data``."""
    msg = Message(ExchangeType.IKE_SA_INIT, p.i.spi_i, bytes(8), 0, initiator=False, response=True,
                  payloads=[NotifyPayload(NotifyType.REDIRECT, data)])
    return encode_message(msg)


def follow(p: Pair, ev: IkeRedirected) -> Pair:
    """Do what the endpoint does: a new session toward the new gateway, told
    where it came from and the redirects so far."""
    i_cfg, r_cfg = p.i.config, p.r_cfgs[0]
    q = Pair(i_cfg, r_cfg, seed=len(ev.redirects) + 10, r_addr=(ev.gateway, 500))
    q.i.redirected_from = ev.from_addr
    q.i.redirect_history = ev.redirects
    q.now = p.now
    return q


def test_redirect_supported_only_when_enabled() -> None:
    i, r = configs()
    p = Pair(i, r)
    assert first_request(p).has_notify(NotifyType.REDIRECT_SUPPORTED)
    i, r = configs(follow=False)
    p = Pair(i, r)
    msg = first_request(p)
    assert not msg.has_notify(NotifyType.REDIRECT_SUPPORTED) and not msg.has_notify(NotifyType.REDIRECTED_FROM)
    # the gateway records it: only a client that announced it may be redirected
    p = Pair(*configs(follow=False))
    p.initiate()
    p.settle()
    assert p.i.is_established and p.r is not None
    with pytest.raises(LocalProtocolError, match="did not announce REDIRECT_SUPPORTED"):
        p.r.redirect("192.0.2.3", p.now)


def test_init_redirect_with_our_nonce_is_followed() -> None:
    p = Pair(*configs())
    p.initiate()
    p.to_r(p.out_i())
    p.out_r()  # the real answer is lost; the gateway redirects instead
    p.to_i([init_redirect(p, redirect_data(GW2[0], p.i.sa.ni))])
    [ev] = p.events("i", IkeRedirected)
    assert (ev.gateway, ev.exchange, ev.children, ev.from_addr) == (GW2[0], "IKE_SA_INIT", ("lan",), R_ADDR[0])
    assert ev.redirects == (p.now,)
    assert p.i.is_closed and p.i.closed_reason == f"redirected to {GW2[0]} by {R_ADDR[0]}"
    # the new IKE SA with the second gateway: REDIRECTED_FROM names the first
    q = follow(p, ev)
    q.initiate()
    out = q.out_i()
    sent = decode_message(out[0])
    rf = sent.get_notify(NotifyType.REDIRECTED_FROM)
    assert rf is not None and parse_redirect(rf.data)[1] == R_ADDR[0]
    assert not sent.has_notify(NotifyType.REDIRECT_SUPPORTED)
    q.to_r(out)
    q.settle()
    assert q.i.is_established and q.i.remote_addr[0] == GW2[0]
    assert q.r is not None and q.r.sa.redirect_supported  # REDIRECTED_FROM announces support too


def test_init_redirect_with_wrong_nonce_is_ignored() -> None:
    p = Pair(*configs())
    p.initiate()
    p.to_r(p.out_i())
    real = p.out_r()
    forged = init_redirect(p, redirect_data(GW2[0], bytes(32)))
    p.to_i([forged])
    assert p.i.stats.redirects_invalid == 1
    assert not p.i.is_closed and not p.events("i", IkeRedirected)
    p.to_i(real)  # the genuine answer still completes the IKE SA
    p.settle()
    assert p.i.is_established


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        bytes((1, 5)) + bytes(5),  # IPv4 of 5 bytes
        bytes((2, 4)) + bytes(4),  # IPv6 of 4 bytes
        bytes((9, 4)) + bytes(4),  # unknown type
        bytes((1, 40)) + bytes(4),  # length beyond the data
        bytes((3, 0)),  # empty FQDN
        bytes((3, 2)) + b"\xff\xfe",  # not ASCII
    ],
)
def test_malformed_redirect_counted_and_ignored(data: bytes) -> None:
    p = Pair(*configs())
    p.initiate()
    p.to_r(p.out_i())
    real = p.out_r()
    p.to_i([init_redirect(p, data)])
    assert p.i.stats.redirects_invalid == 1 and not p.i.is_closed
    p.to_i(real)
    p.settle()
    assert p.i.is_established
    # the same data in an INFORMATIONAL on the established IKE SA: ignored too
    assert p.r is not None
    p.r.sa.tm.queue(_RawRedirect(p.r, p.r.sa, data))
    p.r._kick(p.now)
    p.settle()
    assert p.i.stats.redirects_invalid == 2 and p.i.is_established and not p.events("i", IkeRedirected)


class _RawRedirect:
    """An INFORMATIONAL request with N(REDIRECT) carrying arbitrary data (a
    broken gateway), built like :class:`IkeRedirect` builds its own."""

    exchange_type = ExchangeType.INFORMATIONAL
    combinable = False
    name = "raw_redirect"

    def __init__(self, session, sa, data: bytes) -> None:  # type: ignore[no-untyped-def]
        self.session, self.sa, self.data, self.initiator = session, sa, data, True

    def build(self, msg: Message) -> object:
        from aioipsec.ike.v2.tasks.base import TaskStatus

        msg.add(NotifyPayload(NotifyType.REDIRECT, self.data))
        return TaskStatus.SUCCESS

    def process(self, msg: Message) -> object:
        from aioipsec.ike.v2.tasks.base import TaskStatus

        return TaskStatus.SUCCESS

    def abort(self, reason: str) -> None:
        pass

    def after_response_sent(self, now: float) -> None:
        pass

    def migrate(self, sa) -> None:  # type: ignore[no-untyped-def]
        self.sa = sa


def test_auth_redirect_is_followed_after_authentication() -> None:
    p = Pair(*configs())

    def add_redirect(data: bytes) -> bytes:
        assert data[18] == ExchangeType.IKE_AUTH and p.r is not None
        msg = decode_message(data, p.i.sa.sk)  # the client's keys open the gateway's messages
        msg.add(NotifyPayload(NotifyType.REDIRECT, redirect_data("2001:db8:1::3")))
        return encode_message(msg, p.r.sa.sk)

    p.initiate()
    p.roundtrip()  # IKE_SA_INIT
    p.to_r(p.out_i())
    p.to_i([add_redirect(d) for d in p.out_r()])
    p.settle()
    [ev] = p.events("i", IkeRedirected)
    assert (ev.gateway, ev.exchange, ev.children) == ("2001:db8:1::3", "IKE_AUTH", ("lan",))
    assert ev.peer == f"{R_ADDR[0]}[hq.example]"
    assert p.i.is_closed and not p.events("i", IkeSaEstablished)
    assert p.i.closed_reason == f"redirected to 2001:db8:1::3 by {R_ADDR[0]}[hq.example]"


def test_informational_redirect_keeps_the_sa_until_replaced() -> None:
    p = Pair(*configs())
    p.initiate()
    p.settle()
    assert p.r is not None and p.r.sa.redirect_supported
    p.r.redirect(GW2[0], p.now)
    p.settle()
    [ev] = p.events("i", IkeRedirected)
    assert (ev.gateway, ev.exchange, ev.children) == (GW2[0], "INFORMATIONAL", ("lan",))
    assert p.i.is_established and not p.i.is_closed  # deleted by the owner once the new one is up
    q = follow(p, ev)
    q.initiate()
    q.settle()
    assert q.i.is_established and [c.name for c in q.i.child_sas] == ["lan"]
    p.i.delete(p.now)
    p.settle()
    assert p.i.is_closed and p.r.is_closed
    # a client that never deletes it: the gateway does after the half-open timeout
    p = Pair(*configs())
    p.initiate()
    p.settle()
    assert p.r is not None
    p.r.redirect(GW2[0], p.now)
    p.settle()
    p.advance(31)
    p.settle()
    assert p.r.is_closed and any(isinstance(e, IkeSaDeleted) for e in p.ev_i)


def test_redirect_loop_limit() -> None:
    p = Pair(*configs())
    for hop in range(6):
        p.initiate()
        p.to_r(p.out_i())
        p.out_r()
        gw = f"192.0.2.{10 + hop}"
        p.to_i([init_redirect(p, redirect_data(gw, p.i.sa.ni))])
        if hop < 5:
            [ev] = p.events("i", IkeRedirected)
            assert len(ev.redirects) == hop + 1
            p.now += 10
            p = follow(p, ev)
    assert not p.events("i", IkeRedirected)
    [fail] = p.events("i", NegotiationFailed)
    assert fail.notify == "REDIRECT" and fail.peer == "192.0.2.14"
    assert "redirect loop" in fail.reason and "192.0.2.15" in fail.reason
    assert p.i.is_closed
    # redirects older than 300 s no longer count
    q = Pair(*configs())
    q.i.redirect_history = tuple(float(t) for t in range(5))
    q.now = 400.0
    q.initiate()
    q.to_r(q.out_i())
    q.out_r()
    q.to_i([init_redirect(q, redirect_data(GW2[0], q.i.sa.ni))])
    [ev] = q.events("i", IkeRedirected)
    assert ev.redirects == (400.0,)


def test_redirect_not_followed_when_disabled_or_a_name() -> None:
    p = Pair(*configs(follow=False))
    p.initiate()
    p.to_r(p.out_i())
    p.out_r()
    p.to_i([init_redirect(p, redirect_data(GW2[0], p.i.sa.ni))])
    [fail] = p.events("i", NegotiationFailed)
    assert "follow_redirects is off" in fail.reason and p.i.is_closed and not p.events("i", IkeRedirected)
    p = Pair(*configs())
    p.initiate()
    p.to_r(p.out_i())
    p.out_r()
    p.to_i([init_redirect(p, redirect_data("gw2.example", p.i.sa.ni))])
    [fail] = p.events("i", NegotiationFailed)
    assert "gateway names are not resolved" in fail.reason and "gw2.example" in fail.reason
    assert p.i.is_closed


def test_a_redirect_from_the_client_is_ignored_by_the_gateway() -> None:
    """Only the gateway (the original responder) redirects (RFC 5685 §5): an
    authenticated client's INFORMATIONAL with REDIRECT must not make the
    gateway set the connection up toward an address of the client's choice
    (nor stop rekeying the IKE SA); it is answered, counted and ignored."""
    p = Pair(*configs())
    p.initiate()
    p.settle()
    assert p.r is not None and p.r.is_established
    rekey_at = p.r.sa.rekey_at
    p.i.sa.tm.queue(_RawRedirect(p.i, p.i.sa, redirect_data(GW2[0])))
    p.i._kick(p.now)
    p.settle()
    assert not p.events("r", IkeRedirected) and p.r.stats.redirects_invalid == 1
    assert p.r.is_established and p.i.is_established and p.r.sa.rekey_at == rekey_at


def test_redirect_not_followed_puts_the_rekey_times_back() -> None:
    """An INFORMATIONAL REDIRECT suspends the client's rekey and
    reauthentication times; when the owner does not follow it after all
    (``redirect_not_followed``) they are back, and the timer with them."""
    i, r = psk_pair_configs(i_kw={**NO_TIMERS, "rekey_time": 3600, "reauth_time": 7200}, r_kw=NO_TIMERS)
    p = Pair(i, r)
    p.initiate()
    p.settle()
    assert p.r is not None
    sa = p.i.sa
    times = (sa.rekey_at, sa.reauth_at)
    p.r.redirect(GW2[0], p.now)
    p.settle()
    assert p.events("i", IkeRedirected) and sa.rekey_at == sa.reauth_at == float("inf")
    assert p.i.redirect_not_followed(GW2[0], "the new IKE SA could not start", p.now)
    assert (sa.rekey_at, sa.reauth_at) == times and p.i.get_timer() is not None and p.i.get_timer() <= times[0]
    assert not p.i.redirect_not_followed(GW2[0], "again", p.now)  # nothing held any more
    assert (sa.rekey_at, sa.reauth_at) == times


def test_an_ike_rekey_while_a_redirect_is_pending_keeps_the_held_times() -> None:
    """The gateway rekeys the IKE SA after its INFORMATIONAL REDIRECT, before
    the client followed it: the new IKE SA keeps rekeying and reauthentication
    suspended (it does not inherit an infinite reauthentication time as its
    own), and when the redirect is not followed after all the old SA's
    reauthentication time and the new SA's own rekey time are back."""
    i, r = psk_pair_configs(i_kw={**NO_TIMERS, "rekey_time": 3600, "reauth_time": 7200}, r_kw=NO_TIMERS)
    p = Pair(i, r)
    p.initiate()
    p.settle()
    assert p.r is not None
    old = p.i.sa
    reauth_at = old.reauth_at
    p.r.redirect(GW2[0], p.now)
    p.settle()
    assert p.events("i", IkeRedirected) and old.rekey_at == old.reauth_at == float("inf")
    p.now += 60
    p.r.rekey_ike_sa(p.now)
    p.settle()
    new = p.i.sa
    assert new is not old and new.established and new.spi_i != old.spi_i
    assert new.rekey_at == new.reauth_at == float("inf"), "still suspended: the redirect is pending"
    assert new.redirect_held is not None and new.redirect_held[0] == reauth_at
    assert p.i.redirect_not_followed(GW2[0], "the new IKE SA could not start", p.now)
    assert new.reauth_at == reauth_at, "the reauthentication time survives the rekey, as without a redirect"
    assert p.now < new.rekey_at <= p.now + 3600, "the new IKE SA's own rekey time"
    assert new.expire_at < float("inf") and p.i.get_timer() is not None and p.i.get_timer() <= new.rekey_at


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("255.255.255.255", "the broadcast address"),
        (I_ADDR[0], "our own address"),
        ("192.0.2.77", "our own address"),  # an additional address of ours (MOBIKE)
    ],
)
def test_redirect_to_an_impossible_gateway_is_refused(target: str, why: str, caplog: pytest.LogCaptureFixture) -> None:
    """A REDIRECT naming an address no gateway can have (following it could
    only fail or loop back to us) is counted and not followed: on an
    established IKE SA it stays as it is (rekeying as before); in IKE_SA_INIT
    the negotiation fails with the reason, naming the peer and the target."""
    p = Pair(*configs())
    p.initiate()
    p.settle()
    assert p.r is not None and p.i.is_established
    p.i.set_local_addresses([I_ADDR[0], "192.0.2.77"], p.now)
    p.settle()
    rekey_at = p.i.sa.rekey_at
    caplog.set_level("WARNING", logger="aioipsec.ike")
    p.r.sa.tm.queue(_RawRedirect(p.r, p.r.sa, redirect_data(target)))
    p.r._kick(p.now)
    p.settle()
    assert not p.events("i", IkeRedirected) and p.i.stats.redirects_invalid == 1
    assert p.i.is_established and p.i.sa.rekey_at == rekey_at
    assert any(f"REDIRECT to {target} by {R_ADDR[0]}" in r.getMessage() and why in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    if target == "192.0.2.77":
        return
    p = Pair(*configs())
    p.initiate()
    p.to_r(p.out_i())
    p.out_r()
    p.to_i([init_redirect(p, redirect_data(target, p.i.sa.ni))])
    [fail] = p.events("i", NegotiationFailed)
    assert why in fail.reason and target in fail.reason and R_ADDR[0] in fail.reason, fail.reason
    assert p.i.is_closed and not p.events("i", IkeRedirected) and p.i.stats.redirects_invalid == 1


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("255.255.255.255", "the broadcast address"),
        (R_ADDR[0], "our own address"),
        (f"::ffff:{R_ADDR[0]}", "our own address"),
    ],
)
def test_the_gateway_does_not_redirect_to_an_impossible_gateway(target: str, why: str) -> None:
    """The gateway side of the client's check: ``redirect`` refuses a target
    the client would refuse (no REDIRECT is sent, the IKE SA stays); a
    real address is still sent."""
    p = Pair(*configs())
    p.initiate()
    p.settle()
    assert p.r is not None and p.i.is_established
    with pytest.raises(LocalProtocolError, match=f"cannot redirect to '{target}': the target is {why}"):
        p.r.redirect(target, p.now)
    p.settle()
    assert not p.events("i", IkeRedirected) and p.i.stats.redirects_invalid == 0
    assert p.i.is_established and p.r.is_established
    p.r.redirect(GW2[0], p.now)
    p.settle()
    assert [ev.gateway for ev in p.events("i", IkeRedirected)] == [GW2[0]]


def test_the_gateway_can_redirect_a_client_after_an_ike_rekey() -> None:
    """REDIRECT_SUPPORTED was announced in the first IKE_SA_INIT only: an IKE
    rekey must carry it to the new IKE SA, or the gateway refuses to redirect
    the client afterwards."""
    i, r = psk_pair_configs(i_kw=NO_TIMERS, r_kw=NO_TIMERS)
    p = Pair(i, r)
    p.initiate()
    p.settle()
    assert p.r is not None
    first = p.r.sa
    assert first.redirect_supported
    p.now += 60
    p.r.rekey_ike_sa(p.now)
    p.settle()
    assert p.r.sa is not first and p.r.sa.established and p.r.sa.redirect_supported
    p.r.redirect(GW2[0], p.now)
    p.settle()
    assert p.events("i", IkeRedirected)
