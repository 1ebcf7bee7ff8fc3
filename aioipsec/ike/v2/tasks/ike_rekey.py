"""IKE SA rekeying (RFC 7296 §1.3.2, §2.18; model: strongSwan ``ike_rekey.c``).

CREATE_CHILD_SA with an IKE proposal (carrying the new SPI), a nonce and a
KE payload, no traffic selectors.  The new SA's keys::

    SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)     (old SA's PRF)
    {SK_d | SK_ai | ...} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)   (new PRF)

The side that rekeyed is the new SA's initiator; it then deletes the old SA.
Child SAs belong to the session and simply continue under the new SA.

Collisions (§2.8.2): if both sides rekey at once, the exchange with the
lowest nonce loses; its initiator deletes the redundant new SA, the winner
deletes the old one, and both continue on the winner's new SA.  A rekey
request while we are busy with another exchange on that SA, or deleting
it, is answered with TEMPORARY_FAILURE (§2.25) and retried later.
"""

from __future__ import annotations

from ....crypto.kdf import ikev2_rekey_skeyseed
from ....crypto.kex import KeyExchange, create_key_exchange
from ....crypto.transforms import KeAlg
from ....errors import InvalidKePayload, InvalidSyntax, NoProposalChosen, TemporaryFailure
from ...constants import ExchangeType, NotifyType, notify_name
from ...proposals import Selected, WireProposal, accept_response, ke_group_acceptable, to_wire
from ..message import Message
from ..payloads import KePayload, NoncePayload
from .base import Task, TaskStatus
from .common import MAX_KE_RETRIES, derive_ike_keys, lowest_nonce_loses, notify_group, offered, sa_payload, select_with_ke, set_peer_ke


