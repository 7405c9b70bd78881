"""What a line typed in ``p2pchat chat`` asks for (specs/cli.md "chat"): a message, or a
command that starts with ``/``. Pure: no I/O, so every case is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

#: §17 of specs/chat.md: a reaction is 1 to 32 bytes of UTF-8.
MAX_REACTION: Final = 32
#: §18: a display name is at most 64 bytes of UTF-8.
MAX_NAME: Final = 64
#: §18 "Avatars": the image types an avatar may declare, and its largest size (bytes).
AVATAR_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_AVATAR: Final = 1024 * 1024

HELP: Final = """\
commands (a line that does not start with / is sent as a message; // sends a line starting with /):
  /reply HASH TEXT    answer a message (HASH: its first hex digits, as shown)
  /edit HASH TEXT     replace the text of one of your messages
  /delete HASH        delete one of your messages (the group's owner: any message)
  /react HASH EMOJI   toggle your reaction to a message
  /md TEXT            send TEXT as Markdown
  /file PATH          send a file (images show as images)
  /name NAME          the name the group shows for you
  /avatar PATH        your avatar: an image (png, jpeg, gif, webp) of at most 1 MiB
  /help               this list
  /quit               leave (Ctrl-D too)"""


class LineError(Exception):
    """A command typed wrongly; the message says how to type it."""


@dataclass(frozen=True)
class Send:
    """A ``send`` request to make: its arguments on the control socket."""

    request: dict[str, Any]


@dataclass(frozen=True)
class SendFile:
    """Send the file at ``path`` (read by the session, not here); with ``avatar``, as our
    avatar (the node sends it, then our profile referring to it)."""

    path: str
    avatar: bool = False


@dataclass(frozen=True)
class Help:
    """Show :data:`HELP`."""


@dataclass(frozen=True)
class Quit:
    """Leave the chat."""


Action = Send | SendFile | Help | Quit | None

_USAGE: Final = {
    "reply": "/reply HASH TEXT",
    "edit": "/edit HASH TEXT",
    "delete": "/delete HASH",
    "react": "/react HASH EMOJI",
    "md": "/md TEXT",
    "name": "/name NAME",
    "file": "/file PATH",
    "avatar": "/avatar PATH",
}


def parse_line(line: str) -> Action:
    """What ``line`` (without its newline) asks for; None for a blank line.

    Raises:
        LineError: an unknown command, or one without what it needs.
    """
    if not line.strip():
        return None
    if line.startswith("//"):
        return Send({"type": "text", "text": line[1:]})
    if not line.startswith("/"):
        return Send({"type": "text", "text": line})
    name, _, rest = line[1:].partition(" ")
    if name in ("help", "?"):
        return Help()
    if name in ("quit", "exit"):
        return Quit()
    if name not in _USAGE:
        raise LineError(f"unknown command /{name} (see /help; // sends a line starting with /)")
    if name in ("file", "avatar"):
        if not rest.strip():
            raise LineError(f"usage: {_USAGE[name]}")
        return SendFile(rest.strip(), avatar=name == "avatar")
    if name in ("md", "name"):
        if not rest.strip():
            raise LineError(f"usage: {_USAGE[name]}")
        if name == "name":
            if len(rest.strip().encode()) > MAX_NAME:
                raise LineError(f"a name is at most {MAX_NAME} bytes")
            return Send({"type": "profile", "text": rest.strip(), "mime": "text/plain"})
        return Send({"type": "markdown", "text": rest})
    ref, _, text = rest.strip().partition(" ")
    text = text.strip()
    if not ref or (name != "delete" and not text) or (name == "delete" and text):
        raise LineError(f"usage: {_USAGE[name]}")
    if name == "reply":
        return Send({"type": "text", "text": text, "ref": ref})
    if name == "edit":
        return Send({"type": "edit", "text": text, "ref": ref, "mime": "text/plain"})
    if name == "delete":
        return Send({"type": "delete", "text": "", "ref": ref})
    if len(text.encode()) > MAX_REACTION:
        raise LineError(f"a reaction is at most {MAX_REACTION} bytes")
    return Send({"type": "reaction", "text": text, "ref": ref, "mime": "text/plain"})


def request_of(action: Send | SendFile) -> tuple[str, dict[str, Any]]:
    """The control operation and its arguments for ``action`` (without ``group`` and
    ``wait``): ``send``, or ``send.file`` for a file, which the node reads by its absolute path
    (specs/artifacts.md: any size), or ``profile.set`` for a name or an avatar (the arguments
    ``type`` and ``text`` only say how to show it while it waits)."""
    if isinstance(action, Send):
        if action.request.get("type") == "profile":  # a new name keeps our avatar (§18)
            name = action.request["text"]
            return "profile.set", {"name": name, "type": "profile", "text": name}
        return "send", action.request
    from pathlib import Path

    path = Path(action.path).expanduser().resolve()
    if action.avatar:
        return "profile.set", {"avatar": str(path), "type": "avatar"}
    return "send.file", {"path": str(path), "progress": False}
