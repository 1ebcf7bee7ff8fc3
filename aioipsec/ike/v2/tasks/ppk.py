"""IKEv2 Postquantum Preshared Keys (RFC 8784), as charon does them
(``ike_auth.c`` get_ppk_i/get_ppk_r/apply_ppk, ``keymat_v2.c``).

Both peers announce USE_PPK in IKE_SA_INIT (``tasks.ike_init``; the
responder only if it has a PPK at all).  Then the initiator's first
IKE_AUTH carries N(PPK_IDENTITY) and, unless ``ppk_required``,
N(NO_PPK_AUTH): its AUTH data computed with the unmodified SK_pi.  SK_d,
SK_pi and SK_pr become ``prf+(PPK, SK_x)`` (:func:`ikev2_ppk_keys`) before
the AUTH payloads are computed or verified, so the Child SAs (and the IKE
SAs rekeyed from this one) are keyed from the mixed SK_d.  A responder
that knows the PPK answers with an empty N(PPK_IDENTITY); one that does
not (and is not required to use one) verifies NO_PPK_AUTH and keeps the
keys, which the initiator sees from the missing PPK_IDENTITY.

With EAP (RFC 8784 §3; charon's ``eap_authenticator`` with ``use_ppk``)
all of this happens at the initiator's AUTH after EAP instead: the first
IKE_AUTH exchange (the gateway's own AUTH) and the EAP rounds use the
original keys.  With a second, EAP, round (RFC 4739) the PPK goes in at
the first (psk/pubkey) round's AUTH as without EAP, and the second round
uses the keys that round settled, with no PPK notifies (charon: "only use
a PPK in the first round").

A configured PPK_ID (``ppk_id``, the ``id`` of ``[secrets.ppk*]``) is a
string in strongSwan identity syntax, and like charon (``add_ppk_identity``:
the type, then the identity's ``get_encoding``) we send the encoding of the
identity it denotes: an FQDN, e-mail address or plain string as its bytes,
an IPv4/IPv6 address as its 4/16 octets, a DN (``C=CH, O=x, CN=ppk``) as
its DER.  A received PPK_ID matches a configured one with the same encoding
(a DN: the same attributes, string types aside, as charon's DN comparison).

Called from a few lines of :class:`~.ike_auth.IkeAuth`; PPKs are never
logged, PPK_IDs are (they are identities), in their configured string form."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ....crypto.kdf import IkeV2Keys, ikev2_ppk_keys
from ....errors import AuthenticationFailed
from ... import auth as A
from ...auth import Identity
from ...constants import IdType, NotifyType
from ..message import Message
from ..payloads import AuthPayload
from .common import notify

if TYPE_CHECKING:
    from ....config import ConnectionConfig
    from .ike_auth import IkeAuth

logger = logging.getLogger("aioipsec.ike")

PPK_ID_OPAQUE = 1
PPK_ID_FIXED = 2
"""PPK_ID types (RFC 8784 §5.1); like charon we send and accept FIXED only."""


@dataclass(frozen=True, eq=False)
class PpkKeys:
    """Initiator: the IKE SA keys without and with the PPK, kept until the
    responder's answer tells which one it used."""

    ppk_id: str
    plain: IkeV2Keys
    mixed: IkeV2Keys

    def __repr__(self) -> str:
        return f"PpkKeys(ppk_id={self.ppk_id!r})"


def _ppk_identity(ppk_id: str) -> Identity:
    """The identity a configured PPK_ID string denotes (strongSwan syntax,
    :meth:`Identity.from_string`); a string that does not parse as the
    identity it looks like (a DN with an unknown attribute, ``@#`` and not
    hex) stands for its UTF-8 bytes, as charon makes such a string a KEY_ID."""
    try:
        return Identity.from_string(ppk_id)
    except ValueError:
        return Identity(IdType.KEY_ID, ppk_id.encode())


def ppk_id_encoding(ppk_id: str) -> bytes:
    """The PPK_ID octets we send for a configured PPK_ID string: the
    encoding of its identity (charon: ``id->get_encoding``)."""
    return _ppk_identity(ppk_id).data


