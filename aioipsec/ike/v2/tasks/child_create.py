"""Child SA creation, in IKE_AUTH or CREATE_CHILD_SA (RFC 7296 §1.3, §2.9,
§2.17; model: strongSwan ``child_create.c``): ESP/AH proposals with our
inbound SPI, PFS key exchange, transport mode, traffic selector narrowing
and KEYMAT.  Child rekeying (:mod:`.child_rekey`) builds on it."""

from __future__ import annotations

from ....config import ChildConfig
from ....crypto.kex import KeyExchange, create_key_exchange
from ....crypto.transforms import KeAlg, Proposal
from ....errors import (
    InvalidKePayload,
    InvalidSyntax,
    NoProposalChosen,
    NotifyError,
    TemporaryFailure,
    TsUnacceptable,
)
from ....events import NegotiationFailed
from ....selectors import TrafficSelector
from ...constants import ExchangeType, NotifyType, notify_name
from ...proposals import (
    Selected,
    WireProposal,
    accept_response,
    describe_offers,
    first_ke,
    ke_group_acceptable,
    select,
    to_wire,
)
from ..message import Message
from ..payloads import KePayload, NoncePayload, SaPayload, TsiPayload, TsrPayload
from .base import Task, TaskStatus
from .common import MAX_KE_RETRIES, child_keys, narrow, notify, notify_group, offered, sa_payload, set_peer_ke


_IKE_AUTH = ExchangeType.IKE_AUTH
"""``in_auth`` is read ~15 times per handshake; a global is read in a few ns,
``ExchangeType.IKE_AUTH`` in ~60 (CPython 3.11: the hook of EnumType.__getattr__)."""


def _protocol(cfg: ChildConfig) -> tuple[str, list[Proposal]]:
    if cfg.ah_proposals:
        return "ah", list(cfg.ah_proposals)
    return "esp", list(cfg.esp_proposals)


def _ts_list(selectors: list[TrafficSelector] | tuple[TrafficSelector, ...]) -> str:
    return ", ".join(str(ts) for ts in selectors) or "(none)"


