"""Blobs of chunked artifacts as files in the data dir (specs/artifacts.md §4).

``DATA/blobs/<group hex>/<id[0:2] hex>/<id hex>``: one file per blob (chunk, page or manifest),
named by its SHA-256 and kept under its group, since the group decides who may read it. A blob
is written to a temporary name in its directory, fsynced, renamed over its final name and the
directory fsynced, so a file under a final name is always a whole blob; it is verified against
its name whenever it is read. A write that would leave less than the reserve free on the file
system is refused before anything is written. A blob that verifies is deleted only by
:meth:`BlobStore.remove_artifact`, which the artifact service calls for an artifact it no longer
keeps (§4 "Removal": refused or expired custody, pruning by age).

The methods are blocking; the transfer service calls them through ``trio.to_thread``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import Final

from ...errors import P2PChatError
from ..core.artifact import MANIFEST_HEADER, ArtifactError, ArtifactLayout, ChunkedRef

logger = logging.getLogger(__name__)

BLOB_DIR: Final = "blobs"
#: specs/artifacts.md §4: the default free space a node keeps on its data dir's file system.
DEFAULT_DISK_RESERVE: Final = 512 * 1024 * 1024
_COMPLETE: Final = ".complete"
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600


class BlobStoreError(P2PChatError):
    """A blob cannot be written (the disk, the file system)."""


class DiskReserveError(BlobStoreError):
    """Writing would leave less free space than the configured reserve."""


class BlobStore:
    """The blob files of one data dir, with a free-space reserve (bytes)."""

    def __init__(self, root: str | os.PathLike[str], *, reserve: int = DEFAULT_DISK_RESERVE):
        if reserve < 0:
            raise ValueError("the disk reserve must be >= 0")
        self.root = Path(root)
        self.reserve = reserve

    def _group_dir(self, group_id: bytes) -> Path:
        return self.root / group_id.hex()

    def path(self, group_id: bytes, blob_id: bytes) -> Path:
        """Where blob ``blob_id`` of group ``group_id`` lives."""
        name = blob_id.hex()
        return self._group_dir(group_id) / name[:2] / name

    def has(self, group_id: bytes, blob_id: bytes) -> bool:
        """True if the blob's file exists (it was renamed into place whole)."""
        return self.path(group_id, blob_id).is_file()

    def held(self, group_id: bytes, blob_ids: list[bytes]) -> set[bytes]:
        """Which of ``blob_ids`` are held (one call for a batch, off the event loop)."""
        return {blob_id for blob_id in blob_ids if self.has(group_id, blob_id)}

    def free_space(self) -> int:
        """Free bytes for us on the file system of the blob directory."""
        where = self.root if self.root.exists() else self.root.parent
        stat = os.statvfs(where)
        return stat.f_bavail * stat.f_frsize

    def put(
        self,
        group_id: bytes,
        blob_id: bytes,
        data: bytes,
        *,
        sync_dir: bool = True,
        verified: bool = False,
    ) -> bool:
        """Store ``data`` as blob ``blob_id``; True if it was written, False if already held.

        The file is fsynced before it is renamed into place; with ``sync_dir`` false the
        directory is not, and the caller calls :meth:`sync_dirs` for a batch of puts before it
        counts on them (a rename lost in a crash only means the blob is fetched again).
        ``verified`` says the caller has just checked the hash (the fetcher has).

        Raises:
            ValueError: ``SHA-256(data)`` is not ``blob_id`` (checked before anything is written).
            DiskReserveError: the write would leave less than the reserve free.
            BlobStoreError: the file system refused the write.
        """
        if not verified and hashlib.sha256(data).digest() != blob_id:
            raise ValueError("blob does not match its id")
        final = self.path(group_id, blob_id)
        if final.is_file():
            return False
        self._write(final, data, sync_dir=sync_dir)
        return True

    def sync_dirs(self, group_id: bytes, blob_ids: list[bytes]) -> None:
        """Make the renames of ``blob_ids`` durable: fsync each of their directories once.

        Raises:
            BlobStoreError: a directory cannot be synced.
        """
        dirs = {self.path(group_id, blob_id).parent for blob_id in blob_ids}
        try:
            for path in sorted(dirs):
                _fsync_dir(path)
        except OSError as exc:
            raise BlobStoreError(f"cannot sync {self.root}: {exc.strerror}") from exc

    def _write(self, final: Path, data: bytes, *, sync_dir: bool = True) -> None:
        try:
            final.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            free = self.free_space()
        except OSError as exc:
            raise BlobStoreError(f"cannot prepare {final.parent}: {exc.strerror}") from exc
        if free - len(data) < self.reserve:
            raise DiskReserveError(
                f"the disk would fall below the reserve of {self.reserve // (1024 * 1024)} MiB "
                f"({free // (1024 * 1024)} MiB free)"
            )
        temp = final.with_name(f"{final.name}.tmp-{secrets.token_hex(4)}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            if sync_dir:
                _fsync_dir(final.parent)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise BlobStoreError(f"cannot write {final}: {exc.strerror}") from exc

    def get(self, group_id: bytes, blob_id: bytes) -> bytes | None:
        """Blob ``blob_id``, verified against its id; None if not held. A file that does not
        verify (the disk corrupted it) is removed, logged, and reported as not held, so that it
        is fetched again."""
        final = self.path(group_id, blob_id)
        try:
            data = final.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("cannot read blob %s: %s", final, exc.strerror)
            return None
        if hashlib.sha256(data).digest() != blob_id:
            logger.warning("blob %s does not match its hash; removing it", final)
            final.unlink(missing_ok=True)
            return None
        return data

    def is_complete(self, group_id: bytes, root: bytes) -> bool:
        """True if artifact ``root`` was checked complete (§4: its marker file exists)."""
        return (self._group_dir(group_id) / (root.hex() + _COMPLETE)).is_file()

    def mark_complete(self, group_id: bytes, root: bytes) -> None:
        """Record that every blob of artifact ``root`` is held (the caller checked).

        Raises:
            BlobStoreError: the marker cannot be written.
        """
        marker = self._group_dir(group_id) / (root.hex() + _COMPLETE)
        if marker.is_file():
            return
        reserve, self.reserve = self.reserve, 0  # a marker is empty: never refuse it
        try:
            self._write(marker, b"")
        finally:
            self.reserve = reserve

    def remove_artifact(self, group_id: bytes, root: bytes) -> int:
        """Delete artifact ``root`` of ``group_id``: its marker, chunks, pages, then manifest;
        return how many blob files were removed. Safe after a crash part way: the marker goes
        first (nothing partial stays marked complete) and the manifest last (a later call finds
        what is left from it). Blobs already missing are skipped.

        Raises:
            BlobStoreError: a file cannot be removed.
        """
        removed = 0
        try:
            (self._group_dir(group_id) / (root.hex() + _COMPLETE)).unlink(missing_ok=True)
            manifest = self.get(group_id, root)
            if manifest is None:
                return 0
            size = int.from_bytes(manifest[:8], "big")
            chunks = int.from_bytes(manifest[8:MANIFEST_HEADER], "big")
            try:
                layout = ArtifactLayout.from_manifest(ChunkedRef(root, size, chunks), manifest)
            except ArtifactError:  # a blob named like a root that is no manifest: keep it
                return 0
            for page, page_id in enumerate(layout.page_ids):
                data = self.get(group_id, page_id)
                if data is not None:
                    try:
                        chunk_ids = layout.read_page(page, data)
                    except ArtifactError:
                        chunk_ids = ()
                    for chunk_id in chunk_ids:
                        removed += self._unlink(group_id, chunk_id)
                removed += self._unlink(group_id, page_id)
            removed += self._unlink(group_id, root)
        except OSError as exc:
            raise BlobStoreError(f"cannot remove artifact {root.hex()}: {exc.strerror}") from exc
        return removed

    def _unlink(self, group_id: bytes, blob_id: bytes) -> int:
        try:
            self.path(group_id, blob_id).unlink()
        except FileNotFoundError:
            return 0
        return 1

    def groups(self) -> list[bytes]:
        """The groups that have a blob directory."""
        if not self.root.is_dir():
            return []
        out = []
        for entry in self.root.iterdir():
            try:
                out.append(bytes.fromhex(entry.name))
            except ValueError:
                continue
        return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
