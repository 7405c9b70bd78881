"""Tests for the yamux sans-IO core (specs/yamux.md)."""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import DecodeError, LocalProtocolError
from p2pchat.protocols.yamux import (
    HEADER_SIZE,
    INITIAL_WINDOW,
    MAX_WINDOW,
    ConnectionClosedError,
    ConnectionTerminated,
    DataReceived,
    Flag,
    FrameHeader,
    FrameType,
    GoAwayCode,
    GoAwayReceived,
    Handshake,
    PingReceived,
    PongReceived,
    StreamAcked,
    StreamEnded,
    StreamInput,
    StreamLimitError,
    StreamOpened,
    StreamReset,
    StreamState,
    StreamStateError,
    WindowUpdated,
    YamuxConfig,
    YamuxConnection,
    YamuxEvent,
    YamuxProtocolError,
    decode_header,
    encode_header,
    next_stream_state,
)

KIB = 1024
MIB = 1024 * 1024

DATA = FrameType.DATA
WU = FrameType.WINDOW_UPDATE
PING = FrameType.PING
GO_AWAY = FrameType.GO_AWAY
SYN, ACK, FIN, RST = Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST


def frame(frame_type: int, flags: int, stream_id: int, length: int, body: bytes = b"") -> bytes:
    return encode_header(frame_type, flags, stream_id, length) + body


class Pair:
    """A client and a server wired back to back (h11's ConnectionPair)."""

    def __init__(
        self, config: YamuxConfig | None = None, server_config: YamuxConfig | None = None
    ) -> None:
        self.client = YamuxConnection(True, config)
        self.server = YamuxConnection(False, server_config if server_config else config)

    def to_server(self) -> list[YamuxEvent]:
        return self.server.receive_data(self.client.data_to_send())

    def to_client(self) -> list[YamuxEvent]:
        return self.client.receive_data(self.server.data_to_send())

    def open(self) -> int:
        """Open a client stream and let the server see it."""
        stream_id = self.client.open_stream()
        assert self.to_server() == [StreamOpened(stream_id)]
        return stream_id


def received(events: list[YamuxEvent], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def merge_data(events: list[YamuxEvent]) -> list[YamuxEvent]:
    """Join consecutive DataReceived of one stream: how reads split a body carries no meaning."""
    out: list[YamuxEvent] = []
    for event in events:
        last = out[-1] if out else None
        if (
            isinstance(event, DataReceived)
            and isinstance(last, DataReceived)
            and last.stream_id == event.stream_id
        ):
            out[-1] = DataReceived(event.stream_id, last.data + event.data)
        else:
            out.append(event)
    return out


# --------------------------------------------------------------------------------------------------
# Header codec: the vectors of specs/yamux.md "Vectors"

HEADER_VECTORS = [
    # hex, type, flags, stream id, length
    ("000000010000000100000005", DATA, SYN, 1, 5),
    ("000100020000000200040000", WU, ACK, 2, 262144),
    ("000000040000000300000000", DATA, FIN, 3, 0),
    ("000100080000000300000000", WU, RST, 3, 0),
    ("000100050000000100000000", WU, SYN | FIN, 1, 0),
    ("000200010000000001020304", PING, SYN, 0, 0x01020304),
    ("000200020000000001020304", PING, ACK, 0, 0x01020304),
    ("000300000000000000000001", GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR),
    ("0000000fffffffffffffffff", DATA, 0xF, 0xFFFFFFFF, 0xFFFFFFFF),
]


@pytest.mark.parametrize(
    ("hex_header", "frame_type", "flags", "stream_id", "length"), HEADER_VECTORS
)
def test_header_vectors(
    hex_header: str, frame_type: FrameType, flags: int, stream_id: int, length: int
) -> None:
    raw = bytes.fromhex(hex_header)
    assert encode_header(frame_type, flags, stream_id, length) == raw
    header = decode_header(raw)
    assert header == FrameHeader(frame_type, flags, stream_id, length)
    assert header.encode() == raw
    assert decode_header(b"\xaa" + raw, 1) == header


BAD_HEADERS = [
    ("0100000000000001000000", "truncated header"),
    ("010000000000000100000000", "bad version"),
    ("ff0200010000000000000000", "bad version"),
    ("000400000000000100000000", "unknown frame type"),
    ("00ff00000000000100000000", "unknown frame type"),
]


@pytest.mark.parametrize(("hex_header", "hint"), BAD_HEADERS)
def test_bad_headers(hex_header: str, hint: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_header(bytes.fromhex(hex_header))
    assert info.value.hint == hint


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((4, 0, 1, 0), ValueError),
        ((0, 0x10000, 1, 0), ValueError),
        ((0, 0, 1 << 32, 0), ValueError),
    ],
)
def test_encode_header_rejects_out_of_range(args: tuple[int, int, int, int], error: type) -> None:
    with pytest.raises(error):
        encode_header(*args)


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_decode_header_arbitrary_bytes(data: bytes) -> None:
    try:
        header = decode_header(data)
    except DecodeError:
        return
    assert header.encode() == data[:HEADER_SIZE]


# --------------------------------------------------------------------------------------------------
# Round trips


def test_open_data_both_ways_and_close() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    assert sid == 1
    assert pair.client.send_data(sid, b"hello") == 5
    wire = pair.client.data_to_send()
    # The SYN rides on the first data frame.
    assert wire == bytes.fromhex("000000010000000100000005") + b"hello"
    assert pair.server.receive_data(wire) == [StreamOpened(1), DataReceived(1, b"hello")]

    assert pair.server.send_data(sid, b"world") == 5
    wire = pair.server.data_to_send()
    # The ACK rides on the server's first frame.
    assert wire == bytes.fromhex("000000020000000100000005") + b"world"
    assert pair.client.receive_data(wire) == [StreamAcked(1), DataReceived(1, b"world")]

    pair.client.send_eof(sid)
    assert pair.to_server() == [StreamEnded(sid)]
    stats = pair.server.stream_statistics(sid)
    assert stats is not None
    assert stats.state is StreamState.REMOTE_CLOSED
    assert pair.server.send_data(sid, b"more") == 4  # half-closed: the server may still send
    pair.server.send_eof(sid)
    assert pair.to_client() == [DataReceived(sid, b"more"), StreamEnded(sid)]
    # Both FINs: the stream is gone on both sides.
    assert pair.client.stream_statistics(sid) is None
    assert pair.server.stream_statistics(sid) is None
    assert pair.client.statistics().outbound_streams == 0
    assert pair.server.statistics().inbound_streams == 0


