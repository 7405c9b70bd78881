"""The iterative lookup state machine, driven over a simulated network of routing tables."""

from __future__ import annotations

import pytest

from p2pchat.identity import PeerID
from p2pchat.protocols.kad.keyspace import distance, peer_key
from p2pchat.protocols.kad.lookup import Lookup, PeerState
from p2pchat.protocols.kad.routing import RoutingTable

from .helpers import peer


def _network(n: int, k: int = 20) -> dict[PeerID, RoutingTable]:
    ids = [peer(i) for i in range(n)]
    tables = {p: RoutingTable(p, k=k) for p in ids}
    for table in tables.values():
        for q in ids:
            table.add(q, 0.0)
    return tables


def _run(lookup: Lookup, tables: dict[PeerID, RoutingTable], dead: set[PeerID]) -> int:
    rounds = 0
    while not lookup.done:
        batch = lookup.next_queries()
        assert batch, "a lookup that is not done hands out work"
        assert lookup.in_flight <= lookup.alpha
        for q in batch:
            if q in dead:
                lookup.failed(q)
            else:
                lookup.answered(q, tables[q].closest(lookup.target, lookup.k))
        rounds += 1
        assert rounds < 1000
    return rounds


def _truth(target: bytes, ids: list[PeerID], k: int) -> list[PeerID]:
    return sorted(ids, key=lambda p: distance(peer_key(p), target))[:k]


def test_lookup_finds_the_k_closest() -> None:
    tables = _network(120, k=8)
    target = peer_key(peer(5000))
    start = peer(0)
    lookup = Lookup(target, tables[start].closest(target, 8), local=start, k=8)
    _run(lookup, tables, dead=set())
    ids = [p for p in tables if p != start]
    assert lookup.closest() == _truth(target, ids, 8)


def test_lookup_routes_around_dead_peers() -> None:
    tables = _network(120, k=8)
    target = peer_key(peer(5001))
    start = peer(0)
    dead = set(_truth(target, list(tables), 3))
    lookup = Lookup(target, tables[start].closest(target, 8), local=start, k=8)
    _run(lookup, tables, dead)
    live = [p for p in tables if p != start and p not in dead]
    # Answers of k entries spend 3 on the dead: the 5 closest live peers are found for sure.
    assert lookup.closest()[:5] == _truth(target, live, 5)
    assert len(lookup.closest()) == 8
    assert all(lookup.state(p) is PeerState.FAILED for p in dead if lookup.knows(p))


def test_at_most_alpha_in_flight() -> None:
    lookup = Lookup(peer_key(peer(1)), [peer(n) for n in range(2, 30)], alpha=3)
    first = lookup.next_queries()
    assert len(first) == 3
    assert lookup.next_queries() == []
    lookup.failed(first[0])
    assert len(lookup.next_queries()) == 1


def test_lookup_is_bounded_by_max_queries() -> None:
    # Every answer names brand-new peers: without the bound this would never end.
    counter = iter(range(10_000, 100_000))
    lookup = Lookup(peer_key(peer(1)), [peer(2)], max_queries=15)
    while not lookup.done:
        for q in lookup.next_queries():
            lookup.answered(q, [peer(next(counter)) for _ in range(5)])
    assert lookup.queries == 15


def test_finish_stops_handing_out_queries() -> None:
    lookup = Lookup(peer_key(peer(1)), [peer(n) for n in range(2, 10)])
    batch = lookup.next_queries()
    lookup.finish()
    assert lookup.next_queries() == []
    assert not lookup.done
    for q in batch:
        lookup.answered(q, [])
    assert lookup.done


def test_hops_count_from_the_seeds() -> None:
    lookup = Lookup(peer_key(peer(1)), [peer(2)], local=peer(0))
    (q,) = lookup.next_queries()
    lookup.answered(q, [peer(3), peer(0)])
    assert lookup.hop(peer(2)) == 1
    assert lookup.hop(peer(3)) == 2
    assert not lookup.knows(peer(0))


def test_reporting_an_unasked_peer_is_an_error() -> None:
    lookup = Lookup(peer_key(peer(1)), [peer(2)])
    with pytest.raises(ValueError, match="not awaited"):
        lookup.answered(peer(2), [])


def test_an_empty_lookup_is_done() -> None:
    assert Lookup(peer_key(peer(1)), []).done
