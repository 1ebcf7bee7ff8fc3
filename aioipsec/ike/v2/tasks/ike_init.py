"""IKE_SA_INIT: proposals, key exchange, nonces, COOKIE and INVALID_KE_PAYLOAD
retries, fragmentation and RFC 7427 support, IKE SA key derivation (RFC 7296
§1.2, §2.6, §2.7; model: strongSwan ``ike_init.c``)."""

from __future__ import annotations

from ....crypto.kex import KeyExchange, create_key_exchange
from ....crypto.transforms import KeAlg
from ....errors import InvalidKePayload, InvalidSyntax, NoProposalChosen, Redirect
from ....events import NegotiationFailed
from ...auth import SUPPORTED_HASHES, certreq_data
from ...constants import CertEncoding, ExchangeType, NotifyType, notify_name
from ...proposals import WireProposal, accept_response, describe_offers, first_ke, ke_group_acceptable, select, to_wire
from ..message import Message
from ..payloads import CertReqPayload, KePayload, NoncePayload, SaPayload
from .base import ResponseDropped, Task, TaskStatus
from .common import MAX_KE_RETRIES, initial_ike_keys, notify, notify_group, offered, sa_payload, select_with_ke, set_peer_ke

MAX_COOKIE_RETRIES = 3


def _accepts(proposals, sel) -> bool:  # type: ignore[no-untyped-def]
    try:
        select([sel.to_wire()], proposals)
    except NoProposalChosen:
        return False
    return True


_HASH_NOTIFY = b"".join(int(h).to_bytes(2, "big") for h in SUPPORTED_HASHES)


def _hash_notify() -> bytes:
    return _HASH_NOTIFY  # SIGNATURE_HASH_ALGORITHMS data, the same for every IKE_SA_INIT


def _parse_hashes(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2)]


