"""The ``udp`` built-in outer transport: a non-blocking, unconnected UDP socket
(e.g. port 4500 for ESP-in-UDP, RFC 3948) read in batches.

``get_transport("udp", host="192.0.2.1", port=4500)`` returns a
:class:`UdpTransport`: an :class:`~aioipsec.transports.base.OuterTransport`
(``recv_batch`` / ``send_batch``) that also has the callback surface of the
endpoint's sockets (``set_receiver``, ``sendto``, ``local_addr``), so it can
be handed to :class:`~aioipsec.asyncio.endpoint.Endpoint` as ``natt_socket``.

One readiness event (``loop.add_reader``) drains the socket until ``EAGAIN``
(DESIGN.md §9: asyncio's ``DatagramProtocol`` costs 24-28 µs per datagram,
this a few).  The socket is never connected (uvloop 0.23 stops calling the
reader of a connected UDP socket after an ICMP error).  Sends never block:
a full socket buffer drops the datagram and counts it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ..selectors import Address
from .base import register_transport

logger = logging.getLogger("aioipsec.net")

MAX_BATCH = 256
QUEUE_MAX = 4096

Receiver = Callable[[list[tuple[bytes, Address]]], None]


class UdpTransport:
    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._sock = sock
        sock.setblocking(False)
        name = sock.getsockname()
        self.local_addr: Address = (name[0], name[1])
        self._loop = loop
        self._reading = False
        self._receiver: Receiver | None = None
        self._queue: list[tuple[bytes, Address]] = []
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.sent = 0
        self.received = 0
        self.send_errors = 0
        self.dropped = 0
        """Datagrams dropped because nobody read the queue (``QUEUE_MAX``)."""

    @classmethod
    def open(cls, host: str = "0.0.0.0", port: int = 4500, *, reuse_port: bool = False,
             bufsize: int = 4 * 1024 * 1024) -> UdpTransport:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, bufsize)
                except OSError:
                    pass
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def _start_reading(self) -> None:
        if self._reading or self._closed:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._reading = True

    def set_receiver(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._start_reading()

    def _on_readable(self) -> None:
        batch: list[tuple[bytes, Address]] = []
        recv = self._sock.recvfrom
        try:
            for _ in range(MAX_BATCH):
                data, addr = recv(65535)
                batch.append((data, (addr[0], addr[1])))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # ICMP errors surface here on Linux
            if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                logger.debug("recv error on %s: %s", self.local_addr, exc)
        if not batch:
            return
        self.received += len(batch)
        if self._receiver is not None:
            try:
                self._receiver(batch)
            except Exception:
                logger.exception("datagram handler failed on %s", self.local_addr)
            return
        room = QUEUE_MAX - len(self._queue)
        if room < len(batch):
            self.dropped += len(batch) - max(room, 0)
            batch = batch[: max(room, 0)]
        self._queue.extend(batch)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def recv_batch(self) -> list[tuple[bytes, Address]]:
        self._start_reading()
        while not self._queue:
            if self._closed:
                raise ConnectionError("UDP transport closed")
            assert self._loop is not None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        batch, self._queue = self._queue, []
        return batch

    def sendto(self, data: bytes, addr: Address) -> None:
        self.send_batch([data], addr)

    def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None:
        send = self._sock.sendto
        n = 0
        for d in datagrams:
            try:
                send(d, addr)
                n += 1
            except OSError:
                self.send_errors += 1
        self.sent += n

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reading and self._loop is not None:
            try:
                self._loop.remove_reader(self._sock.fileno())
            except Exception:
                pass
        self._sock.close()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)


def udp(host: str = "0.0.0.0", port: int = 4500, **kw: Any) -> UdpTransport:
    return UdpTransport.open(host, port, **kw)


register_transport("udp", udp)

__all__ = ["UdpTransport", "udp"]