def test_spec_session_transcript() -> None:
    """The session of specs/yamux.md "Vectors", byte for byte."""
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.send_data(sid, b"hello")
    c1 = pair.client.data_to_send()
    assert c1.hex() == "000000010000000100000005" + b"hello".hex()
    pair.server.receive_data(c1)
    pair.server.send_data(sid, b"world")
    s1 = pair.server.data_to_send()
    assert s1.hex() == "000000020000000100000005" + b"world".hex()
    pair.client.receive_data(s1)
    pair.client.send_eof(sid)
    c2 = pair.client.data_to_send()
    assert c2.hex() == "000100040000000100000000"
    assert pair.server.receive_data(c2) == [StreamEnded(sid)]
    pair.server.send_eof(sid)
    s2 = pair.server.data_to_send()
    assert s2.hex() == "000100040000000100000000"
    assert pair.client.receive_data(s2) == [StreamEnded(sid)]
    assert pair.client.stream_statistics(sid) is None
    assert pair.server.stream_statistics(sid) is None
    # The id of a removed stream may be opened again by its owner (tolerated).
    assert pair.server.receive_data(c1) == [StreamOpened(sid), DataReceived(sid, b"hello")]


def test_spec_window_update_vector() -> None:
    pair = Pair()
    sid = pair.open()
    pair.server.accept_stream(sid)
    pair.to_client()
    pair.client.send_data(sid, bytes(INITIAL_WINDOW))
    pair.to_server()
    pair.server.acknowledge_received(sid, 128 * KIB)
    assert pair.server.data_to_send().hex() == "000100000000000100020000"


def test_stream_ids_by_role() -> None:
    pair = Pair()
    assert [pair.client.open_stream() for _ in range(3)] == [1, 3, 5]
    assert [pair.server.open_stream() for _ in range(3)] == [2, 4, 6]


def test_bare_syn_is_flushed_by_data_to_send() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    assert pair.client.data_to_send() == bytes.fromhex("000100010000000100000000")
    assert pair.client.data_to_send() == b""
    pair.server.receive_data(bytes.fromhex("000100010000000100000000"))
    # The server answers later; nothing is sent until then.
    assert pair.server.data_to_send() == b""
    stats = pair.server.stream_statistics(sid)
    assert stats is not None
    assert stats.handshake is Handshake.SYN_RECEIVED


def test_accept_stream_sends_ack() -> None:
    pair = Pair()
    sid = pair.open()
    assert pair.server.statistics().inbound_unacked == 1
    pair.server.accept_stream(sid)
    assert pair.server.data_to_send() == bytes.fromhex("000100020000000100000000")
    assert pair.server.statistics().inbound_unacked == 0
    pair.server.accept_stream(sid)  # already acknowledged: nothing more
    assert pair.server.data_to_send() == b""
    with pytest.raises(StreamStateError):
        pair.server.accept_stream(99)


def test_syn_and_fin_together() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.send_eof(sid)
    wire = pair.client.data_to_send()
    assert wire == bytes.fromhex("000100050000000100000000")
    assert pair.server.receive_data(wire) == [StreamOpened(sid), StreamEnded(sid)]


def test_fin_on_data_frame_comes_after_its_body_across_reads() -> None:
    server = YamuxConnection(False)
    wire = frame(DATA, SYN | FIN, 1, 6, b"abcdef")
    events: list[YamuxEvent] = []
    for i in range(len(wire)):
        events += server.receive_data(wire[i : i + 1])
    assert merge_data(events) == [StreamOpened(1), DataReceived(1, b"abcdef"), StreamEnded(1)]


def test_reset_by_peer() -> None:
    pair = Pair()
    sid = pair.open()
    pair.server.reset_stream(sid, error_code=7)
    wire = pair.server.data_to_send()
    assert wire == bytes.fromhex("000100080000000100000007")
    assert pair.client.receive_data(wire) == [StreamReset(sid, 7)]
    assert pair.client.stream_statistics(sid) is None
    assert pair.server.stream_statistics(sid) is None
    with pytest.raises(StreamStateError):
        pair.client.send_data(sid, b"x")
    with pytest.raises(StreamStateError):
        pair.client.send_eof(sid)
    pair.client.reset_stream(sid)  # unknown stream: a no-op
    assert pair.client.data_to_send() == b""


def test_frames_after_reset_are_dropped() -> None:
    pair = Pair()
    sid = pair.open()
    pair.server.reset_stream(sid)
    # In flight from the client before it saw the RST: data, a window update, a FIN.
    late = (
        frame(DATA, 0, sid, 4, b"late")
        + frame(WU, 0, sid, 1000)
        + frame(DATA, FIN, sid, 0)
        + bytes.fromhex("000200010000000000000009")  # then a ping, parsed normally
    )
    assert pair.server.receive_data(late) == [PingReceived(9)]
    assert pair.server.terminated is None


def test_local_reset_in_the_middle_of_a_body() -> None:
    server = YamuxConnection(False)
    wire = frame(DATA, SYN, 1, 10, b"0123456789") + frame(PING, SYN, 0, 4)
    assert server.receive_data(wire[:16]) == [StreamOpened(1), DataReceived(1, b"0123")]
    server.reset_stream(1)
    # The rest of the body is skipped; the next frame parses.
    assert server.receive_data(wire[16:]) == [PingReceived(4)]
    assert server.terminated is None


def test_reset_before_syn_sends_nothing() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.reset_stream(sid)
    assert pair.client.data_to_send() == b""
    assert pair.client.statistics().outbound_streams == 0


