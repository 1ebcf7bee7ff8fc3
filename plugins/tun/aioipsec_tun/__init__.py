"""Linux TUN inner transport for aioipsec (python-pytun).

Registered under the ``aioipsec.transports`` entry-point group as ``tun``.
Reads are batched: one readiness event drains the device until ``EAGAIN``;
writes never block: a full device queue drops the packet and counts it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
from collections import deque
from collections.abc import Sequence

logger = logging.getLogger("aioipsec.tun")

MAX_BATCH = 256


class TunTransport:
    """A TUN device as an :class:`aioipsec.transports.base.InnerTransport`."""

    def __init__(
        self,
        name: str = "aioipsec0",
        *,
        mtu: int = 1400,
        addresses: Sequence[str] = (),
        txqueuelen: int = 5000,
        queue_max: int = 4096,
    ) -> None:
        import pytun  # python-pytun

        self._tun = pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
        self.name = self._tun.name
        self.mtu = mtu
        self._tun.mtu = mtu
        self._tun.up()
        # the default 500-packet queue drops under load (DESIGN.md §9)
        subprocess.run(["ip", "link", "set", "dev", self.name, "txqueuelen", str(txqueuelen)], check=False)
        for a in addresses:
            subprocess.run(["ip", "addr", "add", a, "dev", self.name], check=True)
        self._fd = self._tun.fileno()
        os.set_blocking(self._fd, False)
        self._queue: deque[list[bytes]] = deque()
        self._queued = 0
        self._queue_max = queue_max
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rx_packets = 0
        self.tx_packets = 0
        self.rx_dropped = 0
        self.tx_dropped = 0
        self._closed = False

    def _ensure_reader(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        batch: list[bytes] = []
        read = os.read
        fd = self._fd
        try:
            for _ in range(MAX_BATCH):
                batch.append(read(fd, 65535))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            logger.warning("read from %s failed: %s", self.name, exc)
        if not batch:
            return
        if self._queued >= self._queue_max:
            self.rx_dropped += len(batch)
            return
        self.rx_packets += len(batch)
        self._queue.append(batch)
        self._queued += len(batch)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv_batch(self) -> list[bytes]:
        self._ensure_reader()
        while not self._queue:
            assert self._loop is not None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        batch = self._queue.popleft()
        self._queued -= len(batch)
        return batch

    def send_batch(self, packets: Sequence[bytes]) -> None:
        write = os.write
        fd = self._fd
        for pkt in packets:
            try:
                write(fd, pkt)
                self.tx_packets += 1
            except (BlockingIOError, InterruptedError):
                self.tx_dropped += 1
            except OSError as exc:
                self.tx_dropped += 1
                if exc.errno not in (errno.EINVAL, errno.EIO):
                    logger.debug("write to %s failed: %s", self.name, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            try:
                self._loop.remove_reader(self._fd)
            except Exception:
                pass
        self._tun.close()
