"""Frames and envelopes of ``/p2pchat/1.0.0`` (specs/chat.md §1, §2), without I/O.

Theory of operation
-------------------
A stream carries frames, ``uvarint(length) || CBOR map``, with ``length`` at most 1 MiB.
:func:`encode_frame` writes one; a :class:`FrameReader` takes the bytes read from a stream
(:meth:`~FrameReader.receive_data`, :meth:`~FrameReader.receive_eof`) and hands out each complete
frame's map (:meth:`~FrameReader.next_event`), or :data:`NEED_DATA`. It refuses a length prefix
as soon as it is too large, so it never buffers more than one frame plus the last chunk fed.

Each frame is an envelope: a :class:`Query` (``code``, ``rid``, ``body``) or a :class:`Response`
(``code`` = query code + ``"R"``, ``rid``, ``ok``, ``body``, and ``reason`` when ``ok`` is
false). :func:`parse_envelope` tells them apart by the code (response codes end in ``"R"``) and
checks every rule of §2. Envelopes check their fields on construction too, raising
:class:`~p2pchat.errors.LocalProtocolError`, so we never send what we would refuse.

Everything a peer can get wrong raises :class:`FrameError` (a
:class:`~p2pchat.errors.DecodeError`), whose ``hint`` names the rule; the adapter logs it and
closes the stream.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import attrs

from ...errors import DecodeError, LocalProtocolError
from ...protocols._need_data import NEED_DATA, NeedData
from ...varint import encode_uvarint, try_decode_uvarint
from . import cbor

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_BUFFERED_PER_PEER",
    "MAX_CODE_LENGTH",
    "MAX_FRAME_SIZE",
    "MAX_IN_FLIGHT",
    "MAX_REASON_SIZE",
    "MAX_STREAMS_PER_PEER",
    "NEED_DATA",
    "PROTOCOL_ID",
    "RESPONSE_SUFFIX",
    "RID_LIMIT",
    "Envelope",
    "FrameError",
    "FrameReader",
    "NeedData",
    "Query",
    "Reason",
    "Response",
    "encode_envelope",
    "encode_frame",
    "is_query_code",
    "is_response_code",
    "parse_envelope",
    "response_code",
]

PROTOCOL_ID: Final = "/p2pchat/1.0.0"  # §1
MAX_FRAME_SIZE: Final = 1024 * 1024  # §1: the CBOR map of one frame, in bytes
MAX_CODE_LENGTH: Final = 16  # §2: codes are 1 to 16 ASCII letters/digits
RESPONSE_SUFFIX: Final = "R"  # §2: response code = query code + "R"
RID_LIMIT: Final = 2**32  # §2: rid is an unsigned integer below 2**32
MAX_REASON_SIZE: Final = 256  # §2: reason, in UTF-8 bytes
MAX_IN_FLIGHT: Final = 32  # §2: queries in flight per peer
MAX_STREAMS_PER_PEER: Final = 8  # §1 Limits: inbound chat streams open at once per peer
IDLE_TIMEOUT: Final = 60.0  # §1 Limits: seconds an inbound stream may idle before it is reset
#: §1 Limits: bytes of unfinished frames buffered for one peer, over all its inbound streams.
MAX_BUFFERED_PER_PEER: Final = 4 * 1024 * 1024

_CODE_RE: Final = re.compile(r"[A-Za-z0-9]{1,16}")
_QUERY_KEYS: Final = frozenset({"code", "rid", "body"})
_RESPONSE_KEYS: Final = frozenset({"code", "rid", "ok", "body"})


class FrameError(DecodeError):
    """A frame or envelope breaks §1/§2. ``hint`` names the rule (for the close reason)."""


class Reason(enum.StrEnum):
    """The negative reasons of §2. Applications may answer with other text as well."""

    UNKNOWN_GROUP = "unknown group"
    NOT_A_MEMBER = "not a member"
    NOT_ALLOWED = "not allowed"
    BAD_SIGNATURE = "bad signature"
    BAD_HASH = "bad hash"
    BAD_CERTIFICATE = "bad certificate"
    STALE_EPOCH = "stale epoch"
    FUTURE_EPOCH = "future epoch"
    BAD_TIMESTAMP = "bad timestamp"
    MISSING_PARENTS = "missing parents"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
    UNKNOWN_CODE = "unknown code"
    TOO_MANY_QUERIES = "too many queries"
    INTERNAL_ERROR = "internal error"


# -- codes --------------------------------------------------------------------------------------


def is_query_code(code: object) -> bool:
    """True if ``code`` is a query code: 1 to 15 ASCII letters/digits, not ending in ``"R"``
    (so that its response code has at most 16)."""
    return (
        isinstance(code, str)
        and _CODE_RE.fullmatch(code) is not None
        and len(code) < MAX_CODE_LENGTH
        and not code.endswith(RESPONSE_SUFFIX)
    )


def is_response_code(code: object) -> bool:
    """True if ``code`` is a response code: a query code followed by ``"R"``."""
    return (
        isinstance(code, str)
        and code.endswith(RESPONSE_SUFFIX)
        and is_query_code(code[: -len(RESPONSE_SUFFIX)])
    )


def response_code(code: str) -> str:
    """The response code of query code ``code``.

    Raises:
        LocalProtocolError: ``code`` is not a query code.
    """
    if not is_query_code(code):
        raise LocalProtocolError(f"not a query code: {code!r}", hint="bad code")
    return code + RESPONSE_SUFFIX


def _check_rid(rid: object) -> None:
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid < RID_LIMIT:
        raise LocalProtocolError(f"rid must be an integer in [0, 2**32): {rid!r}", hint="bad rid")


def _check_body(body: object) -> None:
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise LocalProtocolError("body must be a map with text keys", hint="bad body")


def _check_reason(reason: object) -> None:
    if not isinstance(reason, str) or len(reason.encode()) > MAX_REASON_SIZE:
        raise LocalProtocolError(
            f"reason must be text of at most {MAX_REASON_SIZE} bytes", hint="bad reason"
        )


# -- envelopes ----------------------------------------------------------------------------------


@attrs.frozen
class Query:
    """A query envelope (§2): ``{"code", "rid", "body"}``.

    Raises (on construction):
        LocalProtocolError: a field breaks §2.
    """

    code: str
    rid: int
    body: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not is_query_code(self.code):
            raise LocalProtocolError(f"not a query code: {self.code!r}", hint="bad code")
        _check_rid(self.rid)
        _check_body(self.body)

    def to_map(self) -> dict[str, Any]:
        """The envelope as a CBOR map."""
        return {"code": self.code, "rid": self.rid, "body": self.body}

    @classmethod
    def from_map(cls, value: object) -> Query:
        """The query in ``value``, a decoded frame.

        Raises:
            FrameError: ``value`` is not a valid query envelope.
        """
        m = _envelope_map(value, _QUERY_KEYS, frozenset())
        return _construct(cls, m["code"], m["rid"], m["body"])

    def answer(self, body: dict[str, Any]) -> Response:
        """The affirmative response to this query.

        Raises:
            LocalProtocolError: ``body`` is not a map with text keys.
        """
        return Response(response_code(self.code), self.rid, True, body)

    def refuse(self, reason: str, body: dict[str, Any] | None = None) -> Response:
        """The negative response to this query.

        Raises:
            LocalProtocolError: ``reason`` is longer than 256 bytes, or ``body`` is not a map.
        """
        return Response(response_code(self.code), self.rid, False, body or {}, reason)


@attrs.frozen
class Response:
    """A response envelope (§2): ``{"code", "rid", "ok", "body"}``, plus ``"reason"`` exactly
    when ``ok`` is false.

    Raises (on construction):
        LocalProtocolError: a field breaks §2.
    """

    code: str
    rid: int
    ok: bool
    body: dict[str, Any] = attrs.field(factory=dict)
    reason: str | None = None

    def __attrs_post_init__(self) -> None:
        if not is_response_code(self.code):
            raise LocalProtocolError(f"not a response code: {self.code!r}", hint="bad code")
        _check_rid(self.rid)
        if not isinstance(self.ok, bool):
            raise LocalProtocolError("ok must be a boolean", hint="bad ok")
        _check_body(self.body)
        if self.ok:
            if self.reason is not None:
                raise LocalProtocolError("an affirmative response has no reason", hint="bad reason")
        else:
            _check_reason(self.reason)

    @property
    def query_code(self) -> str:
        """The code of the query this answers."""
        return self.code[: -len(RESPONSE_SUFFIX)]

    def to_map(self) -> dict[str, Any]:
        """The envelope as a CBOR map."""
        out: dict[str, Any] = {"code": self.code, "rid": self.rid, "ok": self.ok, "body": self.body}
        if self.reason is not None:
            out["reason"] = str(self.reason)
        return out

    @classmethod
    def from_map(cls, value: object) -> Response:
        """The response in ``value``, a decoded frame.

        Raises:
            FrameError: ``value`` is not a valid response envelope.
        """
        m = _envelope_map(value, _RESPONSE_KEYS, frozenset({"reason"}))
        if not m["ok"] and "reason" not in m:
            raise FrameError("a negative response needs a reason", hint="bad reason")
        return _construct(cls, m["code"], m["rid"], m["ok"], m["body"], m.get("reason"))


Envelope = Query | Response


def _envelope_map(value: object, keys: frozenset[str], optional: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FrameError("a frame must hold a CBOR map", hint="not a map")
    present = set(value)
    missing = keys - present
    if missing:
        raise FrameError(f"envelope lacks {', '.join(sorted(missing))}", hint="bad envelope")
    unknown = present - keys - optional
    if unknown:
        names = ", ".join(sorted(map(repr, unknown)))
        raise FrameError(f"envelope has unknown keys {names}", hint="bad envelope")
    return value


_E = TypeVar("_E", Query, Response)


def _construct(cls: type[_E], *args: Any) -> _E:
    try:
        return cls(*args)
    except LocalProtocolError as exc:  # the peer's fields, not our own
        raise FrameError(str(exc), hint=exc.hint) from None


def parse_envelope(value: object) -> Envelope:
    """The query or response in ``value`` (a decoded frame), told apart by its code.

    Raises:
        FrameError: ``value`` is not a valid envelope.
    """
    if not isinstance(value, dict):
        raise FrameError("a frame must hold a CBOR map", hint="not a map")
    code = value.get("code")
    if isinstance(code, str) and code.endswith(RESPONSE_SUFFIX):
        return Response.from_map(value)
    return Query.from_map(value)


# -- frames -------------------------------------------------------------------------------------


def encode_frame(envelope: Mapping[str, Any]) -> bytes:
    """``uvarint(length) || CBOR(envelope)``.

    Raises:
        LocalProtocolError: the map holds a type CBOR may not carry here, or its encoding is
            larger than 1 MiB (hint ``"frame too large"``).
    """
    try:
        payload = cbor.dumps(dict(envelope))
    except ValueError as exc:
        raise LocalProtocolError(f"envelope is not CBOR: {exc}", hint="not cbor") from exc
    if len(payload) > MAX_FRAME_SIZE:
        raise LocalProtocolError(
            f"frame of {len(payload)} bytes exceeds {MAX_FRAME_SIZE}", hint="frame too large"
        )
    return encode_uvarint(len(payload)) + payload


def encode_envelope(envelope: Envelope) -> bytes:
    """The frame of ``envelope``.

    Raises:
        LocalProtocolError: see :func:`encode_frame`.
    """
    return encode_frame(envelope.to_map())


class FrameReader:
    """Splits a stream's bytes into frames and decodes each frame's CBOR map.

    Feed what the stream yields to :meth:`receive_data` (and its end to :meth:`receive_eof`),
    then call :meth:`next_event` until it returns :data:`NEED_DATA`. After the end of the stream
    it returns the frames still buffered, then :data:`NEED_DATA` for good, with :attr:`ended`
    true; a stream that ends inside a frame is an error. Once it has raised, the stream is
    unusable and every later call raises :class:`~p2pchat.errors.LocalProtocolError`.
    """

    def __init__(self, *, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if max_frame_size < 1:
            raise ValueError("max_frame_size must be >= 1")
        self._max_frame_size = max_frame_size
        # A prefix this long, every byte with the continuation bit, encodes more than the
        # maximum (varints are minimal), so it is refused without waiting for the rest.
        self._max_prefix = len(encode_uvarint(max_frame_size))
        self._buffer = bytearray()
        self._pos = 0  # start of the unread bytes in _buffer
        self._eof = False
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames (part of a frame, or frames not yet
        taken)."""
        return len(self._buffer) - self._pos

    @property
    def ended(self) -> bool:
        """True once the stream has ended and every frame in it was returned."""
        return self._eof and self._pos == len(self._buffer)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes read from the stream.

        Raises:
            LocalProtocolError: called after :meth:`receive_eof`.
        """
        if self._eof:
            raise LocalProtocolError("data after end of stream", hint="data after eof")
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def receive_eof(self) -> None:
        """Note that the peer closed its side of the stream. Calling it again changes nothing."""
        self._eof = True

    def next_event(self) -> dict[str, Any] | NeedData:
        """The next complete frame's map, or :data:`NEED_DATA`.

        Raises:
            FrameError: a length prefix that is malformed or over the maximum, a frame that is
                not one deterministic CBOR map, or a stream that ended inside a frame.
            LocalProtocolError: an error was already raised.
        """
        if self._failed:
            raise LocalProtocolError("the frame reader already failed", hint="reader failed")
        try:
            return self._next_event()
        except FrameError:
            self._failed = True
            raise

    def _next_event(self) -> dict[str, Any] | NeedData:
        buffer, pos = self._buffer, self._pos
        try:
            parsed = try_decode_uvarint(buffer, pos)
        except DecodeError as exc:
            raise FrameError(f"bad frame length: {exc}", hint=exc.hint) from None
        if parsed is None:
            if len(buffer) - pos >= self._max_prefix:
                raise self._too_large()
            return self._need_data()
        length, start = parsed
        if length > self._max_frame_size:
            raise self._too_large(length)
        end = start + length
        if len(buffer) < end:
            return self._need_data()
        try:
            value = cbor.loads(bytes(buffer[start:end]), max_size=self._max_frame_size)
        except DecodeError as exc:
            raise FrameError(f"bad frame: {exc}", hint=exc.hint) from None
        if not isinstance(value, dict):
            raise FrameError("a frame must hold a CBOR map", hint="not a map")
        self._pos = end
        return value

    def _need_data(self) -> NeedData:
        if self._eof and self._pos < len(self._buffer):
            raise FrameError("stream ended inside a frame", hint="truncated frame")
        return NEED_DATA

    def _too_large(self, length: int | None = None) -> FrameError:
        size = "" if length is None else f" of {length} bytes"
        return FrameError(
            f"frame{size} exceeds {self._max_frame_size} bytes", hint="frame too large"
        )
