"""Run every atheris harness for a bounded time, one after the other, and
print one line per harness: executions, coverage, corpus size, crashes.

    .venv/bin/pip install atheris          # once; not a suite dependency
    .venv/bin/python fuzz/run_all.py --seconds 300 [--work /tmp/aioipsec-fuzz] [NAME ...]

Corpora and crash artifacts go under ``--work`` (one directory per harness,
reused by the next run so coverage accumulates).  Exit status 1 if any
harness crashed.  A crash input replays without atheris::

    .venv/bin/python -c "import sys; sys.path.insert(0, 'fuzz'); import fuzzlib; \\
        fuzzlib.TARGETS['ikev2_session'](open('CRASH_FILE', 'rb').read())"
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fuzzlib  # noqa: E402


def run_one(name: str, seconds: int, work: str, rss_mb: int) -> dict[str, object]:
    d = os.path.join(work, name)
    corpus = os.path.join(d, "corpus")
    artifacts = os.path.join(d, "artifacts") + os.sep
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(artifacts, exist_ok=True)
    if not os.listdir(corpus):
        for n, s in enumerate(fuzzlib.seeds(name)):
            with open(os.path.join(corpus, f"seed{n}"), "wb") as f:
                f.write(s)
    cmd = [
        sys.executable,
        os.path.join(HERE, f"fuzz_{name}.py"),
        f"-max_total_time={seconds}",
        f"-rss_limit_mb={rss_mb}",
        "-timeout=20",
        f"-artifact_prefix={artifacts}",
        "-print_final_stats=1",
        corpus,
    ]
    t0 = time.monotonic()
    # stderr carries libFuzzer's log; keep only the tail in a file
    log_path = os.path.join(d, "last-run.log")
    with open(log_path, "wb") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 300)
    wall = time.monotonic() - t0
    text = open(log_path, encoding="utf-8", errors="replace").read()
    execs = _last_int(r"stat::number_of_executed_units:\s*(\d+)", text) or _last_int(r"Done (\d+) runs", text)
    cov = _last_int(r"cov: (\d+)", text)
    crashes = sorted(f for f in os.listdir(artifacts) if f.startswith(("crash-", "oom-", "timeout-", "leak-")))
    peak = _last_int(r"stat::peak_rss_mb:\s*(\d+)", text)
    return {
        "name": name,
        "rc": proc.returncode,
        "seconds": round(wall),
        "execs": execs,
        "cov": cov,
        "corpus": len(os.listdir(corpus)),
        "peak_rss_mb": peak,
        "crashes": crashes,
        "log": log_path,
    }


def _last_int(pattern: str, text: str) -> int | None:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"harnesses (default all: {', '.join(fuzzlib.TARGETS)})")
    ap.add_argument("--seconds", type=int, default=300, help="per harness")
    ap.add_argument("--work", default="/tmp/aioipsec-fuzz")
    ap.add_argument("--rss-mb", type=int, default=2048, help="libFuzzer -rss_limit_mb (memory bound)")
    args = ap.parse_args()
    failed = False
    for name in args.names or list(fuzzlib.TARGETS):
        res = run_one(name, args.seconds, args.work, args.rss_mb)
        print(
            f"{res['name']:16} {res['seconds']:>5}s execs={res['execs']} cov={res['cov']} "
            f"corpus={res['corpus']} peak_rss_mb={res['peak_rss_mb']} rc={res['rc']} crashes={res['crashes'] or 'none'}",
            flush=True,
        )
        failed |= bool(res["crashes"]) or res["rc"] not in (0,)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
