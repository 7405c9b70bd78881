"""The k-bucket routing table: placement, closest peers, replacement rules."""

from __future__ import annotations

from p2pchat.protocols.kad.keyspace import distance, peer_key
from p2pchat.protocols.kad.routing import AddResult, RoutingTable

from .helpers import peer


def _table_with_full_bucket(k: int) -> tuple[RoutingTable, int, list[int]]:
    """A table of bucket size ``k`` whose bucket 0 is full; the ids used for bucket 0."""
    table = RoutingTable(peer(0), k=k)
    bucket0 = [n for n in range(1, 200) if table.bucket_index(peer(n)) == 0]
    for t, n in enumerate(bucket0[:k]):
        assert table.add(peer(n), float(t)).result is AddResult.ADDED
    return table, 0, bucket0


def test_peers_go_to_the_bucket_of_their_common_prefix() -> None:
    table = RoutingTable(peer(0))
    for n in range(1, 50):
        table.add(peer(n), 0.0)
    sizes = table.bucket_sizes()
    assert sum(sizes.values()) == len(table) == 49
    # About half of random peers differ from us in the first bit.
    assert 10 < sizes[0] <= 20


def test_self_is_never_added() -> None:
    table = RoutingTable(peer(0))
    assert table.add(peer(0), 0.0).result is AddResult.SELF
    assert len(table) == 0


def test_closest_is_sorted_by_xor_distance() -> None:
    table = RoutingTable(peer(0))
    for n in range(1, 60):
        table.add(peer(n), 0.0)
    target = peer_key(peer(999))
    got = table.closest(target, 20)
    everyone = sorted((peer(n) for n in range(1, 60)), key=lambda p: distance(peer_key(p), target))
    held = [p for p in everyone if p in table]
    assert got == held[:20]


def test_full_bucket_keeps_old_peers_and_names_the_oldest() -> None:
    table, _, bucket0 = _table_with_full_bucket(4)
    newcomer = peer(bucket0[4])
    added = table.add(newcomer, 10.0)
    assert added.result is AddResult.FULL
    assert added.oldest == peer(bucket0[0])
    assert newcomer not in table
    assert table.replacement_count() == 1


def test_a_failed_peer_is_replaced_by_the_newest_replacement() -> None:
    table, _, bucket0 = _table_with_full_bucket(4)
    table.add(peer(bucket0[4]), 10.0)
    table.add(peer(bucket0[5]), 11.0)
    promoted = table.failed(peer(bucket0[0]))
    assert promoted == peer(bucket0[5])
    assert peer(bucket0[5]) in table
    assert peer(bucket0[0]) not in table
    assert len(table) == 4


def test_seen_again_moves_a_peer_to_the_end() -> None:
    table, _, bucket0 = _table_with_full_bucket(4)
    assert table.add(peer(bucket0[0]), 20.0).result is AddResult.UPDATED
    added = table.add(peer(bucket0[4]), 21.0)
    assert added.oldest == peer(bucket0[1])


def test_replacement_cache_is_bounded() -> None:
    table, _, bucket0 = _table_with_full_bucket(2)
    for n in bucket0[2:12]:
        table.add(peer(n), 5.0)
    assert table.replacement_count() == 2


def test_stale_peers_are_reported() -> None:
    table = RoutingTable(peer(0))
    table.add(peer(1), 0.0)
    table.add(peer(2), 100.0)
    assert table.stale(now=150.0, max_age=60.0) == [peer(1)]
