"""What the store returns: records read from its rows, and the checks on what it is given (§9).

The row readers check each column's type, since a corrupted file may hold any type in any
column; a wrong one is a :class:`~.errors.StoreFileError`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Final

import attrs

from ...errors import P2PChatError
from ..core import cbor
from .errors import StoreFileError

__all__ = [
    "CERTIFICATE_KEY_OVERHEAD",
    "GroupRecord",
    "HpkeKey",
    "MessageStatus",
    "OutboxEntry",
    "RosterRecord",
    "StoreStatistics",
    "StoredMessage",
]

#: Bytes that adding ``"certificate": <cert>`` adds to a canonical packet map besides the
#: certificate itself: the key (1 + 11 bytes); the map header stays one byte (5 -> 6 entries).
CERTIFICATE_KEY_OVERHEAD: Final = 12


class MessageStatus(enum.Enum):
    """Whether a stored message holds a certificate."""

    PENDING = "pending"
    RATIFIED = "ratified"


@attrs.frozen
class GroupRecord:
    """A group this node belongs to: its signed genesis and local settings (opaque CBOR)."""

    group_id: bytes
    genesis: bytes
    joined_at: int
    settings: bytes


@attrs.frozen
class RosterRecord:
    """A certified roster message (``epoch`` >= 1; epoch 0 is in the genesis)."""

    group_id: bytes
    epoch: int
    packet: bytes


@attrs.frozen
class HpkeKey:
    """The node's own HPKE key pair for one KEM (§3), as raw bytes."""

    kem: str
    private: bytes
    public: bytes


@attrs.frozen
class StoredMessage:
    """A stored packet (without its certificate) and what the store knows about it.

    ``seq`` is the message's position among the group's ratified messages in this store
    (the ``dht`` cursor order); it is ``None`` while the message is pending.
    """

    group_id: bytes
    message_hash: bytes
    seq: int | None
    status: MessageStatus
    epoch: int
    time_stamp: int
    author: bytes
    received_at: int
    packet: bytes
    certificate: bytes | None

    @property
    def wire_size(self) -> int:
        """The size of the packet with its certificate, as a ``dht`` page sends it."""
        if self.certificate is None:
            return len(self.packet)
        return len(self.packet) + CERTIFICATE_KEY_OVERHEAD + len(self.certificate)

    def packet_with_certificate(self) -> bytes:
        """The CBOR packet with its certificate (§4), ready for ``smsg`` and ``dht``.

        Raises:
            StoreFileError: the stored bytes are not CBOR maps (the store is corrupted).
        """
        if self.certificate is None:
            return self.packet
        try:
            packet = cbor.loads(self.packet, max_size=len(self.packet))
            certificate = cbor.loads(self.certificate, max_size=len(self.certificate))
        except P2PChatError as exc:
            raise StoreFileError(f"stored packet is not CBOR: {exc}") from exc
        if not isinstance(packet, dict):
            raise StoreFileError("stored packet is not a CBOR map")
        packet["certificate"] = certificate
        return cbor.dumps(packet)


@attrs.frozen
class OutboxEntry:
    """A message of ours still waiting for its certificate."""

    group_id: bytes
    message_hash: bytes
    created_at: int
    attempts: int
    next_attempt_at: int


@attrs.frozen
class StoreStatistics:
    """Counters since the store was opened.

    ``writes`` counts committed writes and ``transactions`` the commits that carried them, so
    ``writes / transactions`` is the mean batch size.
    """

    transactions: int
    writes: int
    failed_writes: int
    largest_batch: int
    reads: int
    queued: int


# -- row readers (a corrupted file may hold any type in any column) -----------------------------


def read_blob(value: Any) -> bytes:
    """A BLOB column's value.

    Raises:
        StoreFileError: a column holds a value of the wrong type.
    """
    if not isinstance(value, bytes):
        raise StoreFileError(f"store holds {type(value).__name__} where bytes belong")
    return value


def read_int(value: Any) -> int:
    """An INTEGER column's value.

    Raises:
        StoreFileError: a column holds a value of the wrong type.
    """
    if not isinstance(value, int):
        raise StoreFileError(f"store holds {type(value).__name__} where an integer belongs")
    return value


def message_from_row(row: Sequence[Any]) -> StoredMessage:
    """A ``messages`` row, columns in ``messages.MESSAGE_COLUMNS`` order.

    Raises:
        StoreFileError: a column holds a value of the wrong type.
    """
    try:
        status = MessageStatus(row[3])
    except ValueError as exc:
        raise StoreFileError(f"store holds message status {row[3]!r}") from exc
    return StoredMessage(
        group_id=read_blob(row[0]),
        message_hash=read_blob(row[1]),
        seq=None if row[2] is None else read_int(row[2]),
        status=status,
        epoch=read_int(row[4]),
        time_stamp=read_int(row[5]),
        author=read_blob(row[6]),
        received_at=read_int(row[7]),
        packet=read_blob(row[8]),
        certificate=None if row[9] is None else read_blob(row[9]),
    )


def group_from_row(row: Sequence[Any]) -> GroupRecord:
    """A ``groups`` row: group_id, genesis, joined_at, settings.

    Raises:
        StoreFileError: a column holds a value of the wrong type.
    """
    return GroupRecord(read_blob(row[0]), read_blob(row[1]), read_int(row[2]), read_blob(row[3]))


def outbox_from_row(row: Sequence[Any]) -> OutboxEntry:
    """An ``outbox`` row: group_id, message_hash, created_at, attempts, next_attempt_at.

    Raises:
        StoreFileError: a column holds a value of the wrong type.
    """
    return OutboxEntry(
        read_blob(row[0]), read_blob(row[1]), read_int(row[2]), read_int(row[3]), read_int(row[4])
    )


# -- argument checks -----------------------------------------------------------------------------


def check_hash(value: bytes, what: str) -> None:
    """Check a hash argument before anything is queued.

    Raises:
        ValueError: ``value`` is not 32 bytes.
    """
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes")


def check_uint(value: int, what: str) -> None:
    """Check a number argument (an SQLite INTEGER) before anything is queued.

    Raises:
        ValueError: ``value`` is not an integer in ``[0, 2**63)``.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError(f"{what} must be an integer in [0, 2**63)")
