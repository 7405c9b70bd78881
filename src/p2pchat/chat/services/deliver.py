"""The delivery service: ``smsg`` of a certified message to the members, with retries.

Delivery is relayed through members (specs/chat.md §13): a node sends at most
:data:`RELAY_FANOUT` ``smsg``, each carrying in ``relay`` the rest of its recipient's subtree,
which the recipient serves the same way once it holds the message (:func:`relay_plan` splits a
list). So the author's cost does not grow with the group, and every member still checks the
certificate. What goes to one member travels in order, a batch at a time (``smsgb``,
specs/chat.md §21: what is queued when the previous batch to it returns). A recipient that
cannot be reached after :data:`DELIVERY_ATTEMPTS` (backing off as
the outbox does), or refuses for good, has its subtree served by the sender instead; a member
missed anyway catches up later by anti-entropy. A refusal that may pass later ("too many
queries", "missing parents", "internal error") is retried, any other is final.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Final

import trio

from ...errors import DecodeError
from ...identity import PeerID
from ..core.engine import ChatError
from ..core.events import Deliver
from ..core.outbox import backoff
from ..core.packet import Packet
from .clients import ClientPool, QueryRefusedError
from .deliver_batch import Outgoing, read_delivery_results, take_delivery

logger = logging.getLogger(__name__)

DELIVERY_ATTEMPTS: Final = 4
#: ``smsg`` a node sends for one delivery, each to the head of a subtree (specs/chat.md §13).
RELAY_FANOUT: Final = 4
#: Negative answers to ``smsg`` that may succeed when asked again later.
RETRYABLE_REASONS: Final = frozenset({"too many queries", "missing parents", "internal error"})


def relay_plan(
    peers: Sequence[PeerID],
    fanout: int = RELAY_FANOUT,
    *,
    prefer: Collection[PeerID] = (),
) -> list[tuple[PeerID, tuple[PeerID, ...]]]:
    """Who gets an ``smsg`` and which subtree it relays (specs/chat.md §13): every peer itself
    when there are at most ``fanout``; otherwise consecutive runs of ``ceil(n / fanout)``, the
    first of each the recipient and the rest its ``relay`` list. Peers in ``prefer`` (those we
    are connected to) take the recipients' places first, in order, so that a subtree does not
    wait on an unreachable head; the others keep their order."""
    if len(peers) <= fanout:
        return [(peer, ()) for peer in peers]
    share = -(-len(peers) // fanout)
    if prefer:
        heads = range(0, len(peers), share)
        chosen = [p for p in peers if p in prefer][: len(heads)]
        chosen += [p for p in peers if p not in chosen][: len(heads) - len(chosen)]
        others = iter([p for p in peers if p not in chosen])
        ordered = list(peers)
        for i in range(len(peers)):
            ordered[i] = chosen[i // share] if i % share == 0 else next(others)
        peers = ordered
    return [(peers[i], tuple(peers[i + 1 : i + share])) for i in range(0, len(peers), share)]


class DeliverService:
    def __init__(
        self,
        clients: ClientPool,
        nursery: trio.Nursery,
        *,
        retry_initial: float,
        retry_max: float,
        fanout: int | None = None,
        connected: Callable[[], Collection[PeerID]] | None = None,
    ) -> None:
        """``connected`` names the peers we are connected to: they head subtrees first."""
        fanout = RELAY_FANOUT if fanout is None else fanout
        if fanout < 2:
            raise ValueError("the relay fan-out is at least 2")
        self._clients = clients
        self._nursery = nursery
        self._initial_ms = max(1, int(retry_initial * 1000))
        self._max_ms = max(self._initial_ms, int(retry_max * 1000))
        self._fanout = fanout
        self._connected = connected
        #: What waits to be sent to each (group, member), in order.
        self._queues: dict[tuple[bytes, PeerID], list[Outgoing]] = {}

    def start(self, action: Deliver) -> None:
        """Deliver ``action.packet`` to ``action.peers``, relayed (our own message, or a
        ``relay`` list we were given)."""
        self._spread(action.group_id, [action.packet], action.peers)

    def _spread(self, group_id: bytes, packets: Sequence[Packet], peers: Sequence[PeerID]) -> None:
        connected = set(self._connected()) if self._connected is not None else set()
        for head, rest in relay_plan(peers, self._fanout, prefer=connected):
            key = (group_id, head)
            queue = self._queues.get(key)
            items = [Outgoing(packet, rest) for packet in packets]
            if queue is not None:  # its task sends them with the next batch
                queue.extend(items)
                continue
            self._queues[key] = items
            self._nursery.start_soon(self._drain, key)

    async def _drain(self, key: tuple[bytes, PeerID]) -> None:
        """Send ``key``'s queue in order, a batch at a time (specs/chat.md §21): what is
        queued when the previous batch to that member returns."""
        group_id, peer = key
        queue = self._queues[key]
        try:
            while queue:
                batch = take_delivery(queue)
                await self._send(peer, group_id, [i.packet for i in batch], batch[0].relay)
        finally:
            del self._queues[key]

    async def _send(
        self, peer: PeerID, group_id: bytes, packets: list[Packet], rest: tuple[PeerID, ...]
    ) -> None:
        refused = await self._query(peer, group_id, packets, rest)
        if not refused or not rest:
            return
        # Their subtree is ours to serve: one level more, not a member less.
        logger.info("smsg to %s failed; relaying to its %d peers ourselves", peer, len(rest))
        self._spread(group_id, [p for p, _ in refused], rest)
        again = [p for p, reason in refused if reason == "malformed"]
        if again:  # e.g. it does not know a newer roster yet: without relay
            await self._query(peer, group_id, again, ())

    async def _query(
        self, peer: PeerID, group_id: bytes, packets: list[Packet], rest: tuple[PeerID, ...]
    ) -> list[tuple[Packet, str]]:
        """``smsg`` (one packet) or ``smsgb`` with retries of what may pass later: the packets
        ``peer`` did not take, each with its final refusal or ``"unreachable"``."""
        pending = list(packets)
        final: list[tuple[Packet, str]] = []
        failure: Exception | None = None
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                reasons = await self._ask(peer, group_id, pending, rest)
            except QueryRefusedError as exc:
                if exc.reason not in RETRYABLE_REASONS:
                    logger.info("smsg to %s refused: %s", peer, exc.reason)
                    return final + [(p, exc.reason) for p in pending]
                failure = exc
            except (ChatError, DecodeError) as exc:
                failure = exc
            else:
                retry = []
                for packet, reason in zip(pending, reasons, strict=True):
                    if reason is None:
                        continue
                    if reason in RETRYABLE_REASONS:
                        retry.append(packet)
                    else:
                        logger.info("smsg to %s refused: %s", peer, reason)
                        final.append((packet, reason))
                pending = retry
                if not pending:
                    return final
            if attempt < DELIVERY_ATTEMPTS:
                await trio.sleep(backoff(attempt, self._initial_ms, self._max_ms) / 1000)
        logger.info("smsg to %s failed (%s); it will catch up by sync", peer, failure)
        return final + [(p, "unreachable") for p in pending]

    async def _ask(
        self, peer: PeerID, group_id: bytes, packets: list[Packet], rest: tuple[PeerID, ...]
    ) -> list[str | None]:
        body: dict[str, object] = {"group_id": group_id}
        if rest:
            body["relay"] = [member.to_bytes() for member in rest]
        if len(packets) == 1:  # one packet goes by smsg, its wire form unchanged
            body["packet"] = packets[0].to_cbor()
            await self._clients.query(peer, "smsg", body)
            return [None]
        body["packets"] = [p.to_cbor() for p in packets]
        try:
            answer = await self._clients.query(peer, "smsgb", body)
        except QueryRefusedError as exc:
            if exc.reason != "unknown code":
                raise
            return await self._one_by_one(peer, group_id, packets, rest)  # a node without smsgb
        return read_delivery_results(answer, len(packets))

    async def _one_by_one(
        self, peer: PeerID, group_id: bytes, packets: list[Packet], rest: tuple[PeerID, ...]
    ) -> list[str | None]:
        reasons: list[str | None] = []
        for packet in packets:
            try:
                reasons += await self._ask(peer, group_id, [packet], rest)
            except QueryRefusedError as exc:
                reasons.append(exc.reason)
        return reasons
