"""Budgets of one sync session with one peer (specs/chat.md §8 "Sync budgets"), sans-IO.

A member paging a peer's history (``dht``), fetching missing ancestors (``get``) or learning a
roster (``pkt``) trusts that peer to end: a peer that answers ``next = cursor + 1`` for ever, or
sends the same packets again and again, would keep it busy (and a ``join`` waiting) for ever. So
each session counts its pages and bytes, and ends at the first of:

* ``MAX_SYNC_PAGES`` pages (or ``get`` rounds), ``MAX_SYNC_BYTES`` bytes of packets;
* a cursor that does not advance, or a page that brings no packet not already seen in this
  session (an empty page included): the peer has nothing more, or is looping;
* ``MAX_SYNC_SECONDS`` since the session started (the clock is the service's).

A session cut off loses nothing: what it received is kept, the cursor is remembered, and
anti-entropy with the other members (``hds``, ``get``) brings the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

from .packet import Packet

MAX_SYNC_PAGES: Final = 1_000
MAX_SYNC_BYTES: Final = 64 * 1024 * 1024
MAX_SYNC_SECONDS: Final = 60.0
#: §14: closed-epoch packets a paging session keeps aside until a later page proves them
#: (their committed descendant arrives), in count and in encoded bytes.
MAX_UNPROVEN: Final = 4_096
MAX_UNPROVEN_BYTES: Final = 16 * 1024 * 1024


@attrs.define
class Unproven:
    """Closed-epoch packets of one paging session not yet admitted (§14), bounded: beyond the
    bounds a packet is let go (a later anti-entropy fetch, children first, brings it)."""

    packets: list[Packet] = attrs.field(factory=list)
    size: int = 0

    def keep(self, packet: Packet) -> bool:
        """Keep ``packet``; False when over a bound (not kept)."""
        size = len(packet.encode())
        if len(self.packets) >= MAX_UNPROVEN or self.size + size > MAX_UNPROVEN_BYTES:
            return False
        self.packets.append(packet)
        self.size += size
        return True


@attrs.define
class SyncBudget:
    """What one session has used; :meth:`take_page` says whether to ask for another page."""

    max_pages: int = MAX_SYNC_PAGES
    max_bytes: int = MAX_SYNC_BYTES
    pages: int = 0
    size: int = 0
    _seen: set[bytes] = attrs.field(factory=set)

    def take_page(
        self, hashes: Iterable[bytes], size: int, *, cursor: int, next_cursor: object
    ) -> bool:
        """Count a page of ``size`` bytes holding packets ``hashes`` that answered ``cursor``
        with ``next_cursor``; True if the session may ask for the page at ``next_cursor``."""
        new = self.take(hashes, size)
        if not isinstance(next_cursor, int) or isinstance(next_cursor, bool):
            return False  # null: the end of the history (or a malformed cursor)
        return next_cursor > cursor and new and self.left()

    def take(self, hashes: Iterable[bytes], size: int) -> bool:
        """Count one answer (a page or a ``get`` round); True if it brought a packet not seen
        before in this session."""
        self.pages += 1
        self.size += size
        fresh = [h for h in hashes if h not in self._seen]
        self._seen.update(fresh)
        return bool(fresh)

    def left(self) -> bool:
        """True while the page and byte budgets are not spent."""
        return self.pages < self.max_pages and self.size < self.max_bytes
