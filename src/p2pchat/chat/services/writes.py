"""Our messages' commits, several at once (specs/chat.md §21 "Writing in groups").

An author writes its messages of a group one at a time (each names the one before it, §11),
but need not wait for one's commit before writing the next: the engine remembers the message
written last. The commits of the messages written meanwhile are made together, in the order
written, in one durable transaction, and the engine applies them in that order. So a burst of
sends costs one commit, not one per message.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from ..core.events import Commit
from .runtime import Runtime


@attrs.define(eq=False)
class _Entry:
    commit: Commit
    done: trio.Event = attrs.Factory(trio.Event)
    error: Exception | None = None


class GroupCommits:
    """Commits the writes of each group in order, gathering those that wait (one leader per
    group commits for all; its commits are shielded from cancellation, so that nobody waits
    for a commit that never comes)."""

    def __init__(self, runtime: Runtime, forget: Callable[[bytes], None]) -> None:
        self._runtime = runtime
        #: Tells the engine that what was written last was not committed.
        self._forget = forget
        self._queues: dict[bytes, list[_Entry]] = {}

    async def commit(self, group_id: bytes, commit: Commit) -> None:
        """Commit ``commit`` after every write of ``group_id`` made before it.

        Raises:
            Exception: the commit failed (e.g. a store error), as ``runtime.commit`` raises it.
        """
        entry = _Entry(commit)
        queue = self._queues.get(group_id)
        if queue is not None:  # a leader commits it with the next group
            queue.append(entry)
            await entry.done.wait()
        else:
            self._queues[group_id] = queue = [entry]
            with trio.CancelScope(shield=True):
                try:
                    while queue:
                        group = queue[:]
                        del queue[: len(group)]
                        await self._commit_group(group_id, group)
                finally:
                    del self._queues[group_id]
        if entry.error is not None:
            raise entry.error

    async def _commit_group(self, group_id: bytes, group: list[_Entry]) -> None:
        try:
            if len(group) == 1:
                await self._runtime.commit(group[0].commit)
            else:
                await self._runtime.commit_all([e.commit for e in group])
        except Exception as exc:
            self._forget(group_id)
            for entry in group:
                entry.error = exc
        for entry in group:
            entry.done.set()
