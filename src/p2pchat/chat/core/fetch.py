"""Fetching missing ancestors (``get``, specs/chat.md §8), as a sans-IO plan.

A member that receives a certified message whose parents it lacks asks the sender for them,
then for *their* missing parents, and so on: at most ``MAX_FETCH`` hashes a query and
``MAX_FETCH_DEPTH`` rounds, so a peer cannot keep us fetching for ever. What arrives is received
oldest first (the DAG's display order), so every message finds its parents held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import attrs

from .dag import display_order
from .packet import Packet

MAX_FETCH: Final = 64  # hashes per ``get`` query
MAX_FETCH_DEPTH: Final = 64  # rounds of fetching missing ancestors


@attrs.define
class ParentFetch:
    """One fetch: :meth:`wanted` names the next query's hashes, :meth:`add` takes its answer,
    :meth:`in_order` gives what arrived, parents first."""

    have: Callable[[bytes], bool]
    _wanted: list[bytes]
    _fetched: dict[bytes, Packet] = attrs.field(init=False, factory=dict)
    _rounds: int = attrs.field(init=False, default=0)

    @classmethod
    def start(cls, hashes: Iterable[bytes], have: Callable[[bytes], bool]) -> ParentFetch:
        return cls(have, [h for h in dict.fromkeys(hashes) if not have(h)])

    def wanted(self) -> list[bytes]:
        """The hashes to ask for next (empty when done: nothing missing, or out of rounds)."""
        if self._rounds >= MAX_FETCH_DEPTH:
            return []
        self._wanted = [h for h in self._wanted if h not in self._fetched and not self.have(h)]
        return self._wanted[:MAX_FETCH]

    def add(self, packets: Iterable[Packet]) -> bool:
        """Take a ``getR``'s packets (only those asked for count); False when it brought none,
        which ends the fetch."""
        asked = set(self._wanted[:MAX_FETCH])
        self._rounds += 1
        parents: list[bytes] = []
        for packet in packets:
            if packet.message_hash not in asked or packet.message_hash in self._fetched:
                continue
            self._fetched[packet.message_hash] = packet
            parents.extend(packet.message.parents)
        if not parents and not any(h in self._fetched for h in asked):
            self._wanted = []
            return False
        self._wanted = parents
        return True

    def in_order(self) -> list[Packet]:
        """What arrived, in display order (parents before children)."""
        order = display_order({h: p.message.parents for h, p in self._fetched.items()})
        return [self._fetched[h] for h in order]
