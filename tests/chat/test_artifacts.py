"""Artifacts of any size between ChatNodes on 127.0.0.1 (specs/artifacts.md §6): ratifiers hold
every chunk before they vote, members fetch on delivery or on read, the reader streams."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import attrs
import pytest
import trio

from chat.cluster import FAST_ARTIFACTS as FAST
from chat.cluster import Peer, build_group, open_cluster, stored
from p2pchat.chat.core.artifact import CHUNK_SIZE
from p2pchat.chat.core.roster import Role
from p2pchat.chat.node import PendingError

pytestmark = pytest.mark.timeout(120)


async def read_all(peer: Peer, group_id: bytes, message_hash: bytes) -> bytes:
    out = bytearray()
    async for piece in await peer.chat.open_artifact(group_id, message_hash):
        assert len(piece) <= CHUNK_SIZE
        out += piece
    return bytes(out)


async def wait_complete(peer: Peer, group_id: bytes, root: bytes) -> None:
    artifacts = peer.chat.artifacts
    assert artifacts is not None
    with trio.fail_after(30):
        # The fetch on delivery runs in the node's own nursery: watch its files.
        while not artifacts.files.is_complete(group_id, root):  # noqa: ASYNC110
            await trio.sleep(0.05)


async def root_of(peer: Peer, group_id: bytes, message_hash: bytes) -> bytes:
    """The artifact root of a message ``peer`` holds (ratified or pending)."""
    ref = (await stored(peer, group_id, message_hash)).message.artifact.chunked
    assert ref is not None
    return ref.root


async def test_ratifiers_hold_every_chunk_before_voting_and_members_fetch(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, "owner", "r2", "r3", "user", start=False) as cluster:
        for peer in cluster.peers:
            peer.config = FAST
            await peer.start()
        owner, r2, r3, user = cluster.peers
        group_id = await build_group(
            owner, [(r2, Role.RATIFIER), (r3, Role.RATIFIER), (user, Role.USER)]
        )
        data = os.urandom(3 * CHUNK_SIZE + 1234)
        path = tmp_path / "holiday photo.jpg"
        path.write_bytes(data)
        seen: list[tuple[int, int]] = []
        message_hash = await user.chat.send_file(
            group_id, path, progress=lambda done, total: seen.append((done, total))
        )
        assert seen[-1] == (len(data), len(data))
        packet = await stored(user, group_id, message_hash)
        ref = packet.message.artifact.chunked
        assert ref is not None
        assert ref.size == len(data)
        assert packet.certificate is not None
        by_peer = {p.peer_id: p for p in cluster.peers}
        for vote in packet.certificate.votes:  # a vote means "I hold this"
            voter = by_peer[vote.ratifier].chat.artifacts
            assert voter is not None
            assert voter.files.is_complete(group_id, ref.root)
        await wait_complete(owner, group_id, ref.root)
        assert await read_all(owner, group_id, message_hash) == data
        with trio.fail_after(15):
            await r3.chat.wait_ratified(group_id, message_hash)
        (message,) = [m for m in await r3.chat.history(group_id) if m.message_type != "roster"]
        assert message.content is None
        assert message.artifact is not None
        assert (message.artifact.name, message.artifact.mime, message.artifact.size) == (
            "holiday photo.jpg",
            "image/jpeg",
            len(data),
        )
        assert message.message_type == "image"


async def test_lazy_member_fetches_when_it_reads(tmp_path: Path) -> None:
    lazy = attrs.evolve(FAST, artifacts=attrs.evolve(FAST.artifacts, fetch_max=CHUNK_SIZE))
    async with open_cluster(tmp_path, "owner", "user", start=False) as cluster:
        owner, user = cluster.peers
        owner.config = FAST
        user.config = lazy
        for peer in cluster.peers:
            await peer.start()
        group_id = await build_group(owner, [(user, Role.USER)])
        data = os.urandom(2 * CHUNK_SIZE + 1)
        path = tmp_path / "notes.bin"
        path.write_bytes(data)
        message_hash = await owner.chat.send_file(group_id, path)
        with trio.fail_after(15):
            await user.chat.wait_ratified(group_id, message_hash)
        (message,) = [m for m in await user.chat.history(group_id) if m.message_type != "roster"]
        assert message.artifact is not None
        assert not message.artifact.complete
        assert await read_all(user, group_id, message_hash) == data
        (message,) = [m for m in await user.chat.history(group_id) if m.message_type != "roster"]
        assert message.artifact is not None
        assert message.artifact.complete


async def test_a_small_file_travels_chunked_with_its_name(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", start=False) as cluster:
        (owner,) = cluster.peers
        owner.config = FAST
        await owner.start()
        group_id = await owner.chat.create_group("solo")
        path = tmp_path / "small.txt"
        path.write_bytes(b"hello")
        message_hash = await owner.chat.send_file(group_id, path)
        (message,) = [m for m in await owner.chat.history(group_id) if m.message_type != "roster"]
        assert message.message_hash == message_hash
        assert message.artifact is not None
        assert (message.artifact.name, message.artifact.size) == ("small.txt", 5)
        assert message.mime == "text/plain"
        assert await read_all(owner, group_id, message_hash) == b"hello"


async def test_no_vote_for_an_artifact_no_one_can_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The author loses its chunks right after sealing them: the ratifier cannot hold them, so
    it refuses to vote ("artifact unavailable": its fetch ended without every chunk) and the
    message stays queued, never ratified."""
    async with open_cluster(tmp_path, "owner", "user", start=False) as cluster:
        owner, user = cluster.peers
        for peer in cluster.peers:
            peer.config = attrs.evolve(FAST, send_timeout=3.0)
            await peer.start()
        group_id = await build_group(owner, [(user, Role.USER)])
        caplog.set_level(logging.DEBUG, "p2pchat.chat.services.ratify")
        path = tmp_path / "lost.bin"
        path.write_bytes(os.urandom(CHUNK_SIZE + 1))
        blob_dir = tmp_path / "user" / "blobs"

        def lose_chunks(done: int, total: int) -> None:
            # The last call comes once every blob is written; writes still in flight at an
            # earlier call are left alone (their temporary files are theirs).
            if done == total:
                for chunk in blob_dir.rglob("*"):
                    if chunk.is_file() and ".tmp-" not in chunk.name:
                        chunk.unlink()

        with pytest.raises(PendingError):
            await user.chat.send_file(group_id, path, progress=lose_chunks)
        (queued,) = user.chat.outbox(group_id)
        assert queued.failures > 0
        assert "artifact unavailable" in caplog.text  # the ratifier's refusal, as the author saw it
        assert [m for m in await owner.chat.history(group_id) if m.message_type != "roster"] == []


