"""A byte buffer with ``pull_*`` / ``push_*`` for big-endian integers and
bytes (model: aioquic ``buffer.py``).

One class serves both directions: ``Buffer(data=...)`` reads, ``Buffer()``
writes (it grows as needed).  :meth:`Buffer.push_block` reserves a length
field, lets the caller write the block, then back-patches the length, which is
exactly what the IKE generic payload header needs::

    start = buf.tell()
    buf.push_uint8(next_payload)
    buf.push_uint8(flags)
    with buf.push_block(2, start=start):   # length counts from the header's first octet
        buf.push_bytes(body)

Reading past the end raises :class:`BufferReadError`, a
:class:`~aioipsec.errors.ParseError`, so wire parsers need no bounds checks of
their own.
"""

from __future__ import annotations

import struct
from types import TracebackType

from .errors import LocalProtocolError, ParseError

__all__ = ["Buffer", "BufferReadError", "BufferWriteError"]

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!L")
_U64 = struct.Struct("!Q")


class BufferReadError(ParseError):
    """Tried to read (or seek) past the end of the data."""


class BufferWriteError(LocalProtocolError, ValueError):
    """A value does not fit its field (caller error, never peer input)."""


class Buffer:
    """Read or write big-endian fields at a cursor."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview | None = None) -> None:
        self._data: bytes | bytearray = bytearray() if data is None else bytes(data)
        self._pos = 0

    # ------------------------------------------------------------------ cursor

    @property
    def data(self) -> bytes:
        """All bytes of the buffer (written so far, or given)."""
        return bytes(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int) -> None:
        if not 0 <= pos <= len(self._data):
            raise BufferReadError(f"seek to {pos} outside 0..{len(self._data)}")
        self._pos = pos

    def eof(self) -> bool:
        return self._pos >= len(self._data)

    def remaining(self) -> int:
        """Bytes left after the cursor."""
        return len(self._data) - self._pos

    # ------------------------------------------------------------------ pull

    def _need(self, n: int) -> int:
        pos = self._pos
        if n < 0 or pos + n > len(self._data):
            raise BufferReadError(f"need {n} bytes at offset {pos}, have {len(self._data) - pos}")
        self._pos = pos + n
        return pos

    def pull_bytes(self, n: int) -> bytes:
        pos = self._need(n)
        return bytes(self._data[pos : pos + n])

    def pull_rest(self) -> bytes:
        """Everything after the cursor."""
        return self.pull_bytes(len(self._data) - self._pos)

    def pull_buffer(self, n: int) -> Buffer:
        """The next ``n`` bytes as a buffer of their own (for nested structures)."""
        return Buffer(self.pull_bytes(n))

    # pull_uint8/16/32 and push_uint8 inline _need/_writable: IKE codecs call
    # them hundreds of times per handshake

    def pull_uint8(self) -> int:
        pos = self._pos
        if pos >= len(self._data):
            raise BufferReadError(f"need 1 bytes at offset {pos}, have 0")
        self._pos = pos + 1
        return self._data[pos]

    def pull_uint16(self) -> int:
        pos = self._pos
        try:
            (value,) = _U16.unpack_from(self._data, pos)
        except struct.error:
            raise BufferReadError(f"need 2 bytes at offset {pos}, have {len(self._data) - pos}") from None
        self._pos = pos + 2
        return value  # type: ignore[no-any-return]

    def pull_uint32(self) -> int:
        pos = self._pos
        try:
            (value,) = _U32.unpack_from(self._data, pos)
        except struct.error:
            raise BufferReadError(f"need 4 bytes at offset {pos}, have {len(self._data) - pos}") from None
        self._pos = pos + 4
        return value  # type: ignore[no-any-return]

    def pull_uint64(self) -> int:
        pos = self._need(8)
        return _U64.unpack_from(self._data, pos)[0]  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ push

    def _writable(self) -> bytearray:
        if not isinstance(self._data, bytearray):
            self._data = bytearray(self._data)
        return self._data

    def push_bytes(self, value: bytes | bytearray | memoryview) -> None:
        data = self._writable()
        pos = self._pos
        n = len(value)
        if pos == len(data):  # the usual case: appending at the end
            data += value
        else:
            data[pos : pos + n] = value
        self._pos = pos + n

    def _push_int(self, value: int, size: int) -> None:
        try:
            b = value.to_bytes(size, "big")  # OverflowError when negative or too large
        except OverflowError:
            raise BufferWriteError(f"{value} does not fit in {size} bytes") from None
        self.push_bytes(b)

    def push_uint8(self, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise BufferWriteError(f"{value} does not fit in 1 bytes")
        data = self._data
        if type(data) is not bytearray:
            data = self._writable()
        pos = self._pos
        if pos == len(data):
            data.append(value)
        else:
            data[pos] = value
        self._pos = pos + 1

    def push_uint16(self, value: int) -> None:
        self._push_int(value, 2)

    def push_uint32(self, value: int) -> None:
        self._push_int(value, 4)

    def push_uint64(self, value: int) -> None:
        self._push_int(value, 8)

    def push_block(self, length_size: int, *, start: int | None = None) -> _Block:
        """Reserve a ``length_size``-byte length field here, run the body,
        then write the number of bytes from ``start`` to the end of the block.

        ``start`` defaults to the first byte after the length field (TLS
        style); IKE headers pass the offset of the header's first octet so
        the length includes the header.
        """
        return _Block(self, length_size, start)


class _Block:
    """The context manager :meth:`Buffer.push_block` returns (a small class:
    IKE encodes a block per payload and ``contextlib.contextmanager`` costs
    several times more per use)."""

    __slots__ = ("_buf", "_size", "_start", "_at")

    def __init__(self, buf: Buffer, size: int, start: int | None) -> None:
        self._buf, self._size, self._start = buf, size, start
        self._at = 0

    def __enter__(self) -> None:
        buf = self._buf
        self._at = buf._pos
        buf.push_bytes(bytes(self._size))
        if self._start is None:
            self._start = buf._pos

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            return
        buf, size, at = self._buf, self._size, self._at
        length = buf._pos - (self._start or 0)
        if not 0 <= length < 1 << (8 * size):
            raise BufferWriteError(f"block of {length} bytes does not fit a {size}-byte length")
        buf._writable()[at : at + size] = length.to_bytes(size, "big")
