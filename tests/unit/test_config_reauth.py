"""The connection option ``reauth_time`` (swanctl's): a duration, 0 (the
default) = off; over_time defaults to 10 % of the longer of rekey_time and
reauth_time and rand_time to over_time (swanctl); IKEv1 renews Phase 1 at the
earlier of the two (charon: an IKEv1 rekey is a reauthentication); errors name
the key."""

from __future__ import annotations

import pytest

from aioipsec.config import ConnectionConfig
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


def test_default_is_off() -> None:
    c = load("")
    assert c.reauth_time == 0 == ConnectionConfig().reauth_time
    assert c.hard_lifetime == pytest.approx(14400 * 1.1) and c.jitter == pytest.approx(1440)


@pytest.mark.parametrize(("raw", "seconds"), [('"1h"', 3600.0), ('"90m"', 5400.0), ("30", 30.0), ('"0s"', 0.0)])
def test_durations(raw: str, seconds: float) -> None:
    assert load(f"reauth_time = {raw}").reauth_time == seconds


def test_over_time_and_rand_time_default_from_the_longer_of_the_two() -> None:
    c = load('reauth_time = "10h"\nrekey_time = "1h"')
    assert (c.rekey_time, c.reauth_time) == (3600, 36000)
    assert c.over == pytest.approx(3600) and c.jitter == pytest.approx(3600)
    c = load('reauth_time = "1h"\nrekey_time = "0s"\nover_time = "5m"\nrand_time = "1m"')
    assert (c.over, c.jitter) == (300, 60)


def test_ikev1_renews_phase1_at_the_earlier_of_the_two() -> None:
    c = load('reauth_time = "1h"', version=1)
    assert (c.rekey_time, c.reauth_time) == (3600, 0)
    c = load('reauth_time = "8h"\nrekey_time = "2h"', version=1)
    assert (c.rekey_time, c.reauth_time) == (7200, 0)
    c = load('reauth_time = "8h"\nrekey_time = 0', version=1)
    assert c.rekey_time == 28800


@pytest.mark.parametrize(("line", "message"), [
    ("reauth_time = -5", "gw.toml: connections.hq.reauth_time: duration must not be negative, got -5"),
    ('reauth_time = "soon"', 'gw.toml: connections.hq.reauth_time: expected a duration like "30s", "4h", got "soon"'),
    ("reauth_time = true", 'gw.toml: connections.hq.reauth_time: expected a duration like "30s", "4h", got true'),
    ('reauth_time = "1m"\nrand_time = "2m"', "gw.toml: connections.hq.rand_time: must be shorter than reauth_time (60s)"),
])
def test_errors_name_the_key(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(line)
    assert str(exc.value) == message
