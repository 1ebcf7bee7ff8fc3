"""Bounded traffic and capture helpers for the namespace tests: ping, iperf3
(TCP and UDP), tcpdump counts.  Every command runs with a timeout; background
processes are started through the namespace (recorded, stopped by PID)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from interop.netns import Namespace, NamespaceProcess, Side, Topology

IPERF_PORT = 5201


def ping(src: Side, dst_ip: str, *, count: int = 3, interval: float = 0.2, wait: float = 2.0,
         source: str | None = None) -> tuple[int, int]:
    """(sent, received) of a bounded ping from ``src``'s inner address."""
    proc = src.ns.run(["ping", "-c", str(count), "-i", str(interval), "-W", str(wait),
                       "-I", source or src.inner4, dst_ip], timeout=count * (interval + wait) + 5, check=False)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    if m is None:
        return 0, 0
    return int(m.group(1)), int(m.group(2))


@dataclass
class IperfResult:
    bits_per_second: float
    retransmits: int | None
    raw: dict[str, Any]

    @property
    def mbps(self) -> float:
        return self.bits_per_second / 1e6


def iperf3(client: Side, server: Side, *, seconds: int = 3, udp_bitrate: str | None = None,
           length: int | None = None, server_ip: str | None = None, client_ip: str | None = None,
           port: int = IPERF_PORT, extra: tuple[str, ...] = ()) -> IperfResult:
    """One bounded iperf3 run from ``client`` to ``server`` (TCP unless
    ``udp_bitrate``); the server serves this one test (``-1``) and exits."""
    sip = server_ip or server.inner4
    cip = client_ip or client.inner4
    srv = server.ns.popen(["iperf3", "-s", "-1", "-B", sip, "-p", str(port)])
    try:
        args = ["iperf3", "-c", sip, "-B", cip, "-p", str(port), "-t", str(seconds), "-J", *extra]
        if udp_bitrate is not None:
            args += ["-u", "-b", udp_bitrate]
        if length is not None:
            args += ["-l", str(length)]
        deadline = time.monotonic() + 5
        while True:
            proc = client.ns.run(args, timeout=seconds + 20, check=False)
            try:
                data = json.loads(proc.stdout)
            except ValueError:
                data = {"error": proc.stdout + proc.stderr}
            # the server may not listen yet: retry connection refusals briefly
            if "error" in data and "refused" in str(data["error"]) and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            break
        if "error" in data:
            raise AssertionError(f"iperf3 failed: {data['error']}")
        end = data["end"]
        if udp_bitrate is not None:
            s = end["sum"]
            return IperfResult(float(s["bits_per_second"]) * (1 - s.get("lost_percent", 0) / 100), None, data)
        return IperfResult(float(end["sum_received"]["bits_per_second"]),
                           end["sum_sent"].get("retransmits"), data)
    finally:
        srv.stop(grace=2)


class Capture:
    """``tcpdump -i IFACE FILTER`` in a namespace; :meth:`stop` returns the
    number of packets it captured."""

    def __init__(self, ns: Namespace, iface: str, bpf: str) -> None:
        self.proc: NamespaceProcess = ns.popen(["tcpdump", "-i", iface, "-n", "-l", "-q", "-p", bpf])
        self.ns = ns
        time.sleep(0.3)  # tcpdump needs a moment before it captures

    def lines(self) -> list[str]:
        return [ln for ln in self.proc.output().splitlines() if re.match(r"^\d\d:\d\d:\d\d", ln)]

    def wait_for(self, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while len(self.lines()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.lines())

    def stop(self) -> int:
        self.proc.stop(grace=2)
        return len(self.lines())


def outer_addresses(topo: Topology) -> tuple[str, str]:
    return topo.left.outer4, topo.right.outer4
