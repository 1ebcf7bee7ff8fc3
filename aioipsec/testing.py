"""Test helpers for applications that use aioipsec, and the pytest plugin
(entry point ``pytest11``, loaded automatically once aioipsec is installed).

Two peers on an in-memory network, an IKE SA and a Child SA between them, and
ways to push an application's traffic through that tunnel::

    async with open_pair() as pair:                    # IKEv2, PSK, ESP transport mode
        a = pair.left.open_datagram(5000)              # a UDP "socket" on the left peer
        b = pair.right.open_datagram(6000)
        a.sendto(b"ping", 6000)                         # sealed by left, opened by right
        data, (ip, port) = await b.recvfrom()

An application written against asyncio's datagram API runs unchanged over the
tunnel with :meth:`Peer.create_datagram_endpoint` (same signature shape as
``loop.create_datagram_endpoint``).  ``open_pair(inner="pipe")`` gives each
peer an in-memory TUN (``peer.app``: whole IP packets in and out) instead.

pytest fixtures (need pytest-asyncio, as any ``async def`` test does):

``ipsec_pair``
    an established :class:`IpsecPair` with the defaults above, closed after the test.
``ipsec_pair_factory``
    ``await ipsec_pair_factory(version=1, mode="tunnel", ...)``: pairs with other
    options (any :func:`open_pair` keyword), all closed after the test.

Importing this module is cheap (pytest imports it on every run): the asyncio
layer and ``cryptography`` load when a pair is first opened.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from .asyncio.endpoint import Endpoint
    from .asyncio.protocol import SessionProtocol
    from .asyncio.sockets import MemoryNetwork
    from .config import ConnectionConfig
    from .events import ChildSaInstalled

__all__ = [
    "IpsecPair",
    "LEFT",
    "CONNECTION",
    "LEFT_HOST",
    "PSK",
    "PcapWriter",
    "Peer",
    "RIGHT",
    "RIGHT_HOST",
    "TunnelDatagramTransport",
    "open_pair",
    "pair_configs",
]

LEFT, RIGHT = "192.0.2.1", "192.0.2.2"
"""Outer addresses of the two peers (RFC 5737 documentation range)."""
LEFT_NET, RIGHT_NET = "198.51.100.0/24", "203.0.113.0/24"
LEFT_HOST, RIGHT_HOST = "198.51.100.10", "203.0.113.10"
"""Tunnel mode: a host on each side's protected network."""
PSK = b"aioipsec.testing pre-shared key, not a secret"
CONNECTION = "pair"
"""Connection name on both peers; the Child SA is called ``app``."""


