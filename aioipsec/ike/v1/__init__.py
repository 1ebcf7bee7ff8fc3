"""IKEv1 (ISAKMP Main Mode, Aggressive Mode, Quick Mode ± PFS) as a sans-I/O
session: :class:`~aioipsec.ike.v1.session.IkeSessionV1`."""

from .session import IkeSessionV1

__all__ = ["IkeSessionV1"]
