"""The store's executor: a batching worker per SQLite connection (specs/chat.md §9).

Theory of operation
-------------------
A :class:`BatchWorker` owns one SQLite connection, a queue of jobs and the task that runs them
(:meth:`BatchWorker.run`, started by :func:`~.store.open_store` in its nursery). Every SQLite
call runs in ``trio.to_thread.run_sync``; no thread of our own exists, and each connection is
used by one worker-thread call at a time. A job is a small function of the connection.

Writes. :meth:`BatchWorker.submit` appends a job to the writer's queue, wakes the writer, and
parks the calling task. The writer takes all that is queued (up to a batch limit) and runs it in
**one transaction in one worker-thread call** (:func:`commit_batch`: ``BEGIN IMMEDIATE``; a
``SAVEPOINT`` per job, so one failing job does not undo the others; ``COMMIT``), and only then
reschedules each caller with its result. With ``journal_mode=WAL`` and ``synchronous=FULL`` every
``COMMIT`` fsyncs the WAL, so a caller that has its result holds a write that survives a crash
*and* a power loss: a ratifier may send its vote as soon as its write returns.
(``synchronous=NORMAL`` would survive a crash of the process but not a power loss, which could
forget a message already voted for.) While one batch commits, the next one queues up, so N
concurrent writers cost far fewer than N fsyncs (see :attr:`BatchWorker.batches`).

Cancellation of a job is exact: a job still queued (:attr:`JobState.QUEUED`) is withdrawn
(:attr:`JobState.WITHDRAWN`) and the caller gets ``Cancelled`` (it never runs); a job the worker
has already taken (:attr:`JobState.TAKEN`) cannot be withdrawn, so the caller waits for its batch
(bounded) and gets the result, and the cancellation is delivered at its next checkpoint, as with
``trio.to_thread.run_sync``. A job whose caller was rescheduled is :attr:`JobState.DONE`.

Reads go the same way through the reader, on a second connection (``query_only``):
:func:`run_reads` runs every read queued in one worker-thread call, each in its own implicit read
transaction, concurrently with the writer's transaction (WAL readers never wait for the writer,
so a read never waits for an fsync). A read started after a write returned sees that write.
Batching reads matters as much as batching writes: with many concurrent readers the thread
hand-off, not SQLite, is the cost.

Closing (:meth:`BatchWorker.close`) refuses new jobs; :meth:`BatchWorker.run` returns once the
jobs queued before are done (:meth:`BatchWorker.wait_stopped`). Jobs still pending when the task
ends any other way (cancelled, or its connection failed) get
:class:`~.errors.StoreClosedError`.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import sqlite3
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs
import outcome
import trio

from .errors import DB_ERRORS, StoreClosedError, translate

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_JOBS",
    "BatchRunner",
    "BatchWorker",
    "Job",
    "JobState",
    "Op",
    "commit_batch",
    "run_reads",
]

T = TypeVar("T")

#: A batch (one transaction, or one worker-thread call of reads) holds at most this many calls,
#: and at most this many bytes of blobs beyond its first call.
MAX_BATCH_JOBS: Final = 1024
MAX_BATCH_BYTES: Final = 16 * 1024 * 1024


class JobState(enum.Enum):
    """Where a job is in its life (see the top of the module)."""

    QUEUED = enum.auto()
    TAKEN = enum.auto()
    WITHDRAWN = enum.auto()
    DONE = enum.auto()


#: A job's work: a function of the worker's connection.
Op = Callable[[sqlite3.Connection], Any]
#: Runs a batch on the connection in one worker-thread call: (committed, one outcome per job).
BatchRunner = Callable[[sqlite3.Connection, "list[Job]"], "tuple[bool, list[outcome.Outcome[Any]]]"]


@attrs.define(eq=False)
class Job:
    """One call waiting in a worker's queue: its work, its parked task and its blob bytes."""

    op: Op
    task: trio.lowlevel.Task
    size: int
    state: JobState = JobState.QUEUED


def _run_job(conn: sqlite3.Connection, job: Job) -> outcome.Outcome[Any]:
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
        if isinstance(exc, DB_ERRORS):
            return outcome.Error(translate(exc, "write failed"))
        return outcome.Error(exc)
    conn.execute("RELEASE job")
    return outcome.Value(value)


