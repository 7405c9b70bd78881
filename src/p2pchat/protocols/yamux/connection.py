"""The yamux connection: a sans-IO core in the manner of h2 (``/yamux/1.0.0``).

Normative text: ``specs/yamux.md`` (our reading of hashicorp/yamux ``spec.md`` and libp2p/specs
``yamux/README.md``; go-yamux and rust-yamux for the points those leave open).


How the core works (receive path, streams, flow control, errors) is told once, in the theory of
operation at the top of the package (``protocols/yamux/__init__.py``).
"""

from __future__ import annotations

from typing import Final

from ...errors import LocalProtocolError
from .config import ConnectionStatistics, StreamStatistics, YamuxConfig
from .errors import ConnectionClosedError, StreamLimitError, StreamStateError, YamuxProtocolError
from .events import (
    ConnectionTerminated,
    GoAwayReceived,
    PingReceived,
    PongReceived,
    StreamAcked,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
    YamuxEvent,
)
from .flow import credit_due, pending_credit
from .frame import (
    _ACK,
    _DATA,
    _FIN,
    _GO_AWAY,
    _MAX_U32,
    _PING,
    _PROTOCOL_ERROR,
    _RST,
    _SYN,
    _WINDOW_UPDATE,
    SESSION_ID,
    YAMUX_VERSION,
    FrameType,
    GoAwayCode,
    _pack_header,
)
from .output import OutputQueue
from .parser import NO_BODY, Body, BodyRun, FrameReader
from .streams import Handshake, StreamInput, StreamRecord, StreamState, next_stream_state

_OPEN: Final = StreamState.OPEN
_LOCAL_CLOSED: Final = StreamState.LOCAL_CLOSED
_REMOTE_CLOSED: Final = StreamState.REMOTE_CLOSED
_CLOSED: Final = StreamState.CLOSED
_SYN_PENDING: Final = Handshake.SYN_PENDING
_SYN_SENT: Final = Handshake.SYN_SENT
_SYN_RECEIVED: Final = Handshake.SYN_RECEIVED
_ESTABLISHED: Final = Handshake.ESTABLISHED


def _violation(hint: str, detail: str) -> YamuxProtocolError:
    return YamuxProtocolError(detail, hint=hint)


