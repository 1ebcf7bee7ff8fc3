"""The loader's IKEv2 second authentication round (RFC 4739, swanctl
``local-2`` / ``remote-2``): EAP after a psk/pubkey first round; bad keys
and values are refused naming the field."""

from __future__ import annotations

import textwrap

import pytest

from aioipsec.config_file import loads_config
from aioipsec.errors import ConfigError

CONF = textwrap.dedent("""
    [connections.c]
    legacy = true
    local = {{ auth = "psk", id = "site.example" }}
    remote = {{ auth = "{remote}", id = "%any" }}
    {round2}

    [secrets.ike-psk]
    secret = "psk-secret"
    {users}
""")
USERS = textwrap.dedent("""
    [secrets.eap-alice]
    id = "alice"
    secret = "alice-pw"
""")


def load(round2: str, *, remote: str = "psk", users: str = USERS):
    return loads_config(CONF.format(round2=round2, remote=remote, users=users), file="c.toml")


def test_gateway_round2() -> None:
    c = load('remote-2 = { auth = "eap-md5", eap_id = "%any" }').connections["c"]
    assert c.remote2 is not None and c.remote2.auth == "eap-md5" and c.remote2.eap_id is None
    assert c.eap_secrets == {"alice": b"alice-pw"} and c.psk == b"psk-secret"
    assert not c.xauth_server and c.local2 is None


def test_client_round2() -> None:
    c = load('local-2 = { auth = "eap-gtc", id = "alice" }').connections["c"]
    assert c.local2 is not None and c.local2.auth == "eap-gtc" and c.local2.id == "alice"
    assert c.eap_secrets == {"alice": b"alice-pw"} and not c.xauth_client and c.remote2 is None


@pytest.mark.parametrize(
    "round2,kw,message",
    [
        ('remote-2 = { auth = "eap-md5", xauth_tries = 2 }', {}, "c.toml: connections.c.remote-2.xauth_tries: unknown key"),
        ('local-2 = { auth = "eap-md5", secret = "x" }', {}, "c.toml: connections.c.local-2.secret: unknown key"),
        ('remote-2 = { auth = "pubkey" }', {}, 'c.toml: connections.c.remote-2.auth: a second round with "pubkey" is not'),
        ('remote-2 = { auth = "eap" }', {}, 'c.toml: connections.c.remote-2.auth: expected "eap-md5" or "eap-gtc", got "eap"'),
        ('local-2 = { auth = "eap-tls" }', {}, "c.toml: connections.c.local-2.auth: expected "),
        ('remote-2 = { auth = "eap-gtc" }', {"remote": "eap-gtc"},
         "c.toml: connections.c.remote-2.auth: a second round after an EAP first round"),
        ('remote-2 = { auth = "eap-gtc" }', {"users": ""}, "c.toml: connections.c.remote-2.auth: auth = \"eap-gtc\" but no [secrets.eap*]"),
        ('remote-2 = { auth = "eap-gtc", eap_id = "bob" }', {}, 'c.toml: connections.c.remote-2.eap_id: no [secrets.eap*] entry with id = "bob"'),
        ('local-2 = { auth = "eap-gtc", id = "carol" }', {}, 'c.toml: connections.c.local-2.eap_id: no [secrets.eap*] entry with id = "carol"'),
        ('local-2 = { auth = "eap-gtc", eap_id = "%any" }', {}, "c.toml: connections.c.local-2.eap_id: our own identity cannot be %any"),
        ('remote-2 = { auth = "eap-gtc", id = " " }', {}, "c.toml: connections.c.remote-2.id: must not be empty"),
        ('remote-2 = { auth = "xauth" }', {}, "c.toml: connections.c.remote-2: a second authentication round (XAUTH)"),
        ('remote-2 = "eap-md5"', {}, "c.toml: connections.c.remote-2: expected a table"),
    ],
)
def test_bad_round2_names_the_field(round2: str, kw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(round2, **kw)
    assert str(info.value).startswith(message), str(info.value)


def test_round2_md5_needs_legacy() -> None:
    text = CONF.format(round2='remote-2 = { auth = "eap-md5" }', remote="psk", users=USERS)
    with pytest.raises(ConfigError) as info:
        loads_config(text.replace("legacy = true\n", ""), file="c.toml")
    assert str(info.value).startswith("c.toml: connections.c.remote-2.auth: EAP-MD5 is weak"), str(info.value)
