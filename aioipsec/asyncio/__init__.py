"""The asyncio shell around the sans-I/O core."""

from .client import Server, connect, serve
from .endpoint import Endpoint
from .protocol import IkeError, SessionProtocol
from .sockets import MemoryNetwork

__all__ = ["Endpoint", "IkeError", "MemoryNetwork", "Server", "SessionProtocol", "connect", "serve"]
