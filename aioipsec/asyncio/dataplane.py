"""The data plane glue: Child SAs built from ``ChildSaInstalled`` events,
outbound policy lookup, batched seal/open, inbound selector check, trap
policies that trigger negotiation, and delivery to the inner transport.

One readiness event drains a batch; packets are grouped by SA and sealed or
opened in one call per SA (model: wireguard-go ``device/send.go`` and
``receive.go``).  Old inbound SAs stay installed until their delete completes
(make-before-break), so no packet in flight is lost across a rekey.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..esp.ah import ipv6_ah_offset
from ..esp.ip import (
    IPV6_EXT_HEADERS,
    NON_INITIAL_FRAGMENT,
    PROTO_AH,
    PROTO_DSTOPTS,
    header_info,
    ipv6_upper_layer,
    pack_addr,
)
from ..esp.natt import transport_packet
from ..esp.sa import AhSa
from ..events import ChildSaDeleted, ChildSaExpired, ChildSaInstalled
from ..selectors import Address, TrafficSelector

if TYPE_CHECKING:
    from .endpoint import Endpoint
    from .protocol import SessionProtocol

logger = logging.getLogger("aioipsec.esp")

REKEYED_INBOUND_GRACE = 2.0
"""Seconds a rekeyed Child SA's inbound half stays after its delete."""

HOLD_QUEUE = 64
"""Packets held per trap policy while its SA is negotiated (overflow dropped and counted)."""

ACQUIRE_RETRY_INTERVAL = 1.0
"""Seconds after a failed acquire before a packet may trigger the next one
(a peer that refuses at once is not asked again for every packet)."""

ACQUIRE_TIMEOUT = 180.0
"""A pending acquire older than this is given up, so the next packet sends a
new one.  A safety net: a failure or a closed IKE SA normally ends it at once
(IKEv2's retransmissions give up after about 90 s by default)."""


OPAQUE = -1
"""The ports :func:`packet_selector` gives a non-initial fragment (IPv4
fragment offset not 0, or an IPv6 Fragment header with one): they are not in
the packet, OPAQUE, and match only selectors whose ports are ANY (RFC 4301
§4.4.1, §7)."""


def packet_selector(pkt: bytes) -> tuple[int, int, int, int, int | None, int | None] | None:
    """(version, src, dst, proto, sport, dport) of an IP packet, or None if
    malformed.  Over IPv6 the protocol and ports are those behind the
    extension headers (:func:`~aioipsec.esp.ip.ipv6_upper_layer`); ports are
    OPAQUE for a non-initial fragment, None where the packet has none (or an
    IPv6 extension header chain is too long or truncated)."""
    if len(pkt) < 20:
        return None
    v = pkt[0] >> 4
    if v == 4:
        ihl = (pkt[0] & 0x0F) * 4
        proto = pkt[9]
        src = int.from_bytes(pkt[12:16], "big")
        dst = int.from_bytes(pkt[16:20], "big")
        off = ihl
        frag = int.from_bytes(pkt[6:8], "big") & 0x1FFF
        if frag:
            return (4, src, dst, proto, OPAQUE, OPAQUE)
    elif v == 6:
        if len(pkt) < 40:
            return None
        proto = pkt[6]
        src = int.from_bytes(pkt[8:24], "big")
        dst = int.from_bytes(pkt[24:40], "big")
        off = 40
        if proto in IPV6_EXT_HEADERS:
            proto, off = ipv6_upper_layer(pkt)
            if off < 0:
                port = OPAQUE if off == NON_INITIAL_FRAGMENT else None
                return (6, src, dst, proto, port, port)
    else:
        return None
    if proto in (6, 17, 132) and len(pkt) >= off + 4:
        return (v, src, dst, proto, int.from_bytes(pkt[off : off + 2], "big"), int.from_bytes(pkt[off + 2 : off + 4], "big"))
    if proto in (1, 58) and len(pkt) >= off + 2:
        # RFC 4301 §4.4.1.1: ICMP type/code take the place of the ports
        return (v, src, dst, proto, pkt[off], pkt[off + 1])
    return (v, src, dst, proto, None, None)


FLOW_CACHE_MAX = 4096
"""Flows remembered per cache (outbound policy lookup, inbound selector check)."""

_PORT_PROTOS = frozenset((6, 17, 132))


