"""identify and identify/push (specs/identify.md): vectors, round trips, limits, reader, merge."""

from __future__ import annotations

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import DecodeError, LocalProtocolError
from p2pchat.identity import KeyPair, KeyType, PublicKey
from p2pchat.multiaddr import Multiaddr
from p2pchat.protobuf import encode_bytes_field, encode_varint_field
from p2pchat.protocols.identify import (
    MAX_MESSAGE_SIZE,
    MAX_MESSAGES,
    MAX_RECEIVE_SIZE,
    NEED_DATA,
    PROTOCOL_ID,
    PUSH_PROTOCOL_ID,
    IdentifyInfo,
    IdentifyReader,
    decode_identify,
    encode_identify,
    merge,
)
from p2pchat.varint import decode_uvarint, encode_uvarint

KEY_HEX = "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
KEY = PublicKey.from_protobuf(bytes.fromhex(KEY_HEX))
LOCAL = Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001")
LOCAL_HEX = "047f000001060fa1"

FULL = IdentifyInfo(
    protocol_version="ipfs/0.1.0",
    agent_version="p2pchat/0.1.0",
    public_key=KEY,
    listen_addrs=(LOCAL, Multiaddr.from_string("/ip6/::1/udp/4001/quic-v1")),
    observed_addr=Multiaddr.from_string("/ip4/192.0.2.1/tcp/54321"),
    protocols=("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"),
)
FULL_HEX = (
    "9001"
    "0a24" + KEY_HEX + "1208" + LOCAL_HEX + "1217290000000000000000000000000000000191020fa1cd03"
    "1a0e2f697066732f69642f312e302e30"
    "1a102f697066732f70696e672f312e302e30"
    "220804c000020106d431"
    "2a0a697066732f302e312e30"
    "320d703270636861742f302e312e30"
)

# specs/identify.md "Round trip": frame hex <-> IdentifyInfo.
ROUND_TRIP = [
    pytest.param("00", IdentifyInfo(), id="empty"),
    pytest.param(FULL_HEX, FULL, id="full"),
    pytest.param("0a1208" + LOCAL_HEX, IdentifyInfo(listen_addrs=(LOCAL,)), id="push-one-addr"),
    pytest.param("054203010203", IdentifyInfo(signed_peer_record=b"\x01\x02\x03"), id="record"),
    pytest.param("024200", IdentifyInfo(signed_peer_record=b""), id="record-empty"),
]

# rust-libp2p protocols/identify/src/protocol.rs, test `protobuf_roundtrip`: go-libp2p's
# identify.pb.go raw descriptor read as an Identify message (fields 1, 2, 4 and 8 are present).
GO_DESCRIPTOR = bytes.fromhex(
    "0a277032702f70726f746f636f6c2f6964656e746966792f70622f6964656e746966792e70726f746f120b69"
    "64656e746966792e70622286020a084964656e7469667912280a0f70726f746f636f6c56657273696f6e1805"
    "20012809520f70726f746f636f6c56657273696f6e12220a0c6167656e7456657273696f6e18062001280952"
    "0c6167656e7456657273696f6e121c0a097075626c69634b657918012001280c52097075626c69634b657912"
    "200a0b6c697374656e416464727318022003280c520b6c697374656e416464727312220a0c6f627365727665"
    "644164647218042001280c520c6f6273657276656441646472121c0a0970726f746f636f6c73180320032809"
    "520970726f746f636f6c73122a0a107369676e6564506565725265636f726418082001280c52107369676e65"
    "64506565725265636f726442365a346769746875622e636f6d2f6c69627032702f676f2d6c69627032702f70"
    "32702f70726f746f636f6c2f6964656e746966792f7062"
)

# specs/identify.md "Decode only": body hex -> IdentifyInfo.
DECODE_ONLY = [
    pytest.param(
        # field 7 varint, field 9 bytes, field 100 fixed32, field 101 fixed64, agentVersion
        "3801" + "4a01ab" + "a50601020304" + "a9060102030405060708" + "32017a",
        IdentifyInfo(agent_version="z"),
        id="unknown-fields-skipped",
    ),
    pytest.param("320161320162", IdentifyInfo(agent_version="b"), id="last-singular-wins"),
    pytest.param(
        "1208" + LOCAL_HEX + "1208ffffffffffffffff"
        "120d040102030491020fa1cd03d103"
        "1a0d697066732f6e6f2d736c617368"
        "2208ffffffffffffffff",
        IdentifyInfo(listen_addrs=(LOCAL,)),
        id="bad-addresses-skipped",
    ),
    pytest.param(
        GO_DESCRIPTOR[41:].hex(),
        IdentifyInfo(signed_peer_record=b"Z4github.com/libp2p/go-libp2p/p2p/protocol/identify/pb"),
        id="go-descriptor-minus-field-1",
    ),
]

