"""Deterministic CBOR (RFC 8949 §4.2.1) as the chat protocol uses it (specs/chat.md).

:func:`dumps` writes the core deterministic encoding. :func:`loads` accepts only what
:func:`dumps` would write for the data model we use: integers, byte and text strings, arrays, maps
with text keys, booleans and null, nested at most 16 deep, with no tags, no floats, no
indefinite lengths and no duplicate keys; anything else is a :class:`~p2pchat.errors.DecodeError`.
Requiring the canonical form means every value has exactly one encoding, so hashes over
re-encoded values are stable.
"""

from __future__ import annotations

from typing import Any, Final

import cbor2

from ...errors import DecodeError

MAX_DEPTH: Final = 16

CborValue = Any


def dumps(value: CborValue) -> bytes:
    """The deterministic encoding of ``value``.

    Raises:
        ValueError: ``value`` holds a type outside the data model.
    """
    _check(value, 0)
    return cbor2.dumps(value, canonical=True)


def _refuse_tag(decoder: object, tag: object) -> object:
    raise DecodeError("CBOR tags are not allowed", hint="cbor tag")


def loads(data: bytes | bytearray | memoryview, *, max_size: int) -> CborValue:
    """Decode one deterministic CBOR value of at most ``max_size`` bytes.

    Raises:
        DecodeError: too large, malformed, trailing bytes, a forbidden type, or not canonical.
    """
    raw = bytes(data)
    if len(raw) > max_size:
        raise DecodeError(f"CBOR value of {len(raw)} bytes exceeds {max_size}", hint="too large")
    try:
        value = cbor2.loads(
            raw,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            max_depth=MAX_DEPTH,
            tag_hook=_refuse_tag,
        )
    except DecodeError:
        raise
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise DecodeError(f"malformed CBOR: {exc}", hint="malformed cbor") from exc
    try:
        _check(value, 0)
    except ValueError as exc:
        raise DecodeError(str(exc), hint="cbor type") from exc
    if cbor2.dumps(value, canonical=True) != raw:
        raise DecodeError("CBOR is not in deterministic encoding", hint="non-canonical cbor")
    return value


#: Types that need no further check (exact types: a subclass goes the slow way).
_LEAVES: Final = frozenset({type(None), bool, bytes, str})
_INT_MIN: Final = -(2**64)
_INT_MAX: Final = 2**64


def _check(value: CborValue, depth: int) -> None:
    """Raise ValueError unless ``value`` is in the data model (see the module's docstring).

    The common exact types are dispatched by ``type`` and the leaves of a list or map are
    checked in place, without a call each: a packet holds hundreds of values, and this runs on
    every encode and decode."""
    if depth > MAX_DEPTH:
        raise ValueError("CBOR nested too deeply")
    kind = type(value)
    if kind in _LEAVES:
        return
    if kind is int:
        if not _INT_MIN <= value < _INT_MAX:
            raise ValueError("integer out of CBOR range")
        return
    if kind is list:
        for item in value:
            item_kind = type(item)
            if item_kind in _LEAVES or (item_kind is int and _INT_MIN <= item < _INT_MAX):
                continue
            _check(item, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise ValueError("CBOR map keys must be text")
            item_kind = type(item)
            if item_kind in _LEAVES or (item_kind is int and _INT_MIN <= item < _INT_MAX):
                continue
            _check(item, depth + 1)
        return
    _check_slow(value, depth)


def _check_slow(value: CborValue, depth: int) -> None:
    """:func:`_check` for subclasses of the model's types (e.g. an ``IntEnum``)."""
    if isinstance(value, bool | bytes | str):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value < _INT_MAX:
            raise ValueError("integer out of CBOR range")
        return
    if isinstance(value, list):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("CBOR map keys must be text")  # noqa: TRY004 (a value error)
            _check(item, depth + 1)
        return
    raise ValueError(f"type {type(value).__name__} is not allowed in CBOR here")
