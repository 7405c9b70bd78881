"""The control socket: how ``p2pchat`` commands act on the running node (specs/control.md).

Theory of operation
-------------------
The node listens on a Unix socket, ``control.sock`` in its data dir (mode 0600, in a directory
of mode 0700: only the node's user can connect). Messages are JSON objects, one per line (UTF-8,
``\\n``-terminated). A client sends a request ``{"op": <name>, ...arguments}`` and reads the
answer: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "<one line>"}``. A
*streaming* operation (``subscribe``) first sends any number of ``{"event": {...}}`` lines; it
ends with a final answer, or never. Requests on one connection are answered in order, one at a
time; a client opens more connections for concurrent requests.

:func:`serve_control` runs the listener in the caller's nursery (accepting with
``trio.serve_listeners``) and hands each request to a handler, with a function that sends
events. While a handler runs, the server keeps reading the connection, so a client that goes
away (end of file) cancels its request at once; that is how a ``chat`` that exits ends its
subscription. A handler's :class:`~p2pchat.errors.P2PChatError` or ``ValueError`` is the user's
mistake (or the network's) and goes back as the error line; any other exception is a bug: it is
logged with its traceback, and the client gets a short line.

:func:`open_control` is the Trio client (the interactive ``chat`` streams through it); the
commands that ask one thing and exit use the blocking one, :mod:`p2pchat.app.client`. Both fail
with :class:`NodeNotRunningError` when there is no socket, or nobody listens on it (a node that
was killed leaves the file behind; the next node replaces it, since holding the store lock
proves no other node uses the data dir).

The framing and the errors, shared by both clients and the server, live without I/O in
:mod:`p2pchat.app.control_protocol` (re-exported here). Unix socket paths are limited to 107
bytes; a longer data dir path is reached through ``/proc/self/fd/<dir fd>/control.sock`` on
Linux.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from ..errors import P2PChatError
from .control_protocol import (
    MAX_REQUEST,
    MAX_RESPONSE,
    READ_CHUNK,
    ControlError,
    LineBuffer,
    NodeNotRunningError,
    RemoteCommandError,
    answer_result,
    decode_line,
    encode_line,
    not_running_message,
    socket_address,
)

__all__ = [
    "MAX_REQUEST",
    "MAX_RESPONSE",
    "ControlClient",
    "ControlError",
    "Emit",
    "Handler",
    "LineReader",
    "NodeNotRunningError",
    "RemoteCommandError",
    "decode_line",
    "encode_line",
    "not_running_message",
    "open_control",
    "serve_control",
]

logger = logging.getLogger(__name__)

SOCKET_MODE: Final = 0o600
#: Connections the kernel queues before the node accepts them.
BACKLOG: Final = 64

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Emit], Awaitable[Any]]


class LineReader:
    """Reads ``\\n``-terminated lines of at most ``max_line`` bytes from a Trio stream (a
    :class:`~p2pchat.app.control_protocol.LineBuffer` fed from the stream)."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_line: int) -> None:
        self._stream = stream
        self._lines = LineBuffer(max_line)

    @property
    def eof(self) -> bool:
        """The stream has ended."""
        return self._lines.eof

    async def fill(self) -> None:
        """Read once more from the stream (sets :attr:`eof` at its end).

        Raises:
            ControlError: a line longer than the limit.
        """
        self._lines.check_room()
        self._lines.feed(await self._stream.receive_some(READ_CHUNK))

    async def read_line(self) -> bytes | None:
        """The next line without its ``\\n``; None at a clean end of the stream.

        Raises:
            ControlError: a line longer than the limit, or the stream ended mid-line.
        """
        while (line := self._lines.next_line()) is None:
            if self._lines.eof:
                return None
            await self.fill()
        return line


# -- server ----------------------------------------------------------------------------------