# specs/identify.md "Malformed bodies": body hex -> DecodeError hint.
BAD_BODIES = [
    ("0a", "truncated varint"),
    ("0a05010203", "truncated protobuf"),
    ("0000", "bad protobuf field"),
    ("0b", "bad protobuf"),
    ("2805", "bad protobuf field type"),
    ("3201ff", "bad identify string"),
    ("1a01ff", "bad identify string"),
    ("0a0408011200", "bad identify public key"),
    (GO_DESCRIPTOR.hex(), "bad identify public key"),
    ("42" + encode_uvarint(8190).hex() + "00" * 8190, "identify message too large"),  # 8193
]


def split_frame(frame: bytes) -> bytes:
    length, offset = decode_uvarint(frame)
    assert len(frame) - offset == length
    return frame[offset:]


def read_stream(*chunks: bytes, **limits: int) -> IdentifyInfo:
    reader = IdentifyReader(**limits)
    for chunk in chunks:
        reader.receive_data(chunk)
        assert reader.next_event() is NEED_DATA
    reader.receive_eof()
    info = reader.next_event()
    assert isinstance(info, IdentifyInfo)
    return info


def test_protocol_ids_and_limits() -> None:
    assert PROTOCOL_ID == "/ipfs/id/1.0.0"
    assert PUSH_PROTOCOL_ID == "/ipfs/id/push/1.0.0"
    assert (MAX_MESSAGE_SIZE, MAX_RECEIVE_SIZE, MAX_MESSAGES) == (4096, 8192, 10)


# --- codec vectors -------------------------------------------------------------------------------


@pytest.mark.parametrize(("frame_hex", "info"), ROUND_TRIP)
def test_encode_vectors(frame_hex: str, info: IdentifyInfo) -> None:
    assert encode_identify(info).hex() == frame_hex


@pytest.mark.parametrize(("frame_hex", "info"), ROUND_TRIP)
def test_decode_vectors(frame_hex: str, info: IdentifyInfo) -> None:
    assert decode_identify(split_frame(bytes.fromhex(frame_hex))) == info


@pytest.mark.parametrize(("body_hex", "info"), DECODE_ONLY)
def test_decode_only_vectors(body_hex: str, info: IdentifyInfo) -> None:
    assert decode_identify(bytes.fromhex(body_hex)) == info


@pytest.mark.parametrize(("body_hex", "hint"), BAD_BODIES)
def test_malformed_bodies(body_hex: str, hint: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_identify(bytes.fromhex(body_hex))
    assert info.value.hint == hint


def test_full_vector_body_is_144_bytes() -> None:
    assert len(split_frame(bytes.fromhex(FULL_HEX))) == 144


def test_fields_of_any_order_decode_the_same() -> None:
    body = split_frame(bytes.fromhex(FULL_HEX))
    # Reverse the field order: protobuf readers accept fields in any order.
    fields = []
    pos = 0
    while pos < len(body):
        start = pos
        pos += 1
        length, pos = decode_uvarint(body, pos)
        pos += length
        fields.append(body[start:pos])
    assert decode_identify(b"".join(reversed(fields))) == attrs.evolve(
        FULL, listen_addrs=tuple(reversed(FULL.listen_addrs)), protocols=FULL.protocols[::-1]
    )


def test_decode_accepts_memoryview_and_bytearray() -> None:
    body = split_frame(bytes.fromhex(FULL_HEX))
    assert decode_identify(memoryview(body)) == FULL
    assert decode_identify(bytearray(body)) == FULL


def other_keys() -> list[PublicKey]:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    ecdsa_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    secp_key = ec.generate_private_key(ec.SECP256K1()).public_key()
    return [
        PublicKey(KeyType.RSA, rsa_key.public_bytes(*spki)),
        PublicKey(KeyType.ECDSA, ecdsa_key.public_bytes(*spki)),
        PublicKey(
            KeyType.Secp256k1,
            secp_key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            ),
        ),
        KeyPair.generate().public_key,
    ]


@pytest.mark.parametrize("key", other_keys(), ids=lambda key: key.key_type.name)
def test_every_key_type_travels(key: PublicKey) -> None:
    info = IdentifyInfo(public_key=key)
    assert decode_identify(split_frame(encode_identify(info))).public_key == key


