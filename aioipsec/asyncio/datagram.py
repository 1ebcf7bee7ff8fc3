"""Protected UDP for an application, with neither root nor a TUN device.

An end host in transport mode (or a tunnel whose inner addresses the
application owns) opens a :class:`SecureDatagram` on a port: ``sendto`` wraps
the payload in a UDP/IP packet that goes through the SPD and is sealed by the
Child SA; packets that the SA opens for that port are queued for
``recvfrom``.  Packets for ports nobody opened are dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..netutil import parse_udp, udp_packet

if TYPE_CHECKING:
    from .endpoint import Endpoint

QUEUE_MAX = 1024


class DatagramHub:
    """The endpoint's inner transport when the application has no TUN:
    demultiplexes opened packets to :class:`SecureDatagram` objects by port."""

    mtu = 1400

    def __init__(self) -> None:
        self.sockets: dict[int, SecureDatagram] = {}
        self.unclaimed = 0
        self.not_udp = 0
        self._never: asyncio.Future[list[bytes]] | None = None

    async def recv_batch(self) -> list[bytes]:
        # outbound packets are injected directly by SecureDatagram.sendto
        if self._never is None:
            self._never = asyncio.get_running_loop().create_future()
        return await self._never

    def send_batch(self, packets: Sequence[bytes]) -> None:
        for pkt in packets:
            u = parse_udp(pkt)
            if u is None:
                self.not_udp += 1
                continue
            src, sport, _dst, dport, payload = u
            sock = self.sockets.get(dport)
            if sock is None:
                self.unclaimed += 1
                continue
            sock._deliver(payload, (src, sport))

    def close(self) -> None:
        for s in list(self.sockets.values()):
            s.close()


class SecureDatagram:
    """A UDP "socket" whose traffic to the peer crosses the IPsec SA."""

    def __init__(self, endpoint: Endpoint, hub: DatagramHub, port: int, local_ip: str, remote_ip: str) -> None:
        if port in hub.sockets:
            raise OSError(f"port {port} already open")
        self._endpoint = endpoint
        self._hub = hub
        self.port = port
        self.local_ip = local_ip
        self.remote_ip = remote_ip
        self._queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue(QUEUE_MAX)
        self.dropped = 0
        hub.sockets[port] = self

    def _deliver(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._queue.put_nowait((data, addr))
        except asyncio.QueueFull:
            self.dropped += 1

    def sendto(self, data: bytes, port: int, addr: str | None = None) -> None:
        """Send ``data`` to ``port`` on the peer (or ``addr`` inside the remote selectors)."""
        pkt = udp_packet(self.local_ip, addr or self.remote_ip, self.port, port, data)
        self._endpoint.dataplane.outbound_packets([pkt])

    async def recvfrom(self) -> tuple[bytes, tuple[str, int]]:
        return await self._queue.get()

    def close(self) -> None:
        if self._hub.sockets.get(self.port) is self:
            del self._hub.sockets[self.port]
