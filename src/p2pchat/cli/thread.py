"""Messages that refer to another (specs/chat.md §17, specs/cli.md "Replies, edits, deletes,
reactions"): ``reply``, ``edit``, ``delete`` and ``react``, each one ``send`` request on the
control socket with ``ref`` (a hash prefix as ``history`` shows it).

Every command here raises :class:`~p2pchat.app.control_protocol.ControlError` when no node runs
or the node refuses (its reason is the message: "not allowed" for someone else's message), and
:class:`~p2pchat.cli.common.UsageError` for a mistake found before asking it.
"""

from __future__ import annotations

import argparse
import mimetypes
import sys
from pathlib import Path
from typing import Any, Final

from .chat_commands import AVATAR_TYPES, MAX_AVATAR, MAX_NAME, MAX_REACTION
from .common import EXIT_PENDING, Command, UsageError, call
from .render import clean, print_json, size


def _text(words: list[str], what: str) -> str:
    text = sys.stdin.read() if words == ["-"] else " ".join(words)
    if not text.strip():
        raise UsageError(f"nothing to send: the {what} is empty")
    return text


def _report(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    """Print the node's answer to a message we sent; EXIT_PENDING when we waited in vain."""
    if args.json:
        print_json(answer)
    else:
        print(f"{answer['status']} {answer['message_hash']}")
    if answer["status"] == "pending" and not args.no_wait:
        print(
            "p2pchat: no quorum of ratifiers answered in time; it stays queued on the node",
            file=sys.stderr,
        )
        return EXIT_PENDING
    return 0


def _send(args: argparse.Namespace, kind: str, text: str, **extra: Any) -> int:
    answer = call(
        args,
        "send",
        group=args.group,
        type=kind,
        text=text,
        ref=args.hash,
        wait=not args.no_wait,
        **extra,
    )
    return _report(args, answer)


def cmd_reply(args: argparse.Namespace) -> int:
    """Answer a message: a text (or Markdown) whose ``ref_hash`` names it."""
    kind = "markdown" if args.markdown else "text"
    return _send(args, kind, _text(args.text, "reply"))


def cmd_edit(args: argparse.Namespace) -> int:
    """Replace the text of one of our messages (history shows the latest, marked edited)."""
    return _send(args, "edit", _text(args.text, "new text"), mime="text/plain")


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete one of our messages, or any as the group's owner (a tombstone)."""
    return _send(args, "delete", "")


def cmd_react(args: argparse.Namespace) -> int:
    """Toggle our reaction (an emoji or a short word) to a message."""
    reaction = args.reaction.strip()
    if not reaction or len(reaction.encode()) > MAX_REACTION:
        raise UsageError(f"a reaction is 1 to {MAX_REACTION} bytes of text")
    return _send(args, "reaction", reaction, mime="text/plain")


def cmd_name(args: argparse.Namespace) -> int:
    """Sign and send our profile: the name the group shows for us, and with ``--avatar`` an
    image sent first as an artifact (specs/chat.md §18). An avatar sent before is kept."""
    name = " ".join(args.name).strip()
    if not name or len(name.encode()) > MAX_NAME or "\n" in name:
        raise UsageError(f"a name is 1 to {MAX_NAME} bytes of text on one line")
    request: dict[str, Any] = {"group": args.group, "name": name, "wait": not args.no_wait}
    if args.avatar is not None:
        request["avatar"] = str(check_avatar_file(args.avatar))
    answer = call(args, "profile.set", **request)
    return _report(args, answer)


def check_avatar_file(path: str) -> Path:
    """The absolute path of an avatar file, checked as the node will check it.

    Raises:
        UsageError: it cannot be read, is not an image of the allowed types, or is too large.
    """
    target = Path(path).expanduser().resolve()
    mime = mimetypes.guess_type(target.name)[0]
    if mime not in AVATAR_TYPES:
        kinds = ", ".join(sorted(t.removeprefix("image/") for t in AVATAR_TYPES))
        raise UsageError(f"an avatar is an image ({kinds}), by its file name: {path}")
    try:
        size = target.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if size > MAX_AVATAR:
        raise UsageError(f"an avatar is at most {MAX_AVATAR // 1024} KiB; {path} is larger")
    return target


def cmd_profile(args: argparse.Namespace) -> int:
    """Show a member's name and avatar (ours by default); ``-o FILE`` saves the avatar."""
    request: dict[str, Any] = {"group": args.group}
    if args.peer is not None:
        request["peer"] = args.peer
    answer = call(args, "profile", **request)
    if args.json and args.output is None:
        print_json(answer)
        return 0
    avatar = answer["avatar"]
    print(f"peer:   {answer['peer']}")
    print(f"name:   {clean(answer['name']) if answer['name'] else '(none: shown by peer id)'}")
    if avatar is None:
        print("avatar: (none)")
    else:
        held = "" if avatar["held"] else ", not fetched yet"
        print(
            f"avatar: {clean(avatar['mime'])}, {size(avatar['size'])}{held} "
            f"(message {avatar['message_hash'][:12]})"
        )
    if args.output is None:
        return 0
    if avatar is None:
        raise UsageError("that member has no avatar to save")
    target = Path(args.output).expanduser().resolve()
    if target.exists():
        raise UsageError(f"{args.output} exists; choose another name with -o PATH")
    saved = call(args, "save", group=args.group, hash=avatar["message_hash"], path=str(target))
    print(f"saved {size(saved['size'])} ({clean(saved['mime'])}) to {clean(args.output)}")
    return 0


def add_arguments(command: Any) -> None:
    """The parsers of this module's commands (``command(name, help)`` makes one)."""
    parsers = {
        "reply": command("reply", "answer a message (by its hash as history shows it)"),
        "edit": command("edit", "replace the text of one of your messages"),
        "delete": command("delete", "delete one of your messages (the owner: any message)"),
        "react": command("react", "toggle your reaction to a message"),
    }
    for name, p in parsers.items():
        p.add_argument("group", help="group id, unique id prefix, or name")
        p.add_argument("hash", help="the message's hash, or a unique prefix (4+ hex digits)")
        if name in ("reply", "edit"):
            p.add_argument("text", nargs="+", help="the text ('-' reads it from stdin)")
        if name == "reply":
            p.add_argument("--markdown", action="store_true", help="the text is Markdown")
        if name == "react":
            p.add_argument("reaction", help="an emoji or a short word")
        p.add_argument("--no-wait", action="store_true", help="return once queued")
        p.add_argument("--json", action="store_true", help="print the node's answer as JSON")
    p = command("name", "set the name a group shows for you (a signed profile message)")
    p.add_argument("group", help="group id, unique id prefix, or name")
    p.add_argument("name", nargs="+", help="your display name (at most 64 bytes)")
    p.add_argument(
        "--avatar",
        metavar="FILE",
        help="also show this image (png, jpeg, gif or webp, at most 1 MiB) as your avatar",
    )
    p.add_argument("--no-wait", action="store_true", help="return once queued")
    p.add_argument("--json", action="store_true", help="print the node's answer as JSON")
    p = command("profile", "show a member's name and avatar (yours by default)")
    p.add_argument("group", help="group id, unique id prefix, or name")
    p.add_argument("peer", nargs="?", help="the member's peer id (default: you)")
    p.add_argument("-o", "--output", metavar="FILE", help="save the avatar to FILE")
    p.add_argument("--json", action="store_true", help="print the node's answer as JSON")


COMMANDS: Final[dict[str, Command]] = {
    "reply": cmd_reply,
    "edit": cmd_edit,
    "delete": cmd_delete,
    "react": cmd_react,
    "name": cmd_name,
    "profile": cmd_profile,
}
