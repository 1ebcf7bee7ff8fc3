"""Where the ESP hot path spends its time (AEAD, tunnel mode, batches of 64).

The AEAD fast paths are single loops (``EspSa._seal_fast``, ``_open_fast``)
with no Python calls per packet, so a function profiler only says "all of it
is in the loop" (and cProfile's per-call hooks inflate every C call several
times).  This script therefore prints two views:

1. cProfile call counts per packet, which show what runs per packet (one
   AEAD call; a few ``struct`` calls when opening, none when sealing
   batches of 8 or more, whose headers, nonces and AADs are cut from one
   blob per batch; no Python functions);
2. a cost breakdown: each per-packet step of the loop timed alone on the same
   data (``timeit``, best of 15 runs), next to the measured per-packet
   time of ``seal_batch``/``open_batch`` and of the bare AEAD call;
3. ``open_packets`` (the data plane's call) built up stage by stage on the
   same freshly sealed batches, interleaved, medians.

    python bench/profile_esp.py [--alg aes128gcm16|aes256gcm16|chacha20poly1305] [--size 1400]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import struct
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import esp  # noqa: E402  (bench/esp.py)

from aioipsec.esp.packet import OpenResult  # noqa: E402
from aioipsec.esp.sa import _TAILS_V4  # noqa: E402

AEAD_ALGS = [a for a, spec in esp.ALGS.items() if spec["integ"] is None]


def best(stmt: str, ns: dict, number: int = 10000, repeat: int = 15) -> float:
    """Nanoseconds per execution of ``stmt`` (best of ``repeat`` runs, minus
    the cost of an empty statement)."""
    empty = min(timeit.repeat("pass", globals=ns, number=number, repeat=repeat))
    t = min(timeit.repeat(stmt, globals=ns, number=number, repeat=repeat))
    return max(0.0, (t - empty) / number * 1e9)


def per_packet(fn, n: int = 100) -> float:  # type: ignore[no-untyped-def]
    """Best-of-15 nanoseconds per packet of ``fn()`` handling one batch."""
    return min(timeit.repeat(fn, number=n, repeat=15)) / (n * esp.BATCH) * 1e9


def call_counts(alg: str, size: int) -> None:
    out, inb, _ek, _ik = esp.make_pair(alg)
    pkts = [esp.inner_packet(size, i) for i in range(esp.BATCH)]
    n = 200
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        inb.open_batch(out.seal_batch(pkts))
    prof.disable()
    st = pstats.Stats(prof)
    npk = n * esp.BATCH
    print("calls per packet (seal + open), cProfile:")
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][1], reverse=True)  # type: ignore[attr-defined]
    for (file, line, func), (_cc, nc, _tt, _ct, _callers) in rows:
        if nc / npk < 0.01:
            continue
        where = func if file == "~" else f"{Path(file).name}:{line}({func})"
        print(f"  {nc / npk:6.3f}  {where}")


def breakdown(alg: str, size: int) -> None:
    out, inb, ek, _ik = esp.make_pair(alg)
    pkts = [esp.inner_packet(size, i) for i in range(esp.BATCH)]
    # measured per packet: whole batches.  Opening needs fresh sequence
    # numbers, so a few sealed batches are opened by a fresh inbound SA per run.
    t_seal = per_packet(lambda: out.seal_batch(pkts))
    batches = [out.seal_batch(pkts) for _ in range(20)]
    spec = esp.ALGS[alg]
    from aioipsec.crypto import transforms as T
    from aioipsec.esp import EspSa

    runs = []
    for _ in range(15):
        sa = EspSa(spi=out.spi, encr=T.ENCR[spec["encr"]], encr_key=ek, inbound=True, replay_window=esp.WINDOW)
        t0 = timeit.default_timer()
        for b in batches:
            sa.open_batch(b)
        runs.append(timeit.default_timer() - t0)
        assert sa.stats.packets_in == len(batches) * esp.BATCH
    t_open = min(runs) / (len(batches) * esp.BATCH) * 1e9
    enc = out.codec.encr
    aead = enc.aead_obj  # type: ignore[attr-defined]
    p = pkts[7]
    d = batches[0][7]
    pt = aead.decrypt(enc.salt + d[8:16], d[16:], d[:8])  # type: ignore[attr-defined]
    tl = len(p)
    nonce, ct, aad = enc.salt + d[8:16], d[16:], d[:8]  # type: ignore[attr-defined]
    ns = dict(
        aead=aead, d=d, pt=pt, p=p, tl=tl, nonce=nonce, ct=ct, aad=aad, salt=enc.salt,  # type: ignore[attr-defined]
        unpack=struct.Struct("!II").unpack_from, v4_len=struct.Struct("!BxH").unpack_from,
        tails4=_TAILS_V4, new=tuple.__new__, R=OpenResult, tt=out.codec.tunnel_trailers(), top=10, bm=1023,
        trailer=pt[tl:], sealed_ct=aead.encrypt(nonce, pt, aad), h16=d[:16], seq=11,
        sa=out, pkts=pkts, B=esp.BATCH,
    )
    # per-batch statements are divided by the batch size ("/B" in the label)
    seal_steps = [
        ("header, nonce, AAD: record blob + 2 unpacks per batch, /B", "sa._seal_fields(B, 1000)"),
        ("byte count sum(map(len, batch)), /B", "sum(map(len, pkts))"),
        ("trailer lookup", "tt[p[0]][len(p) & 3]"),
        ("payload + trailer (copy)", "p + trailer"),
        ("AEAD encrypt (the raw call)", "aead.encrypt(nonce, pt, aad)"),
        ("header + ciphertext (copy)", "h16 + sealed_ct"),
    ]
    open_steps = [
        ("length check, SPI/seq unpack, SPI compare", "len(d) < 20; s, q = unpack(d); s != 1"),
        ("replay check + commit (in order)", "q = top + 1\nif q <= top: pass\nif q > top:\n sh = q - top\n t = q\n"
         " if sh >= 128: b = 1\n else:\n  b = (bm << sh) | 1\n  if b > 99999999999: b &= 1023"),
        ("nonce (salt + IV slice), ciphertext and AAD slices", "salt + d[8:16]; d[16:]; d[:8]"),
        ("AEAD decrypt (the raw call)", "aead.decrypt(nonce, ct, aad)"),
        ("trailer: IP length unpack, set lookup", "v, n = v4_len(pt); v >> 4 == 4 and n >= 20 and pt[n:] in tails4"),
        ("inner packet (copy)", "pt[:tl]"),
        ("result object (NamedTuple)", "new(R, (p, 4, None, seq))"),
    ]
    for name, steps, measured in (("seal", seal_steps, t_seal), ("open", open_steps, t_open)):
        print(f"{name}: {measured:.0f} ns per packet measured (batches of {esp.BATCH}); steps timed alone:")
        total = 0.0
        for label, stmt in steps:
            t = best(stmt, ns, number=1000) / esp.BATCH if label.endswith("/B") else best(stmt, ns)
            total += t
            print(f"  {t:6.0f} ns  {label}")
        print(f"  {total:6.0f} ns  sum of the steps; the rest ({measured - total:.0f} ns) is the loop itself "
              f"(iteration, locals, list append, counters)")


def open_stages(alg: str, size: int, rounds: int = 300) -> None:
    """``open_packets`` built up stage by stage: each variant adds one stage of
    the real loop and runs on the same freshly sealed batch, all variants
    interleaved per round (medians), beside the raw decrypt of one prepared
    buffer.  Nonces and AADs for the partial variants are prepared outside
    the timing; the full call includes the per-batch prelude that makes them."""
    import statistics
    import time

    from cryptography.exceptions import InvalidTag

    out, inb, _ek, _ik = esp.make_pair(alg)
    pkts = [esp.inner_packet(size, i) for i in range(esp.BATCH)]
    enc = out.codec.encr
    dec = enc.aead_obj.decrypt  # type: ignore[attr-defined]
    salt = enc.salt  # type: ignore[attr-defined]
    tails4 = _TAILS_V4
    raw_n, raw_a = bytes(12), bytes(8)
    raw_ct = enc.aead_obj.encrypt(raw_n, bytes(size + 2 + (-(size + 2)) % out.codec.block), raw_a)  # type: ignore[attr-defined]

    def raw(_b, _n, _a):  # type: ignore[no-untyped-def]
        for _ in range(esp.BATCH):
            dec(raw_n, raw_ct, raw_a)

    def sliced(b, nonces, aads):  # type: ignore[no-untyped-def]
        for d, a, nn in zip(b, aads, nonces):
            dec(nn, d[16:], a)

    def copied(b, nonces, aads):  # type: ignore[no-untyped-def]
        res = []
        app = res.append
        for d, a, nn in zip(b, aads, nonces):
            pt = dec(nn, d[16:], a)
            app(pt[: len(pt) - 2])

    def checked(b, nonces, aads):  # type: ignore[no-untyped-def]
        res = []
        app = res.append
        for d, a, nn in zip(b, aads, nonces):
            try:
                pt = dec(nn, d[16:], a)
            except InvalidTag:
                continue
            if pt[0] >> 4 == 4 and len(pt) > 20:
                tl = pt[2] << 8 | pt[3]
                if tl >= 20 and pt[tl:] in tails4:
                    app(pt[:tl])

    def full(b, _n, _a):  # type: ignore[no-untyped-def]
        inb.open_packets(b)

    variants = [
        ("raw decrypt, one prepared buffer 64 times", raw),
        ("+ ciphertext slice, 64 distinct datagrams", sliced),
        ("+ copy of the inner packet out, list append", copied),
        ("+ trailer and inner-header checks", checked),
        ("open_packets (+ prelude: heads, run check, nonces, AADs; commit, counters)", full),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    clock = time.perf_counter
    for _ in range(rounds):
        b = out.seal_batch(pkts)
        nonces = [salt + d[8:16] for d in b]
        aads = [d[:8] for d in b]
        for name, fn in variants:
            t0 = clock()
            fn(b, nonces, aads)
            times[name].append(clock() - t0)
    assert inb.stats.packets_in == rounds * esp.BATCH
    print(f"open_packets stage by stage (medians of {rounds} interleaved rounds, ns per packet):")
    for name, _ in variants:
        print(f"  {statistics.median(times[name]) / esp.BATCH * 1e9:6.0f} ns  {name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alg", choices=AEAD_ALGS, default="aes128gcm16")
    ap.add_argument("--size", type=int, default=1400)
    args = ap.parse_args(argv)
    print(f"{args.alg}, inner packets of {args.size} B, tunnel mode")
    call_counts(args.alg, args.size)
    breakdown(args.alg, args.size)
    open_stages(args.alg, args.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
