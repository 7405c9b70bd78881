"""Circuit relay v2 messages (``/libp2p/circuit/relay/0.2.0/hop`` and ``/stop``), sans-IO.

Normative text: ``specs/relay.md`` (our reading of libp2p/specs ``relay/circuit-v2.md``).
Every message travels as ``uvarint(length) || protobuf`` and is at most
:data:`MAX_MESSAGE_SIZE` bytes; :class:`MessageReader` cuts a byte stream into messages and
returns whatever bytes follow the last one (after a ``STATUS: OK`` the stream carries the
relayed connection).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final, Generic, TypeVar

import attrs

from ...errors import DecodeError, LocalProtocolError
from ...identity import PeerID
from ...multiaddr import Multiaddr, MultiaddrError
from ...protobuf import WT_LEN, WT_VARINT, decode_message, encode_bytes_field, encode_varint_field
from ...varint import encode_uvarint, try_decode_uvarint
from .._need_data import NEED_DATA, NeedData

# circuit-v2.md "Protocol identifiers".
HOP_PROTOCOL: Final = "/libp2p/circuit/relay/0.2.0/hop"
STOP_PROTOCOL: Final = "/libp2p/circuit/relay/0.2.0/stop"
#: specs/relay.md "Limits": one message, the addresses in one message, one address.
MAX_MESSAGE_SIZE: Final = 4096
MAX_ADDRS: Final = 16
MAX_ADDR_SIZE: Final = 256


class Status(enum.IntEnum):
    """circuit-v2.md "Protobuf": ``Status``."""

    OK = 100
    RESERVATION_REFUSED = 200
    RESOURCE_LIMIT_EXCEEDED = 201
    PERMISSION_DENIED = 202
    CONNECTION_FAILED = 203
    NO_RESERVATION = 204
    MALFORMED_MESSAGE = 400
    UNEXPECTED_MESSAGE = 401


class HopType(enum.IntEnum):
    RESERVE = 0
    CONNECT = 1
    STATUS = 2


class StopType(enum.IntEnum):
    CONNECT = 0
    STATUS = 1


@attrs.frozen
class Peer:
    """``Peer {id = 1, addrs = 2}``."""

    id: PeerID
    addrs: tuple[Multiaddr, ...] = ()


@attrs.frozen
class Limit:
    """``Limit {duration = 1 (seconds), data = 2 (bytes each way)}``; 0 means no limit."""

    duration: int = 0
    data: int = 0


@attrs.frozen
class Reservation:
    """``Reservation {expire = 1 (UTC UNIX seconds), addrs = 2, voucher = 3 (envelope)}``."""

    expire: int
    addrs: tuple[Multiaddr, ...] = ()
    voucher: bytes | None = None


@attrs.frozen
class HopMessage:
    type: HopType
    peer: Peer | None = None
    reservation: Reservation | None = None
    limit: Limit | None = None
    status: Status | None = None


@attrs.frozen
class StopMessage:
    type: StopType
    peer: Peer | None = None
    limit: Limit | None = None
    status: Status | None = None


_HOP: Final = {1: WT_VARINT, 2: WT_LEN, 3: WT_LEN, 4: WT_LEN, 5: WT_VARINT}
_STOP: Final = {1: WT_VARINT, 2: WT_LEN, 3: WT_LEN, 4: WT_VARINT}
_PEER: Final = {1: WT_LEN, 2: WT_LEN}
_RESERVATION: Final = {1: WT_VARINT, 2: WT_LEN, 3: WT_LEN}
_LIMIT: Final = {1: WT_VARINT, 2: WT_VARINT}


def _encode_addrs(number: int, addrs: tuple[Multiaddr, ...]) -> bytes:
    return b"".join(encode_bytes_field(number, a.to_bytes()) for a in addrs[:MAX_ADDRS])


def _encode_peer(peer: Peer) -> bytes:
    return encode_bytes_field(1, peer.id.to_bytes()) + _encode_addrs(2, peer.addrs)


def _encode_limit(limit: Limit) -> bytes:
    out = b""
    if limit.duration:
        out += encode_varint_field(1, limit.duration)
    if limit.data:
        out += encode_varint_field(2, limit.data)
    return out


def _encode_reservation(rsvp: Reservation) -> bytes:
    out = encode_varint_field(1, rsvp.expire) + _encode_addrs(2, rsvp.addrs)
    if rsvp.voucher is not None:
        out += encode_bytes_field(3, rsvp.voucher)
    return out


def encode(message: HopMessage | StopMessage) -> bytes:
    """The protobuf bytes of ``message`` (proto2: ``type`` is always written)."""
    out = encode_varint_field(1, int(message.type))
    if message.peer is not None:
        out += encode_bytes_field(2, _encode_peer(message.peer))
    if isinstance(message, HopMessage):
        if message.reservation is not None:
            out += encode_bytes_field(3, _encode_reservation(message.reservation))
        if message.limit is not None:
            out += encode_bytes_field(4, _encode_limit(message.limit))
        if message.status is not None:
            out += encode_varint_field(5, int(message.status))
        return out
    if message.limit is not None:
        out += encode_bytes_field(3, _encode_limit(message.limit))
    if message.status is not None:
        out += encode_varint_field(4, int(message.status))
    return out


def frame(message: HopMessage | StopMessage) -> bytes:
    """``uvarint(length) || message``.

    Raises:
        LocalProtocolError: the message is over :data:`MAX_MESSAGE_SIZE`.
    """
    data = encode(message)
    if len(data) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError("relay message too large")
    return encode_uvarint(len(data)) + data


def _last(fields: dict[int, list[int | bytes]], number: int) -> int | bytes | None:
    values = fields.get(number)
    return values[-1] if values else None


def _decode_addrs(values: list[int | bytes]) -> tuple[Multiaddr, ...]:
    """The valid addresses among ``values`` (others are skipped, as libp2p does).

    Raises:
        DecodeError: more than :data:`MAX_ADDRS` addresses.
    """
    if len(values) > MAX_ADDRS:
        raise DecodeError("relay message with too many addresses", hint="bad relay message")
    out = []
    for raw in values:
        if not isinstance(raw, bytes) or len(raw) > MAX_ADDR_SIZE:
            continue
        try:
            out.append(Multiaddr.from_bytes(raw))
        except MultiaddrError:
            continue
    return tuple(out)


def _decode_peer(data: int | bytes | None) -> Peer | None:
    if data is None:
        return None
    if not isinstance(data, bytes):
        raise DecodeError("relay peer is not a message", hint="bad relay message")
    fields = decode_message(data, _PEER)
    raw_id = _last(fields, 1)
    if not isinstance(raw_id, bytes):
        raise DecodeError("relay peer without an id", hint="bad relay message")
    return Peer(PeerID.from_bytes(raw_id), _decode_addrs(fields.get(2, [])))


def _decode_limit(data: int | bytes | None) -> Limit | None:
    if not isinstance(data, bytes):
        return None
    fields = decode_message(data, _LIMIT)
    duration, limit = _last(fields, 1), _last(fields, 2)
    return Limit(
        duration if isinstance(duration, int) else 0, limit if isinstance(limit, int) else 0
    )


def _decode_reservation(data: int | bytes | None) -> Reservation | None:
    if not isinstance(data, bytes):
        return None
    fields = decode_message(data, _RESERVATION)
    expire = _last(fields, 1)
    voucher = _last(fields, 3)
    return Reservation(
        expire if isinstance(expire, int) else 0,
        _decode_addrs(fields.get(2, [])),
        voucher if isinstance(voucher, bytes) else None,
    )


def _decode_status(value: int | bytes | None) -> Status | None:
    if value is None:
        return None
    if not isinstance(value, int) or value not in Status._value2member_map_:
        raise DecodeError(f"relay status {value!r}", hint="bad relay status")
    return Status(value)


def decode_hop(data: bytes) -> HopMessage:
    """Parse one ``HopMessage`` (without its length prefix).

    Raises:
        DecodeError: malformed, an unknown type or status, too many addresses.
    """
    fields = decode_message(data, _HOP)
    kind = _last(fields, 1)
    if not isinstance(kind, int) or kind not in HopType._value2member_map_:
        raise DecodeError(f"relay hop type {kind!r}", hint="bad relay message")
    return HopMessage(
        HopType(kind),
        _decode_peer(_last(fields, 2)),
        _decode_reservation(_last(fields, 3)),
        _decode_limit(_last(fields, 4)),
        _decode_status(_last(fields, 5)),
    )


def decode_stop(data: bytes) -> StopMessage:
    """Parse one ``StopMessage`` (without its length prefix).

    Raises:
        DecodeError: malformed, an unknown type or status, too many addresses.
    """
    fields = decode_message(data, _STOP)
    kind = _last(fields, 1)
    if not isinstance(kind, int) or kind not in StopType._value2member_map_:
        raise DecodeError(f"relay stop type {kind!r}", hint="bad relay message")
    return StopMessage(
        StopType(kind),
        _decode_peer(_last(fields, 2)),
        _decode_limit(_last(fields, 3)),
        _decode_status(_last(fields, 4)),
    )


M = TypeVar("M")


class MessageReader(Generic[M]):
    """Cuts a byte stream into framed messages of one kind (at most :data:`MAX_MESSAGE_SIZE`).

    ``MessageReader(decode_hop)`` reads ``HopMessage``; ``MessageReader(decode_stop)``
    ``StopMessage``. :meth:`trailing` hands over the bytes read past the last message.
    """

    def __init__(self, decode: Callable[[bytes], M]) -> None:
        self._decode = decode
        self._buffer = bytearray()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        if len(self._buffer) > 2 * MAX_MESSAGE_SIZE + 16:
            # Bounded: a peer that sends past a whole message before an answer is dropped.
            raise DecodeError("relay peer sent too much before an answer", hint="relay flood")

    def next_message(self) -> M | NeedData:
        """The next message or :data:`NEED_DATA`.

        Raises:
            DecodeError: an oversized or malformed message.
        """
        decoded = try_decode_uvarint(self._buffer)
        if decoded is None:
            return NEED_DATA
        length, pos = decoded
        if length > MAX_MESSAGE_SIZE:
            raise DecodeError("relay message too large", hint="relay message too large")
        if len(self._buffer) - pos < length:
            return NEED_DATA
        body = bytes(self._buffer[pos : pos + length])
        del self._buffer[: pos + length]
        return self._decode(body)

    def trailing(self) -> bytes:
        """The bytes after the last message read (and forget them)."""
        out = bytes(self._buffer)
        self._buffer.clear()
        return out
