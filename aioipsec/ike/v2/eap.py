"""EAP (RFC 3748) for IKEv2 EAP authentication (RFC 7296 §2.16), sans-I/O.

The EAP packet (Code / Identifier / Type / Type-Data; the IKEv2 codec's
``EapPayload`` carries its header on the wire, Length included) and the
methods this package speaks, in both roles:

* **Identity** (type 1): the peer's EAP identity;
* **Notification** (type 2): shown by the authenticator, acknowledged;
* **Legacy Nak** (type 3, responses only): "not that method, one of these";
* **MD5-Challenge** (type 4, RFC 3748 §5.4): ``MD5(Identifier || secret ||
  challenge)``; MD5 is weak, so a connection needs ``legacy = true``;
* **Generic Token Card** (type 6, RFC 3748 §5.6): the password itself, in
  the clear inside the encrypted IKE SA.

Neither method generates keys (no MSK): the final IKE AUTH payloads are
then computed with SK_pi / SK_pr as the shared secret (RFC 7296 §2.16).
EAP-MSCHAPv2 is not offered: it needs MD4, which neither ``cryptography``
nor this OpenSSL provides, and primitives are never hand-rolled here.

:class:`EapPeer` answers an authenticator's requests (our IKE initiator,
the client); :class:`EapServer` runs Identity then the configured method
(our IKE responder, the gateway).  Malformed or unexpected packets never
raise: they are dropped and counted in ``malformed``.  Secrets are never
put in a log line, an exception or a ``repr``.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes

from ..constants import EapCode


class EapType(enum.IntEnum):
    """EAP method types (RFC 3748 §5, IANA)."""

    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5 = 4
    GTC = 6


METHOD_NAMES = {EapType.MD5: "EAP-MD5", EapType.GTC: "EAP-GTC"}
AUTH_METHODS = {"eap-md5": EapType.MD5, "eap-gtc": EapType.GTC}
"""Configuration ``auth`` value -> method type."""

MD5_CHALLENGE_LEN = 16
MAX_ROUNDS = 10
"""An authenticator gives up after this many requests (bounds a peer that
keeps answering nonsense)."""


class EapError(ValueError):
    """A malformed EAP packet (never carries secret material)."""


@dataclass(frozen=True, slots=True)
class EapPacket:
    """One EAP packet; ``type``/``type_data`` only for Request/Response.

    On the wire it is an :class:`~aioipsec.ike.v2.payloads.EapPayload`
    (``code``, ``identifier``, :attr:`data`), the one EAP codec; a received
    one becomes an :class:`EapPacket` with :meth:`from_parts`."""

    code: int
    identifier: int
    type: int | None = None
    type_data: bytes = b""

    @property
    def data(self) -> bytes:
        """Type and Type-Data: the ``data`` of an :class:`EapPayload`."""
        return b"" if self.type is None else bytes([self.type]) + self.type_data

    @classmethod
    def from_parts(cls, code: int, identifier: int, data: bytes) -> EapPacket:
        """From an :class:`EapPayload`'s fields; raises :class:`EapError`."""
        if code in (EapCode.SUCCESS, EapCode.FAILURE):
            if data:
                raise EapError(f"EAP {EapCode(code).name} with {len(data)} octets of data")
            return cls(code, identifier)
        if code not in (EapCode.REQUEST, EapCode.RESPONSE):
            raise EapError(f"unknown EAP code {code}")
        if not data:
            raise EapError(f"EAP {EapCode(code).name} without a type")
        if data[0] == 254:
            raise EapError("expanded EAP types are not supported")
        return cls(code, identifier, data[0], bytes(data[1:]))


# ---------------------------------------------------------------- methods


