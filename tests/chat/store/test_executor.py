"""The batching executor (chat/store/executor.py, specs/chat.md §9)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio

from chat.store.helpers import G1, G2, mh, put
from p2pchat.chat.store import (
    ChatStore,
    StoreClosedError,
    StoreError,
    UnknownGroupError,
)
from p2pchat.chat.store.executor import BatchWorker, commit_batch

# -- batching, failures, cancellation, close ---------------------------------------------------


async def test_concurrent_writes_share_transactions(store: ChatStore) -> None:
    before = store.statistics()
    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(put, store, i)
    after = store.statistics()
    assert after.writes - before.writes == 200
    assert after.transactions - before.transactions <= 10
    assert after.largest_batch >= 20
    assert len(await store.all_ratified(G1)) == 200
    assert sorted(m.seq or 0 for m in await store.all_ratified(G1)) == list(range(1, 201))


async def test_a_failing_write_does_not_undo_its_batch(store: ChatStore) -> None:
    errors: list[BaseException] = []

    async def bad() -> None:
        try:
            await store.put_roster(G2, 1, b"r")
        except UnknownGroupError as exc:
            errors.append(exc)

    before = store.statistics()
    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(put, store, i)
        nursery.start_soon(bad)
    after = store.statistics()
    assert len(errors) == 1
    assert after.failed_writes - before.failed_writes == 1
    assert after.writes - before.writes == 10
    assert len(await store.all_ratified(G1)) == 10


async def test_cancelled_queued_write_never_happens(store: ChatStore) -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        await put(store, 1)
    assert scope.cancelled_caught
    assert await store.get_message(G1, mh(1)) is None
    assert store.statistics().queued == 0
    assert await put(store, 2)  # the writer carries on


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[BatchWorker]:
    """A writer on its own database (one table ``t``), running until the test ends."""
    conn = sqlite3.connect(
        tmp_path / "executor.sqlite3", isolation_level=None, check_same_thread=False
    )
    conn.execute("CREATE TABLE t (x INTEGER)")
    worker = BatchWorker(conn, commit_batch)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            yield worker
            worker.close()
    finally:
        conn.close()


def insert(x: int) -> Callable[[sqlite3.Connection], int]:
    def op(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    return op


def rows(conn: sqlite3.Connection) -> list[int]:
    return [x for (x,) in conn.execute("SELECT x FROM t ORDER BY x")]


async def test_cancelled_running_write_completes(worker: BatchWorker) -> None:
    entered = trio.Event()
    release = threading.Event()
    token = trio.lowlevel.current_trio_token()

    def slow(conn: sqlite3.Connection) -> str:
        trio.from_thread.run_sync(entered.set, trio_token=token)
        release.wait(30)
        conn.execute("INSERT INTO t (x) VALUES (1)")
        return "done"

    results: list[str] = []

    async def writer(scope: trio.CancelScope) -> None:
        with scope:
            results.append(await worker.submit(slow, 0))
            await trio.lowlevel.checkpoint()
            results.append("not reached")

    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer, scope)
        await entered.wait()
        scope.cancel()
        release.set()
    assert results == ["done"]
    assert scope.cancelled_caught
    assert await worker.submit(rows, 0) == [1]


async def test_close_drains_the_queue_then_refuses(worker: BatchWorker) -> None:
    results: list[int] = []

    async def submit(x: int) -> None:
        results.append(await worker.submit(insert(x), 0))

    async with trio.open_nursery() as nursery:
        for x in range(5):
            nursery.start_soon(submit, x)
        await wait_all_queued(worker, 5)
        worker.close()
        await worker.wait_stopped()
    assert sorted(results) == list(range(5))
    assert worker.done == 5
    with pytest.raises(StoreClosedError):
        await worker.submit(rows, 0)


async def wait_all_queued(worker: BatchWorker, n: int) -> None:
    """Let the submitting tasks run until ``n`` jobs are queued or done."""
    while worker.queued + worker.done < n:
        await trio.lowlevel.checkpoint()


async def test_a_failed_transaction_fails_every_job_of_its_batch(worker: BatchWorker) -> None:
    def end_the_transaction(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (x) VALUES (7)")
        # Releasing the batch's savepoints and committing here makes the batch's own COMMIT
        # fail: the runner reports the whole batch as not committed.
        conn.execute("RELEASE job")
        conn.execute("COMMIT")

    with pytest.raises(StoreError, match="transaction not committed"):
        await worker.submit(end_the_transaction, 0)
    assert worker.failed == 1
