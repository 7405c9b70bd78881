"""The yamux stream state machine: one lifecycle table, and the record the core keeps per stream.

A stream's :class:`StreamState` moves only through ``_TRANSITIONS``, looked up by
:func:`next_stream_state` (h2 style: ``(state, input) -> state``, or an error naming who broke
the rule). The SYN/ACK exchange is tracked apart, in :class:`Handshake`: it only decides the flags
of our first frame on the stream.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from .errors import StreamStateError, YamuxProtocolError
from .frame import INITIAL_WINDOW


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


@attrs.define(eq=False)
class StreamRecord:
    """What the connection keeps for one open stream: its state and both windows."""

    stream_id: int
    outbound: bool
    handshake: Handshake
    recv_window_max: int
    state: StreamState = StreamState.OPEN
    send_window: int = INITIAL_WINDOW
    # Credit the peer still has; both sides start from the spec's 256 KiB whatever we configure.
    recv_window: int = INITIAL_WINDOW
    # Received (or announced by a header whose body is still arriving), not yet acknowledged.
    buffered: int = 0
    # Time of the last window update we sent (or of the first ``now`` we were given).
    epoch: float | None = None
