"""DCUtR core: the vectors of specs/dcutr.md, the attempt schedule, what a hole punch dials."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.errors import DecodeError, LocalProtocolError
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.protocols._need_data import NEED_DATA
from p2pchat.protocols.dcutr import (
    MAX_TARGETS,
    Attempts,
    HolePunch,
    HolePunchType,
    MessageReader,
    decode,
    frame,
    punch_targets,
)

PEER = KeyPair.from_seed(bytes([1]) * 32).peer_id
ADDR = Multiaddr.from_string("/ip4/10.0.1.2/tcp/4001")

# specs/dcutr.md "Vectors" (checked against py-libp2p 0.8.1's generated class).
VECTORS = [
    (HolePunch(HolePunchType.CONNECT, (ADDR,)), "0c08641208040a000102060fa1"),
    (HolePunch(HolePunchType.SYNC), "0308ac02"),
]


@pytest.mark.parametrize(("message", "hex_frame"), VECTORS)
def test_vectors(message: HolePunch, hex_frame: str) -> None:
    assert frame(message).hex() == hex_frame
    reader = MessageReader()
    reader.receive_data(bytes.fromhex(hex_frame)[:2])
    assert reader.next_message() is NEED_DATA
    reader.receive_data(bytes.fromhex(hex_frame)[2:])
    assert reader.next_message() == message


def test_oversized_and_unknown_messages_are_refused() -> None:
    reader = MessageReader()
    reader.receive_data(b"\x81\x20")
    with pytest.raises(DecodeError):
        reader.next_message()
    with pytest.raises(DecodeError):
        decode(bytes.fromhex("0865"))  # type 101
    with pytest.raises(DecodeError):
        decode(b"\x08\x64" + b"\x12\x01\x00" * 17)  # 17 addresses


@given(st.binary(max_size=200))
def test_decoder_raises_only_decode_errors(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


def test_three_attempts_each_timed_by_its_own_round_trip() -> None:
    attempts = Attempts()
    attempts.connect_sent(10.0)
    assert attempts.sync_delay(10.2) == pytest.approx(0.1)
    attempts.connect_sent(20.0)
    assert attempts.sync_delay(20.6) == pytest.approx(0.3)
    attempts.connect_sent(30.0)
    assert attempts.exhausted
    with pytest.raises(LocalProtocolError):
        attempts.connect_sent(40.0)
    with pytest.raises(LocalProtocolError):
        Attempts().sync_delay(1.0)


def test_punch_targets_are_plain_tcp_addresses() -> None:
    addrs = [
        ADDR.with_peer_id(PEER),
        ADDR,
        Multiaddr.from_string(f"/ip4/10.0.0.1/tcp/1/p2p/{PEER}/p2p-circuit"),
        Multiaddr.from_string("/dns4/example.org/tcp/1"),
        Multiaddr.from_string("/ip4/10.0.0.1/udp/1/quic-v1"),
        Multiaddr.from_string("/ip6/::1/tcp/2"),
    ]
    assert [str(a) for a in punch_targets(addrs)] == ["/ip4/10.0.1.2/tcp/4001", "/ip6/::1/tcp/2"]
    many = [Multiaddr.from_string(f"/ip4/10.0.0.{i}/tcp/1") for i in range(20)]
    assert len(punch_targets(many)) == MAX_TARGETS
