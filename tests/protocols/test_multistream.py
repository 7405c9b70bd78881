"""multistream-select 1.0 (specs/multistream.md): codec vectors, a dialer/listener pair, errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from p2pchat.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from p2pchat.protocols.multistream import (
    LS,
    MAX_MESSAGE_SIZE,
    MAX_PROPOSALS,
    MULTISTREAM_ID,
    NA,
    NEED_DATA,
    Dialer,
    DialerEvent,
    Listener,
    NegotiationFailed,
    ProtocolAgreed,
    ProtocolsListed,
    State,
    decode_ls_response,
    decode_message,
    encode_ls_response,
    encode_message,
)

HEADER_HEX = "132f6d756c746973747265616d2f312e302e300a"

# specs/multistream.md "Message vectors": text <-> wire bytes.
MESSAGE_VECTORS = [
    (MULTISTREAM_ID, HEADER_HEX),
    (NA, "036e610a"),  # libp2p/specs connections/README.md
    (LS, "036c730a"),  # multistream-select README
    ("/noise", "072f6e6f6973650a"),
    ("/yamux/1.0.0", "0d2f79616d75782f312e302e300a"),
    ("/ipfs/ping/1.0.0", "112f697066732f70696e672f312e302e300a"),
    ("/p2pchat/1.0.0", "0f2f703270636861742f312e302e300a"),
    ("/é", "042fc3a90a"),  # the length counts UTF-8 bytes
    ("/" + "a" * 125, "7f2f" + "61" * 125 + "0a"),  # 127 bytes, longest 1-byte prefix
    ("/" + "a" * 126, "80012f" + "61" * 126 + "0a"),  # 128 bytes, shortest 2-byte prefix
    ("/" + "a" * 1022, "80082f" + "61" * 1022 + "0a"),  # 1024 bytes, the maximum
]

# specs/multistream.md "Malformed messages": wire bytes -> DecodeError hint.
BAD_MESSAGES = [
    ("", "truncated message"),
    ("036e61", "truncated message"),
    ("80", "truncated message"),
    ("00", "missing newline"),
    ("036e6161", "missing newline"),
    ("81086161", "message too long"),  # length 1025
    ("ffff", "message too long"),  # a 3+ byte length is over 1024
    ("8000", "non-minimal varint"),
    ("03fffe0a", "invalid utf-8"),
    ("04610a620a", "newline in message"),
    ("036e610a00", "trailing bytes"),
]

LS_VECTORS = [
    ((), "010a"),
    (("/noise", "/yamux/1.0.0"), "17072f6e6f6973650a0d2f79616d75782f312e302e300a0a"),
    (("/ipfs/kad/1.0.0",), "12102f697066732f6b61642f312e302e300a0a"),
]

BAD_LS = [
    ("020a0a", "malformed ls answer"),  # entry of length 10 runs past the end
    ("04006e610a", "malformed ls answer"),  # zero-length entry
    ("02800a", "malformed ls answer"),  # truncated entry length
    ("05026e610a0a", "malformed ls answer"),  # entry "na" is not a protocol id
    ("05032f61610a", "malformed ls answer"),  # entry without its newline
    ("0180", "missing newline"),
]


@pytest.mark.parametrize(("text", "hexed"), MESSAGE_VECTORS)
def test_message_vectors(text: str, hexed: str) -> None:
    wire = bytes.fromhex(hexed)
    assert encode_message(text) == wire
    assert decode_message(wire) == text


@pytest.mark.parametrize(("hexed", "hint"), BAD_MESSAGES)
def test_malformed_messages(hexed: str, hint: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(bytes.fromhex(hexed))
    assert info.value.hint == hint


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("a\nb", "newline in message"),
        ("/\ud800", "invalid utf-8"),
        ("/" + "a" * 1023, "message too long"),
    ],
)
def test_encode_message_refuses(text: str, hint: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_message(text)
    assert info.value.hint == hint


@pytest.mark.parametrize(("protocols", "hexed"), LS_VECTORS)
def test_ls_vectors(protocols: tuple[str, ...], hexed: str) -> None:
    wire = bytes.fromhex(hexed)
    assert encode_ls_response(protocols) == wire
    assert decode_ls_response(wire) == protocols


@pytest.mark.parametrize(("hexed", "hint"), BAD_LS)
def test_malformed_ls_answers(hexed: str, hint: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_ls_response(bytes.fromhex(hexed))
    assert info.value.hint == hint


def test_ls_answer_size_is_bounded() -> None:
    many = [f"/p/{i:04}" for i in range(114)]  # 9 bytes per entry: 07 "/p/nnnn" 0a
    with pytest.raises(LocalProtocolError, match="exceeds 1024"):
        encode_ls_response(many)
    assert len(encode_ls_response(many[:113])) == 2 + 113 * 9 + 1  # body + newline = 1018


@given(st.text().filter(lambda t: "\n" not in t))
@settings(max_examples=300)
def test_message_round_trip(text: str) -> None:
    try:
        wire = encode_message(text)
    except LocalProtocolError:
        return  # lone surrogate or too long: refused before it reaches the wire
    assert decode_message(wire) == text
    assert len(wire) <= MAX_MESSAGE_SIZE + 2


@given(st.binary(max_size=64))
@settings(max_examples=300)
def test_decoders_raise_only_decode_error(data: bytes) -> None:
    for decode in (decode_message, decode_ls_response):
        with contextlib.suppress(DecodeError):
            decode(data)


# --------------------------------------------------------------------------------------------------
# A dialer/listener pair


def _pieces(data: bytes, size: int | None) -> Iterator[bytes]:
    if size is None:
        yield data
        return
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _drain(conn: Dialer | Listener, events: list[DialerEvent]) -> None:
    while conn.state is State.NEGOTIATING:
        event = conn.next_event()
        if event is NEED_DATA:
            return
        events.append(event)


def negotiate(
    dialer: Dialer, listener: Listener, chunk: int | None = None
) -> tuple[list[DialerEvent], list[DialerEvent], list[bytes]]:
    """Shuttle bytes until neither side has anything to say; ``chunk`` splits every write.

    Returns the dialer's events, the listener's events, and the writes each side put on the wire.
    """
    dialer_events: list[DialerEvent] = []
    listener_events: list[DialerEvent] = []
    writes: list[bytes] = []
    for _ in range(100):
        moved = False
        for src, dst, events in (
            (dialer, listener, listener_events),
            (listener, dialer, dialer_events),
        ):
            data = src.data_to_send()
            if not data:
                continue
            writes.append(data)
            moved = True
            for piece in _pieces(data, chunk):
                assert dst.state is State.NEGOTIATING, "bytes after the end of negotiation"
                dst.receive_data(piece)
                _drain(dst, events)
        if not moved:
            return dialer_events, listener_events, writes
    raise AssertionError("negotiation did not settle")


CHUNKS = [None, 1, 3]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_agree_on_first_proposal(chunk: int | None) -> None:
    dialer = Dialer(["/noise", "/tls/1.0.0"])
    listener = Listener(["/tls/1.0.0", "/noise"])
    d_events, l_events, writes = negotiate(dialer, listener, chunk)
    assert d_events == [ProtocolAgreed("/noise")]
    assert l_events == [ProtocolAgreed("/noise")]
    assert dialer.state is listener.state is State.AGREED
    assert dialer.agreed_protocol == listener.agreed_protocol == "/noise"
    assert dialer.trailing_data() == listener.trailing_data() == b""
    # one write each way: header + proposal, then header + echo
    assert writes == [bytes.fromhex(HEADER_HEX + "072f6e6f6973650a")] * 2


@pytest.mark.parametrize("chunk", CHUNKS)
def test_agree_on_second_after_na(chunk: int | None) -> None:
    dialer = Dialer(["/tls/1.0.0", "/noise"])
    listener = Listener(["/noise"])
    d_events, l_events, writes = negotiate(dialer, listener, chunk)
    assert d_events == l_events == [ProtocolAgreed("/noise")]
    assert listener.rejected == ("/tls/1.0.0",)
    assert writes == [
        bytes.fromhex(HEADER_HEX + "0b2f746c732f312e302e300a"),
        bytes.fromhex(HEADER_HEX + "036e610a"),
        encode_message("/noise"),
        encode_message("/noise"),
    ]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_fail_when_nothing_matches(chunk: int | None) -> None:
    dialer = Dialer(["/a", "/b", "/c"])
    listener = Listener(["/d"])
    d_events, l_events, _ = negotiate(dialer, listener, chunk)
    assert d_events == [NegotiationFailed(("/a", "/b", "/c"))]
    assert l_events == []
    assert dialer.state is State.FAILED
    assert listener.state is State.NEGOTIATING  # still waiting; the caller closes the stream
    assert listener.rejected == ("/a", "/b", "/c")
    assert dialer.agreed_protocol is None


@pytest.mark.parametrize("chunk", CHUNKS)
def test_ls_lists_then_agrees(chunk: int | None) -> None:
    dialer = Dialer(["/yamux/1.0.0"], request_list=True)
    listener = Listener(["/noise", "/yamux/1.0.0", "/noise"])
    d_events, l_events, writes = negotiate(dialer, listener, chunk)
    assert d_events == [
        ProtocolsListed(("/noise", "/yamux/1.0.0")),
        ProtocolAgreed("/yamux/1.0.0"),
    ]
    assert l_events == [ProtocolAgreed("/yamux/1.0.0")]
    assert writes[0] == encode_message(MULTISTREAM_ID) + encode_message(LS) + encode_message(
        "/yamux/1.0.0"
    )
    assert writes[1] == (
        encode_message(MULTISTREAM_ID)
        + encode_ls_response(["/noise", "/yamux/1.0.0"])
        + encode_message("/yamux/1.0.0")
    )


def test_ls_answered_with_na_when_the_list_does_not_fit() -> None:
    listener = Listener([f"/p/{i:04}" for i in range(200)])
    dialer = Dialer(["/p/0199"], request_list=True)
    d_events, _, _ = negotiate(dialer, listener)
    assert d_events == [ProtocolsListed(None), ProtocolAgreed("/p/0199")]


def test_dialer_accepts_na_to_ls() -> None:
    # go-multistream no longer implements ls and answers na
    dialer = Dialer(["/noise"], request_list=True)
    dialer.receive_data(encode_message(MULTISTREAM_ID) + encode_message(NA))
    assert dialer.next_event() == ProtocolsListed(None)
    assert dialer.next_event() is NEED_DATA
    dialer.receive_data(encode_message("/noise"))
    assert dialer.next_event() == ProtocolAgreed("/noise")


def test_listener_keeps_pipelined_data_after_agreement() -> None:
    noise_msg1 = b"\x00\x20" + bytes(range(32))
    listener = Listener(["/noise"])
    listener.receive_data(Dialer(["/noise"]).data_to_send() + noise_msg1)
    assert listener.next_event() == ProtocolAgreed("/noise")
    assert listener.trailing_data() == noise_msg1
    assert listener.data_to_send() == encode_message(MULTISTREAM_ID) + encode_message("/noise")


def test_dialer_keeps_data_after_echo() -> None:
    dialer = Dialer(["/ipfs/ping/1.0.0"])
    dialer.receive_data(
        encode_message(MULTISTREAM_ID) + encode_message("/ipfs/ping/1.0.0") + b"\x01" * 32
    )
    assert dialer.next_event() == ProtocolAgreed("/ipfs/ping/1.0.0")
    assert dialer.trailing_data() == b"\x01" * 32


def test_byte_at_a_time_before_draining() -> None:
    # receive_data only buffers: feed every byte first, then drain.
    listener = Listener(["/noise"])
    for byte in Dialer(["/tls/1.0.0", "/noise"]).data_to_send() + encode_message("/noise") + b"!":
        listener.receive_data(bytes([byte]))
    assert listener.next_event() == ProtocolAgreed("/noise")
    assert listener.trailing_data() == b"!"


def test_listener_waits_for_dialer_header_before_sending_its_own() -> None:
    listener = Listener(["/noise"])
    assert listener.data_to_send() == b""
    listener.receive_data(encode_message(MULTISTREAM_ID)[:5])
    assert listener.next_event() is NEED_DATA
    assert listener.data_to_send() == b""
    listener.receive_data(encode_message(MULTISTREAM_ID)[5:])
    assert listener.next_event() is NEED_DATA
    assert listener.data_to_send() == encode_message(MULTISTREAM_ID)


# specs/multistream.md "Transcripts": (dialer protocols, request_list, supported, writes in order).
TRANSCRIPTS = [
    (
        ["/noise"],
        False,
        ["/noise"],
        [
            "132f6d756c746973747265616d2f312e302e300a072f6e6f6973650a",
            "132f6d756c746973747265616d2f312e302e300a072f6e6f6973650a",
        ],
    ),
    (
        ["/tls/1.0.0", "/noise"],
        False,
        ["/noise"],
        [
            "132f6d756c746973747265616d2f312e302e300a0b2f746c732f312e302e300a",
            "132f6d756c746973747265616d2f312e302e300a036e610a",
            "072f6e6f6973650a",
            "072f6e6f6973650a",
        ],
    ),
    (
        ["/yamux/1.0.0"],
        True,
        ["/noise", "/yamux/1.0.0"],
        [
            "132f6d756c746973747265616d2f312e302e300a036c730a0d2f79616d75782f312e302e300a",
            "132f6d756c746973747265616d2f312e302e300a17072f6e6f6973650a0d2f79616d75782f312e302e30"
            "0a0a0d2f79616d75782f312e302e300a",
        ],
    ),
]


@pytest.mark.parametrize(("protocols", "request_list", "supported", "writes"), TRANSCRIPTS)
def test_transcripts(
    protocols: list[str], request_list: bool, supported: list[str], writes: list[str]
) -> None:
    dialer = Dialer(protocols, request_list=request_list)
    listener = Listener(supported)
    d_events, _, wire = negotiate(dialer, listener)
    assert [w.hex() for w in wire] == writes
    assert isinstance(d_events[-1], ProtocolAgreed)


# --------------------------------------------------------------------------------------------------
# The proposal bound


def test_listener_answers_at_most_max_proposals() -> None:
    listener = Listener(["/ok"])
    listener.receive_data(encode_message(MULTISTREAM_ID))
    for i in range(MAX_PROPOSALS):
        listener.receive_data(encode_message(f"/no/{i}"))
    assert listener.next_event() is NEED_DATA
    assert len(listener.rejected) == MAX_PROPOSALS
    listener.receive_data(encode_message("/ok"))
    with pytest.raises(RemoteProtocolError) as info:
        listener.next_event()
    assert info.value.hint == "too many proposals"
    assert listener.state is State.ERROR


def test_last_allowed_proposal_can_still_agree() -> None:
    listener = Listener(["/ok"], max_proposals=3)
    listener.receive_data(
        encode_message(MULTISTREAM_ID) + encode_message(LS) + encode_message("/no")
    )
    assert listener.next_event() is NEED_DATA
    listener.receive_data(encode_message("/ok"))
    assert listener.next_event() == ProtocolAgreed("/ok")


# --------------------------------------------------------------------------------------------------
# Remote errors


@pytest.mark.parametrize(
    ("wire", "hint"),
    [
        (encode_message("/multistream/2.0.0"), "wrong header"),
        (encode_message("/noise"), "wrong header"),
        (b"\xff\xff\xff", "message too long"),
        (bytes.fromhex("03fffe0a"), "invalid utf-8"),
        (bytes.fromhex("02610b"), "missing newline"),
    ],
)
def test_bad_first_message(wire: bytes, hint: str) -> None:
    for conn in (Listener(["/noise"]), Dialer(["/noise"])):
        conn.receive_data(wire)
        with pytest.raises(RemoteProtocolError) as info:
            conn.next_event()
        assert info.value.hint == hint
        assert conn.state is State.ERROR


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        (NA, "invalid protocol id"),
        (MULTISTREAM_ID, "invalid protocol id"),
        ("noise", "invalid protocol id"),
        ("", "invalid protocol id"),
    ],
)
def test_listener_refuses_non_protocol(message: str, hint: str) -> None:
    listener = Listener(["/noise"])
    listener.receive_data(encode_message(MULTISTREAM_ID) + encode_message(message))
    with pytest.raises(RemoteProtocolError) as info:
        listener.next_event()
    assert info.value.hint == hint


def test_listener_refuses_oversized_proposal() -> None:
    listener = Listener(["/noise"])
    listener.receive_data(encode_message(MULTISTREAM_ID) + bytes.fromhex("8108"))
    with pytest.raises(DecodeError) as info:
        listener.next_event()
    assert info.value.hint == "message too long"


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (encode_message("/tls/1.0.0"), "unexpected answer"),
        (encode_message(LS), "unexpected answer"),
        (encode_message(MULTISTREAM_ID), "unexpected answer"),
        (bytes.fromhex("02c30a"), "invalid utf-8"),
    ],
)
def test_dialer_refuses_unexpected_answer(answer: bytes, hint: str) -> None:
    dialer = Dialer(["/noise"])
    dialer.receive_data(encode_message(MULTISTREAM_ID) + answer)
    with pytest.raises(RemoteProtocolError) as info:
        dialer.next_event()
    assert info.value.hint == hint
    assert dialer.state is State.ERROR


def test_dialer_refuses_malformed_ls_answer() -> None:
    dialer = Dialer(["/noise"], request_list=True)
    dialer.receive_data(encode_message(MULTISTREAM_ID) + bytes.fromhex("05026e610a0a"))
    with pytest.raises(DecodeError) as info:
        dialer.next_event()
    assert info.value.hint == "malformed ls answer"


# --------------------------------------------------------------------------------------------------
# Local misuse and terminal states


@pytest.mark.parametrize(
    "protocols",
    [[], ["noise"], ["/noise\n"], [MULTISTREAM_ID], ["/" + "a" * 1023], ["/\udcff"], "/noise"],
)
def test_dialer_refuses_bad_protocol_lists(protocols: list[str]) -> None:
    with pytest.raises(LocalProtocolError):
        Dialer(protocols)


@pytest.mark.parametrize("supported", [["noise"], [NA], [LS], [MULTISTREAM_ID], "/noise"])
def test_listener_refuses_bad_protocols(supported: list[str]) -> None:
    with pytest.raises(LocalProtocolError):
        Listener(supported)


@pytest.mark.parametrize("limit", [0, -1, True])
def test_listener_refuses_bad_limit(limit: int) -> None:
    with pytest.raises(LocalProtocolError):
        Listener(["/noise"], max_proposals=limit)


def test_listener_may_support_nothing() -> None:
    dialer, listener = Dialer(["/noise"], request_list=True), Listener([])
    d_events, _, _ = negotiate(dialer, listener)
    assert d_events == [ProtocolsListed(()), NegotiationFailed(("/noise",))]


def test_no_trailing_data_before_agreement() -> None:
    dialer = Dialer(["/noise"])
    with pytest.raises(LocalProtocolError):
        dialer.trailing_data()


def test_calls_after_agreement_are_local_errors() -> None:
    dialer, listener = Dialer(["/noise"]), Listener(["/noise"])
    negotiate(dialer, listener)
    for conn in (dialer, listener):
        with pytest.raises(LocalProtocolError):
            conn.receive_data(b"x")
        with pytest.raises(LocalProtocolError):
            conn.next_event()
        assert conn.data_to_send() == b""
        assert conn.state is State.AGREED


def test_calls_after_failure_are_local_errors() -> None:
    dialer = Dialer(["/noise"])
    dialer.receive_data(encode_message(MULTISTREAM_ID) + encode_message(NA))
    assert dialer.next_event() == NegotiationFailed(("/noise",))
    with pytest.raises(LocalProtocolError):
        dialer.next_event()
    with pytest.raises(LocalProtocolError):
        dialer.receive_data(b"x")


def test_calls_after_error_are_local_errors() -> None:
    listener = Listener(["/noise"])
    listener.receive_data(b"\x00")
    with pytest.raises(DecodeError):
        listener.next_event()
    with pytest.raises(LocalProtocolError, match="ERROR"):
        listener.next_event()
    with pytest.raises(LocalProtocolError):
        listener.receive_data(b"x")


def test_events_validate_their_fields() -> None:
    with pytest.raises(TypeError):
        ProtocolAgreed(b"/noise")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        NegotiationFailed(["/noise"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ProtocolsListed((1,))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Hypothesis: arbitrary bytes, and random message sequences


def _over(conn: Dialer | Listener) -> bool:
    return conn.state is not State.NEGOTIATING


def _feed_all(conn: Dialer | Listener, chunks: list[bytes]) -> None:
    events: list[DialerEvent] = []
    for piece in chunks:
        if conn.state is not State.NEGOTIATING:
            return
        conn.receive_data(piece)
        _drain(conn, events)


@given(st.lists(st.binary(max_size=40), max_size=8), st.booleans())
@settings(max_examples=300)
def test_arbitrary_bytes_raise_only_remote_errors(chunks: list[bytes], as_listener: bool) -> None:
    conn: Dialer | Listener = (
        Listener(["/noise"]) if as_listener else Dialer(["/noise", "/tls/1.0.0"], request_list=True)
    )
    try:
        _feed_all(conn, chunks)
    except RemoteProtocolError:
        assert conn.state is State.ERROR


@given(st.lists(st.binary(max_size=40), max_size=8), st.booleans())
@settings(max_examples=300)
def test_arbitrary_bytes_after_valid_header(chunks: list[bytes], as_listener: bool) -> None:
    conn: Dialer | Listener = (
        Listener(["/noise"]) if as_listener else Dialer(["/noise", "/tls/1.0.0"], request_list=True)
    )
    try:
        _feed_all(conn, [encode_message(MULTISTREAM_ID), *chunks])
    except RemoteProtocolError:
        assert conn.state is State.ERROR


SUPPORTED = ("/noise", "/yamux/1.0.0")
UNSUPPORTED = ("/tls/1.0.0", "/mplex/6.7.0", "/é")
MALFORMED = (
    bytes.fromhex("00"),  # no newline
    bytes.fromhex("036e6161"),  # no newline
    bytes.fromhex("8108"),  # too long
    bytes.fromhex("03fffe0a"),  # invalid UTF-8
    bytes.fromhex("04610a620a"),  # newline inside
)


class ListenerMachine(RuleBasedStateMachine):
    """Random sequences of valid and invalid dialer messages against a model of the listener."""

    LIMIT = 4

    def __init__(self) -> None:
        super().__init__()
        self.listener = Listener(SUPPORTED, max_proposals=self.LIMIT)
        self.header_seen = False
        self.requests = 0
        self.expected_state = State.NEGOTIATING

    def _send(self, wire: bytes, *, split: int) -> ProtocolAgreed | None:
        """Feed ``wire`` in two pieces; return the event or None; errors propagate."""
        self.listener.receive_data(wire[:split])
        first = self.listener.next_event()
        assert first is NEED_DATA or split >= len(wire)
        if split < len(wire):
            self.listener.receive_data(wire[split:])
        event = first if split >= len(wire) else self.listener.next_event()
        return None if event is NEED_DATA else event

    def _expect_error(self, wire: bytes, split: int, error: type[RemoteProtocolError]) -> None:
        try:
            self._send(wire, split=split)
        except error:
            self.expected_state = State.ERROR
        else:
            raise AssertionError("the listener accepted a message it must refuse")

    def _request(self, text: str, split: int) -> None:
        wire = encode_message(text)
        if not self.header_seen:
            self._expect_error(wire, split, RemoteProtocolError)
            return
        self.requests += 1
        invalid = text in (NA, MULTISTREAM_ID) or not (text == LS or text.startswith("/"))
        if self.requests > self.LIMIT or invalid:
            self._expect_error(wire, split, RemoteProtocolError)
            return
        event = self._send(wire, split=split)
        out = self.listener.data_to_send()
        if text == LS:
            assert event is None
            assert out == encode_ls_response(SUPPORTED)
        elif text in SUPPORTED:
            assert event == ProtocolAgreed(text)
            assert out == wire
            self.expected_state = State.AGREED
        else:
            assert event is None
            assert out == encode_message(NA)
            assert self.listener.rejected[-1] == text

    @precondition(lambda self: self.expected_state is State.NEGOTIATING)
    @rule(split=st.integers(0, 30))
    def header(self, split: int) -> None:
        if self.header_seen:
            self._request(MULTISTREAM_ID, split)
            return
        assert self._send(encode_message(MULTISTREAM_ID), split=split) is None
        assert self.listener.data_to_send() == encode_message(MULTISTREAM_ID)
        self.header_seen = True

    @precondition(lambda self: self.expected_state is State.NEGOTIATING)
    @rule(
        text=st.sampled_from((*SUPPORTED, *UNSUPPORTED, LS, NA, "noise", "")),
        split=st.integers(0, 20),
    )
    def request(self, text: str, split: int) -> None:
        self._request(text, split)

    @precondition(lambda self: self.expected_state is State.NEGOTIATING)
    @rule(wire=st.sampled_from(MALFORMED), split=st.integers(0, 5))
    def malformed(self, wire: bytes, split: int) -> None:
        self._expect_error(wire, split, DecodeError)

    @precondition(lambda self: self.expected_state is not State.NEGOTIATING)
    @rule()
    def after_the_end(self) -> None:
        with pytest.raises(LocalProtocolError):
            self.listener.receive_data(encode_message("/noise"))
        with pytest.raises(LocalProtocolError):
            self.listener.next_event()

    @invariant()
    def state_matches_model(self) -> None:
        assert self.listener.state is self.expected_state
        assert len(self.listener.rejected) <= self.LIMIT


ListenerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=12)
TestListenerMachine = ListenerMachine.TestCase

ANSWERS = st.sampled_from(["header", "na", "echo", "other", "ls", "garbage"])


@given(st.lists(ANSWERS, max_size=10), st.booleans())
@settings(max_examples=300)
def test_dialer_against_random_answers(answers: list[str], request_list: bool) -> None:
    """Random listener answers against a model of the dialer."""
    protocols = ("/a", "/b", "/c")
    dialer = Dialer(protocols, request_list=request_list)
    sent = dialer.data_to_send()
    expected_sent = encode_message(MULTISTREAM_ID)
    expected_sent += encode_message(LS) if request_list else b""
    assert sent == expected_sent + encode_message("/a")
    header_seen = False
    pending = ([LS] if request_list else []) + ["/a"]
    index = 0
    for answer in answers:
        if _over(dialer):
            break
        wire = {
            "header": encode_message(MULTISTREAM_ID),
            "na": encode_message(NA),
            "echo": encode_message(protocols[index]),
            "other": encode_message("/z"),
            "ls": encode_ls_response(["/b"]),
            "garbage": b"\x00",
        }[answer]
        dialer.receive_data(wire)
        expect_ok = (answer == "header") if not header_seen else answer in ("na", "echo", "ls")
        if header_seen and pending[0] == LS:
            expect_ok = answer in ("na", "ls")
        elif header_seen and answer == "ls":
            expect_ok = False
        if not expect_ok:
            with pytest.raises(RemoteProtocolError):
                dialer.next_event()
            assert dialer.state is State.ERROR
            break
        event = dialer.next_event()
        if not header_seen:
            header_seen = True
            assert event is NEED_DATA
            continue
        head = pending.pop(0)
        if head == LS:
            assert event == ProtocolsListed(("/b",) if answer == "ls" else None)
        elif answer == "echo":
            assert event == ProtocolAgreed(head)
            assert dialer.state is State.AGREED
        elif index == len(protocols) - 1:
            assert event == NegotiationFailed(protocols)
            assert dialer.state is State.FAILED
        else:
            assert event is NEED_DATA
            index += 1
            pending.append(protocols[index])
            assert dialer.data_to_send() == encode_message(protocols[index])
