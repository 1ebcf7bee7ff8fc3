"""Datagram sockets for the endpoint: real UDP and an in-memory network.

Both deliver received datagrams in **batches** to one callback
``on_datagrams(list[(bytes, addr)])``: the UDP socket is read with
``loop.add_reader`` and drained until ``BlockingIOError`` (one batch per
readiness event), which costs a fraction of asyncio's ``DatagramProtocol``
per datagram (DESIGN.md §9).  Sockets are never connected (uvloop 0.23 stops
calling the reader of a connected UDP socket after an ICMP error).

On Linux the UDP sockets batch in the kernel too: runs of equal-sized
datagrams to one peer leave in one ``sendmsg`` (UDP GSO), and the kernel may
hand over runs of one sender's datagrams in one read (UDP GRO), split here.
Measured with ``bench/tunnel.py`` (both daemons' CPU time per ESP packet):
GSO 4.9 -> 4.3 µs, GRO 4.3 -> 3.9 µs for TCP traffic.

A socket bound to the wildcard address (``0.0.0.0`` / ``::``) asks for the
destination address of every datagram (``IP_PKTINFO`` / ``IPV6_RECVPKTINFO``,
as charon does): its batches hold ``(data, addr, dst)`` triples, and a send
may name the source address (``IP_PKTINFO`` / ``IPV6_PKTINFO`` on
``sendmsg``), so a multi-homed host answers from the address it was reached
at.  Other sockets deliver ``(data, addr)`` pairs.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from operator import add
from typing import Any

from ..selectors import Address
from ..transports._batch import (
    MAX_BATCH,
    Receiver,
    deliver,
    drain,
    recvfrom_batch,
    send_each,
)

logger = logging.getLogger("aioipsec.net")

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # Linux >= 4.18, not in the socket module
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 60000
UDP_GRO = getattr(socket, "UDP_GRO", 104)  # Linux >= 5.0
UDP_GSO = os.environ.get("AIOIPSEC_UDP_GSO", "1") != "0"
"""Send runs of equal-sized datagrams with one ``sendmsg`` (UDP GSO,
``UDP_SEGMENT``) instead of one ``sendto`` each; ``AIOIPSEC_UDP_GSO=0``
turns it off (it also turns itself off where the kernel refuses it)."""
UDP_GRO_ON = os.environ.get("AIOIPSEC_UDP_GRO", "1") != "0"
"""Let the kernel hand over runs of same-flow datagrams as one buffer with
their segment size (``UDP_GRO``); they are split again here.  Off with
``AIOIPSEC_UDP_GRO=0``."""
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
_INT = struct.Struct("=i")
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux; not in every build's socket module
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_IN_PKTINFO = struct.Struct("=i4s4s")
"""struct in_pktinfo: ipi_ifindex, ipi_spec_dst (local address), ipi_addr (header destination)."""
_IN6_PKTINFO = struct.Struct("=16sI")
"""struct in6_pktinfo: ipi6_addr, ipi6_ifindex."""
_PKTINFO_CMSG_SPACE = socket.CMSG_SPACE(max(_IN_PKTINFO.size, _IN6_PKTINFO.size))
WILDCARDS = frozenset(("0.0.0.0", "::", ""))


def is_wildcard(host: str) -> bool:
    """``host`` is the any-address (a socket bound there receives for every local address)."""
    return host in WILDCARDS


def parse_pktinfo(ancdata: Sequence[tuple[int, int, bytes]]) -> str | None:
    """The destination address of a received datagram from its ancillary
    data (``IP_PKTINFO``: ``ipi_addr``, the header's destination;
    ``IPV6_PKTINFO``: ``ipi6_addr``), or None when there is none (or it is
    truncated)."""
    for level, kind, value in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= _IN_PKTINFO.size:
            return socket.inet_ntop(socket.AF_INET, _IN_PKTINFO.unpack_from(value)[2])
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= _IN6_PKTINFO.size:
            return socket.inet_ntop(socket.AF_INET6, _IN6_PKTINFO.unpack_from(value)[0])
    return None


def pktinfo_cmsg(src: str) -> tuple[int, int, bytes]:
    """The ancillary item that makes ``sendmsg`` use source address ``src``
    (``IP_PKTINFO`` with ``ipi_spec_dst``, or ``IPV6_PKTINFO``; interface
    index 0: the routing table picks it)."""
    if ":" in src:
        return (socket.IPPROTO_IPV6, IPV6_PKTINFO, _IN6_PKTINFO.pack(socket.inet_pton(socket.AF_INET6, src), 0))
    return (socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, socket.inet_pton(socket.AF_INET, src), bytes(4)))


class DatagramSocket:
    """Common surface of :class:`UdpSocket` and :class:`MemorySocket`."""

    local_addr: Address
    sent: int = 0
    received: int = 0
    send_errors: int = 0
    pktinfo: bool = False
    """Bound to the wildcard address: batches hold ``(data, addr, dst)`` and
    ``src`` of a send is honoured."""

    def set_receiver(self, receiver: Receiver) -> None:
        raise NotImplementedError

    def sendto(self, data: bytes, addr: Address, src: str | None = None) -> None:
        raise NotImplementedError

    def send_batch(self, datagrams: Sequence[bytes], addr: Address, src: str | None = None) -> None:
        for d in datagrams:
            self.sendto(d, addr, src)

    def send_parts(self, heads: Sequence[bytes], bodies: Sequence[bytes], addr: Address, src: str | None = None) -> None:
        """Send the datagrams ``heads[i] + bodies[i]`` (a sealed ESP batch,
        :meth:`~aioipsec.esp.EspSa.seal_batch_parts`); here joined, then
        :meth:`send_batch`."""
        self.send_batch(list(map(add, heads, bodies)), addr, src)

    def close(self) -> None:
        raise NotImplementedError


class UdpSocket(DatagramSocket):
    """A non-blocking, unconnected UDP socket read in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._receiver: Receiver | None = None
        self._closed = False
        name = sock.getsockname()
        self.local_addr = (name[0], name[1])
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._on_readable)

    @classmethod
    def bind(cls, loop: asyncio.AbstractEventLoop, host: str, port: int, *, reuse_port: bool = False) -> UdpSocket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
                except OSError:
                    pass
            sock.bind((host, port))
            pktinfo = False
            if is_wildcard(host):
                try:
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
                    else:
                        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                    pktinfo = True
                except OSError as exc:
                    logger.warning("no packet info on %s:%d (%s): replies leave from the routing source address",
                                   host, port, exc)
            gro = False
            if UDP_GRO_ON and sys.platform == "linux":
                try:
                    sock.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
                    gro = True
                except OSError:
                    pass
        except BaseException:
            sock.close()
            raise
        u = cls(loop, sock)
        u.gro = gro
        u.pktinfo = pktinfo
        return u

    pktinfo = False
    """Bound to the wildcard address with ``IP_PKTINFO``/``IPV6_RECVPKTINFO``
    on: batches hold ``(data, addr, dst)`` and sends may name their source."""

    gro = False
    """The kernel may coalesce received datagrams (``UDP_GRO``); read with recvmsg."""
    gro_reads = 0
    """Reads that returned several coalesced datagrams."""

    def set_receiver(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def _on_readable(self) -> None:
        batch = drain(self._read, self.local_addr, logger)
        if batch:
            self.received += len(batch)
            if self._receiver is not None:
                deliver(self._receiver, batch, self.local_addr, logger)

    def _read(self, batch: list[tuple[bytes, Address]]) -> None:
        if self.pktinfo:
            self._read_pktinfo(batch)  # type: ignore[arg-type]
        elif self.gro:
            self._read_gro(batch)
        else:
            recvfrom_batch(self._sock.recvfrom, batch)

    def set_mark(self, mark: int) -> None:
        """Firewall mark of everything sent (``SO_MARK``; policy routing
        can exempt the daemon's own traffic this way)."""
        self._sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_MARK", 36), mark)

    def _read_gro(self, batch: list[tuple[bytes, Address]]) -> None:
        """Drain with ``recvmsg``: a read may hold several datagrams of one
        sender, all ``gso_size`` long but the last (UDP GRO); split them."""
        recvmsg = self._sock.recvmsg
        append = batch.append
        sol_udp, space, unpack = socket.SOL_UDP, _GRO_CMSG_SPACE, _INT.unpack
        # a read may hold up to 64 datagrams: stop at MAX_BATCH datagrams, not reads
        while len(batch) < MAX_BATCH:
            data, anc, _flags, a = recvmsg(65535, space)
            addr = (a[0], a[1])
            seg = 0
            for level, kind, value in anc:
                if level == sol_udp and kind == UDP_GRO and len(value) >= 4:
                    seg = unpack(value[:4])[0]
            if 0 < seg < len(data):
                self.gro_reads += 1
                for off in range(0, len(data), seg):
                    append((data[off : off + seg], addr))
            else:
                append((data, addr))

    def _read_pktinfo(self, batch: list[tuple[bytes, Address, str | None]]) -> None:
        """Drain with ``recvmsg``, each datagram with its destination address
        (``IP_PKTINFO``), GRO runs split as in :meth:`_read_gro`.  Kept apart
        from it on purpose: one reader choosing the tuple shape per read cost
        the plain ``_read_gro`` path about 6 % (10.3-10.7 -> 11.1-11.5 µs per
        64 single datagrams, the socket stubbed out), for nothing gained."""
        recvmsg = self._sock.recvmsg
        append = batch.append
        sol_udp, space, unpack = socket.SOL_UDP, _GRO_CMSG_SPACE + _PKTINFO_CMSG_SPACE, _INT.unpack
        while len(batch) < MAX_BATCH:
            data, anc, _flags, a = recvmsg(65535, space)
            addr = (a[0], a[1])
            dst = parse_pktinfo(anc)
            seg = 0
            for level, kind, value in anc:
                if level == sol_udp and kind == UDP_GRO and len(value) >= 4:
                    seg = unpack(value[:4])[0]
            if 0 < seg < len(data):
                self.gro_reads += 1
                for off in range(0, len(data), seg):
                    append((data[off : off + seg], addr, dst))
            else:
                append((data, addr, dst))

    def _sendmsg_from(self, data: bytes, addr: Any, src: str) -> None:
        self._sock.sendmsg([data], [pktinfo_cmsg(src)], 0, addr)

    def sendto(self, data: bytes, addr: Address, src: str | None = None) -> None:
        """Send ``data`` to ``addr``; ``src``: from that local address (a
        socket bound to the wildcard address only; others ignore it)."""
        try:
            if src and self.pktinfo:
                self._sendmsg_from(data, addr, src)
            else:
                self._sock.sendto(data, addr)
            self.sent += 1
        except (BlockingIOError, InterruptedError):
            self.send_errors += 1
        except OSError as exc:
            self.send_errors += 1
            logger.debug("send to %s failed: %s", addr, exc)

    gso = UDP_GSO and sys.platform == "linux"
    gso_sends = 0
    """``sendmsg`` calls that carried several datagrams (UDP GSO)."""

    def send_batch(self, datagrams: Sequence[bytes], addr: Address, src: str | None = None) -> None:
        if not (src and self.pktinfo):
            src = None
        if self.gso and len(datagrams) > 1:
            self._send_gso(datagrams, list(map(len, datagrams)), 1, addr, src)
            return
        n, errors = send_each(self._sendto_of(src), datagrams, addr)
        self.sent += n
        self.send_errors += errors

    def send_parts(self, heads: Sequence[bytes], bodies: Sequence[bytes], addr: Address, src: str | None = None) -> None:
        """Send the datagrams ``heads[i] + bodies[i]`` without joining them:
        with UDP GSO each run goes out as one ``sendmsg`` whose buffers are
        head, body, head, body, ... (the kernel gathers them, so the 1.4 KB
        copy that joining costs per ESP packet is not made); without it each
        datagram is joined and sent alone."""
        if not (src and self.pktinfo):
            src = None
        n = len(bodies)
        if not (self.gso and n > 1):
            self.send_batch(list(map(add, heads, bodies)), addr, src)
            return
        bufs: list[bytes] = [b""] * (2 * n)
        bufs[0::2] = heads
        bufs[1::2] = bodies
        self._send_gso(bufs, list(map(add, map(len, heads), map(len, bodies))), 2, addr, src)

    def _sendto_of(self, src: str | None) -> Callable[[bytes, Any], Any]:
        if src is None:
            return self._sock.sendto
        return lambda data, addr: self._sendmsg_from(data, addr, src)

    def _send_gso(self, bufs: Sequence[bytes], sizes: Sequence[int], per: int, addr: Address,
                  src: str | None = None) -> None:
        """Runs of equal-sized datagrams (the last of a run may be shorter) go
        out in one ``sendmsg`` each, segmented by the kernel (UDP GSO): a full
        batch of ESP for TCP traffic costs a few system calls, not one per
        packet.  Other datagrams are sent one by one.  Datagram k is the
        ``per`` buffers ``bufs[per * k : per * k + per]`` (1: whole datagrams;
        2: head and body, :meth:`send_parts`), ``sizes[k]`` bytes long."""
        sendmsg, sendto = self._sock.sendmsg, self._sendto_of(src)
        extra = [pktinfo_cmsg(src)] if src else []
        n_all = len(sizes)
        i = sent = 0
        while i < n_all:
            size = sizes[i]
            limit = min(n_all, i + GSO_MAX_SEGMENTS, i + max(1, GSO_MAX_BYTES // max(size, 1)))
            j = i + 1
            while j < limit and sizes[j] == size:
                j += 1
            if j < limit and sizes[j] < size:
                j += 1  # a shorter datagram may end a run
            if j - i >= 2 and self.gso:
                try:
                    sendmsg(bufs[per * i : per * j], [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size)), *extra],
                            0, addr)
                    sent += j - i
                    self.gso_sends += 1
                    i = j
                    continue
                except (BlockingIOError, InterruptedError):
                    self.send_errors += j - i  # socket buffer full: dropped, like sendto
                    i = j
                    continue
                except OSError as exc:
                    if exc.errno != errno.EMSGSIZE:  # larger than the path MTU: just this run
                        self.gso = False
                        logger.info("UDP GSO unavailable on %s (%s): one sendto per datagram", self.local_addr, exc)
            run = bufs[per * i : per * j]
            n, errors = send_each(sendto, run if per == 1 else [b"".join(run[k : k + per]) for k in range(0, len(run), per)],
                                  addr)
            sent += n
            self.send_errors += errors
            i = j
        self.sent += sent

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.remove_reader(self._sock.fileno())
        except Exception:
            pass
        self._sock.close()


class MemoryNetwork:
    """An in-memory IP network: sockets bind to ``(ip, port)`` and datagrams
    are delivered to whoever bound the destination, through an optional
    seeded :class:`~aioipsec.transports.memory.LinkModel` (loss, duplication,
    reordering, delay, corruption) per direction.  Delivery is always
    asynchronous (``call_soon``/``call_later``), like a real network."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop | None = None, **link_knobs: Any) -> None:
        self._loop = loop
        self._sockets: dict[Address, MemorySocket] = {}
        self._knobs = link_knobs
        self._models: dict[tuple[str, str], Any] = {}
        self._seed = int(link_knobs.pop("seed", 0))
        self.delivered = 0
        self.dropped = 0
        self.tap: Callable[[Address, bytes, Address], None] | None = None
        """Called with (src, data, dst) for every datagram sent (a capture point)."""
        self.mangle: Callable[[Address, bytes, Address], bytes | None] | None = None
        """Rewrites (or drops, by returning None) datagrams in flight: an on-path attacker."""
        self.nat: Callable[[Address, Address], tuple[Address, Address] | None] | None = None
        """Rewrites the (source, destination) addresses of datagrams in flight,
        or drops them by returning None: a NAT between the peers (the tap sees
        what the sender sent)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def bind(self, addr: Address) -> MemorySocket:
        if addr in self._sockets:
            raise OSError(errno.EADDRINUSE, f"address in use: {addr}")
        s = MemorySocket(self, addr)
        self._sockets[addr] = s
        return s

    def _unbind(self, addr: Address) -> None:
        self._sockets.pop(addr, None)

    def set_link(self, **knobs: Any) -> None:
        """Change the impairment knobs for all directions (e.g. mid-test)."""
        self._knobs = knobs
        self._models.clear()

    def _model(self, src: str, dst: str) -> Any:
        if not any(v for k, v in self._knobs.items()):
            return None
        key = (src, dst)
        m = self._models.get(key)
        if m is None:
            from ..transports.memory import LinkModel

            m = LinkModel(seed=self._seed + len(self._models), **self._knobs)
            self._models[key] = m
        return m

    def _send(self, src: Address, data: bytes, dst: Address) -> None:
        if self.tap is not None:
            self.tap(src, data, dst)
        if self.mangle is not None:
            mangled = self.mangle(src, data, dst)
            if mangled is None:
                self.dropped += 1
                return
            data = mangled
        if self.nat is not None:
            moved = self.nat(src, dst)
            if moved is None:
                self.dropped += 1
                return
            src, dst = moved
        model = self._model(src[0], dst[0])
        if model is None:
            self.loop.call_soon(self._deliver, dst, [(data, src)])
            return
        now = self.loop.time()
        model.send((data, src, dst), now)
        self._pump(model)

    def _pump(self, model: Any) -> None:
        now = self.loop.time()
        for item in model.deliver(now):
            data, src, dst = item
            self.loop.call_soon(self._deliver, dst, [(data, src)])
        deadline = model.next_deadline()
        if deadline is not None:
            self.loop.call_at(deadline, self._pump, model)

    def _deliver(self, dst: Address, batch: list[tuple[bytes, Address]]) -> None:
        s = self._sockets.get(dst)
        if s is None:
            # a socket bound to the wildcard address of the family takes it,
            # with the destination address (what IP_PKTINFO gives a real one)
            s = self._sockets.get(("::" if ":" in dst[0] else "0.0.0.0", dst[1]))
            if s is not None:
                batch = [(data, src, dst[0]) for data, src in batch]  # type: ignore[misc]
        if s is None or s._receiver is None:
            self.dropped += len(batch)
            return
        self.delivered += len(batch)
        s.received += len(batch)
        try:
            s._receiver(batch)
        except Exception:
            logger.exception("datagram handler failed on %s", dst)


class MemorySocket(DatagramSocket):
    def __init__(self, net: MemoryNetwork, addr: Address) -> None:
        self._net = net
        self.local_addr = addr
        self._receiver: Receiver | None = None
        self._closed = False
        self.pktinfo = is_wildcard(addr[0])

    def set_receiver(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def sendto(self, data: bytes, addr: Address, src: str | None = None) -> None:
        if self._closed:
            return
        self.sent += 1
        self._net._send((src, self.local_addr[1]) if src and self.pktinfo else self.local_addr, bytes(data), addr)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._net._unbind(self.local_addr)
