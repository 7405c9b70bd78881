"""The control operations on groups: create, invite, join, remove, set a role, rename, hand
over, list and show the roster (specs/control.md "Operations", specs/chat.md §20)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chat.core.roster import Role
from .control import Emit
from .op_args import DaemonError, group_arg, parse_peer, peer_of, str_arg, target_arg

if TYPE_CHECKING:
    from .daemon import Daemon


async def op_group_rename(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    name = str_arg(request, "name")
    await node.chat.rename(group_id, name)
    state = node.chat.group_state(group_id)
    return {"group_id": group_id.hex(), "name": state.name, "epoch": state.current_epoch}


async def op_group_owner(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    peer = peer_of(parse_peer(str_arg(request, "peer")))
    await node.chat.hand_over(group_id, peer)
    state = node.chat.group_state(group_id)
    return {"group_id": group_id.hex(), "owner": str(state.owner), "epoch": state.current_epoch}


async def op_group_create(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    name = str_arg(request, "name")
    quorum = request.get("quorum")
    if quorum is not None and (not isinstance(quorum, int) or isinstance(quorum, bool)):
        raise DaemonError("quorum must be a whole number")
    history = request.get("history", "all")
    if history not in ("all", "since_join"):
        raise DaemonError("history must be 'all' or 'since_join'")
    group_id = await node.chat.create_group(name, quorum=quorum, history=history)
    return {"group_id": group_id.hex(), "name": name}


async def op_group_invite(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    owner = node.chat.group_state(group_id).owner
    if owner != node.chat.peer_id:  # say so before anything about the invitee
        raise DaemonError(f"only the group's owner can invite; its owner is {owner}")
    target = target_arg(node, request, "peer")
    role_text = request.get("role", "user")
    try:
        role = Role(role_text)
    except ValueError:
        raise DaemonError(
            f"role must be one of ratifier, user, viewer (not {role_text!r})"
        ) from None
    await node.chat.invite(group_id, target, role)
    state = node.chat.group_state(group_id)
    return {
        "group_id": group_id.hex(),
        "peer_id": str(peer_of(target)),
        "role": role.value,
        "epoch": state.current_epoch,
        "owner_addrs": [str(a) for a in node.host.addrs],
    }


async def op_group_join(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    text = str_arg(request, "group").lower()
    try:
        group_id = bytes.fromhex(text)
    except ValueError:
        group_id = b""
    if len(group_id) != 32:
        raise DaemonError(f"a group id is 64 hex digits: {text!r}")
    via = target_arg(node, request, "via")
    await node.chat.join(group_id, via)
    state = node.chat.group_state(group_id)
    return {"group_id": group_id.hex(), "name": state.name, "epoch": state.current_epoch}


async def op_group_remove(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    peer = peer_of(parse_peer(str_arg(request, "peer")))
    if node.chat.group_state(group_id).current_roster.member(peer) is None:
        raise DaemonError(f"{peer} is not a member of this group")
    await node.chat.remove(group_id, peer)
    return {"group_id": group_id.hex(), "peer_id": str(peer)}


async def op_group_role(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    peer = peer_of(parse_peer(str_arg(request, "peer")))
    role = request.get("role")
    if role not in [r.value for r in Role]:
        raise DaemonError("role must be ratifier, user or viewer")
    await node.chat.set_role(group_id, peer, role)
    state = node.chat.group_state(group_id)
    return {
        "group_id": group_id.hex(),
        "peer_id": str(peer),
        "role": role,
        "epoch": state.current_epoch,
    }


def _group_summary(node: Daemon, group_id: bytes) -> dict[str, Any]:
    state = node.chat.group_state(group_id)
    roster = state.current_roster
    role = roster.role_of(node.peer_id)
    return {
        "group_id": group_id.hex(),
        "name": state.name,
        "owner": str(state.owner),
        "role": role.value if role is not None else None,
        "epoch": state.current_epoch,
        "members": len(roster.members),
        "ratifiers": len(roster.ratifiers),
        "quorum": roster.quorum,
        "history": roster.history,
    }


async def op_group_list(node: Daemon, request: dict[str, Any], emit: Emit) -> list[dict[str, Any]]:
    summaries = [_group_summary(node, g) for g in node.chat.groups()]
    for summary in summaries:
        group_id = bytes.fromhex(summary["group_id"])
        view = node.chat.view(group_id)
        summary["unread"] = await node.reading.unread(group_id, view, node.peer_id)
    return sorted(summaries, key=lambda s: (s["name"], s["group_id"]))


async def op_group_roster(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    state = node.chat.group_state(group_id)
    connected = set(node.host.connected_peers())
    summary = _group_summary(node, group_id)
    summary["member_list"] = [
        {
            "peer_id": str(m.peer),
            "role": m.role.value,
            "owner": m.peer == state.owner,
            "me": m.peer == node.peer_id,
            "connected": m.peer in connected,
        }
        for m in sorted(
            state.current_roster.members,
            key=lambda m: (m.peer != state.owner, m.role.value, str(m.peer)),
        )
    ]
    return summary
