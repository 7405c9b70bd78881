"""ChatStore.commit: a Transaction of store operations, all or nothing (specs/chat.md §9)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from chat.store.helpers import G1, G2, RATIFIER, make_packet, put
from p2pchat.chat.core.packet import Certificate, make_vote
from p2pchat.chat.core.txn import (
    AddGroup,
    CommitResult,
    OutboxDone,
    PutEpochKey,
    PutPacket,
    PutRoster,
    PutVote,
    Transaction,
)
from p2pchat.chat.store import (
    ChatStore,
    MessageStatus,
    UnknownGroupError,
    UnknownMessageError,
    VoteConflictError,
    open_store,
)

KEY_0: Final = b"0" * 32
KEY_1: Final = b"1" * 32


def txn(*operations: object) -> Transaction:
    return Transaction(tuple(operations))  # type: ignore[arg-type]


async def test_every_operation_lands_in_one_transaction(store: ChatStore) -> None:
    packet = make_packet(b"first words", group=G2)
    before = store.statistics()
    result = await store.commit(
        txn(
            AddGroup(G2, b"genesis-2", joined_at=3),
            PutRoster(G2, 1, b"roster-1"),
            PutEpochKey(G2, 0, KEY_0),
            PutEpochKey(G2, 1, KEY_1),
            PutPacket(packet, received_at=4, outbox_at=5),
            PutVote(G2, packet.message_hash, 0, b"vote", roster=False),
        )
    )
    after = store.statistics()
    assert result == CommitResult({packet.message_hash: b"vote"})
    assert (after.transactions - before.transactions, after.writes - before.writes) == (1, 1)
    group = await store.get_group(G2)
    assert group is not None
    assert (group.genesis, group.joined_at) == (b"genesis-2", 3)
    assert [(r.epoch, r.packet) for r in await store.get_rosters(G2)] == [(1, b"roster-1")]
    assert await store.get_epoch_keys(G2) == {0: KEY_0, 1: KEY_1}
    held = await store.get_message(G2, packet.message_hash)
    assert held is not None
    assert (held.status, held.received_at) == (MessageStatus.PENDING, 4)
    assert await store.get_vote(G2, packet.message_hash) == b"vote"
    assert [e.message_hash for e in await store.outbox_due(5)] == [packet.message_hash]


async def test_a_certified_packet_is_ratified_and_leaves_the_outbox(store: ChatStore) -> None:
    packet = make_packet(b"ratify me")
    await store.commit(txn(PutPacket(packet, received_at=1, outbox_at=2)))
    certified = packet.with_certificate(
        Certificate(0, (make_vote(RATIFIER, G1, 0, packet.message_hash),))
    )
    result = await store.commit(
        txn(PutPacket(certified, received_at=3), OutboxDone(G1, packet.message_hash))
    )
    assert result.votes == {}
    held = await store.get_message(G1, packet.message_hash)
    assert held is not None
    assert (held.status, held.seq) == (MessageStatus.RATIFIED, 1)
    assert held.packet_with_certificate() == certified.encode()
    assert await store.outbox_due(10**12) == []


async def test_a_roster_vote_conflicting_with_a_held_one_stores_nothing(
    store: ChatStore,
) -> None:
    first, second = make_packet(b"roster a"), make_packet(b"roster b")
    await store.commit(
        txn(
            PutPacket(first, received_at=1),
            PutVote(G1, first.message_hash, 0, b"a", roster=True),
        )
    )
    with pytest.raises(VoteConflictError, match="epoch 0"):
        await store.commit(
            txn(
                PutEpochKey(G1, 1, KEY_1),
                PutPacket(second, received_at=2),
                PutVote(G1, second.message_hash, 0, b"b", roster=True),
            )
        )
    assert await store.get_epoch_keys(G1) == {}
    assert await store.get_message(G1, second.message_hash) is None
    assert await store.get_vote(G1, second.message_hash) is None
    assert await store.get_vote(G1, first.message_hash) == b"a"


async def test_two_roster_votes_for_one_epoch_in_one_transaction_store_nothing(
    store: ChatStore,
) -> None:
    first, second = make_packet(b"roster a"), make_packet(b"roster b")
    with pytest.raises(VoteConflictError):
        await store.commit(
            txn(
                PutPacket(first, received_at=1),
                PutVote(G1, first.message_hash, 0, b"a", roster=True),
                PutPacket(second, received_at=2),
                PutVote(G1, second.message_hash, 0, b"b", roster=True),
            )
        )
    assert await store.missing_messages(G1, [first.message_hash, second.message_hash]) == [
        first.message_hash,
        second.message_hash,
    ]
    assert await store.get_vote(G1, first.message_hash) is None


async def test_a_repeated_vote_returns_the_earlier_one(store: ChatStore) -> None:
    packet = make_packet(b"vote twice")
    first = await store.commit(
        txn(
            PutPacket(packet, received_at=1),
            PutVote(G1, packet.message_hash, 0, b"earlier", roster=False),
        )
    )
    again = await store.commit(
        txn(
            PutPacket(packet, received_at=2),
            PutVote(G1, packet.message_hash, 0, b"later", roster=False),
        )
    )
    assert first.votes == {packet.message_hash: b"earlier"}
    assert again.votes == {packet.message_hash: b"earlier"}
    assert await store.get_vote(G1, packet.message_hash) == b"earlier"


async def test_an_unknown_group_refuses_the_whole_transaction(store: ChatStore) -> None:
    with pytest.raises(UnknownGroupError):
        await store.commit(
            txn(
                PutEpochKey(G1, 0, KEY_0),
                PutRoster(G2, 1, b"roster of a group not held"),
            )
        )
    assert await store.get_epoch_keys(G1) == {}
    # Adding the group later in the same transaction does not help: operations run in order.
    with pytest.raises(UnknownGroupError):
        await store.commit(txn(PutEpochKey(G2, 0, KEY_0), AddGroup(G2, b"genesis-2", joined_at=1)))
    assert await store.get_group(G2) is None


async def test_a_vote_for_a_message_not_stored_refuses_the_transaction(
    store: ChatStore,
) -> None:
    packet = make_packet(b"never stored")
    with pytest.raises(UnknownMessageError):
        await store.commit(
            txn(
                PutEpochKey(G1, 0, KEY_0),
                PutVote(G1, packet.message_hash, 0, b"v", roster=False),
            )
        )
    assert await store.get_epoch_keys(G1) == {}


async def test_a_refused_transaction_does_not_undo_others_in_its_batch(
    store: ChatStore,
) -> None:
    before = store.statistics()
    with pytest.raises(UnknownGroupError):
        await store.commit(txn(PutRoster(G2, 1, b"r")))
    assert await put(store, 1)
    after = store.statistics()
    assert (after.failed_writes - before.failed_writes, after.writes - before.writes) == (1, 1)
    assert len(await store.all_ratified(G1)) == 1


async def test_bad_operations_are_refused_before_anything_is_queued(store: ChatStore) -> None:
    before = store.statistics()
    with pytest.raises(ValueError, match="group_id"):
        await store.commit(txn(PutEpochKey(G1, 0, KEY_0), PutRoster(b"short", 1, b"r")))
    with pytest.raises(ValueError, match="epoch"):
        await store.commit(txn(PutEpochKey(G1, -1, KEY_0)))
    with pytest.raises(TypeError, match="not a transaction operation"):
        await store.commit(txn(PutEpochKey(G1, 0, KEY_0), "not an operation"))
    after = store.statistics()
    assert (after.writes, after.failed_writes) == (before.writes, before.failed_writes)
    assert await store.get_epoch_keys(G1) == {}


async def test_an_empty_transaction_commits_nothing(store: ChatStore) -> None:
    assert await store.commit(txn()) == CommitResult()


async def test_a_commit_survives_close_and_reopen(tmp_path: Path) -> None:
    packet = make_packet(b"kept", group=G2)
    async with open_store(tmp_path) as store:
        await store.commit(
            txn(
                AddGroup(G2, b"genesis-2", joined_at=3),
                PutRoster(G2, 1, b"roster-1"),
                PutEpochKey(G2, 0, KEY_0),
                PutPacket(packet, received_at=4, outbox_at=5),
                PutVote(G2, packet.message_hash, 0, b"vote", roster=True),
            )
        )
    async with open_store(tmp_path) as store:
        assert await store.get_group(G2) is not None
        assert [r.packet for r in await store.get_rosters(G2)] == [b"roster-1"]
        assert await store.get_epoch_keys(G2) == {0: KEY_0}
        assert await store.has_message(G2, packet.message_hash)
        assert [e.message_hash for e in await store.outbox_due(5)] == [packet.message_hash]
        # The roster vote is still held: a second roster message of epoch 0 conflicts.
        other = make_packet(b"another roster", group=G2)
        with pytest.raises(VoteConflictError):
            await store.commit(
                txn(
                    PutPacket(other, received_at=6),
                    PutVote(G2, other.message_hash, 0, b"v2", roster=True),
                )
            )
        assert await store.get_vote(G2, packet.message_hash) == b"vote"