async def serve_control(
    path: Path,
    handler: Handler,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``path`` (replacing a stale socket file) and serve requests with ``handler``
    until cancelled; the socket file is removed on the way out.

    The caller must hold the data dir's store lock (so no other node owns ``path``).

    No other user can connect at any moment: the directory must be closed to group and others
    (checked first), and the socket is 0600 from its creation (the mode is set on the socket
    before ``bind``, which Linux gives the file; set again after ``bind`` elsewhere).

    Raises:
        ControlError: the socket cannot be created, or its directory is open to others.
    """
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with socket_address(path) as address:
            _check_private_directory(path.parent, address)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(address).st_mode):
                    os.unlink(address)
            try:
                with contextlib.suppress(OSError):  # a system that refuses it has the chmod
                    os.fchmod(sock.fileno(), SOCKET_MODE)
                await sock.bind(address)
                os.chmod(address, SOCKET_MODE)
            except OSError as exc:
                raise ControlError(f"cannot create control socket {path}: {exc.strerror}") from None
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    logger.info("control socket at %s", path)
    try:
        # trio's accept loop: it backs off and retries when out of file descriptors (EMFILE and
        # kin), and fails on any other accept error; it closes the listener on the way out.
        async with trio.open_nursery() as nursery:
            await nursery.start(
                trio.serve_listeners,
                partial(_serve_connection, handler),
                [trio.SocketListener(sock)],
            )
            task_status.started()
    finally:
        with contextlib.suppress(OSError), socket_address(path) as address:
            os.unlink(address)


def _check_private_directory(directory: Path, address: str) -> None:
    """Refuse to serve in a directory that group or others can enter or write.

    Raises:
        ControlError: it is open to them, or cannot be examined.
    """
    try:
        mode = os.stat(os.path.dirname(address) or ".").st_mode
    except OSError as exc:
        raise ControlError(f"cannot examine {directory}: {exc.strerror}") from None
    if mode & 0o077:
        raise ControlError(
            f"{directory} is open to other users (mode {stat.S_IMODE(mode):03o}), so they could "
            f"reach the control socket; fix it with: chmod 700 {directory}"
        )


async def _serve_connection(handler: Handler, stream: trio.SocketStream) -> None:
    reader = LineReader(stream, MAX_REQUEST)
    async with stream:
        try:
            while True:
                line = await reader.read_line()
                if line is None:
                    return
                try:
                    request = decode_line(line)
                except ControlError as exc:
                    await stream.send_all(encode_line({"ok": False, "error": str(exc)}))
                    return
                answer = await _run_request(stream, reader, handler, request)
                if answer is None:  # the client went away
                    return
                await stream.send_all(encode_line(answer))
        except ControlError as exc:
            logger.info("control connection dropped: %s", exc)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(encode_line({"ok": False, "error": str(exc)}))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def _run_request(
    stream: trio.SocketStream, reader: LineReader, handler: Handler, request: dict[str, Any]
) -> dict[str, Any] | None:
    """Run one request while watching for the client's end of file; the answer, or None if
    the client left (the handler is then cancelled)."""
    answer: dict[str, Any] | None = None
    op = request.get("op")
    logger.debug("control request %r", op)

    async def emit(event: dict[str, Any]) -> None:
        await stream.send_all(encode_line({"event": event}))

    async def watch(cancel: trio.CancelScope) -> None:
        with contextlib.suppress(ControlError, trio.BrokenResourceError):
            while not reader.eof:
                await reader.fill()
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, nursery.cancel_scope)
        try:
            result = await handler(request, emit)
        except (P2PChatError, ValueError) as exc:
            answer = {"ok": False, "error": str(exc) or type(exc).__name__}
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            answer = None  # emit failed: the client is gone
        except Exception as exc:
            logger.exception("control request %r failed", op)
            answer = {"ok": False, "error": f"internal error in the node ({type(exc).__name__})"}
        else:
            answer = {"ok": True, "result": result}
        nursery.cancel_scope.cancel()
    return answer


# -- client ----------------------------------------------------------------------------------


class ControlClient:
    """One connection to a running node. Made by :func:`open_control`."""

    def __init__(self, stream: trio.SocketStream, data_dir: Path) -> None:
        self._stream = stream
        self._reader = LineReader(stream, MAX_RESPONSE)
        self.data_dir = data_dir

    async def _send(self, op: str, args: dict[str, Any]) -> None:
        try:
            await self._stream.send_all(encode_line({"op": op, **args}))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ControlError(f"the node at {self.data_dir} closed the connection") from exc

    async def _receive(self) -> dict[str, Any]:
        try:
            line = await self._reader.read_line()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ControlError(f"the node at {self.data_dir} closed the connection") from exc
        if line is None:
            raise ControlError(f"the node at {self.data_dir} closed the connection (stopped?)")
        return decode_line(line)

    async def call(self, op: str, **args: Any) -> Any:
        """Run ``op`` on the node and return its result.

        Raises:
            RemoteCommandError: the node refused (its reason is the message).
            ControlError: the connection broke.
        """
        await self._send(op, args)
        answer = await self._receive()
        if "event" in answer:
            raise ControlError(f"{op!r} is a streaming operation; use start_stream")
        return answer_result(answer)

    async def start_stream(self, op: str, **args: Any) -> None:
        """Start a streaming ``op``; read its events with :meth:`next_event`.

        Raises:
            ControlError: the connection broke.
        """
        await self._send(op, args)

    async def next_event(self) -> dict[str, Any] | None:
        """The next event of the stream; None when it ended with success.

        Raises:
            RemoteCommandError: the stream ended with the node's refusal.
            ControlError: the connection broke.
        """
        answer = await self._receive()
        event = answer.get("event")
        if isinstance(event, dict):
            return event
        answer_result(answer)
        return None

    async def aclose(self) -> None:
        """Close the connection (a running stream is cancelled on the node)."""
        await self._stream.aclose()


@asynccontextmanager
async def open_control(data_dir: Path) -> AsyncIterator[ControlClient]:
    """Connect to the node running on ``data_dir``.

    Raises:
        NodeNotRunningError: no socket, or nothing listens on it.
        ControlError: the socket exists but cannot be used (e.g. permissions).
    """
    from .datadir import control_socket_path

    path = control_socket_path(data_dir)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with socket_address(path) as address:
            await sock.connect(address)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
            raise NodeNotRunningError(not_running_message(data_dir)) from None
        raise ControlError(f"cannot connect to {path}: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    client = ControlClient(trio.SocketStream(sock), data_dir)
    try:
        yield client
    finally:
        await client.aclose()
