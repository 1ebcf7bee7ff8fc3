"""State of one ISAKMP SA and of the IPsec SAs (Child SAs) of a session."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...config import ChildConfig, ConnectionConfig
from ...events import ChildSaInstalled
from ...selectors import TrafficSelector
from ..auth import Identity
from .phase1 import PeerFeatures, Phase1Keys, Phase1Suite

if TYPE_CHECKING:
    from .task_manager import TaskManagerV1


class State(enum.Enum):
    CONNECTING = "connecting"
    ESTABLISHED = "established"
    DELETED = "deleted"


@dataclass(eq=False)
class IsakmpSa:
    """One ISAKMP SA (Phase 1): cookies, negotiated suite, keys, peer
    features, NAT state, lifetimes.  Its exchanges are run by the
    :class:`~aioipsec.ike.v1.task_manager.TaskManagerV1` in ``tm``."""

    cfg: ConnectionConfig
    initiator: bool
    """We sent the first Phase 1 message."""
    spi_i: bytes
    spi_r: bytes = bytes(8)
    aggressive: bool = False
    state: State = State.CONNECTING
    suite: Phase1Suite | None = None
    keys: Phase1Keys | None = None
    features: PeerFeatures = field(default_factory=PeerFeatures)
    local_id: Identity | None = None
    remote_id: Identity | None = None
    nat_local: bool = False
    nat_remote: bool = False
    nat_t: bool = False
    """Floated to port 4500; IPsec SAs are UDP-encapsulated."""
    started_at: float = 0.0
    established_at: float | None = None
    soft_at: float | None = None
    hard_at: float | None = None
    rekeyed_from: bytes | None = None
    """spi_i of the SA this one replaces (Phase 1 reauthentication)."""
    superseded: bool = False
    """A newer ISAKMP SA replaced this one; it only lingers for its delete."""
    initial_contact: bool = False
    """The peer sent INITIAL-CONTACT over this SA."""
    created_no: int = 0
    established_no: int = 0
    """Order of creation/establishment within the session (times may be equal)."""
    candidates: list[ConnectionConfig] = field(default_factory=list)
    """Responder: configurations that could still apply."""
    last_inbound: float = 0.0
    dpd_seq: int = 0
    dpd_pending_since: float | None = None
    dpd_next_at: float | None = None
    finished_mids: deque[int] = field(default_factory=lambda: deque(maxlen=32))
    info_mids: deque[int] = field(default_factory=lambda: deque(maxlen=32))
    """Message IDs of the peer's last protected Informationals: one seen
    again is a replay, which must not move the peer's address."""
    gate: str = ""
    """After Phase 1, what must complete before Quick Mode: ``xauth`` (the
    XAUTH exchanges), ``modecfg`` (our Mode Config pull); empty: nothing."""
    xauth_user: str | None = None
    """The user name that passed XAUTH over this SA."""
    xauth_requests: int = 0
    """XAUTH client: REQUESTs the gateway sent (more than one: it refused a password)."""
    tm: TaskManagerV1 = field(default=None, repr=False)  # type: ignore[assignment]
    """Set by the session right after creation."""

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def cookies(self) -> str:
        return f"{self.spi_i.hex()}/{self.spi_r.hex()}"


@dataclass(eq=False)
class ChildSa:
    """An installed pair of IPsec SAs."""

    name: str
    cfg: ChildConfig
    protocol: str
    """``esp`` or ``ah``."""
    mode: str
    spi_in: int
    spi_out: int
    initiator: bool
    """We initiated the Quick Mode that created it."""
    local_ts: TrafficSelector
    remote_ts: TrafficSelector
    event: ChildSaInstalled
    installed_at: float
    soft_at: float | None
    hard_at: float | None
    unique_id: int
    created_no: int = 0
    rekeying: bool = False
    rekeyed: bool = False
    """Replaced by a newer SA (kept until deleted)."""
