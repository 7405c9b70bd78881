"""``p2pchat chat`` as a terminal UI, driven through a pseudo-terminal (specs/cli.md "chat")."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
from pathlib import Path

import pytest
import trio

from cli.nodes import COMMAND, STEP_TIMEOUT, ok, running_node

pytest.importorskip("prompt_toolkit")
pytestmark = pytest.mark.timeout(180)
#: A step of the UI (a key, a redraw) on a loaded machine: the node, the UI and the session share
#: the cores with whatever else runs.
UI_STEP_TIMEOUT = 2 * STEP_TIMEOUT


async def read_until(stream: trio.lowlevel.FdStream, seen: bytearray, text: str, start: int) -> int:
    """Read the terminal into ``seen`` until ``text`` shows at or after ``start``; its index."""
    with trio.move_on_after(UI_STEP_TIMEOUT):
        while (found := seen.find(text.encode(), start)) < 0:
            chunk = await stream.receive_some()
            assert chunk, f"the terminal closed before {text!r}: {bytes(seen[-400:])!r}"
            seen += chunk
        return found
    raise AssertionError(
        f"{text!r} never showed; the terminal's last bytes: {bytes(seen[-800:])!r}"
    )


async def test_the_chat_ui_in_a_terminal(tmp_path: Path) -> None:
    alice_dir = tmp_path / "alice"
    async with running_node(alice_dir):
        group = (await ok(alice_dir, "group", "create", "solo")).stdout.strip()
        await ok(alice_dir, "send", group, "before the ui")
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 140, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
        process = await trio.lowlevel.open_process(
            [*COMMAND, "--data-dir", str(alice_dir), "chat", "solo"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        terminal = trio.lowlevel.FdStream(master)
        try:
            seen = bytearray()
            at = await read_until(terminal, seen, "before the ui", 0)
            await read_until(terminal, seen, "/help for commands", 0)
            # Keys typed before the UI reads the terminal may be lost: type until the input
            # line shows them (Ctrl-U clears it first, so it holds one copy), then Enter.
            for _ in range(10):
                await terminal.send_all(b"\x15hello from the ui")
                with trio.move_on_after(2):
                    while (found := seen.find(b"hello from the ui", at)) < 0:
                        seen += await terminal.receive_some()
                    at = found
                    break
            else:
                raise AssertionError(f"the input line never showed the text: {bytes(seen)!r}")
            await terminal.send_all(b"\r")
            at = await read_until(terminal, seen, "you: hello from the ui", at)
            await read_until(terminal, seen, "ratified", at)  # its line, rewritten in place
            await terminal.send_all(b"/help\r")
            await read_until(terminal, seen, "/react HASH EMOJI", at)
            await terminal.send_all(b"/bogus\r")
            await read_until(terminal, seen, "unknown command /bogus", at)
            await terminal.send_all(b"\x04")  # Ctrl-D leaves
            with trio.fail_after(STEP_TIMEOUT):
                assert await process.wait() == 0
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()
                await terminal.aclose()
        history = (await ok(alice_dir, "history", group, "--json")).json()
        texts = [m.get("text") for m in history if m["type"] != "roster"]
        assert texts == ["before the ui", "hello from the ui"]  # /help and /bogus not sent
