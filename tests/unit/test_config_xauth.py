"""The loader's XAUTH names (swanctl): ``remote-2 = { auth = "xauth" }``,
``local-2 = { auth = "xauth", xauth_id = ... }`` and ``[secrets.xauth<suffix>]``."""

from __future__ import annotations

import textwrap

import pytest

from aioipsec.config_file import loads_config
from aioipsec.errors import ConfigError
from aioipsec.ike.v1.constants import Ike1Auth
from aioipsec.ike.v1.phase1 import base_method, proposal_method

GW = textwrap.dedent("""
    [pools.rw]
    addrs = "10.3.0.0/28"

    [connections.gw]
    version = 1
    proposals = ["aes128-sha256-modp2048"]
    pools = ["rw"]
    local = { auth = "psk", id = "gw.example" }
    remote = { auth = "psk" }
    {round2}

    [connections.gw.children.net]
    local_ts = ["10.2.0.0/16"]

    [secrets.ike-group]
    secret = "group-secret"
    {secrets}
""")
USERS = textwrap.dedent("""
    [secrets.xauth-alice]
    id = "alice"
    secret = "alice-pw"

    [secrets.xauth-bob]
    id = "bob"
    secret = "0x626f622d7077"
""")


def load(round2: str = 'remote-2 = { auth = "xauth" }', secrets: str = USERS):
    return loads_config(GW.replace("{round2}", round2).replace("{secrets}", secrets), file="gw.toml")


def test_gateway_with_xauth_users_and_pool() -> None:
    gw = load().connections["gw"]
    assert gw.xauth_server and not gw.xauth_client
    assert gw.xauth_secrets == {"alice": b"alice-pw", "bob": b"bob-pw"}
    assert gw.psk == b"group-secret"  # xauth secrets are no pre-shared keys
    assert gw.pools == ["rw"]
    assert proposal_method(gw) == Ike1Auth.XAUTH_INIT_PSK
    assert base_method(Ike1Auth.XAUTH_INIT_PSK) == Ike1Auth.PSK
    assert base_method(Ike1Auth.XAUTH_INIT_RSA) == Ike1Auth.RSA_SIG


def test_without_a_second_round_nothing_changes() -> None:
    gw = load(round2="").connections["gw"]
    assert not gw.xauth_server and gw.xauth_secrets == {}
    assert proposal_method(gw) == Ike1Auth.PSK


def test_client_round() -> None:
    text = GW.replace("{round2}", 'local-2 = { auth = "xauth", xauth_id = "alice" }').replace("{secrets}", USERS)
    c = loads_config(text, file="c.toml").connections["gw"]
    assert c.xauth_client and c.local2 is not None and c.local2.xauth_id == "alice"
    assert c.xauth_secrets["alice"] == b"alice-pw"


def test_xauth_client_asks_for_a_virtual_ip() -> None:
    # the daemon as a Cisco-style road warrior: XAUTH, then a Mode Config pull of its address
    text = GW.replace("{round2}", 'local-2 = { auth = "xauth", xauth_id = "alice" }\n'
                                  'remote_addrs = ["192.0.2.1"]\nvips = ["0.0.0.0"]').replace("{secrets}", USERS)
    c = loads_config(text, file="c.toml").connections["gw"]
    assert c.xauth_client and c.vips == ["0.0.0.0"] and c.remote_addrs == ["192.0.2.1"]


@pytest.mark.parametrize(
    ("round2", "secrets", "message"),
    [
        ('remote-2 = { auth = "xauth" }', "", 'gw.toml: connections.gw.remote-2: auth = "xauth" but no [secrets.xauth*]'),
        ('remote-2 = { auth = "eap" }', USERS, 'gw.toml: connections.gw.remote-2.auth: expected "xauth", got "eap"'),
        ('remote-2 = { auth = "xauth", xauth_id = "x" }', USERS, "gw.toml: connections.gw.remote-2.xauth_id: unknown key"),
        ('local-2 = { auth = "xauth", xauth_id = "carol" }', USERS,
         'gw.toml: connections.gw.local-2: no [secrets.xauth*] entry with id = "carol"'),
        ('remote-2 = { auth = "xauth" }', '[secrets.xauth-x]\nid = ["a", "b"]\nsecret = "s"\n',
         "gw.toml: secrets.xauth-x.id: an xauth secret needs exactly one id"),
    ],
)
def test_errors_name_the_field(round2: str, secrets: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(round2, secrets)
    assert str(info.value).startswith(message), str(info.value)


def test_second_round_is_ikev1_only() -> None:
    text = GW.replace("version = 1", "version = 2").replace("{round2}", 'remote-2 = { auth = "xauth" }')
    with pytest.raises(ConfigError) as info:
        loads_config(text.replace("{secrets}", USERS), file="gw.toml")
    assert str(info.value).startswith("gw.toml: connections.gw.remote-2: a second authentication round (XAUTH)")
