"""The Trio driver of the yamux core: a muxed connection and its streams.

Theory of operation
-------------------
A :class:`MuxedConnection` owns a secure stream and a :class:`~p2pchat.protocols.yamux.
YamuxConnection` core. :meth:`MuxedConnection.run` (started in a nursery its owner opens) runs
three tasks:

* the **reader** feeds every chunk read from the secure stream to the core and applies the events
  to the streams: it never writes, so a peer that stops reading cannot wedge it;
* the **writer** sleeps until the core has bytes to send and writes them, many frames per write;
* the **keep-alive** pings at once and then every ``keepalive_interval`` seconds; the round trip
  feeds the core's window auto-tuning, and a peer that does not answer within
  ``keepalive_timeout`` is dropped.

Streams are :class:`trio.abc.HalfCloseableStream`. ``send_all`` queues into the core as far as the
stream's send window allows and waits for window updates for the rest, so the yamux window bounds
what one stream can queue. ``receive_some`` hands out buffered data and tells the core how much
was consumed, which returns window credit to the peer. ``send_eof`` sends FIN. ``aclose`` sends
FIN if the peer has already finished, and RST otherwise (like closing a TCP socket with unread
data), so a peer still writing learns at once that nobody reads.

When the connection ends (end of stream, transport error, a protocol violation, or our own
``aclose``), every stream is broken: pending and later calls raise ``trio.BrokenResourceError``
after the data already received has been read.
"""

from __future__ import annotations

import logging
import math
import operator
from collections import deque
from collections.abc import Sequence
from typing import Final

import attrs
import trio

from ..errors import LocalProtocolError, P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..protocols import yamux
from .secure import SecureStream

logger = logging.getLogger(__name__)

YAMUX_PROTOCOL: Final = yamux.PROTOCOL_ID
RECEIVE_SIZE: Final = 256 * 1024
#: At most this much is encrypted and written at once, which bounds the memory a write takes:
#: the secure stream seals it into one buffer it reuses (SEAL_REUSE in net/secure.py).
WRITE_BATCH: Final = 256 * 1024
#: The same with the secure stream's worker threads on: a write of several seal batches can be
#: pipelined, and a read can take a backlog large enough to open in a thread.
THREADED_RECEIVE_SIZE: Final = 1024 * 1024
THREADED_WRITE_BATCH: Final = 4 * 1024 * 1024
#: The largest data frame body we send (yamux's 64 KiB). Frames are packed back to back into
#: full Noise messages (SecureStream.send_units), so a frame may span two messages: a 64 KiB
#: write is one frame, and 1 MiB of it about 16 messages.
MAX_FRAME_PAYLOAD: Final = yamux.DEFAULT_MAX_FRAME_PAYLOAD
DEFAULT_KEEPALIVE_INTERVAL: Final = 30.0
DEFAULT_KEEPALIVE_TIMEOUT: Final = 15.0
# Inbound streams waiting for the application to accept them; more are refused with RST.
DEFAULT_ACCEPT_BACKLOG: Final = 256


class MuxerError(P2PChatError):
    """A stream could not be opened: the connection is closed, going away, or at its limit."""


@attrs.frozen
class MuxerConfig:
    """Settings of a muxed connection (yamux limits plus the driver's timers)."""

    yamux: yamux.YamuxConfig = attrs.Factory(yamux.YamuxConfig)
    keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    accept_backlog: int = DEFAULT_ACCEPT_BACKLOG
    #: Let the secure stream seal and open bulk batches in worker threads
    #: (specs/secure-stream.md "Worker threads for bulk"); off by default.
    secure_worker_threads: bool = False


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


