"""Deterministic CBOR (specs/chat.md, "Conventions"): encodings, refusals, round trips."""

from __future__ import annotations

import enum
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.chat.core import cbor
from p2pchat.errors import DecodeError

# One table drives both directions: dumps(value) == hex and loads(hex) == value.
VALID: Final[list[tuple[Any, str]]] = [
    (0, "00"),
    (1, "01"),
    (23, "17"),
    (24, "1818"),
    (255, "18ff"),
    (256, "190100"),
    (65535, "19ffff"),
    (65536, "1a00010000"),
    (2**32 - 1, "1affffffff"),
    (2**32, "1b0000000100000000"),
    (2**64 - 1, "1bffffffffffffffff"),
    (-1, "20"),
    (-24, "37"),
    (-25, "3818"),
    (-256, "38ff"),
    (-257, "390100"),
    (-(2**64), "3bffffffffffffffff"),
    (b"", "40"),
    (b"\x01\x02\x03", "43010203"),
    (bytes(24), "5818" + "00" * 24),
    ("", "60"),
    ("a", "6161"),
    ("ü", "62c3bc"),
    ("水", "63e6b0b4"),
    ("x" * 24, "7818" + "78" * 24),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    ([], "80"),
    ([1, [2, 3]], "8201820203"),
    (list(range(25)), "9819" + "".join(f"{i:02x}" for i in range(24)) + "1818"),
    ({}, "a0"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    # Keys sort by their encoding: shorter first, then bytewise.
    ({"aa": 2, "b": 1}, "a261620162616102"),
    ({"b": 1, "a": 2}, "a2616102616201"),
    ({"B": 0, "a": 0}, "a2614200616100"),
    ({"k": {"z": None, "y": b"\xff"}}, "a1616ba2617941ff617af6"),
    ([[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]], "81" * 16 + "80"),  # 16 containers below the top
]


@pytest.mark.parametrize(("value", "encoded"), VALID)
def test_dumps_writes_the_deterministic_encoding(value: Any, encoded: str) -> None:
    assert cbor.dumps(value).hex() == encoded


@pytest.mark.parametrize(("value", "encoded"), VALID)
def test_loads_reads_the_deterministic_encoding(value: Any, encoded: str) -> None:
    decoded = cbor.loads(bytes.fromhex(encoded), max_size=1024)
    assert decoded == value
    assert type(decoded) is type(value)


# Bytes that loads must refuse, whatever they would otherwise decode to.
REFUSED: Final[list[tuple[str, str]]] = [
    # floats, in every width, and simple values other than false/true/null
    ("f93c00", "half float 1.0"),
    ("fa3f800000", "single float 1.0"),
    ("fb3ff0000000000000", "double float 1.0"),
    ("f7", "undefined"),
    ("f0", "simple value 16"),
    ("f820", "simple value 32"),
    # tags, known to cbor2 or not
    ("c074323031332d30332d32315432303a30343a30305a", "tag 0 date string"),
    ("c11a514b67b0", "tag 1 epoch time"),
    ("c24101", "tag 2 bignum 1"),
    ("c249010000000000000000", "tag 2 bignum 2**64"),
    ("c34100", "tag 3 negative bignum"),
    ("d81e820102", "tag 30 rational"),
    ("d9010283010203", "tag 258 set"),
    ("d81c81d81d00", "tags 28/29 shared self-reference"),
    ("d9d9f700", "tag 55799 self-described"),
    ("d82a40", "tag 42"),
    ("c6f5", "tag 6"),
    # indefinite lengths
    ("5f4101ff", "indefinite byte string"),
    ("7f6161ff", "indefinite text string"),
    ("9fff", "indefinite array"),
    ("bfff", "indefinite map"),
    ("1f", "indefinite unsigned integer"),
    ("ff", "lone break"),
    # duplicate keys
    ("a2616101616102", "duplicate key"),
    ("a2616101616101", "duplicate key and value"),
    # non-canonical integers and lengths
    ("1817", "23 in two bytes"),
    ("190017", "23 in three bytes"),
    ("1a00000017", "23 in five bytes"),
    ("1b0000000000000017", "23 in nine bytes"),
    ("1900ff", "255 in three bytes"),
    ("3817", "-24 in two bytes"),
    ("580141", "byte string length in two bytes"),
    ("780161", "text string length in two bytes"),
    ("980100", "array length in two bytes"),
    ("b801616100", "map length in two bytes"),
    # map order
    ("a2616201616102", "keys b, a"),
    ("a262616101616202", "keys aa, b"),
    # trailing bytes
    ("0000", "two integers"),
    ("a000", "map then integer"),
    ("80f6", "array then null"),
    # non-text keys
    ("a10101", "integer key"),
    ("a1410101", "byte string key"),
    ("a1f600", "null key"),
    ("a1800100", "array key"),
    # malformed
    ("", "empty"),
    ("19", "truncated head"),
    ("1901", "truncated integer"),
    ("6261", "truncated text"),
    ("8201", "truncated array"),
    ("a16161", "map without value"),
    ("62c328", "invalid UTF-8"),
    ("1c", "reserved additional information"),
    ("5bffffffffffffffff", "byte string of 2**64 - 1 bytes"),
    ("9bffffffffffffffff", "array of 2**64 - 1 items"),
    # too deep: 17 containers below the top
    ("81" * 17 + "80", "arrays nested 18 deep"),
    ("a16161" * 17 + "a0", "maps nested 18 deep"),
]


@pytest.mark.parametrize(("encoded", "what"), REFUSED)
def test_loads_refuses(encoded: str, what: str) -> None:
    with pytest.raises(DecodeError):
        cbor.loads(bytes.fromhex(encoded), max_size=1024)


def test_loads_refuses_values_over_max_size() -> None:
    data = cbor.dumps(b"x" * 100)
    assert cbor.loads(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(DecodeError) as info:
        cbor.loads(data, max_size=len(data) - 1)
    assert info.value.hint == "too large"


def test_loads_accepts_bytearray_and_memoryview() -> None:
    data = cbor.dumps({"a": [1, b"2"]})
    assert cbor.loads(bytearray(data), max_size=64) == {"a": [1, b"2"]}
    assert cbor.loads(memoryview(data), max_size=64) == {"a": [1, b"2"]}


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        float("nan"),
        2**64,
        -(2**64) - 1,
        {1: 2},
        {b"k": 1},
        (1, 2),
        {1, 2},
        bytearray(b"x"),
        object(),
        [[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]],  # 17 containers below the top
        {"a": [1.0]},
        [2**64],
        [1, -(2**64) - 1],
        {"a": 2**64},
        {"a": {"b": [1.0]}},
    ],
)
def test_dumps_refuses_values_outside_the_data_model(value: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message varies with the type)
        cbor.dumps(value)


