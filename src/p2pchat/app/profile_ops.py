"""Names and avatars over the control socket (specs/control.md "Profiles", specs/chat.md §18):
``profile`` reads a member's, ``profile.set`` signs ours (the avatar first, as an artifact the
node reads by its absolute path, then the profile that refers to it).
"""

from __future__ import annotations

import mimetypes
import os
from typing import TYPE_CHECKING, Any

import trio

from ..chat.core.profiles import (
    AVATAR,
    AVATAR_TYPES,
    MAX_AVATAR,
    MAX_NAME,
    PROFILE,
    avatar_refs,
    read_name,
)
from ..chat.node import ChatMessage, PendingError
from ..chat.store.chunks import BlobStoreError
from ..errors import DecodeError
from ..identity import PeerID
from .control import Emit
from .file_ops import _path_arg
from .message_view import author_labels
from .op_args import DaemonError, group_arg

if TYPE_CHECKING:
    from .daemon import Daemon

_TYPES_TEXT = ", ".join(sorted(t.removeprefix("image/") for t in AVATAR_TYPES))


def _name_of(profiles: list[ChatMessage], peer: PeerID) -> str | None:
    name = None
    for message in profiles:
        if message.author == peer:
            name = read_name(message.content) or name
    return name


async def _profiles(node: Daemon, group_id: bytes) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """The group's ratified history and its profile messages, in display order."""
    history = await node.chat.history(group_id)
    return history, [m for m in history if m.message_type == PROFILE and m.ratified]


def _peer_arg(request: dict[str, Any], default: PeerID) -> PeerID:
    text = request.get("peer")
    if text is None:
        return default
    if not isinstance(text, str):
        raise DaemonError("peer must be a peer id")
    try:
        return PeerID.from_string(text)
    except DecodeError:
        raise DaemonError(f"not a peer id: {text!r}") from None


async def op_profile(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    peer = _peer_arg(request, node.peer_id)
    history, profiles = await _profiles(node, group_id)
    labels = author_labels(profiles)
    avatar_hash = avatar_refs((m.author, m.content, m.ref_hash) for m in profiles).get(peer)
    avatar = next((m for m in history if m.message_hash == avatar_hash), None)
    return {
        "peer": str(peer),
        "name": _name_of(profiles, peer),
        "label": labels.get(peer),
        "avatar": None
        if avatar is None or avatar.artifact is None
        else {
            "message_hash": avatar.message_hash.hex(),
            "mime": avatar.mime,
            "size": avatar.artifact.size,
            "held": avatar.artifact.complete,
        },
    }


async def op_profile_set(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    history, profiles = await _profiles(node, group_id)
    given = request.get("name")
    if given is not None and not isinstance(given, str):
        raise DaemonError("name must be text")
    name = read_name(given.encode()) if given is not None else _name_of(profiles, node.peer_id)
    if name is None:
        if given is None:
            raise DaemonError("set a name first (p2pchat name GROUP NAME)")
        raise DaemonError(f"a name is 1 to {MAX_NAME} bytes of text on one line")
    wait = request.get("wait", True) is not False
    ours = avatar_refs((m.author, m.content, m.ref_hash) for m in profiles)
    avatar_hash = ours.get(node.peer_id)
    if request.get("avatar") is not None:
        avatar_hash = await _send_avatar(node, group_id, request)
        if avatar_hash is None:
            raise DaemonError("the avatar is queued but no quorum ratified it yet; try again")
    elif avatar_hash is not None and not any(m.message_hash == avatar_hash for m in history):
        avatar_hash = None
    try:
        message_hash = await node.chat.send(
            group_id,
            name.encode(),
            message_type=PROFILE,
            mime="text/plain",
            ref_hash=avatar_hash,
            wait=wait,
        )
        status = "ratified" if wait else "pending"
    except PendingError as exc:
        message_hash, status = exc.message_hash, "pending"
    return {
        "message_hash": message_hash.hex(),
        "status": status,
        "name": name,
        "avatar_hash": None if avatar_hash is None else avatar_hash.hex(),
    }


async def _send_avatar(node: Daemon, group_id: bytes, request: dict[str, Any]) -> bytes | None:
    """Send the avatar file (checked first); its hash once ratified, None when still queued.

    Raises:
        DaemonError: not an image of the allowed types, too large, or unreadable.
    """
    path = _path_arg(request, "avatar")
    mime = request.get("mime") or mimetypes.guess_type(path.name)[0]
    if mime not in AVATAR_TYPES:
        raise DaemonError(f"an avatar is an image ({_TYPES_TEXT}), not {mime or 'unknown'}")
    try:
        stat = await trio.to_thread.run_sync(os.stat, path)
    except OSError as exc:
        raise DaemonError(f"the node cannot read {path}: {exc.strerror or exc}") from None
    if stat.st_size > MAX_AVATAR:
        raise DaemonError(f"an avatar is at most {MAX_AVATAR // 1024} KiB; {path} is larger")
    try:
        return await node.chat.send_file(group_id, path, mime=mime, message_type=AVATAR)
    except PendingError:
        return None
    except OSError as exc:
        raise DaemonError(f"the node cannot read {path}: {exc.strerror or exc}") from None
    except BlobStoreError as exc:
        raise DaemonError(f"not sent: {exc}") from None
