"""The SQL of the outbox: our messages still waiting for their certificate (specs/chat.md §9).

Each function runs inside the caller's transaction on the connection it is given: see
:mod:`.executor`.
"""

from __future__ import annotations

import sqlite3

from .messages import require_message
from .records import OutboxEntry, outbox_from_row, read_int

__all__ = ["outbox_add", "outbox_done", "outbox_due", "outbox_next_at", "outbox_retry"]


def outbox_add(
    conn: sqlite3.Connection, group_id: bytes, message_hash: bytes, now: int, due: int
) -> bool:
    """Put a stored message in the outbox, due at ``due``; False if it is there already.

    Raises:
        UnknownMessageError: the message is not stored.
    """
    require_message(conn, group_id, message_hash)
    cur = conn.execute(
        "INSERT OR IGNORE INTO outbox (group_id, message_hash, created_at, next_attempt_at) "
        "VALUES (?, ?, ?, ?)",
        (group_id, message_hash, now, due),
    )
    return cur.rowcount == 1


def outbox_due(conn: sqlite3.Connection, now: int, limit: int) -> list[OutboxEntry]:
    """At most ``limit`` entries due at ``now``, earliest first.

    Raises:
        StoreFileError: a row holds values of the wrong types.
    """
    rows = conn.execute(
        "SELECT group_id, message_hash, created_at, attempts, next_attempt_at FROM outbox "
        "WHERE next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [outbox_from_row(row) for row in rows]


def outbox_next_at(conn: sqlite3.Connection) -> int | None:
    """When the earliest entry is due, or None if the outbox is empty.

    Raises:
        StoreFileError: the column holds a value of the wrong type.
    """
    row = conn.execute("SELECT min(next_attempt_at) FROM outbox").fetchone()
    return None if row[0] is None else read_int(row[0])


def outbox_retry(
    conn: sqlite3.Connection, group_id: bytes, message_hash: bytes, next_at: int
) -> bool:
    """Count one more attempt and reschedule at ``next_at``; False if the entry is absent."""
    cur = conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? "
        "WHERE group_id = ? AND message_hash = ?",
        (next_at, group_id, message_hash),
    )
    return cur.rowcount == 1


def outbox_done(conn: sqlite3.Connection, group_id: bytes, message_hash: bytes) -> bool:
    """Remove the entry; False if it is absent."""
    cur = conn.execute(
        "DELETE FROM outbox WHERE group_id = ? AND message_hash = ?", (group_id, message_hash)
    )
    return cur.rowcount == 1
