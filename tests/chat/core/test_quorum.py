"""Certificates and vote collection (specs/chat.md §6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.core.groups import Group, key, make_group, member
from p2pchat.chat.core.packet import Certificate, Vote, make_vote, sha256
from p2pchat.chat.core.quorum import QuorumCollector, VoteOutcome, verify_certificate
from p2pchat.chat.core.roster import Role, Roster

MESSAGE = sha256(b"a message")
OTHER = sha256(b"another message")


def _roster(group: Group) -> Roster:
    return group.signed.genesis.roster


def _votes(group: Group, *voters: int, message_hash: bytes = MESSAGE, epoch: int = 0) -> list[Vote]:
    return [make_vote(group.ratifiers[i], group.group_id, epoch, message_hash) for i in voters]


def _cert(votes: list[Vote], epoch: int = 0) -> Certificate:
    return Certificate(epoch, tuple(votes))


GROUP = make_group()  # quorum 2 of 3 ratifiers


@pytest.mark.parametrize(
    ("voters", "valid"),
    [
        ((0, 1), True),
        ((1, 2), True),
        ((0, 1, 2), True),
        ((0,), False),
        ((), False),
        ((1, 1), False),  # a ratifier's second vote does not count
    ],
)
def test_verify_certificate_counts_distinct_ratifiers(voters: tuple[int, ...], valid: bool) -> None:
    cert = _cert(_votes(GROUP, *voters))
    assert verify_certificate(cert, _roster(GROUP), GROUP.group_id, MESSAGE) is valid


def test_verify_certificate_ignores_votes_that_do_not_count() -> None:
    group_id, roster = GROUP.group_id, _roster(GROUP)
    user_vote = make_vote(GROUP.user, group_id, 0, MESSAGE)
    outsider_vote = make_vote(GROUP.outsider, group_id, 0, MESSAGE)
    (good,) = _votes(GROUP, 0)
    (other_message,) = _votes(GROUP, 1, message_hash=OTHER)
    (other_epoch,) = _votes(GROUP, 2, epoch=1)
    forged = Vote(GROUP.ratifiers[1].peer_id, bytes(64))
    junk = [user_vote, outsider_vote, other_message, other_epoch, forged]
    assert not verify_certificate(_cert([good, *junk]), roster, group_id, MESSAGE)
    # Junk alongside a quorum of good votes does not spoil the certificate.
    (second,) = _votes(GROUP, 2)
    assert verify_certificate(_cert([*junk, good, second]), roster, group_id, MESSAGE)


def test_verify_certificate_binds_epoch_message_and_group() -> None:
    roster = _roster(GROUP)
    cert = _cert(_votes(GROUP, 0, 1))
    assert verify_certificate(cert, roster, GROUP.group_id, MESSAGE)
    assert not verify_certificate(cert, roster, GROUP.group_id, OTHER)
    assert not verify_certificate(cert, roster, sha256(b"other group"), MESSAGE)
    relabelled = Certificate(1, cert.votes)
    assert not verify_certificate(relabelled, roster, GROUP.group_id, MESSAGE)
    later = Roster(1, roster.members, roster.quorum)
    signed_for_1 = _cert(_votes(GROUP, 0, 1, epoch=1), epoch=1)
    assert verify_certificate(signed_for_1, later, GROUP.group_id, MESSAGE)
    assert not verify_certificate(cert, later, GROUP.group_id, MESSAGE)


def test_verify_certificate_uses_the_roster_quorum() -> None:
    strict = make_group(quorum=3)
    cert = _cert(_votes(strict, 0, 1))
    assert not verify_certificate(cert, _roster(strict), strict.group_id, MESSAGE)
    cert = _cert(_votes(strict, 0, 1, 2))
    assert verify_certificate(cert, _roster(strict), strict.group_id, MESSAGE)


def _collector(group: Group = GROUP) -> QuorumCollector:
    return QuorumCollector(group.group_id, 0, MESSAGE, _roster(group))


def test_collector_reaches_quorum() -> None:
    collector = _collector()
    first, second, third = _votes(GROUP, 2, 0, 1)
    assert collector.votes_needed == 2
    assert collector.certificate is None
    assert collector.waiting_for == _roster(GROUP).ratifiers
    assert collector.add_vote(first) is VoteOutcome.COUNTED
    assert collector.votes_needed == 1
    assert collector.certificate is None
    assert collector.add_vote(second, epoch=0) is VoteOutcome.COUNTED
    assert collector.votes_needed == 0
    cert = collector.certificate
    assert cert is not None
    assert cert.epoch == 0
    assert [v.ratifier.to_bytes() for v in cert.votes] == sorted(
        v.ratifier.to_bytes() for v in (first, second)
    )
    assert verify_certificate(cert, _roster(GROUP), GROUP.group_id, MESSAGE)
    assert collector.waiting_for == {third.ratifier}
    # A later vote is counted but the certificate stays as it was.
    assert collector.add_vote(third) is VoteOutcome.COUNTED
    assert collector.certificate is cert
    assert collector.votes == (first, second, third)


def test_collector_outcomes() -> None:
    collector = _collector()
    (good,) = _votes(GROUP, 1)
    assert collector.add_vote(good) is VoteOutcome.COUNTED
    assert collector.add_vote(good) is VoteOutcome.DUPLICATE
    assert collector.add_vote(_votes(GROUP, 1, message_hash=OTHER)[0]) is VoteOutcome.DUPLICATE
    assert (
        collector.add_vote(make_vote(GROUP.user, GROUP.group_id, 0, MESSAGE))
        is VoteOutcome.NOT_RATIFIER
    )
    assert (
        collector.add_vote(make_vote(GROUP.outsider, GROUP.group_id, 0, MESSAGE))
        is VoteOutcome.NOT_RATIFIER
    )
    (other_message,) = _votes(GROUP, 2, message_hash=OTHER)
    assert collector.add_vote(other_message) is VoteOutcome.INVALID_SIGNATURE
    (stale,) = _votes(GROUP, 2, epoch=1)
    assert collector.add_vote(stale) is VoteOutcome.INVALID_SIGNATURE
    (fresh,) = _votes(GROUP, 2)
    assert collector.add_vote(fresh, epoch=1) is VoteOutcome.WRONG_EPOCH
    assert collector.votes_needed == 1
    assert collector.certificate is None
    assert collector.add_vote(fresh) is VoteOutcome.COUNTED
    assert collector.certificate is not None
    assert VoteOutcome.COUNTED.counts
    assert not VoteOutcome.DUPLICATE.counts


def test_collector_epoch_must_match_roster() -> None:
    with pytest.raises(ValueError, match="epoch"):
        QuorumCollector(GROUP.group_id, 1, MESSAGE, _roster(GROUP))


def test_single_ratifier_group() -> None:
    owner = key(1)
    roster = Roster(0, [member(owner, Role.RATIFIER), member(key(2), Role.USER)])
    collector = QuorumCollector(b"g" * 32, 0, MESSAGE, roster)
    assert collector.add_vote(make_vote(owner, b"g" * 32, 0, MESSAGE)) is VoteOutcome.COUNTED
    assert collector.certificate is not None


# Five ratifiers, quorum 3; each ratifier may vote well, vote for another message, or not vote.
BIG = Roster(0, [member(key(n), Role.RATIFIER) for n in range(10, 15)])
BIG_GID = sha256(b"big")
GOOD = [make_vote(key(n), BIG_GID, 0, MESSAGE) for n in range(10, 15)]
BAD = [make_vote(key(n), BIG_GID, 0, OTHER) for n in range(10, 15)]
NON = [make_vote(key(n), BIG_GID, 0, MESSAGE) for n in range(20, 22)]
POOL = GOOD + BAD + NON


@given(st.lists(st.sampled_from(range(len(POOL))), max_size=14))
@settings(max_examples=300)
def test_collector_agrees_with_verify_certificate(picks: list[int]) -> None:
    votes = [POOL[i] for i in picks]
    collector = QuorumCollector(BIG_GID, 0, MESSAGE, BIG)
    for vote in votes:
        collector.add_vote(vote)
    distinct_good = {v.ratifier for v in votes if v in GOOD}
    reached = len(distinct_good) >= BIG.quorum
    assert BIG.quorum == 3
    assert collector.votes_needed == max(0, 3 - len(distinct_good))
    assert verify_certificate(_cert(votes), BIG, BIG_GID, MESSAGE) is reached
    assert (collector.certificate is not None) is reached
    if collector.certificate is not None:
        assert len(collector.certificate.votes) == 3
        assert verify_certificate(collector.certificate, BIG, BIG_GID, MESSAGE)
