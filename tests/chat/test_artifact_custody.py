"""A ratifier's custody of artifacts (specs/artifacts.md §6 "Bounds", §4 "Removal"): at most
two custody fetches of one author at once, a byte and count quota per author for uncertified
messages, and the removal of what was fetched for a message that never got certified."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
import trio
import trio.testing

from chat.core.groups import key
from p2pchat.chat.artifact_custody import (
    MAX_CUSTODY_PER_AUTHOR,
    OVER_QUOTA,
    UNAVAILABLE,
    stored_size,
)
from p2pchat.chat.artifacts import ArtifactConfig, Artifacts
from p2pchat.chat.core.artifact import CHUNK_SIZE, ArtifactSealer, ChunkedRef
from p2pchat.chat.core.engine import FETCHING
from p2pchat.chat.core.packet import Artifact, Headers, Message, Packet, sha256, sign_message
from p2pchat.chat.services.blobs import FetchError
from p2pchat.chat.services.dispatch import Refusal
from p2pchat.chat.store.chunks import BlobStore
from p2pchat.identity import KeyPair, PeerID

GROUP = bytes(range(32))
ALICE, BOB, ME = key(11), key(12), key(13)
CONFIG = ArtifactConfig(disk_reserve=0, vote_wait=0.1, orphan_grace=60.0)


class FakeView:
    """The engine's view of the group, as custody reads it."""

    def __init__(self) -> None:
        self.ratified: set[bytes] = set()
        self.pending: dict[bytes, object] = {}
        self.state = self

    current_epoch = 0

    def has(self, message_hash: bytes) -> bool:
        return message_hash in self.ratified

    def find_roster(self, epoch: int) -> None:
        return None

    def members(self, epoch: int) -> set[PeerID]:
        return set()


class FakeEngine:
    def __init__(self) -> None:
        self.view = FakeView()
        self.peer_id = ME.peer_id

    def find(self, group_id: bytes) -> FakeView | None:
        return self.view if group_id == GROUP else None


class FakeBlobs:
    """Custody fetches wait until the test releases them, then store the artifact's blobs."""

    def __init__(self, files: BlobStore) -> None:
        self.blobs = files
        self.started: list[bytes] = []
        self.release: dict[bytes, trio.Event] = {}
        self.sealed: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self.fail: set[bytes] = set()

    async def fetch_artifact(
        self,
        group_id: bytes,
        ref: ChunkedRef,
        holders: list[PeerID],
        progress: Callable[[int], None],
    ) -> None:
        self.started.append(ref.root)
        await self.release.setdefault(ref.root, trio.Event()).wait()
        if ref.root in self.fail:
            raise FetchError("no holder had every blob")
        for blob_id, data in self.sealed[ref.root]:
            self.blobs.put(group_id, blob_id, data)
        self.blobs.mark_complete(group_id, ref.root)


def artifact_packet(author: KeyPair, blobs: FakeBlobs, size: int = CHUNK_SIZE + 7) -> Packet:
    """A signed message naming a fresh artifact, whose blobs ``blobs`` will serve."""
    sealer = ArtifactSealer(os.urandom(32), size)
    sealed = []
    for index in range(sealer.chunks):
        sealed += sealer.seal(os.urandom(min(CHUNK_SIZE, size - index * CHUNK_SIZE)))
    (root, manifest), ref = sealer.finish()
    blobs.sealed[root] = [*sealed, (root, manifest)]
    data, aes_key, iv = b"name", bytes(60), bytes(12)
    message = Message(
        group_id=GROUP,
        epoch=0,
        message_type="file",
        time_stamp=1_764_000_000_000,
        author=author.peer_id,
        ref_hash=None,
        parents=(),
        headers=Headers(),
        artifact=Artifact(
            "application/octet-stream", data, sha256(data), sha256(aes_key + iv), ref
        ),
    )
    return sign_message(author, message, aes_key, iv)


@attrs.define
class Custody:
    artifacts: Artifacts
    engine: FakeEngine
    blobs: FakeBlobs
    files: BlobStore

    async def ask(self, packet: Packet) -> str | None:
        """``mrat``'s custody step: None when held, else the refusal."""
        try:
            await self.artifacts.hold_before_vote(GROUP, packet, packet.message.author)
        except Refusal as exc:
            return str(exc)
        return None

    def packet(self, author: KeyPair, size: int = CHUNK_SIZE + 7) -> Packet:
        return artifact_packet(author, self.blobs, size)


def open_custody(tmp_path: Path, nursery: trio.Nursery, config: ArtifactConfig = CONFIG) -> Custody:
    files = BlobStore(tmp_path / "blobs", reserve=0)
    engine, blobs = FakeEngine(), FakeBlobs(files)
    artifacts = Artifacts(cast(Any, engine), cast(Any, None), cast(Any, blobs), nursery, config)
    return Custody(artifacts, engine, blobs, files)


def root_of(packet: Packet) -> bytes:
    ref = packet.message.artifact.chunked
    assert ref is not None
    return ref.root


