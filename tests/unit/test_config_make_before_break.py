"""``[daemon] make_before_break`` (strongswan.conf's ``charon.make_before_break``):
default true (charon >= 6.0), false selects break-before-make reauthentication;
it lands in ``global_config`` (what the endpoint reads, and a reload replaces);
a wrong value or a misspelt key is an error naming the field."""

from __future__ import annotations

import pytest

from aioipsec.config import GlobalConfig
from aioipsec.config_file import loads_config
from aioipsec.errors import ConfigError

CONF = """
{daemon}
[connections.hq]
remote_addrs = ["192.0.2.2"]
reauth_time = "1h"
local  = {{ auth = "psk", id = "a.example" }}
remote = {{ auth = "psk", id = "h.example" }}
[secrets.hq]
secret = "a pre-shared key"
"""


def test_default_is_make_before_break() -> None:
    assert loads_config(CONF.format(daemon="")).global_config.make_before_break is True
    assert loads_config(CONF.format(daemon="[daemon]\nport = 500")).global_config.make_before_break is True
    assert GlobalConfig().make_before_break is True


@pytest.mark.parametrize("value", [False, True])
def test_set(value: bool) -> None:
    cfg = loads_config(CONF.format(daemon=f"[daemon]\nmake_before_break = {str(value).lower()}"))
    assert cfg.global_config.make_before_break is value


@pytest.mark.parametrize("raw", ['"no"', "0", '"false"'])
def test_not_a_boolean(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        loads_config(CONF.format(daemon=f"[daemon]\nmake_before_break = {raw}"), file="gw.toml")
    assert err.value.path == "daemon.make_before_break"
    assert "expected true or false" in str(err.value) and "gw.toml" in str(err.value)


def test_misspelt() -> None:
    with pytest.raises(ConfigError) as err:
        loads_config(CONF.format(daemon="[daemon]\nmake_before_brake = false"))
    assert err.value.path == "daemon.make_before_brake"
    assert 'did you mean "make_before_break"' in str(err.value)