def pair_configs(
    *,
    version: int = 2,
    mode: str = "transport",
    ike_proposals: list[str] | None = None,
    esp_proposals: list[str] | None = None,
    key_export: bool = False,
    child_options: dict[str, Any] | None = None,
    **connection_options: Any,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """(left, right) configurations of a PSK tunnel between :data:`LEFT` and
    :data:`RIGHT`: transport mode between the two hosts, or tunnel mode
    between :data:`LEFT_NET` and :data:`RIGHT_NET`.  Extra keywords go to
    both :class:`~aioipsec.config.ConnectionConfig` objects (``dpd_delay``,
    ``encap``, ``rekey_time``, ...), ``child_options`` to both children."""
    from .config import AuthConfig, ChildConfig, ConnectionConfig
    from .crypto.transforms import parse_proposal
    from .selectors import parse_ts

    if mode not in ("transport", "tunnel"):
        raise ValueError(f'mode must be "transport" or "tunnel", not {mode!r}')
    legacy = bool(connection_options.pop("legacy", False))
    ike = ike_proposals or (["aes128gcm16-prfsha256-x25519"] if version == 2 else ["aes256-sha256-modp2048"])
    esp = esp_proposals or (["aes128gcm16"] if version == 2 else ["aes256-sha256"])

    def one(name: str, me: str, peer: str, my_net: str, peer_net: str) -> ConnectionConfig:
        child = ChildConfig(
            name="app",
            mode=mode,
            local_ts=[parse_ts(my_net)] if mode == "tunnel" else [],
            remote_ts=[parse_ts(peer_net)] if mode == "tunnel" else [],
            esp_proposals=[parse_proposal(p, "esp", allow_legacy=legacy) for p in esp],
            **(child_options or {}),
        )
        return ConnectionConfig(
            name=name,
            version=version,
            local_addrs=[me],
            remote_addrs=[peer],
            proposals=[parse_proposal(p, "ike", allow_legacy=legacy) for p in ike],
            local=AuthConfig(auth="psk", id=me),
            remote=AuthConfig(auth="psk", id=peer),
            children={"app": child},
            psk=PSK,
            legacy=legacy,
            key_export=key_export,
            **connection_options,
        )

    return one(CONNECTION, LEFT, RIGHT, LEFT_NET, RIGHT_NET), one(CONNECTION, RIGHT, LEFT, RIGHT_NET, LEFT_NET)


class TunnelDatagramTransport:
    """An ``asyncio.DatagramTransport`` look-alike whose datagrams cross the
    tunnel (made by :meth:`Peer.create_datagram_endpoint`)."""

    def __init__(self, sock: Any, protocol: Any, remote_port: int | None) -> None:
        import asyncio

        self._sock = sock
        self._protocol = protocol
        self._remote_port = remote_port
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._pump(), name=f"aioipsec-testing-udp{sock.port}")

    async def _pump(self) -> None:
        while True:
            data, addr = await self._sock.recvfrom()
            try:
                self._protocol.datagram_received(data, addr)
            except Exception as exc:  # like asyncio: report to the protocol, keep going
                self._protocol.error_received(exc)

    def sendto(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        if self._closing:
            return
        if addr is None:
            if self._remote_port is None:
                raise ValueError("no remote_port given: pass addr=(ip, port)")
            self._sock.sendto(bytes(data), self._remote_port)
        else:
            self._sock.sendto(bytes(data), addr[1], addr[0])

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return (self._sock.local_ip, self._sock.port)
        if name == "peername" and self._remote_port is not None:
            return (self._sock.remote_ip, self._remote_port)
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._task.cancel()
        self._sock.close()
        self._protocol.connection_lost(None)

    def abort(self) -> None:
        self.close()


@dataclass
class Peer:
    """One side of an :class:`IpsecPair`."""

    name: str
    address: str
    """Outer address."""
    host: str
    """The address its application traffic uses: ``address`` in transport
    mode, a host inside its protected network in tunnel mode."""
    config: ConnectionConfig
    endpoint: Endpoint
    session: SessionProtocol | None = None
    """The IKE SA's handle (``rekey``, ``dpd``, ``close``, ``events()``, ...)."""
    child: ChildSaInstalled | None = None
    """The first Child SA as installed on this side."""
    app: Any = None
    """``inner="pipe"``: the application end of this peer's in-memory TUN."""
    other: Peer | None = field(default=None, repr=False)

    def open_datagram(self, port: int) -> Any:
        """A :class:`~aioipsec.asyncio.datagram.SecureDatagram` on ``port``:
        ``sendto(data, port)`` reaches the other peer through the tunnel,
        ``await recvfrom()`` returns what the tunnel delivered."""
        if self.session is None or self.other is None:
            raise RuntimeError("the pair is not established")
        return self.session.open_datagram(port, local_ip=self.host, remote_ip=self.other.host)

    async def create_datagram_endpoint(
        self, protocol_factory: Callable[[], Any], *, local_port: int, remote_port: int | None = None
    ) -> tuple[TunnelDatagramTransport, Any]:
        """Run an ``asyncio.DatagramProtocol`` over the tunnel: like
        ``loop.create_datagram_endpoint(factory, local_addr=..., remote_addr=...)``
        with the other peer as the remote end."""
        protocol = protocol_factory()
        transport = TunnelDatagramTransport(self.open_datagram(local_port), protocol, remote_port)
        protocol.connection_made(transport)
        return transport, protocol

    def status(self) -> dict[str, Any]:
        """This peer's ``status --json`` document (:mod:`aioipsec.status`)."""
        from .status import endpoint_status

        return endpoint_status(self.endpoint)

    def status_text(self) -> str:
        """What ``aioipsec status`` would print for this peer."""
        from .status import format_status

        return format_status(self.status())


@dataclass
class IpsecPair:
    """Two peers with an IKE SA and a Child SA between them (:func:`open_pair`)."""

    network: MemoryNetwork
    left: Peer
    """The initiator."""
    right: Peer
    """The responder."""

    def capture(self, path: str | Path) -> PcapWriter:
        """Write every datagram on the in-memory network from now on to a pcap
        file (IP packets, ESP as protocol 50 or UDP 4500, IKE as UDP 500)."""
        w = PcapWriter(path)
        previous = self.network.tap

        def tap(src: Any, data: bytes, dst: Any) -> None:
            if previous is not None:
                previous(src, data, dst)
            w.write_datagram(src, data, dst, self.network.loop.time())

        self.network.tap = tap
        return w

    def export_keys(self, directory: str | Path) -> dict[str, Any]:
        """Wireshark tables (``esp_sa``, ``ikev2_decryption_table``, ...) of
        the left peer's SAs, as ``aioipsec keys --wireshark`` writes them."""
        from .keyexport import export_wireshark

        return export_wireshark(self.left.endpoint, str(directory))

    async def close(self, timeout: float = 1.0) -> None:
        """Delete the SAs (left deletes; waits up to ``timeout`` for the
        peer's answer) and close both endpoints."""
        await self.left.endpoint.close(timeout=timeout)
        await self.right.endpoint.close(timeout=timeout)


@asynccontextmanager
async def open_pair(
    *,
    version: int = 2,
    mode: str = "transport",
    inner: str | None = None,
    network: MemoryNetwork | None = None,
    link: dict[str, Any] | None = None,
    random: Callable[[int], bytes] | None = None,
    timeout: float = 10.0,
    pcap: str | Path | None = None,
    **options: Any,
) -> AsyncIterator[IpsecPair]:
    """Two peers on an in-memory network with an established tunnel.

    ``version`` 2 or 1; ``mode`` ``"transport"`` or ``"tunnel"``; ``inner``
    ``None`` (applications use :meth:`Peer.open_datagram`) or ``"pipe"``
    (each peer gets ``app``, an in-memory TUN end carrying IP packets);
    ``link`` impairments for the network (``loss``, ``duplicate``,
    ``reorder``, ``delay``, ``seed``, ... of
    :class:`~aioipsec.transports.memory.LinkModel`); ``random`` pins SPIs and
    nonces; ``pcap`` a file that receives every datagram from the first
    IKE message to the last delete (see :meth:`IpsecPair.capture`).  Other
    keywords go to :func:`pair_configs`."""
    import asyncio
    import os

    from .asyncio.endpoint import Endpoint
    from .asyncio.sockets import MemoryNetwork
    from .transports.memory import memory_pipe

    if inner not in (None, "pipe"):
        raise ValueError(f'inner must be None or "pipe", not {inner!r}')
    left_cfg, right_cfg = pair_configs(version=version, mode=mode, **options)
    net = network if network is not None else MemoryNetwork(**(link or {}))
    rnd = random or os.urandom
    apps: list[Any] = [None, None]
    gws: list[Any] = [None, None]
    if inner == "pipe":
        gws[0], apps[0] = memory_pipe()
        gws[1], apps[1] = memory_pipe()
    right_ep = await Endpoint.create(RIGHT, configurations=[right_cfg], network=net, inner=gws[1], random=rnd)
    try:
        left_ep = await Endpoint.create(
            LEFT, configurations=[left_cfg], network=net, inner=gws[0], random=rnd, respond=False
        )
    except BaseException:
        await right_ep.close(delete=False)
        raise
    tunnel = mode == "tunnel"
    left = Peer("left", LEFT, LEFT_HOST if tunnel else LEFT, left_cfg, left_ep, app=apps[0])
    right = Peer("right", RIGHT, RIGHT_HOST if tunnel else RIGHT, right_cfg, right_ep, app=apps[1])
    left.other, right.other = right, left
    right_child: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_right(proto: Any, ev: Any) -> None:
        from .events import ChildSaInstalled

        if isinstance(ev, ChildSaInstalled) and not right_child.done():
            right.session = proto
            right_child.set_result(ev)

    right_ep.event_listeners.append(on_right)
    pair = IpsecPair(net, left, right)
    writer = pair.capture(pcap) if pcap is not None else None
    try:
        proto = left_ep.initiate(left_cfg.name, "app")
        left.session = proto
        async with _timeout(timeout):
            await proto.wait_established()
            left.child = await proto.wait_child("app")
            right.child = await right_child
        right_ep.event_listeners.remove(on_right)
        yield pair
    finally:
        await pair.close()
        if writer is not None:
            writer.close()


@asynccontextmanager
async def _timeout(seconds: float) -> AsyncIterator[None]:
    import asyncio

    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise TimeoutError(f"the IPsec pair did not come up within {seconds:g}s") from None


# ---------------------------------------------------------------------------- pcap


class PcapWriter:
    """A minimal pcap writer (LINKTYPE_RAW: IPv4/IPv6 packets) for datagrams
    seen on an in-memory network: each ``(src, data, dst)`` becomes an IP
    packet, UDP for real ports, ESP (protocol 50) for port 0, the in-memory
    stand-in for raw ESP."""

    LINKTYPE_RAW = 101

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f: BinaryIO | None = open(self.path, "wb")
        self._f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, self.LINKTYPE_RAW))
        self.packets = 0
        self._ident = 0

    def write_packet(self, packet: bytes, ts: float) -> None:
        """Append one IP packet with timestamp ``ts`` (seconds)."""
        if self._f is None:
            return
        sec = int(ts)
        usec = int((ts - sec) * 1_000_000)
        self._f.write(struct.pack("<IIII", sec, usec, len(packet), len(packet)) + packet)
        self.packets += 1

    def write_datagram(self, src: tuple[str, int], data: bytes, dst: tuple[str, int], ts: float) -> None:
        """Append a datagram sent from ``src`` to ``dst`` as an IP packet."""
        from .netutil import ipv4_header, ipv6_header, udp_packet

        if dst[1] == 0:  # raw ESP (IP protocol 50)
            if ":" in src[0]:
                pkt = ipv6_header(src[0], dst[0], 50, len(data)) + data
            else:
                self._ident = (self._ident + 1) & 0xFFFF
                pkt = ipv4_header(src[0], dst[0], 50, len(data), ident=self._ident) + data
        else:
            pkt = udp_packet(src[0], dst[0], src[1], dst[1], data)
        self.write_packet(pkt, ts)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- pytest plugin


