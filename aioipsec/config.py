"""Configuration: plain dataclasses for embedders, loaded from swanctl-style TOML
by :func:`load_config` (see ``aioipsec.config_file``).

Names follow strongSwan's swanctl.conf so operators recognise them.  Durations
are seconds (floats); the TOML loader also accepts ``"30s"``, ``"4h"``.
Proposals are already parsed (:class:`~aioipsec.crypto.transforms.Proposal`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .crypto.transforms import Proposal, parse_proposal
from .selectors import TrafficSelector, parse_ts

DEFAULT_IKE_PROPOSALS = ("aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048")
DEFAULT_ESP_PROPOSALS = ("aes128gcm16", "aes128-sha256")


@dataclass
class AuthConfig:
    """One side's authentication (swanctl ``local``/``remote`` sections)."""

    auth: str = "psk"
    """``psk`` or ``pubkey`` (certificates / raw signatures); IKEv2 EAP
    (RFC 7296 §2.16): local ``eap`` (any method the gateway asks for that we
    allow), ``eap-md5`` or ``eap-gtc``; remote ``eap-md5`` or ``eap-gtc``
    (we are the gateway: the peer authenticates with EAP, we with our
    ``local`` auth).  EAP-MD5 needs the connection's ``legacy = true``."""
    id: str | None = None
    """IKE identity: FQDN, ``user@example`` (RFC822), IP address or a DN
    (``C=CH, O=example, CN=host``).  ``None``: the local/remote address."""
    cert: Any = None
    """Local: our certificate (``cryptography.x509.Certificate``)."""
    private_key: Any = None
    """Local: our private key (RSA, EC or Ed25519 ``cryptography`` key)."""
    cacerts: list[Any] = field(default_factory=list)
    """Remote: trust anchors (``x509.Certificate``) that must sign the peer's cert."""
    intermediates: list[Any] = field(default_factory=list)
    """Local: intermediate certificates sent along with ``cert``."""
    rsa_pss: bool = False
    """Use RSASSA-PSS (RFC 7427) instead of PKCS#1 v1.5 for RSA keys."""
    crls: list[Any] = field(default_factory=list)
    """Remote: certificate revocation lists (``x509.CertificateRevocationList``)
    checked for every certificate of the peer's chain below the trust anchor
    (the loader puts the top-level ``crls`` here, as swanctl loads ``x509crl/``
    for all connections).  The daemon also fetches CRLs from distribution
    points and asks OCSP responders (:attr:`revocation_cache`)."""
    revocation: str = "relaxed"
    """Remote: swanctl ``revocation``: ``strict`` (each certificate needs a
    current CRL of its issuer), ``ifuri`` (only if it names a CRL distribution
    point) or ``relaxed`` (only a revoked certificate fails)."""
    ocsp_uris: list[str] = field(default_factory=list)
    """Remote: OCSP responders (``http://`` URIs) asked for certificates
    issued by one of :attr:`cacerts`, besides the responder a certificate
    names itself (strongSwan's ``authorities.<ca>.ocsp_uris``)."""
    crl_uris: list[str] = field(default_factory=list)
    """Remote: CRL URIs (``http://``) of :attr:`cacerts`, fetched up front
    and kept fresh, besides the distribution points a certificate names
    (strongSwan's ``authorities.<ca>.crl_uris``)."""
    revocation_cache: Any = None
    """Remote: fetched OCSP answers and CRLs
    (:class:`~aioipsec.ike.auth.RevocationCache`), set by the daemon's
    :class:`~aioipsec.asyncio.revocation_fetch.RevocationFetcher`; ``None``:
    only :attr:`crls` are checked, nothing is fetched."""
    eap_id: str | None = None
    """EAP identity: local: the one we send (default: our IKE identity; its
    password is the ``eap`` secret of that id); remote: ``%any`` (None) or
    the only EAP identity accepted."""
    xauth_id: str | None = None
    """Second round ``auth = "xauth"`` on the local side (an IKEv1 XAUTH
    client): the user name sent (its password is the ``xauth`` secret of
    that id)."""
    xauth_tries: int = 3
    """Second round ``auth = "xauth"`` on the remote side (an IKEv1 XAUTH
    gateway): how many user name/password REPLYs the peer gets before the
    gateway sends XAUTH_STATUS 0 and deletes the SA; after a wrong one it
    sends a new REQUEST (no status in between).  charon has no such option
    (its gateway asks once, as ``xauth_tries = 1``); the default 3 is
    libreswan's ``XAUTH_PROMPT_TRIES`` and what Cisco gateways allow."""


