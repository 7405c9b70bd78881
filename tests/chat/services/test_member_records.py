"""The members' signed peer records kept in the data dir (specs/chat.md §12)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import cast

import attrs
import pytest
import trio

from p2pchat.chat.core import cbor
from p2pchat.chat.services.member_records import (
    MAX_STORED_RECORDS,
    RECORDS_FILE,
    STORED_ADDR_TTL,
    Kept,
    MemberRecordFile,
    decode_records,
    encode_records,
    file_records,
    read_records,
)
from p2pchat.errors import DecodeError
from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import Host
from p2pchat.net.peerstore import PeerStore
from p2pchat.records import make_peer_record


@attrs.define
class FakeHost:
    """What the records file uses of a Host: our peer id and the peer store."""

    peer_id: PeerID
    peer_store: PeerStore = attrs.Factory(PeerStore)


def _host(identity: KeyPair | None = None) -> tuple[Host, FakeHost]:
    fake = FakeHost((identity or KeyPair.generate()).peer_id)
    return cast(Host, fake), fake


def _record(pair: KeyPair, seq: int, port: int) -> bytes:
    addr = Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{port}")
    return make_peer_record(pair, seq, [addr]).encode()


def _addrs(port: int) -> frozenset[Multiaddr]:
    return frozenset([Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{port}")])


def _ports(fake: FakeHost, peer: PeerID) -> set[str | None]:
    addrs = fake.peer_store.addrs(peer, trio.current_time())
    return {a.value_for("tcp") for a in addrs}


def test_the_file_format_round_trips_sorted_and_refuses_other_shapes() -> None:
    a, b = _record(KeyPair.generate(), 1, 1), _record(KeyPair.generate(), 2, 2)
    data = encode_records([b, a, a])
    assert decode_records(data) == sorted([a, b])
    assert cbor.loads(data, max_size=1 << 20) == {"v": 1, "records": sorted([a, b])}
    for bad in (
        cbor.dumps({"v": 2, "records": []}),
        cbor.dumps({"v": 1, "records": ["text"]}),
        cbor.dumps({"v": 1}),
        cbor.dumps([1]),
        b"\xff\x00",
    ):
        with pytest.raises(DecodeError):
            decode_records(bad)
    too_many = cbor.dumps({"v": 1, "records": [b""] * (MAX_STORED_RECORDS + 1)})
    with pytest.raises(DecodeError):
        decode_records(too_many)


async def test_forged_foreign_stale_and_our_own_records_are_refused() -> None:
    me = KeyPair.generate()
    host, fake = _host(me)
    member, stranger = KeyPair.generate(), KeyPair.generate()
    members = {member.peer_id, fake.peer_id}
    good = _record(member, 10, 4001)
    forged = bytearray(_record(member, 11, 4666))
    forged[-1] ^= 1  # the signature no longer verifies
    foreign = _record(stranger, 12, 4002)
    ours = _record(me, 12, 4005)
    kept = file_records(host, [bytes(forged), foreign, ours, good], members, STORED_ADDR_TTL)
    assert kept == [Kept(member.peer_id, _addrs(4001))]
    assert fake.peer_store.signed_record(me.peer_id) is None
    assert fake.peer_store.signed_record(member.peer_id) == good
    assert fake.peer_store.signed_record(stranger.peer_id) is None
    assert _ports(fake, member.peer_id) == {"4001"}
    # An older seq does not replace a newer one; a newer one does.
    assert file_records(host, [_record(member, 9, 4003)], members, STORED_ADDR_TTL) == []
    assert fake.peer_store.signed_record(member.peer_id) == good
    newer = _record(member, 14, 4004)
    kept = file_records(host, [newer], members, STORED_ADDR_TTL)
    assert kept == [Kept(member.peer_id, _addrs(4004))]
    assert fake.peer_store.signed_record(member.peer_id) == newer


async def test_records_survive_a_save_and_load_of_current_members_only(tmp_path: Path) -> None:
    host, _ = _host()
    alice, bob = KeyPair.generate(), KeyPair.generate()
    both = {alice.peer_id, bob.peer_id}
    file_records(host, [_record(alice, 1, 5001), _record(bob, 1, 5002)], both, STORED_ADDR_TTL)
    path = tmp_path / RECORDS_FILE
    await MemberRecordFile(host, path).save(both)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(read_records(path)) == 2
    # A restarted node: an empty peer store; bob is no longer a member.
    host2, fake2 = _host()
    assert await MemberRecordFile(host2, path).load({alice.peer_id}) == 1
    assert _ports(fake2, alice.peer_id) == {"5001"}
    assert fake2.peer_store.signed_record(bob.peer_id) is None


async def test_a_missing_or_damaged_file_is_ignored(tmp_path: Path) -> None:
    host, _ = _host()
    path = tmp_path / RECORDS_FILE
    assert read_records(path) == []
    assert await MemberRecordFile(host, path).load(set()) == 0
    path.write_bytes(b"not cbor at all")
    assert await MemberRecordFile(host, path).load(set()) == 0
