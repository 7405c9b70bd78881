"""Events the yamux core returns from ``receive_data``.

Produced by the core only, so not validated on construction: the data path stays cheap.
"""

from __future__ import annotations

import attrs


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