class MuxedConnection:
    """A yamux session over a secure stream. Run it with ``await nursery.start(conn.run)``."""

    def __init__(
        self,
        secure: SecureStream,
        *,
        is_client: bool,
        config: MuxerConfig | None = None,
        remote_addr: Multiaddr | None = None,
        initial_data: bytes = b"",
    ) -> None:
        self._initial_data = initial_data
        self.config = config if config is not None else MuxerConfig()
        self.secure = secure
        secure.worker_threads = self.config.secure_worker_threads
        self.is_client = is_client
        self.remote_peer: PeerID = secure.remote_peer
        self.remote_addr = remote_addr
        self._core = yamux.YamuxConnection(is_client, self.config.yamux)
        self._streams: dict[int, MuxedStream] = {}
        self._wakeup = trio.Event()
        self._drained = trio.Event()  # set while the writer has nothing left to send
        self._acked = trio.Event()  # set when an outbound stream is acknowledged or goes
        self._inbound_send, self._inbound_receive = trio.open_memory_channel[MuxedStream](
            self.config.accept_backlog
        )
        self._pings: dict[int, tuple[float, trio.Event]] = {}
        self._pong_times: dict[int, float] = {}
        self._cancel_scope: trio.CancelScope | None = None
        self._done = trio.Event()
        #: Why the connection ended, or None while it is up.
        self.broken_reason: str | None = None

    @property
    def is_closed(self) -> bool:
        """True once the connection has ended (or its core found a protocol violation)."""
        return self.broken_reason is not None or self._core.terminated is not None

    def statistics(self) -> yamux.ConnectionStatistics:
        """A snapshot of the yamux session: streams, and what waits for the peer to read."""
        return self._core.statistics()

    @property
    def stream_count(self) -> int:
        """Streams open on this connection, in both directions."""
        stats = self._core.statistics()
        return stats.inbound_streams + stats.outbound_streams

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drive the connection until it ends; reports started at once."""
        try:
            with trio.CancelScope() as scope:
                self._cancel_scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._keepalive)
                    task_status.started()
                    await self._reader()
                    nursery.cancel_scope.cancel()
        finally:
            self._end(self.broken_reason or "closed")
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.secure)
            self._done.set()

    async def aclose(self) -> None:
        """Say GoAway, give the writer a moment to flush it, and end the connection; wait
        until it has ended."""
        if not self.is_closed:
            self._core.go_away(yamux.GoAwayCode.NORMAL)
            self._wake_writer()
            with trio.move_on_after(1.0):
                await self._drained.wait()
            self._end("closed by us")
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()
            await self._done.wait()
        else:
            await trio.aclose_forcefully(self.secure)

    async def wait_closed(self) -> None:
        """Wait until the connection has ended."""
        await self._done.wait()

    def _end(self, reason: str) -> None:
        if self.broken_reason is not None:
            return
        self.broken_reason = reason
        logger.debug("connection with %s ended: %s", self.remote_peer, reason)
        for stream in list(self._streams.values()):
            stream._readable.set()
            stream._writable.set()
        for _, event in self._pings.values():
            event.set()
        self._acked.set()
        self._inbound_send.close()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    # -- streams -----------------------------------------------------------------------------

    async def open_stream(self) -> MuxedStream:
        """Open a new outbound stream (its SYN leaves with the next write).

        When as many streams as yamux allows await the peer's ACK, this waits for one.

        Raises:
            MuxerError: the connection is closed or going away, or at its stream limit.
        """
        await trio.lowlevel.checkpoint()
        while True:
            if self.is_closed:
                raise MuxerError(f"connection closed: {self.broken_reason}")
            try:
                stream_id = self._core.open_stream()
                break
            except yamux.ConnectionClosedError as exc:
                raise MuxerError(f"cannot open a stream: {exc}") from exc
            except yamux.StreamLimitError as exc:
                if exc.hint != "ACK backlog full":
                    raise MuxerError(f"cannot open a stream: {exc}") from exc
                self._acked = trio.Event()
                await self._acked.wait()
        stream = MuxedStream(self, stream_id)
        self._streams[stream_id] = stream
        self._wake_writer()
        return stream

    async def accept_stream(self) -> MuxedStream:
        """The next stream the peer opened (acknowledged now).

        Raises:
            MuxerError: the connection has ended.
        """
        try:
            stream = await self._inbound_receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise MuxerError(f"connection closed: {self.broken_reason}") from None
        if not self.is_closed:
            try:
                self._core.accept_stream(stream.stream_id)
            except LocalProtocolError:
                pass  # already reset or gone: the stream reports it when used
            self._wake_writer()
        return stream

    async def ping(self) -> float:
        """Round-trip time of a yamux ping, in seconds.

        Raises:
            MuxerError: the connection ended before the answer.
        """
        if self.is_closed:
            raise MuxerError(f"connection closed: {self.broken_reason}")
        event = trio.Event()
        opaque = self._core.ping()
        self._pings[opaque] = (trio.current_time(), event)
        self._wake_writer()
        try:
            await event.wait()
        finally:
            self._pings.pop(opaque, None)
        answered = self._pong_times.pop(opaque, None)
        if answered is None:
            raise MuxerError(f"connection closed: {self.broken_reason}")
        return answered

    def _consumed(self, stream_id: int, count: int) -> None:
        if self.is_closed:
            return
        core = self._core
        core.acknowledge_received(stream_id, count, now=trio.current_time())
        if core.wants_to_send:  # a window update is due
            self._wake_writer()

    def _reset_stream(self, stream_id: int) -> None:
        if not self.is_closed:
            self._core.reset_stream(stream_id)
            self._wake_writer()
        self._streams.pop(stream_id, None)

    def _send_eof_quietly(self, stream_id: int) -> None:
        if not self.is_closed:
            try:
                self._core.send_eof(stream_id)
            except LocalProtocolError:
                return
            self._wake_writer()

    def _forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    # -- tasks -------------------------------------------------------------------------------

    def _wake_writer(self) -> None:
        if self._drained.is_set():  # there is something new to send
            self._drained = trio.Event()
        self._wakeup.set()

    async def _writer(self) -> None:
        core = self._core
        batch = THREADED_WRITE_BATCH if self.config.secure_worker_threads else WRITE_BATCH
        while True:
            frames = core.frames_to_send(batch)
            if not frames:
                self._drained.set()
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            try:
                await self.secure.send_units(frames)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._end(f"write failed: {exc}")
                return

    async def _reader(self) -> None:
        core = self._core
        size = THREADED_RECEIVE_SIZE if self.config.secure_worker_threads else RECEIVE_SIZE
        while self.broken_reason is None:
            try:
                # Several Noise messages at once, each holding whole yamux frames (_writer).
                # Borrowed: the core copies what it keeps, so the buffer is reused next time.
                data = self._initial_data or await self.secure.receive_borrowed(size)
                self._initial_data = b""
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._end(f"read failed: {exc}")
                return
            if not data:
                self._end("the peer closed the connection")
                return
            events = core.receive_data(data)
            for event in events:
                self._apply(event)
            if core.terminated is None:
                if core.wants_to_send:  # pongs, RSTs, window updates
                    self._wake_writer()
            else:
                term = core.terminated
                logger.warning(
                    "yamux protocol error from %s (%s): %s; sending GoAway",
                    self.remote_peer,
                    term.hint,
                    term.detail,
                )
                self._wake_writer()  # the core queued GoAway(protocol error)
                with trio.move_on_after(1.0):
                    await self._drained.wait()
                self._end(f"protocol error: {term.hint}")
                return

    def _apply(self, event: yamux.YamuxEvent) -> None:
        if isinstance(event, yamux.DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is None:
                pass  # reset or forgotten: the core drops what follows
            elif stream._closed:  # nobody will read it: tell the sender
                self._reset_stream(event.stream_id)
            else:
                stream._on_data(event.data)
        elif isinstance(event, yamux.WindowUpdated):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._on_window()
        elif isinstance(event, yamux.StreamOpened):
            self._on_stream_opened(event.stream_id)
        elif isinstance(event, yamux.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._on_eof()
                if stream._closed:
                    self._forget(event.stream_id)
        elif isinstance(event, yamux.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream._on_reset()
            self._acked.set()
        elif isinstance(event, yamux.StreamAcked):
            self._acked.set()
        elif isinstance(event, yamux.PongReceived):
            pending = self._pings.get(event.opaque)
            if pending is not None:
                sent_at, done = pending
                rtt = trio.current_time() - sent_at
                self._pong_times[event.opaque] = rtt
                self._core.record_rtt(rtt)
                done.set()
        elif isinstance(event, yamux.GoAwayReceived):
            logger.debug("peer %s is going away (code %d)", self.remote_peer, event.code)
        # PingReceived (the pong is queued by the core) and ConnectionTerminated
        # (handled by the reader) need nothing here.

    def _on_stream_opened(self, stream_id: int) -> None:
        stream = MuxedStream(self, stream_id)
        self._streams[stream_id] = stream
        try:
            self._inbound_send.send_nowait(stream)
        except trio.WouldBlock:
            logger.info("refusing stream from %s: accept backlog full", self.remote_peer)
            self._streams.pop(stream_id, None)
            self._core.reset_stream(stream_id)
        except trio.ClosedResourceError:
            self._streams.pop(stream_id, None)

    async def _keepalive(self) -> None:
        """Ping at once (the round trip seeds window auto-tuning), then every interval."""
        interval = self.config.keepalive_interval
        while True:
            with trio.move_on_after(self.config.keepalive_timeout) as scope:
                try:
                    await self.ping()
                except MuxerError:
                    return
            if scope.cancelled_caught:
                self._end("keep-alive ping timed out")
                return
            if not math.isfinite(interval) or interval <= 0:
                return  # keep-alive off: the first round trip was all we wanted
            await trio.sleep(interval)


def muxer_protocols() -> Sequence[str]:
    """The stream muxers we offer, in order of preference."""
    return (YAMUX_PROTOCOL,)
