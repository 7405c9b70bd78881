"""yamux stream multiplexer (``/yamux/1.0.0``) as a sans-IO core.

Normative text: ``specs/yamux.md`` (our reading of hashicorp/yamux ``spec.md`` and libp2p/specs
``yamux/README.md``; go-yamux and rust-yamux for the points those leave open).

Theory of operation
-------------------

A :class:`YamuxConnection` does no I/O, in the manner of h2. The driver feeds the bytes it reads
with ``receive_data(data)``, which parses every complete frame header at once and returns the
resulting events in order; it writes whatever ``data_to_send()`` returns. Local actions
(``open_stream``, ``send_data``, ``send_eof``, ``reset_stream``, ``accept_stream``,
``acknowledge_received``, ``ping``, ``go_away``) only queue frames; they produce no events for the
local side.

Receive path. Data frame bodies are never reassembled: each run of body bytes present in one
``receive_data`` call becomes one :class:`DataReceived`, so a 64 KiB frame split over two reads
yields two events and no copy beyond one slice (none when a read holds exactly one body). Only a
header split across reads is buffered (at most 11 bytes). The window is charged in full when the
header arrives, so an overrun is detected before any of its bytes are delivered. A FIN on a data
frame takes effect after its body.

Streams. Each stream has a lifecycle :class:`StreamState` driven by the one table ``_TRANSITIONS``
(``(state, StreamInput) -> state`` or an error, h2 style) and a separate :class:`Handshake` that
only decides the flags on our first frame: SYN for a stream we opened, ACK for one the peer opened.
The SYN rides on the stream's first frame; a stream with no frame of its own by the next
``data_to_send()`` gets a bare WindowUpdate(SYN) there, so opening a stream never waits for data.
The ACK is never implicit: it goes with the first frame we send on the stream, or with
``accept_stream()``. A stream leaves the table when both sides have sent FIN, or on RST from either
side; later frames for its id are dropped silently.

Flow control. Windows are per stream, 256 KiB at first. The application reports consumed bytes with
``acknowledge_received``; once the bytes we could grant reach half the stream's current maximum
window we send them in one WindowUpdate. Auto-tuning follows go-yamux: if that happens less than
``autotune_rtt_factor`` round trips after the previous update, the maximum window doubles, up to
``max_window`` (16 MiB). The core reads no clock: the driver passes ``now`` to
``acknowledge_received`` and reports round-trip times with ``record_rtt``.

Errors. Bytes from the peer never raise. A protocol violation queues GoAway(protocol error), appends
:class:`ConnectionTerminated` to the returned events and ends the connection: later input is ignored
and later local calls raise :class:`ConnectionClosedError`. API misuse raises a
:class:`~p2pchat.errors.LocalProtocolError` subclass and changes nothing.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import attrs

from ..errors import DecodeError, LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_PAYLOAD",
    "DEFAULT_MAX_STREAMS",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "MAX_ACK_BACKLOG",
    "MAX_WINDOW",
    "PROTOCOL_ID",
    "YAMUX_VERSION",
    "ConnectionClosedError",
    "ConnectionStatistics",
    "ConnectionTerminated",
    "DataReceived",
    "Flag",
    "FrameHeader",
    "FrameType",
    "GoAwayCode",
    "GoAwayReceived",
    "Handshake",
    "PingReceived",
    "PongReceived",
    "StreamAcked",
    "StreamEnded",
    "StreamInput",
    "StreamLimitError",
    "StreamOpened",
    "StreamReset",
    "StreamState",
    "StreamStateError",
    "StreamStatistics",
    "WindowUpdated",
    "YamuxConfig",
    "YamuxConnection",
    "YamuxEvent",
    "YamuxProtocolError",
    "decode_header",
    "encode_header",
    "next_stream_state",
]

# libp2p/specs yamux/README.md "Specification": the multistream-select protocol id.
PROTOCOL_ID: Final = "/yamux/1.0.0"
# spec.md "Version Field": always 0.
YAMUX_VERSION: Final = 0
# spec.md "Framing": version u8, type u8, flags u16, stream id u32, length u32, big endian.
HEADER_SIZE: Final = 12
# spec.md "Flow Control": every stream starts with a 256 KiB window in each direction.
INITIAL_WINDOW: Final = 256 * 1024
# go-yamux maxStreamWindow / rust-yamux: auto-tuning stops at 16 MiB.
MAX_WINDOW: Final = 16 * 1024 * 1024
# libp2p/specs yamux/README.md "ACK backlog": at most 256 unacknowledged streams per direction.
MAX_ACK_BACKLOG: Final = 256
# go-yamux MaxIncomingStreams and js-libp2p-yamux max{In,Out}boundStreams.
DEFAULT_MAX_STREAMS: Final = 1000
# go-yamux and js-libp2p-yamux maxMessageSize: our outgoing data frames carry at most 64 KiB.
DEFAULT_MAX_FRAME_PAYLOAD: Final = 64 * 1024

# spec.md "StreamID Field": id 0 is the session.
SESSION_ID: Final = 0
_MAX_U32: Final = 0xFFFFFFFF

# spec.md "Type Field".
_DATA: Final = 0
_WINDOW_UPDATE: Final = 1
_PING: Final = 2
_GO_AWAY: Final = 3
# spec.md "Flag Field".
_SYN: Final = 0x1
_ACK: Final = 0x2
_FIN: Final = 0x4
_RST: Final = 0x8
# spec.md "Session termination".
_PROTOCOL_ERROR: Final = 1

_HEADER: Final = struct.Struct(">BBHII")
_pack_header: Final = _HEADER.pack
_unpack_header: Final = _HEADER.unpack_from


class FrameType(enum.IntEnum):
    """spec.md "Type Field"."""

    DATA = _DATA
    WINDOW_UPDATE = _WINDOW_UPDATE
    PING = _PING
    GO_AWAY = _GO_AWAY


class Flag(enum.IntFlag):
    """spec.md "Flag Field"."""

    SYN = _SYN
    ACK = _ACK
    FIN = _FIN
    RST = _RST


class GoAwayCode(enum.IntEnum):
    """spec.md "Session termination": the length field of a GoAway frame."""

    NORMAL = 0
    PROTOCOL_ERROR = _PROTOCOL_ERROR
    INTERNAL_ERROR = 2


# --------------------------------------------------------------------------------------------------
# Errors


class YamuxProtocolError(RemoteProtocolError):
    """The peer broke a yamux rule.

    Never escapes ``receive_data``: it becomes a :class:`ConnectionTerminated` event.
    """


class StreamStateError(LocalProtocolError):
    """A stream operation that the stream's state forbids, or on a stream that no longer exists."""

    def __init__(self, msg: str, *, stream_id: int, hint: str | None = None) -> None:
        super().__init__(msg, hint=hint)
        self.stream_id = stream_id


