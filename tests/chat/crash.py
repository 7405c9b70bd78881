"""A store that makes its node die at its k-th commit, before or after the commit is durable.

After the crash point every store call raises :class:`SimulatedCrashError`, as if the process were
gone: nothing more is read or written, and the node's tasks fail until its owner stops it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from p2pchat.chat.core.txn import CommitResult, Transaction
from p2pchat.chat.store import ChatStore


class SimulatedCrashError(Exception):
    """The node died here."""


class CrashingStore:
    """Wraps a :class:`ChatStore`; counts commits (``commit`` and ``put_hpke_key``)."""

    def __init__(self, store: ChatStore, crash_at: int | None, *, after: bool) -> None:
        self._store = store
        self.crash_at = crash_at
        self.after = after
        self.commits = 0
        self.dead = False
        self.crashed = trio.Event()

    async def _counted(self, write: Callable[[], Awaitable[Any]]) -> Any:
        if self.dead:
            raise SimulatedCrashError("the node is dead")
        self.commits += 1
        if self.commits != self.crash_at:
            return await write()
        self.dead = True
        self.crashed.set()
        if self.after:
            await write()
        raise SimulatedCrashError(
            f"died {'after' if self.after else 'before'} commit {self.commits}"
        )

    async def commit(self, txn: Transaction) -> CommitResult:
        result: CommitResult = await self._counted(lambda: self._store.commit(txn))
        return result

    async def put_hpke_key(self, kem: str, private: bytes, public: bytes) -> bool:
        done: bool = await self._counted(lambda: self._store.put_hpke_key(kem, private, public))
        return done

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise SimulatedCrashError("the node is dead")
            return await attr(*args, **kwargs)

        return call