def flow_key(pkt: bytes) -> bytes | None:
    """A cache key for the policy decision about ``pkt``: the addresses and
    ports of an IPv4 packet without options that is not a non-first fragment
    (the protocol is kept beside the key), else None (no caching).  Only
    TCP/UDP/SCTP packets are cached: for ICMP the bytes after the header
    hold a checksum that changes per packet."""
    if pkt[0] == 0x45 and len(pkt) >= 24 and not (pkt[6] & 0x1F or pkt[7]) and pkt[9] in _PORT_PROTOS:
        return pkt[12:24]
    if pkt[0] >> 4 == 6 and len(pkt) >= 44 and pkt[6] in _PORT_PROTOS:
        return pkt[8:44]
    return None


def _proto(pkt: bytes) -> int:
    return pkt[9] if pkt[0] >> 4 == 4 else pkt[6]


def _ts_match(tss: Sequence[TrafficSelector], version: int, addr: int, proto: int, port: int | None) -> bool:
    """A packet's address, protocol and port (None: the packet has none;
    OPAQUE: a non-initial fragment, inside only ports ANY) inside one of ``tss``."""
    for ts in tss:
        # addresses are integers: an IPv4 address also lies numerically inside ::/0
        if ts.version == version and ts.start <= addr <= ts.end and (not ts.proto or ts.proto == proto):
            if port is None or ts.proto in (1, 58) or ts.start_port <= port <= ts.end_port:
                return True
            if port == OPAQUE and ts.start_port == 0 and ts.end_port == 65535:
                return True
    return False


def _rebuild_transport(pipe: ChildPipeline, payload: bytes, nh: int) -> bytes | None:
    """The IP packet a transport-mode SA delivers: the outer addresses with
    the decrypted payload, TCP/UDP checksums recomputed for them (RFC 3948
    §3.1.2: the peer's NAT may have changed the addresses it summed over)."""
    try:
        return transport_packet(payload, nh, pipe.remote[0], pipe.ev.local_addr[0])
    except Exception:
        return None


def _host_selectors(tss: Sequence[TrafficSelector], addr: str) -> list[TrafficSelector]:
    """``tss`` for a transport-mode SA whose address on that side is ``addr``:
    unchanged when a selector contains ``addr``, else (the selectors name the
    peer's pre-NAT address, RFC 3948 / RFC 7296 §2.23, or the SA followed its
    peer to a new address) those of its family with their addresses replaced by
    ``addr``: protocol and ports still apply."""
    try:
        packed = pack_addr(addr)
    except ValueError:
        return list(tss)
    version, a = (4 if len(packed) == 4 else 6), int.from_bytes(packed, "big")
    if any(ts.version == version and ts.start <= a <= ts.end for ts in tss):
        return list(tss)
    return [TrafficSelector(a, a, version, ts.proto, ts.start_port, ts.end_port) for ts in tss if ts.version == version]


def _transport_selectors(pipe: ChildPipeline) -> tuple[list[TrafficSelector], list[TrafficSelector]]:
    """The (remote, local) selectors an ESP transport-mode packet rebuilt from
    ``pipe``'s addresses must match (cached until the peer's address or the
    installed SA, with our address, changes: peer_moved, local_moved)."""
    ev, remote = pipe.ev, pipe.remote[0]
    cached = pipe.transport_ts
    if cached is None or cached[0] is not ev or cached[1] != remote:
        cached = pipe.transport_ts = (ev, remote, _host_selectors(ev.remote_ts, remote),
                                      _host_selectors(ev.local_ts, ev.local_addr[0]))
        pipe.inbound_ok.clear()
    return cached[2], cached[3]


def _ah_transport_own(pipe: ChildPipeline, packets: list[bytes]) -> list[bytes]:
    """The opened AH transport-mode ``packets`` sent from the SA's remote to
    its local address (the outer addresses are the SA's endpoints, RFC 4301
    §5.2); the others are counted as policy drops."""
    try:
        pair = pack_addr(pipe.remote[0]) + pack_addr(pipe.ev.local_addr[0])
    except ValueError:
        pair = b""
    if len(pair) == 8:
        version, lo, hi = 4, 12, 20
    else:
        version, lo, hi = 6, 8, 40
    own = [pkt for pkt in packets if pkt[0] >> 4 == version and pkt[lo:hi] == pair]
    pipe.policy_dropped += len(packets) - len(own)
    return own


def ipv4_with_ident(pkt: bytes, ident: int) -> bytes:
    """``pkt`` with its IPv4 identification set to ``ident`` (the checksum is
    not updated: AH transport mode rebuilds the header and its checksum)."""
    return pkt[:4] + (ident & 0xFFFF).to_bytes(2, "big") + pkt[6:]


