"""Config loader: good files load into dataclasses; bad files fail at load with
the file, the key path and the reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aioipsec.config_file import load_config
from aioipsec.errors import ConfigError

GOOD = """
[connections.hq]
version = 2
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["aes128gcm16-prfsha256-x25519"]
dpd_delay = "30s"
rekey_time = "4h"
local  = { auth = "psk", id = "site-a.example" }
remote = { auth = "psk", id = "hq.example" }

[connections.hq.children.lan]
local_ts  = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["aes128gcm16-x25519"]
mode = "tunnel"
start_action = "trap"
rekey_time = "1h"
replay_window = 64

[secrets.hq]
id = ["site-a.example", "hq.example"]
secret = "correct horse battery staple"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_good_file_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    hq = cfg.connections["hq"]
    assert hq.version == 2
    assert hq.rekey_time == 4 * 3600
    assert hq.dpd_delay == 30
    assert hq.psk == b"correct horse battery staple"
    assert str(hq.proposals[0]) == "aes128gcm16-prfsha256-x25519"
    lan = hq.children["lan"]
    assert lan.start_action == "trap"
    assert lan.pfs
    assert str(lan.local_ts[0]) == "198.51.100.0/24"
    assert lan.rekey_time == 3600


BAD = [
    (
        GOOD.replace('mode = "tunnel"', 'mode = "tunel"'),
        'connections.hq.children.lan.mode: expected "tunnel" or "transport", got "tunel"',
    ),
    (GOOD.replace("remote_ts =", "remote_tss ="), 'connections.hq.children.lan.remote_tss: unknown key; did you mean "remote_ts"?'),
    (GOOD.replace("version = 2", "version = 3"), "connections.hq.version: expected 1 (IKEv1) or 2 (IKEv2), got 3"),
    (GOOD.replace('dpd_delay = "30s"', 'dpd_delay = "soon"'), 'connections.hq.dpd_delay: expected a duration like "30s", "4h", got "soon"'),
    (
        GOOD.replace('"aes128gcm16-prfsha256-x25519"', '"3des-md5-modp1024"'),
        "connections.hq.proposals[0]: in proposal '3des-md5-modp1024': algorithm '3des' refused: 3DES has a 64-bit block (RFC 8221/8247: SHOULD NOT); set legacy = true to allow it",
    ),
    (
        GOOD.replace('"aes128gcm16-x25519"', '"aes128gcm16-blowfish"'),
        "connections.hq.children.lan.esp_proposals[0]: in proposal 'aes128gcm16-blowfish': unknown algorithm 'blowfish'",
    ),
    (GOOD.replace('"198.51.100.0/24"', '"198.51.100.0/33"'), 'connections.hq.children.lan.local_ts[0]: invalid traffic selector "198.51.100.0/33"'),
    (GOOD.replace('remote_addrs = ["192.0.2.2"]', 'remote_addrs = ["hq"]'), 'connections.hq.remote_addrs[0]: expected an IP address, got "hq"'),
    (GOOD.replace("replay_window = 64", "replay_window = -1"), "connections.hq.children.lan.replay_window: expected an integer in 0..1048576, got -1"),
    (GOOD.replace('id = ["site-a.example", "hq.example"]', 'id = ["nobody"]'), 'connections.hq: uses auth = "psk" but no [secrets.*] entry matches its IDs or addresses'),
    (GOOD.replace('remote = { auth = "psk"', 'remote = { auth = "pubkey"'), "connections.hq.remote: auth = \"pubkey\" needs \"cacerts\""),
    (GOOD + "\n[bogus]\nx = 1\n", 'bogus: unknown key'),
    ("[connections.hq\n", "invalid TOML"),
    (GOOD.replace("aggressive", "x").replace("version = 2", "version = 2\naggressive = true"), "connections.hq.aggressive: Aggressive Mode exists only in IKEv1 (version = 1)"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_file_names_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value).startswith(f"{p}: ")
    assert message in str(info.value)


def test_legacy_opt_in_allows_weak_algorithms(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = GOOD.replace('"aes128gcm16-prfsha256-x25519"', '"3des-sha1-modp1024"').replace(
        "version = 2", "version = 1\nlegacy = true"
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.connections["hq"].proposals[0].encr[0].name == "3des"


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/aioipsec.toml")
