"""Plain ESP (IP protocol 50) or AH (51) on raw sockets, for peers that do not
encapsulate ESP in UDP (no NAT between the peers, ``encap = false``).

Registered under the ``aioipsec.transports`` entry-point group as ``rawesp``.
:class:`RawEspSocket` has the surface the endpoint expects of its
``esp_socket`` (``set_receiver``, ``sendto``, ``send_batch``, ``close``,
``local_addr``) and is an :class:`~aioipsec.transports.base.OuterTransport`
(``recv_batch``, ``send_batch``) as well::

    esp = RawEspSocket.open("192.0.2.1")            # needs CAP_NET_RAW
    ep = await Endpoint.create("192.0.2.1", configurations=..., esp_socket=esp)

Receive: an IPv4 raw socket hands over the whole IP packet; its header is
stripped (IHL) and the sender's address taken from it.  IPv6 raw sockets
deliver the payload only.  Reads are batched: one readiness event drains the
socket until ``EAGAIN``.  Send: ``sendto(datagram, (ip, 0))``, the kernel
adds the IP header.  Nothing here decrypts or parses ESP: the endpoint's data
plane does that (and drops, counting, whatever is not for a known SA).

Linux delivers a copy of every protocol-50 packet addressed to the host to
each matching raw socket, also where the kernel has no ESP support of its own
(then no ICMP "protocol unreachable" is sent while a raw socket is open).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from typing import Any

from aioipsec.selectors import Address
from aioipsec.transports._batch import MAX_BATCH, RECV_SIZE, Batch, QueuedReader, send_each

logger = logging.getLogger("aioipsec.rawesp")

IPPROTO_ESP = 50
IPPROTO_AH = 51


def strip_ipv4_header(packet: bytes) -> tuple[bytes, str] | None:
    """(payload, source address) of an IPv4 packet as a raw socket reads it,
    or None if it is too short or not IPv4."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl:
        return None
    return packet[ihl:], socket.inet_ntop(socket.AF_INET, packet[12:16])


class RawEspSocket(QueuedReader):
    """A raw IP socket for protocol 50 (ESP) or 51 (AH), read in batches:
    ``set_receiver(receiver)`` delivers every batch to
    ``receiver([(payload, (src, 0)), ...])``; without a receiver,
    ``recv_batch()`` (OuterTransport) waits for at least one."""

    _closed_message = "raw ESP socket closed"
    _log = logger

    def __init__(self, sock: socket.socket, *, loop: asyncio.AbstractEventLoop | None = None,
                 protocol: int = IPPROTO_ESP) -> None:
        self._sock = sock
        self.family = sock.family
        self.protocol = protocol
        name = sock.getsockname()
        self.local_addr: Address = (name[0], 0)
        self._loop = loop
        self._init_reader()
        self.sent = 0
        self.send_errors = 0
        self.malformed = 0
        sock.setblocking(False)  # reading starts with set_receiver() or recv_batch()

    @classmethod
    def open(cls, host: str = "0.0.0.0", *, protocol: int = IPPROTO_ESP,
             loop: asyncio.AbstractEventLoop | None = None, rcvbuf: int = 4 * 1024 * 1024) -> RawEspSocket:
        """A raw socket bound to ``host`` (filters on the destination address).
        Raises ``PermissionError`` without CAP_NET_RAW."""
        if protocol not in (IPPROTO_ESP, IPPROTO_AH):
            raise ValueError(f"protocol must be {IPPROTO_ESP} (ESP) or {IPPROTO_AH} (AH), not {protocol}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_RAW, protocol)
        try:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                except OSError:
                    pass
            sock.bind((host, 0))
        except BaseException:
            sock.close()
            raise
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        return cls(sock, loop=loop, protocol=protocol)

    # ------------------------------------------------------------ receive

    def _read(self, batch: Batch) -> None:
        recv = self._sock.recvfrom
        append = batch.append
        v4 = self.family == socket.AF_INET
        for _ in range(MAX_BATCH):
            data, addr = recv(RECV_SIZE)
            if v4:
                r = strip_ipv4_header(data)
                if r is None:
                    self.malformed += 1
                    continue
                append((r[0], (r[1], 0)))
            else:
                append((data, (addr[0], 0)))

    def _enqueue(self, batch: Batch) -> None:
        self._queue.extend(batch)
        if len(self._queue) > 4 * MAX_BATCH:  # nobody reads: keep the newest
            del self._queue[: len(self._queue) - 4 * MAX_BATCH]

    # ------------------------------------------------------------ send

    def set_mark(self, mark: int) -> None:
        """Firewall mark of everything sent (``SO_MARK``)."""
        self._sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_MARK", 36), mark)

    def sendto(self, data: bytes, addr: Address | tuple[Any, ...]) -> None:
        try:
            self._sock.sendto(data, (addr[0], 0))
            self.sent += 1
        except OSError as exc:
            self.send_errors += 1
            logger.debug("raw send to %s failed: %s", addr[0], exc)

    def send_batch(self, datagrams: Sequence[bytes], addr: Address | tuple[Any, ...]) -> None:
        n, errors = send_each(self._sock.sendto, datagrams, (addr[0], 0))
        self.sent += n
        self.send_errors += errors


def rawesp(host: str = "0.0.0.0", **kw: Any) -> RawEspSocket:
    """The entry-point factory: ``get_transport("rawesp", host="192.0.2.1")``."""
    return RawEspSocket.open(host, **kw)


__all__ = ["IPPROTO_AH", "IPPROTO_ESP", "RawEspSocket", "rawesp", "strip_ipv4_header"]
