"""The IKEv1 task manager of one ISAKMP SA (model: strongSwan
``sa/ikev1/task_manager_v1.c``).

* One exchange we initiate at a time (``active``; Informational exchanges are
  one-shot and bypass it), a queue of waiting tasks, and the exchanges the
  peer initiated (``passive``, by message ID; IKEv1 message IDs are random,
  Phase 1 uses 0).
* Retransmission on both sides: our requests are resent on a timer
  (``timeout * base**n``, ``tries`` times, optional jitter); a responder that
  waits for the third message of Aggressive or Quick Mode resends its answer
  on a timer too, and every responder answers a duplicate request with its
  cached answer (the same bytes).  The last message of a three-message
  exchange we initiated is kept, and resent when the peer resends the
  message it answers.
* Every incoming message: duplicate check, decryption with the CBC IV of its
  exchange, the payload rules of the step it must be (checked centrally,
  before the task sees it), then the task.  The IV chain moves on only once
  the task accepted the message.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ...errors import IntegrityError, ParseError, RemoteProtocolError
from ...selectors import Address
from ..auth import RevocationPending
from .constants import ExchangeType, Flag, Ike1Auth, PayloadType
from .errors import Ikev1Error, UnverifiedMessage
from .message import Message, check_rules, decode_message
from .payloads import IsakmpHeader

if TYPE_CHECKING:
    from .sa import IsakmpSa
    from .session import IkeSessionV1

logger = logging.getLogger("aioipsec.ike")

__all__ = ["Flight", "Task", "TaskManagerV1"]


class Task:
    """One exchange seen from one side; role-bound (strongSwan ``task_t``).

    ``initiate()`` builds the first message (initiator only); ``process()``
    takes the next message of the exchange and returns the message to send
    next (or ``None``).  ``step`` names the message the task expects next
    (``MM3``...), which selects the payload rule checked before ``process``."""

    name: ClassVar[str] = ""
    exchange: ClassVar[int] = 0
    responder_retransmits: ClassVar[bool] = False
    """A responder resends its answer on a timer (3-message exchanges)."""
    phase1: ClassVar[bool] = False
    held: tuple[bytes, Address, frozenset[tuple[bytes, int]]] | None = None
    """Phase 1: the (reassembled) message dropped while a peer certificate's
    revocation status is fetched, where it came from and the certificates it
    waits for; fed to :meth:`TaskManagerV1.handle` again by the session's
    ``retry_held`` once one is settled.  One per task: a copy replaces it."""

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa, initiator: bool, mid: int = 0) -> None:
        self.session = session
        self.sa = sa
        self.initiator = initiator
        self.mid = mid
        self.done = False
        self.step = ""
        """The message expected next (``MM3``, ``QM2``...): selects the payload rule."""
        self.step_sent = ""
        """The message built last, for logs."""
        self.unverified = 0
        """Copies of the expected encrypted Phase 1 message that did not
        decrypt or verify (see :meth:`TaskManagerV1._tolerate`)."""

    def initiate(self, now: float) -> Message:
        raise NotImplementedError

    def process(self, msg: Message, now: float) -> Message | None:
        raise NotImplementedError

    def failed(self, reason: str, notify: str, now: float) -> None:
        """The exchange was abandoned (retransmits exhausted, error notify)."""

    def may_be_corrupted(self, exc: Ikev1Error, encrypted: bool) -> bool:
        """Whether ``exc``, raised by the message this task expects, may come
        from one corrupted copy of it (then it is dropped once, see
        :meth:`TaskManagerV1._tolerate`): an encrypted MM5/MM6/AM3 that does
        not decrypt or verify."""
        return self.phase1 and self.step in UNVERIFIED_STEPS and encrypted and isinstance(exc, UnverifiedMessage)

    def unverified_dropped(self) -> None:
        """The copy that raised was dropped: undo whatever processing it
        left behind, so that the next copy starts afresh."""

    def other_mm2(self, msg: Message) -> None:
        """Main Mode initiator waiting for MM4: another MM2, under another
        responder cookie (see ``MainModeTask.other_mm2``)."""
        raise ParseError(f"no MM2 expected by {self.name}")

    def switch(self, now: float) -> Message | None:
        """A retransmission of our request is due: a message to send
        instead (Main Mode: MM3 to another responder, see
        ``MainModeTask.switch``), or None to resend the request."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} mid={self.mid:#x} step={self.step} done={self.done}>"


