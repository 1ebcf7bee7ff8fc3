"""RFC 4478 AUTH_LIFETIME (charon's ``ike_auth_lifetime``): a responder with
``reauth_time`` tells the initiator in its IKE_AUTH response how long the
authentication holds (and closes the IKE SA ``over_time`` past that if nobody
reauthenticated it); an initiator that receives it reauthenticates before it
ends, make-before-break, even without a ``reauth_time`` of its own; the
same in a later INFORMATIONAL, which a responder ignores.  A zero or
malformed lifetime is ignored and counted.  Two sans-I/O sessions with a
hand-moved clock, and once two endpoints on a memory network in real time."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from ikev2_pair import Pair, psk_pair_configs
from mobike_helpers import MobikeInformational

from aioipsec.config import ConnectionConfig
from aioipsec.events import IkeSaDeleted, IkeSaEstablished, ReauthRequired
from aioipsec.ike.constants import NotifyType
from aioipsec.ike.v2.message import Message
from aioipsec.ike.v2.tasks import ike_auth
from aioipsec.ike.v2.tasks.common import notify
from aioipsec.status import ike_row

INF = float("inf")


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Message]]:
    """The IKE_AUTH messages each side processed (decrypted), by role."""
    got: dict[str, list[Message]] = {"request": [], "response": []}
    process_r, process_i = ike_auth.IkeAuth.process_r, ike_auth.IkeAuth.process_i

    def spy_r(self: Any, msg: Message) -> Any:
        got["request"].append(msg)
        return process_r(self, msg)

    def spy_i(self: Any, msg: Message) -> Any:
        got["response"].append(msg)
        return process_i(self, msg)

    monkeypatch.setattr(ike_auth.IkeAuth, "process_r", spy_r)
    monkeypatch.setattr(ike_auth.IkeAuth, "process_i", spy_i)
    return got


def configs(i_kw: dict | None = None, r_kw: dict | None = None) -> tuple[ConnectionConfig, ConnectionConfig]:
    return psk_pair_configs(i_kw={"dpd_delay": 0, **(i_kw or {})}, r_kw={"dpd_delay": 0, **(r_kw or {})})


def pair(i_kw: dict | None = None, r_kw: dict | None = None) -> Pair:
    p = Pair(*configs(i_kw, r_kw))
    p.initiate()
    p.settle()
    assert p.i.is_established and p.r is not None and p.r.is_established
    return p


def lifetimes(msgs: list[Message]) -> list[bytes]:
    return [n.data for m in msgs for n in m.notifies if n.notify_type == NotifyType.AUTH_LIFETIME]


def run_to(p: Pair, t: float) -> None:
    """Time passes with the wire working (a settle after every second)."""
    while p.now < t:
        p.advance(min(1.0, t - p.now))
        p.settle()


# --------------------------------------------------------------------------- responder


def test_the_responder_sends_it_only_with_reauth_time(seen: dict[str, list[Message]]) -> None:
    p = pair({}, {"reauth_time": 100.0, "rand_time": 0.0})
    assert lifetimes(seen["response"]) == [struct.pack("!I", 100)]
    assert lifetimes(seen["request"]) == [], "the initiator never sends it"
    assert p.r is not None
    # the responder does not reauthenticate, but closes over_time after the lifetime it gave
    over = p.r.config.over
    assert over == pytest.approx(1440.0), "10 % of the default rekey_time (4 h), the longer"
    assert p.r.sa.reauth_at == INF and p.r.sa.reauth_by == pytest.approx(100.0 + over)
    assert p.r.sa.expire_at == pytest.approx(100.0 + over)

    for kw in ({}, {"reauth_time": 100.0, "rand_time": 0.0}):
        seen["response"].clear()
        seen["request"].clear()
        q = pair(kw, {})  # no reauth_time at the responder (an initiator's own is not sent)
        assert lifetimes(seen["response"]) == [] and lifetimes(seen["request"]) == []
        assert q.r is not None and q.r.sa.reauth_by == INF and q.i.sa.reauth_by == INF


def test_the_lifetime_sent_is_reauth_time_minus_the_jitter(seen: dict[str, list[Message]]) -> None:
    p = pair({}, {"reauth_time": 100.0, "rand_time": 30.0, "over_time": 20.0})
    ((value,),) = [struct.unpack("!I", d) for d in lifetimes(seen["response"])]
    assert 70 <= value <= 100
    assert p.r is not None and p.r.sa.reauth_by == pytest.approx(value + 20.0)


def test_the_responder_closes_an_ike_sa_nobody_reauthenticated(monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    # an initiator without RFC 4478 ignores the notify
    monkeypatch.setattr(ike_auth, "process_auth_lifetime", lambda *a: None)
    p = pair({}, {"reauth_time": 100.0, "rand_time": 0.0, "over_time": 30.0})
    assert p.i.sa.reauth_at == INF
    run_to(p, 129.0)
    assert p.r is not None and not p.r.is_closed
    assert not p.events("r", ReauthRequired), "the responder does not reauthenticate itself"
    with caplog.at_level(logging.INFO, logger="aioipsec.ike"):
        run_to(p, 131.0)
    assert p.r.is_closed and p.r.closed_reason == "expired"
    assert p.i.is_closed, "the responder's Delete reached the initiator"
    assert any("not reauthenticated within its AUTH_LIFETIME" in r.getMessage() and "192.0.2.1" in r.getMessage()
               for r in caplog.records)


def test_the_responders_deadline_survives_an_ike_rekey() -> None:
    p = pair({"rekey_time": 40.0, "rand_time": 0.0}, {"reauth_time": 100.0, "rand_time": 0.0, "over_time": 30.0})
    run_to(p, 45.0)
    assert len({(e.spi_i, e.spi_r) for e in p.events("r", IkeSaEstablished)}) == 2, "rekeyed at 40"
    assert p.r is not None and p.r.sa.reauth_by == pytest.approx(130.0), "not restarted by the rekey"
    assert p.r.sa.expire_at == pytest.approx(130.0)
    assert p.i.sa.reauth_at == pytest.approx(100.0 - 4.0), "the initiator's too (margin 10 % of 40 s)"
    assert p.i.sa.reauth_by == pytest.approx(100.0)


# --------------------------------------------------------------------------- initiator


@pytest.mark.parametrize(
    "i_kw,reauth_at,why",
    [
        ({}, 90.0, "over_time (10 % of 4 h) is longer than 10 % of the lifetime: 10 % of it"),
        ({"over_time": 5.0}, 95.0, "over_time is the smaller margin"),
        ({"reauth_time": 50.0, "rand_time": 0.0}, 50.0, "our own reauth_time is earlier"),
        ({"reauth_time": 300.0, "rand_time": 0.0}, 90.0, "the peer's lifetime is earlier"),
    ],
)
def test_the_initiator_schedules_its_reauthentication(i_kw: dict, reauth_at: float, why: str) -> None:
    p = pair(i_kw, {"reauth_time": 100.0, "rand_time": 0.0})
    assert p.i.sa.reauth_at == pytest.approx(reauth_at), why
    assert p.i.sa.reauth_by == pytest.approx(100.0)
    assert p.i.sa.expire_at <= 100.0, "never past the peer's lifetime"
    row = ike_row(SimpleNamespace(session=p.i, ike_info=None, name="lan", established_at=0.0), p.now, [])
    assert row["reauth_in"] == int(reauth_at) and row["expire_in"] == int(p.i.sa.expire_at)


def test_a_short_lifetime_gets_at_least_ten_seconds() -> None:
    p = pair({}, {"reauth_time": 3.0, "rand_time": 0.0})
    assert p.i.sa.reauth_at == pytest.approx(2.7) and p.i.sa.reauth_by == pytest.approx(10.0)


def test_the_initiator_reauthenticates_make_before_break(seen: dict[str, list[Message]]) -> None:
    i_cfg, r_cfg = configs({}, {"reauth_time": 100.0, "rand_time": 0.0})
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.settle()
    old = (p.i.spi_i, p.i.spi_r)
    run_to(p, 89.0)
    assert not p.events("i", ReauthRequired) and not p.i.is_closed
    run_to(p, 91.0)
    (ev,) = p.events("i", ReauthRequired)
    assert (ev.spi_i, ev.spi_r) == old and ev.children == ("lan",)
    assert not p.i.is_closed and p.i.is_established, "the old IKE SA waits for the new one"

    # what the endpoint does (Endpoint._start_reauth): a new IKE SA of the same
    # connection without INITIAL_CONTACT, the same Child SA; then the old one goes
    q = Pair(dataclasses.replace(i_cfg, initial_contact=False), r_cfg, seed=2)
    q.now = p.now
    q.initiate()
    q.settle()
    assert q.i.is_established and q.r is not None and q.r.is_established
    assert (q.i.spi_i, q.i.spi_r) != old and q.i.spi_i != old[0] and q.i.spi_r != old[1]
    assert [c.name for c in q.i.children.values() if c.is_active] == ["lan"]
    assert lifetimes(seen["response"]) == [struct.pack("!I", 100)] * 2, "the new IKE SA got one too"
    assert q.i.sa.reauth_at == pytest.approx(q.now + 90.0), "and the next reauthentication is scheduled"
    assert p.r is not None and not p.r.is_closed, "make-before-break: both IKE SAs up at once"
    p.i.delete(p.now)
    p.settle()
    assert p.i.is_closed and p.r.is_closed
    assert [e.reason for e in p.events("r", IkeSaDeleted)] and q.i.is_established and q.r.is_established
    run_to(q, q.now + 89.0)
    assert not q.events("i", ReauthRequired)
    run_to(q, q.now + 2.0)
    assert len(q.events("i", ReauthRequired)) == 1


def test_the_old_ike_sa_expires_at_the_lifetime_if_the_reauthentication_never_happens() -> None:
    p = pair({}, {"reauth_time": 100.0, "rand_time": 0.0, "over_time": 300.0})
    run_to(p, 99.0)
    assert p.events("i", ReauthRequired) and not p.i.is_closed  # nobody starts the new IKE SA here
    run_to(p, 101.0)
    assert p.i.is_closed and p.i.closed_reason == "expired", "the peer's lifetime is our hard lifetime"


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x64", b"\x00\x00\x00\x64\x00", struct.pack("!I", 0)])
def test_a_zero_or_malformed_lifetime_is_ignored_and_counted(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture, data: bytes) -> None:
    def broken_peer(s: Any, sa: Any, msg: Message) -> None:
        msg.add(notify(NotifyType.AUTH_LIFETIME, data))

    monkeypatch.setattr(ike_auth, "add_auth_lifetime", broken_peer)
    with caplog.at_level(logging.WARNING, logger="aioipsec.ike"):
        p = pair({"reauth_time": 500.0, "rand_time": 0.0}, {})
    assert p.i.is_established and p.i.stats.auth_lifetime_ignored == 1
    assert p.i.sa.reauth_at == pytest.approx(500.0) and p.i.sa.reauth_by == INF, "our own schedule only"
    assert p.i.sa.expire_at == pytest.approx(500.0 + 1440.0)
    (rec,) = [r for r in caplog.records if "AUTH_LIFETIME" in r.getMessage()]
    assert "192.0.2.2" in rec.getMessage() and "ignored" in rec.getMessage()


# --------------------------------------------------------------------------- INFORMATIONAL (RFC 4478 §3)


def send_auth_lifetime(p: Pair, side: str, data: bytes) -> MobikeInformational:
    """``side``'s session sends an INFORMATIONAL request with AUTH_LIFETIME
    ``data`` (the test task keeps the response); the wire settles."""
    s = p.i if side == "i" else p.r
    assert s is not None
    t = MobikeInformational(s, update=False, extra=[(NotifyType.AUTH_LIFETIME, data)])
    s.sa.tm.queue(t)
    s._kick(p.now)
    p.settle()
    assert t.response is not None, "answered"
    return t


def status_row(p: Pair) -> dict[str, Any]:
    return ike_row(SimpleNamespace(session=p.i, ike_info=None, name="lan", established_at=0.0), p.now, [])


@pytest.mark.parametrize("r_kw,before", [({"reauth_time": 1000.0, "rand_time": 0.0}, 900.0), ({}, INF)],
                         ids=["after-ike-auth-lifetime", "none-in-ike-auth"])
def test_an_informational_auth_lifetime_moves_the_initiators_reauthentication(
        caplog: pytest.LogCaptureFixture, r_kw: dict, before: float) -> None:
    p = pair({}, r_kw)
    assert p.i.sa.reauth_at == pytest.approx(before)
    run_to(p, 10.0)
    with caplog.at_level(logging.INFO, logger="aioipsec.ike"):
        t = send_auth_lifetime(p, "r", struct.pack("!I", 200))
    assert t.response is not None and t.response.payloads == [], "an empty INFORMATIONAL response"
    # the IKE_AUTH rules: margin min(over_time, 10 % of the lifetime) = 20 s, hard lifetime the lifetime
    assert p.i.sa.reauth_at == pytest.approx(190.0) and p.i.sa.reauth_by == pytest.approx(210.0)
    assert p.i.sa.expire_at == pytest.approx(210.0)
    assert p.i.stats.auth_lifetime_ignored == 0
    row = status_row(p)
    assert row["reauth_in"] == 180 and row["expire_in"] == 200
    (rec,) = [r for r in caplog.records if "received AUTH_LIFETIME" in r.getMessage()]
    assert "received AUTH_LIFETIME of 200 s from 192.0.2.2" in rec.getMessage()
    assert "reauthenticating in 180 s" in rec.getMessage()

    # a longer one later does not postpone it (as in IKE_AUTH: only ever earlier)
    send_auth_lifetime(p, "r", struct.pack("!I", 5000))
    assert p.i.sa.reauth_at == pytest.approx(190.0) and p.i.sa.expire_at == pytest.approx(210.0)

    run_to(p, 189.0)
    assert not p.events("i", ReauthRequired)
    run_to(p, 191.0)
    (ev,) = p.events("i", ReauthRequired)
    assert (ev.spi_i, ev.spi_r) == (p.i.spi_i, p.i.spi_r) and ev.children == ("lan",)
    assert p.i.is_established, "make-before-break: the old IKE SA waits for the new one"


def test_a_responder_ignores_an_informational_auth_lifetime(caplog: pytest.LogCaptureFixture) -> None:
    p = pair({}, {"reauth_time": 100.0, "rand_time": 0.0, "over_time": 30.0})
    assert p.r is not None
    run_to(p, 10.0)
    with caplog.at_level(logging.DEBUG, logger="aioipsec.ike"):
        t = send_auth_lifetime(p, "i", struct.pack("!I", 20))
    assert t.response is not None and t.response.payloads == [], "still answered, empty"
    assert p.r.is_established and p.r.sa.reauth_at == INF, "the responder never reauthenticates"
    assert p.r.sa.reauth_by == pytest.approx(130.0) and p.r.sa.expire_at == pytest.approx(130.0), "unchanged"
    assert p.r.stats.auth_lifetime_ignored == 0, "not malformed"
    (rec,) = [r for r in caplog.records if "AUTH_LIFETIME in INFORMATIONAL" in r.getMessage()]
    assert rec.levelno == logging.DEBUG and "192.0.2.1" in rec.getMessage()
    assert "ignored" in rec.getMessage() and "not the original initiator" in rec.getMessage()
    run_to(p, 40.0)
    assert not p.events("r", ReauthRequired) and not p.r.is_closed


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x64", b"\x00\x00\x00\x64\x00", struct.pack("!I", 0)])
def test_a_malformed_informational_auth_lifetime_is_counted_and_dropped(caplog: pytest.LogCaptureFixture,
                                                                        data: bytes) -> None:
    p = pair({"reauth_time": 500.0, "rand_time": 0.0}, {})
    run_to(p, 10.0)
    with caplog.at_level(logging.WARNING, logger="aioipsec.ike"):
        t = send_auth_lifetime(p, "r", data)
    assert t.response is not None and t.response.payloads == [], "answered: the IKE SA carries on"
    assert p.i.is_established and p.i.stats.auth_lifetime_ignored == 1
    assert p.i.sa.reauth_at == pytest.approx(500.0) and p.i.sa.reauth_by == INF, "our own schedule only"
    (rec,) = [r for r in caplog.records if "AUTH_LIFETIME" in r.getMessage()]
    assert "192.0.2.2" in rec.getMessage() and "ignored" in rec.getMessage()


# --------------------------------------------------------------------------- endpoints


async def test_endpoints_reauthenticate_before_the_gateways_lifetime() -> None:
    """A gateway with ``reauth_time = 3s``, a client without one: the client
    reauthenticates at 2.7 s (new IKE SPIs at both ends, the old IKE SA
    deleted), and its status shows when."""
    from asyncwait import until

    from aioipsec.asyncio.endpoint import Endpoint
    from aioipsec.asyncio.sockets import MemoryNetwork
    from aioipsec.config import child, connection
    from aioipsec.events import ChildSaInstalled
    from aioipsec.status import endpoint_status

    net = MemoryNetwork()
    gw_cfg = connection("rw", psk="auth-lifetime-psk", local_id="gw.example", remote_id="%any",
                        local_addrs=["192.0.2.2"], dpd_delay=0, reauth_time=3, rand_time=0, over_time=5,
                        children=[child("net", local_ts=["203.0.113.0/24"], remote_ts=["192.0.2.10/32"])])
    cl_cfg = connection("home", psk="auth-lifetime-psk", local_id="alice.example", remote_id="gw.example",
                        local_addrs=["192.0.2.10"], remote_addrs=["192.0.2.2"], dpd_delay=0,
                        children=[child("net", local_ts=["192.0.2.10/32"], remote_ts=["203.0.113.0/24"])])
    gw = await Endpoint.create("192.0.2.2", configurations=[gw_cfg], network=net)
    cl = await Endpoint.create("192.0.2.10", configurations=[cl_cfg], network=net)
    events: dict[str, list[Any]] = {"gw": [], "cl": []}
    gw.event_listeners.append(lambda _p, ev: events["gw"].append(ev))
    cl.event_listeners.append(lambda _p, ev: events["cl"].append(ev))

    def of(side: str, kind: type) -> list[Any]:
        return [e for e in events[side] if isinstance(e, kind)]

    try:
        cl.initiate("home")
        await until(lambda: of("cl", ChildSaInstalled), what="the Child SA")
        (first,) = of("cl", IkeSaEstablished)
        (row,) = endpoint_status(cl)["ike_sas"]
        assert row["reauth_in"] in (2, 3) and row["expire_in"] == 10, row
        (grow,) = endpoint_status(gw)["ike_sas"]
        assert grow["reauth_in"] is None and grow["expire_in"] == 8, grow
        old = (first.spi_i, first.spi_r)
        await until(lambda: of("cl", ReauthRequired), timeout=5, what="the reauthentication")
        await until(lambda: any((e.spi_i, e.spi_r) == old for e in of("gw", IkeSaDeleted)), timeout=5,
                    what="the old IKE SA deleted at the gateway")
        new = [e for e in of("cl", IkeSaEstablished) if (e.spi_i, e.spi_r) != old]
        assert len(new) == 1 and new[0].rekeyed_from is None
        assert new[0].spi_i != old[0] and new[0].spi_r != old[1]
        await until(lambda: len(endpoint_status(gw)["ike_sas"]) == 1 == len(endpoint_status(cl)["ike_sas"]),
                    what="one IKE SA at each end")
        for ep in (cl, gw):
            (sa,) = endpoint_status(ep)["ike_sas"]
            assert (sa["spi_i"], sa["spi_r"]) == (new[0].spi_i.hex(), new[0].spi_r.hex())
            assert [c["child"] for c in sa["children"]] == ["net"]
        (ev,) = of("cl", ReauthRequired)
        assert (ev.spi_i, ev.spi_r) == old
    finally:
        await asyncio.wait_for(cl.close(timeout=1.0), 5)
        await asyncio.wait_for(gw.close(timeout=1.0), 5)