def test_reset_of_unacked_inbound_stream_refuses_it() -> None:
    pair = Pair()
    sid = pair.open()
    pair.server.reset_stream(sid)
    assert pair.server.data_to_send() == bytes.fromhex("000100080000000100000000")  # no ACK
    assert pair.server.statistics().inbound_unacked == 0


def test_data_received_is_not_copied_when_a_read_is_one_body() -> None:
    pair = Pair()
    sid = pair.open()
    pair.client.send_data(sid, b"x")
    pair.to_server()
    body = b"y" * 1000
    server = pair.server
    server.receive_data(frame(DATA, 0, sid, len(body)))
    (event,) = server.receive_data(body)
    assert isinstance(event, DataReceived)
    assert event.data is body


def test_send_data_splits_frames() -> None:
    pair = Pair(YamuxConfig(max_frame_payload=1000))
    sid = pair.client.open_stream()
    payload = bytes(range(256)) * 10
    assert pair.client.send_data(sid, bytearray(payload)) == 2560
    wire = pair.client.data_to_send()
    assert wire[:HEADER_SIZE] == frame(DATA, SYN, sid, 1000)
    assert wire[1012 : 1012 + HEADER_SIZE] == frame(DATA, 0, sid, 1000)
    assert wire[2024 : 2024 + HEADER_SIZE] == frame(DATA, 0, sid, 560)
    assert received(pair.server.receive_data(wire), sid) == payload


def test_send_data_copies_mutable_buffers() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    buf = bytearray(b"abc")
    pair.client.send_data(sid, buf)
    buf[:] = b"xyzw"  # resizing must work and must not change what was queued
    assert received(pair.to_server(), sid) == b"abc"


# --------------------------------------------------------------------------------------------------
# Flow control


def test_window_exhaustion_and_update() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    payload = b"z" * (300 * KIB)
    assert pair.client.send_data(sid, payload) == INITIAL_WINDOW
    assert pair.client.send_data(sid, payload) == 0
    events = pair.to_server()
    assert len(received(events, sid)) == INITIAL_WINDOW

    pair.server.acknowledge_received(sid, 100 * KIB)
    assert pair.server.data_to_send() == b""  # less than half the window consumed
    pair.server.acknowledge_received(sid, 28 * KIB)
    # 128 KiB consumed: the update returns them (with the ACK: the server's first frame).
    assert pair.to_client() == [StreamAcked(sid), WindowUpdated(sid, 128 * KIB)]
    assert pair.client.send_data(sid, payload) == 128 * KIB

    with pytest.raises(LocalProtocolError):
        pair.server.acknowledge_received(sid, 129 * KIB)
    with pytest.raises(LocalProtocolError):
        pair.server.acknowledge_received(sid, -1)


def test_window_update_in_syn_is_credited() -> None:
    client = YamuxConnection(True)
    sid = client.open_stream()
    client.data_to_send()
    client.receive_data(frame(WU, ACK, sid, MIB))
    stats = client.stream_statistics(sid)
    assert stats is not None
    assert stats.send_window == INITIAL_WINDOW + MIB
    server = YamuxConnection(False)
    assert server.receive_data(frame(WU, SYN, 1, MIB)) == [StreamOpened(1)]
    stats = server.stream_statistics(1)
    assert stats is not None
    assert stats.send_window == INITIAL_WINDOW + MIB


def test_larger_initial_window_is_granted_with_syn_and_ack() -> None:
    config = YamuxConfig(initial_window=MIB)
    pair = Pair(config)
    sid = pair.client.open_stream()
    pair.client.send_data(sid, b"hi")
    wire = pair.client.data_to_send()
    assert wire[:HEADER_SIZE] == frame(WU, SYN, sid, MIB - INITIAL_WINDOW)
    assert wire[HEADER_SIZE:] == frame(DATA, 0, sid, 2, b"hi")
    pair.server.receive_data(wire)
    pair.server.accept_stream(sid)
    wire = pair.server.data_to_send()
    assert wire == frame(WU, ACK, sid, MIB - INITIAL_WINDOW)
    assert pair.client.receive_data(wire) == [
        StreamAcked(sid),
        WindowUpdated(sid, MIB - INITIAL_WINDOW),
    ]
    for conn in (pair.client, pair.server):
        stats = conn.stream_statistics(sid)
        assert stats is not None
        assert stats.send_window >= MIB - 2
        assert stats.receive_window_max == MIB


def _pump(pair: Pair, sid: int, rounds: int, step: float, *, now: bool = True) -> list[int]:
    """Send as fast as the window allows; the server consumes every chunk at ``t += step``.

    Returns the server's receive window maximum after every acknowledgement.
    """
    maxima = []
    t = 0.0
    chunk = b"q" * MIB
    for _ in range(rounds):
        while pair.client.send_data(sid, chunk):
            pass
        for event in pair.to_server():
            if isinstance(event, DataReceived):
                t += step
                pair.server.acknowledge_received(sid, len(event.data), now=t if now else None)
                stats = pair.server.stream_statistics(sid)
                assert stats is not None
                maxima.append(stats.receive_window_max)
        pair.to_client()
        client_stats = pair.client.stream_statistics(sid)
        assert client_stats is not None
        # The sender's credit never exceeds the receiver's maximum window.
        assert client_stats.send_window <= maxima[-1]
    return maxima


def test_autotuning_doubles_up_to_16_mib_and_not_beyond() -> None:
    pair = Pair(YamuxConfig(max_frame_payload=64 * KIB))
    sid = pair.open()
    pair.server.record_rtt(1.0)
    maxima = _pump(pair, sid, rounds=30, step=0.01)
    # 256 KiB, 512 KiB, ... 16 MiB, one doubling at a time, never beyond.
    assert sorted(set(maxima)) == [INITIAL_WINDOW << i for i in range(7)]
    assert maxima == sorted(maxima)
    assert maxima[-5:] == [MAX_WINDOW] * 5


def test_autotuning_respects_configured_maximum() -> None:
    pair = Pair(server_config=YamuxConfig(max_window=MIB + 1))
    pair.client = YamuxConnection(True)
    sid = pair.open()
    pair.server.record_rtt(1.0)
    maxima = _pump(pair, sid, rounds=12, step=0.01)
    assert sorted(set(maxima)) == [INITIAL_WINDOW, 2 * INITIAL_WINDOW, 4 * INITIAL_WINDOW, MIB + 1]


