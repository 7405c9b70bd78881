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
from .core import crypto
from .core.artifact import (
    CHUNK_SIZE,
    HASH_SIZE,
    HASHES_PER_PAGE,
    MANIFEST_HEADER,
    TAG_SIZE,
    ArtifactError,
    ArtifactLayout,
    ArtifactOpener,
    ArtifactSealer,
    ChunkedRef,
    decode_file_info,
)
from .core.blobwire import STALL_TIMEOUT
from .core.engine import FETCHING, ChatEngine, ChatError
from .core.events import Commit, Publish
from .core.packet import Packet, verify_author
from .core.prune import is_prunable_delete
from .deleted import drop_deleted_files
from .services.blobs import BlobService, FetchError
from .services.dispatch import Refusal
from .services.runtime import now_ms
from .store import ChatStore, StoredMessage
from .store.chunks import DEFAULT_DISK_RESERVE, BlobStore, BlobStoreError, DiskReserveError

logger = logging.getLogger(__name__)

#: The refusal of a ratifier still fetching the artifact it is asked to vote on (§6), and of
#: one whose fetch ended without every blob (the author backs off as for any refusal).
UNAVAILABLE: Final = "artifact unavailable"
#: Chunk writes of a file being sent that run at once (their fsyncs overlap).
WRITERS: Final = 8
#: Artifact fetches that run at once (the others wait their turn), and custody fetches one
#: author can have running on a ratifier (specs/artifacts.md §6).
MAX_FETCHES: Final = 4
MAX_CUSTODY_PER_AUTHOR: Final = 2
#: Bytes of artifacts one author can have a ratifier hold for messages not yet certified
#: (specs/artifacts.md §6 "Bounds"): four 1 GiB artifacts.
DEFAULT_CUSTODY_QUOTA: Final = 4 * 1024**3
#: ... and at most this many of them (as many as the pending messages of one author, §6).
MAX_CUSTODY_ARTIFACTS: Final = 64
#: The refusal of a ratifier whose custody quota for the author is full (specs/chat.md §6).
OVER_QUOTA: Final = "over quota"
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


@attrs.define
class _Custody:
    """An artifact a ratifier fetched (or is fetching) for a message not yet certified."""

    group_id: bytes
    author: PeerID
    message_hash: bytes
    size: int
    #: ``trio.current_time()`` of the last ``mrat`` that asked for it.
    asked: float


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


