"""Shared pieces of the batched datagram sockets (``UdpSocket``,
``UdpTransport``, the ``rawesp`` plugin's ``RawEspSocket``).

One readiness event (``loop.add_reader``) drains a non-blocking socket until
``EAGAIN`` into one batch (DESIGN.md §9); ICMP errors that Linux reports on
unconnected sockets end the drain quietly.  Sends never block: a full socket
buffer drops the datagram and counts it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ..selectors import Address

MAX_BATCH = 256
"""Datagrams read at most per readiness event."""
RECV_SIZE = 65535

Batch = list[tuple[bytes, Address]]
Receiver = Callable[[Batch], None]

_ICMP_ERRNOS = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH))


def drain(read: Callable[[Batch], None], where: Any, log: logging.Logger) -> Batch:
    """The batch ``read(batch)`` appended to until the socket raised:
    ``EAGAIN``/``EINTR`` and ICMP errors (which surface here on Linux; reading
    goes on at the next event) end it quietly, other errors are logged."""
    batch: Batch = []
    try:
        read(batch)
    except (BlockingIOError, InterruptedError):
        pass
    except OSError as exc:
        if exc.errno not in _ICMP_ERRNOS:
            log.debug("recv error on %s: %s", where, exc)
    return batch


def recvfrom_batch(recv: Callable[[int], tuple[bytes, Any]], batch: Batch) -> None:
    """Append ``(data, (host, port))`` read with ``recv`` (a socket's
    ``recvfrom``) until it raises or ``MAX_BATCH`` datagrams are in."""
    append = batch.append
    for _ in range(MAX_BATCH):
        data, addr = recv(RECV_SIZE)
        append((data, (addr[0], addr[1])))


def deliver(receiver: Receiver, batch: Batch, where: Any, log: logging.Logger) -> None:
    """``receiver(batch)``; an exception is logged, never raised (it would kill the reader)."""
    try:
        receiver(batch)
    except Exception:
        log.exception("datagram handler failed on %s", where)


def send_each(sendto: Callable[[bytes, Any], Any], datagrams: Sequence[bytes], addr: Any) -> tuple[int, int]:
    """Send each datagram with ``sendto``; (sent, failed).  A failed send
    (full buffer, unreachable) drops that datagram only."""
    n = errors = 0
    for d in datagrams:
        try:
            sendto(d, addr)
            n += 1
        except OSError:
            errors += 1
    return n, errors


class QueuedReader:
    """A socket read in batches that hands each batch to a receiver
    callback (``set_receiver``) or, without one, queues it for
    ``recv_batch`` (the :class:`~aioipsec.transports.base.OuterTransport`
    surface).  Subclasses set ``_sock``, ``local_addr`` and ``_loop`` and
    call ``_init_reader()``; they define ``_read(batch)`` and may override
    ``_enqueue``."""

    _sock: socket.socket
    _loop: asyncio.AbstractEventLoop | None
    local_addr: Address
    _closed_message = "socket closed"
    _log = logging.getLogger("aioipsec.net")

    def _init_reader(self) -> None:
        self._reading = False
        self._receiver: Receiver | None = None
        self._queue: Batch = []
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.received = 0

    def _read(self, batch: Batch) -> None:
        raise NotImplementedError

    def _enqueue(self, batch: Batch) -> None:
        self._queue.extend(batch)

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
        batch = drain(self._read, self.local_addr, self._log)
        if not batch:
            return
        self.received += len(batch)
        if self._receiver is not None:
            deliver(self._receiver, batch, self.local_addr, self._log)
            return
        self._enqueue(batch)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def recv_batch(self) -> Batch:
        self._start_reading()
        while not self._queue:
            if self._closed:
                raise ConnectionError(self._closed_message)
            assert self._loop is not None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        batch, self._queue = self._queue, []
        return batch

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
        self._wake()