class YamuxConnection:
    """One side of a yamux session. ``is_client`` is the dialer's side: its stream ids are odd.

    Not thread-safe; every method is synchronous and does no I/O.
    """

    def __init__(self, is_client: bool, config: YamuxConfig | None = None) -> None:
        self.is_client: Final = is_client
        self.config: Final = config if config is not None else YamuxConfig()
        self._max_window = self.config.max_window
        self._max_frame = self.config.max_frame_payload
        self._streams: dict[int, StreamRecord] = {}
        self._next_stream_id = 1 if is_client else 2
        # Stream ids the peer may open have this parity (id & 1).
        self._peer_parity = 0 if is_client else 1
        self._out = OutputQueue()
        self._syn_pending: list[StreamRecord] = []
        self._reader = FrameReader()  # a partial header, or the rest of a data frame body
        self._inbound = 0
        self._outbound = 0
        self._inbound_unacked = 0
        self._outbound_unacked = 0
        self._next_ping = 0
        self._rtt: float | None = None
        self._local_go_away: int | None = None
        self._remote_go_away: int | None = None
        self._terminated: ConnectionTerminated | None = None

    # ---------------------------------------------------------------------------------- inspection

    @property
    def terminated(self) -> ConnectionTerminated | None:
        """The ConnectionTerminated event once the connection has failed, else ``None``."""
        return self._terminated

    @property
    def rtt(self) -> float | None:
        """The last round-trip time given to :meth:`record_rtt`, in seconds."""
        return self._rtt

    def statistics(self) -> ConnectionStatistics:
        """A snapshot of stream counts and shutdown state."""
        return ConnectionStatistics(
            inbound_streams=self._inbound,
            outbound_streams=self._outbound,
            inbound_unacked=self._inbound_unacked,
            outbound_unacked=self._outbound_unacked,
            local_go_away=self._local_go_away,
            remote_go_away=self._remote_go_away,
            terminated=self._terminated is not None,
            rtt=self._rtt,
            control_backlog=self._out.control_frames,
            queued_bytes=self._out.queued_bytes,
        )

    def stream_statistics(self, stream_id: int) -> StreamStatistics | None:
        """A snapshot of ``stream_id``, or ``None`` if no such stream is open."""
        s = self._streams.get(stream_id)
        if s is None:
            return None
        return StreamStatistics(
            stream_id=s.stream_id,
            outbound=s.outbound,
            state=s.state,
            handshake=s.handshake,
            send_window=s.send_window,
            receive_window=s.recv_window,
            receive_window_max=s.recv_window_max,
            unacknowledged=s.buffered,
        )

    # ---------------------------------------------------------------------------------- output

    def data_to_send(self) -> bytes:
        """Return, and forget, the bytes to write to the peer (possibly empty).

        Streams opened since the last call that have no frame of their own get their SYN here.
        """
        self._flush_syn_pending()
        return self._out.take_bytes()

    @property
    def wants_to_send(self) -> bool:
        """True if ``data_to_send()`` / ``frames_to_send()`` would return something."""
        return bool(self._out or self._syn_pending)

    def frames_to_send(self, max_bytes: int) -> list[tuple[bytes | memoryview, ...]]:
        """Return, and forget, whole frames to write, about ``max_bytes`` of them at most.

        See :func:`~p2pchat.protocols.yamux.output.take_frames`; SYNs are flushed first as in
        :meth:`data_to_send`.
        """
        self._flush_syn_pending()
        return self._out.take_frames(max_bytes)

    def _flush_syn_pending(self) -> None:
        if self._syn_pending:
            if self._terminated is None:
                for s in self._syn_pending:
                    if s.handshake is _SYN_PENDING and s.state is not _CLOSED:
                        self._queue_window_update(s, 0, 0)
            self._syn_pending.clear()

    # ---------------------------------------------------------------------------------- input

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[YamuxEvent]:
        """Feed bytes read from the peer; return the events they complete, in order.

        Never raises for anything the peer sends: a protocol violation ends the list with a
        :class:`ConnectionTerminated` (and queues a GoAway). After that, input is ignored. Empty
        ``data`` is a no-op; end of the transport is for the driver to handle. ``data`` is not
        kept: the driver may reuse its buffer once this returns.
        """
        events: list[YamuxEvent] = []
        if self._terminated is not None or not data:
            return events
        view = memoryview(data)
        if type(data) is memoryview and (view.format != "B" or view.ndim != 1):
            view = view.cast("B")
        run = BodyRun(events, data if type(data) is bytes else None)
        try:
            self._reader.feed(view, run, events, self._on_header, self._on_remote_fin)
        except YamuxProtocolError as exc:
            run.flush()
            self._fail(exc.hint, str(exc), events)
        return events

    def _on_header(
        self,
        version: int,
        frame_type: int,
        flags: int,
        stream_id: int,
        length: int,
        events: list[YamuxEvent],
    ) -> Body:
        """Apply one header; return what the bytes after it are (see :data:`.parser.Body`)."""
        if version != YAMUX_VERSION:
            raise _violation("bad version", f"unsupported yamux version {version}")
        if frame_type > _WINDOW_UPDATE:
            if frame_type == _PING:
                if flags & _SYN:
                    self._queue_reply(_pack_header(0, _PING, _ACK, SESSION_ID, length))
                    events.append(PingReceived(length))
                else:
                    events.append(PongReceived(length))
                return NO_BODY
            if frame_type == _GO_AWAY:
                self._remote_go_away = length
                events.append(GoAwayReceived(length))
                return NO_BODY
            raise _violation("unknown frame type", f"unknown yamux frame type {frame_type}")
        is_data = frame_type == _DATA
        if stream_id == SESSION_ID:
            raise _violation(
                "stream frame on session id",
                f"{FrameType(frame_type).name} frame on stream 0",
            )
        if is_data and length > self._max_window:
            raise _violation(
                "oversized frame", f"data frame of {length} bytes exceeds {self._max_window}"
            )
        s = self._streams.get(stream_id)
        if flags & _SYN:
            s = self._on_syn(stream_id, s, events)
        if s is None:
            # Unknown id: a frame in flight from before a reset or refusal. Drop it.
            return (length, None, False) if is_data else NO_BODY
        if flags & _ACK and s.handshake is _SYN_SENT:
            s.handshake = _ESTABLISHED
            self._outbound_unacked -= 1
            events.append(StreamAcked(stream_id))
        if flags & _RST:
            self._remove(s)
            events.append(StreamReset(stream_id, 0 if is_data else length))
            return (length, None, False) if is_data else NO_BODY
        if is_data:
            if length:
                if s.state is not _OPEN:
                    next_stream_state(s.state, StreamInput.RECV_DATA, stream_id)
                if length > s.recv_window:
                    raise _violation(
                        "data beyond receive window",
                        f"stream {stream_id}: {length} bytes with a window of {s.recv_window}",
                    )
                s.recv_window -= length
                s.buffered += length
                return (length, s, bool(flags & _FIN))
        elif length:
            window = s.send_window + length
            if window > _MAX_U32:
                raise _violation(
                    "window overflow", f"stream {stream_id}: send window would reach {window}"
                )
            s.send_window = window
            if not flags & _SYN and (s.state is _OPEN or s.state is _REMOTE_CLOSED):
                events.append(WindowUpdated(stream_id, length))
        if flags & _FIN:
            self._on_remote_fin(s, events)
        return NO_BODY

    def _queue_reply(self, header: bytes) -> None:
        """Queue a reply the peer prompted (a pong, or the RST refusing a stream).

        The peer decides how many of these we owe; it must also read them. With more than
        ``max_control_backlog`` header-only frames still waiting for the peer to read, we stop
        answering and end the connection (specs/yamux.md "Bounded output").

        Raises:
            YamuxProtocolError: the backlog is full: the peer floods without reading.
        """
        backlog = self._out.control_frames
        if backlog >= self.config.max_control_backlog:
            raise _violation(
                "control flood",
                f"{backlog} control frames unread by the peer, which keeps asking for more",
            )
        self._out.append_control(header)

    def _on_syn(
        self, stream_id: int, existing: StreamRecord | None, events: list[YamuxEvent]
    ) -> StreamRecord | None:
        if stream_id & 1 != self._peer_parity:
            raise _violation(
                "stream id parity",
                f"peer opened stream {stream_id}, which has our parity",
            )
        if existing is not None:
            raise _violation("SYN for existing stream", f"SYN for open stream {stream_id}")
        if (
            self._local_go_away is not None
            or self._remote_go_away is not None
            or self._inbound >= self.config.max_inbound_streams
            or self._inbound_unacked >= self.config.max_ack_backlog
        ):
            self._queue_reply(_pack_header(0, _WINDOW_UPDATE, _RST, stream_id, 0))
            return None
        s = StreamRecord(stream_id, False, _SYN_RECEIVED, self.config.initial_window)
        self._streams[stream_id] = s
        self._inbound += 1
        self._inbound_unacked += 1
        events.append(StreamOpened(stream_id))
        return s

    def _on_remote_fin(self, s: StreamRecord, events: list[YamuxEvent]) -> None:
        state = s.state
        new = next_stream_state(state, StreamInput.RECV_FIN, s.stream_id)
        if new is state:
            return
        events.append(StreamEnded(s.stream_id))
        if new is _CLOSED:
            self._remove(s)
        else:
            s.state = new

    def _remove(self, s: StreamRecord) -> None:
        s.state = _CLOSED
        del self._streams[s.stream_id]
        if s.outbound:
            self._outbound -= 1
            if s.handshake is _SYN_PENDING or s.handshake is _SYN_SENT:
                self._outbound_unacked -= 1
        else:
            self._inbound -= 1
            if s.handshake is _SYN_RECEIVED:
                self._inbound_unacked -= 1

    def _fail(self, hint: str, detail: str, events: list[YamuxEvent]) -> None:
        # Report the error even after our own GoAway(normal), as go-yamux does.
        if not self._local_go_away:
            self._local_go_away = _PROTOCOL_ERROR
            self._out.append_control(_pack_header(0, _GO_AWAY, 0, SESSION_ID, _PROTOCOL_ERROR))
        self._reader.reset()
        event = ConnectionTerminated(_PROTOCOL_ERROR, hint, detail)
        self._terminated = event
        events.append(event)

    # ------------------------------------------------------------------------------- local actions

    def _check_alive(self) -> None:
        if self._terminated is not None:
            raise ConnectionClosedError(
                f"connection terminated ({self._terminated.hint})", hint="connection terminated"
            )

    def _known(self, stream_id: int) -> StreamRecord:
        s = self._streams.get(stream_id)
        if s is None:
            raise StreamStateError(
                f"stream {stream_id} is not open (never opened, closed or reset)",
                stream_id=stream_id,
                hint="unknown stream",
            )
        return s

    def _handshake_flags(self, s: StreamRecord) -> int:
        """Flags our first frame on ``s`` must carry; marks them as sent."""
        if s.handshake is _SYN_PENDING:
            s.handshake = _SYN_SENT
            return _SYN
        if s.handshake is _SYN_RECEIVED:
            s.handshake = _ESTABLISHED
            self._inbound_unacked -= 1
            return _ACK
        return 0

    def _queue_window_update(self, s: StreamRecord, flags: int, delta: int) -> None:
        """Queue a WindowUpdate on ``s``; on our first frame it also grants what is pending."""
        if s.handshake is _SYN_PENDING or s.handshake is _SYN_RECEIVED:
            flags |= self._handshake_flags(s)
            if s.state is _OPEN or s.state is _LOCAL_CLOSED:
                delta = pending_credit(s)
        s.recv_window += delta
        self._out.append_control(_pack_header(0, _WINDOW_UPDATE, flags, s.stream_id, delta))

    def open_stream(self) -> int:
        """Open a stream and return its id. Its SYN goes with its first frame, or at the next
        ``data_to_send()``.

        Raises:
            ConnectionClosedError: the connection was terminated, or either side sent GoAway.
            StreamLimitError: ``max_outbound_streams`` open, ``max_ack_backlog`` unacknowledged,
                or the 32-bit stream ids are used up.
        """
        self._check_alive()
        if self._local_go_away is not None or self._remote_go_away is not None:
            raise ConnectionClosedError("no new streams after GoAway", hint="going away")
        if self._outbound >= self.config.max_outbound_streams:
            raise StreamLimitError(
                f"{self._outbound} outbound streams open", hint="too many streams"
            )
        if self._outbound_unacked >= self.config.max_ack_backlog:
            raise StreamLimitError(
                f"{self._outbound_unacked} streams await an ACK", hint="ACK backlog full"
            )
        stream_id = self._next_stream_id
        if stream_id > _MAX_U32:
            raise StreamLimitError("stream ids exhausted", hint="stream ids exhausted")
        self._next_stream_id = stream_id + 2
        s = StreamRecord(stream_id, True, _SYN_PENDING, self.config.initial_window)
        self._streams[stream_id] = s
        self._outbound += 1
        self._outbound_unacked += 1
        self._syn_pending.append(s)
        return stream_id

    def accept_stream(self, stream_id: int) -> None:
        """Acknowledge a stream the peer opened now, without waiting for our first data.

        A no-op if it is already acknowledged (or is ours).

        Raises:
            ConnectionClosedError: the connection was terminated.
            StreamStateError: no such stream is open.
        """
        self._check_alive()
        s = self._known(stream_id)
        if s.handshake is _SYN_RECEIVED:
            self._queue_window_update(s, 0, 0)

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the stream's send window allows; return how many bytes.

        The rest must wait for a :class:`WindowUpdated` on this stream. ``bytes`` are queued
        without copying (by reference); other buffers are copied, so the caller may reuse them.

        Raises:
            ConnectionClosedError: the connection was terminated.
            StreamStateError: the stream is not open, or we already sent FIN on it.
        """
        self._check_alive()
        s = self._streams.get(stream_id)
        if s is None or s.state is _LOCAL_CLOSED:
            next_stream_state(_CLOSED if s is None else s.state, StreamInput.SEND_DATA, stream_id)
        assert s is not None
        window = s.send_window
        total = len(data)
        n = total if total <= window else window
        if n <= 0:
            return 0
        flags = 0
        if s.handshake is _SYN_PENDING or s.handshake is _SYN_RECEIVED:
            if pending_credit(s) > 0 and s.state is _OPEN:
                self._queue_window_update(s, 0, 0)
            else:
                flags = self._handshake_flags(s)
        s.send_window = window - n
        out = self._out
        max_frame = self._max_frame
        if n <= max_frame and n == total and type(data) is bytes:
            out.append_data(_pack_header(0, _DATA, flags, stream_id, n), data)
            return n
        view = memoryview(data)
        if type(data) is not bytes:
            view = memoryview(bytes(view[:n]))
        pos = 0
        while pos < n:
            take = n - pos
            if take > max_frame:
                take = max_frame
            out.append_data(_pack_header(0, _DATA, flags, stream_id, take), view[pos : pos + take])
            flags = 0
            pos += take
        return n

    def send_eof(self, stream_id: int) -> None:
        """Half-close our direction of the stream (FIN). A no-op if we already did.

        Raises:
            ConnectionClosedError: the connection was terminated.
            StreamStateError: the stream is not open.
        """
        self._check_alive()
        s = self._streams.get(stream_id)
        state = _CLOSED if s is None else s.state
        new = next_stream_state(state, StreamInput.SEND_FIN, stream_id)
        if s is None or new is state:
            return
        self._queue_window_update(s, _FIN, 0)
        if new is _CLOSED:
            self._remove(s)
        else:
            s.state = new

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """Abort the stream in both directions (RST) and forget it. A no-op for unknown ids.

        ``error_code`` goes in the length field of the WindowUpdate+RST, as go-yamux does. A stream
        whose SYN has not left yet is dropped without a frame.

        Raises:
            ConnectionClosedError: the connection was terminated.
            ValueError: ``error_code`` does not fit in 32 bits.
        """
        self._check_alive()
        if not 0 <= error_code <= _MAX_U32:
            raise ValueError(f"error code {error_code} does not fit in 32 bits")
        s = self._streams.get(stream_id)
        if s is None:
            return
        if s.handshake is not _SYN_PENDING:
            self._out.append_control(_pack_header(0, _WINDOW_UPDATE, _RST, stream_id, error_code))
        self._remove(s)

    def acknowledge_received(self, stream_id: int, n: int, *, now: float | None = None) -> None:
        """Report that the application consumed ``n`` more bytes received on the stream.

        When the credit we can return reaches half the stream's maximum window, a WindowUpdate
        is queued. ``now`` (seconds, any monotonic clock) enables auto-tuning together with
        :meth:`record_rtt`. A no-op for streams that are gone.

        Raises:
            ConnectionClosedError: the connection was terminated.
            LocalProtocolError: ``n`` is negative or more than was received and not yet
                acknowledged.
        """
        self._check_alive()
        s = self._streams.get(stream_id)
        if s is None:
            return
        if n < 0 or n > s.buffered:
            raise LocalProtocolError(
                f"stream {stream_id}: cannot acknowledge {n} of {s.buffered} bytes",
                hint="bad acknowledgement",
            )
        s.buffered -= n
        if s.state is _REMOTE_CLOSED:
            return  # the peer sends nothing more: no credit to return
        grant = credit_due(
            s,
            now=now,
            rtt=self._rtt,
            max_window=self._max_window,
            autotune_rtt_factor=self.config.autotune_rtt_factor,
        )
        if grant:
            self._queue_window_update(s, 0, grant)

    def record_rtt(self, rtt: float) -> None:
        """Record a round-trip time (seconds), e.g. measured with :meth:`ping`, for auto-tuning.

        Raises:
            ValueError: ``rtt`` is negative or not a number.
        """
        if not rtt >= 0:
            raise ValueError(f"rtt must be >= 0, got {rtt}")
        self._rtt = rtt

    def ping(self, opaque: int | None = None) -> int:
        """Queue a Ping(SYN); return its opaque value, which the :class:`PongReceived` will carry.

        Raises:
            ConnectionClosedError: the connection was terminated.
            ValueError: ``opaque`` does not fit in 32 bits.
        """
        self._check_alive()
        if opaque is None:
            opaque = self._next_ping
            self._next_ping = (opaque + 1) & _MAX_U32
        elif not 0 <= opaque <= _MAX_U32:
            raise ValueError(f"ping opaque {opaque} does not fit in 32 bits")
        self._out.append_control(_pack_header(0, _PING, _SYN, SESSION_ID, opaque))
        return opaque

    def go_away(self, code: int = GoAwayCode.NORMAL) -> None:
        """Queue GoAway(``code``): no new streams in either direction, existing ones carry on.

        Later inbound SYNs are refused with RST. Only the first call sends a frame.

        Raises:
            ConnectionClosedError: the connection was terminated (its GoAway is already queued).
            ValueError: ``code`` does not fit in 32 bits.
        """
        self._check_alive()
        if not 0 <= code <= _MAX_U32:
            raise ValueError(f"GoAway code {code} does not fit in 32 bits")
        if self._local_go_away is not None:
            return
        self._local_go_away = int(code)
        self._out.append_control(_pack_header(0, _GO_AWAY, 0, SESSION_ID, code))
