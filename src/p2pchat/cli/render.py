"""How the commands show what the node answers: JSON, sizes, peers and messages in a terminal.

Every string a peer chose goes through :func:`clean` (one-line values) or
:func:`~p2pchat.cli.sanitize.terminal_text` (message bodies) before it is printed; ``--json``
prints the node's answer exactly (:func:`print_json`).
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

from .sanitize import terminal_text


def print_json(value: Any) -> None:
    """``value`` as one line of JSON on stdout (JSON escapes control characters itself)."""
    print(json.dumps(value, ensure_ascii=False), flush=True)


def clean(text: object) -> str:
    """A one-line value from a peer (a name, an agent, a MIME type, an address, a reason),
    safe for a terminal: :func:`~p2pchat.cli.sanitize.terminal_text`."""
    return terminal_text(text)


#: Characters of a peer ID shown after the ``12D3KooW`` that every Ed25519 peer ID starts with:
#: 16 base58 characters are about 93 bits, out of reach of a search for a look-alike key.
PEER_LABEL_CHARS: Final = 16
_COMMON_PREFIX: Final = "12D3KooW"


def short_peer(peer_id: str) -> str:
    """A peer ID shortened for chat lines: its first ``8 + PEER_LABEL_CHARS`` characters
    (``12D3KooW`` and 16 that vary), then ``..``; a short ID whole."""
    keep = len(_COMMON_PREFIX) + PEER_LABEL_CHARS
    return clean(f"{peer_id[:keep]}..") if len(peer_id) > keep + 2 else clean(peer_id)


class PeerLabels:
    """How the peers of one output (a history, a chat session) are shown: :func:`short_peer`,
    unless two peers shown share that prefix; from then on both are shown in full."""

    def __init__(self) -> None:
        self._by_label: dict[str, set[str]] = {}

    def label(self, peer_id: str) -> str:
        """How ``peer_id`` is shown (after every peer shown before it)."""
        short = short_peer(peer_id)
        seen = self._by_label.setdefault(short, set())
        seen.add(peer_id)
        return short if len(seen) == 1 else clean(peer_id)


def size(count: int) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ``10.0 MiB``."""
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:.1f} MiB"


def _reference(message: dict[str, Any], labels: PeerLabels) -> str:
    """The body with what the fold says of it (§17): a reply's target, an edit, a delete,
    reactions."""
    if message.get("deleted_by") is not None:
        by = message["deleted_by"]
        who = "its author" if by == message["author"] else labels.label(by)
        return f"[message deleted by {who}]"
    body = message_body(message)
    if message.get("ref_hash") and message["type"] in ("text", "markdown", "image", "file"):
        body = f"(reply to {message['ref_hash'][:HASH_CHARS]}) {body}"
    if message.get("edited"):
        body += " (edited)"
    reactions = message.get("reactions") or {}
    if reactions:
        shown = ", ".join(f"{clean(r)} {len(p)}" for r, p in reactions.items())
        body += f"  [{shown}]"
    return body


def message_body(message: dict[str, Any]) -> str:
    """What a message (specs/control.md "Message") shows in a terminal."""
    kind = message["type"]
    if not message.get("readable"):
        return f"[encrypted: this node holds no key for epoch {message['epoch']}]"
    if kind in ("text", "markdown"):
        text = terminal_text(message.get("text") or "", multiline=True).replace("\n", "\n    ")
        return text if kind == "text" else f"(markdown) {text}"
    ref = clean(message.get("ref_hash") or "")[:HASH_CHARS]
    if kind == "edit":
        text = terminal_text(message.get("text") or "", multiline=True).replace("\n", "\n    ")
        return f"(edit of {ref}) {text}"
    if kind == "delete":
        return f"(deleted {ref})"
    if kind == "leave":
        return "(asked to leave the group)"
    if kind == "profile":
        return f"(is now called {clean(message.get('text') or '')})"
    if kind == "reaction":
        return f"(reacted {clean(message.get('text') or '')} to {ref})"
    if kind == "roster":
        roster = message.get("roster")
        if not roster:
            return "[roster change]"
        if "members" not in roster:  # a change (specs/chat.md §20)
            parts = [f"+{clean(m['peer_id'])} as {m['role']}" for m in roster["added"]]
            parts += [f"-{clean(p)}" for p in roster["removed"]]
            parts += [f"{clean(r['peer_id'])} now {r['role']}" for r in roster["roles"]]
            if "name" in roster:
                parts.append(f"renamed {clean(roster['name'])!r}")
            if "owner" in roster:
                parts.append(f"owner now {clean(roster['owner'])}")
            return f"[roster: epoch {roster['epoch']}" + "".join(f", {p}" for p in parts) + "]"
        return (
            f"[roster: epoch {roster['epoch']}, {len(roster['members'])} members, "
            f"quorum {roster['quorum']}]"
        )
    artifact = message.get("artifact")
    if artifact is not None:
        held = "" if artifact.get("held") else ", not fetched yet"
        return (
            f"[{clean(kind)} {clean(artifact['name'] or '?')} ({clean(message['mime'])}, "
            f"{size(artifact['size'])}{held}); save it with: p2pchat get "
            f"{message['group_id'][:12]} {message['message_hash'][:12]}]"
        )
    return (
        f"[{clean(kind)} {clean(message['mime'])}, {size(message.get('size') or 0)}; "
        f"save it with: p2pchat get {message['group_id'][:12]} {message['message_hash'][:12]}]"
    )


#: Hex digits of a message hash shown in a history line (what ``reply``/``edit`` take).
HASH_CHARS: Final = 8


def format_message(
    message: dict[str, Any],
    *,
    date: bool,
    status: bool = False,
    peers: PeerLabels | None = None,
    hashes: bool = False,
) -> str:
    """One message as a line (or a few, for multi-line text). Its author is shown as
    ``peers`` shows it (the labels of the output so far; default: this message alone); with
    ``hashes``, its hash prefix after the time. A folded message (specs/control.md "Folded
    history") shows what it answers, that it was edited or deleted, and its reactions."""
    when = time.localtime(message["time_stamp"] / 1000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", when)
    labels = peers if peers is not None else PeerLabels()
    if message.get("from_me"):
        who = "you"
    elif message.get("author_name"):
        who = clean(message["author_name"])
    else:
        who = labels.label(message["author"])
    tag = f" {message['message_hash'][:HASH_CHARS]}" if hashes else ""
    line = f"[{stamp}]{tag} {who}: {_reference(message, labels)}"
    if status:
        line += "  (ratified)" if message["ratified"] else "  (pending)"
    return line
