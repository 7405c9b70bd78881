"""The chat store's operations (chat/store/store.py and its tables, specs/chat.md §9)."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Final

import pytest
import trio

from chat.store.helpers import AUTHOR, G1, G2, RATIFIER, make_packet, mh, put
from p2pchat.chat.core import cbor
from p2pchat.chat.core.packet import (
    Certificate,
    Packet,
    make_vote,
    sha256,
)
from p2pchat.chat.core.txn import OutboxDone, Transaction
from p2pchat.chat.store import (
    CERTIFICATE_KEY_OVERHEAD,
    LOCK_FILE,
    STORE_FILE,
    ChatStore,
    MessageStatus,
    StoreClosedError,
    UnknownGroupError,
    UnknownMessageError,
    VoteConflictError,
    open_store,
)

# -- round trips ------------------------------------------------------------------------------


async def test_groups_round_trip(store: ChatStore) -> None:
    assert not await store.add_group(G1, b"other genesis", joined_at=5)
    assert await store.add_group(G2, b"genesis-2", joined_at=2, settings=b"\xa1aa\x01")
    one = await store.get_group(G1)
    assert one is not None
    assert (one.genesis, one.joined_at, one.settings) == (b"genesis-1", 1, b"")
    assert [(g.group_id, g.settings) for g in await store.list_groups()] == [
        (G1, b""),
        (G2, b"\xa1aa\x01"),
    ]
    assert await store.get_group(sha256(b"nope")) is None
    with pytest.raises(ValueError, match="32 bytes"):
        await store.add_group(b"short", b"g", joined_at=1)


async def test_rosters_and_keys_round_trip(store: ChatStore) -> None:
    assert await store.put_roster(G1, 2, b"roster-2")
    assert await store.put_roster(G1, 1, b"roster-1")
    assert not await store.put_roster(G1, 1, b"another roster-1")
    assert [(r.epoch, r.packet) for r in await store.get_rosters(G1)] == [
        (1, b"roster-1"),
        (2, b"roster-2"),
    ]
    assert await store.put_epoch_key(G1, 0, b"k" * 32)
    assert not await store.put_epoch_key(G1, 0, b"x" * 32)
    assert await store.put_epoch_key(G1, 1, b"l" * 32)
    assert await store.get_epoch_keys(G1) == {0: b"k" * 32, 1: b"l" * 32}
    assert await store.get_epoch_keys(G2) == {}
    with pytest.raises(UnknownGroupError):
        await store.put_roster(G2, 1, b"r")
    with pytest.raises(UnknownGroupError):
        await store.put_epoch_key(G2, 0, b"k" * 32)


async def test_hpke_key_is_never_replaced(store: ChatStore) -> None:
    assert await store.get_hpke_key("X25519") is None
    assert await store.put_hpke_key("X25519", b"priv", b"pub")
    assert not await store.put_hpke_key("X25519", b"priv2", b"pub2")
    key = await store.get_hpke_key("X25519")
    assert key is not None
    assert (key.kem, key.private, key.public) == ("X25519", b"priv", b"pub")


# -- messages ---------------------------------------------------------------------------------


async def test_put_message_is_idempotent_and_upgrades(store: ChatStore) -> None:
    assert await put(store, 1, certificate=None)
    assert not await put(store, 1, certificate=None)
    pending = await store.get_message(G1, mh(1))
    assert pending is not None
    assert (pending.status, pending.seq, pending.certificate) == (MessageStatus.PENDING, None, None)
    assert await store.has_message(G1, mh(1))
    assert not await store.has_message(G1, mh(1), ratified_only=True)
    assert await store.all_ratified(G1) == []

    assert await put(store, 2)  # ratified on arrival: seq 1
    assert await put(store, 1, certificate=b"\xa1acb")  # upgrade: seq 2
    assert not await put(store, 1, certificate=b"\xa1acd")  # already ratified: kept
    ratified = await store.get_message(G1, mh(1))
    assert ratified is not None
    assert (ratified.status, ratified.seq, ratified.certificate) == (
        MessageStatus.RATIFIED,
        2,
        b"\xa1acb",
    )
    assert (ratified.epoch, ratified.time_stamp, ratified.received_at) == (0, 1001, 2001)
    assert ratified.author == AUTHOR.peer_id.to_bytes()
    assert [m.message_hash for m in await store.all_ratified(G1)] == [mh(2), mh(1)]
    assert await store.has_message(G1, mh(1), ratified_only=True)


async def test_missing_messages(store: ChatStore) -> None:
    await put(store, 1)
    await put(store, 2, certificate=None)
    wanted = [mh(3), mh(1), mh(2), mh(3)]
    assert await store.missing_messages(G1, wanted) == [mh(3), mh(3)]
    assert await store.missing_messages(G1, wanted, ratified_only=True) == [mh(3), mh(2), mh(3)]
    assert await store.missing_messages(G2, [mh(1)]) == [mh(1)]


async def test_put_message_needs_a_known_group(store: ChatStore) -> None:
    with pytest.raises(UnknownGroupError):
        await put(store, 1, group=G2)
    with pytest.raises(ValueError, match="message_hash"):
        await store.put_message(G1, b"p", b"x", epoch=0, time_stamp=0, author=b"a", received_at=0)


async def test_put_packet_stores_certificate_apart(store: ChatStore) -> None:
    packet = make_packet(b"hello")
    assert await store.put_packet(packet, received_at=5, outbox_at=5)
    held = await store.get_message(G1, packet.message_hash)
    assert held is not None
    assert held.status is MessageStatus.PENDING
    assert Packet.decode(held.packet) == packet
    assert held.packet_with_certificate() == held.packet
    assert [e.message_hash for e in await store.outbox_due(5)] == [packet.message_hash]

    vote = make_vote(RATIFIER, G1, 0, packet.message_hash)
    certified = packet.with_certificate(Certificate(0, (vote,)))
    assert await store.put_packet(certified, received_at=6)
    held = await store.get_message(G1, packet.message_hash)
    assert held is not None
    assert held.status is MessageStatus.RATIFIED
    assert Packet.decode(held.packet) == packet  # stored without its certificate
    assert held.certificate == cbor.dumps(certified.certificate.to_cbor())  # type: ignore[union-attr]
    full = held.packet_with_certificate()
    assert Packet.decode(full) == certified
    assert full == certified.encode()
    assert held.wire_size == len(full)
    assert held.wire_size == len(held.packet) + CERTIFICATE_KEY_OVERHEAD + len(held.certificate)


# -- paging -----------------------------------------------------------------------------------


async def test_page_by_count(store: ChatStore) -> None:
    for i in range(1, 8):
        await put(store, i)
    await put(store, 50, certificate=None)  # pending: never paged
    page, cursor = await store.page_messages(G1, 0, limit=3)
    assert [m.seq for m in page] == [1, 2, 3]
    assert cursor == 3
    page, cursor = await store.page_messages(G1, 3, limit=3)
    assert [m.seq for m in page] == [4, 5, 6]
    assert cursor == 6
    page, cursor = await store.page_messages(G1, 6, limit=3)
    assert [m.message_hash for m in page] == [mh(7)]
    assert cursor is None
    assert await store.page_messages(G1, 7) == ([], None)
    assert await store.page_messages(G1, 100) == ([], None)
    # Exactly `limit` left: the page ends the walk.
    page, cursor = await store.page_messages(G1, 4, limit=3)
    assert ([m.seq for m in page], cursor) == ([5, 6, 7], None)


async def test_page_by_bytes(store: ChatStore) -> None:
    cert = b"\xa0"
    each = 100 + CERTIFICATE_KEY_OVERHEAD + len(cert)
    for i in range(1, 6):
        await put(store, i, size=100, certificate=cert)
    page, cursor = await store.page_messages(G1, 0, max_bytes=2 * each)
    assert ([m.seq for m in page], cursor) == ([1, 2], 2)
    assert sum(m.wire_size for m in page) == 2 * each
    page, cursor = await store.page_messages(G1, 2, max_bytes=2 * each - 1)
    assert ([m.seq for m in page], cursor) == ([3], 3)
    # A message larger than the byte limit still makes a page of one.
    page, cursor = await store.page_messages(G1, 3, max_bytes=1)
    assert ([m.seq for m in page], cursor) == ([4], 4)
    page, cursor = await store.page_messages(G1, 4, max_bytes=1)
    assert ([m.seq for m in page], cursor) == ([5], None)
    with pytest.raises(ValueError, match="positive"):
        await store.page_messages(G1, 0, max_bytes=0)
    with pytest.raises(ValueError, match="cursor"):
        await store.page_messages(G1, -1)


async def test_late_ratification_lands_after_an_old_cursor(store: ChatStore) -> None:
    await put(store, 1, certificate=None)  # pending first
    await put(store, 2)
    page, cursor = await store.page_messages(G1, 0)
    assert ([m.message_hash for m in page], cursor) == ([mh(2)], None)
    await put(store, 1)  # ratified later: a peer that synced up to seq 1 still gets it
    page, _ = await store.page_messages(G1, 1)
    assert [m.message_hash for m in page] == [mh(1)]


async def test_groups_are_paged_apart(store: ChatStore) -> None:
    await store.add_group(G2, b"g2", joined_at=2)
    await put(store, 1, group=G2)
    await put(store, 2)
    await put(store, 3, group=G2)
    assert [m.seq for m in await store.all_ratified(G2)] == [1, 2]
    assert [m.seq for m in await store.all_ratified(G1)] == [1]


# -- votes ------------------------------------------------------------------------------------


async def test_vote_needs_the_message_first(store: ChatStore) -> None:
    with pytest.raises(UnknownMessageError):
        await store.record_vote(G1, mh(1), 0, b"vote")
    assert await store.get_vote(G1, mh(1)) is None


async def test_vote_is_durable_before_return_and_idempotent(
    store: ChatStore, tmp_path: Path
) -> None:
    await put(store, 1, certificate=None)
    assert await store.record_vote(G1, mh(1), 0, b"vote-a") == b"vote-a"
    # Committed: another connection (as after a crash) sees it at once.
    other = sqlite3.connect(tmp_path / "data" / STORE_FILE)
    try:
        row = other.execute("SELECT vote FROM votes WHERE message_hash = ?", (mh(1),)).fetchone()
    finally:
        other.close()
    assert row == (b"vote-a",)
    assert await store.record_vote(G1, mh(1), 0, b"vote-b") == b"vote-a"
    assert await store.get_vote(G1, mh(1)) == b"vote-a"
    await put(store, 2, certificate=None)
    with pytest.raises(ValueError, match="not the message's epoch"):
        await store.record_vote(G1, mh(2), 3, b"v")


async def test_one_roster_vote_per_epoch(store: ChatStore) -> None:
    for i in (1, 2, 3):
        await put(store, i, certificate=None)
    assert await store.record_vote(G1, mh(1), 0, b"r1", roster=True) == b"r1"
    assert await store.record_vote(G1, mh(1), 0, b"r1-again", roster=True) == b"r1"
    with pytest.raises(VoteConflictError, match="epoch 0"):
        await store.record_vote(G1, mh(2), 0, b"r2", roster=True)
    # Ordinary messages are not limited.
    assert await store.record_vote(G1, mh(3), 0, b"m3") == b"m3"
    assert await store.get_vote(G1, mh(2)) is None


# -- outbox -----------------------------------------------------------------------------------


async def test_outbox_lifecycle(store: ChatStore) -> None:
    # A message enters the outbox with its packet (one transaction) and leaves by OutboxDone.
    await put(store, 1, certificate=None, outbox_at=100)
    await put(store, 2, certificate=None, outbox_at=150)
    assert await store.outbox_due(99) == []
    due = await store.outbox_due(100)
    assert [(e.message_hash, e.attempts, e.created_at) for e in due] == [(mh(1), 0, 2001)]
    assert [e.message_hash for e in await store.outbox_due(200)] == [mh(1), mh(2)]
    await store.commit(Transaction((OutboxDone(G1, mh(1)),)))
    await store.commit(Transaction((OutboxDone(G1, mh(1)),)))  # done twice: no error
    assert [e.message_hash for e in await store.outbox_due(10**6)] == [mh(2)]


# -- close ------------------------------------------------------------------------------------


async def test_use_after_close_is_refused(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.add_group(G1, b"g", joined_at=1)
    with pytest.raises(StoreClosedError):
        await store.get_group(G1)
    with pytest.raises(StoreClosedError):
        await store.add_group(G2, b"g", joined_at=1)


async def test_body_error_propagates_as_itself(tmp_path: Path) -> None:
    async def body() -> None:
        async with open_store(tmp_path) as store:
            await store.add_group(G1, b"g", joined_at=1)
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await body()
    async with open_store(tmp_path) as store:
        assert await store.get_group(G1) is not None


# -- durability ---------------------------------------------------------------------------------


async def test_everything_survives_reopen(tmp_path: Path) -> None:
    packet = make_packet(b"persist")
    async with open_store(tmp_path) as store:
        await store.add_group(G1, b"genesis", joined_at=7, settings=b"\xa0")
        await store.put_roster(G1, 1, b"roster")
        await store.put_epoch_key(G1, 0, b"k" * 32)
        await store.put_hpke_key("X25519", b"priv", b"pub")
        await store.put_packet(packet, received_at=8, outbox_at=9)
        await store.record_vote(G1, packet.message_hash, 0, b"vote")
        await put(store, 1)
    assert sorted(os.listdir(tmp_path)) == [LOCK_FILE, STORE_FILE]  # WAL checkpointed
    async with open_store(tmp_path) as store:
        group = await store.get_group(G1)
        assert group is not None
        assert (group.genesis, group.joined_at, group.settings) == (b"genesis", 7, b"\xa0")
        assert [r.packet for r in await store.get_rosters(G1)] == [b"roster"]
        assert await store.get_epoch_keys(G1) == {0: b"k" * 32}
        hpke = await store.get_hpke_key("X25519")
        assert hpke is not None
        assert hpke.private == b"priv"
        held = await store.get_message(G1, packet.message_hash)
        assert held is not None
        assert Packet.decode(held.packet) == packet
        assert await store.get_vote(G1, packet.message_hash) == b"vote"
        assert [e.next_attempt_at for e in await store.outbox_due(9)] == [9]
        assert [m.message_hash for m in await store.all_ratified(G1)] == [mh(1)]
        # New ratified messages continue the sequence.
        await put(store, 2)
        assert [m.seq for m in await store.all_ratified(G1)] == [1, 2]


CRASHER: Final = """
import os, sys, trio
from p2pchat.chat.store import open_store

async def main() -> None:
    async with open_store(sys.argv[1]) as store:
        group, message = bytes(32), bytes([1]) * 32
        await store.add_group(group, b"g", joined_at=1)
        await store.put_message(
            group, b"p", message, epoch=0, time_stamp=1, author=b"a", received_at=1
        )
        vote = await store.record_vote(group, message, 0, b"vote")
        print(vote.decode(), flush=True)
        os._exit(0)  # dies here: no close, no checkpoint

trio.run(main)
"""


async def test_vote_survives_a_crash_right_after_return(tmp_path: Path) -> None:
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-c", CRASHER, str(tmp_path)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert (done.returncode, done.stdout) == (0, b"vote\n"), done.stderr.decode()
    assert (tmp_path / f"{STORE_FILE}-wal").exists()  # the commit lives only in the WAL
    async with open_store(tmp_path) as store:
        assert await store.get_vote(bytes(32), bytes([1]) * 32) == b"vote"
