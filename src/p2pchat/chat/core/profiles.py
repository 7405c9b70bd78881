"""Members' names (specs/chat.md §18), sans-IO.

A member names itself with a ``profile`` message: its content is the display name (UTF-8, 1 to
64 bytes once stripped, no line breaks), signed by its author like every message and ratified
like any, so every member reads the same names. The latest valid profile of an author in display
order is its name. :func:`display_labels` says how each author is shown: the name alone when it
is unique in the group and the author never had another; with a short peer id when two authors
share it or the name changed (so nobody can pass for another, and a rename stays visible).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ...identity import PeerID

__all__ = ["MAX_NAME", "PROFILE", "display_labels", "read_name", "short_id"]

PROFILE: Final = "profile"
#: §18: a display name is at most this many bytes of UTF-8.
MAX_NAME: Final = 64
#: Characters of a peer id shown beside a name: those after the ``12D3KooW`` every Ed25519 id
#: starts with.
_SKIP: Final = 8
_SHOW: Final = 12


def read_name(content: bytes | None) -> str | None:
    """The name a profile's content holds, or None when it is not a valid one."""
    if content is None or len(content) > MAX_NAME:
        return None
    try:
        name = content.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if not name or any(c in name for c in "\r\n\x00"):
        return None
    return name


def short_id(peer: PeerID) -> str:
    """A peer id shortened to sit beside a name."""
    text = str(peer)
    return text[_SKIP : _SKIP + _SHOW] if len(text) > _SKIP + _SHOW else text


def display_labels(profiles: Iterable[tuple[PeerID, bytes | None]]) -> dict[PeerID, str]:
    """Each named author's label, from its profile messages (author, content) in display order."""
    names: dict[PeerID, str] = {}
    changed: set[PeerID] = set()
    for author, content in profiles:
        name = read_name(content)
        if name is None:
            continue
        if author in names and names[author] != name:
            changed.add(author)
        names[author] = name
    holders: dict[str, int] = {}
    for name in names.values():
        holders[name.casefold()] = holders.get(name.casefold(), 0) + 1
    return {
        peer: (
            f"{name} ({short_id(peer)})"
            if holders[name.casefold()] > 1 or peer in changed
            else name
        )
        for peer, name in names.items()
    }
