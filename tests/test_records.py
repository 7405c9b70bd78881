"""Signed envelopes and peer records (specs/peer-record.md)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.records import (
    MAX_ADDRESSES,
    PEER_RECORD_DOMAIN,
    PEER_RECORD_PAYLOAD_TYPE,
    Envelope,
    PeerRecord,
    RecordError,
    make_peer_record,
    newer,
    open_peer_record,
)

SEED = bytes(range(32))
VECTOR_PEER = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
# specs/peer-record.md: what py-libp2p 0.8.1 seals for the same key and record, byte for byte.
VECTOR = bytes.fromhex(
    "0a240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8120203011a360a26"
    "00240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b810071a0a0a08047f"
    "000001060fa12a401537943fa18aab28de6cf68033adb91e818477b51d8c9b7abf39d20cfcc56a356c32e862195a"
    "ffd78b2c2cf37d1985fd4866cfaa83b45f629b2cb5c6a58ce90c"
)
ADDR = Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001")


def test_the_vector_is_sealed_byte_for_byte() -> None:
    pair = KeyPair.from_seed(SEED)
    assert str(pair.peer_id) == VECTOR_PEER
    assert PeerRecord(pair.peer_id, 7, (ADDR,)).seal(pair).encode() == VECTOR


def test_the_vector_opens() -> None:
    record, envelope = open_peer_record(VECTOR)
    assert str(record.peer) == VECTOR_PEER
    assert record.seq == 7
    assert record.addresses == (ADDR,)
    assert envelope.payload_type == b"\x03\x01"


def test_our_record_drops_the_p2p_suffix() -> None:
    pair = KeyPair.generate()
    with_id = ADDR.with_peer_id(pair.peer_id)
    record, _ = open_peer_record(make_peer_record(pair, 1, [with_id]).encode())
    assert record.addresses == (ADDR,)


def test_a_tampered_payload_is_refused() -> None:
    envelope = Envelope.decode(VECTOR)
    other = PeerRecord(envelope_peer(envelope), 8, (ADDR,)).encode()
    forged = attrs.evolve(envelope, payload=other)
    with pytest.raises(RecordError, match="signature"):
        open_peer_record(forged.encode())


def envelope_peer(envelope: Envelope) -> PeerID:
    return PeerRecord.decode(envelope.payload).peer


def test_a_record_signed_by_another_peer_is_refused() -> None:
    victim, forger = KeyPair.generate(), KeyPair.generate()
    payload = PeerRecord(victim.peer_id, 1, (ADDR,)).encode()
    envelope = Envelope.seal(forger, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, payload)
    with pytest.raises(RecordError, match="another peer"):
        open_peer_record(envelope.encode())
    with pytest.raises(ValueError, match="own peer"):
        PeerRecord(victim.peer_id, 1, (ADDR,)).seal(forger)


def test_another_domain_or_payload_type_is_refused() -> None:
    pair = KeyPair.generate()
    payload = PeerRecord(pair.peer_id, 1, (ADDR,)).encode()
    wrong_domain = Envelope.seal(pair, "libp2p-routing-state", PEER_RECORD_PAYLOAD_TYPE, payload)
    with pytest.raises(RecordError, match="signature"):
        open_peer_record(wrong_domain.encode())
    varint_type = Envelope.seal(pair, PEER_RECORD_DOMAIN, b"\x81\x06", payload)
    with pytest.raises(RecordError, match="payload type"):
        open_peer_record(varint_type.encode())


def test_too_many_addresses_are_refused() -> None:
    pair = KeyPair.generate()
    many = tuple(Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{p}") for p in range(MAX_ADDRESSES + 1))
    with pytest.raises(RecordError):
        open_peer_record(PeerRecord(pair.peer_id, 1, many).seal(pair).encode())


def test_an_oversized_envelope_is_refused_before_parsing() -> None:
    with pytest.raises(RecordError, match="bytes"):
        Envelope.decode(b"\x0a" * 5000)


def test_newer_needs_the_same_peer_and_a_higher_seq() -> None:
    a, b = KeyPair.generate().peer_id, KeyPair.generate().peer_id
    held = PeerRecord(a, 5, ())
    assert newer(PeerRecord(a, 6, ()), held)
    assert not newer(PeerRecord(a, 5, ()), held)
    assert not newer(PeerRecord(a, 4, ()), held)
    assert not newer(PeerRecord(b, 9, ()), held)
    assert newer(held, None)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_a_record_or_a_record_error(data: bytes) -> None:
    try:
        open_peer_record(data)
    except RecordError:
        pass
