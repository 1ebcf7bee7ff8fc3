"""RevocationCache on its own: the bound on holding a handshake for a
certificate whose status is being fetched (shared by IKEv2 IKE_AUTH and
IKEv1 Phase 1)."""

from __future__ import annotations

import logging

import pytest

from aioipsec.ike import auth


def _bound_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "still not fetched" in r.getMessage()]


def test_may_hold_within_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    cache = auth.RevocationCache()
    cache.hold_limit = 10.0
    with caplog.at_level(logging.INFO, logger="aioipsec.ike"):
        assert cache.may_hold(None, 500.0, peer="192.0.2.1", sa="x")  # not held yet
        assert cache.may_hold(100.0, 100.0, peer="192.0.2.1", sa="x")
        assert cache.may_hold(100.0, 109.9, peer="192.0.2.1", sa="x")
    assert _bound_lines(caplog) == []


def test_may_hold_past_the_limit_decides_by_policy_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    cache = auth.RevocationCache()
    assert cache.hold_limit == auth.HOLD_LIMIT
    cache.hold_limit = 10.0
    with caplog.at_level(logging.INFO, logger="aioipsec.ike"):
        assert not cache.may_hold(100.0, 110.0, peer="192.0.2.1", sa="(cookies 01/02)")  # the limit itself
        assert not cache.may_hold(100.0, 111.2, peer="192.0.2.7[gw]", sa="0a_i 0b_r")
    assert _bound_lines(caplog) == [
        "peer 192.0.2.1: certificate status still not fetched after 10 s; deciding by policy (cookies 01/02)",
        "peer 192.0.2.7[gw]: certificate status still not fetched after 11 s; deciding by policy 0a_i 0b_r",
    ]
