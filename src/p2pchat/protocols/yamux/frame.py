"""yamux framing: protocol constants, frame types and flags, and the 12-byte header codec.

Normative text: ``specs/yamux.md`` "Framing" (hashicorp/yamux ``spec.md``).
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import attrs

from ...errors import DecodeError

# libp2p/specs yamux/README.md "Specification": the multistream-select protocol id.
PROTOCOL_ID: Final = "/yamux/1.0.0"
# spec.md "Version Field": always 0.
YAMUX_VERSION: Final = 0
# spec.md "Framing": version u8, type u8, flags u16, stream id u32, length u32, big endian.
HEADER_SIZE: Final = 12
# spec.md "Flow Control": every stream starts with a 256 KiB window in each direction.
INITIAL_WINDOW: Final = 256 * 1024
# go-yamux maxStreamWindow / rust-yamux: auto-tuning stops at 16 MiB.
MAX_WINDOW: Final = 16 * 1024 * 1024
# libp2p/specs yamux/README.md "ACK backlog": at most 256 unacknowledged streams per direction.
MAX_ACK_BACKLOG: Final = 256
# specs/yamux.md "Bounded output": header-only frames queued for a peer that does not read.
MAX_CONTROL_BACKLOG: Final = 1024
# go-yamux MaxIncomingStreams and js-libp2p-yamux max{In,Out}boundStreams.
DEFAULT_MAX_STREAMS: Final = 1000
# go-yamux and js-libp2p-yamux maxMessageSize: our outgoing data frames carry at most 64 KiB.
DEFAULT_MAX_FRAME_PAYLOAD: Final = 64 * 1024

# spec.md "StreamID Field": id 0 is the session.
SESSION_ID: Final = 0
_MAX_U32: Final = 0xFFFFFFFF

# spec.md "Type Field".
_DATA: Final = 0
_WINDOW_UPDATE: Final = 1
_PING: Final = 2
_GO_AWAY: Final = 3
# spec.md "Flag Field".
_SYN: Final = 0x1
_ACK: Final = 0x2
_FIN: Final = 0x4
_RST: Final = 0x8
# spec.md "Session termination".
_PROTOCOL_ERROR: Final = 1

_HEADER: Final = struct.Struct(">BBHII")
_pack_header: Final = _HEADER.pack
_unpack_header: Final = _HEADER.unpack_from


class FrameType(enum.IntEnum):
    """spec.md "Type Field"."""

    DATA = _DATA
    WINDOW_UPDATE = _WINDOW_UPDATE
    PING = _PING
    GO_AWAY = _GO_AWAY


class Flag(enum.IntFlag):
    """spec.md "Flag Field"."""

    SYN = _SYN
    ACK = _ACK
    FIN = _FIN
    RST = _RST


class GoAwayCode(enum.IntEnum):
    """spec.md "Session termination": the length field of a GoAway frame."""

    NORMAL = 0
    PROTOCOL_ERROR = _PROTOCOL_ERROR
    INTERNAL_ERROR = 2


def _u32(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= _MAX_U32:
        raise ValueError(f"{attribute.name} must fit in 32 bits, got {value}")


def _u16(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{attribute.name} must fit in 16 bits, got {value}")


@attrs.frozen
class FrameHeader:
    """One decoded 12-byte frame header (spec.md "Framing")."""

    frame_type: FrameType = attrs.field(converter=FrameType)
    flags: int = attrs.field(validator=_u16)
    stream_id: int = attrs.field(validator=_u32)
    length: int = attrs.field(validator=_u32)

    def encode(self) -> bytes:
        """The 12 header bytes."""
        return _pack_header(YAMUX_VERSION, self.frame_type, self.flags, self.stream_id, self.length)


def encode_header(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    """Encode one frame header.

    Raises:
        ValueError: unknown ``frame_type``, or a field out of range.
    """
    return FrameHeader(FrameType(frame_type), flags, stream_id, length).encode()


def _body_length(header: bytes | memoryview) -> int:
    """The length field of an encoded header."""
    return int.from_bytes(header[8:12], "big")


def decode_header(data: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader:
    """Decode the 12-byte header at ``offset`` (the frame body, if any, is not looked at).

    Raises:
        DecodeError: fewer than 12 bytes, version other than 0, or unknown frame type.
    """
    if len(data) - offset < HEADER_SIZE:
        raise DecodeError("truncated yamux header", hint="truncated header")
    version, frame_type, flags, stream_id, length = _unpack_header(data, offset)
    if version != YAMUX_VERSION:
        raise DecodeError(f"unsupported yamux version {version}", hint="bad version")
    if frame_type > _GO_AWAY:
        raise DecodeError(f"unknown yamux frame type {frame_type}", hint="unknown frame type")
    return FrameHeader(FrameType(frame_type), flags, stream_id, length)
