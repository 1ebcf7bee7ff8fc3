"""Long chaos soak (opt-in; the suite runs short seeded versions in
``tests/robustness``): one server endpoint and many clients on an in-memory
network that loses, duplicates, reorders, corrupts and delays datagrams, on
the real event loop, for a wall-clock duration.

Each client loops until the deadline: connect (IKEv2 or IKEv1, PSK, tunnel
mode, its own inner /16), send numbered packets through the tunnel that the
server's application echoes back, live through Child SA and IKE SA rekeys
(short lifetimes), close, start over.  Every 10 s a line reports sessions,
outcomes, packets, tasks, file descriptors, RSS and traced memory.  At the
end the server is closed and the run fails (exit 1) on a hang, a duplicated
or altered delivery, or anything left behind (sessions, SPI routes, SAs,
tasks, timers).

    .venv/bin/python bench/soak.py --minutes 30 --clients 40 --version both
    .venv/bin/python bench/soak.py --minutes 2 --loss 0.2 --corrupt 0.05 --tracemalloc
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aioipsec.asyncio.client import connect, serve  # noqa: E402
from aioipsec.asyncio.protocol import IkeError  # noqa: E402
from aioipsec.asyncio.sockets import MemoryNetwork  # noqa: E402
from aioipsec.config import child, connection  # noqa: E402
from aioipsec.netutil import udp_packet  # noqa: E402
from aioipsec.transports.memory import memory_pipe  # noqa: E402

SERVER = "192.0.2.1"
PSK = "soak test psk"


def client_ip(k: int) -> str:
    return f"198.51.100.{k + 10}"


def configs(version: int, k: int, rekey: float) -> tuple[Any, Any]:
    net = f"10.{k + 1}.0.0/16"
    esp = ["aes128gcm16"] if version == 2 else ["aes128-sha256"]
    ike = ["aes128gcm16-prfsha256-x25519"] if version == 2 else ["aes128-sha256-x25519"]
    life = dict(rekey_time=rekey, life_time=rekey * 1.5, rand_time=rekey * 0.2)
    ci = connection(
        f"c{k}", version=version, psk=PSK, proposals=ike, local_id=f"c{k}.example", remote_id="server.example",
        local_addrs=[client_ip(k)], remote_addrs=[SERVER], rekey_time=rekey * 2, over_time=rekey, dpd_delay=10,
        children=[child("net", local_ts=[net], remote_ts=["10.0.0.0/16"], esp_proposals=esp, **life)],
    )  # fmt: skip
    return ci, net


def server_configs(rekey: float) -> list[Any]:
    out = []
    for version in (2, 1):
        esp = ["aes128gcm16"] if version == 2 else ["aes128-sha256"]
        ike = ["aes128gcm16-prfsha256-x25519"] if version == 2 else ["aes128-sha256-x25519"]
        out.append(connection(
            f"server-v{version}", version=version, psk=PSK, proposals=ike, local_id="server.example", remote_id="%any",
            local_addrs=[SERVER], rekey_time=rekey * 2.3, over_time=rekey, dpd_delay=10,
            children=[child("net", local_ts=["10.0.0.0/16"], remote_ts=["10.0.0.0/8"], esp_proposals=esp,
                            rekey_time=rekey * 1.7, life_time=rekey * 2.5, rand_time=rekey * 0.2)],
        ))  # fmt: skip
    return out


@dataclass
class Stats:
    outcomes: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    echoed: int = 0
    duplicates: int = 0
    altered: int = 0
    connects: int = 0


async def echo_server(app: Any) -> None:
    """The server's application: swap addresses, send back."""
    while True:
        out = []
        for pkt in await app.recv_batch():
            if len(pkt) >= 28:
                out.append(udp_packet(".".join(map(str, pkt[16:20])), ".".join(map(str, pkt[12:16])), 4000, 5000, pkt[28:]))
        app.send_batch(out)


