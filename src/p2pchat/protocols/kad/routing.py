"""The Kademlia routing table: k-buckets by common prefix length, with replacement rules.

kad-dht/README.md "Kademlia routing table": peers go to the bucket indexed by the number of
leading bits their key shares with ours; each bucket holds at most ``k`` (20) peers.

Theory of operation
-------------------
Plain data and no clock: callers pass ``now``. A bucket is ordered least recently seen first.

* :meth:`RoutingTable.add` of a peer already held moves it to the end (seen now).
* A new peer goes in if its bucket has room.
* Into a full bucket, a new peer is not let in at once (Kademlia prefers old peers, which are
  likelier to stay up): it waits in the bucket's **replacement cache** (at most ``k``, newest
  kept) and ``add`` returns :data:`AddResult.FULL` with the bucket's least recently seen peer,
  which the caller should check (a kad PING or any query). A peer that fails (the caller calls
  :meth:`RoutingTable.failed`) is dropped and the most recently seen replacement takes its place.
* :meth:`RoutingTable.remove` drops a peer without a replacement check (e.g. it left server mode).

Only peers that serve the DHT (server mode) belong here; the service decides that.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

import attrs

from ...identity import PeerID
from .keyspace import KEY_BITS, common_prefix_length, distance, peer_key

#: kad-dht/README.md: "k = 20".
K_VALUE = 20


class AddResult(enum.Enum):
    """What :meth:`RoutingTable.add` did."""

    ADDED = "added"
    UPDATED = "updated"
    #: The bucket is full: the peer waits in the replacement cache; check ``oldest``.
    FULL = "full"
    #: Our own id, never added.
    SELF = "self"


@attrs.define
class Entry:
    """One peer in a bucket."""

    peer: PeerID
    key: bytes
    last_seen: float


@attrs.frozen
class Added:
    """The result of :meth:`RoutingTable.add`: what happened and, if FULL, whom to check."""

    result: AddResult
    oldest: PeerID | None = None


@attrs.define
class _Bucket:
    entries: list[Entry] = attrs.Factory(list)
    replacements: list[Entry] = attrs.Factory(list)


class RoutingTable:
    """k-buckets around ``local``. Not thread-safe."""

    def __init__(self, local: PeerID, k: int = K_VALUE) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.local = local
        self.local_key = peer_key(local)
        self.k = k
        #: Buckets by index, made when first needed (most stay empty).
        self._buckets: dict[int, _Bucket] = {}
        self._where: dict[PeerID, int] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, peer: object) -> bool:
        return peer in self._where

    def __iter__(self) -> Iterator[PeerID]:
        return iter(list(self._where))

    def bucket_index(self, peer: PeerID) -> int:
        """The bucket ``peer`` belongs in (its common prefix length with us, at most 255)."""
        return min(common_prefix_length(self.local_key, peer_key(peer)), KEY_BITS - 1)

    def add(self, peer: PeerID, now: float) -> Added:
        """Note that ``peer`` (a DHT server) answered or contacted us at ``now``."""
        if peer == self.local:
            return Added(AddResult.SELF)
        index = self._where.get(peer)
        if index is not None:
            bucket = self._buckets[index]
            for i, entry in enumerate(bucket.entries):
                if entry.peer == peer:
                    entry.last_seen = now
                    bucket.entries.append(bucket.entries.pop(i))
                    break
            return Added(AddResult.UPDATED)
        index = self.bucket_index(peer)
        bucket = self._buckets.setdefault(index, _Bucket())
        entry = Entry(peer, peer_key(peer), now)
        if len(bucket.entries) < self.k:
            bucket.entries.append(entry)
            self._where[peer] = index
            return Added(AddResult.ADDED)
        bucket.replacements = [e for e in bucket.replacements if e.peer != peer]
        bucket.replacements.append(entry)
        del bucket.replacements[: -self.k]
        return Added(AddResult.FULL, bucket.entries[0].peer)

    def failed(self, peer: PeerID) -> PeerID | None:
        """``peer`` did not answer: drop it; the newest replacement, if any, takes its place
        (and is returned)."""
        index = self._where.pop(peer, None)
        if index is None:
            for bucket in self._buckets.values():
                bucket.replacements = [e for e in bucket.replacements if e.peer != peer]
            return None
        bucket = self._buckets[index]
        bucket.entries = [e for e in bucket.entries if e.peer != peer]
        if bucket.replacements:
            promoted = bucket.replacements.pop()
            bucket.entries.append(promoted)
            self._where[promoted.peer] = index
            return promoted.peer
        return None

    def remove(self, peer: PeerID) -> None:
        """Drop ``peer`` (and from any replacement cache)."""
        self.failed(peer)

    def closest(self, key: bytes, count: int) -> list[PeerID]:
        """The ``count`` peers closest to the keyspace point ``key``, closest first."""
        target = int.from_bytes(key, "big")
        entries = [e for b in self._buckets.values() for e in b.entries]
        entries.sort(key=lambda e: int.from_bytes(e.key, "big") ^ target)
        return [e.peer for e in entries[:count]]

    def stale(self, now: float, max_age: float) -> list[PeerID]:
        """Peers not seen for ``max_age`` seconds (to be checked by the caller)."""
        return [
            e.peer for b in self._buckets.values() for e in b.entries if now - e.last_seen > max_age
        ]

    def bucket_sizes(self) -> dict[int, int]:
        """``{common prefix length: peers}`` for the non-empty buckets."""
        return {i: len(b.entries) for i, b in sorted(self._buckets.items()) if b.entries}

    def replacement_count(self) -> int:
        """Peers waiting in replacement caches."""
        return sum(len(b.replacements) for b in self._buckets.values())

    def distance_to(self, peer: PeerID) -> int:
        """XOR distance from us to ``peer``."""
        return distance(self.local_key, peer_key(peer))