@given(st.sampled_from(list(KeyType)), st.binary(max_size=80))
@settings(max_examples=200)
def test_random_key_material_raises_only_decode_error(key_type: KeyType, data: bytes) -> None:
    key = encode_varint_field(1, int(key_type)) + encode_bytes_field(2, data)
    hint = None
    try:
        info = decode_identify(encode_bytes_field(1, key))
    except DecodeError as exc:
        hint = exc.hint
    else:
        assert info.public_key == PublicKey(key_type, data)
    assert hint in (None, "bad identify public key")


# --- size limits ---------------------------------------------------------------------------------


def record_of_body_size(size: int) -> IdentifyInfo:
    """An info whose body is exactly ``size`` bytes (one signedPeerRecord field, 2-byte length)."""
    info = IdentifyInfo(signed_peer_record=b"\xaa" * (size - 3))
    assert len(encode_bytes_field(8, b"\xaa" * (size - 3))) == size
    return info


def test_encode_limit_is_4096() -> None:
    frame = encode_identify(record_of_body_size(MAX_MESSAGE_SIZE))
    assert len(split_frame(frame)) == MAX_MESSAGE_SIZE
    with pytest.raises(LocalProtocolError) as info:
        encode_identify(record_of_body_size(MAX_MESSAGE_SIZE + 1))
    assert info.value.hint == "identify message too large"


def test_encode_limit_can_be_changed() -> None:
    big = record_of_body_size(MAX_MESSAGE_SIZE + 1)
    assert len(split_frame(encode_identify(big, max_size=MAX_RECEIVE_SIZE))) == MAX_MESSAGE_SIZE + 1
    with pytest.raises(LocalProtocolError):
        encode_identify(IdentifyInfo(agent_version="abcd"), max_size=5)


def test_decode_limit_is_8192() -> None:
    body = split_frame(encode_identify(record_of_body_size(MAX_RECEIVE_SIZE), max_size=10**6))
    assert len(body) == MAX_RECEIVE_SIZE
    assert decode_identify(body).signed_peer_record == b"\xaa" * (MAX_RECEIVE_SIZE - 3)
    with pytest.raises(DecodeError, match="exceeds 4096"):
        decode_identify(body, max_size=MAX_MESSAGE_SIZE)
    with pytest.raises(DecodeError) as info:
        decode_identify(body + b"\x38\x01")
    assert info.value.hint == "identify message too large"


def test_reader_accepts_a_frame_of_the_maximum_size() -> None:
    frame = encode_identify(record_of_body_size(MAX_RECEIVE_SIZE), max_size=10**6)
    assert read_stream(frame).signed_peer_record == b"\xaa" * (MAX_RECEIVE_SIZE - 3)


@pytest.mark.parametrize("prefix_hex", ["8140", "ffff", "ffffffff"])
def test_reader_refuses_an_oversized_prefix_at_once(prefix_hex: str) -> None:
    reader = IdentifyReader()
    reader.receive_data(bytes.fromhex(prefix_hex))
    with pytest.raises(DecodeError) as info:
        reader.next_event()
    assert info.value.hint == "identify message too large"


def test_reader_limit_can_be_lowered() -> None:
    frame = encode_identify(IdentifyInfo(agent_version="x" * 100))
    reader = IdentifyReader(max_message_size=50)
    reader.receive_data(frame[:2])  # the prefix alone decides
    with pytest.raises(DecodeError, match="exceeds 50"):
        reader.next_event()


def test_reader_bounds_the_number_of_frames() -> None:
    assert read_stream(b"\x00" * MAX_MESSAGES) == IdentifyInfo()
    reader = IdentifyReader()
    reader.receive_data(b"\x00" * (MAX_MESSAGES + 1))
    with pytest.raises(DecodeError) as info:
        reader.next_event()
    assert info.value.hint == "too many identify messages"
    with pytest.raises(DecodeError):
        read_stream(b"\x00\x00", max_messages=1)


def test_reader_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_messages"):
        IdentifyReader(max_messages=0)
    with pytest.raises(ValueError, match="max_message_size"):
        IdentifyReader(max_message_size=-1)


# --- the reader ----------------------------------------------------------------------------------


def test_reader_returns_only_at_end_of_stream() -> None:
    reader = IdentifyReader()
    reader.receive_data(bytes.fromhex(FULL_HEX))
    assert reader.next_event() is NEED_DATA
    assert reader.messages_received == 1
    reader.receive_eof()
    assert reader.next_event() == FULL


def test_reader_byte_by_byte() -> None:
    frame = bytes.fromhex(FULL_HEX)
    assert read_stream(*(frame[i : i + 1] for i in range(len(frame)))) == FULL


