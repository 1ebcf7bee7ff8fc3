"""The TUN plugin (``aioipsec_tun.TunTransport``) on its own, in a private
network namespace: packets the kernel routes into the device are read in
batches, packets written are delivered to the kernel (an echo reply answers
``ping``), the counters add up, and closing removes the device."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioipsec.netutil import echo_reply_for, parse_icmp_echo
from interop.netns import Namespace, _new_namespace

pytun = pytest.importorskip("pytun")


@pytest.fixture
def tun_ns(netns_run_dir: Path) -> Iterator[Namespace]:
    from interop.netns import run_prefix

    ns = _new_namespace(f"{run_prefix()}tun", netns_run_dir)
    try:
        yield ns
    finally:
        ns.stop_processes()
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=10)


async def test_tun_transport_ping_echo(tun_ns: Namespace) -> None:
    from aioipsec_tun import TunTransport

    with tun_ns.entered():  # the device (and its address) is created in the namespace
        tun = TunTransport("aiotest0", mtu=1400, addresses=["198.51.100.1/24"])
    try:
        assert tun.name == "aiotest0" and tun.mtu == 1400
        link = tun_ns.run(["ip", "-o", "link", "show", "aiotest0"]).stdout
        assert "mtu 1400" in link and "qlen 5000" in link
        answered = 0

        async def responder() -> None:
            nonlocal answered
            while True:
                for pkt in await tun.recv_batch():
                    info = parse_icmp_echo(pkt)
                    if info is not None and info[1] == "198.51.100.2" and info[2] == 8:
                        tun.send_batch([echo_reply_for(pkt)])  # type: ignore[list-item]
                        answered += 1

        task = asyncio.get_running_loop().create_task(responder())
        try:
            proc = await asyncio.create_subprocess_exec(
                *tun_ns.exec_argv(["ping", "-c", "5", "-i", "0.2", "-W", "2", "198.51.100.2"]),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 15)
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        assert b"5 packets transmitted, 5 received" in out, out.decode(errors="replace")
        assert answered == 5
        assert tun.rx_packets >= 5 and tun.tx_packets == 5
        assert tun.rx_dropped == 0 and tun.tx_dropped == 0
        # garbage written to the device is refused by the kernel, counted, never raised
        tun.send_batch([b"\x00\x01"])
        assert tun.tx_dropped == 1 and tun.tx_packets == 5
    finally:
        tun.close()
    gone = tun_ns.run(["ip", "link", "show", "aiotest0"], check=False)
    assert gone.returncode != 0