class ChildCreate(Task):
    name = "child_create"

    def __init__(
        self,
        session,  # type: ignore[no-untyped-def]
        sa,  # type: ignore[no-untyped-def]
        initiator: bool,
        *,
        config: ChildConfig | None = None,
        packet_ts: tuple[TrafficSelector | None, TrafficSelector | None] = (None, None),
        in_auth: bool = False,
    ) -> None:
        super().__init__(session, sa, initiator)
        self.exchange_type = ExchangeType.IKE_AUTH if in_auth else ExchangeType.CREATE_CHILD_SA
        self.combinable = in_auth
        self.config = config
        self.packet_ts = packet_ts
        self.spi_in: int | None = None
        self.spi_out = 0
        self.ke: KeyExchange | None = None
        self.ke_alg: KeAlg | None = None
        self.ke_retries = 0
        self.ni = b""
        self.nr = b""
        self.sent: list[WireProposal] = []
        self.offered_tsi: list[TrafficSelector] = []
        self.offered_tsr: list[TrafficSelector] = []
        self.selected: Selected | None = None
        self.local_ts: list[TrafficSelector] = []
        self.remote_ts: list[TrafficSelector] = []
        self.mode = "tunnel"
        self.error: NotifyError | None = None
        self.error_payload = None
        self.child = None
        self.skip = False
        self.protocol = "esp"
        self.rekeyed_from: int | None = None

    # ------------------------------------------------------------------ helpers

    @property
    def in_auth(self) -> bool:
        return self.exchange_type == _IKE_AUTH

    def _rekey_notify(self, msg: Message) -> None:
        """Hook for ChildRekey: add N(REKEY_SA)."""

    def _configured_ts(self, cfg: ChildConfig) -> tuple[list[TrafficSelector], list[TrafficSelector]]:
        """The child's configured (local, remote) selectors; an empty side is
        the dynamic one (our / the peer's address, or the virtual IPs)."""
        s = self.session
        return list(cfg.local_ts) or s.local_dynamic_ts(), list(cfg.remote_ts) or s.remote_dynamic_ts()

    def _narrowed(
        self, cfg: ChildConfig, tsi: list[TrafficSelector], tsr: list[TrafficSelector]
    ) -> tuple[ChildConfig, list[TrafficSelector], list[TrafficSelector]] | None:
        """``cfg`` with its selectors narrowed to the peer's TSi/TSr, or None
        when either side does not intersect."""
        local, remote = self._configured_ts(cfg)
        local, remote = narrow(local, tsr), narrow(remote, tsi)
        return (cfg, local, remote) if local and remote else None

    def _initial_ts(self) -> tuple[list[TrafficSelector], list[TrafficSelector]]:
        assert self.config is not None
        local, remote = self._configured_ts(self.config)
        pl, pr = self.packet_ts
        if pl is not None:
            local = [pl] + [t for t in local if t != pl]
        if pr is not None:
            remote = [pr] + [t for t in remote if t != pr]
        return local, remote

    def _make_child(self, *, initiator: bool, ni: bytes, nr: bytes, shared: bytes | None):  # type: ignore[no-untyped-def]
        from ..session import ChildSa

        s, sa, sel, cfg = self.session, self.sa, self.selected, self.config
        assert sel is not None and cfg is not None and sa.keys is not None and sa.prf_alg is not None
        keys = child_keys(sa.prf_alg, sa.keys.sk_d, sel, ni, nr, shared, exchange_initiator=initiator)
        assert self.spi_in is not None
        return ChildSa(
            name=cfg.name,
            config=cfg,
            unique_id=s.new_unique_id(),
            protocol=self.protocol,
            spi_in=self.spi_in,
            spi_out=self.spi_out,
            mode=self.mode,
            proposal=sel,
            local_ts=tuple(self.local_ts),
            remote_ts=tuple(self.remote_ts),
            initiator=initiator,
            # UDP encapsulation when a NAT was detected (or encap forces it), as
            # strongSwan does; not merely because IKE runs on 4500 (a MOBIKE
            # initiator floats there without any NAT and sends plain ESP)
            encap=sa.nat_local or sa.nat_remote,
            installed_at=s.now,
            rekeyed_from=self.rekeyed_from,
            nonces=(ni, nr),
            keys=keys,
        )

    def _fail_i(self, notify_name: str, reason: str) -> None:
        s = self.session
        name = self.config.name if self.config else "?"
        s.emit(NegotiationFailed(s.peer, "IKE_AUTH" if self.in_auth else "CREATE_CHILD_SA", notify_name, f"{name}: {reason}"))
        s.step("CHILD_SA failed", self.sa, child=name, notify=notify_name, reason=reason)
        s.pending_acquires.discard(name)
        if self.spi_in is not None:
            s.reserved_spis.discard(self.spi_in)

    # ------------------------------------------------------------------ initiator

    def build_i(self, msg: Message) -> TaskStatus:
        s, cfg = self.session, self.config
        assert cfg is not None
        if not self.in_auth and not self.sa.established:
            return TaskStatus.SKIP
        self.protocol, protos = _protocol(cfg)
        if self.spi_in is None:
            self.spi_in = s.new_child_spi()
            s.reserved_spis.add(self.spi_in)
        spi = self.spi_in.to_bytes(4, "big")
        if not self.in_auth and cfg.pfs and self.ke_alg is None:
            self.ke_alg = first_ke(protos)
        self.sent = to_wire(protos, spi=spi, strip_ke=self.in_auth, ke_first=self.ke_alg)
        self._rekey_notify(msg)
        if cfg.mode == "transport":
            msg.add(notify(NotifyType.USE_TRANSPORT_MODE))
        msg.add(sa_payload(self.sent))
        if not self.in_auth:
            self.ni = s.new_nonce()
            msg.add(NoncePayload(self.ni))
            if self.ke_alg is not None:
                self.ke = create_key_exchange(self.ke_alg)
                msg.add(KePayload(self.ke.group, self.ke.public_value))
        self.offered_tsi, self.offered_tsr = self._ts_to_offer()
        msg.add(TsiPayload(tuple(self.offered_tsi)))
        msg.add(TsrPayload(tuple(self.offered_tsr)))
        return TaskStatus.SUCCESS

    def _ts_to_offer(self) -> tuple[list[TrafficSelector], list[TrafficSelector]]:
        return self._initial_ts()

    def process_i(self, msg: Message) -> TaskStatus:
        s, sa, cfg = self.session, self.sa, self.config
        assert cfg is not None
        if not sa.established and not self.in_auth:
            return TaskStatus.SUCCESS
        if self.in_auth and not sa.established:
            return TaskStatus.SUCCESS  # IKE_AUTH itself failed; that task reports it
        err = msg.error_notify()
        if err is not None:
            return self._on_error_i(err.notify_type, notify_group(err))
        if self.in_auth and msg.get_notify(NotifyType.AUTHENTICATION_FAILED) is not None:
            return TaskStatus.SUCCESS
        try:
            return self._complete_i(msg)
        except NotifyError as exc:
            self._fail_i(notify_name(exc.notify_type), str(exc))
            # the peer installed the SA: delete it again (our inbound SPI is its outbound)
            if self.spi_out:
                s.queue_raw_child_delete(self.protocol, [self.spi_in or 0])
            self._after_failure()
            return TaskStatus.SUCCESS

    def _on_error_i(self, ntype: int, group: int) -> TaskStatus:
        cfg = self.config
        assert cfg is not None
        if ntype == NotifyType.INVALID_KE_PAYLOAD and not self.in_auth:
            alg = ke_group_acceptable(_protocol(cfg)[1], group)
            if alg is not None and alg != self.ke_alg and self.ke_retries < MAX_KE_RETRIES:
                self.session.step("INVALID_KE_PAYLOAD received", self.sa, group=str(group), child=cfg.name)
                self.ke_alg = alg
                self.ke_retries += 1
                return TaskStatus.REQUEUE
        if ntype == NotifyType.TEMPORARY_FAILURE and not self.in_auth:
            self.session.step("TEMPORARY_FAILURE received", self.sa, child=cfg.name)
            self._retry_later()
            return TaskStatus.SUCCESS
        self._fail_i(notify_name(ntype), "refused by peer")
        self._after_failure()
        return TaskStatus.SUCCESS

    def _retry_later(self) -> None:
        s, cfg = self.session, self.config
        assert cfg is not None
        if self.spi_in is not None:
            s.reserved_spis.discard(self.spi_in)
        packet_ts = self.packet_ts

        def again(now: float) -> None:
            if not s.is_closed and s.is_established:
                s.sa.tm.queue(ChildCreate(s, s.sa, True, config=cfg, packet_ts=packet_ts))

        s.defer(s.now + s.retry_delay(), again)

    def _after_failure(self) -> None:
        """Hook for ChildRekey."""

    def _complete_i(self, msg: Message) -> TaskStatus:
        s, sa, cfg = self.session, self.sa, self.config
        assert cfg is not None
        if msg.get(SaPayload) is None:
            raise NoProposalChosen("responder created no Child SA")
        sel = accept_response(self.sent, offered(msg), _protocol(cfg)[1], strip_ke=self.in_auth)
        if len(sel.spi) != 4 or sel.spi == bytes(4):
            raise InvalidSyntax("Child SA SPI must be 4 octets, not zero (RFC 4303 §2.1)")
        self.selected = sel
        self.spi_out = int.from_bytes(sel.spi, "big")
        shared = None
        if self.in_auth:
            ni, nr = sa.ni, sa.nr
        else:
            nonce = msg.get(NoncePayload)
            assert nonce is not None
            self.nr = nonce.data
            ni, nr = self.ni, self.nr
            if self.ke is not None:
                kep = msg.get(KePayload)
                if kep is None or sel.ke is None or kep.group != self.ke.group:
                    raise NoProposalChosen("responder's KE does not match our PFS group")
                set_peer_ke(self.ke, kep.data)
                shared = self.ke.shared_secret
        tsi, tsr = msg.get(TsiPayload), msg.get(TsrPayload)
        if tsi is None or tsr is None:
            raise TsUnacceptable("response without traffic selectors")
        # the responder may only narrow (RFC 7296 §2.9): every selector it
        # returns must lie inside one we proposed
        for got, ours in ((tsi.selectors, self.offered_tsi), (tsr.selectors, self.offered_tsr)):
            if not got or not all(any(t.is_subset_of(o) for o in ours) for t in got):
                raise TsUnacceptable("responder's traffic selectors are not inside what we proposed")
        self.local_ts = list(tsi.selectors)
        self.remote_ts = list(tsr.selectors)
        if s.local_vips and not cfg.local_ts:
            # dynamic local side with a virtual IP (strongSwan: the child's
            # local_ts is the VIP): we offered any address, keep only ours
            self.local_ts = narrow(s.local_dynamic_ts(), self.local_ts)
            if not self.local_ts:
                raise TsUnacceptable(
                    f"responder's TSi {_ts_list(tsi.selectors)} does not contain our virtual IP "
                    f"{', '.join(s.local_vips)}"
                )
        self.mode = "transport" if cfg.mode == "transport" and msg.has_notify(NotifyType.USE_TRANSPORT_MODE) else "tunnel"
        child = self._make_child(initiator=True, ni=ni, nr=nr, shared=shared)
        self.child = child
        s.reserved_spis.discard(child.spi_in)
        self._installed_i(child)
        return TaskStatus.SUCCESS

    def _installed_i(self, child) -> None:  # type: ignore[no-untyped-def]
        self.session.add_child(child, self.session.now)

    # ------------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> TaskStatus:
        self.exchange_type = msg.exchange_type
        self.combinable = self.in_auth
        try:
            self._process_r(msg)
        except NotifyError as exc:
            self.error = exc
        return TaskStatus.SUCCESS

    def _refuse_if_busy(self) -> None:
        from ..session import IkeState
        from .ike_rekey import IkeRekey

        if self.sa.state is IkeState.DELETING or self.sa.tm.is_active(IkeRekey) or self.sa is not self.session.sa:
            raise TemporaryFailure("IKE SA is being rekeyed or deleted")

    def _process_r(self, msg: Message) -> None:
        s, sa = self.session, self.sa
        if self.in_auth and msg.get(SaPayload) is None:
            self.skip = True  # childless IKE_AUTH (RFC 6023)
            return
        if self.in_auth and s.cp_failure:
            # no virtual IP for the peer: N(INTERNAL_ADDRESS_FAILURE) and no
            # Child SA in IKE_AUTH (RFC 7296 §3.10.1)
            self.skip = True
            s.step("CHILD_SA not created", sa, reason="no virtual IP assigned")
            return
        if not self.in_auth:
            self._refuse_if_busy()
        tsi_p, tsr_p = msg.get(TsiPayload), msg.get(TsrPayload)
        if tsi_p is None or tsr_p is None:
            raise InvalidSyntax("Child SA request without traffic selectors")
        offers = offered(msg)
        candidates = self._candidates(list(tsi_p.selectors), list(tsr_p.selectors))
        if not candidates:
            received = f"{_ts_list(tsr_p.selectors)} === {_ts_list(tsi_p.selectors)}"
            raise TsUnacceptable(f"no child configuration matches the traffic selectors {received}")
        chosen = None
        for cfg, local, remote in candidates:
            try:
                sel = select(offers, _protocol(cfg)[1], strip_ke=self.in_auth)
            except NoProposalChosen:
                continue
            chosen = (cfg, local, remote, sel)
            break
        if chosen is None:
            configured = ", ".join(dict.fromkeys(str(p) for cfg, _l, _r in candidates for p in _protocol(cfg)[1]))
            raise NoProposalChosen(
                f"no acceptable ESP/AH proposal for {', '.join(c.name for c, _l, _r in candidates)}: "
                f"received {describe_offers(offers)}; configured {configured}"
            )
        cfg, local, remote, sel = chosen
        if len(sel.spi) != 4 or sel.spi == bytes(4):
            raise InvalidSyntax("Child SA SPI must be 4 octets, not zero (RFC 4303 §2.1)")
        self.config = cfg
        self.protocol = _protocol(cfg)[0]
        self.selected = sel
        self.local_ts, self.remote_ts = local, remote
        self.spi_out = int.from_bytes(sel.spi, "big")
        shared = None
        if self.in_auth:
            self.ni, self.nr = sa.ni, sa.nr
        else:
            nonce = msg.get(NoncePayload)
            assert nonce is not None
            self.ni = nonce.data
            self.nr = s.new_nonce()
            kep = msg.get(KePayload)
            if sel.ke is not None:
                if kep is None or kep.group != int(sel.ke.id):
                    raise InvalidKePayload("PFS group mismatch", group=int(sel.ke.id))
                self.ke = create_key_exchange(sel.ke, responder=True)
                set_peer_ke(self.ke, kep.data)
                shared = self.ke.shared_secret
        self.mode = "transport" if msg.has_notify(NotifyType.USE_TRANSPORT_MODE) and cfg.mode == "transport" else "tunnel"
        self.spi_in = s.new_child_spi()
        s.reserved_spis.add(self.spi_in)
        self.child = self._make_child(initiator=False, ni=self.ni, nr=self.nr, shared=shared)

    def _candidates(self, tsi: list[TrafficSelector], tsr: list[TrafficSelector]) -> list[tuple[ChildConfig, list, list]]:
        """Child configurations whose selectors match the request (ChildRekey: only the old SA's)."""
        return [c for cfg in self.session.config.children.values() if (c := self._narrowed(cfg, tsi, tsr)) is not None]

    def build_r(self, msg: Message) -> TaskStatus:
        if self.skip:
            return TaskStatus.SUCCESS
        if self.error is not None:
            if self.error_payload is not None:
                msg.add(self.error_payload)
            else:
                msg.add(notify(self.error.notify_type, self.error.data))
            return TaskStatus.SUCCESS
        sel = self.selected
        assert sel is not None and self.spi_in is not None
        if self.mode == "transport":
            msg.add(notify(NotifyType.USE_TRANSPORT_MODE))
        msg.add(sa_payload([sel.to_wire(spi=self.spi_in.to_bytes(4, "big"))]))
        if not self.in_auth:
            msg.add(NoncePayload(self.nr))
            if self.ke is not None:
                msg.add(KePayload(self.ke.group, self.ke.public_value))
        msg.add(TsiPayload(tuple(self.remote_ts)))
        msg.add(TsrPayload(tuple(self.local_ts)))
        return TaskStatus.SUCCESS

    def after_response_sent(self, now: float) -> None:
        s = self.session
        if self.skip:
            return
        if self.error is not None:
            # the child's name once a configuration was chosen; before that the
            # reason says what did not match
            prefix = f"{self.config.name}: " if self.config else ""
            ex = "IKE_AUTH" if self.in_auth else "CREATE_CHILD_SA"
            s.emit(NegotiationFailed(s.peer, ex, notify_name(self.error.notify_type), f"{prefix}{self.error}"))
            s.step("CHILD_SA refused", self.sa, notify=notify_name(self.error.notify_type), reason=str(self.error))
            return
        if self.child is not None:
            s.reserved_spis.discard(self.child.spi_in)
            self._installed_r(self.child, now)

    def _installed_r(self, child, now: float) -> None:  # type: ignore[no-untyped-def]
        self.session.add_child(child, now)

    def abort(self, reason: str) -> None:
        if self.spi_in is not None:
            self.session.reserved_spis.discard(self.spi_in)
        if self.config is not None:
            self.session.pending_acquires.discard(self.config.name)