def _define_fixtures() -> None:
    """The pytest fixtures, defined only when pytest is the importer (the
    module stays importable without pytest)."""
    import pytest

    try:
        import pytest_asyncio

        async_fixture: Any = pytest_asyncio.fixture
    except ImportError:  # async fixtures need pytest-asyncio; plain ones keep the names visible
        async_fixture = pytest.fixture

    @async_fixture
    async def ipsec_pair() -> AsyncIterator[IpsecPair]:
        """Two in-memory peers with an established IKEv2 tunnel (ESP,
        transport mode); ``pair.left.open_datagram(port)`` to use it."""
        async with open_pair() as pair:
            yield pair

    @async_fixture
    async def ipsec_pair_factory() -> AsyncIterator[Callable[..., Any]]:
        """``await ipsec_pair_factory(**open_pair_options)`` -> an established
        :class:`IpsecPair`; every pair made is closed after the test."""
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:

            async def make(**options: Any) -> IpsecPair:
                return await stack.enter_async_context(open_pair(**options))

            yield make

    module = sys.modules[__name__]
    module.ipsec_pair = ipsec_pair  # type: ignore[attr-defined]
    module.ipsec_pair_factory = ipsec_pair_factory  # type: ignore[attr-defined]


if "pytest" in sys.modules:
    _define_fixtures()
