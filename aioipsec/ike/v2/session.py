"""The IKEv2 session: a sans-I/O IKE SA with its Child SAs (model: aioquic
``QuicConnection``; tasks from strongSwan libcharon).

Bytes and time in, bytes, deadlines and events out::

    s = IkeSessionV2(configuration=conn, is_initiator=True,
                     local_addr=("192.0.2.1", 500), remote_addr=("192.0.2.2", 500),
                     random=os.urandom)
    s.initiate(now, child="lan")
    s.receive_datagram(data, addr, now); s.handle_timer(now)
    s.datagrams_to_send(now) -> [(bytes, addr)]; s.get_timer(); s.next_event()

One object follows one connection across IKE SA rekeys: :attr:`sa` is the
current IKE SA (keys, SPIs, message IDs, task manager); SAs being replaced
or deleted live on in :attr:`old_sas` until their delete exchange ends.
Child SAs belong to the session, so an IKE rekey needs no migration.

Peer input never raises: undecodable datagrams are dropped and counted in
:attr:`stats`, requests that deserve an answer get the notify named by the
:class:`~aioipsec.errors.NotifyError` a task raised.  Every exchange step is
logged on ``aioipsec.ike`` (``IKE_SA_INIT sent``, ``IKE_AUTH received``, ...)
with peer and SPIs, and emitted as an :class:`~aioipsec.events.ExchangeStep`.
No key material is ever logged.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import logging
import os
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...config import ChildConfig, ConnectionConfig, GlobalConfig
from ...crypto.kdf import IkeV2Keys
from ...crypto.prf import prf
from ...crypto.transforms import PrfAlg
from ...errors import (
    AuthenticationFailed,
    IntegrityError,
    InvalidKePayload,
    InvalidSyntax,
    LocalProtocolError,
    NotifyError,
    ParseError,
    Redirect,
    RemoteProtocolError,
    UnsupportedCriticalPayload,
)
from ...events import (
    AuthFailed,
    ChildSaDeleted,
    ChildSaInstalled,
    DpdTimeout,
    ExchangeStep,
    IkeRedirected,
    IkeSaDeleted,
    IkeSaEstablished,
    IpsecEvent,
    LocalAddressChanged,
    NegotiationFailed,
    PeerAddressChanged,
    ReauthRequired,
)
from ...selectors import Address, TrafficSelector
from ..auth import Identity, RevocationPending
from ..constants import NATT_PORT, ExchangeType, NotifyType, PayloadType, ProtocolId, notify_name
from ..proposals import Selected
from .fragment import Reassembler, ReassemblyLimitError, fragment_message
from .message import (
    _EXCHANGE_NAMES,
    Message,
    SkContext,
    check_rules,
    decode_message,
    encode_message,
    payload_names,
    peek_header,
)
from .payloads import DeletePayload, MalformedMessage, NotifyPayload, SaPayload, SkfPayload
from .pools import AddressPool, lease_from
from .task_manager import ActiveExchange, RetransmitPolicy, TaskManagerV2, random_fraction
from .tasks.base import ResponseDropped, Task, TaskStatus

logger = logging.getLogger("aioipsec.ike")

PROBE_ROUNDS = 5
"""MOBIKE path probing: rounds of the failed request sent to every path of
the peer before it is declared dead (charon probes 10 times)."""
PROBE_INTERVAL = 2.5
"""Seconds between probe rounds (charon's ROUTEABILITY_CHECK_INTERVAL)."""

HALF_OPEN_TIMEOUT = 30.0
"""Seconds a responder waits for IKE_AUTH after IKE_SA_INIT (strongSwan half_open_timeout)."""
RETRY_DELAY = (2.0, 10.0)
"""Random delay range before retrying an exchange refused with TEMPORARY_FAILURE."""
NONCE_LEN = 32
_INF = float("inf")


class IkeState(enum.Enum):
    CREATED = "created"
    """Nothing sent or received yet."""
    CONNECTING = "connecting"
    """IKE_SA_INIT / IKE_AUTH in progress."""
    ESTABLISHED = "established"
    REKEYING = "rekeying"
    """Established; an IKE rekey is in progress."""
    DELETING = "deleting"
    """Our delete of the IKE SA is outstanding."""
    CLOSED = "closed"
    """Gone: no input is processed any more."""


class ChildState(enum.Enum):
    INSTALLED = "installed"
    REKEYING = "rekeying"
    """We sent a rekey request for it."""
    REKEYED = "rekeyed"
    """Replaced by a newer SA; waiting for its delete exchange."""
    DELETING = "deleting"
    """We sent a delete for it."""
    DELETED = "deleted"


# Enum members tested for every message, as module constants: in CPython 3.11
# ``Enum.MEMBER`` goes through the hook of EnumType.__getattr__ (~60 ns against
# a few ns for a global; ~340 such reads made 3 % of a handshake).  Same objects.
_CLOSED = IkeState.CLOSED
_ESTABLISHED_STATES = (IkeState.ESTABLISHED, IkeState.REKEYING)
_IKE_SA_INIT, _IKE_AUTH = ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH
_FAILED, _NEED_MORE, _REQUEUE, _RETRY, _SKIP = (
    TaskStatus.FAILED, TaskStatus.NEED_MORE, TaskStatus.REQUEUE, TaskStatus.RETRY, TaskStatus.SKIP)


class _StepDetails(Mapping[str, str]):
    """The details of an :class:`ExchangeStep` for one IKE message (SPIs,
    kind, message ID, payload summary, fragments), turned into strings on
    first read.  Every message sent or received makes such an event and most
    are never looked at (a gateway drains them with the other events); the
    strings, the payload summary above all, cost ~6 % of a handshake.  What
    they are made of is copied now (the payload list as a tuple), so a later
    change to the message does not show."""

    __slots__ = ("_raw", "_data")

    def __init__(self, msg: Message, packets: int) -> None:
        self._raw: tuple[Any, ...] | None = (
            msg.spi_i, msg.spi_r, msg.response, msg.message_id, tuple(msg.payloads), packets)
        self._data: dict[str, str] | None = None

    def data(self) -> dict[str, str]:
        d = self._data
        if d is None:
            assert self._raw is not None
            spi_i, spi_r, response, mid, payloads, packets = self._raw
            d = {
                "spi_i": spi_i.hex(),
                "spi_r": spi_r.hex(),
                "kind": "response" if response else "request",
                "mid": str(mid),
                "payloads": payload_names(payloads),
            }
            if packets > 1:
                d["fragments"] = str(packets)
            self._data, self._raw = d, None
        return d

    def __getitem__(self, key: str) -> str:
        return self.data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data())

    def __len__(self) -> int:
        return len(self.data())

    def __repr__(self) -> str:
        return repr(self.data())


@dataclass
class SessionStats:
    """Counters of one session (never reset)."""

    received: int = 0
    sent: int = 0
    malformed: int = 0
    """Undecodable datagrams dropped (before authentication)."""
    integrity_failed: int = 0
    """Encrypted messages whose ICV/tag did not verify (dropped silently)."""
    unknown_spi: int = 0
    invalid_mid: int = 0
    """Requests with a message ID outside the window (dropped)."""
    unexpected_response: int = 0
    retransmits: int = 0
    responses_resent: int = 0
    fragments_sent: int = 0
    fragments_received: int = 0
    errors_answered: int = 0
    """Requests answered with an error notify."""
    dropped_closed: int = 0
    internal_errors: int = 0
    peer_moves_ignored: int = 0
    """Authenticated messages from a new peer address not followed because
    we are behind a NAT (RFC 7296 §2.23)."""
    auth_lifetime_ignored: int = 0
    """AUTH_LIFETIME notifies (RFC 4478) ignored: zero or not 4 bytes."""
    cp_attrs_dropped: int = 0
    """Malformed Configuration Payload attributes dropped (:mod:`aioipsec.ike.cfgattr`)."""
    redirects_invalid: int = 0
    """REDIRECT notifies ignored: malformed data (GW identity type or length),
    an IKE_SA_INIT one whose nonce data is not our Ni (RFC 5685 §4.2), one
    sent to the gateway by its client (only the gateway redirects, §5), or
    one naming an unspecified, loopback, multicast or broadcast address or
    our own address (not followed)."""
    auth_pending: int = 0
    """IKE_AUTH messages held (dropped unanswered) while the peer certificate's
    revocation status was being fetched (:class:`~aioipsec.ike.auth.RevocationPending`)."""


@dataclass(eq=False)
class ChildSa:
    """One Child SA (both directions).  ``repr`` never shows keys."""

    name: str
    config: ChildConfig
    unique_id: int
    protocol: str
    spi_in: int
    spi_out: int
    mode: str
    proposal: Selected
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    initiator: bool
    """We initiated the exchange that created it."""
    encap: bool
    installed_at: float
    rekey_at: float = _INF
    expire_at: float = _INF
    state: ChildState = ChildState.INSTALLED
    rekeyed_from: int | None = None
    nonces: tuple[bytes, bytes] = (b"", b"")
    """(Ni, Nr) of the exchange that created it (rekey collisions)."""
    keys: tuple[bytes, bytes, bytes, bytes] = field(default=(b"", b"", b"", b""), repr=False)
    """encr_in, encr_out, integ_in, integ_out."""
    replaced_by: int | None = None
    delete_reason: str = ""

    @property
    def is_active(self) -> bool:
        return self.state in (ChildState.INSTALLED, ChildState.REKEYING)