class Artifacts:
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
        self._ledger: dict[bytes, _Custody] = {}
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

    async def hold_before_vote(self, group_id: bytes, packet: Packet, author: PeerID) -> None:
        """The ratifier's custody hook (§6): return once the artifact is held here.

        Raises:
            Refusal: ``"fetching artifact"`` while the fetch goes on in the background.
        """
        ref = packet.message.artifact.chunked
        if ref is None:
            return
        entry = self._ledger.get(ref.root)
        if entry is not None:
            entry.asked = trio.current_time()  # the author still wants it: not an orphan yet
        if self.files.is_complete(group_id, ref.root):
            return
        if not (packet.check_hashes() and verify_author(packet)):
            return  # the vote path refuses it with its own reason; fetch nothing for it
        if entry is None:
            self._check_quota(group_id, author, ref)
        if ref.root not in self._running and ref.root not in self._custody_done:
            mine = self._custody.setdefault(author, set())
            if len(mine) >= MAX_CUSTODY_PER_AUTHOR and ref.root not in mine:
                # Its earlier artifacts first: hold the request until one of them is done (the
                # author asks again soon after "fetching artifact").
                with trio.move_on_after(self.config.vote_wait):
                    async with trio.open_nursery() as waiters:
                        for root in mine:
                            waiters.start_soon(_wait_then_cancel, self._custody_done[root], waiters)
                raise Refusal(FETCHING)
            mine.add(ref.root)
            # Registered now, not when the task first runs, so that this request waits for it.
            self._custody_done[ref.root] = trio.Event()
            self._nursery.start_soon(self._custody_fetch, group_id, packet, author)
        if entry is None:
            entry = self._ledger[ref.root] = _Custody(
                group_id, author, packet.message_hash, stored_size(ref), trio.current_time()
            )
        entry.asked = trio.current_time()
        waiting = self._custody_done.get(ref.root)
        if waiting is None:
            waiting = self._running.get(ref.root)
        if waiting is not None:
            with trio.move_on_after(self.config.vote_wait):
                await waiting.wait()
        if not self.files.is_complete(group_id, ref.root):
            running = ref.root in self._custody_done or ref.root in self._running
            raise Refusal(FETCHING if running else UNAVAILABLE)

    async def _custody_fetch(self, group_id: bytes, packet: Packet, author: PeerID) -> None:
        """A ratifier's fetch before its vote; counted against the author while it runs (it
        does not wait for a fetch slot: the author is waiting for the vote)."""
        ref = packet.message.artifact.chunked
        assert ref is not None
        try:
            await self.fetch(group_id, packet, author)
        except P2PChatError as exc:
            logger.warning("artifact %s not held yet: %s", ref.root.hex()[:16], exc)
        finally:
            mine = self._custody.get(author, set())
            mine.discard(ref.root)
            if not mine:
                self._custody.pop(author, None)
            self._custody_done.pop(ref.root).set()

    def custody_use(self, group_id: bytes, author: PeerID) -> tuple[int, int]:
        """How many artifacts, and how many stored bytes, are held or being fetched here for
        ``author``'s messages of ``group_id`` that are not certified yet (its quota's use)."""
        self._forget_certified()
        mine = [
            e.size for e in self._ledger.values() if (e.group_id, e.author) == (group_id, author)
        ]
        return len(mine), sum(mine)

    def _check_quota(self, group_id: bytes, author: PeerID, ref: ChunkedRef) -> None:
        count, used = self.custody_use(group_id, author)
        quota = self.config.custody_quota
        if count < MAX_CUSTODY_ARTIFACTS and used + stored_size(ref) <= quota:
            return
        logger.info(
            "custody of %s refused: %s holds %d artifacts, %d bytes (at most %d, %d bytes)",
            ref.root.hex()[:16],
            author,
            count,
            used,
            MAX_CUSTODY_ARTIFACTS,
            quota,
        )
        raise Refusal(OVER_QUOTA)

    def _forget_certified(self) -> None:
        """Drop from the ledger the artifacts whose message is now certified: held for good."""
        for root, entry in list(self._ledger.items()):
            view = self.engine.find(entry.group_id)
            if view is not None and view.has(entry.message_hash):
                del self._ledger[root]

    async def sweep(self) -> int:
        """Remove orphaned custody artifacts and prune old ones (§4 "Removal"); return how
        many artifacts were removed.

        Raises:
            BlobStoreError: a file cannot be removed.
        """
        removed = 0
        self._forget_certified()
        now = trio.current_time()
        for root, entry in list(self._ledger.items()):
            view = self.engine.find(entry.group_id)
            pending = view is not None and entry.message_hash in view.pending
            busy = root in self._running or root in self._custody.get(entry.author, ())
            if pending or busy or now - entry.asked < self.config.orphan_grace:
                continue
            del self._ledger[root]
            await trio.to_thread.run_sync(self.files.remove_artifact, entry.group_id, root)
            logger.info("removed artifact %s: its message was not certified", root.hex()[:16])
            removed += 1
        if self.config.keep_days is not None:
            removed += await self._prune(now_ms() - int(self.config.keep_days * 86_400_000))
        return removed

    async def _prune(self, before: int) -> int:
        removed = 0
        for group_id in self.engine.groups():
            if self._custodian(group_id, None):
                continue  # a ratifier keeps what it holds in custody
            for row in await self.store.all_ratified(group_id):
                packet = _decode(row)
                if packet is None or packet.message.time_stamp >= before:
                    continue
                ref = packet.message.artifact.chunked
                if ref is None or ref.root in self._running or ref.root in self._ledger:
                    continue
                if self._custodian(group_id, packet.message.epoch):
                    continue  # we voted for it then: custody
                if await trio.to_thread.run_sync(self.files.remove_artifact, group_id, ref.root):
                    logger.info("pruned artifact %s (older than keep_days)", ref.root.hex()[:16])
                    removed += 1
        return removed

    async def run_sweeps(self) -> None:
        """Sweep every ``sweep_interval`` seconds until cancelled; failures are logged."""
        while True:
            await trio.sleep(self.config.sweep_interval)
            try:
                await self.sweep()
            except P2PChatError as exc:
                logger.warning("artifact sweep failed: %s", exc)

    def _custodian(self, group_id: bytes, epoch: int | None) -> bool:
        """Whether we are a ratifier of the group's current roster (or of roster ``epoch``):
        then we keep its artifacts whatever their age."""
        view = self.engine.find(group_id)
        if view is None:
            return False
        me = self.engine.peer_id
        if me in view.state.current_roster.ratifiers:
            return True
        roster = None if epoch is None else view.state.find_roster(epoch)
        return roster is not None and me in roster.ratifiers

    def _too_old(self, packet: Packet) -> bool:
        """An artifact ``keep_days`` would prune (so it is not fetched on delivery)."""
        keep = self.config.keep_days
        message = packet.message
        return (
            keep is not None
            and message.time_stamp < now_ms() - keep * 86_400_000
            and not self._custodian(message.group_id, message.epoch)
        )

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
                packet = _decode(row)
                ref = None if packet is None else packet.message.artifact.chunked
                if packet is not None and ref is not None:
                    self._ledger[ref.root] = _Custody(
                        group_id,
                        packet.message.author,
                        packet.message_hash,
                        stored_size(ref),
                        trio.current_time(),
                    )
            for row in await self.store.all_ratified(group_id):
                packet = _decode(row)
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
        packet = None if row is None else _decode(row)
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


async def _wait_then_cancel(event: trio.Event, nursery: trio.Nursery) -> None:
    await event.wait()
    nursery.cancel_scope.cancel()


def stored_size(ref: ChunkedRef) -> int:
    """The bytes an artifact's blobs take: sealed chunks, pages and manifest (§3)."""
    return ref.size + (TAG_SIZE + HASH_SIZE) * ref.chunks + MANIFEST_HEADER + HASH_SIZE * ref.pages


def _decode(row: StoredMessage) -> Packet | None:
    try:
        return Packet.decode(row.packet_with_certificate())
    except P2PChatError:
        return None
