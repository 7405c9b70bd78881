"""Our messages waiting for a quorum on the running node: ``outbox [GROUP]`` lists them,
``outbox cancel HASH`` withdraws one (specs/cli.md, specs/control.md "Outbox").

Every command here raises :class:`~p2pchat.app.control_protocol.ControlError` when no node runs
or the node refuses (its reason is the message), and :class:`~p2pchat.cli.common.UsageError` for
a mistake found before asking it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Final

from .common import Command, UsageError, call
from .render import PeerLabels, clean, print_json


def _duration(ms: int) -> str:
    """A duration for people: ``800ms``, ``12s``, ``3m05s``, ``2h10m``."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def format_item(item: dict[str, Any], *, now: int, peers: PeerLabels) -> list[str]:
    """One queued message as a line, and one more for the current attempt's ratifiers."""
    when = "attempt in flight"
    if not item["in_flight"] and item["next_at"] is not None:
        due = item["next_at"] - now
        when = "due now" if due <= 0 else f"next attempt in {_duration(due)}"
    lines = [
        f"{clean(item['name'])} {item['message_hash'][:12]}  age {_duration(item['age_ms'])}  "
        f"failed attempts {item['failures']}  {when}"
    ]
    if item["in_flight"]:
        parts = []
        if item["voted"]:
            parts.append("voted: " + ", ".join(peers.label(p) for p in item["voted"]))
        if item["refused"]:
            refused = (
                f"{peers.label(r['peer_id'])} ({clean(r['reason'])})" for r in item["refused"]
            )
            parts.append("refused: " + ", ".join(refused))
        if item["waiting"]:
            parts.append("no answer yet: " + ", ".join(peers.label(p) for p in item["waiting"]))
        if parts:
            lines.append("    " + "; ".join(parts))
    return lines


def cmd_outbox(args: argparse.Namespace) -> int:
    """List our waiting messages, or (``outbox cancel HASH``) withdraw one.

    Raises:
        UsageError: more words than ``[GROUP]`` or ``cancel HASH``.
    """
    words: list[str] = args.words
    if words[:1] == ["cancel"]:
        if len(words) != 2:
            raise UsageError("usage: p2pchat outbox cancel HASH")
        answer = call(args, "outbox.cancel", hash=words[1])
        if args.json:
            print_json(answer)
        else:
            print(f"cancelled {answer['message_hash']} (it stays pending; it will not be sent)")
        return 0
    if len(words) > 1:
        raise UsageError("usage: p2pchat outbox [GROUP] | p2pchat outbox cancel HASH")
    request = {"group": words[0]} if words else {}
    items = call(args, "outbox", **request)
    if args.json:
        print_json(items)
        return 0
    if not items:
        print("the outbox is empty")
        return 0
    now = int(time.time() * 1000)
    peers = PeerLabels()
    for item in items:
        for line in format_item(item, now=now, peers=peers):
            print(line)
    return 0


COMMANDS: Final[dict[str, Command]] = {"outbox": cmd_outbox}
