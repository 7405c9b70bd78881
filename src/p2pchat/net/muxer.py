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

Streams (:class:`~p2pchat.net.muxed_stream.MuxedStream`, re-exported here) are
:class:`trio.abc.HalfCloseableStream`; their module tells how they send and receive.

When the connection ends (end of stream, transport error, a protocol violation, or our own
``aclose``), every stream is broken: pending and later calls raise ``trio.BrokenResourceError``
after the data already received has been read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Final

import attrs
import trio

from ..errors import LocalProtocolError, P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..protocols import yamux
from .muxed_stream import MuxedStream as MuxedStream
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
