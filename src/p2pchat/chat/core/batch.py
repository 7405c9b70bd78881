"""A ratifier's decision on a batch of vote requests (``mratb``, specs/chat.md §21), sans-IO.

The packets of a batch are checked in order, each as ``mrat`` would check it (§6, §14), except
that a message accepted earlier in the same batch counts as a held parent (with its time stamp)
and against its author's quota. Every packet accepted goes into ONE transaction with our votes,
and the votes share ONE signature: over the Merkle root of the accepted messages' hashes in
batch order and their number (:func:`~.certificate.make_batch_votes`; a batch that accepts one
message gets a plain vote). Roster messages are never batched: one in a batch of several is
refused ``"malformed"`` (it goes by ``mrat``, its closing vote single).

Idempotence (answering again what was answered) is the caller's: it answers a packet we already
voted for with the vote the store holds, and leaves it out of the batch decided here.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ...identity import KeyPair, PeerID
from .certificate import MAX_BATCH, make_batch_votes, make_vote
from .engine_records import EngineConfig, _BatchVoted, _Voted
from .events import Commit, NeedParents, Refused
from .packet import Packet, Vote
from .roster_update import ROSTER_MESSAGE_TYPE
from .txn import Operation, PutPacket, Transaction
from .view import GroupView
from .voting import Overlay, Screened, screen_vote, vote_row

__all__ = ["MAX_BATCH", "BatchDecision", "decide_batch"]


@attrs.frozen
class BatchDecision:
    """Per packet, our vote or the reason we refuse it (in the batch's order); the commit that
    holds the packets accepted and their votes (None when none is); and the parents missing
    for the packets refused ``"missing parents"`` (worth fetching from the author once)."""

    outcomes: tuple[Vote | str, ...]
    commit: Commit | None
    missing: tuple[bytes, ...] = ()


def decide_batch(
    identity: KeyPair,
    config: EngineConfig,
    view: GroupView,
    packets: Sequence[Packet],
    querier: PeerID,
    now: int,
) -> BatchDecision:
    """Decide a batch of packets of ``view``'s group (see the module's docstring).

    The decisions are noted at once in ``view.close`` (§14), as for a single vote.

    Raises:
        ValueError: more than :data:`MAX_BATCH` packets, or none.
    """
    if not 1 <= len(packets) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1..{MAX_BATCH} packets, not {len(packets)}")
    overlay = Overlay()
    outcomes: list[Screened | str] = []
    missing: list[bytes] = []
    accepted: list[Packet] = []
    for packet in packets:
        if packet.message.message_type == ROSTER_MESSAGE_TYPE and len(packets) > 1:
            outcomes.append("malformed")  # §21: roster messages are never batched
            continue
        if packet.message_hash in overlay.times:
            outcomes.append("malformed")  # the same message twice in one batch
            continue
        screened = screen_vote(identity, config, view, packet, querier, now, overlay)
        if isinstance(screened, NeedParents):
            missing += [h for h in screened.hashes if h not in missing]
            outcomes.append("missing parents")
            continue
        if isinstance(screened, Refused):
            outcomes.append(screened.reason)
            continue
        outcomes.append(screened)
        accepted.append(packet)
        overlay.times[packet.message_hash] = packet.message.time_stamp
        if screened.pending is not None:
            overlay.count += 1
            overlay.size += screened.pending.size
    if not accepted:
        return BatchDecision(tuple(str(o) for o in outcomes), None, tuple(missing))
    epoch = view.state.current_epoch
    if len(accepted) == 1 and accepted[0].message.message_type == ROSTER_MESSAGE_TYPE:
        # A batch of one roster message: its closing vote, as ``mrat`` gives it.
        only = next(o for o in outcomes if isinstance(o, Screened))
        votes: tuple[Vote, ...] = (
            make_vote(identity, view.group_id, epoch, accepted[0].message_hash, only.close),
        )
    else:
        votes = make_batch_votes(identity, view.group_id, epoch, [p.message_hash for p in accepted])
    operations: list[Operation] = []
    effects: list[_Voted] = []
    result: list[Vote | str] = []
    by_hash = dict(zip((p.message_hash for p in accepted), votes, strict=True))
    for packet, outcome in zip(packets, outcomes, strict=True):
        if not isinstance(outcome, Screened):
            result.append(outcome)
            continue
        vote = by_hash[packet.message_hash]
        is_roster = packet.message.message_type == ROSTER_MESSAGE_TYPE
        view.close.note_vote(packet.message_hash, packet.message.epoch, roster=is_roster)
        operations += [PutPacket(packet, received_at=now), vote_row(view, packet, vote)]
        effects.append(_Voted(view.group_id, packet.message_hash, outcome.pending))
        result.append(vote)
    commit = Commit(Transaction(tuple(operations)), _BatchVoted(tuple(effects)))
    return BatchDecision(tuple(result), commit, tuple(missing))
