"""The IKEv2 session never reads the wall clock: certificate checks need one injected."""

from __future__ import annotations

import datetime

import pytest

from aioipsec.config import connection
from aioipsec.errors import LocalProtocolError
from aioipsec.ike.v2.session import IkeSessionV2

PEER = ("198.51.100.2", 500)


def test_certificate_auth_requires_wall_clock() -> None:
    cfg = connection("c", local_id="a.example", remote_id="b.example", remote_addrs=[PEER[0]])
    assert cfg.remote.auth == "pubkey"
    with pytest.raises(LocalProtocolError, match="wall_clock"):
        IkeSessionV2(configuration=cfg, is_initiator=True)
    with pytest.raises(LocalProtocolError, match="wall_clock"):
        IkeSessionV2.respond(configurations=[cfg], local_addr=("192.0.2.1", 500), remote_addr=PEER)
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    s = IkeSessionV2(configuration=cfg, is_initiator=True, wall_clock=lambda: now)
    assert s.wall_clock is not None and s.wall_clock() == now


def test_psk_needs_no_wall_clock() -> None:
    cfg = connection("c", psk="secret", local_id="a.example", remote_id="b.example", remote_addrs=[PEER[0]])
    assert IkeSessionV2(configuration=cfg, is_initiator=True).wall_clock is None