class IkeSa:
    """One IKE SA: SPIs, keys, nonces, message IDs (its task manager)."""

    redirect_supported = False
    """Gateway: the client announced REDIRECT_SUPPORTED (or REDIRECTED_FROM)
    in IKE_SA_INIT (RFC 5685 §3): it may be sent REDIRECT.  A class default,
    set on the instance only when true (keeps every IKE SA's dict small)."""
    redirect_held: tuple[float, float] | None = None
    """Client: (``reauth_at``, ``rekey_at``) as they were when an INFORMATIONAL
    REDIRECT suspended them (:meth:`IkeSessionV2.redirect_received`), put back
    by :meth:`IkeSessionV2.redirect_not_followed`; an IKE rekey meanwhile
    hands it on to the new IKE SA (its own rekey time, the old reauthentication
    time), suspended too.  A class default, set on the instance only while
    suspended."""
    request_dst: str | None = None
    """Our address the request being processed was sent to, when the caller
    knew it (``receive_datagram(dst=)``): a MOBIKE responder moves there with
    UPDATE_SA_ADDRESSES (RFC 4555 §3.5).  A class default, set on the
    instance only while such a request is processed."""

    def __init__(self, session: IkeSessionV2, *, initiator: bool, spi_i: bytes | None, spi_r: bytes = bytes(8)) -> None:
        self._session = weakref.ref(session)
        self.initiator = initiator
        """Original initiator of *this* IKE SA (after a rekey: who rekeyed)."""
        self.spi_i: bytes | None = spi_i
        self.spi_r = spi_r
        self.tm = TaskManagerV2(policy=session.retransmit_policy, random=session.random)
        self.state = IkeState.CREATED
        self.proposal: Selected | None = None
        self.prf_alg: PrfAlg | None = None
        self.keys: IkeV2Keys | None = None
        self.sk: SkContext | None = None
        self.reassembler: Reassembler | None = None
        self.ni = b""
        self.nr = b""
        self.init_request = b""
        """Our / the peer's IKE_SA_INIT request as sent (signed by the initiator)."""
        self.init_response = b""
        self.last_init_request = b""
        """Raw bytes of the last IKE_SA_INIT request processed (responder)."""
        self.frag_local = False
        """We announced IKEV2_FRAGMENTATION_SUPPORTED."""
        self.frag_peer = False
        self.peer_hashes: list[int] | None = None
        """Peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427), None if not sent."""
        self.peer_certreq: list[bytes] | None = None
        """CA hashes of the peer's CERTREQ payloads (None: no CERTREQ)."""
        self.multiple_auth = False
        """The responder sent MULTIPLE_AUTH_SUPPORTED in IKE_SA_INIT (RFC 4739)."""
        self.use_ppk = False
        """Both sides sent USE_PPK in IKE_SA_INIT (RFC 8784; ``tasks.ppk``)."""
        self.ppk_id: str | None = None
        """The PPK_ID whose PPK is mixed into this IKE SA's keys (None: none)."""
        self.natd_supported = False
        self.nat_local = False
        self.nat_remote = False
        self.nat_forced = False
        self.mobike = False
        """MOBIKE (RFC 4555) negotiated in IKE_AUTH: no implicit address
        updates; the peer moves us with UPDATE_SA_ADDRESSES."""
        self.peer_addrs: list[str] = []
        """MOBIKE: the peer's additional addresses (ADDITIONAL_IP4/6_ADDRESS,
        RFC 4555 §3.4), its current one not among them; at most 16."""
        self.my_addrs: tuple[str, ...] = ()
        """MOBIKE: this host's addresses we announce as additional ones (less
        the IKE SA's own when sent); :meth:`IkeSessionV2.set_local_addresses`."""
        self.probes = 0
        """MOBIKE path probing (initiator): rounds sent since the current
        path failed (the outstanding liveness request resent to every path)."""
        self.natd_dst: bytes | None = None
        """MOBIKE initiator behind a NAT: the peer's last NAT_DETECTION_DESTINATION_IP
        (its hash of our NAT's mapping); a different one means the mapping changed."""
        self.request_addr: Address | None = None
        """Source address of the request being processed (MOBIKE).  Here and
        not on the session: a 30th session attribute turns CPython 3.11's
        key-sharing instance dict into a plain one (+1.3 KB per session)."""
        self.local_id: Identity | None = None
        self.remote_id: Identity | None = None
        self.eap: Any = None
        """IKE_AUTH with EAP in progress (``tasks.ike_auth.EapRounds``): its
        only place, read by the session and by ``IkeAuth.eap``."""
        self.remote_eap_id: str | None = None
        """Gateway: the EAP identity the peer authenticated with (charon's
        ``get_other_eap_id``: uniqueness, ``PLUTO_XAUTH_ID``, ``remote-eap-id``)."""
        self.local_eap_id: str | None = None
        """Client: the EAP identity we authenticated with (never the password)."""
        self.local_round2_id: str | None = None
        """Client: our IDi of a second certificate or PSK round (RFC 4739, ``local-2``)."""
        self.remote_round2_id: str | None = None
        """Gateway: the peer's IDi of its second certificate or PSK round
        (``remote-2``); the identity of its last round, as charon's
        ``get_other_eap_id``: uniqueness and the pool lease use it
        (:meth:`peer_auth_id`)."""
        self.auth_held_at: float | None = None
        """When an IKE_AUTH message of this SA was first held for a peer
        certificate's revocation status being fetched (bounds the hold)."""
        self.auth_held: tuple[Message, Address, frozenset[tuple[bytes, int]]] | None = None
        """The IKE_AUTH message held right now (decoded: a fragmented one too),
        where it came from and the certificates it waits for: processed again
        by :meth:`IkeSessionV2.retry_held` once the fetcher settled one; a
        retransmission replaces it, a decision drops it."""
        self.established_at: float | None = None
        self.rekey_at = _INF
        self.reauth_at = _INF
        """When the connection's initiator reauthenticates (``reauth_time``; kept across IKE rekeys)."""
        self.reauth_by = _INF
        """RFC 4478 AUTH_LIFETIME: the hard lifetime it sets (the initiator: the
        peer's lifetime; the responder: the one it sent plus ``over_time``);
        kept across IKE rekeys."""
        self.expire_at = _INF
        self.last_inbound = 0.0
        self.rekeyed_from: bytes | None = None
        self.rekeyed_away = False
        """Replaced by a newer IKE SA (its delete is underway)."""
        self.delete_reason = ""
        self.created_at = 0.0

    @property
    def session(self) -> IkeSessionV2:
        """The session this SA belongs to, held weakly: the session holds its
        SAs, and a strong reference back would make every session a cycle
        that only the cyclic garbage collector frees."""
        session = self._session()
        assert session is not None, "IKE SA used after its session was freed"
        return session

    @property
    def established(self) -> bool:
        return self.state in _ESTABLISHED_STATES

    @property
    def use_fragmentation(self) -> bool:
        return self.frag_local and self.frag_peer

    def prf(self, key: bytes, data: bytes) -> bytes:
        assert self.prf_alg is not None
        return prf(self.prf_alg, key, data)

    def set_keys(self, proposal: Selected, keys: IkeV2Keys) -> None:
        assert proposal.encr is not None and proposal.prf is not None
        self.proposal = proposal
        self.prf_alg = proposal.prf
        self.keys = keys
        self.sk = SkContext.from_keys(
            proposal.encr, proposal.integ, keys, is_initiator=self.initiator, random=self.session.random
        )
        self.reassembler = Reassembler(self.sk, max_bytes=self.session.global_config.fragment_reassembly_max)

    def spis(self) -> str:
        return f"{(self.spi_i or bytes(8)).hex()}_i {self.spi_r.hex()}_r"

    def peer_auth_id(self) -> str | None:
        """The identity the peer authenticated with last, as charon's
        ``get_other_eap_id``: the EAP identity of an EAP round, else the IDi
        of a second certificate/PSK round (RFC 4739), else its IDi (None
        before it is known)."""
        if self.remote_eap_id is not None:
            return self.remote_eap_id
        if self.remote_round2_id is not None:
            return self.remote_round2_id
        return None if self.remote_id is None else str(self.remote_id)

    def hold_for_redirect(self) -> None:
        """Suspend ``reauth_at`` and ``rekey_at`` while a REDIRECT is
        pending, keeping the first values in :attr:`redirect_held`."""
        if self.redirect_held is None:
            self.redirect_held = (self.reauth_at, self.rekey_at)
        self.reauth_at = self.rekey_at = _INF

    def __repr__(self) -> str:
        return f"<IkeSa {self.spis()} {self.state.value} {'initiator' if self.initiator else 'responder'}>"


_TASKS: Any = None
"""The ``tasks`` package once loaded (it imports this module, so not at import time)."""


def _load_tasks() -> Any:
    global _TASKS
    from . import tasks

    _TASKS = tasks
    return tasks


def _peer_str(addr: Address | None) -> str:
    if addr is None:
        return "?"
    return f"{addr[0]}[{addr[1]}]"


def _exchange_name(exchange_type: int) -> str:
    return _EXCHANGE_NAMES.get(exchange_type) or f"EXCHANGE({exchange_type})"


