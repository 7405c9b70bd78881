"""Kademlia DHT wire messages (``/ipfs/kad/1.0.0``), sans-IO: protobuf codec and framing.

Normative text: ``specs/kad.md`` (our reading of libp2p/specs ``kad-dht/README.md``, "RPC
messages"). Each message on a stream is ``uvarint(length) || Message`` (protobuf)::

    Record  {key = 1 (bytes), value = 2 (bytes), timeReceived = 5 (string)}
    Message {type = 1 (enum), key = 2, record = 3 (Record), closerPeers = 8 (Peer),
             providerPeers = 9 (Peer), clusterLevelRaw = 10 (int32), senderRecord = 11}
    Peer    {id = 1 (bytes), addrs = 2 (repeated bytes), connection = 3 (enum),
             signedRecord = 4 (bytes)}

``senderRecord`` and ``signedRecord`` are the signed peer records (RFC 0003) that py-libp2p
sends; we read them, and write our own. Every size is bounded (see the ``MAX_*`` constants and
specs/kad.md "Limits"); an address that does not parse is skipped, as libp2p implementations do.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

import attrs

from ...errors import DecodeError, LocalProtocolError
from ...identity import PeerID
from ...multiaddr import Multiaddr, MultiaddrError
from ...protobuf import WT_LEN, WT_VARINT, decode_message, encode_bytes_field, encode_varint_field
from ...varint import encode_uvarint, try_decode_uvarint
from .._need_data import NEED_DATA, NeedData

__all__ = [
    "MAX_ADDRS_PER_PEER",
    "MAX_KEY_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_PEERS_PER_MESSAGE",
    "MAX_VALUE_SIZE",
    "NEED_DATA",
    "PROTOCOL_ID",
    "ConnectionType",
    "KadPeer",
    "Message",
    "MessageReader",
    "MessageType",
    "Record",
    "decode_message_bytes",
    "encode_message",
    "frame",
]

# kad-dht/README.md "Interface": the protocol id.
PROTOCOL_ID: Final = "/ipfs/kad/1.0.0"
#: Largest message we read or write (specs/kad.md "Limits"; go-libp2p allows 4 MiB, our records
#: are small, so 64 KiB holds any answer of ours with room to spare).
MAX_MESSAGE_SIZE: Final = 64 * 1024
#: Largest key: a peer ID (<= 42 bytes), a multihash, or ``/ns/`` + a peer ID.
MAX_KEY_SIZE: Final = 128
#: Largest record value (a ``/pk`` key, a signed peer record).
MAX_VALUE_SIZE: Final = 8 * 1024
#: closerPeers + providerPeers in one message.
MAX_PEERS_PER_MESSAGE: Final = 64
#: Addresses kept per peer entry (the rest are dropped).
MAX_ADDRS_PER_PEER: Final = 16
MAX_ADDR_SIZE: Final = 256
MAX_SIGNED_RECORD_SIZE: Final = 4096
MAX_TIME_RECEIVED_SIZE: Final = 64


class MessageType(enum.IntEnum):
    """kad-dht/README.md "RPC messages": ``MessageType``."""

    PUT_VALUE = 0
    GET_VALUE = 1
    ADD_PROVIDER = 2
    GET_PROVIDERS = 3
    FIND_NODE = 4
    PING = 5


class ConnectionType(enum.IntEnum):
    """kad-dht/README.md: what the sender knows of its connection to a peer."""

    NOT_CONNECTED = 0
    CONNECTED = 1
    CAN_CONNECT = 2
    CANNOT_CONNECT = 3


@attrs.frozen
class KadPeer:
    """A peer entry of ``closerPeers`` / ``providerPeers``."""

    peer: PeerID
    addrs: tuple[Multiaddr, ...] = ()
    connection: ConnectionType = ConnectionType.NOT_CONNECTED
    signed_record: bytes | None = None


@attrs.frozen
class Record:
    """A value record (``PUT_VALUE`` / ``GET_VALUE``)."""

    key: bytes
    value: bytes
    time_received: str = ""


@attrs.frozen
class Message:
    """One DHT RPC message, request or response."""

    type: MessageType
    key: bytes = b""
    record: Record | None = None
    closer_peers: tuple[KadPeer, ...] = ()
    provider_peers: tuple[KadPeer, ...] = ()
    cluster_level: int = 0
    sender_record: bytes | None = None


_MESSAGE_SCHEMA: Final = {
    1: WT_VARINT,
    2: WT_LEN,
    3: WT_LEN,
    8: WT_LEN,
    9: WT_LEN,
    10: WT_VARINT,
    11: WT_LEN,
}
_PEER_SCHEMA: Final = {1: WT_LEN, 2: WT_LEN, 3: WT_VARINT, 4: WT_LEN}
_RECORD_SCHEMA: Final = {1: WT_LEN, 2: WT_LEN, 5: WT_LEN}


def _encode_peer(peer: KadPeer) -> bytes:
    parts = [encode_bytes_field(1, peer.peer.to_bytes())]
    parts += [encode_bytes_field(2, a.to_bytes()) for a in peer.addrs]
    if peer.connection:
        parts.append(encode_varint_field(3, int(peer.connection)))
    if peer.signed_record is not None:
        parts.append(encode_bytes_field(4, peer.signed_record))
    return b"".join(parts)


def encode_message(message: Message) -> bytes:
    """The protobuf bytes of ``message`` (without the length prefix).

    Raises:
        LocalProtocolError: the message breaks a limit of specs/kad.md.
    """
    parts = [encode_varint_field(1, int(message.type))] if message.type else []
    if message.key:
        parts.append(encode_bytes_field(2, message.key))
    if message.record is not None:
        record = message.record
        inner = encode_bytes_field(1, record.key) + encode_bytes_field(2, record.value)
        if record.time_received:
            inner += encode_bytes_field(5, record.time_received.encode())
        parts.append(encode_bytes_field(3, inner))
    parts += [encode_bytes_field(8, _encode_peer(p)) for p in message.closer_peers]
    parts += [encode_bytes_field(9, _encode_peer(p)) for p in message.provider_peers]
    if message.cluster_level:
        parts.append(encode_varint_field(10, message.cluster_level))
    if message.sender_record is not None:
        parts.append(encode_bytes_field(11, message.sender_record))
    data = b"".join(parts)
    if len(data) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(f"kad message of {len(data)} bytes is too large")
    return data


def frame(message: Message) -> bytes:
    """``uvarint(length) || message``, as written on a stream.

    Raises:
        LocalProtocolError: the message breaks a limit of specs/kad.md.
    """
    data = encode_message(message)
    return encode_uvarint(len(data)) + data


def _single_bytes(fields: dict[int, list[int | bytes]], number: int, limit: int) -> bytes | None:
    values = fields.get(number)
    if not values:
        return None
    value = values[-1]  # proto3: the last value of a scalar field wins
    if not isinstance(value, bytes):  # pragma: no cover - the schema checked the wire type
        raise DecodeError("kad field of the wrong type", hint="bad kad message")
    if len(value) > limit:
        raise DecodeError(f"kad field {number} of {len(value)} bytes", hint="kad field too large")
    return value


def _single_int(fields: dict[int, list[int | bytes]], number: int) -> int:
    values = fields.get(number)
    value = values[-1] if values else 0
    return value if isinstance(value, int) else 0


def _decode_peer(data: bytes) -> KadPeer:
    fields = decode_message(data, _PEER_SCHEMA)
    raw_id = _single_bytes(fields, 1, MAX_KEY_SIZE)
    if raw_id is None:
        raise DecodeError("kad peer entry without an id", hint="bad kad peer")
    peer = PeerID.from_bytes(raw_id)
    addrs: list[Multiaddr] = []
    for raw in fields.get(2, []):
        if len(addrs) == MAX_ADDRS_PER_PEER:
            break
        if not isinstance(raw, bytes) or len(raw) > MAX_ADDR_SIZE:
            continue
        try:
            addrs.append(Multiaddr.from_bytes(raw))
        except MultiaddrError:
            continue  # an address we cannot read is skipped, the entry kept
    raw_conn = _single_int(fields, 3)
    connection = (
        ConnectionType(raw_conn)
        if raw_conn in ConnectionType._value2member_map_
        else ConnectionType.NOT_CONNECTED
    )
    signed = _single_bytes(fields, 4, MAX_SIGNED_RECORD_SIZE)
    return KadPeer(peer, tuple(addrs), connection, signed)


def decode_message_bytes(data: bytes | bytearray | memoryview) -> Message:
    """Parse one message (without its length prefix).

    Raises:
        DecodeError: malformed, an unknown message type, or a limit of specs/kad.md broken.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise DecodeError(f"kad message of {len(data)} bytes", hint="kad message too large")
    fields = decode_message(data, _MESSAGE_SCHEMA)
    raw_type = _single_int(fields, 1)
    if raw_type not in MessageType._value2member_map_:
        raise DecodeError(f"unknown kad message type {raw_type}", hint="unknown kad type")
    key = _single_bytes(fields, 2, MAX_KEY_SIZE) or b""
    record = None
    raw_record = _single_bytes(fields, 3, MAX_MESSAGE_SIZE)
    if raw_record is not None:
        record_fields = decode_message(raw_record, _RECORD_SCHEMA)
        rkey = _single_bytes(record_fields, 1, MAX_KEY_SIZE) or b""
        value = _single_bytes(record_fields, 2, MAX_VALUE_SIZE) or b""
        when = _single_bytes(record_fields, 5, MAX_TIME_RECEIVED_SIZE) or b""
        try:
            received = when.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(
                "kad record timeReceived is not UTF-8", hint="bad kad record"
            ) from exc
        record = Record(rkey, value, received)
    closer = fields.get(8, [])
    providers = fields.get(9, [])
    if len(closer) + len(providers) > MAX_PEERS_PER_MESSAGE:
        raise DecodeError("too many peers in a kad message", hint="kad message too large")
    return Message(
        type=MessageType(raw_type),
        key=key,
        record=record,
        closer_peers=tuple(_decode_peer(bytes(p)) for p in closer if isinstance(p, bytes)),
        provider_peers=tuple(_decode_peer(bytes(p)) for p in providers if isinstance(p, bytes)),
        cluster_level=_single_int(fields, 10) & 0xFFFFFFFF,
        sender_record=_single_bytes(fields, 11, MAX_SIGNED_RECORD_SIZE),
    )