def ppk_id_matches(ppk_id: str, received: bytes) -> bool:
    """Is ``received`` (the octets of a PPK_ID_FIXED) the configured
    ``ppk_id``?  The same encoding; for a DN the same attributes in the same
    order (PrintableString or UTF8String does not matter: charon encodes
    its DNs with its own string types)."""
    want = _ppk_identity(ppk_id)
    if want.data == received:
        return True
    return want.id_type == IdType.DER_ASN1_DN and Identity(IdType.DER_ASN1_DN, received).matches(want)


def find_ppk(ppks: dict[str, bytes], received: bytes) -> tuple[str, bytes] | None:
    """The configured PPK_ID (its string) and PPK for the PPK_ID octets
    ``received``; None if there is none."""
    for ppk_id, secret in ppks.items():
        if ppk_id_matches(ppk_id, received):
            return ppk_id, secret
    return None


def ppk_for(ppks: dict[str, bytes], ppk_id: str) -> bytes | None:
    """The PPK of a configured PPK_ID: its own ``[secrets.ppk*]`` entry, else
    one whose id has the same encoding (``@ppk`` for ``ppk``, a DN spelled
    otherwise); None if there is none."""
    secret = ppks.get(ppk_id)
    if secret is None:
        found = find_ppk(ppks, ppk_id_encoding(ppk_id))
        secret = found[1] if found is not None else None
    return secret


def ppk_id_text(received: bytes) -> str:
    """A received PPK_ID we have no string for, for logs: a DN as text, UTF-8
    as itself, anything else as ``@#hex`` (strongSwan's KEY_ID syntax)."""
    if Identity(IdType.DER_ASN1_DN, received).dn_attrs() is not None:
        return str(Identity(IdType.DER_ASN1_DN, received))
    try:
        text = received.decode()
    except UnicodeDecodeError:
        text = ""
    return text if text and text.isprintable() else "@#" + received.hex()


def encode_ppk_id(ppk_id: str) -> bytes:
    """PPK_IDENTITY notification data: the PPK_ID type, then the PPK_ID
    (:func:`ppk_id_encoding`)."""
    return bytes((PPK_ID_FIXED,)) + ppk_id_encoding(ppk_id)


def ppk_id_data(data: bytes) -> bytes | None:
    """The PPK_ID octets of a PPK_IDENTITY notification; None if it is not
    a PPK_ID_FIXED one with a PPK_ID (as charon's ``parse_ppk_identity``)."""
    if len(data) < 2 or data[0] != PPK_ID_FIXED:
        return None
    return data[1:]


def _peer(task: IkeAuth) -> str:
    return task.session.peer_label(task.sa.remote_id)


# ---------------------------------------------------------------------- initiator


def mix_i(task: IkeAuth, cfg: ConnectionConfig) -> None:
    """Before our first AUTH: if both sides sent USE_PPK and we have a
    PPK_ID, the PPK goes into SK_d/SK_pi/SK_pr (kept on ``task.ppk``).
    Raises AuthenticationFailed where ``ppk_required`` cannot be met.
    Runs once per IKE_AUTH: only IKE_SA_INIT requests are rebuilt (COOKIE,
    INVALID_KE_PAYLOAD retries), the first IKE_AUTH request never is."""
    sa = task.sa
    assert sa.keys is not None and sa.prf_alg is not None
    if not cfg.ppk_id:
        if cfg.ppk_required:
            raise AuthenticationFailed("PPK required but no ppk_id configured")
        return
    if not sa.use_ppk:
        if cfg.ppk_required:
            raise AuthenticationFailed(f"PPK required but peer {_peer(task)} does not support PPKs "
                                       "(no USE_PPK in its IKE_SA_INIT response)")
        return
    secret = ppk_for(cfg.ppks, cfg.ppk_id)
    if secret is None:
        if cfg.ppk_required:
            raise AuthenticationFailed(f"PPK required but no PPK for PPK_ID '{cfg.ppk_id}'")
        logger.info("peer %s: no PPK for PPK_ID '%s', ignored because PPK is not required", _peer(task), cfg.ppk_id)
        return
    task.ppk = PpkKeys(cfg.ppk_id, sa.keys, ikev2_ppk_keys(sa.prf_alg, secret, sa.keys))
    if not _eap_i(cfg):  # EAP: the gateway's first AUTH and the EAP rounds use the original keys
        sa.keys = task.ppk.mixed


