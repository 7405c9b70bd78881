"""Messages that refer to another by ``ref_hash``: replies, edits, deletes and reactions
(specs/chat.md §17), sans-IO.

Theory of operation
-------------------
A reply is a content message (``text``, ``markdown``, ``image``, ``file``) whose ``ref_hash``
names the message it answers. An ``edit`` carries the new content of the message it names, a
``delete`` (empty content) hides it, a ``reaction`` carries a short text (an emoji) and toggles
its author's reaction to it. The kind is the clear ``message_type``, so a ratifier checks the
role rule (:func:`check_reference`) without decrypting: the referenced message must be held
(it is an ancestor of the parents, which a ratifier holds) and be a content message; only its
author edits it; its author or the group's owner deletes it. Members check the same rule at
delivery, so a certificate cannot carry a message past it.

:func:`fold` turns history in display order into what a reader sees: each content message
once, with its latest version (older ones kept), whether it was edited or deleted, its
reactions and the message it answers. It is deterministic: every node that holds the same
messages shows the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import attrs

from ...identity import PeerID
from .profiles import AVATAR, PROFILE

__all__ = [
    "CONTENT_TYPES",
    "DELETE",
    "EDIT",
    "MAX_REACTION",
    "REACTION",
    "REF_TYPES",
    "VIEWER_TYPES",
    "Folded",
    "Item",
    "RefInfo",
    "check_reference",
    "fold",
]

# §17: the kinds that refer to another message, and those they may refer to.
EDIT: Final = "edit"
DELETE: Final = "delete"
REACTION: Final = "reaction"
REF_TYPES: Final = frozenset({EDIT, DELETE, REACTION})
#: §17 "Leaving": a member asks the owner to take it off the roster.
LEAVE: Final = "leave"
#: §17 "Viewers": the only kinds a viewer (who otherwise sends nothing) may send.
VIEWER_TYPES: Final = frozenset({PROFILE, LEAVE})
CONTENT_TYPES: Final = frozenset({"text", "markdown", "image", "file"})
#: §17: a reaction is at most this many bytes of UTF-8 (one emoji or a short word).
MAX_REACTION: Final = 32
#: The reason a message whose reference breaks §17 is refused.
BAD_REFERENCE: Final = "bad reference"


@attrs.frozen
class RefInfo:
    """What the rule needs of a held message: its author and kind (both in the clear)."""

    author: PeerID
    message_type: str


#: The author and kind of a held message, or None when it is not held.
RefOf = Callable[[bytes], RefInfo | None]


def check_reference(
    message_type: str, author: PeerID, ref_hash: bytes | None, owner: PeerID, ref_of: RefOf
) -> str | None:
    """The §2 reason a message breaks the §17 rules, or None when it keeps them.

    Only messages of :data:`CONTENT_TYPES` and :data:`REF_TYPES` are checked (a roster or an
    application type keeps its own rules). ``"bad reference"``: an edit, delete or reaction
    without a reference, or a reference to a message not held or not a content message;
    ``"not allowed"``: an edit of another author's message, a delete of it by anyone but the
    owner.
    """
    if message_type == PROFILE:  # §18: a profile refers to nothing, or to its author's avatar
        if ref_hash is None:
            return None
        avatar = ref_of(ref_hash)
        return None if avatar == RefInfo(author, AVATAR) else BAD_REFERENCE
    if message_type == LEAVE:  # the owner cannot leave its group
        if ref_hash is not None:
            return BAD_REFERENCE
        return "not allowed" if author == owner else None
    if message_type not in CONTENT_TYPES and message_type not in REF_TYPES:
        return None
    if ref_hash is None:
        return BAD_REFERENCE if message_type in REF_TYPES else None
    target = ref_of(ref_hash)
    if target is None or target.message_type not in CONTENT_TYPES:
        return BAD_REFERENCE
    if message_type == EDIT and author != target.author:
        return "not allowed"
    if message_type == DELETE and author not in (target.author, owner):
        return "not allowed"
    return None


@attrs.frozen
class Item:
    """A held message as :func:`fold` reads it; ``content`` is None when unreadable."""

    message_hash: bytes
    author: PeerID
    message_type: str
    ref_hash: bytes | None
    content: bytes | None


@attrs.define
class Folded:
    """A content message as a reader sees it."""

    item: Item
    #: Its content now (the latest edit's), None when unreadable or deleted.
    content: bytes | None
    #: Every content it had, oldest first (the original, then each edit); empty once deleted.
    versions: list[bytes] = attrs.Factory(list)
    edited: bool = False
    #: Who deleted it (its author or the owner), or None.
    deleted_by: PeerID | None = None
    #: Reaction text -> the peers that hold it now, sorted.
    reactions: dict[str, list[PeerID]] = attrs.Factory(dict)


def fold(items: Iterable[Item], owner: PeerID) -> list[Folded]:
    """History (in display order) as a reader sees it: one entry per message that is not an
    edit, delete or reaction, in the same order, with those applied to the content messages.

    A message that breaks §17 (a history from an older node, say) changes nothing; an edit or
    reaction after a delete changes nothing; an edit or reaction whose content is unreadable
    here is skipped.
    """
    entries: dict[bytes, Folded] = {}
    toggled: dict[bytes, dict[str, set[PeerID]]] = {}
    order: list[bytes] = []
    for item in items:
        kind = item.message_type
        if kind not in REF_TYPES:  # content, a roster change, an application type
            versions = [] if item.content is None else [item.content]
            entries[item.message_hash] = Folded(item, item.content, versions)
            order.append(item.message_hash)
            continue
        target = None if item.ref_hash is None else entries.get(item.ref_hash)
        if (
            target is None
            or target.item.message_type not in CONTENT_TYPES
            or target.deleted_by is not None
        ):
            continue
        if kind == DELETE:
            if item.author in (target.item.author, owner):
                target.deleted_by = item.author
                target.content = None
                target.versions = []
                target.reactions = {}
        elif kind == EDIT:
            if item.author == target.item.author and item.content is not None:
                target.content = item.content
                target.versions.append(item.content)
                target.edited = True
        elif item.content is not None and 0 < len(item.content) <= MAX_REACTION:
            text = item.content.decode("utf-8", "replace")
            on_target = toggled.setdefault(target.item.message_hash, {})
            on_target.setdefault(text, set()).symmetric_difference_update({item.author})
            target.reactions = {r: sorted(p) for r, p in sorted(on_target.items()) if p}
    return [entries[h] for h in order]
