"""A one-line progress bar on stderr for ``send --file`` and ``get`` (bytes, rate, time left).

Shown only on a terminal and without ``--quiet``; otherwise every call does nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .render import size

_WIDTH = 24


class ProgressBar:
    """Draws ``done / total`` on one line of ``stream``, redrawn in place."""

    def __init__(self, label: str, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label = label
        self._start = time.monotonic()
        self._drawn = False

    def event(self, event: dict[str, Any]) -> None:
        """Take a control-socket event; a ``progress`` one redraws the bar."""
        if event.get("kind") == "progress":
            self.update(int(event.get("done", 0)), int(event.get("total", 0)))

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        self.stream.write("\r" + render(self.label, done, total, time.monotonic() - self._start))
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """End the bar's line, if one was drawn."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def render(label: str, done: int, total: int, elapsed: float) -> str:
    """The bar's text: ``label [#####.....]  42%  1.0 MiB / 2.4 MiB  3.1 MiB/s  0:01 left``."""
    fraction = min(1.0, done / total) if total > 0 else 1.0
    filled = int(fraction * _WIDTH)
    rate = done / elapsed if elapsed > 0 else 0.0
    left = (total - done) / rate if rate > 0 else None
    eta = "--:--" if left is None else f"{int(left) // 60}:{int(left) % 60:02d}"
    return (
        f"{label} [{'#' * filled}{'.' * (_WIDTH - filled)}] {fraction:4.0%}  "
        f"{size(done)} / {size(total)}  {size(int(rate))}/s  {eta} left"
    )
