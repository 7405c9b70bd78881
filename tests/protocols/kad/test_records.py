"""Record validation per namespace, the record store and the provider store."""

from __future__ import annotations

import pytest

from p2pchat.multiaddr import Multiaddr
from p2pchat.protocols.kad.providers import ProviderStore
from p2pchat.protocols.kad.records import (
    InvalidRecordError,
    RecordStore,
    peer_record_key,
    pk_key,
)
from p2pchat.records import make_peer_record

from .helpers import keypair, peer

ADDR = Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001")


def test_pk_record_of_the_right_peer_is_stored() -> None:
    store = RecordStore()
    key = pk_key(peer(1))
    assert store.put(key, keypair(1).public_key.to_protobuf(), 0.0)
    assert store.get(key, 1.0) == keypair(1).public_key.to_protobuf()


def test_pk_record_of_another_peer_is_refused() -> None:
    with pytest.raises(InvalidRecordError, match="another peer"):
        RecordStore().put(pk_key(peer(1)), keypair(2).public_key.to_protobuf(), 0.0)


def test_unknown_namespace_is_refused() -> None:
    with pytest.raises(InvalidRecordError, match="unknown namespace"):
        RecordStore().put(b"/ipns/whatever", b"x", 0.0)


def test_peer_record_newer_seq_wins() -> None:
    store = RecordStore()
    key = peer_record_key(peer(1))
    old = make_peer_record(keypair(1), 5, [ADDR]).encode()
    new = make_peer_record(keypair(1), 6, [ADDR]).encode()
    assert store.put(key, new, 0.0)
    assert not store.put(key, old, 1.0)
    assert store.get(key, 2.0) == new


def test_peer_record_signed_by_another_peer_is_refused() -> None:
    record = make_peer_record(keypair(2), 1, [ADDR]).encode()
    with pytest.raises(InvalidRecordError, match="another peer"):
        RecordStore().put(peer_record_key(peer(1)), record, 0.0)


def test_record_store_is_bounded_and_expires() -> None:
    store = RecordStore(max_records=2, max_age=10.0)
    store.put(pk_key(peer(1)), keypair(1).public_key.to_protobuf(), 0.0)
    store.put(pk_key(peer(2)), keypair(2).public_key.to_protobuf(), 0.0)
    with pytest.raises(InvalidRecordError, match="full"):
        store.put(pk_key(peer(3)), keypair(3).public_key.to_protobuf(), 5.0)
    assert store.put(pk_key(peer(3)), keypair(3).public_key.to_protobuf(), 11.0)
    assert store.get(pk_key(peer(1)), 11.0) is None
    assert len(store) == 1


def test_providers_expire() -> None:
    store = ProviderStore(ttl=100.0)
    store.add(b"key", peer(1), (ADDR,), now=0.0)
    assert [p.peer for p in store.get(b"key", 99.0)] == [peer(1)]
    assert store.get(b"key", 100.0) == []
    assert len(store) == 0


def test_providers_per_key_are_bounded_keeping_the_freshest() -> None:
    store = ProviderStore(max_per_key=3)
    for n in range(1, 6):
        store.add(b"key", peer(n), (ADDR,), now=float(n))
    assert {p.peer for p in store.get(b"key", 6.0)} == {peer(3), peer(4), peer(5)}


def test_provider_keys_are_bounded() -> None:
    store = ProviderStore(max_keys=2, ttl=10.0)
    assert store.add(b"a", peer(1), (), 0.0)
    assert store.add(b"b", peer(1), (), 0.0)
    assert not store.add(b"c", peer(1), (), 5.0)
    assert store.add(b"c", peer(1), (), 10.0)  # the old keys expired
