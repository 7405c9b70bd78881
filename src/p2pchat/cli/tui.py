"""``p2pchat chat`` as a terminal UI (prompt_toolkit; specs/cli.md "chat").

Theory of operation
-------------------
Trio owns the session: two control connections (the message stream and the requests), a
nursery, the end. prompt_toolkit runs on asyncio, so its :class:`Application` runs in a worker
thread that Trio awaits (``trio.to_thread.run_sync``); the two sides meet in two places only:

* what to draw: :class:`Rows` is replaced whole (one reference, swapped atomically) by the Trio
  side, which then calls ``Application.invalidate()`` (thread-safe);
* what was typed: the input line's accept handler hands the text to Trio through
  ``trio.from_thread.run_sync`` on a memory channel; the Trio side parses it
  (:mod:`.chat_commands`) and sends it.

Leaving the UI (Ctrl-D, Ctrl-C, ``/quit``) ends the thread, and Trio cancels the rest; the node
going away ends the stream, and Trio asks the Application to exit. The screen shows the folded
history (one line per message with its state: ``(pending)``, ``(ratified)``), re-read from the
node when a message arrives, and one status line (help, refusals, read-only for viewers).
"""

from __future__ import annotations

import argparse
from typing import Any, Final

import attrs
import trio

from .chat_commands import HELP, Help, LineError, Quit, parse_line
from .chat_session import Sent, chat_line, open_session, pending_line, send_action
from .render import PeerLabels, clean

#: Messages kept on screen (scroll with Page Up / Page Down).
SHOWN: Final = 500


@attrs.frozen
class Rows:
    """What the screen shows: the message lines and the status line."""

    lines: tuple[str, ...] = ()
    status: str = ""


class _Ui:
    """The prompt_toolkit side (runs in its worker thread, except :meth:`set_rows`)."""

    def __init__(self, title: str, token: trio.lowlevel.TrioToken, typed: Any) -> None:
        from prompt_toolkit.application import Application
        from prompt_toolkit.buffer import Buffer
        from prompt_toolkit.key_binding import KeyBindings
        from prompt_toolkit.layout import HSplit, Layout, Window
        from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl

        self.rows = Rows()
        self._scroll = 0
        self._token = token
        self._typed = typed
        self.read_only = False

        def accept(buffer: Buffer) -> bool:
            text = buffer.text
            if text.strip():
                trio.from_thread.run_sync(self._typed.send_nowait, text, trio_token=self._token)
            return False  # the line is cleared

        self.buffer = Buffer(multiline=False, accept_handler=accept)
        keys = KeyBindings()

        def _leave(event: Any) -> None:
            event.app.exit()

        def _up(event: Any) -> None:
            self._scroll = min(self._scroll + 10, max(0, len(self.rows.lines) - 1))

        def _down(event: Any) -> None:
            self._scroll = max(0, self._scroll - 10)

        for key, handler in (
            ("c-c", _leave),
            ("c-d", _leave),
            ("pageup", _up),
            ("pagedown", _down),
        ):
            keys.add(key)(handler)

        def messages() -> str:
            height = max(1, self.app.output.get_size().rows - 3)
            lines = self.rows.lines
            end = len(lines) - self._scroll
            return "\n".join(lines[max(0, end - height) : end])

        def status() -> str:
            if self.rows.status or not self.read_only:
                return self.rows.status
            return "read-only: a viewer sends only /name"

        self.app: Application[None] = Application(
            layout=Layout(
                HSplit(
                    [
                        Window(FormattedTextControl(lambda: title), height=1, style="reverse"),
                        Window(FormattedTextControl(messages), wrap_lines=True),
                        Window(FormattedTextControl(status), height=1, style="reverse"),
                        Window(BufferControl(self.buffer, input_processors=[_Prompt()]), height=1),
                    ]
                ),
                focused_element=self.buffer,
            ),
            key_bindings=keys,
            full_screen=True,
        )

    def set_rows(self, rows: Rows) -> None:
        """Show ``rows`` (from the Trio side: one reference swapped, then a thread-safe
        repaint)."""
        self.rows = rows
        loop = self.app.loop
        if loop is not None and not loop.is_closed():
            # invalidate() on the UI's own loop: its "already invalidated" flag is not
            # thread-safe, and a repaint asked for during a repaint could be lost
            loop.call_soon_threadsafe(self.app.invalidate)

    def run(self) -> None:
        self.app.run(handle_sigint=False, set_exception_handler=False)

    def exit_soon(self) -> None:
        loop = self.app.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._exit)

    def _exit(self) -> None:
        if self.app.is_running and not self.app.is_done:
            self.app.exit()


def _Prompt() -> Any:  # noqa: N802 -- a processor factory, named as the class it makes
    from prompt_toolkit.layout.processors import BeforeInput

    return BeforeInput("> ")


async def run_tui(args: argparse.Namespace) -> None:
    """The chat session with a terminal UI.

    Raises:
        UsageError: the node did not start the subscription.
    """
    async with open_session(args) as session:
        events, control, group_id = session.events, session.control, session.group_id
        groups = await control.call("group.list")
        role = next((g["role"] for g in groups if g["group_id"] == group_id), None)
        typed_send, typed_receive = trio.open_memory_channel[str](16)
        title = f" {clean(session.name)} ({group_id[:16]})  /help for commands, Ctrl-D leaves"
        ui = _Ui(title, trio.lowlevel.current_trio_token(), typed_send)
        ui.read_only = role == "viewer"
        peers = PeerLabels()
        mine: dict[str, dict[str, Any]] = {}
        status = ""
        one_call = trio.Lock()  # a control connection serves one request at a time

        async def call(op: str, **request: Any) -> Any:
            async with one_call:
                return await control.call(op, **request)

        async def refresh() -> None:
            history = await call("history", group=group_id, limit=SHOWN)
            held = {m["message_hash"] for m in history}
            for digest in list(mine):
                if digest in held:
                    del mine[digest]
            shown = history + [m for m in mine.values()]
            lines = tuple(chat_line(m, peers) for m in shown)
            ui.set_rows(Rows(lines, status))

        async def receive() -> None:
            while (event := await events.next_event()) is not None:
                if event.get("kind") == "message" and event["message"]["ratified"]:
                    await refresh()
            ui.exit_soon()  # the node went away

        async def send_typed() -> None:
            nonlocal status
            async for text in typed_receive:
                try:
                    action = parse_line(text)
                except LineError as exc:
                    status = str(exc)
                    await refresh()
                    continue
                if action is None:
                    continue
                if isinstance(action, Help):
                    status = "the commands are listed above"
                    ui.set_rows(Rows(ui.rows.lines + tuple(HELP.splitlines()), status))
                    continue
                if isinstance(action, Quit):
                    ui.exit_soon()
                    return
                sent = await send_action(call, group_id, action)
                if isinstance(sent, Sent):
                    status = ""
                    mine[sent.digest] = pending_line(sent.request, sent.digest, group_id)
                else:  # the node's refusal, shown; the session stays
                    status = sent
                await refresh()

        async def guarded(task: Any) -> None:
            try:
                await task()
            except BaseException:
                ui.exit_soon()  # the UI's thread cannot be cancelled: it is told to end
                raise

        async with trio.open_nursery() as nursery:
            nursery.start_soon(guarded, receive)
            nursery.start_soon(guarded, send_typed)
            nursery.start_soon(guarded, refresh)
            await trio.to_thread.run_sync(ui.run)
            nursery.cancel_scope.cancel()
