"""The connection option ``keyingtries`` (swanctl's): default 1, 0 = until
established, anything else is a count; errors name the key."""

from __future__ import annotations

import pytest

from aioipsec.config import ConnectionConfig, connection
from aioipsec.config_file import loads_config
from aioipsec.errors import ConfigError

CONF = """
[connections.hq]
version = {version}
remote_addrs = ["192.0.2.2"]
{line}
local  = {{ auth = "psk", id = "a.example" }}
remote = {{ auth = "psk", id = "h.example" }}
[secrets.hq]
secret = "a pre-shared key"
"""


def load(line: str, version: int = 2) -> ConnectionConfig:
    return loads_config(CONF.format(line=line, version=version), file="gw.toml").connections["hq"]


def test_default_is_one_attempt() -> None:
    assert load("").keyingtries == 1
    assert ConnectionConfig().keyingtries == 1
    assert connection("x", psk="k", keyingtries=0).keyingtries == 0


@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("value", [0, 1, 5, 4294967295])
def test_values(value: int, version: int) -> None:
    assert load(f"keyingtries = {value}", version).keyingtries == value


@pytest.mark.parametrize(("raw", "reason"), [
    ("-1", "expected an integer in 0..4294967295, got -1"),
    ('"%forever"', 'expected an integer, got "%forever"'),
    ("true", "expected an integer, got true"),
    ("2.5", "expected an integer, got 2.5"),
])
def test_errors_name_the_key(raw: str, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(f"keyingtries = {raw}")
    assert str(exc.value) == f"gw.toml: connections.hq.keyingtries: {reason}"


def test_misspelt_key_suggests_keyingtries() -> None:
    with pytest.raises(ConfigError, match='connections.hq.keyingtrie: unknown key; did you mean "keyingtries"'):
        load("keyingtrie = 3")
