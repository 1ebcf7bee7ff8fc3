"""Can the ESP data plane use a second core?  Two measurements.

``gil``: does ``cryptography`` release the GIL during AEAD calls?
  1. Decisive test, independent of how many cores are free: with a 1 s
     switch interval a spinning Python thread only runs when the main thread
     releases the GIL by itself; the main thread makes AEAD calls of a given
     size for 50 ms and we count the spinner's progress.
  2. Throughput: the same number of AEAD calls in one thread and split over
     two threads.

``shard``: SPI-sharded worker processes.  N sockets share one UDP port with
  ``SO_REUSEPORT`` and a classic BPF program (``SO_ATTACH_REUSEPORT_CBPF``:
  load the first 32-bit word of the UDP payload, i.e. the ESP SPI, modulo N)
  steers each SA's datagrams to one worker; IKE (non-ESP marker 0) always goes
  to worker 0.  The receive queues are filled first (``SO_RCVBUFFORCE``) so the
  sender does not compete for the cores; then 1 or N workers drain and open
  them, and we report packets/s (wall, from start to the last worker done)
  and CPU time.  Loopback only (127.0.0.1), bounded, everything closed.

    python bench/profile_multicore.py [gil] [shard] [--packets N] [--size B] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305  # noqa: E402

SO_ATTACH_REUSEPORT_CBPF = 51
SO_RCVBUFFORCE = 33

# --------------------------------------------------------------------------- GIL


def gil_release(sizes: list[int]) -> list[dict[str, Any]]:
    """Spinner progress while the main thread makes AEAD calls (1 s switch interval)."""
    out = []
    old = sys.getswitchinterval()
    stop = False
    count = 0

    def spin() -> None:
        nonlocal count
        while not stop:
            count += 1

    sys.setswitchinterval(1.0)
    t = threading.Thread(target=spin, daemon=True)
    try:
        t.start()
        time.sleep(0.01)  # sleeping releases the GIL: the spinner starts
        for name, aead in (("aes128gcm16", AESGCM(bytes(16))), ("chacha20poly1305", ChaCha20Poly1305(bytes(32)))):
            for size in sizes:
                nonce, data = bytes(12), os.urandom(size)
                time.sleep(0.002)  # the spinner holds the GIL again; take it back
                c0, t0, calls = count, time.perf_counter(), 0
                while time.perf_counter() - t0 < 0.05:
                    for _ in range(20):
                        aead.encrypt(nonce, data, b"")
                    calls += 20
                dt = time.perf_counter() - t0
                out.append(dict(alg=name, size=size, calls=calls, ms=round(dt * 1e3), spinner=count - c0,
                                releases=count - c0 > 0))
    finally:
        stop = True
        sys.setswitchinterval(old)
        t.join(timeout=5)
    return out


def gil_threads(sizes: list[int], rounds: int = 7) -> list[dict[str, Any]]:
    """AEAD calls per second: all in one thread vs split over two."""

    def run(size: int, calls: int, nthreads: int) -> float:
        aead, nonce, data = AESGCM(bytes(16)), bytes(12), os.urandom(size)

        def work(m: int) -> None:
            enc = aead.encrypt
            for _ in range(m):
                enc(nonce, data, b"")

        ts = [threading.Thread(target=work, args=(calls // nthreads,)) for _ in range(nthreads)]
        t0 = time.perf_counter()
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        return calls / (time.perf_counter() - t0)

    out = []
    for size in sizes:
        calls = max(2000, 40_000_000 // (size + 2000))
        one, two = [], []
        for _ in range(rounds):
            one.append(run(size, calls, 1))
            two.append(run(size, calls, 2))
        m1, m2 = statistics.median(one), statistics.median(two)
        out.append(dict(size=size, one_thread=round(m1), two_threads=round(m2), speedup=round(m2 / m1, 2)))
    return out


# --------------------------------------------------------------------------- SPI sharding


def _spi_filter(n: int) -> tuple[bytes, Any]:
    """``struct sock_fprog`` for: A = payload[0:4] (the SPI); A %= n; return A."""
    insns = [(0x20, 0, 0, 0), (0x94, 0, 0, n), (0x16, 0, 0, 0)]  # ld [0]; mod #n; ret a
    prog = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in insns))
    return struct.pack("HL", len(insns), ctypes.addressof(prog)), prog


def _shard_sockets(n: int, rcvbuf: int) -> tuple[list[socket.socket], int]:
    socks = []
    port = 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:  # not root: as much as rmem_max allows
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind(("127.0.0.1", port))
        port = s.getsockname()[1]
        socks.append(s)
    fprog, keep = _spi_filter(n)
    socks[0].setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    del keep
    return socks, port


def _make_sas(nsa: int, encr_keys: list[bytes]) -> list[Any]:
    from aioipsec.crypto import transforms as T
    from aioipsec.esp import EspSa

    return [
        EspSa(spi=0x1000 + i, encr=T.ENCR["aes128gcm16"], encr_key=encr_keys[i], inbound=True, replay_window=1024)
        for i in range(nsa)
    ]


def _worker(sock: socket.socket, index: int, workers: int, encr_keys: list[bytes], expect: int, go: Any,
            result: Any) -> None:
    """Drain ``sock`` in batches of up to 64, group by SPI, open each group;
    count datagrams whose SPI the steering program should have sent elsewhere."""
    sas = {sa.spi: sa for sa in _make_sas(len(encr_keys), encr_keys)}
    sock.setblocking(False)
    recv = sock.recv
    go.wait()
    c0, t0 = time.process_time(), time.perf_counter()
    got = opened = misrouted = 0
    idle_since = None
    while got < expect:
        batch = []
        try:
            for _ in range(64):
                batch.append(recv(2048))
        except BlockingIOError:
            pass
        if not batch:
            idle_since = idle_since or time.perf_counter()
            if time.perf_counter() - idle_since > 1.0:  # lost datagrams: stop, bounded
                break
            continue
        idle_since = None
        got += len(batch)
        groups: dict[int, list[bytes]] = {}
        for d in batch:
            groups.setdefault(int.from_bytes(d[:4], "big"), []).append(d)
        for spi, dgs in groups.items():
            if spi % workers != index:
                misrouted += len(dgs)
            sa = sas.get(spi)
            if sa is not None:
                opened += sum(r.packet is not None for r in sa.open_batch(dgs))
    t1 = time.perf_counter() - (1.0 if idle_since else 0.0)
    result.put(dict(got=got, opened=opened, misrouted=misrouted, wall=t1 - t0, cpu=time.process_time() - c0))


def shard(workers: int, packets: int, size: int) -> dict[str, Any]:
    """Fill the queues, then let ``workers`` processes drain and open them."""
    from aioipsec.crypto import transforms as T
    from aioipsec.esp import EspSa

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import esp as bench_esp

    nsa = 2 * workers if workers > 1 else 2
    keys = [os.urandom(20) for _ in range(nsa)]
    outs = [EspSa(spi=0x1000 + i, encr=T.ENCR["aes128gcm16"], encr_key=keys[i], inbound=False) for i in range(nsa)]
    inner = [bench_esp.inner_packet(size, i) for i in range(64)]
    per_sa = packets // nsa
    datagrams: list[bytes] = []
    for sa in outs:
        for _ in range(per_sa // 64):
            datagrams += sa.seal_batch(inner)
    socks, port = _shard_sockets(workers, 768 << 20)
    ctx = mp.get_context("fork")
    go, result = ctx.Event(), ctx.Queue()
    counts = [0] * workers
    for d in datagrams:
        counts[int.from_bytes(d[:4], "big") % workers] += 1
    procs = [
        ctx.Process(target=_worker, args=(socks[i], i, workers, keys, counts[i], go, result), daemon=True)
        for i in range(workers)
    ]
    try:
        for p in procs:
            p.start()
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for d in datagrams:
                tx.sendto(d, ("127.0.0.1", port))
        finally:
            tx.close()
        time.sleep(0.2)
        go.set()
        rs = [result.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
        for s in socks:
            s.close()
    got = sum(r["got"] for r in rs)
    wall = max(r["wall"] for r in rs)
    return dict(
        workers=workers, size=size, sent=len(datagrams), received=got, opened=sum(r["opened"] for r in rs),
        misrouted=sum(r["misrouted"] for r in rs),
        pps=round(got / wall), per_worker=[round(r["got"] / r["wall"]) for r in rs],
        cpu_s=round(sum(r["cpu"] for r in rs), 3), wall_s=round(wall, 3), cpu_per_wall=round(sum(r["cpu"] for r in rs) / wall, 2),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="*", choices=["gil", "shard"], default=["gil", "shard"])
    ap.add_argument("--packets", type=int, default=40000, help="datagrams per shard run")
    ap.add_argument("--size", type=int, default=1400, help="inner packet size for the shard runs")
    ap.add_argument("--rounds", type=int, default=3, help="shard runs per worker count (median)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {"loadavg": os.getloadavg()[0], "cpus": os.cpu_count()}
    if "gil" in args.what:
        report["gil_release"] = gil_release([64, 1400, 2047, 2048, 16384])
        report["gil_threads"] = gil_threads([64, 1400, 16384, 65536])
    if "shard" in args.what:
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for w in (1, 2):
                runs[w].append(shard(w, args.packets, args.size))
        report["shard"] = [sorted(rs, key=lambda r: r["pps"])[len(rs) // 2] for rs in runs.values()]
    report["loadavg_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"load average {report['loadavg']:.1f} at start, {report['loadavg_end']:.1f} at end, {report['cpus']} CPUs")
    for r in report.get("gil_release", []):
        print(f"GIL {r['alg']:<17} {r['size']:>6} B: {r['calls']:>6} calls in {r['ms']} ms, spinner ran "
              f"{r['spinner']:>10,} times -> {'released' if r['releases'] else 'held'}")
    for r in report.get("gil_threads", []):
        print(f"threads AES-GCM {r['size']:>6} B: 1 thread {r['one_thread']:>10,}/s, 2 threads "
              f"{r['two_threads']:>10,}/s (x{r['speedup']})")
    for r in report.get("shard", []):
        print(f"shard {r['workers']} worker(s), {r['size']} B: {r['pps']:>9,} pkt/s received+opened "
              f"({r['received']}/{r['sent']} received, {r['opened']} opened, {r['misrouted']} on the wrong worker; "
              f"per worker {r['per_worker']}; "
              f"CPU {r['cpu_s']} s over {r['wall_s']} s wall = {r['cpu_per_wall']} cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
