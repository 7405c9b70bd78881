"""The operations of the control socket (specs/control.md "Operations"), run on a :class:`Daemon`.

:data:`OPERATIONS` is the one table of them: an operation's name, as a request's ``"op"`` names
it, to the function that runs it (``Daemon.handle`` looks a request up there; a name that is not
in it is refused). Each function takes the node, the request and a function that sends events
(for the streaming ``subscribe``), checks its arguments, and returns the result as JSON values.
Every refusal is a one-line :class:`DaemonError` (or an error of the layer that refused) that
the client prints as it is.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from .. import __version__
from ..chat.core.crypto import MAX_PLAINTEXT
from ..chat.core.profiles import MAX_NAME, PROFILE, read_name
from ..chat.node import ChatError, ChatMessage, OutboxView, PendingError
from ..identity import PeerID
from ..net.ping import open_ping
from .control import Emit
from .dht_ops import DHT_OPERATIONS
from .message_view import (
    MessageRefError,
    author_labels,
    find_content_message,
    folded_history,
    name_authors,
)
from .op_args import (
    MAX_MIME,
    MIN_PREFIX,
    DaemonError,
    find_message,
    group_arg,
    peer_of,
    str_arg,
    target_arg,
)
from .reading import SearchError
from .relaying import connection_kind
from .roster_view import roster_summary

if TYPE_CHECKING:
    from .daemon import Daemon

#: The message types ``send`` accepts (specs/chat.md §4; "roster" is the owner's, by invite).
SEND_TYPES: Final = (
    "text",
    "markdown",
    "image",
    "file",
    "edit",
    "delete",
    "reaction",
    "profile",
    "leave",
)
HISTORY_DEFAULT_LIMIT: Final = 1000


def message_json(message: ChatMessage, *, me: PeerID, data: bool = False) -> dict[str, Any]:
    """The JSON view of a message (specs/control.md "Messages"); ``data`` adds the content of a
    non-text message as Base64."""
    content = message.content
    out: dict[str, Any] = {
        "group_id": message.group_id.hex(),
        "message_hash": message.message_hash.hex(),
        "author": str(message.author),
        "from_me": message.author == me,
        "type": message.message_type,
        "mime": message.mime,
        "time_stamp": message.time_stamp,
        "epoch": message.epoch,
        "ref_hash": message.ref_hash.hex() if message.ref_hash is not None else None,
        "ratified": message.ratified,
        "readable": content is not None,
        "size": len(content) if content is not None else None,
    }
    if message.artifact is not None:  # specs/artifacts.md: a file, fetched when saved
        out["readable"] = message.artifact.name is not None
        out["size"] = message.artifact.size
        out["artifact"] = {
            "name": message.artifact.name,
            "size": message.artifact.size,
            "chunks": message.artifact.chunks,
            "root": message.artifact.root.hex(),
            "held": message.artifact.complete,
        }
    if content is None:
        return out
    if message.message_type in ("text", "markdown", "edit", "reaction", "profile"):
        out["text"] = message.text
    elif message.message_type == "roster":
        out["roster"] = roster_summary(content)
    elif data:
        out["data_b64"] = base64.b64encode(content).decode("ascii")
    return out


async def op_status(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    return {
        "peer_id": str(node.peer_id),
        "cid": node.peer_id.to_cid(),
        "addrs": [str(a) for a in node.host.addrs],
        "data_dir": str(node.options.data_dir),
        "pid": os.getpid(),
        "version": __version__,
        "connected": len(node.host.connected_peers()),
        "groups": len(node.chat.groups()),
        "bootstrap": [str(a) for a in node.options.bootstrap],
        "mdns": node.mdns_running,
        "perf": node.options.perf,
        "resources": attrs.asdict(node.host.resource_usage()),
        "reachability": node.internet.reachability() if node.internet else "unknown",
        "advertised": [
            str(a) for a in (node.internet.advertised_addrs(node.host) if node.internet else ())
        ],
        "dht": node.internet.dht.mode if node.internet and node.internet.dht else "off",
        "relay": node.relaying.status() if node.relaying else {"serving": False},
    }


async def op_stop(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    node.stop_requested.set()
    return {}


async def op_peers(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    connected = []
    for peer in sorted(node.host.connected_peers(), key=str):
        conn = node.host.connection(peer)
        record = node.host.peer_store.get(peer)
        connected.append(
            {
                "peer_id": str(peer),
                "addr": str(conn.remote_addr) if conn and conn.remote_addr else None,
                "direction": "outbound" if conn and conn.is_client else "inbound",
                "via": connection_kind(conn.remote_addr if conn else None),
                "agent": record.agent_version if record else "",
            }
        )
    live = set(node.host.connected_peers())
    known = [
        {
            "peer_id": str(k.peer_id),
            "addrs": [str(a) for a in k.addrs],
            "last_seen": k.last_seen,
        }
        for k in node.known_peers.peers()
        if k.peer_id not in live
    ]
    return {"connected": connected, "known": known}


async def op_connect(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    target = target_arg(node, request, "peer")
    existing = node.host.connection(peer_of(target))
    if existing is not None:
        # A live connection is reused, so an address given now is not dialed: say so, rather
        # than report a connection to an address that may not answer.
        via = existing.remote_addr
        return {
            "peer_id": str(existing.remote_peer),
            "already_connected": True,
            "via": None if via is None else str(via),
        }
    conn = await node.host.connect(target)
    node.known_peers.changed()
    return {"peer_id": str(conn.remote_peer), "already_connected": False}


async def op_ping(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    target = target_arg(node, request, "peer")
    timeout = request.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise DaemonError("timeout must be a positive number of seconds")
    with trio.fail_after(timeout * 3):
        async with open_ping(node.host, target, echo_timeout=float(timeout)) as pinger:
            rtt = await pinger.ping()
    return {"peer_id": str(peer_of(target)), "ms": rtt * 1e3}


async def op_send(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    message_type = request.get("type", "text")
    if message_type not in SEND_TYPES:
        raise DaemonError(f"type must be one of {', '.join(SEND_TYPES)}")
    if isinstance(request.get("text"), str):
        data = request["text"].encode()
    elif isinstance(request.get("data_b64"), str):
        try:
            data = base64.b64decode(request["data_b64"], validate=True)
        except binascii.Error:
            raise DaemonError("data_b64 is not Base64") from None
    else:
        raise DaemonError("send needs 'text' or 'data_b64'")
    if len(data) > MAX_PLAINTEXT:
        raise DaemonError(
            f"the content is {len(data)} bytes; a message holds at most {MAX_PLAINTEXT}"
        )
    mime = request.get("mime")
    if mime is not None and (not isinstance(mime, str) or len(mime.encode()) > MAX_MIME):
        raise DaemonError(f"mime must be a MIME type of at most {MAX_MIME} bytes")
    if message_type == PROFILE and read_name(data) is None:
        raise DaemonError(f"a name is 1 to {MAX_NAME} bytes of text on one line")
    wait = request.get("wait", True) is not False
    ref_hash = await _ref_arg(node, group_id, request)
    try:
        message_hash = await node.chat.send(
            group_id, data, message_type=message_type, mime=mime, ref_hash=ref_hash, wait=wait
        )
    except PendingError as exc:
        return {"message_hash": exc.message_hash.hex(), "status": "pending"}
    return {"message_hash": message_hash.hex(), "status": "ratified" if wait else "pending"}


async def _ref_arg(node: Daemon, group_id: bytes, request: dict[str, Any]) -> bytes | None:
    """The message a ``send`` refers to (``ref``: a hash or a unique prefix), or None."""
    ref = request.get("ref")
    if ref is None:
        return None
    if not isinstance(ref, str):
        raise DaemonError("ref must be a message hash or a unique prefix of one")
    try:
        return find_content_message(await node.chat.history(group_id), ref).message_hash
    except MessageRefError as exc:
        raise DaemonError(str(exc)) from None


async def op_history(node: Daemon, request: dict[str, Any], emit: Emit) -> list[dict[str, Any]]:
    group_id = group_arg(node, request)
    limit = request.get("limit", HISTORY_DEFAULT_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise DaemonError("limit must be a positive whole number")
    since = request.get("since", 0)
    if not isinstance(since, int) or isinstance(since, bool) or since < 0:
        raise DaemonError("since must be a time in ms since 1970")
    ratified = await node.chat.history(group_id)
    if request.get("peek") is not True:
        await node.reading.mark_read(group_id, node.chat.view(group_id), node.peer_id)
    # Our own messages still waiting for a quorum come after the ratified ones, marked so.
    pending = [message_json(m, me=node.peer_id) for m in node.chat.pending(group_id)]
    if request.get("raw") is True:
        shown = [message_json(m, me=node.peer_id) for m in ratified]
    else:
        owner = node.chat.group_state(group_id).owner
        shown = folded_history(
            ratified,
            owner,
            lambda m: message_json(m, me=node.peer_id),
            versions=request.get("versions") is True,
        )
    listed = [m for m in shown + pending if m["time_stamp"] >= since][-limit:]
    name_authors(listed, author_labels(ratified))
    return listed


def outbox_json(node: Daemon, item: OutboxView) -> dict[str, Any]:
    """The JSON view of a queued message (specs/control.md "Outbox")."""
    return {
        "group_id": item.group_id.hex(),
        "name": node.chat.group_state(item.group_id).name,
        "message_hash": item.message_hash.hex(),
        "origin": item.origin.hex(),
        "written_at": item.written_at,
        "age_ms": item.age,
        "failures": item.failures,
        "in_flight": item.in_flight,
        "next_at": item.next_at,
        "voted": [str(p) for p in item.voted],
        "refused": [{"peer_id": str(r.ratifier), "reason": r.reason} for r in item.refused],
        "waiting": [str(p) for p in item.waiting],
    }


async def op_outbox(node: Daemon, request: dict[str, Any], emit: Emit) -> list[dict[str, Any]]:
    group_id = group_arg(node, request) if request.get("group") is not None else None
    return [outbox_json(node, item) for item in node.chat.outbox(group_id)]


async def op_outbox_cancel(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    prefix = str_arg(request, "hash").strip().lower()
    if len(prefix) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
        raise DaemonError(f"a message hash is hex digits (at least {MIN_PREFIX}): {prefix!r}")
    queued = {
        item.message_hash: item
        for item in node.chat.outbox()
        if item.message_hash.hex().startswith(prefix) or item.origin.hex().startswith(prefix)
    }
    if len(queued) > 1:
        raise DaemonError(f"{prefix!r} names {len(queued)} messages; give more digits")
    if queued:
        (message_hash,) = queued
    elif len(prefix) == 64:
        message_hash = bytes.fromhex(prefix)
    else:
        for group_id in node.chat.groups():
            if any(
                m.message_hash.hex().startswith(prefix) for m in await node.chat.history(group_id)
            ):
                raise DaemonError("already ratified: too late to cancel")
        raise DaemonError("no such message in the outbox")
    try:
        group_id = await node.chat.cancel(message_hash)
    except ChatError as exc:
        raise DaemonError(str(exc)) from None
    return {"group_id": group_id.hex(), "message_hash": message_hash.hex(), "status": "cancelled"}


async def op_message(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    message = await find_message(node, group_id, str_arg(request, "hash"))
    found = message_json(message, me=node.peer_id, data=True)
    found["votes"] = await node.votes(group_id, message.message_hash)
    return found


async def op_subscribe(node: Daemon, request: dict[str, Any], emit: Emit) -> None:
    group_id = group_arg(node, request)
    state = node.chat.group_state(group_id)
    async with node.chat.subscribe(group_id) as messages:
        await emit({"kind": "subscribed", "group_id": group_id.hex(), "name": state.name})
        profiles = [m for m in await node.chat.history(group_id) if m.message_type == PROFILE]
        labels = author_labels(profiles)
        async for message in messages:
            if message.message_type == PROFILE and message.ratified:
                profiles.append(message)
                labels = author_labels(profiles)
            shown = message_json(message, me=node.peer_id)
            name_authors([shown], labels)
            await emit({"kind": "message", "message": shown})
            if message.ratified:  # shown to the subscriber: read
                await node.reading.mark_read(group_id, node.chat.view(group_id), node.peer_id)


async def op_search(node: Daemon, request: dict[str, Any], emit: Emit) -> list[dict[str, Any]]:
    query = str_arg(request, "query")
    limit = request.get("limit", 20)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise DaemonError("limit must be a positive whole number")
    chosen = [group_arg(node, request)] if request.get("group") else node.chat.groups()
    groups = [(g, functools.partial(node.chat.history_since, g)) for g in chosen]
    try:
        return await node.reading.search(groups, query, limit)
    except SearchError as exc:
        raise DaemonError(str(exc)) from None


from .file_ops import op_save, op_send_file  # noqa: E402 (it uses the helpers above)
from .group_ops import (  # noqa: E402 (likewise)
    op_group_create,
    op_group_invite,
    op_group_join,
    op_group_list,
    op_group_owner,
    op_group_remove,
    op_group_rename,
    op_group_role,
    op_group_roster,
)
from .profile_ops import op_profile, op_profile_set  # noqa: E402 (likewise)

#: An operation: the node, the request, a function that sends events; the result.
Operation = Callable[["Daemon", dict[str, Any], Emit], Awaitable[Any]]

#: Every operation of the control socket, by the name a request's ``"op"`` gives.
OPERATIONS: Final[dict[str, Operation]] = {
    "status": op_status,
    "stop": op_stop,
    "peers": op_peers,
    "connect": op_connect,
    "ping": op_ping,
    "group.create": op_group_create,
    "group.invite": op_group_invite,
    "group.join": op_group_join,
    "group.remove": op_group_remove,
    "group.role": op_group_role,
    "group.rename": op_group_rename,
    "group.owner": op_group_owner,
    "group.list": op_group_list,
    "group.roster": op_group_roster,
    "send": op_send,
    "history": op_history,
    "message": op_message,
    "outbox": op_outbox,
    "outbox.cancel": op_outbox_cancel,
    "subscribe": op_subscribe,
    "search": op_search,
    **DHT_OPERATIONS,
    "send.file": op_send_file,
    "save": op_save,
    "profile": op_profile,
    "profile.set": op_profile_set,
}


def _developer_operations() -> dict[str, Operation]:
    """The plug-in and query operations (``app/dev_operations.py``, which builds on this
    module's argument helpers, hence imported once they exist)."""
    from .dev_operations import DEV_OPERATIONS

    return DEV_OPERATIONS


OPERATIONS.update(_developer_operations())
