"""Unsigned varints (LEB128) as multiformats uses them.

multiformats/unsigned-varint: at most 9 bytes (63 bits), and minimal encoding is
required, so ``0x80 0x00`` is rejected where ``0x00`` is meant.
"""

from __future__ import annotations

from typing import Final

from .errors import DecodeError

MAX_VARINT_BYTES: Final = 9  # unsigned-varint spec: "at most 9 bytes"
MAX_VARINT_VALUE: Final = (1 << 63) - 1


def encode_uvarint(value: int) -> bytes:
    """Encode ``value`` as a minimal unsigned varint.

    Raises:
        ValueError: ``value`` is negative or needs more than 63 bits.
    """
    if value < 0 or value > MAX_VARINT_VALUE:
        raise ValueError(f"uvarint out of range: {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode one uvarint from ``data`` at ``offset``.

    Returns ``(value, new_offset)``.

    Raises:
        DecodeError: the varint is truncated, longer than 9 bytes or not minimal.
    """
    value = 0
    shift = 0
    pos = offset
    end = len(data)
    for i in range(MAX_VARINT_BYTES):
        if pos >= end:
            raise DecodeError("truncated uvarint", hint="truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise DecodeError("uvarint is not minimally encoded", hint="non-minimal varint")
            return value, pos
        shift += 7
    raise DecodeError("uvarint longer than 9 bytes", hint="varint too long")


def try_decode_uvarint(
    data: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[int, int] | None:
    """Like :func:`decode_uvarint`, but return ``None`` if more bytes are needed.

    For stream framers: a prefix that could still become a valid varint is not an error.

    Raises:
        DecodeError: the bytes present can never form a valid varint.
    """
    end = min(len(data), offset + MAX_VARINT_BYTES)
    for pos in range(offset, end):
        if data[pos] < 0x80:
            return decode_uvarint(data, offset)
    if len(data) - offset >= MAX_VARINT_BYTES:
        raise DecodeError("uvarint longer than 9 bytes", hint="varint too long")
    return None
