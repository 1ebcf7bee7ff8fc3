"""Child SA rekeying (RFC 7296 §1.3.3, §2.8; model: strongSwan
``child_rekey.c``): CREATE_CHILD_SA with N(REKEY_SA), then the initiator
deletes the old SA.  Make-before-break: the old inbound SA is removed only
when that delete exchange completes.

Collisions (§2.8.1): when both peers rekey the same Child SA at once, each
answers the other's request; the exchange holding the lowest of the four
nonces loses, and its initiator deletes the SA it created while the winner
deletes the old one.  A rekey request for an SA we already replaced (our
delete is underway) gets TEMPORARY_FAILURE (§2.25)."""

from __future__ import annotations

from ....errors import ChildSaNotFound, InvalidSyntax, TemporaryFailure
from ...constants import NotifyType, ProtocolId
from ..message import Message
from .base import TaskStatus
from .child_create import ChildCreate
from .common import lowest_nonce_loses, notify


class ChildRekey(ChildCreate):
    name = "child_rekey"

    def __init__(self, session, sa, initiator: bool, *, old=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(session, sa, initiator, config=old.config if old is not None else None)
        self.old = old
        self.rekeyed_from = old.spi_in if old is not None else None
        self.collision: ChildRekey | None = None
        """The peer's rekey of the same SA that we answered while ours was outstanding."""

    def _proto_id(self) -> int:
        return ProtocolId.AH if self.old is not None and self.old.protocol == "ah" else ProtocolId.ESP

    # ------------------------------------------------------------------ initiator

    def build_i(self, msg: Message) -> TaskStatus:
        from ..session import ChildState

        old = self.old
        if old is None or old.state not in (ChildState.INSTALLED, ChildState.REKEYING) or not self.sa.established:
            return TaskStatus.SKIP
        old.state = ChildState.REKEYING
        return super().build_i(msg)

    def _rekey_notify(self, msg: Message) -> None:
        assert self.old is not None
        msg.add(notify(NotifyType.REKEY_SA, protocol=self._proto_id(), spi=self.old.spi_in.to_bytes(4, "big")))

    def _ts_to_offer(self):  # type: ignore[no-untyped-def]
        assert self.old is not None
        return list(self.old.local_ts), list(self.old.remote_ts)

    def _installed_i(self, child) -> None:  # type: ignore[no-untyped-def]
        from ..session import ChildState

        s, old = self.session, self.old
        assert old is not None
        if self.collision is not None and self.collision.child is not None:
            theirs = self.collision.child.nonces
            if lowest_nonce_loses((self.ni, self.nr), theirs):
                # inbound only: the peer may still send into it until it has
                # installed its own SA; we delete it right away
                s.add_child(child, s.now, outbound=False)
                s.step("CHILD_SA rekey collision lost", self.sa, child=child.name, spi=f"{child.spi_in:08x}")
                if old.state is not ChildState.DELETED:
                    old.state = ChildState.REKEYED
                    old.replaced_by = self.collision.child.spi_in
                s.queue_child_delete(child, "rekey collision", s.now)
                return
            s.add_child(child, s.now)
            s.step("CHILD_SA rekey collision won", self.sa, child=child.name, spi=f"{child.spi_in:08x}")
        else:
            s.add_child(child, s.now)
        if old.state is ChildState.DELETED:
            return  # the peer deleted it meanwhile
        old.state = ChildState.REKEYED
        old.replaced_by = child.spi_in
        s.queue_child_delete(old, "rekeyed", s.now)

    def _on_error_i(self, ntype: int, group: int) -> TaskStatus:
        from ..session import ChildState

        old = self.old
        assert old is not None
        if ntype == NotifyType.CHILD_SA_NOT_FOUND:
            self._fail_i("CHILD_SA_NOT_FOUND", "peer does not know the Child SA")
            if old.state is not ChildState.DELETED:
                self.session.remove_child(old, "not found by peer")
            return TaskStatus.SUCCESS
        return super()._on_error_i(ntype, group)

    def _retry_later(self) -> None:
        from ..session import ChildState

        old, s = self.old, self.session
        assert old is not None
        if self.spi_in is not None:
            s.reserved_spis.discard(self.spi_in)
        if old.state is ChildState.REKEYING:
            if self.collision is not None:
                old.state = ChildState.REKEYED  # the peer's rekey replaced it
            else:
                old.state = ChildState.INSTALLED
                old.rekey_at = s.now + s.retry_delay()

    def _after_failure(self) -> None:
        self._retry_later()

    def abort(self, reason: str) -> None:
        from ..session import ChildState

        super().abort(reason)
        if self.old is not None and self.old.state is ChildState.REKEYING:
            self.old.state = ChildState.INSTALLED

    # ------------------------------------------------------------------ responder

    def _process_r(self, msg: Message) -> None:
        from ..session import ChildState

        s = self.session
        n = msg.get_notify(NotifyType.REKEY_SA)
        assert n is not None
        if len(n.spi) != 4:
            raise InvalidSyntax("REKEY_SA with an SPI that is not 4 octets")
        old = s.child_by_spi_out(int.from_bytes(n.spi, "big"))
        if old is None or old.state is ChildState.DELETED:
            self.error_payload = notify(NotifyType.CHILD_SA_NOT_FOUND, protocol=n.protocol, spi=n.spi)
            raise ChildSaNotFound("no Child SA with that SPI")
        if old.state in (ChildState.DELETING, ChildState.REKEYED):
            raise TemporaryFailure("Child SA is being deleted or was already rekeyed")
        self._refuse_if_busy()
        self.old = old
        self.rekeyed_from = old.spi_in
        super()._process_r(msg)

    def _candidates(self, tsi, tsr):  # type: ignore[no-untyped-def]
        assert self.old is not None
        c = self._narrowed(self.old.config, tsi, tsr)
        return [c] if c is not None else []

    def _installed_r(self, child, now: float) -> None:  # type: ignore[no-untyped-def]
        from ..session import ChildState

        s, old = self.session, self.old
        assert old is not None
        s.add_child(child, now)
        active = next(
            (t for t in s.all_tasks() if isinstance(t, ChildRekey) and t.initiator and t.old is old and t is not self),
            None,
        )
        if active is not None and old.state is ChildState.REKEYING:
            active.collision = self
            s.step("CHILD_SA rekey collision", self.sa, child=child.name, spi=f"{old.spi_in:08x}")
            return
        old.state = ChildState.REKEYED
        old.replaced_by = child.spi_in
        old.rekey_at = float("inf")
