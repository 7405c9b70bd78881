"""The node's durable chat store: SQLite (standard library) in the data dir (specs/chat.md §9).

Theory of operation
-------------------
:func:`open_store` locks the data dir (``fcntl.flock`` on ``store.lock``: a second process, or a
second open in this process, gets :class:`StoreLockedError` at once), opens
``store.sqlite3`` (created with mode 0600; a foreign, corrupted or newer file is refused with
:class:`StoreFileError` and left untouched) and opens a nursery that holds two tasks, the
**writer** and the **reader**, each owning one SQLite connection. Every SQLite call runs in
``trio.to_thread.run_sync``; no thread of our own exists, and each connection is used by one
worker-thread call at a time.

Writes. A write is a small function of the write connection. :meth:`ChatStore._write` appends
it to the writer's queue, wakes the writer, and parks the calling task. The writer takes all
that is queued (up to a batch limit) and runs it in **one transaction in one worker-thread
call** (``BEGIN IMMEDIATE``; a ``SAVEPOINT`` per write, so one failing write does not undo the
others; ``COMMIT``), and only then reschedules each caller with its result. With
``journal_mode=WAL`` and ``synchronous=FULL`` every ``COMMIT`` fsyncs the WAL, so a caller that
has its result holds a write that survives a crash *and* a power loss: a ratifier may send its
vote as soon as :meth:`ChatStore.record_vote` returns. (``synchronous=NORMAL`` would survive a
crash of the process but not a power loss, which could forget a message already voted for.)
While one batch commits, the next one queues up, so N concurrent writers cost far fewer than N
fsyncs (see :meth:`ChatStore.statistics`).

Cancellation of a write is exact: a write still queued is withdrawn and the caller gets
``Cancelled`` (it never happens); a write the writer has already taken cannot be withdrawn, so
the caller waits for its transaction (one batch, bounded) and gets the result, and the
cancellation is delivered at its next checkpoint, as with ``trio.to_thread.run_sync``.

Reads go the same way through the reader, on a second connection (``query_only``): every read
queued is run in one worker-thread call, each in its own implicit read transaction, concurrently
with the writer's transaction (WAL readers never wait for the writer, so a read never waits for
an fsync). A read started after a write returned sees that write. Batching reads matters as much
as batching writes: with many concurrent readers the thread hand-off, not SQLite, is the cost.

Closing (the end of the ``async with`` block) refuses new calls, lets the writer commit what is
queued, then closes both connections and releases the lock.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import errno
import fcntl
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs
import outcome
import trio

from ..errors import P2PChatError
from .core import cbor
from .core.packet import Packet
from .core.txn import (
    AddGroup,
    CommitResult,
    OutboxDone,
    PutEpochKey,
    PutPacket,
    PutRoster,
    PutVote,
    Transaction,
)

T = TypeVar("T")

STORE_FILE: Final = "store.sqlite3"
LOCK_FILE: Final = "store.lock"
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700

#: ``PRAGMA application_id`` of a p2pchat store: ASCII "p2pc" (§9).
APPLICATION_ID: Final = int.from_bytes(b"p2pc", "big")
#: The schema this code reads and writes (§9); stored in ``meta`` under ``schema_version``.
SCHEMA_VERSION: Final = 1

#: Page limits of ``dht`` (§8).
DHT_PAGE_PACKETS: Final = 64
DHT_PAGE_BYTES: Final = 768 * 1024

#: A batch (one transaction, or one worker-thread call of reads) holds at most this many calls,
#: and at most this many bytes of blobs beyond its first call.
MAX_BATCH_JOBS: Final = 1024
MAX_BATCH_BYTES: Final = 16 * 1024 * 1024

#: Bytes that adding ``"certificate": <cert>`` adds to a canonical packet map besides the
#: certificate itself: the key (1 + 11 bytes); the map header stays one byte (5 -> 6 entries).
CERTIFICATE_KEY_OVERHEAD: Final = 12

BUSY_TIMEOUT_S: Final = 10.0

_SCHEMA: Final = """
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
CREATE TABLE peers (
    peer BLOB PRIMARY KEY NOT NULL,
    addrs BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);
"""

_MESSAGE_COLUMNS: Final = (
    "group_id, message_hash, seq, status, epoch, time_stamp, author, received_at, packet, "
    "certificate"
)


# -- errors --------------------------------------------------------------------------------------


class StoreError(P2PChatError):
    """The store cannot do what was asked; the message says why. Nothing stored is lost."""


class StoreLockedError(StoreError):
    """Another process (or another open in this one) already uses this data dir's store."""


class StoreFileError(StoreError):
    """The store file is not a p2pchat store, is corrupted, or was written by a newer version."""


class StoreClosedError(StoreError):
    """The store was used after its ``async with`` block ended."""


class UnknownGroupError(StoreError):
    """The group is not in the store."""


class UnknownMessageError(StoreError):
    """The message is not in the store (a vote or outbox entry needs the message first)."""


class VoteConflictError(StoreError):
    """This node already voted for another roster message of the same epoch (§6)."""


# -- records -------------------------------------------------------------------------------------


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


# -- row helpers (a corrupted file may hold any type in any column) ------------------------------