async def test_a_restart_resumes_the_fetch_of_what_is_not_held(tmp_path: Path) -> None:
    """A member that did not fetch a delivered file (lazy) fetches it at its next start once
    its setting says it should: the fetch resumes from the store, not from a new delivery."""
    lazy = attrs.evolve(FAST, artifacts=attrs.evolve(FAST.artifacts, fetch_max=CHUNK_SIZE))
    async with open_cluster(tmp_path, "owner", "user", start=False) as cluster:
        owner, user = cluster.peers
        owner.config = FAST
        user.config = lazy
        for peer in cluster.peers:
            await peer.start()
        group_id = await build_group(owner, [(user, Role.USER)])
        path = tmp_path / "later.bin"
        data = os.urandom(2 * CHUNK_SIZE + 5)
        path.write_bytes(data)
        message_hash = await owner.chat.send_file(group_id, path)
        with trio.fail_after(15):
            await user.chat.wait_ratified(group_id, message_hash)
        (message,) = [m for m in await user.chat.history(group_id) if m.message_type != "roster"]
        assert message.artifact is not None
        assert not message.artifact.complete
        await user.stop()
        user.config = FAST
        await user.start()
        await wait_complete(user, group_id, message.artifact.root)
        assert await read_all(user, group_id, message_hash) == data


async def test_keep_days_prunes_ratified_artifacts_but_never_custody_or_pending(
    tmp_path: Path,
) -> None:
    """With ``keep_days`` (0 here: everything is old), a user drops the files of ratified
    messages, even its own, and fetches one again when it is read; a ratifier keeps every one
    (custody); a file whose message is still pending is kept."""
    pruning = attrs.evolve(FAST, artifacts=attrs.evolve(FAST.artifacts, keep_days=0.0))
    async with open_cluster(tmp_path, "owner", "r2", "user", start=False) as cluster:
        owner, r2, user = cluster.peers
        for peer in cluster.peers:
            peer.config = pruning
            await peer.start()
        group_id = await build_group(owner, [(r2, Role.RATIFIER), (user, Role.USER)])
        data = os.urandom(2 * CHUNK_SIZE + 9)
        (tmp_path / "old.bin").write_bytes(data)
        old_hash = await user.chat.send_file(group_id, tmp_path / "old.bin")
        await r2.stop()  # the quorum is 2 of 2: the next message stays pending
        (tmp_path / "new.bin").write_bytes(os.urandom(CHUNK_SIZE))
        new_hash = await user.chat.send_file(group_id, tmp_path / "new.bin", wait=False)
        user_files = user.chat.artifacts
        owner_files = owner.chat.artifacts
        assert user_files is not None
        assert owner_files is not None
        old_root = await root_of(user, group_id, old_hash)
        new_root = await root_of(user, group_id, new_hash)
        assert await user_files.sweep() == 1
        assert not user_files.files.is_complete(group_id, old_root)
        assert user_files.files.is_complete(group_id, new_root)  # pending: kept
        assert await owner_files.sweep() == 0  # a ratifier keeps what it holds in custody
        assert owner_files.files.is_complete(group_id, old_root)
        assert await read_all(user, group_id, old_hash) == data  # fetched again from the owner
