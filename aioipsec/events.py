"""Events emitted by the sans-I/O sessions and the data plane.

Every event is a frozen, slotted dataclass.  The control plane talks to the
data plane only through these (``ChildSaInstalled`` / ``ChildSaDeleted``),
the shape of strongSwan's ``kernel_ipsec`` interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._frozen import fast_init
from .crypto.transforms import EncrAlg, IntegAlg
from .selectors import Address, TrafficSelector


class IpsecEvent:
    """Base class of all events."""

    __slots__ = ()


@fast_init
@dataclass(frozen=True, slots=True)
class IkeSaEstablished(IpsecEvent):
    spi_i: bytes
    """Initiator's IKE SPI (8 bytes; IKEv1: initiator cookie)."""
    spi_r: bytes
    """Responder's IKE SPI (8 bytes; IKEv1: responder cookie)."""
    version: int
    """2 for IKEv2, 1 for IKEv1."""
    initiator: bool
    """True when this side initiated the IKE SA."""
    local_addr: Address
    remote_addr: Address
    local_id: str
    remote_id: str
    algorithms: str
    """Negotiated IKE proposal in strongSwan syntax, e.g. ``aes128gcm16-prfsha256-x25519``."""
    nat_local: bool = False
    """True when this side is behind a NAT (NAT-D mismatch for our address)."""
    nat_remote: bool = False
    """True when the peer is behind a NAT."""
    rekeyed_from: bytes | None = None
    """For an IKE rekey: the old SA's initiator SPI, else None."""
    local_vips: tuple[str, ...] = ()
    """Virtual IPs the peer assigned to us (IKEv2 CFG_REPLY), as strongSwan's
    ``local-vips``; they are the local selectors of dynamic children."""
    remote_vips: tuple[str, ...] = ()
    """Virtual IPs we leased to the peer from a pool (``remote-vips``)."""
    dns: tuple[str, ...] = ()
    """DNS servers the peer sent with our virtual IP (INTERNAL_IP4/6_DNS)."""
    nbns: tuple[str, ...] = ()
    """NBNS (WINS) servers the peer sent with our virtual IP (INTERNAL_IP4/6_NBNS)."""
    remote_subnets: tuple[str, ...] = ()
    """Networks the peer said are reachable through it (IKEv2 INTERNAL_IP4/6_SUBNET,
    RFC 7296 §3.15.2; IKEv1 the same or Cisco Unity UNITY_SPLIT_INCLUDE), e.g. ``10.1.0.0/16``."""
    local_eap_id: str | None = None
    """IKEv2 EAP client: the EAP identity we authenticated with (None: no EAP)."""
    remote_eap_id: str | None = None
    """IKEv2 EAP gateway: the EAP identity the peer authenticated with, which
    strongSwan uses instead of its IDi (uniqueness, pool leases, ``PLUTO_XAUTH_ID``,
    swanctl's ``remote-eap-id``); None without EAP.  Never a password."""
    local_round2_id: str | None = None
    """IKEv2 client with a second certificate or PSK round (RFC 4739,
    ``local-2 auth = pubkey | psk``): the IDi of that round; else None."""
    remote_round2_id: str | None = None
    """IKEv2 gateway: the peer's IDi of its second certificate or PSK round
    (``remote-2 auth = pubkey | psk``); else None."""
    local_xauth_id: str | None = None
    """IKEv1 XAUTH client: the user name we passed XAUTH with (swanctl's
    ``local-xauth-id``); None without XAUTH."""
    remote_xauth_id: str | None = None
    """IKEv1 XAUTH gateway: the user name the peer passed XAUTH with, which
    stands for the peer instead of its Phase 1 identity (uniqueness, pool
    leases, ``PLUTO_XAUTH_ID``; swanctl's ``remote-xauth-id``); None without XAUTH."""


@fast_init
@dataclass(frozen=True, slots=True)
class IkeSaDeleted(IpsecEvent):
    spi_i: bytes
    """Initiator's IKE SPI of the deleted SA."""
    spi_r: bytes
    reason: str
    """Why: ``deleted by peer``, ``deleted locally``, ``rekeyed``, ``dead peer``, ``expired``,
    ``retransmits exhausted``, ``authentication failed``, ..."""


