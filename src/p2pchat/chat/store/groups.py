"""The SQL of groups, rosters, epoch keys and the node's HPKE keys (specs/chat.md §9).

Each function runs inside the caller's transaction on the connection it is given (the writer's
for writes, the reader's for reads): see :mod:`.executor`.
"""

from __future__ import annotations

import sqlite3

from .errors import StoreFileError, UnknownGroupError
from .records import GroupRecord, HpkeKey, RosterRecord, group_from_row, read_blob, read_int

__all__ = [
    "add_group",
    "get_epoch_keys",
    "get_group",
    "get_hpke_key",
    "get_rosters",
    "list_groups",
    "put_epoch_key",
    "put_hpke_key",
    "put_roster",
    "require_group",
]


def require_group(conn: sqlite3.Connection, group_id: bytes) -> None:
    """Check that the group is held.

    Raises:
        UnknownGroupError: it is not.
    """
    if conn.execute("SELECT 1 FROM groups WHERE group_id = ?", (group_id,)).fetchone() is None:
        raise UnknownGroupError(f"unknown group {group_id.hex()}")


def add_group(
    conn: sqlite3.Connection, group_id: bytes, genesis: bytes, joined_at: int, settings: bytes
) -> bool:
    """Add a group; False if it is already held (the stored record is kept)."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO groups (group_id, genesis, joined_at, settings) VALUES (?, ?, ?, ?)",
        (group_id, genesis, joined_at, settings),
    )
    return cur.rowcount == 1


def get_group(conn: sqlite3.Connection, group_id: bytes) -> GroupRecord | None:
    """The group's record, or None.

    Raises:
        StoreFileError: the row holds values of the wrong types.
    """
    row = conn.execute(
        "SELECT group_id, genesis, joined_at, settings FROM groups WHERE group_id = ?",
        (group_id,),
    ).fetchone()
    return None if row is None else group_from_row(row)


def list_groups(conn: sqlite3.Connection) -> list[GroupRecord]:
    """Every group, in ``joined_at`` order.

    Raises:
        StoreFileError: a row holds values of the wrong types.
    """
    rows = conn.execute(
        "SELECT group_id, genesis, joined_at, settings FROM groups ORDER BY joined_at, group_id"
    ).fetchall()
    return [group_from_row(row) for row in rows]


def put_roster(conn: sqlite3.Connection, group_id: bytes, epoch: int, packet: bytes) -> bool:
    """Store the roster message of ``epoch``; False if one is held (the first one is kept).

    Raises:
        UnknownGroupError: the group is not held.
    """
    require_group(conn, group_id)
    cur = conn.execute(
        "INSERT OR IGNORE INTO rosters (group_id, epoch, packet) VALUES (?, ?, ?)",
        (group_id, epoch, packet),
    )
    return cur.rowcount == 1


def get_rosters(conn: sqlite3.Connection, group_id: bytes) -> list[RosterRecord]:
    """The group's roster messages in epoch order.

    Raises:
        StoreFileError: a row holds values of the wrong types.
    """
    rows = conn.execute(
        "SELECT group_id, epoch, packet FROM rosters WHERE group_id = ? ORDER BY epoch",
        (group_id,),
    ).fetchall()
    return [RosterRecord(read_blob(r[0]), read_int(r[1]), read_blob(r[2])) for r in rows]


def put_epoch_key(conn: sqlite3.Connection, group_id: bytes, epoch: int, key: bytes) -> bool:
    """Store an epoch key; False if one is held for that epoch (the first one is kept).

    Raises:
        UnknownGroupError: the group is not held.
    """
    require_group(conn, group_id)
    cur = conn.execute(
        "INSERT OR IGNORE INTO epoch_keys (group_id, epoch, key) VALUES (?, ?, ?)",
        (group_id, epoch, key),
    )
    return cur.rowcount == 1


def get_epoch_keys(conn: sqlite3.Connection, group_id: bytes) -> dict[int, bytes]:
    """The group's epoch keys, by epoch.

    Raises:
        StoreFileError: a row holds values of the wrong types.
    """
    rows = conn.execute(
        "SELECT epoch, key FROM epoch_keys WHERE group_id = ? ORDER BY epoch", (group_id,)
    ).fetchall()
    return {read_int(r[0]): read_blob(r[1]) for r in rows}


def put_hpke_key(conn: sqlite3.Connection, kem: str, private: bytes, public: bytes) -> bool:
    """Store the node's key pair for ``kem``; False if one is held (it is never replaced)."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO hpke_keys (kem, private, public) VALUES (?, ?, ?)",
        (kem, private, public),
    )
    return cur.rowcount == 1


def get_hpke_key(conn: sqlite3.Connection, kem: str) -> HpkeKey | None:
    """The node's key pair for ``kem``, or None.

    Raises:
        StoreFileError: the row holds values of the wrong types.
    """
    row = conn.execute(
        "SELECT kem, private, public FROM hpke_keys WHERE kem = ?", (kem,)
    ).fetchone()
    if row is None:
        return None
    if not isinstance(row[0], str):
        raise StoreFileError("store holds a non-text KEM name")
    return HpkeKey(row[0], read_blob(row[1]), read_blob(row[2]))


def put_key_set(
    conn: sqlite3.Connection, group_id: bytes, message_hash: bytes, data: bytes
) -> None:
    """Store the key set of a roster message (specs/chat.md §20); one held is kept.

    Raises:
        UnknownGroupError: the group is not held.
    """
    require_group(conn, group_id)
    conn.execute(
        "INSERT OR IGNORE INTO key_sets (group_id, message_hash, data) VALUES (?, ?, ?)",
        (group_id, message_hash, data),
    )


def get_key_set(conn: sqlite3.Connection, group_id: bytes, message_hash: bytes) -> bytes | None:
    """The key set of a roster message, or None."""
    row = conn.execute(
        "SELECT data FROM key_sets WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    return None if row is None else bytes(row[0])
