"""Dropping the files of a deleted message's chunked artifact (specs/chat.md §17 "Pruned
packets", specs/artifacts.md §4 "Removal").

The store drops a deleted message's content key in the transaction that stores the delete
(:class:`~p2pchat.chat.core.txn.PrunePacket`); its blob files are outside the store and go
after that commit, here. A crash in between leaves files that nothing can decrypt any more;
they go when the artifact service looks at the history again at start
(:meth:`~p2pchat.chat.artifacts.Artifacts.resume` publishes every held message, and a pruned
one comes here).
"""

from __future__ import annotations

import logging

import trio

from ..errors import P2PChatError
from .core.packet import Packet
from .core.prune import is_prunable_delete
from .store import ChatStore
from .store.chunks import BlobStore

logger = logging.getLogger(__name__)


async def drop_deleted_files(
    store: ChatStore, files: BlobStore, group_id: bytes, packet: Packet
) -> None:
    """Remove the blob files of the chunked artifact that ``packet`` names: ``packet`` is a
    pruned message, or a certified delete (its target, once the store holds it pruned).
    Failures are logged: the files go at the next start."""
    target: Packet | None = packet
    if is_prunable_delete(packet) and packet.message.ref_hash is not None:
        try:
            row = await store.get_message(group_id, packet.message.ref_hash)
            target = None if row is None else Packet.decode(row.packet)
        except P2PChatError as exc:
            logger.warning("cannot read a deleted message: %s", exc)
            return
    if target is None or not target.pruned:
        return
    ref = target.message.artifact.chunked
    if ref is None:
        return
    try:
        removed = await trio.to_thread.run_sync(files.remove_artifact, group_id, ref.root)
    except P2PChatError as exc:
        logger.warning("cannot remove a deleted artifact's files: %s", exc)
        return
    if removed:
        logger.info("removed %d files of deleted artifact %s", removed, ref.root.hex()[:16])