@fast_init
@dataclass(frozen=True, slots=True)
class AuthFailed(IpsecEvent):
    peer: str
    """Peer address and identity, e.g. ``192.0.2.2[hq.example]``."""
    step: str
    """Where it failed (``IKE_AUTH``, ``MM5``, ``MM6``, ...)."""
    reason: str
    """Human-readable reason."""


@fast_init
@dataclass(frozen=True, slots=True)
class NegotiationFailed(IpsecEvent):
    peer: str
    """Peer address."""
    exchange: str
    """Exchange that failed (``IKE_SA_INIT``, ``CREATE_CHILD_SA``, ``QM``, ...)."""
    notify: str
    """Notify received or sent (``NO_PROPOSAL_CHOSEN``, ``TS_UNACCEPTABLE``, ...), or ``TIMEOUT``."""
    reason: str = ""
    """Free text."""


@fast_init
@dataclass(frozen=True, slots=True)
class ChildSaInstalled(IpsecEvent):
    """Everything the data plane needs to build both directions of a Child SA."""

    name: str
    """Child configuration name."""
    protocol: str
    """``esp`` or ``ah``."""
    mode: str
    """``tunnel`` or ``transport``."""
    spi_in: int
    """SPI of the inbound SA (chosen by us)."""
    spi_out: int
    """SPI of the outbound SA (chosen by the peer)."""
    encr: EncrAlg | None
    """Encryption algorithm (None for AH)."""
    integ: IntegAlg | None
    """Integrity algorithm (None for AEAD)."""
    encr_key_in: bytes = field(repr=False)
    """Inbound encryption key material (key + salt)."""
    encr_key_out: bytes = field(repr=False)
    integ_key_in: bytes = field(repr=False)
    integ_key_out: bytes = field(repr=False)
    esn: bool
    """Extended sequence numbers negotiated."""
    local_ts: tuple[TrafficSelector, ...]
    """Negotiated local traffic selectors."""
    remote_ts: tuple[TrafficSelector, ...]
    local_addr: Address
    """Outer local address and port (port 4500 when encapsulated)."""
    remote_addr: Address
    encap: bool
    """UDP encapsulation (RFC 3948) in use."""
    initiator: bool
    """True if this side initiated the exchange that created the SA."""
    replay_window: int = 64
    lifetime_soft: float | None = None
    """Seconds until rekey (relative), None = never."""
    lifetime_hard: float | None = None
    """Seconds until hard expiry (relative)."""
    life_bytes: int | None = None
    life_packets: int | None = None
    rekeyed_from: int | None = None
    """spi_in of the SA this one replaces (Child rekey), else None."""
    ike_spi_i: bytes = b""
    """The IKE SA that owns this Child SA."""
    unique_id: int = 0
    """Local identifier, stable across the SA's life."""
    algorithms: str = ""
    """Negotiated ESP/AH proposal in strongSwan syntax."""
    outbound: bool = True
    """Route outbound traffic into this SA now.  False for the redundant SA
    of a lost rekey collision (RFC 7296 §2.8.1): only its inbound half is
    used until its delete completes, so no packet is sent into an SA the
    peer is about to remove."""


@fast_init
@dataclass(frozen=True, slots=True)
class ChildSaDeleted(IpsecEvent):
    name: str
    spi_in: int
    spi_out: int
    reason: str
    """``deleted by peer``, ``deleted locally``, ``rekeyed``, ``expired``, ``ike sa deleted``."""


@fast_init
@dataclass(frozen=True, slots=True)
class ChildSaExpired(IpsecEvent):
    """Raised by the data plane: an SA hit a byte/packet limit or ran out of
    sequence numbers; the control plane should rekey (soft) or delete (hard)."""

    spi: int
    """SPI of the SA (the outbound SPI for sequence exhaustion)."""
    hard: bool
    reason: str
    """``seq-exhausted``, ``bytes`` or ``packets``."""


@fast_init
@dataclass(frozen=True, slots=True)
class DpdTimeout(IpsecEvent):
    """The peer did not answer liveness checks; its IKE SA is being deleted."""

    peer: str


@fast_init
@dataclass(frozen=True, slots=True)
class PeerAddressChanged(IpsecEvent):
    """An authenticated IKE message of an established IKE SA came from a new
    address or port: the peer's NAT mapping changed (or it moved).  IKE
    answers already go there; the Child SAs' ESP must follow (RFC 7296
    §2.23: a host that is not itself behind a NAT updates the address of the
    SA; one behind a NAT does not, and emits nothing).  With MOBIKE only an
    UPDATE_SA_ADDRESSES request moves the peer (RFC 4555 §3.5), behind a NAT
    too, and may switch UDP encapsulation (``encap``)."""

    peer: str
    old_addr: Address
    new_addr: Address
    encap: bool | None = None
    """MOBIKE (RFC 4555 §3.5): whether the Child SAs' ESP is UDP-encapsulated
    from now on (NAT detection redone for the new path); None: unchanged."""


