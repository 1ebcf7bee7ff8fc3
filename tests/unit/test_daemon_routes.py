"""Routes the daemon installs for its remote selectors, range selectors
(``a..b``) included: the prefixes, and the ``ip`` commands it would run (the
``subprocess.run`` seam of ``Daemon._run_route``/``_remove_routes``)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aioipsec import daemon as daemon_mod
from aioipsec.config_file import load_config
from aioipsec.daemon import TRANSPORT_TABLE, Daemon, route_prefixes
from aioipsec.errors import ConfigError
from aioipsec.selectors import parse_ts

CONF = """
[connections.hq]
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
local  = {{ auth = "psk", id = "a.example" }}
remote = {{ auth = "psk", id = "hq.example" }}

[connections.hq.children.lan]
local_ts  = ["198.51.100.0/24"]
remote_ts = {tunnel_ts}
mode = "tunnel"

[connections.hq.children.host]
local_ts  = ["192.0.2.1"]
remote_ts = {transport_ts}
mode = "transport"

[secrets.hq]
id = ["a.example", "hq.example"]
secret = "a pre-shared key for the route test"
"""


@pytest.mark.parametrize(
    ("text", "prefixes"),
    [
        ("10.0.0.5..10.0.0.9", ["10.0.0.5/32", "10.0.0.6/31", "10.0.0.8/31"]),
        ("10.0.0.0..10.0.1.255", ["10.0.0.0/23"]),
        ("10.0.0.7..10.0.0.7", ["10.0.0.7/32"]),
        ("203.0.113.0/24[tcp/443]", ["203.0.113.0/24"]),
        ("203.0.113.9", ["203.0.113.9/32"]),
        ("2001:db8::ff..2001:db8::102", ["2001:db8::ff/128", "2001:db8::100/127", "2001:db8::102/128"]),
        ("2001:db8::/64", ["2001:db8::/64"]),
        ("0.0.0.1..255.255.255.254", None),
    ],
)
def test_route_prefixes_cover_the_range_exactly(text: str, prefixes: list[str] | None) -> None:
    import ipaddress

    ts = parse_ts(text)
    got = route_prefixes(ts)
    if prefixes is not None:
        assert got == prefixes
    # independent check: the prefixes are disjoint, in order and cover start..end exactly
    nets = [ipaddress.ip_network(p) for p in got]
    assert int(nets[0].network_address) == ts.start and int(nets[-1].broadcast_address) == ts.end
    for a, b in zip(nets, nets[1:]):
        assert int(a.broadcast_address) + 1 == int(b.network_address)
    # minimal: no two neighbours could merge into one prefix
    assert list(ipaddress.collapse_addresses(nets)) == nets


def test_range_selector_parsing_errors_name_the_key(tmp_path: Path) -> None:
    p = tmp_path / "gw.toml"
    p.write_text(textwrap.dedent(CONF.format(tunnel_ts='["10.0.0.9..10.0.0.1"]', transport_ts='["192.0.2.2"]')))
    with pytest.raises(ConfigError, match=r"connections\.hq\.children\.lan\.remote_ts\[0\]: invalid traffic selector"):
        load_config(p)
    p.write_text(textwrap.dedent(CONF.format(tunnel_ts='["10.0.0.1..2001:db8::1"]', transport_ts='["192.0.2.2"]')))
    with pytest.raises(ConfigError, match=r"remote_ts\[0\]"):
        load_config(p)


class Recorder:
    """Stands for ``subprocess.run``: records the command, succeeds."""

    def __init__(self) -> None:
        self.cmds: list[list[str]] = []

    def __call__(self, cmd: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        self.cmds.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0, "", "")


def make_daemon(tmp_path: Path, tunnel_ts: str, transport_ts: str) -> Daemon:
    p = tmp_path / "gw.toml"
    p.write_text(textwrap.dedent(CONF.format(tunnel_ts=tunnel_ts, transport_ts=transport_ts)))
    d = Daemon(str(p), tun=False)
    d.tun = SimpleNamespace(name="ipsec0")
    d.endpoint = SimpleNamespace(ike_socket=None, natt_socket=None, esp_socket=None)
    return d


def test_tunnel_range_routes_are_the_covering_prefixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(daemon_mod.subprocess, "run", rec)
    d = make_daemon(tmp_path, '["203.0.113.5..203.0.113.9", "2001:db8::ff..2001:db8::100", "203.0.113.6/31"]',
                    '["192.0.2.2"]')
    d._install_routes()
    assert rec.cmds == [
        ["ip", "route", "replace", "203.0.113.5/32", "dev", "ipsec0"],
        ["ip", "route", "replace", "203.0.113.6/31", "dev", "ipsec0"],
        ["ip", "route", "replace", "203.0.113.8/31", "dev", "ipsec0"],
        ["ip", "route", "replace", "2001:db8::ff/128", "dev", "ipsec0"],
        ["ip", "route", "replace", "2001:db8::100/128", "dev", "ipsec0"],
        # 203.0.113.6/31 is already routed by the range: not installed (and removed) twice
    ]
    rec.cmds.clear()
    d._remove_routes()
    assert rec.cmds == [
        ["ip", "route", "del", "203.0.113.5/32", "dev", "ipsec0"],
        ["ip", "route", "del", "203.0.113.6/31", "dev", "ipsec0"],
        ["ip", "route", "del", "203.0.113.8/31", "dev", "ipsec0"],
        ["ip", "route", "del", "2001:db8::ff/128", "dev", "ipsec0"],
        ["ip", "route", "del", "2001:db8::100/128", "dev", "ipsec0"],
    ]
    assert d.routes == []


def test_transport_range_routes_in_the_transport_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(daemon_mod.subprocess, "run", rec)
    d = make_daemon(tmp_path, '["203.0.113.0/24"]', '["192.0.2.2..192.0.2.3", "2001:db8:1::1..2001:db8:1::2"]')
    d._install_transport_policy()
    t = str(TRANSPORT_TABLE)
    rule = ["not", "fwmark", "0xa1", "lookup", t, "pref", t]
    assert rec.cmds == [
        ["ip", "-4", "rule", "add", *rule],
        ["ip", "-6", "rule", "add", *rule],
        ["ip", "-4", "route", "replace", "192.0.2.2/31", "dev", "ipsec0", "table", t],
        ["ip", "-6", "route", "replace", "2001:db8:1::1/128", "dev", "ipsec0", "table", t],
        ["ip", "-6", "route", "replace", "2001:db8:1::2/128", "dev", "ipsec0", "table", t],
    ]


def test_failed_route_command_is_logged_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def fail(cmd: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 2, "", "RTNETLINK answers: Operation not permitted")

    monkeypatch.setattr(daemon_mod.subprocess, "run", fail)
    d = make_daemon(tmp_path, '["203.0.113.5..203.0.113.6"]', '["192.0.2.2"]')
    d._install_routes()
    assert d.routes == []
    assert "ip route replace 203.0.113.5/32 dev ipsec0 failed: RTNETLINK answers" in caplog.text
