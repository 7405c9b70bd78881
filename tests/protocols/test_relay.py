"""Circuit relay v2 core: the vectors of specs/relay.md, the relay's policy, the client's book."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.errors import DecodeError
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr, MultiaddrError
from p2pchat.protocols._need_data import NEED_DATA
from p2pchat.protocols.relay import (
    HopMessage,
    HopType,
    Limit,
    MessageReader,
    Peer,
    RelayLimits,
    RelayState,
    Reservation,
    ReservationBook,
    ReservationVoucher,
    Status,
    StopMessage,
    StopType,
    decode_hop,
    decode_stop,
    frame,
    open_voucher,
    parse_circuit,
)
from p2pchat.protocols.relay.messages import encode
from p2pchat.protocols.relay.state import Circuit, HeldReservation, reservation_addrs
from p2pchat.records import RecordError

RELAY = KeyPair.from_seed(bytes([1]) * 32)
PEER = KeyPair.from_seed(bytes([2]) * 32)
OTHER = KeyPair.from_seed(bytes([3]) * 32)
ADDR = Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001")

# specs/relay.md "Vectors" (checked against py-libp2p 0.8.1's generated protobuf classes).
VOUCHER_HEX = (
    "0a24080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c120203021a560a"
    "260024080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c122600240801"
    "12208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3941880e2cfaa062a4031285c"
    "e1e0c9c3b03e318e845c0a2c505908f76e0321c92c4c84e7651285a62f4331fbcc4e57611df9c73f46dace9ca3"
    "a38c51365d148c2acd54ee8838f07702"
)
VECTORS = [
    (HopMessage(HopType.RESERVE), "020800"),
    (
        HopMessage(HopType.CONNECT, peer=Peer(PEER.peer_id)),
        "2c080112280a260024080112208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
    ),
    (
        StopMessage(StopType.CONNECT, peer=Peer(RELAY.peer_id), limit=Limit(120, 131072)),
        "34080012280a260024080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f"
        "5c1a06087810808008",
    ),
    (StopMessage(StopType.STATUS, status=Status.OK), "0408012064"),
    (HopMessage(HopType.STATUS, status=Status.NO_RESERVATION), "05080228cc01"),
    (
        HopMessage(
            HopType.STATUS,
            reservation=Reservation(1700000000, (ADDR,), bytes.fromhex(VOUCHER_HEX)),
            limit=Limit(120, 131072),
            status=Status.OK,
        ),
        "e60108021ad7010880e2cfaa061208047f000001060fa11ac401"
        + VOUCHER_HEX
        + "22060878108080082864",
    ),
]


@pytest.mark.parametrize(("message", "hex_frame"), VECTORS)
def test_vectors_encode(message: HopMessage | StopMessage, hex_frame: str) -> None:
    assert frame(message).hex() == hex_frame


@pytest.mark.parametrize(("message", "hex_frame"), VECTORS)
def test_vectors_decode(message: HopMessage | StopMessage, hex_frame: str) -> None:
    reader = MessageReader(decode_hop if isinstance(message, HopMessage) else decode_stop)
    reader.receive_data(bytes.fromhex(hex_frame) + b"tail")
    assert reader.next_message() == message
    assert reader.trailing() == b"tail"


def test_voucher_vector_signs_and_opens() -> None:
    voucher = ReservationVoucher(RELAY.peer_id, PEER.peer_id, 1700000000)
    assert voucher.seal(RELAY).encode().hex() == VOUCHER_HEX
    opened = open_voucher(bytes.fromhex(VOUCHER_HEX), relay=RELAY.peer_id, peer=PEER.peer_id)
    assert opened == voucher


def test_voucher_for_another_peer_or_relay_is_refused() -> None:
    data = bytes.fromhex(VOUCHER_HEX)
    with pytest.raises(RecordError):
        open_voucher(data, relay=RELAY.peer_id, peer=OTHER.peer_id)
    with pytest.raises(RecordError):
        open_voucher(data, relay=OTHER.peer_id, peer=PEER.peer_id)
    forged = bytearray(data)
    forged[-1] ^= 1
    with pytest.raises(RecordError):
        open_voucher(bytes(forged), relay=RELAY.peer_id, peer=PEER.peer_id)


def test_reader_waits_for_a_whole_message() -> None:
    reader = MessageReader(decode_hop)
    data = frame(HopMessage(HopType.RESERVE))
    reader.receive_data(data[:1])
    assert reader.next_message() is NEED_DATA
    reader.receive_data(data[1:])
    assert reader.next_message() == HopMessage(HopType.RESERVE)


def test_oversized_message_is_refused() -> None:
    reader = MessageReader(decode_hop)
    reader.receive_data(b"\x81\x20")  # 4097
    with pytest.raises(DecodeError):
        reader.next_message()


def test_unknown_type_and_status_are_refused() -> None:
    with pytest.raises(DecodeError):
        decode_hop(bytes.fromhex("0807"))
    with pytest.raises(DecodeError):
        decode_stop(bytes.fromhex("08012001"))
    with pytest.raises(DecodeError):
        decode_hop(bytes.fromhex("08022801"))


def test_too_many_addresses_are_refused() -> None:
    addrs = tuple([ADDR] * 17)
    body = encode(HopMessage(HopType.CONNECT, peer=Peer(PEER.peer_id, addrs)))
    # encode() writes at most 16: build the 17-address message by hand.
    assert decode_hop(body).peer == Peer(PEER.peer_id, addrs[:16])
    raw = (
        b"\x0a\x26"
        + PEER.peer_id.to_bytes()
        + b"".join(b"\x12\x08" + ADDR.to_bytes() for _ in addrs)
    )
    inner = bytes([len(raw)]) if len(raw) < 128 else bytes([len(raw) & 0x7F | 0x80, len(raw) >> 7])
    with pytest.raises(DecodeError):
        decode_hop(b"\x08\x01\x12" + inner + raw)


@given(st.binary(max_size=300))
def test_decoders_raise_only_decode_errors(data: bytes) -> None:
    for decode in (decode_hop, decode_stop):
        try:
            decode(data)
        except DecodeError:
            pass


# -- relay policy --------------------------------------------------------------------------------


def test_reservation_is_granted_refreshed_and_expires() -> None:
    state = RelayState(RelayLimits(reservation_ttl=100))
    granted = state.reserve(PEER.peer_id, "10.0.0.1", 1000)
    assert not isinstance(granted, Status)
    assert granted.expire == 1100
    again = state.reserve(PEER.peer_id, "10.0.0.1", 1050)
    assert not isinstance(again, Status)
    assert again.expire == 1150
    assert state.reservation(PEER.peer_id, 1149) is not None
    assert state.reservation(PEER.peer_id, 1150) is None
    assert state.reservations(1150) == []


def test_reservations_are_limited_in_all_and_per_ip() -> None:
    peers = [KeyPair.from_seed(bytes([10 + i]) * 32).peer_id for i in range(4)]
    state = RelayState(RelayLimits(max_reservations=3, max_reservations_per_ip=2))
    assert not isinstance(state.reserve(peers[0], "10.0.0.1", 0), Status)
    assert not isinstance(state.reserve(peers[1], "10.0.0.1", 0), Status)
    assert state.reserve(peers[2], "10.0.0.1", 0) is Status.RESERVATION_REFUSED
    assert not isinstance(state.reserve(peers[2], "10.0.0.2", 0), Status)
    assert state.reserve(peers[3], "10.0.0.3", 0) is Status.RESERVATION_REFUSED
    # A holder refreshes whatever the limits.
    assert not isinstance(state.reserve(peers[0], "10.0.0.1", 1), Status)


def test_reservation_over_a_relayed_connection_is_denied() -> None:
    state = RelayState()
    assert state.reserve(PEER.peer_id, "10.0.0.1", 0, relayed=True) is Status.PERMISSION_DENIED


def test_circuit_needs_a_reservation_and_respects_limits() -> None:
    state = RelayState(RelayLimits(max_circuits=2, max_circuits_per_peer=1))
    assert state.open_circuit(OTHER.peer_id, PEER.peer_id, 0) is Status.NO_RESERVATION
    state.reserve(PEER.peer_id, "10.0.0.1", 0)
    state.reserve(RELAY.peer_id, "10.0.0.2", 0)
    first = state.open_circuit(OTHER.peer_id, PEER.peer_id, 0)
    assert isinstance(first, Circuit)
    # OTHER already has its one circuit.
    assert state.open_circuit(OTHER.peer_id, RELAY.peer_id, 0) is Status.RESOURCE_LIMIT_EXCEEDED
    assert state.open_circuit(OTHER.peer_id, PEER.peer_id, 0, relayed=True) is (
        Status.PERMISSION_DENIED
    )
    state.close_circuit(first)
    assert state.circuit_count == 0
    assert isinstance(state.open_circuit(OTHER.peer_id, RELAY.peer_id, 0), Circuit)


def test_total_circuits_are_limited() -> None:
    state = RelayState(RelayLimits(max_circuits=1))
    state.reserve(PEER.peer_id, "10.0.0.1", 0)
    assert isinstance(state.open_circuit(OTHER.peer_id, PEER.peer_id, 0), Circuit)
    assert state.open_circuit(RELAY.peer_id, PEER.peer_id, 0) is Status.RESOURCE_LIMIT_EXCEEDED


def test_circuit_budget_and_deadline() -> None:
    state = RelayState(RelayLimits(circuit_duration=30, circuit_data=100))
    state.reserve(PEER.peer_id, "10.0.0.1", 0)
    circuit = state.open_circuit(OTHER.peer_id, PEER.peer_id, 5)
    assert isinstance(circuit, Circuit)
    assert circuit.deadline == 35
    assert circuit.take(0, 60) == 60
    assert circuit.take(1, 100) == 100  # each direction has its own budget
    assert circuit.take(0, 60) == 40
    assert circuit.take(0, 1) == 0


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_circuits"):
        RelayLimits(max_circuits=0)


# -- client --------------------------------------------------------------------------------------


def test_book_gives_circuit_addresses_and_refresh_times() -> None:
    book = ReservationBook(max_relays=1)
    assert book.record(HeldReservation(RELAY.peer_id, 1000, (ADDR,), None))
    assert not book.record(HeldReservation(OTHER.peer_id, 1000, (ADDR,), None))
    assert [str(a) for a in book.circuit_addrs(0)] == [
        f"/ip4/127.0.0.1/tcp/4001/p2p/{RELAY.peer_id}/p2p-circuit"
    ]
    assert book.due(0) == []
    assert book.due(900) == [RELAY.peer_id]
    assert book.live(1000) == []


def test_parse_circuit_address() -> None:
    text = f"/ip4/127.0.0.1/tcp/4001/p2p/{RELAY.peer_id}/p2p-circuit/p2p/{PEER.peer_id}"
    target = parse_circuit(Multiaddr.from_string(text))
    assert target.relay == RELAY.peer_id
    assert target.dst == PEER.peer_id
    assert str(target.relay_addr) == f"/ip4/127.0.0.1/tcp/4001/p2p/{RELAY.peer_id}"
    with pytest.raises(MultiaddrError):
        parse_circuit(ADDR)
    with pytest.raises(MultiaddrError):
        parse_circuit(Multiaddr.from_string(text + "/p2p-circuit"))


def test_reservation_addresses_leave_out_loopback_when_there_is_another() -> None:
    loop = Multiaddr.from_string("/ip4/127.0.0.1/tcp/1")
    lan = Multiaddr.from_string("/ip4/10.0.0.1/tcp/1")
    circuit = Multiaddr.from_string(f"/ip4/10.0.0.2/tcp/1/p2p/{RELAY.peer_id}/p2p-circuit")
    assert reservation_addrs([loop, lan, lan, circuit]) == (lan,)
    assert reservation_addrs([loop]) == (loop,)
