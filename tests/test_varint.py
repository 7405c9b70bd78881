"""Unsigned varints and the protobuf reader."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.errors import DecodeError
from p2pchat.protobuf import (
    WT_LEN,
    WT_VARINT,
    decode_message,
    encode_bytes_field,
    encode_varint_field,
    iter_fields,
)
from p2pchat.varint import decode_uvarint, encode_uvarint, try_decode_uvarint

# multiformats/unsigned-varint README examples
VECTORS = [
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (255, "ff01"),
    (300, "ac02"),
    (16384, "808001"),
    ((1 << 63) - 1, "ffffffffffffffff7f"),
]


@pytest.mark.parametrize(("value", "hexed"), VECTORS)
def test_uvarint_vectors(value: int, hexed: str) -> None:
    assert encode_uvarint(value) == bytes.fromhex(hexed)
    assert decode_uvarint(bytes.fromhex(hexed)) == (value, len(hexed) // 2)


@pytest.mark.parametrize(
    "hexed",
    ["", "80", "8000", "ff00", "ffffffffffffffffff01", "80808080808080808001"],
)
def test_bad_uvarints_raise_decode_error(hexed: str) -> None:
    with pytest.raises(DecodeError):
        decode_uvarint(bytes.fromhex(hexed))


def test_try_decode_waits_for_more_bytes() -> None:
    assert try_decode_uvarint(b"\x80") is None
    assert try_decode_uvarint(b"\x80\x01") == (128, 2)
    with pytest.raises(DecodeError):
        try_decode_uvarint(b"\xff" * 9)


def test_encode_refuses_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_uvarint(-1)
    with pytest.raises(ValueError, match="out of range"):
        encode_uvarint(1 << 63)


@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_uvarint_round_trips(value: int) -> None:
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded) == (value, len(encoded))


def test_protobuf_fields_round_trip() -> None:
    data = encode_varint_field(1, 1) + encode_bytes_field(2, b"abc") + encode_bytes_field(2, b"")
    assert list(iter_fields(data)) == [(1, WT_VARINT, 1), (2, WT_LEN, b"abc"), (2, WT_LEN, b"")]
    assert decode_message(data, {1: WT_VARINT, 2: WT_LEN}) == {1: [1], 2: [b"abc", b""]}


def test_protobuf_wrong_wire_type_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_message(encode_varint_field(2, 5), {2: WT_LEN})


@given(st.binary(max_size=100))
def test_protobuf_reader_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        list(iter_fields(data))