def ah_spi(pkt: bytes) -> int | None:
    """The SPI of the AH header in the IP packet ``pkt``, or None if the
    packet is malformed or does not carry AH next (after the headers that
    precede AH, :func:`~aioipsec.esp.ip.header_info`; over IPv6 also a
    Destination Options header, which a peer may put in front of AH, RFC 4302
    §3.1.1, and header_info leaves behind it: :func:`~aioipsec.esp.ah.ipv6_ah_offset`)."""
    info = header_info(pkt)
    if info is None:
        return None
    at = info.insert_at
    if info.next_header != PROTO_AH:
        if info.version != 6 or info.next_header != PROTO_DSTOPTS:
            return None
        where = ipv6_ah_offset(pkt, info.total_len)
        if isinstance(where, str):
            return None
        at = where[0]
    if at + 12 > info.total_len:
        return None
    return int.from_bytes(pkt[at + 4 : at + 8], "big")


@dataclass
class ChildPipeline:
    """One installed Child SA: both directions and where to send."""

    ev: ChildSaInstalled
    sa_in: Any
    sa_out: Any
    owner: SessionProtocol | None
    remote: Address
    encap: bool
    policy_dropped: int = 0
    installed_at: float = 0.0
    app_handler: Callable[[list[bytes]], None] | None = None
    inbound_ok: dict[bytes, int] = field(default_factory=dict, repr=False, compare=False)
    """Flows (``flow_key`` -> protocol) already found inside the selectors."""
    deleted: bool = False
    """Deleted by IKE; the inbound half lingers for REKEYED_INBOUND_GRACE."""
    switch_from: ChildPipeline | None = field(default=None, repr=False, compare=False)
    """Rekey responder: the old SA we keep sending on until the initiator
    deletes it or sends on this one (then this SA takes over outbound)."""
    transport_ts: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)
    """ESP transport mode: ``(ev, remote address, remote_ts, local_ts)``,
    the selectors the rebuilt inbound packets are checked against for these
    SA addresses (see :func:`_transport_selectors`)."""
    ident: int = 0
    """AH over IPv4: the last identification sent.  Never 0: the kernel
    replaces an ID of 0 in an IP_HDRINCL packet, and the ID is covered by
    the ICV."""

    @property
    def name(self) -> str:
        return self.ev.name


def _successor(old: ChildPipeline, new: ChildPipeline) -> bool:
    """``new`` carries ``old``'s traffic under another IKE SA of the same
    connection and peer (a reauthentication): same child, same selectors."""
    return (
        new is not old
        and not new.deleted
        and new.owner is not None
        and old.owner is not None
        and new.owner is not old.owner
        and new.owner.name == old.owner.name
        and new.ev.name == old.ev.name
        and new.remote[0] == old.remote[0]
        and new.ev.local_ts == old.ev.local_ts
        and new.ev.remote_ts == old.ev.remote_ts
    )


@dataclass
class TrapPolicy:
    conn: str
    child: str
    local_ts: list[TrafficSelector]
    remote_ts: list[TrafficSelector]
    held: deque[bytes] = field(default_factory=lambda: deque())
    held_dropped: int = 0
    pending: bool = False
    """An acquire is under way: packets are held, no new acquire is sent.
    Cleared when the Child SA is installed, or when the negotiation fails or
    its IKE SA closes (:meth:`DataPlane.acquire_failed`)."""
    pending_since: float = 0.0
    retry_at: float = 0.0
    """Loop time before which a failed acquire is not retried."""
    acquires: int = 0
    """Acquires sent (negotiations triggered) by this policy."""
    remote: Address | None = None
    """Where to negotiate when the connection names no ``remote_addrs``
    (a trap installed by ``close_action`` on a responder)."""


@dataclass
class DataPlaneStats:
    no_policy: int = 0
    """Outbound packets that matched no policy (bypassed or dropped)."""
    no_sa: int = 0
    """Inbound ESP datagrams for an unknown SPI."""
    malformed: int = 0
    held_dropped: int = 0
    no_transport: int = 0
    unsupported: int = 0
    """Child SAs not installed because the data plane cannot carry them (AH
    with NAT, or AH without a raw protocol-51 socket)."""


