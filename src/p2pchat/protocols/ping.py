"""libp2p ping (``/ipfs/ping/1.0.0``), sans-IO.

Normative text: ``specs/ping.md`` (our reading of libp2p/specs ``ping/ping.md``).

Theory of operation
-------------------

The dialer writes 32 random bytes; the responder reads exactly 32 bytes and writes them back; the
dialer may repeat on the same stream, and closes its write side after the last ping. There is no
framing beyond the fixed size, so the byte stream is cut into 32-byte chunks.

:class:`PingDialer` hands out each payload to write (:meth:`~PingDialer.send_ping`) and checks
echoed bytes against the payloads still outstanding, in order, as soon as they arrive: a wrong byte
is a :class:`~p2pchat.errors.RemoteProtocolError` at once, without waiting for the chunk to end.
Each complete echo is a :class:`Pong`. Pings may be pipelined; the echoes come back in order. The
core does no timing: the adapter notes when it wrote a payload and when its :class:`Pong` came.

:class:`PingResponder` buffers received bytes and queues each complete 32-byte chunk for
:meth:`~PingResponder.data_to_send`. The end of the stream inside a chunk is a protocol error;
at a chunk boundary it is the dialer's normal goodbye, and the adapter closes the stream once it
has written what is queued.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Final

import attrs

from ..errors import LocalProtocolError, RemoteProtocolError
from ._need_data import NEED_DATA, NeedData

__all__ = [
    "NEED_DATA",
    "PING_SIZE",
    "PROTOCOL_ID",
    "NeedData",
    "PingDialer",
    "PingResponder",
    "Pong",
]

# ping/ping.md "Protocol".
PROTOCOL_ID: Final = "/ipfs/ping/1.0.0"
# ping/ping.md "Protocol": "a 32-byte payload of random binary data".
PING_SIZE: Final = 32

_Buffer = bytes | bytearray | memoryview


def _check_payload(instance: object, attribute: object, value: bytes) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"ping payload is {type(value).__name__}, not bytes")
    if len(value) != PING_SIZE:
        raise ValueError(f"ping payload is {len(value)} bytes, not {PING_SIZE}")


@attrs.frozen
class Pong:
    """The peer echoed ``payload`` correctly."""

    payload: bytes = attrs.field(validator=_check_payload)


class PingDialer:
    """The side that sends pings and checks the echoes."""

    def __init__(self) -> None:
        self._outstanding: deque[bytes] = deque()
        # How many bytes of the first outstanding payload have been echoed and checked.
        self._matched = 0
        self._buffer = bytearray()
        self._eof = False
        self._broken = False

    @property
    def outstanding(self) -> int:
        """How many pings were sent and not yet echoed in full."""
        return len(self._outstanding)

    def send_ping(self, payload: bytes | None = None) -> bytes:
        """Start a ping and return the bytes to write: the payload itself.

        ``payload`` defaults to 32 bytes from ``os.urandom``; tests pass their own.

        Raises:
            ValueError: ``payload`` is not 32 bytes.
            LocalProtocolError: the peer already closed the stream, or an error was raised.
        """
        if self._broken:
            raise LocalProtocolError("ping stream already failed", hint="ping failed")
        if self._eof:
            raise LocalProtocolError("the peer closed the ping stream", hint="ping stream closed")
        if payload is None:
            payload = os.urandom(PING_SIZE)
        payload = bytes(payload)
        if len(payload) != PING_SIZE:
            raise ValueError(f"ping payload is {len(payload)} bytes, not {PING_SIZE}")
        self._outstanding.append(payload)
        return payload

    def receive_data(self, data: _Buffer) -> None:
        """Buffer bytes read from the stream.

        Raises:
            LocalProtocolError: called after :meth:`receive_eof`.
        """
        if self._eof:
            raise LocalProtocolError("data after end of stream", hint="data after eof")
        self._buffer += data

    def receive_eof(self) -> None:
        """Note that the peer closed its side of the stream."""
        self._eof = True

    def next_event(self) -> Pong | NeedData:
        """Check buffered echo bytes; return the next complete :class:`Pong` or :data:`NEED_DATA`.

        After end of stream with no ping outstanding this keeps returning :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: an echoed byte differs from the payload sent, bytes arrived
                with no ping outstanding, or the stream ended before an echo was complete.
            LocalProtocolError: an error was already raised.
        """
        if self._broken:
            raise LocalProtocolError("ping stream already failed", hint="ping failed")
        try:
            return self._next_event()
        except RemoteProtocolError:
            self._broken = True
            raise

    def _next_event(self) -> Pong | NeedData:
        if self._buffer:
            if not self._outstanding:
                raise RemoteProtocolError(
                    f"{len(self._buffer)} bytes received with no ping outstanding",
                    hint="unsolicited ping data",
                )
            payload = self._outstanding[0]
            take = min(len(self._buffer), PING_SIZE - self._matched)
            expected = payload[self._matched : self._matched + take]
            if self._buffer[:take] != expected:
                raise RemoteProtocolError(
                    "ping echo does not match the payload", hint="ping mismatch"
                )
            del self._buffer[:take]
            self._matched += take
            if self._matched == PING_SIZE:
                self._outstanding.popleft()
                self._matched = 0
                return Pong(payload)
        if self._eof and self._outstanding:
            raise RemoteProtocolError(
                f"stream ended with {len(self._outstanding)} ping(s) not echoed",
                hint="ping truncated",
            )
        return NEED_DATA


class PingResponder:
    """The side that echoes pings."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self._echoed = 0
        self._eof = False

    @property
    def pings_echoed(self) -> int:
        """How many complete pings were queued for echo so far."""
        return self._echoed

    @property
    def finished(self) -> bool:
        """True once the peer ended the stream cleanly and every echo was handed out: the
        adapter then closes the stream."""
        return self._eof and not self._outgoing

    def receive_data(self, data: _Buffer) -> None:
        """Buffer bytes read from the stream and queue each complete 32-byte chunk for echo.

        Raises:
            LocalProtocolError: called after :meth:`receive_eof`.
        """
        if self._eof:
            raise LocalProtocolError("data after end of stream", hint="data after eof")
        self._buffer += data
        whole = len(self._buffer) - len(self._buffer) % PING_SIZE
        if whole:
            self._outgoing += self._buffer[:whole]
            del self._buffer[:whole]
            self._echoed += whole // PING_SIZE

    def receive_eof(self) -> None:
        """Note that the dialer closed its side of the stream.

        Raises:
            RemoteProtocolError: the stream ended inside a ping (the echo of the complete ones
                is still queued).
        """
        self._eof = True
        if self._buffer:
            raise RemoteProtocolError(
                f"stream ended {len(self._buffer)} bytes into a ping", hint="ping truncated"
            )

    def data_to_send(self) -> bytes:
        """The echoes to write (possibly empty); each byte is returned once."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out
