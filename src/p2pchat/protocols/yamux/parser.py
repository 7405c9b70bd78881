"""Cutting the peer's bytes into yamux frames: headers, and body bytes grouped into events.

Normative text: ``specs/yamux.md`` "Events". The connection decides what each header means; this
module only finds headers and bodies in whatever pieces the reads deliver:

* a header split across reads is kept (at most 11 bytes) until it is whole;
* a body is never reassembled across reads. Within one read, consecutive body bytes of one stream
  (a run of data frames with no flags and nothing else between them) become one
  :class:`~.events.DataReceived`, copied once: a bulk reader gets one event per read, not one
  per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .events import DataReceived, YamuxEvent
from .frame import _DATA, HEADER_SIZE, _unpack_header
from .streams import StreamRecord, StreamState

_CLOSED: Final = StreamState.CLOSED

#: What a header asks of the bytes after it: how many body bytes follow, the stream they are
#: for (``None``: skip them), and whether the stream's FIN takes effect after them.
Body = tuple[int, StreamRecord | None, bool]
NO_BODY: Final[Body] = (0, None, False)

#: Interprets one header ``(version, type, flags, stream_id, length, events)``; may append events.
OnHeader = Callable[[int, int, int, int, int, list[YamuxEvent]], Body]
#: Applies a FIN that came on a data frame, once its body has been delivered.
OnBodyFin = Callable[[StreamRecord, list[YamuxEvent]], None]


class BodyRun:
    """Consecutive body bytes of one stream within one read, delivered as one
    :class:`DataReceived` (one copy) when anything else comes between them or the read ends."""

    __slots__ = ("_events", "_parts", "_whole", "stream_id")

    def __init__(self, events: list[YamuxEvent], whole: bytes | None) -> None:
        self._events = events
        self._whole = whole  # the read, when it is ``bytes`` (a body spanning it is not copied)
        self._parts: list[memoryview] = []
        #: The stream of the run in progress, or -1 (no stream id is negative).
        self.stream_id = -1

    def add(self, stream_id: int, data: memoryview, start: int, stop: int) -> None:
        if stream_id != self.stream_id:
            if self.stream_id >= 0:
                self.flush()
            self.stream_id = stream_id
        self._parts.append(data[start:stop])

    def flush(self) -> None:
        """Deliver the run in progress, if any."""
        parts = self._parts
        if not parts:
            self.stream_id = -1
            return
        whole = self._whole
        if len(parts) > 1:
            body = b"".join(parts)
        elif whole is not None and len(parts[0]) == len(whole):
            body = whole
        else:
            body = bytes(parts[0])
        self._events.append(DataReceived(self.stream_id, body))
        parts.clear()
        self.stream_id = -1


class FrameReader:
    """The parser's state between reads: a partial header, or the rest of a body."""

    __slots__ = ("_body_fin", "_body_left", "_body_stream", "_partial_header")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget any partial frame (the connection has failed)."""
        self._partial_header = b""
        self._body_left = 0
        self._body_stream: StreamRecord | None = None
        self._body_fin = False

    def feed(
        self,
        data: memoryview,
        run: BodyRun,
        events: list[YamuxEvent],
        on_header: OnHeader,
        on_body_fin: OnBodyFin,
    ) -> None:
        """Parse one read: headers go to ``on_header`` in order, body bytes to ``run``.

        Raises:
            YamuxProtocolError: from ``on_header`` (the run up to there is left unflushed).
        """
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
            self._body_left, self._body_stream, self._body_fin = on_header(
                version, frame_type, flags, stream_id, length, events
            )
        unpack = _unpack_header
        while True:
            left = self._body_left
            if left:
                avail = end - pos
                if avail <= 0:
                    break
                take = left if left < avail else avail
                s = self._body_stream
                if s is not None and s.state is not _CLOSED:
                    run.add(s.stream_id, data, pos, pos + take)
                pos += take
                left -= take
                self._body_left = left
                if not left:
                    self._body_stream = None
                    if self._body_fin and s is not None and s.state is not _CLOSED:
                        if run.stream_id >= 0:
                            run.flush()
                        on_body_fin(s, events)
                continue
            if end - pos < HEADER_SIZE:
                if pos < end:
                    self._partial_header = bytes(data[pos:])
                break
            version, frame_type, flags, stream_id, length = unpack(data, pos)
            pos += HEADER_SIZE
            # A plain data frame continuing the run's stream adds no event: the run goes on, so
            # that consecutive bodies of one stream become one DataReceived.
            if run.stream_id >= 0 and (frame_type != _DATA or flags or stream_id != run.stream_id):
                run.flush()
            self._body_left, self._body_stream, self._body_fin = on_header(
                version, frame_type, flags, stream_id, length, events
            )
        if run.stream_id >= 0:
            run.flush()
