"""Exception hierarchy.

``LocalProtocolError`` is raised for misuse by the caller (wrong state, bad
argument).  ``RemoteProtocolError`` and its ``NotifyError`` subclasses describe
bad input from the peer; they never escape ``receive_datagram`` of a session:
the session answers with the notify named by the class and emits an event.
Only the notifies some task raises have a class here; add one with the code
that raises it.
"""

from __future__ import annotations


class IpsecError(Exception):
    """Base class of every aioipsec exception."""


class LocalProtocolError(IpsecError):
    """The caller used an API in a way that is not allowed."""


class ConfigError(IpsecError, ValueError):
    """A configuration value is invalid.  ``path`` names the key, e.g.
    ``connections.hq.children.lan.mode``."""

    def __init__(self, path: str, reason: str, *, file: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.file = file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{path}: {reason}" if path else f"{where}{reason}")


class AlgorithmError(ConfigError):
    """An algorithm is unknown, or weak and not explicitly allowed."""


class RemoteProtocolError(IpsecError):
    """The peer sent something we cannot accept."""


class ParseError(RemoteProtocolError):
    """Bytes from the wire could not be decoded."""


class IntegrityError(RemoteProtocolError):
    """A MAC/ICV/AEAD tag did not verify."""


class NotifyError(RemoteProtocolError):
    """Peer error answered with a notify; ``notify_type`` is the IKEv2 type."""

    notify_type: int = 0

    def __init__(self, message: str = "", data: bytes = b"") -> None:
        super().__init__(message or type(self).__name__)
        self.data = data


class UnsupportedCriticalPayload(NotifyError):
    notify_type = 1


class InvalidMajorVersion(NotifyError):
    notify_type = 5


class InvalidSyntax(NotifyError):
    notify_type = 7


class NoProposalChosen(NotifyError):
    notify_type = 14


class InvalidKePayload(NotifyError):
    notify_type = 17

    def __init__(self, message: str = "", group: int = 0) -> None:
        super().__init__(message, group.to_bytes(2, "big"))
        self.group = group


class AuthenticationFailed(NotifyError):
    notify_type = 24


class TsUnacceptable(NotifyError):
    notify_type = 38


class TemporaryFailure(NotifyError):
    notify_type = 43


class ChildSaNotFound(NotifyError):
    notify_type = 44


class Redirect(NotifyError):
    """Not a peer error: a gateway answers IKE_SA_INIT with REDIRECT (RFC 5685
    §4; ``redirect_init``).  ``data`` is the redirect data (gateway and Ni)."""

    notify_type = 16407

    def __init__(self, gateway: str, data: bytes) -> None:
        super().__init__(f"redirected to {gateway}", data)
        self.gateway = gateway
