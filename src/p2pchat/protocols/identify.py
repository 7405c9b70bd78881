"""libp2p identify (``/ipfs/id/1.0.0``) and identify push (``/ipfs/id/push/1.0.0``), sans-IO.

Normative text: ``specs/identify.md`` (our reading of libp2p/specs ``identify/README.md``, checked
against go-libp2p and rust-libp2p).

Theory of operation
-------------------

Both protocols move one ``Identify`` protobuf one way: the side being identified (or the side
pushing) writes ``uvarint(len) || Identify`` and closes its write side. go-libp2p may split a large
message in two (the signed peer record in a second frame), and the reader merges the frames as
protobuf merges messages: singular fields take the last value sent, repeated fields concatenate.
That is the same as decoding the concatenated bodies as one message, which is what
:class:`IdentifyReader` does once the stream ends.

Limits: we never send a body over :data:`MAX_MESSAGE_SIZE` (4096 bytes, the limit rust-libp2p
reads with and go-libp2p sends under), and we accept bodies up to :data:`MAX_RECEIVE_SIZE` (8192
bytes, what go-libp2p and js-libp2p accept: go's signed peer record frame may be that large) and at
most :data:`MAX_MESSAGES` frames per stream.

Decoding is strict about structure and lenient about content we cannot use, as go and rust are:
malformed protobuf, a known field with the wrong wire type, a string that is not UTF-8 or a public
key that does not parse is a :class:`~p2pchat.errors.DecodeError`; a listen or observed address
that is not a multiaddr we can parse is dropped, and so is a protocol id that does not start with
``/``.

A push carries only what changed; :func:`merge` applies one to what we knew. Absent and empty are
the same in both directions (an empty string or list is never sent, and a received one changes
nothing), as go (``GetAgentVersion()``) and rust (``unwrap_or_default()``) read the message.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

import attrs

from ..errors import DecodeError, LocalProtocolError
from ..identity import PublicKey
from ..multiaddr import Multiaddr
from ..protobuf import WT_LEN, decode_message, encode_bytes_field
from ..varint import encode_uvarint, try_decode_uvarint
from ._need_data import NEED_DATA, NeedData

__all__ = [
    "MAX_MESSAGES",
    "MAX_MESSAGE_SIZE",
    "MAX_RECEIVE_SIZE",
    "NEED_DATA",
    "PROTOCOL_ID",
    "PUSH_PROTOCOL_ID",
    "IdentifyInfo",
    "IdentifyReader",
    "NeedData",
    "decode_identify",
    "encode_identify",
    "merge",
]

# identify/README.md "identify" and "identify/push".
PROTOCOL_ID: Final = "/ipfs/id/1.0.0"
PUSH_PROTOCOL_ID: Final = "/ipfs/id/push/1.0.0"

# The largest body we send: rust-libp2p's MAX_MESSAGE_SIZE_BYTES, go-libp2p's maxOwnIdentifyMsgSize.
MAX_MESSAGE_SIZE: Final = 4096
# The largest body we accept: go-libp2p's signedIDSize, js-libp2p's MAX_IDENTIFY_MESSAGE_SIZE.
MAX_RECEIVE_SIZE: Final = 8192
# The most frames we merge from one stream: go-libp2p's maxMessages.
MAX_MESSAGES: Final = 10

# identify/README.md "The Identify Message": field numbers of the proto2 message.
F_PUBLIC_KEY: Final = 1
F_LISTEN_ADDRS: Final = 2
F_PROTOCOLS: Final = 3
F_OBSERVED_ADDR: Final = 4
F_PROTOCOL_VERSION: Final = 5
F_AGENT_VERSION: Final = 6
F_SIGNED_PEER_RECORD: Final = 8

_SCHEMA: Final = {
    F_PUBLIC_KEY: WT_LEN,
    F_LISTEN_ADDRS: WT_LEN,
    F_PROTOCOLS: WT_LEN,
    F_OBSERVED_ADDR: WT_LEN,
    F_PROTOCOL_VERSION: WT_LEN,
    F_AGENT_VERSION: WT_LEN,
    F_SIGNED_PEER_RECORD: WT_LEN,
}


# --------------------------------------------------------------------------------------------------
# The message


def _to_addr_tuple(value: Iterable[Multiaddr]) -> tuple[Multiaddr, ...]:
    return tuple(value)


def _to_str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _check_listen_addrs(instance: object, attribute: object, value: tuple[Multiaddr, ...]) -> None:
    for addr in value:
        if not isinstance(addr, Multiaddr):
            raise TypeError(f"listen_addrs holds {type(addr).__name__}, not Multiaddr")
        if not addr.components:
            raise ValueError("listen_addrs holds an empty multiaddr")


def _check_observed_addr(instance: object, attribute: object, value: Multiaddr | None) -> None:
    if value is None:
        return
    if not isinstance(value, Multiaddr):
        raise TypeError(f"observed_addr is {type(value).__name__}, not Multiaddr")
    if not value.components:
        raise ValueError("observed_addr is an empty multiaddr")


def _check_text(instance: object, attribute: object, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{value[:64]!r} cannot be encoded as UTF-8") from None


def _check_protocols(instance: object, attribute: object, value: tuple[str, ...]) -> None:
    for protocol in value:
        _check_text(instance, attribute, protocol)
        if not _is_protocol_id(protocol):
            raise ValueError(f"protocol id {protocol[:64]!r} does not start with '/'")


def _is_protocol_id(text: str) -> bool:
    return text.startswith("/")


@attrs.frozen
class IdentifyInfo:
    """What one ``Identify`` message says (identify/README.md "The Identify Message").

    Every field defaults to "absent", so a push can be built with only what changed. Absent and
    empty are the same: ``""`` for the version strings, ``()`` for the lists, ``None`` otherwise.
    ``signed_peer_record`` is carried opaque (a serialized signed envelope, RFC 0002/0003); checking
    it is the peer store's job.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: an empty multiaddr, a protocol id not starting with ``/``, or a string that
            is not encodable as UTF-8 (a lone surrogate).
    """

    protocol_version: str = attrs.field(default="", validator=_check_text)
    agent_version: str = attrs.field(default="", validator=_check_text)
    public_key: PublicKey | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(PublicKey))
    )
    listen_addrs: tuple[Multiaddr, ...] = attrs.field(
        default=(), converter=_to_addr_tuple, validator=_check_listen_addrs
    )
    observed_addr: Multiaddr | None = attrs.field(default=None, validator=_check_observed_addr)
    protocols: tuple[str, ...] = attrs.field(
        default=(), converter=_to_str_tuple, validator=_check_protocols
    )
    signed_peer_record: bytes | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(bytes))
    )


# --------------------------------------------------------------------------------------------------
# Codec


def _encode_body(info: IdentifyInfo) -> bytes:
    # Field-number order, as go (protobuf-go) and rust (prost) write it.
    parts: list[bytes] = []
    if info.public_key is not None:
        parts.append(encode_bytes_field(F_PUBLIC_KEY, info.public_key.to_protobuf()))
    parts.extend(encode_bytes_field(F_LISTEN_ADDRS, a.to_bytes()) for a in info.listen_addrs)
    parts.extend(encode_bytes_field(F_PROTOCOLS, p.encode()) for p in info.protocols)
    if info.observed_addr is not None:
        parts.append(encode_bytes_field(F_OBSERVED_ADDR, info.observed_addr.to_bytes()))
    if info.protocol_version:
        parts.append(encode_bytes_field(F_PROTOCOL_VERSION, info.protocol_version.encode()))
    if info.agent_version:
        parts.append(encode_bytes_field(F_AGENT_VERSION, info.agent_version.encode()))
    if info.signed_peer_record is not None:
        parts.append(encode_bytes_field(F_SIGNED_PEER_RECORD, info.signed_peer_record))
    return b"".join(parts)


def encode_identify(info: IdentifyInfo, *, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """Encode ``info`` as one frame: ``uvarint(len(body)) || body``.

    Absent fields (see :class:`IdentifyInfo`) are not written.

    Raises:
        LocalProtocolError: the body would exceed ``max_size`` bytes (default 4096). Nothing is
            dropped to make it fit: the caller chooses which addresses or protocols to leave out.
    """
    body = _encode_body(info)
    if len(body) > max_size:
        raise LocalProtocolError(
            f"identify message of {len(body)} bytes exceeds {max_size}",
            hint="identify message too large",
        )
    return encode_uvarint(len(body)) + body


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"identify {name} is not UTF-8", hint="bad identify string") from None


def _multiaddr_or_none(raw: bytes) -> Multiaddr | None:
    try:
        return Multiaddr.from_bytes(raw)
    except DecodeError:
        return None


def _decode_body(body: bytes) -> IdentifyInfo:
    fields = decode_message(body, _SCHEMA)
    values: dict[int, list[bytes]] = {}
    for number, items in fields.items():
        # Every known field is LEN, so decode_message hands back bytes.
        values[number] = [item for item in items if isinstance(item, bytes)]

    def last(number: int) -> bytes | None:
        items = values.get(number)
        return items[-1] if items else None  # protobuf: the last value of a singular field wins

    public_key = None
    raw_key = last(F_PUBLIC_KEY)
    if raw_key is not None:
        try:
            public_key = PublicKey.from_protobuf(raw_key)
        except DecodeError as exc:
            raise DecodeError(
                f"identify publicKey does not parse: {exc}", hint="bad identify public key"
            ) from exc

    listen_addrs = []
    for raw in values.get(F_LISTEN_ADDRS, ()):
        addr = _multiaddr_or_none(raw)
        if addr is not None:
            listen_addrs.append(addr)

    protocols = []
    for raw in values.get(F_PROTOCOLS, ()):
        protocol = _text(raw, "protocol")
        if _is_protocol_id(protocol):
            protocols.append(protocol)

    raw_observed = last(F_OBSERVED_ADDR)
    observed_addr = None if raw_observed is None else _multiaddr_or_none(raw_observed)

    raw_protocol_version = last(F_PROTOCOL_VERSION)
    raw_agent_version = last(F_AGENT_VERSION)
    return IdentifyInfo(
        protocol_version=_text(raw_protocol_version or b"", "protocolVersion"),
        agent_version=_text(raw_agent_version or b"", "agentVersion"),
        public_key=public_key,
        listen_addrs=listen_addrs,
        observed_addr=observed_addr,
        protocols=protocols,
        signed_peer_record=last(F_SIGNED_PEER_RECORD),
    )


def decode_identify(
    frame_body: bytes | bytearray | memoryview, *, max_size: int = MAX_RECEIVE_SIZE
) -> IdentifyInfo:
    """Decode one ``Identify`` body (the frame without its length prefix).

    Unknown fields are skipped. Addresses that do not parse as multiaddrs are dropped (the
    observed address becomes ``None``), and so are protocol ids not starting with ``/``.

    Raises:
        DecodeError: the body exceeds ``max_size`` bytes (default 8192), is not a well-formed
            protobuf, has a known field with a wrong wire type, a string field that is not UTF-8,
            or a public key that does not parse.
    """
    body = bytes(frame_body)
    if len(body) > max_size:
        raise DecodeError(
            f"identify message of {len(body)} bytes exceeds {max_size}",
            hint="identify message too large",
        )
    return _decode_body(body)


def merge(current: IdentifyInfo, push: IdentifyInfo) -> IdentifyInfo:
    """Apply an identify push to what we knew: each field present in ``push`` replaces ours.

    A field is present when it is not empty (``""``, ``()``) or ``None``; so a push cannot clear
    a field, only replace it (identify/README.md "identify/push": "missing fields should be
    ignored"). Lists are replaced whole, never appended to.
    """
    changes = {
        field.name: getattr(push, field.name)
        for field in attrs.fields(IdentifyInfo)
        if _is_present(getattr(push, field.name))
    }
    return attrs.evolve(current, **changes)


def _is_present(value: object) -> bool:
    if isinstance(value, str | tuple):
        return bool(value)
    return value is not None


# --------------------------------------------------------------------------------------------------
# Reading a stream


class _ReaderState(enum.Enum):
    READING = "READING"
    DONE = "DONE"
    ERROR = "ERROR"


class IdentifyReader:
    """Collects the frames of one identify (or push) stream and returns the merged message.

    Feed bytes with :meth:`receive_data` and the end of the stream with :meth:`receive_eof`, and
    call :meth:`next_event` after each: it checks each frame as soon as it is complete (and a
    length prefix as soon as it is too large), returns :data:`NEED_DATA` until the stream has
    ended, and then the merged :class:`IdentifyInfo`, once. The buffer never holds more than one
    incomplete frame plus what was fed since the last call.
    """

    def __init__(
        self, *, max_message_size: int = MAX_RECEIVE_SIZE, max_messages: int = MAX_MESSAGES
    ) -> None:
        if max_message_size < 0 or max_messages < 1:
            raise ValueError("max_message_size must be >= 0 and max_messages >= 1")
        self._max_message_size = max_message_size
        self._max_messages = max_messages
        # A length prefix of this many bytes, all with the continuation bit, encodes more than
        # the maximum (minimal varints), so it is refused without waiting for the rest.
        self._max_prefix = len(encode_uvarint(max_message_size))
        self._buffer = bytearray()
        self._bodies: list[bytes] = []
        self._eof = False
        self._state = _ReaderState.READING

    @property
    def messages_received(self) -> int:
        """How many complete frames have been read so far."""
        return len(self._bodies)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes read from the stream. Empty data is ignored (use :meth:`receive_eof`).

        Raises:
            LocalProtocolError: called after :meth:`receive_eof`.
        """
        if self._eof:
            raise LocalProtocolError("data after end of stream", hint="data after eof")
        self._buffer += data

    def receive_eof(self) -> None:
        """Note that the peer closed its side of the stream. Calling it again changes nothing."""
        self._eof = True

    def next_event(self) -> IdentifyInfo | NeedData:
        """Check buffered frames; after end of stream return the merged message.

        Raises:
            DecodeError: a frame is too large, malformed (see :func:`decode_identify`) or one too
                many, or the stream ended inside a frame or before any frame.
            LocalProtocolError: the message was already returned, or an error was already raised.
        """
        if self._state is _ReaderState.DONE:
            raise LocalProtocolError("identify message already returned", hint="reader done")
        if self._state is _ReaderState.ERROR:
            raise LocalProtocolError("identify reader already failed", hint="reader failed")
        try:
            return self._next_event()
        except DecodeError:
            self._state = _ReaderState.ERROR
            raise

    def _next_event(self) -> IdentifyInfo | NeedData:
        while True:
            parsed = try_decode_uvarint(self._buffer)
            if parsed is None:
                if len(self._buffer) >= self._max_prefix:
                    raise self._too_large()
                break
            length, offset = parsed
            if length > self._max_message_size:
                raise self._too_large(length)
            if len(self._buffer) - offset < length:
                break
            if len(self._bodies) == self._max_messages:
                raise DecodeError(
                    f"more than {self._max_messages} identify messages on one stream",
                    hint="too many identify messages",
                )
            body = bytes(self._buffer[offset : offset + length])
            del self._buffer[: offset + length]
            _decode_body(body)  # refuse a bad frame now rather than at the end
            self._bodies.append(body)
        if not self._eof:
            return NEED_DATA
        if self._buffer:
            raise DecodeError(
                "stream ended inside an identify message", hint="truncated identify message"
            )
        if not self._bodies:
            raise DecodeError(
                "stream ended before any identify message", hint="no identify message"
            )
        self._state = _ReaderState.DONE
        # Concatenated protobuf messages decode as their merge.
        return _decode_body(b"".join(self._bodies))

    def _too_large(self, length: int | None = None) -> DecodeError:
        size = "" if length is None else f" of {length} bytes"
        return DecodeError(
            f"identify message{size} exceeds {self._max_message_size}",
            hint="identify message too large",
        )
