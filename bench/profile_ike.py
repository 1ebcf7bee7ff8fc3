"""Where an IKEv2 handshake spends its time: cProfile over N in-memory
handshakes (both peers, as in ``bench/ike.py``), top functions by own time.

    python bench/profile_ike.py [--auth psk|ecdsa-p256] [-n 300] [--top 25] [--sort tottime|cumtime]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ike  # noqa: E402  (bench/ike.py)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--auth", choices=["psk", "ecdsa-p256"], default="psk")
    ap.add_argument("-n", type=int, default=300, help="handshakes to profile")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", choices=["tottime", "cumtime"], default="tottime")
    args = ap.parse_args(argv)
    icfg, rcfg = ike.configs(args.auth)
    ike.handshake(icfg, rcfg)  # imports and first-use caches out of the profile
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.n):
        ike.handshake(icfg, rcfg)
    prof.disable()
    st = pstats.Stats(prof)
    total = st.total_tt  # type: ignore[attr-defined]
    print(f"{args.n} {args.auth} handshakes: {total:.2f} s profiled ({total / args.n * 1e3:.2f} ms each under cProfile)")
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2 if args.sort == "tottime" else 3], reverse=True)  # type: ignore[attr-defined]
    print(f"{'own %':>6} {'cum %':>6} {'calls/hs':>9}  function")
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows[: args.top]:
        where = func if file == "~" else f"{Path(file).name}:{line}({func})"
        print(f"{tt / total:6.1%} {ct / total:6.1%} {nc / args.n:9.1f}  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
