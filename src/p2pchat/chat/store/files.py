"""The store's files: the data dir and its lock, the database file's checks, the connections.

:func:`acquire_lock` takes ``store.lock`` in the data dir (``fcntl.flock``: a second process, or
a second open in this process, gets :class:`~.errors.StoreLockedError` at once).
:func:`open_connections` opens ``store.sqlite3`` (created with mode 0600; a foreign, corrupted or
newer file is refused with :class:`~.errors.StoreFileError` and left untouched), creates or
migrates its tables, and returns the writer's and the reader's connections (specs/chat.md §9).
Every function here blocks: callers run them in ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import stat
from pathlib import Path
from typing import Final

from .errors import DB_ERRORS, StoreError, StoreFileError, StoreLockedError, translate
from .schema import APPLICATION_ID, SCHEMA_VERSION, check_schema, create_schema, migrate

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "LOCK_FILE",
    "STORE_FILE",
    "acquire_lock",
    "close_connections",
    "open_connections",
    "prepare_file",
    "release_lock",
]

STORE_FILE: Final = "store.sqlite3"
LOCK_FILE: Final = "store.lock"
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
BUSY_TIMEOUT_S: Final = 10.0


def acquire_lock(where: str | os.PathLike[str]) -> tuple[Path, int]:
    """Create the data dir if needed and take the store lock; return the dir and the lock's
    descriptor (give it back with :func:`release_lock`).

    Raises:
        StoreLockedError: another process, or another open in this one, holds the lock.
        StoreError: the data dir or the lock file cannot be created or locked.
    """
    data_dir = Path(where).expanduser()
    try:
        data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create data dir {data_dir}: {exc.strerror}") from exc
    if not data_dir.is_dir():
        raise StoreError(f"data dir {data_dir} is not a directory")
    lock_path = data_dir / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot open lock file {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise StoreLockedError(
                f"the store in {data_dir} is in use by another p2pchat node{who}; "
                "stop it or use another data dir"
            ) from exc
        raise StoreError(f"cannot lock {lock_path}: {exc.strerror}") from exc
    # The holder's pid, for the message above; the lock itself is the flock, not the contents.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return data_dir, fd


def prepare_file(path: Path) -> bool:
    """Create the database file with mode 0600 if absent; refuse one others can read.

    Returns True if the file was created.

    Raises:
        StoreFileError: the file, its WAL or its index is not a regular file, or others may
            read it.
        StoreError: the file cannot be created or examined.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        created = False
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from exc
    else:
        os.close(fd)
        created = True
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot read {name}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise StoreFileError(f"{name} is not a regular file")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise StoreFileError(
                f"store file {name} is accessible by others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {name}"
            )
    return created


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    return conn


def _enable_wal(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: SQLite refused WAL mode (got {mode!r})")


def open_connections(data_dir: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """Open and check the store file, create (new file) or migrate (older schema) its tables;
    return the writer's connection (WAL, ``synchronous=FULL``, foreign keys) and the reader's
    (``query_only``).

    Raises:
        StoreFileError: the file is not a p2pchat store, is corrupted, is accessible by others,
            or was written by a newer version; it is left untouched.
        StoreError: the file cannot be created or opened, or SQLite refuses WAL mode.
    """
    path = data_dir / STORE_FILE
    created = prepare_file(path)
    try:
        writer = _connect(path)
    except sqlite3.Error as exc:
        raise translate(exc, f"cannot open {path}") from exc
    try:
        version = check_schema(writer, path)
        _enable_wal(writer, path)
        writer.execute("PRAGMA synchronous = FULL")
        writer.execute("PRAGMA foreign_keys = ON")
        # specs/chat.md §17 "Pruned packets": a dropped content key is overwritten in the file.
        writer.execute("PRAGMA secure_delete = ON")
        if version == 0:
            writer.execute("BEGIN IMMEDIATE")
            try:
                create_schema(writer)
                writer.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
                writer.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                writer.execute("COMMIT")
            except BaseException:
                writer.execute("ROLLBACK")
                raise
        elif version != SCHEMA_VERSION:
            migrate(writer, version)
        if created:
            _fsync_dir(data_dir)
        reader = _connect(path)
        try:
            reader.execute("PRAGMA query_only = ON")
        except BaseException:
            reader.close()
            raise
    except DB_ERRORS as exc:
        writer.close()
        raise translate(exc, f"cannot open {path}") from exc
    except BaseException:
        writer.close()
        raise
    return writer, reader


def close_connections(*conns: sqlite3.Connection) -> None:
    """Close ``conns`` in order, ignoring SQLite's errors (there is nothing left to save)."""
    # The writer closes last: the last connection checkpoints the WAL into the database file.
    for conn in conns:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def release_lock(fd: int) -> None:
    """Give back the lock :func:`acquire_lock` took (closing its descriptor drops the flock)."""
    os.close(fd)