def _blob(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise StoreFileError(f"store holds {type(value).__name__} where bytes belong")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int):
        raise StoreFileError(f"store holds {type(value).__name__} where an integer belongs")
    return value


def _message(row: Sequence[Any]) -> StoredMessage:
    try:
        status = MessageStatus(row[3])
    except ValueError as exc:
        raise StoreFileError(f"store holds message status {row[3]!r}") from exc
    return StoredMessage(
        group_id=_blob(row[0]),
        message_hash=_blob(row[1]),
        seq=None if row[2] is None else _int(row[2]),
        status=status,
        epoch=_int(row[4]),
        time_stamp=_int(row[5]),
        author=_blob(row[6]),
        received_at=_int(row[7]),
        packet=_blob(row[8]),
        certificate=None if row[9] is None else _blob(row[9]),
    )


#: What SQLite calls can raise on a bad file: its own errors, and (for damaged text, including
#: the schema's own SQL) a failure to decode UTF-8.
_DB_ERRORS: Final = (sqlite3.Error, UnicodeDecodeError)


def _translate(exc: Exception, what: str) -> StoreError:
    """A :class:`StoreError` for an SQLite error; corruption gets :class:`StoreFileError`."""
    if isinstance(exc, UnicodeDecodeError):
        return StoreFileError(f"{what}: the store file is corrupted (invalid text: {exc})")
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or name.startswith("SQLITE_CORRUPT_"):
        return StoreFileError(f"{what}: the store file is corrupted ({exc})")
    return StoreError(f"{what}: {exc}")


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes")


