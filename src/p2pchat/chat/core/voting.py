"""A ratifier's decision on a vote request (``mrat``, specs/chat.md §6, §14), sans-IO.

:func:`decide_vote` runs the §6 checks, the author's pending quota, and the closing rules of
§14: once we have voted for the roster message closing the current epoch we vote for no other
message of it, and our vote on a roster message carries our closing commitment. It returns the
commit (packet + vote) the caller makes before answering, or why not.
"""

from __future__ import annotations

import logging

import attrs

from ...identity import KeyPair, PeerID
from . import cbor
from .commitment import CloseCommitment
from .engine_records import EngineConfig, _Expired, _Voted
from .events import Commit, NeedParents, Refused
from .packet import Packet, Vote, make_vote
from .roster import Role
from .roster_update import ROSTER_MESSAGE_TYPE
from .txn import DropPending, PutPacket, PutVote, Transaction
from .validate import check_for_ratification
from .view import GroupView, PendingVote

logger = logging.getLogger(__name__)


def counts_as_pending(packet: Packet, me: PeerID) -> bool:
    """Another author's non-roster message: quota and expiry apply (our own pending messages
    are our outbox's, and a roster message has one vote per epoch at most)."""
    message = packet.message
    return message.author != me and message.message_type != ROSTER_MESSAGE_TYPE


@attrs.frozen
class Screened:
    """A packet that passed the checks: its pending-quota entry (another author's non-roster
    message) and, for a roster message, our closing commitment."""

    pending: PendingVote | None
    close: CloseCommitment | None


@attrs.define
class Overlay:
    """What a batch has accepted before the packet being checked (§21): those messages count
    as held parents, with their time stamps, and against their author's quota."""

    times: dict[bytes, int] = attrs.Factory(dict)
    count: int = 0
    size: int = 0


def pending_parent(view: GroupView, message_hash: bytes, author: PeerID, me: PeerID) -> bool:
    """Whether ``message_hash`` is a message of ``author`` we voted for and hold pending
    (§21): a later message of the same author's chain may name it before it is certified."""
    pending = view.pending.get(message_hash)
    if pending is not None:
        return pending.author == author
    return author == me and message_hash in view.close.voted


def screen_vote(
    identity: KeyPair,
    config: EngineConfig,
    view: GroupView,
    packet: Packet,
    querier: PeerID,
    now: int,
    overlay: Overlay | None = None,
) -> Screened | Refused | NeedParents:
    """The §6 checks, the author's pending quota and the closing rules of §14 for a vote on
    ``packet``, without deciding it. ``overlay``: what the same batch accepted before it."""
    state = view.state
    me = identity.peer_id
    if state.role(me, state.current_epoch) is not Role.RATIFIER:
        return Refused("not allowed")  # only ratifiers vote
    message = packet.message
    is_roster = message.message_type == ROSTER_MESSAGE_TYPE
    closing = view.close.closing_vote(state.current_epoch)
    if closing is not None and message.epoch == state.current_epoch and not is_roster:
        return Refused("stale epoch")  # §14: we closed this epoch
    extra = overlay if overlay is not None else Overlay()

    def have(h: bytes) -> bool:
        return view.has(h) or h in extra.times or pending_parent(view, h, message.author, me)

    def time_of(h: bytes) -> int | None:
        held = view.time_of(h)
        return held if held is not None else extra.times.get(h)

    reason = check_for_ratification(
        packet,
        state,
        now_ms=now,
        have=have,
        time_of=time_of,
        holds_any=bool(view.ratified),
        author_latest=view.latest.get((message.epoch, message.author)),
        ref_of=view.ref_of,
    )
    if reason == "missing parents" and querier != me:
        return NeedParents(tuple(h for h in message.parents if not have(h)))
    if reason is not None:
        return Refused(reason)
    if is_roster and closing is not None and closing != packet.message_hash:
        return Refused("not allowed")  # one roster message per epoch (§6)
    pending: PendingVote | None = None
    if counts_as_pending(packet, me) and packet.message_hash not in view.pending:
        size = len(packet.encode())
        count, held = view.pending_of(message.author)
        count, held = count + extra.count, held + extra.size
        if count + 1 > config.pending_max_count or held + size > config.pending_max_bytes:
            return Refused("over quota")
        pending = PendingVote(message.author, size, now)
    close = None
    if is_roster:
        close = view.close.commitment(message.epoch, view.heads.all(), view.ratified)
        if close is None:
            logger.warning("cannot close epoch %d: too many heads or pending votes", message.epoch)
            return Refused("over quota")
    return Screened(pending, close)


def decide_vote(
    identity: KeyPair,
    config: EngineConfig,
    view: GroupView,
    packet: Packet,
    querier: PeerID,
    now: int,
) -> Commit | Refused | NeedParents:
    """``mrat`` at a ratifier: the commit holding ``packet`` and our vote, or a refusal.

    The decision is noted at once in ``view.close`` (§14: a vote decided after our closing
    vote must not escape its commitment, even before either is committed).
    """
    screened = screen_vote(identity, config, view, packet, querier, now)
    if not isinstance(screened, Screened):
        return screened
    message = packet.message
    is_roster = message.message_type == ROSTER_MESSAGE_TYPE
    vote = make_vote(identity, view.group_id, message.epoch, packet.message_hash, screened.close)
    view.close.note_vote(packet.message_hash, message.epoch, roster=is_roster)
    txn = Transaction((PutPacket(packet, received_at=now), vote_row(view, packet, vote)))
    return Commit(txn, _Voted(view.group_id, packet.message_hash, screened.pending))


def vote_row(view: GroupView, packet: Packet, vote: Vote) -> PutVote:
    """The store row of our ``vote`` for ``packet``."""
    message = packet.message
    return PutVote(
        view.group_id,
        packet.message_hash,
        message.epoch,
        cbor.dumps(vote.to_cbor()),
        roster=message.message_type == ROSTER_MESSAGE_TYPE,
    )


def expire_pending(view: GroupView, ttl: int, now: int) -> Commit | None:
    """The commit deleting ``view``'s pending messages of others not certified within ``ttl``
    (§6 "Quotas"), or None when none is due."""
    stale = tuple(sorted(h for h, p in view.pending.items() if p.received_at + ttl <= now))
    if not stale:
        return None
    return Commit(Transaction((DropPending(view.group_id, stale),)), _Expired(view.group_id, stale))