class DataPlane:
    def __init__(self, endpoint: Endpoint, inner: Any | None) -> None:
        self.endpoint = endpoint
        self.inner = inner
        self.sad_in: dict[int, ChildPipeline] = {}
        self.outbound: list[ChildPipeline] = []
        self.traps: list[TrapPolicy] = []
        self.stats = DataPlaneStats()
        self._grace: dict[int, asyncio.TimerHandle] = {}
        self._flow_out: dict[bytes, tuple[int, ChildPipeline]] = {}
        """Outbound policy decisions by ``flow_key``; cleared whenever SAs change."""
        self._reader: asyncio.Task[None] | None = None
        self.bypass_unmatched = False

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self.inner is not None and self._reader is None:
            self._reader = self.endpoint.loop.create_task(self._read_inner(), name="aioipsec-inner-reader")

    async def close(self) -> None:
        for spi, handle in self._grace.items():
            handle.cancel()
            self.sad_in.pop(spi, None)  # remove_owner left it for its grace, which ends now
        self._grace.clear()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
            self._reader = None

    async def _read_inner(self) -> None:
        assert self.inner is not None
        while True:
            pkts = await self.inner.recv_batch()
            if pkts:
                try:
                    self.outbound_packets(pkts)
                except Exception:
                    logger.exception("outbound processing failed")

    # ---------------------------------------------------------------- SA install

    def install(self, owner: SessionProtocol | None, ev: ChildSaInstalled) -> ChildPipeline | None:
        from ..esp.sa import esp_sa_pair_from_event

        why = None
        if ev.protocol == "ah":
            # AhSa works on whole IP packets: raw IP protocol 51, no UDP encapsulation
            if ev.encap:
                why = "AH cannot traverse NAT (UDP encapsulation, RFC 3948, exists for ESP only)"
            elif getattr(self.endpoint, "ah_socket", None) is None:
                why = "no raw AH socket (IP protocol 51 needs CAP_NET_RAW and the rawesp plugin)"
        elif ev.protocol != "esp":
            why = f"{ev.protocol.upper()} is not carried by this data plane"
        if why is not None:
            self.stats.unsupported += 1
            logger.error("CHILD_SA %s %08x_i/%08x_o with %s uses %s: %s; not installed",
                         ev.name, ev.spi_in, ev.spi_out, ev.remote_addr[0], ev.protocol.upper(), why)
            return None
        sa_in, sa_out = esp_sa_pair_from_event(ev)
        self._flow_out.clear()
        remote = ev.remote_addr
        pipe = ChildPipeline(ev, sa_in, sa_out, owner, remote, ev.encap, installed_at=self.endpoint.loop.time())
        self.sad_in[ev.spi_in] = pipe
        outbound = getattr(ev, "outbound", True)
        if ev.rekeyed_from is not None:
            old = self.sad_in.get(ev.rekeyed_from)
            if old is not None:
                pipe.app_handler = old.app_handler
                if outbound and old in self.outbound:
                    if ev.initiator:
                        self.outbound.remove(old)  # the rekey initiator switches at once
                    else:
                        # the responder answered, but the initiator may not have
                        # installed the new SA yet: keep sending on the old one
                        # until the initiator deletes it or uses the new one
                        # (strongSwan's behaviour), so no packet races the install
                        pipe.switch_from = old
                        outbound = False
        elif outbound and not ev.initiator:
            # a reauthentication (a new IKE SA of the same peer, make-before-
            # break): the same as a rekey responder, keep sending on the old
            # Child SA until the peer uses this one or deletes the old one
            old = next((p for p in self.outbound if _successor(p, pipe)), None)
            if old is not None:
                pipe.app_handler = old.app_handler
                pipe.switch_from = old
                outbound = False
        if outbound:
            # a lost rekey collision's redundant SA (outbound=False) only receives
            self.outbound.insert(0, pipe)
        for trap in self.traps:
            if trap.child != ev.name:
                continue
            trap.pending = False  # before the flush: a held packet this SA does not carry may acquire again
            if trap.held:
                held = list(trap.held)
                trap.held.clear()
                self.outbound_packets(held)
        return pipe

    def peer_moved(self, owner: SessionProtocol, addr: Address, encap: bool | None = None) -> int:
        """The IKE SA of ``owner`` follows its peer to ``addr`` (a changed NAT
        mapping or a MOBIKE update, :class:`~aioipsec.events.PeerAddressChanged`):
        so do the ESP and AH of its Child SAs, and their UDP encapsulation
        becomes ``encap`` unless that is None.  Returns how many SAs changed."""
        n = 0
        for pipe in self.sad_in.values():
            if pipe.owner is not owner:
                continue
            changed = pipe.remote != addr or (encap is not None and pipe.encap != encap)
            pipe.remote = addr
            if encap is not None:
                pipe.encap = encap
            if isinstance(pipe.sa_out, AhSa) and pipe.sa_out.outer_dst is not None:
                pipe.sa_out.outer_dst = addr[0]  # AH tunnel: the outer header is ours to build (and ICV-covered)
            n += changed
        return n

    def local_moved(self, owner: SessionProtocol, addr: Address, encap: bool | None = None) -> int:
        """We moved to ``addr`` (a roaming MOBIKE initiator,
        :class:`~aioipsec.events.LocalAddressChanged`): the Child SAs of
        ``owner`` now have that local address (the endpoint's sockets already
        send from it), and their UDP encapsulation becomes ``encap`` unless
        that is None.  Returns how many SAs changed."""
        n = 0
        for pipe in self.sad_in.values():
            if pipe.owner is not owner:
                continue
            changed = pipe.ev.local_addr != addr or (encap is not None and pipe.encap != encap)
            if pipe.ev.local_addr != addr:
                pipe.ev = replace(pipe.ev, local_addr=addr)
            if encap is not None:
                pipe.encap = encap
            if isinstance(pipe.sa_out, AhSa) and pipe.sa_out.outer_src is not None:
                pipe.sa_out.outer_src = addr[0]
            n += changed
        return n

    def remove(self, ev: ChildSaDeleted) -> None:
        self._flow_out.clear()
        pipe = self.sad_in.get(ev.spi_in)
        if pipe is None:
            return
        for successor in self.sad_in.values():
            if successor.switch_from is pipe:
                self._switch_outbound(successor)
        if pipe in self.outbound:
            self.outbound.remove(pipe)
        pipe.deleted = True
        replaced = ev.reason == "rekeyed" or any(_successor(pipe, p) for p in self.outbound)
        if replaced and REKEYED_INBOUND_GRACE > 0:
            # plain ESP and IKE arrive on different sockets: the peer's last
            # packets on the old SA may be read after its DELETE
            handle = self.endpoint.loop.call_later(REKEYED_INBOUND_GRACE, self._forget_inbound, ev.spi_in, pipe)
            self._grace[ev.spi_in] = handle
        else:
            self._forget_inbound(ev.spi_in, pipe)

    def _forget_inbound(self, spi: int, pipe: ChildPipeline) -> None:
        self._grace.pop(spi, None)
        if self.sad_in.get(spi) is pipe:
            del self.sad_in[spi]

    def _switch_outbound(self, pipe: ChildPipeline) -> None:
        """A rekey responder's new SA takes over sending from the old one."""
        old, pipe.switch_from = pipe.switch_from, None
        if old is not None and old in self.outbound:
            self.outbound.remove(old)
        if pipe not in self.outbound:
            self.outbound.insert(0, pipe)
        self._flow_out.clear()

    def remove_owner(self, owner: SessionProtocol) -> None:
        self._flow_out.clear()
        for spi, pipe in list(self.sad_in.items()):
            if pipe.owner is owner and spi not in self._grace:  # a replaced SA's grace runs out by itself
                del self.sad_in[spi]
                if pipe in self.outbound:
                    self.outbound.remove(pipe)

    def add_trap(self, conn: str, child: str, local_ts: list[TrafficSelector], remote_ts: list[TrafficSelector],
                 *, remote: Address | None = None) -> TrapPolicy:
        trap = TrapPolicy(conn, child, list(local_ts), list(remote_ts), remote=remote)
        self.traps.append(trap)
        return trap

    def acquire_failed(self, conn: str) -> None:
        """The negotiation for ``conn`` failed or its IKE SA closed: its
        pending traps may acquire again (after ACQUIRE_RETRY_INTERVAL);
        held packets stay held for the next attempt."""
        now = self.endpoint.loop.time()
        for trap in self.traps:
            if trap.conn == conn and trap.pending:
                trap.pending = False
                trap.retry_at = now + ACQUIRE_RETRY_INTERVAL

    # ---------------------------------------------------------------- outbound

    def _lookup_out(self, sel: tuple[int, int, int, int, int | None, int | None]) -> ChildPipeline | None:
        v, src, dst, proto, sport, dport = sel
        for pipe in self.outbound:
            ev = pipe.ev
            if _ts_match(ev.remote_ts, v, dst, proto, dport) and _ts_match(ev.local_ts, v, src, proto, sport):
                return pipe
        return None

    def outbound_packets(self, pkts: Sequence[bytes]) -> None:
        """Policy lookup per packet (a flow cache answers for known TCP/UDP
        flows), grouped by SA, sealed and sent per SA."""
        groups: dict[int, tuple[ChildPipeline, list[bytes]]] = {}
        cache = self._flow_out
        last: ChildPipeline | None = None
        cur: list[bytes] = []
        for pkt in pkts:
            pipe: ChildPipeline | None = None
            # fast path, inlined: IPv4 without options, not a non-first fragment
            if len(pkt) >= 24 and pkt[0] == 0x45 and not (pkt[6] & 0x1F or pkt[7]):
                hit = cache.get(pkt[12:24])
                if hit is not None and hit[0] == pkt[9]:
                    pipe = hit[1]
            if pipe is None:
                key = flow_key(pkt) if len(pkt) >= 20 else None
                if key is not None:
                    hit = cache.get(key)
                    if hit is not None and hit[0] == _proto(pkt):
                        pipe = hit[1]
            if pipe is None:
                sel = packet_selector(pkt)
                if sel is None:
                    self.stats.malformed += 1
                    continue
                pipe = self._lookup_out(sel)
                if pipe is None:
                    if not self._trap(sel, pkt):
                        self.stats.no_policy += 1
                    continue
                if key is not None:
                    if len(cache) >= FLOW_CACHE_MAX:
                        cache.clear()
                    cache[key] = (sel[3], pipe)
            if pipe is last:
                cur.append(pkt)
                continue
            g = groups.get(pipe.ev.spi_out)
            if g is None:
                g = groups[pipe.ev.spi_out] = (pipe, [])
            last, cur = pipe, g[1]
            cur.append(pkt)
        for pipe, batch in groups.values():
            self.send_sealed(pipe, batch)

    def send_sealed(self, pipe: ChildPipeline, batch: Sequence[bytes]) -> None:
        if pipe.ev.protocol == "ah":
            sealed = self._seal_ah(pipe, batch)
            self._after_sa(pipe, pipe.sa_out)
            if sealed:
                self.endpoint.send_ah(sealed, pipe.remote)
            return
        if pipe.ev.mode == "transport":
            sealed = self._seal_transport(pipe, batch)
            self._after_sa(pipe, pipe.sa_out)
            if sealed:
                # the source: honoured by send_esp only where the socket is bound to the wildcard address
                self.endpoint.send_esp(sealed, pipe.remote, pipe.encap, pipe.ev.local_addr[0])
            return
        # tunnel mode: headers and ciphertexts apart, sent gathered (no copy joins them)
        heads, bodies = pipe.sa_out.seal_batch_parts(batch)
        self._after_sa(pipe, pipe.sa_out)
        if bodies:
            self.endpoint.send_esp_parts(heads, bodies, pipe.remote, pipe.encap, pipe.ev.local_addr[0])

    def _seal_transport(self, pipe: ChildPipeline, batch: Sequence[bytes]) -> list[bytes]:
        """Transport mode: ESP carries the IP payload; the outer header is the
        UDP/IP header the socket adds (RFC 3948 transport mode)."""
        out: list[bytes] = []
        run: list[bytes] = []
        run_nh = -1
        for pkt in batch:
            if pkt[0] >> 4 == 4:
                off, nh = (pkt[0] & 0x0F) * 4, pkt[9]
            else:
                off, nh = 40, pkt[6]
            if nh != run_nh and run:
                out += [d for d in pipe.sa_out.seal_batch(run, run_nh) if d]
                run = []
            run_nh = nh
            run.append(pkt[off:])
        if run:
            # one seal call per run of packets of the same protocol
            out += [d for d in pipe.sa_out.seal_batch(run, run_nh) if d]
        return out

    def _next_ident(self, pipe: ChildPipeline) -> int:
        pipe.ident = pipe.ident % 0xFFFF + 1  # 1..65535, never 0
        return pipe.ident

    def _seal_ah(self, pipe: ChildPipeline, batch: Sequence[bytes]) -> list[bytes]:
        """AH: whole IP packets out (tunnel: a new outer header; transport:
        AH inserted into the packet itself).  An IPv4 identification of 0 is
        never sent: the kernel would replace it after the ICV covered it
        (drops are counted by the SA: malformed, expired)."""
        seal = pipe.sa_out.seal_packet
        out: list[bytes] = []
        if pipe.ev.mode == "tunnel":
            v4 = ":" not in pipe.ev.local_addr[0]
            for pkt in batch:
                r = seal(pkt, ident=self._next_ident(pipe)) if v4 else seal(pkt)
                if r is not None:
                    out.append(r)
            return out
        for pkt in batch:
            if len(pkt) >= 20 and pkt[0] >> 4 == 4 and not (pkt[4] or pkt[5]):
                pkt = ipv4_with_ident(pkt, self._next_ident(pipe))
            r = seal(pkt)
            if r is not None:
                out.append(r)
        return out

    def _trap(self, sel: tuple[int, int, int, int, int | None, int | None], pkt: bytes) -> bool:
        v, src, dst, proto, sport, dport = sel
        for trap in self.traps:
            if _ts_match(trap.remote_ts, v, dst, proto, dport) and _ts_match(trap.local_ts, v, src, proto, sport):
                if len(trap.held) >= HOLD_QUEUE:
                    trap.held_dropped += 1
                    self.stats.held_dropped += 1
                else:
                    trap.held.append(pkt)
                now = self.endpoint.loop.time()
                if trap.pending and now - trap.pending_since >= ACQUIRE_TIMEOUT:
                    logger.warning("acquire for %s/%s pending for %.1f s without an outcome; acquiring again",
                                   trap.conn, trap.child, now - trap.pending_since)
                    trap.pending = False
                if not trap.pending and now >= trap.retry_at:
                    trap.pending = True
                    trap.pending_since = now
                    trap.acquires += 1
                    sel_ts = TrafficSelector(src, src, sel[0], 0, 0, 65535)
                    try:
                        self.endpoint.acquire(trap.conn, trap.child, sel_ts, remote=trap.remote)
                    except Exception as exc:
                        # e.g. no remote address to negotiate with: not stuck pending, retried later
                        logger.error("acquire for %s/%s failed: %s", trap.conn, trap.child, exc)
                        self.acquire_failed(trap.conn)
                return True
        return False

    # ---------------------------------------------------------------- inbound

    def inbound_datagrams(self, batch: Sequence[bytes]) -> None:
        """Group by SPI, open per SA, check the inner packets against the
        negotiated selectors (a flow cache answers for known TCP/UDP flows),
        deliver."""
        groups: dict[bytes, list[bytes]] = {}
        last = b""
        cur: list[bytes] = []
        for d in batch:
            if len(d) < 8:
                self.stats.malformed += 1
                continue
            k = d[:4]
            if k == last:
                cur.append(d)
                continue
            g = groups.get(k)
            if g is None:
                g = groups[k] = []
            last, cur = k, g
            g.append(d)
        for k, dgs in groups.items():
            pipe = self.sad_in.get(int.from_bytes(k, "big"))
            if pipe is None or pipe.ev.protocol != "esp":
                self.stats.no_sa += len(dgs)
                continue
            self._open_deliver(pipe, dgs)

    def inbound_ah(self, packets: Sequence[bytes]) -> None:
        """Whole IP packets carrying AH (IP protocol 51): grouped by SPI,
        verified per SA, then checked and delivered as ESP's are.  Malformed
        packets and unknown SPIs are counted; the SA counts replays,
        integrity failures and malformed AH."""
        groups: dict[int, list[bytes]] = {}
        for pkt in packets:
            spi = ah_spi(pkt)
            if spi is None:
                self.stats.malformed += 1
                continue
            g = groups.get(spi)
            if g is None:
                g = groups[spi] = []
            g.append(pkt)
        for spi, pkts in groups.items():
            pipe = self.sad_in.get(spi)
            if pipe is None or pipe.ev.protocol != "ah":
                self.stats.no_sa += len(pkts)
                continue
            try:
                self._open_deliver(pipe, pkts)
            except Exception:
                # never out of the socket callback: counted, logged with the peer
                self.stats.malformed += len(pkts)
                logger.exception("AH from %s (SPI %08x) failed", pipe.remote[0], spi)

    def _open_deliver(self, pipe: ChildPipeline, dgs: Sequence[bytes]) -> None:
        """Open ``dgs`` (ESP datagrams, or whole IP packets for AH) on ``pipe``'s
        inbound SA, check the inner packets against the selectors, deliver."""
        ev = pipe.ev
        tunnel = ev.mode == "tunnel"
        out: list[bytes] = []
        dropped = pipe.policy_dropped
        remote_ts: Sequence[TrafficSelector] = ev.remote_ts
        local_ts: Sequence[TrafficSelector] = ev.local_ts
        if ev.protocol == "ah" and not tunnel:
            # AH hands back the whole packet as the peer sealed it (no NAT ever
            # changed its addresses): it must come from the SA's remote to its
            # local address (RFC 4301 §5.2), and its protocol and ports must lie
            # inside the selectors, checked below as tunnel mode's inner packets
            opened = [r.packet for r in pipe.sa_in.open_batch(dgs) if r.packet is not None]
            inner: Sequence[bytes] = _ah_transport_own(pipe, opened)
            self._after_sa(pipe, pipe.sa_in)
        elif not tunnel:
            # ESP transport mode: the packet is rebuilt from the SA's addresses
            # (the payload's protocol is needed); its protocol and ports must
            # lie inside the selectors (RFC 4301 §5.2), checked below as tunnel
            # mode's inner packets
            rebuilt: list[bytes] = []
            for r in pipe.sa_in.open_batch(dgs):
                if r.packet is not None:
                    pkt = _rebuild_transport(pipe, r.packet, r.next_header)
                    if pkt is None:
                        pipe.policy_dropped += 1
                    else:
                        rebuilt.append(pkt)
            self._after_sa(pipe, pipe.sa_in)
            inner = rebuilt
            if rebuilt:
                remote_ts, local_ts = _transport_selectors(pipe)
        else:
            # tunnel mode: only the delivered inner packets (drops are counted by the SA)
            open_packets = getattr(pipe.sa_in, "open_packets", None)
            if open_packets is not None:
                inner = open_packets(dgs)
            else:  # AH
                inner = [r.packet for r in pipe.sa_in.open_batch(dgs) if r.packet is not None]
            self._after_sa(pipe, pipe.sa_in)
        ok = pipe.inbound_ok
        for pkt in inner:
            # the inner packet must lie inside what the peer negotiated;
            # fast path inlined: a known IPv4 flow (see flow_key)
            if (len(pkt) >= 24 and pkt[0] == 0x45 and not (pkt[6] & 0x1F or pkt[7])
                    and ok.get(pkt[12:24]) == pkt[9]):
                out.append(pkt)
                continue
            key = flow_key(pkt) if len(pkt) >= 20 else None
            if key is None or ok.get(key) != _proto(pkt):
                sel = packet_selector(pkt)
                if sel is None or not (
                    _ts_match(remote_ts, sel[0], sel[1], sel[3], sel[4])
                    and _ts_match(local_ts, sel[0], sel[2], sel[3], sel[5])
                ):
                    pipe.policy_dropped += 1
                    continue
                if key is not None:
                    if len(ok) >= FLOW_CACHE_MAX:
                        ok.clear()
                    ok[key] = sel[3]
            out.append(pkt)
        if pipe.policy_dropped != dropped:
            logger.debug("%s: %d packet(s) from %s on SA %08x outside the SA's addresses or selectors, dropped",
                         ev.name, pipe.policy_dropped - dropped, pipe.remote[0], ev.spi_in)
        if not out:
            return
        if pipe.switch_from is not None:  # the rekey initiator sends on the new SA
            self._switch_outbound(pipe)
        if pipe.app_handler is not None:
            pipe.app_handler(out)
        elif self.inner is not None:
            self.inner.send_batch(out)

    def _after_sa(self, pipe: ChildPipeline, sa: Any) -> None:
        nxt = getattr(sa, "next_event", None)
        if nxt is None:
            return
        while True:
            ev = nxt()
            if ev is None:
                break
            if isinstance(ev, ChildSaExpired) and pipe.owner is not None:
                pipe.owner.session.child_sa_expired(pipe.ev.spi_in, ev.hard, self.endpoint.loop.time())
                pipe.owner.process()

    # ---------------------------------------------------------------- status

    def child_stats(self, spi_in: int) -> dict[str, Any]:
        pipe = self.sad_in.get(spi_in)
        if pipe is None:
            return {}
        sin, sout = pipe.sa_in.stats, pipe.sa_out.stats
        return {
            "packets_in": getattr(sin, "packets_in", 0),
            "bytes_in": getattr(sin, "bytes_in", 0),
            "packets_out": getattr(sout, "packets_out", 0),
            "bytes_out": getattr(sout, "bytes_out", 0),
            "replay_failed": getattr(sin, "replay_failed", 0),
            "integrity_failed": getattr(sin, "integrity_failed", 0),
            "malformed": getattr(sin, "malformed", 0),
            "policy_dropped": pipe.policy_dropped,
        }
