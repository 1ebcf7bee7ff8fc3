"""The child option ``updown`` (swanctl's): checked at load, errors name the
key; the PLUTO_* environments charon's updown plugin would give."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aioipsec.config import child
from aioipsec.config_file import loads_config
from aioipsec.daemon import updown_envs
from aioipsec.errors import ConfigError
from aioipsec.events import ChildSaInstalled
from aioipsec.selectors import parse_ts

CONF = """
[connections.hq]
remote_addrs = ["192.0.2.2"]
local  = {{ auth = "psk", id = "a.example" }}
remote = {{ auth = "psk", id = "h.example" }}
[connections.hq.children.lan]
local_ts = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
updown = {updown}
[secrets.hq]
secret = "a pre-shared key"
"""
FIELD = "connections.hq.children.lan.updown"


def script(path: Path, mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def load(tmp_path: Path, updown: str) -> object:
    return loads_config(CONF.format(updown=updown), file="gw.toml", base=tmp_path)


def test_executable_script_with_arguments_relative_to_the_file(tmp_path: Path) -> None:
    script(tmp_path / "up down.sh")
    cfg = load(tmp_path, '"\'up down.sh\' iptables --flag"')
    lan = cfg.connections["hq"].children["lan"]  # type: ignore[attr-defined]
    assert lan.updown == f"'{tmp_path}/up down.sh' iptables --flag"
    cfg = load(tmp_path, f'"{tmp_path}/up down.sh"'.replace(" ", "\\\\ "))
    assert cfg.connections["hq"].children["lan"].updown == f"'{tmp_path}/up down.sh'"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"missing.sh"', "file not found: {d}/missing.sh"),
        ('"plain.sh"', "not executable: {d}/plain.sh"),
        ('"sub"', "is a directory, not a script: {d}/sub"),
        ("42", "expected a string, got 42"),
        ('["x.sh"]', "expected a string, got a list"),
        ('""', "must not be empty"),
        ('"\'unterminated"', "cannot split the command line: No closing quotation"),
    ],
)
def test_errors_name_the_field_and_the_reason(tmp_path: Path, value: str, reason: str) -> None:
    script(tmp_path / "plain.sh", 0o644)
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, value)
    assert exc.value.path == FIELD
    assert exc.value.reason == reason.format(d=tmp_path)
    assert str(exc.value) == f"gw.toml: {FIELD}: {reason.format(d=tmp_path)}"


def test_not_executable_for_us(tmp_path: Path) -> None:
    # no x bit at all: not executable even for root (whose access() passes any file with one)
    p = script(tmp_path / "x.sh", stat.S_IRUSR)
    with pytest.raises(ConfigError, match="not executable"):
        load(tmp_path, f'"{p}"')


def test_in_code(tmp_path: Path) -> None:
    ok = script(tmp_path / "ok.sh")
    assert child("lan", updown=str(ok)).updown == str(ok)
    assert child("lan").updown is None
    with pytest.raises(ConfigError) as exc:
        child("lan", updown=str(tmp_path / "nope.sh"))
    assert (exc.value.path, exc.value.reason) == ("children.lan.updown", f"file not found: {tmp_path}/nope.sh")
    with pytest.raises(ConfigError) as exc:
        child("lan", updown=7)
    assert (exc.value.path, exc.value.reason) == ("children.lan.updown", "expected a string (a script path), got int")


def installed(local: list[str], remote: list[str], *, encap: bool = False) -> ChildSaInstalled:
    return ChildSaInstalled(
        name="lan", protocol="esp", mode="tunnel", spi_in=0x1111, spi_out=0x2222, encr=None, integ=None,
        encr_key_in=b"K" * 20, encr_key_out=b"L" * 20, integ_key_in=b"", integ_key_out=b"", esn=False,
        local_ts=tuple(parse_ts(t) for t in local), remote_ts=tuple(parse_ts(t) for t in remote),
        local_addr=("192.0.2.1", 4500), remote_addr=("192.0.2.2", 4500), encap=encap, initiator=True,
    )


def envs(ev: ChildSaInstalled, up: bool = True, me: str = "192.0.2.1", peer: str = "192.0.2.2", **kw: object) -> list[dict[str, str]]:
    args: dict = {"connection": "lan", "me": me, "peer": peer, "peer_port": 4500, "my_id": "a.example",
                  "peer_id": "h.example", "reqid": 3, "uniqueid": 9, "interface": "ipsec0", "path": "/usr/bin:/bin"}
    args.update(kw)
    return updown_envs(up, ev, **args)


def test_one_environment_per_selector_pair() -> None:
    ev = installed(["198.51.100.0/24", "198.51.101.0/24"], ["203.0.113.0/24"], encap=True)
    out = envs(ev, local_vips=("10.3.0.1", "fd00::1"), dns=("10.3.0.53",))
    assert [e["PLUTO_MY_CLIENT"] for e in out] == ["198.51.100.0/24", "198.51.101.0/24"]
    assert out[0] == {
        "PATH": "/usr/bin:/bin",
        "PLUTO_VERSION": "1.1",
        "PLUTO_VERB": "up-client",
        "PLUTO_CONNECTION": "lan",
        "PLUTO_INTERFACE": "ipsec0",
        "PLUTO_REQID": "3",
        "PLUTO_PROTO": "esp",
        "PLUTO_UNIQUEID": "9",
        "PLUTO_ME": "192.0.2.1",
        "PLUTO_MY_ID": "a.example",
        "PLUTO_MY_CLIENT": "198.51.100.0/24",
        "PLUTO_MY_PORT": "0",
        "PLUTO_MY_PROTOCOL": "0",
        "PLUTO_PEER": "192.0.2.2",
        "PLUTO_PEER_ID": "h.example",
        "PLUTO_PEER_CLIENT": "203.0.113.0/24",
        "PLUTO_PEER_PORT": "0",
        "PLUTO_PEER_PROTOCOL": "0",
        "PLUTO_MY_SOURCEIP": "10.3.0.1",
        "PLUTO_MY_SOURCEIP4_1": "10.3.0.1",
        "PLUTO_MY_SOURCEIP6_1": "fd00::1",
        "PLUTO_UDP_ENC": "4500",
        "PLUTO_DNS4_1": "10.3.0.53",
    }
    assert envs(ev, up=False)[1]["PLUTO_VERB"] == "down-client"


def test_verbs_host_and_v6_ports_ranges() -> None:
    # transport mode: the local selector is our own address -> -host
    assert envs(installed(["192.0.2.1"], ["192.0.2.2"]))[0]["PLUTO_VERB"] == "up-host"
    assert envs(installed(["2001:db8::1"], ["2001:db8::2"]), me="2001:db8::1", peer="2001:db8::2",
                up=False)[0]["PLUTO_VERB"] == "down-host-v6"
    # an IPv6 subnet through an IPv4 tunnel: the selector's family decides
    e = envs(installed(["2001:db8:1::/48"], ["2001:db8:2::/48"]))[0]
    assert (e["PLUTO_VERB"], e["PLUTO_MY_CLIENT"]) == ("up-client-v6", "2001:db8:1::/48")
    # a single other address is a client (/32), ports and protocols as charon
    e = envs(installed(["198.51.100.7[tcp/80]"], ["203.0.113.0/24[tcp]"]))[0]
    assert (e["PLUTO_VERB"], e["PLUTO_MY_CLIENT"], e["PLUTO_MY_PORT"], e["PLUTO_MY_PROTOCOL"], e["PLUTO_PEER_PORT"]) == (
        "up-client", "198.51.100.7/32", "80", "6", "0")
    # a range that is no single prefix has no *_CLIENT (charon's to_subnet fails)
    e = envs(installed(["10.0.0.5..10.0.0.9"], ["203.0.113.0/24"]))[0]
    assert "PLUTO_MY_CLIENT" not in e and e["PLUTO_PEER_CLIENT"] == "203.0.113.0/24"
