"""The message DAG: display order and the heads a new message names as parents (specs/chat.md §8).

Every message names as ``parents`` the DAG heads its author had seen, so the messages of a group
form a hash-linked DAG. :func:`display_order` is the order every member shows: Kahn's algorithm,
taking the smallest ``message_hash`` among the messages whose parents are all shown. It depends
only on the set of messages, not on the order they arrived in.

:class:`Heads` tracks the current heads (messages no other held message names as a parent) as
messages arrive, in any order; :meth:`Heads.heads` gives the ``parents`` of the next message.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

import attrs

from .packet import MAX_PARENTS

__all__ = ["Heads", "display_order"]


def display_order(parents: Mapping[bytes, Sequence[bytes]]) -> list[bytes]:
    """The deterministic topological order of the messages in ``parents`` (§8).

    ``parents`` maps each held message hash to its parents. Parents that are not keys of the
    mapping (not held) are ignored, as if already shown. Among the messages whose held parents are
    all shown, the smallest hash comes first. A cycle cannot occur between hash-linked messages;
    should the mapping hold one anyway, the smallest hash still waiting is released to break it,
    so every key appears exactly once.
    """
    waiting: dict[bytes, int] = {}
    children: dict[bytes, list[bytes]] = {}
    for node, node_parents in parents.items():
        held = {p for p in node_parents if p in parents}
        waiting[node] = len(held)
        for parent in held:
            children.setdefault(parent, []).append(node)
    ready = [node for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[bytes] = []
    shown: set[bytes] = set()
    while len(order) < len(waiting):
        if not ready:  # only on a cycle
            heapq.heappush(ready, min(n for n in waiting if n not in shown))
        node = heapq.heappop(ready)
        if node in shown:
            continue
        shown.add(node)
        order.append(node)
        for child in children.get(node, ()):
            waiting[child] -= 1
            if waiting[child] == 0 and child not in shown:
                heapq.heappush(ready, child)
    return order


@attrs.define
class Heads:
    """The heads of the DAG of held messages, as messages are added in any order.

    A head is a held message that no held message names as a parent. When there are more than 16
    (``MAX_PARENTS``), :meth:`heads` gives the 16 smallest hashes; each new message then merges up
    to 16 heads into one, so the rest are named by the messages that follow.
    """

    _heads: set[bytes] = attrs.field(init=False, factory=set)
    _held: set[bytes] = attrs.field(init=False, factory=set)
    _named: set[bytes] = attrs.field(init=False, factory=set)
    _gaps: set[bytes] = attrs.field(init=False, factory=set)

    def add(self, message_hash: bytes, parents: Iterable[bytes]) -> None:
        """Note that ``message_hash`` with these ``parents`` is held (again: a no-op)."""
        if message_hash in self._held:
            return
        self._held.add(message_hash)
        self._gaps.discard(message_hash)
        for parent in parents:
            self._named.add(parent)
            self._heads.discard(parent)
            if parent not in self._held:
                self._gaps.add(parent)
        if message_hash not in self._named:
            self._heads.add(message_hash)

    def heads(self) -> tuple[bytes, ...]:
        """The ``parents`` of the next message: sorted, at most 16 (the smallest hashes)."""
        return tuple(heapq.nsmallest(MAX_PARENTS, self._heads))

    def all(self) -> frozenset[bytes]:
        """Every current head (a closing commitment names them all, §14)."""
        return frozenset(self._heads)

    def gaps(self, limit: int) -> tuple[bytes, ...]:
        """Parents named by held messages but not held themselves (a history with holes below
        the heads, §8 "Gaps"): the ``limit`` smallest hashes, sorted."""
        return tuple(heapq.nsmallest(limit, self._gaps))

    def __len__(self) -> int:
        """The number of current heads (it may exceed 16)."""
        return len(self._heads)

    def __contains__(self, message_hash: object) -> bool:
        """True if ``message_hash`` has been added."""
        return message_hash in self._held
