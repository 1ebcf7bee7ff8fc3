"""``aioipsec demo``: the seed's story on two in-memory gateways.

Bob (198.51.100.10) at Site A pings Lima (203.0.113.10) at HQ.  The first
packet matches a trap policy, which triggers IKE (IKEv2 by default, IKEv1 Main
Mode + Quick Mode with ``--ikev1``); each exchange step is printed, the held
pings go through once the tunnel is up, then a captured ESP packet is replayed
and another is tampered with, and the SA table shows both drops counted.

``--static`` skips IKE and installs statically keyed ESP SAs instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from .config import AuthConfig, ChildConfig, ConnectionConfig
from .crypto.transforms import parse_proposal
from .events import ChildSaInstalled, ExchangeStep, IkeSaEstablished
from .netutil import echo_reply_for, icmp_echo, parse_icmp_echo
from .selectors import parse_ts

SITE_A, HQ = "192.0.2.1", "192.0.2.2"
BOB, LIMA = "198.51.100.10", "203.0.113.10"
NET_A, NET_HQ = "198.51.100.0/24", "203.0.113.0/24"
PSK = b"demo-only-pre-shared-key-0123456789"


@dataclass
class Options:
    ikev1: bool = False
    static: bool = False
    count: int = 5
    verbose: bool = False


class Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, who: str, text: str) -> None:
        self.line(f"  [{time.monotonic() - self.t0:6.3f}s] {who:<7} {text}")


def _configs(opts: Options) -> tuple[ConnectionConfig, ConnectionConfig]:
    if opts.ikev1:
        ike = [parse_proposal("aes256-sha256-modp2048", "ike")]
        esp = [parse_proposal("aes256-sha256-modp2048", "esp")]
    else:
        ike = [parse_proposal("aes128gcm16-prfsha256-x25519", "ike")]
        esp = [parse_proposal("aes128gcm16", "esp")]

    def conn(name: str, local: str, remote: str, lnet: str, rnet: str, lid: str, rid: str, trap: bool) -> ConnectionConfig:
        child = ChildConfig(
            name="lan",
            local_ts=[parse_ts(lnet)],
            remote_ts=[parse_ts(rnet)],
            esp_proposals=list(esp),
            start_action="trap" if trap else "none",
        )
        return ConnectionConfig(
            name=name,
            version=1 if opts.ikev1 else 2,
            local_addrs=[local],
            remote_addrs=[remote],
            proposals=list(ike),
            local=AuthConfig(auth="psk", id=lid if not opts.ikev1 else local),
            remote=AuthConfig(auth="psk", id=rid if not opts.ikev1 else remote),
            children={"lan": child},
            psk=PSK,
        )

    a = conn("hq", SITE_A, HQ, NET_A, NET_HQ, "site-a.example", "hq.example", True)
    h = conn("site-a", HQ, SITE_A, NET_HQ, NET_A, "hq.example", "site-a.example", False)
    return a, h


class Host:
    """A host behind a gateway: sends pings, answers pings, counts replies."""

    def __init__(self, name: str, addr: str, app_end: Any) -> None:
        self.name = name
        self.addr = addr
        self.end = app_end
        self.replies: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            for pkt in await self.end.recv_batch():
                info = parse_icmp_echo(pkt)
                if info is None or info[1] != self.addr:
                    continue
                if info[2] == 8:
                    reply = echo_reply_for(pkt)
                    if reply:
                        self.end.send_batch([reply])
                elif info[2] == 0:
                    self.replies.append(info[4])

    def ping(self, dst: str, seq: int) -> None:
        self.end.send_batch([icmp_echo(self.addr, dst, 0x4242, seq, b"aioipsec demo payload")])

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


_SHORT = {
    "NAT_DETECTION_SOURCE_IP": "NATD_S_IP",
    "NAT_DETECTION_DESTINATION_IP": "NATD_D_IP",
    "IKEV2_FRAGMENTATION_SUPPORTED": "FRAG_SUP",
    "SIGNATURE_HASH_ALGORITHMS": "HASH_ALG",
    "INITIAL_CONTACT": "INIT_CONTACT",
    "NONCE": "No",
}


def _step_text(ev: ExchangeStep) -> str:
    """``IKE_AUTH request 1 sent [ IDi IDr AUTH SA TSi TSr ]``, strongSwan-style."""
    d = ev.details or {}
    payloads = d.get("payloads")
    if not payloads or "kind" not in d:
        return ev.text
    for long, short in _SHORT.items():
        payloads = payloads.replace(long, short)
    name, _, verb = ev.text.rpartition(" ")
    return f"{name} {d['kind']} {d.get('mid', '')} {verb} [ {payloads} ]".replace("  ", " ")


def sa_table(endpoints: list[tuple[str, Any]]) -> list[str]:
    from .status import child_rows

    lines = []
    header = f"{'gateway':<8} {'child':<6} {'dir':<4} {'spi':<10} {'proposal':<24} {'pkts':>6} {'bytes':>7} {'replay':>7} {'integ':>6} {'malf':>5}"
    lines.append(header)
    lines.append("-" * len(header))
    for gw, ep in endpoints:
        for row in child_rows(ep):
            lines.append(
                f"{gw:<8} {row['child']:<6} {'in':<4} {row['spi_in']:<10} {row['proposal']:<24} "
                f"{row['packets_in']:>6} {row['bytes_in']:>7} {row['replay_failed']:>7} {row['integrity_failed']:>6} {row['malformed']:>5}"
            )
            lines.append(
                f"{'':<8} {'':<6} {'out':<4} {row['spi_out']:<10} {'':<24} {row['packets_out']:>6} {row['bytes_out']:>7}"
            )
    return lines


async def run_demo(opts: Options, out: TextIO = sys.stdout) -> int:
    from .asyncio.endpoint import Endpoint
    from .asyncio.sockets import MemoryNetwork
    from .transports.memory import memory_pipe

    p = Printer(out)
    net = MemoryNetwork()
    captured: list[tuple[tuple[str, int], bytes, tuple[str, int]]] = []
    net.tap = lambda src, data, dst: captured.append((src, data, dst))  # type: ignore[attr-defined]
    conf_a, conf_h = _configs(opts)
    a_gw, a_app = memory_pipe()
    h_gw, h_app = memory_pipe()
    mode = "static keys" if opts.static else ("IKEv1 Main Mode + Quick Mode, PSK" if opts.ikev1 else "IKEv2, PSK")
    p.line("aioipsec demo: two gateways on an in-memory network")
    p.line(f"  site-a {SITE_A:<11} protects {NET_A:<16} Bob  {BOB}")
    p.line(f"  hq     {HQ:<11} protects {NET_HQ:<16} Lima {LIMA}")
    p.line(f"  negotiation: {mode}; ESP {conf_a.children['lan'].esp_proposals[0]}, tunnel mode, replay window 64")
    p.line()

    ep_a = await Endpoint.create(SITE_A, configurations=[conf_a], network=net, inner=a_gw, respond=not opts.static)
    ep_h = await Endpoint.create(HQ, configurations=[conf_h], network=net, inner=h_gw)
    installed = asyncio.Event()

    def listener(who: str) -> Any:
        def on_event(proto: Any, ev: Any) -> None:
            if isinstance(ev, ExchangeStep):
                p.step(who, _step_text(ev))
            elif isinstance(ev, IkeSaEstablished):
                p.step(who, f"IKE SA established: IKEv{ev.version} {ev.algorithms}, "
                       f"{ev.local_id} <-> {ev.remote_id}, SPIs {ev.spi_i.hex()}_i {ev.spi_r.hex()}_r")
            elif isinstance(ev, ChildSaInstalled):
                p.step(who, f"CHILD_SA {ev.name} installed: SPIs in 0x{ev.spi_in:08x} out 0x{ev.spi_out:08x}, "
                       f"{' === '.join([', '.join(map(str, ev.local_ts)), ', '.join(map(str, ev.remote_ts))])}")
                if who == "site-a":
                    installed.set()
        return on_event

    ep_a.event_listeners.append(listener("site-a"))
    ep_h.event_listeners.append(listener("hq"))
    bob, lima = Host("Bob", BOB, a_app), Host("Lima", LIMA, h_app)
    bob.start()
    lima.start()
    try:
        if opts.static:
            _install_static(ep_a, ep_h, conf_a)
            installed.set()
        p.line(f"Bob pings Lima ({opts.count} echo requests){'; the first one triggers IKE' if not opts.static else ''}:")
        for seq in range(1, opts.count + 1):
            bob.ping(LIMA, seq)
            if seq == 1:
                try:
                    await asyncio.wait_for(installed.wait(), 20)
                except TimeoutError:
                    p.line("  tunnel did not come up")
                    return 1
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + 5
        while len(bob.replies) < opts.count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        p.line()
        p.line(f"ping {LIMA} from {BOB}: {opts.count} sent, {len(set(bob.replies))} replies"
               + ("" if opts.static else " (the first ones held while negotiating, then delivered)"))
        esp = [(s, d, t) for s, d, t in captured if t[1] in (0, 4500) and d[:4] != b"\x00\x00\x00\x00" and len(d) > 8]
        if not esp:
            p.line("no ESP packet was captured")
            return 1
        src, data, dst = esp[0]
        p.line(f"replay: re-sending a captured ESP packet (spi 0x{data[:4].hex()}, seq {int.from_bytes(data[4:8], 'big')}) to {dst[0]}")
        net._send(src, data, dst)
        await asyncio.sleep(0.05)
        tampered: list[bytes] = []

        def flip_icv(src: Any, data: bytes, dst: Any) -> bytes:
            if not tampered and dst[1] in (0, 4500) and data[:4] != b"\x00\x00\x00\x00" and len(data) > 8:
                bad = bytearray(data)
                bad[-1] ^= 0x01
                tampered.append(bytes(bad))
                return bytes(bad)
            return data

        net.mangle = flip_icv
        bob.ping(LIMA, opts.count + 1)
        await asyncio.sleep(0.05)
        net.mangle = None
        if tampered:
            p.line(f"tamper: an on-path attacker flips one bit of the next ESP packet's ICV "
                   f"(spi 0x{tampered[0][:4].hex()}, seq {int.from_bytes(tampered[0][4:8], 'big')}); that ping is lost")
        await asyncio.sleep(0.05)
        p.line()
        p.line("Security Associations (counters as 'show crypto ipsec sa' would report them):")
        for line in sa_table([("site-a", ep_a), ("hq", ep_h)]):
            p.line("  " + line)
        from .status import child_rows

        rows = child_rows(ep_a) + child_rows(ep_h)
        replays = sum(r["replay_failed"] for r in rows)
        integ = sum(r["integrity_failed"] for r in rows)
        ok = len(set(bob.replies) & set(range(1, opts.count + 1))) == opts.count and replays >= 1 and integ >= 1
        p.line()
        p.line("result: " + ("tunnel up, all pings answered, replay and tamper dropped and counted" if ok else "FAILED"))
        if not opts.static:
            p.line()
            p.line("shutting down: site-a deletes the IKE SA")
        return 0 if ok else 1
    finally:
        await bob.stop()
        await lima.stop()
        await ep_a.close()
        await ep_h.close()


def _install_static(ep_a: Any, ep_h: Any, conf: ConnectionConfig) -> None:
    """Statically keyed SAs (no IKE): both directions from fixed random keys."""
    child = conf.children["lan"]
    encr = child.esp_proposals[0].encr[0]
    k1, k2 = os.urandom(encr.key_len), os.urandom(encr.key_len)
    common = dict(
        name="lan", protocol="esp", mode="tunnel", encr=encr, integ=None, integ_key_in=b"", integ_key_out=b"",
        esn=False, encap=True, initiator=True, replay_window=64, algorithms=str(child.esp_proposals[0]),
    )
    ev_a = ChildSaInstalled(
        spi_in=0xC0000001, spi_out=0xC0000002, encr_key_in=k1, encr_key_out=k2,
        local_ts=(parse_ts(NET_A),), remote_ts=(parse_ts(NET_HQ),),
        local_addr=(SITE_A, 4500), remote_addr=(HQ, 4500), **common,  # type: ignore[arg-type]
    )
    ev_h = ChildSaInstalled(
        spi_in=0xC0000002, spi_out=0xC0000001, encr_key_in=k2, encr_key_out=k1,
        local_ts=(parse_ts(NET_HQ),), remote_ts=(parse_ts(NET_A),),
        local_addr=(HQ, 4500), remote_addr=(SITE_A, 4500), **common,  # type: ignore[arg-type]
    )
    for ep, ev, who in ((ep_a, ev_a, "site-a"), (ep_h, ev_h, "hq")):
        ep.dataplane.install(None, ev)
        for listener in ep.event_listeners:
            listener(None, ev)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="aioipsec demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ikev1", action="store_true", help="IKEv1 Main Mode + Quick Mode instead of IKEv2")
    ap.add_argument("--static", action="store_true", help="statically keyed SAs, no IKE")
    ap.add_argument("-c", "--count", type=int, default=5, help="pings to send")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    ns = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.WARNING, format="%(name)s: %(message)s")
    opts = Options(ikev1=ns.ikev1, static=ns.static, count=ns.count, verbose=ns.verbose)
    return asyncio.run(run_demo(opts))
