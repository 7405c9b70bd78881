"""Blob files (specs/artifacts.md §4): written whole, verified on read, a disk reserve."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from p2pchat.chat.core.artifact import CHUNK_SIZE, ArtifactSealer
from p2pchat.chat.store.chunks import BlobStore, DiskReserveError

GROUP = bytes(range(32))


def _blob(data: bytes) -> tuple[bytes, bytes]:
    return hashlib.sha256(data).digest(), data


def test_put_then_get_round_trips_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", reserve=0)
    blob_id, data = _blob(b"chunk bytes")
    assert store.put(GROUP, blob_id, data) is True
    assert store.put(GROUP, blob_id, data) is False  # already held
    assert store.has(GROUP, blob_id)
    assert store.get(GROUP, blob_id) == data
    files = [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert files == [blob_id.hex()]
    assert store.path(GROUP, blob_id).stat().st_mode & 0o077 == 0


def test_a_blob_is_kept_under_its_group_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, reserve=0)
    blob_id, data = _blob(b"x")
    store.put(GROUP, blob_id, data)
    assert store.get(bytes(32), blob_id) is None
    assert not store.has(bytes(32), blob_id)


def test_a_blob_that_does_not_match_its_id_is_refused_before_writing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, reserve=0)
    blob_id, _ = _blob(b"good")
    with pytest.raises(ValueError, match="does not match"):
        store.put(GROUP, blob_id, b"evil")
    assert not store.has(GROUP, blob_id)


def test_a_corrupted_file_is_removed_on_read_and_reported_missing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, reserve=0)
    blob_id, data = _blob(b"original")
    store.put(GROUP, blob_id, data)
    store.path(GROUP, blob_id).write_bytes(b"bit rot")
    assert store.get(GROUP, blob_id) is None
    assert not store.has(GROUP, blob_id)
    assert store.put(GROUP, blob_id, data) is True  # fetched again


def test_disk_reserve_refuses_clearly_and_loses_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, reserve=0)
    kept_id, kept = _blob(b"kept")
    store.put(GROUP, kept_id, kept)
    # Far above what is free, however much other processes free meanwhile.
    full = BlobStore(tmp_path, reserve=store.free_space() + 2**50)
    new_id, new = _blob(b"new")
    with pytest.raises(DiskReserveError, match="would fall below the reserve"):
        full.put(GROUP, new_id, new)
    assert not full.has(GROUP, new_id)
    assert full.get(GROUP, kept_id) == kept
    assert not [p for p in tmp_path.rglob("*.tmp-*")]


def test_complete_marker_survives_a_new_store_object(tmp_path: Path) -> None:
    root = bytes([7]) * 32
    BlobStore(tmp_path, reserve=0).mark_complete(GROUP, root)
    again = BlobStore(tmp_path, reserve=2**62)
    assert again.is_complete(GROUP, root)
    assert not again.is_complete(GROUP, bytes(32))


def _sealed_artifact(store: BlobStore, group: bytes, size: int) -> tuple[bytes, list[bytes]]:
    sealer = ArtifactSealer(os.urandom(32), size)
    ids = []
    for index in range(sealer.chunks):
        for blob_id, data in sealer.seal(os.urandom(min(CHUNK_SIZE, size - index * CHUNK_SIZE))):
            store.put(group, blob_id, data)
            ids.append(blob_id)
    (root, manifest), _ = sealer.finish()
    store.put(group, root, manifest)
    store.mark_complete(group, root)
    return root, [*ids, root]


def test_remove_artifact_deletes_its_blobs_and_marker_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, reserve=0)
    gone, gone_ids = _sealed_artifact(store, GROUP, 2 * CHUNK_SIZE + 3)
    kept, kept_ids = _sealed_artifact(store, GROUP, CHUNK_SIZE)
    # chunks + one page + manifest
    assert store.remove_artifact(GROUP, gone) == len(gone_ids)
    assert not store.is_complete(GROUP, gone)
    assert not any(store.has(GROUP, blob_id) for blob_id in gone_ids)
    assert store.is_complete(GROUP, kept)
    assert all(store.has(GROUP, blob_id) for blob_id in kept_ids)
    assert store.remove_artifact(GROUP, gone) == 0  # already gone: nothing to do


def test_remove_artifact_finishes_after_a_partial_removal(tmp_path: Path) -> None:
    """A removal cut short (a crash) left the manifest: the next call removes the rest."""
    store = BlobStore(tmp_path, reserve=0)
    root, ids = _sealed_artifact(store, GROUP, 3 * CHUNK_SIZE)
    store.path(GROUP, ids[0]).unlink()
    assert store.remove_artifact(GROUP, root) == len(ids) - 1
    assert not any(store.has(GROUP, blob_id) for blob_id in ids)