class IkeSessionV2:
    """A sans-I/O IKEv2 session (one connection, one current IKE SA).

    Constructor arguments are keyword-only.  ``random(n)`` supplies every
    random byte the protocol needs (SPIs, nonces, IVs, jitter), so tests can
    pin them; key exchange private values come from ``cryptography``.
    ``wall_clock`` (a callable returning an aware ``datetime``) is only used
    to check certificate validity periods; the session never reads the clock
    itself, so it is required when a configuration verifies certificates
    (remote auth other than ``psk``)."""

    redirected_from = ""
    """Client: the gateway that redirected the connection to this session's
    peer (sent as REDIRECTED_FROM instead of REDIRECT_SUPPORTED, RFC 5685 §5);
    set by the owner before :meth:`initiate` (:class:`IkeRedirected`)."""
    redirect_history: tuple[float, ...] = ()
    """Client: when the connection's earlier redirects happened (session
    time, :attr:`IkeRedirected.redirects`): loop protection, at most
    ``MAX_REDIRECTS`` within ``REDIRECT_LOOP_PERIOD``.  Class defaults keep
    a session that was never redirected at its size."""
    nbns_servers: list[str] = []  # noqa: RUF012 - never mutated: the CP task assigns new lists
    remote_subnets: list[str] = []  # noqa: RUF012
    """NBNS servers and networks reachable through the peer (INTERNAL_IP4/6_SUBNET)
    that came with our virtual IPs; class defaults keep an SA without CP at its size."""

    def __init__(
        self,
        *,
        configuration: ConnectionConfig,
        is_initiator: bool,
        local_addr: Address = ("0.0.0.0", 500),
        remote_addr: Address | None = None,
        random: Callable[[int], bytes] = os.urandom,
        global_config: GlobalConfig | None = None,
        configurations: Sequence[ConnectionConfig] | None = None,
        wall_clock: Callable[[], datetime.datetime] | None = None,
        pools: Mapping[str, AddressPool] | None = None,
        unique_check: Callable[[IkeSessionV2, bool], bool] | None = None,
    ) -> None:
        self.config = configuration
        self.candidates: list[ConnectionConfig] = list(configurations or [configuration])
        """Responder: configurations still possible (narrowed by proposal, then by ID)."""
        self.is_initiator = is_initiator
        """True when we initiated the (first) IKE SA of this session."""
        self.random = random
        self.global_config = global_config or GlobalConfig()
        if wall_clock is None and any(a is not None and a.auth == "pubkey"
                                      for c in self.candidates for a in (c.remote, c.remote2)):
            raise LocalProtocolError("wall_clock is required to verify peer certificates")
        self.wall_clock = wall_clock
        if remote_addr is None:
            if not configuration.remote_addrs:
                raise LocalProtocolError("remote_addr is required when the configuration has no remote_addrs")
            remote_addr = (configuration.remote_addrs[0], configuration.remote_port)
        self.local_addr: Address = (local_addr[0], local_addr[1])
        self.remote_addr: Address = (remote_addr[0], remote_addr[1])
        self.retransmit_policy = RetransmitPolicy(
            configuration.retransmit_timeout,
            configuration.retransmit_base,
            configuration.retransmit_tries,
            configuration.retransmit_jitter,
        )
        self.stats = SessionStats()
        self.children: dict[int, ChildSa] = {}
        """Child SAs by inbound SPI (including ones being replaced or deleted)."""
        self.old_sas: list[IkeSa] = []
        self.sa = IkeSa(self, initiator=is_initiator, spi_i=self.new_ike_spi() if is_initiator else None)
        self._events: deque[IpsecEvent] = deque()
        self._out: list[tuple[bytes, Address]] = []
        self._deferred: list[tuple[float, Callable[[float], None]]] = []
        self._next_unique = 1
        self.closed_reason = ""
        """Why the session closed (empty while open)."""
        self.nat_t = False
        """UDP encapsulation / port 4500 in use (NAT detected or forced)."""
        self.unique_check = unique_check
        """Responder: the endpoint's uniqueness check (swanctl ``unique``),
        called by IKE_AUTH once the peer is authenticated with whether it sent
        INITIAL_CONTACT; it replaces older IKE SAs of the same identities
        (:meth:`unique_duplicates`, :meth:`replaced_by`) and returns True to
        refuse this one (``keep``).  None: no other IKE SA is looked at."""
        self.pending_acquires: set[str] = set()
        self.reserved_spis: set[int] = set()
        """Inbound Child SPIs handed out to exchanges still in progress."""
        self.now = 0.0
        """Time of the current input (set by every entry point)."""
        self.pools: Mapping[str, AddressPool] = pools or {}
        """Responder: the endpoint's address pools by name (shared by its sessions)."""
        self.local_vips: list[str] = []
        """Virtual IPs the peer assigned to us (IKE_AUTH CFG_REPLY)."""
        self.dns_servers: list[str] = []
        """DNS servers the peer sent with them."""
        self.remote_vips: list[str] = []
        """Virtual IPs we leased to the peer."""
        self.cp_failure = ""
        """Why no virtual IP was assigned although one was requested (empty: none missing)."""
        self._leases: list[tuple[AddressPool, str, Any]] = []

    # ================================================================== construction helpers

    @classmethod
    def respond(
        cls,
        *,
        configurations: Sequence[ConnectionConfig],
        local_addr: Address,
        remote_addr: Address,
        random: Callable[[int], bytes] = os.urandom,
        global_config: GlobalConfig | None = None,
        wall_clock: Callable[[], datetime.datetime] | None = None,
        pools: Mapping[str, AddressPool] | None = None,
        unique_check: Callable[[IkeSessionV2, bool], bool] | None = None,
    ) -> IkeSessionV2:
        """A responder session for an incoming IKE_SA_INIT.  The configuration
        is chosen among ``configurations``: first by the IKE proposal in
        IKE_SA_INIT, then by the identities in IKE_AUTH.  ``pools`` are the
        address pools the configurations' ``pools`` name (virtual IPs)."""
        if not configurations:
            raise LocalProtocolError("respond() needs at least one configuration")
        return cls(
            configuration=configurations[0],
            is_initiator=False,
            local_addr=local_addr,
            remote_addr=remote_addr,
            random=random,
            global_config=global_config,
            configurations=configurations,
            wall_clock=wall_clock,
            pools=pools,
            unique_check=unique_check,
        )

    @staticmethod
    def check_cookie(
        data: bytes,
        addr: Address,
        half_open: int,
        global_config: GlobalConfig | None = None,
        *,
        now: float,
        random: Callable[[int], bytes] = os.urandom,
        endpoint_state: Any = None,
    ) -> bytes | None:
        """Endpoint helper for a raw IKE_SA_INIT request (RFC 7296 §2.6).

        Returns ``None`` when a session should be created, the bytes of a
        stateless N(COOKIE) response to send back, or ``b""`` when the request
        must be dropped (malformed, wrong cookie, hard half-open limit).
        ``endpoint_state`` is the endpoint's :class:`~aioipsec.ike.cookies.CookieJar`."""
        from ..cookies import CookieJar, InitDecision, decide_ike_sa_init

        gc = global_config or GlobalConfig()
        jar = endpoint_state if isinstance(endpoint_state, CookieJar) else None
        if jar is None:
            jar = CookieJar(random=random, now=now)
        verdict = decide_ike_sa_init(
            data, addr, half_open, jar, threshold=gc.cookie_threshold, half_open_max=gc.half_open_max, now=now
        )
        if verdict.decision is InitDecision.CREATE:
            return None
        if verdict.decision is InitDecision.COOKIE:
            return verdict.reply
        return b""

    # ================================================================== properties

    @property
    def spi_i(self) -> bytes:
        return self.sa.spi_i or bytes(8)

    @property
    def spi_r(self) -> bytes:
        return self.sa.spi_r

    def export_keys(self) -> list[dict[str, Any]]:
        """IKE keys of the current and not yet deleted old IKE SAs, for
        Wireshark's ``ikev2_decryption_table`` (the caller checks ``key_export``)."""
        out: list[dict[str, Any]] = []
        for sa in (self.sa, *self.old_sas):
            keys, prop = sa.keys, sa.proposal
            if keys is None or prop is None or prop.encr is None or not sa.spi_i or not sa.spi_r:
                continue
            out.append({
                "version": 2, "spi_i": sa.spi_i, "spi_r": sa.spi_r,
                "sk_ei": keys.sk_ei, "sk_er": keys.sk_er, "sk_ai": keys.sk_ai, "sk_ar": keys.sk_ar,
                "encr": prop.encr.name,
                "integ": prop.integ.name if prop.integ else None,
            })
        return out

    @property
    def all_spis(self) -> list[bytes]:
        """Every IKE SPI pair member of the current and old IKE SAs (for routing)."""
        out = []
        for sa in (self.sa, *self.old_sas):
            for spi in (sa.spi_i, sa.spi_r):
                if spi and spi != bytes(8):
                    out.append(spi)
        return out

    @property
    def state(self) -> IkeState:
        return self.sa.state

    @property
    def _initiated(self) -> bool:
        """initiate() was called (it leaves the first IKE SA's CREATED state
        for good).  Derived, not stored: a 30th instance attribute turns
        CPython's key-sharing instance dict into a plain one (+1.3 KB per session)."""
        return self.is_initiator and self.sa.state is not IkeState.CREATED

    @property
    def is_established(self) -> bool:
        return self.sa.established

    @property
    def is_closed(self) -> bool:
        return self.sa.state is _CLOSED

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def child_sas(self) -> list[ChildSa]:
        return list(self.children.values())

    @property
    def peer(self) -> str:
        addr = self.remote_addr  # _peer_str inlined: read for every message and step
        return f"{addr[0]}[{addr[1]}]" if addr is not None else "?"

    # ================================================================== public API

    def initiate(self, now: float, child: str | None = None) -> None:
        """Start IKE_SA_INIT and IKE_AUTH with the Child SA ``child`` (default:
        the configuration's first child; none configured: a childless IKE_AUTH)."""
        t = _TASKS or _load_tasks()  # not 'from .tasks import ...': a package import costs ~2 us per call
        ChildCreate, IkeAuth, IkeConfig, IkeInit, IkeMobike, IkeNatd = (
            t.ChildCreate, t.IkeAuth, t.IkeConfig, t.IkeInit, t.IkeMobike, t.IkeNatd)

        if not self.is_initiator or self._initiated:
            raise LocalProtocolError("initiate() can only be called once, on an initiator session")
        self.now = now
        sa = self.sa
        sa.created_at = now
        sa.state = IkeState.CONNECTING
        sa.tm.queue(IkeInit(self, sa, True))
        sa.tm.queue(IkeNatd(self, sa, True))
        if self.config.vips:
            # before IkeAuth: the reply is parsed when the IKE SA is declared established
            sa.tm.queue(IkeConfig(self, sa, True))
        if self.config.mobike:
            sa.tm.queue(IkeMobike(self, sa, True, auth=True))  # MOBIKE_SUPPORTED (RFC 4555 §3.3)
        sa.tm.queue(IkeAuth(self, sa, True))
        cfg = self._child_config(child)
        if cfg is not None:
            sa.tm.queue(ChildCreate(self, sa, True, config=cfg, in_auth=True))
        self._kick(now)

    def create_child_sa(
        self, child_name: str, now: float, selector: TrafficSelector | tuple[TrafficSelector, TrafficSelector] | None = None
    ) -> None:
        """Negotiate another Child SA from the configuration ``child_name``
        (CREATE_CHILD_SA).  ``selector`` (a remote selector, or a (local,
        remote) pair) is proposed first, as for a trap policy's packet."""
        from .tasks import ChildCreate

        self.now = now
        cfg = self._child_config(child_name)
        if cfg is None:
            raise LocalProtocolError(f"no child configuration '{child_name}'")
        if self.is_closed:
            raise LocalProtocolError("the IKE SA is closed")
        packet_ts = self._packet_ts(selector)
        if not self._initiated and self.is_initiator:
            # not connected yet: the first Child SA rides on IKE_AUTH
            self.initiate(now, child=child_name)
            task = self.sa.tm.queued[-1] if self.sa.tm.queued else None
            if isinstance(task, ChildCreate):
                task.packet_ts = packet_ts
            return
        self.sa.tm.queue(ChildCreate(self, self.sa, True, config=cfg, packet_ts=packet_ts))
        self._kick(now)

    def rekey_child_sa(self, spi_in: int, now: float) -> None:
        """Rekey the Child SA with inbound SPI ``spi_in`` (CREATE_CHILD_SA with REKEY_SA)."""
        self.now = now
        child = self.children.get(spi_in)
        if child is None or not child.is_active:
            raise LocalProtocolError(f"no active Child SA with inbound SPI {spi_in:#010x}")
        self._queue_child_rekey(child, now)

    def rekey_ike_sa(self, now: float) -> None:
        """Rekey the IKE SA (CREATE_CHILD_SA with an IKE proposal)."""
        self.now = now
        if not self.is_established:
            raise LocalProtocolError("the IKE SA is not established")
        self._queue_ike_rekey(now)

    def reauthenticate(self, now: float) -> None:
        """Ask for an IKEv2 reauthentication now (also what ``reauth_time``
        does): emits :class:`~aioipsec.events.ReauthRequired` with the Child
        SAs to recreate; the IKE SA stops rekeying itself meanwhile.  The
        owner starts the new session and deletes this one (:meth:`delete`)."""
        self.now = now
        sa = self.sa
        if not self.is_established:
            raise LocalProtocolError("the IKE SA is not established")
        sa.reauth_at = sa.rekey_at = _INF
        names = tuple(dict.fromkeys(c.name for c in self.children.values() if c.is_active))
        logger.info("IKE_SA %s %s with %s: reauthenticating (new IKE SA, %d Child SA(s) again)",
                    self.config.name, sa.spis(), self.peer, len(names))
        self.emit(ReauthRequired(sa.spi_i or bytes(8), sa.spi_r, names, tuple(self.local_vips)))

    def delete_child_sa(self, spi_in: int, now: float) -> None:
        """Delete one Child SA (INFORMATIONAL with a Delete payload)."""
        self.now = now
        child = self.children.get(spi_in)
        if child is None or child.state in (ChildState.DELETING, ChildState.DELETED):
            raise LocalProtocolError(f"no Child SA with inbound SPI {spi_in:#010x}")
        self.queue_child_delete(child, "deleted locally", now)

    def delete(self, now: float) -> None:
        """Delete the IKE SA and all its Child SAs."""
        from .tasks import IkeDelete

        self.now = now
        if self.is_closed:
            return
        if not self.sa.established:
            self._close("deleted locally", now)
            return
        if self.sa.tm.is_active(IkeDelete) or self.sa.tm.has_queued(IkeDelete):
            return
        self.sa.tm.queue(IkeDelete(self, self.sa, True, reason="deleted locally"), first=True)
        self._kick(now)

    def redirect(self, gateway: str, now: float) -> None:
        """Gateway: redirect the client of this established IKE SA to
        ``gateway`` (an IPv4/IPv6 address, or a name) with REDIRECT in an
        INFORMATIONAL (RFC 5685 §5; swanctl ``--redirect``).  The client must
        have announced REDIRECT_SUPPORTED.  It sets the connection up with
        ``gateway`` and deletes this IKE SA; if it has not after
        ``HALF_OPEN_TIMEOUT`` seconds once it answered, we delete it (charon)."""
        from .tasks.ike_redirect import IkeRedirect, redirect_data, unusable_gateway

        self.now = now
        if not self.is_established:
            raise LocalProtocolError("the IKE SA is not established")
        if not self.sa.redirect_supported:
            raise LocalProtocolError(f"peer {self.peer_label()} did not announce REDIRECT_SUPPORTED")
        try:
            redirect_data(gateway)
        except (ValueError, UnicodeError) as exc:
            raise LocalProtocolError(f"cannot redirect to '{gateway}': {exc}") from None
        try:
            ip = ipaddress.ip_address(gateway)
        except ValueError:
            why = ""  # a gateway name
        else:  # what the client would refuse (redirect_received)
            why = unusable_gateway(ip, self._own_addresses(self.sa))
        if why:
            raise LocalProtocolError(f"cannot redirect to '{gateway}': {why}")
        logger.info("IKE_SA %s %s: redirecting %s to %s", self.config.name, self.sa.spis(), self.peer_label(), gateway)
        self.sa.tm.queue(IkeRedirect(self, self.sa, True, gateway=gateway))
        self._kick(now)

    def redirect_answered(self, sa: IkeSa, gateway: str) -> None:
        """Gateway: the client answered our REDIRECT; it deletes the IKE SA
        once set up with ``gateway``, else we do after ``HALF_OPEN_TIMEOUT``."""
        logger.info("IKE_SA %s %s: %s acknowledged the redirect to %s", self.config.name, sa.spis(),
                    self.peer_label(), gateway)

        def _expire(now: float) -> None:
            if sa is self.sa and not self.is_closed:
                logger.info("IKE_SA %s %s: redirected peer %s did not delete it: deleting", self.config.name,
                            sa.spis(), self.peer_label())
                self.delete(now)

        self.defer(self.now + HALF_OPEN_TIMEOUT, _expire)

    def parse_redirect(self, data: bytes, exchange: str, nonce: bytes | None = None) -> tuple[int, str] | None:
        """Client: the (GW identity type, gateway) of a REDIRECT notify, or
        None (logged with the peer and counted, never raised) when its data
        is malformed or, in IKE_SA_INIT, does not echo our ``nonce``."""
        from .tasks.ike_redirect import InvalidRedirect, parse_redirect

        try:
            kind, gateway, echoed = parse_redirect(data)
        except InvalidRedirect as exc:
            self.stats.redirects_invalid += 1
            logger.warning("invalid REDIRECT in %s from %s ignored: %s", exchange, self.peer_label(), exc)
            return None
        if nonce is not None and echoed != nonce:
            self.stats.redirects_invalid += 1
            logger.warning("REDIRECT to %s in IKE_SA_INIT from %s ignored: its nonce data is not our Ni",
                           gateway, self.peer)
            return None
        return kind, gateway

    def redirect_received(self, sa: IkeSa, kind: int, gateway: str, exchange: str, now: float) -> bool:
        """Client: follow a valid REDIRECT to ``gateway`` (RFC 5685):
        :class:`IkeRedirected` for the owner; a redirect during IKE_SA_INIT
        or IKE_AUTH closes this session.  One that cannot be followed
        (``follow_redirects`` off, a gateway name, a redirect loop) fails a
        negotiation under way, with the reason, and is ignored on an
        established IKE SA.  True when followed."""
        from .tasks.ike_redirect import GW_FQDN, MAX_REDIRECTS, REDIRECT_LOOP_PERIOD

        by = self.peer_label()
        recent = tuple(t for t in self.redirect_history if now - t < REDIRECT_LOOP_PERIOD)
        why = ""
        if not self.config.follow_redirects:
            why = "follow_redirects is off (REDIRECT_SUPPORTED was not sent)"
        elif kind == GW_FQDN:
            why = "gateway names are not resolved (only IPv4/IPv6 gateway identities are followed)"
        elif len(recent) >= MAX_REDIRECTS:
            why = (f"redirect loop: already redirected {len(recent)} times within {REDIRECT_LOOP_PERIOD:g} s "
                   f"(at most {MAX_REDIRECTS})")
        else:
            why = self._bad_redirect_target(sa, gateway)
            if why:
                self.stats.redirects_invalid += 1
        if why:
            if sa.established:
                logger.warning("IKE_SA %s %s: REDIRECT to %s by %s not followed: %s", self.config.name, sa.spis(),
                               gateway, by, why)
                return False
            reason = f"redirected to {gateway} by {by}, not followed: {why}"
            logger.warning("IKE_SA %s %s: %s", self.config.name, sa.spis(), reason)
            self.emit(NegotiationFailed(by, exchange, "REDIRECT", reason))
            self._close(reason, now)
            return False
        names = [c.name for c in self.children.values() if c.is_active]
        if not sa.established:
            t = _TASKS or _load_tasks()
            names += [task.config.name for task in self.all_tasks() if isinstance(task, t.ChildCreate)
                      and task.config is not None]
        children = tuple(dict.fromkeys(names))
        logger.info("IKE_SA %s %s: redirected to %s by %s (%s), %d Child SA(s) to set up there", self.config.name,
                    sa.spis(), gateway, by, exchange, len(children))
        self.emit(IkeRedirected(self.config.name, by, gateway, exchange, sa.spi_i or bytes(8), sa.spi_r, children,
                                (*recent, now), self.remote_addr[0]))
        if not sa.established:
            self._close(f"redirected to {gateway} by {by}", now)
        else:
            # replaced soon: no rekeying meanwhile; the owner calls
            # redirect_not_followed() if it does not follow after all
            sa.hold_for_redirect()
        return True

    def _bad_redirect_target(self, sa: IkeSa, gateway: str) -> str:
        """Why ``gateway`` (an IP address) cannot be a gateway to go to, or
        "": an unspecified, loopback, multicast or broadcast address, or one
        of ours (following could only fail or loop back to us; charon does
        not check)."""
        from .tasks.ike_redirect import unusable_gateway

        try:
            ip = ipaddress.ip_address(gateway)
        except ValueError:
            return "the target is not an IP address"
        return unusable_gateway(ip, self._own_addresses(sa))

    def _own_addresses(self, sa: IkeSa) -> set[str]:
        """Our addresses a REDIRECT must not point to: the IKE SA's (without
        its zone) and those MOBIKE announces for ``sa``."""
        return {self.local_addr[0].split("%", 1)[0], *sa.my_addrs}

    def redirect_not_followed(self, gateway: str, why: str, now: float) -> bool:
        """Client: the owner did not follow the REDIRECT of the established
        IKE SA to ``gateway`` (:class:`IkeRedirected`, INFORMATIONAL) after
        all, for the reason ``why`` (the new IKE SA could not start or
        failed, a replacement is under way already): its reauthentication and
        rekey times, suspended by :meth:`redirect_received`, are put back (one
        already past is due at once), so the IKE SA does not run into its
        hard lifetime.  True when something was put back."""
        self.now = now
        sa = self.sa
        held = sa.redirect_held
        if held is None:
            return False
        del sa.redirect_held  # back to the class default
        if self.is_closed or not sa.established:
            return False
        sa.reauth_at, sa.rekey_at = held
        logger.info("IKE_SA %s %s: REDIRECT to %s by %s not followed (%s): the IKE SA stays, rekeying and "
                    "reauthenticating as before", self.config.name, sa.spis(), gateway, self.peer_label(), why)
        return True

    def roam(self, local_addr: Address, now: float) -> None:
        """Our address changed to ``local_addr`` (a roaming client; RFC 4555
        §3.5): send an UPDATE_SA_ADDRESSES request (with NAT-D for the new
        path and a COOKIE2) that the caller transmits *from* ``local_addr``.
        When the peer answers, the session uses ``local_addr`` and emits
        :class:`LocalAddressChanged` (the Child SAs follow, UDP encapsulation
        as NAT detection now finds it); without an answer the peer is dead
        (:class:`DpdTimeout`).  Only an IKE SA that negotiated MOBIKE can move:
        otherwise this raises :class:`LocalProtocolError` and the IKE SA has
        to be re-initiated from the new address (what strongSwan does; the
        asyncio endpoint's ``roam`` does that)."""
        self.now = now
        if not self.is_established:
            raise LocalProtocolError("the IKE SA is not established")
        if not self.is_initiator:
            # RFC 4555 §3.1: the initiator decides the addresses; a responder never moves the SA
            raise LocalProtocolError(f"only the initiator moves a MOBIKE IKE SA; {self.peer} has to")
        if not self.sa.mobike:
            raise LocalProtocolError(
                f"MOBIKE was not negotiated with {self.peer}: the IKE SA cannot move to "
                f"{_peer_str(local_addr)}; re-initiate it from there")
        self.queue_roam((local_addr[0], local_addr[1]))
        self._kick(now)

    def set_local_addresses(self, addresses: Iterable[str], now: float) -> bool:
        """This host's addresses are now ``addresses`` (the caller's view of
        its interfaces).  MOBIKE announces them as our additional addresses
        (RFC 4555 §3.4): in IKE_AUTH and, when the set changes on an
        established IKE SA that uses MOBIKE, in an INFORMATIONAL of its own
        (charon sends an address update on any address change).  Loopback,
        link-local, unspecified and multicast addresses and our virtual IPs
        are left out, as charon's regular addresses do; the IKE SA's own
        address is left out when sending.  While the IKE SA's own address is
        not among ``addresses`` (it is gone: a move to another one follows,
        and an address update after it) nothing is sent from it.  Whether an update was queued."""
        from .tasks import IkeMobike

        self.now = now
        vips = set(self.local_vips) | set(self.remote_vips)
        keep: set[str] = set()
        for a in addresses:
            try:
                ip = ipaddress.ip_address(str(a).split("%", 1)[0])
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or str(ip) in vips:
                continue
            keep.add(str(ip))
        new = tuple(sorted(keep, key=lambda a: (":" in a, ipaddress.ip_address(a).packed)))
        sa = self.sa
        if new == sa.my_addrs:
            return False
        sa.my_addrs = new
        if not (sa.established and sa.mobike) or self.is_closed:
            return False
        if self.local_addr[0] not in keep:
            logger.debug("IKE_SA %s %s: local addresses changed, %s among them no longer; the move announces them",
                         self.config.name, sa.spis(), self.local_addr[0])
            return False
        if any(isinstance(t, IkeMobike) and (t.addresses or t.roam_to is not None) for t in sa.tm.queued):
            return False  # a queued update or address list is built with the new set
        logger.info("IKE_SA %s %s: local addresses changed; sending a MOBIKE address update to %s",
                    self.config.name, sa.spis(), self.peer)
        sa.tm.queue(IkeMobike(self, sa, True, addresses=True))
        self._kick(now)
        return True

    def queue_roam(self, local_addr: Address) -> None:
        """Queue UPDATE_SA_ADDRESSES from ``local_addr`` ahead of other
        requests; an update still queued just takes the newer address."""
        from .tasks import IkeDelete, IkeMobike

        sa = self.sa
        for t in sa.tm.queued:
            if isinstance(t, IkeMobike) and t.roam_to is not None:
                t.roam_to = local_addr
                return
        task = IkeMobike(self, sa, True, roam_to=local_addr)
        if sa.tm.queued and isinstance(sa.tm.queued[0], IkeDelete):
            sa.tm.queue(task)
        else:
            sa.tm.queue(task, first=True)

    def local_moved(self, sa: IkeSa, addr: Address, natd: bool, *, responder: bool = False) -> None:
        """The peer answered our UPDATE_SA_ADDRESSES (RFC 4555 §3.5): we are
        at ``addr`` now.  ``natd``: NAT detection was redone for the new path
        and UDP encapsulation of the Child SAs follows it.  ``responder``: the
        peer's UPDATE_SA_ADDRESSES was sent to ``addr``, another address of
        ours (a multi-homed gateway takes it from the IP header, §3.5).
        :class:`LocalAddressChanged` tells the data plane."""
        why = f"MOBIKE update from {self.peer} sent there" if responder else f"MOBIKE update answered by {self.peer}"
        old = self.local_addr
        encap: bool | None = (sa.nat_local or sa.nat_remote) if natd else None
        self.local_addr = addr
        if sa.nat_local or sa.nat_remote:
            self.switch_to_natt()
        addr = self.local_addr
        switched = self._set_children_encap(encap)
        if addr == old and not switched:
            logger.info("%s: address %s and UDP encapsulation unchanged", why, _peer_str(addr))
            return
        logger.info("IKE_SA %s %s now at %s (was %s; %s; UDP encapsulation %s)",
                    self.config.name, sa.spis(), _peer_str(addr), _peer_str(old), why,
                    "unchanged" if encap is None else ("on" if encap else "off"))
        self.emit(LocalAddressChanged(self.peer, old, addr, encap))

    def _set_children_encap(self, encap: bool | None) -> list[Any]:
        """UDP encapsulation of the live Child SAs after MOBIKE redid NAT
        detection (``None``: not redone, nothing changes); the ones switched."""
        if encap is None:
            return []
        switched = [c for c in self.children.values() if c.state is not ChildState.DELETED and c.encap != encap]
        for c in switched:
            c.encap = encap
        return switched

    def note_peer_traffic(self, now: float) -> None:
        """Authenticated ESP/AH from the peer arrived by ``now`` (the caller's
        data plane saw it): liveness like an IKE message, so no liveness check
        is started while traffic flows (strongSwan: DPD only "if no IKE or
        ESP/AH packet has been received for the configured DPD delay").  An
        exchange already in flight still needs its IKE response."""
        sa = self.sa
        if sa is not None and sa.established and now > sa.last_inbound:
            sa.last_inbound = now

    def dpd(self, now: float) -> None:
        """Send a liveness check (empty INFORMATIONAL) now."""
        from .tasks import IkeDpd

        self.now = now
        if not self.is_established:
            raise LocalProtocolError("the IKE SA is not established")
        if not self.sa.tm.has_queued(IkeDpd) and not self.sa.tm.is_active(IkeDpd):
            self.sa.tm.queue(IkeDpd(self, self.sa, True))
        self._kick(now)

    def acquire(self, selector: TrafficSelector | tuple[TrafficSelector, TrafficSelector], now: float) -> None:
        """The data plane saw a first packet for a trap policy: negotiate the
        Child SA whose remote selectors cover it (RFC 7296 §2.9: the packet's
        own selectors go first in TSi/TSr)."""
        self.now = now
        local, remote = self._split_selector(selector)
        for cfg in self.config.children.values():
            rts = cfg.remote_ts or self.remote_dynamic_ts()
            if not any(remote.intersect(t) == remote for t in rts):
                continue
            if local is not None:
                lts = cfg.local_ts or self.local_dynamic_ts()
                if not any(local.intersect(t) == local for t in lts):
                    continue
            if cfg.name in self.pending_acquires or any(
                c.name == cfg.name and c.is_active for c in self.children.values()
            ):
                return
            self.pending_acquires.add(cfg.name)
            self.create_child_sa(cfg.name, now, selector)
            return
        logger.info("acquire for %s matches no child of %s; ignored", remote, self.config.name)

    def child_sa_expired(self, spi: int, hard: bool, now: float) -> None:
        """The data plane hit a byte/packet/sequence limit of the SA with
        ``spi`` (inbound or outbound): rekey (soft) or delete (hard)."""
        self.now = now
        child = self.children.get(spi) or next((c for c in self.children.values() if c.spi_out == spi), None)
        if child is None or not child.is_active:
            return
        if hard:
            self._expire_child(child, now)
        elif child.state is ChildState.INSTALLED:
            self._queue_child_rekey(child, now)
        self._kick(now)

    # ================================================================== sans-I/O surface

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> IpsecEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        if self.is_closed:
            return None
        times: list[float] = []
        for sa in (self.sa, *self.old_sas):
            t = sa.tm.timer()
            if t is not None:
                times.append(t)
        sa = self.sa
        if sa.established:
            times += [sa.rekey_at, sa.reauth_at, sa.expire_at]
            if self.config.dpd_delay > 0:
                times.append(sa.last_inbound + self.config.dpd_delay)
            for c in self.children.values():
                if c.state is not ChildState.DELETED:
                    times += [c.rekey_at, c.expire_at]
        elif not self.is_initiator and sa.state is IkeState.CONNECTING:
            times.append(sa.created_at + HALF_OPEN_TIMEOUT)
        times += [t for t, _ in self._deferred]
        finite = [t for t in times if t != _INF]
        return min(finite) if finite else None

    def handle_timer(self, now: float) -> None:
        if self.is_closed:
            return
        self.now = now
        try:
            self._handle_timer(now)
        except Exception:  # pragma: no cover - defensive: never let a bug kill the caller
            self.stats.internal_errors += 1
            logger.exception("IKE session %s: internal error in timer handling", self.config.name)
        self._kick(now)

    def receive_datagram(self, data: bytes, addr: Address, now: float, *, dst: str | None = None) -> None:
        """Process one IKE datagram (without non-ESP marker).  ``dst``: our
        address it was sent to, when the caller knows it (a socket bound to
        the wildcard address): an UPDATE_SA_ADDRESSES sent to another address
        of ours moves our side of a MOBIKE IKE SA there (RFC 4555 §3.5: the
        responder takes both addresses from the IP header).  Never raises."""
        if self.is_closed:
            self.stats.dropped_closed += 1
            return
        self.stats.received += 1
        self.now = now
        try:
            self._receive(bytes(data), (addr[0], addr[1]), now, dst)
        except Exception:  # pragma: no cover - defensive
            self.stats.internal_errors += 1
            logger.exception("IKE session %s: internal error on input from %s", self.config.name, _peer_str(addr))
        if not self.is_closed:
            self._kick(now)

    def retry_held(self, now: float, settled: Iterable[tuple[bytes, int]] | None = None) -> bool:
        """The revocation fetcher is done with the certificates ``settled``
        (issuer DER, serial; None: any): process an IKE_AUTH message held for
        one of them again, as if it had just arrived (responder: the request;
        initiator: the response, while its exchange is still active).  Cheap
        when nothing is held.  Returns whether something was processed (the
        caller then sends what the session produced).  Never raises."""
        held = [sa for sa in (self.sa, *self.old_sas) if sa.auth_held is not None]
        if not held:
            return False
        keys = None if settled is None else set(settled)
        done = False
        self.now = now
        for sa in held:
            assert sa.auth_held is not None
            msg, addr, waits = sa.auth_held
            if sa.state is IkeState.CLOSED or self.is_closed:
                sa.auth_held = None
                continue
            if keys is not None and waits and keys.isdisjoint(waits):
                continue
            sa.auth_held = None  # held again if another certificate is still pending
            done = True
            try:
                if msg.response:
                    act = sa.tm.active
                    if act is not None and act.mid == msg.message_id and act.exchange_type == msg.exchange_type:
                        self._process_response(sa, act, msg, addr, now)
                elif sa.tm.classify_request(msg.message_id) == "new":
                    sa.request_addr = addr
                    try:
                        self._process_request(sa, msg, now)
                    finally:
                        sa.request_addr = None
            except Exception:  # pragma: no cover - defensive, as receive_datagram
                self.stats.internal_errors += 1
                logger.exception("IKE session %s: internal error on the held message from %s",
                                 self.config.name, _peer_str(addr))
        if done and not self.is_closed:
            self._kick(now)
        return done

    # ================================================================== helpers for tasks

    def emit(self, event: IpsecEvent) -> None:
        self._events.append(event)

    def step(self, text: str, sa: IkeSa | None = None, *, spis: tuple[bytes, bytes] | None = None, **details: str) -> None:
        """Log one exchange step and emit it as an ExchangeStep event."""
        sa = sa or self.sa
        spi_i, spi_r = spis if spis is not None else (sa.spi_i or bytes(8), sa.spi_r)
        hi, hr = spi_i.hex(), spi_r.hex()
        peer = self.peer
        if logger.isEnabledFor(logging.INFO):
            extra = " ".join(f"{k}={v}" for k, v in details.items())
            logger.info("%s %s %s_i %s_r %s", text, peer, hi, hr, extra)
        self.emit(ExchangeStep(text, peer, {"spi_i": hi, "spi_r": hr, **details}))

    def new_nonce(self) -> bytes:
        return self.random(NONCE_LEN)

    def new_ike_spi(self) -> bytes:
        for _ in range(16):
            spi = self.random(8)
            if spi != bytes(8):
                return spi
        raise LocalProtocolError("random source returns only zeros")

    def new_child_spi(self) -> int:
        for _ in range(64):
            spi = int.from_bytes(self.random(4), "big")
            if spi >= 256 and spi not in self.children and spi not in self.reserved_spis:
                return spi
        raise LocalProtocolError("cannot allocate a Child SA SPI")

    def new_unique_id(self) -> int:
        uid = self._next_unique
        self._next_unique += 1
        return uid

    def jitter(self, amount: float) -> float:
        return amount * random_fraction(self.random) if amount > 0 else 0.0

    def peer_label(self, identity: Identity | None = None) -> str:
        ident = identity or self.sa.remote_id
        return f"{self.remote_addr[0]}[{ident}]" if ident is not None else self.remote_addr[0]

    def local_identity(self) -> Identity:
        ident = self.config.local.id
        if ident and ident.strip() not in ("%any", "%any6"):
            return Identity.from_string(ident)
        return Identity.from_address(self.local_addr[0])

    def _child_config(self, name: str | None) -> ChildConfig | None:
        if name is None:
            return next(iter(self.config.children.values()), None)
        return self.config.children.get(name)

    @staticmethod
    def _dynamic_ts(addr: str) -> TrafficSelector:
        ip = ipaddress.ip_address(addr)
        return TrafficSelector.from_cidr(f"{ip}/{ip.max_prefixlen}")

    def local_dynamic_ts(self) -> list[TrafficSelector]:
        """What a child's ``dynamic`` local selector stands for: our virtual
        IPs once assigned; while they are requested, any address of each
        requested family (the responder narrows it to the lease, like
        strongSwan); else our own address."""
        if self.local_vips:
            return [self._dynamic_ts(v) for v in self.local_vips]
        if self.config.vips:
            versions = dict.fromkeys(ipaddress.ip_address(v).version for v in self.config.vips)
            return [TrafficSelector.any(v) for v in versions]
        return [self._dynamic_ts(self.local_addr[0])]

    def remote_dynamic_ts(self) -> list[TrafficSelector]:
        """A child's ``dynamic`` remote selector: the virtual IPs we leased to
        the peer, else its address."""
        if self.remote_vips:
            return [self._dynamic_ts(v) for v in self.remote_vips]
        return [self._dynamic_ts(self.remote_addr[0])]

    def lease_address(self, version: int, requested: Any = None) -> tuple[AddressPool, Any] | None:
        """Responder: lease an address of IP ``version`` to the peer's
        identity from the chosen connection's pools (in order); recorded in
        :attr:`remote_vips` and released when the session closes.  After EAP
        the identity is the EAP one, after a second certificate/PSK round
        that round's IDi, as charon's ``get_other_eap_id`` (road warriors
        sharing one IDi get an address each)."""
        ident = self.sa.peer_auth_id()
        if ident is None:
            ident = self.remote_addr[0]
        got = lease_from(self.pools, self.config.pools, ident, version, requested, f"IKE_SA {self.config.name}",
                         self.peer_label())
        if got is None:
            return None
        pool, ip, name = got
        self._leases.append((pool, ident, ip))
        self.remote_vips.append(str(ip))
        logger.info("IKE_SA %s: assigned virtual IP %s from pool %s to %s", self.config.name, ip, name,
                    self.peer_label())
        return pool, ip

    def _release_leases(self) -> None:
        leases, self._leases = self._leases, []
        for pool, ident, ip in leases:
            if pool.release(ident, ip):
                logger.info("IKE_SA %s: lease %s of %s in pool %s released%s", self.config.name, ip, ident, pool.name,
                            " (still online: another IKE SA of that identity holds it)" if pool.holds(ident) else "")

    @staticmethod
    def _split_selector(
        selector: TrafficSelector | tuple[TrafficSelector, TrafficSelector],
    ) -> tuple[TrafficSelector | None, TrafficSelector]:
        if isinstance(selector, TrafficSelector):
            return None, selector
        return selector[0], selector[1]

    def _packet_ts(
        self, selector: TrafficSelector | tuple[TrafficSelector, TrafficSelector] | None
    ) -> tuple[TrafficSelector | None, TrafficSelector | None]:
        if selector is None:
            return None, None
        return self._split_selector(selector)

    def max_ike_size(self) -> int:
        """Largest IKE message before fragmenting: ``fragment_size`` (IP
        payload) minus the UDP header and, on port 4500, the non-ESP marker."""
        return max(self.config.fragment_size - 8 - (4 if self.nat_t else 0), 128)

    def switch_to_natt(self) -> None:
        """Float to port 4500 (RFC 7296 §2.23) after NAT detection."""
        if self.nat_t:
            return
        self.nat_t = True
        if self.remote_addr[1] == 500:
            self.remote_addr = (self.remote_addr[0], NATT_PORT)
        if self.local_addr[1] == 500:
            self.local_addr = (self.local_addr[0], NATT_PORT)

    # ================================================================== sending

    def new_message(self, sa: IkeSa, exchange_type: int, *, response: bool, mid: int) -> Message:
        return Message(
            exchange_type,
            sa.spi_i or bytes(8),
            sa.spi_r,
            mid,
            initiator=sa.initiator,
            response=response,
            encrypted=exchange_type != _IKE_SA_INIT,
        )

    def encode(self, sa: IkeSa, msg: Message) -> list[bytes]:
        data = encode_message(msg, sa.sk if msg.encrypted else None)
        limit = self.max_ike_size()
        if msg.encrypted and sa.use_fragmentation and len(data) > limit and sa.sk is not None:
            packets = fragment_message(msg, sa.sk, limit)
            self.stats.fragments_sent += len(packets)
            return packets
        return [data]

    def transmit(self, packets: Sequence[bytes], to: Address | None = None) -> None:
        """Queue ``packets`` for the peer (``to``: a response's destination
        other than the peer address, MOBIKE answering a path probe)."""
        dst = to or self.remote_addr
        for p in packets:
            self._out.append((p, dst))
            self.stats.sent += 1

    def _log_message(self, sa: IkeSa, msg: Message, direction: str, packets: int = 1) -> None:
        """:meth:`step` for one message sent or received, without its keyword
        plumbing (twice per exchange and side): same log line, same event.
        The event's details are built when first read (:class:`_StepDetails`)."""
        ex = msg.exchange_type
        text = f"{_EXCHANGE_NAMES.get(ex) or f'EXCHANGE({ex})'} {direction}"  # _exchange_name inlined
        peer = self.peer
        details = _StepDetails(msg, packets)
        if logger.isEnabledFor(logging.INFO):
            d = details.data()
            extra = f"kind={d['kind']} mid={d['mid']} payloads={d['payloads']}" + (
                f" fragments={packets}" if packets > 1 else "")
            logger.info("%s %s %s_i %s_r %s", text, peer, d["spi_i"], d["spi_r"], extra)
        self._events.append(ExchangeStep(text, peer, details))

    def send_one_shot(self, sa: IkeSa, msg: Message) -> None:
        """Send a request that is not retransmitted (e.g. an AUTHENTICATION_FAILED
        INFORMATIONAL before closing)."""
        packets = self.encode(sa, msg)
        self.transmit(packets)
        self._log_message(sa, msg, "sent", len(packets))

    def send_ike_delete(self, sa: IkeSa) -> None:
        """An INFORMATIONAL with the IKE SA's Delete, sent once (not
        retransmitted: the IKE SA closes right after), with the message ID
        past an outstanding request if there is one."""
        mid = sa.tm.active.mid + 1 if sa.tm.active is not None else sa.tm.my_mid
        msg = self.new_message(sa, ExchangeType.INFORMATIONAL, response=False, mid=mid)
        msg.payloads = [DeletePayload(ProtocolId.IKE)]
        self.send_one_shot(sa, msg)

    def _kick(self, now: float) -> None:
        """Start the next queued exchange on every IKE SA that has none outstanding."""
        if self.is_closed:
            return
        for sa in (self.sa, *self.old_sas):
            if sa.state is _CLOSED:
                continue
            while sa.tm.active is None and sa.tm.queued:
                if sa is self.sa and not self._may_initiate(sa):
                    break
                tasks = sa.tm.next_exchange()
                if not tasks:
                    break
                self._send_request(sa, tasks, now)
                if self.is_closed:
                    return

    def _may_initiate(self, sa: IkeSa) -> bool:
        """While IKE_SA_INIT/IKE_AUTH run, only their tasks go out; while an IKE
        rekey runs (or the SA is being replaced), nothing else starts."""
        state = sa.state
        if state is IkeState.ESTABLISHED:
            return True
        t = _TASKS or _load_tasks()
        head = sa.tm.queued[0]
        if state in (IkeState.CREATED, IkeState.CONNECTING):
            return sa.tm.exchange_started or isinstance(head, t.IkeInit)
        if state is IkeState.REKEYING:
            return isinstance(head, t.IkeDelete)
        return True

    def _send_request(self, sa: IkeSa, tasks: list[Task], now: float) -> None:
        exchange = tasks[0].exchange_type
        msg = self.new_message(sa, exchange, response=False, mid=sa.tm.my_mid)
        kept: list[Task] = []
        for t in tasks:
            st = t.build(msg)
            if st is _SKIP:
                continue
            if st is _FAILED:
                self._close(getattr(t, "failure_reason", "") or "failed", now)
                return
            kept.append(t)
        if not kept:
            return
        self._start_request(sa, msg, kept, now)

    def _start_request(self, sa: IkeSa, msg: Message, tasks: list[Task], now: float) -> None:
        """Send the built request ``msg`` as the active exchange of ``tasks``."""
        packets = self.encode(sa, msg)
        if msg.exchange_type == ExchangeType.IKE_SA_INIT:
            sa.init_request = packets[0]
        sa.tm.exchange_started = True
        sa.tm.start(msg.exchange_type, tasks, packets, now)
        self.transmit(packets)
        self._log_message(sa, msg, "sent", len(packets))

    def _eap_request(self, sa: IkeSa, tasks: list[Task], now: float) -> None:
        """Initiator: the next IKE_AUTH request of an EAP exchange (RFC 7296
        §2.16), built by IkeAuth alone; ``tasks`` stay the active ones."""
        msg = self.new_message(sa, ExchangeType.IKE_AUTH, response=False, mid=sa.tm.my_mid)
        sa.eap.task.build(msg)
        self._start_request(sa, msg, tasks, now)

    def _restart_request(self, sa: IkeSa, now: float) -> None:
        """Re-send the active exchange rebuilt from its tasks (IKE_SA_INIT retry)."""
        act = sa.tm.active
        assert act is not None
        msg = self.new_message(sa, act.exchange_type, response=False, mid=act.mid)
        for t in act.tasks:
            t.build(msg)
        packets = self.encode(sa, msg)
        if act.exchange_type == ExchangeType.IKE_SA_INIT:
            sa.init_request = packets[0]
        sa.tm.restart(packets, now)
        self.transmit(packets)
        self._log_message(sa, msg, "sent", len(packets))

    # ================================================================== receiving

    def _find_sa(self, spi_i: bytes, spi_r: bytes, exchange: int, response: bool) -> IkeSa | None:
        for sa in (self.sa, *self.old_sas):
            if sa.state is _CLOSED:
                continue
            if sa.spi_i is None:
                # fresh responder: adopt the initiator's SPI from its IKE_SA_INIT
                if exchange == ExchangeType.IKE_SA_INIT and not response and spi_r == bytes(8):
                    sa.spi_i = spi_i
                    return sa
                continue
            if spi_i != sa.spi_i:
                continue
            if spi_r == sa.spi_r:
                return sa
            if exchange == ExchangeType.IKE_SA_INIT:
                if response and sa.initiator and sa.keys is None:
                    return sa
                if not response and not sa.initiator and spi_r == bytes(8):
                    return sa
        return None

    def _receive(self, data: bytes, addr: Address, now: float, dst: str | None = None) -> None:
        try:
            hdr = peek_header(data)
        except ParseError:
            self.stats.malformed += 1
            return
        if hdr.major_version != 2 or hdr.length != len(data):
            self.stats.malformed += 1
            return
        sa = self._find_sa(hdr.spi_i, hdr.spi_r, hdr.exchange_type, hdr.response)
        if sa is None:
            self.stats.unknown_spi += 1
            logger.debug("IKE message with unknown SPIs %s/%s from %s dropped", hdr.spi_i.hex(), hdr.spi_r.hex(), addr)
            return
        if hdr.initiator == sa.initiator:
            # the I flag names the peer's role; ours means a reflected message
            self.stats.malformed += 1
            return
        if hdr.response:
            self._on_response(sa, hdr, data, addr, now)
        else:
            self._on_request(sa, hdr, data, addr, now, dst)

    def _decode(self, sa: IkeSa, data: bytes, hdr: Any, *, fragment_mid_ok: bool) -> Message | None:
        """Decode (verify, decrypt, reassemble).  Returns None when the datagram
        was dropped or a fragment is still missing; raises NotifyError for an
        authenticated request that deserves an error answer."""
        try:
            if hdr.exchange_type == _IKE_SA_INIT:
                return decode_message(data, hdr=hdr)
            if sa.sk is None:
                self.stats.malformed += 1
                return None
            if hdr.next_payload == PayloadType.SKF:
                self.stats.fragments_received += 1
                if not fragment_mid_ok:
                    return None
                assert sa.reassembler is not None
                return sa.reassembler.add(data)
            return decode_message(data, sa.sk, hdr=hdr)
        except IntegrityError:
            self.stats.integrity_failed += 1
            logger.debug("integrity check failed on message from %s; dropped", self.peer)
            return None
        except ReassemblyLimitError:
            self.stats.malformed += 1
            return None
        except UnsupportedCriticalPayload:
            if hdr.response:
                self.stats.malformed += 1
                return None
            raise
        except MalformedMessage as exc:
            if not hdr.response and (getattr(exc, "authenticated", False) or hdr.exchange_type == ExchangeType.IKE_SA_INIT):
                raise InvalidSyntax(str(exc)) from None
            self.stats.malformed += 1
            return None
        except RemoteProtocolError:
            self.stats.malformed += 1
            return None

    def _is_first_fragment_of(self, sa: IkeSa, data: bytes) -> bool:
        """Verify one SKF datagram of a retransmitted request; True for fragment 1."""
        try:
            msg = decode_message(data)
            skf = msg.payloads[0] if msg.payloads else None
            if not isinstance(skf, SkfPayload) or sa.sk is None:
                return False
            sa.sk.open(data[: len(data) - len(skf.data)], skf.data)
        except (RemoteProtocolError, ValueError):
            return False
        return skf.fragment_number == 1

    def _on_request(self, sa: IkeSa, hdr: Any, data: bytes, addr: Address, now: float, dst: str | None = None) -> None:
        kind = sa.tm.classify_request(hdr.message_id)
        if hdr.exchange_type == _IKE_SA_INIT:
            if sa.keys is not None or kind != "new":
                if data == sa.last_init_request and sa.tm.last_response is not None:
                    self._resend_response(sa)
                else:
                    self.stats.invalid_mid += 1
                return
        elif kind == "retransmit":
            if hdr.next_payload == PayloadType.SKF:
                if self._is_first_fragment_of(sa, data):
                    self._resend_response(sa)
                return
            try:
                decode_message(data, sa.sk)
            except RemoteProtocolError:
                self.stats.integrity_failed += 1
                return
            self._resend_response(sa, addr if sa.mobike else None)
            return
        elif kind == "invalid":
            self.stats.invalid_mid += 1
            return
        try:
            msg = self._decode(sa, data, hdr, fragment_mid_ok=True)
        except NotifyError as exc:
            self._answer_error(sa, hdr, exc, now)
            return
        if msg is None:
            return
        reply_to: Address | None = None
        if msg.encrypted:
            sa.last_inbound = now
            if sa.mobike and sa.established:
                # RFC 4555: no implicit update; a path probe is answered where it came from
                reply_to = addr
            elif addr != self.remote_addr:
                self._peer_moved(sa, addr)
        else:
            sa.last_init_request = data
            sa.init_request = data
        sa.request_addr = addr
        if dst is not None:
            sa.request_dst = dst
        try:
            self._process_request(sa, msg, now, reply_to)
        finally:
            sa.request_addr = None
            if dst is not None:
                del sa.request_dst  # back to the class default

    def _peer_moved(self, sa: IkeSa, addr: Address) -> None:
        """An authenticated message of ``sa`` came from ``addr``.  While the IKE
        SA is being set up this is the float to 4500 (and the NAT's mapping
        of it).  Once established it is a changed NAT mapping (or a moved
        peer): RFC 7296 §2.23 -- a host that is not behind a NAT itself sends
        everything, ESP included, to the new address (PeerAddressChanged tells
        the data plane); a host behind a NAT does not update (a forged or
        replayed packet could otherwise redirect its traffic)."""
        if addr[1] == NATT_PORT and not self.nat_t:
            self.switch_to_natt()
        if addr == self.remote_addr:
            return
        old = self.remote_addr
        if sa.established:
            if sa.nat_local:
                self.stats.peer_moves_ignored += 1
                logger.info("peer %s: authenticated message from %s ignored for the address update (we are behind a NAT)",
                            self.peer, _peer_str(addr))
                return
            logger.info("peer %s now at %s (NAT mapping changed)", self.peer, _peer_str(addr))
            self.remote_addr = addr
            self.emit(PeerAddressChanged(_peer_str(addr), old, addr))
            return
        if logger.isEnabledFor(logging.INFO):  # the float to 4500 of every new IKE SA
            logger.info("peer %s now at %s", self.peer, _peer_str(addr))
        self.remote_addr = addr

    def mobike_moved(self, sa: IkeSa, addr: Address, natd: bool) -> None:
        """UPDATE_SA_ADDRESSES (RFC 4555 §3.5): the peer is at ``addr`` now,
        whether or not we are behind a NAT (it asked explicitly).  ``natd``:
        NAT detection was redone for the new path, and UDP encapsulation of
        the Child SAs follows it (on with a NAT, off without).
        :class:`PeerAddressChanged` (with ``encap``) tells the data plane."""
        old = self.remote_addr
        encap: bool | None = (sa.nat_local or sa.nat_remote) if natd else None
        if addr[1] == NATT_PORT or sa.nat_local or sa.nat_remote:
            self.switch_to_natt()  # MOBIKE runs on 4500 (RFC 4555 §3.3); remote_addr is set below
        switched = self._set_children_encap(encap)
        if addr == old and not switched:
            self.remote_addr = addr
            logger.info("MOBIKE update from %s: address and UDP encapsulation unchanged", self.peer)
            return
        self.remote_addr = addr
        logger.info("peer %s now at %s (MOBIKE update; UDP encapsulation %s)", _peer_str(old), _peer_str(addr),
                    "unchanged" if encap is None else ("on" if encap else "off"))
        self.emit(PeerAddressChanged(_peer_str(addr), old, addr, encap))

    def _resend_response(self, sa: IkeSa, to: Address | None = None) -> None:
        packets = sa.tm.cached_response()
        self.stats.responses_resent += 1
        self.transmit(packets, to)
        logger.debug("retransmitted response to %s for message %d", self.peer, sa.tm.last_response.mid if sa.tm.last_response else -1)

    def _answer_error(self, sa: IkeSa, hdr: Any, exc: NotifyError, now: float) -> None:
        """Answer a request we could not even decode (INVALID_SYNTAX,
        UNSUPPORTED_CRITICAL_PAYLOAD) with the matching notify."""
        resp = self.new_message(sa, hdr.exchange_type, response=True, mid=hdr.message_id)
        if hdr.exchange_type == ExchangeType.IKE_SA_INIT:
            resp.spi_r = bytes(8)
        resp.payloads = [NotifyPayload(exc.notify_type, exc.data)]
        packets = self.encode(sa, resp)
        self.transmit(packets)
        self.stats.errors_answered += 1
        self._log_message(sa, resp, "sent")
        if hdr.exchange_type in (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH):
            self.emit(
                NegotiationFailed(self.peer, _exchange_name(hdr.exchange_type), notify_name(exc.notify_type), str(exc))
            )
            self._close(f"{notify_name(exc.notify_type)} sent", now)
        else:
            sa.tm.responded(hdr.message_id, packets)

    def _passive_tasks(self, sa: IkeSa, msg: Message) -> list[Task]:
        ex = msg.exchange_type
        t = _TASKS or _load_tasks()
        if ex == _IKE_SA_INIT:
            return [t.IkeInit(self, sa, False), t.IkeNatd(self, sa, False)]
        if ex == ExchangeType.IKE_AUTH:
            return [t.IkeAuth(self, sa, False), t.IkeMobike(self, sa, False), t.IkeConfig(self, sa, False),
                    t.ChildCreate(self, sa, False, in_auth=True)]
        if ex == ExchangeType.CREATE_CHILD_SA:
            if msg.has_notify(NotifyType.REKEY_SA):
                return [t.ChildRekey(self, sa, False)]
            sa_payload = msg.get(SaPayload)
            if sa_payload is not None and any(p.protocol == ProtocolId.IKE for p in sa_payload.proposals):
                return [t.IkeRekey(self, sa, False)]
            return [t.ChildCreate(self, sa, False)]
        if ex == ExchangeType.INFORMATIONAL:
            tasks: list[Task] = []
            deletes = msg.get_all(DeletePayload)
            if any(d.protocol == ProtocolId.IKE for d in deletes):
                return [t.IkeDelete(self, sa, False)]
            if any(d.protocol in (ProtocolId.ESP, ProtocolId.AH) for d in deletes):
                tasks.append(t.ChildDelete(self, sa, False))
            if sa.mobike:
                tasks.append(t.IkeMobike(self, sa, False))
            if msg.has_notify(NotifyType.REDIRECT):
                from .tasks.ike_redirect import IkeRedirect

                tasks.append(IkeRedirect(self, sa, False))
            tasks.append(t.Informational(self, sa, False))
            return tasks
        raise UnsupportedExchange(f"exchange type {ex} not supported")

    def _process_request(self, sa: IkeSa, msg: Message, now: float, reply_to: Address | None = None) -> None:
        self._log_message(sa, msg, "received")
        error: NotifyError | None = None
        tasks: list[Task] = []
        failed = False
        resp: Message | None = None
        if msg.exchange_type == _IKE_AUTH:
            sa.auth_held = None  # this copy replaces a held one (and is held again if still pending)
        try:
            check_rules(msg)
            if sa.eap is not None and msg.exchange_type == _IKE_AUTH:
                tasks, failed = self._eap_round(sa, msg)
            else:
                tasks = self._passive_tasks(sa, msg)
                for t in tasks:
                    st = t.process(msg)
                    if st is _FAILED:
                        failed = True
                    elif st is _NEED_MORE:  # IkeAuth started EAP: the rest wait (RFC 7296 §2.16)
                        sa.eap.tasks, sa.eap.request = [x for x in tasks if x is not t], msg
                        tasks = [t]
                        break
            # the SPIs may have been set while processing (IKE_SA_INIT)
            resp = self.new_message(sa, msg.exchange_type, response=True, mid=msg.message_id)
            for t in tasks:
                t.build(resp)
        except RevocationPending as exc:
            # IKE_AUTH held for a certificate status being fetched: dropped as
            # if lost (no response, message ID not consumed); processed afresh
            # by retry_held once the fetcher is done, or on the peer's
            # retransmission (IkeAuth undid what it set)
            self.stats.auth_pending += 1
            sa.auth_held = (msg, sa.request_addr or self.remote_addr, exc.keys)
            return
        except NotifyError as exc:
            error = exc
            resp = self.new_message(sa, msg.exchange_type, response=True, mid=msg.message_id)
            resp.payloads = [NotifyPayload(exc.notify_type, exc.data)]
        except UnsupportedExchange:
            error = InvalidSyntax("unsupported exchange")
            resp = self.new_message(sa, msg.exchange_type, response=True, mid=msg.message_id)
            resp.payloads = [NotifyPayload(InvalidSyntax.notify_type)]
        assert resp is not None
        is_init = msg.exchange_type == _IKE_SA_INIT
        if is_init and error is not None:
            resp.spi_r = bytes(8)
        packets = self.encode(sa, resp)
        if is_init and error is None:
            sa.init_response = packets[0]
        if not (is_init and isinstance(error, InvalidKePayload)):
            sa.tm.responded(msg.message_id, packets)
        self.transmit(packets, reply_to)
        self._log_message(sa, resp, "sent", len(packets))
        if error is not None:
            self.stats.errors_answered += 1
            self._request_failed(sa, msg, error, now)
            return
        for t in tasks:
            t.after_response_sent(now)
        if failed and not self.is_closed:
            reason = next((getattr(t, "failure_reason", "") for t in tasks if getattr(t, "failure_reason", "")), "failed")
            self._close(reason, now)

    @staticmethod
    def _eap_round(sa: IkeSa, msg: Message) -> tuple[list[Task], bool]:
        """Responder: a later IKE_AUTH request of an EAP exchange.  IkeAuth
        processes it; once it verified the final AUTH, the exchange's other
        tasks process the first request (SA, TS, CP) and build into this
        response.  Returns (the tasks that build the response, failed)."""
        eap = sa.eap
        st = eap.task.process(msg)
        if st is not TaskStatus.SUCCESS:
            return [eap.task], st is TaskStatus.FAILED
        failed = False
        for t in eap.tasks:
            if t.process(eap.request) is TaskStatus.FAILED:
                failed = True
        return [eap.task, *eap.tasks], failed

    def _request_failed(self, sa: IkeSa, msg: Message, error: NotifyError, now: float) -> None:
        notify = notify_name(error.notify_type)
        ex = msg.exchange_type
        if ex == ExchangeType.IKE_SA_INIT:
            if isinstance(error, Redirect):  # redirect_init: not a failure
                logger.info("IKE_SA %s %s: redirecting %s to %s in IKE_SA_INIT", self.config.name, sa.spis(),
                            self.peer, error.gateway)
                self._close(f"peer redirected to {error.gateway}", now)
                return
            if isinstance(error, InvalidKePayload):
                self.step("INVALID_KE_PAYLOAD sent", sa, group=str(error.group))
                return
            self.emit(NegotiationFailed(self.peer, "IKE_SA_INIT", notify, str(error)))
            self._close(f"{notify} sent", now)
        elif ex == ExchangeType.IKE_AUTH:
            if isinstance(error, AuthenticationFailed):
                self.auth_failed(sa, "IKE_AUTH", str(error))
            else:
                self.emit(NegotiationFailed(self.peer, "IKE_AUTH", notify, str(error)))
            self._close("authentication failed" if isinstance(error, AuthenticationFailed) else f"{notify} sent", now)

    def auth_failed(self, sa: IkeSa, step: str, reason: str) -> None:
        """Log the AUTHENTICATION_FAILED line and emit :class:`AuthFailed`."""
        peer = self.peer_label(sa.remote_id)
        logger.warning("AUTHENTICATION_FAILED %s peer=%s %s: %s", step, peer, sa.spis(), reason)
        self.emit(AuthFailed(peer, step, reason))

    def _on_response(self, sa: IkeSa, hdr: Any, data: bytes, addr: Address, now: float) -> None:
        act = sa.tm.active
        if act is None or hdr.message_id != act.mid or hdr.exchange_type != act.exchange_type:
            self.stats.unexpected_response += 1
            return
        try:
            msg = self._decode(sa, data, hdr, fragment_mid_ok=True)
        except NotifyError:
            self.stats.malformed += 1
            return
        if msg is None:
            return
        if msg.encrypted:
            sa.last_inbound = now
            if sa.probes:
                self._probe_answered(sa, addr)
            elif addr != self.remote_addr and not (sa.mobike and sa.established):
                self._peer_moved(sa, addr)
        elif msg.exchange_type == ExchangeType.IKE_SA_INIT:
            sa.init_response = data
        self._log_message(sa, msg, "received")
        try:
            check_rules(msg)
        except InvalidSyntax as exc:
            self.stats.malformed += 1
            logger.info("invalid %s response from %s: %s", _exchange_name(msg.exchange_type), self.peer, exc)
            if msg.exchange_type in (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH):
                self.emit(NegotiationFailed(self.peer, _exchange_name(msg.exchange_type), "INVALID_SYNTAX", str(exc)))
                self._close("invalid response", now)
            return
        self._process_response(sa, act, msg, addr, now)

    def _process_response(self, sa: IkeSa, act: Any, msg: Message, addr: Address, now: float) -> None:
        """The tasks of the active exchange ``act`` process its response
        ``msg`` (decoded and checked; again from :meth:`retry_held`)."""
        if act.exchange_type == _IKE_AUTH:
            sa.auth_held = None  # this copy replaces a held one (and is held again if still pending)
        statuses: list[TaskStatus] = []
        order = act.tasks
        eap = sa.eap
        if eap is not None and act.exchange_type == _IKE_AUTH and not eap.final:
            order = [eap.task]  # an EAP round (RFC 7296 §2.16): the rest wait for the final response
        try:
            for t in order:
                statuses.append(t.process(msg))
        except ResponseDropped:
            return  # consumed by a task (an ignored or followed REDIRECT)
        except RevocationPending as exc:
            # the responder's certificate status is being fetched: the response
            # is ignored (the exchange stays active), processed again by
            # retry_held once the fetcher is done, or our retransmission brings it again
            self.stats.auth_pending += 1
            sa.auth_held = (msg, addr, exc.keys)
            return
        except NotifyError as exc:
            self._response_failed(sa, msg, exc, now)
            return
        if sa.tm.active is not act:
            return  # a task closed or retired this SA
        if _RETRY in statuses:
            self._restart_request(sa, now)
            return
        sa.tm.complete()
        if _NEED_MORE in statuses:
            self._eap_request(sa, act.tasks, now)
            return
        for t, st in zip(order, statuses):
            if st is _REQUEUE:
                sa.tm.queue(t, first=True)
        if _FAILED in statuses and not self.is_closed:
            reason = next(
                (getattr(t, "failure_reason", "") for t, st in zip(order, statuses) if st is _FAILED),
                "",
            )
            self._close(reason or "failed", now)

    def _response_failed(self, sa: IkeSa, msg: Message, error: NotifyError, now: float) -> None:
        """A task found the peer's response unacceptable (initiator side)."""
        if sa.tm.active is not None:
            sa.tm.complete()
        notify = notify_name(error.notify_type)
        if msg.exchange_type == ExchangeType.IKE_AUTH and isinstance(error, AuthenticationFailed):
            self.auth_failed(sa, "IKE_AUTH", str(error))
            # RFC 7296 §2.21.2: tell the peer in a separate INFORMATIONAL, then go
            info = self.new_message(sa, ExchangeType.INFORMATIONAL, response=False, mid=sa.tm.my_mid)
            info.payloads = [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)]
            self.send_one_shot(sa, info)
            self._close("authentication failed", now)
            return
        if msg.exchange_type in (ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH):
            self.emit(NegotiationFailed(self.peer, _exchange_name(msg.exchange_type), notify, str(error)))
            self._close(f"{notify}: {error}", now)
            return
        logger.info("%s response from %s rejected: %s", _exchange_name(msg.exchange_type), self.peer, error)

    # ================================================================== IKE SA life

    def ike_established(self, sa: IkeSa, now: float, rekeyed_from: bytes | None = None) -> None:
        """Mark ``sa`` established: lifetimes, DPD clock, event."""
        sa.state = IkeState.ESTABLISHED
        sa.established_at = now
        sa.last_inbound = now
        cfg = self.config
        sa.rekey_at = now + cfg.rekey_time - self.jitter(cfg.jitter) if cfg.rekey_time > 0 else _INF
        old = next((o for o in self.old_sas if o.spi_i == rekeyed_from), None) if rekeyed_from else None
        held = old.redirect_held if old is not None else None
        if old is not None:
            # charon: the reauthentication time survives an IKE rekey (the held one while a redirect is pending)
            sa.reauth_at = held[0] if held is not None else old.reauth_at
            sa.reauth_by = old.reauth_by
        elif cfg.reauth_time > 0 and self.is_initiator:
            # only the connection's initiator reauthenticates (a gateway has no address to start from)
            sa.reauth_at = now + cfg.reauth_time - self.jitter(cfg.jitter)
        # hard lifetime: over_time past the earlier of rekey and reauthentication (charon)
        soft = min(now + cfg.rekey_time if cfg.rekey_time > 0 else _INF, sa.reauth_at)
        sa.expire_at = min(soft + cfg.over if soft != _INF else _INF, sa.reauth_by)
        if held is not None:
            # the peer rekeyed while its REDIRECT is pending (redirect_received): still replaced
            # soon, so suspended on the new IKE SA too, for redirect_not_followed to put back
            sa.hold_for_redirect()
        sa.rekeyed_from = rekeyed_from
        self.emit(
            IkeSaEstablished(
                spi_i=sa.spi_i or bytes(8),
                spi_r=sa.spi_r,
                version=2,
                initiator=sa.initiator,
                local_addr=self.local_addr,
                remote_addr=self.remote_addr,
                local_id=str(sa.local_id) if sa.local_id else "",
                remote_id=str(sa.remote_id) if sa.remote_id else "",
                algorithms=str(sa.proposal) if sa.proposal else "",
                nat_local=sa.nat_local,
                nat_remote=sa.nat_remote,
                rekeyed_from=rekeyed_from,
                local_vips=tuple(self.local_vips),
                remote_vips=tuple(self.remote_vips),
                dns=tuple(self.dns_servers),
                nbns=tuple(self.nbns_servers),
                remote_subnets=tuple(self.remote_subnets),
                local_eap_id=sa.local_eap_id,
                remote_eap_id=sa.remote_eap_id,
                local_round2_id=sa.local_round2_id,
                remote_round2_id=sa.remote_round2_id,
            )
        )
        if logger.isEnabledFor(logging.INFO):  # spis() formats both SPIs
            logger.info(
                "IKE_SA %s established %s %s[%s]...%s[%s] %s",
                self.config.name,
                sa.spis(),
                self.local_addr[0],
                sa.local_id,
                self.remote_addr[0],
                sa.remote_id,
                sa.proposal,
            )

    def unique_id(self) -> tuple[str, str, str] | None:
        """(connection, our identity, the peer's) of the IKE SA, what the
        uniqueness policy compares (strongSwan: my ID and the other's EAP
        identity, ``get_other_eap_id``): the EAP identity the peer
        authenticated with on a gateway (``eap:alice``: road warriors sharing
        one IDi are not duplicates, one EAP user from two IKE identities is),
        else the IDi of its second certificate/PSK round (RFC 4739: the same
        machine certificate with two users' certificates is two peers), else
        its IDi/IDr.  None before the peer's identity is known or once closed."""
        sa = self.sa
        if sa.remote_id is None or self.is_closed:
            return None
        local = sa.local_id if sa.local_id is not None else self.local_identity()
        # peer_auth_id's order (EAP identity, round-2 IDi, IDi); an EAP one marked as such
        remote = f"eap:{sa.remote_eap_id}" if sa.remote_eap_id is not None else sa.peer_auth_id()
        assert remote is not None  # remote_id is known here
        return self.config.name, str(local), remote

    def unique_duplicates(self, others: Iterable[Any], initial_contact: bool) -> tuple[bool, list[IkeSessionV2]]:
        """swanctl ``unique`` for this IKE SA, authenticated in IKE_AUTH (not
        yet answered), against ``others`` (the endpoint's sessions): (refuse,
        the established IKE SAs of the same connection and identities to
        replace).  ``no``: replace them only if the peer sent INITIAL_CONTACT;
        ``never``: never; ``replace``: always; ``keep``: refuse this one
        while one is up, unless INITIAL_CONTACT says the peer lost it (then
        replace, as charon)."""
        policy = self.config.unique
        if policy == "never" or (policy == "no" and not initial_contact):
            return False, []
        mine = self.unique_id()
        if mine is None:
            return False, []
        dups = [
            o for o in others
            if o is not self and isinstance(o, IkeSessionV2) and o.sa.established and o.unique_id() == mine
        ]
        if dups and policy == "keep" and not initial_contact:
            return True, []
        return False, dups

    def replaced_by(self, new: IkeSessionV2, now: float, initial_contact: bool) -> None:
        """``new`` (the same connection and identities) replaces this IKE SA
        under the uniqueness policy: tell our peer address with a Delete
        (sent once: a peer that restarted does not know these SPIs any more)
        and close now with every Child SA, before ``new``'s Child SAs need
        their selectors.  Its virtual IP leases go offline only if ``new``
        does not hold them (a lease counts its IKE SAs, :mod:`.pools`)."""
        self.now = now
        if self.is_closed:
            return
        sa = self.sa
        why = "INITIAL_CONTACT" if initial_contact else f"unique = {new.config.unique}"
        logger.info("IKE_SA %s %s with %s and its %d Child SA(s) replaced: peer '%s' established IKE SA %s from %s "
                    "(%s)", self.config.name, sa.spis(), self.peer, len(self.child_sas),
                    f"{sa.remote_id}' EAP '{sa.remote_eap_id}" if sa.remote_eap_id is not None else
                    sa.remote_id if sa.remote_round2_id is None else f"{sa.remote_id}' round 2 '{sa.remote_round2_id}",
                    new.sa.spis(), new.peer, why)
        if sa.established and sa.sk is not None:
            self.send_ike_delete(sa)
        self._close(f"replaced by a new IKE SA with {new.peer} ({why})", now)

    def replace_sa(self, new: IkeSa, now: float) -> None:
        """Make ``new`` the current IKE SA (IKE rekey); the old one stays in
        :attr:`old_sas` until its delete completes.  Queued tasks move over."""
        old = self.sa
        if new is old:
            return
        if old not in self.old_sas:
            self.old_sas.append(old)
        if new in self.old_sas:
            self.old_sas.remove(new)
        self.sa = new
        for t in old.tm.queued:
            if not _sa_bound(t):
                t.migrate(new)
                new.tm.queue(t)
        old.tm.queued = [t for t in old.tm.queued if _sa_bound(t)]

    def retire_sa(self, sa: IkeSa, reason: str) -> None:
        """An old (rekeyed or redundant) IKE SA is gone."""
        if sa.state is IkeState.CLOSED:
            return
        sa.state = IkeState.CLOSED
        if sa in self.old_sas:
            self.old_sas.remove(sa)
        act = sa.tm.abandon()
        if act is not None:
            for t in act.tasks:
                t.abort(reason)
        for t in sa.tm.queued:
            t.abort(reason)
        sa.tm.queued = []
        self.emit(IkeSaDeleted(sa.spi_i or bytes(8), sa.spi_r, reason))
        logger.info("IKE_SA %s %s deleted: %s", self.config.name, sa.spis(), reason)

    def _close(self, reason: str, now: float) -> None:
        """Tear everything down (no message is sent here)."""
        if self.is_closed:
            return
        self.closed_reason = reason
        for c in list(self.children.values()):
            if c.state is not ChildState.DELETED:
                self.remove_child(c, "ike sa deleted")
        for old in list(self.old_sas):
            self.retire_sa(old, reason)
        sa = self.sa
        act = sa.tm.abandon()
        if act is not None:
            for t in act.tasks:
                t.abort(reason)
        for t in sa.tm.queued:
            t.abort(reason)
        sa.tm.queued = []
        sa.state = IkeState.CLOSED
        self._deferred.clear()
        self._release_leases()
        self.emit(IkeSaDeleted(sa.spi_i or bytes(8), sa.spi_r, reason))
        logger.info("IKE_SA %s %s closed: %s", self.config.name, sa.spis(), reason)

    close = _close

    # ================================================================== Child SA life

    def add_child(self, child: ChildSa, now: float, *, outbound: bool = True) -> None:
        """Register a negotiated Child SA and emit ChildSaInstalled.
        ``outbound=False``: the data plane must not send into it (redundant
        SA of a lost rekey collision)."""
        cfg = child.config
        self.children[child.spi_in] = child
        self.pending_acquires.discard(child.name)
        if cfg.rekey_time > 0:
            child.rekey_at = now + cfg.rekey_time - self.jitter(cfg.jitter)
            child.expire_at = now + cfg.hard_lifetime
        encr_in, encr_out, integ_in, integ_out = child.keys
        p = child.proposal
        self.emit(
            ChildSaInstalled(
                name=child.name,
                protocol=child.protocol,
                mode=child.mode,
                spi_in=child.spi_in,
                spi_out=child.spi_out,
                encr=p.encr,
                integ=p.integ,
                encr_key_in=encr_in,
                encr_key_out=encr_out,
                integ_key_in=integ_in,
                integ_key_out=integ_out,
                esn=p.esn_enabled,
                local_ts=child.local_ts,
                remote_ts=child.remote_ts,
                local_addr=self.local_addr,
                remote_addr=self.remote_addr,
                encap=child.encap,
                initiator=child.initiator,
                replay_window=cfg.replay_window,
                lifetime_soft=(child.rekey_at - now) if child.rekey_at != _INF else None,
                lifetime_hard=(child.expire_at - now) if child.expire_at != _INF else None,
                life_bytes=cfg.life_bytes or None,
                life_packets=cfg.life_packets or None,
                rekeyed_from=child.rekeyed_from,
                ike_spi_i=self.spi_i,
                unique_id=child.unique_id,
                algorithms=str(p),
                outbound=outbound,
            )
        )
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "CHILD_SA %s{%d} established with SPIs %08x_i %08x_o and TS %s === %s%s",
                child.name,
                child.unique_id,
                child.spi_in,
                child.spi_out,
                ", ".join(map(str, child.local_ts)),
                ", ".join(map(str, child.remote_ts)),
                f" (rekeyed {child.rekeyed_from:08x})" if child.rekeyed_from is not None else "",
            )

    def remove_child(self, child: ChildSa, reason: str) -> None:
        if child.state is ChildState.DELETED:
            return
        child.state = ChildState.DELETED
        self.children.pop(child.spi_in, None)
        self.emit(ChildSaDeleted(child.name, child.spi_in, child.spi_out, reason))
        logger.info("CHILD_SA %s{%d} %08x_i %08x_o deleted: %s", child.name, child.unique_id, child.spi_in, child.spi_out, reason)

    def child_by_spi_out(self, spi: int) -> ChildSa | None:
        return next((c for c in self.children.values() if c.spi_out == spi), None)

    def _queue_child_rekey(self, child: ChildSa, now: float) -> None:
        from .tasks import ChildRekey

        if child.state is not ChildState.INSTALLED:
            return
        if any(isinstance(t, ChildRekey) and t.old is child for t in self.all_tasks()):
            return
        child.rekey_at = _INF
        self.sa.tm.queue(ChildRekey(self, self.sa, True, old=child))
        self._kick(now)

    def queue_child_delete(self, child: ChildSa, reason: str, now: float) -> None:
        from .tasks import ChildDelete

        if any(isinstance(t, ChildDelete) and child in t.children for t in self.all_tasks()):
            return
        self.sa.tm.queue(ChildDelete(self, self.sa, True, children=[child], reason=reason))
        self._kick(now)

    def queue_raw_child_delete(self, protocol: str, spis: list[int]) -> None:
        """Delete SAs the peer installed but we did not (failed creation)."""
        from .tasks import ChildDelete

        self.sa.tm.queue(ChildDelete(self, self.sa, True, raw=(protocol, spis), reason="creation failed"))

    def _queue_ike_rekey(self, now: float) -> None:
        from .tasks import IkeRekey

        if self.sa.tm.is_active(IkeRekey) or self.sa.tm.has_queued(IkeRekey):
            return
        self.sa.rekey_at = _INF
        self.sa.tm.queue(IkeRekey(self, self.sa, True))
        self._kick(now)

    def _expire_child(self, child: ChildSa, now: float) -> None:
        """Hard lifetime: the SA must not be used any more; tell the peer."""
        self.queue_child_delete(child, "expired", now)
        self.remove_child(child, "expired")

    def all_tasks(self) -> list[Task]:
        out: list[Task] = []
        for sa in (self.sa, *self.old_sas):
            out += sa.tm.queued
            if sa.tm.active is not None:
                out += sa.tm.active.tasks
        return out

    def defer(self, at: float, action: Callable[[float], None]) -> None:
        self._deferred.append((at, action))

    def retry_delay(self) -> float:
        lo, hi = RETRY_DELAY
        return lo + (hi - lo) * random_fraction(self.random)

    # ================================================================== timers

    def _handle_timer(self, now: float) -> None:
        from .tasks import IkeDpd, IkeMobike

        for sa in (self.sa, *self.old_sas):
            if sa.state is IkeState.CLOSED:
                continue
            what, packets = sa.tm.on_timer(now)
            if what == "retransmit":
                self.stats.retransmits += 1
                act = sa.tm.active
                assert act is not None
                self.transmit(packets)
                self.step(
                    f"{_exchange_name(act.exchange_type)} retransmit",
                    sa,
                    mid=str(act.mid),
                    attempt=str(act.attempt),
                )
            elif what == "give-up":
                if self._probe_paths(sa, now):
                    continue
                self._exchange_timeout(sa, now)
                if self.is_closed:
                    return
        sa = self.sa
        if not sa.established:
            if not self.is_initiator and sa.state is IkeState.CONNECTING and now >= sa.created_at + HALF_OPEN_TIMEOUT:
                self.emit(NegotiationFailed(self.peer, "IKE_AUTH", "TIMEOUT", "half-open IKE SA timed out"))
                self._close("half-open timeout", now)
            return
        # deferred retries
        due = [(t, a) for t, a in self._deferred if t <= now]
        if due:
            self._deferred = [(t, a) for t, a in self._deferred if t > now]
            for _, action in due:
                action(now)
        # IKE SA lifetime
        if now >= sa.expire_at:
            self._ike_hard_expire(now)
            return
        if now >= sa.reauth_at:
            self.reauthenticate(now)
        elif now >= sa.rekey_at:
            self._queue_ike_rekey(now)
        # Child SA lifetimes
        for child in list(self.children.values()):
            if child.state is ChildState.DELETED:
                continue
            if now >= child.expire_at:
                self._expire_child(child, now)
            elif now >= child.rekey_at and child.state is ChildState.INSTALLED:
                self._queue_child_rekey(child, now)
        # liveness
        if (
            self.config.dpd_delay > 0
            and now >= sa.last_inbound + self.config.dpd_delay
            and sa.tm.active is None
            and not sa.tm.queued
        ):
            if sa.mobike and self.is_initiator and sa.nat_local:
                # strongSwan's MOBIKE DPD: NAT-D shows whether our NAT's mapping changed
                sa.tm.queue(IkeMobike(self, sa, True, check=True))
            else:
                sa.tm.queue(IkeDpd(self, sa, True))
        elif self.config.dpd_delay > 0 and now >= sa.last_inbound + self.config.dpd_delay:
            # something is queued or outstanding; its response will count as liveness
            sa.last_inbound = now

    def _ike_hard_expire(self, now: float) -> None:
        sa = self.sa
        if now >= sa.reauth_by:
            logger.info("IKE_SA %s %s with %s: not reauthenticated within its AUTH_LIFETIME (RFC 4478), closing",
                        self.config.name, sa.spis(), self.peer_label(sa.remote_id))
        self.send_ike_delete(sa)
        self._close("expired", now)

    def _probe_paths(self, sa: IkeSa, now: float) -> bool:
        """The current path failed (a liveness request of ours, a DPD or a
        MOBIKE update, got no answer after all its retransmits): with MOBIKE
        and a peer that announced other addresses, resend that request to
        every path (its current address and the other ones of our family),
        at most :data:`PROBE_ROUNDS` times every :data:`PROBE_INTERVAL` s, as
        charon's path probing; the first path that answers is taken
        (:meth:`_probe_answered`).  Whether a round was sent."""
        act = sa.tm.active
        if (act is None or sa is not self.sa or not sa.established or not sa.mobike or not self.is_initiator
                or not sa.peer_addrs or not _liveness_exchange(act)):
            return False
        if sa.probes >= PROBE_ROUNDS:
            logger.info("peer %s: no path answered after %d probe rounds", self.peer, sa.probes)
            return False
        paths = self._probe_targets(sa)
        if sa.probes == 0:
            logger.info("path to %s failed; probing %s", self.peer, ", ".join(_peer_str(p) for p in paths))
        sa.probes += 1
        act.deadline = now + PROBE_INTERVAL
        for dst in paths:
            self.transmit(act.packets, dst)
        self.step("MOBIKE path probe", sa, mid=str(act.mid), round=str(sa.probes), paths=str(len(paths)))
        return True

    def _probe_targets(self, sa: IkeSa) -> list[Address]:
        """The peer's current address and its additional ones of our
        address family, on the port it uses now (MOBIKE runs on 4500)."""
        v6 = ":" in self.local_addr[0]
        port = self.remote_addr[1]
        return [self.remote_addr] + [(a, port) for a in sa.peer_addrs if (":" in a) is v6]

    def _probe_answered(self, sa: IkeSa, addr: Address) -> None:
        """A response while probing: the path to ``addr`` works.  If that is
        another address of the peer, move there (the Child SAs follow,
        :class:`PeerAddressChanged`) and tell the peer with UPDATE_SA_ADDRESSES
        (RFC 4555 §3.5: the initiator decides the address pair)."""
        rounds, sa.probes = sa.probes, 0
        if addr == self.remote_addr or addr not in self._probe_targets(sa):
            return
        logger.info("peer %s answered the path probe (round %d) at %s; moving there", self.peer, rounds,
                    _peer_str(addr))
        self.mobike_moved(sa, addr, natd=False)
        self.queue_roam(self.local_addr)

    def _exchange_timeout(self, sa: IkeSa, now: float) -> None:
        act = sa.tm.abandon()
        if sa is not self.sa:
            self.retire_sa(sa, "retransmits exhausted")
            return
        exchange = _exchange_name(act.exchange_type) if act else "?"
        logger.info("giving up on %s with %s after %d retransmits", exchange, self.peer, self.retransmit_policy.tries)
        if act is not None and _liveness_exchange(act):
            # a liveness check, or a MOBIKE update / NAT check of ours: the peer is gone
            self.emit(DpdTimeout(self.peer))
            self._close("dead peer", now)
            return
        if not sa.established:
            self.emit(NegotiationFailed(self.peer, exchange, "TIMEOUT", "no response"))
        self._close("retransmits exhausted", now)


class UnsupportedExchange(RemoteProtocolError):
    """An exchange type we do not implement (answered with INVALID_SYNTAX)."""


def _liveness_exchange(act: ActiveExchange) -> bool:
    """``act`` is a DPD or a liveness task (a MOBIKE update / NAT check of
    ours): no answer to it means the path, or the peer, is dead."""
    t = _TASKS or _load_tasks()
    return any(isinstance(task, t.IkeDpd) or getattr(task, "liveness", False) for task in act.tasks)


def _sa_bound(task: Task) -> bool:
    """Tasks that must stay on their IKE SA (deleting that very SA)."""
    return bool(getattr(task, "sa_bound", False))
