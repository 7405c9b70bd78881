"""A synchronous network of chat engines for tests: no sockets, no clock, no store.

Actions are carried out at once: a commit "succeeds" (votes are kept per node, the first one
for a message wins, as in the store) and its ``Committed`` is fed back; a vote request goes to
the ratifier's engine and its answer back to the author (the key set of a roster delta
copied to the ratifier first: its custody, specs/chat.md §20); a delivery goes to each member's
engine; a key fetch is answered from the holder's key sets. What a test does not want carried
out is recorded in ``Sim.log`` for it to look at.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from p2pchat.chat.core import crypto
from p2pchat.chat.core.engine import ChatEngine, EngineConfig
from p2pchat.chat.core.events import (
    Action,
    AskVote,
    Commit,
    Committed,
    Deliver,
    Event,
    FetchKeys,
    KeysAnswered,
    Refused,
    VoteAnswered,
)
from p2pchat.chat.core.keyset import KeySet
from p2pchat.chat.core.packet import Packet, Vote
from p2pchat.chat.core.roster import Member, Role
from p2pchat.chat.core.txn import CommitResult, PutKeySet, PutVote
from p2pchat.chat.core.view import decode_vote
from p2pchat.identity import KeyPair, PeerID

T0 = 1_700_000_000_000
CONFIG = EngineConfig(
    retry_initial=1_000, retry_max=8_000, attempt_timeout=5_000, sync_interval=30_000
)


@attrs.define
class Sim:
    engines: dict[PeerID, ChatEngine] = attrs.Factory(dict)
    down: set[PeerID] = attrs.Factory(set)
    votes: dict[tuple[PeerID, bytes], bytes] = attrs.Factory(dict)
    commits: dict[PeerID, list[Commit]] = attrs.Factory(dict)
    log: list[tuple[PeerID, Action]] = attrs.Factory(list)
    #: The key sets each node holds (committed), by (node, message hash).
    key_sets: dict[tuple[PeerID, bytes], bytes] = attrs.Factory(dict)
    now: int = T0

    def add(self, hpke_kem: str = crypto.KEM_X25519, config: EngineConfig = CONFIG) -> ChatEngine:
        engine = ChatEngine(KeyPair.generate(), crypto.HpkeKeyPair.generate(hpke_kem), config)
        self.engines[engine.peer_id] = engine
        self.commits[engine.peer_id] = []
        return engine

    def commit(self, engine: ChatEngine, commit: Commit) -> CommitResult:
        result = CommitResult()
        for op in commit.txn.operations:
            if isinstance(op, PutVote):
                key = (engine.peer_id, op.message_hash)
                result.votes[op.message_hash] = self.votes.setdefault(key, op.vote)
            elif isinstance(op, PutKeySet):
                self.key_sets.setdefault((engine.peer_id, op.message_hash), op.data)
        self.commits[engine.peer_id].append(commit)
        self.run(engine, engine.handle(Committed(commit, result, self.now)))
        return result

    def handle(self, engine: ChatEngine, event: Event) -> None:
        self.run(engine, engine.handle(event))

    def run(self, engine: ChatEngine, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Commit):
                self.commit(engine, action)
            elif isinstance(action, AskVote):
                self._ask(engine, action)
            elif isinstance(action, Deliver):
                for peer in action.peers:
                    self.deliver(peer, action.group_id, action.packet)
            elif isinstance(action, FetchKeys):
                self._fetch_keys(engine, action)
            else:
                self.log.append((engine.peer_id, action))

    def _fetch_keys(self, engine: ChatEngine, action: FetchKeys) -> None:
        held = self.key_sets.get((action.holder, action.message_hash))
        body = None
        if held is not None and action.holder not in self.down:
            body = KeySet.decode(held).mine(engine.peer_id)
        self.handle(
            engine,
            KeysAnswered(action.group_id, action.message_hash, action.holder, body, self.now),
        )

    def _ask(self, author: ChatEngine, action: AskVote) -> None:
        vote: Vote | None = None
        reason: str | None = None
        ratifier = self.engines.get(action.ratifier)
        message_hash = action.packet.message_hash
        held = self.key_sets.get((author.peer_id, message_hash))
        if held is not None and ratifier is not None and action.ratifier not in self.down:
            self.key_sets.setdefault((action.ratifier, message_hash), held)
        if ratifier is not None and action.ratifier not in self.down:
            decision = ratifier.vote_request(
                action.group_id, action.packet, author.peer_id, self.now
            )
            if isinstance(decision, Commit):
                result = self.commit(ratifier, decision)
                vote = decode_vote(result.votes[action.packet.message_hash])
            elif isinstance(decision, Refused):
                reason = decision.reason
            else:
                reason = "missing parents"
        self.handle(
            author,
            VoteAnswered(
                action.group_id,
                action.packet.message_hash,
                action.ratifier,
                vote,
                reason,
                self.now,
            ),
        )

    def deliver(self, peer: PeerID, group_id: bytes, packet: Packet) -> Any:
        engine = self.engines.get(peer)
        if engine is None or peer in self.down:
            return None
        decision = engine.receive(group_id, packet, self.now)
        if isinstance(decision, Commit):
            self.commit(engine, decision)
        return decision

    def actions_of(self, engine: ChatEngine, kind: type[Any]) -> list[Any]:
        return [a for peer, a in self.log if peer == engine.peer_id and isinstance(a, kind)]

    # -- building groups -----------------------------------------------------------------------

    def create(self, owner: ChatEngine, **kwargs: Any) -> bytes:
        group_id, commit = owner.create_group(
            "test", quorum=kwargs.get("quorum"), history="all", now=self.now, nonce=os.urandom(16)
        )
        self.commit(owner, commit)
        return group_id

    def invite(self, owner: ChatEngine, group_id: bytes, member: ChatEngine, role: Role) -> None:
        """The owner adds ``member`` and it joins from the owner's chain."""
        view = owner.view(group_id)
        entry = Member(member.peer_id, role, member.hpke.kem, member.hpke.public_bytes())
        members = [m for m in view.state.current_roster.members if m.peer != member.peer_id]
        _, commit = owner.change_roster(
            group_id, [*members, entry], added=member.peer_id, now=self.now
        )
        self.commit(owner, commit)
        chain = {
            "genesis": view.signed.to_cbor(),
            "rosters": [p.to_cbor() for p in owner.view(group_id).state.roster_packets],
        }
        join = member.join(group_id, chain, self.now)
        assert join is not None
        self.commit(member, join)
        # Those who joined earlier and are up hold the roster change through delivery already.
        for other in self.engines.values():
            held = other.find(group_id)
            if held is not None and other.peer_id not in self.down:
                assert held.state.current_epoch == owner.view(group_id).state.current_epoch