async def test_a_third_custody_fetch_of_one_author_is_not_started(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        c = open_custody(tmp_path, nursery)
        first, second, third = (c.packet(ALICE) for _ in range(3))
        assert MAX_CUSTODY_PER_AUTHOR == 2
        assert await c.ask(first) == FETCHING
        assert await c.ask(second) == FETCHING
        assert await c.ask(third) == FETCHING
        assert c.blobs.started == [root_of(first), root_of(second)]
        # Another author is not held up by Alice's fetches.
        other = c.packet(BOB)
        assert await c.ask(other) == FETCHING
        assert c.blobs.started[-1] == root_of(other)
        # Once one of Alice's is held, her third starts on her next ask.
        c.blobs.release.setdefault(root_of(first), trio.Event()).set()
        await trio.testing.wait_all_tasks_blocked()
        assert c.files.is_complete(GROUP, root_of(first))
        assert await c.ask(first) is None
        assert await c.ask(third) == FETCHING
        assert c.blobs.started[-1] == root_of(third)
        nursery.cancel_scope.cancel()


async def test_custody_quota_refuses_an_author_over_it_until_certified(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        c = open_custody(tmp_path, nursery)
        first, second, third = (c.packet(ALICE) for _ in range(3))
        quota = 2 * stored_size(cast(ChunkedRef, first.message.artifact.chunked))
        c.artifacts.config = attrs.evolve(CONFIG, custody_quota=quota)
        for packet in (first, second):
            c.blobs.release.setdefault(root_of(packet), trio.Event()).set()
            assert await c.ask(packet) is None  # fetched within vote_wait
        assert c.artifacts.custody_use(GROUP, ALICE.peer_id) == (2, quota)
        assert await c.ask(third) == OVER_QUOTA
        assert root_of(third) not in c.blobs.started
        assert await c.ask(c.packet(BOB)) == FETCHING  # quotas are per author
        # The first message is certified: its artifact is held for good, out of the quota.
        c.engine.view.ratified.add(first.message_hash)
        assert c.artifacts.custody_use(GROUP, ALICE.peer_id) == (1, quota // 2)
        assert await c.ask(third) == FETCHING
        nursery.cancel_scope.cancel()


async def test_an_artifact_larger_than_the_quota_is_refused(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        c = open_custody(tmp_path, nursery, attrs.evolve(CONFIG, custody_quota=CHUNK_SIZE))
        assert await c.ask(c.packet(ALICE, 2 * CHUNK_SIZE)) == OVER_QUOTA
        assert c.blobs.started == []
        nursery.cancel_scope.cancel()


async def test_an_uncertified_artifact_is_removed_after_the_grace(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = open_custody(tmp_path, nursery)
        refused, pending, certified = (c.packet(ALICE) for _ in range(3))
        for packet in (refused, pending, certified):
            c.blobs.release.setdefault(root_of(packet), trio.Event()).set()
            assert await c.ask(packet) is None
        # The vote path refused the first (not stored); the second is pending, the third certified.
        c.engine.view.pending[pending.message_hash] = object()
        c.engine.view.ratified.add(certified.message_hash)
        assert await c.artifacts.sweep() == 0  # within the grace: the author may ask again
        await trio.sleep(CONFIG.orphan_grace)
        assert await c.artifacts.sweep() == 1
        assert not c.files.is_complete(GROUP, root_of(refused))
        assert not any(c.files.has(GROUP, blob) for blob, _ in c.blobs.sealed[root_of(refused)])
        for kept in (pending, certified):
            assert c.files.is_complete(GROUP, root_of(kept))
            assert all(c.files.has(GROUP, blob) for blob, _ in c.blobs.sealed[root_of(kept)])
        # The pending one expires (its row is deleted): it goes at the next sweep.
        del c.engine.view.pending[pending.message_hash]
        assert await c.artifacts.sweep() == 1
        assert not c.files.is_complete(GROUP, root_of(pending))
        assert c.artifacts.custody_use(GROUP, ALICE.peer_id) == (0, 0)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("refetch", [False, True])
async def test_an_author_asking_again_keeps_its_artifact(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, refetch: bool
) -> None:
    async with trio.open_nursery() as nursery:
        c = open_custody(tmp_path, nursery)
        packet = c.packet(ALICE)
        c.blobs.release.setdefault(root_of(packet), trio.Event()).set()
        assert await c.ask(packet) is None
        await trio.sleep(CONFIG.orphan_grace - 1)
        if refetch:
            assert await c.ask(packet) is None  # e.g. after "missing parents"
        await trio.sleep(2)
        assert await c.artifacts.sweep() == (0 if refetch else 1)
        assert c.files.is_complete(GROUP, root_of(packet)) is refetch
        nursery.cancel_scope.cancel()


async def test_a_custody_fetch_that_fails_is_refused_as_unavailable(tmp_path: Path) -> None:
    """ "fetching artifact" makes the author ask again soon, so it is said only while a fetch
    runs; one that ended without every blob is "artifact unavailable" (the author backs off)."""
    async with trio.open_nursery() as nursery:
        c = open_custody(tmp_path, nursery)
        packet = c.packet(ALICE)
        assert await c.ask(packet) == FETCHING  # still running after vote_wait
        c.blobs.fail.add(root_of(packet))
        c.blobs.release.setdefault(root_of(packet), trio.Event()).set()
        await trio.testing.wait_all_tasks_blocked()
        c.blobs.release.pop(root_of(packet))
        c.blobs.release.setdefault(root_of(packet), trio.Event()).set()
        assert await c.ask(packet) == UNAVAILABLE  # a new fetch ran, and failed again
        assert c.blobs.started == [root_of(packet)] * 2
        nursery.cancel_scope.cancel()


async def test_a_fetch_that_completes_answers_the_waiting_request_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The ratifier holds ``mrat`` while it fetches: it answers when the artifact is held, not
    at the end of vote_wait."""
    config = attrs.evolve(CONFIG, vote_wait=10.0)
    async with trio.open_nursery() as nursery:
        c = open_custody(tmp_path, nursery, config)
        packet = c.packet(ALICE)

        async def release_later() -> None:
            await trio.sleep(3)
            c.blobs.release.setdefault(root_of(packet), trio.Event()).set()

        nursery.start_soon(release_later)
        start = trio.current_time()
        assert await c.ask(packet) is None
        assert trio.current_time() - start == pytest.approx(3)
        nursery.cancel_scope.cancel()
