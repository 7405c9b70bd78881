"""The control operations that rename a group and hand it over (specs/control.md
"Operations", specs/chat.md §20)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .control import Emit
from .operations import _group_arg, _peer_of, _str_arg, parse_peer

if TYPE_CHECKING:
    from .daemon import Daemon


async def op_group_rename(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = _group_arg(node, request)
    name = _str_arg(request, "name")
    await node.chat.rename(group_id, name)
    state = node.chat.group_state(group_id)
    return {"group_id": group_id.hex(), "name": state.name, "epoch": state.current_epoch}


async def op_group_owner(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = _group_arg(node, request)
    peer = _peer_of(parse_peer(_str_arg(request, "peer")))
    await node.chat.hand_over(group_id, peer)
    state = node.chat.group_state(group_id)
    return {"group_id": group_id.hex(), "owner": str(state.owner), "epoch": state.current_epoch}
