"""Rules of the engine switched off, to show that the simulator notices (issue 20, part 4).

Each mutation is a test-only monkeypatch applied for a block; production code has no switch
for any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from p2pchat.chat.core import voting as voting_module
from p2pchat.chat.core.packet import Certificate
from p2pchat.chat.core.quorum import QuorumCollector, VoteOutcome
from p2pchat.chat.core.view import GroupView
from p2pchat.identity import PeerID


@contextmanager
def quorum_one_short() -> Iterator[None]:
    """The author's collector makes a certificate one vote before the quorum."""
    real = QuorumCollector.add_vote

    def add_vote(self: QuorumCollector, vote: Any, *, epoch: int | None = None) -> VoteOutcome:
        outcome = real(self, vote, epoch=epoch)
        votes = self._votes
        if self.certificate is None and len(votes) >= max(1, self.roster.quorum - 1):
            ordered = sorted(votes.values(), key=lambda v: v.ratifier.to_bytes())
            self._certificate = Certificate(self.epoch, tuple(ordered))
        return outcome

    QuorumCollector.add_vote = add_vote  # type: ignore[method-assign]
    try:
        yield
    finally:
        QuorumCollector.add_vote = real  # type: ignore[method-assign]


@contextmanager
def vote_without_parents() -> Iterator[None]:
    """A ratifier votes for a message whose parents it does not hold."""
    real = voting_module.check_for_ratification  # type: ignore[attr-defined]

    def check(*args: Any, **kwargs: Any) -> str | None:
        reason = real(*args, **kwargs)
        return None if reason == "missing parents" else reason

    voting_module.check_for_ratification = check  # type: ignore[attr-defined]
    try:
        yield
    finally:
        voting_module.check_for_ratification = real  # type: ignore[attr-defined]


@contextmanager
def deliver_to_removed() -> Iterator[None]:
    """An author delivers to the members of every epoch, removed ones included."""
    real = GroupView.members

    def members(self: GroupView, *epochs: int) -> set[PeerID]:
        return real(self)

    GroupView.members = members  # type: ignore[method-assign]
    try:
        yield
    finally:
        GroupView.members = real  # type: ignore[method-assign]


MUTATIONS: dict[str, Callable[[], Any]] = {
    "quorum-one-short": quorum_one_short,
    "vote-without-parents": vote_without_parents,
    "deliver-to-removed": deliver_to_removed,
}
