"""The control socket's wire format, with no I/O (specs/control.md "Framing").

Messages are JSON objects, one per line (UTF-8, ``\\n``-terminated). This module holds what both
ends of the socket share and no driver: the framing (:func:`encode_line`, :func:`decode_line`, a
:class:`LineBuffer` that bytes are fed into), the reading of an answer (:func:`answer_result`),
the errors, and the socket path workaround. It imports neither trio nor any of the node's layers,
so the blocking client (:mod:`p2pchat.app.client`) that the ``p2pchat`` commands use starts fast;
the Trio server and client (:mod:`p2pchat.app.control`) drive the same code.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from ..errors import P2PChatError

#: specs/control.md "Framing": the largest request line a node reads, and answer line a client
#: reads.
MAX_REQUEST: Final = 4 * 1024 * 1024
MAX_RESPONSE: Final = 64 * 1024 * 1024
#: specs/control.md "Socket": sun_path holds 108 bytes with the terminating NUL.
MAX_SOCKET_PATH: Final = 107
READ_CHUNK: Final = 65536


class ControlError(P2PChatError):
    """The control connection failed, or broke its protocol."""


class NodeNotRunningError(ControlError):
    """No node is running on the data dir."""


class RemoteCommandError(ControlError):
    """The node refused the request; the message is the node's one-line reason."""


def not_running_message(data_dir: Path) -> str:
    """The line printed when a command needs a node and none runs."""
    return f"no node is running on {data_dir} (start one with: p2pchat node)"


# -- framing ---------------------------------------------------------------------------------


def encode_line(message: dict[str, Any]) -> bytes:
    """One message as a JSON line."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode_line(line: bytes) -> dict[str, Any]:
    """A JSON object from one line.

    Raises:
        ControlError: not UTF-8 JSON, or not an object.
    """
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"malformed control message: {exc}") from None
    if not isinstance(value, dict):
        raise ControlError("a control message must be a JSON object")
    return value


class LineBuffer:
    """Splits the bytes of a stream into ``\\n``-terminated lines of at most ``max_line`` bytes.

    Feed it what the stream gives (``b""`` at its end) and take lines with :meth:`next_line`.
    """

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._buffer = bytearray()
        self._scanned = 0
        #: The stream has ended (no more :meth:`feed`).
        self.eof = False

    def check_room(self) -> None:
        """Check, before reading more, that the bytes held are within the limit (a peer that
        sends without ever ending a line cannot make the buffer grow without bound).

        Raises:
            ControlError: more than ``max_line`` bytes are held.
        """
        if len(self._buffer) > self._max:
            raise ControlError(f"control message longer than {self._max} bytes")

    def feed(self, data: bytes | bytearray) -> None:
        """Add bytes read from the stream; ``b""`` marks its end."""
        if not data:
            self.eof = True
        self._buffer += data

    def next_line(self) -> bytes | None:
        """The next complete line without its ``\\n``, or None: more bytes are needed, or, once
        :attr:`eof` is set, the stream ended cleanly.

        Raises:
            ControlError: a line longer than the limit, or the stream ended mid-line.
        """
        end = self._buffer.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buffer)
            self.check_room()
            if self.eof and self._buffer:
                raise ControlError("the control connection ended mid-message")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._scanned = 0
        return line


def answer_result(answer: dict[str, Any]) -> Any:
    """The result of a final answer line.

    Raises:
        RemoteCommandError: the node refused (its reason is the message).
        ControlError: not an answer.
    """
    if answer.get("ok") is True:
        return answer.get("result")
    error = answer.get("error")
    if answer.get("ok") is False and isinstance(error, str):
        raise RemoteCommandError(error)
    raise ControlError("malformed answer from the node")


# -- socket paths ----------------------------------------------------------------------------


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """A path ``bind``/``connect`` accept for ``path``, even when it is too long (through
    ``/proc/self/fd/<fd of its directory>``, on Linux), for the duration of the block.

    Raises:
        ControlError: the path is too long and its directory cannot be reached that way.
    """
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        yield str(path)
        return
    try:
        fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    except OSError as exc:
        raise ControlError(f"cannot open {path.parent}: {exc.strerror}") from None
    try:
        short = f"/proc/self/fd/{fd}/{path.name}"
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            raise ControlError(f"the control socket path is too long: {path}")
        yield short
    finally:
        os.close(fd)
