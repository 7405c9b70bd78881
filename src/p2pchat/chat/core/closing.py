"""Closing an epoch: what a ratifier commits to when it votes a roster change, and which
messages of a closed epoch a member still accepts (specs/chat.md §14).

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

from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from .commitment import MAX_CLOSE_HEADS, MAX_CLOSE_PENDING, CloseCommitment
from .dag import display_order
from .group_state import GroupState
from .packet import Packet
from .quorum import counted_votes

__all__ = ["EpochClose", "Held"]

#: A held message's (epoch, parents, is a roster message).
Held = tuple[int, tuple[bytes, ...], bool]


def _ancestors(starts: Iterable[bytes], held: Mapping[bytes, Held]) -> set[bytes]:
    """The held messages among ``starts`` and their held ancestors."""
    found: set[bytes] = set()
    stack = [h for h in starts if h in held]
    while stack:
        message_hash = stack.pop()
        if message_hash in found:
            continue
        found.add(message_hash)
        stack.extend(p for p in held[message_hash][1] if p in held and p not in found)
    return found


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
    #: What the close of each epoch accounts for (see :meth:`_named_by_close`).
    _named: dict[int, frozenset[bytes]] = attrs.Factory(dict)
    #: Held messages of closed epochs that no close accounts for: kept in the store, but not
    #: shown, not named as parents and not announced as heads (§14).
    late: set[bytes] = attrs.Factory(set)

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
        §14 (the vote is then refused ``"over quota"`` until heads merge or votes certify).

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
        heads and pending hashes not held (``have``) are admitted, and the parents of the
        closing roster message (its voters held them before voting)."""
        for epoch in range(self._seeded, len(state.roster_packets)):
            named = self._named_by_close(state, epoch)
            self._admitted.update(h for h in named if not have(h))
        self._seeded = len(state.roster_packets)

    def _named_by_close(self, state: GroupState, epoch: int) -> frozenset[bytes]:
        """What the close of ``epoch`` accounts for: its roster message, that message's parents,
        and the heads and pending hashes of the counted closing votes of its certificate."""
        named = self._named.get(epoch)
        if named is not None:
            return named
        packet = state.roster_packets[epoch]
        found = {packet.message_hash, *packet.message.parents}
        if packet.certificate is not None:
            votes = counted_votes(
                packet.certificate,
                state.roster(epoch),
                state.group_id,
                packet.message_hash,
                closing=True,
                stop_at_quorum=False,
            )
            for vote in votes:
                if vote.close is not None:
                    found |= vote.close.hashes()
        self._named[epoch] = named = frozenset(found)
        return named

    # -- late messages held from before we learnt of a close ------------------------------------

    def find_late(self, state: GroupState, held: Mapping[bytes, Held]) -> None:
        """Recompute :attr:`late`: the held non-roster messages of closed epochs that no close
        accounts for (not the descendant-or-self of anything a close named), e.g. one accepted
        while this node still held its epoch as current. ``held`` gives each held message's
        (epoch, parents, is roster)."""
        starts: set[bytes] = set()
        for epoch in range(len(state.roster_packets)):
            starts |= self._named_by_close(state, epoch)
        reach = _ancestors(starts, held)
        current = state.current_epoch
        self.late = {
            h for h, (epoch, _p, roster) in held.items() if epoch < current and not roster
        } - reach

    def held_admitted(self, message_hash: bytes, held: Mapping[bytes, Held]) -> None:
        """An admitted message is held: its held ancestors are accounted for, not late."""
        info = held.get(message_hash)
        stack = list(info[1]) if info is not None and self.late else []
        while stack:  # only through late ones: the ancestors of the others are not late
            parent = stack.pop()
            if parent in self.late:
                self.late.discard(parent)
                stack.extend(held[parent][1])

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
