"""The field readers and small helpers shared by the packet and certificate codecs
(specs/chat.md §4-§6): each reader checks one CBOR value's type and size and raises
:class:`PacketError` (hint ``"malformed"``) on anything else."""

from __future__ import annotations

import hashlib
from typing import Any, Final

from ...errors import DecodeError
from ...identity import PeerID

MAX_TEXT: Final = 256
HASH_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64


class PacketError(DecodeError):
    """A packet, message, vote or certificate is malformed."""


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    return hashlib.sha256(data).digest()


def u64(value: int) -> bytes:
    """``value`` as 8 bytes big-endian."""
    return value.to_bytes(8, "big")


def u32(value: int) -> bytes:
    """``value`` as 4 bytes big-endian."""
    return value.to_bytes(4, "big")


def read_map(
    value: Any, what: str, keys: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PacketError(f"{what} must be a map", hint="malformed")
    present = set(value)
    missing = keys - present
    unknown = present - keys - optional
    if missing:
        raise PacketError(f"{what} lacks {', '.join(sorted(missing))}", hint="malformed")
    if unknown:
        raise PacketError(f"{what} has unknown {', '.join(sorted(unknown))}", hint="malformed")
    return value


def read_bytes(value: Any, what: str, *, size: int | None = None, max_size: int = 4096) -> bytes:
    if not isinstance(value, bytes):
        raise PacketError(f"{what} must be a byte string", hint="malformed")
    if size is not None and len(value) != size:
        raise PacketError(f"{what} must be {size} bytes", hint="malformed")
    if len(value) > max_size:
        raise PacketError(f"{what} longer than {max_size} bytes", hint="malformed")
    return value


def read_uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise PacketError(f"{what} must be an unsigned integer", hint="malformed")
    return value


def read_text(value: Any, what: str, *, max_size: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value.encode()) > max_size:
        raise PacketError(f"{what} must be text of at most {max_size} bytes", hint="malformed")
    return value


def read_peer(value: Any, what: str) -> PeerID:
    return PeerID.from_bytes(read_bytes(value, what, max_size=128))
