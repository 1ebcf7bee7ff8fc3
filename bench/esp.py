"""ESP seal/open throughput beside the raw ``cryptography`` call rate.

For AES-GCM-128, AES-GCM-256, ChaCha20-Poly1305 and AES-CBC + HMAC-SHA256,
and inner packets of 64, 512 and 1400 bytes (tunnel mode, batches of 64):

- ``seal``: ``EspSa.seal_batch_parts`` packets/s, the call the data plane
  makes in tunnel mode: each packet as its 16-byte header and its
  ciphertext + ICV, which the UDP socket sends gathered (one ``sendmsg``
  per GSO run, the kernel joins them), so no copy joins them here;
- ``seal_bytes``: ``EspSa.seal_batch`` packets/s, each packet one ``bytes``
  (transport mode and callers that need contiguous packets);
- ``open``: ``EspSa.open_packets`` packets/s, the call the data plane makes
  in tunnel mode (delivered packets only; replay check + commit included,
  every packet a fresh sequence number);
- ``open_results``: ``EspSa.open_batch`` packets/s, the older API with one
  ``OpenResult`` per datagram (transport mode and callers that need the
  reason for each drop);
- beside each, the raw rate of the same primitive on the same plaintext
  size (AEAD: one ``encrypt``/``decrypt`` call with prepared arguments;
  CBC+HMAC: one CBC encryptor/decryptor plus one HMAC), timed in the same
  run, batch by batch between the ESP batches, and the ratio ESP / raw.

Rates are ``64 / typical batch time`` (see :func:`measure`, :func:`typical`).  The whole run
stays under ~60 s (``--quick``: under ~10 s).  ``--json`` prints one object
``{"results": [{"alg", "size", "op", "pps", "aead_pps", "ratio"}]}`` with ops
``seal`` (``seal_batch_parts``), ``seal_bytes`` (``seal_batch``), ``open``
(``open_packets``) and ``open_results`` (``open_batch``).

    python bench/esp.py [--quick] [--json] [--alg NAME ...] [--size N ...] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from operator import add
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes, hmac  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305  # noqa: E402

from aioipsec.crypto import transforms as T  # noqa: E402
from aioipsec.esp import EspSa  # noqa: E402
from aioipsec.esp.ip import ipv4_header  # noqa: E402

BATCH = 64
WINDOW = 64
MIN_STEPS = 50
MAX_STEPS = 20000
ALGS = {
    "aes128gcm16": dict(encr="aes128gcm16", integ=None),
    "aes256gcm16": dict(encr="aes256gcm16", integ=None),
    "chacha20poly1305": dict(encr="chacha20poly1305", integ=None),
    "aes128-sha256": dict(encr="aes128", integ="sha256"),
}
SIZES = (64, 512, 1400)


def inner_packet(size: int, i: int) -> bytes:
    body = bytes((i + j) & 0xFF for j in range(size - 28))
    udp = struct.pack("!HHHH", 5000, 6000, 8 + len(body), 0) + body
    return ipv4_header("198.51.100.1", "203.0.113.1", 17, len(udp), ident=i) + udp


def make_pair(alg: str) -> tuple[EspSa, EspSa, bytes, bytes]:
    spec = ALGS[alg]
    encr = T.ENCR[spec["encr"]]
    integ = T.INTEG[spec["integ"]] if spec["integ"] else None
    ek = os.urandom(encr.key_len)
    ik = os.urandom(integ.key_len) if integ else b""
    kw = dict(spi=0x1001, encr=encr, encr_key=ek, integ=integ, integ_key=ik, replay_window=WINDOW)
    return EspSa(inbound=False, **kw), EspSa(inbound=True, **kw), ek, ik


def raw_ops(alg: str, ek: bytes, ik: bytes, pt_len: int) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """(seal_n, open_n): n raw primitive calls on ``pt_len`` bytes."""
    pt = os.urandom(pt_len)
    aad = os.urandom(8)
    if ALGS[alg]["integ"] is None:
        key, salt = ek[:-4], ek[-4:]
        aead = ChaCha20Poly1305(key) if alg.startswith("chacha") else AESGCM(key)
        nonce = salt + os.urandom(8)
        ct = aead.encrypt(nonce, pt, aad)
        enc, dec = aead.encrypt, aead.decrypt

        def seal_n(n: int) -> None:
            for _ in range(n):
                enc(nonce, pt, aad)

        def open_n(n: int) -> None:
            for _ in range(n):
                dec(nonce, ct, aad)

        return seal_n, open_n
    aes = algorithms.AES(ek)
    tmpl = hmac.HMAC(ik, hashes.SHA256())
    iv = os.urandom(16)
    c = Cipher(aes, modes.CBC(iv)).encryptor()
    ct = c.update(pt) + c.finalize()

    def seal_cbc(n: int) -> None:
        for _ in range(n):
            e = Cipher(aes, modes.CBC(iv)).encryptor()
            out = e.update(pt) + e.finalize()
            h = tmpl.copy()
            h.update(out)
            h.finalize()

    def open_cbc(n: int) -> None:
        for _ in range(n):
            h = tmpl.copy()
            h.update(ct)
            h.finalize()
            d = Cipher(aes, modes.CBC(iv)).decryptor()
            d.update(ct) + d.finalize()

    return seal_cbc, open_cbc


def typical(times: list[float]) -> float:
    """Mean batch time without the batches that took over twice the median
    (another job had the CPU): recurring costs such as garbage collection
    stay in, scheduler interruptions go out."""
    cut = 2 * statistics.median(times)
    kept = [t for t in times if t <= cut]
    return sum(kept) / len(kept)


def measure(alg: str, size: int, budget: float) -> list[dict]:
    """Seal and open rates beside the raw primitive rates for one cell.

    Every step times one batch of ``BATCH`` packets: seal a batch with
    ``seal_batch_parts``, join its parts (untimed: the kernel's gather does
    that on the wire) and open it with ``open_packets``, seal another with
    ``seal_batch`` and open it with ``open_batch``, then ``BATCH`` raw
    encryptions and ``BATCH`` raw decryptions, so the six figures are taken
    side by side, finely interleaved.  Rates come from
    :func:`typical` batch times: on a shared machine a batch during which the
    scheduler ran another job is an outlier that would swamp a plain mean,
    while a plain median would hide costs that recur every few batches (the
    garbage collector runs every ~11 opened batches)."""
    out, inb, ek, ik = make_pair(alg)
    pkts = [inner_packet(size, i) for i in range(BATCH)]
    block = out.codec.block
    pt_len = size + 2 + (-(size + 2)) % block  # the ESP plaintext the primitive sees
    raw_seal, raw_open = raw_ops(alg, ek, ik, pt_len)

    clock = time.perf_counter
    seal_t: list[float] = []
    seal_bytes_t: list[float] = []
    open_t: list[float] = []
    open_res_t: list[float] = []
    raw_seal_t: list[float] = []
    raw_open_t: list[float] = []
    deadline = clock() + budget
    steps = 0
    while steps < MIN_STEPS or (clock() < deadline and steps < MAX_STEPS):
        # seal a batch, open it, free it: like a data plane, and without keeping
        # megabytes of packets alive (cold memory would dominate the figures)
        t0 = clock()
        heads, bodies = out.seal_batch_parts(pkts)
        t1 = clock()
        sealed = list(map(add, heads, bodies))
        t1b = clock()
        inb.open_packets(sealed)
        t2 = clock()
        sealed = out.seal_batch(pkts)
        t3 = clock()
        inb.open_batch(sealed)
        t4 = clock()
        raw_seal(BATCH)
        t5 = clock()
        raw_open(BATCH)
        t6 = clock()
        seal_t.append(t1 - t0)
        open_t.append(t2 - t1b)
        seal_bytes_t.append(t3 - t2)
        open_res_t.append(t4 - t3)
        raw_seal_t.append(t5 - t4)
        raw_open_t.append(t6 - t5)
        steps += 1
    assert inb.stats.replay_failed == 0 and inb.stats.integrity_failed == 0
    assert inb.stats.packets_in == 2 * steps * BATCH
    results = []
    for op, esp, raw in (("seal", seal_t, raw_seal_t), ("seal_bytes", seal_bytes_t, raw_seal_t), ("open", open_t, raw_open_t),
                         ("open_results", open_res_t, raw_open_t)):
        t_esp, t_raw = typical(esp), typical(raw)
        results.append(
            dict(alg=alg, size=size, op=op, pps=round(BATCH / t_esp), aead_pps=round(BATCH / t_raw), ratio=round(t_raw / t_esp, 3))
        )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer batches, under ~10 s")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--alg", action="append", choices=list(ALGS), help="only these algorithms")
    ap.add_argument("--size", action="append", type=int, help="only these inner packet sizes")
    ap.add_argument("--budget", type=float, help="seconds for the whole run (default 48, --quick 7)")
    args = ap.parse_args(argv)
    algs = args.alg or list(ALGS)
    sizes = args.size or list(SIZES)
    total = args.budget or (7.0 if args.quick else 48.0)
    budget = total / (len(algs) * len(sizes))
    started = time.perf_counter()
    results: list[dict] = []
    if not args.json:
        print("seal = EspSa.seal_batch_parts, open = EspSa.open_packets (the data plane's calls); "
              "seal_bytes = EspSa.seal_batch, open_results = EspSa.open_batch")
        print(f"{'alg':<18}{'size':>6} {'op':<13}{'esp pkt/s':>12}{'raw pkt/s':>12}{'ratio':>8}")
    for alg in algs:
        for size in sizes:
            for r in measure(alg, size, budget):
                results.append(r)
                if not args.json:
                    print(f"{r['alg']:<18}{r['size']:>6} {r['op']:<13}{r['pps']:>12,}{r['aead_pps']:>12,}{r['ratio']:>8.3f}")
    if args.json:
        print(json.dumps({"results": results}))
    else:
        print(f"(interleaved batch timings, batches of {BATCH}, {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
