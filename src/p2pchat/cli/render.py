"""How the commands show what the node answers: JSON, sizes, peers and messages in a terminal."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Final


def print_json(value: Any) -> None:
    """``value`` as one line of JSON on stdout."""
    print(json.dumps(value, ensure_ascii=False), flush=True)


_CONTROL_CHARS: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """Text from a peer, safe for a terminal (no escape sequences or other control bytes)."""
    return _CONTROL_CHARS.sub("?", text)


def short_peer(peer_id: str) -> str:
    """A peer ID shortened for chat lines: ``12D3KooW..xY7Qp2``."""
    return f"{peer_id[:8]}..{peer_id[-6:]}" if len(peer_id) > 16 else peer_id


def size(count: int) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ``10.0 MiB``."""
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:.1f} MiB"


def message_body(message: dict[str, Any]) -> str:
    """What a message (specs/control.md "Message") shows in a terminal."""
    kind = message["type"]
    if not message.get("readable"):
        return f"[encrypted: this node holds no key for epoch {message['epoch']}]"
    if kind in ("text", "markdown"):
        text = clean(message.get("text") or "").replace("\n", "\n    ")
        return text if kind == "text" else f"(markdown) {text}"
    if kind == "roster":
        roster = message.get("roster")
        if not roster:
            return "[roster change]"
        return (
            f"[roster: epoch {roster['epoch']}, {len(roster['members'])} members, "
            f"quorum {roster['quorum']}]"
        )
    return (
        f"[{kind} {clean(message['mime'])}, {size(message.get('size') or 0)}; "
        f"save it with: p2pchat get {message['group_id'][:12]} {message['message_hash'][:12]}]"
    )


def format_message(message: dict[str, Any], *, date: bool, status: bool = False) -> str:
    """One message as a line (or a few, for multi-line text)."""
    when = time.localtime(message["time_stamp"] / 1000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", when)
    who = "you" if message.get("from_me") else short_peer(message["author"])
    line = f"[{stamp}] {who}: {message_body(message)}"
    if status:
        line += "  (ratified)" if message["ratified"] else "  (pending)"
    return line
