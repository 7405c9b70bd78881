"""The ratification service: asks one ratifier for its vote (``mrat``) per :class:`AskVote`.

Each request runs in this service's nursery: once a quorum is in, the requests still out finish
(their votes are recorded durably either way, and cancelling them would leave the ratifiers
counting queries we no longer do). Every answer, vote, refusal or silence, goes back to the
engine as a :class:`VoteAnswered`.
"""

from __future__ import annotations

import logging

import trio

from ...errors import DecodeError
from ..core.engine import ChatError
from ..core.events import AskVote, VoteAnswered
from ..core.packet import Vote
from .addresses import AddressBook
from .clients import ClientPool, QueryRefusedError
from .dispatch import Refusal
from .runtime import Runtime, now_ms

logger = logging.getLogger(__name__)


class RatifyService:
    def __init__(
        self,
        runtime: Runtime,
        clients: ClientPool,
        nursery: trio.Nursery,
        addresses: AddressBook | None = None,
    ) -> None:
        self._runtime = runtime
        self._clients = clients
        self._nursery = nursery
        self._addresses = addresses

    def start(self, action: AskVote) -> None:
        self._nursery.start_soon(self._ask, action)

    async def _ask(self, action: AskVote) -> None:
        vote: Vote | None = None
        reason: str | None = None
        unreachable = False
        packet = action.packet
        if action.ratifier == self._runtime.peer_id:
            try:
                vote = await self._runtime.vote(action.group_id, packet, action.ratifier)
            except Refusal as exc:
                logger.info("we refuse our own message: %s", exc.reason)
                reason = exc.reason
        else:
            body = {"group_id": action.group_id, "packet": packet.to_cbor()}
            try:
                answer = await self._clients.query(action.ratifier, "mrat", body)
                vote = Vote.from_cbor(answer["vote"])
            except QueryRefusedError as exc:
                logger.debug("no vote from %s: %s", action.ratifier, exc)
                reason = exc.reason
            except ChatError as exc:
                logger.debug("no vote from %s: %s", action.ratifier, exc)
                unreachable = True
            except (KeyError, TypeError, DecodeError) as exc:
                logger.debug("no vote from %s: %s", action.ratifier, exc)
        await self._runtime.handle(
            VoteAnswered(
                action.group_id, packet.message_hash, action.ratifier, vote, reason, now_ms()
            )
        )
        view = self._runtime.engine.find(action.group_id)
        if unreachable and self._addresses is not None and view is not None:
            # It may have moved: the next attempt dials what the other members know now.
            await self._addresses.refresh(view, action.ratifier)
