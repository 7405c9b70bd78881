"""One yamux stream of a :class:`~p2pchat.net.muxer.MuxedConnection`, as a Trio stream.

Theory of operation
-------------------
Streams are :class:`trio.abc.HalfCloseableStream`. ``send_all`` queues into the connection's core
as far as the stream's send window allows and waits for window updates for the rest, so the yamux
window bounds what one stream can queue. ``receive_some`` hands out buffered data (a reader asking
for less than a received chunk takes it piece by piece, without re-slicing the rest each time)
and tells the core how much was consumed, which returns window credit to the peer. ``send_eof``
sends FIN. ``aclose`` sends FIN if the peer has already finished, and RST otherwise (like closing
a TCP socket with unread data), so a peer still writing learns at once that nobody reads.

The connection's reader delivers data and events through the ``_on_*`` methods; the stream calls
back into its connection for everything that reaches the core.
"""

from __future__ import annotations

import operator
from collections import deque
from typing import TYPE_CHECKING

import trio

from ..identity import PeerID
from ..protocols import yamux

if TYPE_CHECKING:
    from .muxer import MuxedConnection


class MuxedStream(trio.abc.HalfCloseableStream):
    """One yamux stream. Made by :meth:`MuxedConnection.open_stream` or accepted inbound."""

    def __init__(self, conn: MuxedConnection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        #: The protocol agreed on this stream, set by whoever negotiated it.
        self.protocol: str | None = None
        self._chunks: deque[bytes] = deque()
        # Bytes of _chunks[0] already handed out (a reader asking for less than a chunk takes
        # it piece by piece without re-slicing the rest each time).
        self._offset = 0
        # Bytes at the front of _chunks that were put back by unreceive(): already
        # acknowledged to the core, so reading them again must not acknowledge them twice.
        self._acknowledged_ahead = 0
        self._remote_eof = False
        self._reset = False
        self._local_eof = False
        self._closed = False
        self._readable = trio.Event()
        self._writable = trio.Event()
        self._sending = False
        self._receiving = False

    @property
    def remote_peer(self) -> PeerID:
        """The authenticated peer at the other end."""
        return self._conn.remote_peer

    @property
    def connection(self) -> MuxedConnection:
        """The connection this stream belongs to."""
        return self._conn

    @property
    def has_unread_data(self) -> bool:
        """True if bytes have arrived that were not read yet."""
        return bool(self._chunks)

    # -- called by the connection's reader -------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._chunks.append(data)
        self._readable.set()

    def _on_eof(self) -> None:
        self._remote_eof = True
        self._readable.set()

    def _on_reset(self) -> None:
        self._reset = True
        self._readable.set()
        self._writable.set()

    def _on_window(self) -> None:
        self._writable.set()

    # -- the stream API --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")

    def _broken_reason(self) -> str | None:
        if self._reset:
            return "stream reset by the peer"
        if self._conn.broken_reason is not None:
            return f"connection lost: {self._conn.broken_reason}"
        return None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting for window credit when needed.

        Raises:
            trio.BusyResourceError: another task is sending on this stream.
            trio.BrokenResourceError: the stream was reset or the connection is gone.
            trio.ClosedResourceError: we closed the stream, or already sent EOF.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            self._check_open()
            if self._local_eof:
                raise trio.ClosedResourceError("EOF was already sent on this stream")
            view = data if type(data) is bytes else bytes(data)
            core = self._conn._core
            while True:
                reason = self._broken_reason()
                if reason is not None:
                    raise trio.BrokenResourceError(reason)
                try:
                    sent = core.send_data(self.stream_id, view) if view else 0
                except yamux.StreamStateError as exc:
                    raise trio.BrokenResourceError("the stream is no longer open") from exc
                except yamux.ConnectionClosedError as exc:
                    raise trio.BrokenResourceError("the connection is closed") from exc
                if sent:
                    self._conn._wake_writer()
                if sent == len(view):
                    await trio.lowlevel.checkpoint()
                    return
                view = view[sent:]
                self._writable = trio.Event()
                await self._writable.wait()
                self._check_open()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the stream has send window again (or is broken or closed).

        Raises:
            trio.BusyResourceError: another task is sending or waiting on this stream.
            trio.ClosedResourceError: we closed the stream.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            self._check_open()
            stats = self._conn._core.stream_statistics(self.stream_id)
            if stats is not None and stats.send_window == 0 and self._broken_reason() is None:
                self._writable = trio.Event()
                await self._writable.wait()
                self._check_open()
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Half-close: send FIN. Idempotent.

        Raises:
            trio.BrokenResourceError: the stream was reset or the connection is gone.
            trio.ClosedResourceError: we closed the stream.
        """
        self._check_open()
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        await trio.lowlevel.checkpoint()
        if self._local_eof:
            return
        reason = self._broken_reason()
        if reason is not None:
            raise trio.BrokenResourceError(reason)
        self._local_eof = True
        try:
            self._conn._core.send_eof(self.stream_id)
        except (yamux.StreamStateError, yamux.ConnectionClosedError) as exc:
            raise trio.BrokenResourceError("the stream is no longer open") from exc
        self._conn._wake_writer()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return the next received bytes, or ``b""`` once the peer sent EOF.

        Raises:
            trio.BusyResourceError: another task is receiving on this stream.
            trio.BrokenResourceError: the stream was reset or the connection lost, after every
                byte received before that has been returned.
            trio.ClosedResourceError: we closed the stream.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            self._check_open()
            while not self._chunks:
                if self._remote_eof:
                    await trio.lowlevel.checkpoint()
                    return b""
                reason = self._broken_reason()
                if reason is not None:
                    raise trio.BrokenResourceError(reason)
                self._readable = trio.Event()
                await self._readable.wait()
                self._check_open()
            chunk = self._chunks[0]
            offset = self._offset
            if max_bytes is not None and len(chunk) - offset > max_bytes:
                self._offset = offset + max_bytes
                chunk = chunk[offset : offset + max_bytes]
            else:
                self._chunks.popleft()
                self._offset = 0
                if offset:
                    chunk = chunk[offset:]
            ahead = min(self._acknowledged_ahead, len(chunk))
            self._acknowledged_ahead -= ahead
            if len(chunk) > ahead:
                self._conn._consumed(self.stream_id, len(chunk) - ahead)
            await trio.lowlevel.checkpoint()
            return chunk
        finally:
            self._receiving = False

    def unreceive(self, data: bytes) -> None:
        """Put ``data`` back in front of the received bytes (already acknowledged).

        For protocol negotiation that read past the agreement: the bytes belong to the
        protocol that was agreed, which reads them next.
        """
        if data:
            if self._offset:
                self._chunks[0] = self._chunks[0][self._offset :]
                self._offset = 0
            self._chunks.appendleft(data)
            self._acknowledged_ahead += len(data)

    async def reset(self) -> None:
        """Abort the stream in both directions (RST)."""
        if not self._closed:
            self._closed = True
            self._conn._reset_stream(self.stream_id)
            self._readable.set()
            self._writable.set()
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close the stream.

        A graceful close sends FIN, so the peer reads everything we sent and then EOF. If
        received data is left unread, or more arrives later, the stream is reset (RST) instead,
        as a TCP socket does, so a peer still writing learns that nobody reads.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._readable.set()
        self._writable.set()
        conn = self._conn
        if self._chunks or self._reset or conn.broken_reason is not None:
            self._chunks.clear()
            self._offset = 0
            conn._reset_stream(self.stream_id)
        else:
            if not self._local_eof:
                self._local_eof = True
                conn._send_eof_quietly(self.stream_id)
            if self._remote_eof:
                conn._forget(self.stream_id)
            # else: stays known to the connection until the peer's FIN; data that
            # arrives before it resets the stream.
        await trio.lowlevel.checkpoint()
