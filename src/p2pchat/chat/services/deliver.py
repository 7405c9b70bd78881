"""The delivery service: ``smsg`` of a certified message to each member, with retries.

A member that cannot be reached after :data:`DELIVERY_ATTEMPTS` (backing off as the outbox
does) catches up later by anti-entropy; a refusal that may pass later ("too many queries",
"missing parents", "internal error") is retried, any other is final.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from ...identity import PeerID
from ..core.engine import ChatError
from ..core.events import Deliver
from ..core.outbox import backoff
from .clients import ClientPool, QueryRefusedError

logger = logging.getLogger(__name__)

DELIVERY_ATTEMPTS: Final = 4
#: Negative answers to ``smsg`` that may succeed when asked again later.
RETRYABLE_REASONS: Final = frozenset({"too many queries", "missing parents", "internal error"})


class DeliverService:
    def __init__(
        self, clients: ClientPool, nursery: trio.Nursery, *, retry_initial: float, retry_max: float
    ) -> None:
        self._clients = clients
        self._nursery = nursery
        self._initial_ms = max(1, int(retry_initial * 1000))
        self._max_ms = max(self._initial_ms, int(retry_max * 1000))

    def start(self, action: Deliver) -> None:
        body: dict[str, object] = {"group_id": action.group_id, "packet": action.packet.to_cbor()}
        for peer in action.peers:
            self._nursery.start_soon(self._one, peer, body)

    async def _one(self, peer: PeerID, body: dict[str, object]) -> None:
        failure: ChatError | None = None
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                await self._clients.query(peer, "smsg", dict(body))
            except QueryRefusedError as exc:
                if exc.reason not in RETRYABLE_REASONS:
                    logger.info("smsg to %s refused: %s", peer, exc.reason)
                    return
                failure = exc
            except ChatError as exc:
                failure = exc
            else:
                return
            if attempt < DELIVERY_ATTEMPTS:
                await trio.sleep(backoff(attempt, self._initial_ms, self._max_ms) / 1000)
        logger.info("smsg to %s failed (%s); it will catch up by sync", peer, failure)
