"""The client pool: one outbound chat stream per peer, opened on demand (specs/chat.md §2).

Each stream lives in a task of the pool's own nursery (:func:`open_client_pool`), so it outlives
the query that opened it and serves the queries after it; it ends when its peer's stream fails
or the pool closes. Concurrent first queries to one peer share one dial.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ...aio import open_service_nursery
from ...identity import PeerID
from ...multiaddr import Multiaddr
from ...net.host import DialError, Host, StreamOpenError
from ..core.engine import ChatError
from .chat_client import ChatClient, open_chat
from .dispatch import ChatStreamError

logger = logging.getLogger(__name__)


class QueryRefusedError(ChatError):
    """A peer answered a query negatively; ``reason`` is its reason (specs/chat.md §2)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ClientPool:
    """Made by :func:`open_client_pool`."""

    def __init__(self, host: Host, nursery: trio.Nursery, query_timeout: float) -> None:
        self.host = host
        self.query_timeout = query_timeout
        self._nursery = nursery
        self._clients: dict[PeerID, ChatClient] = {}
        self._done: dict[PeerID, trio.Event] = {}
        self._connecting: dict[PeerID, trio.Event] = {}

    async def query(
        self, peer: PeerID | Multiaddr, code: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Query ``peer``; return the affirmative body.

        Raises:
            QueryRefusedError: a negative answer (with its reason).
            ChatError: the peer cannot be reached or did not answer in time.
        """
        target = _target(peer)
        # A stream kept from earlier queries may have been closed by the peer meanwhile (an
        # idle chat stream is closed after a while, §1): such a failure is tried once more on a
        # new stream. Every chat query is idempotent, so asking twice is safe.
        for retry in (True, False):
            reused = target in self._clients
            try:
                client = await self._client(peer, target)
                response = await client.query(code, body, timeout=self.query_timeout)
                break
            except trio.TooSlowError:
                raise ChatError(f"{target} did not answer {code!r} in time") from None
            except ChatStreamError as exc:
                done = self._done.get(target)
                if done is not None:
                    done.set()
                if not (retry and reused):
                    raise ChatError(f"{code!r} to {target}: {exc}") from exc
                logger.debug("%r to %s: %s; once more on a new stream", code, target, exc)
                self._clients.pop(target, None)
        if not response.ok:
            reason = response.reason or "?"
            raise QueryRefusedError(f"{target} refused {code!r}: {reason}", reason)
        return response.body

    def close(self) -> None:
        for done in list(self._done.values()):
            done.set()

    async def _client(self, peer: PeerID | Multiaddr, target: PeerID) -> ChatClient:
        while True:
            client = self._clients.get(target)
            if client is not None and client.statistics().failure is None:
                return client
            pending = self._connecting.get(target)
            if pending is None:
                break
            await pending.wait()
        self._connecting[target] = started = trio.Event()
        try:
            fresh: ChatClient = await self._nursery.start(self._run_client, peer, target)
            return fresh
        finally:
            del self._connecting[target]
            started.set()

    async def _run_client(
        self,
        peer: PeerID | Multiaddr,
        target: PeerID,
        *,
        task_status: trio.TaskStatus[ChatClient],
    ) -> None:
        done = trio.Event()
        started = False
        try:
            async with open_chat(self.host, peer) as client:
                self._clients[target] = client
                self._done[target] = done
                task_status.started(client)
                started = True
                await done.wait()
        except (DialError, StreamOpenError, ChatStreamError) as exc:
            if not started:
                raise ChatError(f"cannot reach {target}: {exc}") from exc
            # after start, a failing stream is noticed by the queries that use it
        finally:
            if self._done.get(target) is done:
                del self._done[target]
                self._clients.pop(target, None)


def _target(peer: PeerID | Multiaddr) -> PeerID:
    target = peer.peer_id if isinstance(peer, Multiaddr) else peer
    if target is None:
        raise ChatError(f"the address must end in /p2p/<peer id>: {peer}")
    return target


@asynccontextmanager
async def open_client_pool(host: Host, *, query_timeout: float) -> AsyncIterator[ClientPool]:
    """A pool of outbound chat streams for the block; they close with it."""
    async with open_service_nursery() as nursery:
        pool = ClientPool(host, nursery, query_timeout)
        try:
            yield pool
        finally:
            pool.close()
