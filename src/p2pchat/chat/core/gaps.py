"""Holes in the history below the heads, and roster messages taken without their parents
(specs/chat.md §8 "Gaps" and "Learning the roster without the parents"), sans-IO.

Heads comparison (``hds``) shows only what a member lacks at the top of the DAG. A node can also
hold a message whose parents it lacks: a joiner holds the roster chain without the history the
roster messages name (its first paging lost to a crash, say), and a node that learns a roster
message from a chain (``pkt``) takes it without parents it cannot fetch. Such parents are the
view's *gaps* (:meth:`~p2pchat.chat.core.dag.Heads.gaps`); :func:`fill_gaps` asks a member for
them when its heads hold nothing new.
"""

from __future__ import annotations

from collections.abc import Callable

from .events import Action, FetchMissing, HeadsAnswered, SyncHistory
from .fetch import MAX_FETCH
from .packet import Packet
from .roster_update import ROSTER_MESSAGE_TYPE
from .view import GroupView

__all__ = ["chain_have", "fill_gaps"]


def fill_gaps(view: GroupView, event: HeadsAnswered) -> list[Action]:
    """What to do when a member's heads are all held here: nothing without gaps; otherwise page
    its history on a new connection (``catch_up``, where much may be missing), or fetch the gaps
    and their ancestors (at most :data:`~.fetch.MAX_FETCH` of them, smallest hashes first)."""
    gaps = view.heads.gaps(MAX_FETCH)
    if not gaps:
        return []
    if event.catch_up:
        return [SyncHistory(event.group_id, event.peer)]
    return [FetchMissing(event.group_id, event.peer, gaps)]


def chain_have(view: GroupView, packet: Packet) -> Callable[[bytes], bool]:
    """The parent check for a packet of a roster chain: a roster message's parents count as
    held (its certificate, checked against the chain, is what makes it good, as for a joiner's
    chain); any other message's must be held."""
    if packet.message.message_type == ROSTER_MESSAGE_TYPE:
        return lambda _parent: True
    return view.has
