"""Delivering our messages again after a close names them pending (specs/chat.md §14
"Delivery after the close"), sans-IO.

An author that commits a certificate and stops before its ``smsg`` go out holds the only
certified copy: its ratifiers hold their votes and the packet pending. Members compare heads
only with current members, so if the author is removed meanwhile nobody asks it. The close tells
the author: a counted closing vote's ``pending`` list names every message of the closed epoch
that ratifier voted for without holding it certified. When a node takes the roster message that
closes an epoch, it delivers again each of its own held messages those lists name (a removed
author too: it learns of the close from the chain, §8, and ``smsg`` takes a packet from a member
of the packet's epoch).
"""

from __future__ import annotations

from typing import Final

from ...identity import PeerID
from .commitment import MAX_CLOSE_PENDING
from .events import Redeliver
from .packet import Packet
from .quorum import counted_votes
from .view import GroupView

__all__ = ["MAX_REDELIVER", "redeliver"]

#: At most this many of our messages are delivered again per close (the smallest hashes).
MAX_REDELIVER: Final = MAX_CLOSE_PENDING


def redeliver(view: GroupView, closing: Packet, me: PeerID) -> list[Redeliver]:
    """What to deliver again once ``closing`` (a held roster message with its certificate) has
    closed its epoch: our own held messages named pending by its counted closing votes, to the
    members of that epoch and of the current one (empty when there is none)."""
    certificate = closing.certificate
    epoch = closing.message.epoch
    roster = view.state.find_roster(epoch)
    if certificate is None or roster is None:
        return []
    votes = counted_votes(
        certificate, roster, view.group_id, closing.message_hash, closing=True, stop_at_quorum=False
    )
    named = {h for vote in votes if vote.close is not None for h in vote.close.pending}
    ours = sorted(h for h in named if view.has(h) and _author(view, h) == me)
    if not ours:
        return []
    peers = view.members(epoch, view.state.current_epoch) - {me}
    return [Redeliver(view.group_id, tuple(ours[:MAX_REDELIVER]), tuple(sorted(peers)))]


def _author(view: GroupView, message_hash: bytes) -> PeerID | None:
    info = view.ref_of(message_hash)
    return None if info is None else info.author
