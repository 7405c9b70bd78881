"""``p2pchat chat``: the interactive chat, through the running node (specs/cli.md).

Two control connections (:func:`p2pchat.client.connect`, the client library, here under Trio): one
streams the group's messages (``subscribe``), the other sends each line typed. It waits on the
node and on the terminal at once, so it is the one control command that runs Trio; it loads none
of the node's network layers.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any, Final

import trio

from ..app.control_protocol import RemoteCommandError
from ..client import connect
from .common import Command, UsageError, data_dir, run_trio, start_logging
from .render import PeerLabels, clean, format_message


async def _chat(args: argparse.Namespace) -> None:
    directory = data_dir(args)
    async with connect(directory) as events, connect(directory) as control:
        await events.start_stream("subscribe", group=args.group)
        first = await events.next_event()
        if first is None or first.get("kind") != "subscribed":
            raise UsageError("the node did not start the subscription")
        group_id = first["group_id"]
        print(
            f"chat in {clean(first['name'])} ({group_id[:16]}): type a line and press Enter to "
            "send it; Ctrl-D leaves",
            flush=True,
        )
        shown: set[str] = set()
        peers = PeerLabels()
        for message in await control.call("history", group=group_id, limit=args.last):
            print(format_message(message, date=False, status=True, peers=peers), flush=True)
            if message["ratified"]:  # ours still pending are shown again once ratified
                shown.add(message["message_hash"])
        mine_pending: set[str] = set()
        ratified: set[str] = set()
        settled = trio.Event()

        async def receive() -> None:
            nonlocal settled
            while (event := await events.next_event()) is not None:
                if event.get("kind") != "message":
                    continue
                message = event["message"]
                digest = message["message_hash"]
                if message["ratified"]:
                    if digest in shown:
                        continue
                    shown.add(digest)
                    ratified.add(digest)
                    mine_pending.discard(digest)
                    if not mine_pending:
                        settled.set()
                print(format_message(message, date=False, status=True, peers=peers), flush=True)

        async def send_lines(done: trio.CancelScope) -> None:
            nonlocal settled
            while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                try:
                    op, request = _chat_request(group_id, text)
                    answer = await control.call(op, **request)
                except RemoteCommandError as exc:  # e.g. a viewer: the session stays, read-only
                    print(f"p2pchat: not sent: {clean(str(exc))}", file=sys.stderr, flush=True)
                    continue
                if answer["message_hash"] not in ratified:
                    mine_pending.add(answer["message_hash"])
                    settled = trio.Event()
            if mine_pending:  # end of input: give our last messages a moment to be ratified
                with trio.move_on_after(args.wait):
                    await settled.wait()
            done.cancel()

        async def interrupted(done: trio.CancelScope) -> None:
            async for _ in signals:  # Ctrl-C leaves at once, without a traceback
                print(file=sys.stderr)
                done.cancel()

        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                nursery.start_soon(send_lines, nursery.cancel_scope)
                nursery.start_soon(interrupted, nursery.cancel_scope)
        if mine_pending:
            print(
                f"p2pchat: {len(mine_pending)} message(s) still pending; they stay queued "
                "on the node and go through when enough ratifiers are reachable",
                file=sys.stderr,
            )


def _chat_request(group_id: str, line: str) -> tuple[str, dict[str, Any]]:
    """The operation a typed line asks for: ``/file PATH`` sends a file (the node reads it by
    its absolute path), anything else is a text."""
    if line.startswith("/file "):
        path = Path(line[len("/file ") :].strip()).expanduser().resolve()
        return "send.file", {"group": group_id, "path": str(path), "wait": False, "progress": False}
    return "send", {"group": group_id, "text": line, "wait": False}


def cmd_chat(args: argparse.Namespace) -> int:
    """The interactive chat: lines typed are sent, everyone's messages are shown.

    Raises:
        ControlError: no node runs, or it refused (e.g. no such group).
        UsageError: the node did not start the subscription.
    """
    start_logging(args)
    run_trio(_chat, args)
    return 0


COMMANDS: Final[dict[str, Command]] = {"chat": cmd_chat}
