"""aioipsec: IPsec (IKEv2, IKEv1, ESP, AH) for asyncio on sans-I/O state machines."""

__version__ = "0.1.0"
