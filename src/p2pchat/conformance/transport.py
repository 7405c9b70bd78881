"""A raw TCP connection to the target, with the bounds every case relies on.

Cases forge bytes at every layer, so this is deliberately a thin layer: send bytes, read bytes
into one buffer, tell whether and how the target closed. A transcript of the last few things sent
and received (described by the layer that sent them) goes into a failing case's detail.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import Final

import trio

from ..multiaddr import Multiaddr, tcp_host_port
from .registry import ViolationError

__all__ = [
    "MAX_BUFFER",
    "PeerClosedError",
    "RawConnection",
    "TargetUnreachableError",
    "Transcript",
    "connect_raw",
]

#: Bytes a case may hold unread from the target before the connection counts as flooding.
MAX_BUFFER: Final = 8 * 1024 * 1024
#: Transcript entries kept (each at most 160 characters).
TRANSCRIPT_SIZE: Final = 8
READ_SIZE: Final = 65536


class TargetUnreachableError(Exception):
    """No TCP connection could be made to the target address."""


class PeerClosedError(Exception):
    """The target closed the connection (``reset`` tells whether it was a TCP reset)."""

    def __init__(self, reset: bool) -> None:
        super().__init__("the target reset the connection" if reset else "the target closed")
        self.reset = reset


class Transcript:
    """The last :data:`TRANSCRIPT_SIZE` things sent (``>``) and received (``<``)."""

    def __init__(self) -> None:
        self._entries: deque[str] = deque(maxlen=TRANSCRIPT_SIZE)

    def sent(self, text: str) -> None:
        """Record something we sent."""
        self._entries.append("> " + text[:160])

    def received(self, text: str) -> None:
        """Record something the target sent."""
        self._entries.append("< " + text[:160])

    def render(self) -> str:
        """The entries, oldest first, separated by ``; ``."""
        return "; ".join(self._entries)


def hexpreview(data: bytes | bytearray, limit: int = 24) -> str:
    """``data`` as hex, cut at ``limit`` bytes with its total length."""
    shown = bytes(data[:limit]).hex()
    return shown if len(data) <= limit else f"{shown}... ({len(data)} bytes)"


class RawConnection:
    """One TCP connection to the target: raw bytes in and out."""

    def __init__(self, stream: trio.SocketStream, transcript: Transcript) -> None:
        self.stream = stream
        self.transcript = transcript
        self._buffer = bytearray()
        self.closed: PeerClosedError | None = None

    async def send(self, data: bytes | bytearray) -> None:
        """Write ``data``.

        Raises:
            PeerClosedError: the target has closed the connection.
        """
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise PeerClosedError(_is_reset(exc)) from exc

    async def _fill(self) -> None:
        if self.closed is not None:
            raise self.closed
        if len(self._buffer) > MAX_BUFFER:
            raise ViolationError(f"the target sent more than {MAX_BUFFER} bytes left unread")
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed = PeerClosedError(_is_reset(exc))
            raise self.closed from exc
        if not data:
            self.closed = PeerClosedError(False)
            raise self.closed
        self._buffer += data

    async def receive_some(self) -> bytes:
        """Whatever is buffered, else the next bytes read.

        Raises:
            PeerClosedError: end of stream or reset, with nothing buffered.
        """
        if not self._buffer:
            await self._fill()
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def receive_exactly(self, count: int) -> bytes:
        """Exactly ``count`` bytes.

        Raises:
            PeerClosedError: the connection ended first.
        """
        while len(self._buffer) < count:
            await self._fill()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def unreceive(self, data: bytes) -> None:
        """Put ``data`` back in front of the buffer."""
        self._buffer[:0] = data

    async def wait_closed(self, seconds: float) -> PeerClosedError | None:
        """Read and discard until the target closes, for at most ``seconds``; the close, or
        ``None`` if the connection is still open then."""
        with trio.move_on_after(seconds):
            try:
                while True:
                    self._buffer.clear()
                    await self._fill()
            except PeerClosedError as closed:
                return closed
        return None

    async def aclose(self) -> None:
        """Close our side (forcefully: cases end connections however they stand)."""
        await trio.aclose_forcefully(self.stream)


def _is_reset(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, OSError) and cause.errno in (errno.ECONNRESET, errno.EPIPE)


async def connect_raw(addr: Multiaddr, transcript: Transcript, seconds: float) -> RawConnection:
    """A TCP connection to ``addr``.

    Raises:
        TargetUnreachableError: the address is not TCP, or the connection failed or timed out.
    """
    target = tcp_host_port(addr)
    if target is None:
        raise TargetUnreachableError(f"{addr} is not a TCP address")
    try:
        with trio.fail_after(seconds):
            stream = await trio.open_tcp_stream(target.host, target.port)
    except (OSError, trio.TooSlowError) as exc:
        reason = "timed out" if isinstance(exc, trio.TooSlowError) else exc.strerror or str(exc)
        raise TargetUnreachableError(f"cannot connect to {addr}: {reason}") from exc
    return RawConnection(stream, transcript)