def _check_uint(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError(f"{what} must be an integer in [0, 2**63)")


# -- opening: lock, file checks, schema ----------------------------------------------------------


def _acquire_lock(where: str | os.PathLike[str]) -> tuple[Path, int]:
    """Create the data dir if needed and take the store lock; return the dir and the lock's
    descriptor."""
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


def _prepare_file(path: Path) -> bool:
    """Create the database file with mode 0600 if absent; refuse one others can read.

    Returns True if the file was created.
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


def _check_schema(conn: sqlite3.Connection, path: Path) -> bool:
    """Classify the file before anything writes to it. Returns True if it is a new, empty one.

    Raises:
        StoreFileError: not an SQLite file, another application's database, or another schema.
    """
    try:
        app_id = _int(conn.execute("PRAGMA application_id").fetchone()[0])
        objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except _DB_ERRORS as exc:
        raise StoreFileError(
            f"{path} is not a p2pchat store (not an SQLite database, or corrupted: {exc}); "
            "it was left untouched"
        ) from exc
    if app_id == 0 and objects == 0:
        return True
    if app_id != APPLICATION_ID:
        raise StoreFileError(
            f"{path} is not a p2pchat store (application id {app_id:#x}); it was left untouched"
        )
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except _DB_ERRORS as exc:
        raise StoreFileError(f"{path} is a damaged p2pchat store: {exc}") from exc
    if row is None or not isinstance(row[0], int):
        raise StoreFileError(f"{path} is a damaged p2pchat store: no schema version")
    version = row[0]
    if version > SCHEMA_VERSION:
        raise StoreFileError(
            f"{path} was written by a newer p2pchat (schema {version}); this version reads "
            f"schema {SCHEMA_VERSION}; it was left untouched"
        )
    if version != SCHEMA_VERSION:
        raise StoreFileError(f"{path} has unknown schema version {version}")
    try:
        found = _schema_of(conn)
    except _DB_ERRORS as exc:
        raise StoreFileError(f"{path} is a damaged p2pchat store: {exc}") from exc
    if found != _expected_schema():
        raise StoreFileError(
            f"{path} is a damaged p2pchat store: its tables are not schema {SCHEMA_VERSION}"
        )
    return False


def _schema_of(conn: sqlite3.Connection) -> set[tuple[Any, ...]]:
    return set(
        conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL")
    )


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _expected_schema() -> set[tuple[Any, ...]]:
    """What ``sqlite_master`` of an intact store holds (made in memory; about a millisecond)."""
    conn = sqlite3.connect(":memory:")
    try:
        _create_schema(conn)
        return _schema_of(conn)
    finally:
        conn.close()


def _enable_wal(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: SQLite refused WAL mode (got {mode!r})")


def _open_connections(data_dir: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """Open, check and (for a new file) initialise the store; return (writer, reader)."""
    path = data_dir / STORE_FILE
    created = _prepare_file(path)
    try:
        writer = _connect(path)
    except sqlite3.Error as exc:
        raise _translate(exc, f"cannot open {path}") from exc
    try:
        fresh = _check_schema(writer, path)
        _enable_wal(writer, path)
        writer.execute("PRAGMA synchronous = FULL")
        writer.execute("PRAGMA foreign_keys = ON")
        if fresh:
            writer.execute("BEGIN IMMEDIATE")
            try:
                _create_schema(writer)
                writer.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
                writer.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                writer.execute("COMMIT")
            except BaseException:
                writer.execute("ROLLBACK")
                raise
        if created:
            _fsync_dir(data_dir)
        reader = _connect(path)
        try:
            reader.execute("PRAGMA query_only = ON")
        except BaseException:
            reader.close()
            raise
    except _DB_ERRORS as exc:
        writer.close()
        raise _translate(exc, f"cannot open {path}") from exc
    except BaseException:
        writer.close()
        raise
    return writer, reader


# -- the batching workers ------------------------------------------------------------------------


class _JobState(enum.Enum):
    QUEUED = enum.auto()
    TAKEN = enum.auto()
    WITHDRAWN = enum.auto()
    DONE = enum.auto()


Op = Callable[[sqlite3.Connection], Any]
BatchRunner = Callable[
    [sqlite3.Connection, "list[_Job]"], "tuple[bool, list[outcome.Outcome[Any]]]"
]


@attrs.define(eq=False)
class _Job:
    op: Op
    task: trio.lowlevel.Task
    size: int
    state: _JobState = _JobState.QUEUED


def _run_job(conn: sqlite3.Connection, job: _Job) -> outcome.Outcome[Any]:
    """Run one write under a savepoint; a failed write is rolled back alone.

    Raises:
        sqlite3.Error: the savepoint itself failed (the transaction must be abandoned).
    """
    conn.execute("SAVEPOINT job")
    try:
        value = job.op(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        if isinstance(exc, _DB_ERRORS):
            return outcome.Error(_translate(exc, "write failed"))
        return outcome.Error(exc)
    conn.execute("RELEASE job")
    return outcome.Value(value)


def _commit_batch(
    conn: sqlite3.Connection, batch: list[_Job]
) -> tuple[bool, list[outcome.Outcome[Any]]]:
    """Run ``batch`` in one transaction. Returns (committed, one outcome per job)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        results = [_run_job(conn, job) for job in batch]
        conn.execute("COMMIT")
    except _DB_ERRORS as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        return False, [outcome.Error(_translate(exc, "transaction not committed")) for _ in batch]
    return True, results


def _run_reads(
    conn: sqlite3.Connection, batch: list[_Job]
) -> tuple[bool, list[outcome.Outcome[Any]]]:
    """Run each read of ``batch`` on its own (each sees everything committed before it)."""
    results: list[outcome.Outcome[Any]] = []
    for job in batch:
        try:
            results.append(outcome.Value(job.op(conn)))
        except _DB_ERRORS as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            results.append(outcome.Error(_translate(exc, "read failed")))
        except Exception as exc:
            results.append(outcome.Error(exc))
    return True, results


class _Worker:
    """One connection, a queue of jobs, and the task that runs them in batches (see the top)."""

    def __init__(self, conn: sqlite3.Connection, runner: BatchRunner) -> None:
        self.conn = conn
        self._runner = runner
        self._queue: collections.deque[_Job] = collections.deque()
        self._inflight: list[_Job] = []
        self._wakeup = trio.lowlevel.ParkingLot()
        self._closing = False
        self.batches = 0
        self.done = 0
        self.failed = 0
        self.largest_batch = 0

    @property
    def queued(self) -> int:
        return sum(1 for job in self._queue if job.state is _JobState.QUEUED)

    async def submit(self, op: Callable[[sqlite3.Connection], T], size: int) -> T:
        """Run ``op`` in the next batch; return (or raise) its outcome once the batch is done."""
        if self._closing:
            await trio.lowlevel.checkpoint()
            raise StoreClosedError("the store is closed")
        job = _Job(op, trio.lowlevel.current_task(), size)
        self._queue.append(job)
        self._wakeup.unpark_all()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            # Still queued: withdraw it, it never runs. Taken: its batch is running; wait.
            if job.state is _JobState.QUEUED:
                job.state = _JobState.WITHDRAWN
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _take_batch(self) -> list[_Job]:
        batch: list[_Job] = []
        size = 0
        while self._queue and len(batch) < MAX_BATCH_JOBS:
            job = self._queue[0]
            if job.state is not _JobState.QUEUED:
                self._queue.popleft()
                continue
            if batch and size + job.size > MAX_BATCH_BYTES:
                break
            self._queue.popleft()
            job.state = _JobState.TAKEN
            batch.append(job)
            size += job.size
        return batch

    def _finish(self, job: _Job, result: outcome.Outcome[Any]) -> None:
        if job.state is _JobState.TAKEN or job.state is _JobState.QUEUED:
            job.state = _JobState.DONE
            trio.lowlevel.reschedule(job.task, result)

    async def run(self) -> None:
        """Run queued jobs in batches until closed and drained."""
        try:
            while True:
                batch = self._take_batch()
                if not batch:
                    self._queue.clear()
                    if self._closing:
                        return
                    await self._wakeup.park()
                    continue
                self._inflight = batch
                ok, results = await trio.to_thread.run_sync(self._runner, self.conn, batch)
                if ok:
                    self.batches += 1
                    self.largest_batch = max(self.largest_batch, len(batch))
                for job, result in zip(batch, results, strict=True):
                    if ok and isinstance(result, outcome.Value):
                        self.done += 1
                    else:
                        self.failed += 1
                    self._finish(job, result)
                self._inflight = []
        finally:
            for job in [*self._inflight, *self._queue]:
                closed = StoreClosedError("the store closed before this call ran")
                self._finish(job, outcome.Error(closed))
            self._inflight = []
            self._queue.clear()

    def close(self) -> None:
        """Refuse new jobs; :meth:`run` returns once the queued ones are done."""
        self._closing = True
        self._wakeup.unpark_all()


# -- the store -----------------------------------------------------------------------------------


def _insert_message(
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
) -> bool:
    """The body of :meth:`ChatStore.put_message`, inside the caller's transaction."""
    _require_group(conn, group_id)
    row = conn.execute(
        "SELECT status FROM messages WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    if row is None:
        ratified = certificate is not None
        conn.execute(
            f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                (group_id, message_hash, received_at, outbox_at),
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


def _insert_vote(
    conn: sqlite3.Connection,
    group_id: bytes,
    message_hash: bytes,
    epoch: int,
    vote: bytes,
    *,
    roster: bool,
) -> bytes:
    """The body of :meth:`ChatStore.record_vote`, inside the caller's transaction."""
    row = conn.execute(
        "SELECT vote FROM votes WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    if row is not None:
        return _blob(row[0])
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
                f"already voted for roster message {_blob(other[0]).hex()} of epoch {epoch}"
            )
    conn.execute(
        "INSERT INTO votes (group_id, message_hash, epoch, is_roster, vote) VALUES (?, ?, ?, ?, ?)",
        (group_id, message_hash, epoch, int(roster), vote),
    )
    return vote


class ChatStore:
    """The durable store of one node. Made by :func:`open_store`; do not construct directly.

    Every method may raise :class:`StoreClosedError` (used after close), :class:`StoreFileError`
    (the file turned out to be corrupted) or :class:`StoreError` (any other SQLite failure, such
    as a full disk). Writes return only after their transaction is committed durably.
    """

    def __init__(self, writer: sqlite3.Connection, reader: sqlite3.Connection) -> None:
        self._writer = _Worker(writer, _commit_batch)
        self._reader = _Worker(reader, _run_reads)

    def statistics(self) -> StoreStatistics:
        """Counters of transactions, writes and reads (batching shows as writes > transactions)."""
        return StoreStatistics(
            transactions=self._writer.batches,
            writes=self._writer.done,
            failed_writes=self._writer.failed,
            largest_batch=self._writer.largest_batch,
            reads=self._reader.done,
            queued=self._writer.queued,
        )

    async def _write(self, op: Callable[[sqlite3.Connection], T], size: int = 0) -> T:
        """Run ``op`` in the writer's next transaction; return once it is committed."""
        return await self._writer.submit(op, size)

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` on the read connection with the next batch of reads."""
        return await self._reader.submit(op, 0)

    def _close(self) -> None:
        self._writer.close()
        self._reader.close()

    # -- transactions ---------------------------------------------------------------------------

    async def commit(self, txn: Transaction) -> CommitResult:
        """Commit every operation of ``txn`` together, durably, or none of them.

        Raises:
            VoteConflictError: a :class:`PutVote` for a roster message of an epoch that already
                has a roster vote (nothing of ``txn`` is stored).
            UnknownGroupError: an operation names a group that is neither held nor added
                earlier in ``txn``.
            ValueError: a hash or number out of range, or a packet over 1 MiB.
        """
        rows: list[Callable[[sqlite3.Connection], bytes | None]] = []
        size = 0
        for operation in txn.operations:
            row, cost = _operation(operation)
            rows.append(row)
            size += cost

        def op(conn: sqlite3.Connection) -> CommitResult:
            result = CommitResult()
            for operation, row in zip(txn.operations, rows, strict=True):
                vote = row(conn)
                if isinstance(operation, PutVote) and vote is not None:
                    result.votes[operation.message_hash] = vote
            return result

        return await self._write(op, size)

    # -- groups ---------------------------------------------------------------------------------

    async def add_group(
        self, group_id: bytes, genesis: bytes, *, joined_at: int, settings: bytes = b""
    ) -> bool:
        """Add a group with its signed genesis (opaque CBOR). Returns False if already held
        (the stored record is kept as it is).

        Raises:
            ValueError: ``group_id`` is not 32 bytes.
        """
        _check_hash(group_id, "group_id")
        _check_uint(joined_at, "joined_at")

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO groups (group_id, genesis, joined_at, settings) "
                "VALUES (?, ?, ?, ?)",
                (group_id, genesis, joined_at, settings),
            )
            return cur.rowcount == 1

        return await self._write(op, len(genesis) + len(settings))

    async def set_group_settings(self, group_id: bytes, settings: bytes) -> None:
        """Replace a group's local settings (opaque CBOR).

        Raises:
            UnknownGroupError: the group is not held.
        """
        _check_hash(group_id, "group_id")

        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE groups SET settings = ? WHERE group_id = ?", (settings, group_id)
            )
            if cur.rowcount != 1:
                raise UnknownGroupError(f"unknown group {group_id.hex()}")

        await self._write(op, len(settings))

    async def get_group(self, group_id: bytes) -> GroupRecord | None:
        """The group's record, or None."""

        def op(conn: sqlite3.Connection) -> GroupRecord | None:
            row = conn.execute(
                "SELECT group_id, genesis, joined_at, settings FROM groups WHERE group_id = ?",
                (group_id,),
            ).fetchone()
            return None if row is None else _group(row)

        return await self._read(op)

    async def list_groups(self) -> list[GroupRecord]:
        """Every group, in ``joined_at`` order."""

        def op(conn: sqlite3.Connection) -> list[GroupRecord]:
            rows = conn.execute(
                "SELECT group_id, genesis, joined_at, settings FROM groups "
                "ORDER BY joined_at, group_id"
            ).fetchall()
            return [_group(row) for row in rows]

        return await self._read(op)

    # -- rosters and keys -----------------------------------------------------------------------

    async def put_roster(self, group_id: bytes, epoch: int, packet: bytes) -> bool:
        """Store the certified roster message of ``epoch``. Returns False if one is already held
        for that epoch (the first one is kept).

        Raises:
            UnknownGroupError: the group is not held.
        """
        _check_hash(group_id, "group_id")
        _check_uint(epoch, "epoch")

        def op(conn: sqlite3.Connection) -> bool:
            _require_group(conn, group_id)
            cur = conn.execute(
                "INSERT OR IGNORE INTO rosters (group_id, epoch, packet) VALUES (?, ?, ?)",
                (group_id, epoch, packet),
            )
            return cur.rowcount == 1

        return await self._write(op, len(packet))

    async def get_rosters(self, group_id: bytes) -> list[RosterRecord]:
        """The group's roster messages in epoch order."""

        def op(conn: sqlite3.Connection) -> list[RosterRecord]:
            rows = conn.execute(
                "SELECT group_id, epoch, packet FROM rosters WHERE group_id = ? ORDER BY epoch",
                (group_id,),
            ).fetchall()
            return [RosterRecord(_blob(r[0]), _int(r[1]), _blob(r[2])) for r in rows]

        return await self._read(op)

    async def put_epoch_key(self, group_id: bytes, epoch: int, key: bytes) -> bool:
        """Store a group's epoch key. Returns False if a key for that epoch is already held
        (the first one is kept).

        Raises:
            UnknownGroupError: the group is not held.
        """
        _check_hash(group_id, "group_id")
        _check_uint(epoch, "epoch")

        def op(conn: sqlite3.Connection) -> bool:
            _require_group(conn, group_id)
            cur = conn.execute(
                "INSERT OR IGNORE INTO epoch_keys (group_id, epoch, key) VALUES (?, ?, ?)",
                (group_id, epoch, key),
            )
            return cur.rowcount == 1

        return await self._write(op, len(key))

    async def get_epoch_keys(self, group_id: bytes) -> dict[int, bytes]:
        """The group's epoch keys held, by epoch."""

        def op(conn: sqlite3.Connection) -> dict[int, bytes]:
            rows = conn.execute(
                "SELECT epoch, key FROM epoch_keys WHERE group_id = ? ORDER BY epoch", (group_id,)
            ).fetchall()
            return {_int(r[0]): _blob(r[1]) for r in rows}

        return await self._read(op)

    async def put_hpke_key(self, kem: str, private: bytes, public: bytes) -> bool:
        """Store the node's HPKE key pair for ``kem``. Returns False if one is already held: a
        key pair is never replaced, since epoch keys wrapped to it would become unreadable."""

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO hpke_keys (kem, private, public) VALUES (?, ?, ?)",
                (kem, private, public),
            )
            return cur.rowcount == 1

        return await self._write(op, len(private) + len(public))

    async def get_hpke_key(self, kem: str) -> HpkeKey | None:
        """The node's HPKE key pair for ``kem``, or None."""

        def op(conn: sqlite3.Connection) -> HpkeKey | None:
            row = conn.execute(
                "SELECT kem, private, public FROM hpke_keys WHERE kem = ?", (kem,)
            ).fetchone()
            if row is None:
                return None
            if not isinstance(row[0], str):
                raise StoreFileError("store holds a non-text KEM name")
            return HpkeKey(row[0], _blob(row[1]), _blob(row[2]))

        return await self._read(op)

    # -- messages -------------------------------------------------------------------------------

    async def put_message(
        self,
        group_id: bytes,
        packet: bytes,
        message_hash: bytes,
        *,
        epoch: int,
        time_stamp: int,
        author: bytes,
        received_at: int,
        certificate: bytes | None = None,
        outbox_at: int | None = None,
    ) -> bool:
        """Store a packet (CBOR, *without* its certificate), pending or, with ``certificate``
        (CBOR), ratified.

        Idempotent: returns False if the message is already held and nothing changed. A message
        held pending and now given a certificate becomes ratified (returns True) and takes the
        next ``seq`` of its group. With ``outbox_at``, a newly stored message also enters the
        outbox, due at ``outbox_at``, in the same transaction.

        Raises:
            ValueError: a hash is not 32 bytes, or a number is out of range.
            UnknownGroupError: the group is not held.
        """
        _check_hash(group_id, "group_id")
        _check_hash(message_hash, "message_hash")
        for value, what in ((epoch, "epoch"), (time_stamp, "time_stamp")):
            _check_uint(value, what)
        _check_uint(received_at, "received_at")
        if outbox_at is not None:
            _check_uint(outbox_at, "outbox_at")

        def op(conn: sqlite3.Connection) -> bool:
            return _insert_message(
                conn,
                group_id,
                packet,
                message_hash,
                epoch=epoch,
                time_stamp=time_stamp,
                author=author,
                received_at=received_at,
                certificate=certificate,
                outbox_at=outbox_at,
            )

        size = len(packet) + (len(certificate) if certificate is not None else 0)
        return await self._write(op, size)

    async def put_packet(
        self, packet: Packet, *, received_at: int, outbox_at: int | None = None
    ) -> bool:
        """:meth:`put_message` for a decoded packet: its certificate, if any, is stored apart.

        Raises:
            ValueError: the packet is larger than 1 MiB.
            UnknownGroupError: the group is not held.
        """
        message = packet.message
        certificate = packet.certificate
        return await self.put_message(
            message.group_id,
            attrs.evolve(packet, certificate=None).encode(),
            packet.message_hash,
            epoch=message.epoch,
            time_stamp=message.time_stamp,
            author=message.author.to_bytes(),
            received_at=received_at,
            certificate=None if certificate is None else cbor.dumps(certificate.to_cbor()),
            outbox_at=outbox_at,
        )

    async def has_message(
        self, group_id: bytes, message_hash: bytes, *, ratified_only: bool = False
    ) -> bool:
        """True if the message is held (and ratified, with ``ratified_only``)."""
        return not await self.missing_messages(
            group_id, [message_hash], ratified_only=ratified_only
        )

    async def missing_messages(
        self, group_id: bytes, hashes: Iterable[bytes], *, ratified_only: bool = False
    ) -> list[bytes]:
        """Those of ``hashes`` that are not held (or not ratified, with ``ratified_only``),
        in the order given; one read for all of them (the parents check of §6)."""
        wanted = list(hashes)
        where = " AND status = 'ratified'" if ratified_only else ""

        def op(conn: sqlite3.Connection) -> list[bytes]:
            held: set[bytes] = set()
            for message_hash in set(wanted):
                row = conn.execute(
                    "SELECT 1 FROM messages WHERE group_id = ? AND message_hash = ?" + where,
                    (group_id, message_hash),
                ).fetchone()
                if row is not None:
                    held.add(message_hash)
            return [h for h in wanted if h not in held]

        return await self._read(op)

    async def get_message(self, group_id: bytes, message_hash: bytes) -> StoredMessage | None:
        """The stored message, or None."""

        def op(conn: sqlite3.Connection) -> StoredMessage | None:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE group_id = ? AND message_hash = ?",
                (group_id, message_hash),
            ).fetchone()
            return None if row is None else _message(row)

        return await self._read(op)

    async def page_messages(
        self,
        group_id: bytes,
        cursor: int,
        limit: int = DHT_PAGE_PACKETS,
        max_bytes: int = DHT_PAGE_BYTES,
    ) -> tuple[list[StoredMessage], int | None]:
        """A page of the group's ratified messages after ``cursor`` (0 = from the start), in
        ``seq`` order, for ``dht`` (§8). Returns (messages, next cursor or None at the end).

        A page holds at most ``limit`` messages whose :attr:`~StoredMessage.wire_size` sum to at
        most ``max_bytes``, except that it always holds at least one message (so a message larger
        than ``max_bytes`` cannot stall a sync).

        Raises:
            ValueError: ``cursor`` is negative or ``limit`` / ``max_bytes`` not positive.
        """
        _check_uint(cursor, "cursor")
        if limit < 1 or max_bytes < 1:
            raise ValueError("limit and max_bytes must be positive")
        cert_overhead = CERTIFICATE_KEY_OVERHEAD

        def op(conn: sqlite3.Connection) -> tuple[list[StoredMessage], int | None]:
            conn.execute("BEGIN")
            try:
                sizes = conn.execute(
                    "SELECT seq, length(packet) + ? + length(certificate) FROM messages "
                    "WHERE group_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (cert_overhead, group_id, cursor, limit + 1),
                ).fetchall()
                last = cursor
                total = 0
                taken = 0
                for seq, size in sizes[:limit]:
                    if taken and total + _int(size) > max_bytes:
                        break
                    total += _int(size)
                    last = _int(seq)
                    taken += 1
                rows = conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
                    "WHERE group_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
                    (group_id, cursor, last),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
            more = len(sizes) > taken
            return [_message(row) for row in rows], (last if more else None)

        return await self._read(op)

    async def all_ratified(self, group_id: bytes) -> list[StoredMessage]:
        """Every ratified message of the group, in ``seq`` order (for display, which then
        orders them by the DAG, §8)."""

        def op(conn: sqlite3.Connection) -> list[StoredMessage]:
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages "
                "WHERE group_id = ? AND seq IS NOT NULL ORDER BY seq",
                (group_id,),
            ).fetchall()
            return [_message(row) for row in rows]

        return await self._read(op)

    # -- votes ----------------------------------------------------------------------------------

    async def record_vote(
        self, group_id: bytes, message_hash: bytes, epoch: int, vote: bytes, *, roster: bool = False
    ) -> bytes:
        """Record this node's vote (CBOR) for a stored message; return the vote to send.

        The vote is committed durably before this returns (§6: a ratifier's vote is sent only
        after its commit). If a vote for this message is already held, that vote is returned
        unchanged (idempotent re-send). With ``roster``, at most one roster message per epoch
        gets a vote, checked in the same transaction.

        Raises:
            UnknownMessageError: the message is not stored (it must be committed first).
            VoteConflictError: ``roster`` and another roster message of ``epoch`` has a vote.
            ValueError: ``epoch`` is not the stored message's epoch.
        """
        _check_hash(group_id, "group_id")
        _check_hash(message_hash, "message_hash")
        _check_uint(epoch, "epoch")

        def op(conn: sqlite3.Connection) -> bytes:
            return _insert_vote(conn, group_id, message_hash, epoch, vote, roster=roster)

        return await self._write(op, len(vote))

    async def put_packet_and_vote(
        self, packet: Packet, vote: bytes, *, received_at: int, roster: bool = False
    ) -> bytes:
        """Store ``packet`` (pending) and this node's vote for it in one transaction; return
        the vote to send (an earlier vote for the same message, if one is held).

        One durable commit instead of two before a ratifier answers ``mrat``. If the vote is
        refused, the packet is not stored either.

        Raises:
            VoteConflictError: ``roster`` and another roster message of the epoch has a vote.
            UnknownGroupError: the group is not held.
            ValueError: the packet is larger than 1 MiB.
        """
        message = packet.message
        group_id, message_hash = message.group_id, packet.message_hash
        encoded = attrs.evolve(packet, certificate=None).encode()

        def op(conn: sqlite3.Connection) -> bytes:
            _insert_message(
                conn,
                group_id,
                encoded,
                message_hash,
                epoch=message.epoch,
                time_stamp=message.time_stamp,
                author=message.author.to_bytes(),
                received_at=received_at,
                certificate=None,
                outbox_at=None,
            )
            return _insert_vote(conn, group_id, message_hash, message.epoch, vote, roster=roster)

        return await self._write(op, len(encoded) + len(vote))

    async def get_vote(self, group_id: bytes, message_hash: bytes) -> bytes | None:
        """This node's vote for the message, or None."""

        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT vote FROM votes WHERE group_id = ? AND message_hash = ?",
                (group_id, message_hash),
            ).fetchone()
            return None if row is None else _blob(row[0])

        return await self._read(op)

    # -- outbox ---------------------------------------------------------------------------------

    async def outbox_add(
        self, group_id: bytes, message_hash: bytes, *, now: int, next_at: int | None = None
    ) -> bool:
        """Put a stored message in the outbox, due at ``next_at`` (default ``now``). Returns
        False if it is already there (its schedule is kept).

        Raises:
            UnknownMessageError: the message is not stored.
        """
        _check_hash(group_id, "group_id")
        _check_hash(message_hash, "message_hash")
        _check_uint(now, "now")
        due = now if next_at is None else next_at
        _check_uint(due, "next_at")

        def op(conn: sqlite3.Connection) -> bool:
            _require_message(conn, group_id, message_hash)
            cur = conn.execute(
                "INSERT OR IGNORE INTO outbox (group_id, message_hash, created_at, "
                "next_attempt_at) VALUES (?, ?, ?, ?)",
                (group_id, message_hash, now, due),
            )
            return cur.rowcount == 1

        return await self._write(op)

    async def outbox_due(self, now: int, limit: int = 64) -> list[OutboxEntry]:
        """Outbox entries due at ``now``, earliest first."""

        def op(conn: sqlite3.Connection) -> list[OutboxEntry]:
            rows = conn.execute(
                "SELECT group_id, message_hash, created_at, attempts, next_attempt_at FROM outbox "
                "WHERE next_attempt_at <= ? ORDER BY next_attempt_at, created_at LIMIT ?",
                (now, limit),
            ).fetchall()
            return [_outbox(row) for row in rows]

        return await self._read(op)

    async def outbox_next_at(self) -> int | None:
        """When the earliest outbox entry is due, or None if the outbox is empty."""

        def op(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT min(next_attempt_at) FROM outbox").fetchone()
            return None if row[0] is None else _int(row[0])

        return await self._read(op)

    async def outbox_retry(self, group_id: bytes, message_hash: bytes, next_at: int) -> bool:
        """Count one more attempt and reschedule the entry at ``next_at``. Returns False if the
        message is not in the outbox."""
        _check_uint(next_at, "next_at")

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? "
                "WHERE group_id = ? AND message_hash = ?",
                (next_at, group_id, message_hash),
            )
            return cur.rowcount == 1

        return await self._write(op)

    async def outbox_done(self, group_id: bytes, message_hash: bytes) -> bool:
        """Remove the entry (the message is ratified and delivered). Returns False if absent."""

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM outbox WHERE group_id = ? AND message_hash = ?",
                (group_id, message_hash),
            )
            return cur.rowcount == 1

        return await self._write(op)

    # -- peers ----------------------------------------------------------------------------------

    async def put_peer(self, peer: bytes, addrs: bytes, *, now: int) -> None:
        """Remember a peer's addresses (opaque CBOR), replacing what was held."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO peers (peer, addrs, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (peer) DO UPDATE SET addrs = excluded.addrs, "
                "updated_at = excluded.updated_at",
                (peer, addrs, now),
            )

        await self._write(op, len(addrs))

    async def get_peer(self, peer: bytes) -> bytes | None:
        """A peer's stored addresses, or None."""

        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT addrs FROM peers WHERE peer = ?", (peer,)).fetchone()
            return None if row is None else _blob(row[0])

        return await self._read(op)


def _group(row: Sequence[Any]) -> GroupRecord:
    return GroupRecord(_blob(row[0]), _blob(row[1]), _int(row[2]), _blob(row[3]))


def _outbox(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(_blob(row[0]), _blob(row[1]), _int(row[2]), _int(row[3]), _int(row[4]))


def _require_group(conn: sqlite3.Connection, group_id: bytes) -> None:
    if conn.execute("SELECT 1 FROM groups WHERE group_id = ?", (group_id,)).fetchone() is None:
        raise UnknownGroupError(f"unknown group {group_id.hex()}")


def _require_message(conn: sqlite3.Connection, group_id: bytes, message_hash: bytes) -> None:
    row = conn.execute(
        "SELECT 1 FROM messages WHERE group_id = ? AND message_hash = ?",
        (group_id, message_hash),
    ).fetchone()
    if row is None:
        raise UnknownMessageError(f"message {message_hash.hex()} is not stored")


def _next_seq(conn: sqlite3.Connection, group_id: bytes) -> int:
    row = conn.execute("SELECT max(seq) FROM messages WHERE group_id = ?", (group_id,)).fetchone()
    return 1 if row[0] is None else _int(row[0]) + 1


def _close_connections(*conns: sqlite3.Connection) -> None:
    # The writer closes last: the last connection checkpoints the WAL into the database file.
    for conn in conns:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _operation(op: object) -> tuple[Callable[[sqlite3.Connection], bytes | None], int]:
    """The SQL of one transaction operation (checked now), and the bytes it writes."""
    if isinstance(op, AddGroup):
        _check_hash(op.group_id, "group_id")
        _check_uint(op.joined_at, "joined_at")

        def add_group(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO groups (group_id, genesis, joined_at, settings) "
                "VALUES (?, ?, ?, ?)",
                (op.group_id, op.genesis, op.joined_at, b""),
            )

        return add_group, len(op.genesis)
    if isinstance(op, PutPacket):
        message = op.packet.message
        _check_hash(message.group_id, "group_id")
        _check_uint(op.received_at, "received_at")
        if op.outbox_at is not None:
            _check_uint(op.outbox_at, "outbox_at")
        encoded = attrs.evolve(op.packet, certificate=None).encode()
        cert = op.packet.certificate
        certificate = None if cert is None else cbor.dumps(cert.to_cbor())

        def put_packet(conn: sqlite3.Connection) -> None:
            _insert_message(
                conn,
                message.group_id,
                encoded,
                op.packet.message_hash,
                epoch=message.epoch,
                time_stamp=message.time_stamp,
                author=message.author.to_bytes(),
                received_at=op.received_at,
                certificate=certificate,
                outbox_at=op.outbox_at,
            )

        return put_packet, len(encoded) + len(certificate or b"")
    if isinstance(op, PutRoster | PutEpochKey):
        _check_hash(op.group_id, "group_id")
        _check_uint(op.epoch, "epoch")
        table, column, value = (
            ("rosters", "packet", op.packet)
            if isinstance(op, PutRoster)
            else ("epoch_keys", "key", op.key)
        )

        def put_row(conn: sqlite3.Connection) -> None:
            _require_group(conn, op.group_id)
            conn.execute(
                f"INSERT OR IGNORE INTO {table} (group_id, epoch, {column}) VALUES (?, ?, ?)",
                (op.group_id, op.epoch, value),
            )

        return put_row, len(value)
    if isinstance(op, PutVote):
        _check_hash(op.group_id, "group_id")
        _check_hash(op.message_hash, "message_hash")
        _check_uint(op.epoch, "epoch")

        def put_vote(conn: sqlite3.Connection) -> bytes:
            return _insert_vote(
                conn, op.group_id, op.message_hash, op.epoch, op.vote, roster=op.roster
            )

        return put_vote, len(op.vote)
    if isinstance(op, OutboxDone):

        def outbox_done(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM outbox WHERE group_id = ? AND message_hash = ?",
                (op.group_id, op.message_hash),
            )

        return outbox_done, 0
    raise TypeError(f"not a transaction operation: {op!r}")


@asynccontextmanager
async def open_store(data_dir: str | os.PathLike[str]) -> AsyncIterator[ChatStore]:
    """Open the store in ``data_dir`` (created with mode 0700 if absent) for the block.

    The store file is ``data_dir/store.sqlite3``; ``data_dir/store.lock`` is held (``flock``)
    while the store is open. At the end of the block the writes already queued are committed,
    then the store closes.

    Raises:
        StoreLockedError: another process, or another open in this one, holds the store.
        StoreFileError: the file is not a p2pchat store, is corrupted, is readable by others,
            or was written by a newer version; it is left untouched.
        StoreError: the data dir or the file cannot be created or opened.
    """
    path, lock_fd = await trio.to_thread.run_sync(_acquire_lock, data_dir)
    try:
        writer, reader = await trio.to_thread.run_sync(_open_connections, path)
        try:
            store = ChatStore(writer, reader)
            # The body's exception is re-raised as itself, not inside the nursery's group.
            body_error: BaseException | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store._writer.run)
                nursery.start_soon(store._reader.run)
                try:
                    yield store
                except BaseException as exc:
                    body_error = exc
                finally:
                    store._close()
            if body_error is not None:
                raise body_error
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_close_connections, reader, writer)
    finally:
        os.close(lock_fd)