@pytest.mark.parametrize(
    ("rtt", "step", "now"),
    [
        (1.0, 5.0, True),  # consumed slower than 4 round trips: no growth
        (None, 0.01, True),  # no round-trip time known
        (1.0, 0.01, False),  # no clock given
    ],
)
def test_no_autotuning_without_fast_consumption(rtt: float | None, step: float, now: bool) -> None:
    pair = Pair()
    sid = pair.open()
    if rtt is not None:
        pair.server.record_rtt(rtt)
    maxima = _pump(pair, sid, rounds=10, step=step, now=now)
    assert set(maxima) == {INITIAL_WINDOW}


def test_no_window_update_after_remote_fin() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.send_data(sid, b"a" * INITIAL_WINDOW)
    pair.client.send_eof(sid)
    pair.to_server()
    pair.server.acknowledge_received(sid, INITIAL_WINDOW)
    assert pair.server.data_to_send() == b""


def test_record_rtt_rejects_negative() -> None:
    with pytest.raises(ValueError, match="rtt"):
        YamuxConnection(True).record_rtt(-1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_window": INITIAL_WINDOW - 1},
        {"initial_window": 2 * MIB, "max_window": MIB},
        {"max_window": 1 << 32},
        {"max_frame_payload": 0},
        {"max_inbound_streams": -1},
        {"max_ack_backlog": 0},
        {"autotune_rtt_factor": -1.0},
    ],
)
def test_config_validation(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        YamuxConfig(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Stream limits


def test_inbound_ack_backlog_of_256() -> None:
    pair = Pair(YamuxConfig(max_ack_backlog=1000))
    pair.server = YamuxConnection(False)
    ids = [pair.client.open_stream() for _ in range(257)]
    events = pair.to_server()
    assert events == [StreamOpened(i) for i in ids[:256]]
    # The 257th unacknowledged stream is refused.
    assert pair.server.data_to_send() == frame(WU, RST, ids[256], 0)
    assert pair.server.statistics().inbound_unacked == 256
    # Acknowledging one makes room for one more.
    pair.server.accept_stream(ids[0])
    pair.to_client()
    extra = pair.client.open_stream()
    assert pair.to_server() == [StreamOpened(extra)]


def test_outbound_ack_backlog_of_256() -> None:
    pair = Pair()
    ids = [pair.client.open_stream() for _ in range(256)]
    with pytest.raises(StreamLimitError):
        pair.client.open_stream()
    pair.to_server()
    pair.server.accept_stream(ids[0])
    assert pair.to_client() == [StreamAcked(ids[0])]
    assert pair.client.statistics().outbound_unacked == 255
    pair.client.open_stream()


def test_max_inbound_streams_refused_with_rst() -> None:
    pair = Pair(server_config=YamuxConfig(max_inbound_streams=2))
    pair.client = YamuxConnection(True)
    a, b, c = (pair.client.open_stream() for _ in range(3))
    assert pair.to_server() == [StreamOpened(a), StreamOpened(b)]
    assert pair.to_client() == [StreamReset(c, 0)]
    pair.server.reset_stream(a)
    d = pair.client.open_stream()
    pair.to_client()
    assert pair.to_server() == [StreamOpened(d)]


def test_max_outbound_streams() -> None:
    client = YamuxConnection(True, YamuxConfig(max_outbound_streams=2))
    a = client.open_stream()
    client.open_stream()
    with pytest.raises(StreamLimitError):
        client.open_stream()
    client.reset_stream(a)
    client.open_stream()


def test_refused_syn_body_is_skipped() -> None:
    server = YamuxConnection(False, YamuxConfig(max_inbound_streams=0))
    events = server.receive_data(frame(DATA, SYN, 1, 3, b"abc") + frame(PING, SYN, 0, 5))
    assert events == [PingReceived(5)]
    assert server.data_to_send() == frame(WU, RST, 1, 0) + frame(PING, ACK, 0, 5)


# --------------------------------------------------------------------------------------------------
# Session: ping and go-away


def test_ping_pong() -> None:
    pair = Pair()
    opaque = pair.client.ping()
    wire = pair.client.data_to_send()
    assert wire == frame(PING, SYN, 0, opaque)
    assert pair.server.receive_data(wire) == [PingReceived(opaque)]
    assert pair.server.data_to_send() == frame(PING, ACK, 0, opaque)
    assert pair.client.receive_data(frame(PING, ACK, 0, opaque)) == [PongReceived(opaque)]
    assert pair.client.ping() != opaque
    assert pair.client.ping(0x01020304) == 0x01020304
    assert pair.client.data_to_send().endswith(bytes.fromhex("000200010000000001020304"))
    with pytest.raises(ValueError, match="32 bits"):
        pair.client.ping(1 << 32)


def test_go_away() -> None:
    pair = Pair()
    sid = pair.open()
    pair.client.go_away()
    pair.client.go_away()  # idempotent: one frame
    wire = pair.client.data_to_send()
    assert wire == bytes.fromhex("000300000000000000000000")
    assert pair.server.receive_data(wire) == [GoAwayReceived(0)]
    with pytest.raises(ConnectionClosedError):
        pair.client.open_stream()
    with pytest.raises(ConnectionClosedError):
        pair.server.open_stream()
    assert pair.client.statistics().local_go_away == 0
    assert pair.server.statistics().remote_go_away == 0
    # Existing streams carry on.
    pair.server.send_data(sid, b"still here")
    assert received(pair.to_client(), sid) == b"still here"
    # A new stream from the peer after our GoAway is refused.
    assert pair.client.receive_data(frame(WU, SYN, 2, 0)) == []
    assert pair.client.data_to_send() == frame(WU, RST, 2, 0)
    # ... and after the peer's own GoAway, too.
    assert pair.server.receive_data(frame(WU, SYN, 7, 0)) == []
    assert pair.server.data_to_send() == frame(WU, RST, 7, 0)


def test_go_away_with_error_code() -> None:
    pair = Pair()
    pair.server.go_away(GoAwayCode.INTERNAL_ERROR)
    assert pair.to_client() == [GoAwayReceived(GoAwayCode.INTERNAL_ERROR)]


# --------------------------------------------------------------------------------------------------
# Protocol errors: the table of specs/yamux.md "Errors"

PROTOCOL_ERRORS = [
    # (name, is_client receiving, hex of what the peer sends, hint)
    ("bad version", False, "010000010000000100000000", "bad version"),
    ("unknown type", False, "000400000000000000000000", "unknown frame type"),
    ("client parity from client", False, "000100010000000200000000", "stream id parity"),
    ("server parity from server", True, "000100010000000100000000", "stream id parity"),
    (
        "data beyond window",
        False,
        "000000010000000100040001",  # SYN + 256 KiB + 1 (detected at the header)
        "data beyond receive window",
    ),
    (
        "data beyond window after some",
        False,
        "00000001000000010003ffff" + "00" * 0x3FFFF + "000000000000000100000002",
        "data beyond receive window",
    ),
    (
        "SYN for existing stream",
        False,
        "000100010000000100000000000100010000000100000000",
        "SYN for existing stream",
    ),
    ("data on stream 0", False, "000000000000000000000000", "stream frame on session id"),
    ("window update on stream 0", False, "000100000000000000000010", "stream frame on session id"),
    ("SYN on stream 0", False, "000100010000000000000000", "stream frame on session id"),
    ("oversized data frame", False, "000000000000000301000001", "oversized frame"),
    (
        "window overflow",
        False,
        "0001000100000001fffc0000",  # 256 KiB + 0xfffc0000 = 2**32
        "window overflow",
    ),
    (
        "data after FIN",
        False,
        "000000050000000100000000" + "000000000000000100000001" + "78",
        "data after FIN",
    ),
]


@pytest.mark.parametrize(
    ("is_client", "hex_input", "hint"),
    [case[1:] for case in PROTOCOL_ERRORS],
    ids=[case[0] for case in PROTOCOL_ERRORS],
)
def test_protocol_errors_terminate(is_client: bool, hex_input: str, hint: str) -> None:
    conn = YamuxConnection(is_client)
    outbound = conn.open_stream()  # an open stream of our own must not matter
    conn.send_data(outbound, b"before")
    events = conn.receive_data(bytes.fromhex(hex_input) + frame(PING, SYN, 0, 1))
    assert events, "expected a ConnectionTerminated event"
    last = events[-1]
    assert isinstance(last, ConnectionTerminated)
    assert last.error_code == GoAwayCode.PROTOCOL_ERROR
    assert last.hint == hint
    assert last.detail
    assert conn.terminated == last
    assert all(not isinstance(e, PingReceived) for e in events)  # parsing stopped at the error
    # Frames queued before stay queued; the GoAway(protocol error) follows them.
    assert conn.data_to_send().endswith(bytes.fromhex("000300000000000000000001"))
    assert conn.receive_data(frame(PING, SYN, 0, 2)) == []
    assert conn.data_to_send() == b""
    assert conn.statistics().terminated
    for call in (
        conn.open_stream,
        lambda: conn.send_data(outbound, b"x"),
        lambda: conn.send_eof(outbound),
        lambda: conn.reset_stream(outbound),
        lambda: conn.acknowledge_received(outbound, 0),
        conn.ping,
        conn.go_away,
    ):
        with pytest.raises(ConnectionClosedError):
            call()


def test_protocol_error_after_go_away_still_reports_it() -> None:
    conn = YamuxConnection(True)
    sid = conn.open_stream()
    conn.go_away()
    events = conn.receive_data(frame(DATA, 0, 0, 0))
    assert isinstance(events[-1], ConnectionTerminated)
    # Our GoAway(normal), then GoAway(protocol error); the pending SYN is not sent any more.
    assert conn.data_to_send() == frame(GO_AWAY, 0, 0, 0) + frame(GO_AWAY, 0, 0, 1)
    assert conn.stream_statistics(sid) is not None


def test_protocol_error_detected_across_split_reads() -> None:
    conn = YamuxConnection(False)
    raw = bytes.fromhex("000000010000000100040001")
    assert conn.receive_data(raw[:5]) == []
    events = conn.receive_data(raw[5:])
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].hint == "data beyond receive window"


def test_tolerated_oddities() -> None:
    """Frames that implementations tolerate and so do we (specs/yamux.md "Tolerated")."""
    client = YamuxConnection(True)
    sid = client.open_stream()
    client.data_to_send()
    events = client.receive_data(
        frame(DATA, 0, 99, 3, b"abc")  # data for a stream we never saw
        + frame(WU, ACK, 97, 10)  # window update for an unknown stream
        + frame(PING, SYN, 5, 1)  # ping on a non-zero stream id
        + frame(WU, ACK | 0x100, sid, 0)  # an unknown flag bit
        + frame(WU, ACK, sid, 0)  # a second ACK
        + frame(WU, FIN, sid, 0)
        + frame(WU, FIN, sid, 0)  # a repeated FIN
        + frame(GO_AWAY, 0, 3, 77)  # unknown GoAway code on a non-zero stream id
    )
    assert events == [
        PingReceived(1),
        StreamAcked(sid),
        StreamEnded(sid),
        GoAwayReceived(77),
    ]
    assert client.terminated is None
    assert client.data_to_send() == frame(PING, ACK, 0, 1)


# --------------------------------------------------------------------------------------------------
# Arbitrary input


@settings(max_examples=400)
@given(st.booleans(), st.binary(max_size=200), st.integers(min_value=1, max_value=13))
def test_arbitrary_bytes_never_raise(is_client: bool, data: bytes, chunk: int) -> None:
    conn = YamuxConnection(is_client)
    events: list[YamuxEvent] = []
    for i in range(0, len(data), chunk):
        events += conn.receive_data(data[i : i + chunk])
    terminations = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert len(terminations) <= 1
    if terminations:
        assert events[-1] is terminations[0]
        assert conn.data_to_send().endswith(frame(GO_AWAY, 0, 0, 1))
    else:
        conn.data_to_send()
        assert conn.terminated is None


_frames = st.lists(
    st.builds(
        lambda t, f, i, n, body: encode_header(t, f, i, n) + (body[:n] if t == 0 else b""),
        st.integers(0, 3),
        st.integers(0, 15),
        st.sampled_from([0, 1, 2, 3, 4, 5, 0xFFFFFFFF]),
        st.one_of(st.integers(0, 8), st.sampled_from([INITIAL_WINDOW, MAX_WINDOW + 1, 1 << 31])),
        st.binary(min_size=8, max_size=8),
    ),
    max_size=30,
)


@settings(max_examples=400)
@given(st.booleans(), _frames, st.integers(min_value=1, max_value=40))
def test_arbitrary_frames_never_raise(is_client: bool, frames: list[bytes], chunk: int) -> None:
    """Header-shaped input reaches the stream logic; still only events come out."""
    conn = YamuxConnection(is_client)
    mine = conn.open_stream()
    data = b"".join(frames)
    events: list[YamuxEvent] = []
    for i in range(0, len(data), chunk):
        new = conn.receive_data(data[i : i + chunk])
        events += new
        if conn.terminated is None:
            # The application keeps using the connection meanwhile.
            for event in new:
                if isinstance(event, DataReceived):
                    conn.acknowledge_received(event.stream_id, len(event.data), now=float(i))
            with contextlib.suppress(StreamStateError):
                conn.send_data(mine, b"abc")
    if conn.terminated is not None:
        assert events[-1] == conn.terminated
    conn.data_to_send()


# A client-side script: ("open",) | ("send", stream index, size) | ("eof", index) | ("reset", index)
# | ("ping",). Run it to get a valid byte stream.
_script_step = st.one_of(
    st.tuples(st.just("open")),
    st.tuples(st.just("send"), st.integers(0, 7), st.integers(0, 3000)),
    st.tuples(st.just("eof"), st.integers(0, 7)),
    st.tuples(st.just("reset"), st.integers(0, 7)),
    st.tuples(st.just("ping")),
)


def _client_bytes(script: list[tuple[object, ...]]) -> bytes:
    client = YamuxConnection(True, YamuxConfig(max_frame_payload=700))
    ids: list[int] = []
    out = b""
    for step in script:
        if step[0] == "open":
            ids.append(client.open_stream())
        elif step[0] == "ping":
            client.ping()
        elif ids:
            stream_id = ids[int(step[1]) % len(ids)]  # type: ignore[call-overload]
            try:
                if step[0] == "send":
                    client.send_data(stream_id, bytes(int(step[2])))  # type: ignore[call-overload]
                elif step[0] == "eof":
                    client.send_eof(stream_id)
                else:
                    client.reset_stream(stream_id)
            except StreamStateError:
                pass
        out += client.data_to_send()
    return out


@settings(max_examples=200)
@given(st.lists(_script_step, max_size=25), st.lists(st.integers(0, 20000), max_size=8))
def test_events_do_not_depend_on_how_reads_split_the_bytes(
    script: list[tuple[object, ...]], cuts: list[int]
) -> None:
    wire = _client_bytes(script)
    whole = YamuxConnection(False).receive_data(wire)
    assert not any(isinstance(e, ConnectionTerminated) for e in whole)
    split = YamuxConnection(False)
    events: list[YamuxEvent] = []
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    for a, b in itertools.pairwise(points):
        events += split.receive_data(wire[a:b])
    assert merge_data(events) == merge_data(whole)


_pair_step = st.one_of(
    st.tuples(st.just("open"), st.booleans()),
    st.tuples(st.just("send"), st.booleans(), st.integers(0, 15), st.integers(0, 300_000)),
    st.tuples(st.just("eof"), st.booleans(), st.integers(0, 15)),
    st.tuples(st.just("reset"), st.booleans(), st.integers(0, 15)),
    st.tuples(st.just("ping"), st.booleans()),
    st.tuples(st.just("deliver"), st.booleans(), st.integers(1, 200_000)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_pair_step, min_size=10, max_size=40))
def test_random_operations_between_two_honest_peers(steps: list[tuple[object, ...]]) -> None:
    """Two honest peers never see a protocol error, and every accepted byte arrives in order."""
    pair = Pair(YamuxConfig(max_frame_payload=16 * KIB))
    sides = {True: pair.client, False: pair.server}
    pending = {True: b"", False: b""}  # bytes written by that side, not yet delivered
    ids: list[int] = []
    sent: dict[tuple[bool, int], bytes] = {}
    got: dict[tuple[bool, int], bytes] = {}  # keyed by the sending side
    reset: set[int] = set()
    counter = itertools.count()

    def deliver(from_client: bool, limit: int) -> None:
        pending[from_client] += sides[from_client].data_to_send()
        chunk, pending[from_client] = pending[from_client][:limit], pending[from_client][limit:]
        receiver = sides[not from_client]
        for event in receiver.receive_data(chunk):
            assert not isinstance(event, ConnectionTerminated), event
            if isinstance(event, StreamOpened):
                ids.append(event.stream_id)
            elif isinstance(event, DataReceived):
                key = (from_client, event.stream_id)
                got[key] = got.get(key, b"") + event.data
                receiver.acknowledge_received(event.stream_id, len(event.data))
            elif isinstance(event, StreamReset):
                reset.add(event.stream_id)

    opening: list[tuple[object, ...]] = [("open", True), ("open", False)] * 2
    for step in opening + steps:
        side = bool(step[1])
        conn = sides[side]
        kind = step[0]
        if kind == "open":
            with contextlib.suppress(StreamLimitError):
                ids.append(conn.open_stream())
        elif kind == "ping":
            conn.ping()
        elif kind == "deliver":
            deliver(side, int(step[2]))  # type: ignore[call-overload]
        elif ids:
            stream_id = ids[int(step[2]) % len(ids)]  # type: ignore[call-overload]
            try:
                if kind == "send":
                    size = int(step[3])  # type: ignore[call-overload]
                    payload = bytes([next(counter) % 251]) * size
                    n = conn.send_data(stream_id, payload)
                    assert 0 <= n <= size
                    key = (side, stream_id)
                    sent[key] = sent.get(key, b"") + payload[:n]
                elif kind == "eof":
                    conn.send_eof(stream_id)
                else:
                    conn.reset_stream(stream_id)
                    reset.add(stream_id)
            except StreamStateError:
                pass
    for _ in range(100):
        if not (pending[True] or pending[False]):
            pending[True] += pair.client.data_to_send()
            pending[False] += pair.server.data_to_send()
            if not (pending[True] or pending[False]):
                break
        deliver(True, 1 << 30)
        deliver(False, 1 << 30)
    assert pair.client.terminated is None
    assert pair.server.terminated is None
    for key, data in sent.items():
        arrived = got.get(key, b"")
        if key[1] in reset:
            assert data.startswith(arrived)
        else:
            assert arrived == data


# --------------------------------------------------------------------------------------------------
# The stream state machine (h2 tests/test_state_machines.py style)


def _table_outcome(
    state: StreamState, stream_input: StreamInput
) -> StreamState | type[StreamStateError] | type[YamuxProtocolError]:
    """The table's verdict, with the error classes as values; checks the errors' attributes."""
    try:
        return next_stream_state(state, stream_input, 5)
    except StreamStateError as exc:
        error: StreamStateError | YamuxProtocolError = exc
        stream_id_ok = exc.stream_id == 5
    except YamuxProtocolError as exc:
        error = exc
        stream_id_ok = exc.hint == "data after FIN"
    assert stream_id_ok
    return type(error)


@settings(max_examples=300)
@given(st.sampled_from(StreamState), st.sampled_from(StreamInput))
def test_state_table_is_total_and_typed(state: StreamState, stream_input: StreamInput) -> None:
    outcome = _table_outcome(state, stream_input)
    if outcome is StreamStateError:
        assert stream_input.name.startswith("SEND_")  # only we can misuse the API
    elif outcome is YamuxProtocolError:
        assert stream_input.name.startswith("RECV_")  # only the peer can break the protocol
    else:
        assert isinstance(outcome, StreamState)
        if state is StreamState.CLOSED:
            assert outcome is StreamState.CLOSED  # nothing leaves CLOSED
        if stream_input in (StreamInput.SEND_RST, StreamInput.RECV_RST):
            assert outcome is StreamState.CLOSED


def _server_stream_in(state: StreamState) -> tuple[Pair, int]:
    """A pair whose server holds stream 1 (opened by the client, 200 KiB received) in ``state``."""
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.send_data(sid, bytes(200 * KIB))
    pair.to_server()
    pair.server.accept_stream(sid)
    pair.to_client()
    if state is StreamState.LOCAL_CLOSED:
        pair.server.send_eof(sid)
        pair.to_client()
    elif state is StreamState.REMOTE_CLOSED:
        pair.client.send_eof(sid)
        pair.to_server()
    elif state is StreamState.CLOSED:
        pair.server.reset_stream(sid)
        pair.to_client()
    stats = pair.server.stream_statistics(sid)
    assert (stats.state if stats else StreamState.CLOSED) is state
    return pair, sid


def _apply(conn: YamuxConnection, sid: int, stream_input: StreamInput) -> list[YamuxEvent]:
    """Apply ``stream_input`` to stream ``sid`` of ``conn``; return the events it produced."""
    if stream_input is StreamInput.SEND_DATA:
        conn.send_data(sid, b"x")
    elif stream_input is StreamInput.SEND_WINDOW_UPDATE:
        conn.acknowledge_received(sid, 200 * KIB)
    elif stream_input is StreamInput.SEND_FIN:
        conn.send_eof(sid)
    elif stream_input is StreamInput.SEND_RST:
        conn.reset_stream(sid)
    elif stream_input is StreamInput.RECV_DATA:
        return conn.receive_data(frame(DATA, 0, sid, 1, b"y"))
    elif stream_input is StreamInput.RECV_WINDOW_UPDATE:
        return conn.receive_data(frame(WU, 0, sid, 1000))
    elif stream_input is StreamInput.RECV_FIN:
        return conn.receive_data(frame(WU, FIN, sid, 0))
    else:
        return conn.receive_data(frame(WU, RST, sid, 0))
    return []


@pytest.mark.parametrize("stream_input", list(StreamInput), ids=lambda i: i.name)
@pytest.mark.parametrize("state", list(StreamState), ids=lambda s: s.name)
def test_connection_follows_state_table(state: StreamState, stream_input: StreamInput) -> None:
    pair, sid = _server_stream_in(state)
    server = pair.server
    expected = _table_outcome(state, stream_input)
    if expected is StreamStateError:
        with pytest.raises(StreamStateError):
            _apply(server, sid, stream_input)
        stats = server.stream_statistics(sid)
        assert (stats.state if stats else StreamState.CLOSED) is state  # unchanged
        return
    events = _apply(server, sid, stream_input)
    if expected is YamuxProtocolError:
        assert isinstance(events[-1], ConnectionTerminated)
        assert events[-1].hint == "data after FIN"
        return
    assert server.terminated is None
    stats = server.stream_statistics(sid)
    assert (stats.state if stats else StreamState.CLOSED) is expected
    # What the peer is told matches the transition.
    if state is not StreamState.CLOSED:
        wire = server.data_to_send()
        if stream_input is StreamInput.SEND_FIN and expected is not state:
            assert frame(WU, FIN, sid, 0) in wire
        if stream_input is StreamInput.SEND_RST:
            assert frame(WU, RST, sid, 0) in wire
        if stream_input is StreamInput.SEND_WINDOW_UPDATE:
            assert (frame(WU, 0, sid, 200 * KIB) in wire) is (
                state is not StreamState.REMOTE_CLOSED
            )
        if stream_input is StreamInput.RECV_FIN and expected is not state:
            assert StreamEnded(sid) in events
        if stream_input is StreamInput.RECV_RST:
            assert events == [StreamReset(sid, 0)]


def test_frames_to_send_keeps_each_header_with_its_body() -> None:
    config = YamuxConfig(max_frame_payload=1000)
    a, b = Pair(config), Pair(config)
    for pair in (a, b):
        sid = pair.client.open_stream()
        pair.client.send_data(sid, bytes(2560))
        pair.client.ping(7)
    frames = a.client.frames_to_send(1 << 20)
    assert b"".join(b"".join(bytes(part) for part in f) for f in frames) == b.client.data_to_send()
    data_frames = [f for f in frames if len(f) == 2]
    assert [len(f[1]) for f in data_frames] == [1000, 1000, 560]
    for header, body in data_frames:
        assert decode_header(header).length == len(body)
    assert not a.client.wants_to_send


def test_frames_to_send_stops_near_the_byte_budget_but_always_returns_one() -> None:
    pair = Pair(YamuxConfig(max_frame_payload=1000))
    sid = pair.client.open_stream()
    pair.client.send_data(sid, bytes(5000))
    first = pair.client.frames_to_send(1)  # too small for any frame: still one
    assert len(first) == 1
    rest = pair.client.frames_to_send(2100)
    assert sum(len(part) for f in rest for part in f) <= 2100
    assert pair.client.wants_to_send
    remaining = pair.client.frames_to_send(1 << 20)
    total = sum(len(f[1]) for f in first + rest + remaining if len(f) == 2)
    assert total == 5000
    assert not pair.client.wants_to_send


# ---------------------------------------------------------------------------------------------
# Bounded output (specs/yamux.md "Bounded output")


def test_ping_flood_without_reading_ends_the_connection_at_the_control_backlog() -> None:
    config = YamuxConfig(max_control_backlog=64)
    server = YamuxConnection(False, config)
    flood = frame(PING, SYN, 0, 7) * 1000  # 1000 pings in one read, no pong ever taken
    events = server.receive_data(flood)
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].hint == "control flood"
    assert events.count(PingReceived(7)) == 64
    stats = server.statistics()
    assert stats.terminated
    assert stats.control_backlog == 64 + 1  # the pongs owed, then our GoAway
    assert stats.queued_bytes == (64 + 1) * HEADER_SIZE
    wire = server.data_to_send()
    assert decode_header(wire, len(wire) - HEADER_SIZE) == FrameHeader(
        GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR
    )
    assert server.statistics().queued_bytes == 0


