"""PrunePacket: a deleted message's content key leaves the store (specs/chat.md §17)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import attrs
import pytest

from chat.store.helpers import AUTHOR, G1, RATIFIER
from p2pchat.chat.core.packet import (
    Artifact,
    Certificate,
    Headers,
    Message,
    Packet,
    make_vote,
    sha256,
    sign_message,
)
from p2pchat.chat.core.txn import PrunePacket, PutPacket, PutVote, Transaction
from p2pchat.chat.store import ChatStore, UnknownMessageError, open_store

#: A content key no other bytes of the store look like.
AES_KEY: Final = bytes(range(100, 160))
IV: Final = bytes(range(200, 212))


def _packet(
    kind: str, *, ref: bytes | None = None, data: bytes = b"ciphertext", key: bytes = AES_KEY
) -> Packet:
    message = Message(
        group_id=G1,
        epoch=0,
        message_type=kind,
        time_stamp=1_700_000_000_000,
        author=AUTHOR.peer_id,
        ref_hash=ref,
        parents=() if ref is None else (ref,),
        headers=Headers(),
        artifact=Artifact("text/plain", data, sha256(data), sha256(key + IV)),
    )
    return sign_message(AUTHOR, message, key, IV)


def _certified(packet: Packet) -> Packet:
    vote = make_vote(RATIFIER, G1, 0, packet.message_hash)
    return packet.with_certificate(Certificate(0, (vote,)))


TEXT: Final = _certified(_packet("text"))
DELETE: Final = _certified(_packet("delete", ref=TEXT.message_hash, data=b"", key=bytes(60)))


async def _stored(store: ChatStore, message_hash: bytes) -> Packet:
    row = await store.get_message(G1, message_hash)
    assert row is not None
    return Packet.decode(row.packet_with_certificate())


async def test_the_delete_and_the_prune_are_one_transaction(store: ChatStore) -> None:
    await store.commit(Transaction((PutPacket(TEXT, received_at=1),)))
    await store.commit(Transaction((PutPacket(DELETE, received_at=2), PrunePacket(G1, DELETE))))
    held = await _stored(store, TEXT.message_hash)
    assert held.pruned
    assert (held.aes_key, held.iv) == (b"", b"")
    assert held.message == TEXT.message
    assert held.certificate is not None
    assert held.tombstone == attrs.evolve(DELETE, tombstone=None)
    assert held.check_hashes()
    # Again: nothing changes (already pruned).
    before = await store.get_message(G1, TEXT.message_hash)
    await store.commit(Transaction((PrunePacket(G1, DELETE),)))
    assert await store.get_message(G1, TEXT.message_hash) == before


async def test_a_failed_transaction_keeps_the_content_key(store: ChatStore) -> None:
    await store.commit(Transaction((PutPacket(TEXT, received_at=1),)))
    with pytest.raises(UnknownMessageError):
        await store.commit(
            Transaction(
                (
                    PutPacket(DELETE, received_at=2),
                    PrunePacket(G1, DELETE),
                    PutVote(G1, sha256(b"not stored"), 0, b"vote", roster=False),
                )
            )
        )
    held = await _stored(store, TEXT.message_hash)
    assert not held.pruned
    assert held.aes_key == AES_KEY
    assert await store.get_message(G1, DELETE.message_hash) is None


async def test_only_a_held_ratified_content_message_is_pruned(store: ChatStore) -> None:
    pending = _packet("text", data=b"pending words")
    await store.commit(Transaction((PutPacket(pending, received_at=1),)))
    tombstone = _certified(_packet("delete", ref=pending.message_hash, data=b""))
    await store.commit(Transaction((PrunePacket(G1, tombstone),)))  # pending: left alone
    row = await store.get_message(G1, pending.message_hash)
    assert row is not None
    assert not Packet.decode(row.packet).pruned
    profile = _certified(_packet("profile", data=b"name"))
    await store.commit(Transaction((PutPacket(profile, received_at=1),)))
    not_content = _certified(_packet("delete", ref=profile.message_hash, data=b""))
    await store.commit(Transaction((PrunePacket(G1, not_content),)))
    assert not (await _stored(store, profile.message_hash)).pruned
    await store.commit(Transaction((PrunePacket(G1, DELETE),)))  # not held: nothing happens


async def test_the_content_key_is_gone_from_the_store_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with open_store(data_dir) as store:
        await store.add_group(G1, b"genesis-1", joined_at=1)
        await store.commit(Transaction((PutPacket(TEXT, received_at=1),)))
    files = sorted(data_dir.glob("store.sqlite3*"))
    assert any(AES_KEY in f.read_bytes() for f in files)  # the check can fail
    async with open_store(data_dir) as store:
        await store.commit(Transaction((PutPacket(DELETE, received_at=2), PrunePacket(G1, DELETE))))
    files = sorted(data_dir.glob("store.sqlite3*"))
    assert files
    for f in files:
        content = f.read_bytes()
        assert AES_KEY not in content, f.name
        assert TEXT.message_hash in content or f.suffix != ".sqlite3"  # the message stays