@dataclass
class ChildConfig:
    """A Child SA (swanctl ``children.<name>``)."""

    name: str = "child"
    local_ts: list[TrafficSelector] = field(default_factory=list)
    """Local selectors; empty means ``dynamic`` (our own outer address)."""
    remote_ts: list[TrafficSelector] = field(default_factory=list)
    """Remote selectors; empty means ``dynamic`` (the peer's outer address)."""
    esp_proposals: list[Proposal] = field(
        default_factory=lambda: [parse_proposal(p, "esp") for p in DEFAULT_ESP_PROPOSALS]
    )
    """ESP proposals; a key exchange in a proposal means PFS."""
    ah_proposals: list[Proposal] = field(default_factory=list)
    """AH proposals; if set, AH is negotiated instead of ESP."""
    mode: str = "tunnel"
    """``tunnel`` or ``transport``."""
    start_action: str = "none"
    """``none``, ``trap`` (negotiate on the first matching packet) or ``start``."""
    rekey_time: float = 3600.0
    """Soft lifetime in seconds: rekey after this (minus jitter)."""
    life_time: float | None = None
    """Hard lifetime; default ``rekey_time * 1.1``."""
    rand_time: float | None = None
    """Jitter subtracted from ``rekey_time``; default ``life_time - rekey_time``."""
    rekey_bytes: int = 0
    life_bytes: int = 0
    rekey_packets: int = 0
    life_packets: int = 0
    replay_window: int = 64
    """Anti-replay window in packets (0 disables replay protection)."""
    dpd_action: str = "clear"
    """``clear``, ``trap`` or ``restart`` when the peer is declared dead."""
    close_action: str = "none"
    updown: str | None = None
    """Command run when a Child SA comes up and goes down (swanctl ``updown``):
    an executable's path, optionally followed by arguments (split like a shell
    command line, but run without a shell), with strongSwan's ``PLUTO_*``
    environment (``PLUTO_VERB=up-client`` ...).  Run by the daemon
    (:mod:`aioipsec.daemon`), not by a bare :class:`Endpoint`."""
    updown_timeout: float | None = None
    """Seconds one ``updown`` run may take before it is killed with its
    process group (> 0); None: the daemon's default, 10 s."""

    @property
    def hard_lifetime(self) -> float:
        return self.life_time if self.life_time is not None else self.rekey_time * 1.1

    @property
    def jitter(self) -> float:
        return self.rand_time if self.rand_time is not None else self.hard_lifetime - self.rekey_time

    @property
    def pfs(self) -> bool:
        return any(p.ke for p in self.esp_proposals or self.ah_proposals)


