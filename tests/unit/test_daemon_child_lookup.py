"""The "no child named" lookup the daemon's operations share with the control
commands (``Daemon.require_child``): the daemon raises KeyError, the control
server its ControlError, both with the same text."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aioipsec.control import ControlError
from aioipsec.daemon import Daemon

CONF = """
[connections.hq]
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
local  = { auth = "psk", id = "a.example" }
remote = { auth = "psk", id = "hq.example" }

[connections.hq.children.lan]
local_ts  = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]

[secrets.hq]
id = ["a.example", "hq.example"]
secret = "a pre-shared key for the child lookup test"
"""


def make_daemon(tmp_path: Path) -> Daemon:
    p = tmp_path / "gw.toml"
    p.write_text(textwrap.dedent(CONF))
    return Daemon(str(p), tun=False)


async def test_daemon_down_of_an_unknown_child_is_a_key_error(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    with pytest.raises(KeyError) as info:
        await d.down("hq", "nochild", 1.0)  # refused before any IKE SA is looked for
    assert info.value.args == ("connection hq has no child named nochild",)


def test_require_child_raises_the_callers_type(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    d.require_child("hq", "lan")  # a known child: nothing raised
    d.require_child("hq", "lan", ControlError)
    with pytest.raises(ControlError, match="^connection hq has no child named nochild$"):
        d.require_child("hq", "nochild", ControlError)
