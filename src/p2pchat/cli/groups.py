"""``p2pchat group ...``: create, invite, join, remove, list and show groups on the running node,
each one request on the control socket (specs/control.md "Operations").

Every command here raises :class:`~p2pchat.app.control_protocol.ControlError` when no node runs
or the node refuses (its reason is the message).
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from .common import Command, call
from .render import clean, print_json


def cmd_group_create(args: argparse.Namespace) -> int:
    """Create a group with this node as owner and ratifier; print its id."""
    request: dict[str, Any] = {"name": args.name, "history": args.history}
    if args.quorum is not None:
        request["quorum"] = args.quorum
    answer = call(args, "group.create", **request)
    if args.json:
        print_json(answer)
    else:
        print(answer["group_id"])
    return 0


def cmd_group_invite(args: argparse.Namespace) -> int:
    """Add a peer to a group; print the command the invitee runs to join."""
    answer = call(args, "group.invite", group=args.group, peer=args.peer, role=args.role)
    if args.json:
        print_json(answer)
        return 0
    print(
        f"invited {clean(answer['peer_id'])} as {answer['role']} "
        f"(the group is at epoch {answer['epoch']})"
    )
    via = answer["owner_addrs"][0] if answer["owner_addrs"] else "<this node's address>"
    print(f"they join with: p2pchat group join {answer['group_id']} {clean(via)}")
    return 0


def cmd_group_join(args: argparse.Namespace) -> int:
    """Join a group this node was invited to, through a member."""
    answer = call(args, "group.join", group=args.group, via=args.via)
    if args.json:
        print_json(answer)
    else:
        print(f"joined {clean(answer['name'])} ({answer['group_id']}) at epoch {answer['epoch']}")
    return 0


def cmd_group_remove(args: argparse.Namespace) -> int:
    """Remove a member from a group."""
    answer = call(args, "group.remove", group=args.group, peer=args.peer)
    print(f"removed {clean(answer['peer_id'])}")
    return 0


def cmd_group_role(args: argparse.Namespace) -> int:
    """Change a member's role (owner only)."""
    answer = call(args, "group.role", group=args.group, peer=args.peer, role=args.role)
    print(f"{clean(answer['peer_id'])} is now a {answer['role']} (epoch {answer['epoch']})")
    return 0


def cmd_group_rename(args: argparse.Namespace) -> int:
    """Rename a group (owner only)."""
    answer = call(args, "group.rename", group=args.group, name=args.name)
    print(f"renamed to {clean(answer['name'])} (epoch {answer['epoch']})")
    return 0


def cmd_group_owner(args: argparse.Namespace) -> int:
    """Hand a group's ownership to another member (owner only)."""
    answer = call(args, "group.owner", group=args.group, peer=args.peer)
    print(f"{clean(answer['owner'])} now owns the group (epoch {answer['epoch']})")
    return 0


def cmd_group_leave(args: argparse.Namespace) -> int:
    """Ask to leave a group: a ratified request that the owner's node honours."""
    answer = call(args, "send", group=args.group, type="leave", text="")
    print(
        f"{answer['status']} {answer['message_hash']}: the owner's node takes you off the "
        "roster when it sees the request"
    )
    return 0


def cmd_group_list(args: argparse.Namespace) -> int:
    """List this node's groups."""
    groups = call(args, "group.list")
    if args.json:
        print_json(groups)
        return 0
    if not groups:
        print("no groups yet (create one with: p2pchat group create NAME)")
    for g in groups:
        print(
            f"{g['group_id']}  {clean(g['name'])}  {g['role']}  epoch {g['epoch']}  "
            f"{g['members']} members, quorum {g['quorum']} of {g['ratifiers']} ratifiers"
            + (f"  {g['unread']} unread" if g.get("unread") else "")
        )
    return 0


def cmd_group_roster(args: argparse.Namespace) -> int:
    """Show a group's members and roles."""
    roster = call(args, "group.roster", group=args.group)
    if args.json:
        print_json(roster)
        return 0
    print(
        f"{clean(roster['name'])} ({roster['group_id']}): epoch {roster['epoch']}, "
        f"quorum {roster['quorum']} of {roster['ratifiers']} ratifiers, history {roster['history']}"
    )
    for m in roster["member_list"]:
        notes = [n for n, on in (("owner", m["owner"]), ("you", m["me"])) if on]
        if m["connected"]:
            notes.append("connected")
        print(f"{clean(m['peer_id'])}  {m['role']:<8}  {', '.join(notes)}".rstrip())
    return 0


GROUP_COMMANDS: Final[dict[str, Command]] = {
    "create": cmd_group_create,
    "invite": cmd_group_invite,
    "join": cmd_group_join,
    "remove": cmd_group_remove,
    "role": cmd_group_role,
    "rename": cmd_group_rename,
    "owner": cmd_group_owner,
    "leave": cmd_group_leave,
    "list": cmd_group_list,
    "roster": cmd_group_roster,
}


def cmd_group(args: argparse.Namespace) -> int:
    """Run the ``group`` action the command line names.

    Raises:
        ControlError: no node runs, or it refused.
    """
    return GROUP_COMMANDS[args.group_command](args)


COMMANDS: Final[dict[str, Command]] = {"group": cmd_group}
