"""ping (specs/ping.md): echo, pipelining, mismatch, partial delivery, end of stream."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import LocalProtocolError, RemoteProtocolError
from p2pchat.protocols.ping import (
    NEED_DATA,
    PING_SIZE,
    PROTOCOL_ID,
    PingDialer,
    PingResponder,
    Pong,
)

P1 = bytes(range(32))
P2 = bytes(range(32, 64))


def pongs(dialer: PingDialer) -> list[Pong]:
    out = []
    while (event := dialer.next_event()) is not NEED_DATA:
        assert isinstance(event, Pong)
        out.append(event)
    return out


def test_constants() -> None:
    assert PROTOCOL_ID == "/ipfs/ping/1.0.0"
    assert PING_SIZE == 32


# specs/ping.md "Vectors" (the error rows): echo hex -> hint.
BAD_ECHOES = [
    pytest.param(P1[:31] + b"\x00", "ping mismatch", id="last-byte-differs"),
    pytest.param(b"\x00" * 32, "ping mismatch", id="second-byte-differs"),
    pytest.param(P1 + b"\xff", "unsolicited ping data", id="byte-beyond-echo"),
]


def test_echo_through_a_responder() -> None:
    dialer, responder = PingDialer(), PingResponder()
    wire = dialer.send_ping(P1)
    assert wire == P1
    assert dialer.outstanding == 1
    responder.receive_data(wire)
    echo = responder.data_to_send()
    assert echo == P1
    assert responder.data_to_send() == b""
    dialer.receive_data(echo)
    assert dialer.next_event() == Pong(P1)
    assert dialer.next_event() is NEED_DATA
    assert dialer.outstanding == 0
    assert responder.pings_echoed == 1


def test_default_payload_is_random_and_32_bytes() -> None:
    dialer = PingDialer()
    first, second = dialer.send_ping(), dialer.send_ping()
    assert len(first) == len(second) == PING_SIZE
    assert first != second
    dialer.receive_data(first + second)
    assert pongs(dialer) == [Pong(first), Pong(second)]


@pytest.mark.parametrize("size", [0, 31, 33])
def test_payload_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="32"):
        PingDialer().send_ping(b"\x00" * size)
    with pytest.raises(ValueError, match="32"):
        Pong(b"\x00" * size)


def test_many_pings_on_one_stream_sequentially() -> None:
    dialer, responder = PingDialer(), PingResponder()
    for i in range(20):
        payload = bytes([i]) * 32
        responder.receive_data(dialer.send_ping(payload))
        dialer.receive_data(responder.data_to_send())
        assert pongs(dialer) == [Pong(payload)]
    assert responder.pings_echoed == 20
    responder.receive_eof()
    assert responder.finished


def test_pipelined_pings_are_matched_in_order() -> None:
    dialer, responder = PingDialer(), PingResponder()
    responder.receive_data(dialer.send_ping(P1) + dialer.send_ping(P2))
    assert dialer.outstanding == 2
    dialer.receive_data(responder.data_to_send())
    assert pongs(dialer) == [Pong(P1), Pong(P2)]


@pytest.mark.parametrize(("echo", "hint"), BAD_ECHOES)
def test_bad_echo(echo: bytes, hint: str) -> None:
    dialer = PingDialer()
    dialer.send_ping(P1)
    dialer.receive_data(echo)
    with pytest.raises(RemoteProtocolError) as info:
        pongs(dialer)
    assert info.value.hint == hint


def test_mismatch_is_detected_before_the_echo_is_complete() -> None:
    dialer = PingDialer()
    dialer.send_ping(P1)
    dialer.receive_data(P1[:10])
    assert dialer.next_event() is NEED_DATA
    dialer.receive_data(b"\xee")
    with pytest.raises(RemoteProtocolError, match="does not match"):
        dialer.next_event()


def test_echo_of_the_second_ping_is_checked_against_the_second_payload() -> None:
    dialer = PingDialer()
    dialer.send_ping(P1)
    dialer.send_ping(P2)
    dialer.receive_data(P1 + P1)
    assert dialer.next_event() == Pong(P1)
    with pytest.raises(RemoteProtocolError) as info:
        dialer.next_event()
    assert info.value.hint == "ping mismatch"


def test_data_with_no_ping_outstanding() -> None:
    dialer = PingDialer()
    dialer.receive_data(b"\x00")
    with pytest.raises(RemoteProtocolError) as info:
        dialer.next_event()
    assert info.value.hint == "unsolicited ping data"


def test_dialer_partial_delivery_byte_by_byte() -> None:
    dialer = PingDialer()
    dialer.send_ping(P1)
    for i in range(31):
        dialer.receive_data(P1[i : i + 1])
        assert dialer.next_event() is NEED_DATA
    dialer.receive_data(P1[31:])
    assert dialer.next_event() == Pong(P1)


def test_responder_partial_delivery() -> None:
    responder = PingResponder()
    responder.receive_data(P1[:5])
    assert responder.data_to_send() == b""
    responder.receive_data(P1[5:] + P2[:31])
    assert responder.data_to_send() == P1
    assert responder.pings_echoed == 1
    responder.receive_data(P2[31:])
    assert responder.data_to_send() == P2
    assert responder.pings_echoed == 2


def test_responder_echoes_any_content() -> None:
    responder = PingResponder()
    responder.receive_data(b"\x00" * 64)
    assert responder.data_to_send() == b"\x00" * 64


def test_dialer_end_of_stream_with_ping_outstanding() -> None:
    dialer = PingDialer()
    dialer.send_ping(P1)
    dialer.receive_data(P1[:16])
    dialer.receive_eof()
    with pytest.raises(RemoteProtocolError) as info:
        pongs(dialer)
    assert info.value.hint == "ping truncated"


def test_dialer_end_of_stream_after_echoes_is_clean() -> None:
    dialer = PingDialer()
    dialer.send_ping(P1)
    dialer.receive_data(P1)
    dialer.receive_eof()
    assert dialer.next_event() == Pong(P1)
    assert dialer.next_event() is NEED_DATA
    assert dialer.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        dialer.send_ping(P2)
    with pytest.raises(LocalProtocolError):
        dialer.receive_data(P1)


def test_dialer_is_unusable_after_an_error() -> None:
    dialer = PingDialer()
    dialer.send_ping(P1)
    dialer.receive_data(b"\xff")
    with pytest.raises(RemoteProtocolError):
        dialer.next_event()
    with pytest.raises(LocalProtocolError):
        dialer.next_event()
    with pytest.raises(LocalProtocolError):
        dialer.send_ping(P2)


def test_responder_end_of_stream() -> None:
    responder = PingResponder()
    responder.receive_data(P1)
    responder.receive_eof()
    assert not responder.finished  # the echo is still to be written
    assert responder.data_to_send() == P1
    assert responder.finished
    with pytest.raises(LocalProtocolError):
        responder.receive_data(P2)


def test_responder_end_of_stream_inside_a_ping() -> None:
    responder = PingResponder()
    responder.receive_data(P1 + P2[:16])
    with pytest.raises(RemoteProtocolError) as info:
        responder.receive_eof()
    assert info.value.hint == "ping truncated"
    assert responder.data_to_send() == P1


@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=6),
    st.data(),
)
@settings(max_examples=300)
def test_any_split_of_any_pings(payloads: list[bytes], data: st.DataObject) -> None:
    dialer, responder = PingDialer(), PingResponder()
    wire = b"".join(dialer.send_ping(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    got: list[Pong] = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        responder.receive_data(wire[a:b])
        dialer.receive_data(responder.data_to_send())
        got.extend(pongs(dialer))
    responder.receive_eof()
    assert responder.finished
    assert got == [Pong(p) for p in payloads]
    assert responder.pings_echoed == len(payloads)


@given(st.binary(min_size=32, max_size=32), st.lists(st.binary(max_size=40), max_size=5))
@settings(max_examples=300)
def test_arbitrary_echo_raises_only_remote_protocol_error(
    payload: bytes, chunks: list[bytes]
) -> None:
    dialer = PingDialer()
    dialer.send_ping(payload)
    received = b""
    try:
        for chunk in chunks:
            dialer.receive_data(chunk)
            received += chunk
            for pong in pongs(dialer):
                assert pong.payload == payload
        dialer.receive_eof()
        assert dialer.next_event() is NEED_DATA
    except RemoteProtocolError:
        assert received != payload
    else:
        assert received == payload