def test_pings_from_a_peer_that_reads_its_pongs_are_answered_without_bound() -> None:
    server = YamuxConnection(False, YamuxConfig(max_control_backlog=64))
    answered = 0
    for _ in range(100):
        events = server.receive_data(frame(PING, SYN, 0, 1) * 50)
        assert not any(isinstance(e, ConnectionTerminated) for e in events)
        answered += len(server.data_to_send()) // HEADER_SIZE
    assert answered == 5000


def test_refused_streams_count_against_the_control_backlog() -> None:
    config = YamuxConfig(max_inbound_streams=0, max_control_backlog=16)
    server = YamuxConnection(False, config)
    syns = b"".join(frame(WU, SYN, 2 * i + 1, 0) for i in range(100))
    events = server.receive_data(syns)
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].hint == "control flood"
    assert server.statistics().control_backlog == 16 + 1


def test_frames_to_send_takes_batches_in_order_and_keeps_the_count() -> None:
    pair = Pair()
    for _ in range(10):
        pair.client.ping()
    stream_id = pair.client.open_stream()
    pair.client.send_data(stream_id, b"x" * 100)
    frames = pair.client.frames_to_send(3 * HEADER_SIZE)
    assert [len(f) for f in frames] == [1, 1, 1]
    assert pair.client.statistics().control_backlog == 7
    rest = pair.client.frames_to_send(1 * MIB)
    assert [len(f) for f in rest] == [1] * 7 + [2]
    stats = pair.client.statistics()
    assert stats.control_backlog == 0
    assert stats.queued_bytes == 0


