"""Logging for every layer: one root configuration, per-module loggers, text or JSON lines.

Every module logs through ``logging.getLogger(__name__)``, so ``p2pchat.net.host``,
``p2pchat.chat.node`` and the others can be told apart and filtered. :func:`configure_logging`
sends all of them to one stream (stderr by default) as text (``asctime level logger: message``) or
as JSON lines (one object per record: ``ts``, ``level``, ``logger``, ``msg``, and ``exc`` when
there is a traceback), which log collectors read without parsing.

What is never logged, at any level: private keys, epoch and content keys, and message content
(plaintext). Loggers name peers, groups (by the first 16 hex digits of their id), message hashes,
sizes and reasons; tests check that a node running at ``debug`` leaks none of a message's text.

Importing this module loads no logging machinery (the ``p2pchat`` commands that only ask the
running node log nothing and never call :func:`configure_logging`); the call loads it, and the
JSON formatter (:mod:`p2pchat.app.logformat`).
"""

from __future__ import annotations

import sys
from typing import Final, TextIO

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("text", "json")
DEFAULT_LEVEL: Final = "warning"
DEFAULT_FORMAT: Final = "text"

_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    level: str = DEFAULT_LEVEL, fmt: str = DEFAULT_FORMAT, stream: TextIO | None = None
) -> None:
    """Send every logger's records at ``level`` or above to ``stream`` (default: stderr).

    Replaces any handler the root logger had, so calling it twice does not log twice.

    Raises:
        ValueError: an unknown level or format.
    """
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}: {level!r}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}: {fmt!r}")
    import logging

    from .logformat import JsonFormatter

    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
