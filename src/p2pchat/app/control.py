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

:func:`serve_control` runs the listener in the caller's nursery and hands each request to a
handler, with a function that sends events. While a handler runs, the server keeps reading the
connection, so a client that goes away (end of file) cancels its request at once; that is how a
``chat`` that exits ends its subscription. A handler's :class:`~p2pchat.errors.P2PChatError` or
``ValueError`` is the user's mistake (or the network's) and goes back as the error line; any
other exception is a bug: it is logged with its traceback, and the client gets a short line.

:func:`open_control` is the client. It fails with :class:`NodeNotRunningError` when there is no
socket, or nobody listens on it (a node that was killed leaves the file behind; the next node
replaces it, since holding the store lock proves no other node uses the data dir).

Unix socket paths are limited to 107 bytes; a longer data dir path is reached through
``/proc/self/fd/<dir fd>/control.sock`` on Linux.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import trio

from ..errors import P2PChatError

logger = logging.getLogger(__name__)

#: specs/control.md: the largest request line a node reads, and response line a client reads.
MAX_REQUEST: Final = 4 * 1024 * 1024
MAX_RESPONSE: Final = 64 * 1024 * 1024
SOCKET_MODE: Final = 0o600
#: sun_path holds 108 bytes with the terminating NUL.
MAX_SOCKET_PATH: Final = 107
READ_CHUNK: Final = 65536

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], Emit], Awaitable[Any]]


class ControlError(P2PChatError):
    """The control connection failed, or broke its protocol."""


class NodeNotRunningError(ControlError):
    """No node is running on the data dir."""


class RemoteCommandError(ControlError):
    """The node refused the request; the message is the node's one-line reason."""


# -- framing ---------------------------------------------------------------------------------


def encode_line(message: dict[str, Any]) -> bytes:
    """One message as a JSON line."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class LineReader:
    """Reads ``\\n``-terminated lines of at most ``max_line`` bytes from a stream."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_line: int) -> None:
        self._stream = stream
        self._max = max_line
        self._buffer = bytearray()
        self._scanned = 0
        self.eof = False

    async def fill(self) -> None:
        """Read once more into the buffer (sets :attr:`eof` at the end of the stream).

        Raises:
            ControlError: a line longer than the limit.
        """
        if len(self._buffer) > self._max:
            raise ControlError(f"control message longer than {self._max} bytes")
        data = await self._stream.receive_some(READ_CHUNK)
        if not data:
            self.eof = True
        self._buffer += data

    async def read_line(self) -> bytes | None:
        """The next line without its ``\\n``; None at a clean end of the stream.

        Raises:
            ControlError: a line longer than the limit, or the stream ended mid-line.
        """
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buffer)
            if self.eof:
                if self._buffer:
                    raise ControlError("the control connection ended mid-message")
                return None
            await self.fill()


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


# -- socket paths ----------------------------------------------------------------------------


@contextlib.contextmanager
def _socket_address(path: Path) -> Iterator[str]:
    """A path ``bind``/``connect`` accept for ``path``, even when it is too long."""
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

    Raises:
        ControlError: the socket cannot be created.
    """
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _socket_address(path) as address:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(address).st_mode):
                    os.unlink(address)
            try:
                await sock.bind(address)
                os.chmod(address, SOCKET_MODE)
            except OSError as exc:
                raise ControlError(f"cannot create control socket {path}: {exc.strerror}") from None
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    listener = trio.SocketListener(sock)
    logger.info("control socket at %s", path)
    try:
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # e.g. EMFILE: back off and keep serving
                    logger.warning("control socket accept failed: %s", exc)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(_serve_connection, stream, handler)
    finally:
        with contextlib.suppress(OSError), _socket_address(path) as address:
            os.unlink(address)


async def _serve_connection(stream: trio.SocketStream, handler: Handler) -> None:
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

    @staticmethod
    def _result(answer: dict[str, Any]) -> Any:
        if answer.get("ok") is True:
            return answer.get("result")
        error = answer.get("error")
        if answer.get("ok") is False and isinstance(error, str):
            raise RemoteCommandError(error)
        raise ControlError("malformed answer from the node")

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
        return self._result(answer)

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
        self._result(answer)
        return None

    async def aclose(self) -> None:
        """Close the connection (a running stream is cancelled on the node)."""
        await self._stream.aclose()


def not_running_message(data_dir: Path) -> str:
    """The line printed when a command needs a node and none runs."""
    return f"no node is running on {data_dir} (start one with: p2pchat node)"


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
        with _socket_address(path) as address:
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
