"""Artifacts of any size on a chat node: send a file, hold it before voting, fetch on delivery,
read it back as a stream (specs/artifacts.md §6).

Theory of operation
-------------------
*Sending.* :meth:`Artifacts.send_file` reads the file a chunk at a time in a worker thread,
seals each chunk (:class:`~p2pchat.chat.core.artifact.ArtifactSealer`) and writes its blobs to
the blob files there too, so the event loop and memory only ever see one chunk; then the engine
writes the message naming the manifest, and the node submits it like any other. Every file
travels chunked, however small, so that its name travels with it (sealed).

*Custody.* :meth:`Artifacts.hold_before_vote` is the ratifier's hook on ``mrat``: a message
whose artifact is chunked and not yet complete here starts (or joins) a fetch in this service's
nursery, waits for it a little, and refuses ``"fetching artifact"`` until it is complete; the
author's outbox asks again. The vote path itself is unchanged. What an author makes us
fetch and hold for messages not yet certified is counted against its custody quota
(``custody_quota`` bytes, specs/artifacts.md §6 "Bounds"); an artifact whose message we then
refuse, or whose pending row expires, is removed by the next sweep once no one has asked for
it for ``orphan_grace`` seconds.

*Sweeps.* :meth:`Artifacts.run_sweeps` removes those orphans every ``sweep_interval`` seconds
and, with ``keep_days``, prunes the artifacts of ratified messages older than that, except in
groups where we are a ratifier (custody) and never for a message still pending (§4 "Removal").

*Delivery.* Every ratified message of someone else with a chunked artifact of at most
``fetch_max`` bytes is fetched in the background (:meth:`Artifacts.on_publish`); the others are
fetched when read. At start, :meth:`Artifacts.resume` restarts the fetches of artifacts that are
not complete. Concurrent fetches of one artifact share one task.

*Reading.* :meth:`Artifacts.open` fetches what is missing, then yields the plaintext chunk by
chunk, each read from its file, verified and decrypted: the whole file is never in memory.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import BinaryIO, Final

import attrs
import trio

from ..errors import P2PChatError, ProtocolError
from ..identity import PeerID
from .artifact_custody import (
    DEFAULT_CUSTODY_QUOTA,
    ArtifactCustody,
    CustodyEntry,
    decode_stored,
    stored_size,
)
from .core import crypto
from .core.artifact import (
    CHUNK_SIZE,
    HASHES_PER_PAGE,
    ArtifactError,
    ArtifactLayout,
    ArtifactOpener,
    ArtifactSealer,
    ChunkedRef,
    decode_file_info,
)
from .core.blobwire import STALL_TIMEOUT
from .core.engine import ChatEngine, ChatError
from .core.events import Commit, Publish
from .core.packet import Packet
from .core.prune import is_prunable_delete
from .deleted import drop_deleted_files
from .services.blobs import BlobService, FetchError
from .services.runtime import now_ms
from .store import ChatStore
from .store.chunks import DEFAULT_DISK_RESERVE, BlobStore, BlobStoreError, DiskReserveError

logger = logging.getLogger(__name__)

#: Chunk writes of a file being sent that run at once (their fsyncs overlap).
WRITERS: Final = 8
#: Artifact fetches that run at once (the others wait their turn).
MAX_FETCHES: Final = 4
#: Attempts of a background fetch, and the longest pause between two (seconds).
FETCH_ATTEMPTS: Final = 6
FETCH_BACKOFF_MAX: Final = 30.0
#: Progress callback: bytes done so far, total bytes.
Progress = Callable[[int, int], None]
#: ``ChatNode._submit``: writes the message (the callable) under the group's write lock, queues it.
Submit = Callable[[bytes, Callable[[], tuple[Packet, Commit]], bool], Awaitable[bytes]]


@attrs.frozen
class ArtifactConfig:
    """``[artifacts]`` settings (specs/artifacts.md §4, §6)."""

    #: Free bytes kept on the data dir's file system; a blob that would eat into them is refused.
    disk_reserve: int = DEFAULT_DISK_RESERVE
    #: Members fetch a delivered artifact of at most this many bytes at once (None: any size);
    #: larger ones are fetched when read.
    fetch_max: int | None = None
    #: Seconds a ratifier waits for a fetch before it refuses "fetching artifact" for now (under
    #: the author's query timeout, 5 s by default, so that the refusal reaches it).
    vote_wait: float = 4.0
    #: Seconds without an answer before a holder is dropped.
    stall_timeout: float = STALL_TIMEOUT
    #: Bytes of artifacts one author can have us (a ratifier) hold for uncertified messages.
    custody_quota: int = DEFAULT_CUSTODY_QUOTA
    #: Days an artifact of a ratified message is kept on a node that is not a ratifier of its
    #: group (None: for ever); older ones are removed (and fetched again when read).
    keep_days: float | None = None
    #: Seconds after the last ``mrat`` that asked for it before an artifact held for a message
    #: we did not vote for, or whose pending row expired, is removed.
    orphan_grace: float = 3600.0
    #: Seconds between two sweeps (orphans, pruning).
    sweep_interval: float = 600.0


@attrs.frozen
class ArtifactInfo:
    """What a message says of its chunked artifact, and whether it is all held here."""

    name: str | None
    mime: str
    size: int
    chunks: int
    root: bytes
    complete: bool


class ArtifactUnavailableError(ChatError):
    """The artifact cannot be read: no key for it, or it could not be fetched."""


class Artifacts(ArtifactCustody):
    """The artifact side of a :class:`~p2pchat.chat.node.ChatNode`."""

    def __init__(
        self,
        engine: ChatEngine,
        store: ChatStore,
        blobs: BlobService,
        nursery: trio.Nursery,
        config: ArtifactConfig,
    ) -> None:
        self.engine = engine
        self.store = store
        self.blobs = blobs
        self.files: BlobStore = blobs.blobs
        self.config = config
        self._nursery = nursery
        self._running: dict[bytes, trio.Event] = {}
        self._fetch_slots = trio.Semaphore(MAX_FETCHES)
        self._custody: dict[PeerID, set[bytes]] = {}
        #: Artifacts held or fetched for custody of uncertified messages, by root.
        self._ledger: dict[bytes, CustodyEntry] = {}
        #: Set when the custody fetch of an artifact (root) ends, held or not.
        self._custody_done: dict[bytes, trio.Event] = {}
        #: Bytes stored so far by the fetch of each artifact (root), for progress reports.
        self.fetched: dict[bytes, int] = {}

    # -- sending -----------------------------------------------------------------------------

    async def send_file(
        self,
        submit: Submit,
        group_id: bytes,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        mime: str | None = None,
        message_type: str | None = None,
        ref_hash: bytes | None = None,
        wait: bool = True,
        progress: Progress | None = None,
    ) -> bytes:
        """Send the file at ``path``; return the message hash (see ``ChatNode.send``).

        Raises:
            OSError: the file cannot be read.
            ChatError: the file changed while it was read, or as ``ChatNode.send``.
            BlobStoreError: its chunks cannot be stored (DiskReserveError: the disk is full).
        """
        path = Path(path)
        name = path.name if name is None else name
        mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if message_type is None:
            message_type = "image" if mime.startswith("image/") else "file"
        size = (await trio.to_thread.run_sync(os.stat, path)).st_size
        self.engine.view(group_id)  # ChatError now, not after sealing a large file
        content_key = os.urandom(crypto.CONTENT_KEY_SIZE)
        ref = await self._seal_file(group_id, path, size, content_key, progress)
        now = now_ms()

        def write() -> tuple[Packet, Commit]:
            return self.engine.author_chunked(
                group_id,
                content_key=content_key,
                ref=ref,
                name=name,
                mime=mime,
                message_type=message_type,
                ref_hash=ref_hash,
                now=now,
                chain=True,
            )

        logger.info(
            "sending %s (%d bytes, %d chunks) as %s", name, size, ref.chunks, ref.root.hex()
        )
        return await submit(group_id, write, wait)

    async def _seal_file(
        self,
        group_id: bytes,
        path: Path,
        size: int,
        content_key: bytes,
        progress: Progress | None,
    ) -> ChunkedRef:
        sealer = ArtifactSealer(content_key, size)
        files = self.files
        written: list[bytes] = []
        failed: list[BlobStoreError] = []
        # Sealing is sequential; the writes (each fsynced) overlap, at most WRITERS at once, so
        # memory holds at most that many chunks.
        writers = trio.Semaphore(WRITERS)

        def step(fh: BinaryIO, index: int) -> list[tuple[bytes, bytes]]:
            return sealer.seal(fh.read(min(CHUNK_SIZE, size - index * CHUNK_SIZE)))

        async def write(blob_id: bytes, data: bytes) -> None:
            try:
                await trio.to_thread.run_sync(
                    partial(files.put, group_id, blob_id, data, sync_dir=False, verified=True)
                )
                written.append(blob_id)
            except BlobStoreError as exc:
                failed.append(exc)
            finally:
                writers.release()
            if progress is not None and not failed:
                progress(min(size, len(written) * CHUNK_SIZE), size)

        fh: BinaryIO = await trio.to_thread.run_sync(path.open, "rb")
        try:
            changed = False
            async with trio.open_nursery() as nursery:
                for index in range(sealer.chunks):
                    if failed:
                        break
                    try:
                        blobs = await trio.to_thread.run_sync(step, fh, index)
                    except ProtocolError:  # the sealer's "wrong length"
                        changed = True
                        break
                    for blob_id, data in blobs:
                        await writers.acquire()
                        nursery.start_soon(write, blob_id, data)
            if failed:
                raise failed[0]
            if changed:
                raise ChatError(f"{path} changed while it was read")
            if await trio.to_thread.run_sync(fh.read, 1):
                raise ChatError(f"{path} grew while it was read")
        finally:
            await trio.to_thread.run_sync(fh.close)
        (root, manifest), ref = sealer.finish()
        await trio.to_thread.run_sync(files.put, group_id, root, manifest)
        await trio.to_thread.run_sync(files.sync_dirs, group_id, written)
        await trio.to_thread.run_sync(files.mark_complete, group_id, root)
        if progress is not None:
            progress(size, size)
        return ref

    # -- describing --------------------------------------------------------------------------

    def info(self, packet: Packet) -> ArtifactInfo | None:
        """The chunked artifact of ``packet`` (its name if we can decrypt it), or None."""
        message = packet.message
        ref = message.artifact.chunked
        if ref is None:
            return None
        name: str | None = None
        view = self.engine.find(message.group_id)
        key = None if view is None else view.epoch_keys.get(message.epoch)
        if key is not None:
            try:
                name = decode_file_info(crypto.decrypt_packet(packet, epoch_key=key))
            except ProtocolError:
                name = None
        return ArtifactInfo(
            name=name,
            mime=message.artifact.type,
            size=ref.size,
            chunks=ref.chunks,
            root=ref.root,
            complete=self.files.is_complete(message.group_id, ref.root),
        )

    def holders(self, packet: Packet) -> list[PeerID]:
        """Who may hold ``packet``'s artifact, most likely first: the author, the ratifiers of
        its epoch, then the other members of the current roster."""
        message = packet.message
        out = [message.author]
        view = self.engine.find(message.group_id)
        if view is not None:
            roster = view.state.find_roster(message.epoch)
            if roster is not None:
                out += sorted(roster.ratifiers, key=str)
            out += sorted(view.members(view.state.current_epoch), key=str)
        me = self.engine.peer_id
        return [p for p in dict.fromkeys(out) if p != me]

    # -- fetching ----------------------------------------------------------------------------

    async def fetch(self, group_id: bytes, packet: Packet, first: PeerID | None = None) -> None:
        """Fetch what is missing of ``packet``'s artifact (joining a fetch already running).

        Raises:
            FetchError: no holder had every blob; BlobStoreError: the disk refused.
            ArtifactError: the artifact's manifest or pages do not match the message.
        """
        ref = packet.message.artifact.chunked
        if ref is None:
            return
        while (running := self._running.get(ref.root)) is not None:
            await running.wait()
        if self.files.is_complete(group_id, ref.root):
            return
        done = self._running[ref.root] = trio.Event()
        holders = self.holders(packet)
        if first is not None and first != self.engine.peer_id:
            holders = [first, *[h for h in holders if h != first]]
        total = ref.size + 16 * ref.chunks
        self.fetched[ref.root] = 0

        def count(n: int) -> None:
            self.fetched[ref.root] = min(total, self.fetched[ref.root] + n)

        try:
            await self.blobs.fetch_artifact(group_id, ref, holders, progress=count)
            logger.info("artifact %s is held (%d bytes)", ref.root.hex()[:16], ref.size)
        finally:
            del self._running[ref.root]
            self.fetched.pop(ref.root, None)
            done.set()

    def fetch_soon(self, group_id: bytes, packet: Packet, first: PeerID | None = None) -> None:
        """Start :meth:`fetch` in the service's nursery; failures are logged."""
        self._nursery.start_soon(self._fetch_logged, group_id, packet, first)

    async def _fetch_logged(self, group_id: bytes, packet: Packet, first: PeerID | None) -> None:
        """A background fetch: retried a few times with backoff (holders may be busy or
        reconnecting), then left for the next start or the next read; never raises."""
        ref = packet.message.artifact.chunked
        root = "?" if ref is None else ref.root.hex()[:16]
        for attempt in range(FETCH_ATTEMPTS):
            try:
                async with self._fetch_slots:
                    await self.fetch(group_id, packet, first)
            except DiskReserveError as exc:
                logger.warning("artifact %s not fetched: %s", root, exc)
                return
            except P2PChatError as exc:  # a background fetch never takes the node down
                logger.warning(
                    "artifact %s not fetched yet (attempt %d): %s", root, attempt + 1, exc
                )
            else:
                return
            await trio.sleep(min(FETCH_BACKOFF_MAX, 2.0**attempt))

    def on_publish(self, action: Publish) -> None:
        """Fetch a delivered artifact of someone else at once, when it is small enough."""
        packet = action.packet
        if action.ratified and (packet.pruned or is_prunable_delete(packet)):
            self._nursery.start_soon(
                drop_deleted_files, self.store, self.files, action.group_id, packet
            )
            return  # specs/chat.md §17: a deleted artifact is dropped, never fetched
        ref = packet.message.artifact.chunked
        if ref is None or not action.ratified or packet.message.author == self.engine.peer_id:
            return
        limit = self.config.fetch_max
        if (limit is not None and ref.size > limit) or self._too_old(packet):
            return  # fetched when read
        if ref.root not in self._running and not self.files.is_complete(action.group_id, ref.root):
            self.fetch_soon(action.group_id, packet)

    async def resume(self) -> None:
        """Restart the fetches of ratified artifacts that are not complete (after a restart)."""
        for group_id in self.engine.groups():
            for row in await self.store.others_pending(group_id):  # custody held before
                packet = decode_stored(row)
                ref = None if packet is None else packet.message.artifact.chunked
                if packet is not None and ref is not None:
                    self._ledger[ref.root] = CustodyEntry(
                        group_id,
                        packet.message.author,
                        packet.message_hash,
                        stored_size(ref),
                        trio.current_time(),
                    )
            for row in await self.store.all_ratified(group_id):
                packet = decode_stored(row)
                if packet is None:
                    continue
                self.on_publish(Publish(group_id, packet, ratified=True))

    # -- reading -----------------------------------------------------------------------------

    async def open(self, group_id: bytes, message_hash: bytes) -> AsyncIterator[bytes]:
        """The plaintext of a message's chunked artifact, chunk by chunk, fetching what is
        missing first.

        Raises:
            ChatError: no such message, or it has no chunked artifact.
            ArtifactUnavailableError: no key for it, or it cannot be fetched or decrypted.
        """
        row = await self.store.get_message(group_id, message_hash)
        packet = None if row is None else decode_stored(row)
        if packet is None or packet.message.artifact.chunked is None:
            raise ChatError("no such message with a chunked artifact")
        if packet.pruned:
            raise ArtifactUnavailableError("the message was deleted")
        ref = packet.message.artifact.chunked
        view = self.engine.view(group_id)
        key = view.epoch_keys.get(packet.message.epoch)
        if key is None:
            raise ArtifactUnavailableError("we hold no key for this message's epoch")
        try:
            opener = ArtifactOpener(crypto.unwrap_content_key(packet, epoch_key=key), ref)
            await self.fetch(group_id, packet)
            layout = await self.blobs.layout(group_id, ref, [])
        except (ProtocolError, FetchError, BlobStoreError) as exc:
            raise ArtifactUnavailableError(f"cannot read the artifact: {exc}") from exc
        return self._chunks(group_id, opener, layout)

    async def _chunks(
        self, group_id: bytes, opener: ArtifactOpener, layout: ArtifactLayout
    ) -> AsyncIterator[bytes]:
        files = self.files
        for page in range(layout.ref.pages):
            page_data = await trio.to_thread.run_sync(files.get, group_id, layout.page_ids[page])
            if page_data is None:
                raise ArtifactUnavailableError("a page of the artifact vanished from the disk")
            for i, chunk_id in enumerate(layout.read_page(page, page_data)):
                sealed = await trio.to_thread.run_sync(files.get, group_id, chunk_id)
                if sealed is None:
                    raise ArtifactUnavailableError("a chunk of the artifact vanished from the disk")
                try:
                    yield opener.open(page * HASHES_PER_PAGE + i, sealed)
                except ArtifactError as exc:
                    raise ArtifactUnavailableError(f"the artifact does not decrypt: {exc}") from exc
