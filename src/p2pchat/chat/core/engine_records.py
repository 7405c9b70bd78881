"""The group engine's records: its policy, the effects a commit applies, and an attempt at
ratification; and the read-only view of the outbox (sans-IO, chat/core/engine.py)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ...identity import PeerID
from .events import Effect
from .outbox import Outbox, OutboxView, Refusal
from .packet import Packet
from .quorum import QuorumCollector
from .view import GroupView, PendingVote


@attrs.frozen
class EngineConfig:
    """The engine's policy; every time is in milliseconds."""

    retry_initial: int = 1_000
    retry_max: int = 30_000
    #: A ratification attempt without a quorum after this long has failed.
    attempt_timeout: int = 12_000
    #: How often to compare heads with every connected member.
    sync_interval: int = 30_000
    #: Attempts of queued messages in flight at once (specs/chat.md §21): half a ratifier's
    #: pending quota of an author (64), which also counts what is certified but not yet
    #: delivered to it.
    outbox_concurrency: int = 32
    #: §6 "Quotas": another author's messages a ratifier holds pending (voted, not certified),
    #: per author and group, in count and in encoded bytes.
    pending_max_count: int = 64
    pending_max_bytes: int = 4 * 1024 * 1024
    #: A pending message of another author not certified within this long is deleted.
    pending_ttl: int = 24 * 60 * 60 * 1000


# -- effects: what a commit changes in memory -----------------------------------------------------


@attrs.frozen
class _GroupAdded(Effect):
    view: GroupView


@attrs.frozen
class _Accepted(Effect):
    group_id: bytes
    packet: Packet
    keys: dict[int, bytes]
    deliver: bool


@attrs.frozen
class _Queued(Effect):
    group_id: bytes
    packet: Packet
    origin: bytes
    #: Its place in our order of the group's messages (``Outbox`` rank).
    rank: int
    replaces: bytes | None = None


@attrs.frozen
class _Voted(Effect):
    group_id: bytes
    message_hash: bytes
    #: Counted against its author's quota (another author's non-roster message).
    pending: PendingVote | None = None


@attrs.frozen
class _BatchVoted(Effect):
    """The votes of one batch (§21), committed together."""

    votes: tuple[_Voted, ...]


@attrs.frozen
class _Expired(Effect):
    group_id: bytes
    message_hashes: tuple[bytes, ...]


@attrs.frozen
class _Dropped(Effect):
    group_id: bytes
    message_hash: bytes
    reason: str


@attrs.frozen
class _Cancelled(Effect):
    group_id: bytes
    message_hash: bytes


@attrs.define
class Attempt:
    """One round of asking the ratifiers of an epoch for votes on one of our messages."""

    group_id: bytes
    packet: Packet
    collector: QuorumCollector
    waiting: set[PeerID]
    deadline: int
    stale_from: PeerID | None = None
    certifying: bool = False
    #: The quorum is in, but a parent of ours is not yet certified: the certificate is
    #: committed right after that parent's (specs/chat.md §21).
    ready: bool = False
    #: The ratifiers that refused to vote in this attempt, with their reasons.
    refusals: dict[PeerID, str] = attrs.field(factory=dict)


def outbox_snapshot(
    outbox: Outbox, attempts: Mapping[bytes, Attempt], now: int, group_id: bytes | None = None
) -> list[OutboxView]:
    """Our queued messages (of ``group_id``, or all), in the order we wrote them: their
    schedule and, for an attempt in flight, which ratifiers voted, refused or have not
    answered."""
    views: list[OutboxView] = []
    for item in sorted(outbox, key=lambda i: (i.rank, i.message_hash)):
        if group_id is not None and item.group_id != group_id:
            continue
        written = item.packet.message.time_stamp
        attempt = attempts.get(item.message_hash)
        voted: tuple[PeerID, ...] = ()
        refused: tuple[Refusal, ...] = ()
        waiting: tuple[PeerID, ...] = ()
        if attempt is not None:
            voted = tuple(sorted(v.ratifier for v in attempt.collector.votes))
            refused = tuple(Refusal(p, r) for p, r in sorted(attempt.refusals.items()))
            waiting = tuple(sorted(attempt.waiting))
        views.append(
            OutboxView(
                group_id=item.group_id,
                message_hash=item.message_hash,
                origin=item.origin,
                written_at=written,
                age=max(0, now - written),
                failures=item.failures,
                in_flight=item.in_flight,
                next_at=None if item.in_flight else item.next_at,
                voted=voted,
                refused=refused,
                waiting=waiting,
            )
        )
    return views
