"""The runtime: the Trio driver of the group engine (chat/core/engine.py).

It feeds the engine events with the wall clock's time, commits what the engine asks to commit
(and only then tells the engine, which changes its memory), and hands every other action to the
service that carries it out, by one table: votes to the ratification service, ``smsg`` to the
delivery service, heads, history, parents and rosters to the sync service, publications and
ratifications to the node. Each service runs its tasks in its own nursery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import trio

from ...identity import PeerID
from ..core.batch import BatchDecision
from ..core.engine import ChatEngine
from ..core.events import (
    Abandoned,
    Action,
    AlreadyHeld,
    AskVote,
    Commit,
    Committed,
    CompareHeads,
    Deliver,
    Event,
    FetchKeys,
    FetchMissing,
    LearnRoster,
    NeedParents,
    Publish,
    Ratified,
    Redeliver,
    Refused,
    SyncHistory,
)
from ..core.packet import Packet, Vote
from ..core.txn import CommitResult, Transaction
from ..core.view import decode_vote
from ..store import VoteConflictError
from ..store.records import StoredMessage
from .dispatch import Refusal

logger = logging.getLogger(__name__)


def now_ms() -> int:
    """The wall clock in milliseconds (message timestamps and engine times)."""
    return int(time.time() * 1000)


class Store(Protocol):
    """What the runtime needs of the store (a :class:`~p2pchat.chat.store.ChatStore`)."""

    async def commit(self, txn: Transaction) -> CommitResult: ...

    async def get_vote(self, group_id: bytes, message_hash: bytes) -> bytes | None: ...

    async def get_message(self, group_id: bytes, message_hash: bytes) -> StoredMessage | None: ...


class Service(Protocol):
    def start(self, action: Any) -> None: ...


class Fetcher(Protocol):
    async def fetch(self, group_id: bytes, peer: PeerID, hashes: Sequence[bytes]) -> None: ...


class Runtime:
    """Made by the node; services are attached with :meth:`attach`."""

    def __init__(self, engine: ChatEngine, store: Store) -> None:
        self.engine = engine
        self.store = store
        self.peer_id = engine.peer_id
        self._rearm = trio.Event()
        self._table: dict[type[Any], Callable[[Any], Awaitable[None] | None]] = {}
        self._fetcher: Fetcher | None = None
        # One vote at a time per (group, author): the engine counts an author's pending
        # messages from what is committed, so two requests decided together could both pass
        # the quota (§6 "Quotas").
        self._vote_locks: dict[tuple[bytes, PeerID], trio.Lock] = {}

    def attach(
        self,
        *,
        ratify: Service,
        deliver: Service,
        sync: Service,
        fetcher: Fetcher,
        publish: Callable[[Publish], None],
        ratified: Callable[[Ratified | Abandoned], None],
        keys: Service | None = None,
    ) -> None:
        """Wire the services; the one table of who carries out which action."""
        self._fetcher = fetcher
        self._table = {
            Commit: self.commit,
            AskVote: ratify.start,
            Deliver: deliver.start,
            CompareHeads: sync.start,
            SyncHistory: sync.start,
            FetchMissing: sync.start,
            LearnRoster: sync.start,
            Redeliver: sync.start,
            Publish: publish,
            Ratified: ratified,
            Abandoned: ratified,
        }
        if keys is not None:
            self._table[FetchKeys] = keys.start

    # -- driving the engine --------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        await self.execute(self.engine.handle(event))

    async def execute(self, actions: Sequence[Action]) -> None:
        run: list[Commit] = []
        for action in actions:
            if isinstance(action, Commit):
                # Consecutive commits (e.g. the certificates of a chain) are one transaction:
                # stored together, then applied one by one, in order.
                run.append(action)
                continue
            if run:
                await self._commit_run(run)
                run = []
            result = self._table[type(action)](action)
            if result is not None:
                await result
        if run:
            await self._commit_run(run)
        self._rearm.set()

    async def _commit_run(self, run: Sequence[Commit]) -> None:
        await (self.commit(run[0]) if len(run) == 1 else self.commit_all(run))

    async def commit_all(self, commits: Sequence[Commit]) -> None:
        """Commit several changes in one durable transaction, then let the engine apply each,
        in order."""
        ops = tuple(op for commit in commits for op in commit.txn.operations)
        result = await self.store.commit(Transaction(ops))
        for commit in commits:
            await self.handle(Committed(commit, result, now_ms()))

    async def commit(self, commit: Commit) -> None:
        """Commit durably, then let the engine apply it and carry out what follows."""
        await self.commit_for_result(commit)

    async def commit_for_result(self, commit: Commit) -> CommitResult:
        result = await self.store.commit(commit.txn)
        await self.handle(Committed(commit, result, now_ms()))
        return result

    async def wait_rearmed(self, seconds: float) -> None:
        """Sleep ``seconds``, or until an action may have moved the engine's next wake."""
        with trio.move_on_after(seconds):
            await self._rearm.wait()
        self._rearm = trio.Event()

    # -- the two paths that end in a commit ----------------------------------------------------

    async def receive(
        self,
        group_id: bytes,
        packet: Packet,
        sender: PeerID,
        *,
        fetch: bool = True,
        chain: bool = False,
    ) -> str | None:
        """Verify and keep a certified packet from ``sender`` (fetching its missing parents
        from it first); None, or the reason it was refused. ``chain``: a roster message of a
        roster chain whose parents could not be fetched is taken without them (§8)."""
        decision = self.engine.receive(group_id, packet, now_ms())
        if isinstance(decision, NeedParents) and fetch and self._fetcher is not None:
            await self._fetcher.fetch(group_id, sender, decision.hashes)
            decision = self.engine.receive(group_id, packet, now_ms())
        if isinstance(decision, NeedParents) and chain:
            decision = self.engine.receive(group_id, packet, now_ms(), chain=True)
        if isinstance(decision, AlreadyHeld):
            return None
        if isinstance(decision, Refused):
            return decision.reason
        if isinstance(decision, NeedParents):
            return "missing parents"
        await self.commit(decision)
        return None

    async def receive_batch(
        self, group_id: bytes, packets: Sequence[Packet], sender: PeerID
    ) -> list[str | None]:
        """Verify and keep certified packets that came together (``smsgb``, specs/chat.md
        §21), in order: a packet may name an earlier one as a parent. What passes is stored in
        one transaction. Per packet: None (stored, or already held) or the reason it was
        refused. Missing parents are fetched from ``sender`` once."""
        decisions = self._decide_delivery(group_id, packets)
        missing = [h for d in decisions if isinstance(d, NeedParents) for h in d.hashes]
        if missing and self._fetcher is not None:
            await self._fetcher.fetch(group_id, sender, list(dict.fromkeys(missing)))
            decisions = self._decide_delivery(group_id, packets)
        commits = [d for d in decisions if isinstance(d, Commit)]
        if commits:
            await self.commit_all(commits)
        out: list[str | None] = []
        for decision in decisions:
            if isinstance(decision, Refused):
                out.append(decision.reason)
            elif isinstance(decision, NeedParents):
                out.append("missing parents")
            else:
                out.append(None)
        return out

    def _decide_delivery(
        self, group_id: bytes, packets: Sequence[Packet]
    ) -> list[Commit | Refused | NeedParents | AlreadyHeld]:
        before: dict[bytes, int] = {}
        decisions: list[Commit | Refused | NeedParents | AlreadyHeld] = []
        for packet in packets:
            decision = self.engine.receive(group_id, packet, now_ms(), before=before)
            if isinstance(decision, Commit):
                before[packet.message_hash] = packet.message.time_stamp
            decisions.append(decision)
        return decisions

    async def vote(self, group_id: bytes, packet: Packet, querier: PeerID) -> Vote:
        """Our side of ``mrat``: the vote, committed with the packet before it is returned.

        Raises:
            Refusal: the packet does not pass, or another roster message of its epoch has our
                vote.
        """
        lock = self._vote_locks.setdefault((group_id, packet.message.author), trio.Lock())
        async with lock:
            return await self._vote(group_id, packet, querier)

    async def vote_batch(
        self, group_id: bytes, packets: Sequence[Packet], querier: PeerID
    ) -> list[Vote | str]:
        """Our side of ``mratb`` (specs/chat.md §21): per packet, our vote or why not. The
        packets we already voted for get the vote the store holds; the others are decided
        together, committed in one transaction, and share one signature. All are the
        querier's own messages (one lock, as for ``mrat``).

        Raises:
            Refusal: the group is not held.
        """
        lock = self._vote_locks.setdefault((group_id, querier), trio.Lock())
        async with lock:
            return await self._vote_batch(group_id, packets, querier)

    async def _vote_batch(
        self, group_id: bytes, packets: Sequence[Packet], querier: PeerID
    ) -> list[Vote | str]:
        view = self.engine.find(group_id)
        if view is None:
            raise Refusal("unknown group")
        answers: dict[int, Vote | str] = {}
        for index, packet in enumerate(packets):
            h = packet.message_hash
            # Only a message we know of can have our vote in the store (§9: a vote row is
            # written with its message, and kept while the message is held or pending).
            if view.has(h) or h in view.pending or h in view.close.voted:
                stored = await self.store.get_vote(group_id, h)
                if stored is not None:
                    answers[index] = decode_vote(stored)
        fresh = [(i, p) for i, p in enumerate(packets) if i not in answers]
        if fresh:
            decided = await self._decide_batch(group_id, [p for _, p in fresh], querier)
            for (index, _), outcome in zip(fresh, decided, strict=True):
                answers[index] = outcome
        return [answers[i] for i in range(len(packets))]

    async def _decide_batch(
        self, group_id: bytes, packets: Sequence[Packet], querier: PeerID
    ) -> list[Vote | str]:
        decision = self.engine.vote_batch(group_id, packets, querier, now_ms())
        if (
            isinstance(decision, BatchDecision)
            and decision.missing
            and decision.commit is None
            and querier != self.peer_id
            and self._fetcher is not None
        ):
            await self._fetcher.fetch(group_id, querier, decision.missing)
            decision = self.engine.vote_batch(group_id, packets, querier, now_ms())
        if isinstance(decision, Refused):
            raise Refusal(decision.reason)
        if decision.commit is None:
            return [str(o) for o in decision.outcomes]
        result = await self.commit_for_result(decision.commit)
        return [
            o if isinstance(o, str) else decode_vote(result.votes[p.message_hash])
            for p, o in zip(packets, decision.outcomes, strict=True)
        ]

    async def _vote(self, group_id: bytes, packet: Packet, querier: PeerID) -> Vote:
        stored = await self.store.get_vote(group_id, packet.message_hash)
        if stored is not None:
            return decode_vote(stored)
        decision = self.engine.vote_request(group_id, packet, querier, now_ms())
        if isinstance(decision, NeedParents) and self._fetcher is not None:
            await self._fetcher.fetch(group_id, querier, decision.hashes)
            decision = self.engine.vote_request(group_id, packet, querier, now_ms())
        if isinstance(decision, Refused):
            raise Refusal(decision.reason)
        if isinstance(decision, NeedParents):
            raise Refusal("missing parents")
        try:
            result = await self.commit_for_result(decision)
        except VoteConflictError:
            raise Refusal("not allowed") from None
        return decode_vote(result.votes[packet.message_hash])
