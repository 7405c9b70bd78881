"""The SQL of the outbox: our messages still waiting for their certificate (specs/chat.md §9).

Each function runs inside the caller's transaction on the connection it is given: see
:mod:`.executor`.
"""

from __future__ import annotations

import sqlite3

from .records import OutboxEntry, outbox_from_row

__all__ = ["outbox_done", "outbox_due"]


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


def outbox_done(conn: sqlite3.Connection, group_id: bytes, message_hash: bytes) -> bool:
    """Remove the entry; False if it is absent."""
    cur = conn.execute(
        "DELETE FROM outbox WHERE group_id = ? AND message_hash = ?", (group_id, message_hash)
    )
    return cur.rowcount == 1
