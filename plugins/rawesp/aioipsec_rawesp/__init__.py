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

AH (:class:`RawAhSocket`) is different: its ICV covers the immutable fields
of the outer IP header, so it carries *whole IP packets* both ways, exactly
as :class:`aioipsec.esp.sa.AhSa` seals and opens them.

* IPv4 send: ``IP_HDRINCL``; the kernel still writes the total length and the
  header checksum (the length is what AhSa wrote, the checksum is mutable)
  and picks an identification when it is 0 -- the data plane never sends ID 0
  for that reason (the ID is covered by the ICV).
* IPv6 send: ``IPV6_HDRINCL`` (Linux >= 4.5) sends the header as built.
  Without it, the 40-byte fixed header is stripped and the kernel builds its
  own from the socket and the destination: payload length, next header (51),
  source (the bound address) and destination equal what AhSa covered; traffic
  class, flow label and hop limit are mutable (zeroed in the ICV).  A packet
  with extension headers in front of AH cannot be sent that way (dropped,
  counted in ``send_errors``).
* IPv4 receive: the raw socket hands over the whole packet as received.
* IPv6 receive: the kernel hands over what follows the IPv6 header(s) only,
  so the fixed header is rebuilt (:func:`ipv6_packet_from_raw`) from the
  sender (recvmsg), the destination (``IPV6_PKTINFO``), the length and next
  header 51, with the mutable fields 0.  Extension headers in front of AH are
  not rebuilt: such a packet fails its ICV and is counted by the SA.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

from aioipsec.asyncio.sockets import is_wildcard, pktinfo_cmsg
from aioipsec.selectors import Address
from aioipsec.transports._batch import MAX_BATCH, RECV_SIZE, Batch, QueuedReader, send_each

logger = logging.getLogger("aioipsec.rawesp")

IPPROTO_ESP = 50
IPPROTO_AH = 51
IP_HDRINCL = getattr(socket, "IP_HDRINCL", 3)
IPV6_HDRINCL = getattr(socket, "IPV6_HDRINCL", 36)  # Linux >= 4.5, not in the socket module
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_PKTINFO_SPACE = socket.CMSG_SPACE(20)
_V6_FIXED = struct.Struct("!IHBB16s16s")


def strip_ipv4_header(packet: bytes) -> tuple[bytes, str] | None:
    """(payload, source address) of an IPv4 packet as a raw socket reads it,
    or None if it is too short or not IPv4."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl:
        return None
    return packet[ihl:], socket.inet_ntop(socket.AF_INET, packet[12:16])


def ipv6_packet_from_raw(payload: bytes, src: str | bytes, dst: str | bytes, next_header: int = IPPROTO_AH) -> bytes:
    """The IPv6 packet a raw IPv6 socket received as ``payload`` (what follows
    the IPv6 header) from ``src`` to ``dst``: a fixed header with version 6,
    traffic class, flow label and hop limit 0 (fields AH treats as mutable),
    the payload length and ``next_header``, then the payload.  Raises
    ``ValueError`` for a payload longer than 65535 bytes or a bad address."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"IPv6 payload of {len(payload)} bytes needs a jumbogram")
    s = src if isinstance(src, bytes) else ipaddress.IPv6Address(src.split("%", 1)[0]).packed
    d = dst if isinstance(dst, bytes) else ipaddress.IPv6Address(dst.split("%", 1)[0]).packed
    if len(s) != 16 or len(d) != 16:
        raise ValueError("IPv6 addresses are 16 bytes")
    return _V6_FIXED.pack(6 << 28, len(payload), next_header, 0, s, d) + payload


