"""A ratifier's custody of artifacts, and the sweeps that remove orphaned and old ones
(specs/artifacts.md §4 "Removal", §6): the custody and sweep side of
:class:`~p2pchat.chat.artifacts.Artifacts`.

*Custody.* :meth:`ArtifactCustody.hold_before_vote` starts (or joins) a fetch and refuses
``"fetching artifact"`` until the artifact is complete; what an author makes us hold for
messages not yet certified is counted against its ``custody_quota``.

*Sweeps.* :meth:`ArtifactCustody.sweep` removes custody artifacts whose message was not
certified once no one asked for them for ``orphan_grace`` seconds, and with ``keep_days``
prunes old artifacts of ratified messages in groups where we are not a ratifier.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import attrs
import trio

from ..errors import P2PChatError
from ..identity import PeerID
from .core.artifact import HASH_SIZE, MANIFEST_HEADER, TAG_SIZE, ChunkedRef
from .core.engine import FETCHING, ChatEngine
from .core.packet import Packet, verify_author
from .services.dispatch import Refusal
from .services.runtime import now_ms
from .store import ChatStore, StoredMessage
from .store.chunks import BlobStore

if TYPE_CHECKING:
    from .artifacts import ArtifactConfig

logger = logging.getLogger(__name__)

#: The refusal of a ratifier still fetching the artifact it is asked to vote on (§6), and of
#: one whose fetch ended without every blob (the author backs off as for any refusal).
UNAVAILABLE: Final = "artifact unavailable"
#: Custody fetches one author can have running on a ratifier (specs/artifacts.md §6).
MAX_CUSTODY_PER_AUTHOR: Final = 2
#: Bytes of artifacts one author can have a ratifier hold for messages not yet certified
#: (specs/artifacts.md §6 "Bounds"): four 1 GiB artifacts.
DEFAULT_CUSTODY_QUOTA: Final = 4 * 1024**3
#: ... and at most this many of them (as many as the pending messages of one author, §6).
MAX_CUSTODY_ARTIFACTS: Final = 64
#: The refusal of a ratifier whose custody quota for the author is full (specs/chat.md §6).
OVER_QUOTA: Final = "over quota"


@attrs.define
class CustodyEntry:
    """An artifact a ratifier fetched (or is fetching) for a message not yet certified."""

    group_id: bytes
    author: PeerID
    message_hash: bytes
    size: int
    #: ``trio.current_time()`` of the last ``mrat`` that asked for it.
    asked: float


class ArtifactCustody:
    """Custody and sweeps; mixed into :class:`~p2pchat.chat.artifacts.Artifacts`, which sets
    these attributes and provides :meth:`fetch`."""

    engine: ChatEngine
    store: ChatStore
    files: BlobStore
    config: ArtifactConfig
    _nursery: trio.Nursery
    #: Running fetches, by root (set when each ends).
    _running: dict[bytes, trio.Event]
    #: Custody fetches running for each author, by root.
    _custody: dict[PeerID, set[bytes]]
    #: Artifacts held or fetched for custody of uncertified messages, by root.
    _ledger: dict[bytes, CustodyEntry]
    #: Set when the custody fetch of an artifact (root) ends, held or not.
    _custody_done: dict[bytes, trio.Event]

    if TYPE_CHECKING:

        async def fetch(
            self, group_id: bytes, packet: Packet, first: PeerID | None = None
        ) -> None: ...

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
            entry = self._ledger[ref.root] = CustodyEntry(
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
                packet = decode_stored(row)
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


async def _wait_then_cancel(event: trio.Event, nursery: trio.Nursery) -> None:
    await event.wait()
    nursery.cancel_scope.cancel()


def stored_size(ref: ChunkedRef) -> int:
    """The bytes an artifact's blobs take: sealed chunks, pages and manifest (§3)."""
    return ref.size + (TAG_SIZE + HASH_SIZE) * ref.chunks + MANIFEST_HEADER + HASH_SIZE * ref.pages


def decode_stored(row: StoredMessage) -> Packet | None:
    """The packet of a stored row, or None when it does not decode."""
    try:
        return Packet.decode(row.packet_with_certificate())
    except P2PChatError:
        return None
