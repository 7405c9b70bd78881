"""The outbox schedule: which of our queued messages to try now, and when to try again.

Sans-IO: times are milliseconds handed in by the caller. A queued message is *due* at its
``next_at``; an attempt that ends without a quorum backs off exponentially (``initial`` doubling
up to ``maximum``); a connection to one of the message's ratifiers, or a roster change of its
group, makes it due at once. At most ``concurrency`` attempts run at a time, so a long outbox
does not flood the ratifiers. The store holds the outbox itself (a message and its outbox entry
are committed together); the schedule lives in memory and starts afresh, everything due, after a
restart.

One author's order (specs/chat.md §6): each queued message has a *rank*, its place in the
order we wrote our messages of its group (a re-written message keeps the rank of the one it
replaces; the store keeps it as the outbox entry's ``created_at``). A content message names as
a parent the queued message of the next lower rank, its *predecessor*, and is tried only when
none of its parents is still queued, so it cannot be ratified before the message it follows.

Cost: the outbox keeps each group's chain sorted as messages come and go, and counts the
attempts in flight, so finding a message's predecessor, the tail of a chain, the next rank and
the messages to start neither sorts nor walks every queued message on each event.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterator

import attrs

from ...identity import PeerID
from .packet import Packet


def backoff(attempt: int, initial: int, maximum: int) -> int:
    """The wait after the ``attempt``-th failure (1-based): ``initial * 2**(attempt - 1)``,
    capped at ``maximum``."""
    if attempt < 1:
        return 0
    return min(maximum, initial << min(attempt - 1, 32))


@attrs.define
class QueuedMessage:
    """One of our messages waiting for its certificate."""

    group_id: bytes
    packet: Packet
    #: The hash the content was first written under; a re-written message keeps it.
    origin: bytes
    next_at: int
    #: The place in the order we wrote our messages of the group (unique per group).
    rank: int = 0
    failures: int = 0
    in_flight: bool = False

    @property
    def message_hash(self) -> bytes:
        return self.packet.message_hash

    @property
    def is_roster(self) -> bool:
        return self.packet.message.message_type == "roster"


@attrs.frozen
class Refusal:
    """A ratifier's refusal to vote in the current attempt, with its reason."""

    ratifier: PeerID
    reason: str


@attrs.frozen
class OutboxView:
    """A read-only snapshot of one queued message (``ChatEngine.outbox_snapshot``)."""

    group_id: bytes
    message_hash: bytes
    #: The hash the content was first written under (what ``send`` answered).
    origin: bytes
    #: When the message was written (its ``time_stamp``, ms) and how long ago.
    written_at: int
    age: int
    #: Attempts that ended without a quorum so far.
    failures: int
    in_flight: bool
    #: When the next attempt is due (ms); None while one is in flight.
    next_at: int | None
    #: The current attempt's ratifiers: those that voted, refused, or have not answered.
    voted: tuple[PeerID, ...] = ()
    refused: tuple[Refusal, ...] = ()
    waiting: tuple[PeerID, ...] = ()


