"""A node's store for the simulator: the real schema and SQL on an in-memory SQLite database.

A transaction is committed exactly as the store's writer does it (``BEGIN IMMEDIATE``, a
``SAVEPOINT``, the SQL of :func:`~p2pchat.chat.store.store.transaction_sql`, ``COMMIT``), only
synchronously: what the simulator commits is what survives a simulated crash, and a crash
between two commits leaves the first whole and the second absent. :meth:`MemStore.load` is the
node's start-up (``chat/wiring.py``'s ``_load_engine``, written again with the simulated clock:
a change there must be made here too) on the same tables.
"""

from __future__ import annotations

import sqlite3

from p2pchat.chat.core.engine import ChatEngine
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.txn import CommitResult, Transaction
from p2pchat.chat.store import groups, messages, outbox
from p2pchat.chat.store.records import StoredMessage
from p2pchat.chat.store.schema import create_schema
from p2pchat.chat.store.store import transaction_sql

#: As many outbox entries as the node loads at start-up (chat/wiring.py MAX_OUTBOX_LOAD).
MAX_OUTBOX_LOAD = 100_000


#: Rows decoded during one run, by their stored bytes: every node reads the same rows, and a
#: packet is an immutable value (cleared by :func:`forget_rows` between runs).
_DECODED: dict[tuple[bytes, bytes | None], Packet] = {}


def decode_row(row: StoredMessage) -> Packet:
    """The packet of a stored row, with its certificate (as ``chat/wiring.py`` reads it)."""
    key = (row.packet, row.certificate)
    packet = _DECODED.get(key)
    if packet is None:
        packet = _DECODED[key] = Packet.decode(row.packet_with_certificate())
    return packet


def forget_rows() -> None:
    _DECODED.clear()


class MemStore:
    """One node's durable store (it outlives the node's engine across a simulated crash)."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.execute("BEGIN")
        create_schema(self.conn)
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def commit(self, txn: Transaction) -> CommitResult:
        """Commit ``txn`` whole or not at all.

        Raises:
            StoreError, ValueError: as :meth:`ChatStore.commit` (nothing is stored).
        """
        op, _ = transaction_sql(txn)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SAVEPOINT job")
        try:
            result = op(conn)
        except BaseException:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            conn.execute("COMMIT")
            raise
        conn.execute("RELEASE job")
        conn.execute("COMMIT")
        return result

    def load(self, engine: ChatEngine, now: int) -> list[Packet]:
        """Load ``engine`` as a node does at start-up; return the ratified packets held."""
        conn = self.conn
        held: list[Packet] = []
        for record in groups.list_groups(conn):
            rosters = groups.get_rosters(conn, record.group_id)
            packets = [Packet.decode(r.packet) for r in sorted(rosters, key=lambda r: r.epoch)]
            ratified = [decode_row(r) for r in messages.all_ratified(conn, record.group_id)]
            keys = groups.get_epoch_keys(conn, record.group_id)
            engine.load_group(record.genesis, packets, keys, ratified)
            held += ratified
            for row in messages.others_pending(conn, record.group_id):
                packet = decode_row(row)
                engine.load_pending(packet, received_at=row.received_at, size=row.wire_size)
                self._load_vote(engine, packet)
        for entry in outbox.outbox_due(conn, 2**62, MAX_OUTBOX_LOAD):
            queued = messages.get_message(conn, entry.group_id, entry.message_hash)
            if queued is not None:
                packet = decode_row(queued)
                engine.load_outbox(packet, now, rank=entry.created_at)
                self._load_vote(engine, packet)
        return held

    def _load_vote(self, engine: ChatEngine, packet: Packet) -> None:
        """``chat/wiring.py``'s ``_load_vote``: our stored vote for a pending message goes into
        our closing commitment, and a roster vote closes its epoch for us (specs/chat.md §14)."""
        if messages.get_vote(self.conn, packet.message.group_id, packet.message_hash) is not None:
            engine.load_vote(packet)

    # -- reads the simulated peers serve and the invariants check ------------------------------

    def vote(self, group_id: bytes, message_hash: bytes) -> bytes | None:
        return messages.get_vote(self.conn, group_id, message_hash)

    def key_set(self, group_id: bytes, message_hash: bytes) -> bytes | None:
        return groups.get_key_set(self.conn, group_id, message_hash)

    def page(self, group_id: bytes, cursor: int) -> tuple[list[Packet], int | None]:
        rows, following = messages.page_messages(
            self.conn, group_id, cursor, messages.DHT_PAGE_PACKETS, messages.DHT_PAGE_BYTES
        )
        return [decode_row(r) for r in rows], following

    def ratified_hashes(self, group_id: bytes) -> set[bytes]:
        rows = self.conn.execute(
            "SELECT message_hash FROM messages WHERE group_id = ? AND seq IS NOT NULL",
            (group_id,),
        ).fetchall()
        return {bytes(r[0]) for r in rows}

    def outbox_hashes(self) -> set[bytes]:
        return {bytes(r[0]) for r in self.conn.execute("SELECT message_hash FROM outbox")}

    def pending_by_author(self, group_id: bytes) -> dict[bytes, tuple[int, int]]:
        """Others' pending messages outside the outbox, by author: (count, encoded bytes)."""
        counts: dict[bytes, tuple[int, int]] = {}
        for row in messages.others_pending(self.conn, group_id):
            count, size = counts.get(row.author, (0, 0))
            counts[row.author] = (count + 1, size + row.wire_size)
        return counts
