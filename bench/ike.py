"""IKEv2 handshake rate and memory per established SA, sans-I/O in one process.

Both peers are :class:`~aioipsec.ike.v2.session.IkeSessionV2` objects joined
by a list: the initiator's datagrams go straight into the responder and back
(the responder is created on the first IKE_SA_INIT, as the endpoint does).
One handshake = IKE_SA_INIT + IKE_AUTH with the first Child SA, both sides'
work, ending with ``IkeSaEstablished`` and ``ChildSaInstalled`` on both.

- ``handshakes``: handshakes per CPU second (``pps``, process CPU time, so
  other jobs on a shared machine do not skew it; ``wall_pps`` beside it) for
  PSK + X25519 and for ECDSA P-256 certificates + X25519 (IKE
  aes128gcm16-prfsha256-x25519, ESP aes128gcm16; ``ecdsa-p256`` presents the
  same certificates every time, so after the first handshake their chains
  come from ``verify_chain``'s memory, as for a peer that reconnects;
  ``ecdsa-p256-fresh`` verifies them every time, as for peers not seen
  before); median over rounds, with
  the time spent in the key exchange and signature primitives alone measured
  beside it (``crypto_share``: their fraction of a handshake).
- ``memory``: ``tracemalloc`` bytes per established IKE SA + Child SA with
  1,000 and 10,000 handshakes held established (both sides kept: per SA =
  traced bytes / (2 x pairs)); ``with_esp`` adds the inbound + outbound
  :class:`~aioipsec.esp.EspSa` a gateway builds from each ChildSaInstalled.

``--json`` prints ``{"handshakes": [{"auth", "pps", "wall_pps", "ms", "crypto_share"}],
"memory": [{"sas", "bytes_per_sa", "bytes_per_sa_with_esp"}]}``.

    python bench/ike.py [--quick] [--json] [--no-memory] [--sas N ...] [--auth psk|ecdsa-p256|ecdsa-p256-fresh]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aioipsec.config import AuthConfig, ConnectionConfig, child, connection  # noqa: E402
from aioipsec.esp import esp_sa_pair_from_event  # noqa: E402
from aioipsec.events import ChildSaInstalled, IkeSaEstablished  # noqa: E402
from aioipsec.ike.auth import forget_verified_chains  # noqa: E402
from aioipsec.ike.v2.session import IkeSessionV2  # noqa: E402

I_ADDR = ("192.0.2.1", 500)
R_ADDR = ("192.0.2.2", 500)
IKE = ["aes128gcm16-prfsha256-x25519"]
ESP = ["aes128gcm16"]
WALL = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def configs(auth: str) -> tuple[ConnectionConfig, ConnectionConfig]:
    ic = child("lan", local_ts=["198.51.100.0/24"], remote_ts=["203.0.113.0/24"], esp_proposals=ESP)
    rc = child("lan", local_ts=["203.0.113.0/24"], remote_ts=["198.51.100.0/24"], esp_proposals=ESP)
    psk = "bench pre-shared key, not a secret"
    i = connection("a", psk=psk, local_id="a.example", remote_id="b.example", proposals=IKE, children=[ic])
    r = connection("b", psk=psk, local_id="b.example", remote_id="a.example", proposals=IKE, children=[rc])
    if auth == "ecdsa-p256":
        ca, ca_key, (ia, ka), (ib, kb) = _pki()
        i.psk = r.psk = None
        i.local = AuthConfig(auth="pubkey", id="a.example", cert=ia, private_key=ka)
        i.remote = AuthConfig(auth="pubkey", id="b.example", cacerts=[ca])
        r.local = AuthConfig(auth="pubkey", id="b.example", cert=ib, private_key=kb)
        r.remote = AuthConfig(auth="pubkey", id="a.example", cacerts=[ca])
    return i, r


def _pki() -> tuple[Any, Any, tuple[Any, Any], tuple[Any, Any]]:
    """A P-256 CA and two P-256 host certificates (SAN a.example / b.example)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    start, end = WALL - datetime.timedelta(days=1), WALL + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("bench CA")).issuer_name(name("bench CA"))
        .public_key(ca_key.public_key()).serial_number(1).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    hosts = []
    for serial, fqdn in ((2, "a.example"), (3, "b.example")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(name(fqdn)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(serial).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        hosts.append((cert, key))
    return ca, ca_key, hosts[0], hosts[1]


def handshake(icfg: ConnectionConfig, rcfg: ConnectionConfig, *, fresh: bool = False) -> tuple[IkeSessionV2, IkeSessionV2]:
    """One IKE_SA_INIT + IKE_AUTH between two fresh sessions; both established.
    ``fresh``: the peers' certificate chains are verified afresh (as for a
    peer not seen before), not taken from ``verify_chain``'s memory."""
    if fresh:
        forget_verified_chains()
    wall = lambda: WALL  # noqa: E731 - certificate validity is checked against this
    i = IkeSessionV2(configuration=icfg, is_initiator=True, local_addr=I_ADDR, remote_addr=R_ADDR, wall_clock=wall)
    i.initiate(0.0, child="lan")
    r: IkeSessionV2 | None = None
    for _ in range(8):
        sent = i.datagrams_to_send(0.0)
        for data, _addr in sent:
            if r is None:
                r = IkeSessionV2.respond(configurations=[rcfg], local_addr=R_ADDR, remote_addr=I_ADDR, wall_clock=wall)
            r.receive_datagram(data, I_ADDR, 0.0)
        back = r.datagrams_to_send(0.0) if r is not None else []
        for data, _addr in back:
            i.receive_datagram(data, R_ADDR, 0.0)
        if not sent and not back:
            break
    if r is None or not (i.is_established and r.is_established):
        raise RuntimeError("handshake did not complete")
    return i, r


def events(s: IkeSessionV2) -> list[Any]:
    out = []
    while (ev := s.next_event()) is not None:
        out.append(ev)
    return out


def crypto_cost(auth: str) -> float:
    """Seconds per handshake spent in the public-key primitives alone: two
    X25519 key generations and exchanges, and for certificates two ECDSA
    P-256 signatures and two AUTH verifications, plus the two certificate
    signature verifications when the chains are verified afresh
    (``ecdsa-p256-fresh``)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, x25519

    n = 200
    peer = x25519.X25519PrivateKey.generate().public_key()
    t0 = time.process_time()
    for _ in range(n):
        for _side in range(2):
            x25519.X25519PrivateKey.generate().exchange(peer)
    cost = (time.process_time() - t0) / n
    if auth.startswith("ecdsa-p256"):
        verifications = 2 if auth.endswith("-fresh") else 1
        key = ec.generate_private_key(ec.SECP256R1())
        data = os.urandom(400)
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
        pub = key.public_key()
        t0 = time.process_time()
        for _ in range(n):
            for _side in range(2):
                key.sign(data, ec.ECDSA(hashes.SHA256()))
                for _v in range(verifications):
                    pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
        cost += (time.process_time() - t0) / n
    return cost


def bench_handshakes(auth: str, rounds: int, per_round: int) -> dict[str, Any]:
    fresh = auth.endswith("-fresh")
    icfg, rcfg = configs(auth.removesuffix("-fresh"))
    i, r = handshake(icfg, rcfg)  # warm up, and check the outcome once
    assert any(isinstance(e, ChildSaInstalled) for e in events(i))
    assert any(isinstance(e, IkeSaEstablished) for e in events(r))
    rates, walls, crypto = [], [], []
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(per_round):
            handshake(icfg, rcfg, fresh=fresh)
        rates.append(per_round / (time.process_time() - c0))
        walls.append(per_round / (time.perf_counter() - t0))
        crypto.append(crypto_cost(auth))
    pps = statistics.median(rates)
    return dict(
        auth=auth,
        pps=round(pps),
        wall_pps=round(statistics.median(walls)),
        ms=round(1e3 / pps, 3),
        crypto_share=round(statistics.median(crypto) * pps, 3),
    )


def bench_memory(n: int) -> dict[str, Any]:
    """Bytes per established IKE SA + Child SA with ``n`` handshakes held."""
    icfg, rcfg = configs("psk")
    handshake(icfg, rcfg)  # first-use caches (imports, tables) stay out of the figure
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    held: list[tuple[IkeSessionV2, IkeSessionV2]] = []
    for _ in range(n):
        i, r = handshake(icfg, rcfg)
        events(i)  # a gateway consumes the events; keep only what the sessions hold
        installed = [e for e in events(r) if isinstance(e, ChildSaInstalled)]
        held.append((i, r))
    gc.collect()
    sessions = tracemalloc.get_traced_memory()[0] - base
    # the data plane's share: inbound + outbound ESP SA per Child SA (one side's)
    esp = [esp_sa_pair_from_event(installed[0]) for _ in range(min(n, 1000))]
    gc.collect()
    with_esp = tracemalloc.get_traced_memory()[0] - base - sessions
    tracemalloc.stop()
    assert all(i.is_established and r.is_established for i, r in held)
    per_sa = sessions / (2 * n)
    per_esp_pair = with_esp / len(esp)
    del held, esp
    return dict(sas=n, bytes_per_sa=round(per_sa), bytes_per_sa_with_esp=round(per_sa + per_esp_pair))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and 1,000 SAs only (under ~15 s)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    ap.add_argument("--sas", action="append", type=int, help="SAs held for the memory figure (default 1000 and 10000)")
    ap.add_argument("--auth", action="append", choices=["psk", "ecdsa-p256", "ecdsa-p256-fresh"], help="only these")
    ap.add_argument("--rounds", type=int, help="timed rounds per authentication method (median)")
    ap.add_argument("--per-round", type=int, help="handshakes per round")
    args = ap.parse_args(argv)
    rounds, per_round = (5, 40) if args.quick else (9, 100)
    rounds, per_round = args.rounds or rounds, args.per_round or per_round
    started = time.perf_counter()
    hs = [bench_handshakes(a, rounds, per_round) for a in (args.auth or ["psk", "ecdsa-p256", "ecdsa-p256-fresh"])]
    mem: list[dict[str, Any]] = []
    if not args.no_memory:
        for n in args.sas or ([1000] if args.quick else [1000, 10000]):
            mem.append(bench_memory(n))
    if args.json:
        print(json.dumps({"handshakes": hs, "memory": mem}))
        return 0
    for h in hs:
        print(f"{h['auth']:<16} {h['pps']:>6,} handshakes per CPU second ({h['ms']:.2f} ms each, "
              f"{h['crypto_share']:.0%} of it in X25519/ECDSA primitives; wall clock {h['wall_pps']:,}/s)")
    for m in mem:
        print(f"{m['sas']:>6,} SAs held: {m['bytes_per_sa'] / 1024:5.1f} KiB per IKE SA + Child SA "
              f"({m['bytes_per_sa_with_esp'] / 1024:.1f} KiB with its inbound+outbound EspSa)")
    print(f"({rounds} rounds of {per_round} handshakes, {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