@attrs.define
class Outbox:
    """The schedule of the queued messages, by message hash."""

    initial: int
    maximum: int
    concurrency: int
    _queued: dict[bytes, QueuedMessage] = attrs.field(init=False, factory=dict)
    #: Per group, the keys ``(rank, hash)`` of its queued messages, sorted; and the items.
    _keys: dict[bytes, list[tuple[int, bytes]]] = attrs.field(init=False, factory=dict)
    _chains: dict[bytes, list[QueuedMessage]] = attrs.field(init=False, factory=dict)
    _in_flight: int = attrs.field(init=False, default=0)

    def __len__(self) -> int:
        return len(self._queued)

    def __contains__(self, message_hash: object) -> bool:
        return message_hash in self._queued

    def __iter__(self) -> Iterator[QueuedMessage]:
        return iter(list(self._queued.values()))

    def get(self, message_hash: bytes) -> QueuedMessage | None:
        return self._queued.get(message_hash)

    def add(
        self, group_id: bytes, packet: Packet, *, origin: bytes, now: int, rank: int | None = None
    ) -> QueuedMessage:
        """Queue ``packet`` at ``rank`` (default: after every queued message of its group),
        due ``now`` (a message already queued keeps its schedule)."""
        item = self._queued.get(packet.message_hash)
        if item is None:
            if rank is None:
                rank = self.next_rank(group_id, now)
            item = QueuedMessage(group_id, packet, origin, now, rank)
            self._queued[packet.message_hash] = item
            keys = self._keys.setdefault(group_id, [])
            at = bisect.bisect_left(keys, (rank, packet.message_hash))
            keys.insert(at, (rank, packet.message_hash))
            self._chains.setdefault(group_id, []).insert(at, item)
        return item

    def _index(self, item: QueuedMessage) -> int:
        """``item``'s place in its group's chain (it is queued)."""
        return bisect.bisect_left(self._keys[item.group_id], (item.rank, item.message_hash))

    def _set_in_flight(self, item: QueuedMessage, value: bool) -> None:
        if item.in_flight != value:
            item.in_flight = value
            self._in_flight += 1 if value else -1

    # -- one author's order --------------------------------------------------------------------

    def chain(self, group_id: bytes) -> list[QueuedMessage]:
        """The queued messages of ``group_id`` in the order we wrote them (rank, then hash)."""
        return list(self._chains.get(group_id, ()))

    def next_rank(self, group_id: bytes, now: int) -> int:
        """The rank of a message written ``now``: ``now``, or one more than the highest rank
        queued in the group if that is not below it."""
        keys = self._keys.get(group_id)
        return max(now, keys[-1][0] + 1) if keys else now

    def tail(self, group_id: bytes) -> QueuedMessage | None:
        """The last queued message of ``group_id``: the one a new message follows."""
        chain = self._chains.get(group_id)
        return chain[-1] if chain else None

    def predecessor(self, item: QueuedMessage) -> QueuedMessage | None:
        """The queued message ``item`` follows: the one before it in its group's chain."""
        if self._queued.get(item.message_hash) is not item:
            return None
        at = self._index(item)
        return self._chains[item.group_id][at - 1] if at > 0 else None

    def blocked(self, item: QueuedMessage) -> bool:
        """Whether a parent of ``item`` is queued and not being tried: it waits until that one
        is asked for its votes (specs/chat.md §21: a ratifier takes a message whose parent of
        the same author it holds pending with its vote, so a chain is asked for in one go), or
        is a roster change."""
        for parent in item.packet.message.parents:
            queued = self._queued.get(parent)
            # A roster change opens the next epoch: what follows it waits to be written anew.
            if queued is not None and (queued.is_roster or not queued.in_flight):
                return True
        return False

    def out_of_order(self, item: QueuedMessage, held: Callable[[bytes], bool]) -> bool:
        """Whether ``item``, not blocked, must be written again to keep the order: a parent
        is neither ``held`` (ratified) nor queued (the message it followed was cancelled,
        dropped, or written again under another hash), or, for a content message, it does not
        name its predecessor. A roster message names no queued message (nothing blocks it)."""
        parents = item.packet.message.parents
        if not all(held(p) or p in self._queued for p in parents):
            return True
        if item.is_roster:
            return False
        before = self.predecessor(item)
        return before is not None and before.message_hash not in parents

    def remove(self, message_hash: bytes) -> QueuedMessage | None:
        item = self._queued.get(message_hash)
        if item is None:
            return None
        at = self._index(item)
        keys, chain = self._keys[item.group_id], self._chains[item.group_id]
        del keys[at], chain[at]
        if not keys:
            del self._keys[item.group_id], self._chains[item.group_id]
        self._set_in_flight(item, False)
        del self._queued[message_hash]
        return item

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def start_due(self, now: int) -> list[QueuedMessage]:
        """The due messages to try now (in the order we wrote them, within the concurrency),
        marked in flight."""
        free = self.concurrency - self.in_flight
        if free <= 0:
            return []
        # In the order we wrote them, so that a message started here unblocks the next one of
        # its chain in the same pass.
        ordered = heapq.merge(*self._chains.values(), key=lambda i: (i.rank, i.message_hash))
        due: list[QueuedMessage] = []
        for item in ordered:
            if len(due) >= free:
                break
            if not item.in_flight and item.next_at <= now and not self.blocked(item):
                self._set_in_flight(item, True)
                due.append(item)
        return due

    def failed(self, message_hash: bytes, now: int, *, soon: int | None = None) -> int | None:
        """An attempt ended without a quorum: back off (at most ``soon`` ms when given).
        Returns when it is due again."""
        item = self._queued.get(message_hash)
        if item is None:
            return None
        self._set_in_flight(item, False)
        item.failures += 1
        wait = backoff(item.failures, self.initial, self.maximum)
        item.next_at = now + (wait if soon is None else min(wait, soon))
        return item.next_at

    def release(self, message_hash: bytes) -> None:
        """An attempt ended without a verdict on the message itself (e.g. it must be written
        again): it is no longer in flight and keeps its schedule."""
        item = self._queued.get(message_hash)
        if item is not None:
            self._set_in_flight(item, False)

    def hurry(
        self,
        now: int,
        *,
        group_id: bytes | None = None,
        peer: PeerID | None = None,
        ratifiers: dict[bytes, frozenset[PeerID]] | None = None,
    ) -> int:
        """Make the waiting messages due ``now``: all of them, those of ``group_id``, or those
        whose group's ratifiers (``ratifiers[group_id]``) include ``peer``. Returns how many."""
        hurried = 0
        for item in self._queued.values():
            if item.in_flight or item.next_at <= now:
                continue
            if group_id is not None and item.group_id != group_id:
                continue
            if peer is not None and (
                ratifiers is None or peer not in ratifiers.get(item.group_id, frozenset())
            ):
                continue
            item.next_at = now
            hurried += 1
        return hurried

    def next_due(self) -> int | None:
        """When the next waiting message that is not blocked is due, or None."""
        times = [
            i.next_at for i in self._queued.values() if not i.in_flight and not self.blocked(i)
        ]
        return min(times) if times else None
