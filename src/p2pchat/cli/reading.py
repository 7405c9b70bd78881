"""Reading (specs/cli.md "Reading"): ``history --since`` and ``--follow``, and ``search``.

``--follow`` waits on the node's message stream, so it runs Trio (as ``chat`` does); the rest
is one request on the control socket each.
"""

from __future__ import annotations

import argparse
import datetime
import re
import signal
import time
from typing import Any, Final

from .common import Command, UsageError, call, data_dir, run_trio
from .render import PeerLabels, clean, format_message, print_json, short_peer

_AGO: Final = re.compile(r"^(\d+)([smhd])$")
_UNIT_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def since_arg(text: str) -> int:
    """``--since``: ``30s``, ``10m``, ``2h``, ``3d`` ago, or a local date or date and time
    (``2026-12-02``, ``2026-12-02T10:00``); as ms since 1970.

    Raises:
        argparse.ArgumentTypeError: none of those.
    """
    ago = _AGO.match(text.strip())
    if ago:
        return max(0, int(time.time() * 1000) - int(ago[1]) * _UNIT_MS[ago[2]])
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (say 10m, 2h, 3d, or 2026-12-02T10:00)"
        ) from None
    return max(0, int(when.timestamp() * 1000))


def print_history(messages: list[dict[str, Any]], peers: PeerLabels) -> None:
    from .sanitize import terminal_text

    for message in messages:
        line = format_message(message, date=True, peers=peers, hashes=True)
        print(line if message["ratified"] else f"{line}  (pending)", flush=True)
        versions = message.get("versions") or []
        for number, version in enumerate(versions, 1):
            if len(versions) > 1:
                print(f"    version {number}: {terminal_text(version)}")


async def _follow(args: argparse.Namespace, request: dict[str, Any]) -> None:
    import trio

    from ..client import connect

    directory = data_dir(args)
    async with connect(directory) as events, connect(directory) as control:
        await events.start_stream("subscribe", group=args.group)
        first = await events.next_event()
        if first is None or first.get("kind") != "subscribed":
            raise UsageError("the node did not start the subscription")
        messages = await control.call("history", **request)
        peers = PeerLabels()
        if args.json:
            for message in messages:
                print_json(message)
        else:
            print_history(messages, peers)
        shown = {m["message_hash"] for m in messages if m["ratified"]}

        async def receive() -> None:
            while (event := await events.next_event()) is not None:
                message = event.get("message") if event.get("kind") == "message" else None
                if message is None or not message["ratified"]:
                    continue
                if message["message_hash"] in shown:
                    continue
                shown.add(message["message_hash"])
                if args.json:
                    print_json(message)
                else:
                    print(format_message(message, date=True, peers=peers, hashes=True), flush=True)

        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def interrupted() -> None:
                    async for _ in signals:  # Ctrl-C ends the follow, without a traceback
                        nursery.cancel_scope.cancel()

                nursery.start_soon(receive)
                nursery.start_soon(interrupted)


def cmd_history(args: argparse.Namespace) -> int:
    """Print a group's messages in display order, then ours pending; with ``--follow``, go on
    printing each new ratified message until Ctrl-C."""
    request: dict[str, Any] = {
        "group": args.group,
        "limit": args.limit,
        "versions": args.versions,
        "raw": args.raw,
    }
    if args.since is not None:
        request["since"] = args.since
    if args.follow:
        run_trio(_follow, args, request)
        return 0
    messages = call(args, "history", **request)
    if args.json:
        print_json(messages)
    else:
        print_history(messages, PeerLabels())
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Full-text search over this node's decrypted history."""
    query = " ".join(args.query)
    request: dict[str, Any] = {"query": query, "limit": args.limit}
    if args.group:
        request["group"] = args.group
    hits = call(args, "search", **request)
    if args.json:
        print_json(hits)
        return 0
    if not hits:
        print(f"no message matches {clean(query)!r}")
    for hit in hits:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(hit["time_stamp"] / 1000))
        print(
            f"[{when}] {hit['group_id'][:8]} {hit['message_hash'][:8]} "
            f"{short_peer(hit['author'])}: {clean(hit['snippet'])}"
        )
    return 0


def add_arguments(command: Any) -> None:
    """``search``'s parser (``history``'s options are added beside its others)."""
    p = command("search", "full-text search over this node's own decrypted history")
    p.add_argument("query", nargs="+", help='words (SQLite FTS5: AND, OR, NOT, "phrase", pre*)')
    p.add_argument("--group", help="only this group (id, unique id prefix, or name)")
    p.add_argument("--limit", type=int, default=20, help="at most N hits (default: 20)")
    p.add_argument("--json", action="store_true", help="print the node's answer as JSON")


def add_history_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=since_arg, help="only from then: 10m, 2h, 3d, or a date/time")
    p.add_argument("--follow", "-f", action="store_true", help="go on printing new messages")


COMMANDS: Final[dict[str, Command]] = {"history": cmd_history, "search": cmd_search}