def pktinfo_destination(ancdata: Sequence[tuple[int, int, bytes]]) -> bytes | None:
    """The destination address (16 bytes) in an ``IPV6_PKTINFO`` control
    message of ``recvmsg``'s ancillary data, or None."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 16:
            return bytes(data[:16])
    return None


def _raw_socket(host: str, protocol: int, rcvbuf: int,
                setup: Callable[[socket.socket], None] | None = None) -> socket.socket:
    """A raw socket for IP ``protocol`` bound to ``host``, with large buffers
    (best effort) and ``setup`` applied before binding; closed on any error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_RAW, protocol)
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
            except OSError:
                pass
        if setup is not None:
            setup(sock)
        sock.bind((host, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _running_loop(loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop | None:
    if loop is not None:
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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
        self.pktinfo = is_wildcard(name[0])
        """Bound to the wildcard address: a send may name its source address
        (``IP_PKTINFO`` / ``IPV6_PKTINFO``), as the endpoint's UDP sockets do."""
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
        sock = _raw_socket(host, protocol, rcvbuf)
        return cls(sock, loop=_running_loop(loop), protocol=protocol)

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

    def sendto(self, data: bytes, addr: Address | tuple[Any, ...], src: str | None = None) -> None:
        """``src``: from that local address (a socket bound to the wildcard
        address only; others ignore it)."""
        try:
            self._sendto_of(src)(data, (addr[0], 0))
            self.sent += 1
        except OSError as exc:
            self.send_errors += 1
            logger.debug("raw send to %s failed: %s", addr[0], exc)

    def send_batch(self, datagrams: Sequence[bytes], addr: Address | tuple[Any, ...], src: str | None = None) -> None:
        n, errors = send_each(self._sendto_of(src), datagrams, (addr[0], 0))
        self.sent += n
        self.send_errors += errors

    def _sendto_of(self, src: str | None) -> Callable[[bytes, Any], Any]:
        if not (src and self.pktinfo):
            return self._sock.sendto
        sendmsg, anc = self._sock.sendmsg, [pktinfo_cmsg(src)]
        return lambda data, to: sendmsg([data], anc, 0, to)


class RawAhSocket(RawEspSocket):
    """A raw IP protocol-51 socket that carries whole IP packets (AH covers
    the outer header): the receiver gets ``[(ip_packet, (src, 0)), ...]`` and
    :meth:`send_batch` takes IP packets as :class:`~aioipsec.esp.sa.AhSa`
    sealed them (see the module documentation for how each family keeps the
    covered header fields intact)."""

    _closed_message = "raw AH socket closed"

    hdrincl6 = False
    """IPv6: the kernel accepted ``IPV6_HDRINCL`` (the header is sent as built)."""

    @classmethod
    def open(cls, host: str = "0.0.0.0", *, protocol: int = IPPROTO_AH,  # type: ignore[override]
             loop: asyncio.AbstractEventLoop | None = None, rcvbuf: int = 4 * 1024 * 1024,
             ipv6_hdrincl: bool = True) -> RawAhSocket:
        """As :meth:`RawEspSocket.open`; ``ipv6_hdrincl=False`` does not ask
        for IPV6_HDRINCL (the kernel builds the IPv6 header)."""
        if protocol != IPPROTO_AH:
            raise ValueError(f"RawAhSocket carries AH (protocol {IPPROTO_AH}), not {protocol}")
        hdrincl6 = False

        def setup(sock: socket.socket) -> None:
            nonlocal hdrincl6
            if sock.family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_HDRINCL, 1)
                return
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            try:
                if not ipv6_hdrincl:
                    raise OSError("not asked for")
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
                hdrincl6 = True
            except OSError as exc:
                logger.info("IPV6_HDRINCL refused (%s): the kernel builds the IPv6 header of AH packets", exc)

        sock = _raw_socket(host, IPPROTO_AH, rcvbuf, setup)
        s = cls(sock, loop=_running_loop(loop), protocol=IPPROTO_AH)
        s.hdrincl6 = hdrincl6
        return s

    # ------------------------------------------------------------ receive

    def _read(self, batch: Batch) -> None:
        append = batch.append
        if self.family == socket.AF_INET:
            recv = self._sock.recvfrom
            for _ in range(MAX_BATCH):
                data, addr = recv(RECV_SIZE)
                if len(data) < 20 or data[0] >> 4 != 4:
                    self.malformed += 1
                    continue
                append((data, (addr[0], 0)))
            return
        recvmsg = self._sock.recvmsg
        local = self.local_addr[0]
        for _ in range(MAX_BATCH):
            data, anc, _flags, addr = recvmsg(RECV_SIZE, _PKTINFO_SPACE)
            dst = pktinfo_destination(anc) or local
            try:
                pkt = ipv6_packet_from_raw(data, addr[0], dst)
            except ValueError:
                self.malformed += 1
                continue
            append((pkt, (addr[0], 0)))

    # ------------------------------------------------------------ send

    def _wire(self, packet: bytes) -> bytes | None:
        """What to hand the kernel for ``packet``: the packet itself (IPv4,
        IPv6 with IPV6_HDRINCL), else the payload after a fixed IPv6 header
        that names AH directly (None: cannot be sent)."""
        if self.family == socket.AF_INET or self.hdrincl6:
            return packet
        if len(packet) >= 40 and packet[0] >> 4 == 6 and packet[6] == IPPROTO_AH:
            return packet[40:]
        return None

    def sendto(self, data: bytes, addr: Address | tuple[Any, ...]) -> None:
        self.send_batch([data], addr)

    def send_batch(self, datagrams: Sequence[bytes], addr: Address | tuple[Any, ...]) -> None:
        if self.family == socket.AF_INET or self.hdrincl6:
            wire: Sequence[bytes] = datagrams
        else:
            wire = [w for w in map(self._wire, datagrams) if w is not None]
            self.send_errors += len(datagrams) - len(wire)
        n, errors = send_each(self._sock.sendto, wire, (addr[0], 0))
        self.sent += n
        self.send_errors += errors


def rawesp(host: str = "0.0.0.0", **kw: Any) -> RawEspSocket:
    """The entry-point factory: ``get_transport("rawesp", host="192.0.2.1")``."""
    return RawEspSocket.open(host, **kw)


__all__ = ["IPPROTO_AH", "IPPROTO_ESP", "RawAhSocket", "RawEspSocket", "ipv6_packet_from_raw",
           "pktinfo_destination", "rawesp", "strip_ipv4_header"]