def test_dumps_takes_subclasses_of_the_model_types_as_their_base() -> None:
    class Kind(enum.IntEnum):
        ONE = 1

    class Name(str):
        pass

    assert cbor.dumps([Kind.ONE, {"k": Name("x")}]) == cbor.dumps([1, {"k": "x"}])
    with pytest.raises(ValueError, match="map keys"):
        cbor.dumps({Name("x"): 1} | {1: 2})


# -- properties ------------------------------------------------------------------------------------

_LEAVES: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.binary(max_size=40),
    st.text(max_size=20),
)


def _values(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return _LEAVES
    inner = _values(depth - 1)
    return st.one_of(
        _LEAVES,
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    )


VALUES: Final = _values(4)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_round_trip_over_the_data_model(value: Any) -> None:
    data = cbor.dumps(value)
    decoded = cbor.loads(data, max_size=len(data))
    assert decoded == value
    assert cbor.dumps(decoded) == data


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.integers(0, 3), min_size=2, max_size=6))
def test_map_encoding_ignores_insertion_order(value: dict[str, int]) -> None:
    reversed_order = dict(reversed(list(value.items())))
    assert cbor.dumps(reversed_order) == cbor.dumps(value)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        value = cbor.loads(data, max_size=64)
    except DecodeError:
        return
    assert cbor.dumps(value) == data  # accepted only in its one encoding


@settings(max_examples=400, deadline=None)
@given(VALUES, st.data())
def test_corrupted_encodings_raise_only_decode_error(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(cbor.dumps(value))
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut]), bytes(encoded) + b"\x00"):
        try:
            decoded = cbor.loads(candidate, max_size=4096)
        except DecodeError:
            continue
        assert cbor.dumps(decoded) == candidate