def _eap_i(cfg: ConnectionConfig) -> bool:
    """Does our (initiator) first round authenticate with EAP?  Then the
    PPK goes in only at the AUTH after EAP (RFC 8784 §3, as charon)."""
    return cfg.local.auth.startswith("eap")


def _round2(task: IkeAuth) -> bool:
    """An RFC 4739 second (EAP) round: the first round's AUTH settled any
    PPK already (and the loader refuses PPKs with a second round)."""
    return task.eap is not None and task.eap.round2


def mix_eap_i(task: IkeAuth) -> None:
    """EAP: just before our AUTH after EAP Success, the mixed keys (kept by
    :func:`mix_i`) become the IKE SA's: that AUTH is keyed with, and covers
    a prf of, the mixed SK_pi (charon's ``get_psk_sig`` with a PPK)."""
    if task.ppk is not None and not _round2(task):
        task.sa.keys = task.ppk.mixed


def add_eap_notifies_i(task: IkeAuth, msg: Message, cfg: ConnectionConfig) -> None:
    """EAP: after our AUTH after EAP, the notifies of :func:`add_notifies_i`."""
    if not _round2(task):
        assert task.sa.local_id is not None
        add_notifies_i(task, msg, cfg, task.sa.local_id)


def add_notifies_i(task: IkeAuth, msg: Message, cfg: ConnectionConfig, ident: Identity) -> None:
    """After our AUTH (computed with the PPK): N(PPK_IDENTITY), and unless
    ``ppk_required`` N(NO_PPK_AUTH) with the AUTH data a responder without
    the PPK verifies (the unmodified SK_pi, the same method)."""
    st, sa = task.ppk, task.sa
    if st is None:
        return
    msg.add(notify(NotifyType.PPK_IDENTITY, encode_ppk_id(st.ppk_id)))
    if not cfg.ppk_required:
        octets = A.signed_octets(sa.init_request, sa.nr, ident.body(), sa.prf, st.plain.sk_pi)
        if _eap_i(cfg):  # the AUTH after EAP without MSK: keyed with the unmodified SK_pi too
            data = A.psk_auth_data(sa.prf, st.plain.sk_pi, octets)
        else:
            data = task._auth_payload(cfg, octets).data
        msg.add(notify(NotifyType.NO_PPK_AUTH, data))


def settle_i(task: IkeAuth, msg: Message, cfg: ConnectionConfig) -> None:
    """The responder's IKE_AUTH answer, before its AUTH is verified: with
    N(PPK_IDENTITY) it used the PPK (the mixed keys stay), without it fell
    back to NO_PPK_AUTH (the original keys again, unless ``ppk_required``).
    Repeatable for the same response (a held one is processed again).
    EAP: the gateway's first answer (its own AUTH) comes before any PPK;
    the answer to our AUTH after EAP is the one settled."""
    st, sa = task.ppk, task.sa
    eap = task.eap
    if eap is not None and eap.final == eap.round2:  # not the answer to our first-round AUTH
        return
    if st is None:
        if cfg.ppk_required:  # mix_i refused to build without a PPK
            raise AuthenticationFailed(f"PPK required but not used with peer {_peer(task)}")
        return
    if msg.has_notify(NotifyType.PPK_IDENTITY):
        sa.keys = st.mixed
        sa.ppk_id = st.ppk_id
        task.session.step("PPK used", sa, ppk_id=st.ppk_id)
        return
    if cfg.ppk_required:
        raise AuthenticationFailed(f"PPK required but peer {_peer(task)} did not use PPK_ID '{st.ppk_id}' "
                                   "(no PPK_IDENTITY in its IKE_AUTH response)")
    sa.keys = st.plain
    sa.ppk_id = None
    logger.info("peer %s did not use PPK_ID '%s' (NO_PPK_AUTH); continuing without PPK, it is not required",
                _peer(task), st.ppk_id)


# ---------------------------------------------------------------------- responder


