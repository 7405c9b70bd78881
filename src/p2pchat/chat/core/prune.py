"""Dropping a deleted message's content: pruned packets (specs/chat.md §17 "Pruned packets").

A certified ``delete`` hides a content message everywhere; a node that stores it also drops
what would let anyone read the deleted message again. The message itself stays: its hash is a
parent of later messages, and the signed ``message`` (whose ``artifact.hash`` binds the
ciphertext) with its certificate is the chain of custody. What goes is the wrapped content key
(``aes_key``) and its ``iv``: without them the ciphertext cannot be decrypted, even with the
epoch key, by this node or by anyone it serves. ``artifact.data`` cannot go, because
``message_hash`` is the hash of the whole ``message``, ``artifact.data`` included: a packet
without it could not be checked.

The pruned packet carries the certified delete as its ``tombstone`` (outside the signed part),
so that whoever receives it (``dht``, ``get``) can check, from the packet alone, that a delete
allowed by §17 stands behind the missing key: :func:`check_tombstone`.
"""

from __future__ import annotations

from typing import Final

import attrs

from .group_state import GroupState
from .packet import Packet, verify_author
from .quorum import verify_certificate
from .refs import CONTENT_TYPES, DELETE

__all__ = ["BAD_TOMBSTONE", "check_tombstone", "is_prunable_delete", "prune"]

#: The reason a pruned packet whose tombstone does not stand is refused.
BAD_TOMBSTONE: Final = "bad tombstone"


def is_prunable_delete(packet: Packet) -> bool:
    """True if ``packet`` is a certified delete that names a message (whose content a node
    that stores it drops)."""
    message = packet.message
    return (
        message.message_type == DELETE
        and message.ref_hash is not None
        and packet.certificate is not None
    )


def prune(target: Packet, tombstone: Packet) -> Packet:
    """The pruned form of ``target`` (its certificate kept) under the certified delete
    ``tombstone``: ``aes_key`` and ``iv`` empty, the tombstone attached.

    Raises:
        ValueError: ``tombstone`` is not a certified delete of ``target``, or ``target`` is
            not a content message.
    """
    if (
        not is_prunable_delete(tombstone)
        or tombstone.message.ref_hash != target.message_hash
        or target.message.message_type not in CONTENT_TYPES
    ):
        raise ValueError("not a certified delete of this content message")
    return attrs.evolve(
        target, aes_key=b"", iv=b"", tombstone=attrs.evolve(tombstone, tombstone=None)
    )


def check_tombstone(packet: Packet, state: GroupState) -> str | None:
    """The reason a pruned ``packet`` must be refused, or None (not pruned, or its tombstone
    stands). Checked at delivery after the packet's own hashes and signature.

    ``"bad tombstone"``: the pruned packet is not a content message, or its tombstone is not
    a ``delete`` of the same group naming it, by its author or the group's owner, with
    hashes, signature and a certificate of its epoch that hold (the author's role is checked
    against that roster, like any delivered packet). ``"future epoch"``: the tombstone is of an
    epoch whose roster this node does not know yet (learn the chain first).
    """
    tombstone = packet.tombstone
    if tombstone is None:
        return None
    message = packet.message
    delete = tombstone.message
    if (
        message.message_type not in CONTENT_TYPES
        or delete.message_type != DELETE
        or delete.group_id != message.group_id
        or delete.ref_hash != packet.message_hash
        or delete.author not in (message.author, state.owner_at(delete.epoch))
    ):
        return BAD_TOMBSTONE
    roster = state.find_roster(delete.epoch)
    if roster is None:
        return "future epoch"
    role = roster.role_of(delete.author)
    certificate = tombstone.certificate
    if (
        role is None
        or not role.can_send
        or certificate is None
        or certificate.epoch != delete.epoch
        or not tombstone.check_hashes()
        or not verify_author(tombstone)
        or not verify_certificate(certificate, roster, state.group_id, tombstone.message_hash)
    ):
        return BAD_TOMBSTONE
    return None
