"""History as a reader sees it, for the control socket (specs/control.md "Folded history"):
edits, deletes and reactions applied by :func:`p2pchat.chat.core.refs.fold`, and a message
named by a hash prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from ..chat.core.profiles import PROFILE, display_labels
from ..chat.core.refs import CONTENT_TYPES, Folded, Item, fold
from ..chat.node import ChatMessage
from ..errors import P2PChatError
from ..identity import PeerID

#: A hash prefix names a message with at least this many hex digits.
MIN_PREFIX: Final = 4

#: The JSON view of one message (``operations.message_json`` bound to this node).
ToJson = Callable[[ChatMessage], dict[str, Any]]


class MessageRefError(P2PChatError):
    """A hash prefix names no message, or several."""


def find_content_message(messages: Sequence[ChatMessage], prefix: str) -> ChatMessage:
    """The one content message whose hash starts with ``prefix`` (hex, case-insensitive).

    Raises:
        MessageRefError: too short, none or several.
    """
    prefix = prefix.strip().lower()
    if len(prefix) < MIN_PREFIX:
        raise MessageRefError(f"a message hash prefix has at least {MIN_PREFIX} hex digits")
    matches = [
        m
        for m in messages
        if m.message_type in CONTENT_TYPES and m.message_hash.hex().startswith(prefix)
    ]
    if not matches:
        raise MessageRefError(f"no ratified message {prefix!r} in this group")
    if len(matches) > 1:
        raise MessageRefError(f"{prefix!r} names {len(matches)} messages; give more digits")
    return matches[0]


def author_labels(messages: Sequence[ChatMessage]) -> dict[PeerID, str]:
    """How each named author of ``messages`` (ratified, display order) is shown (§18)."""
    return display_labels(
        (m.author, m.content) for m in messages if m.message_type == PROFILE and m.ratified
    )


def name_authors(entries: list[dict[str, Any]], labels: dict[PeerID, str]) -> None:
    """Add ``author_name`` (the label, or null) to each JSON message."""
    by_text = {str(peer): label for peer, label in labels.items()}
    for entry in entries:
        entry["author_name"] = by_text.get(entry["author"])


def folded_history(
    messages: Sequence[ChatMessage], owner: PeerID, to_json: ToJson, *, versions: bool = False
) -> list[dict[str, Any]]:
    """Ratified ``messages`` (display order) folded: one JSON entry per message that is not an
    edit, delete or reaction, with ``edited``, ``deleted_by``, ``reactions`` and, with
    ``versions``, every earlier content as text."""
    by_hash = {m.message_hash: m for m in messages}
    items = [
        Item(m.message_hash, m.author, m.message_type, m.ref_hash, m.content) for m in messages
    ]
    return [_entry(f, by_hash[f.item.message_hash], to_json, versions) for f in fold(items, owner)]


def _entry(folded: Folded, message: ChatMessage, to_json: ToJson, versions: bool) -> dict[str, Any]:
    out = to_json(message)
    out["edited"] = folded.edited
    out["deleted_by"] = None if folded.deleted_by is None else str(folded.deleted_by)
    out["reactions"] = {r: [str(p) for p in peers] for r, peers in folded.reactions.items()}
    if folded.deleted_by is not None:
        for key in ("text", "data_b64"):
            out.pop(key, None)
        out["readable"] = False
        out["size"] = None
        return out
    if folded.edited and folded.content is not None:
        out["size"] = len(folded.content)
        if "text" in out:
            out["text"] = folded.content.decode("utf-8", "replace")
    if versions:
        out["versions"] = [v.decode("utf-8", "replace") for v in folded.versions]
    return out