def select_r(task: IkeAuth, cfg: ConnectionConfig, msg: Message,
             auth: AuthPayload | None) -> tuple[IkeV2Keys, AuthPayload | None]:
    """The keys to verify the initiator's AUTH with (and to keep, by
    :func:`apply_r`, once it verified) and the AUTH to verify: the mixed
    keys if the peer's PPK_ID is one of ours; else, unless ``ppk_required``
    (AuthenticationFailed), the original keys and the NO_PPK_AUTH data."""
    sa = task.sa
    assert sa.keys is not None and sa.prf_alg is not None
    keys = sa.keys
    if _round2(task):  # the AUTH after a second round's EAP
        return keys, auth
    if not sa.use_ppk:
        if cfg.ppk_required:
            raise AuthenticationFailed(f"PPK required but peer {_peer(task)} does not support PPKs "
                                       "(no USE_PPK in its IKE_SA_INIT)")
        return keys, auth
    if auth is None:  # EAP follows: the PPK goes in at the peer's AUTH after EAP
        return keys, auth
    n = msg.get_notify(NotifyType.PPK_IDENTITY)
    raw = ppk_id_data(n.data) if n is not None else None
    if raw is None:
        if cfg.ppk_required:
            how = "an unsupported PPK_IDENTITY" if n is not None else "no PPK_IDENTITY"
            raise AuthenticationFailed(f"PPK required but peer {_peer(task)} sent {how}")
        if n is not None:  # a PPK_ID we cannot read (OPAQUE, empty): no PPK, as an unknown one
            logger.info("peer %s: unsupported PPK_IDENTITY, ignored because PPK is not required; using NO_PPK_AUTH",
                        _peer(task))
        return keys, _no_ppk_auth(msg, auth)
    if cfg.ppk_id is not None and not ppk_id_matches(cfg.ppk_id, raw):
        raise AuthenticationFailed(f"peer {_peer(task)} sent PPK_ID '{ppk_id_text(raw)}', "
                                   f"but '{cfg.ppk_id}' is required")
    found = find_ppk(cfg.ppks, raw)
    if found is None:
        ppk_id = cfg.ppk_id if cfg.ppk_id is not None else ppk_id_text(raw)
        if cfg.ppk_required:
            raise AuthenticationFailed(f"PPK required but no PPK for PPK_ID '{ppk_id}' of peer {_peer(task)}")
        logger.info("peer %s: no PPK for PPK_ID '%s', ignored because PPK is not required; using NO_PPK_AUTH",
                    _peer(task), ppk_id)
        return keys, _no_ppk_auth(msg, auth)
    ppk_id, secret = found
    if cfg.ppk_id is not None:  # status and logs name it as configured
        ppk_id = cfg.ppk_id
    task.ppk = PpkKeys(ppk_id, keys, ikev2_ppk_keys(sa.prf_alg, secret, keys))
    return task.ppk.mixed, auth


def _no_ppk_auth(msg: Message, auth: AuthPayload) -> AuthPayload:
    """Both sides announced PPKs but we use none: the AUTH to verify is the
    peer's N(NO_PPK_AUTH) data (same method) if it sent one, as charon's
    authenticators do whenever they have no PPK; else its AUTH."""
    no_ppk = msg.get_notify(NotifyType.NO_PPK_AUTH)
    return AuthPayload(auth.method, no_ppk.data) if no_ppk is not None else auth


def apply_r(task: IkeAuth, keys: IkeV2Keys) -> None:
    """The initiator's AUTH verified with ``keys``: they are the IKE SA's
    now (our AUTH, the Child SAs and later IKE rekeys use them)."""
    sa = task.sa
    sa.keys = keys
    if task.ppk is not None and keys is task.ppk.mixed and not _round2(task):
        sa.ppk_id = task.ppk.ppk_id
        task.session.step("PPK used", sa, ppk_id=task.ppk.ppk_id)


def add_notify_r(task: IkeAuth, msg: Message) -> None:
    """Our IKE_AUTH answer: an empty N(PPK_IDENTITY) if we used the PPK."""
    if task.sa.ppk_id is not None and task.ppk is not None:
        msg.add(notify(NotifyType.PPK_IDENTITY))