def md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 3748 §5.4 (as CHAP, RFC 1994): MD5(Identifier || secret || challenge)."""
    h = hashes.Hash(hashes.MD5())
    h.update(bytes([identifier & 0xFF]) + secret + challenge)
    return h.finalize()


def md5_type_data(value: bytes, name: bytes = b"") -> bytes:
    """MD5-Challenge Type-Data: Value-Size, Value, Name."""
    return bytes([len(value)]) + value + name


def parse_md5(type_data: bytes) -> tuple[bytes, bytes]:
    """(value, name) of MD5-Challenge Type-Data; raises :class:`EapError`."""
    if not type_data:
        raise EapError("EAP-MD5 without Value-Size")
    size = type_data[0]
    if size == 0 or 1 + size > len(type_data):
        raise EapError(f"EAP-MD5 Value-Size {size} with {len(type_data) - 1} octets")
    return bytes(type_data[1 : 1 + size]), bytes(type_data[1 + size :])


def identity_request(identifier: int) -> EapPacket:
    return EapPacket(EapCode.REQUEST, identifier, EapType.IDENTITY)


def nak(identifier: int, wanted: list[int]) -> EapPacket:
    """Legacy Nak (RFC 3748 §5.3.1): the types we would accept (0: none)."""
    return EapPacket(EapCode.RESPONSE, identifier, EapType.NAK, bytes(wanted or [0]))


# ---------------------------------------------------------------- the peer (client)


@dataclass(eq=False)
class EapPeer:
    """Our side as EAP peer: answers the authenticator's requests.

    ``methods``: the method types we accept, in preference order."""

    identity: bytes
    secret: bytes = field(repr=False)
    methods: tuple[int, ...] = (EapType.GTC,)
    method: int | None = None
    """The method answered last (MD5 or GTC), for messages."""
    malformed: int = 0
    """Requests dropped: malformed or unexpected."""
    result: int | None = None
    """EapCode.SUCCESS / FAILURE once the authenticator decided."""
    last_identifier: int | None = None

    def process(self, packet: EapPacket) -> EapPacket | None:
        """The response to ``packet``, or None (Success/Failure noted in
        ``result``; a malformed or unexpected packet dropped and counted)."""
        if packet.code in (EapCode.SUCCESS, EapCode.FAILURE):
            if self.last_identifier is None:
                self.malformed += 1  # RFC 3748 §4.2: only after we answered
                return None
            self.result = packet.code
            return None
        if packet.code != EapCode.REQUEST:
            self.malformed += 1
            return None
        ident, t = packet.identifier, packet.type
        if t == EapType.IDENTITY:
            reply = EapPacket(EapCode.RESPONSE, ident, EapType.IDENTITY, self.identity)
        elif t == EapType.NOTIFICATION:
            reply = EapPacket(EapCode.RESPONSE, ident, EapType.NOTIFICATION)
        elif t not in self.methods:
            reply = nak(ident, list(self.methods))
        elif t == EapType.MD5:
            try:
                challenge, _name = parse_md5(packet.type_data)
            except EapError:
                self.malformed += 1
                return None
            reply = EapPacket(EapCode.RESPONSE, ident, EapType.MD5,
                              md5_type_data(md5_response(ident, self.secret, challenge)))
        else:  # GTC: the prompt is informational; the answer is the password
            reply = EapPacket(EapCode.RESPONSE, ident, EapType.GTC, self.secret)
        if t in (EapType.MD5, EapType.GTC):
            self.method = t
        self.last_identifier = ident
        return reply


# ---------------------------------------------------------------- the authenticator (gateway)


class ServerState(enum.Enum):
    CONTINUE = "continue"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(eq=False)
class EapServer:
    """Our side as EAP authenticator: Identity, then ``method`` against
    ``secrets`` (password by EAP identity).  ``random(n)`` gives the
    challenge and the first Identifier."""

    method: int
    secrets: dict[str, bytes] = field(repr=False)
    random: object = field(repr=False)
    allowed_id: str | None = None
    """Only this EAP identity (None: any that has a secret)."""
    identity: str | None = None
    """The peer's EAP identity, once it told it."""
    malformed: int = 0
    """Responses dropped: malformed, unexpected, wrong Identifier."""
    rounds: int = 0
    state: ServerState = ServerState.CONTINUE
    reason: str = ""
    """Why it failed (names the identity, never the secret)."""
    _request: EapPacket | None = field(default=None, repr=False)
    _challenge: bytes = field(default=b"", repr=False)

    def start(self) -> EapPacket:
        """The first request: Identity."""
        ident = self.random(1)[0]  # type: ignore[operator]
        return self._send(identity_request(ident))

    def _send(self, packet: EapPacket) -> EapPacket:
        self._request = packet
        self.rounds += 1
        return packet

    def _finish(self, ok: bool, reason: str = "") -> EapPacket:
        ident = self._request.identifier if self._request is not None else 0
        self.state = ServerState.SUCCESS if ok else ServerState.FAILURE
        self.reason = reason
        return EapPacket(EapCode.SUCCESS if ok else EapCode.FAILURE, ident)

    def _drop(self) -> EapPacket:
        """A dropped response: the authenticator repeats its request (RFC
        3748 §4.1 retransmission), up to :data:`MAX_ROUNDS` requests."""
        self.malformed += 1
        if self.rounds >= MAX_ROUNDS or self._request is None:
            return self._finish(False, f"no valid EAP response after {self.rounds} requests")
        return self._send(self._request)

    def process(self, packet: EapPacket | None) -> EapPacket:
        """Our answer to the peer's response (``None``: it was malformed):
        the next request, Success or Failure (see ``state``)."""
        req = self._request
        if (packet is None or req is None or packet.code != EapCode.RESPONSE
                or packet.identifier != req.identifier or self.state is not ServerState.CONTINUE):
            return self._drop()
        ident = (req.identifier + 1) & 0xFF
        if req.type == EapType.IDENTITY:
            if packet.type != EapType.IDENTITY:
                return self._drop()
            try:
                name = packet.type_data.decode()
            except UnicodeDecodeError:
                return self._drop()
            self.identity = name
            if self.allowed_id is not None and name != self.allowed_id:
                return self._finish(False, f"EAP identity '{name}' is not '{self.allowed_id}'")
            if name not in self.secrets:
                return self._finish(False, f"no EAP secret for EAP identity '{name}'")
            return self._send(self._method_request(ident))
        label = METHOD_NAMES.get(EapType(self.method), "EAP")
        if packet.type == EapType.NAK:
            return self._finish(False, f"peer '{self.identity}' refused {label} (Nak {list(packet.type_data)})")
        if packet.type != self.method:
            return self._drop()
        secret = self.secrets[self.identity or ""]
        if self.method == EapType.MD5:
            try:
                value, _name = parse_md5(packet.type_data)
            except EapError:
                return self._drop()
            ok = hmac.compare_digest(value, md5_response(req.identifier, secret, self._challenge))
        else:
            ok = hmac.compare_digest(packet.type_data, secret)
        if not ok:
            return self._finish(False, f"{label} authentication of EAP identity '{self.identity}' failed")
        return self._finish(True)

    def _method_request(self, ident: int) -> EapPacket:
        if self.method == EapType.MD5:
            self._challenge = self.random(MD5_CHALLENGE_LEN)  # type: ignore[operator]
            return EapPacket(EapCode.REQUEST, ident, EapType.MD5, md5_type_data(self._challenge))
        return EapPacket(EapCode.REQUEST, ident, EapType.GTC, b"Password: ")