def test_reader_ignores_empty_data_and_repeated_eof() -> None:
    reader = IdentifyReader()
    reader.receive_data(b"")
    reader.receive_data(b"\x00")
    reader.receive_eof()
    reader.receive_eof()
    assert reader.next_event() == IdentifyInfo()


def test_reader_merges_gos_split_message() -> None:
    # go-libp2p writeChunkedIdentifyMsg: everything but the record, then a frame with the record.
    stream = bytes.fromhex(FULL_HEX + "054203010203")
    assert read_stream(stream) == attrs.evolve(FULL, signed_peer_record=b"\x01\x02\x03")


def test_reader_concatenates_repeated_fields() -> None:
    frame = bytes.fromhex("0a1208" + LOCAL_HEX)
    assert read_stream(frame, frame).listen_addrs == (LOCAL, LOCAL)


def test_reader_singular_fields_take_the_last_frame() -> None:
    stream = bytes.fromhex("0a1208" + LOCAL_HEX + "06320161320162")
    assert read_stream(stream) == IdentifyInfo(agent_version="b", listen_addrs=(LOCAL,))


@pytest.mark.parametrize(
    ("stream_hex", "hint"),
    [
        ("", "no identify message"),
        ("050a", "truncated identify message"),
        ("0032", "truncated identify message"),
        ("80", "truncated identify message"),
    ],
)
def test_reader_end_of_stream_errors(stream_hex: str, hint: str) -> None:
    reader = IdentifyReader()
    reader.receive_data(bytes.fromhex(stream_hex))
    assert reader.next_event() is NEED_DATA
    reader.receive_eof()
    with pytest.raises(DecodeError) as info:
        reader.next_event()
    assert info.value.hint == hint


def test_reader_checks_each_frame_before_the_end() -> None:
    reader = IdentifyReader()
    reader.receive_data(bytes.fromhex("033201ff"))
    with pytest.raises(DecodeError) as info:
        reader.next_event()
    assert info.value.hint == "bad identify string"


def test_reader_misuse() -> None:
    reader = IdentifyReader()
    reader.receive_data(b"\x00")
    reader.receive_eof()
    with pytest.raises(LocalProtocolError):
        reader.receive_data(b"\x00")
    assert reader.next_event() == IdentifyInfo()
    with pytest.raises(LocalProtocolError):
        reader.next_event()

    broken = IdentifyReader()
    broken.receive_data(b"\xff\xff")
    with pytest.raises(DecodeError):
        broken.next_event()
    with pytest.raises(LocalProtocolError):
        broken.next_event()


# --- push merge ----------------------------------------------------------------------------------

OTHER = Multiaddr.from_string("/dns4/example.com/tcp/443")
SEVEN = KeyPair.from_seed(b"\x07" * 32).public_key


@pytest.mark.parametrize(
    ("push", "expected"),
    [
        pytest.param(IdentifyInfo(), FULL, id="empty-push-changes-nothing"),
        pytest.param(
            IdentifyInfo(listen_addrs=(OTHER,)),
            attrs.evolve(FULL, listen_addrs=(OTHER,)),
            id="addresses-replaced-whole",
        ),
        pytest.param(
            IdentifyInfo(protocols=("/p2pchat/1.0.0",), agent_version="p2pchat/0.2.0"),
            attrs.evolve(FULL, protocols=("/p2pchat/1.0.0",), agent_version="p2pchat/0.2.0"),
            id="protocols-and-agent",
        ),
        pytest.param(
            IdentifyInfo(signed_peer_record=b"", observed_addr=OTHER),
            attrs.evolve(FULL, signed_peer_record=b"", observed_addr=OTHER),
            id="empty-record-is-present",
        ),
        pytest.param(
            IdentifyInfo(public_key=SEVEN, protocol_version="x"),
            attrs.evolve(FULL, public_key=SEVEN, protocol_version="x"),
            id="key-and-version",
        ),
    ],
)
def test_merge(push: IdentifyInfo, expected: IdentifyInfo) -> None:
    assert merge(FULL, push) == expected


def test_merge_of_a_decoded_push() -> None:
    push = decode_identify(bytes.fromhex("1208" + LOCAL_HEX))
    assert merge(IdentifyInfo(agent_version="a", listen_addrs=(OTHER,)), push) == IdentifyInfo(
        agent_version="a", listen_addrs=(LOCAL,)
    )


# --- construction --------------------------------------------------------------------------------


