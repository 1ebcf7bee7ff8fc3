"""One sans-I/O IKE session driven by the event loop (model: aioquic
``QuicConnectionProtocol``): feed datagrams and timer expiries in, transmit
what the session wants sent, re-arm one timer, and turn events into futures
that API calls can await."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..events import (
    AuthFailed,
    ChildSaDeleted,
    ChildSaInstalled,
    IkeSaDeleted,
    IkeSaEstablished,
    IpsecEvent,
    NegotiationFailed,
)
from ..selectors import Address

if TYPE_CHECKING:
    from .endpoint import Endpoint

logger = logging.getLogger("aioipsec.ike")


class IkeError(Exception):
    """Negotiation failed; ``event`` is the event that said why."""

    def __init__(self, event: IpsecEvent) -> None:
        self.event = event
        super().__init__(_describe(event))


def _describe(ev: IpsecEvent) -> str:
    if isinstance(ev, AuthFailed):
        return f"authentication failed with {ev.peer} at {ev.step}: {ev.reason}"
    if isinstance(ev, NegotiationFailed):
        return f"{ev.exchange} with {ev.peer} failed: {ev.notify} {ev.reason}".strip()
    if isinstance(ev, IkeSaDeleted):
        return f"IKE SA deleted: {ev.reason}"
    return repr(ev)


class SessionProtocol:
    """Public handle on one IKE SA (what :func:`aioipsec.connect` yields)."""

    def __init__(self, endpoint: Endpoint, session: Any, name: str) -> None:
        self._endpoint = endpoint
        self._loop = endpoint.loop
        self.session = session
        self.name = name
        self.use_4500 = False
        self._had_input = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._established: asyncio.Future[IkeSaEstablished] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._child_waiters: list[tuple[str | None, asyncio.Future[ChildSaInstalled]]] = []
        self._event_queues: list[asyncio.Queue[IpsecEvent]] = []
        self.children: dict[int, ChildSaInstalled] = {}
        """Installed Child SAs by inbound SPI."""
        self.ike_info: IkeSaEstablished | None = None
        self.established_at: float | None = None
        self._rx_seen: dict[int, int] = {}
        """Inbound packets per Child SA (inbound SPI) at the last timer (DPD)."""
        self.close_pending: dict[str, ChildSaInstalled | None] = {}
        """Child SAs (by config name) that ``close_action`` acts on if the peer
        deletes this IKE SA: the ones gone with it, and the ones the peer
        deleted that have not been re-created yet (with their last install)."""

    # ------------------------------------------------------------------ plumbing

    @property
    def remote_addr(self) -> Address:
        return self.session.remote_addr  # type: ignore[no-any-return]

    _reply: tuple[Address, str] | None = None
    """While an input is processed: (its source, the address it was sent to),
    given by a socket bound to the wildcard address."""

    def datagram_received(self, data: bytes, addr: Address, on_4500: bool, dst: str | None = None) -> None:
        """``dst``: the address the datagram was sent to (a socket bound to the
        wildcard address tells it); what the session sends back to ``addr``
        right away (its answer) leaves from there, as charon answers a request
        from its destination: a MOBIKE path probe to another address of ours
        is answered from the address probed, not from the IKE SA's (whose
        path may be the one that broke).  An IKEv2 session is told ``dst`` too:
        a MOBIKE peer's UPDATE_SA_ADDRESSES sent there moves our side of the
        IKE SA to it (RFC 4555 §3.5; IKEv1 has no MOBIKE)."""
        first = not self._had_input
        self._had_input = True
        before = getattr(self.session, "remote_addr", None)
        try:
            if dst is not None and getattr(self.session, "version", 2) != 1:
                self.session.receive_datagram(data, addr, self._loop.time(), dst=dst)
            else:
                self.session.receive_datagram(data, addr, self._loop.time())
        except Exception:  # a session must never raise on peer input; contain it anyway
            logger.exception("session %s failed on input from %s", self.name, addr)
        # IKE floats to 4500 with the peer's first message, or once the session
        # accepted one from 4500 (it follows the float to that address); never
        # on anything else that reached our 4500 with its SPIs (forged, garbage)
        if on_4500 and (first or (before != addr and getattr(self.session, "remote_addr", None) == addr)):
            self.use_4500 = True
        self._reply = (addr, dst) if dst else None
        try:
            self.process()
        finally:
            self._reply = None

    def process(self) -> None:
        """Drain events, transmit, re-arm the timer."""
        s = self.session
        events = []
        while True:
            ev = s.next_event()
            if ev is None:
                break
            events.append(ev)
        # IKE messages produced by this input leave before any ESP packet the
        # events release (e.g. IKEv1 QM3 before the held first ping, so the
        # responder has installed its SA when the ping arrives)
        self.transmit()
        # a request this session just started may use new IKE SPIs (an IKEv1
        # Phase 1 renewal's cookies): route its answer here
        self._endpoint._index(self)
        for ev in events:
            self._handle_event(ev)
        if events:
            self.transmit()

    def transmit(self) -> None:
        now = self._loop.time()
        local = getattr(self.session, "local_addr", None)
        src = local[0] if local else None  # the source, where the socket is bound to the wildcard address
        reply = self._reply
        for data, addr in self.session.datagrams_to_send(now):
            # Float to 4500 when sending to the peer's 4500 (initiator) or once the
            # peer reached our 4500 (datagram_received).  Not on the session's nat_t:
            # a responder sets it while answering IKE_SA_INIT / MM4, and that answer
            # must leave from 500, where the request came in (RFC 7296 §2.23);
            # through a NAT, a reply from 4500 never reaches the initiator.
            if addr[1] == 4500:
                self.use_4500 = True
            self._endpoint.send_ike(data, addr, self.use_4500, reply[1] if reply and addr == reply[0] else src)
        self._arm_timer()

    def _arm_timer(self) -> None:
        at = self.session.get_timer()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _note_child_traffic(self, now: float) -> None:
        """Tell the session when its Child SAs received packets since the last
        timer: ESP/AH from the peer proves it alive, so DPD only probes an idle
        peer (strongSwan: "only if no IKE or ESP/AH packet has been received
        for the configured DPD delay").  One counter sum per timer, over this
        session's Child SAs; nothing per packet."""
        note = getattr(self.session, "note_peer_traffic", None)
        if note is None or not self.children:
            return
        sad = self._endpoint.dataplane.sad_in
        seen = self._rx_seen
        counts = {}
        grew = False
        for spi in self.children:
            pipe = sad.get(spi)
            if pipe is not None:
                n = counts[spi] = pipe.sa_in.stats.packets_in
                if n > seen.get(spi, 0):
                    grew = True
        self._rx_seen = counts  # SAs gone since (rekeyed, deleted) drop out
        if grew:
            note(now)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self._note_child_traffic(self._loop.time())
            self.session.handle_timer(self._loop.time())
        except Exception:
            logger.exception("session %s timer failed", self.name)
        self.process()

    def _handle_event(self, ev: IpsecEvent) -> None:
        self._endpoint.handle_session_event(self, ev)
        if isinstance(ev, IkeSaEstablished):
            self.ike_info = ev
            self.established_at = self._loop.time()
            if not self._established.done():
                self._established.set_result(ev)
        elif isinstance(ev, ChildSaInstalled):
            self.children[ev.spi_in] = ev
            for item in list(self._child_waiters):
                name, fut = item
                if (name is None or name == ev.name) and not fut.done():
                    fut.set_result(ev)
                    self._child_waiters.remove(item)
                    break
        elif isinstance(ev, ChildSaDeleted):
            self.children.pop(ev.spi_in, None)
        elif isinstance(ev, (AuthFailed, NegotiationFailed)):
            if not self._established.done():
                self._established.set_exception(IkeError(ev))
                # mark it retrieved: the daemon never awaits it, and asyncio would log
                # "Future exception was never retrieved" at ERROR (awaiters still get it)
                self._established.exception()
            for name, fut in self._child_waiters:
                if not fut.done():
                    fut.set_exception(IkeError(ev))
            self._child_waiters.clear()
        elif isinstance(ev, IkeSaDeleted):
            if getattr(self.session, "is_closed", True) or not getattr(self.session, "is_established", False):
                self._finish(ev)
        for q in self._event_queues:
            q.put_nowait(ev)

    def _finish(self, ev: IpsecEvent | None) -> None:
        if not self._established.done():
            self._established.set_exception(IkeError(ev) if ev else ConnectionError("closed"))
            self._established.exception()
        for _name, fut in self._child_waiters:
            if not fut.done():
                fut.set_exception(IkeError(ev) if ev else ConnectionError("closed"))
                fut.exception()
        self._child_waiters.clear()
        if not self._closed.done():
            self._closed.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._endpoint.forget(self)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None

    # ------------------------------------------------------------------ API

    async def wait_established(self) -> IkeSaEstablished:
        return await self._established

    def _child_future(self, name: str | None) -> asyncio.Future[ChildSaInstalled]:
        fut: asyncio.Future[ChildSaInstalled] = self._loop.create_future()
        self._child_waiters.append((name, fut))
        return fut

    async def wait_child(self, name: str | None = None) -> ChildSaInstalled:
        """Wait for the next Child SA (of ``name``) to be installed; returns
        an already-installed one immediately."""
        for ev in self.children.values():
            if name is None or ev.name == name:
                return ev
        return await self._child_future(name)

    async def create_child_sa(self, name: str) -> ChildSaInstalled:
        fut = self._child_future(name)
        self.session.create_child_sa(name, self._loop.time())
        self.process()
        return await fut

    async def rekey_child_sa(self, spi_in: int) -> ChildSaInstalled:
        old = self.children.get(spi_in)
        fut = self._child_future(old.name if old else None)
        self.session.rekey_child_sa(spi_in, self._loop.time())
        self.process()
        return await fut

    async def rekey(self) -> None:
        """Rekey the IKE SA."""
        self.session.rekey_ike_sa(self._loop.time())
        self.process()

    async def dpd(self) -> None:
        self.session.dpd(self._loop.time())
        self.process()

    async def delete_child_sa(self, spi_in: int) -> None:
        self.session.delete_child_sa(spi_in, self._loop.time())
        self.process()

    async def close(self, timeout: float = 5.0) -> None:
        """Delete the IKE SA (and its Child SAs) and wait for the peer's answer."""
        if self._closed.done():
            return
        try:
            self.session.delete(self._loop.time())
        except Exception:
            logger.debug("delete failed", exc_info=True)
        self.process()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            self._finish(None)

    def open_datagram(self, port: int, *, local_ip: str | None = None, remote_ip: str | None = None) -> Any:
        """A UDP "socket" on ``port`` whose traffic to the peer is protected by
        this IKE SA's Child SAs (transport mode: the outer addresses; tunnel
        mode: give inner ``local_ip``/``remote_ip`` inside the selectors).
        Needs an endpoint without another inner transport (no TUN)."""
        from .datagram import DatagramHub, SecureDatagram

        dp = self._endpoint.dataplane
        if dp.inner is None:
            dp.inner = DatagramHub()
        if not isinstance(dp.inner, DatagramHub):
            raise RuntimeError("this endpoint delivers to another inner transport (e.g. TUN)")
        return SecureDatagram(
            self._endpoint, dp.inner, port,
            local_ip or self.session.local_addr[0], remote_ip or self.session.remote_addr[0],
        )

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def events(self) -> AsyncIterator[IpsecEvent]:
        """Every event of this session from now on."""
        q: asyncio.Queue[IpsecEvent] = asyncio.Queue()
        self._event_queues.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._event_queues.remove(q)
