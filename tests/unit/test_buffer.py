import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioipsec.buffer import Buffer, BufferReadError, BufferWriteError
from aioipsec.errors import ParseError


def test_push_pull_integers_big_endian() -> None:
    buf = Buffer()
    buf.push_uint8(0x01)
    buf.push_uint16(0x0203)
    buf.push_uint32(0x04050607)
    buf.push_uint64(0x08090A0B0C0D0E0F)
    buf.push_bytes(b"xyz")
    assert buf.data == bytes(range(1, 16)) + b"xyz"
    assert buf.tell() == 18

    rd = Buffer(buf.data)
    assert rd.pull_uint8() == 1
    assert rd.pull_uint16() == 0x0203
    assert rd.pull_uint32() == 0x04050607
    assert rd.pull_uint64() == 0x08090A0B0C0D0E0F
    assert not rd.eof()
    assert rd.pull_bytes(3) == b"xyz"
    assert rd.eof()


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_read_past_end_raises_parse_error(size: int) -> None:
    rd = Buffer(bytes(size - 1))
    pull = {1: rd.pull_uint8, 2: rd.pull_uint16, 4: rd.pull_uint32, 8: rd.pull_uint64}[size]
    with pytest.raises(BufferReadError) as exc:
        pull()
    assert isinstance(exc.value, ParseError)
    assert rd.tell() == 0  # a failed read does not move the cursor


def test_pull_bytes_past_end_and_negative() -> None:
    rd = Buffer(b"abc")
    with pytest.raises(BufferReadError):
        rd.pull_bytes(4)
    with pytest.raises(BufferReadError):
        rd.pull_bytes(-1)
    assert rd.pull_bytes(3) == b"abc"
    assert rd.pull_bytes(0) == b""


def test_seek_tell_and_bounds() -> None:
    rd = Buffer(b"\x00\x01\x02\x03")
    rd.seek(2)
    assert rd.pull_uint16() == 0x0203
    rd.seek(0)
    assert rd.pull_uint8() == 0
    assert rd.remaining() == 3
    with pytest.raises(BufferReadError):
        rd.seek(5)
    with pytest.raises(BufferReadError):
        rd.seek(-1)


def test_pull_buffer_and_rest() -> None:
    rd = Buffer(b"\x00\x02abXYZ")
    n = rd.pull_uint16()
    sub = rd.pull_buffer(n)
    assert sub.pull_bytes(2) == b"ab" and sub.eof()
    assert rd.pull_rest() == b"XYZ"
    assert rd.eof()


def test_push_value_out_of_range() -> None:
    buf = Buffer()
    with pytest.raises(BufferWriteError):
        buf.push_uint8(256)
    with pytest.raises(BufferWriteError):
        buf.push_uint16(-1)
    with pytest.raises(ValueError):  # BufferWriteError is also a ValueError
        buf.push_uint32(1 << 32)


def test_push_block_default_counts_after_length_field() -> None:
    buf = Buffer()
    buf.push_uint8(0xAA)
    with buf.push_block(2):
        buf.push_bytes(b"hello")
    assert buf.data == b"\xaa\x00\x05hello"


def test_push_block_ike_generic_header_counts_from_start() -> None:
    buf = Buffer()
    buf.push_bytes(b"PREFIX")
    start = buf.tell()
    buf.push_uint8(40)  # next payload
    buf.push_uint8(0)  # flags
    with buf.push_block(2, start=start):
        buf.push_bytes(b"\x01" * 10)
    assert buf.data == b"PREFIX" + bytes([40, 0, 0, 14]) + b"\x01" * 10


def test_push_block_nested_and_overflow() -> None:
    buf = Buffer()
    with buf.push_block(1):
        with buf.push_block(1):
            buf.push_bytes(b"ab")
    assert buf.data == b"\x03\x02ab"
    big = Buffer()
    with pytest.raises(BufferWriteError):
        with big.push_block(1):
            big.push_bytes(bytes(256))


def test_seek_back_and_overwrite() -> None:
    buf = Buffer()
    buf.push_uint32(0)
    buf.push_bytes(b"tail")
    buf.seek(0)
    buf.push_uint32(0xDEADBEEF)
    assert buf.data == b"\xde\xad\xbe\xef" + b"tail"


@given(st.lists(st.tuples(st.sampled_from([1, 2, 4, 8]), st.integers(min_value=0))))
def test_roundtrip_integers(items: list[tuple[int, int]]) -> None:
    buf = Buffer()
    values = [(size, v % (1 << (8 * size))) for size, v in items]
    push = {1: buf.push_uint8, 2: buf.push_uint16, 4: buf.push_uint32, 8: buf.push_uint64}
    for size, v in values:
        push[size](v)
    assert len(buf) == sum(s for s, _ in values)
    rd = Buffer(buf.data)
    pull = {1: rd.pull_uint8, 2: rd.pull_uint16, 4: rd.pull_uint32, 8: rd.pull_uint64}
    assert [pull[size]() for size, _ in values] == [v for _, v in values]
    assert rd.eof()