@dataclass(eq=False)
class Flight:
    """Packets of one message we sent, for retransmission."""

    mid: int
    exchange: int
    packets: list[bytes]
    addr: Address
    step: str
    retransmit: bool
    next_at: float | None = None
    tries: int = 0
    request: bytes = b""
    """For a cached answer: the request datagram it answers."""
    reanswer: tuple[bytes, Message, str] | None = field(default=None, repr=False)
    """For MM6: (IV MM5 was decrypted with, MM6, "MM5"), to re-encrypt MM6 for
    a different copy of MM5 (see :meth:`TaskManagerV1._reanswer`)."""
    task: Task | None = field(default=None, repr=False)


UNVERIFIED_STEPS = ("MM5", "MM6", "AM3")
"""The encrypted Phase 1 messages whose failure to decrypt or verify reads as
a pre-shared key mismatch (AM2, in clear, is judged by its task: see
``AggressiveModeTask.may_be_corrupted``)."""
MAX_UNVERIFIED_DROPS = 1
"""Copies of such a message dropped before the exchange fails.  One: a
corrupted datagram is followed by the peer's retransmission (the same bytes
as the original, which decrypt), while with a different key that
retransmission fails too, so the failure is reported one retransmission
interval (4 s by default) after the first copy."""


def unverified_hint(task: Task) -> str:
    """The probable cause of a Phase 1 message that does not decrypt or
    verify: different pre-shared keys, or (signatures, where the keys do not
    depend on a secret) a key or certificate that is not the expected one."""
    if getattr(task, "method", Ike1Auth.PSK) == Ike1Auth.PSK:
        return "PSK mismatch?"
    return "key or certificate mismatch?"


