"""Our messages in flight, for :class:`~.engine.ChatEngine` (specs/chat.md §6, §9a, §21): queue a
message with its outbox entry, start an attempt (ask every ratifier of its epoch for a vote),
collect the votes, certify what has a quorum (in its author's order), back off an attempt that
ended without one, write a message again in a new epoch or order, drop or cancel one.

Sans-IO like the engine: every method returns the actions that follow; what is stored comes
back as a ``Commit`` whose effect the engine applies once committed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from ...errors import ProtocolError
from .author import rewrite_message
from .engine_records import (
    Attempt,
    _Cancelled,
    _Dropped,
    _Queued,
)
from .engine_state import EngineState
from .events import (
    Action,
    AskVote,
    Commit,
    LearnRoster,
    Publish,
    VoteAnswered,
)
from .outbox import QueuedMessage
from .packet import Packet
from .quorum import QuorumCollector
from .txn import OutboxDone, PutPacket, Transaction
from .view import ChatError, GroupView

#: The engine's logger: these are its records.
logger = logging.getLogger("p2pchat.chat.core.engine")

ROSTER: Final = "roster"
#: ``cancel``'s answers for a message it cannot withdraw.
TOO_LATE: Final = "already ratified: too late to cancel"
NOT_QUEUED: Final = "no such message in the outbox"
#: §14: a ratifier that voted for a roster change has closed its epoch; withdrawing the change
#: would leave that ratifier closed for good.
ROSTER_STAYS: Final = (
    "a roster change cannot be cancelled: the ratifiers that voted for it have closed the epoch"
)
#: The reason a cancelled message's ``send`` is told.
CANCELLED: Final = "cancelled"
#: specs/artifacts.md §6: a ratifier still fetching our artifact holds each request until it
#: holds it or for its vote_wait, so we ask again this soon (ms) rather than backing off: its
#: vote follows its custody by at most this much.
FETCHING: Final = "fetching artifact"
FETCHING_RETRY: Final = 250
MISSING: Final = "missing parents"
#: specs/chat.md §6 "Quotas": a ratifier's quota also counts our messages certified but not yet
#: delivered to it, so "over quota" is asked again after FETCHING_RETRY for the first
#: OVER_QUOTA_SOON failures of a message (its certified messages arrive meanwhile), then backs off.
OVER_QUOTA: Final = "over quota"
OVER_QUOTA_SOON: Final = 3


class OwnMessages(EngineState):
    """The outbox and attempt machinery; mixed into :class:`~.engine.ChatEngine`, which sets
    these attributes and handles the events."""

    if TYPE_CHECKING:

        def _on_tick(self, now: int) -> list[Action]: ...

        def _accept(
            self, view: GroupView, packet: Packet, now: int, *, deliver: bool
        ) -> Commit: ...

    def cancel(self, message_hash: bytes) -> Commit:
        """Withdraw one of our queued messages (by its hash, or the hash it was first written
        under): it leaves the outbox, its pending row stays (specs/chat.md §9a).

        Raises:
            ChatError: the message is already ratified (or its certificate is being committed),
                is a roster change (§14), or is not in the outbox.
        """
        item = self.outbox.get(message_hash)
        if item is None:
            item = next((i for i in self.outbox if i.origin == message_hash), None)
        if item is None:
            if any(v.has(message_hash) for v in self._groups.values()):
                raise ChatError(TOO_LATE)
            raise ChatError(NOT_QUEUED)
        attempt = self._attempts.get(item.message_hash)
        if attempt is not None and attempt.certifying:
            raise ChatError(TOO_LATE)
        if item.packet.message.message_type == ROSTER:
            raise ChatError(ROSTER_STAYS)
        txn = Transaction((OutboxDone(item.group_id, item.message_hash),))
        return Commit(txn, _Cancelled(item.group_id, item.message_hash))

    def _on_vote(self, event: VoteAnswered) -> list[Action]:
        attempt = self._attempts.get(event.message_hash)
        if attempt is None or event.ratifier not in attempt.waiting:
            return []
        attempt.waiting.discard(event.ratifier)
        if event.vote is not None:
            attempt.collector.add_vote(event.vote)
        else:
            attempt.refusals[event.ratifier] = event.reason or "no answer"
            # "unknown group" from a ratifier of our roster: it no longer counts us a member
            # (we missed our removal, §8), and pkt will show us the chain up to it.
            if (
                event.reason in ("stale epoch", "unknown group")
                and attempt.stale_from is None
                and event.ratifier != self.peer_id  # we know our own roster
            ):
                attempt.stale_from = event.ratifier
        if attempt.certifying or attempt.ready:
            return []
        if attempt.collector.certificate is not None:
            attempt.ready = True
            return self._certify_ready(event.now)
        if not attempt.waiting:
            return self._attempt_over(event.message_hash, event.now)
        return []

    def _certify_ready(self, now: int) -> list[Action]:
        """Commit the certificates whose quorum is in and whose parents of ours are certified or
        being certified (a chain's votes come together, §21; each is committed after, or with,
        the one it follows, in order). One whose parent left the outbox uncertified is tried
        again, to be written anew."""
        actions: list[Action] = []
        # Certified here, committed together in this order: a parent certified by an earlier
        # step may still be committing, and its delivery must go first.
        now_certifying: set[bytes] = set()
        for message_hash, attempt in list(self._attempts.items()):
            certificate = attempt.collector.certificate
            if not attempt.ready or attempt.certifying or certificate is None:
                continue
            view = self._groups[attempt.group_id]
            parents = attempt.packet.message.parents
            if any(p in self.outbox and p not in now_certifying for p in parents):
                continue
            if not all(view.has(p) or p in now_certifying for p in parents):
                del self._attempts[message_hash]
                self.outbox.release(message_hash)
                continue
            now_certifying.add(message_hash)
            attempt.certifying = True
            certified = attempt.packet.with_certificate(certificate)
            actions.append(self._accept(view, certified, now, deliver=True))
        return actions

    # -- our messages --------------------------------------------------------------------------

    def _queue(
        self,
        view: GroupView,
        packet: Packet,
        now: int,
        *,
        origin: bytes | None = None,
        replaces: QueuedMessage | None = None,
    ) -> Commit:
        operations: list[PutPacket | OutboxDone] = []
        if replaces is not None:
            operations.append(OutboxDone(view.group_id, replaces.message_hash))
            rank = replaces.rank
        else:
            rank = self.outbox.next_rank(view.group_id, now)
            written = self._written.get(view.group_id)
            if written is not None:
                rank = max(rank, written[1] + 1)
            self._written[view.group_id] = (packet.message_hash, rank)
        operations.append(PutPacket(packet, received_at=now, outbox_at=now, outbox_rank=rank))
        effect = _Queued(
            view.group_id,
            packet,
            packet.message_hash if origin is None else origin,
            rank,
            None if replaces is None else replaces.message_hash,
        )
        return Commit(Transaction(tuple(operations)), effect)

    def _follows(self, group_id: bytes, chain: bool) -> bytes | None:
        """The message our next one of ``group_id`` follows: with ``chain``, the last written,
        committed or not (§21 "Writing in groups"); else the outbox's last."""
        written = self._written.get(group_id) if chain else None
        if written is not None:
            return written[0]
        tail = self.outbox.tail(group_id)
        return None if tail is None else tail.message_hash

    def forget_written(self, group_id: bytes) -> None:
        """What we wrote last in ``group_id`` was not committed: the next message follows
        the outbox's last."""
        self._written.pop(group_id, None)

    def _queued(self, effect: _Queued, now: int) -> list[Action]:
        written = self._written.get(effect.group_id)
        if written is not None and written[0] == effect.packet.message_hash:
            del self._written[effect.group_id]
        if effect.replaces is not None:
            self.outbox.remove(effect.replaces)
        view = self._groups.get(effect.group_id)
        if view is None or view.has(effect.packet.message_hash):
            return []
        self.outbox.add(
            effect.group_id, effect.packet, origin=effect.origin, now=now, rank=effect.rank
        )
        return [Publish(effect.group_id, effect.packet, ratified=False), *self._on_tick(now)]

    def _reauthor(self, view: GroupView, item: QueuedMessage, now: int) -> list[Action]:
        """A queued message of an epoch that has closed, or out of its author's order (§6
        "One author's order"): write its content again, now, after its predecessor."""
        packet = item.packet
        message = packet.message
        if self.keys.waiting(view.group_id) and message.message_type != ROSTER:
            self.outbox.failed(item.message_hash, now)  # §20: written again once our key is in
            return []
        key = view.epoch_keys.get(message.epoch)
        fresh: Packet | None = None
        reason = ""
        before = self.outbox.predecessor(item)
        if message.message_type == ROSTER:
            reason = "the roster changed before this roster change was ratified"
        elif key is None:
            reason = f"no key for epoch {message.epoch} to write the message again"
        else:
            try:
                fresh = rewrite_message(
                    self.identity,
                    view,
                    packet,
                    key,
                    now,
                    after=None if before is None else before.message_hash,
                )
            except (ProtocolError, ChatError) as exc:
                reason = f"cannot write the message again: {exc}"
        if fresh is None:
            return self._drop(view, packet, reason)
        return [self._queue(view, fresh, now, origin=item.origin, replaces=item)]

    def _drop(self, view: GroupView, packet: Packet, reason: str) -> list[Action]:
        """A queued message that will not be sent: it leaves the outbox (its row stays)."""
        logger.warning("a queued message is dropped: %s", reason)
        txn = Transaction((OutboxDone(view.group_id, packet.message_hash),))
        return [Commit(txn, _Dropped(view.group_id, packet.message_hash, reason))]

    def _start_attempt(self, view: GroupView, packet: Packet, now: int) -> list[Action]:
        epoch = packet.message.epoch
        roster = view.state.roster(epoch)
        collector = QuorumCollector(
            view.group_id,
            epoch,
            packet.message_hash,
            roster,
            closing=packet.message.message_type == ROSTER,
        )
        ratifiers = sorted(roster.ratifiers)
        self._attempts[packet.message_hash] = Attempt(
            view.group_id, packet, collector, set(ratifiers), now + self.config.attempt_timeout
        )
        return [AskVote(view.group_id, packet, ratifier) for ratifier in ratifiers]

    def _attempt_over(self, message_hash: bytes, now: int) -> list[Action]:
        """An attempt ended without a quorum: back off, and learn a later roster if a ratifier
        refused the message as stale."""
        attempt = self._attempts.pop(message_hash)
        # Back off either way; learning a later roster makes the message due again at once.
        # A ratifier still fetching our artifact, or missing a parent we are certifying (a
        # chain in flight, §21), will take it soon; one over quota, a few times, too.
        reasons = set(attempt.refusals.values())
        item = self.outbox.get(message_hash)
        failures = item.failures if item is not None else 0
        quota = OVER_QUOTA in reasons and failures < OVER_QUOTA_SOON
        soon = FETCHING_RETRY if quota or {FETCHING, MISSING} & reasons else None
        self.outbox.failed(message_hash, now, soon=soon)
        if attempt.stale_from is not None:
            return [LearnRoster(attempt.group_id, attempt.stale_from)]
        return []
