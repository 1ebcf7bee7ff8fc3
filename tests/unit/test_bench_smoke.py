"""The benchmarks still run and print what they promise (tiny budgets; the
figures themselves are not checked here: see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(script: str, *args: str, timeout: float = 60) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    return json.loads(proc.stdout)


def test_esp_bench_schema() -> None:
    out = run("esp.py", "--json", "--alg", "aes128gcm16", "--alg", "aes128-sha256", "--size", "64", "--budget", "0.4")
    rows = out["results"]
    assert [(r["alg"], r["op"]) for r in rows] == [
        ("aes128gcm16", "seal"), ("aes128gcm16", "seal_bytes"), ("aes128gcm16", "open"), ("aes128gcm16", "open_results"),
        ("aes128-sha256", "seal"), ("aes128-sha256", "seal_bytes"), ("aes128-sha256", "open"),
        ("aes128-sha256", "open_results"),
    ]
    for r in rows:
        assert set(r) == {"alg", "size", "op", "pps", "aead_pps", "ratio"} and r["size"] == 64
        assert r["pps"] > 0 and r["aead_pps"] > 0
        assert r["ratio"] == pytest.approx(r["pps"] / r["aead_pps"], rel=0.01)


def test_ike_bench_schema() -> None:
    out = run("ike.py", "--json", "--auth", "psk", "--rounds", "1", "--per-round", "3", "--sas", "20")
    (hs,) = out["handshakes"]
    assert hs["auth"] == "psk" and hs["pps"] > 0 and 0 < hs["crypto_share"] < 1
    (mem,) = out["memory"]
    assert mem["sas"] == 20 and 0 < mem["bytes_per_sa"] < mem["bytes_per_sa_with_esp"]
    # issue 7's bound, kept as a guard: memory is deterministic, unlike speed.  A
    # 30th attribute on IkeSessionV2 once cost +1.3 KB per SA unnoticed (CPython
    # 3.11 gives up the key-sharing instance dict) and crossed it.
    assert mem["bytes_per_sa_with_esp"] <= 16 * 1024


def test_profile_scripts_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "profile_ike.py"), "-n", "3", "--top", "5"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert "3 psk handshakes" in proc.stdout and "own %" in proc.stdout
    out = run("profile_multicore.py", "shard", "--packets", "512", "--rounds", "1", "--json")
    one, two = out["shard"]
    assert (one["workers"], two["workers"]) == (1, 2)
    for r in (one, two):
        assert r["received"] == r["sent"] == r["opened"] > 0 and r["misrouted"] == 0
    assert all(n > 0 for n in two["per_worker"])  # the SPI filter fed both workers


def test_profile_esp_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "profile_esp.py"), "--size", "64"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    for line in ("calls per packet", "seal:", "open:", "open_packets stage by stage", "raw decrypt"):
        assert line in proc.stdout
