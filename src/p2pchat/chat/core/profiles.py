"""Members' names (specs/chat.md §18), sans-IO.

A member names itself with a ``profile`` message: its content is the display name (UTF-8, 1 to
64 bytes once stripped, no line breaks), signed by its author like every message and ratified
like any, so every member reads the same names. The latest valid profile of an author in display
order is its name. :func:`display_labels` says how each author is shown: the name alone when it
is unique in the group and the author never had another; with a short peer id when two authors
share it or the name changed (so nobody can pass for another, and a rename stays visible).

An avatar is an ``avatar`` message: an image (declared media type of :data:`AVATAR_TYPES`, at
most :data:`MAX_AVATAR` bytes) that travels as a chunked artifact (specs/artifacts.md). A profile
whose ``ref_hash`` names one of its author's avatar messages shows it; :func:`check_avatar` is
the rule ratifiers check from the clear fields of the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ...identity import PeerID
from .packet import Message

__all__ = [
    "AVATAR",
    "AVATAR_TYPES",
    "MAX_AVATAR",
    "MAX_NAME",
    "PROFILE",
    "avatar_refs",
    "check_avatar",
    "display_labels",
    "read_name",
    "short_id",
]

PROFILE: Final = "profile"
#: §18 "Avatars": the message type of an avatar image.
AVATAR: Final = "avatar"
#: The media types an avatar may declare (images a terminal or a browser shows).
AVATAR_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
#: An avatar is at most this many bytes (its plaintext, as ``chunked.size`` says).
MAX_AVATAR: Final = 1024 * 1024
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


def check_avatar(message: Message) -> str | None:
    """``"malformed"`` when an ``avatar`` message breaks §18 "Avatars", else None (and None for
    every other type): it has no ``ref_hash``, travels as chunks (``artifact.chunked``) of at
    most :data:`MAX_AVATAR` bytes, and declares a type of :data:`AVATAR_TYPES`."""
    if message.message_type != AVATAR:
        return None
    chunked = message.artifact.chunked
    if (
        message.ref_hash is not None
        or chunked is None
        or chunked.size > MAX_AVATAR
        or message.artifact.type not in AVATAR_TYPES
    ):
        return "malformed"
    return None


def avatar_refs(
    profiles: Iterable[tuple[PeerID, bytes | None, bytes | None]],
) -> dict[PeerID, bytes]:
    """Each author's avatar (the hash of its avatar message) from its profile messages
    (author, content, ref_hash) in display order: the reference of its latest valid profile,
    when that one has one."""
    avatars: dict[PeerID, bytes] = {}
    for author, content, ref_hash in profiles:
        if read_name(content) is None:
            continue
        if ref_hash is None:
            avatars.pop(author, None)
        else:
            avatars[author] = ref_hash
    return avatars


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
