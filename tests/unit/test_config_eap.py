"""The loader's EAP names (swanctl): client ``local = { auth = "eap-md5" |
"eap-gtc" | "eap", eap_id = ... }``, gateway ``remote = { auth = "eap-md5" |
"eap-gtc", eap_id = "%any" }``, ``[secrets.eap<suffix>]``; MD5 needs ``legacy``."""

from __future__ import annotations

import logging
import textwrap

import pytest

from aioipsec.config_file import loads_config
from aioipsec.errors import ConfigError

CLIENT = textwrap.dedent("""
    [connections.rw]
    remote_addrs = ["192.0.2.2"]
    {legacy}
    local = {{ auth = "{auth}", id = "client.example"{eap_id} }}
    remote = {{ auth = "psk", id = "gw.example" }}

    [secrets.ike-gw]
    id = ["gw.example"]
    secret = "psk-secret"

    [secrets.eap-alice]
    id = "alice"
    secret = "alice-pw"
""")

GATEWAY = textwrap.dedent("""
    [connections.gw]
    {legacy}
    local = {{ auth = "psk", id = "gw.example" }}
    remote = {{ auth = "{auth}"{eap_id} }}

    [secrets.ike-gw]
    id = ["gw.example"]
    secret = "psk-secret"
    {users}
""")
USERS = textwrap.dedent("""
    [secrets.eap-alice]
    id = "alice"
    secret = "alice-pw"

    [secrets.eap-bob]
    id = "bob"
    secret = "0x626f62"
""")


def client(auth: str, *, eap_id: str = ', eap_id = "alice"', legacy: bool = True):
    return loads_config(CLIENT.format(auth=auth, eap_id=eap_id, legacy="legacy = true" if legacy else ""))


def gateway(auth: str, *, eap_id: str = "", legacy: bool = True, users: str = USERS):
    return loads_config(GATEWAY.format(auth=auth, eap_id=eap_id, legacy="legacy = true" if legacy else "",
                                       users=users))


def test_client_eap_md5_and_gtc(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aioipsec.cfg")
    c = client("eap-md5").connections["rw"]
    assert c.local.auth == "eap-md5" and c.local.eap_id == "alice"
    assert c.eap_secrets == {"alice": b"alice-pw"}
    assert c.psk == b"psk-secret"  # the eap secret is not a PSK candidate
    assert any("EAP-MD5 is weak" in r.getMessage() and "connections.rw.local.auth" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    g = client("eap-gtc", legacy=False).connections["rw"]
    assert g.local.auth == "eap-gtc" and not caplog.records
    assert client("eap", legacy=False).connections["rw"].local.auth == "eap"


def test_gateway_eap() -> None:
    c = gateway("eap-md5", eap_id=', eap_id = "%any"').connections["gw"]
    assert c.remote.auth == "eap-md5" and c.remote.eap_id is None
    assert c.eap_secrets == {"alice": b"alice-pw", "bob": b"bob"}
    c = gateway("eap-gtc", eap_id=', eap_id = "bob"', legacy=False).connections["gw"]
    assert c.remote.eap_id == "bob"


@pytest.mark.parametrize(
    "make,where,why",
    [
        (lambda: client("eap-md5", legacy=False), "connections.rw.local.auth", "legacy = true"),
        (lambda: gateway("eap-md5", legacy=False), "connections.gw.remote.auth", "legacy = true"),
        (lambda: client("eap-md5", eap_id=', eap_id = "carol"'), "connections.rw.local.eap_id", '"carol"'),
        (lambda: client("eap-gtc", eap_id=""), "connections.rw.local.eap_id", "client.example"),
        (lambda: client("eap-gtc", eap_id=', eap_id = "%any"'), "connections.rw.local.eap_id", "%any"),
        (lambda: client("eap-gtc", eap_id=', eap_id = " "'), "connections.rw.local.eap_id", "empty"),
        (lambda: gateway("eap-gtc", users=""), "connections.gw.remote.auth", "no [secrets.eap*]"),
        (lambda: gateway("eap-gtc", eap_id=', eap_id = "zed"'), "connections.gw.remote.eap_id", '"zed"'),
        (lambda: gateway("eap"), "connections.gw.remote.auth", "expected"),
        (lambda: client("eap-mschapv2"), "connections.rw.local.auth", "needs MD4"),
        (lambda: gateway("psk", eap_id=', eap_id = "bob"'), "connections.gw.remote.eap_id", "applies only"),
    ],
)
def test_errors_name_the_field(make, where: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert where in str(info.value) and why in str(info.value)


def test_eap_needs_ikev2() -> None:
    text = CLIENT.format(auth="eap-gtc", eap_id=', eap_id = "alice"', legacy="version = 1")
    with pytest.raises(ConfigError, match=r"connections\.rw\.local\.auth.*IKEv2 only"):
        loads_config(text)


def test_eap_secret_needs_one_id() -> None:
    text = CLIENT.format(auth="eap-gtc", eap_id=', eap_id = "alice"', legacy="").replace(
        'id = "alice"', 'id = ["alice", "al"]')
    with pytest.raises(ConfigError, match=r"secrets\.eap-alice\.id.*exactly one id"):
        loads_config(text)