class TaskManagerV1:
    """Exchanges, retransmissions and message dispatch of one ISAKMP SA."""

    MAX_RESPONSES = 8

    def __init__(self, session: IkeSessionV1, sa: IsakmpSa) -> None:
        self.session = session
        self.sa = sa
        self.active: Task | None = None
        self.queued: deque[Task] = deque()
        self.passive: dict[int, Task] = {}
        self.initiating: Flight | None = None
        self.kept: Flight | None = None
        self.old_responses: deque[bytes] = deque(maxlen=4)
        self.responding: OrderedDict[int, Flight] = OrderedDict()

    # ------------------------------------------------------------------ queueing

    def queue(self, task: Task, now: float) -> None:
        self.queued.append(task)
        self.initiate(now)

    def initiate(self, now: float) -> None:
        """Start the next queued exchange if none is in flight and the SA allows it."""
        while self.active is None and self.queued:
            task = self.queued[0]
            if not task.phase1 and not self.sa.established:
                return
            self.queued.popleft()
            self.active = task
            try:
                msg = task.initiate(now)
            except RemoteProtocolError as exc:  # pragma: no cover - defensive
                self.active = None
                task.failed(str(exc), "ERROR", now)
                continue
            self._send_request(task, msg, now)

    def has_task(self, cls: type[Task]) -> bool:
        return any(isinstance(t, cls) for t in (self.active, *self.queued, *self.passive.values()) if t is not None)

    def tasks(self) -> list[Task]:
        return [t for t in (self.active, *self.queued, *self.passive.values()) if t is not None]

    def flush(self) -> None:
        """Cancel every exchange and retransmission (the SA is going away)."""
        self.active = None
        self.queued.clear()
        self.passive.clear()
        self.initiating = None
        self.kept = None
        self.responding.clear()

    # ------------------------------------------------------------------ sending

    def _timeout(self, tries: int) -> float:
        cfg = self.sa.cfg
        t = cfg.retransmit_timeout * cfg.retransmit_base**tries
        if cfg.retransmit_jitter > 0:
            t -= t * cfg.retransmit_jitter * self.session._random_fraction()
        return t

    def _send_request(self, task: Task, msg: Message, now: float) -> None:
        self._no_reanswer()
        packets = self.session._send(self.sa, msg, now, task.step_sent)
        if task.done:
            # last message of a 3-message exchange: keep it for duplicates of the answer
            self.kept = Flight(task.mid, task.exchange, packets, self.session.remote_addr, task.step_sent, False)
            self.initiating = None
        else:
            self.initiating = Flight(
                task.mid, task.exchange, packets, self.session.remote_addr, task.step_sent, True,
                next_at=now + self._timeout(0), task=task,
            )

    def _send_response(
        self, task: Task, msg: Message, request: bytes, now: float, iv_in: bytes = b"", step_in: str = ""
    ) -> None:
        packets = self.session._send(self.sa, msg, now, task.step_sent)
        retransmit = task.responder_retransmits and not task.done
        flight = Flight(
            task.mid, task.exchange, packets, self.session.remote_addr, task.step_sent, retransmit,
            next_at=now + self._timeout(0) if retransmit else None, request=request, task=task,
        )
        if iv_in and task.phase1 and task.done and msg.encrypted:
            flight.reanswer = (iv_in, msg, step_in)
        self.responding[task.mid] = flight
        self.responding.move_to_end(task.mid)
        while len(self.responding) > self.MAX_RESPONSES:
            self.responding.popitem(last=False)

    def _finished(self, task: Task) -> None:
        self.sa.finished_mids.append(task.mid)

    # ------------------------------------------------------------------ timers

    def next_timer(self) -> float | None:
        times = []
        if self.initiating is not None and self.initiating.next_at is not None:
            times.append(self.initiating.next_at)
        for f in self.responding.values():
            if f.retransmit and f.next_at is not None:
                times.append(f.next_at)
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        f = self.initiating
        if f is not None and f.next_at is not None and now >= f.next_at:
            self._retransmit(f, now, request=True)
        for f in list(self.responding.values()):
            if f.retransmit and f.next_at is not None and now >= f.next_at:
                self._retransmit(f, now, request=False)

    def _retransmit(self, f: Flight, now: float, request: bool) -> None:
        if f.tries >= self.sa.cfg.retransmit_tries:
            f.next_at = None
            f.retransmit = False
            task = f.task
            what = f"no answer to {f.step} after {f.tries} retransmits"
            if request and f.step == "MM5":
                # pluto: "Possible authentication failure: no acceptable
                # response to our first encrypted message"
                what += " (our first encrypted message: pre-shared key mismatch?)"
            logger.info("%s: %s (peer %s, cookies %s)", f.step, what, self.session.peer, self.sa.cookies)
            if request:
                self.initiating = None
                self.active = None
            else:
                self.responding.pop(f.mid, None)
                if task is not None:
                    self.passive.pop(task.mid, None)
            if task is not None:
                task.failed(what, "TIMEOUT", now)
            return
        f.tries += 1
        f.next_at = now + self._timeout(f.tries)
        instead = f.task.switch(now) if request and f.task is not None else None
        if instead is not None:
            # MM3 to another responder: it takes the place of this retransmission
            f.packets = self.session._send(self.sa, instead, now, f.task.step_sent)  # type: ignore[union-attr]
            f.addr = self.session.remote_addr
            return
        logger.debug("%s retransmit %d to %s (cookies %s)", f.step, f.tries, f.addr, self.sa.cookies)
        self.session._resend(f.packets, now)

    # ------------------------------------------------------------------ receiving

    def handle(self, data: bytes, header: IsakmpHeader, addr: Address, now: float) -> None:
        """Dispatch one (reassembled) datagram of this SA."""
        if data in self.old_responses:
            kept = self.kept
            if kept is not None and data == self.old_responses[-1]:
                logger.debug("%s resent: peer repeated its answer", kept.step)
                self.session._resend(kept.packets, now)
            return
        for f in self.responding.values():
            if f.request == data:
                logger.debug("duplicate request, %s resent", f.step)
                self.session._resend(f.packets, now)
                return
        mid, exchange = header.message_id, header.exchange
        act = self.active
        if exchange == ExchangeType.INFORMATIONAL:
            self.session._informational(self.sa, data, header, addr, now)
            return
        if act is not None and mid == act.mid and exchange == act.exchange and not act.done:
            self._response(act, data, header, addr, now)
            return
        task = self.passive.get(mid)
        if task is None:
            if mid in self.sa.finished_mids and mid != 0:
                self.session.stats["late"] += 1
                return
            if mid == 0 and self._reanswer(data, header, addr, now):
                return
            task = self.session._new_passive(self.sa, header, addr, now)
            if task is None:
                return
            self.passive[mid] = task
        elif task.exchange != exchange:
            self.session.stats["dropped"] += 1
            return
        self._request(task, data, header, addr, now)

    def takes_other_mm2(self) -> bool:
        """Our Main Mode sent MM3 and waits for MM4: an MM2 under another
        responder cookie is still of interest (:meth:`other_mm2`)."""
        act = self.active
        return (
            act is not None and act.initiator and act.exchange == ExchangeType.IDENTITY_PROTECTION
            and act.step == "MM4"
        )

    def other_mm2(self, data: bytes, header: IsakmpHeader, addr: Address, now: float) -> bool:
        """A Main Mode message under our CKY-I and a responder cookie that is
        not this SA's.  While we wait for MM4 it may be another responder's
        MM2 (the first one may have been forged): checked against the rules
        of MM2 and handed to the task, which keeps it if acceptable; one
        that is not is dropped and counted.  Returns False when no such MM2
        is expected (the caller drops it as a message for unknown cookies)."""
        act = self.active
        if (
            act is None or not self.takes_other_mm2() or header.message_id != 0
            or header.flags & Flag.ENCRYPTION or header.next_payload == PayloadType.FRAGMENT
        ):
            return False
        try:
            decoded = self._decode(act, data, header, addr, step="MM2")
            assert decoded is not None
            act.other_mm2(decoded[0])
        except (ParseError, Ikev1Error) as exc:
            self.session._dropped(self.sa, "MM2", exc)
        return True

    def retry_held(self, settled: set[tuple[bytes, int]] | None, now: float) -> bool:
        """Feed each Phase 1 message held for a certificate in ``settled``
        (None: any) to :meth:`handle` again, as if it had just arrived.
        Returns whether one was."""
        done = False
        for task in self.tasks():
            held = task.held
            if held is None or (settled is not None and held[2] and settled.isdisjoint(held[2])):
                continue
            task.held = None  # held again if another certificate is still pending
            data, addr, _keys = held
            self.handle(data, IsakmpHeader.decode(data), addr, now)
            done = True
        return done

    def _decode(
        self, task: Task, data: bytes, header: IsakmpHeader, addr: Address, *, step: str | None = None
    ) -> tuple[Message, bytes] | None:
        """Decrypt and check against the payload rules of the step the task
        expects (``step``: another one, e.g. an MM2 while MM4 is awaited,
        :meth:`other_mm2`).  A message that does not fit is dropped like a malformed
        one (ParseError), so a stray or corrupted copy of an earlier message
        cannot abort the exchange; garbage after decrypting MM5/MM6/AM3 is
        the symptom of different keys, i.e. a pre-shared key mismatch."""
        keys = self.sa.keys
        encrypted = bool(header.flags & Flag.ENCRYPTION)
        try:
            if encrypted:
                if keys is None:
                    raise ParseError("encrypted message before keys exist")
                msg, last = decode_message(data, keys.encr, keys.iv.get_iv(header.message_id), header)
            else:
                msg, last = decode_message(data, header=header)
            check_rules(step or task.step, msg.payloads)
        except (ParseError, Ikev1Error) as exc:
            if encrypted and task.phase1 and keys is not None:
                logger.debug("%s: %s", task.step, exc)
                raise UnverifiedMessage(
                    f"{task.step} from {self.session.peer} could not be decrypted and verified: "
                    "pre-shared key mismatch?"
                ) from None
            if isinstance(exc, Ikev1Error):
                raise ParseError(f"not a valid {step or task.step}: {exc}") from None
            raise
        msg.src = addr
        return msg, last

    def _hold(self, task: Task, data: bytes, addr: Address, pending: RevocationPending) -> None:
        """A Phase 1 message held for the certificates of ``pending``:
        counted in ``stats["auth_pending"]`` and kept on ``task.held`` for
        :meth:`retry_held` (a later copy replaces it)."""
        self.session.stats["auth_pending"] += 1
        task.held = (data, addr, pending.keys)

    def _response(self, task: Task, data: bytes, header: IsakmpHeader, addr: Address, now: float) -> None:
        decoded = None
        try:
            decoded = self._decode(task, data, header, addr)
            if decoded is None:
                return
            msg, last = decoded
            self.session._step(self.sa, f"{task.step} received")
            reply = task.process(msg, now)
        except (ParseError, IntegrityError) as exc:
            self.session._dropped(self.sa, task.step, exc)
            return
        except RevocationPending as exc:
            # MM6/AM2 held while the responder's certificate status is fetched:
            # ignored unaccepted (IV chain untouched), processed again by the
            # session's retry_held once fetched, or our retransmission brings it again
            self._hold(task, data, addr, exc)
            return
        except Ikev1Error as exc:
            if self._tolerate(task, exc, header):
                return
            task.held = None
            self.initiating = None
            self.active = None
            if decoded is not None and decoded[0].encrypted and task.phase1:
                # decrypted fine (e.g. MM6 with an unacceptable identity): keep the
                # IV chain in step so the protected delete that follows decrypts
                self._accepted(decoded[0], decoded[1], addr, now)
            self.session._task_error(self.sa, task, exc, now, answered=True)
            return
        task.held = None  # decided: a kept copy is not processed again
        self._accepted(msg, last, addr, now)
        self.initiating = None
        self.old_responses.append(data)
        self.kept = None
        if reply is not None:
            self._send_request(task, reply, now)
        if task.done:
            if self.active is task:
                self.active = None
            self._finished(task)
            self.session._task_done(self.sa, task, now)
        self.initiate(now)

    def _request(self, task: Task, data: bytes, header: IsakmpHeader, addr: Address, now: float) -> None:
        keys = self.sa.keys
        iv_in = keys.iv.get_iv(0) if keys is not None and task.phase1 and header.flags & Flag.ENCRYPTION else b""
        task_step_in = task.step
        try:
            decoded = self._decode(task, data, header, addr)
            if decoded is None:
                return
            msg, last = decoded
            self.session._step(self.sa, f"{task.step} received")
            reply = task.process(msg, now)
        except (ParseError, IntegrityError) as exc:
            self.session._dropped(self.sa, task.step, exc)
            if not task.phase1 and task.step in ("QM1", "TRANSACTION") and self.passive.get(task.mid) is task:
                # nothing accepted yet: a forged or corrupted QM1 or Transaction (any message ID)
                # must not leave a passive exchange behind, or they pile up
                self.passive.pop(task.mid, None)
                return
            if not task.phase1 or self.sa.keys is not None or task.step not in ("MM1", "AM1"):
                return
            self.passive.pop(task.mid, None)
            self.session._abandon_new(self.sa, now)
            return
        except RevocationPending as exc:
            # MM5/AM3 held while the initiator's certificate status is fetched:
            # dropped unanswered and unaccepted (IV chain untouched), processed
            # again by the session's retry_held once fetched, or decided on the
            # peer's retransmission (MM5) or the AM3 our AM2 retransmission brings
            self._hold(task, data, addr, exc)
            return
        except Ikev1Error as exc:
            if self._tolerate(task, exc, header):
                return
            task.held = None
            self.passive.pop(task.mid, None)
            self.responding.pop(task.mid, None)
            self.session._task_error(self.sa, task, exc, now, answered=False)
            return
        task.held = None  # decided: a kept copy is not processed again
        self._accepted(msg, last, addr, now)
        # the answer to the previous message of this exchange is no longer needed
        old = self.responding.get(task.mid)
        if old is not None:
            old.retransmit = False
            old.next_at = None
        if reply is not None:
            self._send_response(task, reply, data, now, iv_in, task_step_in)
        if task.done:
            self.passive.pop(task.mid, None)
            self._finished(task)
            self.session._task_done(self.sa, task, now)
        self.initiate(now)

    def _accepted(self, msg: Message, last_block: bytes, addr: Address, now: float) -> None:
        """A message passed all checks: move its IV chain on, note liveness."""
        keys = self.sa.keys
        if msg.message_id != 0:
            self._no_reanswer()
        if msg.encrypted and keys is not None and last_block:
            keys.iv.update_iv(msg.message_id, last_block)
            keys.iv.confirm_iv(msg.message_id)
        self.sa.last_inbound = now
        self.session._peer_seen(self.sa, addr, now)

    # ------------------------------------------------------------------ corrupted Phase 1 messages

    def _tolerate(self, task: Task, exc: Ikev1Error, header: IsakmpHeader) -> bool:
        """An encrypted MM5/MM6/AM3 that does not decrypt or verify, or an
        AM2 refused before its HASH_R/SIG_R verified (``task.may_be_corrupted``):
        drop and count the first copy (True), as Libreswan/pluto and
        strongSwan do for the encrypted ones; a flipped bit on the way looks
        exactly like a different pre-shared key, and the peer's
        retransmission tells them apart.  False: fail now."""
        if not task.may_be_corrupted(exc, bool(header.flags & Flag.ENCRYPTION)):
            return False
        task.unverified += 1
        self.session.stats["unverified"] += 1
        if task.unverified > MAX_UNVERIFIED_DROPS:
            return False
        self.session.stats["dropped"] += 1
        task.unverified_dropped()
        if isinstance(exc, UnverifiedMessage):
            why = f"probable authentication failure ({unverified_hint(task)})"
        else:
            # AM2 in clear, refused before its HASH_R/SIG_R was checked
            why = "unacceptable before it could be verified (corrupted?)"
        logger.warning(
            "%s from %s dropped: %s: %s; waiting for a retransmission (cookies %s)",
            task.step, self.session.peer, why, exc, self.sa.cookies,
        )
        return True

    def _no_reanswer(self) -> None:
        """The Phase 1 IV chain went on to other exchanges: MM6 can no longer
        be re-encrypted.  Only the Phase 1 answer (message ID 0) has one."""
        f = self.responding.get(0)
        if f is not None:
            f.reanswer = None

    def _reanswer(self, data: bytes, header: IsakmpHeader, addr: Address, now: float) -> bool:
        """A copy of MM5 that differs from the one we answered, after MM6.
        The one we answered may have been corrupted in a part no hash covers
        (an INITIAL-CONTACT notify, the padding): it decrypted and verified,
        but its last CBC block, the IV of our MM6, is not the initiator's,
        which then cannot decrypt MM6 and resends its MM5.  If this copy
        decrypts with the same IV and verifies, it is the initiator's: MM6 is
        encrypted again under its last block and sent (only while no other
        exchange has used the Phase 1 IV)."""
        f = self.responding.get(0)
        keys = self.sa.keys
        if f is None or f.reanswer is None or keys is None or not header.flags & Flag.ENCRYPTION:
            return False
        if header.exchange != f.exchange:
            return False
        iv_in, reply, step_in = f.reanswer
        task = f.task
        try:
            msg, last = decode_message(data, keys.encr, iv_in, header)
            check_rules(step_in, msg.payloads)
            reverify = getattr(task, "reverify", None)
            if reverify is None:
                return False
            reverify(msg)
        except (ParseError, Ikev1Error) as exc:
            self.session._dropped(self.sa, step_in, exc)
            return True
        logger.info(
            "%s from %s differs from the one answered and verifies: %s encrypted again (cookies %s)",
            step_in, self.session.peer, f.step, self.sa.cookies,
        )
        keys.iv.update_iv(0, last)
        keys.iv.confirm_iv(0)
        f.packets = self.session._send(self.sa, reply, now)
        f.request = data
        self.session.stats["reanswered"] += 1
        self._accepted(msg, b"", addr, now)
        return True
