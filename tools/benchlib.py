"""What the benchmark scripts in tools/ share: their error type and how they end."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio


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