@dataclass
class ConnectionConfig:
    """An IKE connection (swanctl ``connections.<name>``)."""

    name: str = "conn"
    version: int = 2
    """2 = IKEv2, 1 = IKEv1."""
    local_addrs: list[str] = field(default_factory=list)
    remote_addrs: list[str] = field(default_factory=list)
    local_port: int = 500
    remote_port: int = 500
    proposals: list[Proposal] = field(
        default_factory=lambda: [parse_proposal(p, "ike") for p in DEFAULT_IKE_PROPOSALS]
    )
    aggressive: bool = False
    """IKEv1 Aggressive Mode."""
    encap: bool = False
    """Force UDP encapsulation of ESP even without a NAT (fakes NAT-D like strongSwan)."""
    mobike: bool = True
    """IKEv2 MOBIKE (RFC 4555), as swanctl ``mobike``: as responder, answer an
    initiator's MOBIKE_SUPPORTED and follow its UPDATE_SA_ADDRESSES (a
    roaming client keeps its IKE and Child SAs); as initiator, announce it,
    run IKE on 4500 from IKE_AUTH on, and move with ``roam()``."""
    follow_redirects: bool = True
    """IKEv2 Redirect (RFC 5685), as strongswan.conf's ``charon.follow_redirects``
    (default yes): announce REDIRECT_SUPPORTED in IKE_SA_INIT and follow a
    gateway's REDIRECT (IKE_SA_INIT, IKE_AUTH or INFORMATIONAL) by setting the
    connection up again toward the new gateway.  False: announce nothing, and
    a REDIRECT sent anyway fails the negotiation (or is ignored on an
    established IKE SA)."""
    redirect_init: str = ""
    """Gateway (RFC 5685 §4): answer the IKE_SA_INIT of every client that
    announced REDIRECT_SUPPORTED (or REDIRECTED_FROM) with REDIRECT to this
    address instead of setting up an IKE SA (a load balancer's front door);
    clients without it are served here.  Empty: never."""
    fragmentation: bool = True
    """IKE fragmentation (RFC 7383 / IKEv1 vendor extension) when supported by the peer."""
    fragment_size: int = 1280
    """Largest IKE datagram before fragmenting (bytes, IP payload)."""
    dpd_delay: float = 30.0
    """Liveness check interval when no traffic was seen (0 disables)."""
    dpd_timeout: float = 150.0
    """IKEv1: declare the peer dead after this long without R-U-THERE-ACK."""
    rekey_time: float = 14400.0
    """IKE SA soft lifetime (rekey)."""
    reauth_time: float = 0.0
    """IKEv2 reauthentication (swanctl ``reauth_time``, 0 = off): after this
    (minus jitter) the initiator of the connection establishes a new IKE SA
    (IKE_SA_INIT + IKE_AUTH, credentials checked again, no INITIAL_CONTACT)
    with the same Child SAs, then deletes the old one (make-before-break,
    charon's default ``make_before_break = yes``).  It survives IKE rekeys;
    when rekey_time comes first, a rekey happens first, as in charon.
    IKEv1 ignores it (its ``rekey_time`` already re-does Phase 1)."""
    over_time: float | None = None
    """Hard IKE SA lifetime = the earlier of rekey_time / reauth_time +
    over_time (default 10 % of the longer of the two)."""
    rand_time: float | None = None
    """Jitter subtracted from rekey_time and reauth_time (default over_time)."""
    local: AuthConfig = field(default_factory=AuthConfig)
    remote: AuthConfig = field(default_factory=AuthConfig)
    children: dict[str, ChildConfig] = field(default_factory=dict)
    psk: bytes | None = field(default=None, repr=False)
    """Pre-shared key (swanctl ``secrets``), resolved by the loader; never in
    the repr (a logged or printed configuration must not show it)."""
    psk2: bytes | None = field(default=None, repr=False)
    """The pre-shared key of a second authentication round with ``auth =
    "psk"`` (``local-2`` / ``remote-2``, RFC 4739), resolved by the loader
    as :attr:`psk` but by the round-2 identities; never in the repr."""
    ppk_id: str | None = None
    """IKEv2 Postquantum Preshared Key (RFC 8784; swanctl ``ppk_id``): the
    PPK_ID we send as initiator (its PPK is ``ppks[ppk_id]``), and as
    responder the only one accepted (None: any in ``ppks``)."""
    ppk_required: bool = False
    """swanctl ``ppk_required``: no IKE SA without a PPK mixed in (else a
    peer without the PPK falls back to the NO_PPK_AUTH authentication)."""
    ppks: dict[str, bytes] = field(default_factory=dict, repr=False)
    """Postquantum Preshared Keys by PPK_ID (swanctl ``secrets.ppk<suffix>``),
    resolved by the loader; never logged."""
    legacy: bool = False
    """Explicit opt-in to weak algorithms (3DES, DES, MD5, MODP-1024)."""
    retransmit_timeout: float = 4.0
    retransmit_base: float = 1.8
    retransmit_tries: int = 5
    retransmit_jitter: float = 0.0
    """Fraction (0..1) by which each retransmit timeout is randomly shortened."""
    keyingtries: int = 1
    """Attempts to establish the IKE SA when we initiate it (swanctl
    ``keyingtries``): an attempt is one whole retransmission sequence; when it
    ends unanswered (the peer is not there, or stopped answering before the
    IKE SA was up) the endpoint starts the next one, like charon at once
    (the sequence's last, longest timeout is the wait between attempts),
    until this many were made; 0 = until it is established.  A permanent
    error (authentication failed, NO_PROPOSAL_CHOSEN, any error notify) ends
    the attempts whatever this says, as in charon.  Initiations by
    ``start_action``, ``close_action = start``, ``dpd_action = restart``,
    trap policies and ``up`` each get the whole budget."""
    send_certreq: bool = True
    send_cert: str = "ifasked"
    """``always``, ``ifasked`` or ``never``."""
    initial_contact: bool = True
    unique: str = "no"
    """Uniqueness policy (swanctl ``unique``, default ``no`` as there), on a
    gateway, by connection, our identity and the peer's (its XAUTH user with
    IKEv1): ``no``: a new IKE SA (ISAKMP SA) whose IKE_AUTH carries
    INITIAL_CONTACT (INITIAL-CONTACT) replaces the older ones, their Child
    (IPsec) SAs included; ``replace``: always, as strongSwan's
    ``uniqueids = yes`` (the peer came back from another address); ``keep``:
    the new one is refused (IKEv2: AUTHENTICATION_FAILED) while one is up,
    unless it carries INITIAL_CONTACT; ``never``: all stay."""
    key_export: bool = False
    """Allow exporting keys (Wireshark tables); never logged otherwise."""
    vips: list[str] = field(default_factory=list)
    """Virtual IPs to request (IKEv2 Configuration Payload, RFC 7296 §3.15):
    ``0.0.0.0`` / ``::`` for any address of that family, or a specific address.
    The assigned address becomes the local selector of children whose
    ``local_ts`` is dynamic; no address assigned fails the IKE SA
    (``FAILED_CP_REQUIRED``)."""
    pools: list[str] = field(default_factory=list)
    """Responder: names of address pools (:class:`PoolConfig`) to assign
    virtual IPs from (the peer's dynamic ``remote_ts`` becomes its lease)."""
    local2: AuthConfig | None = None
    """Second authentication round of our side (swanctl ``local-2``).  IKEv1
    ``auth = "xauth"``: we are an XAUTH client (user ``xauth_id``).  IKEv2
    (RFC 4739) ``auth = "eap-md5" | "eap-gtc" | "eap"``: when we initiate,
    after our ``psk``/``pubkey`` round we announce ANOTHER_AUTH_FOLLOWS and
    authenticate again with EAP as IDi ``id`` (default ``eap_id``, else our
    first identity), EAP identity ``eap_id`` (default ``id``).  ``auth =
    "pubkey"`` (``cert``, ``private_key``, ``intermediates``; IDi ``id``,
    default the certificate's subject DN) or ``"psk"`` (:attr:`psk2`; IDi
    ``id``, default our first identity): the round's IDi, CERT and AUTH
    (signed as the first round's, over the new IDi)."""
    remote2: AuthConfig | None = None
    """Second authentication round of the peer (swanctl ``remote-2``).  IKEv1
    ``auth = "xauth"``: as gateway we ask the peer for a user name and
    password (draft-beaulieu-ike-xauth) after Phase 1.  IKEv2 (RFC 4739)
    ``auth = "eap-md5" | "eap-gtc"``: after its ``psk``/``pubkey`` round the
    peer must authenticate again with EAP (IDi matching ``id``, EAP identity
    ``eap_id`` or any with a secret) before the Child SA is set up; ``auth =
    "pubkey"`` (a certificate of ``cacerts`` confirming the IDi, ``id``) or
    ``"psk"`` (:attr:`psk2`): an IDi and AUTH verified as a first round's."""
    xauth_secrets: dict[str, bytes] = field(default_factory=dict, repr=False)
    """XAUTH passwords by user name (swanctl ``secrets.xauth<suffix>``),
    resolved by the loader: the users a gateway accepts, or a client's own."""

    eap_secrets: dict[str, bytes] = field(default_factory=dict, repr=False)
    """EAP passwords by EAP identity (swanctl ``secrets.eap<suffix>``),
    resolved by the loader: the users a gateway accepts, or a client's own."""

    @property
    def xauth_server(self) -> bool:
        """The peer must pass XAUTH (``remote-2 = { auth = "xauth" }``)."""
        return self.remote2 is not None and self.remote2.auth == "xauth"

    @property
    def xauth_client(self) -> bool:
        """We answer the peer's XAUTH (``local-2 = { auth = "xauth" }``)."""
        return self.local2 is not None and self.local2.auth == "xauth"

    def eap_user(self, round2: bool = False) -> str | None:
        """The EAP identity we send as a client, whose ``eap`` secret is our
        password: in our first round ``local.eap_id``, else ``local.id``; in
        the second (``round2``, ``local-2``) ``local2.eap_id``, else
        ``local2.id``, else ``local.id``.  None when none is set: the loader
        refuses that (no secret to find), and a session built in code sends
        the IKE identity it uses instead."""
        if not round2:
            return self.local.eap_id or self.local.id
        if self.local2 is None:
            raise ValueError("no local-2 round")
        return self.local2.eap_id or self.local2.id or self.local.id

    @property
    def over(self) -> float:
        """over_time, or its default: 10 % of the longer of rekey_time and reauth_time."""
        return self.over_time if self.over_time is not None else max(self.rekey_time, self.reauth_time) * 0.1

    @property
    def hard_lifetime(self) -> float:
        return self.rekey_time + self.over

    @property
    def jitter(self) -> float:
        return self.rand_time if self.rand_time is not None else self.over


