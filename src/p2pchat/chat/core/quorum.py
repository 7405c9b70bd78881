"""Certificates: checking them and collecting the votes that make one (specs/chat.md §6).

Theory of operation
-------------------

A vote is a ratifier's Ed25519 signature over ``"p2pchat/ratify/v1" || group_id || u64(epoch) ||
message_hash``. A :class:`~p2pchat.chat.core.packet.Certificate` names its epoch; it is valid for a
message when at least ``quorum`` of its votes come from distinct ratifiers of that epoch's roster
and verify. Votes that do not count (non-ratifiers, bad signatures, a ratifier's second vote) are
skipped rather than fatal, as §6 requires of a receiver.

:class:`QuorumCollector` is the author's side: one collector per (message, epoch). The author
feeds it each vote from an ``mratR`` with :meth:`~QuorumCollector.add_vote`, which says what
became of the vote (:class:`VoteOutcome`), and reads :attr:`~QuorumCollector.certificate` once
the quorum is reached.

Stale-epoch votes. A vote does not carry its epoch; the epoch is inside what it signs. A ratifier
whose current epoch differs from the message's refuses with ``"stale epoch"`` / ``"future epoch"``
instead of voting, and a vote it signed for any other epoch fails verification against the
collector's epoch (:attr:`VoteOutcome.INVALID_SIGNATURE`). When the transport reports the epoch a
vote was cast in (the ``epoch`` argument of :meth:`~QuorumCollector.add_vote`), a mismatch is
refused as :attr:`VoteOutcome.WRONG_EPOCH` without spending a signature check.

Closing votes (§14). A roster message closes its epoch, and the votes that certify it are
*closing* votes: each carries the ratifier's commitment to what it voted for in that epoch and
signs it. For a roster message (``closing=True``) only closing votes count; for any other message
only plain votes count, so neither kind can stand in for the other.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs

from ...errors import DecodeError
from .packet import Certificate, Vote, verify_vote

if TYPE_CHECKING:
    from ...identity import PeerID
    from .roster import Roster

__all__ = ["QuorumCollector", "VoteOutcome", "counted_votes", "verify_certificate"]


def _vote_ok(vote: Vote, group_id: bytes, epoch: int, message_hash: bytes) -> bool:
    try:
        return verify_vote(vote, group_id, epoch, message_hash)
    except DecodeError:  # a peer id built without validation; never from the wire
        return False


def counted_votes(
    certificate: Certificate,
    roster: Roster,
    group_id: bytes,
    message_hash: bytes,
    *,
    closing: bool = False,
    stop_at_quorum: bool = True,
) -> list[Vote]:
    """The votes of ``certificate`` that count (§6): of distinct ratifiers of ``roster``, of
    the right kind (closing votes for a roster message, ``closing``; plain votes otherwise) and
    with a valid signature. Stops at the quorum unless ``stop_at_quorum`` is False."""
    if certificate.epoch != roster.epoch:
        return []
    ratifiers = roster.ratifiers
    counted: dict[PeerID, Vote] = {}
    for vote in certificate.votes:
        if vote.ratifier in counted or vote.ratifier not in ratifiers:
            continue
        if (vote.close is not None) != closing:
            continue
        if _vote_ok(vote, group_id, roster.epoch, message_hash):
            counted[vote.ratifier] = vote
            if stop_at_quorum and len(counted) >= roster.quorum:
                break
    return list(counted.values())


def verify_certificate(
    certificate: Certificate,
    roster: Roster,
    group_id: bytes,
    message_hash: bytes,
    *,
    closing: bool = False,
) -> bool:
    """True if ``certificate`` certifies ``message_hash`` under ``roster`` (§6).

    The certificate's epoch must be the roster's, and at least ``roster.quorum`` distinct
    ratifiers of the roster must have a valid vote in it, of the kind the message needs
    (``closing`` for a roster message, §14). Other votes are ignored. Checking stops as soon as
    the quorum is reached.
    """
    votes = counted_votes(certificate, roster, group_id, message_hash, closing=closing)
    return len(votes) >= roster.quorum


class VoteOutcome(enum.Enum):
    """What :meth:`QuorumCollector.add_vote` did with a vote."""

    #: A new valid vote from a ratifier; it counts towards the quorum.
    COUNTED = "counted"
    #: This ratifier's vote is already counted (voting is idempotent); nothing changed.
    DUPLICATE = "duplicate"
    #: The signature does not verify for this group, epoch and message.
    INVALID_SIGNATURE = "invalid signature"
    #: The voter is not a ratifier of the collector's roster.
    NOT_RATIFIER = "not a ratifier"
    #: The vote was reported as cast in another epoch.
    WRONG_EPOCH = "wrong epoch"
    #: A plain vote on a roster message, or a closing vote on another message (§14).
    WRONG_KIND = "wrong kind of vote"

    @property
    def counts(self) -> bool:
        """True for :attr:`COUNTED`."""
        return self is VoteOutcome.COUNTED


@attrs.define
class QuorumCollector:
    """Collects the votes for one message in one epoch until they make a certificate.

    The certificate is fixed when the quorum is reached: it holds the first ``quorum`` counted
    votes, sorted by ratifier, and later valid votes are counted (``COUNTED``) but do not change
    it.

    Raises:
        ValueError: ``epoch`` is not ``roster.epoch``.
    """

    group_id: bytes
    epoch: int
    message_hash: bytes
    roster: Roster
    #: A roster message: only closing votes count (§14).
    closing: bool = False
    _votes: dict[PeerID, Vote] = attrs.field(init=False, factory=dict)
    _certificate: Certificate | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.epoch != self.roster.epoch:
            raise ValueError(
                f"collector epoch {self.epoch} is not roster epoch {self.roster.epoch}"
            )

    def add_vote(self, vote: Vote, *, epoch: int | None = None) -> VoteOutcome:
        """Check ``vote`` and count it if it is a new, valid ratifier vote.

        ``epoch`` is the epoch the voter reported with the vote, when the transport carries one;
        a vote signed for another epoch is refused as ``INVALID_SIGNATURE`` in any case. Checks,
        in order: reported epoch, ratifier, already counted, signature.
        """
        if epoch is not None and epoch != self.epoch:
            return VoteOutcome.WRONG_EPOCH
        role = self.roster.role_of(vote.ratifier)
        if role is None or not role.can_ratify:
            return VoteOutcome.NOT_RATIFIER
        if vote.ratifier in self._votes:
            return VoteOutcome.DUPLICATE
        if (vote.close is not None) != self.closing:
            return VoteOutcome.WRONG_KIND
        if not _vote_ok(vote, self.group_id, self.epoch, self.message_hash):
            return VoteOutcome.INVALID_SIGNATURE
        self._votes[vote.ratifier] = vote
        if self._certificate is None and len(self._votes) >= self.roster.quorum:
            ordered = sorted(self._votes.values(), key=lambda v: v.ratifier.to_bytes())
            self._certificate = Certificate(self.epoch, tuple(ordered))
        return VoteOutcome.COUNTED

    @property
    def certificate(self) -> Certificate | None:
        """The certificate once the quorum is reached, else None. Stable once set."""
        return self._certificate

    @property
    def votes(self) -> tuple[Vote, ...]:
        """Every counted vote, in arrival order."""
        return tuple(self._votes.values())

    @property
    def votes_needed(self) -> int:
        """How many more counted votes the quorum needs (0 once reached)."""
        return max(0, self.roster.quorum - len(self._votes))

    @property
    def waiting_for(self) -> frozenset[PeerID]:
        """The ratifiers whose vote is not yet counted (the ones worth asking again)."""
        return self.roster.ratifiers - self._votes.keys()
