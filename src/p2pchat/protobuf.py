"""A small protobuf (proto2/proto3 wire format) reader and writer.

libp2p's messages (public keys, the Noise handshake payload, identify) are tiny
and flat, so instead of generated code we read a message into a list of
``(field_number, wire_type, value)`` and write one from typed helpers. Only the
wire types libp2p uses are supported: VARINT (0), I64 (1), LEN (2) and I32 (5).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from .errors import DecodeError
from .varint import decode_uvarint, encode_uvarint

WT_VARINT: Final = 0
WT_I64: Final = 1
WT_LEN: Final = 2
WT_I32: Final = 5

Field = tuple[int, int, int | bytes]


def iter_fields(data: bytes | bytearray | memoryview) -> Iterator[Field]:
    """Yield ``(field_number, wire_type, value)`` for each field in ``data``.

    VARINT values are ints, LEN values are bytes, I64/I32 values are ints
    (little-endian, unsigned).

    Raises:
        DecodeError: malformed key, truncated value or an unsupported wire type.
    """
    data = bytes(data)
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = decode_uvarint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError("protobuf field number 0", hint="bad protobuf field")
        value: int | bytes
        if wire_type == WT_VARINT:
            value, pos = decode_uvarint(data, pos)
        elif wire_type == WT_LEN:
            length, pos = decode_uvarint(data, pos)
            if length > end - pos:
                raise DecodeError("truncated protobuf field", hint="truncated protobuf")
            value = data[pos : pos + length]
            pos += length
        elif wire_type == WT_I64:
            if end - pos < 8:
                raise DecodeError("truncated protobuf field", hint="truncated protobuf")
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire_type == WT_I32:
            if end - pos < 4:
                raise DecodeError("truncated protobuf field", hint="truncated protobuf")
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise DecodeError(f"unsupported protobuf wire type {wire_type}", hint="bad protobuf")
        yield number, wire_type, value


def decode_message(
    data: bytes | bytearray | memoryview, schema: dict[int, int]
) -> dict[int, list[int | bytes]]:
    """Decode ``data`` into ``{field_number: [values...]}`` checking wire types.

    ``schema`` maps each known field number to its expected wire type; unknown
    fields are skipped, as protobuf requires.

    Raises:
        DecodeError: malformed bytes or a known field with the wrong wire type.
    """
    out: dict[int, list[int | bytes]] = {}
    for number, wire_type, value in iter_fields(data):
        expected = schema.get(number)
        if expected is None:
            continue
        if expected != wire_type:
            raise DecodeError(
                f"protobuf field {number} has wire type {wire_type}, expected {expected}",
                hint="bad protobuf field type",
            )
        out.setdefault(number, []).append(value)
    return out


def encode_varint_field(number: int, value: int) -> bytes:
    """Encode a VARINT field."""
    return encode_uvarint(number << 3 | WT_VARINT) + encode_uvarint(value)


def encode_bytes_field(number: int, value: bytes) -> bytes:
    """Encode a LEN field (bytes, string or embedded message)."""
    return encode_uvarint(number << 3 | WT_LEN) + encode_uvarint(len(value)) + value
