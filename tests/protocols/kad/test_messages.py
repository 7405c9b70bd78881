"""Kad messages: the vectors of specs/kad.md, round trips, limits, framing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.errors import DecodeError, LocalProtocolError
from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.protocols.kad import messages as m
from p2pchat.protocols.kad.keyspace import common_prefix_length, peer_key

from .helpers import peer

VECTORS = Path(__file__).resolve().parents[3] / "specs" / "vectors" / "kad" / "find_node.json"


def _vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def _peers() -> dict[str, PeerID]:
    named = _vectors()["peers"]
    return {name: PeerID.from_string(text) for name, text in named.items()}


def test_vector_peers_are_the_seeded_keys() -> None:
    peers = _peers()
    for n, name in enumerate("abc", start=1):
        assert KeyPair.from_seed(bytes([n]) * 32).peer_id == peers[name]


def test_find_node_request_vector() -> None:
    vector = _vectors()["request"]
    target = _peers()[vector["key_peer"]]
    message = m.Message(m.MessageType.FIND_NODE, key=target.to_bytes())
    assert m.frame(message).hex() == vector["hex"]
    reader = m.MessageReader()
    reader.receive_data(bytes.fromhex(vector["hex"]))
    assert reader.next_message() == message


def test_find_node_response_vector() -> None:
    vector = _vectors()["response"]
    peers = _peers()
    closer = tuple(
        m.KadPeer(
            peers[entry["peer"]],
            tuple(Multiaddr.from_string(a) for a in entry["addrs"]),
            m.ConnectionType[entry["connection"]],
        )
        for entry in vector["closer_peers"]
    )
    message = m.Message(
        m.MessageType.FIND_NODE, key=peers[vector["key_peer"]].to_bytes(), closer_peers=closer
    )
    assert m.frame(message).hex() == vector["hex"]
    reader = m.MessageReader()
    reader.receive_data(bytes.fromhex(vector["hex"]))
    assert reader.next_message() == message


def test_keyspace_vector() -> None:
    vector = _vectors()["keyspace"]
    peers = _peers()
    assert peer_key(peers["c"]).hex() == vector["sha256_of_c"]
    assert (
        common_prefix_length(peer_key(peers["a"]), peer_key(peers["c"]))
        == (vector["common_prefix_length_a_c"])
    )


def test_every_field_round_trips() -> None:
    message = m.Message(
        m.MessageType.GET_PROVIDERS,
        key=b"/p2pchat-peer/x",
        record=m.Record(b"k", b"v", "2026-01-01T00:00:00Z"),
        closer_peers=(m.KadPeer(peer(1), (), m.ConnectionType.CAN_CONNECT, b"rec"),),
        provider_peers=(m.KadPeer(peer(2), (Multiaddr.from_string("/ip4/10.0.0.1/tcp/1"),)),),
        cluster_level=7,
        sender_record=b"env",
    )
    assert m.decode_message_bytes(m.encode_message(message)) == message


def test_put_value_type_zero_round_trips() -> None:
    message = m.Message(m.MessageType.PUT_VALUE, key=b"k", record=m.Record(b"k", b"v"))
    assert m.decode_message_bytes(m.encode_message(message)) == message


def test_unknown_type_is_refused() -> None:
    with pytest.raises(DecodeError, match="unknown kad message type"):
        m.decode_message_bytes(bytes.fromhex("0809"))


def test_oversized_key_is_refused() -> None:
    data = m.encode_message(m.Message(m.MessageType.GET_VALUE, key=b"k" * 129))
    with pytest.raises(DecodeError, match="kad field 2"):
        m.decode_message_bytes(data)


def test_too_many_peers_are_refused() -> None:
    entries = tuple(m.KadPeer(peer(1)) for _ in range(m.MAX_PEERS_PER_MESSAGE + 1))
    data = m.encode_message(m.Message(m.MessageType.FIND_NODE, key=b"k", closer_peers=entries))
    with pytest.raises(DecodeError, match="too many peers"):
        m.decode_message_bytes(data)


def test_bad_address_is_skipped_and_extra_addresses_dropped() -> None:
    good = Multiaddr.from_string("/ip4/127.0.0.1/tcp/1").to_bytes()
    from p2pchat.protobuf import encode_bytes_field

    entry = encode_bytes_field(1, peer(1).to_bytes()) + encode_bytes_field(2, b"\xff\xff")
    entry += b"".join(encode_bytes_field(2, good) for _ in range(m.MAX_ADDRS_PER_PEER + 5))
    data = bytes.fromhex("0804") + encode_bytes_field(8, entry)
    decoded = m.decode_message_bytes(data)
    assert len(decoded.closer_peers[0].addrs) == m.MAX_ADDRS_PER_PEER


def test_oversized_message_is_not_written() -> None:
    entries = tuple(
        m.KadPeer(peer(1), signed_record=b"x" * 4000) for _ in range(m.MAX_PEERS_PER_MESSAGE)
    )
    with pytest.raises(LocalProtocolError):
        m.frame(m.Message(m.MessageType.FIND_NODE, key=b"k", closer_peers=entries))


def test_reader_refuses_an_announced_oversized_message_at_once() -> None:
    reader = m.MessageReader()
    from p2pchat.varint import encode_uvarint

    reader.receive_data(encode_uvarint(m.MAX_MESSAGE_SIZE + 1))
    with pytest.raises(DecodeError, match="announced"):
        reader.next_message()


def test_reader_cuts_a_stream_fed_byte_by_byte() -> None:
    first = m.Message(m.MessageType.PING)
    second = m.Message(m.MessageType.FIND_NODE, key=peer(3).to_bytes())
    data = m.frame(first) + m.frame(second)
    reader = m.MessageReader()
    got = []
    for i in range(len(data)):
        reader.receive_data(data[i : i + 1])
        message = reader.next_message()
        if message is not m.NEED_DATA:
            got.append(message)
    reader.receive_eof()
    assert got == [first, second]
    assert reader.at_clean_eof


def test_reader_reports_a_truncated_message() -> None:
    data = m.frame(m.Message(m.MessageType.FIND_NODE, key=peer(3).to_bytes()))
    reader = m.MessageReader()
    reader.receive_data(data[:-1])
    assert reader.next_message() is m.NEED_DATA
    reader.receive_eof()
    with pytest.raises(DecodeError, match="ended inside"):
        reader.next_message()


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        m.decode_message_bytes(data)
    except DecodeError:
        pass
