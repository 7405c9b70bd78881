"""Text from peers, made safe to print in a terminal (specs/cli.md "Display").

Everything a peer chose — agent versions, protocol names, MIME types, group names, message text,
file names, reasons in a refusal — goes through :func:`terminal_text` before the CLI prints it.
Characters that could drive or deceive the terminal are shown as escapes instead (``\\x1b``,
``\\u202e``):

* C0 and C1 control characters and DEL (ESC and CSI start escape sequences, BEL, backspace,
  carriage return...);
* Unicode format characters (category Cf): bidi embeddings, overrides and isolates, zero-width
  spaces and joiners, the byte-order mark, invisible tag characters;
* line and paragraph separators (U+2028, U+2029) and lone surrogates (which JSON can carry and a
  UTF-8 terminal cannot print).

A message body keeps its newlines and tabs, and the zero-width joiner that glues emoji together;
a one-line field keeps none of them. ``--json`` output does not come here: JSON escapes control
characters itself and stays exact.

This module imports only :mod:`re`: the commands that talk to the running node load it at start.
"""

from __future__ import annotations

import re
from typing import Final

# Every character of the categories Cc, Cf, Cs, Zl and Zp (Unicode 15; tests/cli/test_sanitize.py
# checks the list against the interpreter's unicodedata).
_UNSAFE_RANGES: Final = (
    "\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"  # zero-width, separators, bidi
    "\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"  # language tag, tag characters
)
_UNSAFE_LINE: Final = re.compile(f"[{_UNSAFE_RANGES}]")
# A message body: the same, less newline, tab and the zero-width joiner (emoji sequences).
_UNSAFE_BODY: Final = re.compile(f"(?![\\n\\t\u200d])[{_UNSAFE_RANGES}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal_text(text: object, *, multiline: bool = False) -> str:
    """``text`` (any value; not a string: its ``str``) with every character that could drive
    or deceive a terminal shown as a Python-style escape (ESC as ``\\x1b``). With
    ``multiline``, for message bodies, newline, tab and the zero-width joiner stay as they are.
    """
    pattern = _UNSAFE_BODY if multiline else _UNSAFE_LINE
    return pattern.sub(_escape, text if isinstance(text, str) else str(text))


def safe_file_name(name: str) -> str:
    """``name`` (a sender's file name) as a bare file name safe to create in the current
    directory: no directories, no control characters, not hidden, at most 255 bytes;
    ``"artifact"`` when nothing is left."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")
    while len(base.encode()) > 255:
        base = base[:-1]
    return base or "artifact"
