"""Frames and envelopes of /p2pchat/1.0.0 (specs/chat.md §1, §2): vectors, limits, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.chat.core.wire import (
    MAX_FRAME_SIZE,
    NEED_DATA,
    PROTOCOL_ID,
    Envelope,
    FrameError,
    FrameReader,
    Query,
    Reason,
    Response,
    encode_envelope,
    encode_frame,
    is_query_code,
    is_response_code,
    parse_envelope,
    response_code,
)
from p2pchat.errors import DecodeError, LocalProtocolError
from p2pchat.varint import encode_uvarint

# The "Vectors" paragraph of specs/chat.md §1: envelope, frame (hex).
VECTORS: list[tuple[Envelope, str]] = [
    (Query("i", 0, {}), "13a3637269640064626f6479a064636f64656169"),
    (
        Query("mrat", 7, {"group_id": bytes(4)}),
        "24a3637269640764626f6479a16867726f75705f6964440000000064636f6465646d726174",
    ),
    (
        Response("iR", 0, True, {"identifier": "ratifier", "epoch": 3}),
        "33a4626f6bf5637269640064626f6479a26565706f6368036a6964656e74696669657268726174696669"
        "657264636f6465626952",
    ),
    (
        Response("dhtR", 300, False, {}, Reason.UNKNOWN_GROUP),
        "31a5626f6bf46372696419012c64626f6479a064636f6465646468745266726561736f6e6d756e6b6e6f"
        "776e2067726f7570",
    ),
]

# Bytes a reader must refuse, and the hint it gives (§1).
BAD_FRAMES: list[tuple[str, str]] = [
    ("818040", "frame too large"),  # prefix 1 MiB + 1
    ("ffffff", "frame too large"),  # three continuation bytes: at least 2**21
    ("8000", "non-minimal varint"),
    ("0100", "not a map"),  # the integer 0
    ("0180", "not a map"),  # an empty array
    ("03a0a0a0", "non-canonical cbor"),  # a map followed by trailing bytes
    ("03a1f600", "cbor type"),  # a null map key
    ("05bf616100ff", "malformed cbor"),  # indefinite-length map
    ("07a2616100616101", "malformed cbor"),  # duplicate key
    ("05a161611800", "non-canonical cbor"),  # 0 in two bytes
    ("06a16161f93c00", "cbor type"),  # a float
    ("05a16161c6a0", "malformed cbor"),  # a tag
    ("00", "malformed cbor"),  # empty frame
]

# Decoded frames that break §2, and the hint.
BAD_ENVELOPES: list[tuple[Any, str]] = [
    ({"code": "i", "rid": 0}, "bad envelope"),
    ({"code": "i", "rid": 0, "body": {}, "extra": 1}, "bad envelope"),
    ({"code": "i", "rid": 0, "ok": True, "body": {}}, "bad envelope"),  # a query has no "ok"
    ({"code": "iR", "rid": 0, "body": {}}, "bad envelope"),
    ({"code": "", "rid": 0, "body": {}}, "bad code"),
    ({"code": "i-x", "rid": 0, "body": {}}, "bad code"),
    ({"code": "é", "rid": 0, "body": {}}, "bad code"),
    ({"code": 5, "rid": 0, "body": {}}, "bad code"),
    ({"code": "a" * 16, "rid": 0, "body": {}}, "bad code"),  # its response would have 17
    ({"code": "R", "rid": 0, "ok": True, "body": {}}, "bad code"),
    ({"code": "iRR", "rid": 0, "ok": True, "body": {}}, "bad code"),
    ({"code": "i", "rid": 2**32, "body": {}}, "bad rid"),
    ({"code": "i", "rid": -1, "body": {}}, "bad rid"),
    ({"code": "i", "rid": True, "body": {}}, "bad rid"),
    ({"code": "i", "rid": 0, "body": []}, "bad body"),
    ({"code": "i", "rid": 0, "body": None}, "bad body"),
    ({"code": "iR", "rid": 0, "ok": 1, "body": {}}, "bad ok"),
    ({"code": "iR", "rid": 0, "ok": False, "body": {}}, "bad reason"),
    ({"code": "iR", "rid": 0, "ok": True, "body": {}, "reason": "x"}, "bad reason"),
    ({"code": "iR", "rid": 0, "ok": False, "body": {}, "reason": "é" * 129}, "bad reason"),
    ({"code": "iR", "rid": 0, "ok": False, "body": {}, "reason": b"x"}, "bad reason"),
    ([1, 2], "not a map"),
]


def read_all(reader: FrameReader) -> list[dict[str, Any]]:
    frames = []
    while (frame := reader.next_event()) is not NEED_DATA:
        frames.append(frame)
    return frames


def test_protocol_id_and_error_type() -> None:
    assert PROTOCOL_ID == "/p2pchat/1.0.0"
    assert issubclass(FrameError, DecodeError)


@pytest.mark.parametrize(("envelope", "frame_hex"), VECTORS)
def test_vector_encodes(envelope: Envelope, frame_hex: str) -> None:
    assert encode_envelope(envelope).hex() == frame_hex
    assert encode_frame(envelope.to_map()).hex() == frame_hex


@pytest.mark.parametrize(("envelope", "frame_hex"), VECTORS)
def test_vector_decodes_whole_and_byte_by_byte(envelope: Envelope, frame_hex: str) -> None:
    data = bytes.fromhex(frame_hex)
    whole = FrameReader()
    whole.receive_data(data)
    (frame,) = read_all(whole)
    assert parse_envelope(frame) == envelope
    dribble = FrameReader()
    frames = []
    for i in range(len(data)):
        assert read_all(dribble) == []
        dribble.receive_data(data[i : i + 1])
        frames += read_all(dribble)
    assert [parse_envelope(f) for f in frames] == [envelope]


def test_many_frames_in_one_chunk_then_clean_end() -> None:
    reader = FrameReader()
    reader.receive_data(b"".join(bytes.fromhex(h) for _, h in VECTORS))
    assert [parse_envelope(f) for f in read_all(reader)] == [e for e, _ in VECTORS]
    assert not reader.ended
    reader.receive_eof()
    assert reader.next_event() is NEED_DATA
    assert reader.ended


@pytest.mark.parametrize(("frame_hex", "hint"), BAD_FRAMES)
def test_bad_frame_is_refused(frame_hex: str, hint: str) -> None:
    reader = FrameReader()
    reader.receive_data(bytes.fromhex(frame_hex))
    with pytest.raises(FrameError) as info:
        reader.next_event()
    assert info.value.hint == hint
    # The reader stays failed.
    with pytest.raises(LocalProtocolError):
        reader.next_event()


def test_oversized_length_prefix_is_refused_before_the_body() -> None:
    reader = FrameReader()
    reader.receive_data(encode_uvarint(MAX_FRAME_SIZE + 1))  # and no body at all
    with pytest.raises(FrameError, match="1048577"):
        reader.next_event()
    # A prefix that may still be in range waits for more bytes.
    waiting = FrameReader()
    waiting.receive_data(b"\x80\x80")
    assert waiting.next_event() is NEED_DATA
    waiting.receive_data(b"\x80")
    with pytest.raises(FrameError):
        waiting.next_event()


def test_a_frame_of_exactly_the_maximum_is_read() -> None:
    # {"b": filler}: a1 61 62 5a <u32 length> filler, 8 bytes of overhead.
    filler = b"\0" * (MAX_FRAME_SIZE - 8)
    frame = encode_frame({"b": filler})
    prefix = encode_uvarint(MAX_FRAME_SIZE)
    assert frame.startswith(prefix)
    assert len(frame) == len(prefix) + MAX_FRAME_SIZE
    reader = FrameReader()
    reader.receive_data(frame)
    assert reader.next_event() == {"b": filler}
    with pytest.raises(LocalProtocolError) as info:
        encode_frame({"b": filler + b"\0"})
    assert info.value.hint == "frame too large"


def test_smaller_maximum() -> None:
    reader = FrameReader(max_frame_size=8)
    reader.receive_data(encode_frame({"a": 1}))  # 5 bytes: fine
    assert reader.next_event() == {"a": 1}
    reader.receive_data(encode_frame({"a": b"0123456789"}))
    with pytest.raises(FrameError, match="exceeds 8"):
        reader.next_event()


def test_end_of_stream_inside_a_frame_is_an_error() -> None:
    data = bytes.fromhex(VECTORS[0][1])
    for cut in (1, len(data) - 1):
        reader = FrameReader()
        reader.receive_data(data[:cut])
        assert reader.next_event() is NEED_DATA
        reader.receive_eof()
        with pytest.raises(FrameError) as info:
            reader.next_event()
        assert info.value.hint == "truncated frame"


def test_data_after_eof_is_our_mistake() -> None:
    reader = FrameReader()
    reader.receive_eof()
    reader.receive_eof()
    with pytest.raises(LocalProtocolError):
        reader.receive_data(b"\x00")


def test_encode_refuses_what_cbor_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_frame({"x": 1.5})
    assert info.value.hint == "not cbor"


@pytest.mark.parametrize(("value", "hint"), BAD_ENVELOPES)
def test_bad_envelope_is_refused(value: Any, hint: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_envelope(value)
    assert info.value.hint == hint


@pytest.mark.parametrize(
    ("code", "query", "response"),
    [
        ("i", True, False),
        ("mrat", True, False),
        ("Z9", True, False),
        ("a" * 15, True, False),
        ("a" * 16, False, False),
        ("iR", False, True),
        ("a" * 15 + "R", False, True),
        ("R", False, False),
        ("iRR", False, False),
        ("", False, False),
        ("a b", False, False),
        ("ı", False, False),  # not ASCII
    ],
)
def test_code_syntax(code: str, query: bool, response: bool) -> None:
    assert is_query_code(code) is query
    assert is_response_code(code) is response
    if query:
        assert response_code(code) == code + "R"
    else:
        with pytest.raises(LocalProtocolError):
            response_code(code)


def test_envelopes_check_fields_on_construction() -> None:
    with pytest.raises(LocalProtocolError):
        Query("iR", 0, {})
    with pytest.raises(LocalProtocolError):
        Query("i", 2**32, {})
    with pytest.raises(LocalProtocolError):
        Response("i", 0, True, {})
    with pytest.raises(LocalProtocolError):
        Response("iR", 0, False, {})  # no reason
    with pytest.raises(LocalProtocolError):
        Response("iR", 0, False, {}, "x" * 257)
    assert Response("iR", 0, False, {}, "x" * 256).reason == "x" * 256


def test_answer_and_refuse() -> None:
    query = Query("smsg", 9, {"group_id": b"g"})
    assert query.answer({"duplicate": True}) == Response("smsgR", 9, True, {"duplicate": True})
    refused = query.refuse(Reason.BAD_CERTIFICATE)
    assert refused == Response("smsgR", 9, False, {}, "bad certificate")
    assert refused.query_code == "smsg"
    assert refused.to_map() == {
        "code": "smsgR",
        "rid": 9,
        "ok": False,
        "body": {},
        "reason": "bad certificate",
    }
    assert type(refused.to_map()["reason"]) is str


def test_reasons_are_those_of_section_2() -> None:
    assert {str(r) for r in Reason} == {
        "unknown group",
        "not a member",
        "not allowed",
        "bad signature",
        "bad hash",
        "bad certificate",
        "stale epoch",
        "future epoch",
        "bad timestamp",
        "missing parents",
        "duplicate",
        "malformed",
        "unknown code",
        "too many queries",
        "internal error",
    }


# -- Hypothesis -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_arbitrary_bytes_raise_only_frame_errors(chunks: list[bytes], eof: bool) -> None:
    reader = FrameReader()
    try:
        for chunk in chunks:
            reader.receive_data(chunk)
            read_all(reader)
        if eof:
            reader.receive_eof()
            read_all(reader)
    except FrameError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_payload_behind_a_valid_prefix(payload: bytes) -> None:
    reader = FrameReader()
    reader.receive_data(encode_uvarint(len(payload)) + payload)
    try:
        frame = reader.next_event()
    except FrameError:
        return
    assert isinstance(frame, dict)
    try:
        envelope = parse_envelope(frame)
    except FrameError:
        return
    assert envelope.to_map() == frame


_values = st.one_of(
    st.sampled_from(["i", "iR", "mrat", "mratR", "R", "", "x" * 16, "unknown group"]),
    st.text(max_size=8),
    st.integers(min_value=-3, max_value=2**33),
    st.booleans(),
    st.none(),
    st.binary(max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
    st.lists(st.integers(0, 3), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["code", "rid", "ok", "body", "reason", "x"]), _values))
def test_arbitrary_maps_are_valid_envelopes_or_frame_errors(value: dict[str, Any]) -> None:
    try:
        envelope = parse_envelope(value)
    except FrameError:
        return
    assert envelope.to_map() == value


_query_codes = st.from_regex(r"\A[A-Za-z0-9]{0,14}[A-QS-Za-z0-9]\Z")
_bodies = st.dictionaries(
    st.text(max_size=6), st.one_of(st.integers(0, 2**64 - 1), st.binary(max_size=8)), max_size=3
)
_envelopes = st.one_of(
    st.builds(Query, _query_codes, st.integers(0, 2**32 - 1), _bodies),
    st.builds(
        lambda code, rid, body: Response(code + "R", rid, True, body),
        _query_codes,
        st.integers(0, 2**32 - 1),
        _bodies,
    ),
    st.builds(
        lambda code, rid, reason: Response(code + "R", rid, False, {}, reason),
        _query_codes,
        st.integers(0, 2**32 - 1),
        st.text(max_size=64),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_envelopes, min_size=1, max_size=5), st.data())
def test_envelopes_round_trip_through_any_chunking(envelopes: list[Envelope], data: Any) -> None:
    stream = b"".join(encode_envelope(e) for e in envelopes)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    reader = FrameReader()
    frames: list[dict[str, Any]] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        reader.receive_data(stream[start:cut])
        start = cut
        frames += read_all(reader)
    reader.receive_eof()
    frames += read_all(reader)
    assert reader.ended
    assert [parse_envelope(f) for f in frames] == envelopes