def test_control_backlog_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_control_backlog"):
        YamuxConfig(max_control_backlog=0)


# --------------------------------------------------------------------------------------------------
# Receive runs: the vectors of specs/vectors/yamux/receive-runs.json (specs/yamux.md "Events")

RUN_VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "specs/vectors/yamux/receive-runs.json").read_text()
)["vectors"]


def _describe(event: YamuxEvent) -> list[object]:
    if isinstance(event, DataReceived):
        return ["DataReceived", event.stream_id, event.data.hex()]
    if isinstance(event, ConnectionTerminated):
        return ["ConnectionTerminated", event.hint]
    if isinstance(event, StreamOpened | StreamEnded):
        return [type(event).__name__, event.stream_id]
    if isinstance(event, PingReceived):
        return ["PingReceived", event.opaque]
    raise AssertionError(f"no vector names {event!r}")


@pytest.mark.parametrize("vector", RUN_VECTORS, ids=[v["name"] for v in RUN_VECTORS])
def test_receive_run_vectors(vector: dict[str, Any]) -> None:
    server = YamuxConnection(False)
    events: list[YamuxEvent] = []
    for read in vector["reads"]:
        events += server.receive_data(bytearray.fromhex(read))  # a driver's reused buffer
    assert [_describe(e) for e in events] == vector["events"]


def test_a_read_buffer_reused_after_receive_data_does_not_change_delivered_data() -> None:
    server = YamuxConnection(False)
    wire = bytearray(frame(DATA, SYN, 1, 4, b"abcd") + frame(DATA, 0, 1, 2, b"ef"))
    (_, data) = server.receive_data(memoryview(wire))
    wire[:] = bytes(len(wire))  # the driver reads the next chunk into the same buffer
    assert data == DataReceived(1, b"abcdef")
    assert type(data.data) is bytes


def test_bytes_input_holding_exactly_one_body_is_delivered_without_a_copy() -> None:
    server = YamuxConnection(False)
    server.receive_data(encode_header(DATA, SYN, 1, 0))
    body = b"x" * 1000
    server.receive_data(encode_header(DATA, 0, 1, 1000))
    (event,) = server.receive_data(body)
    assert isinstance(event, DataReceived)
    assert event.data is body
