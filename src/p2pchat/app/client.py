"""A blocking client for the control socket, for the commands that ask the node and exit.

Plain stdlib sockets, no trio and none of the node's layers: ``p2pchat status`` costs the
interpreter's start-up and one round trip, not the import of the network stack. The protocol is
request-answer on a local socket (specs/control.md), so nothing needs an event loop here; the
interactive ``chat``, which waits on the node and the terminal at once, uses the Trio client,
:func:`p2pchat.app.control.open_control`.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .control_protocol import (
    MAX_RESPONSE,
    READ_CHUNK,
    ControlError,
    LineBuffer,
    NodeNotRunningError,
    answer_result,
    decode_line,
    encode_line,
    not_running_message,
    socket_address,
)
from .datadir import control_socket_path


class ControlConnection:
    """One blocking connection to a running node. Made by :func:`connect_control`."""

    def __init__(self, sock: socket.socket, data_dir: Path) -> None:
        self._sock = sock
        self._lines = LineBuffer(MAX_RESPONSE)
        self.data_dir = data_dir

    def _closed(self, exc: BaseException | None = None) -> ControlError:
        stopped = "" if exc is not None else " (stopped?)"
        return ControlError(f"the node at {self.data_dir} closed the connection{stopped}")

    def _receive(self) -> dict[str, Any]:
        while (line := self._lines.next_line()) is None:
            if self._lines.eof:
                raise self._closed()
            self._lines.check_room()
            try:
                data = self._sock.recv(READ_CHUNK)
            except OSError as exc:
                raise self._closed(exc) from exc
            self._lines.feed(data)
        return decode_line(line)

    def call(self, op: str, **args: Any) -> Any:
        """Run ``op`` on the node and return its result (waiting as long as the node takes).

        Raises:
            RemoteCommandError: the node refused (its reason is the message).
            ControlError: the connection broke, or ``op`` is a streaming operation.
        """
        try:
            self._sock.sendall(encode_line({"op": op, **args}))
        except OSError as exc:
            raise self._closed(exc) from exc
        answer = self._receive()
        if "event" in answer:
            raise ControlError(f"{op!r} is a streaming operation; use the Trio client")
        return answer_result(answer)

    def stream(self, op: str, on_event: Callable[[dict[str, Any]], None], **args: Any) -> Any:
        """Run ``op``, handing each event it sends to ``on_event``; return its result.

        Raises:
            RemoteCommandError: the node refused (its reason is the message).
            ControlError: the connection broke.
        """
        try:
            self._sock.sendall(encode_line({"op": op, **args}))
        except OSError as exc:
            raise self._closed(exc) from exc
        while True:
            answer = self._receive()
            event = answer.get("event")
            if not isinstance(event, dict):
                return answer_result(answer)
            on_event(event)


@contextmanager
def connect_control(data_dir: Path) -> Iterator[ControlConnection]:
    """Connect to the node running on ``data_dir`` for the duration of the block.

    Raises:
        NodeNotRunningError: no socket, or nothing listens on it.
        ControlError: the socket exists but cannot be used (e.g. permissions).
    """
    path = control_socket_path(data_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            with socket_address(path) as address:
                sock.connect(address)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                raise NodeNotRunningError(not_running_message(data_dir)) from None
            raise ControlError(f"cannot connect to {path}: {exc.strerror}") from None
        yield ControlConnection(sock, data_dir)


def call(data_dir: Path, op: str, **args: Any) -> Any:
    """One request on a connection of its own: the result.

    Raises:
        NodeNotRunningError: no node runs on ``data_dir``.
        RemoteCommandError: the node refused (its reason is the message).
        ControlError: the connection broke.
    """
    with connect_control(data_dir) as connection:
        return connection.call(op, **args)


def stream(data_dir: Path, op: str, on_event: Callable[[dict[str, Any]], None], **args: Any) -> Any:
    """One streaming request on a connection of its own: events to ``on_event``, then the
    result.

    Raises:
        NodeNotRunningError: no node runs on ``data_dir``.
        RemoteCommandError: the node refused (its reason is the message).
        ControlError: the connection broke.
    """
    with connect_control(data_dir) as connection:
        return connection.stream(op, on_event, **args)
