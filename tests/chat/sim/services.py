"""The node's runtime in the simulator: what ``chat/services`` does around the engine.

:class:`Services` commits what an engine asks and feeds ``Committed`` back, carries out its
actions (ask for votes, deliver, compare heads, page history, fetch parents, learn the roster)
as queries over the simulated network, and serves the queries it receives with the checks of
``chat/services/handlers.py`` (written again here: a change there must be made here too). The
:class:`~.world.World` provides the clock, the network and crashes.

Simplifications: a query's answer lost in the network is reported as no answer after
``QUERY_TIMEOUT`` (the real client's timeout); the packets of a history page are received one
after another without waiting for the parent fetches they start (the real sync awaits each);
``smsg`` carries no relay list (specs/chat.md §13).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from p2pchat.chat.core.budget import Unproven
from p2pchat.chat.core.engine import CLOSED_EPOCH
from p2pchat.chat.core.events import (
    Abandoned,
    Action,
    AlreadyHeld,
    AskVote,
    Commit,
    Committed,
    CompareHeads,
    Deliver,
    Effect,
    FetchKeys,
    FetchMissing,
    HeadsAnswered,
    KeysAnswered,
    LearnRoster,
    NeedParents,
    Publish,
    Ratified,
    Redeliver,
    Refused,
    SyncHistory,
    VoteAnswered,
)
from p2pchat.chat.core.fetch import ParentFetch
from p2pchat.chat.core.keyset import KeySet, KeySetError, KeySetFetch
from p2pchat.chat.core.packet import Packet, Vote
from p2pchat.chat.core.roster_delta import RosterDelta, decode_roster_artifact, read_roster_change
from p2pchat.chat.core.roster_sync import (
    MAX_CHAIN_PAGES,
    RosterPageError,
    read_roster_page,
    roster_page,
)
from p2pchat.chat.core.txn import CommitResult, PutKeySet, Transaction
from p2pchat.chat.core.view import decode_vote
from p2pchat.chat.store import VoteConflictError
from p2pchat.errors import ProtocolError
from p2pchat.identity import PeerID

from .invariants import Checker, InvariantError
from .node import DELIVER_BACKOFF, DELIVER_TRIES, MAX_PAGES, RETRIED, T0, Node


class Services:
    """The runtime of every node (a part of :class:`~.world.World`)."""

    group_id: bytes
    by_peer: dict[PeerID, Node]
    checker: Checker
    now: int

    # -- provided by the world ----------------------------------------------------------------

    def at(self, when: int, fn: Callable[[], None]) -> None:
        raise NotImplementedError

    def clock(self, node: Node) -> int:
        raise NotImplementedError

    def crash(self, node: Node) -> None:
        raise NotImplementedError

    def request(
        self,
        src: Node,
        dst: Node,
        serve: Callable[[Node, Callable[[Any], None]], None],
        answered: Callable[[Node, Any], None],
    ) -> None:
        raise NotImplementedError

    # -- committing and carrying out actions --------------------------------------------------

    def handle(self, node: Node, event: Any) -> None:
        if node.engine is not None:
            self.drive(node, node.engine.handle(event))

    def drive(self, node: Node, actions: list[Action]) -> None:
        incarnation = node.incarnation
        for action in actions:
            if node.incarnation != incarnation:
                return
            self.act(node, action)
        self.rearm(node)

    def rearm(self, node: Node) -> None:
        engine = node.engine
        wake = None if engine is None else engine.next_wake()
        node.wake = None if wake is None else max(wake - T0 - node.skew, self.now + 1)

    def commit(self, node: Node, commit: Commit) -> CommitResult | None:
        """Commit as the runtime does; None if the node crashed before it could go on.

        Raises:
            VoteConflictError: as the store does (nothing was written).
        """
        engine = node.engine
        assert engine is not None
        if node.crash_on_commit == "before-commit":
            self.crash(node)
            return None
        try:
            result = node.store.commit(commit.txn)
        except VoteConflictError:
            raise
        except Exception as exc:
            raise InvariantError("store-refused", f"n{node.index}: {exc!r}") from exc
        self.checker.committed(node.index, engine, node.store, commit.txn)
        for op in commit.txn.operations:
            packet = getattr(op, "packet", None)
            if isinstance(packet, Packet) and packet.certificate is not None:
                node.certified[packet.message_hash] = packet
        if node.crash_on_commit == "after-commit":
            self.crash(node)
            return None
        incarnation = node.incarnation
        self.drive(node, engine.handle(Committed(commit, result, self.clock(node))))
        return result if node.incarnation == incarnation else None

    def act(self, node: Node, action: Action) -> None:
        if isinstance(action, Commit):
            self.commit(node, action)
        elif isinstance(action, AskVote):
            self.ask_vote(node, action)
        elif isinstance(action, Deliver):
            for peer in action.peers:
                self.deliver(node, self.by_peer[peer], action.packet)
        elif isinstance(action, (Ratified, Abandoned)):
            self.checker.action(node.index, action)
        elif isinstance(action, CompareHeads):
            self.compare_heads(node, action)
        elif isinstance(action, SyncHistory):
            self.history(node, self.by_peer[action.peer])
        elif isinstance(action, FetchMissing):
            self.fetch(node, self.by_peer[action.peer], action.hashes, None)
        elif isinstance(action, LearnRoster):
            self.learn_roster(node, self.by_peer[action.peer])
        elif isinstance(action, FetchKeys):
            self.fetch_keys(node, action)
        elif isinstance(action, Redeliver):
            for message_hash in action.hashes:  # SyncService.redeliver: read from the store
                held = node.certified.get(message_hash)
                for peer in action.peers if held is not None else ():
                    assert held is not None
                    self.deliver(node, self.by_peer[peer], held)
        else:
            assert isinstance(action, Publish)

    def ask_vote(self, author: Node, action: AskVote) -> None:
        message_hash = action.packet.message_hash

        def answered(a: Node, value: tuple[Vote | None, str | None] | None) -> None:
            vote, reason = (None, None) if value is None else value
            answer = VoteAnswered(
                action.group_id, message_hash, action.ratifier, vote, reason, self.clock(a)
            )
            self.handle(a, answer)

        ratifier = self.by_peer[action.ratifier]
        if ratifier is author:
            self.serve_vote(author, author, action.packet, lambda v: answered(author, v))
            return
        self.request(
            author,
            ratifier,
            lambda d, reply: self.serve_vote(d, author, action.packet, reply),
            answered,
        )

    # -- serving queries (chat/services/handlers.py and runtime.py) ----------------------------

    def serve_vote(
        self, node: Node, querier: Node, packet: Packet, reply: Callable[[Any], None]
    ) -> None:
        engine = node.engine
        assert engine is not None
        view = engine.find(self.group_id)
        if (
            view is None
            or not view.is_current_member(querier.peer)
            or packet.message.group_id != self.group_id
        ):
            reply((None, "unknown group"))
            return
        if packet.message.author != querier.peer:
            reply((None, "not allowed"))
            return
        stored = node.store.vote(self.group_id, packet.message_hash)
        if stored is not None:
            reply((decode_vote(stored), None))
            return
        incarnation = node.incarnation

        def decide(fetch: bool) -> None:
            if node.incarnation != incarnation or node.engine is None:
                return
            if not self.hold_key_set(node, querier, packet, lambda: decide(fetch), reply):
                return
            decision = node.engine.vote_request(
                self.group_id, packet, querier.peer, self.clock(node)
            )
            if isinstance(decision, NeedParents):
                if fetch:
                    self.fetch(node, querier, decision.hashes, lambda: decide(False))
                else:
                    reply((None, "missing parents"))
            elif isinstance(decision, Refused):
                reply((None, decision.reason))
            else:
                try:
                    result = self.commit(node, decision)
                except VoteConflictError:
                    reply((None, "not allowed"))
                    return
                if result is not None:
                    reply((decode_vote(result.votes[packet.message_hash]), None))

        decide(True)

    # -- key sets of roster deltas (chat/services/keys.py) -------------------------------------

    def hold_key_set(
        self,
        node: Node,
        author: Node,
        packet: Packet,
        then: Callable[[], None],
        reply: Callable[[Any], None],
    ) -> bool:
        """The ratifier's custody of a roster delta's key set (``KeyService.custody``): True if
        it holds what it needs to vote; otherwise it asks the author for the set (one ``kset``
        page: the simulated sets are small), commits it and calls ``then``, or replies the
        refusal."""
        engine = node.engine
        assert engine is not None
        view = engine.find(self.group_id)
        if view is None or packet.message.message_type != "roster":
            return True
        if packet.message.epoch != view.state.current_epoch:
            return True
        try:
            if not isinstance(decode_roster_artifact(packet), RosterDelta):
                return True
            change = read_roster_change(packet, view.state)
        except ProtocolError:
            return True
        if change.keyset is None or node.store.key_set(self.group_id, packet.message_hash):
            return True
        incarnation = node.incarnation
        fetch = KeySetFetch(change.keyset)

        def serve(d: Node, answer: Callable[[Any], None]) -> None:
            held = d.store.key_set(self.group_id, packet.message_hash)
            answer(None if held is None else KeySet.decode(held).page(0, max_bytes=1 << 30))

        def answered(me: Node, page: dict[str, Any] | None) -> None:
            if node.incarnation != incarnation or node.engine is None:
                return
            try:
                if page is None or fetch.take(page):
                    reply((None, "keys unavailable"))
                    return
                keyset = fetch.result(change.roster)
            except KeySetError as exc:
                reply((None, exc.hint))
                return
            txn = Transaction((PutKeySet(self.group_id, packet.message_hash, keyset.encode()),))
            if self.commit(node, Commit(txn, Effect())) is not None:
                then()

        self.request(node, author, serve, answered)
        return False

    def fetch_keys(self, node: Node, action: FetchKeys) -> None:
        """``KeyService.start``: our entries from a holder (ourselves first), checked by the
        engine."""
        incarnation = node.incarnation

        def serve(d: Node, answer: Callable[[Any], None]) -> None:
            held = d.store.key_set(self.group_id, action.message_hash)
            answer(None if held is None else KeySet.decode(held).mine(node.peer))

        def answered(me: Node, body: dict[str, Any] | None) -> None:
            if me.incarnation == incarnation and me.engine is not None:
                event = KeysAnswered(
                    action.group_id, action.message_hash, action.holder, body, self.clock(me)
                )
                self.handle(me, event)

        holder = self.by_peer[action.holder]
        if holder is node:
            serve(node, lambda body: answered(node, body))
        else:
            self.request(node, holder, serve, answered)

    def deliver(self, node: Node, peer: Node, packet: Packet, attempt: int = 0) -> None:
        """``smsg``, tried DELIVER_TRIES times, backing off, while unanswered or refused with a
        reason worth retrying (specs/chat.md §9a "Delivery")."""
        incarnation = node.incarnation

        def answered(me: Node, reason: str | None) -> None:
            if reason is not None and reason not in RETRIED:
                return  # delivered, or a final refusal
            if attempt + 1 < DELIVER_TRIES:
                self.at(self.now + DELIVER_BACKOFF * 2**attempt, retry)

        def retry() -> None:
            if node.incarnation == incarnation and node.engine is not None:
                self.deliver(node, peer, packet, attempt + 1)

        self.request(node, peer, lambda d, reply: self.serve_smsg(d, node, packet, reply), answered)

    def serve_smsg(
        self, node: Node, sender: Node, packet: Packet, reply: Callable[[Any], None]
    ) -> None:
        """Answer ``smsg`` (``on_smsg``): "ok" once the packet is taken (its missing parents
        fetched from the sender first), or the refusal."""
        engine = node.engine
        assert engine is not None
        view = engine.find(self.group_id)
        if view is None or sender.peer not in view.members():
            reply("unknown group")
            return
        epoch = packet.message.epoch
        if not (view.is_current_member(sender.peer) or view.state.is_member(sender.peer, epoch)):
            reply("unknown group")
            return
        self.receive(node, packet, sender, fetch=True, then=lambda reason: reply(reason or "ok"))

    def receive(
        self,
        node: Node,
        packet: Packet,
        sender: Node,
        *,
        fetch: bool,
        chain: bool = False,
        then: Callable[[str | None], None] | None = None,
    ) -> str | None:
        """``Runtime.receive``: take a certified packet, fetching its missing parents from
        ``sender`` first (``fetch``; a roster message of a chain, ``chain``, is then taken
        without those it could not fetch); ``then`` gets None or the reason it was refused, once
        known. Returns the reason when known at once (a refusal before any fetch)."""
        engine = node.engine
        if engine is None:
            return None
        decision = engine.receive(self.group_id, packet, self.clock(node))
        if isinstance(decision, NeedParents) and fetch:
            self.fetch(
                node,
                sender,
                decision.hashes,
                lambda: self.receive(node, packet, sender, fetch=False, chain=chain, then=then),
            )
            return None
        if isinstance(decision, NeedParents) and chain:
            decision = engine.receive(self.group_id, packet, self.clock(node), chain=True)
        reason: str | None = None
        if isinstance(decision, Commit):
            incarnation = node.incarnation
            self.commit(node, decision)
            if node.incarnation != incarnation:
                return None  # crashed: no answer
        elif isinstance(decision, NeedParents):
            reason = "missing parents"
        elif isinstance(decision, Refused):
            reason = decision.reason
        else:
            assert isinstance(decision, AlreadyHeld)
        if then is not None:
            then(reason)
        return reason

    def serve_get(self, node: Node, querier: Node, hashes: list[bytes]) -> list[Packet]:
        assert node.engine is not None
        view = node.engine.find(self.group_id)
        if view is None or not view.is_current_member(querier.peer):
            return []
        return [node.certified[h] for h in hashes if view.has(h) and h in node.certified]

    def serve_pkt(self, node: Node, querier: Node, first: int) -> dict[str, Any] | None:
        """``pkt {from: first}``: a page of the chain up to the querier's last epoch (§16), or
        None for a refusal."""
        assert node.engine is not None
        view = node.engine.find(self.group_id)
        last = None if view is None else view.last_epoch_of(querier.peer)
        if view is None or last is None:
            return None
        try:
            return roster_page(view.signed, view.state.roster_packets[: last + 1], first)
        except RosterPageError:
            return None

    # -- sync (chat/services/sync.py) -----------------------------------------------------------

    def compare_heads(self, node: Node, action: CompareHeads) -> None:
        """``hds``; a refusal ``"unknown group"`` (we may have been removed) makes us learn the
        roster from that member (``SyncService._compare_heads``)."""

        def serve(d: Node, reply: Callable[[Any], None]) -> None:
            assert d.engine is not None
            view = d.engine.find(self.group_id)
            if view is not None and view.is_current_member(node.peer):
                reply(tuple(view.next_parents()))  # late messages (§14) left out
            else:
                reply("unknown group")

        def answered(me: Node, heads: tuple[bytes, ...] | str | None) -> None:
            if isinstance(heads, str):
                if me.engine is not None:
                    self.learn_roster(me, self.by_peer[action.peer])
            elif heads is not None:
                self.handle(me, HeadsAnswered(self.group_id, action.peer, heads, action.catch_up))

        self.request(node, self.by_peer[action.peer], serve, answered)

    def history(
        self,
        node: Node,
        peer: Node,
        cursor: int = 0,
        pages: int = 0,
        unproven: Unproven | None = None,
    ) -> None:
        """Page through ``peer``'s history; a closed-epoch message not yet admitted is kept
        aside (bounded) until a later page admits it (``SyncService._receive_page``, §14)."""
        aside = Unproven() if unproven is None else unproven

        def serve(d: Node, reply: Callable[[Any], None]) -> None:
            assert d.engine is not None
            view = d.engine.find(self.group_id)
            if view is not None and view.is_current_member(node.peer):
                reply(d.store.page(self.group_id, cursor))

        def answered(me: Node, page: tuple[list[Packet], int | None] | None) -> None:
            if page is None:
                return
            packets, following = page
            incarnation = me.incarnation
            engine = me.engine
            assert engine is not None
            engine.admit(self.group_id, [*aside.packets, *packets])
            still = Unproven()
            for packet in aside.packets:
                if not engine.admitted(self.group_id, packet.message_hash):
                    still.keep(packet)  # not checked again until admitted
                    continue
                if self.receive(me, packet, peer, fetch=True) == CLOSED_EPOCH:
                    still.keep(packet)
                if me.incarnation != incarnation:
                    return
            for packet in packets:
                if self.receive(me, packet, peer, fetch=True) == CLOSED_EPOCH:
                    still.keep(packet)
                if me.incarnation != incarnation:
                    return
            if following is not None and pages + 1 < MAX_PAGES:
                self.history(me, peer, following, pages + 1, still)

        self.request(node, peer, serve, answered)

    def fetch(
        self,
        node: Node,
        peer: Node,
        hashes: tuple[bytes, ...],
        then: Callable[[], object] | None,
    ) -> None:
        """Fetch the missing ancestors of ``hashes`` from ``peer``, receive them, then ``then``."""
        assert node.engine is not None
        view = node.engine.find(self.group_id)
        if view is None:
            return
        plan = ParentFetch.start(hashes, view.has)
        incarnation = node.incarnation

        def finish() -> None:
            fetched = plan.in_order()
            if node.engine is not None:
                node.engine.admit(self.group_id, fetched)  # §14: children first
            for packet in fetched:
                if node.incarnation != incarnation:
                    return
                self.receive(node, packet, peer, fetch=False)
            if then is not None and node.incarnation == incarnation:
                then()

        def next_round() -> None:
            wanted = plan.wanted()
            if not wanted:
                finish()
                return

            def answered(_me: Node, packets: list[Packet] | None) -> None:
                if packets is not None and plan.add(packets):
                    next_round()
                else:
                    finish()

            self.request(
                node, peer, lambda d, reply: reply(self.serve_get(d, node, wanted)), answered
            )

        next_round()

    def learn_roster(self, node: Node, peer: Node, pages: int = 0) -> None:
        """The roster messages ``peer`` holds from our current epoch on, page by page
        (``SyncService.learn_roster``); the first refusal ends it."""
        assert node.engine is not None
        view = node.engine.find(self.group_id)
        if view is None or pages >= MAX_CHAIN_PAGES:
            return
        first = view.state.current_epoch

        def answered(me: Node, body: dict[str, Any] | None) -> None:
            if body is None or me.engine is None:
                return
            try:
                page = read_roster_page(body, first)
            except RosterPageError:
                return
            incarnation = me.incarnation
            for packet in page.packets:
                if self.receive(me, packet, peer, fetch=True, chain=True) is not None:
                    return  # refused: the rest of the chain would be too
                if me.incarnation != incarnation:
                    return
            if page.next is not None:
                self.learn_roster(me, peer, pages + 1)

        self.request(node, peer, lambda d, reply: reply(self.serve_pkt(d, node, first)), answered)
