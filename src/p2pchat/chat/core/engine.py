"""The group engine: a node's chat logic as a sans-IO state machine (specs/chat.md §6-§8).

Theory of operation
-------------------
The engine holds what the node knows of its groups (the verified roster chains, the epoch keys,
which messages it holds ratified, the DAG heads), the quorum collection of its own messages in
flight, and the outbox schedule. It does no I/O and reads no clock.

*Commands* are direct calls that answer at once: :meth:`ChatEngine.create_group`,
:meth:`~ChatEngine.join`, :meth:`~ChatEngine.author`, :meth:`~ChatEngine.change_roster` return a
:class:`~.events.Commit`; :meth:`~ChatEngine.receive` (a certified packet from ``smsg``, a
history page, a fetch, a roster chain) and :meth:`~ChatEngine.vote_request` (``mrat``) return a
``Commit``, a :class:`~.events.Refused` or a :class:`~.events.NeedParents`.

*Events* (:meth:`ChatEngine.handle`) are what happened: ``Tick``, ``Connected``,
``Disconnected``, ``VoteAnswered``, ``HeadsAnswered``, ``Committed``. Each returns the actions
that follow, in order.

**Memory follows the commit.** Nothing the engine holds changes when it decides to store
something: it returns a ``Commit`` whose transaction holds every row of the change (a certified
roster message with its roster row and the epoch keys it brings; a join with the group, its
roster chain and keys; a vote with its packet; a queued message with its outbox entry) and an
*effect*. Only :class:`~.events.Committed` applies the effect. A node that dies before the commit
holds neither in the store nor in memory; one that dies after reloads the same state from the
store (:meth:`ChatEngine.load_group`, :meth:`~ChatEngine.load_outbox`). Effects are idempotent,
so two commits of the same message (it arrived twice while the first was being written) apply
once.

*Where.* This module holds the state, loading, the commands and the event loop; our messages in
flight (outbox, attempts, votes, certification, cancel) are :mod:`.engine_outbox`, and certified
messages received and accepted are :mod:`.engine_accept`, both mixed into :class:`ChatEngine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...identity import KeyPair, PeerID
from . import crypto
from .artifact import ChunkedRef
from .author import write_chunked_message, write_message, write_roster_change
from .batch import BatchDecision, decide_batch
from .engine_accept import CLOSED_EPOCH, Acceptance
from .engine_outbox import (
    CANCELLED,
    FETCHING,
    FETCHING_RETRY,
    MISSING,
    NOT_QUEUED,
    OVER_QUOTA_SOON,
    ROSTER,
    ROSTER_STAYS,
    TOO_LATE,
    OwnMessages,
)
from .engine_records import (
    Attempt,
    EngineConfig,
    _Accepted,
    _BatchVoted,
    _Cancelled,
    _Dropped,
    _Expired,
    _GroupAdded,
    _Queued,
    _Voted,
    outbox_snapshot,
)
from .events import (
    Abandoned,
    Action,
    Commit,
    Committed,
    CompareHeads,
    Connected,
    Disconnected,
    Event,
    HeadsAnswered,
    KeysAnswered,
    NeedParents,
    Refused,
    Tick,
    VoteAnswered,
)
from .genesis import SignedGenesis
from .group_state import GroupState
from .key_fetch import KeyFetches, KeysTaken
from .membership import join_rows, join_state_rows, new_group_rows
from .outbox import Outbox, OutboxView, Refusal
from .packet import Packet
from .roster import History, Member, Role
from .txn import (
    PutKeySet,
    Transaction,
)
from .view import ChatError, GroupView, NotAllowedError, PendingVote
from .voting import counts_as_pending, decide_vote, expire_pending

__all__ = [
    "CANCELLED",
    "CLOSED_EPOCH",
    "FETCHING",
    "FETCHING_RETRY",
    "MISSING",
    "NOT_QUEUED",
    "OVER_QUOTA_SOON",
    "ROSTER",
    "ROSTER_STAYS",
    "TOO_LATE",
    "ChatEngine",
    "ChatError",
    "EngineConfig",
    "GroupView",
    "NotAllowedError",
    "OutboxView",
    "Refusal",
]


class ChatEngine(OwnMessages, Acceptance):
    """The chat logic of one node (see the module's theory of operation)."""

    def __init__(
        self, identity: KeyPair, hpke: crypto.HpkeKeyPair, config: EngineConfig | None = None
    ) -> None:
        self.identity = identity
        self.peer_id: PeerID = identity.peer_id
        self.hpke = hpke
        self.config = config if config is not None else EngineConfig()
        self._groups: dict[bytes, GroupView] = {}
        #: §20: the roster messages whose wrapped keys we still fetch.
        self.keys = KeyFetches(self.peer_id, hpke, self._groups.get)
        self.outbox = Outbox(
            self.config.retry_initial, self.config.retry_max, self.config.outbox_concurrency
        )
        self._attempts: dict[bytes, Attempt] = {}
        #: Per group, our message written last whose commit is not yet applied (hash, rank):
        #: the next one follows it (§11, §21 "Writing in groups").
        self._written: dict[bytes, tuple[bytes, int]] = {}
        self._connected: set[PeerID] = set()
        self._next_sync: int | None = None

    # -- reading -----------------------------------------------------------------------------

    def groups(self) -> list[bytes]:
        return list(self._groups)

    def view(self, group_id: bytes) -> GroupView:
        """The group as held.

        Raises:
            ChatError: we are not in that group.
        """
        view = self._groups.get(group_id)
        if view is None:
            raise ChatError(f"not a member of group {group_id.hex()[:16]}")
        return view

    def find(self, group_id: bytes) -> GroupView | None:
        return self._groups.get(group_id)

    def next_wake(self) -> int | None:
        """When the engine next wants a :class:`Tick` (None: only on events)."""
        times = [a.deadline for a in self._attempts.values() if not (a.certifying or a.ready)]
        due = self.outbox.next_due()
        if due is not None and self.outbox.in_flight < self.outbox.concurrency:
            times.append(due)
        if self._next_sync is not None:
            times.append(self._next_sync)
        keys_due = self.keys.next_wake()
        if keys_due is not None:
            times.append(keys_due)
        return min(times) if times else None

    def outbox_snapshot(self, now: int, group_id: bytes | None = None) -> list[OutboxView]:
        """Our queued messages (of ``group_id``, or all), in the order we wrote them: their
        schedule and, for an attempt in flight, which ratifiers voted, refused or have not
        answered."""
        return outbox_snapshot(self.outbox, self._attempts, now, group_id)

    def my_member_entry(self, role: Role) -> Member:
        return Member(self.peer_id, role, self.hpke.kem, self.hpke.public_bytes())

    # -- loading from the store ----------------------------------------------------------------

    def load_group(
        self,
        genesis: bytes,
        rosters: Sequence[Packet],
        epoch_keys: dict[int, bytes],
        ratified: Iterable[Packet],
    ) -> None:
        """Hold a group as the store has it (at start-up).

        Raises:
            RosterError: the stored chain does not verify.
        """
        signed = SignedGenesis.decode(genesis)
        view = GroupView(signed, GroupState.from_chain(signed, rosters), dict(epoch_keys))
        for packet in ratified:
            view.hold(packet)
        view.find_late()
        self._groups[signed.group_id] = view
        for packet in view.state.roster_packets:  # §20: keys not fetched before we stopped
            self.keys.consider(view, packet, 0)

    def load_pending(self, packet: Packet, *, received_at: int, size: int) -> None:
        """Count a pending message of another author that the store holds outside our outbox
        (at start-up): it counts against its author's quota and expires like a fresh vote."""
        view = self._groups.get(packet.message.group_id)
        if view is None or not self._counts_as_pending(packet):
            return
        if not view.has(packet.message_hash):
            view.pending[packet.message_hash] = PendingVote(
                packet.message.author, size, received_at
            )

    def load_vote(self, packet: Packet) -> None:
        """Note a vote of ours the store holds for a pending message (at start-up): it goes
        into our closing commitment, and a roster vote closes its epoch for us (§14)."""
        view = self._groups.get(packet.message.group_id)
        if view is None or view.has(packet.message_hash):
            return
        roster = packet.message.message_type == ROSTER
        view.close.note_vote(packet.message_hash, packet.message.epoch, roster=roster)

    def load_outbox(self, packet: Packet, now: int, *, rank: int | None = None) -> None:
        """Queue one of our pending messages found in the store's outbox (at start-up), at
        its ``rank`` (the entry's ``created_at``)."""
        group_id = packet.message.group_id
        if group_id in self._groups:
            self.outbox.add(group_id, packet, origin=packet.message_hash, now=now, rank=rank)

    # -- commands ------------------------------------------------------------------------------

    def create_group(
        self, name: str, *, quorum: int | None, history: History, now: int, nonce: bytes
    ) -> tuple[bytes, Commit]:
        """A new group with us as owner and sole ratifier.

        Raises:
            ValueError: a bad name, quorum or history setting.
        """
        view, txn = new_group_rows(
            self.identity, self.my_member_entry(Role.RATIFIER), name, quorum, history, now, nonce
        )
        return view.group_id, Commit(txn, _GroupAdded(view))

    def join(self, group_id: bytes, body: Mapping[str, Any], now: int) -> Commit | None:
        """Join with a ``pktR`` body (genesis and roster chain); None if already held.

        Raises:
            ChatError: the chain does not verify or we are not in it.
        """
        if group_id in self._groups:
            return None
        view, txn = join_rows(group_id, body, self.hpke, self.peer_id, now)
        return Commit(txn, _GroupAdded(view))

    def join_chain(self, state: GroupState, now: int) -> Commit | None:
        """Join with a verified chain (paged in, :mod:`.roster_sync`); None if already held.

        Raises:
            ChatError: we are not in its current roster.
        """
        if state.group_id in self._groups:
            return None
        view, txn = join_state_rows(state, self.hpke, self.peer_id, now)
        return Commit(txn, _GroupAdded(view))

    def author(
        self,
        group_id: bytes,
        data: bytes,
        *,
        message_type: str,
        mime: str,
        ref_hash: bytes | None,
        now: int,
        chain: bool = False,
    ) -> tuple[Packet, Commit]:
        """Write, encrypt and sign a message; the commit queues it. With ``chain`` it follows
        the message we wrote last even if its commit is not applied yet (the caller commits
        them in the order written, §21); otherwise the last one queued.

        Raises:
            ChatError: we are not in the group or hold no key for its epoch.
            NotAllowedError: our role cannot send.
        """
        view = self.view(group_id)
        packet = write_message(
            self.identity,
            view,
            data,
            message_type,
            mime,
            ref_hash,
            now,
            after=self._follows(group_id, chain),
        )
        return packet, self._queue(view, packet, now)

    def author_chunked(
        self,
        group_id: bytes,
        *,
        content_key: bytes,
        ref: ChunkedRef,
        name: str,
        mime: str,
        message_type: str,
        ref_hash: bytes | None,
        now: int,
        chain: bool = False,
    ) -> tuple[Packet, Commit]:
        """Write and sign a message whose artifact travels as chunks (specs/artifacts.md §3),
        already sealed under ``content_key`` and stored; the commit queues it.

        Raises:
            ChatError: we are not in the group or hold no key for its epoch.
            NotAllowedError: our role cannot send.
        """
        view = self.view(group_id)
        packet = write_chunked_message(
            self.identity,
            view,
            content_key=content_key,
            ref=ref,
            name=name,
            mime=mime,
            message_type=message_type,
            ref_hash=ref_hash,
            now=now,
            after=self._follows(group_id, chain),
        )
        return packet, self._queue(view, packet, now)

    def change_roster(
        self,
        group_id: bytes,
        members: Sequence[Member],
        *,
        added: PeerID | None,
        now: int,
        name: str | None = None,
        owner: PeerID | None = None,
    ) -> tuple[Packet, Commit]:
        """Write the roster message that opens the next epoch with ``members`` (renaming the
        group to ``name``, handing it to ``owner``, when given); owner only.

        Raises:
            NotAllowedError: we are not the owner.
        """
        view = self.view(group_id)
        state = view.state
        if state.owner != self.peer_id:
            raise NotAllowedError("only the group's owner changes the roster")
        if any(
            item.group_id == group_id and item.packet.message.message_type == ROSTER
            for item in self.outbox
        ):
            raise ChatError(
                "an earlier roster change of this group is still waiting for its quorum"
            )
        packet, keyset = write_roster_change(
            self.identity, view, members, added, now, name=name, owner=owner
        )
        queued = self._queue(view, packet, now)
        # §20: the key set is stored with the message (we serve it to the ratifiers).
        held = PutKeySet(group_id, packet.message_hash, keyset.encode())
        return packet, Commit(Transaction((held, *queued.txn.operations)), queued.effect)

    def vote_request(
        self, group_id: bytes, packet: Packet, querier: PeerID, now: int
    ) -> Commit | Refused | NeedParents:
        """``mrat``: check ``packet`` and, if it passes, commit it with our vote
        (:func:`~.voting.decide_vote`).

        The caller answers with the vote the commit returns (an earlier vote of ours for the
        same message, if the store holds one).
        """
        view = self._groups.get(group_id)
        if view is None or packet.message.group_id != group_id:
            return Refused("unknown group")
        return decide_vote(self.identity, self.config, view, packet, querier, now)

    def vote_batch(
        self, group_id: bytes, packets: Sequence[Packet], querier: PeerID, now: int
    ) -> BatchDecision | Refused:
        """``mratb``: decide a batch of packets (:func:`~.batch.decide_batch`, §21)."""
        view = self._groups.get(group_id)
        if view is None or any(p.message.group_id != group_id for p in packets):
            return Refused("unknown group")
        return decide_batch(self.identity, self.config, view, packets, querier, now)

    def admit(self, group_id: bytes, packets: Sequence[Packet]) -> None:
        """Admit, within a batch of certified packets that arrived together (a ``dht`` page, a
        fetch), the ancestors of admitted closed-epoch messages, children first (§14), so that
        receiving them oldest first finds them admitted."""
        view = self._groups.get(group_id)
        if view is not None:
            view.close.seed(view.state, view.has)
            view.close.admit_closure(packets)

    def admitted(self, group_id: bytes, message_hash: bytes) -> bool:
        """True if a closed-epoch message with this hash would be admitted (§14)."""
        view = self._groups.get(group_id)
        return view is not None and view.close.admitted(message_hash)

    def _counts_as_pending(self, packet: Packet) -> bool:
        return counts_as_pending(packet, self.peer_id)

    # -- events --------------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Take an event; return the actions that follow, in order."""
        if isinstance(event, Tick):
            return self._on_tick(event.now)
        if isinstance(event, Connected):
            return self._on_connected(event.peer, event.now)
        if isinstance(event, Disconnected):
            self._connected.discard(event.peer)
            return []
        if isinstance(event, VoteAnswered):
            return self._on_vote(event)
        if isinstance(event, HeadsAnswered):
            return self._on_heads(event)
        if isinstance(event, KeysAnswered):
            commit = self.keys.answered(event)
            return [] if commit is None else [commit]
        return self._on_committed(event)

    def _on_tick(self, now: int) -> list[Action]:
        # A certificate waiting for its parent's: certified if the parent is held now, or
        # tried again if the parent left the outbox uncertified (dropped, cancelled).
        actions: list[Action] = self._certify_ready(now)
        for message_hash, attempt in list(self._attempts.items()):
            if attempt.deadline <= now and not (attempt.certifying or attempt.ready):
                actions += self._attempt_over(message_hash, now)
        for item in self.outbox.start_due(now):
            view = self._groups.get(item.group_id)
            if view is None:  # the group is not held: nothing to send it to
                self.outbox.remove(item.message_hash)
                continue
            if not view.is_current_member(self.peer_id):
                actions += self._drop(view, item.packet, "we were removed from the group")
            elif item.packet.message.epoch != view.state.current_epoch or (
                self.outbox.out_of_order(item, view.has)
            ):
                actions += self._reauthor(view, item, now)
            else:
                actions += self._start_attempt(view, item.packet, now)
        actions += self.keys.due(now)
        if self._next_sync is None:
            self._next_sync = now + self.config.sync_interval
        elif self._next_sync <= now:
            self._next_sync = now + self.config.sync_interval
            for view in self._syncing():
                members = view.members(view.state.current_epoch) - {self.peer_id}
                for peer in sorted(self._connected & members):
                    actions.append(CompareHeads(view.group_id, peer, catch_up=False))
            actions += self._expire(now)
        return actions

    def _syncing(self) -> list[GroupView]:
        """The groups we sync: those whose current roster holds us (a removed node keeps what
        it holds and asks for nothing more, §8 "Membership that ends")."""
        return [v for v in self._groups.values() if v.is_current_member(self.peer_id)]

    def _expire(self, now: int) -> list[Action]:
        """Delete the pending messages of others not certified within ``pending_ttl``."""
        expired = (expire_pending(v, self.config.pending_ttl, now) for v in self._groups.values())
        return [commit for commit in expired if commit is not None]

    def _on_connected(self, peer: PeerID, now: int) -> list[Action]:
        self._connected.add(peer)
        ratifiers = {g: v.state.current_roster.ratifiers for g, v in self._groups.items()}
        self.outbox.hurry(now, peer=peer, ratifiers=ratifiers)
        actions: list[Action] = [
            CompareHeads(view.group_id, peer, catch_up=True)
            for view in self._syncing()
            if peer != self.peer_id and view.is_current_member(peer)
        ]
        return actions + self._on_tick(now)

    def _on_committed(self, event: Committed) -> list[Action]:
        effect = event.commit.effect
        if isinstance(effect, _GroupAdded):
            if effect.view.group_id not in self._groups:
                effect.view.find_late()
                self._groups[effect.view.group_id] = effect.view
                for packet in effect.view.state.roster_packets:  # §20: our keys, fetched
                    self.keys.consider(effect.view, packet, event.now)
            return [*self.keys.due(event.now)]
        if isinstance(effect, KeysTaken):
            taken = self._groups.get(effect.group_id)
            if taken is None:
                return []
            self.keys.taken(taken, effect)
            self.outbox.hurry(event.now, group_id=effect.group_id)  # waiting for the key
            return self._on_tick(event.now)
        if isinstance(effect, _Queued):
            return self._queued(effect, event.now)
        if isinstance(effect, _Accepted):
            return self._accepted(effect, event.now)
        if isinstance(effect, _Dropped):
            item = self.outbox.remove(effect.message_hash)
            origin = effect.message_hash if item is None else item.origin
            # The messages that followed it are written again at once (§6 "One author's order").
            return [Abandoned(effect.group_id, origin, effect.reason), *self._on_tick(event.now)]
        if isinstance(effect, _Cancelled):
            # The attempt goes too, so a vote arriving later finds nothing to complete.
            self._attempts.pop(effect.message_hash, None)
            cancelled = self.outbox.remove(effect.message_hash)
            if cancelled is None:
                return []
            return [
                Abandoned(effect.group_id, cancelled.origin, CANCELLED),
                *self._on_tick(event.now),
            ]
        if isinstance(effect, _Voted | _BatchVoted):
            for voted in effect.votes if isinstance(effect, _BatchVoted) else (effect,):
                view = self._groups.get(voted.group_id)
                if (
                    view is not None
                    and voted.pending is not None
                    and not view.has(voted.message_hash)
                ):
                    view.pending[voted.message_hash] = voted.pending
            return []  # the vote itself lives in the store only
        if isinstance(effect, _Expired):
            expired = self._groups.get(effect.group_id)
            if expired is not None:
                for message_hash in effect.message_hashes:
                    expired.pending.pop(message_hash, None)
                    expired.close.forget(message_hash)
            return []
        return []
