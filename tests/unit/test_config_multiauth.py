"""The loader's IKEv2 second authentication round (RFC 4739, swanctl
``local-2`` / ``remote-2``): EAP, a certificate or a PSK after a psk/pubkey
first round; bad keys and values, and incomplete certificate/PSK rounds,
are refused naming the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from test_config_file import _cert_and_key

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
        # a certificate round needs its trust anchors (remote) / its certificate and key (local), as round 1
        ('remote-2 = { auth = "pubkey" }', {}, 'c.toml: connections.c.remote-2: auth = "pubkey" needs "cacerts"'),
        ('local-2 = { auth = "pubkey", id = "alice" }', {}, 'c.toml: connections.c.local-2: auth = "pubkey" needs "certs" and "key"'),
        ('remote-2 = { auth = "pubkey", eap_id = "alice", cacerts = [] }', {}, "c.toml: connections.c.remote-2.eap_id: unknown key"),
        ('remote-2 = { auth = "eap" }', {},
         'c.toml: connections.c.remote-2.auth: expected "pubkey", "psk", "eap-md5", "eap-gtc", got "eap"'),
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


def test_certificate_round2_keys(tmp_path: Path) -> None:
    """local-2 / remote-2 with auth = "pubkey" take round 1's keys: the
    client's certs and key, the gateway's cacerts (and the top-level CRLs)."""
    cert, key = _cert_and_key(tmp_path, "alice")
    ca, _ = _cert_and_key(tmp_path, "users-ca")
    c = load(f'local-2 = {{ auth = "pubkey", id = "alice@example", certs = ["{cert}"], key = "{key}" }}').connections["c"]
    assert c.local2 is not None and c.local2.auth == "pubkey" and c.local2.id == "alice@example"
    assert c.local2.cert.subject.rfc4514_string() == "CN=alice" and c.local2.private_key is not None
    assert c.psk == b"psk-secret" and c.psk2 is None and c.remote2 is None
    c = load(f'remote-2 = {{ auth = "pubkey", id = "%any", cacerts = ["{ca}"], revocation = "strict" }}').connections["c"]
    assert c.remote2 is not None and c.remote2.auth == "pubkey" and c.remote2.revocation == "strict"
    assert [x.subject.rfc4514_string() for x in c.remote2.cacerts] == ["CN=users-ca"]
    _other, other_key = _cert_and_key(tmp_path, "bob")
    with pytest.raises(ConfigError) as info:  # the key must be the certificate's
        load(f'local-2 = {{ auth = "pubkey", certs = ["{cert}"], key = "{other_key}" }}')
    assert str(info.value).startswith("c.toml: connections.c.local-2.key: does not match"), str(info.value)


PSK2 = textwrap.dedent("""
    [secrets.ike-round2]
    id = ["alice@example"]
    secret = "round-2-secret"
""")


def test_psk_round2_secret_is_found_by_the_round2_ids() -> None:
    """auth = "psk" in round 2: its secret is the one whose ids match the
    round's identities (psk2), the first round's stays the best match of
    the first identities."""
    c = load('local-2 = { auth = "psk", id = "alice@example" }', users=USERS + PSK2).connections["c"]
    assert c.psk == b"psk-secret" and c.psk2 == b"round-2-secret"
    c = load('remote-2 = { auth = "psk", id = "alice@example" }', users=USERS + PSK2).connections["c"]
    assert c.psk2 == b"round-2-secret"


def test_psk_round2_without_a_secret_names_the_field(tmp_path: Path) -> None:
    """A certificate first round, a PSK second round whose identities no
    secret names: refused naming remote-2 (not the connection's PSK)."""
    cert, key = _cert_and_key(tmp_path, "gw")
    text = textwrap.dedent(f"""
        [connections.c]
        local = {{ auth = "pubkey", id = "site.example", certs = ["{cert}"], key = "{key}" }}
        remote = {{ auth = "pubkey", id = "%any", cacerts = ["{cert}"] }}
        remote-2 = {{ auth = "psk", id = "alice@example" }}

        [secrets.ike-other]
        id = ["other.example"]
        secret = "not-ours"
    """)
    with pytest.raises(ConfigError) as info:
        loads_config(text, file="c.toml")
    assert str(info.value).startswith(
        'c.toml: connections.c.remote-2: uses auth = "psk" but no [secrets.*] entry matches'), str(info.value)
    c = loads_config(text.replace("other.example", "alice@example"), file="c.toml").connections["c"]
    assert c.psk2 == b"not-ours" and c.psk is None and c.remote2.auth == "psk"
