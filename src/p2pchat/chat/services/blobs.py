"""The blob transfer service: ``/p2pchat/blob/1.0.0`` served and fetched (specs/artifacts.md §5).

Theory of operation
-------------------
*Serving.* :meth:`BlobService.serve` answers one inbound stream: it reads requests while fewer
than :data:`SERVE_WINDOW` are in progress (so a greedy peer's own window stalls), answers each
from the blob files when the peer is a current member of the group and the blob is held there,
and ``"not held"`` otherwise, the same answer for a non-member, an unknown group and a missing
blob. A peer has at most :data:`SERVE_STREAMS` streams served at once; a malformed frame or an
idle stream ends the stream with a logged reason.

*Fetching.* :meth:`BlobService.fetch` gets a list of blobs from several holders at once: a
:class:`~p2pchat.chat.core.blobplan.FetchPlan` decides who is asked for what, one task per
holder (in a nursery the fetch opens) keeps :data:`WINDOW` requests in flight on its stream,
verifies every answer (hash and length) and stores it before its slot is reused. A holder that
stalls for :data:`STALL_TIMEOUT`, serves garbage or breaks the protocol is dropped with a logged
reason; the next candidate takes its place and its blobs go to the others. A write refused by
the disk reserve ends the whole fetch. Memory: at most ``WINDOW`` blobs per holder are in flight.
:meth:`BlobService.fetch_artifact` runs that for the manifest, the pages, then the chunks of each
page in turn, skipping what is already held, and marks the artifact complete.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import trio

from ...errors import P2PChatError
from ...identity import PeerID
from ...net.host import DialError, Host, StreamOpenError
from ..core.artifact import HASHES_PER_PAGE, ArtifactError, ArtifactLayout, ChunkedRef
from ..core.blobplan import FetchPlan
from ..core.blobwire import (
    IDLE_TIMEOUT,
    MAX_FRAME_SIZE,
    MAX_HOLDERS,
    NOT_HELD,
    PROTOCOL_ID,
    SERVE_STREAMS,
    SERVE_WINDOW,
    STALL_TIMEOUT,
    WINDOW,
    BlobRequest,
    BlobResponse,
)
from ..core.wire import NEED_DATA, FrameError, FrameReader
from ..store.chunks import BlobStore, BlobStoreError
from .dispatch import abort_stream

logger = logging.getLogger(__name__)

RECEIVE_SIZE = 256 * 1024

#: Whether a peer may read a group's blobs (a current member of its roster).
MemberCheck = Callable[[bytes, PeerID], bool]
#: Called with the plaintext-side bytes of each chunk stored (progress).
Progress = Callable[[int], None]


class FetchError(P2PChatError):
    """A fetch ended without every blob: no holder had them, or the disk reserve was hit."""


class _HolderGone(Exception):  # noqa: N818 (internal signal)
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _read_frame(stream: trio.abc.ReceiveStream, reader: FrameReader) -> dict[str, Any] | None:
    """The next frame's map, or None at the end of the stream.

    Raises:
        FrameError: malformed or too large.
    """
    while True:
        frame = reader.next_event()
        if frame is not NEED_DATA:
            return frame
        if reader.ended:
            return None
        data = await stream.receive_some(RECEIVE_SIZE)
        if data:
            reader.receive_data(data)
        else:
            reader.receive_eof()


class BlobService:
    """Serve and fetch blobs for the groups ``is_member`` knows."""

    def __init__(
        self,
        host: Host,
        blobs: BlobStore,
        is_member: MemberCheck,
        *,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self.host = host
        self.blobs = blobs
        self._is_member = is_member
        self._stall = stall_timeout
        self._streams: dict[PeerID, int] = {}
        self._ids = itertools.count(1)

    # -- serving ---------------------------------------------------------------------------

    def install(self) -> None:
        self.host.set_stream_handler(PROTOCOL_ID, self.serve)

    def uninstall(self) -> None:
        self.host.remove_stream_handler(PROTOCOL_ID)

    async def serve(self, stream: Any) -> None:
        """Answer the requests of one inbound stream (see the module's theory)."""
        peer: PeerID = stream.remote_peer
        if self._streams.get(peer, 0) >= SERVE_STREAMS:
            logger.warning(
                "refusing a %s stream from %s: %d open", PROTOCOL_ID, peer, SERVE_STREAMS
            )
            await abort_stream(stream)
            return
        self._streams[peer] = self._streams.get(peer, 0) + 1
        try:
            await self._serve(stream, peer)
        finally:
            self._streams[peer] -= 1
            if not self._streams[peer]:
                del self._streams[peer]

    async def _serve(self, stream: Any, peer: PeerID) -> None:
        reader = FrameReader(max_frame_size=MAX_FRAME_SIZE)
        slots = trio.Semaphore(SERVE_WINDOW)
        send_lock = trio.Lock()

        async def answer(request: BlobRequest, scope: trio.CancelScope) -> None:
            try:
                response = await self._answer(peer, request)
                async with send_lock:
                    await stream.send_all(response.encode())
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                logger.debug("%s stream from %s broke: %s", PROTOCOL_ID, peer, exc)
                scope.cancel()  # the peer is gone: stop reading and answering
            finally:
                slots.release()

        reason: str | None = None
        async with trio.open_nursery() as nursery:
            try:
                while True:
                    await slots.acquire()
                    idle = slots.value == SERVE_WINDOW - 1
                    with trio.move_on_after(IDLE_TIMEOUT if idle else float("inf")) as scope:
                        frame = await _read_frame(stream, reader)
                    if scope.cancelled_caught:
                        reason = f"idle for {IDLE_TIMEOUT:g} s"
                        break
                    if frame is None:
                        slots.release()
                        break
                    nursery.start_soon(answer, BlobRequest.from_map(frame), nursery.cancel_scope)
            except FrameError as exc:
                reason = f"{exc.hint} ({exc})"
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                nursery.cancel_scope.cancel()
                return
            if reason is not None:
                nursery.cancel_scope.cancel()
        if reason is not None:
            logger.info("closing %s stream from %s: %s", PROTOCOL_ID, peer, reason)
            await abort_stream(stream)

    async def _answer(self, peer: PeerID, request: BlobRequest) -> BlobResponse:
        if not self._is_member(request.group_id, peer):
            return BlobResponse(request.id, refused=NOT_HELD)
        data = await trio.to_thread.run_sync(self.blobs.get, request.group_id, request.blob)
        if data is None:
            return BlobResponse(request.id, refused=NOT_HELD)
        return BlobResponse(request.id, data=data)

    # -- fetching --------------------------------------------------------------------------

    async def fetch(
        self,
        group_id: bytes,
        wanted: Sequence[tuple[bytes, int]],
        candidates: Sequence[PeerID],
        *,
        progress: Progress | None = None,
    ) -> int:
        """Fetch and store the blobs ``wanted`` (``(id, exact length)``) not yet held, from up
        to :data:`MAX_HOLDERS` of ``candidates`` at once, in their order; return how many were
        fetched (the others were held already).

        Raises:
            FetchError: some blobs could not be had from any candidate.
            DiskReserveError: the disk would fall below its reserve (what was stored stays).
            BlobStoreError: a blob could not be written.
        """
        held = await trio.to_thread.run_sync(
            self.blobs.held, group_id, [blob_id for blob_id, _ in wanted]
        )
        missing = [(blob_id, length) for blob_id, length in wanted if blob_id not in held]
        if not missing:
            return 0
        plan = FetchPlan(missing)
        queue = [p for p in dict.fromkeys(candidates) if p != self.host.peer_id]
        changed = [trio.Event()]
        failure: list[BlobStoreError] = []
        written: list[bytes] = []

        def notify() -> None:
            changed[0].set()
            changed[0] = trio.Event()

        async with trio.open_nursery() as nursery:

            def start_next() -> None:
                while queue and len(plan.holders) < MAX_HOLDERS:
                    peer = queue.pop(0)
                    plan.add_holder(peer)
                    nursery.start_soon(holder, peer)

            async def holder(peer: PeerID) -> None:
                try:
                    await self._run_holder(group_id, plan, peer, changed, notify, progress, written)
                except _HolderGone as gone:
                    logger.info("dropping blob holder %s: %s", peer, gone.reason)
                    successor = queue.pop(0) if queue else None
                    if successor is not None:  # added first: what the dropped one had waits
                        plan.add_holder(successor)
                    plan.drop(peer)
                    if successor is not None:
                        nursery.start_soon(holder, successor)
                    notify()
                except BlobStoreError as exc:
                    failure.append(exc)
                    nursery.cancel_scope.cancel()

            start_next()
        if written:  # the renames, durable before anyone counts on them
            await trio.to_thread.run_sync(self.blobs.sync_dirs, group_id, written)
        if failure:
            logger.warning("fetch of group %s stopped: %s", group_id.hex()[:16], failure[0])
            raise failure[0]
        if not plan.complete:
            if queue:  # candidates not asked yet: another round for what no holder had
                rest = [
                    (blob_id, length) for blob_id, length in missing if blob_id in plan.unobtainable
                ]
                return plan.received + await self.fetch(group_id, rest, queue, progress=progress)
            count = len(plan.unobtainable) or len(missing) - plan.received
            raise FetchError(f"{count} blob(s) could not be fetched from any holder")
        return plan.received

    async def _run_holder(
        self,
        group_id: bytes,
        plan: FetchPlan,
        peer: PeerID,
        changed: list[trio.Event],
        notify: Callable[[], None],
        progress: Progress | None,
        written: list[bytes],
    ) -> None:
        try:
            with trio.fail_after(self._stall):
                stream = await self.host.new_stream(peer, [PROTOCOL_ID])
        except (DialError, StreamOpenError, trio.TooSlowError) as exc:
            raise _HolderGone(f"cannot open a stream: {exc or 'timeout'}") from None
        reader = FrameReader(max_frame_size=MAX_FRAME_SIZE)
        outstanding: dict[int, bytes] = {}
        writing = [0]
        refusals = [0]
        wrote = [trio.Event()]
        failed: list[BlobStoreError] = []
        done = False

        async def store(blob_id: bytes, data: bytes, scope: trio.CancelScope) -> None:
            # Writes run side by side (their fsyncs overlap); each keeps its slot until done.
            try:
                await trio.to_thread.run_sync(
                    partial(self.blobs.put, group_id, blob_id, data, sync_dir=False, verified=True)
                )
                written.append(blob_id)
                plan.got(peer, blob_id)
                if progress is not None:
                    progress(len(data))
                notify()
            except BlobStoreError as exc:
                failed.append(exc)
                scope.cancel()
            finally:
                writing[0] -= 1
                wrote[0].set()
                wrote[0] = trio.Event()

        async def exchange(writes: trio.Nursery) -> bool:
            """Ask and receive until nothing is left for this holder (True), or raise."""
            while True:
                # A holder that keeps saying "not held" (one still fetching the artifact itself)
                # is asked one blob at a time until it serves one again.
                window = 1 if refusals[0] >= WINDOW else WINDOW
                while len(outstanding) + writing[0] < window:
                    blob_id = plan.next_for(peer)
                    if blob_id is None:
                        break
                    rid = next(self._ids) % 2**32
                    outstanding[rid] = blob_id
                    await stream.send_all(BlobRequest(rid, group_id, blob_id).encode())
                if not outstanding:
                    if writing[0]:
                        await wrote[0].wait()
                        continue
                    if plan.finished or peer not in plan.holders:
                        return True
                    await changed[0].wait()
                    continue
                with trio.move_on_after(self._stall) as scope:
                    frame = await _read_frame(stream, reader)
                if scope.cancelled_caught:
                    raise _HolderGone(f"no answer for {self._stall:g} s")
                if frame is None:
                    raise _HolderGone("ended the stream with requests in flight")
                response = BlobResponse.from_map(frame)
                blob_id = outstanding.pop(response.id, b"")
                if not blob_id:
                    raise _HolderGone(f"answered unknown id {response.id}")
                if response.data is None:
                    refusals[0] += 1
                    plan.refused(peer, blob_id)
                    notify()
                    continue
                plan.check(blob_id, response.data)
                refusals[0] = 0
                writing[0] += 1
                writes.start_soon(store, blob_id, response.data, writes.cancel_scope)

        gone: _HolderGone | None = None
        try:
            async with trio.open_nursery() as writes:
                try:
                    done = await exchange(writes)
                except _HolderGone as exc:
                    gone = exc
                except ArtifactError as exc:
                    gone = _HolderGone(f"served garbage: {exc}")
                except FrameError as exc:
                    gone = _HolderGone(f"broke the protocol: {exc.hint}")
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    gone = _HolderGone(f"stream broke: {exc}")
                if gone is not None:
                    writes.cancel_scope.cancel()
            if failed:
                raise failed[0]
            if gone is not None:
                raise gone
        finally:
            with trio.CancelScope(shield=True):
                if done:
                    await stream.aclose()
                else:
                    await abort_stream(stream)

    async def fetch_artifact(
        self,
        group_id: bytes,
        ref: ChunkedRef,
        candidates: Sequence[PeerID],
        *,
        progress: Progress | None = None,
    ) -> None:
        """Fetch what is missing of an artifact: manifest, pages, then chunks page by page, each
        verified as it arrives; then mark it complete (specs/artifacts.md §3, §4).

        Raises:
            FetchError, DiskReserveError, BlobStoreError: as :meth:`fetch`.
            ArtifactError: a stored manifest or page does not match the message.
        """
        if await trio.to_thread.run_sync(self.blobs.is_complete, group_id, ref.root):
            return
        layout = await self.layout(group_id, ref, candidates)
        fetched = 0
        for page in range(ref.pages):
            page_id = layout.page_ids[page]
            await self.fetch(group_id, [(page_id, layout.page_length(page))], candidates)
            chunk_ids = layout.read_page(page, await self._get(group_id, page_id))
            first = page * HASHES_PER_PAGE
            wanted = [(cid, layout.chunk_length(first + i)) for i, cid in enumerate(chunk_ids)]
            fetched += await self.fetch(group_id, wanted, candidates, progress=progress)
        await trio.to_thread.run_sync(self.blobs.mark_complete, group_id, ref.root)
        logger.info(
            "artifact %s complete: %d of its %d chunks fetched now, %d held already",
            ref.root.hex()[:16],
            fetched,
            ref.chunks,
            ref.chunks - fetched,
        )

    async def layout(
        self, group_id: bytes, ref: ChunkedRef, candidates: Sequence[PeerID]
    ) -> ArtifactLayout:
        """The verified manifest of ``ref``, fetched if needed.

        Raises:
            FetchError, DiskReserveError, BlobStoreError: as :meth:`fetch`.
            ArtifactError: the manifest does not match the message.
        """
        length = 12 + ref.pages * 32
        await self.fetch(group_id, [(ref.root, length)], candidates)
        return ArtifactLayout.from_manifest(ref, await self._get(group_id, ref.root))

    async def _get(self, group_id: bytes, blob_id: bytes) -> bytes:
        data = await trio.to_thread.run_sync(self.blobs.get, group_id, blob_id)
        if data is None:
            raise FetchError(f"blob {blob_id.hex()[:16]} vanished from the disk")
        return data