def test_info_converts_lists_and_is_frozen() -> None:
    info = IdentifyInfo(listen_addrs=[LOCAL], protocols=["/a"])
    assert info.listen_addrs == (LOCAL,)
    assert info.protocols == ("/a",)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.agent_version = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"protocols": ("ipfs/id",)}, ValueError),
        ({"protocols": (b"/a",)}, TypeError),
        ({"listen_addrs": ("/ip4/1.2.3.4",)}, TypeError),
        ({"listen_addrs": (Multiaddr(()),)}, ValueError),
        ({"observed_addr": Multiaddr(())}, ValueError),
        ({"observed_addr": "/ip4/1.2.3.4"}, TypeError),
        ({"agent_version": b"x"}, TypeError),
        ({"protocol_version": "\ud800"}, ValueError),
        ({"protocols": ("/\udfff",)}, ValueError),
        ({"public_key": KEY_HEX}, TypeError),
        ({"signed_peer_record": "x"}, TypeError),
    ],
)
def test_info_validation(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        IdentifyInfo(**kwargs)  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------------

KEYS = [KEY, *(KeyPair.from_seed(bytes([i]) * 32).public_key for i in range(3))]

multiaddrs = st.one_of(
    st.builds(
        lambda ip, port: Multiaddr.from_string(f"/ip4/{ip}/tcp/{port}"),
        st.ip_addresses(v=4),
        st.integers(0, 65535),
    ),
    st.builds(
        lambda ip, port: Multiaddr.from_string(f"/ip6/{ip}/udp/{port}/quic-v1"),
        st.ip_addresses(v=6),
        st.integers(0, 65535),
    ),
    st.builds(
        lambda name, port: Multiaddr.from_string(f"/dns4/{name}.example/tcp/{port}"),
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20),
        st.integers(0, 65535),
    ),
)

infos = st.builds(
    IdentifyInfo,
    protocol_version=st.text(max_size=30),
    agent_version=st.text(max_size=30),
    public_key=st.none() | st.sampled_from(KEYS),
    listen_addrs=st.lists(multiaddrs, max_size=6),
    observed_addr=st.none() | multiaddrs,
    protocols=st.lists(st.text(max_size=20).map(lambda s: "/" + s), max_size=8),
    signed_peer_record=st.none() | st.binary(max_size=100),
)


@given(infos)
@settings(max_examples=300)
def test_round_trip(info: IdentifyInfo) -> None:
    frame = encode_identify(info)
    assert decode_identify(split_frame(frame)) == info
    assert read_stream(frame) == info


@given(infos, st.data())
@settings(max_examples=200)
def test_reader_any_split(info: IdentifyInfo, data: st.DataObject) -> None:
    frame = encode_identify(info)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(frame)), max_size=5)))
    chunks = [frame[a:b] for a, b in zip([0, *cuts], [*cuts, len(frame)], strict=True)]
    assert read_stream(*chunks) == info


@given(infos, infos)
@settings(max_examples=200)
def test_merge_properties(current: IdentifyInfo, push: IdentifyInfo) -> None:
    merged = merge(current, push)
    assert merge(merged, push) == merged
    assert merge(current, IdentifyInfo()) == current
    for field in attrs.fields(IdentifyInfo):
        pushed = getattr(push, field.name)
        if pushed in ("", ()) or pushed is None:
            assert getattr(merged, field.name) == getattr(current, field.name)
        else:
            assert getattr(merged, field.name) == pushed


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_decode_arbitrary_bytes_raises_only_decode_error(data: bytes) -> None:
    try:
        info = decode_identify(data)
    except DecodeError:
        return
    assert isinstance(info, IdentifyInfo)


fields = st.lists(
    st.tuples(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9]), st.binary(max_size=40)), max_size=8
)


@given(fields)
@settings(max_examples=500)
def test_decode_arbitrary_fields_raises_only_decode_error(items: list[tuple[int, bytes]]) -> None:
    body = b"".join(encode_bytes_field(number, value) for number, value in items)
    try:
        info = decode_identify(body)
    except DecodeError:
        return
    # Whatever decodes re-encodes to something that decodes the same.
    assert decode_identify(split_frame(encode_identify(info, max_size=10**6))) == info


@given(st.lists(st.binary(max_size=40), max_size=6))
@settings(max_examples=500)
def test_reader_arbitrary_chunks_raise_only_decode_error(chunks: list[bytes]) -> None:
    reader = IdentifyReader(max_message_size=64, max_messages=3)
    try:
        for chunk in chunks:
            reader.receive_data(chunk)
            assert reader.next_event() is NEED_DATA
        reader.receive_eof()
        assert isinstance(reader.next_event(), IdentifyInfo)
    except DecodeError:
        pass
