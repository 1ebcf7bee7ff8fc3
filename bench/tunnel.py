"""Tunnel throughput: aioipsec ⇄ aioipsec beside aioipsec ⇄ strongSwan
(``mixed``), strongSwan (kernel-libipsec) ⇄ strongSwan and a plain veth, in
two network namespaces.

Each gateway runs in its own namespace (the interop harness's ``direct``
topology: left 192.0.2.1 == right 192.0.2.2, inner addresses 203.0.113.1 /
203.0.113.129 on lo).  aioipsec runs as ``python -m aioipsec daemon`` with a
TUN device and ESP in UDP 4500 (``encap = true``, as kernel-libipsec always
does), both with ``aes128gcm16``.  Per implementation and round:

- ``tcp``: ``iperf3 -t 5`` (``--quick``: 2) TCP, Mbit/s received;
- ``udp64``: ``iperf3 -u -l 64 -b 0`` for 3 s (``--quick``: 2): 64-byte UDP
  datagrams sent as fast as iperf3 can, packets/s *received*;
- ``cpu_us_per_packet``: CPU time (user + system, all threads) of both
  gateway processes during a run, divided by the ESP packets both handled
  (each packet is sealed once and opened once).  On a shared 2-CPU machine
  this transfers better than the rates, which move with whatever else runs.

The implementations run in turn, A/B/C/A/B/C..., for ``--rounds`` rounds
(default 3; ``--quick``: 2), and the medians are printed with the ratio
aioipsec ÷ libipsec.  ``--json`` prints one object instead.
``--profile DIR`` runs the aioipsec daemons under cProfile and prints the
functions with the most own time (the ``.prof`` files stay in DIR).

Needs root, iproute2, iperf3 and strongSwan (``scripts/install-system-deps.sh``).

    python bench/tunnel.py [--quick] [--json] [--rounds N] [--only aioipsec,mixed,libipsec,veth]

``--only aioipsec,aioipsec:AIOIPSEC_UDP_GSO=0`` compares the daemons with and
without an environment setting (``+`` joins several ``NAME=VALUE``).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from interop.aioipsec_peer import AioipsecPeer  # noqa: E402
from interop.netns import Topology, create_topology, make_run_dir, netns_usable  # noqa: E402
from interop.strongswan import Connection, StrongSwanPeer, charon_available  # noqa: E402
from netns.traffic import iperf3, ping  # noqa: E402

IMPLS = ("aioipsec", "mixed", "libipsec", "veth")
"""``mixed``: aioipsec on the left (iperf3 client side) against strongSwan libipsec on the right."""
PROFILE = "ikev2-psk-gcm"


class Pair:
    """One implementation's tunnel (or none, for veth), started and stopped per round."""

    def __init__(self, impl: str, topo: Topology, profile_dir: Path | None, round_no: int) -> None:
        self.impl = impl
        self.topo = topo
        self.profile_dir = profile_dir
        self.round_no = round_no
        self.peers: list[Any] = []

    def start(self) -> None:
        topo = self.topo
        if self.impl == "veth":
            return
        if self.impl == "mixed":
            conn = Connection.named(PROFILE)
            right = StrongSwanPeer(topo, "right")
            right.configure(conn)
            right.start()
            self.peers.append(right)
            left = AioipsecPeer(topo, "left")
            left.configure(conn)
            left.start()
            self.peers.append(left)
            left.initiate()
            right.wait_established(15)
            left.wait_established(15)
        elif self.impl == "libipsec":
            conn = Connection.named(PROFILE)
            right = StrongSwanPeer(topo, "right")
            left = StrongSwanPeer(topo, "left")
            for p in (right, left):
                self.peers.append(p)
                p.configure(conn)
                p.start()
            left.initiate()
            right.wait_established(15)
            left.wait_established(15)
        else:
            conn = Connection.named(PROFILE, ike_options={"encap": "yes"})
            right = AioipsecPeer(topo, "right")
            left = AioipsecPeer(topo, "left")
            # "aioipsec:NAME=VALUE,..." runs the daemons with that environment (A/B of a knob)
            env = dict(kv.split("=", 1) for kv in self.impl.partition(":")[2].split("+") if kv)
            for p in (right, left):
                self.peers.append(p)
                p.configure(conn)
                p.env = env or None
                if self.profile_dir is not None:
                    out = self.profile_dir / f"aioipsec-{p.side.name}-r{self.round_no}.prof"
                    p.args = ["-m", "cProfile", "-o", str(out), *p.args]
                p.start()
            left.initiate()
            right.wait_established(15)
        sent, got = ping(topo.left, topo.right.inner4, count=2, interval=0.2)
        if got != sent:
            raise RuntimeError(f"{self.impl}: tunnel up but ping {got}/{sent}")

    def stop(self) -> None:
        for p in reversed(self.peers):
            p.stop()
        self.peers.clear()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the gateway processes so far (all threads)."""
        total = 0
        for p in self.peers:
            pid = p.pid
            if pid is None:
                continue
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")

    def packets(self) -> int:
        """ESP packets handled by both gateways (each sealed and opened packet once)."""
        n = 0
        for p in self.peers:
            for c in p.installed_children():
                n += c.packets_in + c.packets_out
        return n

    def addresses(self) -> tuple[str, str]:
        """(client, server) addresses for iperf3: inner ones through a tunnel."""
        if self.impl == "veth":
            return self.topo.left.outer4, self.topo.right.outer4
        return self.topo.left.inner4, self.topo.right.inner4


def measure(pair: Pair, tcp_seconds: int, udp_seconds: int) -> dict[str, float]:
    topo = pair.topo
    cip, sip = pair.addresses()
    cpu0, pk0 = pair.cpu_seconds(), pair.packets()
    tcp = iperf3(topo.left, topo.right, seconds=tcp_seconds, client_ip=cip, server_ip=sip)
    cpu1, pk1 = pair.cpu_seconds(), pair.packets()
    udp = iperf3(topo.left, topo.right, seconds=udp_seconds, client_ip=cip, server_ip=sip,
                 udp_bitrate="0", length=64)
    cpu2, pk2 = pair.cpu_seconds(), pair.packets()
    s = udp.raw["end"]["sum"]
    received = int(s["packets"]) - int(s["lost_packets"])
    out = {"tcp_mbps": tcp.mbps, "tcp_retransmits": float(tcp.retransmits or 0),
           "udp64_pps": received / float(s["seconds"]),
           "udp64_sent_pps": int(s["packets"]) / float(s["seconds"])}
    if pk1 > pk0:
        out["tcp_cpu_us_per_packet"] = 1e6 * (cpu1 - cpu0) / (pk1 - pk0)
    if pk2 > pk1:
        out["udp64_cpu_us_per_packet"] = 1e6 * (cpu2 - cpu1) / (pk2 - pk1)
    return out


def print_profile(profile_dir: Path, out: Callable[[str], None], top: int = 25) -> None:
    files = sorted(profile_dir.glob("*.prof"))
    if not files:
        out("no profile written")
        return
    for side in ("left", "right"):
        paths = [str(f) for f in files if f"-{side}-" in f.name]
        if not paths:
            continue
        st = pstats.Stats(paths[0])
        for p in paths[1:]:
            st.add(p)
        out(f"\n=== cProfile, aioipsec {side} ({'sender' if side == 'left' else 'receiver'} of the iperf3 data), "
            f"own time, top {top} ===")
        rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
        total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
        for (fn, line, name), (cc, nc, tt, ct, _callers) in rows:
            short = fn.replace(str(ROOT) + "/", "")
            out(f"  {tt:8.3f}s {100 * tt / total:5.1f}%  {nc:>9}  {short}:{line}({name})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds, shorter runs (~1 min)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--only", default=",".join(IMPLS), help="comma-separated subset of " + ",".join(IMPLS))
    ap.add_argument("--profile", metavar="DIR", help="run the aioipsec daemons under cProfile, write DIR/*.prof")
    ns = ap.parse_args(argv)
    impls = [i for i in ns.only.split(",") if i]
    for i in impls:
        if i.partition(":")[0] not in IMPLS:
            ap.error(f"unknown implementation {i!r}")
    reason = netns_usable() or (shutil.which("iperf3") is None and "iperf3 is not installed") or None
    if reason is None and ("libipsec" in impls or "mixed" in impls):
        reason = charon_available()
    if reason:
        print(f"bench/tunnel.py: cannot run: {reason}", file=sys.stderr)
        return 2
    rounds = ns.rounds or (2 if ns.quick else 3)
    tcp_s, udp_s = (2, 2) if ns.quick else (5, 3)
    profile_dir = Path(ns.profile).resolve() if ns.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if ns.json else sys.stdout, flush=True)

    run_dir = make_run_dir()  # per-run prefix; a killed run is cleaned up by the next interop session
    topo = create_topology("direct", run_dir=run_dir)
    results: dict[str, list[dict[str, float]]] = {i: [] for i in impls}
    t0 = time.monotonic()
    load0 = list(os.getloadavg())  # other work on the machine moves the rates (not CPU per packet)
    try:
        for r in range(rounds):
            for impl in impls:
                pair = Pair(impl, topo, profile_dir, r)
                try:
                    pair.start()
                    m = measure(pair, tcp_s, udp_s)
                finally:
                    pair.stop()
                results[impl].append(m)
                cpu = (f"   CPU/pkt tcp {m['tcp_cpu_us_per_packet']:5.1f} µs udp64 "
                       f"{m.get('udp64_cpu_us_per_packet', float('nan')):5.1f} µs"
                       if "tcp_cpu_us_per_packet" in m else "")
                log(f"round {r + 1}/{rounds} {impl:9s}\n    tcp {m['tcp_mbps']:8.1f} Mbit/s "
                    f"(retr {int(m['tcp_retransmits'])})   udp64 {m['udp64_pps'] / 1e3:7.1f} kpps received "
                    f"of {m['udp64_sent_pps'] / 1e3:7.1f} kpps sent{cpu}")
    finally:
        topo.destroy()
        shutil.rmtree(run_dir, ignore_errors=True)

    med = {i: {k: statistics.median(m[k] for m in results[i] if k in m) for k in results[i][0]} for i in impls}
    ratio: dict[str, float | None] = {}
    if "aioipsec" in med and "libipsec" in med:
        for k in ("tcp_mbps", "udp64_pps", "tcp_cpu_us_per_packet", "udp64_cpu_us_per_packet"):
            base = med["libipsec"].get(k)
            ratio[k] = med["aioipsec"][k] / base if base and k in med["aioipsec"] else None
    doc = {"rounds": rounds, "tcp_seconds": tcp_s, "udp_seconds": udp_s, "cpus": os.cpu_count(),
           "loadavg_start": load0, "loadavg_end": list(os.getloadavg()),
           "median": med, "ratio_aioipsec_over_libipsec": ratio, "runs": results,
           "elapsed_s": round(time.monotonic() - t0, 1)}
    if ns.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"\nmedians over {rounds} rounds (A/B/C order), {os.cpu_count()} CPUs, "
              f"{doc['elapsed_s']} s in all, load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}")
        print(f"  {'':9s} {'TCP Mbit/s':>11s} {'UDP-64 kpps':>12s} {'CPU µs/pkt TCP':>15s} {'UDP-64':>7s}")
        for i in impls:
            c_tcp = med[i].get("tcp_cpu_us_per_packet")
            c_udp = med[i].get("udp64_cpu_us_per_packet")
            print(f"  {i:9s} {med[i]['tcp_mbps']:11.1f} {med[i]['udp64_pps'] / 1e3:12.1f} "
                  f"{'' if c_tcp is None else f'{c_tcp:.1f}':>15s} {'' if c_udp is None else f'{c_udp:.1f}':>7s}")
        if ratio:
            tcp_r, udp_r = ratio["tcp_mbps"], ratio["udp64_pps"]
            print(f"  aioipsec ÷ libipsec: TCP {tcp_r:.2f}×, UDP-64 {udp_r:.2f}×"
                  f"  (target ≥ 1.2× TCP)" if tcp_r and udp_r else "  ratio: n/a")
            c = ratio.get("tcp_cpu_us_per_packet")
            if c:
                print(f"  CPU per packet, aioipsec ÷ libipsec: TCP {c:.2f}× (below 1: aioipsec spends less)")
    if profile_dir is not None:
        print_profile(profile_dir, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
