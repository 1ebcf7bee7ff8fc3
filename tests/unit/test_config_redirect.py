"""The connection options ``follow_redirects`` (charon's, default on) and
``redirect_init`` (a gateway redirecting in IKE_SA_INIT), RFC 5685; and the
redirect data codec."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aioipsec.config_file import load_config
from aioipsec.errors import ConfigError
from aioipsec.ike.v2.tasks.ike_redirect import (
    InvalidRedirect,
    parse_redirect,
    redirect_data,
)

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


def test_follow_redirects_defaults_on(tmp_path: Path) -> None:
    assert _load(tmp_path, "").follow_redirects is True
    assert _load(tmp_path, "follow_redirects = false\n").follow_redirects is False
    with pytest.raises(ConfigError, match="connections.hq.follow_redirects: expected true or false"):
        _load(tmp_path, 'follow_redirects = "no"\n')


def test_redirect_init_is_an_address(tmp_path: Path) -> None:
    assert _load(tmp_path, "").redirect_init == ""
    assert _load(tmp_path, 'redirect_init = "2001:db8::3"\n').redirect_init == "2001:db8::3"
    with pytest.raises(ConfigError, match='connections.hq.redirect_init: expected an IP address, got "gw2"'):
        _load(tmp_path, 'redirect_init = "gw2"\n')


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("127.0.0.1", "a loopback address"),
        ("224.0.0.5", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("255.255.255.255", "the broadcast address"),
        ("192.0.2.1", "our own address"),
    ],
)
def test_redirect_init_is_an_address_a_gateway_can_have(tmp_path: Path, target: str, why: str) -> None:
    """A gateway redirecting in IKE_SA_INIT to an address no gateway can have
    (the client refuses it) is a configuration error naming the field."""
    extra = f'local_addrs = ["192.0.2.1"]\nredirect_init = "{target}"\n'
    with pytest.raises(ConfigError, match=f'connections.hq.redirect_init: "{target}" cannot be a gateway to '
                                          f"redirect to: the target is {why}"):
        _load(tmp_path, extra)
    assert _load(tmp_path, 'local_addrs = ["192.0.2.1"]\nredirect_init = "192.0.2.3"\n').redirect_init == "192.0.2.3"


def test_redirect_data_round_trip() -> None:
    assert redirect_data("192.0.2.3") == bytes((1, 4, 192, 0, 2, 3))
    assert parse_redirect(redirect_data("192.0.2.3", b"N" * 16)) == (1, "192.0.2.3", b"N" * 16)
    assert parse_redirect(redirect_data("2001:db8::3"))[:2] == (2, "2001:db8::3")
    assert parse_redirect(redirect_data("gw2.example")) == (3, "gw2.example", b"")
    with pytest.raises(ValueError, match="neither an IP address nor a host name"):
        redirect_data("gw 2")
    with pytest.raises(InvalidRedirect, match="IPv4 GW identity of 3 bytes"):
        parse_redirect(bytes((1, 3, 1, 2, 3)))
