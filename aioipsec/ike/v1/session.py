"""The IKEv1 session: a sans-I/O state machine for one peer (bytes and time
in, bytes, deadlines and events out), the IKEv1 sibling of ``IkeSessionV2``.

A session owns the ISAKMP SA(s) with its peer (normally one; two while a
Phase 1 is being re-authenticated) and the IPsec SAs negotiated over them.
IPsec SAs belong to the session, not to one ISAKMP SA, so they survive a
Phase 1 renewal, as in IKEv1 they may.

Log lines (logger ``aioipsec.ike``) and :class:`~aioipsec.events.ExchangeStep`
events name each step: ``MM1 sent`` ... ``MM6 received``, ``AM1 sent`` ...,
``QM1 sent`` ... ``QM3 received``, ``IKE Phase 1 complete`` and ``IPsec SA
established``, with the peer and the cookies.

Nothing here reads a clock or opens a socket; ``now`` and ``random`` come in.
Certificate validity needs calendar time: a session whose configuration
verifies certificates must be given ``wall_clock=`` (a callable returning an
aware ``datetime``; the asyncio endpoint passes UTC now).
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import itertools
import logging
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...config import ChildConfig, ConnectionConfig, GlobalConfig
from ...crypto.kex import KeyExchange, create_key_exchange
from ...crypto.transforms import KeAlg
from ...errors import LocalProtocolError, ParseError, RemoteProtocolError
from ...events import (
    AuthFailed,
    ChildSaDeleted,
    ChildSaInstalled,
    DpdTimeout,
    ExchangeStep,
    IkeSaDeleted,
    IkeSaEstablished,
    IpsecEvent,
    NegotiationFailed,
    PeerAddressChanged,
)
from ...selectors import Address, TrafficSelector
from .. import cfgattr
from ..auth import Identity
from .constants import (
    ISAKMP_HEADER_LEN,
    CfgAttr,
    ExchangeType,
    Flag,
    Ike1Auth,
    NotifyType,
    PayloadType,
    ProtocolId,
    notify_name,
)
from .errors import AuthenticationFailed, Ikev1Error, InvalidCertificate, NoProposalChosen
from .message import Message, encode_message
from .payloads import (
    AttributePayload,
    CfgAttribute,
    FragmentPayload,
    IsakmpHeader,
    NotifyPayload,
    Proposal,
    SaPayload,
    Transform,
    decode_chain,
)
from .phase1 import Phase1Suite, proposal_method, select_suite, suites_from_config
from .sa import ChildSa, IsakmpSa, State
from .task_manager import Task, TaskManagerV1
from .tasks import dpd
from .tasks.aggressive_mode import AggressiveModeTask
from .tasks.informational import (
    build_informational,
    delete_ipsec,
    delete_isakmp,
    isakmp_notify,
    process_informational,
)
from .tasks.main_mode import MainModeTask
from .tasks.natd import nat_any
from .tasks.quick_mode import QuickModeTask, host_ts
from .tasks.transaction import (
    ModeCfgRequestTask,
    TransactionResponderTask,
    TransactionTask,
    XauthRequestTask,
    XauthStatusTask,
    modecfg_reply,
)
from .tasks.transaction import dropped as modecfg_dropped

from ..v2.pools import lease_from

if TYPE_CHECKING:
    from ..v2.pools import AddressPool

logger = logging.getLogger("aioipsec.ike")

__all__ = ["IkeSessionV1"]

NATT_PORT = 4500
HALF_OPEN_TIMEOUT = 30.0
"""A Phase 1 we answer must complete within this many seconds."""
MAX_CONNECTING = 2
"""Phase 1 negotiations with the peer at the same time (ours and theirs)."""
SUPERSEDED_GRACE = 30.0
"""An ISAKMP SA replaced by the peer's reauthentication goes after this long
if the peer does not delete it."""
REKEY_DELETE_DELAY = 1.0
"""Seconds between finishing a Quick Mode rekey and deleting the replaced IPsec SA."""
MAX_FRAGMENTS = 32
MAX_FRAGMENT_MESSAGES = 4
"""Partial fragmented messages kept per session (the oldest goes first)."""

_MODP_EXPONENT_BITS = {1: 160, 2: 160, 5: 192, 14: 256, 15: 256, 16: 304, 17: 352, 18: 400}


class IkeSessionV1:
    """One IKEv1 peer: Phase 1 (Main or Aggressive Mode), Quick Mode,
    Informational exchanges, DPD, NAT-T, retransmission and rekeying."""

    version = 1

    def __init__(
        self,
        *,
        configuration: ConnectionConfig | None = None,
        is_initiator: bool = True,
        local_addr: Address = ("0.0.0.0", 500),
        remote_addr: Address = ("0.0.0.0", 500),
        random: Callable[[int], bytes] = os.urandom,
        configurations: Sequence[ConnectionConfig] | None = None,
        global_config: GlobalConfig | None = None,
        wall_clock: Callable[[], datetime.datetime] | None = None,
        pools: Mapping[str, AddressPool] | None = None,
    ) -> None:
        if configuration is None and not configurations:
            raise LocalProtocolError("IkeSessionV1 needs a configuration")
        self.candidates: list[ConnectionConfig] = list(configurations or [])
        if configuration is None:
            configuration = self.candidates[0]
        elif configuration not in self.candidates:
            self.candidates.insert(0, configuration)
        if configuration.version != 1:
            raise LocalProtocolError(f"connection {configuration.name} is IKEv{configuration.version}, not IKEv1")
        self.cfg = configuration
        self.is_initiator = is_initiator
        self.local_addr: Address = tuple(local_addr)  # type: ignore[assignment]
        self.remote_addr: Address = tuple(remote_addr)  # type: ignore[assignment]
        self.random = random
        self.global_config = global_config or GlobalConfig()
        if wall_clock is None and any(c.remote.auth != "psk" for c in self.candidates):
            raise LocalProtocolError("wall_clock is required to verify peer certificates")
        self._wall_clock = wall_clock
        self.sas: list[IsakmpSa] = []
        self.children: dict[int, ChildSa] = {}
        self._deferred_deletes: list[tuple[float, ChildSa]] = []
        self._pending: list[tuple[str, ChildSa | None]] = []
        self._out: list[tuple[bytes, Address]] = []
        self._events: deque[IpsecEvent] = deque()
        self._closed = False
        self._had_contact = False
        self._unique = itertools.count(1)
        self._order = itertools.count(1)
        self._frags: dict[tuple[bytes, int], dict[int, bytes]] = {}
        self._frag_last: dict[tuple[bytes, int], int] = {}
        self.stats: Counter[str] = Counter()
        self.now = 0.0
        self._prefloat_remote: Address | None = None
        self._ipsec_addr: Address | None = None
        """The peer address the IPsec SAs send to (set at install, moved with
        the peer); a Phase 1 renewal from elsewhere moves them (_phase1_done)."""
        self.pools: Mapping[str, AddressPool] = pools or {}
        """Gateway: the endpoint's address pools by name (shared with IKEv2,
        :mod:`aioipsec.ike.v2.pools`), for Mode Config."""
        self.local_vips: list[str] = []
        """Virtual IPs the gateway assigned us by Mode Config."""
        self.remote_vips: list[str] = []
        """Virtual IPs we leased to the peer by Mode Config."""
        self.dns: list[str] = []
        """DNS servers that came with our virtual IPs."""
        self.nbns: list[str] = []
        self.remote_subnets: list[str] = []
        """Client: NBNS servers and networks reachable through the gateway it sent (Mode Config)."""
        self._leases: list[tuple[AddressPool, str, Any]] = []

    @classmethod
    def respond(
        cls,
        *,
        configurations: Sequence[ConnectionConfig],
        local_addr: Address,
        remote_addr: Address,
        random: Callable[[int], bytes] = os.urandom,
        global_config: GlobalConfig | None = None,
        **kw: Any,
    ) -> IkeSessionV1:
        """A responder session for a peer whose first message is about to be
        fed in; the configuration is chosen from ``configurations`` by the
        proposals (and, in Aggressive Mode, the identity) the peer sends."""
        return cls(
            configurations=configurations,
            is_initiator=False,
            local_addr=local_addr,
            remote_addr=remote_addr,
            random=random,
            global_config=global_config,
            **kw,
        )

    # ================================================================== properties

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def sa(self) -> IsakmpSa | None:
        """The current ISAKMP SA: the newest established one, else the newest."""
        live = [s for s in self.sas if s.state is not State.DELETED]
        est = [s for s in live if s.established and not s.superseded]
        if est:
            return est[-1]
        return live[-1] if live else None

    @property
    def spi_i(self) -> bytes:
        sa = self.sa
        return sa.spi_i if sa is not None else bytes(8)

    @property
    def spi_r(self) -> bytes:
        sa = self.sa
        return sa.spi_r if sa is not None else bytes(8)

    @property
    def all_spis(self) -> list[bytes]:
        """Cookies of every live ISAKMP SA (for routing by the endpoint)."""
        out = []
        for s in self.sas:
            out.append(s.spi_i)
            if s.spi_r != bytes(8):
                out.append(s.spi_r)
        return out

    @property
    def cookie_pairs(self) -> list[bytes]:
        """CKY-I + CKY-R (16 bytes) of every live ISAKMP SA, CKY-R zero while
        our Main/Aggressive Mode awaits it: what the endpoint routes IKEv1
        messages by (hosts behind one NAT share an address, never cookies).
        While our Main Mode waits for MM4, CKY-I + zero as well: an MM2 of
        another responder cookie is still taken (``MainModeTask.other_mm2``)."""
        out = []
        for s in self.sas:
            if s.state is State.DELETED:
                continue
            out.append(s.spi_i + s.spi_r)
            if s.spi_r != bytes(8) and s.tm.takes_other_mm2():
                out.append(s.spi_i + bytes(8))
        return out

    @property
    def is_established(self) -> bool:
        sa = self.sa
        return sa is not None and sa.established

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def nat_t(self) -> bool:
        sa = self.sa
        return sa is not None and sa.nat_t

    @property
    def peer(self) -> str:
        """``192.0.2.2`` or ``192.0.2.2[hq.example]`` once the identity is known."""
        sa = self.sa
        ident = sa.remote_id if sa is not None else None
        return f"{self.remote_addr[0]}[{ident}]" if ident is not None else self.remote_addr[0]

    # ================================================================== API

    def initiate(self, now: float, child: str | None = None) -> None:
        """Start Phase 1 (Main or Aggressive Mode per the configuration) and,
        with ``child``, a Quick Mode for that child once it is up."""
        self.now = now
        self._closed = False
        if child is not None:
            self._want_child(child, None)
        if self.sa is None or self.sa.state is State.DELETED:
            self._start_phase1(now)
        elif self.sa.established:
            self._flush_pending(now)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Feed one datagram from the peer (without the non-ESP marker)."""
        self.now = now
        try:
            self._receive(bytes(data), tuple(addr), now)  # type: ignore[arg-type]
        except RemoteProtocolError as exc:
            self._dropped(None, "?", exc)
        except ValueError as exc:  # e.g. an algorithm this build lacks: never escape
            logger.warning("datagram from %s dropped: %s", addr[0], exc, exc_info=True)
            self.stats["dropped"] += 1
        if not self.is_initiator and not self.sas and not self._closed:
            # a responder session whose first datagram opened no ISAKMP SA (not an
            # MM1/AM1, a broken header): nothing of the peer's to keep, it ends
            self._close()

    def retry_held(self, now: float, settled: Iterable[tuple[bytes, int]] | None = None) -> bool:
        """The revocation fetcher is done with the certificates ``settled``
        (issuer DER, serial; None: any): a Phase 1 message held for one of
        them (MM5/MM6, AM2/AM3) is processed again, as if it had just
        arrived.  Cheap when nothing is held.  Returns whether one was (the
        caller then sends what the session produced).  Never raises."""
        if not any(t.held is not None for sa in self.sas for t in sa.tm.tasks()):
            return False
        self.now = now
        keys = None if settled is None else set(settled)
        done = False
        for sa in list(self.sas):
            if sa.state is State.DELETED:
                continue
            try:
                done = sa.tm.retry_held(keys, now) or done
            except RemoteProtocolError as exc:
                self._dropped(sa, "?", exc)
            except ValueError as exc:  # as receive_datagram: never escape
                logger.warning("held message from %s dropped: %s", self.remote_addr[0], exc, exc_info=True)
                self.stats["dropped"] += 1
        return done

    def export_keys(self) -> list[dict[str, Any]]:
        """Phase 1 keys of the live ISAKMP SAs, for Wireshark's
        ``ikev1_decryption_table`` (the caller checks ``key_export``)."""
        out: list[dict[str, Any]] = []
        for sa in self.sas:
            keys = sa.keys
            if keys is None or sa.state is State.DELETED:
                continue
            out.append({"version": 1, "spi_i": sa.spi_i, "spi_r": sa.spi_r, "enc_key": keys.enc_key})
        return out

    def handle_timer(self, now: float) -> None:
        self.now = now
        for sa in list(self.sas):
            if sa.state is State.DELETED:
                continue
            tm = sa.tm
            tm.on_timer(now)
            if sa.state is State.DELETED:
                continue
            if not sa.established and not sa.initiator and now >= sa.started_at + HALF_OPEN_TIMEOUT:
                logger.info("half-open ISAKMP SA with %s timed out (cookies %s)", self.peer, sa.cookies)
                task = next((t for t in sa.tm.tasks() if t.phase1 and t.unverified), None)
                if task is not None:
                    self._unverified_failed(sa, task, f"half-open for {HALF_OPEN_TIMEOUT:.0f}s")
                self._remove_sa(sa, "half-open timeout", now, notify_peer=False)
                continue
            if sa.established:
                if sa.hard_at is not None and now >= sa.hard_at:
                    self._expire_sa(sa, now)
                    continue
                if sa.soft_at is not None and now >= sa.soft_at and not sa.superseded:
                    sa.soft_at = None
                    self._reauth(sa, now)
                if dpd.enabled(sa) and sa is self.sa:
                    if dpd.is_dead(sa, now):
                        self._dead_peer(sa, now)
                        continue
                    if dpd.due(sa, now):
                        self._send_dpd(sa, now)
        for at, child in list(self._deferred_deletes):
            if now >= at:
                self._deferred_deletes.remove((at, child))
                if self.children.get(child.spi_in) is child:
                    self._delete_child(child, "rekeyed", now, send=True)
        for child in list(self.children.values()):
            if child.hard_at is not None and now >= child.hard_at:
                self._delete_child(child, "expired", now, send=True)
            elif child.soft_at is not None and now >= child.soft_at and not child.rekeying and not child.rekeyed:
                child.soft_at = None
                self._rekey_child(child, now)

    def get_timer(self) -> float | None:
        times: list[float] = []
        for sa in self.sas:
            if sa.state is State.DELETED:
                continue
            t = sa.tm.next_timer()
            if t is not None:
                times.append(t)
            if not sa.established and not sa.initiator:
                times.append(sa.started_at + HALF_OPEN_TIMEOUT)
            if sa.established:
                for x in (sa.hard_at, None if sa.superseded else sa.soft_at):
                    if x is not None:
                        times.append(x)
                if sa is self.sa:
                    d = dpd.next_time(sa)
                    if d is not None:
                        times.append(d)
        times += [at for at, _child in self._deferred_deletes]
        for c in self.children.values():
            if c.hard_at is not None:
                times.append(c.hard_at)
            if c.soft_at is not None and not c.rekeying and not c.rekeyed:
                times.append(c.soft_at)
        return min(times) if times else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> IpsecEvent | None:
        return self._events.popleft() if self._events else None

    def create_child_sa(self, name: str, now: float) -> None:
        """Negotiate (another) IPsec SA for child configuration ``name``."""
        self.now = now
        if name not in self.cfg.children:
            raise LocalProtocolError(f"connection {self.cfg.name} has no child {name!r}")
        self._want_child(name, None)
        sa = self.sa
        if sa is None or sa.state is State.DELETED or self._closed:
            self._closed = False
            self._start_phase1(now)
        elif sa.established:
            self._flush_pending(now)

    def rekey_child_sa(self, spi_in: int, now: float) -> None:
        self.now = now
        child = self.children.get(spi_in)
        if child is None:
            raise LocalProtocolError(f"no IPsec SA with inbound SPI {spi_in:#010x}")
        self._rekey_child(child, now)

    def delete_child_sa(self, spi_in: int, now: float) -> None:
        self.now = now
        child = self.children.get(spi_in)
        if child is None:
            raise LocalProtocolError(f"no IPsec SA with inbound SPI {spi_in:#010x}")
        self._delete_child(child, "deleted locally", now, send=True)

    def delete(self, now: float, reason: str = "deleted locally") -> None:
        """Delete every IPsec SA and the ISAKMP SA, telling the peer with
        Informational deletes (the operator's ``clear crypto isakmp``)."""
        self.now = now
        for child in list(self.children.values()):
            self._delete_child(child, reason, now, send=True)
        for sa in list(self.sas):
            if sa.state is not State.DELETED:
                self._remove_sa(sa, reason, now, notify_peer=True)
        self._close()

    def unique_id(self) -> tuple[str, str, str] | None:
        """(connection, our identity, the peer's) of the established ISAKMP
        SA, what uniqueness compares (strongSwan: my ID and the other's EAP/
        XAUTH identity): on an XAUTH gateway the peer is its XAUTH user (road
        warriors share one group identity).  None before the SA is
        established (XAUTH and Mode Config included) or once closed."""
        sa = self.sa
        if sa is None or not sa.established or sa.gate or self._closed:
            return None
        local = str(sa.local_id) if sa.local_id is not None else self.local_addr[0]
        if sa.cfg.xauth_server and sa.xauth_user is not None:
            remote = f"xauth:{sa.xauth_user}"
        else:
            remote = str(sa.remote_id) if sa.remote_id is not None else self.remote_addr[0]
        return sa.cfg.name, local, remote

    def replaces(self, other: Any) -> bool:
        """Whether this session's ISAKMP SA, just established, replaces
        ``other`` (another IKEv1 session of the same endpoint, an older SA)
        under the connection's uniqueness policy (:attr:`ConnectionConfig.unique`):
        the same identities on both, and with ``no`` INITIAL-CONTACT too.
        The peer came back from another address (a new session: sessions are
        per peer address); the caller deletes ``other`` with
        :meth:`replaced_by`."""
        if other is self or getattr(other, "version", None) != 1 or other.is_closed:
            return False
        policy = self.cfg.unique
        mine, theirs = self.unique_id(), other.unique_id()
        if policy == "never" or mine is None or mine != theirs:
            return False
        sa, old = self.sa, other.sa
        assert sa is not None and old is not None
        if (old.established_at or 0.0) > (sa.established_at or 0.0):
            return False  # the other one is the newer
        # no and keep: only INITIAL-CONTACT (the peer lost it, as charon) replaces
        return policy == "replace" or sa.initial_contact

    def kept_out_by(self, other: Any) -> bool:
        """``unique = keep``: whether this session's ISAKMP SA, just
        established without INITIAL-CONTACT, must go because ``other`` (an
        older established one of the same identities) stays.  The caller
        deletes this session (strongSwan refuses it in Phase 1; here the
        gateway deletes it with its first Informational)."""
        if other is self or getattr(other, "version", None) != 1 or other.is_closed or self.cfg.unique != "keep":
            return False
        sa, old = self.sa, other.sa
        if sa is None or old is None or sa.initial_contact:
            return False
        mine = self.unique_id()
        if mine is None or mine != other.unique_id():
            return False
        return (old.established_at or 0.0) <= (sa.established_at or 0.0)

    def adopts(self, new: Any) -> bool:
        """Whether ``new`` (another IKEv1 session of the same endpoint: the
        peer started a Phase 1 under new cookies, which the endpoint routes
        to a new session) renews this session's ISAKMP SA: its only ISAKMP
        SA, which the peer initiated, was just established (XAUTH included)
        with the same connection and identities as ours, from the same IP
        address (the port may differ: a NAT's new mapping), without
        INITIAL-CONTACT (a restarted peer's SAs here are stale instead), and
        nothing was negotiated over it yet.  Like charon's IKEv1
        reauthentication check: a renewal keeps the IPsec SAs.  Another host
        behind the same NAT address has another identity (or XAUTH user)."""
        if new is self or getattr(new, "version", None) != 1 or self._closed or new.is_closed:
            return False
        if len(new.sas) != 1 or new.children:
            return False
        sa = new.sas[0]
        if sa.initiator or not sa.established or sa.gate or sa.initial_contact:
            return False
        if self.remote_addr[0] != new.remote_addr[0]:
            return False
        mine = self.unique_id()
        return mine is not None and mine == new.unique_id()

    def adopt(self, new: IkeSessionV1, now: float) -> None:
        """Take over ``new``'s ISAKMP SA, the peer's renewal of ours (see
        :meth:`adopts`), as if it had been negotiated here: it becomes the
        current SA (``rekeyed_from`` the one it renews, which lingers for the
        peer's delete), IKE follows it to its address and port, and so do the
        IPsec SAs kept (:class:`PeerAddressChanged`).  ``new`` is left empty."""
        self.now = now
        (sa,) = new.sas
        new.sas = []
        new._closed = True
        sa.tm.session = self
        for task in sa.tm.tasks():
            task.session = self
        cur = self.sa
        sa.rekeyed_from = cur.spi_i if cur is not None and cur.established else None
        sa.created_no = next(self._order)
        sa.established_no = next(self._order)
        self.sas.append(sa)
        self.remote_addr = new.remote_addr
        self.local_addr = new.local_addr
        if new._prefloat_remote is not None:
            self._prefloat_remote = new._prefloat_remote
        for lease in new._leases:  # Mode Config before the handover (leases are per identity: the same)
            if lease not in self._leases:
                self._leases.append(lease)
        self.remote_vips += [v for v in new.remote_vips if v not in self.remote_vips]
        new._leases, new.remote_vips = [], []
        self.stats.update(new.stats)
        logger.info("Phase 1 renewal by %s from %s:%d (cookies %s) replaces ISAKMP SA %s: %d IPsec SA(s) kept",
                    self.peer, self.remote_addr[0], self.remote_addr[1], sa.cookies,
                    sa.rekeyed_from.hex() if sa.rekeyed_from else "-", len(self.children))
        self._established_event(sa)
        self._renewed_from_elsewhere(sa)
        self._supersede_older(sa, now)
        self._flush_pending(now)

    def replaced_by(self, new: IkeSessionV1, now: float) -> None:
        """Delete everything: ``new`` (same identities, another address) replaces us."""
        sa = new.sa
        reason = f"replaced by a new ISAKMP SA with {new.peer} (unique = {new.cfg.unique})"
        logger.info("ISAKMP SA with %s and its %d IPsec SA(s) replaced: the peer established a new one from %s:%d "
                    "with the same identities (cookies %s)", self.peer, len(self.children), new.remote_addr[0],
                    new.remote_addr[1], sa.cookies if sa is not None else "?")
        self.delete(now, reason)

    def note_peer_traffic(self, now: float) -> None:
        """Authenticated ESP/AH from the peer arrived by ``now`` (the caller's
        data plane saw it).  DPD is for when nothing comes from the peer (RFC
        3706 §5.3), so this is liveness like an IKE message: no R-U-THERE is
        sent while traffic flows, and an outstanding one stops counting
        towards ``dpd_timeout``."""
        sa = self.sa
        if sa is not None and sa.established and now > sa.last_inbound:
            dpd.alive(sa, now)

    def dpd(self, now: float) -> None:
        """Send an R-U-THERE now."""
        self.now = now
        sa = self.sa
        if sa is None or not sa.established:
            raise LocalProtocolError("no established ISAKMP SA")
        self._send_dpd(sa, now)

    def acquire(self, selector: TrafficSelector, now: float) -> None:
        """The data plane saw a packet for ``selector`` without an SA:
        negotiate the matching child (and Phase 1 first when needed)."""
        self.now = now
        name = self._child_for_selector(selector)
        if name is None:
            logger.info("acquire for %s matches no child of %s; ignored", selector, self.cfg.name)
            return
        if any(c.name == name and not c.rekeyed for c in self.children.values()):
            return
        if any(n == name for n, _ in self._pending) or self._qm_running(name):
            return
        logger.info("acquire: %s/%s triggered by %s", self.cfg.name, name, selector)
        self.create_child_sa(name, now)

    def child_sa_expired(self, spi: int, hard: bool, now: float) -> None:
        """The data plane hit a byte/packet limit (or sequence exhaustion)."""
        self.now = now
        child = self.children.get(spi) or next((c for c in self.children.values() if c.spi_out == spi), None)
        if child is None:
            return
        if hard:
            self._delete_child(child, "expired", now, send=True)
        elif not child.rekeying and not child.rekeyed:
            self._rekey_child(child, now)

    def rekey_ike_sa(self, now: float) -> None:
        """Renew Phase 1 now (IKEv1 has no rekey: a new Phase 1 replaces it)."""
        self.now = now
        sa = self.sa
        if sa is None or not sa.established:
            raise LocalProtocolError("no established ISAKMP SA")
        self._reauth(sa, now)

    # ================================================================== receiving

    def _find_sa(self, header: IsakmpHeader) -> IsakmpSa | None:
        for sa in self.sas:
            if sa.state is State.DELETED or sa.spi_i != header.spi_i:
                continue
            if sa.spi_r == header.spi_r or header.spi_r == bytes(8):
                return sa
            if sa.spi_r == bytes(8) and sa.initiator:
                return sa
        return None

    def _receive(self, data: bytes, addr: Address, now: float) -> None:
        try:
            header = IsakmpHeader.decode(data)
        except ParseError as exc:
            self._dropped(None, "?", exc)
            return
        sa = self._find_sa(header)
        if sa is None:
            if self._other_mm2(data, header, addr, now):
                return
            sa = self._maybe_new_responder(header, addr, now)
            if sa is None:
                self.stats["unknown_spi"] += 1
                logger.debug("ISAKMP message for unknown cookies %s/%s dropped", header.spi_i.hex(), header.spi_r.hex())
                return
        if header.next_payload == PayloadType.FRAGMENT:
            whole = self._reassemble(sa, data, header)
            if whole is None:
                return
            data = whole
            header = IsakmpHeader.decode(data)
            if header.spi_i != sa.spi_i:
                self._dropped(sa, "?", ParseError("reassembled message of another SA"))
                return
        sa.tm.handle(data, header, addr, now)

    def _other_mm2(self, data: bytes, header: IsakmpHeader, addr: Address, now: float) -> bool:
        """Main Mode under the CKY-I of a Phase 1 we initiated but another
        CKY-R: maybe another responder's MM2 (see
        :meth:`TaskManagerV1.other_mm2`).  False: not taken, unknown cookies."""
        if header.exchange != ExchangeType.IDENTITY_PROTECTION or header.spi_r == bytes(8):
            return False
        for sa in self.sas:
            if sa.initiator and sa.state is State.CONNECTING and sa.spi_i == header.spi_i:
                return sa.tm.other_mm2(data, header, addr, now)
        return False

    def _maybe_new_responder(self, header: IsakmpHeader, addr: Address, now: float) -> IsakmpSa | None:
        """A Phase 1 request with new cookies: the first message to a
        responder, the peer's reauthentication, or a new start after a delete."""
        if header.spi_r != bytes(8) or header.message_id != 0 or header.next_payload != PayloadType.SA:
            return None
        if header.exchange not in (ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE):
            return None
        connecting = [s for s in self.sas if s.state is State.CONNECTING]
        if len(connecting) >= MAX_CONNECTING:
            return None
        sa = IsakmpSa(cfg=self.cfg, initiator=False, spi_i=header.spi_i, spi_r=self._new_cookie(), started_at=now)
        sa.aggressive = header.exchange == ExchangeType.AGGRESSIVE
        sa.created_no = next(self._order)
        sa.candidates = list(self.candidates) or [self.cfg]
        est = self.sa
        if est is not None and est.established:
            sa.rekeyed_from = est.spi_i
        sa.tm = TaskManagerV1(self, sa)
        sa.last_inbound = now
        self.sas.append(sa)
        self._closed = False
        if self.remote_addr[0] in ("0.0.0.0", "::"):
            self.remote_addr = addr
        return sa

    def _new_passive(self, sa: IsakmpSa, header: IsakmpHeader, addr: Address, now: float) -> Task | None:
        ex = header.exchange
        if ex in (ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE):
            if sa.initiator or sa.established or header.message_id != 0 or sa.tm.passive:
                self.stats["dropped"] += 1
                return None
            if ex == ExchangeType.AGGRESSIVE:
                return AggressiveModeTask(self, sa, initiator=False)
            return MainModeTask(self, sa, initiator=False)
        if ex == ExchangeType.QUICK_MODE:
            if not sa.established or sa.keys is None or header.message_id == 0:
                self.stats["dropped"] += 1
                logger.debug("Quick Mode on an unestablished ISAKMP SA ignored")
                return None
            if sa.gate:
                # strongSwan and Cisco gateways refuse Quick Mode before XAUTH
                self.stats["dropped"] += 1
                logger.info("Quick Mode from %s before %s completed ignored (cookies %s)",
                            self.peer, sa.gate.upper(), sa.cookies)
                return None
            return QuickModeTask(self, sa, initiator=False, mid=header.message_id)
        if ex == ExchangeType.TRANSACTION:
            if not sa.established or sa.keys is None or header.message_id == 0:
                self.stats["dropped"] += 1
                logger.debug("Transaction on an unestablished ISAKMP SA ignored")
                return None
            return TransactionResponderTask(self, sa, header.message_id)
        logger.info("%s exchange from %s not supported; ignored", _exchange_name(ex), self.peer)
        self.stats["unsupported"] += 1
        return None

    def _informational(self, sa: IsakmpSa, data: bytes, header: IsakmpHeader, addr: Address, now: float) -> None:
        process_informational(self, sa, data, header, addr, now)

    def _reassemble(self, sa: IsakmpSa, data: bytes, header: IsakmpHeader) -> bytes | None:
        try:
            chain = decode_chain(header.next_payload, data[ISAKMP_HEADER_LEN : header.length])
        except ParseError as exc:
            self._dropped(sa, "fragment", exc)
            return None
        frag = chain.payloads[0] if chain.payloads else None
        if not isinstance(frag, FragmentPayload) or len(chain.payloads) != 1:
            self._dropped(sa, "fragment", ParseError("fragment message with other payloads"))
            return None
        key = (sa.spi_i, frag.fragment_id)
        if frag.number == 0 or frag.number > MAX_FRAGMENTS:
            self._drop_fragments(key)
            return None
        parts = self._frags.get(key)
        if parts is None:
            # fragments are not authenticated: anyone who sees the cookies can
            # start messages, so only the newest few partial ones are kept
            while len(self._frags) >= MAX_FRAGMENT_MESSAGES:
                self._drop_fragments(next(iter(self._frags)))
                self.stats["fragments_evicted"] += 1
            parts = self._frags[key] = {}
        parts[frag.number] = frag.data
        if frag.last:
            self._frag_last[key] = frag.number
        if sum(len(p) for p in parts.values()) > self.global_config.fragment_reassembly_max:
            self._drop_fragments(key)
            self._dropped(sa, "fragment", ParseError("reassembled message too large"))
            return None
        last = self._frag_last.get(key)
        if last is None or any(n not in parts for n in range(1, last + 1)):
            return None
        whole = b"".join(parts[n] for n in range(1, last + 1))
        self._drop_fragments(key)
        self.stats["reassembled"] += 1
        return whole

    def _drop_fragments(self, key: tuple[bytes, int]) -> None:
        self._frags.pop(key, None)
        self._frag_last.pop(key, None)

    # ================================================================== sending

    def _send(self, sa: IsakmpSa, msg: Message, now: float, step: str = "") -> list[bytes]:
        keys = sa.keys
        if msg.flags & Flag.ENCRYPTION and keys is not None:
            iv = keys.iv.get_iv(msg.message_id)
            data, last = encode_message(msg, keys.encr, iv)
            if msg.exchange != ExchangeType.INFORMATIONAL:
                keys.iv.update_iv(msg.message_id, last)
                keys.iv.confirm_iv(msg.message_id)
        else:
            msg.flags &= ~Flag.ENCRYPTION
            data, _ = encode_message(msg)
        packets = self._fragment(sa, data, msg)
        for p in packets:
            self._out.append((p, self.remote_addr))
        if step:
            self._step(sa, f"{step} sent")
        return packets

    def _fragment(self, sa: IsakmpSa, data: bytes, msg: Message) -> list[bytes]:
        limit = sa.cfg.fragment_size
        if (
            not sa.cfg.fragmentation
            or not sa.features.fragmentation
            or len(data) <= limit
            or msg.exchange not in (ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE)
        ):
            return [data]
        room = max(limit - ISAKMP_HEADER_LEN - 8, 64)
        pieces = [data[i : i + room] for i in range(0, len(data), room)]
        out = []
        for n, piece in enumerate(pieces, 1):
            frag = Message(
                msg.exchange, 0, sa.spi_i, sa.spi_r,
                [FragmentPayload(fragment_id=1, number=n, last=n == len(pieces), data=piece)],
            )
            out.append(encode_message(frag)[0])
        self.stats["fragmented"] += 1
        return out

    def _resend(self, packets: list[bytes], now: float) -> None:
        for p in packets:
            self._out.append((p, self.remote_addr))

    def _send_info(self, sa: IsakmpSa, payloads: list, now: float, protect: bool = True) -> None:
        mid = self._new_mid()
        msg = build_informational(sa, payloads, mid, protect)
        self._send(sa, msg, now)

    # ================================================================== helpers for tasks

    def _random_fraction(self) -> float:
        return int.from_bytes(self.random(2), "big") / 65536.0

    def _new_cookie(self) -> bytes:
        while True:
            c = self.random(8)
            if any(c):
                return c

    def _new_mid(self) -> int:
        while True:
            mid = int.from_bytes(self.random(4), "big")
            if mid:
                return mid

    def _alloc_spi(self) -> int:
        used = {c.spi_in for c in self.children.values()}
        while True:
            spi = int.from_bytes(self.random(4), "big")
            if spi >= 256 and spi not in used:
                return spi

    def _new_kex(self, alg: KeAlg) -> KeyExchange:
        """A key exchange whose private value comes from the injected random."""
        for _ in range(8):
            if alg.kind == "modp":
                bits = _MODP_EXPONENT_BITS.get(int(alg.id), 256)
                x = int.from_bytes(self.random((bits + 7) // 8), "big") | (1 << (bits - 1))
                private = x.to_bytes((bits + 7) // 8, "big")
            elif alg.kind == "ecx":
                private = self.random(32 if alg.name == "x25519" else 56)
            elif alg.kind == "ecp":
                private = self.random(alg.public_len // 2)
            else:
                return create_key_exchange(alg)
            try:
                return create_key_exchange(alg, private=private)
            except LocalProtocolError:
                continue
        return create_key_exchange(alg)

    def _wall_time(self) -> datetime.datetime:
        if self._wall_clock is None:  # the constructor refuses certificate configs without one
            raise LocalProtocolError("wall_clock is required to verify peer certificates")
        return self._wall_clock()

    def _step(self, sa: IsakmpSa, text: str) -> None:
        logger.info("%s peer=%s cookies=%s", text, self.peer, sa.cookies)
        self._events.append(ExchangeStep(text, self.peer, {"cookies": sa.cookies}))

    def _dropped(self, sa: IsakmpSa | None, step: str, exc: Exception) -> None:
        self.stats["dropped"] += 1
        logger.debug("dropped %s from %s: %s", step, self.remote_addr[0], exc)

    def _peer_seen(self, sa: IsakmpSa, addr: Address, now: float, *, replayed: bool = False) -> None:
        """A message of ``sa`` from ``addr`` passed all checks.  While ``sa``
        is being set up a new address is the float to 4500 (and the NAT's
        mapping of it), followed as before.  On an established ISAKMP SA
        the message was authenticated (Quick Mode, protected Informational:
        DPD R-U-THERE/ACK, deletes): the peer's NAT mapping changed.  As
        charon (ike_sa update_hosts) and pluto ("NAT-T: updating remote
        port") do, a host that is not behind a NAT itself follows it, ESP
        included (:class:`PeerAddressChanged` tells the data plane; RFC 3947
        §5 / RFC 3948: the mapping the peer's packets come from is the one to
        answer); a host behind a NAT does not (a forged or replayed packet
        could otherwise redirect its traffic), and counts it.  An
        Informational with a Message ID already seen on the SA (``replayed``)
        moves nothing either."""
        dpd.alive(sa, now)
        if addr == self.remote_addr:
            return
        if sa.nat_t and addr == self._prefloat_remote:
            return  # a straggler from before the float
        if not sa.established:
            logger.info("peer %s now at %s:%d", self.remote_addr[0], addr[0], addr[1])
            self.remote_addr = addr
            return
        if sa.nat_local:
            self.stats["peer_moves_ignored"] += 1
            logger.info("peer %s: authenticated message from %s:%d not followed: we are behind a NAT (cookies %s)",
                        self.peer, addr[0], addr[1], sa.cookies)
            return
        if replayed:
            self.stats["peer_moves_replayed"] += 1
            logger.info("peer %s: replayed Informational from %s:%d not followed (cookies %s)",
                        self.peer, addr[0], addr[1], sa.cookies)
            return
        self._moved_to(sa, addr)

    def _moved_to(self, sa: IsakmpSa, addr: Address) -> None:
        """IKE and the IPsec SAs go to ``addr`` from now on."""
        old = self.remote_addr
        self.remote_addr = addr
        self._ipsec_addr = addr
        self.stats["peer_moves"] += 1
        logger.info("peer %s now at %s:%d (was %s:%d: NAT mapping changed; cookies %s)",
                    self.peer, addr[0], addr[1], old[0], old[1], sa.cookies)
        self._events.append(PeerAddressChanged(self.peer, old, addr))

    def _peer_known(self, sa: IsakmpSa) -> None:
        """The peer's identity arrived (it now shows in ``peer``)."""

    def _initial_contact(self, sa: IsakmpSa) -> None:
        """The peer says it holds no other SAs with us (it restarted): what
        we still hold from before this ISAKMP SA is stale."""
        logger.info("INITIAL-CONTACT from %s (cookies %s)", self.peer, sa.cookies)
        sa.initial_contact = True
        if sa.established:
            self._drop_stale(sa, self.now)

    def _drop_stale(self, sa: IsakmpSa, now: float) -> None:
        for child in list(self.children.values()):
            if child.created_no < sa.created_no:
                self._delete_child(child, "initial contact", now, send=False)
        for old in list(self.sas):
            if old is not sa and old.state is not State.DELETED and old.created_no < sa.created_no:
                self._remove_sa(old, "initial contact", now, notify_peer=False)

    def _nat_detected(self, sa: IsakmpSa) -> None:
        sa.nat_t = nat_any(sa)
        if sa.nat_local or sa.nat_remote:
            logger.info(
                "NAT detected: %s%s (cookies %s)",
                "local host behind NAT " if sa.nat_local else "",
                "remote host behind NAT" if sa.nat_remote else "",
                sa.cookies,
            )

    def _float(self, sa: IsakmpSa) -> None:
        """Move IKE to port 4500 (RFC 3947 §4)."""
        sa.nat_t = True
        if self._prefloat_remote is None:
            self._prefloat_remote = self.remote_addr
        if self.local_addr[1] != NATT_PORT:
            self.local_addr = (self.local_addr[0], NATT_PORT)
        if sa.initiator and self.remote_addr[1] == 500:
            self.remote_addr = (self.remote_addr[0], NATT_PORT)

    def _local_dynamic(self) -> TrafficSelector:
        """A child's ``dynamic`` local selector: our virtual IP, else our address."""
        return host_ts(self.local_vips[0] if self.local_vips else self.local_addr[0])

    def _remote_dynamic(self) -> TrafficSelector:
        """A child's ``dynamic`` remote selector: the peer's lease, else its address."""
        return host_ts(self.remote_vips[0] if self.remote_vips else self.remote_addr[0])

    def _child_ts(self, cfg: ChildConfig) -> tuple[TrafficSelector, TrafficSelector]:
        local = cfg.local_ts[0] if cfg.local_ts else self._local_dynamic()
        remote = cfg.remote_ts[0] if cfg.remote_ts else self._remote_dynamic()
        return local, remote

    def _select_child(self, sa: IsakmpSa, tsi: TrafficSelector, tsr: TrafficSelector) -> ChildConfig | None:
        """Responder: the child whose selectors contain the initiator's
        (``tsi`` is the peer's side, ``tsr`` ours).  An installed IPsec SA
        with exactly these selectors names the child first: the Quick Mode
        is probably its rekey (see :meth:`_replaced_child`), and the first
        child that merely contains the selectors may be another, wider one
        (an SA we initiated for a narrower child would not be recognized)."""
        old = self._replaced_child(None, tsr, tsi)
        if old is not None:
            child = sa.cfg.children.get(old.name)
            if child is not None and self._child_contains(child, tsi, tsr):
                return child
        for child in sa.cfg.children.values():
            if self._child_contains(child, tsi, tsr):
                return child
        return None

    def _child_contains(self, child: ChildConfig, tsi: TrafficSelector, tsr: TrafficSelector) -> bool:
        local = child.local_ts or [self._local_dynamic()]
        remote = child.remote_ts or [host_ts(v) for v in self.remote_vips] or [host_ts(self.remote_addr[0])]
        return any(tsr.is_subset_of(x) for x in local) and any(tsi.is_subset_of(x) for x in remote)

    def _replaced_child(
        self, name: str | None, local_ts: TrafficSelector, remote_ts: TrafficSelector
    ) -> ChildSa | None:
        """Responder of a Quick Mode: the installed IPsec SA it replaces.
        IKEv1 has no rekey marker; like strongSwan (``quick_mode.c``
        check_for_rekeyed_child) and Cisco, an SA of the same child (any
        child if ``name`` is None) with this peer and exactly the same
        selectors that is not already replaced is the one being rekeyed
        (the oldest, if several).  It may have been created over an earlier
        ISAKMP SA, and by either side."""
        for c in sorted(self.children.values(), key=lambda c: c.created_no):
            if c.rekeyed or (name is not None and c.name != name):
                continue
            if c.local_ts == local_ts and c.remote_ts == remote_ts:
                return c
        return None

    def _child_for_selector(self, selector: TrafficSelector) -> str | None:
        for child in self.cfg.children.values():
            remote = child.remote_ts or [self._remote_dynamic()]
            if any(selector.intersect(x) is not None for x in remote):
                return child.name
        if len(self.cfg.children) == 1:
            return next(iter(self.cfg.children))
        return None

    def _select_phase1(
        self, sa: IsakmpSa, offer: SaPayload, *, aggressive: bool, peer_id: Identity | None
    ) -> tuple[Proposal, Transform, Phase1Suite]:
        """Responder: pick the configuration and ISAKMP suite for a peer's offer."""
        reasons = []
        configs = [c for c in sa.candidates if c.aggressive == aggressive] or sa.candidates
        if peer_id is not None:
            from .phase1 import peer_matches

            configs = [c for c in configs if peer_matches(c, peer_id)] or configs
        for cfg in configs:
            try:
                method = proposal_method(cfg)
            except LocalProtocolError as exc:
                reasons.append(str(exc))
                continue
            suites = suites_from_config(cfg.proposals, method, int(cfg.hard_lifetime))
            try:
                prop, t, suite = select_suite(suites, offer)
            except NoProposalChosen as exc:
                reasons.append(str(exc))
                continue
            if cfg is not self.cfg:
                self.cfg = cfg
            sa.cfg = cfg
            return prop, t, suite
        raise NoProposalChosen("; ".join(reasons) or "no configuration")

    # ================================================================== Phase 1

    def _start_phase1(self, now: float, rekeyed_from: IsakmpSa | None = None) -> IsakmpSa:
        sa = IsakmpSa(cfg=self.cfg, initiator=True, spi_i=self._new_cookie(), started_at=now)
        sa.aggressive = self.cfg.aggressive
        sa.created_no = next(self._order)
        sa.last_inbound = now
        if rekeyed_from is not None:
            sa.rekeyed_from = rekeyed_from.spi_i
            sa.nat_t = False
        sa.tm = TaskManagerV1(self, sa)
        self.sas.append(sa)
        task: Task = AggressiveModeTask(self, sa, True) if self.cfg.aggressive else MainModeTask(self, sa, True)
        sa.tm.queue(task, now)
        return sa

    def _phase1_done(self, sa: IsakmpSa, now: float) -> None:
        assert sa.suite is not None
        sa.state = State.ESTABLISHED
        sa.established_at = now
        sa.established_no = next(self._order)
        life = float(sa.suite.lifetime)
        sa.hard_at = now + life
        if sa.initiator:
            scale = min(1.0, life / sa.cfg.hard_lifetime) if sa.cfg.hard_lifetime > 0 else 1.0
            soft = (sa.cfg.rekey_time - sa.cfg.jitter * self._random_fraction()) * scale
        else:
            soft = (min(sa.cfg.rekey_time, life) + life) / 2
        sa.soft_at = now + max(soft, 1.0) if sa.cfg.rekey_time > 0 else None
        self._had_contact = True
        if sa.initial_contact:
            sa.rekeyed_from = None  # a restarted peer, not a renewal
        self._step(sa, "IKE Phase 1 complete")
        if not sa.initiator and sa.cfg.xauth_server:
            # the gateway asks for the user's credentials; the SA counts as
            # established (event, Quick Mode) once they are good
            sa.gate = "xauth"
            sa.tm.queue(XauthRequestTask(self, sa, self._new_mid()), now)
        elif sa.initiator and sa.cfg.xauth_client:
            sa.gate = "xauth"  # the gateway starts it
        elif sa.initiator and sa.cfg.vips:
            self._pull_config(sa, now)
        if not sa.gate:
            self._established_event(sa)
        if sa.initial_contact:
            self._drop_stale(sa, now)
        else:
            self._renewed_from_elsewhere(sa)
        self._supersede_older(sa, now)
        self._flush_pending(now)

    def _supersede_older(self, sa: IsakmpSa, now: float) -> None:
        """``sa`` was just established: the older established SAs it renews
        are superseded (deleted now when we initiated it, else after a grace
        period if the peer does not delete them)."""
        for old in list(self.sas):
            if old is sa or old.state is State.DELETED or not old.established:
                continue
            if old.established_no < sa.created_no:
                # the SA this negotiation renews: its initiator deletes it
                old.superseded = True
                if sa.initiator:
                    self._remove_sa(old, "rekeyed", now, notify_peer=True)
                else:
                    old.hard_at = min(old.hard_at or now + SUPERSEDED_GRACE, now + SUPERSEDED_GRACE)
            else:
                # both ends renewed at once: keep the SA with the higher
                # initiator cookie (the same choice on both sides), let the
                # other one go after the grace period
                loser = old if old.spi_i < sa.spi_i else sa
                loser.superseded = True
                loser.hard_at = min(loser.hard_at or now + SUPERSEDED_GRACE, now + SUPERSEDED_GRACE)

    def _renewed_from_elsewhere(self, sa: IsakmpSa) -> None:
        """A Phase 1 renewal by the same peer identity completed at another
        address or port than the IPsec SAs it keeps send to (the peer's NAT
        made new mappings, then it renewed): they follow, as after any
        authenticated message from the new address (:meth:`_peer_seen`);
        this one cannot be replayed (fresh nonces and key exchange).  A
        Phase 1 of another identity that got here (another host behind the
        same NAT address) moves nothing."""
        old_addr = self._ipsec_addr
        if not self.children or old_addr is None or old_addr == self.remote_addr:
            return
        renewed = [o for o in self.sas if o is not sa and o.established and o.state is not State.DELETED]
        if not renewed or any(str(o.remote_id) != str(sa.remote_id) for o in renewed):
            return
        self._ipsec_addr = self.remote_addr
        self.stats["peer_moves"] += 1
        logger.info("peer %s renewed Phase 1 from %s:%d: its %d IPsec SA(s) move there from %s:%d (cookies %s)",
                    self.peer, self.remote_addr[0], self.remote_addr[1], len(self.children), old_addr[0],
                    old_addr[1], sa.cookies)
        self._events.append(PeerAddressChanged(self.peer, old_addr, self.remote_addr))

    def _established_event(self, sa: IsakmpSa) -> None:
        assert sa.suite is not None
        self._events.append(
            IkeSaEstablished(
                spi_i=sa.spi_i,
                spi_r=sa.spi_r,
                version=1,
                initiator=sa.initiator,
                local_addr=self.local_addr,
                remote_addr=self.remote_addr,
                local_id=str(sa.local_id) if sa.local_id else self.local_addr[0],
                remote_id=str(sa.remote_id) if sa.remote_id else self.remote_addr[0],
                algorithms=sa.suite.name,
                nat_local=sa.nat_local,
                nat_remote=sa.nat_remote,
                rekeyed_from=sa.rekeyed_from,
                local_vips=tuple(self.local_vips),
                remote_vips=tuple(self.remote_vips),
                dns=tuple(self.dns),
                nbns=tuple(self.nbns),
                remote_subnets=tuple(self.remote_subnets),
                # the XAUTH user, once it passed (the SA is established only then)
                local_xauth_id=sa.xauth_user if sa.cfg.xauth_client else None,
                remote_xauth_id=sa.xauth_user if sa.cfg.xauth_server else None,
            )
        )

    # ================================================================== XAUTH and Mode Config

    def _pull_config(self, sa: IsakmpSa, now: float) -> None:
        """Client: ask the gateway for our virtual IPs (Mode Config pull)."""
        sa.gate = "modecfg"
        sa.tm.queue(ModeCfgRequestTask(self, sa, self._new_mid(), list(sa.cfg.vips)), now)

    def _ready(self, sa: IsakmpSa, now: float) -> None:
        """XAUTH and Mode Config are through: the SA is established for
        everyone (event, Quick Modes)."""
        sa.gate = ""
        self._established_event(sa)
        self._flush_pending(now)

    def _xauth_label(self, user: str | None) -> str:
        return "(none)" if user is None else repr(user)

    @staticmethod
    def _xauth_tries(sa: IsakmpSa) -> int:
        """Gateway: how many REPLYs the peer may get wrong (``remote-2`` ``xauth_tries``)."""
        return max(1, sa.cfg.remote2.xauth_tries) if sa.cfg.remote2 is not None else 1

    def _xauth_verify(self, user: str, password: bytes) -> tuple[bool, str]:
        """Gateway: whether ``password`` is ``user``'s XAUTH secret (and why
        not); the password is never logged."""
        known = self.cfg.xauth_secrets.get(user)
        if known is None:
            return False, f"unknown XAUTH user {user!r}"
        if not hmac.compare_digest(known, password):
            return False, f"wrong password for XAUTH user {user!r}"
        return True, ""

    def _xauth_credentials(self, sa: IsakmpSa, request: AttributePayload) -> list[CfgAttribute]:
        """Client: the REPLY to the gateway's XAUTH REQUEST."""
        assert sa.cfg.local2 is not None
        user = sa.cfg.local2.xauth_id or (sa.cfg.local.id or self.local_addr[0])
        password = sa.cfg.xauth_secrets.get(user, b"")
        if not password:
            logger.warning("XAUTH: no xauth secret for user %r (connection %s)", user, sa.cfg.name)
        out = []
        xtype = request.get(CfgAttr.XAUTH_TYPE)
        if xtype is not None:
            out.append(CfgAttribute.basic(CfgAttr.XAUTH_TYPE, xtype.int_value))
        out += [CfgAttribute(CfgAttr.XAUTH_USER_NAME, user.encode()), CfgAttribute(CfgAttr.XAUTH_USER_PASSWORD, password)]
        sa.xauth_user = user
        sa.xauth_requests += 1
        if sa.xauth_requests > 1:
            # the gateway refused what we sent and asks again; we answer the
            # same (as charon): the gateway's limit of tries ends it
            logger.warning("XAUTH: %s asks again (request %d): it refused user %r or its password (cookies %s)",
                           self.peer, sa.xauth_requests, user, sa.cookies)
        logger.info("XAUTH: sending user name %r to %s (cookies %s)", user, self.peer, sa.cookies)
        return out

    def _modecfg_answer(self, sa: IsakmpSa, request: AttributePayload) -> list[CfgAttribute]:
        """Gateway: the REPLY to a Mode Config REQUEST: a lease of each
        requested family from the connection's pools (none if no pool has
        one), with every attribute of the pools that leased (transaction.modecfg_reply)."""
        leases = []
        wanted = cfgattr.requested_addresses(request.attributes, 1)
        modecfg_dropped(self, "REQUEST", [why for _, _, why in wanted if why])
        for version, ip, _ in wanted:
            lease = self._lease_address(sa, version, None if ip is None else str(ip))
            if lease is not None:
                leases.append(lease)
        out = modecfg_reply(leases, unity=sa.features.unity)
        if not out:
            logger.warning("Mode Config: no virtual IP for %s (connection %s)", self.peer, sa.cfg.name)
        return out

    def _lease_identity(self, sa: IsakmpSa) -> str:
        """Leases belong to the XAUTH user (many road warriors share one
        group identity), else to the Phase 1 identity."""
        if sa.xauth_user is not None:
            return sa.xauth_user
        return str(sa.remote_id) if sa.remote_id is not None else self.remote_addr[0]

    def _lease_address(self, sa: IsakmpSa, version: int, requested: str | None) -> tuple[AddressPool, Any] | None:
        ident = self._lease_identity(sa)
        for pool, owner, ip in self._leases:
            if owner == ident and ipaddress.ip_address(ip).version == version:
                return pool, ip  # a repeated request (or a new Phase 1): the same address
        got = lease_from(self.pools, sa.cfg.pools, ident, version, requested, f"Mode Config {sa.cfg.name}", self.peer)
        if got is None:
            return None
        pool, ip, name = got
        self._leases.append((pool, ident, ip))
        self.remote_vips.append(str(ip))
        logger.info("Mode Config %s: assigned virtual IP %s from pool %s to %s (cookies %s)",
                    sa.cfg.name, ip, name, self.peer, sa.cookies)
        return pool, ip

    def _release_leases(self) -> None:
        leases, self._leases = self._leases, []
        for pool, ident, ip in leases:
            if pool.release(ident, ip):
                logger.info("Mode Config %s: lease %s of %s in pool %s released", self.cfg.name, ip, ident, pool.name)
        self.remote_vips = []

    def _transaction_done(self, sa: IsakmpSa, task: TransactionTask, now: float) -> None:
        if isinstance(task, XauthRequestTask):
            reason, tries = task.reason, self._xauth_tries(sa)
            if task.ok:
                sa.xauth_user = task.user
            elif task.attempt < tries:
                # ask again: a new REQUEST, no SET in between (libreswan, Cisco)
                logger.warning("XAUTH try %d/%d of user %s from %s failed: %s; asking again (cookies %s)",
                               task.attempt, tries, self._xauth_label(task.user), self.peer, reason, sa.cookies)
                sa.tm.queue(XauthRequestTask(self, sa, self._new_mid(), task.attempt + 1), now)
                return
            else:
                reason = f"{reason} (try {task.attempt}/{tries}, no tries left)"
            sa.tm.queue(XauthStatusTask(self, sa, self._new_mid(), task.ok, task.user, reason), now)
        elif isinstance(task, XauthStatusTask):
            self._xauth_result(sa, task.ok, task.user, task.reason, now)
        elif isinstance(task, ModeCfgRequestTask):
            self.local_vips = list(task.addresses)
            self.dns = list(task.dns)
            self.nbns, self.remote_subnets = list(task.nbns), list(task.subnets)
            if not task.addresses:
                reason = f"gateway assigned no virtual IP (requested {', '.join(sa.cfg.vips)})"
                self._events.append(NegotiationFailed(self.peer, "MODECFG", "FAILED_CP_REQUIRED", reason))
                logger.warning("Mode Config with %s failed: %s (cookies %s)", self.peer, reason, sa.cookies)
                self._remove_sa(sa, "no virtual IP", now, notify_peer=True)
                return
            logger.info("Mode Config: virtual IP %s assigned by %s (cookies %s)",
                        ", ".join(task.addresses), self.peer, sa.cookies)
            self._ready(sa, now)
        elif isinstance(task, TransactionResponderTask):
            if task.kind == "xauth-set":
                ok = task.status == 1
                asked = f" after {sa.xauth_requests} XAUTH requests" if sa.xauth_requests > 1 else ""
                self._xauth_result(sa, ok, sa.xauth_user, "" if ok else f"gateway answered XAUTH_STATUS 0{asked}", now)
            elif task.kind == "modecfg" and self.remote_vips:
                self._established_event(sa)  # again, now with the peer's virtual IP (status shows it)

    def _xauth_result(self, sa: IsakmpSa, ok: bool, user: str | None, reason: str, now: float) -> None:
        """The XAUTH status was sent (gateway, its ACK came) or received (client)."""
        who = self._xauth_label(user)
        if ok:
            self._step(sa, "XAUTH complete")
            logger.info("XAUTH user %s authenticated with %s (cookies %s)", who, self.peer, sa.cookies)
            if sa.initiator and sa.cfg.vips:
                self._pull_config(sa, now)
            else:
                self._ready(sa, now)
            return
        reason = reason or "XAUTH failed"
        self._events.append(AuthFailed(self.peer, "XAUTH", f"user {who}: {reason}"))
        logger.warning("XAUTH authentication failed with %s: user %s: %s (cookies %s)", self.peer, who, reason, sa.cookies)
        self._remove_sa(sa, "XAUTH failed", now, notify_peer=True)

    def _transaction_failed(self, sa: IsakmpSa, task: TransactionTask, notify: str, reason: str, now: float) -> None:
        """Our XAUTH or Mode Config request went unanswered."""
        what = "MODECFG" if isinstance(task, ModeCfgRequestTask) else "XAUTH"
        if isinstance(task, XauthStatusTask) and not task.ok:
            # the failure was already decided; no ACK does not change it
            self._xauth_result(sa, False, task.user, task.reason, now)
            return
        self._events.append(NegotiationFailed(self.peer, what, notify, reason))
        logger.warning("%s with %s failed: %s %s (cookies %s)", what, self.peer, notify, reason, sa.cookies)
        self._remove_sa(sa, "retransmits exhausted" if notify == "TIMEOUT" else "negotiation failed", now,
                        notify_peer=False)

    def _phase1_failed(self, sa: IsakmpSa, task: Task, notify: str, reason: str, now: float) -> None:
        """Retransmits exhausted (or a Phase 1 error notify)."""
        if notify == "TIMEOUT" and task.unverified:
            self._unverified_failed(sa, task, reason)
            self._remove_sa(sa, "authentication failed", now, notify_peer=False)
            return
        self._events.append(NegotiationFailed(self.peer, _mode_name(sa), notify, reason))
        logger.warning("%s with %s failed: %s %s (cookies %s)", _mode_name(sa), self.peer, notify, reason, sa.cookies)
        self._remove_sa(sa, "retransmits exhausted" if notify == "TIMEOUT" else "negotiation failed", now, notify_peer=False)

    def _unverified_failed(self, sa: IsakmpSa, task: Task, why: str) -> None:
        """A Phase 1 that dropped an encrypted message it could not decrypt or
        verify and then got nothing better: report the probable cause."""
        step = task.step or "MM5"
        psk = getattr(task, "method", Ike1Auth.PSK) == Ike1Auth.PSK
        reason = (
            f"{why}, after {task.unverified} {step} that could not be decrypted or verified: "
            f"probable authentication failure ({'pre-shared key' if psk else 'key or certificate'} mismatch?)"
        )
        self._events.append(AuthFailed(self.peer, step, reason))
        logger.warning("%s authentication failed with %s: %s (cookies %s)", step, self.peer, reason, sa.cookies)

    def _reauth(self, sa: IsakmpSa, now: float) -> None:
        if any(s.state is State.CONNECTING and s.initiator for s in self.sas):
            return
        logger.info("renewing Phase 1 with %s (cookies %s)", self.peer, sa.cookies)
        self._start_phase1(now, rekeyed_from=sa)

    def _expire_sa(self, sa: IsakmpSa, now: float) -> None:
        others = [s for s in self.sas if s is not sa and s.established and s.state is not State.DELETED]
        if not others:
            for child in list(self.children.values()):
                self._delete_child(child, "expired", now, send=True)
        self._remove_sa(sa, "rekeyed" if sa.superseded and others else "expired", now, notify_peer=True)

    def _remove_sa(self, sa: IsakmpSa, reason: str, now: float, *, notify_peer: bool) -> None:
        if sa.state is State.DELETED:
            return
        if notify_peer and sa.keys is not None and sa.established:
            self._send_info(sa, [delete_isakmp(sa)], now)
        # our Quick Modes still running over this SA move to the next one
        orphans = [t for t in sa.tm.tasks() if isinstance(t, QuickModeTask) and t.initiator and not t.done]
        sa.state = State.DELETED
        sa.tm.flush()
        self.sas.remove(sa)
        self._events.append(IkeSaDeleted(sa.spi_i, sa.spi_r, reason))
        logger.info("ISAKMP SA with %s deleted: %s (cookies %s)", self.peer, reason, sa.cookies)
        if not self.sas:
            for t in orphans:
                if t.rekey is not None:
                    t.rekey.rekeying = False
            self._close()
            return
        for t in orphans:
            if t.child is not None and (t.rekey is None or t.rekey.spi_in in self.children):
                self._pending.append((t.child.name, t.rekey))
        self._flush_pending(now)

    def _close(self) -> None:
        self._closed = True
        self._pending.clear()
        self._had_contact = False
        self._release_leases()

    def _abandon_new(self, sa: IsakmpSa, now: float) -> None:
        """The first message of a new responder SA was malformed."""
        sa.state = State.DELETED
        sa.tm.flush()
        if sa in self.sas:
            self.sas.remove(sa)
        if not self.sas:
            self._close()

    # ================================================================== errors

    def _task_error(self, sa: IsakmpSa, task: Task, exc: Ikev1Error, now: float, *, answered: bool) -> None:
        """A task rejected a message (``answered``: it was the peer's answer
        to our request, else the peer's request)."""
        reason = str(exc)
        nname = notify_name(exc.notify_type)
        if task.phase1:
            if isinstance(exc, (AuthenticationFailed, InvalidCertificate)):
                step = task.step or "MM5"
                self._events.append(AuthFailed(self.peer, step, reason))
                logger.warning("%s authentication failed with %s: %s (cookies %s)", step, self.peer, reason, sa.cookies)
                gone = "authentication failed"
            else:
                self._events.append(NegotiationFailed(self.peer, _mode_name(sa), nname, reason))
                logger.warning("%s with %s failed: %s: %s (cookies %s)", _mode_name(sa), self.peer, nname, reason, sa.cookies)
                gone = "negotiation failed"
            if answered and task.step == "MM6" and sa.keys is not None:
                # the responder thinks the SA is up: delete it, protected (strongSwan does so)
                self._send_info(sa, [delete_isakmp(sa)], now)
            elif sa.spi_r != bytes(8):
                notify = isakmp_notify(sa, exc.notify_type)
                self._send(sa, build_informational(sa, [notify], self._new_mid(), protect=False), now)
            self._remove_sa(sa, gone, now, notify_peer=False)
            return
        if isinstance(task, TransactionTask):
            self._dropped(sa, task.step, exc)
            return
        # Quick Mode: tell the peer (protected), give up this exchange only
        assert isinstance(task, QuickModeTask)
        spi = (task.spi_i or 0).to_bytes(4, "big")
        self._send_info(sa, [NotifyPayload(notify_type=exc.notify_type, protocol=task.protocol, spi=spi)], now)
        self._qm_failed(sa, task, nname, reason, now)

    def _qm_failed(self, sa: IsakmpSa, task: QuickModeTask, notify: str, reason: str, now: float) -> None:
        name = task.child.name if task.child is not None else "?"
        if not reason.startswith("child "):
            reason = f"child {name}: {reason}"
        self._events.append(NegotiationFailed(self.peer, "QM", notify, reason))
        logger.warning("QM with %s failed: %s %s (cookies %s)", self.peer, notify, reason, sa.cookies)
        if task.rekey is not None:
            task.rekey.rekeying = False
        tm = sa.tm
        if tm.active is task:
            tm.active = None
            tm.initiating = None
        tm.passive.pop(task.mid, None)
        if notify == "TIMEOUT":
            # strongSwan gives up the ISAKMP SA when the peer stops answering
            for child in list(self.children.values()):
                self._delete_child(child, "ike sa deleted", now, send=False)
            self._remove_sa(sa, "retransmits exhausted", now, notify_peer=False)
            return
        tm.initiate(now)

    def _undecryptable_info(self, sa: IsakmpSa, exc: Exception, now: float) -> None:
        """An encrypted Informational during Phase 1 that does not decrypt or
        verify.  Right after our MM5 this is the responder's error notify
        under *its* keys (strongSwan sends those encrypted): the pre-shared
        keys differ.  Say so now rather than after every retransmission."""
        task = sa.tm.active
        if sa.initiator and isinstance(task, MainModeTask) and task.step == "MM6":
            reason = "peer answered MM5 with a notify we cannot decrypt: pre-shared key mismatch?"
            self._events.append(AuthFailed(self.peer, "MM5", reason))
            logger.warning("MM5 authentication failed with %s: %s (cookies %s)", self.peer, reason, sa.cookies)
            self._remove_sa(sa, "authentication failed", now, notify_peer=False)
            return
        self._dropped(sa, "INFO", exc)

    def _error_notify(self, sa: IsakmpSa, n: Any, protected: bool, now: float) -> None:
        """An error notify arrived in an Informational."""
        name = notify_name(n.notify_type)
        tm = sa.tm
        if not sa.established:
            task = tm.active or next(iter(tm.passive.values()), None)
            if task is None:
                return
            step = getattr(task, "step_sent", "") or task.step
            if n.notify_type in (
                NotifyType.AUTHENTICATION_FAILED,
                NotifyType.INVALID_HASH_INFORMATION,
                NotifyType.INVALID_SIGNATURE,
                NotifyType.INVALID_CERTIFICATE,
                NotifyType.PAYLOAD_MALFORMED,
            ) and sa.keys is not None:
                reason = f"peer rejected {step} ({name}): pre-shared key or credentials mismatch?"
                self._events.append(AuthFailed(self.peer, step, reason))
                logger.warning("%s authentication failed with %s: %s (cookies %s)", step, self.peer, reason, sa.cookies)
                gone = "authentication failed"
            else:
                reason = f"peer answered {step} with {name}"
                self._events.append(NegotiationFailed(self.peer, _mode_name(sa), name, reason))
                logger.warning("%s with %s failed: %s (cookies %s)", _mode_name(sa), self.peer, reason, sa.cookies)
                gone = "negotiation failed"
            self._remove_sa(sa, gone, now, notify_peer=False)
            return
        if not protected:
            return
        task = tm.active if isinstance(tm.active, QuickModeTask) else None
        if task is None:
            spi = int.from_bytes(n.spi, "big") if len(n.spi) == 4 else None
            task = next(
                (t for t in tm.passive.values() if isinstance(t, QuickModeTask) and spi in (t.spi_i, t.spi_r)), None
            )
        if task is not None:
            self._qm_failed(sa, task, name, f"peer sent {name}", now)
        else:
            logger.info("%s notify from %s (cookies %s)", name, self.peer, sa.cookies)

    # ================================================================== tasks finished

    def _task_done(self, sa: IsakmpSa, task: Task, now: float) -> None:
        if task.phase1:
            self._phase1_done(sa, now)
        elif isinstance(task, TransactionTask):
            self._transaction_done(sa, task, now)
        elif isinstance(task, QuickModeTask) and task.replaced is not None:
            # delete the replaced SA a little later: a peer that handles QM3 and
            # the DELETE on different threads (charon) might otherwise remove its
            # old outbound SA before installing the new one
            task.replaced.rekeyed = True
            self._deferred_deletes.append((now + REKEY_DELETE_DELAY, task.replaced))

    # ================================================================== IPsec SAs

    def _want_child(self, name: str, rekey: ChildSa | None) -> None:
        if name not in self.cfg.children:
            raise LocalProtocolError(f"connection {self.cfg.name} has no child {name!r}")
        self._pending.append((name, rekey))

    def _flush_pending(self, now: float) -> None:
        sa = self.sa
        if sa is None or not sa.established or sa.gate:
            return
        pending, self._pending = self._pending, []
        for name, rekey in pending:
            if rekey is not None and rekey.spi_in not in self.children:
                continue
            task = QuickModeTask(self, sa, True, self._new_mid(), child=self.cfg.children[name], rekey=rekey)
            sa.tm.queue(task, now)

    def _qm_running(self, name: str) -> bool:
        for sa in self.sas:
            for t in sa.tm.tasks():
                if isinstance(t, QuickModeTask) and t.child is not None and t.child.name == name:
                    return True
        return False

    def _rekey_child(self, child: ChildSa, now: float) -> None:
        child.rekeying = True
        logger.info("rekeying IPsec SA %s %08x_i with %s", child.name, child.spi_in, self.peer)
        self._want_child(child.name, child)
        if not any(s.state is not State.DELETED for s in self.sas):
            self._closed = False
            self._start_phase1(now)  # no ISAKMP SA left to run Quick Mode over
        else:
            self._flush_pending(now)

    def _install_child(
        self,
        sa: IsakmpSa,
        task: QuickModeTask,
        *,
        spi_in: int,
        spi_out: int,
        local_ts: TrafficSelector,
        remote_ts: TrafficSelector,
        keys: tuple[bytes, bytes, bytes, bytes],
        now: float,
    ) -> None:
        cfg = task.child
        suite = task.suite
        assert cfg is not None and suite is not None
        old = task.rekey
        if old is None and not task.initiator:
            # IKEv1 has no rekey marker: a Quick Mode for the same child and
            # selectors replaces the SA (strongSwan's "detected rekeying")
            old = self._replaced_child(cfg.name, local_ts, remote_ts)
        life = float(task.lifetime) if task.lifetime else None
        if life is not None:
            if task.initiator:
                # a lifetime shortened by the responder scales the rekey point
                scale = min(1.0, life / cfg.hard_lifetime) if cfg.hard_lifetime > 0 else 1.0
                soft = (cfg.rekey_time - cfg.jitter * self._random_fraction()) * scale
            else:
                soft = (min(cfg.rekey_time, life) + life) / 2
            soft_at: float | None = now + max(soft, 1.0) if cfg.rekey_time > 0 else None
            hard_at: float | None = now + life
        else:
            soft_at = hard_at = None
        protocol = "ah" if task.protocol == ProtocolId.AH else "esp"
        ein, eout, iin, iout = keys
        uid = next(self._unique)
        ev = ChildSaInstalled(
            name=cfg.name,
            protocol=protocol,
            mode=task.mode,
            spi_in=spi_in,
            spi_out=spi_out,
            encr=suite.encr,
            integ=suite.integ,
            encr_key_in=ein,
            encr_key_out=eout,
            integ_key_in=iin,
            integ_key_out=iout,
            esn=False,
            local_ts=(local_ts,),
            remote_ts=(remote_ts,),
            local_addr=self.local_addr,
            remote_addr=self.remote_addr,
            encap=task.udp,
            initiator=task.initiator,
            replay_window=cfg.replay_window,
            lifetime_soft=(soft_at - now) if soft_at is not None else None,
            lifetime_hard=life,
            life_bytes=task.life_kb * 1000 if task.life_kb else None,
            life_packets=cfg.life_packets or None,
            rekeyed_from=old.spi_in if old is not None else None,
            ike_spi_i=sa.spi_i,
            unique_id=uid,
            algorithms=suite.name,
        )
        child = ChildSa(
            name=cfg.name,
            cfg=cfg,
            protocol=protocol,
            mode=task.mode,
            spi_in=spi_in,
            spi_out=spi_out,
            initiator=task.initiator,
            local_ts=local_ts,
            remote_ts=remote_ts,
            event=ev,
            installed_at=now,
            soft_at=soft_at,
            hard_at=hard_at,
            unique_id=uid,
            created_no=next(self._order),
        )
        self.children[spi_in] = child
        self._ipsec_addr = self.remote_addr
        self._step(sa, "IPsec SA established")
        logger.info(
            "IPsec SA %s{%d} %s with SPIs %08x_i %08x_o and TS %s === %s%s",
            cfg.name, uid, suite.name, spi_in, spi_out, local_ts, remote_ts, " (UDP-encapsulated)" if task.udp else "",
        )
        self._events.append(ev)
        if old is not None:
            old.rekeyed = True
            old.rekeying = False
            old.soft_at = None
            if task.initiator:
                task.replaced = old  # deleted once QM3 is out (see _task_done)

    def _delete_child(self, child: ChildSa, reason: str, now: float, *, send: bool) -> None:
        if self.children.pop(child.spi_in, None) is None:
            return
        sa = self.sa
        if send and sa is not None and sa.established:
            proto = ProtocolId.AH if child.protocol == "ah" else ProtocolId.ESP
            self._send_info(sa, [delete_ipsec(proto, [child.spi_in])], now)
        self._events.append(ChildSaDeleted(child.name, child.spi_in, child.spi_out, reason))
        logger.info("IPsec SA %s %08x_i/%08x_o deleted: %s", child.name, child.spi_in, child.spi_out, reason)

    def _peer_deleted_child(self, spi: int, now: float) -> None:
        child = next((c for c in self.children.values() if c.spi_out == spi), None)
        if child is None:
            return
        self._delete_child(child, "rekeyed" if child.rekeyed else "deleted by peer", now, send=False)

    def _peer_deleted_isakmp(self, sa: IsakmpSa, spi: bytes, now: float) -> None:
        target = next((s for s in self.sas if s.spi_i + s.spi_r == spi), None)
        if target is None:
            return
        newer = [s for s in self.sas if s is not target and s.established and not s.superseded]
        if not newer:
            for child in list(self.children.values()):
                self._delete_child(child, "ike sa deleted", now, send=False)
        self._remove_sa(target, "rekeyed" if newer else "deleted by peer", now, notify_peer=False)

    # ================================================================== DPD

    def _send_dpd(self, sa: IsakmpSa, now: float) -> None:
        if sa.dpd_seq == 0:
            sa.dpd_seq = int.from_bytes(self.random(4), "big") & 0x7FFFFFFF or 1
        else:
            sa.dpd_seq = (sa.dpd_seq + 1) & 0xFFFFFFFF
        logger.info("R-U-THERE %d to %s (cookies %s)", sa.dpd_seq, self.peer, sa.cookies)
        self._send_info(sa, [dpd.r_u_there(sa, sa.dpd_seq)], now)
        dpd.sent(sa, now)

    def _dpd_request(self, sa: IsakmpSa, seq: int, now: float) -> None:
        self._send_info(sa, [dpd.r_u_there_ack(sa, seq)], now)

    def _dpd_ack(self, sa: IsakmpSa, seq: int, now: float) -> None:
        if seq != sa.dpd_seq:
            logger.info("R-U-THERE-ACK with sequence %d (expected %d) ignored", seq, sa.dpd_seq)
            return
        dpd.alive(sa, now)

    def _dead_peer(self, sa: IsakmpSa, now: float) -> None:
        logger.warning("peer %s did not answer DPD for %.0fs: declared dead (cookies %s)", self.peer, sa.cfg.dpd_timeout, sa.cookies)
        self._events.append(DpdTimeout(self.peer))
        for child in list(self.children.values()):
            self._delete_child(child, "dead peer", now, send=False)
        for s in list(self.sas):
            self._remove_sa(s, "dead peer", now, notify_peer=False)
        self._close()


def _mode_name(sa: IsakmpSa) -> str:
    return "AM" if sa.aggressive else "MM"


def _exchange_name(ex: int) -> str:
    try:
        return ExchangeType(ex).name
    except ValueError:
        return str(ex)