class IkeInit(Task):
    exchange_type = ExchangeType.IKE_SA_INIT
    combinable = True
    name = "ike_init"

    def __init__(self, session, sa, initiator: bool) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, sa, initiator)
        self.ke: KeyExchange | None = None
        self.ke_alg: KeAlg | None = None
        self.cookie: bytes | None = None
        self.sent: list[WireProposal] = []
        self.cookie_retries = 0
        self.ke_retries = 0
        self.failure_reason = ""
        self.selected = None

    # ------------------------------------------------------------------ initiator

    def build_i(self, msg: Message) -> TaskStatus:
        sa, cfg = self.sa, self.session.config
        if self.ke is None:
            self.ke_alg = first_ke(cfg.proposals)
            if self.ke_alg is None:
                self.failure_reason = "no key exchange method configured"
                return TaskStatus.FAILED
            self.ke = create_key_exchange(self.ke_alg)
        if not sa.ni:
            sa.ni = self.session.new_nonce()
        if self.cookie is not None:
            msg.add(notify(NotifyType.COOKIE, self.cookie))
        self.sent = to_wire(cfg.proposals, ke_first=self.ke_alg)
        msg.add(sa_payload(self.sent))
        msg.add(KePayload(self.ke.group, self.ke.public_value))
        msg.add(NoncePayload(sa.ni))
        if cfg.fragmentation:
            msg.add(notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
            sa.frag_local = True
        msg.add(notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, _hash_notify()))
        if cfg.ppk_id:
            msg.add(notify(NotifyType.USE_PPK))  # RFC 8784 §3
        if cfg.follow_redirects:  # RFC 5685 §3, §5 (charon's follow_redirects)
            if self.session.redirected_from:
                from .ike_redirect import redirect_data

                msg.add(notify(NotifyType.REDIRECTED_FROM, redirect_data(self.session.redirected_from)))
            else:
                msg.add(notify(NotifyType.REDIRECT_SUPPORTED))
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        sa, cfg, session = self.sa, self.session.config, self.session
        redirect = msg.get_notify(NotifyType.REDIRECT)
        if redirect is not None and msg.get(SaPayload) is None:
            # RFC 5685 §4.2: its nonce data must be our Ni, else it is
            # ignored (a forgery: our retransmission brings the real answer)
            to = session.parse_redirect(redirect.data, "IKE_SA_INIT", nonce=sa.ni)
            if to is not None:
                session.redirect_received(sa, *to, "IKE_SA_INIT", session.now)
            raise ResponseDropped
        cookie = msg.get_notify(NotifyType.COOKIE)
        if cookie is not None and msg.get(SaPayload) is None:
            if self.cookie_retries >= MAX_COOKIE_RETRIES or not 1 <= len(cookie.data) <= 64:
                return self._fail("COOKIE", "too many cookie requests")
            self.cookie = cookie.data
            self.cookie_retries += 1
            session.step("COOKIE received", sa, length=str(len(cookie.data)))
            return TaskStatus.RETRY
        invalid_ke = msg.get_notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            group = notify_group(invalid_ke)
            alg = ke_group_acceptable(cfg.proposals, group)
            if alg is None or alg == self.ke_alg or self.ke_retries >= MAX_KE_RETRIES:
                return self._fail("INVALID_KE_PAYLOAD", f"peer wants key exchange method {group}, not acceptable")
            session.step("INVALID_KE_PAYLOAD received", sa, group=str(group))
            self.ke_alg = alg
            self.ke = create_key_exchange(alg)
            self.ke_retries += 1
            return TaskStatus.RETRY
        err = msg.error_notify()
        if err is not None:
            return self._fail(notify_name(err.notify_type), "IKE_SA_INIT refused by peer")
        assert self.ke is not None
        sel = accept_response(self.sent, offered(msg), cfg.proposals)
        kep = msg.get(KePayload)
        if kep is None or sel.ke is None or kep.group != self.ke.group or int(sel.ke.id) != self.ke.group:
            raise NoProposalChosen("responder's KE payload does not match the selected group")
        if msg.spi_r == bytes(8):
            raise InvalidSyntax("responder SPI is zero")
        set_peer_ke(self.ke, kep.data)
        nonce = msg.get(NoncePayload)
        assert nonce is not None
        sa.nr = nonce.data
        sa.spi_r = msg.spi_r
        sa.frag_peer = msg.has_notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
        hashes = msg.get_notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
        sa.peer_hashes = _parse_hashes(hashes.data) if hashes is not None else None
        sa.use_ppk = bool(cfg.ppk_id) and msg.has_notify(NotifyType.USE_PPK)
        reqs = [c for c in msg.get_all(CertReqPayload) if c.encoding == CertEncoding.X509_SIGNATURE]
        sa.peer_certreq = [c.data for c in reqs] if reqs else None
        sa.multiple_auth = msg.has_notify(NotifyType.MULTIPLE_AUTH_SUPPORTED)
        assert sa.spi_i is not None
        keys = initial_ike_keys(sel, self.ke.shared_secret, sa.ni, sa.nr, sa.spi_i, sa.spi_r)
        sa.set_keys(sel, keys)
        self.ke = None  # the private value is no longer needed
        return TaskStatus.SUCCESS

    def _fail(self, notify: str, reason: str) -> TaskStatus:
        self.session.emit(NegotiationFailed(self.session.peer, "IKE_SA_INIT", notify, reason))
        self.failure_reason = f"{notify}: {reason}"
        return TaskStatus.FAILED

    # ------------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> TaskStatus:
        session, sa = self.session, self.sa
        offers = offered(msg)
        kep = msg.get(KePayload)
        assert kep is not None
        matches = []
        for cfg in session.candidates:
            try:
                matches.append((cfg, select_with_ke(offers, cfg.proposals, kep.group)))
            except NoProposalChosen:
                continue
        if not matches:
            configured = ", ".join(dict.fromkeys(str(p) for c in session.candidates for p in c.proposals))
            raise NoProposalChosen(
                f"no acceptable IKE proposal: received {describe_offers(offers)}; configured {configured}"
            )
        session.config = matches[0][0]
        sel = matches[0][1]
        # IKE_AUTH may still switch configuration by identity, but only to one
        # that accepts the algorithms chosen here (the one they came from does:
        # its proposal matched a superset of ``sel``'s transforms)
        chosen = session.config
        session.candidates = [c for c, _ in matches if c is chosen or _accepts(c.proposals, sel)]
        if sel.ke is None:
            raise NoProposalChosen("selected proposal has no key exchange")
        if kep.group != int(sel.ke.id):
            raise InvalidKePayload(f"KE payload uses group {kep.group}, we want {int(sel.ke.id)}", group=int(sel.ke.id))
        ke = create_key_exchange(sel.ke, responder=True)
        set_peer_ke(ke, kep.data)
        nonce = msg.get(NoncePayload)
        assert nonce is not None
        sa.ni = nonce.data
        sa.nr = session.new_nonce()
        sa.spi_r = session.new_ike_spi()
        sa.frag_peer = msg.has_notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
        hashes = msg.get_notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
        sa.peer_hashes = _parse_hashes(hashes.data) if hashes is not None else None
        # as charon: USE_PPK back if the peer sent it and we have any PPK
        sa.use_ppk = msg.has_notify(NotifyType.USE_PPK) and any(c.ppks for c in session.candidates)
        if msg.has_notify(NotifyType.REDIRECT_SUPPORTED) or msg.has_notify(NotifyType.REDIRECTED_FROM):
            sa.redirect_supported = True  # RFC 5685 §3: it may be sent REDIRECT
            to = session.config.redirect_init
            if to:  # RFC 5685 §4.2: REDIRECT instead of the IKE SA, echoing the peer's Ni
                from .ike_redirect import redirect_data

                raise Redirect(to, redirect_data(to, nonce.data))
        self.selected = sel
        self.ke = ke
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        sa, cfg = self.sa, self.session.config
        sel, ke = self.selected, self.ke
        assert sel is not None and ke is not None and sa.spi_i is not None
        msg.add(sa_payload([sel.to_wire()]))
        msg.add(KePayload(ke.group, ke.public_value))
        msg.add(NoncePayload(sa.nr))
        if cfg.fragmentation and sa.frag_peer:
            msg.add(notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
            sa.frag_local = True
        msg.add(notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, _hash_notify()))
        if any(c.remote2 is not None for c in self.session.candidates):
            # RFC 4739: a connection wants a second round (remote-2), which
            # the initiator announces only to a responder that sent this
            msg.add(notify(NotifyType.MULTIPLE_AUTH_SUPPORTED))
        if sa.use_ppk:
            msg.add(notify(NotifyType.USE_PPK))
        # the trust anchors of the peer's certificate rounds (remote, RFC 4739 remote-2)
        cas = [ca for a in (cfg.remote, cfg.remote2) if a is not None and a.auth == "pubkey" for ca in a.cacerts]
        if cfg.send_certreq and cas:
            msg.add(CertReqPayload(CertEncoding.X509_SIGNATURE, certreq_data(list(dict.fromkeys(cas)))))
        keys = initial_ike_keys(sel, ke.shared_secret, sa.ni, sa.nr, sa.spi_i, sa.spi_r)
        sa.set_keys(sel, keys)
        self.ke = None
        return TaskStatus.SUCCESS

    def after_response_sent(self, now: float) -> None:
        from ..session import IkeState

        self.sa.state = IkeState.CONNECTING
        self.sa.created_at = now

