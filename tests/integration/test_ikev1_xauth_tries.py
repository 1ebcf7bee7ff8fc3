"""IKEv1 XAUTH as road warriors meet it: a wrong password gets another
XAUTH REQUEST (a new message ID, no SET in between) up to ``remote-2``
``xauth_tries`` (default 3) tries in all; the last failure sends
XAUTH_STATUS 0, ``AuthFailed`` names the peer, the user and the tries, and
the SA is deleted.  Our client answers each REQUEST with its configured
password (as charon), which the gateway's limit bounds.  The XAUTH user of
an established SA is in ``IkeSaEstablished`` (``local_xauth_id`` /
``remote_xauth_id``) and in ``status`` (JSON, and swanctl's ``XAuth: 'alice'``)."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from typing import Any

import pytest
from asyncwait import until
from ikev1_pair import ADDR_I, Pair
from test_ikev1_xauth import configs, make_pair, open_transactions

from aioipsec.asyncio.endpoint import Endpoint
from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.config import AuthConfig, PoolConfig, child, connection
from aioipsec.config_file import ConfigError, loads_config
from aioipsec.events import AuthFailed, ChildSaInstalled, IkeSaDeleted, IkeSaEstablished
from aioipsec.ike.v1.constants import CfgAttr, CfgType, ExchangeType
from aioipsec.ike.v1.payloads import CfgAttribute
from aioipsec.status import endpoint_status, format_status
from aioipsec.transports.memory import memory_pipe


class Answers(dict):
    """The client's xauth secrets, answering ``get`` from a script of
    passwords (the last one repeated): a user who mistypes first."""

    def __init__(self, user: str, passwords: list[bytes]) -> None:
        super().__init__({user: passwords[-1]})
        self.script = list(passwords)
        self.asked = 0

    def get(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            return default
        self.asked += 1
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def scripted_pair(passwords: list[bytes], tries: int | None = None) -> tuple[Pair, Answers]:
    p, _pools = make_pair()
    answers = Answers("alice", passwords)
    p.i.cfg.xauth_secrets = answers  # the session reads the password at each REQUEST
    if tries is not None:
        p.r.cfg.remote2.xauth_tries = tries
    return p, answers


def kinds(p: Pair) -> list[tuple[str, int]]:
    return [(who, a.cfg_type) for who, a in open_transactions(p)]


def mids(p: Pair, sender: str) -> list[int]:
    out: list[int] = []
    for d in p.wire:
        mid = int.from_bytes(d.data[20:24], "big")
        if d.exchange == ExchangeType.TRANSACTION and d.sender == sender and mid not in out:
            out.append(mid)
    return out


REQ, REP, SET, ACK = CfgType.REQUEST, CfgType.REPLY, CfgType.SET, CfgType.ACK


def test_wrong_then_right_password_within_the_tries_is_established(caplog: pytest.LogCaptureFixture) -> None:
    p, answers = scripted_pair([b"typo-1", b"typo-2", b"alice-pw"])
    with caplog.at_level(logging.INFO, logger="aioipsec.ike"):
        p.start()
    # three REQUESTs, each answered, no SET until the good REPLY; then Mode Config
    assert kinds(p) == [("r", REQ), ("i", REP), ("r", REQ), ("i", REP), ("r", REQ), ("i", REP),
                        ("r", SET), ("i", ACK), ("i", REQ), ("r", REP)]
    msgs = open_transactions(p)
    assert [a.get(CfgAttr.XAUTH_USER_PASSWORD).value for who, a in msgs if who == "i" and a.cfg_type == REP] == [
        b"typo-1", b"typo-2", b"alice-pw"]
    assert msgs[6][1].get(CfgAttr.XAUTH_STATUS) == CfgAttribute.basic(CfgAttr.XAUTH_STATUS, 1)
    # every try is its own exchange: a new message ID and a new identifier
    gw_mids = mids(p, "r")
    assert len(gw_mids) == 5 and len(set(gw_mids)) == 5  # 3 REQUESTs, SET, Mode Config REPLY
    assert len({a.identifier for who, a in msgs[:6:2]}) == 3
    assert answers.asked == 3
    assert not p.of("r", AuthFailed) and not p.of("i", AuthFailed)
    assert p.of("i", ChildSaInstalled) and p.of("r", ChildSaInstalled)
    # every IkeSaEstablished (the gateway's again once the virtual IP is leased) names the user
    assert [(e.remote_xauth_id, e.local_xauth_id) for e in p.of("r", IkeSaEstablished)] == [("alice", None)] * 2
    assert [(e.local_xauth_id, e.remote_xauth_id) for e in p.of("i", IkeSaEstablished)] == [("alice", None)]
    logged = caplog.text
    peer = "192.0.2.1[rw.example]"
    assert f"XAUTH try 1/3 of user 'alice' from {peer} failed: wrong password for XAUTH user 'alice'" in logged
    assert f"XAUTH try 2/3 of user 'alice' from {peer} failed" in logged
    assert "try 3/3" not in logged
    assert "asks again (request 2)" in logged and "asks again (request 3)" in logged
    assert "typo-1" not in logged and "typo-2" not in logged and "alice-pw" not in logged


def test_n_wrong_passwords_fail_naming_the_user_and_the_tries(caplog: pytest.LogCaptureFixture) -> None:
    p, answers = scripted_pair([b"guess-123"])
    with caplog.at_level(logging.INFO, logger="aioipsec.ike"):
        p.start()
        p.advance(p.now + 200)
    # bounded: three tries, then the SET with status 0, and nothing more
    assert kinds(p) == [("r", REQ), ("i", REP)] * 3 + [("r", SET), ("i", ACK)]
    assert open_transactions(p)[6][1].get(CfgAttr.XAUTH_STATUS) == CfgAttribute.basic(CfgAttr.XAUTH_STATUS, 0)
    assert answers.asked == 3
    [fail] = p.of("r", AuthFailed)
    assert fail.step == "XAUTH" and ADDR_I[0] in fail.peer and "rw.example" in fail.peer
    assert fail.reason == "user 'alice': wrong password for XAUTH user 'alice' (try 3/3, no tries left)"
    [cfail] = p.of("i", AuthFailed)
    assert cfail.reason == "user 'alice': gateway answered XAUTH_STATUS 0 after 3 XAUTH requests"
    assert [e.reason for e in p.of("r", IkeSaDeleted)] == ["XAUTH failed"]
    assert p.r.is_closed and p.i.is_closed
    assert not p.of("r", IkeSaEstablished) and not p.of("i", IkeSaEstablished)
    logged = caplog.text
    for n in (1, 2):
        assert f"XAUTH try {n}/3 of user 'alice' from 192.0.2.1[rw.example] failed" in logged
    assert "XAUTH authentication failed with 192.0.2.1[rw.example]: user 'alice': wrong password" in logged
    assert "(try 3/3, no tries left)" in logged
    assert "guess-123" not in logged


def test_the_number_of_tries_is_the_gateways_xauth_tries() -> None:
    # one try: charon's gateway, status 0 right after the first wrong REPLY
    p, answers = scripted_pair([b"guess-123"], tries=1)
    p.start()
    assert kinds(p) == [("r", REQ), ("i", REP), ("r", SET), ("i", ACK)]
    assert p.of("r", AuthFailed)[0].reason.endswith("(try 1/1, no tries left)")
    assert p.of("i", AuthFailed)[0].reason == "user 'alice': gateway answered XAUTH_STATUS 0"
    # five tries: four wrong and the fifth right still gets in
    p, answers = scripted_pair([b"a", b"b", b"c", b"d", b"alice-pw"], tries=5)
    p.start()
    assert kinds(p)[:11] == [("r", REQ), ("i", REP)] * 5 + [("r", SET)]
    assert answers.asked == 5 and p.of("i", ChildSaInstalled)
    # an unknown user is a failed try as well
    ci, cr = configs()
    cr.xauth_secrets = {"bob": b"bob-pw"}
    cr.remote2.xauth_tries = 2
    p = Pair(ci, cr)
    p.start()
    [fail] = p.of("r", AuthFailed)
    assert fail.reason == "user 'alice': unknown XAUTH user 'alice' (try 2/2, no tries left)"


def test_a_lost_reply_is_retransmitted_not_counted_as_a_try() -> None:
    """The gateway's REQUEST retransmission gets the client's cached REPLY;
    only answers that were checked count as tries."""
    p, answers = scripted_pair([b"typo-1", b"alice-pw"], tries=2)
    lost: list[Any] = []
    p.drop = lambda d: d.sender == "i" and d.exchange == ExchangeType.TRANSACTION and not lost and not lost.append(d)
    p.start()
    p.drop = lambda d: False
    p.advance(p.now + 30)
    assert lost and answers.asked == 2
    assert p.of("i", ChildSaInstalled) and not p.of("r", AuthFailed)


def test_status_shows_the_xauth_user_on_both_ends() -> None:
    async def run() -> None:
        net = MemoryNetwork()
        gw_in, _ = memory_pipe(queue_size=1024)
        rw_in, _ = memory_pipe(queue_size=1024)
        gw_conf = connection("gw", version=1, psk="group-secret", local_id="gw.example", local_addrs=["192.0.2.2"],
                             remote_addrs=["%any"], pools=["rw"], remote2=AuthConfig(auth="xauth"), dpd_delay=0,
                             xauth_secrets={"alice": b"alice-pw"}, children=[child("net", local_ts=["10.2.0.0/16"])])
        rw_conf = connection("rw", version=1, psk="group-secret", local_id="rw.example", remote_id="gw.example",
                             local_addrs=["192.0.2.10"], remote_addrs=["192.0.2.2"], vips=["0.0.0.0"], dpd_delay=0,
                             local2=AuthConfig(auth="xauth", xauth_id="alice"), xauth_secrets={"alice": b"alice-pw"},
                             children=[child("net", remote_ts=["10.2.0.0/16"])])
        gw = await Endpoint.create("192.0.2.2", configurations=[gw_conf], network=net, inner=gw_in,
                                   pools=[PoolConfig("rw", "10.3.0.0/28")])
        rw = await Endpoint.create("192.0.2.10", configurations=[rw_conf], network=net, inner=rw_in)
        try:
            rw.initiate("rw", "net")
            await until(lambda: rw.dataplane.outbound and gw.dataplane.outbound, what="the IPsec SAs")
            (grow,) = endpoint_status(gw)["ike_sas"]
            (crow,) = endpoint_status(rw)["ike_sas"]
            assert (grow["version"], grow["remote_id"], grow["remote_xauth_id"], grow["local_xauth_id"]) == (
                1, "rw.example", "alice", None)
            assert (crow["local_id"], crow["local_xauth_id"], crow["remote_xauth_id"]) == ("rw.example", "alice", None)
            assert grow["local_eap_id"] is grow["remote_eap_id"] is None
            gtext, ctext = format_status(endpoint_status(gw)), format_status(endpoint_status(rw))
            assert "remote 'rw.example' @ 192.0.2.10[500] XAuth: 'alice' [10.3.0.1]" in gtext, gtext
            assert "local  'rw.example' @ 192.0.2.10[500] XAuth: 'alice' [10.3.0.1]" in ctext, ctext
            assert "XAuth" not in gtext.split("remote '")[0]  # the gateway's own line: no XAUTH user
            for st in (endpoint_status(gw), endpoint_status(rw)):
                assert "alice-pw" not in repr(st)
        finally:
            for ep in (rw, gw):
                await asyncio.wait_for(ep.close(timeout=1.0), 5)

    asyncio.run(run())


def test_without_xauth_there_is_no_xauth_user() -> None:
    from ikev1_pair import psk_configs

    p = Pair(*psk_configs())
    p.start()
    for side in ("i", "r"):
        (ev,) = p.of(side, IkeSaEstablished)
        assert ev.local_xauth_id is None and ev.remote_xauth_id is None


GW_TOML = textwrap.dedent("""
    [connections.gw]
    version = 1
    pools = ["rw"]
    local = { auth = "psk", id = "gw.example" }
    remote = { auth = "psk" }
    {round2}
    [connections.gw.children.net]
    local_ts = ["10.2.0.0/16"]

    [pools.rw]
    addrs = "10.3.0.0/28"

    [secrets.ike-group]
    secret = "group-secret"

    [secrets.xauth-alice]
    id = "alice"
    secret = "alice-pw"
""")


def test_config_file_xauth_tries() -> None:
    def load(round2: str) -> Any:
        return loads_config(GW_TOML.replace("{round2}", round2), file="gw.toml").connections["gw"]

    assert load('remote-2 = { auth = "xauth" }').remote2.xauth_tries == 3
    assert load('remote-2 = { auth = "xauth", xauth_tries = 1 }').remote2.xauth_tries == 1
    for bad, msg in (
        ('remote-2 = { auth = "xauth", xauth_tries = 0 }', "remote-2.xauth_tries: expected an integer in 1..10, got 0"),
        ('remote-2 = { auth = "xauth", xauth_tries = "3" }', "remote-2.xauth_tries: expected an integer"),
        ('local-2 = { auth = "xauth", xauth_id = "alice", xauth_tries = 2 }', "local-2.xauth_tries: unknown key"),
    ):
        with pytest.raises(ConfigError) as info:
            load(bad)
        assert msg in str(info.value), str(info.value)
