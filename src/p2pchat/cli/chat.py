"""``p2pchat chat``: the interactive chat, through the running node (specs/cli.md).

Two control connections (:func:`p2pchat.client.connect`, the client library, here under Trio): one
streams the group's messages (``subscribe``), the other sends each line typed. It waits on the
node and on the terminal at once, so it is the one control command that runs Trio; it loads none
of the node's network layers.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from typing import Final

import trio

from .chat_commands import HELP, Help, LineError, Quit, parse_line
from .chat_session import Sent, chat_line, open_session, pending_line, send_action
from .common import Command, run_trio, start_logging
from .render import PeerLabels, clean


class _Screen:
    """The session's output. On a terminal (stdin and stdout both), the line just typed is
    replaced by the message it became, and our pending message's line is rewritten in place as
    ratified when nothing was printed after it: one line per message with its state. Piped, every
    line is printed as it comes (scripts see ``(pending)`` then ``(ratified)``)."""

    def __init__(self) -> None:
        self.tty = sys.stdin.isatty() and sys.stdout.isatty()
        #: The hash of our pending message whose lines are the last printed, and their count.
        self._last: tuple[str, int] | None = None

    def _rows(self, text: str) -> int:
        width = max(shutil.get_terminal_size().columns, 1)
        return sum(max(1, -(-len(part) // width)) for part in text.split("\n"))

    def erase_typed(self, typed: str) -> None:
        """Take the line the terminal echoed off the screen (a terminal only)."""
        if self.tty:
            sys.stdout.write(f"\x1b[{self._rows(typed)}A\r\x1b[J")
            self._last = None

    def show(
        self, line: str, *, pending_of: str | None = None, replaces: str | None = None
    ) -> None:
        """Print ``line``; on a terminal, over our pending line of hash ``replaces`` if that is
        the last thing shown."""
        if self.tty and replaces is not None and self._last and self._last[0] == replaces:
            sys.stdout.write(f"\x1b[{self._last[1]}A\r\x1b[J")
        print(line, flush=True)
        self._last = None if pending_of is None else (pending_of, self._rows(line))

    def note(self, text: str) -> None:
        """A line for the user that is not a message (help, a refusal)."""
        print(text, file=sys.stderr, flush=True)
        self._last = None


async def _chat(args: argparse.Namespace) -> None:
    async with open_session(args) as session:
        events, control, group_id = session.events, session.control, session.group_id
        screen = _Screen()
        print(
            f"chat in {clean(session.name)} ({group_id[:16]}): type a line and press Enter to "
            "send it; /help lists the commands; Ctrl-D leaves",
            flush=True,
        )
        shown: set[str] = set()
        peers = PeerLabels()
        for message in await control.call("history", group=group_id, limit=args.last):
            print(chat_line(message, peers), flush=True)
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
                if not message["ratified"]:
                    continue  # ours: shown when sent
                if digest in shown:
                    continue
                shown.add(digest)
                ratified.add(digest)
                mine = digest in mine_pending
                mine_pending.discard(digest)
                if not mine_pending:
                    settled.set()
                screen.show(chat_line(message, peers), replaces=digest if mine else None)

        async def send_lines(done: trio.CancelScope) -> None:
            nonlocal settled
            while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
                typed = line.rstrip("\r\n")
                try:
                    action = parse_line(typed)
                except LineError as exc:
                    screen.note(f"p2pchat: {exc}")
                    continue
                if action is None:
                    continue
                if isinstance(action, Help):
                    screen.note(HELP)
                    continue
                if isinstance(action, Quit):
                    break
                sent = await send_action(control.call, group_id, action)
                if not isinstance(sent, Sent):  # e.g. a viewer's: read-only
                    screen.note(f"p2pchat: {sent}")
                    continue
                if sent.digest in ratified:
                    continue
                mine_pending.add(sent.digest)
                settled = trio.Event()
                screen.erase_typed(typed)
                pending = pending_line(sent.request, sent.digest, group_id)
                screen.show(chat_line(pending, peers), pending_of=sent.digest)
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


def cmd_chat(args: argparse.Namespace) -> int:
    """The interactive chat: lines typed are sent, everyone's messages are shown.

    Raises:
        ControlError: no node runs, or it refused (e.g. no such group).
        UsageError: the node did not start the subscription.
    """
    start_logging(args)
    if not args.plain and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            import prompt_toolkit  # noqa: F401 -- the terminal UI's library, if installed
        except ImportError:
            pass  # the line-by-line session below serves instead
        else:
            from .tui import run_tui

            run_trio(run_tui, args)
            return 0
    run_trio(_chat, args)
    return 0


COMMANDS: Final[dict[str, Command]] = {"chat": cmd_chat}