class StreamLimitError(LocalProtocolError):
    """No stream can be opened now: outbound limit, ACK backlog full, or stream ids exhausted.

    The backlog and the outbound count shrink as streams are acknowledged or closed
    (:class:`StreamAcked`, :class:`StreamReset`, :class:`StreamEnded`); retrying then can succeed.
    """


class ConnectionClosedError(LocalProtocolError):
    """The connection was terminated, or a GoAway forbids opening streams."""


# --------------------------------------------------------------------------------------------------
# Header codec


def _u32(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= _MAX_U32:
        raise ValueError(f"{attribute.name} must fit in 32 bits, got {value}")


def _u16(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{attribute.name} must fit in 16 bits, got {value}")


@attrs.frozen
class FrameHeader:
    """One decoded 12-byte frame header (spec.md "Framing")."""

    frame_type: FrameType = attrs.field(converter=FrameType)
    flags: int = attrs.field(validator=_u16)
    stream_id: int = attrs.field(validator=_u32)
    length: int = attrs.field(validator=_u32)

    def encode(self) -> bytes:
        """The 12 header bytes."""
        return _pack_header(YAMUX_VERSION, self.frame_type, self.flags, self.stream_id, self.length)


def encode_header(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    """Encode one frame header.

    Raises:
        ValueError: unknown ``frame_type``, or a field out of range.
    """
    return FrameHeader(FrameType(frame_type), flags, stream_id, length).encode()


def _body_length(header: bytes | memoryview) -> int:
    """The length field of an encoded header."""
    return int.from_bytes(header[8:12], "big")


def decode_header(data: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader:
    """Decode the 12-byte header at ``offset`` (the frame body, if any, is not looked at).

    Raises:
        DecodeError: fewer than 12 bytes, version other than 0, or unknown frame type.
    """
    if len(data) - offset < HEADER_SIZE:
        raise DecodeError("truncated yamux header", hint="truncated header")
    version, frame_type, flags, stream_id, length = _unpack_header(data, offset)
    if version != YAMUX_VERSION:
        raise DecodeError(f"unsupported yamux version {version}", hint="bad version")
    if frame_type > _GO_AWAY:
        raise DecodeError(f"unknown yamux frame type {frame_type}", hint="unknown frame type")
    return FrameHeader(FrameType(frame_type), flags, stream_id, length)


# --------------------------------------------------------------------------------------------------
# Events (produced by the core only, so not validated on construction: the data path stays cheap)


@attrs.frozen
class StreamOpened:
    """The peer opened ``stream_id`` (SYN); unacknowledged until we send on it or accept it."""

    stream_id: int


@attrs.frozen
class StreamAcked:
    """The peer acknowledged (ACK) ``stream_id``, which we opened."""

    stream_id: int


@attrs.frozen
class DataReceived:
    """Bytes for ``stream_id``; report them to ``acknowledge_received`` once consumed."""

    stream_id: int
    data: bytes


@attrs.frozen
class StreamEnded:
    """The peer half-closed ``stream_id`` (FIN): no more data will come on it."""

    stream_id: int


@attrs.frozen
class StreamReset:
    """The peer reset ``stream_id`` (RST); the stream is gone.

    ``error_code`` is the length field of a WindowUpdate+RST (go-yamux sends an error code there),
    0 for a Data+RST.
    """

    stream_id: int
    error_code: int


@attrs.frozen
class WindowUpdated:
    """The peer granted ``delta`` more bytes of send window on ``stream_id``."""

    stream_id: int
    delta: int


@attrs.frozen
class PingReceived:
    """The peer pinged us; the ACK carrying ``opaque`` is already queued."""

    opaque: int


@attrs.frozen
class PongReceived:
    """The answer to a ping, carrying ``opaque`` (compare with what ``ping()`` returned)."""

    opaque: int


@attrs.frozen
class GoAwayReceived:
    """The peer is going away with ``code`` (see :class:`GoAwayCode`); it accepts no new streams."""

    code: int


@attrs.frozen
class ConnectionTerminated:
    """We found a protocol violation: GoAway(``error_code``) is queued and the connection is over.

    ``hint`` names the rule broken (one of the hints in specs/yamux.md "Errors"); ``detail`` says
    more, for a log line.
    """

    error_code: int
    hint: str
    detail: str


YamuxEvent = (
    StreamOpened
    | StreamAcked
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | PingReceived
    | PongReceived
    | GoAwayReceived
    | ConnectionTerminated
)


# --------------------------------------------------------------------------------------------------
# Configuration and statistics


@attrs.frozen
class YamuxConfig:
    """Limits and window policy; the defaults are what specs/yamux.md prescribes.

    Raises:
        ValueError: a value out of range (on construction).
    """

    #: Receive window of each new stream (our first WindowUpdate grants what exceeds 256 KiB).
    initial_window: int = INITIAL_WINDOW
    #: Ceiling of the auto-tuned receive window.
    max_window: int = MAX_WINDOW
    #: Largest body of a data frame we send.
    max_frame_payload: int = DEFAULT_MAX_FRAME_PAYLOAD
    #: Concurrent streams the peer may have open; a SYN beyond gets RST.
    max_inbound_streams: int = DEFAULT_MAX_STREAMS
    #: Concurrent streams we may have open; ``open_stream`` raises beyond.
    max_outbound_streams: int = DEFAULT_MAX_STREAMS
    #: Unacknowledged streams allowed in each direction.
    max_ack_backlog: int = MAX_ACK_BACKLOG
    #: The window doubles when half of it was consumed within this many round trips.
    autotune_rtt_factor: float = 4.0

    def __attrs_post_init__(self) -> None:
        if not INITIAL_WINDOW <= self.initial_window <= self.max_window <= _MAX_U32:
            raise ValueError("need 256 KiB <= initial_window <= max_window <= 2**32 - 1")
        if not 1 <= self.max_frame_payload <= _MAX_U32:
            raise ValueError("max_frame_payload must be in 1..2**32 - 1")
        if self.max_inbound_streams < 0 or self.max_outbound_streams < 0:
            raise ValueError("stream limits must be >= 0")
        if self.max_ack_backlog < 1:
            raise ValueError("max_ack_backlog must be >= 1")
        if not self.autotune_rtt_factor >= 0:
            raise ValueError("autotune_rtt_factor must be >= 0")


class StreamState(enum.Enum):
    """Lifecycle of a stream (half-close model of spec.md "Closing a stream")."""

    OPEN = "OPEN"
    #: We sent FIN; the peer may still send.
    LOCAL_CLOSED = "LOCAL_CLOSED"
    #: The peer sent FIN; we may still send.
    REMOTE_CLOSED = "REMOTE_CLOSED"
    #: Both sent FIN, or either sent RST. The stream is removed from the connection.
    CLOSED = "CLOSED"


class Handshake(enum.Enum):
    """Where a stream is in the SYN/ACK exchange (spec.md "Opening a stream")."""

    #: Opened by us, SYN not sent yet.
    SYN_PENDING = "SYN_PENDING"
    #: Opened by us, SYN sent, no ACK yet.
    SYN_SENT = "SYN_SENT"
    #: Opened by the peer, not acknowledged by us yet.
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"


@attrs.frozen
class StreamStatistics:
    """A snapshot of one stream."""

    stream_id: int
    outbound: bool
    state: StreamState
    handshake: Handshake
    #: Bytes we may still send.
    send_window: int
    #: Bytes the peer may still send.
    receive_window: int
    #: Current (auto-tuned) maximum receive window.
    receive_window_max: int
    #: Bytes received and not yet acknowledged by the application.
    unacknowledged: int


@attrs.frozen
class ConnectionStatistics:
    """A snapshot of the connection."""

    inbound_streams: int
    outbound_streams: int
    inbound_unacked: int
    outbound_unacked: int
    local_go_away: int | None
    remote_go_away: int | None
    terminated: bool
    rtt: float | None


# --------------------------------------------------------------------------------------------------
# The stream state machine


class StreamInput(enum.Enum):
    """What can happen to a stream: our actions (SEND_*) and the peer's frames (RECV_*)."""

    SEND_DATA = "SEND_DATA"
    SEND_WINDOW_UPDATE = "SEND_WINDOW_UPDATE"
    SEND_FIN = "SEND_FIN"
    SEND_RST = "SEND_RST"
    #: A data frame with a non-empty body.
    RECV_DATA = "RECV_DATA"
    #: A window update with a non-zero delta.
    RECV_WINDOW_UPDATE = "RECV_WINDOW_UPDATE"
    RECV_FIN = "RECV_FIN"
    RECV_RST = "RECV_RST"


class _Refused(enum.Enum):
    LOCAL = "LOCAL"  # StreamStateError: the application may not do this
    REMOTE = "REMOTE"  # YamuxProtocolError: the peer may not do this


_S = StreamState
_I = StreamInput
_LOCAL_ERROR: Final = _Refused.LOCAL
_REMOTE_ERROR: Final = _Refused.REMOTE

# The stream lifecycle, one row per (state, input). Rules:
#  - FIN from each side half-closes; the second FIN, or any RST, closes (and removes) the stream.
#  - We may not send data after our FIN; the peer may not send data after its FIN (a connection
#    error). A repeated FIN from either side changes nothing.
#  - CLOSED is also the row for ids we do not know: frames for them are dropped (they may be in
#    flight from before a reset); RST and window updates from us are no-ops, data and FIN are
#    errors.
_TRANSITIONS: Final[dict[tuple[StreamState, StreamInput], StreamState | _Refused]] = {
    (_S.OPEN, _I.SEND_DATA): _S.OPEN,
    (_S.OPEN, _I.SEND_WINDOW_UPDATE): _S.OPEN,
    (_S.OPEN, _I.SEND_FIN): _S.LOCAL_CLOSED,
    (_S.OPEN, _I.SEND_RST): _S.CLOSED,
    (_S.OPEN, _I.RECV_DATA): _S.OPEN,
    (_S.OPEN, _I.RECV_WINDOW_UPDATE): _S.OPEN,
    (_S.OPEN, _I.RECV_FIN): _S.REMOTE_CLOSED,
    (_S.OPEN, _I.RECV_RST): _S.CLOSED,
    (_S.LOCAL_CLOSED, _I.SEND_DATA): _LOCAL_ERROR,
    (_S.LOCAL_CLOSED, _I.SEND_WINDOW_UPDATE): _S.LOCAL_CLOSED,
    (_S.LOCAL_CLOSED, _I.SEND_FIN): _S.LOCAL_CLOSED,
    (_S.LOCAL_CLOSED, _I.SEND_RST): _S.CLOSED,
    (_S.LOCAL_CLOSED, _I.RECV_DATA): _S.LOCAL_CLOSED,
    (_S.LOCAL_CLOSED, _I.RECV_WINDOW_UPDATE): _S.LOCAL_CLOSED,
    (_S.LOCAL_CLOSED, _I.RECV_FIN): _S.CLOSED,
    (_S.LOCAL_CLOSED, _I.RECV_RST): _S.CLOSED,
    (_S.REMOTE_CLOSED, _I.SEND_DATA): _S.REMOTE_CLOSED,
    (_S.REMOTE_CLOSED, _I.SEND_WINDOW_UPDATE): _S.REMOTE_CLOSED,
    (_S.REMOTE_CLOSED, _I.SEND_FIN): _S.CLOSED,
    (_S.REMOTE_CLOSED, _I.SEND_RST): _S.CLOSED,
    (_S.REMOTE_CLOSED, _I.RECV_DATA): _REMOTE_ERROR,
    (_S.REMOTE_CLOSED, _I.RECV_WINDOW_UPDATE): _S.REMOTE_CLOSED,
    (_S.REMOTE_CLOSED, _I.RECV_FIN): _S.REMOTE_CLOSED,
    (_S.REMOTE_CLOSED, _I.RECV_RST): _S.CLOSED,
    (_S.CLOSED, _I.SEND_DATA): _LOCAL_ERROR,
    (_S.CLOSED, _I.SEND_WINDOW_UPDATE): _S.CLOSED,
    (_S.CLOSED, _I.SEND_FIN): _LOCAL_ERROR,
    (_S.CLOSED, _I.SEND_RST): _S.CLOSED,
    (_S.CLOSED, _I.RECV_DATA): _S.CLOSED,
    (_S.CLOSED, _I.RECV_WINDOW_UPDATE): _S.CLOSED,
    (_S.CLOSED, _I.RECV_FIN): _S.CLOSED,
    (_S.CLOSED, _I.RECV_RST): _S.CLOSED,
}


def next_stream_state(
    state: StreamState, stream_input: StreamInput, stream_id: int = 0
) -> StreamState:
    """Look up the lifecycle table: the state after ``stream_input`` in ``state``.

    Raises:
        StreamStateError: the application may not do ``stream_input`` in ``state``.
        YamuxProtocolError: the peer may not do ``stream_input`` in ``state``.
    """
    outcome = _TRANSITIONS[state, stream_input]
    if outcome is _LOCAL_ERROR:
        raise StreamStateError(
            f"stream {stream_id}: {stream_input.name} not allowed in {state.name}",
            stream_id=stream_id,
            hint="stream closed",
        )
    if outcome is _REMOTE_ERROR:
        raise YamuxProtocolError(
            f"stream {stream_id}: peer sent {stream_input.name} in {state.name}",
            hint="data after FIN",
        )
    assert isinstance(outcome, StreamState)
    return outcome


# --------------------------------------------------------------------------------------------------
# The connection

_OPEN: Final = StreamState.OPEN
_LOCAL_CLOSED: Final = StreamState.LOCAL_CLOSED
_REMOTE_CLOSED: Final = StreamState.REMOTE_CLOSED
_CLOSED: Final = StreamState.CLOSED
_SYN_PENDING: Final = Handshake.SYN_PENDING
_SYN_SENT: Final = Handshake.SYN_SENT
_SYN_RECEIVED: Final = Handshake.SYN_RECEIVED
_ESTABLISHED: Final = Handshake.ESTABLISHED


@attrs.define(eq=False)
class _Stream:
    stream_id: int
    outbound: bool
    handshake: Handshake
    recv_window_max: int
    state: StreamState = _OPEN
    send_window: int = INITIAL_WINDOW
    # Credit the peer still has; both sides start from the spec's 256 KiB whatever we configure.
    recv_window: int = INITIAL_WINDOW
    # Received (or announced by a header whose body is still arriving), not yet acknowledged.
    buffered: int = 0
    # Time of the last window update we sent (or of the first ``now`` we were given).
    epoch: float | None = None


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
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1 if is_client else 2
        # Stream ids the peer may open have this parity (id & 1).
        self._peer_parity = 0 if is_client else 1
        self._out: list[bytes | memoryview] = []
        self._syn_pending: list[_Stream] = []
        # Receive parser: a partial header, or the rest of a data frame body.
        self._partial_header = b""
        self._body_left = 0
        self._body_stream: _Stream | None = None
        self._body_fin = False
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
        out = self._out
        if not out:
            return b""
        if len(out) == 1:
            only = out[0]
            out.clear()
            return only if type(only) is bytes else bytes(only)
        data = b"".join(out)
        out.clear()
        return data

    @property
    def wants_to_send(self) -> bool:
        """True if ``data_to_send()`` / ``frames_to_send()`` would return something."""
        return bool(self._out or self._syn_pending)

    def frames_to_send(self, max_bytes: int) -> list[tuple[bytes | memoryview, ...]]:
        """Return, and forget, whole frames to write, about ``max_bytes`` of them at most.

        Each item is one frame: its header, then its body for a data frame. A driver whose
        transport has its own message size (Noise: 65519 bytes) packs whole frames into each
        message, so the peer never sees a frame split across two. The first frame is always
        returned, however large; the rest stay queued in order.
        """
        self._flush_syn_pending()
        out = self._out
        frames: list[tuple[bytes | memoryview, ...]] = []
        total = 0
        i = 0
        n = len(out)
        while i < n:
            header = out[i]
            size = len(header)
            # A data frame's header is followed by its body, which belongs with it.
            if header[1] == _DATA and i + 1 < n and len(out[i + 1]) == _body_length(header) > 0:
                frame: tuple[bytes | memoryview, ...] = (header, out[i + 1])
                size += len(out[i + 1])
                step = 2
            else:
                frame = (header,)
                step = 1
            if frames and total + size > max_bytes:
                break
            frames.append(frame)
            total += size
            i += step
        del out[:i]
        return frames

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
        ``data`` is a no-op; end of the transport is for the driver to handle.
        """
        events: list[YamuxEvent] = []
        if self._terminated is not None or not data:
            return events
        # bytes are sliced directly; other buffers through a view, so each body is copied once.
        view = data if type(data) is bytes else memoryview(data).cast("B")
        try:
            self._parse(view, events)
        except YamuxProtocolError as exc:
            self._fail(exc.hint, str(exc), events)
        return events

    def _parse(self, data: bytes | memoryview, events: list[YamuxEvent]) -> None:
        end = len(data)
        pos = 0
        if self._partial_header:
            need = HEADER_SIZE - len(self._partial_header)
            if end < need:
                self._partial_header += bytes(data)
                return
            header = self._partial_header + bytes(data[:need])
            self._partial_header = b""
            pos = need
            version, frame_type, flags, stream_id, length = _unpack_header(header)
            self._on_header(version, frame_type, flags, stream_id, length, events)
        unpack = _unpack_header
        append = events.append
        while True:
            left = self._body_left
            if left:
                avail = end - pos
                if avail <= 0:
                    return
                take = left if left < avail else avail
                s = self._body_stream
                if s is not None and s.state is not _CLOSED:
                    if pos == 0 and take == end:
                        append(DataReceived(s.stream_id, bytes(data)))
                    else:
                        append(DataReceived(s.stream_id, bytes(data[pos : pos + take])))
                pos += take
                left -= take
                self._body_left = left
                if not left:
                    self._body_stream = None
                    if self._body_fin and s is not None and s.state is not _CLOSED:
                        self._on_remote_fin(s, events)
                continue
            if end - pos < HEADER_SIZE:
                if pos < end:
                    self._partial_header = bytes(data[pos:])
                return
            version, frame_type, flags, stream_id, length = unpack(data, pos)
            pos += HEADER_SIZE
            self._on_header(version, frame_type, flags, stream_id, length, events)

    def _on_header(
        self,
        version: int,
        frame_type: int,
        flags: int,
        stream_id: int,
        length: int,
        events: list[YamuxEvent],
    ) -> None:
        if version != YAMUX_VERSION:
            raise _violation("bad version", f"unsupported yamux version {version}")
        if frame_type > _WINDOW_UPDATE:
            if frame_type == _PING:
                if flags & _SYN:
                    self._out.append(_pack_header(0, _PING, _ACK, SESSION_ID, length))
                    events.append(PingReceived(length))
                else:
                    events.append(PongReceived(length))
                return
            if frame_type == _GO_AWAY:
                self._remote_go_away = length
                events.append(GoAwayReceived(length))
                return
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
            if is_data and length:
                self._body_left = length
                self._body_stream = None
                self._body_fin = False
            return
        if flags & _ACK and s.handshake is _SYN_SENT:
            s.handshake = _ESTABLISHED
            self._outbound_unacked -= 1
            events.append(StreamAcked(stream_id))
        if flags & _RST:
            self._remove(s)
            events.append(StreamReset(stream_id, 0 if is_data else length))
            if is_data and length:
                self._body_left = length
                self._body_stream = None
                self._body_fin = False
            return
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
                self._body_left = length
                self._body_stream = s
                self._body_fin = bool(flags & _FIN)
                return
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

    def _on_syn(
        self, stream_id: int, existing: _Stream | None, events: list[YamuxEvent]
    ) -> _Stream | None:
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
            self._out.append(_pack_header(0, _WINDOW_UPDATE, _RST, stream_id, 0))
            return None
        s = _Stream(stream_id, False, _SYN_RECEIVED, self.config.initial_window)
        self._streams[stream_id] = s
        self._inbound += 1
        self._inbound_unacked += 1
        events.append(StreamOpened(stream_id))
        return s

    def _on_remote_fin(self, s: _Stream, events: list[YamuxEvent]) -> None:
        state = s.state
        new = next_stream_state(state, StreamInput.RECV_FIN, s.stream_id)
        if new is state:
            return
        events.append(StreamEnded(s.stream_id))
        if new is _CLOSED:
            self._remove(s)
        else:
            s.state = new

    def _remove(self, s: _Stream) -> None:
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
            self._out.append(_pack_header(0, _GO_AWAY, 0, SESSION_ID, _PROTOCOL_ERROR))
        self._partial_header = b""
        self._body_left = 0
        self._body_stream = None
        event = ConnectionTerminated(_PROTOCOL_ERROR, hint, detail)
        self._terminated = event
        events.append(event)

    # ------------------------------------------------------------------------------- local actions

    def _check_alive(self) -> None:
        if self._terminated is not None:
            raise ConnectionClosedError(
                f"connection terminated ({self._terminated.hint})", hint="connection terminated"
            )

    def _known(self, stream_id: int) -> _Stream:
        s = self._streams.get(stream_id)
        if s is None:
            raise StreamStateError(
                f"stream {stream_id} is not open (never opened, closed or reset)",
                stream_id=stream_id,
                hint="unknown stream",
            )
        return s

    def _handshake_flags(self, s: _Stream) -> int:
        """Flags our first frame on ``s`` must carry; marks them as sent."""
        if s.handshake is _SYN_PENDING:
            s.handshake = _SYN_SENT
            return _SYN
        if s.handshake is _SYN_RECEIVED:
            s.handshake = _ESTABLISHED
            self._inbound_unacked -= 1
            return _ACK
        return 0

    def _queue_window_update(self, s: _Stream, flags: int, delta: int) -> None:
        """Queue a WindowUpdate on ``s``; on our first frame it also grants what is pending."""
        if s.handshake is _SYN_PENDING or s.handshake is _SYN_RECEIVED:
            flags |= self._handshake_flags(s)
            if s.state is _OPEN or s.state is _LOCAL_CLOSED:
                delta = s.recv_window_max - s.recv_window - s.buffered
        s.recv_window += delta
        self._out.append(_pack_header(0, _WINDOW_UPDATE, flags, s.stream_id, delta))

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
        s = _Stream(stream_id, True, _SYN_PENDING, self.config.initial_window)
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
            if s.recv_window_max - s.recv_window - s.buffered > 0 and s.state is _OPEN:
                self._queue_window_update(s, 0, 0)
            else:
                flags = self._handshake_flags(s)
        s.send_window = window - n
        out = self._out
        max_frame = self._max_frame
        if n <= max_frame and n == total and type(data) is bytes:
            out.append(_pack_header(0, _DATA, flags, stream_id, n))
            out.append(data)
            return n
        view = memoryview(data)
        if type(data) is not bytes:
            view = memoryview(bytes(view[:n]))
        pos = 0
        while pos < n:
            take = n - pos
            if take > max_frame:
                take = max_frame
            out.append(_pack_header(0, _DATA, flags, stream_id, take))
            out.append(view[pos : pos + take])
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
            self._out.append(_pack_header(0, _WINDOW_UPDATE, _RST, stream_id, error_code))
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
        epoch = s.epoch
        if now is not None and epoch is None:
            s.epoch = now
        window_max = s.recv_window_max
        grant = window_max - s.recv_window - s.buffered
        if grant * 2 < window_max:
            return
        if now is not None:
            rtt = self._rtt
            if (
                rtt is not None
                and epoch is not None
                and window_max < self._max_window
                and now - epoch < rtt * self.config.autotune_rtt_factor
            ):
                grown = min(window_max * 2, self._max_window)
                grant += grown - window_max
                s.recv_window_max = grown
            s.epoch = now
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
        self._out.append(_pack_header(0, _PING, _SYN, SESSION_ID, opaque))
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
        self._out.append(_pack_header(0, _GO_AWAY, 0, SESSION_ID, code))
