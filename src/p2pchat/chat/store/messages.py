"""The SQL of messages and votes (specs/chat.md §8, §9).

Each function runs inside the caller's transaction on the connection it is given (the writer's
for writes, the reader's for reads): see :mod:`.executor`. A message's ``seq`` is its position
among its group's ratified messages in this store, the ``dht`` cursor order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from ...errors import DecodeError
from ..core.packet import Packet
from ..core.prune import prune
from .errors import StoreFileError, UnknownMessageError, VoteConflictError
from .groups import require_group
from .records import (
    CERTIFICATE_KEY_OVERHEAD,
    MessageStatus,
    StoredMessage,
    message_from_row,
    read_blob,
    read_int,
)

__all__ = [
    "DHT_PAGE_BYTES",
    "DHT_PAGE_PACKETS",
    "all_ratified",
    "drop_pending",
    "get_message",
    "get_vote",
    "insert_message",
    "insert_vote",
    "missing_messages",
    "others_pending",
    "page_messages",
    "prune_message",
    "require_message",
]

#: Page limits of ``dht`` (§8).
DHT_PAGE_PACKETS: Final = 64
DHT_PAGE_BYTES: Final = 768 * 1024

MESSAGE_COLUMNS: Final = (
    "group_id, message_hash, seq, status, epoch, time_stamp, author, received_at, packet, "
    "certificate"
)


def require_message(conn: sqlite3.Connection, group_id: bytes, message_hash: bytes) -> None:
    """Check that the message is stored.

    Raises:
        UnknownMessageError: it is not.
    """
    row = conn.execute(
        "SELECT 1 FROM messages WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    if row is None:
        raise UnknownMessageError(f"message {message_hash.hex()} is not stored")


def _next_seq(conn: sqlite3.Connection, group_id: bytes) -> int:
    row = conn.execute("SELECT max(seq) FROM messages WHERE group_id = ?", (group_id,)).fetchone()
    return 1 if row[0] is None else read_int(row[0]) + 1


def insert_message(
    conn: sqlite3.Connection,
    group_id: bytes,
    packet: bytes,
    message_hash: bytes,
    *,
    epoch: int,
    time_stamp: int,
    author: bytes,
    received_at: int,
    certificate: bytes | None,
    outbox_at: int | None,
    outbox_rank: int | None = None,
) -> bool:
    """Store a packet (without its certificate), pending or, with ``certificate``, ratified;
    with ``outbox_at``, a newly stored message also enters the outbox (its ``created_at`` is
    ``outbox_rank``, default ``received_at``). Returns False if the
    message is held and nothing changed; a pending one given a certificate becomes ratified and
    takes the group's next ``seq``.

    Raises:
        UnknownGroupError: the group is not held.
    """
    require_group(conn, group_id)
    row = conn.execute(
        "SELECT status FROM messages WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    if row is None:
        ratified = certificate is not None
        conn.execute(
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                group_id,
                message_hash,
                _next_seq(conn, group_id) if ratified else None,
                (MessageStatus.RATIFIED if ratified else MessageStatus.PENDING).value,
                epoch,
                time_stamp,
                author,
                received_at,
                packet,
                certificate,
            ),
        )
        if outbox_at is not None:
            conn.execute(
                "INSERT INTO outbox (group_id, message_hash, created_at, "
                "next_attempt_at) VALUES (?, ?, ?, ?)",
                (
                    group_id,
                    message_hash,
                    received_at if outbox_rank is None else outbox_rank,
                    outbox_at,
                ),
            )
        return True
    if row[0] == MessageStatus.PENDING.value and certificate is not None:
        conn.execute(
            "UPDATE messages SET status = ?, certificate = ?, seq = ? "
            "WHERE group_id = ? AND message_hash = ?",
            (
                MessageStatus.RATIFIED.value,
                certificate,
                _next_seq(conn, group_id),
                group_id,
                message_hash,
            ),
        )
        return True
    return False


def insert_vote(
    conn: sqlite3.Connection,
    group_id: bytes,
    message_hash: bytes,
    epoch: int,
    vote: bytes,
    *,
    roster: bool,
) -> bytes:
    """Record this node's vote for a stored message; return the vote held for it (an earlier
    one, unchanged, if there is one). With ``roster``, at most one roster message per epoch gets
    a vote.

    Raises:
        UnknownMessageError: the message is not stored.
        VoteConflictError: ``roster`` and another roster message of ``epoch`` has a vote.
        ValueError: ``epoch`` is not the stored message's epoch.
    """
    row = conn.execute(
        "SELECT vote FROM votes WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    if row is not None:
        return read_blob(row[0])
    msg = conn.execute(
        "SELECT epoch FROM messages WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    if msg is None:
        raise UnknownMessageError(f"message {message_hash.hex()} is not stored")
    if msg[0] != epoch:
        raise ValueError(f"vote epoch {epoch} is not the message's epoch {msg[0]}")
    if roster:
        other = conn.execute(
            "SELECT message_hash FROM votes WHERE group_id = ? AND epoch = ? AND is_roster",
            (group_id, epoch),
        ).fetchone()
        if other is not None:
            raise VoteConflictError(
                f"already voted for roster message {read_blob(other[0]).hex()} of epoch {epoch}"
            )
    conn.execute(
        "INSERT INTO votes (group_id, message_hash, epoch, is_roster, vote) VALUES (?, ?, ?, ?, ?)",
        (group_id, message_hash, epoch, int(roster), vote),
    )
    return vote


def missing_messages(
    conn: sqlite3.Connection, group_id: bytes, wanted: Sequence[bytes], *, ratified_only: bool
) -> list[bytes]:
    """Those of ``wanted`` that are not held (or not ratified, with ``ratified_only``), in the
    order given."""
    where = " AND status = 'ratified'" if ratified_only else ""
    held: set[bytes] = set()
    for message_hash in set(wanted):
        row = conn.execute(
            "SELECT 1 FROM messages WHERE group_id = ? AND message_hash = ?" + where,
            (group_id, message_hash),
        ).fetchone()
        if row is not None:
            held.add(message_hash)
    return [h for h in wanted if h not in held]


def get_message(
    conn: sqlite3.Connection, group_id: bytes, message_hash: bytes
) -> StoredMessage | None:
    """The stored message, or None.

    Raises:
        StoreFileError: the row holds values of the wrong types.
    """
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    return None if row is None else message_from_row(row)


def page_messages(
    conn: sqlite3.Connection, group_id: bytes, cursor: int, limit: int, max_bytes: int
) -> tuple[list[StoredMessage], int | None]:
    """A page of ratified messages after ``cursor``, read in one transaction (see
    :meth:`~.store.ChatStore.page_messages`). Returns (messages, next cursor or None).

    Raises:
        StoreFileError: a row holds values of the wrong types.
    """
    conn.execute("BEGIN")
    try:
        sizes = conn.execute(
            "SELECT seq, length(packet) + ? + length(certificate) FROM messages "
            "WHERE group_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (CERTIFICATE_KEY_OVERHEAD, group_id, cursor, limit + 1),
        ).fetchall()
        last = cursor
        total = 0
        taken = 0
        for seq, size in sizes[:limit]:
            if taken and total + read_int(size) > max_bytes:
                break
            total += read_int(size)
            last = read_int(seq)
            taken += 1
        rows = conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages "
            "WHERE group_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
            (group_id, cursor, last),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    more = len(sizes) > taken
    return [message_from_row(row) for row in rows], (last if more else None)


def all_ratified(conn: sqlite3.Connection, group_id: bytes, after: int = 0) -> list[StoredMessage]:
    """Every ratified message of the group (with ``seq > after``), in ``seq`` order.

    Raises:
        StoreFileError: a row holds values of the wrong types.
    """
    rows = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages "
        "WHERE group_id = ? AND seq IS NOT NULL AND seq > ? ORDER BY seq",
        (group_id, after),
    ).fetchall()
    return [message_from_row(row) for row in rows]


def get_vote(conn: sqlite3.Connection, group_id: bytes, message_hash: bytes) -> bytes | None:
    """This node's vote for the message, or None.

    Raises:
        StoreFileError: the row holds a value of the wrong type.
    """
    row = conn.execute(
        "SELECT vote FROM votes WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    return None if row is None else read_blob(row[0])


def others_pending(conn: sqlite3.Connection, group_id: bytes) -> list[StoredMessage]:
    """The group's pending messages outside the outbox (those we voted for, not our own
    queued ones), oldest first.

    Raises:
        StoreFileError: a row holds values of the wrong types.
    """
    rows = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages AS m "
        "WHERE group_id = ? AND status = 'pending' AND NOT EXISTS (SELECT 1 FROM outbox AS o "
        "WHERE o.group_id = m.group_id AND o.message_hash = m.message_hash) "
        "ORDER BY received_at",
        (group_id,),
    ).fetchall()
    return [message_from_row(row) for row in rows]


def drop_pending(conn: sqlite3.Connection, group_id: bytes, message_hashes: Sequence[bytes]) -> int:
    """Delete pending messages that are not in the outbox, with our votes for them (§6
    "Quotas"); ratified messages and our queued ones are left alone. Returns how many went."""
    dropped = 0
    for message_hash in message_hashes:
        row = conn.execute(
            "SELECT 1 FROM messages AS m WHERE group_id = ? AND message_hash = ? "
            "AND status = 'pending' AND NOT EXISTS (SELECT 1 FROM outbox AS o "
            "WHERE o.group_id = m.group_id AND o.message_hash = m.message_hash)",
            (group_id, message_hash),
        ).fetchone()
        if row is None:
            continue
        conn.execute(
            "DELETE FROM votes WHERE group_id = ? AND message_hash = ? AND NOT is_roster",
            (group_id, message_hash),
        )
        held = conn.execute(
            "SELECT 1 FROM votes WHERE group_id = ? AND message_hash = ?",
            (group_id, message_hash),
        ).fetchone()
        if held is not None:
            continue  # a roster vote is kept (one per epoch), and so its message
        conn.execute(
            "DELETE FROM messages WHERE group_id = ? AND message_hash = ?",
            (group_id, message_hash),
        )
        dropped += 1
    return dropped


def prune_message(conn: sqlite3.Connection, group_id: bytes, tombstone: Packet) -> bool:
    """Replace the stored packet of the ratified message that the certified delete
    ``tombstone`` names by its pruned form (specs/chat.md §17 "Pruned packets"); True if it
    was pruned now. A message not held, not ratified, already pruned or not a content message
    is left alone. With ``secure_delete`` on (the writer's connection), SQLite overwrites the
    old bytes.

    Raises:
        StoreFileError: the stored packet does not decode.
    """
    message_hash = tombstone.message.ref_hash
    if message_hash is None:
        return False
    row = conn.execute(
        "SELECT packet FROM messages WHERE group_id = ? AND message_hash = ? "
        "AND status = 'ratified'",
        (group_id, message_hash),
    ).fetchone()
    if row is None:
        return False
    try:
        target = Packet.decode(read_blob(row[0]))
    except DecodeError as exc:
        raise StoreFileError(f"stored packet {message_hash.hex()} does not decode: {exc}") from exc
    if target.pruned:
        return False
    try:
        pruned = prune(target, tombstone)
    except ValueError:
        return False
    conn.execute(
        "UPDATE messages SET packet = ? WHERE group_id = ? AND message_hash = ?",
        (pruned.encode(), group_id, message_hash),
    )
    return True