class MessageReader:
    """Cuts a byte stream into length-prefixed kad messages.

    Feed bytes with :meth:`receive_data`; :meth:`next_message` returns a :class:`Message` or
    :data:`NEED_DATA`. At most one message plus its prefix is buffered: a prefix announcing more
    than :data:`MAX_MESSAGE_SIZE` is an error at once, before the body arrives.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self._eof = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the stream."""
        self._buffer += data

    def receive_eof(self) -> None:
        """The peer closed its side of the stream."""
        self._eof = True

    @property
    def at_clean_eof(self) -> bool:
        """True once the stream ended between two messages (the normal end)."""
        return self._eof and not self._buffer

    def next_message(self) -> Message | NeedData:
        """The next complete message, or :data:`NEED_DATA`.

        Raises:
            DecodeError: an oversized or malformed message, or the stream ended inside one.
        """
        decoded = try_decode_uvarint(self._buffer)
        if decoded is None:
            if len(self._buffer) > 10:
                raise DecodeError("bad kad length prefix", hint="bad kad framing")
            if self._eof and self._buffer:
                raise DecodeError("stream ended inside a kad message", hint="truncated kad")
            return NEED_DATA
        length, pos = decoded
        if length > self._max_size:
            raise DecodeError(f"kad message of {length} bytes announced", hint="kad too large")
        if len(self._buffer) - pos < length:
            if self._eof:
                raise DecodeError("stream ended inside a kad message", hint="truncated kad")
            return NEED_DATA
        body = bytes(self._buffer[pos : pos + length])
        del self._buffer[: pos + length]
        return decode_message_bytes(body)


def peers_of(message: Message) -> Sequence[KadPeer]:
    """closerPeers and providerPeers together."""
    return message.closer_peers + message.provider_peers
