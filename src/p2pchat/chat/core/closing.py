"""Closing an epoch: what a ratifier commits to when it votes a roster change, and which
messages of a closed epoch a member still accepts (specs/chat.md §11).

Theory of operation
-------------------
A roster message authored in epoch ``e`` closes ``e``. Three rules, one per side:

* **The voter stops** (:meth:`EpochClose.closing_vote`). Once a ratifier has voted for the roster
  message closing ``e``, it votes for no other message of ``e``. The vote is durable, and the
  node restores this from it at start (:meth:`EpochClose.note_vote` with ``roster=True``). The
  flag is set when the vote is *decided*, not when committed, so that no vote of ``e`` decided
  after it can escape the commitment.
* **The voter commits** (:meth:`EpochClose.commitment`). Its closing vote signs its certified DAG
  heads (every message it holds certified is one of them or an ancestor) and every message it
  voted for (decided, even if not yet committed) without holding it certified.
* **Members admit** (:meth:`EpochClose.admitted`). A message of a closed epoch is accepted only if
  its hash is *admitted*: named by a counted closing vote of the certificate of a closed epoch
  (pending or head) or as a parent of the closing roster message itself, or a parent of an
  admitted message whose hash holds. Hashes bind content and
  parents, so the admitted set only ever grows inside the DAG below the commitments, which was
  fixed when the epoch closed. :meth:`EpochClose.admit_closure` walks a batch of packets children
  first, so history that arrives oldest first (``dht`` pages, fetched ancestors) is admitted
  before it is received.

Nothing here does I/O or reads a clock. Admission is a derived fact (a proof from data already
verified), not held state: it lives in memory and is rebuilt from the stored roster chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import attrs

from .commitment import MAX_CLOSE_HEADS, MAX_CLOSE_PENDING, CloseCommitment
from .dag import display_order
from .group_state import GroupState
from .packet import Packet
from .quorum import counted_votes

__all__ = ["EpochClose"]


@attrs.define
class EpochClose:
    """One group's closing state at this node (kept in its :class:`~.view.GroupView`)."""

    #: Messages we voted for (decided) and do not hold certified, with their epoch.
    voted: dict[bytes, int] = attrs.Factory(dict)
    #: Our closing vote: (epoch, roster message hash).
    closed: tuple[int, bytes] | None = None
    #: Hashes of closed-epoch messages proven committed and not yet held.
    _admitted: set[bytes] = attrs.Factory(set)
    #: How many closing certificates of the chain have been read into ``_admitted``.
    _seeded: int = 0

    # -- the voter's side ----------------------------------------------------------------------

    def note_vote(self, message_hash: bytes, epoch: int, *, roster: bool) -> None:
        """We decided (or, at start, hold) a vote for this message of ``epoch``."""
        if roster:
            if self.closed is None or self.closed[0] <= epoch:
                self.closed = (epoch, message_hash)
        else:
            self.voted[message_hash] = epoch

    def closing_vote(self, epoch: int) -> bytes | None:
        """The roster message of ``epoch`` we voted for, or None: with one, we vote for no
        other message of ``epoch``."""
        if self.closed is not None and self.closed[0] == epoch:
            return self.closed[1]
        return None

    def commitment(
        self, epoch: int, heads: Iterable[bytes], have: set[bytes] | None = None
    ) -> CloseCommitment | None:
        """What our vote closing ``epoch`` commits to, or None when it exceeds the bounds of
        §11 (the vote is then refused ``"over quota"`` until heads merge or votes certify).

        ``heads`` are our certified DAG heads (all of them); ``have`` the hashes we hold
        certified (a vote whose message we hold is covered by the heads)."""
        held = have if have is not None else set()
        all_heads = sorted(set(heads))
        pending = sorted(h for h, e in self.voted.items() if e == epoch and h not in held)
        if len(all_heads) > MAX_CLOSE_HEADS or len(pending) > MAX_CLOSE_PENDING:
            return None
        return CloseCommitment(tuple(all_heads), tuple(pending))

    def forget(self, message_hash: bytes) -> None:
        """The message is held certified, or its pending row expired."""
        self.voted.pop(message_hash, None)
        self._admitted.discard(message_hash)

    def forget_epochs_before(self, epoch: int) -> None:
        """Drop the votes of epochs before ``epoch`` (their closing commitment is signed)."""
        for message_hash in [h for h, e in self.voted.items() if e < epoch]:
            del self.voted[message_hash]

    # -- the member's side ---------------------------------------------------------------------

    def seed(self, state: GroupState, have: Callable[[bytes], bool]) -> None:
        """Read the closing certificates of the chain not yet read: every counted closing vote's
        heads and pending hashes not held (``have``) are admitted."""
        packets = state.roster_packets
        for epoch in range(self._seeded, len(packets)):
            packet = packets[epoch]
            certificate = packet.certificate
            if certificate is None:
                continue
            votes = counted_votes(
                certificate,
                state.roster(epoch),
                state.group_id,
                packet.message_hash,
                closing=True,
                stop_at_quorum=False,
            )
            named = set(packet.message.parents)  # held by every voter before it voted
            for vote in votes:
                if vote.close is not None:
                    named |= vote.close.hashes()
            self._admitted.update(h for h in named if not have(h))
        self._seeded = len(packets)

    def admitted(self, message_hash: bytes) -> bool:
        """True if a message of a closed epoch with this hash may be accepted."""
        return message_hash in self._admitted

    def admit_parents(self, packet: Packet) -> None:
        """An admitted packet's parents are admitted, if its hash holds (the parents are part
        of what the hash binds)."""
        if packet.message_hash in self._admitted and packet.message.hash() == packet.message_hash:
            self._admitted.update(packet.message.parents)

    def admit_closure(self, packets: Sequence[Packet]) -> None:
        """Admit, within ``packets``, every ancestor of an admitted one (children first)."""
        by_hash = {p.message_hash: p for p in packets}
        order = display_order({h: p.message.parents for h, p in by_hash.items()})
        for message_hash in reversed(order):
            self.admit_parents(by_hash[message_hash])

    @property
    def admitted_count(self) -> int:
        """How many hashes are admitted and not yet held (for statistics and tests)."""
        return len(self._admitted)
