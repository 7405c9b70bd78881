"""The iterative Kademlia lookup, as a state machine with no I/O and no clock.

kad-dht/README.md "Peer routing": keep the closest peers known to the target, query up to
``alpha`` of the closest not yet queried at a time, merge what they answer, and stop when the
``k`` closest peers known have all answered.

Theory of operation
-------------------
Every peer the lookup knows is in one state::

    HEARD -> WAITING -> ANSWERED
                     -> FAILED

:meth:`Lookup.next_queries` moves the closest HEARD peers to WAITING, as many as keep
``alpha`` in flight, and hands them to the caller, who sends the request (FIND_NODE,
GET_PROVIDERS, GET_VALUE: the lookup does not care) and reports back with
:meth:`Lookup.answered` (with the peers the answer names) or :meth:`Lookup.failed` (an error, a
timeout: the adapter owns time). The lookup is **done** when

* the ``k`` closest peers that have not failed have all ANSWERED (the spec's rule), or
* no peer is HEARD or WAITING (nothing left to ask), or
* ``max_queries`` requests have been handed out and none is in flight (the bound that keeps a
  lookup finite against peers that invent ever-new closer peers), or
* the caller called :meth:`Lookup.finish` (it found what it wanted: the peer, enough providers).

Bounds: at most ``max_queries`` requests; at most ``max_candidates`` HEARD peers are kept (the
farthest are forgotten first: they would never be asked anyway). Each peer's **hop** is one
more than the hop of the peer that named it (seeds are hop 1), so the caller can report how many
hops a lookup took.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from ...identity import PeerID
from .keyspace import peer_key
from .routing import K_VALUE

#: kad-dht/README.md: "alpha = 3" concurrent requests.
ALPHA = 3
DEFAULT_MAX_QUERIES = 200


class PeerState(enum.Enum):
    HEARD = "heard"
    WAITING = "waiting"
    ANSWERED = "answered"
    FAILED = "failed"


@attrs.define
class _Candidate:
    peer: PeerID
    distance: int
    hop: int
    state: PeerState = PeerState.HEARD


class Lookup:
    """An iterative lookup of the keyspace point ``target`` (see the module docstring).

    Raises:
        ValueError: ``k``, ``alpha`` or ``max_queries`` below 1 (on construction).
    """

    def __init__(
        self,
        target: bytes,
        seeds: Iterable[PeerID],
        *,
        local: PeerID | None = None,
        k: int = K_VALUE,
        alpha: int = ALPHA,
        max_queries: int = DEFAULT_MAX_QUERIES,
        max_candidates: int | None = None,
    ) -> None:
        if k < 1 or alpha < 1 or max_queries < 1:
            raise ValueError("k, alpha and max_queries must be at least 1")
        self.target = target
        self._target_int = int.from_bytes(target, "big")
        self.k = k
        self.alpha = alpha
        self.max_queries = max_queries
        self.max_candidates = max_candidates if max_candidates is not None else 4 * k
        self._local = local
        self._peers: dict[PeerID, _Candidate] = {}
        self._in_flight = 0
        self.queries = 0
        self._finished = False
        self._learn(seeds, hop=1)

    # -- input -----------------------------------------------------------------------------

    def _learn(self, peers: Iterable[PeerID], hop: int) -> None:
        for peer in peers:
            if peer == self._local or peer in self._peers:
                continue
            d = int.from_bytes(peer_key(peer), "big") ^ self._target_int
            self._peers[peer] = _Candidate(peer, d, hop)
        heard = [c for c in self._peers.values() if c.state is PeerState.HEARD]
        if len(heard) > self.max_candidates:
            heard.sort(key=lambda c: c.distance)
            for c in heard[self.max_candidates :]:
                del self._peers[c.peer]

    def answered(self, peer: PeerID, closer: Iterable[PeerID]) -> None:
        """``peer`` answered, naming ``closer`` peers.

        Raises:
            ValueError: ``peer`` was not queried by this lookup (or already reported).
        """
        candidate = self._waiting(peer)
        candidate.state = PeerState.ANSWERED
        self._in_flight -= 1
        if not self._finished:
            self._learn(closer, hop=candidate.hop + 1)

    def failed(self, peer: PeerID) -> None:
        """``peer`` did not answer usefully (error, refusal, timeout).

        Raises:
            ValueError: ``peer`` was not queried by this lookup (or already reported).
        """
        self._waiting(peer).state = PeerState.FAILED
        self._in_flight -= 1

    def finish(self) -> None:
        """Stop handing out queries: the caller has what it wanted."""
        self._finished = True

    def _waiting(self, peer: PeerID) -> _Candidate:
        candidate = self._peers.get(peer)
        if candidate is None or candidate.state is not PeerState.WAITING:
            raise ValueError(f"{peer} is not awaited by this lookup")
        return candidate

    # -- output ----------------------------------------------------------------------------

    def _closest_live(self) -> list[_Candidate]:
        live = [c for c in self._peers.values() if c.state is not PeerState.FAILED]
        live.sort(key=lambda c: c.distance)
        return live[: self.k]

    def _converged(self) -> bool:
        closest = self._closest_live()
        return all(c.state is PeerState.ANSWERED for c in closest)

    def next_queries(self) -> list[PeerID]:
        """Peers to query now (each becomes WAITING); empty if none should be asked yet."""
        if self._finished or self._converged():
            return []
        out: list[PeerID] = []
        budget = min(self.alpha - self._in_flight, self.max_queries - self.queries)
        if budget <= 0:
            return out
        # Only peers among the k closest live ones are worth asking (the rest cannot improve
        # the result once those have answered).
        for candidate in self._closest_live():
            if len(out) == budget:
                break
            if candidate.state is PeerState.HEARD:
                candidate.state = PeerState.WAITING
                out.append(candidate.peer)
        self._in_flight += len(out)
        self.queries += len(out)
        return out

    @property
    def in_flight(self) -> int:
        """Queries handed out and not yet reported."""
        return self._in_flight

    @property
    def done(self) -> bool:
        """True once no query is in flight and none will be handed out (see the module doc)."""
        if self._in_flight:
            return False
        if self._finished or self.queries >= self.max_queries:
            return True
        if self._converged():
            return True
        return not any(c.state is PeerState.HEARD for c in self._closest_live())

    def closest(self, count: int | None = None) -> list[PeerID]:
        """The closest peers that answered, closest first (``k`` unless ``count``)."""
        answered = [c for c in self._peers.values() if c.state is PeerState.ANSWERED]
        answered.sort(key=lambda c: c.distance)
        return [c.peer for c in answered[: count if count is not None else self.k]]

    def knows(self, peer: PeerID) -> bool:
        """True if ``peer`` was named by a seed or an answer (and not forgotten)."""
        return peer in self._peers

    def hop(self, peer: PeerID) -> int | None:
        """The hop at which ``peer`` was learned (seeds: 1), if known."""
        candidate = self._peers.get(peer)
        return candidate.hop if candidate is not None else None

    def state(self, peer: PeerID) -> PeerState | None:
        """Where ``peer`` stands in this lookup, if known."""
        candidate = self._peers.get(peer)
        return candidate.state if candidate is not None else None
