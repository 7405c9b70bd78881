"""yamux at the frame level over the Noise channel, for cases that forge frames.

The client reads frames only when a case asks (no background task): :meth:`MuxClient.next_frame`
parses one frame and keeps the bookkeeping a well-behaved peer needs, so that the target sees a
correct peer except where the case breaks a rule on purpose:

* a Ping(SYN) from the target is answered with Ping(ACK) (``auto_pong``);
* a stream the target opens (identify, say) is refused with RST: cases open their own;
* data on our streams is buffered (at most :data:`~.transport.MAX_BUFFER` bytes each, or only
  counted with ``discard``) and credited back with a WindowUpdate once half the 256 KiB window is
  used (``auto_window``; the case on the target's respect of our window turns it off);
* our writes respect the target's window for each stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

from ..errors import ProtocolError
from ..protocols import multistream as ms
from ..protocols.yamux import HEADER_SIZE, INITIAL_WINDOW, Flag, FrameType, decode_header
from ..protocols.yamux.frame import YAMUX_VERSION
from .registry import ViolationError
from .secure import SecureChannel, negotiate
from .transport import MAX_BUFFER, hexpreview

__all__ = ["Frame", "MuxClient", "StreamResetError", "StreamView", "open_mux"]

MUXER: Final = "/yamux/1.0.0"
#: Data bytes kept (not only counted) over a connection's life, all streams together.
MAX_KEPT: Final = 64 * 1024 * 1024
#: Largest data frame body we send (as go-yamux and our own muxer).
MAX_FRAME_BODY: Final = 64 * 1024
_DATA: Final = FrameType.DATA
_WU: Final = FrameType.WINDOW_UPDATE
_PING: Final = FrameType.PING
_GO_AWAY: Final = FrameType.GO_AWAY


class StreamResetError(Exception):
    """The target reset the stream."""


@attrs.frozen
class Frame:
    """One frame from the target."""

    type: FrameType
    flags: int
    stream_id: int
    length: int
    body: bytes = b""

    def describe(self) -> str:
        names = "|".join(f.name for f in Flag if self.flags & f and f.name) or "-"
        body = f" body {hexpreview(self.body, 12)}" if self.body else ""
        return f"yamux {self.type.name} {names} id={self.stream_id} len={self.length}{body}"


@attrs.define
class StreamView:
    """What the target did on one of our streams."""

    stream_id: int
    received: bytearray = attrs.Factory(bytearray)
    #: Bytes of the agreed protocol received (reset when negotiation ends).
    total_received: int = 0
    #: Every data byte received on the stream, negotiation included (what the window counts).
    data_bytes: int = 0
    unacked: int = 0
    send_window: int = INITIAL_WINDOW
    acked: bool = False
    fin: bool = False
    rst: bool = False
    #: WindowUpdate frames with a non-zero delta the target sent on the stream.
    window_updates: int = 0
    #: Flags of the first frame the target sent on the stream.
    first_flags: int | None = None
    discard: bool = False


def encode_frame(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    """A 12-byte header, any field value allowed (cases forge frames the codec would refuse)."""
    return (
        bytes([YAMUX_VERSION, frame_type])
        + flags.to_bytes(2, "big")
        + stream_id.to_bytes(4, "big")
        + length.to_bytes(4, "big")
    )


class MuxClient:
    """The dialer's side of a yamux session, one frame at a time (odd stream ids)."""

    def __init__(self, channel: SecureChannel) -> None:
        self.channel = channel
        self.transcript = channel.transcript
        self._buffer = bytearray()
        self.streams: dict[int, StreamView] = {}
        self._next_id = 1
        self.auto_pong = True
        self.auto_window = True
        self.go_away: int | None = None
        self.pongs: set[int] = set()
        self.refused: int = 0
        self._kept = 0
        #: Frames the target sent on stream ids we do not watch (gone, or never opened).
        self.stray_frames = 0

    # -- writing ------------------------------------------------------------------------------

    async def send_frame(
        self, frame_type: int, flags: int, stream_id: int, length: int, body: bytes = b""
    ) -> None:
        """Send one frame exactly as given.

        Raises:
            PeerClosedError: the target closed.
        """
        await self.channel.send(encode_frame(frame_type, flags, stream_id, length) + body)

    def new_stream_id(self) -> int:
        """The next odd stream id, with a view to watch it."""
        stream_id = self._next_id
        self._next_id += 2
        self.streams[stream_id] = StreamView(stream_id)
        return stream_id

    async def open_stream(self, payload: bytes = b"") -> int:
        """Open a stream with SYN on a Data frame carrying ``payload`` (WindowUpdate if empty).

        Raises:
            PeerClosedError: the target closed.
        """
        stream_id = self.new_stream_id()
        if payload:
            self.streams[stream_id].send_window -= len(payload)
            await self.send_frame(_DATA, Flag.SYN, stream_id, len(payload), payload)
        else:
            await self.send_frame(_WU, Flag.SYN, stream_id, 0)
        return stream_id

    async def select(self, protocol: str, extra: bytes = b"") -> tuple[int, str | None]:
        """Open a stream and propose ``protocol`` (header and proposal in the SYN frame, then
        ``extra``); the stream id and the agreed protocol, or ``None`` for ``na``.

        Raises:
            StreamResetError: the target reset the stream instead of answering.
            ViolationError: the target broke multistream-select.
            PeerClosedError: the target closed.
        """
        dialer = ms.Dialer([protocol])
        stream_id = await self.open_stream(dialer.data_to_send() + extra)
        self.transcript.sent(f"stream {stream_id}: propose {protocol}")
        view = self.streams[stream_id]
        while True:
            await self.wait(lambda: bool(view.received) or view.fin or view.rst)
            if view.received:
                dialer.receive_data(bytes(view.received))
                view.received.clear()
            elif view.rst:
                raise StreamResetError(f"the target reset stream {stream_id} during negotiation")
            else:
                raise ViolationError(f"the target closed stream {stream_id} during negotiation")
            try:
                event = dialer.next_event()
            except ProtocolError as exc:
                raise ViolationError(f"multistream-select on stream {stream_id}: {exc}") from exc
            if isinstance(event, ms.ProtocolAgreed):
                view.received[:0] = dialer.trailing_data()
                # From here on the counts are the agreed protocol's bytes only.
                view.total_received = len(view.received)
                return stream_id, protocol
            if isinstance(event, ms.NegotiationFailed):
                return stream_id, None

    async def write(self, stream_id: int, data: bytes | bytearray) -> None:
        """Send ``data`` on the stream, within the target's window for it.

        Raises:
            PeerClosedError: the target closed.
            StreamResetError: the target reset the stream.
        """
        view = self.streams[stream_id]
        sent = 0
        while sent < len(data):
            if view.rst:
                raise StreamResetError(f"the target reset stream {stream_id}")
            if view.send_window <= 0:
                await self.next_frame()
                continue
            size = min(len(data) - sent, view.send_window, MAX_FRAME_BODY)
            await self.send_frame(_DATA, 0, stream_id, size, bytes(data[sent : sent + size]))
            view.send_window -= size
            sent += size

    async def close_write(self, stream_id: int) -> None:
        """Half-close the stream (FIN)."""
        await self.send_frame(_WU, Flag.FIN, stream_id, 0)

    async def reset(self, stream_id: int) -> None:
        """Reset the stream (RST)."""
        await self.send_frame(_WU, Flag.RST, stream_id, 0)

    # -- reading ------------------------------------------------------------------------------

    async def next_frame(self) -> Frame:
        """Read, account for and return the target's next frame.

        Raises:
            PeerClosedError: the target closed.
            ViolationError: a header we cannot parse.
        """
        while len(self._buffer) < HEADER_SIZE:
            self._buffer += await self.channel.receive_some()
        try:
            header = decode_header(self._buffer)
        except ProtocolError as exc:
            raise ViolationError(f"a yamux header from the target: {exc}") from exc
        body = b""
        if header.frame_type is _DATA:
            if header.length > MAX_BUFFER:
                raise ViolationError(f"the target sent a data frame of {header.length} bytes")
            while len(self._buffer) < HEADER_SIZE + header.length:
                self._buffer += await self.channel.receive_some()
            body = bytes(self._buffer[HEADER_SIZE : HEADER_SIZE + header.length])
            del self._buffer[: HEADER_SIZE + header.length]
        else:
            del self._buffer[:HEADER_SIZE]
        frame = Frame(header.frame_type, header.flags, header.stream_id, header.length, body)
        await self._account(frame)
        return frame

    async def _account(self, frame: Frame) -> None:
        if frame.type is _PING:
            if frame.flags & Flag.SYN:
                if self.auto_pong:
                    await self.send_frame(_PING, Flag.ACK, 0, frame.length)
            else:
                self.pongs.add(frame.length)
            return
        if frame.type is _GO_AWAY:
            self.transcript.received(f"yamux GoAway code {frame.length}")
            self.go_away = frame.length
            return
        view = self.streams.get(frame.stream_id)
        if view is None:
            if frame.flags & Flag.SYN and frame.stream_id % 2 == 0:
                self.refused += 1
                await self.send_frame(_WU, Flag.RST, frame.stream_id, 0)
            else:
                self.stray_frames += 1
            return
        if view.first_flags is None:
            view.first_flags = frame.flags
        if frame.flags & Flag.ACK:
            view.acked = True
        if frame.type is _WU:
            view.send_window += frame.length
            view.window_updates += frame.length > 0
        elif frame.body:
            view.total_received += len(frame.body)
            view.data_bytes += len(frame.body)
            view.unacked += len(frame.body)
            if not view.discard:
                self._kept += len(frame.body)
                if len(view.received) + len(frame.body) > MAX_BUFFER or self._kept > MAX_KEPT:
                    raise ViolationError(
                        f"the target sent more than {MAX_BUFFER} unread bytes on one stream, or "
                        f"{MAX_KEPT} on the connection, than the case asked for"
                    )
                view.received += frame.body
            if self.auto_window and view.unacked >= INITIAL_WINDOW // 2 and not view.rst:
                await self.send_frame(_WU, 0, frame.stream_id, view.unacked)
                view.unacked = 0
        if frame.flags & Flag.FIN:
            view.fin = True
        if frame.flags & Flag.RST:
            view.rst = True

    async def wait(self, done: Callable[[], bool]) -> None:
        """Read frames until ``done()`` holds (the case's deadline bounds the wait).

        Raises:
            PeerClosedError: the target closed first.
        """
        while not done():
            await self.next_frame()

    async def read_exactly(self, stream_id: int, count: int) -> bytes:
        """``count`` bytes of the stream.

        Raises:
            StreamResetError: the target reset the stream first.
            ViolationError: the target ended the stream first.
            PeerClosedError: the target closed.
        """
        view = self.streams[stream_id]
        await self.wait(lambda: len(view.received) >= count or view.fin or view.rst)
        if len(view.received) < count:
            if view.rst:
                raise StreamResetError(f"the target reset stream {stream_id}")
            raise ViolationError(
                f"the target ended stream {stream_id} after {len(view.received)} of "
                f"{count} bytes ({hexpreview(view.received)})"
            )
        data = bytes(view.received[:count])
        del view.received[:count]
        return data

    async def read_to_end(self, stream_id: int) -> bytes:
        """The rest of the stream, up to the target's FIN.

        Raises:
            StreamResetError: the target reset the stream first.
            PeerClosedError: the target closed.
        """
        view = self.streams[stream_id]
        await self.wait(lambda: view.fin or view.rst)
        if view.rst:
            raise StreamResetError(f"the target reset stream {stream_id}")
        data = bytes(view.received)
        view.received.clear()
        return data

    async def ping(self, opaque: int) -> None:
        """Send Ping(SYN, ``opaque``) and wait for its answer.

        Raises:
            PeerClosedError: the target closed first.
        """
        self.pongs.discard(opaque)
        await self.send_frame(_PING, Flag.SYN, 0, opaque)
        await self.wait(lambda: opaque in self.pongs)


async def open_mux(channel: SecureChannel, *, inlined: bool = False) -> MuxClient:
    """Put yamux on the channel: negotiated with multistream-select, or (``inlined``) chosen in
    the Noise handshake.

    Raises:
        ViolationError: the target refused ``/yamux/1.0.0``.
        PeerClosedError: the target closed.
    """
    client = MuxClient(channel)
    if not inlined:
        agreed = await negotiate(channel, [MUXER])
        if agreed is None:
            raise ViolationError(f"the target answered na to {MUXER}")
        # negotiate() left any bytes after the agreement in the channel's plaintext buffer.
        client._buffer += channel.take_buffered()
    return client
