"""The store's tables, the check that a file holds them, and the migrations (specs/chat.md §9).

A store file is tagged twice: ``PRAGMA application_id`` (:data:`APPLICATION_ID`) says it is a
p2pchat store, and ``meta.schema_version`` which tables it holds. :func:`check_schema` classifies
a file before anything writes to it; a file of an older schema is brought to
:data:`SCHEMA_VERSION` by :func:`migrate`, in one transaction, after its tables were found to be
exactly those of its version.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final

from .errors import DB_ERRORS, StoreFileError
from .records import read_int

__all__ = [
    "APPLICATION_ID",
    "SCHEMA",
    "SCHEMA_VERSION",
    "check_schema",
    "create_schema",
    "migrate",
]

#: ``PRAGMA application_id`` of a p2pchat store: ASCII "p2pc" (§9).
APPLICATION_ID: Final = int.from_bytes(b"p2pc", "big")
#: The schema this code reads and writes (§9); stored in ``meta`` under ``schema_version``.
SCHEMA_VERSION: Final = 3

SCHEMA: Final = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value NOT NULL
);
CREATE TABLE groups (
    group_id BLOB PRIMARY KEY NOT NULL CHECK (length(group_id) = 32),
    genesis BLOB NOT NULL,
    joined_at INTEGER NOT NULL,
    settings BLOB NOT NULL
);
CREATE TABLE rosters (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    epoch INTEGER NOT NULL CHECK (epoch >= 0),
    packet BLOB NOT NULL,
    PRIMARY KEY (group_id, epoch)
);
CREATE TABLE epoch_keys (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    epoch INTEGER NOT NULL CHECK (epoch >= 0),
    key BLOB NOT NULL,
    PRIMARY KEY (group_id, epoch)
);
CREATE TABLE hpke_keys (
    kem TEXT PRIMARY KEY NOT NULL,
    private BLOB NOT NULL,
    public BLOB NOT NULL
);
CREATE TABLE messages (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    message_hash BLOB NOT NULL CHECK (length(message_hash) = 32),
    seq INTEGER CHECK (seq > 0),
    status TEXT NOT NULL CHECK (status IN ('pending', 'ratified')),
    epoch INTEGER NOT NULL,
    time_stamp INTEGER NOT NULL,
    author BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    packet BLOB NOT NULL,
    certificate BLOB,
    CHECK ((status = 'ratified') = (certificate IS NOT NULL AND seq IS NOT NULL)),
    PRIMARY KEY (group_id, message_hash)
);
CREATE UNIQUE INDEX messages_seq ON messages (group_id, seq);
CREATE TABLE votes (
    group_id BLOB NOT NULL,
    message_hash BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    is_roster INTEGER NOT NULL CHECK (is_roster IN (0, 1)),
    vote BLOB NOT NULL,
    PRIMARY KEY (group_id, message_hash),
    FOREIGN KEY (group_id, message_hash) REFERENCES messages (group_id, message_hash)
);
CREATE UNIQUE INDEX votes_roster ON votes (group_id, epoch) WHERE is_roster;
CREATE TABLE outbox (
    group_id BLOB NOT NULL,
    message_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, message_hash),
    FOREIGN KEY (group_id, message_hash) REFERENCES messages (group_id, message_hash)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);
CREATE TABLE key_sets (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    message_hash BLOB NOT NULL CHECK (length(message_hash) = 32),
    data BLOB NOT NULL,
    PRIMARY KEY (group_id, message_hash)
);
"""

#: Schema 1 had one table more: ``peers``, peer addresses that nothing read (the Host's peer store
#: keeps addresses). Schema 2 drops it (§9). The text is schema 1's, as SQLite holds it.
_SCHEMA_1_PEERS: Final = """CREATE TABLE peers (
    peer BLOB PRIMARY KEY NOT NULL,
    addrs BLOB NOT NULL,
    updated_at INTEGER NOT NULL
)"""

#: Schema 3 adds ``key_sets``: the wrapped keys a roster delta commits to (specs/chat.md §20).
_SCHEMA_3_KEY_SETS: Final = SCHEMA[SCHEMA.index("CREATE TABLE key_sets") :].strip().rstrip(";")

#: The statements that bring schema ``v`` to ``v + 1``, by ``v``.
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: ("DROP TABLE peers",),
    2: (_SCHEMA_3_KEY_SETS,),
}


def check_schema(conn: sqlite3.Connection, path: Path) -> int:
    """Classify the file before anything writes to it.

    Returns 0 for a new, empty file, else its schema version: :data:`SCHEMA_VERSION`, or an
    older version that :func:`migrate` brings up to date. Either way its tables were found to be
    exactly those of that version.

    Raises:
        StoreFileError: not an SQLite file, another application's database, a newer or unknown
            schema, or tables that are not those of its version.
    """
    try:
        app_id = read_int(conn.execute("PRAGMA application_id").fetchone()[0])
        objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except DB_ERRORS as exc:
        raise StoreFileError(
            f"{path} is not a p2pchat store (not an SQLite database, or corrupted: {exc}); "
            "it was left untouched"
        ) from exc
    if app_id == 0 and objects == 0:
        return 0
    if app_id != APPLICATION_ID:
        raise StoreFileError(
            f"{path} is not a p2pchat store (application id {app_id:#x}); it was left untouched"
        )
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except DB_ERRORS as exc:
        raise StoreFileError(f"{path} is a damaged p2pchat store: {exc}") from exc
    if row is None or not isinstance(row[0], int):
        raise StoreFileError(f"{path} is a damaged p2pchat store: no schema version")
    version = row[0]
    if version > SCHEMA_VERSION:
        raise StoreFileError(
            f"{path} was written by a newer p2pchat (schema {version}); this version reads "
            f"schema {SCHEMA_VERSION}; it was left untouched"
        )
    if version != SCHEMA_VERSION and version not in _MIGRATIONS:
        raise StoreFileError(f"{path} has unknown schema version {version}")
    try:
        found = _schema_of(conn)
    except DB_ERRORS as exc:
        raise StoreFileError(f"{path} is a damaged p2pchat store: {exc}") from exc
    if found != _expected_schema(version):
        raise StoreFileError(
            f"{path} is a damaged p2pchat store: its tables are not schema {version}"
        )
    return version


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables of :data:`SCHEMA_VERSION` (in the caller's transaction).

    Raises:
        sqlite3.Error: SQLite refused a statement.
    """
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store of schema ``version`` (checked by :func:`check_schema`) to
    :data:`SCHEMA_VERSION`, in one transaction: a failure leaves it at ``version``.

    Raises:
        sqlite3.Error: SQLite refused a statement (nothing was changed).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _schema_of(conn: sqlite3.Connection) -> set[tuple[Any, ...]]:
    return set(
        conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL")
    )


def _expected_schema(version: int) -> set[tuple[Any, ...]]:
    """What ``sqlite_master`` of an intact store of ``version`` holds (made in memory; about a
    millisecond)."""
    conn = sqlite3.connect(":memory:")
    try:
        create_schema(conn)
        if version < 3:
            conn.execute("DROP TABLE key_sets")
        if version == 1:
            conn.execute(_SCHEMA_1_PEERS)
        return _schema_of(conn)
    finally:
        conn.close()
