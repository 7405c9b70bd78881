"""What the benchmark scripts in tools/ share: their error type and how they end."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import trio

REPO: Final = Path(__file__).resolve().parent.parent
#: The py-libp2p peer, run with the interpreter of its own virtualenv.
PEER_SCRIPT: Final = REPO / "tools" / "interop" / "pylibp2p_peer.py"
INTEROP_PYTHON_ENV: Final = "P2PCHAT_INTEROP_PYTHON"
DEFAULT_INTEROP_PYTHON: Final = REPO / ".venv-interop" / "bin" / "python"


def interop_python() -> Path:
    """The py-libp2p interpreter: ``$P2PCHAT_INTEROP_PYTHON``, else ``.venv-interop``."""
    return Path(os.environ.get(INTEROP_PYTHON_ENV) or DEFAULT_INTEROP_PYTHON)


class BenchError(Exception):
    """A benchmark step failed (a process died, a count is wrong, a deadline passed)."""


def _leaf(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` or the first exception of type ``kind`` inside its groups, if any."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _leaf(inner, kind)
            if found is not None:
                return found
    return None


def run_bench(name: str, main: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """``trio.run(main, *args)``; a :class:`BenchError` or Ctrl-C ends the script with one line
    (errors raised inside a nursery arrive wrapped in exception groups)."""
    try:
        trio.run(main, *args)
    except BaseException as exc:
        if _leaf(exc, KeyboardInterrupt) is not None:
            sys.exit(f"{name}: interrupted")
        failure = _leaf(exc, BenchError)
        if failure is None:
            raise
        sys.exit(f"{name}: {failure}")


async def run_json(name: str, cmd: Sequence[str], limit: float) -> dict[str, Any]:
    """Run a one-shot command (killed after ``limit`` s) and return its last JSON line.

    Raises:
        BenchError: it failed, timed out or printed nothing.
    """
    try:
        with trio.fail_after(limit):
            done = await trio.run_process(
                list(cmd), capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        raise BenchError(f"{name}: no answer within {limit:g} s") from None
    lines = done.stdout.decode().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stdout.decode() + done.stderr.decode())[-2000:]
        raise BenchError(f"{name} failed (status {done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