class IkeRekey(Task):
    exchange_type = ExchangeType.CREATE_CHILD_SA
    name = "ike_rekey"

    def __init__(self, session, sa, initiator: bool) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, sa, initiator)
        self.ke: KeyExchange | None = None
        self.ke_alg: KeAlg | None = None
        self.ke_retries = 0
        self.new_spi = b""
        self.ni = b""
        self.nr = b""
        self.sent: list[WireProposal] = []
        self.selected: Selected | None = None
        self.new_sa = None
        self.collision: IkeRekey | None = None

    def _new_sa(self, *, initiator: bool, spi_i: bytes, spi_r: bytes, sel: Selected, shared: bytes):  # type: ignore[no-untyped-def]
        from ..session import IkeSa

        s, old = self.session, self.sa
        assert old.keys is not None and old.prf_alg is not None and sel.prf is not None
        new = IkeSa(s, initiator=initiator, spi_i=spi_i, spi_r=spi_r)
        new.ni, new.nr = self.ni, self.nr
        skeyseed = ikev2_rekey_skeyseed(old.prf_alg, old.keys.sk_d, shared, self.ni, self.nr)
        new.set_keys(sel, derive_ike_keys(sel.prf, sel, skeyseed, self.ni, self.nr, spi_i, spi_r))
        # ppk_id: the new keys come from the old, PPK-mixed SK_d (RFC 8784 §3), so the new SA has the PPK too
        for attr in ("local_id", "remote_id", "local_eap_id", "remote_eap_id", "local_round2_id",
                     "remote_round2_id", "frag_local", "frag_peer",
                     "peer_hashes", "natd_supported", "nat_local", "nat_remote", "nat_forced", "mobike",
                     "peer_addrs", "my_addrs", "ppk_id", "redirect_supported"):
            setattr(new, attr, getattr(old, attr))
        new.created_at = s.now
        return new

    # ------------------------------------------------------------------ initiator

    def build_i(self, msg: Message) -> TaskStatus:
        from ..session import IkeState

        s, sa, cfg = self.session, self.sa, self.session.config
        if sa.state is not IkeState.ESTABLISHED or sa is not s.sa:
            return TaskStatus.SKIP
        if self.ke_alg is None:
            self.ke_alg = sa.proposal.ke if sa.proposal is not None and sa.proposal.ke is not None else None
        if self.ke_alg is None:
            return TaskStatus.SKIP
        self.new_spi = s.new_ike_spi()
        self.ni = s.new_nonce()
        self.ke = create_key_exchange(self.ke_alg)
        self.sent = to_wire(cfg.proposals, spi=self.new_spi, ke_first=self.ke_alg)
        msg.add(sa_payload(self.sent))
        msg.add(NoncePayload(self.ni))
        msg.add(KePayload(self.ke.group, self.ke.public_value))
        sa.state = IkeState.REKEYING
        return TaskStatus.SUCCESS

    def process_i(self, msg: Message) -> TaskStatus:
        from ..session import IkeState

        s, sa, cfg = self.session, self.sa, self.session.config
        if sa.state is IkeState.REKEYING:
            sa.state = IkeState.ESTABLISHED
        err = msg.error_notify()
        if err is not None:
            return self._error(err.notify_type, notify_group(err))
        try:
            sel = accept_response(self.sent, offered(msg), cfg.proposals)
            if len(sel.spi) != 8 or sel.spi == bytes(8):
                raise InvalidSyntax("new IKE SA SPI must be 8 non-zero octets")
            kep = msg.get(KePayload)
            nonce = msg.get(NoncePayload)
            assert self.ke is not None
            if kep is None or nonce is None or kep.group != self.ke.group:
                raise NoProposalChosen("responder's KE does not match")
            set_peer_ke(self.ke, kep.data)
        except (NoProposalChosen, InvalidSyntax) as exc:
            s.step("IKE_SA rekey failed", sa, reason=str(exc))
            self._retry_later()
            return TaskStatus.SUCCESS
        self.nr = nonce.data
        new = self._new_sa(initiator=True, spi_i=self.new_spi, spi_r=sel.spi, sel=sel, shared=self.ke.shared_secret)
        self.ke = None
        self.new_sa = new
        col = self.collision
        if col is not None and col.new_sa is not None:
            if lowest_nonce_loses((self.ni, self.nr), (col.ni, col.nr)):
                # our new SA is redundant: adopt the peer's, delete ours
                s.step("IKE_SA rekey collision lost", sa)
                self._adopt(col.new_sa, redundant=new)
                return TaskStatus.SUCCESS
            s.step("IKE_SA rekey collision won", sa)
            self._adopt(new, redundant=None)
            # the peer deletes its redundant SA (col.new_sa); keep it reachable until then
            if col.new_sa not in s.old_sas:
                s.old_sas.append(col.new_sa)
            self._expire_later(col.new_sa)
            return TaskStatus.SUCCESS
        self._adopt(new, redundant=None)
        return TaskStatus.SUCCESS

    def _adopt(self, winner, redundant) -> None:  # type: ignore[no-untyped-def]
        """``winner`` becomes the current SA.  If we created the winner, we
        delete the old SA; a redundant SA we created is deleted by us."""
        from .ike_delete import IkeDelete

        s, old = self.session, self.sa
        s.replace_sa(winner, s.now)
        old.rekeyed_away = True
        s.ike_established(winner, s.now, rekeyed_from=old.spi_i)
        if winner is self.new_sa:
            old.tm.queue(IkeDelete(s, old, True, reason="rekeyed", sa_bound=True), first=True)
        else:
            self._expire_later(old)
        if redundant is not None:
            redundant.state = winner.state
            s.old_sas.append(redundant)
            redundant.rekeyed_away = True
            redundant.tm.queue(IkeDelete(s, redundant, True, reason="rekey collision", sa_bound=True))

    def _expire_later(self, sa) -> None:  # type: ignore[no-untyped-def]
        """A replaced SA the peer is expected to delete: retire it ourselves
        if that never happens."""
        s = self.session
        wait = 2 * s.retransmit_policy.total()
        s.defer(s.now + wait, lambda now: s.retire_sa(sa, "rekeyed") if sa in s.old_sas else None)

    def _error(self, ntype: int, group: int) -> TaskStatus:
        s, sa, cfg = self.session, self.sa, self.session.config
        if ntype == NotifyType.INVALID_KE_PAYLOAD:
            alg = ke_group_acceptable(cfg.proposals, group)
            if alg is not None and alg != self.ke_alg and self.ke_retries < MAX_KE_RETRIES:
                s.step("INVALID_KE_PAYLOAD received", sa, group=str(group))
                self.ke_alg = alg
                self.ke_retries += 1
                return TaskStatus.REQUEUE
        s.step("IKE_SA rekey refused", sa, notify=notify_name(ntype))
        col = self.collision
        if col is not None and col.new_sa is not None:
            # our rekey failed but the peer's succeeded: continue on its SA
            self._adopt(col.new_sa, redundant=None)
            return TaskStatus.SUCCESS
        self._retry_later()
        return TaskStatus.SUCCESS

    def _retry_later(self) -> None:
        s, sa = self.session, self.sa
        if sa is s.sa and sa.established:
            sa.rekey_at = s.now + s.retry_delay()

    def abort(self, reason: str) -> None:
        from ..session import IkeState

        if self.sa.state is IkeState.REKEYING:
            self.sa.state = IkeState.ESTABLISHED

    # ------------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> TaskStatus:
        from ..session import IkeState

        s, sa, cfg = self.session, self.sa, self.session.config
        act = sa.tm.active
        busy = act is not None and not all(isinstance(t, IkeRekey) for t in act.tasks)
        if sa.state is IkeState.DELETING or sa is not s.sa or busy or sa.rekeyed_away:
            raise TemporaryFailure("IKE SA busy")
        kep = msg.get(KePayload)
        nonce = msg.get(NoncePayload)
        if kep is None or nonce is None:
            raise InvalidSyntax("IKE rekey without KE or nonce")
        sel = select_with_ke(offered(msg), cfg.proposals, kep.group)
        if len(sel.spi) != 8 or sel.spi == bytes(8):
            raise InvalidSyntax("new IKE SA SPI must be 8 non-zero octets")
        if sel.ke is None or kep.group != int(sel.ke.id):
            raise InvalidKePayload("KE group mismatch", group=int(sel.ke.id) if sel.ke else 0)
        self.ke = create_key_exchange(sel.ke, responder=True)
        set_peer_ke(self.ke, kep.data)
        self.ni = nonce.data
        self.nr = s.new_nonce()
        self.new_spi = s.new_ike_spi()
        self.selected = sel
        self.new_sa = self._new_sa(initiator=False, spi_i=sel.spi, spi_r=self.new_spi, sel=sel, shared=self.ke.shared_secret)
        return TaskStatus.SUCCESS

    def build_r(self, msg: Message) -> TaskStatus:
        assert self.selected is not None and self.ke is not None
        msg.add(sa_payload([self.selected.to_wire(spi=self.new_spi)]))
        msg.add(NoncePayload(self.nr))
        msg.add(KePayload(self.ke.group, self.ke.public_value))
        self.ke = None
        return TaskStatus.SUCCESS

    def after_response_sent(self, now: float) -> None:
        from ..session import IkeState

        s, old, new = self.session, self.sa, self.new_sa
        assert new is not None
        active = old.tm.active_task(IkeRekey)
        if active is not None:
            # collision: our own rekey decides once its response arrives
            active.collision = self  # type: ignore[attr-defined]
            new.state = IkeState.ESTABLISHED
            s.old_sas.append(new)
            s.step("IKE_SA rekey collision", old)
            return
        s.replace_sa(new, now)
        old.rekeyed_away = True
        s.ike_established(new, now, rekeyed_from=old.spi_i)
        self._expire_later(old)
