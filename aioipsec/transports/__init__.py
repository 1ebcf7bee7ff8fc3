"""Transports: where cleartext packets come from (``InnerTransport``: TUN,
in-memory pipe, an application) and where protected datagrams go
(``OuterTransport``: UDP 4500, raw ESP, in-memory link).

Built-ins register by name (``memory``; ``udp`` when its module exists);
plugins register under the entry-point group ``aioipsec.transports`` and load
lazily.  An explicit transport object always wins over a name.
"""

from .base import (
    ENTRY_POINT_GROUP,
    InnerTransport,
    OuterTransport,
    available_transports,
    get_transport,
    register_transport,
    unregister_transport,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "InnerTransport",
    "OuterTransport",
    "available_transports",
    "get_transport",
    "register_transport",
    "unregister_transport",
]
