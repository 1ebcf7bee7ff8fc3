"""The connection option ``mobike`` (swanctl name; default on, like strongSwan)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aioipsec.config_file import load_config
from aioipsec.errors import ConfigError

BASE = """
[connections.hq]
remote_addrs = ["192.0.2.2"]
local  = { auth = "psk", id = "site-a.example" }
remote = { auth = "psk", id = "hq.example" }
%s
[secrets.hq]
id = ["site-a.example", "hq.example"]
secret = "correct horse battery staple"
"""


def _load(tmp_path: Path, extra: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "gw.toml"
    p.write_text(textwrap.dedent(BASE % extra))
    return load_config(p).connections["hq"]


def test_mobike_defaults_on_and_can_be_turned_off(tmp_path: Path) -> None:
    assert _load(tmp_path, "").mobike is True
    assert _load(tmp_path, "mobike = false\n").mobike is False
    assert _load(tmp_path, "mobike = true\n").mobike is True


def test_mobike_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='connections.hq.mobike: expected true or false, got "no"'):
        _load(tmp_path, 'mobike = "no"\n')
