"""Running the py-libp2p tools of tools/interop (one service each) from the interop tests: a
long-running process read one JSON event at a time, and a client command run to its end. The
interpreter is the ``python`` fixture of conftest.py."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import trio

TOOLS: Final = Path(__file__).resolve().parents[2] / "tools" / "interop"
#: Seconds a process has to end after its stdin closed, before it is killed.
STOP_GRACE: Final = 10.0


class ScriptProcess:
    """A running tool: its JSON lines, one at a time."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    async def next_event(self) -> dict[str, Any]:
        """The next JSON line; an ``error`` event or an early exit fails the test."""
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some()
            assert chunk, f"the py-libp2p tool exited early: {self._buffer!r}"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        assert event["event"] != "error", event
        return event


@asynccontextmanager
async def running_script(python: str, script: str, *args: str) -> AsyncIterator[ScriptProcess]:
    """Run ``tools/interop/<script>`` with ``args``; on exit close its stdin (which ends it),
    wait for it and kill it if it lingers."""
    process = await trio.lowlevel.open_process(
        [python, str(TOOLS / script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        yield ScriptProcess(process)
    finally:
        with trio.CancelScope(shield=True):
            assert process.stdin is not None
            assert process.stdout is not None
            await process.stdin.aclose()
            with trio.move_on_after(STOP_GRACE):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdout.aclose()


async def run_script(python: str, script: str, *args: str) -> dict[str, Any]:
    """Run a client command of ``tools/interop/<script>`` to its end; its last JSON line, which
    must not be an error."""
    done = await trio.run_process(
        [python, str(TOOLS / script), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0, (lines, done.stderr.decode()[-2000:])
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer
