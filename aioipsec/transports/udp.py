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
import socket
from collections.abc import Sequence
from typing import Any

from ..selectors import Address
from ._batch import MAX_BATCH, Batch, QueuedReader, Receiver, recvfrom_batch, send_each
from .base import register_transport

QUEUE_MAX = 4096


class UdpTransport(QueuedReader):
    _closed_message = "UDP transport closed"

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._sock = sock
        sock.setblocking(False)
        name = sock.getsockname()
        self.local_addr: Address = (name[0], name[1])
        self._loop = loop
        self._init_reader()
        self.sent = 0
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

    def _read(self, batch: Batch) -> None:
        recvfrom_batch(self._sock.recvfrom, batch)

    def _enqueue(self, batch: Batch) -> None:
        room = QUEUE_MAX - len(self._queue)
        if room < len(batch):
            self.dropped += len(batch) - max(room, 0)
            batch = batch[: max(room, 0)]
        self._queue.extend(batch)

    def sendto(self, data: bytes, addr: Address) -> None:
        self.send_batch([data], addr)

    def send_batch(self, datagrams: Sequence[bytes], addr: Address) -> None:
        n, errors = send_each(self._sock.sendto, datagrams, addr)
        self.sent += n
        self.send_errors += errors


def udp(host: str = "0.0.0.0", port: int = 4500, **kw: Any) -> UdpTransport:
    return UdpTransport.open(host, port, **kw)


register_transport("udp", udp)

__all__ = ["MAX_BATCH", "QUEUE_MAX", "Receiver", "UdpTransport", "udp"]