@fast_init
@dataclass(frozen=True, slots=True)
class LocalAddressChanged(IpsecEvent):
    """Our own address moved (a roaming MOBIKE initiator, RFC 4555 §3.5): the
    peer answered our UPDATE_SA_ADDRESSES sent from ``new_addr``.  The IKE SA
    already uses it; the Child SAs' ESP must leave from it too, UDP-
    encapsulated or not as ``encap`` says (NAT detection redone for the new
    path; None: unchanged)."""

    peer: str
    old_addr: Address
    new_addr: Address
    encap: bool | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class ExchangeStep(IpsecEvent):
    """One line of the protocol story: ``IKE_SA_INIT sent``, ``MM3 received``.
    Also logged; the event lets a demo or UI show progress."""

    text: str
    peer: str = ""
    details: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Read-only; for an IKEv2 message (SPIs, kind, mid, payloads) built when first read."""


@fast_init
@dataclass(frozen=True, slots=True)
class KeyingRetry(IpsecEvent):
    """An IKE SA we initiated was not established and the peer did not
    answer (its retransmissions ran out): the next attempt of the connection
    starts now (swanctl ``keyingtries``; charon's "peer not responding,
    trying again")."""

    connection: str
    peer: str
    """The address the attempts go to."""
    attempt: int
    """The attempt starting now: 2, 3, ..."""
    tries: int
    """``keyingtries``: the attempts allowed, 0 = until established."""


@fast_init
@dataclass(frozen=True, slots=True)
class KeyingFailed(IpsecEvent):
    """The connection's initiation ended without an IKE SA: its
    ``keyingtries`` attempts went unanswered, or an attempt failed with a
    permanent error (authentication, no proposal chosen, an error notify),
    which is never retried."""

    connection: str
    peer: str
    attempts: int
    """Attempts made."""
    tries: int
    """``keyingtries`` (0 = until established)."""
    reason: str
    """``peer not responding``, or the permanent error."""


@fast_init
@dataclass(frozen=True, slots=True)
class ReauthRequired(IpsecEvent):
    """IKEv2 reauthentication is due on the initiator of a connection with
    ``reauth_time`` (or was asked for): whoever drives the session (the
    endpoint) establishes a new IKE SA with the same configuration, without
    INITIAL_CONTACT, the Child SAs ``children`` and the virtual IPs
    ``local_vips`` requested again, then deletes this one (make-before-break)."""

    spi_i: bytes
    spi_r: bytes
    children: tuple[str, ...]
    """Child configurations of the Child SAs in use (to create again)."""
    local_vips: tuple[str, ...] = ()
    """Virtual IPs the peer assigned to us (to ask for again)."""


@fast_init
@dataclass(frozen=True, slots=True)
class IkeRedirected(IpsecEvent):
    """The gateway redirected us (RFC 5685): in its IKE_SA_INIT or IKE_AUTH
    response (this IKE SA is closed, reason ``redirected to X by Y``) or in
    an INFORMATIONAL on the established IKE SA (it stays until the owner
    deletes it).  Whoever drives the session (the endpoint) sets the
    connection up again toward ``gateway`` with the Child SAs ``children``,
    telling the new session ``peer`` (REDIRECTED_FROM) and ``redirects``
    (loop protection), then deletes an established old IKE SA once the new
    one is up."""

    connection: str
    peer: str
    """The gateway that redirected us (its address, with its identity once known)."""
    gateway: str
    """The address to go to."""
    exchange: str
    """``IKE_SA_INIT``, ``IKE_AUTH`` or ``INFORMATIONAL``."""
    spi_i: bytes
    spi_r: bytes
    children: tuple[str, ...] = ()
    """Child configurations to negotiate with the new gateway."""
    redirects: tuple[float, ...] = ()
    """When the redirects of this connection within the loop-detection period
    happened, this one last (session time; give it to the next session)."""
    from_addr: str = ""
    """The address of the gateway that redirected us (REDIRECTED_FROM)."""
