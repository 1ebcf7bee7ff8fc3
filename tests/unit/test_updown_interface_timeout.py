"""updown: the outer interface behind PLUTO_INTERFACE (an rtnetlink address
dump, :func:`aioipsec.netutil.interface_of`), our PLUTO_TUN_INTERFACE and
PLUTO_XAUTH_ID in the environment, and the child's ``updown_timeout``
(checked at load, errors name the field)."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from aioipsec.config import child
from aioipsec.config_file import loads_config
from aioipsec.daemon import updown_envs
from aioipsec.errors import ConfigError
from aioipsec.events import ChildSaInstalled
from aioipsec.netutil import interface_of
from aioipsec.selectors import parse_ts


def test_interface_of_loopback_and_foreign_addresses() -> None:
    assert interface_of("127.0.0.1") == socket.if_indextoname(1)
    # routed to lo, but no interface holds it (charon's get_interface: unknown)
    assert interface_of("127.0.0.2") is None
    assert interface_of("203.0.113.254") is None  # TEST-NET-3: nobody's
    assert interface_of("2001:db8::dead:beef") is None
    assert interface_of("not an address") is None
    assert interface_of("") is None


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2 to compare with")
def test_interface_of_agrees_with_ip_addr() -> None:
    """Every address `ip -j addr` lists (secondary and IPv6 ones included)
    maps to the interface it lists it on."""
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    seen = 0
    for link in json.loads(out):
        for a in link.get("addr_info", []):
            local = a.get("local")
            if not local or "%" in local:
                continue
            assert interface_of(local) == link["ifname"], (local, link["ifname"])
            seen += 1
    assert seen >= 1  # at least the loopback address


def installed() -> ChildSaInstalled:
    return ChildSaInstalled(
        name="lan", protocol="esp", mode="tunnel", spi_in=0x1111, spi_out=0x2222, encr=None, integ=None,
        encr_key_in=b"K" * 20, encr_key_out=b"L" * 20, integ_key_in=b"", integ_key_out=b"", esn=False,
        local_ts=(parse_ts("198.51.100.0/24"),), remote_ts=(parse_ts("10.3.0.1/32"),),
        local_addr=("192.0.2.2", 4500), remote_addr=("192.0.2.1", 4500), encap=False, initiator=False,
    )


def env(**kw: object) -> dict[str, str]:
    args: dict = {"connection": "lan", "me": "192.0.2.2", "peer": "192.0.2.1", "peer_port": 500, "my_id": "gw",
                  "peer_id": "rw", "reqid": 1, "uniqueid": 1, "interface": "eth0", "path": "/bin"}
    args.update(kw)
    (e,) = updown_envs(True, installed(), **args)
    return e


def test_tun_interface_and_xauth_id_variables() -> None:
    e = env(tun_interface="aioipsec0", xauth_id="alice")
    assert (e["PLUTO_INTERFACE"], e["PLUTO_TUN_INTERFACE"], e["PLUTO_XAUTH_ID"]) == ("eth0", "aioipsec0", "alice")
    e = env()
    assert e["PLUTO_INTERFACE"] == "eth0"
    assert "PLUTO_TUN_INTERFACE" not in e and "PLUTO_XAUTH_ID" not in e


CONF = """
[connections.hq]
remote_addrs = ["192.0.2.2"]
local  = {{ auth = "psk", id = "a.example" }}
remote = {{ auth = "psk", id = "h.example" }}
[connections.hq.children.lan]
local_ts = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
updown = "up.sh"
{extra}
[secrets.hq]
secret = "a pre-shared key"
"""
FIELD = "connections.hq.children.lan.updown_timeout"


def load(tmp_path: Path, extra: str) -> object:
    up = tmp_path / "up.sh"
    up.write_text("#!/bin/sh\nexit 0\n")
    up.chmod(0o755)
    return loads_config(CONF.format(extra=extra), file="gw.toml", base=tmp_path)


@pytest.mark.parametrize(("value", "seconds"), [("2.5", 2.5), ("30", 30.0), ('"3s"', 3.0), ('"2m"', 120.0)])
def test_updown_timeout(tmp_path: Path, value: str, seconds: float) -> None:
    cfg = load(tmp_path, f"updown_timeout = {value}")
    assert cfg.connections["hq"].children["lan"].updown_timeout == seconds  # type: ignore[attr-defined]


def test_updown_timeout_default_is_the_daemons(tmp_path: Path) -> None:
    assert load(tmp_path, "").connections["hq"].children["lan"].updown_timeout is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0", "must be more than 0 seconds, got 0"),
        ('"0s"', 'must be more than 0 seconds, got "0s"'),
        ("-1", "duration must not be negative, got -1"),
        ("inf", "must be more than 0 seconds, got inf"),
        ("nan", "must be more than 0 seconds, got nan"),
        ('"soon"', 'expected a duration like "30s", "4h", got "soon"'),
        ("true", 'expected a duration like "30s", "4h", got true'),
    ],
)
def test_bad_updown_timeout_names_the_field(tmp_path: Path, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, f"updown_timeout = {value}")
    assert (exc.value.path, exc.value.reason) == (FIELD, reason)
    assert str(exc.value) == f"gw.toml: {FIELD}: {reason}"


def test_updown_timeout_in_code() -> None:
    assert child("lan", updown_timeout=4).updown_timeout == 4.0
    assert child("lan").updown_timeout is None
    for bad in (0, -2.0, math.inf, math.nan, True, "10s"):
        with pytest.raises(ConfigError) as exc:
            child("lan", updown_timeout=bad)
        assert exc.value.path == "children.lan.updown_timeout"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(0, "expected seconds > 0, got 0"), (-2.0, "expected seconds > 0, got -2.0"),
     (math.inf, "expected seconds > 0, got inf"), (True, "expected seconds > 0, got True"),
     ("10s", "expected seconds > 0, got '10s'")],
)
def test_updown_timeout_in_code_keeps_its_reason(bad: object, reason: str) -> None:
    # child() and the loader share config.check_updown_timeout; each keeps its wording
    with pytest.raises(ConfigError) as exc:
        child("lan", updown_timeout=bad)
    assert (exc.value.path, exc.value.reason, exc.value.file) == ("children.lan.updown_timeout", reason, None)
