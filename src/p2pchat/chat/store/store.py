"""The node's durable chat store: :class:`ChatStore` and :func:`open_store` (specs/chat.md §9).

:func:`open_store` takes the data dir's lock and opens the store file (:mod:`.files`), then runs
two :class:`~.executor.BatchWorker` tasks, the writer and the reader, each with its own
connection (:mod:`.executor` explains the batching). :class:`ChatStore` is the thin async face:
each method checks its arguments, then hands the SQL of its operation (:mod:`.groups`,
:mod:`.messages`, :mod:`.outbox`) to the writer or the reader. :meth:`ChatStore.commit` runs a
whole :class:`~p2pchat.chat.core.txn.Transaction` as one write, so it is atomic.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import attrs
import trio

from ...aio import open_service_nursery
from ..core import cbor
from ..core.packet import Packet
from ..core.txn import (
    AddGroup,
    CommitResult,
    DropPending,
    OutboxDone,
    PrunePacket,
    PutEpochKey,
    PutKeySet,
    PutPacket,
    PutRoster,
    PutVote,
    Transaction,
)
from . import groups, messages, outbox
from .executor import BatchWorker, commit_batch, run_reads
from .files import acquire_lock, close_connections, open_connections, release_lock
from .messages import DHT_PAGE_BYTES, DHT_PAGE_PACKETS
from .records import (
    GroupRecord,
    HpkeKey,
    OutboxEntry,
    RosterRecord,
    StoredMessage,
    StoreStatistics,
    check_hash,
    check_uint,
)

__all__ = ["ChatStore", "open_store", "transaction_sql"]

T = TypeVar("T")


class ChatStore:
    """The durable store of one node. Made by :func:`open_store`; do not construct directly.

    Every method may raise :class:`~.errors.StoreClosedError` (used after close),
    :class:`~.errors.StoreFileError` (the file turned out to be corrupted) or
    :class:`~.errors.StoreError` (any other SQLite failure, such as a full disk). Writes return
    only after their transaction is committed durably.
    """

    def __init__(
        self, writer: BatchWorker, reader: BatchWorker, *, data_dir: Path | None = None
    ) -> None:
        self._writer = writer
        self._reader = reader
        #: The data dir the store lives in (artifact chunks are files beside it).
        self.data_dir = data_dir

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

    # -- transactions ---------------------------------------------------------------------------

    async def commit(self, txn: Transaction) -> CommitResult:
        """Commit every operation of ``txn`` together, durably, or none of them.

        Raises:
            VoteConflictError: a :class:`PutVote` for a roster message of an epoch that already
                has a roster vote (nothing of ``txn`` is stored).
            UnknownGroupError: an operation names a group that is neither held nor added
                earlier in ``txn``.
            UnknownMessageError: a :class:`PutVote` for a message neither stored nor put
                earlier in ``txn``.
            ValueError: a hash or number out of range, or a packet over 1 MiB.
        """
        op, size = transaction_sql(txn)
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
        check_hash(group_id, "group_id")
        check_uint(joined_at, "joined_at")
        op = functools.partial(
            groups.add_group,
            group_id=group_id,
            genesis=genesis,
            joined_at=joined_at,
            settings=settings,
        )
        return await self._write(op, len(genesis) + len(settings))

    async def get_group(self, group_id: bytes) -> GroupRecord | None:
        """The group's record, or None."""
        return await self._read(functools.partial(groups.get_group, group_id=group_id))

    async def list_groups(self) -> list[GroupRecord]:
        """Every group, in ``joined_at`` order."""
        return await self._read(groups.list_groups)

    # -- rosters and keys -----------------------------------------------------------------------

    async def put_roster(self, group_id: bytes, epoch: int, packet: bytes) -> bool:
        """Store the certified roster message of ``epoch``. Returns False if one is already held
        for that epoch (the first one is kept).

        Raises:
            UnknownGroupError: the group is not held.
        """
        check_hash(group_id, "group_id")
        check_uint(epoch, "epoch")
        op = functools.partial(groups.put_roster, group_id=group_id, epoch=epoch, packet=packet)
        return await self._write(op, len(packet))

    async def get_rosters(self, group_id: bytes) -> list[RosterRecord]:
        """The group's roster messages in epoch order."""
        return await self._read(functools.partial(groups.get_rosters, group_id=group_id))

    async def put_epoch_key(self, group_id: bytes, epoch: int, key: bytes) -> bool:
        """Store a group's epoch key. Returns False if a key for that epoch is already held
        (the first one is kept).

        Raises:
            UnknownGroupError: the group is not held.
        """
        check_hash(group_id, "group_id")
        check_uint(epoch, "epoch")
        op = functools.partial(groups.put_epoch_key, group_id=group_id, epoch=epoch, key=key)
        return await self._write(op, len(key))

    async def get_epoch_keys(self, group_id: bytes) -> dict[int, bytes]:
        """The group's epoch keys held, by epoch."""
        return await self._read(functools.partial(groups.get_epoch_keys, group_id=group_id))

    async def put_hpke_key(self, kem: str, private: bytes, public: bytes) -> bool:
        """Store the node's HPKE key pair for ``kem``. Returns False if one is already held: a
        key pair is never replaced, since epoch keys wrapped to it would become unreadable."""
        op = functools.partial(groups.put_hpke_key, kem=kem, private=private, public=public)
        return await self._write(op, len(private) + len(public))

    async def get_hpke_key(self, kem: str) -> HpkeKey | None:
        """The node's HPKE key pair for ``kem``, or None."""
        return await self._read(functools.partial(groups.get_hpke_key, kem=kem))

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
        check_hash(group_id, "group_id")
        check_hash(message_hash, "message_hash")
        for value, what in ((epoch, "epoch"), (time_stamp, "time_stamp")):
            check_uint(value, what)
        check_uint(received_at, "received_at")
        if outbox_at is not None:
            check_uint(outbox_at, "outbox_at")
        op = functools.partial(
            messages.insert_message,
            group_id=group_id,
            packet=packet,
            message_hash=message_hash,
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
        op = functools.partial(
            messages.missing_messages,
            group_id=group_id,
            wanted=list(hashes),
            ratified_only=ratified_only,
        )
        return await self._read(op)

    async def get_message(self, group_id: bytes, message_hash: bytes) -> StoredMessage | None:
        """The stored message, or None."""
        op = functools.partial(messages.get_message, group_id=group_id, message_hash=message_hash)
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
        check_uint(cursor, "cursor")
        if limit < 1 or max_bytes < 1:
            raise ValueError("limit and max_bytes must be positive")
        op = functools.partial(
            messages.page_messages,
            group_id=group_id,
            cursor=cursor,
            limit=limit,
            max_bytes=max_bytes,
        )
        return await self._read(op)

    async def all_ratified(self, group_id: bytes, after: int = 0) -> list[StoredMessage]:
        """Every ratified message of the group, in ``seq`` order (for display, which then
        orders them by the DAG, §8); with ``after``, only those ratified here after the one of
        ``seq`` ``after`` (what a reader that saw up to ``after`` has not seen)."""
        op = functools.partial(messages.all_ratified, group_id=group_id, after=after)
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
        check_hash(group_id, "group_id")
        check_hash(message_hash, "message_hash")
        check_uint(epoch, "epoch")
        op = functools.partial(
            messages.insert_vote,
            group_id=group_id,
            message_hash=message_hash,
            epoch=epoch,
            vote=vote,
            roster=roster,
        )
        return await self._write(op, len(vote))

    async def others_pending(self, group_id: bytes) -> list[StoredMessage]:
        """The group's pending messages that are not ours in the outbox (the votes of a
        ratifier not yet certified), oldest first.

        Raises:
            StoreFileError: a row holds values of the wrong types.
        """
        return await self._read(lambda conn: messages.others_pending(conn, group_id))

    async def get_key_set(self, group_id: bytes, message_hash: bytes) -> bytes | None:
        """The key set (CBOR) of a roster message, or None (specs/chat.md §20)."""
        op = functools.partial(groups.get_key_set, group_id=group_id, message_hash=message_hash)
        return await self._read(op)

    async def get_vote(self, group_id: bytes, message_hash: bytes) -> bytes | None:
        """This node's vote for the message, or None."""
        op = functools.partial(messages.get_vote, group_id=group_id, message_hash=message_hash)
        return await self._read(op)

    # -- outbox ---------------------------------------------------------------------------------

    async def outbox_due(self, now: int, limit: int = 64) -> list[OutboxEntry]:
        """Outbox entries due at ``now``, earliest first."""
        return await self._read(functools.partial(outbox.outbox_due, now=now, limit=limit))


def transaction_sql(
    txn: Transaction,
) -> tuple[Callable[[sqlite3.Connection], CommitResult], int]:
    """The SQL of a whole transaction, to run inside one SQLite transaction (the writer's, or
    a test's in-memory store), and the bytes it writes. Its arguments are checked now.

    Raises:
        ValueError: a hash or number out of range, or a packet over 1 MiB.
        TypeError: an operation is not a transaction operation.
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

    return op, size


def _operation(op: object) -> tuple[Callable[[sqlite3.Connection], bytes | None], int]:
    """The SQL of one transaction operation (its arguments checked now), and the bytes it writes.

    Raises:
        ValueError: a hash or number of ``op`` is out of range, or a packet is over 1 MiB.
        TypeError: ``op`` is not a transaction operation.
    """
    if isinstance(op, AddGroup):
        check_hash(op.group_id, "group_id")
        check_uint(op.joined_at, "joined_at")

        def add_group(conn: sqlite3.Connection) -> None:
            groups.add_group(conn, op.group_id, op.genesis, op.joined_at, b"")

        return add_group, len(op.genesis)
    if isinstance(op, PutPacket):
        message = op.packet.message
        check_hash(message.group_id, "group_id")
        check_uint(op.received_at, "received_at")
        if op.outbox_at is not None:
            check_uint(op.outbox_at, "outbox_at")
        if op.outbox_rank is not None:
            check_uint(op.outbox_rank, "outbox_rank")
        encoded = attrs.evolve(op.packet, certificate=None).encode()
        cert = op.packet.certificate
        certificate = None if cert is None else cbor.dumps(cert.to_cbor())

        def put_packet(conn: sqlite3.Connection) -> None:
            messages.insert_message(
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
                outbox_rank=op.outbox_rank,
            )

        return put_packet, len(encoded) + len(certificate or b"")
    if isinstance(op, PutRoster):
        check_hash(op.group_id, "group_id")
        check_uint(op.epoch, "epoch")

        def put_roster(conn: sqlite3.Connection) -> None:
            groups.put_roster(conn, op.group_id, op.epoch, op.packet)

        return put_roster, len(op.packet)
    if isinstance(op, PutEpochKey):
        check_hash(op.group_id, "group_id")
        check_uint(op.epoch, "epoch")

        def put_epoch_key(conn: sqlite3.Connection) -> None:
            groups.put_epoch_key(conn, op.group_id, op.epoch, op.key)

        return put_epoch_key, len(op.key)
    if isinstance(op, PutKeySet):
        check_hash(op.group_id, "group_id")
        check_hash(op.message_hash, "message_hash")

        def put_key_set(conn: sqlite3.Connection) -> None:
            groups.put_key_set(conn, op.group_id, op.message_hash, op.data)

        return put_key_set, len(op.data)
    if isinstance(op, PutVote):
        check_hash(op.group_id, "group_id")
        check_hash(op.message_hash, "message_hash")
        check_uint(op.epoch, "epoch")

        def put_vote(conn: sqlite3.Connection) -> bytes:
            return messages.insert_vote(
                conn, op.group_id, op.message_hash, op.epoch, op.vote, roster=op.roster
            )

        return put_vote, len(op.vote)
    if isinstance(op, DropPending):
        check_hash(op.group_id, "group_id")
        for message_hash in op.message_hashes:
            check_hash(message_hash, "message_hash")

        def drop_pending(conn: sqlite3.Connection) -> None:
            messages.drop_pending(conn, op.group_id, op.message_hashes)

        return drop_pending, 0
    if isinstance(op, PrunePacket):
        check_hash(op.group_id, "group_id")
        tombstone = op.tombstone

        def prune_packet(conn: sqlite3.Connection) -> None:
            messages.prune_message(conn, op.group_id, tombstone)

        return prune_packet, 0
    if isinstance(op, OutboxDone):

        def outbox_done(conn: sqlite3.Connection) -> None:
            outbox.outbox_done(conn, op.group_id, op.message_hash)

        return outbox_done, 0
    raise TypeError(f"not a transaction operation: {op!r}")


@asynccontextmanager
async def open_store(data_dir: str | os.PathLike[str]) -> AsyncIterator[ChatStore]:
    """Open the store in ``data_dir`` (created with mode 0700 if absent) for the block.

    The store file is ``data_dir/store.sqlite3``; ``data_dir/store.lock`` is held (``flock``)
    while the store is open. A store of an older schema is migrated first (§9). At the end of
    the block the writes already queued are committed, then the store closes: its workers end,
    then its connections close, then the lock is released. An exception of the block comes out
    as itself.

    Raises:
        StoreLockedError: another process, or another open in this one, holds the store.
        StoreFileError: the file is not a p2pchat store, is corrupted, is readable by others,
            or was written by a newer version; it is left untouched.
        StoreError: the data dir or the file cannot be created or opened.
    """
    path, lock_fd = await trio.to_thread.run_sync(acquire_lock, data_dir)
    try:
        writer_conn, reader_conn = await trio.to_thread.run_sync(open_connections, path)
        try:
            writer = BatchWorker(writer_conn, commit_batch)
            reader = BatchWorker(reader_conn, run_reads)
            async with open_service_nursery() as nursery:
                nursery.start_soon(writer.run)
                nursery.start_soon(reader.run)
                try:
                    yield ChatStore(writer, reader, data_dir=path)
                finally:
                    # Refuse new calls and let the workers drain what is queued before the
                    # service nursery cancels them.
                    writer.close()
                    reader.close()
                    await writer.wait_stopped()
                    await reader.wait_stopped()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(close_connections, reader_conn, writer_conn)
    finally:
        release_lock(lock_fd)
