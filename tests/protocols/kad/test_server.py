"""The answering side: what each request gets, and the per-peer budget."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from p2pchat.errors import RemoteProtocolError
from p2pchat.identity import PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.protocols.kad.messages import KadPeer, Message, MessageType, Record
from p2pchat.protocols.kad.providers import ProviderStore
from p2pchat.protocols.kad.records import InvalidRecordError, RecordStore, pk_key
from p2pchat.protocols.kad.routing import RoutingTable
from p2pchat.protocols.kad.server import KadServer, OverBudgetError, RequestBudget

from .helpers import keypair, peer

ADDR = Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001")


def _addrs(p: PeerID) -> Sequence[Multiaddr]:
    return [ADDR] if p != peer(99) else []


def _server(budget: RequestBudget | None = None) -> KadServer:
    table = RoutingTable(peer(0))
    for n in range(1, 40):
        table.add(peer(n), 0.0)
    table.add(peer(99), 0.0)
    return KadServer(
        peer(0),
        table,
        RecordStore(),
        ProviderStore(),
        _addrs,
        budget if budget is not None else RequestBudget(),
    )


def test_find_node_returns_k_closest_with_addresses_never_the_asker() -> None:
    server = _server()
    target = peer(7)
    reply = server.handle(peer(1), Message(MessageType.FIND_NODE, key=target.to_bytes()), 0.0)
    ids = [p.peer for p in reply.closer_peers]
    assert ids[0] == target  # the FIND_PEER exception: the target first
    assert peer(1) not in ids
    assert peer(99) not in ids  # no address, useless to the asker
    assert len(ids) == 20
    assert all(p.addrs == (ADDR,) for p in reply.closer_peers)


def test_put_then_get_value() -> None:
    server = _server()
    key = pk_key(peer(5))
    record = Record(key, keypair(5).public_key.to_protobuf())
    put = Message(MessageType.PUT_VALUE, key=key, record=record)
    assert server.handle(peer(1), put, 0.0) == put
    reply = server.handle(peer(2), Message(MessageType.GET_VALUE, key=key), 1.0)
    assert reply.record is not None
    assert reply.record.value == record.value


def test_put_of_an_invalid_record_is_refused() -> None:
    key = pk_key(peer(5))
    put = Message(MessageType.PUT_VALUE, key=key, record=Record(key, b"junk"))
    with pytest.raises(InvalidRecordError):
        _server().handle(peer(1), put, 0.0)


def test_add_provider_stores_only_the_sender() -> None:
    server = _server()
    add = Message(
        MessageType.ADD_PROVIDER,
        key=b"content",
        provider_peers=(KadPeer(peer(3), (ADDR,)), KadPeer(peer(4), (ADDR,))),
    )
    server.handle(peer(3), add, 0.0)
    reply = server.handle(peer(8), Message(MessageType.GET_PROVIDERS, key=b"content"), 1.0)
    assert [p.peer for p in reply.provider_peers] == [peer(3)]
    assert reply.closer_peers


def test_request_without_key_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="without a key"):
        _server().handle(peer(1), Message(MessageType.FIND_NODE), 0.0)


def test_ping_is_answered() -> None:
    assert _server().handle(peer(1), Message(MessageType.PING), 0.0).type is MessageType.PING


def test_budget_refuses_a_flood_and_refills() -> None:
    server = _server(RequestBudget(burst=5, rate=1.0))
    ping = Message(MessageType.PING)
    for _ in range(5):
        server.handle(peer(1), ping, 0.0)
    with pytest.raises(OverBudgetError):
        server.handle(peer(1), ping, 0.0)
    server.handle(peer(2), ping, 0.0)  # another peer has its own budget
    server.handle(peer(1), ping, 1.0)  # one token back after a second


def test_budget_remembers_a_bounded_number_of_peers() -> None:
    budget = RequestBudget(burst=1, rate=0.0, max_peers=3)
    for n in range(10):
        budget.spend(peer(n), 0.0)
    budget.spend(peer(0), 0.0)  # forgotten, so a fresh budget
    with pytest.raises(OverBudgetError):
        budget.spend(peer(9), 0.0)
