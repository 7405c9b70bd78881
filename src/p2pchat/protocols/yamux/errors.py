"""The errors of the yamux core: what the peer did wrong, and what the application may not do."""

from __future__ import annotations

from ...errors import LocalProtocolError, RemoteProtocolError


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