def commit_batch(
    conn: sqlite3.Connection, batch: list[Job]
) -> tuple[bool, list[outcome.Outcome[Any]]]:
    """Run ``batch`` in one transaction. Returns (committed, one outcome per job).

    A job that raises is rolled back to its savepoint and gets its error as its outcome (an
    SQLite error translated to a :class:`~.errors.StoreError`); the others still commit. If the
    transaction itself fails, nothing is committed and every job gets a ``StoreError``.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        results = [_run_job(conn, job) for job in batch]
        conn.execute("COMMIT")
    except DB_ERRORS as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        return False, [outcome.Error(translate(exc, "transaction not committed")) for _ in batch]
    return True, results


def run_reads(
    conn: sqlite3.Connection, batch: list[Job]
) -> tuple[bool, list[outcome.Outcome[Any]]]:
    """Run each read of ``batch`` on its own (each sees everything committed before it).

    A read that raises gets its error as its outcome (an SQLite error translated to a
    :class:`~.errors.StoreError`); the others are not affected.
    """
    results: list[outcome.Outcome[Any]] = []
    for job in batch:
        try:
            results.append(outcome.Value(job.op(conn)))
        except DB_ERRORS as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            results.append(outcome.Error(translate(exc, "read failed")))
        except Exception as exc:
            results.append(outcome.Error(exc))
    return True, results


class BatchWorker:
    """One connection, a queue of jobs, and the task that runs them in batches (see the top).

    ``batches`` counts the batches run to completion (committed transactions for the writer),
    ``done`` and ``failed`` the jobs that got a value or an error, ``largest_batch`` the most
    jobs one batch held.
    """

    def __init__(self, conn: sqlite3.Connection, runner: BatchRunner) -> None:
        self.conn = conn
        self._runner = runner
        self._queue: collections.deque[Job] = collections.deque()
        self._inflight: list[Job] = []
        self._wakeup = trio.lowlevel.ParkingLot()
        self._closing = False
        self._stopped = trio.Event()
        self.batches = 0
        self.done = 0
        self.failed = 0
        self.largest_batch = 0

    @property
    def queued(self) -> int:
        """Jobs waiting in the queue (not yet taken, not withdrawn)."""
        return sum(1 for job in self._queue if job.state is JobState.QUEUED)

    async def submit(self, op: Callable[[sqlite3.Connection], T], size: int) -> T:
        """Run ``op`` in the next batch; return (or raise) its outcome once the batch is done.

        ``size`` is the bytes of blobs ``op`` writes, for the batch's byte limit.

        Raises:
            StoreClosedError: the worker is closed, or stopped before ``op`` ran.
            StoreError: ``op`` failed in SQLite, or its transaction did not commit.
            Exception: whatever else ``op`` raised.
        """
        if self._closing:
            await trio.lowlevel.checkpoint()
            raise StoreClosedError("the store is closed")
        job = Job(op, trio.lowlevel.current_task(), size)
        self._queue.append(job)
        self._wakeup.unpark_all()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            # Still queued: withdraw it, it never runs. Taken: its batch is running; wait.
            if job.state is JobState.QUEUED:
                job.state = JobState.WITHDRAWN
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _take_batch(self) -> list[Job]:
        batch: list[Job] = []
        size = 0
        while self._queue and len(batch) < MAX_BATCH_JOBS:
            job = self._queue[0]
            if job.state is not JobState.QUEUED:
                self._queue.popleft()
                continue
            if batch and size + job.size > MAX_BATCH_BYTES:
                break
            self._queue.popleft()
            job.state = JobState.TAKEN
            batch.append(job)
            size += job.size
        return batch

    def _finish(self, job: Job, result: outcome.Outcome[Any]) -> None:
        if job.state is JobState.TAKEN or job.state is JobState.QUEUED:
            job.state = JobState.DONE
            trio.lowlevel.reschedule(job.task, result)

    async def run(self) -> None:
        """Run queued jobs in batches until closed and drained (the worker's task)."""
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
            self._stopped.set()

    def close(self) -> None:
        """Refuse new jobs; :meth:`run` returns once the queued ones are done."""
        self._closing = True
        self._wakeup.unpark_all()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`run` has returned (after :meth:`close`, once the queue is drained)."""
        await self._stopped.wait()