async def client_loop(k: int, version: int, net: MemoryNetwork, deadline: float, rekey: float, st: Stats) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(k)
    cfg, inner_net = configs(version, k, rekey)
    inner_ip = inner_net.replace("0.0/16", "0.7")
    n = 0
    while loop.time() < deadline:
        app, dp = memory_pipe()
        seen: set[bytes] = set()
        sent: set[bytes] = set()

        async def reader() -> None:
            while True:
                for pkt in await app.recv_batch():
                    p = pkt[28:]
                    if p not in sent:
                        st.altered += 1
                    elif p in seen:
                        st.duplicates += 1
                    else:
                        seen.add(p)
                        st.echoed += 1

        rd = loop.create_task(reader())
        try:
            st.connects += 1
            async with connect(SERVER, configuration=cfg, network=net, inner=dp, timeout=120) as ike:
                until = min(deadline, loop.time() + rng.uniform(5, 4 * rekey))
                while loop.time() < until and not ike.session.is_closed:
                    n += 1
                    payload = f"c{k}-{n}".encode()
                    sent.add(payload)
                    st.sent += 1
                    app.send_batch([udp_packet(inner_ip, "10.0.0.1", 4000, 5000, payload)])
                    await asyncio.sleep(0.05)
                st.outcomes["ok" if not ike.session.is_closed else "closed-early"] += 1
        except IkeError as exc:
            st.outcomes[f"failed: {type(exc.event).__name__}"] += 1
        except asyncio.TimeoutError:
            st.outcomes["hang"] += 1
        finally:
            rd.cancel()
            await asyncio.gather(rd, return_exceptions=True)
            app.close()
        await asyncio.sleep(rng.uniform(0.1, 1.0))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1e6


async def main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    knobs = dict(loss=args.loss, duplicate=args.dup, reorder=args.reorder, corrupt=args.corrupt,
                 delay=args.delay, jitter=args.delay)  # fmt: skip
    net = MemoryNetwork(seed=args.seed, **knobs)
    app, dp = memory_pipe(queue_size=8192)
    server = await serve(SERVER, configuration=server_configs(args.rekey), network=net, inner=dp)
    echo = loop.create_task(echo_server(app))
    st = Stats()
    start = loop.time()
    deadline = start + args.minutes * 60
    versions = [2, 1] if args.version == "both" else [int(args.version)]
    clients = [loop.create_task(client_loop(k, versions[k % len(versions)], net, deadline, args.rekey, st))
               for k in range(args.clients)]  # fmt: skip
    baseline_fds = len(os.listdir("/proc/self/fd"))
    while not all(c.done() for c in clients):
        await asyncio.sleep(min(10.0, max(0.1, deadline + 150 - loop.time())))
        ep = server.endpoint
        tm = f" traced={tracemalloc.get_traced_memory()[0] / 1e6:.1f}MB" if args.tracemalloc else ""
        print(
            f"[{loop.time() - start:6.0f}s] server sessions={len(ep.sessions)} half-open={ep.half_open()} "
            f"SAs={len(ep.dataplane.sad_in)} connects={st.connects} outcomes={dict(st.outcomes)} "
            f"packets sent={st.sent} echoed={st.echoed} dup={st.duplicates} altered={st.altered} "
            f"tasks={len(asyncio.all_tasks())} fds={len(os.listdir('/proc/self/fd'))} rss={rss_mb():.1f}MB{tm}",
            flush=True,
        )
        if loop.time() > deadline + 300:
            print("clients did not finish", flush=True)
            break
    for c in clients:
        c.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    await server._close()
    echo.cancel()
    await asyncio.gather(echo, return_exceptions=True)
    await asyncio.sleep(5)
    gc.collect()
    ep = server.endpoint
    problems = []
    if st.outcomes["hang"]:
        problems.append(f"{st.outcomes['hang']} hung connects")
    if st.duplicates or st.altered:
        problems.append(f"deliveries: {st.duplicates} duplicated, {st.altered} altered")
    if ep.sessions or ep._by_spi or ep._by_init or ep.dataplane.sad_in:
        problems.append(f"server left sessions={len(ep.sessions)} spis={len(ep._by_spi)} SAs={len(ep.dataplane.sad_in)}")
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if left:
        problems.append(f"{len(left)} tasks left")
    timers = [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()]
    if timers:
        problems.append(f"{len(timers)} timers left")
    if len(os.listdir("/proc/self/fd")) > baseline_fds:
        problems.append("file descriptors grew")
    print(f"done: {dict(st.outcomes)}; packets sent {st.sent}, echoed {st.echoed}; "
          f"{'PROBLEMS: ' + '; '.join(problems) if problems else 'no leaks, no hangs'}")  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--version", choices=["1", "2", "both"], default="both")
    ap.add_argument("--rekey", type=float, default=20.0, help="Child SA rekey time (s); IKE SA: twice that")
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--dup", type=float, default=0.05)
    ap.add_argument("--reorder", type=float, default=0.05)
    ap.add_argument("--corrupt", type=float, default=0.01)
    ap.add_argument("--delay", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--log-level", default="ERROR", help="aioipsec loggers (replay drops log at WARNING)")
    a = ap.parse_args()
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aioipsec").setLevel(a.log_level)
    if a.tracemalloc:
        tracemalloc.start()
    if a.uvloop:
        import uvloop

        uvloop.install()
    t0 = time.monotonic()
    rc = asyncio.run(main(a))
    print(f"wall time {time.monotonic() - t0:.0f} s")
    sys.exit(rc)
