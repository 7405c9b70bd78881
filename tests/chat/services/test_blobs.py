"""``/p2pchat/blob/1.0.0`` between hosts on 127.0.0.1 (specs/artifacts.md §5): several holders,
members only, garbage and stalls routed to another holder, resume, the disk reserve."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from p2pchat.chat.core.artifact import CHUNK_SIZE, ArtifactOpener, ArtifactSealer, ChunkedRef
from p2pchat.chat.core.blobwire import PROTOCOL_ID, BlobRequest
from p2pchat.chat.services.blobs import BlobService, FetchError
from p2pchat.chat.store.chunks import BlobStore, DiskReserveError
from p2pchat.identity import KeyPair, PeerID
from p2pchat.net.host import Host, open_host

GROUP = bytes(range(32))
KEY = bytes([5]) * 32
SIZE = 5 * CHUNK_SIZE + 123
pytestmark = pytest.mark.timeout(60)


def make_artifact(store: BlobStore) -> tuple[ChunkedRef, bytes]:
    """Seal a SIZE-byte artifact into ``store``."""
    plaintext = os.urandom(SIZE)
    sealer = ArtifactSealer(KEY, SIZE)
    for index in range(sealer.chunks):
        for blob_id, data in sealer.seal(plaintext[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE]):
            store.put(GROUP, blob_id, data)
    (root, manifest), ref = sealer.finish()
    store.put(GROUP, root, manifest)
    return ref, plaintext


class CountingStore(BlobStore):
    """Counts the blobs it served; may serve garbage or stall instead."""

    def __init__(self, root: Path, mode: str = "good") -> None:
        super().__init__(root, reserve=0)
        self.mode = mode
        self.served = 0

    def get(self, group_id: bytes, blob_id: bytes) -> bytes | None:
        data = super().get(group_id, blob_id)
        if data is None:
            return None
        self.served += 1
        if self.mode == "garbage" and self.served > 1:
            return bytes(len(data))
        if self.mode == "stall" and self.served > 1:
            trio.from_thread.run(trio.sleep_forever)  # never answers
        return data


class Node:
    def __init__(self, host: Host, store: BlobStore, members: set[PeerID]) -> None:
        self.host = host
        self.store = store
        self.members = members
        self.service = BlobService(
            host, store, lambda g, p: g == GROUP and p in members, stall_timeout=1.0
        )
        self.service.install()


@asynccontextmanager
async def nodes(
    tmp_path: Path, modes: list[str], *, members: bool = True
) -> AsyncIterator[list[Node]]:
    """Node 0 fetches; the others hold, each with a store of ``modes[i]``."""
    async with AsyncExitStack() as stack:
        out: list[Node] = []
        member_set: set[PeerID] = set()
        for i, mode in enumerate(modes):
            host = await stack.enter_async_context(open_host(KeyPair.generate()))
            store = CountingStore(tmp_path / f"n{i}", mode)
            out.append(Node(host, store, member_set))
        for node in out[1:]:
            await out[0].host.connect(node.host.addrs[0])
        if members:
            member_set |= {n.host.peer_id for n in out}
        yield out


async def read_back(store: BlobStore, ref: ChunkedRef, service: BlobService) -> bytes:
    layout = await service.layout(GROUP, ref, [])
    page = store.get(GROUP, layout.page_ids[0])
    assert page is not None
    opener = ArtifactOpener(KEY, ref)
    out = b""
    for i, cid in enumerate(layout.read_page(0, page)):
        data = store.get(GROUP, cid)
        assert data is not None
        out += opener.open(i, data)
    return out


async def test_fetch_from_several_holders_at_once(tmp_path: Path) -> None:
    async with nodes(tmp_path, ["good", "good", "good"]) as (me, a, b):
        ref, plaintext = make_artifact(a.store)
        make_artifact_copy(a.store, b.store)
        got: list[int] = []
        await me.service.fetch_artifact(
            GROUP, ref, [a.host.peer_id, b.host.peer_id], progress=got.append
        )
        assert me.store.is_complete(GROUP, ref.root)
        assert await read_back(me.store, ref, me.service) == plaintext
        assert isinstance(a.store, CountingStore)
        assert isinstance(b.store, CountingStore)
        assert a.store.served > 0
        assert b.store.served > 0
        assert sum(got) == SIZE + 16 * ref.chunks


def make_artifact_copy(
    source: BlobStore, target: BlobStore, *, skip: set[bytes] | None = None
) -> None:
    for path in source.root.rglob("*"):
        if path.is_file() and len(path.name) == 64 and bytes.fromhex(path.name) not in (skip or ()):
            target.put(GROUP, bytes.fromhex(path.name), path.read_bytes())


async def test_non_member_gets_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with nodes(tmp_path, ["good", "good"], members=False) as (me, a):
        ref, _ = make_artifact(a.store)
        with pytest.raises(FetchError):
            await me.service.fetch_artifact(GROUP, ref, [a.host.peer_id])
        assert not me.store.has(GROUP, ref.root)
        assert isinstance(a.store, CountingStore)
        assert a.store.served == 0


async def test_garbage_holder_is_dropped_and_another_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with nodes(tmp_path, ["good", "garbage", "good"]) as (me, bad, good):
        ref, plaintext = make_artifact(bad.store)
        make_artifact_copy(bad.store, good.store)
        await me.service.fetch_artifact(GROUP, ref, [bad.host.peer_id, good.host.peer_id])
        assert await read_back(me.store, ref, me.service) == plaintext
        assert "served garbage" in caplog.text


async def test_stalling_holder_is_dropped_and_another_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with nodes(tmp_path, ["good", "stall", "good"]) as (me, slow, good):
        ref, plaintext = make_artifact(slow.store)
        make_artifact_copy(slow.store, good.store)
        await me.service.fetch_artifact(GROUP, ref, [slow.host.peer_id, good.host.peer_id])
        assert await read_back(me.store, ref, me.service) == plaintext
        assert "no answer for 1 s" in caplog.text


async def test_resume_fetches_only_what_is_missing(tmp_path: Path) -> None:
    async with nodes(tmp_path, ["good", "good", "good"]) as (me, half, full):
        ref, plaintext = make_artifact(full.store)
        layout = await full.service.layout(GROUP, ref, [])
        page = full.store.get(GROUP, layout.page_ids[0])
        assert page is not None
        chunk_ids = layout.read_page(0, page)
        make_artifact_copy(full.store, half.store, skip=set(chunk_ids[3:]))
        with pytest.raises(FetchError):  # only half of it: the fetch ends partial
            await me.service.fetch_artifact(GROUP, ref, [half.host.peer_id])
        assert not me.store.is_complete(GROUP, ref.root)
        assert [me.store.has(GROUP, c) for c in chunk_ids] == [True] * 3 + [False] * 3
        assert isinstance(full.store, CountingStore)
        full.store.served = 0
        await me.service.fetch_artifact(GROUP, ref, [full.host.peer_id])
        assert full.store.served == 3  # the three chunks missing, nothing held again
        assert await read_back(me.store, ref, me.service) == plaintext


async def test_disk_reserve_stops_the_fetch_and_nothing_shows_complete(tmp_path: Path) -> None:
    async with nodes(tmp_path, ["good", "good"]) as (me, a):
        ref, _ = make_artifact(a.store)
        me.store.reserve = me.store.free_space() + 1
        with pytest.raises(DiskReserveError):
            await me.service.fetch_artifact(GROUP, ref, [a.host.peer_id])
        assert not me.store.is_complete(GROUP, ref.root)
        me.store.reserve = 0
        await me.service.fetch_artifact(GROUP, ref, [a.host.peer_id])
        assert me.store.is_complete(GROUP, ref.root)


async def test_a_peer_that_drops_its_stream_does_not_take_the_holder_down(tmp_path: Path) -> None:
    async with nodes(tmp_path, ["good", "good"]) as (me, a):
        ref, plaintext = make_artifact(a.store)
        layout = await a.service.layout(GROUP, ref, [])
        page = a.store.get(GROUP, layout.page_ids[0])
        assert page is not None
        stream = await me.host.new_stream(a.host.peer_id, [PROTOCOL_ID])
        for rid, chunk_id in enumerate(layout.read_page(0, page)):
            await stream.send_all(BlobRequest(rid, GROUP, chunk_id).encode())
        conn = me.host.connection(a.host.peer_id)
        assert conn is not None
        await conn.aclose()  # gone, with answers on their way
        await me.host.connect(a.host.addrs[0])
        await me.service.fetch_artifact(GROUP, ref, [a.host.peer_id])
        assert await read_back(me.store, ref, me.service) == plaintext


async def test_candidates_beyond_the_first_holders_are_asked_for_what_none_had(
    tmp_path: Path,
) -> None:
    """Four holders at once (MAX_HOLDERS) have nothing; the fifth candidate has it all."""
    async with nodes(tmp_path, ["good"] * 6) as (me, *empty, full):
        ref, plaintext = make_artifact(full.store)
        await me.service.fetch_artifact(
            GROUP, ref, [n.host.peer_id for n in empty] + [full.host.peer_id]
        )
        assert await read_back(me.store, ref, me.service) == plaintext
