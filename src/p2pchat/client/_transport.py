"""The control socket as a byte stream on whichever event loop runs: trio or asyncio.

:func:`open_unix` asks ``sniffio`` (a dependency of trio) which library is running and connects
with it; each transport translates that library's errors into
:class:`~p2pchat.app.control_protocol.ControlError` at the boundary, so the client above it is
the same code on both.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any, Protocol

import sniffio

from ..app.control_protocol import (
    ControlError,
    NodeNotRunningError,
    not_running_message,
    socket_address,
)


class Transport(Protocol):
    """A connected stream: what :class:`~p2pchat.client.Client` needs of it."""

    async def send_all(self, data: bytes) -> None: ...

    async def receive_some(self, max_bytes: int) -> bytes: ...

    async def aclose(self) -> None: ...


def _closed(data_dir: Path) -> ControlError:
    return ControlError(f"the node at {data_dir} closed the connection")


def _connect_error(exc: OSError, data_dir: Path, path: Path) -> ControlError:
    if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
        return NodeNotRunningError(not_running_message(data_dir))
    return ControlError(f"cannot connect to {path}: {exc.strerror}")


class _TrioTransport:
    def __init__(self, stream: Any, data_dir: Path) -> None:
        self._stream = stream
        self._data_dir = data_dir

    async def send_all(self, data: bytes) -> None:
        import trio

        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _closed(self._data_dir) from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        import trio

        try:
            data: bytes = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _closed(self._data_dir) from exc
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


class _AsyncioTransport:
    def __init__(self, reader: Any, writer: Any, data_dir: Path) -> None:
        self._reader = reader
        self._writer = writer
        self._data_dir = data_dir

    async def send_all(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise _closed(self._data_dir) from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            data: bytes = await self._reader.read(max_bytes)
        except (ConnectionError, OSError) as exc:
            raise _closed(self._data_dir) from exc
        return data

    async def aclose(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def open_unix(path: Path, data_dir: Path) -> Transport:
    """A stream to the Unix socket at ``path``, on the running event loop.

    Raises:
        NodeNotRunningError: no socket, or nobody listens on it.
        ControlError: it cannot be used, or the loop is neither trio nor asyncio.
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise ControlError("p2pchat.client runs under trio or asyncio") from None
    if library == "trio":
        import trio

        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with socket_address(path) as address:
                await sock.connect(address)
        except OSError as exc:
            sock.close()
            raise _connect_error(exc, data_dir, path) from None
        except BaseException:
            sock.close()
            raise
        return _TrioTransport(trio.SocketStream(sock), data_dir)
    if library == "asyncio":
        import asyncio

        try:
            with socket_address(path) as address:
                reader, writer = await asyncio.open_unix_connection(address)
        except OSError as exc:
            raise _connect_error(exc, data_dir, path) from None
        return _AsyncioTransport(reader, writer, data_dir)
    raise ControlError(f"p2pchat.client runs under trio or asyncio, not {library}")