@dataclass
class PoolConfig:
    """An address pool for virtual IPs (swanctl ``pools.<name>``)."""

    name: str
    addrs: str
    """A subnet (``10.3.0.0/28``: its network address and, for IPv4, its
    broadcast address are not handed out) or a range ``10.3.0.1..10.3.0.9``
    (swanctl's ``10.3.0.1-10.3.0.9`` is accepted too)."""
    dns: list[str] = field(default_factory=list)
    """DNS servers sent with a lease (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS)."""
    nbns: list[str] = field(default_factory=list)
    """WINS servers sent with a lease (INTERNAL_IP4_NBNS; INTERNAL_IP6_NBNS
    in IKEv1 Mode Config only, IKEv2 has no such attribute)."""
    subnet: list[str] = field(default_factory=list)
    """Networks reachable through the gateway sent with a lease
    (INTERNAL_IP4_SUBNET / INTERNAL_IP6_SUBNET, RFC 7296 §3.15.2), as charon
    sends swanctl's pool ``subnet``."""
    split_include: list[str] = field(default_factory=list)
    """IPv4 networks sent as Cisco Unity UNITY_SPLIT_INCLUDE in IKEv1 Mode
    Config, only to peers that sent the Cisco Unity vendor ID."""


@dataclass
class GlobalConfig:
    """Settings of the endpoint/daemon rather than of one connection."""

    cookie_threshold: int = 10
    """Half-open IKE SAs above which IKE_SA_INIT requires a COOKIE (RFC 7296 §2.6)."""
    half_open_max: int = 1000
    """Hard limit on half-open IKE SAs; further IKE_SA_INITs are dropped."""
    init_limit_per_peer: int = 20
    """IKE_SA_INIT requests accepted per peer address per second."""
    fragment_reassembly_max: int = 64 * 1024
    """Largest reassembled IKE message (bytes)."""
    make_before_break: bool = True
    """IKEv2 reauthentication order (strongswan.conf's ``charon.make_before_break``;
    the configuration file's ``[daemon] make_before_break``).  True (charon's
    default since 6.0): the new IKE SA and its Child SAs first, then the old
    IKE SA deleted -- no traffic lost.  False (charon's default before 6.0,
    for peers that mishandle overlapping IKE SAs): the old IKE SA (and its
    Child SAs) deleted first, and once the peer answered the delete (or it
    timed out) the connection initiated again -- traffic stops in between."""


