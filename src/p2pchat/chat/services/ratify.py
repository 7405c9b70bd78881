"""The ratification service: asks the ratifiers for their votes, in batches (specs/chat.md §21).

Each :class:`AskVote` joins the queue of its (group, ratifier). One task per queue sends what
is queued when the previous request to that ratifier returns, up to 64 messages at a time
(``mratb``; one message goes by ``mrat``, a roster message always alone): no delay is added at
a low rate, and at a high rate each ratifier commits and signs once per batch. The tasks run in
this service's nursery: once a quorum is in, the requests still out finish (their votes are
recorded durably either way). Every answer, vote, refusal or silence, goes back to the engine
as a :class:`VoteAnswered`, per message, in a task of its own: handling the answers may commit
certificates (a durable write), and the next batch to that ratifier does not wait for it.
"""

from __future__ import annotations

import logging

import trio

from ...errors import DecodeError
from ...identity import PeerID
from ..core.engine import ChatError
from ..core.events import AskVote, VoteAnswered
from ..core.packet import Packet, Vote
from .addresses import AddressBook
from .clients import ClientPool, QueryRefusedError
from .dispatch import Refusal
from .ratify_batch import encode_batch, read_results, take_batch
from .runtime import Runtime, now_ms

logger = logging.getLogger(__name__)

Outcome = Vote | str | None


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
        #: Packets waiting for a request to their (group, ratifier), in the order asked.
        self._queues: dict[tuple[bytes, PeerID], list[Packet]] = {}

    def start(self, action: AskVote) -> None:
        key = (action.group_id, action.ratifier)
        queue = self._queues.get(key)
        if queue is not None:  # its task sends it with the next batch
            queue.append(action.packet)
            return
        self._queues[key] = [action.packet]
        self._nursery.start_soon(self._drain, key)

    async def _drain(self, key: tuple[bytes, PeerID]) -> None:
        group_id, ratifier = key
        queue = self._queues[key]
        try:
            while queue:
                batch = take_batch(queue)
                await self._ask(group_id, ratifier, batch)
        finally:
            del self._queues[key]

    async def _ask(self, group_id: bytes, ratifier: PeerID, batch: list[Packet]) -> None:
        """Ask ``ratifier`` for its votes on ``batch``; its answers are handled meanwhile."""
        outcomes: list[Outcome]
        unreachable = False
        if ratifier == self._runtime.peer_id:
            outcomes = await self._ask_ourselves(group_id, batch)
        else:
            try:
                outcomes = await self._query(group_id, ratifier, batch)
            except QueryRefusedError as exc:
                logger.debug("no votes from %s: %s", ratifier, exc)
                outcomes = [exc.reason] * len(batch)
            except ChatError as exc:
                logger.debug("no votes from %s: %s", ratifier, exc)
                unreachable = True
                outcomes = [None] * len(batch)
            except (KeyError, TypeError, DecodeError) as exc:
                logger.debug("no votes from %s: %s", ratifier, exc)
                outcomes = [None] * len(batch)
        self._nursery.start_soon(self._answered, group_id, ratifier, batch, outcomes, unreachable)

    async def _answered(
        self,
        group_id: bytes,
        ratifier: PeerID,
        batch: list[Packet],
        outcomes: list[Outcome],
        unreachable: bool,
    ) -> None:
        """Hand ``ratifier``'s answers on ``batch`` to the engine, in the batch's order."""
        for packet, outcome in zip(batch, outcomes, strict=True):
            vote = outcome if isinstance(outcome, Vote) else None
            reason = outcome if isinstance(outcome, str) else None
            await self._runtime.handle(
                VoteAnswered(group_id, packet.message_hash, ratifier, vote, reason, now_ms())
            )
        view = self._runtime.engine.find(group_id)
        if unreachable and self._addresses is not None and view is not None:
            # It may have moved: the next attempt dials what the other members know now.
            await self._addresses.refresh(view, ratifier)

    async def _query(self, group_id: bytes, ratifier: PeerID, batch: list[Packet]) -> list[Outcome]:
        if len(batch) == 1:  # a batch of one is mrat (§21), its wire form unchanged
            body = {"group_id": group_id, "packet": batch[0].to_cbor()}
            answer = await self._clients.query(ratifier, "mrat", body)
            return [Vote.from_cbor(answer["vote"])]
        try:
            answer = await self._clients.query(ratifier, "mratb", encode_batch(group_id, batch))
        except QueryRefusedError as exc:
            if exc.reason != "unknown code":
                raise
            return await self._one_by_one(group_id, ratifier, batch)  # a node without mratb
        return read_results(answer, len(batch))

    async def _one_by_one(
        self, group_id: bytes, ratifier: PeerID, batch: list[Packet]
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for packet in batch:
            try:
                outcomes += await self._query(group_id, ratifier, [packet])
            except QueryRefusedError as exc:
                outcomes.append(exc.reason)
        return outcomes

    async def _ask_ourselves(self, group_id: bytes, batch: list[Packet]) -> list[Outcome]:
        me = self._runtime.peer_id
        try:
            if len(batch) == 1:
                return [await self._runtime.vote(group_id, batch[0], me)]
            return list(await self._runtime.vote_batch(group_id, batch, me))
        except Refusal as exc:
            logger.info("we refuse our own message: %s", exc.reason)
            return [exc.reason] * len(batch)
