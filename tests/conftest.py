"""Shared fixtures: the py-libp2p interop peer (tools/interop/pylibp2p_peer.py).

The peer runs in its own virtualenv, named by ``P2PCHAT_INTEROP_PYTHON`` (``make unit`` sets it
to ``.venv-interop/bin/python``). Tests that use the ``pylibp2p`` fixture are skipped, with that
reason, where it is not set.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import trio

SCRIPT: Final = Path(__file__).resolve().parent.parent / "tools" / "interop" / "pylibp2p_peer.py"
#: Every subprocess runs under this deadline; the script's own --timeout is shorter.
PROCESS_DEADLINE: Final = 30.0


class PyLibp2p:
    """Runs the py-libp2p peer script: one-shot client commands, or a listener."""

    def __init__(self, python: str) -> None:
        self.python = python

    async def run(self, *args: str, limit: float = 20.0) -> tuple[int, dict[str, Any]]:
        """Run one client command (its own ``--timeout`` is ``limit``); return its exit
        status and its single JSON line."""
        cmd = [self.python, str(SCRIPT), *args, "--timeout", str(limit)]
        cmd += ["--max-conns-per-peer", "1"]
        with trio.fail_after(limit + PROCESS_DEADLINE):
            done = await trio.run_process(
                cmd, capture_stdout=True, capture_stderr=True, check=False
            )
        lines = done.stdout.decode().splitlines()
        assert len(lines) == 1, (lines, done.stderr.decode()[-2000:])
        return done.returncode, json.loads(lines[0])

    @asynccontextmanager
    async def listen(
        self, *args: str, lifetime: float = PROCESS_DEADLINE
    ) -> AsyncIterator[dict[str, Any]]:
        """A listening peer that lives at most ``lifetime`` seconds; yields its ``listening``
        event and checks it exits cleanly."""
        cmd = [self.python, str(SCRIPT), "listen", "--port", "0", *args]
        cmd += ["--lifetime", str(lifetime)]
        process = await trio.lowlevel.open_process(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert process.stdin is not None
        assert process.stdout is not None
        received = bytearray()
        try:
            with trio.fail_after(PROCESS_DEADLINE):
                while b"\n" not in received:
                    chunk = await process.stdout.receive_some()
                    assert chunk, "the listener exited before it printed its address"
                    received += chunk
            first, _, rest = bytes(received).partition(b"\n")
            yield json.loads(first)
            await process.stdin.aclose()
            with trio.fail_after(PROCESS_DEADLINE):
                while chunk := await process.stdout.receive_some():
                    rest += chunk
                assert await process.wait() == 0
            events = [json.loads(line) for line in rest.decode().splitlines()]
            assert events[-1] == {"event": "closed", "reason": "stdin-eof"}
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await process.stdin.aclose()
                await process.stdout.aclose()


@pytest.fixture
def pylibp2p() -> PyLibp2p:
    """The py-libp2p peer, or a skip with the reason where its virtualenv is absent."""
    python = os.environ.get("P2PCHAT_INTEROP_PYTHON", "")
    if not python or not Path(python).exists():
        pytest.skip("P2PCHAT_INTEROP_PYTHON names no py-libp2p interpreter (make unit sets it)")
    return PyLibp2p(python)