def updown_argv(command: str, base: Any = None) -> list[str]:
    """``updown``'s command line as argv (shell-like splitting, no shell),
    a relative program taken relative to the directory ``base`` when given;
    ``TypeError`` when it is not a string, ``ValueError`` with the reason
    when it is empty or its program does not exist or is not executable."""
    import os
    import shlex
    from pathlib import Path

    if not isinstance(command, str):
        raise TypeError(f"expected a string (a script path), got {type(command).__name__}")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"cannot split the command line: {exc}") from None
    if not argv:
        raise ValueError("must not be empty")
    if base is not None and not Path(argv[0]).is_absolute():
        argv[0] = str(Path(base) / argv[0])
    prog = argv[0]
    if not os.path.exists(prog):
        raise ValueError(f"file not found: {prog}")
    if os.path.isdir(prog):
        raise ValueError(f"is a directory, not a script: {prog}")
    if not os.access(prog, os.X_OK):
        raise ValueError(f"not executable: {prog}")
    return argv


def check_updown_timeout(path: str, seconds: Any, *, shown: str | None = None, file: str | None = None) -> float:
    """A child's ``updown_timeout`` as a float: a number of seconds, more than
    0 and finite; else a :class:`~aioipsec.errors.ConfigError` on ``path``.
    The one check of :func:`child` (``seconds`` as given in code) and of the
    configuration file's loader, which first reads a duration such as "30s"
    into ``seconds`` and passes what was written as ``shown`` (and its
    ``file``) for its message."""
    from .errors import ConfigError

    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < float("inf"):
        reason = f"expected seconds > 0, got {seconds!r}" if shown is None else f"must be more than 0 seconds, got {shown}"
        raise ConfigError(path, reason, file=file)
    return float(seconds)


def child(
    name: str = "child",
    *,
    local_ts: list[str] | None = None,
    remote_ts: list[str] | None = None,
    esp_proposals: list[str] | None = None,
    legacy: bool = False,
    **kw: Any,
) -> ChildConfig:
    """Convenience constructor taking strings: ``child("lan", local_ts=["10.1.0.0/16"], ...)``.
    ``updown`` and ``updown_timeout`` are checked as the loader does
    (:class:`~aioipsec.errors.ConfigError` naming ``children.<name>.updown``)."""
    from .errors import ConfigError

    if kw.get("updown") is not None:
        try:
            updown_argv(kw["updown"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"children.{name}.updown", str(exc)) from None
    if kw.get("updown_timeout") is not None:
        kw["updown_timeout"] = check_updown_timeout(f"children.{name}.updown_timeout", kw["updown_timeout"])
    return ChildConfig(
        name=name,
        local_ts=[parse_ts(t) for t in (local_ts or []) if t != "dynamic"],
        remote_ts=[parse_ts(t) for t in (remote_ts or []) if t != "dynamic"],
        esp_proposals=[parse_proposal(p, "esp", allow_legacy=legacy) for p in (esp_proposals or DEFAULT_ESP_PROPOSALS)],
        **kw,
    )


def connection(
    name: str = "conn",
    *,
    proposals: list[str] | None = None,
    psk: str | bytes | None = None,
    local_id: str | None = None,
    remote_id: str | None = None,
    children: list[ChildConfig] | None = None,
    legacy: bool = False,
    **kw: Any,
) -> ConnectionConfig:
    """Convenience constructor taking strings; ``psk`` may be ``str``."""
    if isinstance(psk, str):
        psk = psk.encode()
    local = kw.pop("local", None) or AuthConfig(auth="psk" if psk is not None else "pubkey", id=local_id)
    remote = kw.pop("remote", None) or AuthConfig(auth="psk" if psk is not None else "pubkey", id=remote_id)
    return ConnectionConfig(
        name=name,
        proposals=[parse_proposal(p, "ike", allow_legacy=legacy) for p in (proposals or DEFAULT_IKE_PROPOSALS)],
        psk=psk,
        local=local,
        remote=remote,
        children={c.name: c for c in (children or [])},
        legacy=legacy,
        **kw,
    )
