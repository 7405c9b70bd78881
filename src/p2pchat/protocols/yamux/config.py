"""Settings of a yamux connection, and the statistics it reports."""

from __future__ import annotations

import attrs

from .frame import (
    _MAX_U32,
    DEFAULT_MAX_FRAME_PAYLOAD,
    DEFAULT_MAX_STREAMS,
    INITIAL_WINDOW,
    MAX_ACK_BACKLOG,
    MAX_CONTROL_BACKLOG,
    MAX_WINDOW,
)
from .streams import Handshake, StreamState


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
    #: Header-only frames that may wait for the peer to read them before a reply it prompts
    #: (pong, RST refusing a stream) ends the connection instead (specs/yamux.md
    #: "Bounded output"): 12 bytes each, so 12 KiB at the default.
    max_control_backlog: int = MAX_CONTROL_BACKLOG
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
        if self.max_control_backlog < 1:
            raise ValueError("max_control_backlog must be >= 1")
        if not self.autotune_rtt_factor >= 0:
            raise ValueError("autotune_rtt_factor must be >= 0")


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
    #: Header-only frames (window updates, RSTs, pings, pongs, GoAway) queued, not yet taken.
    control_backlog: int = 0
    #: Bytes queued for the peer and not yet taken (data bodies included).
    queued_bytes: int = 0
