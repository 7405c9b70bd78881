"""The answering side of the DHT, sans-IO: one request in, one response out.

kad-dht/README.md "RPC messages" says what each request asks; specs/kad.md "Server" says what
we answer:

* ``FIND_NODE key``: the ``k`` closest servers we know to ``key`` (with addresses), the target
  itself first if we know where it is (the FIND_PEER exception of the spec), never the asker.
* ``GET_VALUE key``: the record if we hold it, and closer peers.
* ``PUT_VALUE key record``: validated, stored, the request echoed.
* ``ADD_PROVIDER key providerPeers``: entries naming the sender are stored (others ignored);
  the request is echoed (go-libp2p does not answer, py-libp2p echoes; both read it).
* ``GET_PROVIDERS key``: the providers held, and closer peers.
* ``PING``: answered with PING (deprecated, still served).

A peer may spend :data:`REQUEST_BURST` requests at once and :data:`REQUEST_RATE` per second
after that (:class:`RequestBudget`); beyond it the request is refused with
:class:`OverBudgetError` and the adapter resets the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import attrs

from ...errors import DecodeError, RemoteProtocolError
from ...identity import PeerID
from ...multiaddr import Multiaddr
from .keyspace import kad_key
from .messages import ConnectionType, KadPeer, Message, MessageType, Record
from .providers import ProviderStore
from .records import RecordStore
from .routing import RoutingTable

REQUEST_BURST: Final = 64
REQUEST_RATE: Final = 8.0
#: Peers whose budget is remembered; the least recently active are forgotten beyond this.
MAX_BUDGET_PEERS: Final = 1024


class OverBudgetError(RemoteProtocolError):
    """A peer sent more requests than its budget allows."""


class RequestBudget:
    """A token bucket per peer (no clock: callers pass ``now``)."""

    def __init__(
        self,
        *,
        burst: int = REQUEST_BURST,
        rate: float = REQUEST_RATE,
        max_peers: int = MAX_BUDGET_PEERS,
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.max_peers = max_peers
        self._tokens: dict[PeerID, tuple[float, float]] = {}

    def spend(self, peer: PeerID, now: float) -> None:
        """Charge one request to ``peer``.

        Raises:
            OverBudgetError: ``peer`` has no request left.
        """
        tokens, since = self._tokens.pop(peer, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - since) * self.rate)
        if tokens < 1.0:
            self._tokens[peer] = (tokens, now)
            raise OverBudgetError(f"{peer} is over its request budget", hint="over budget")
        self._tokens[peer] = (tokens - 1.0, now)  # re-inserted: most recently active last
        while len(self._tokens) > self.max_peers:
            del self._tokens[next(iter(self._tokens))]


AddrsOf = Callable[[PeerID], Sequence[Multiaddr]]


@attrs.define
class KadServer:
    """Answers DHT requests from the routing table and the stores it is given."""

    local: PeerID
    table: RoutingTable
    records: RecordStore
    providers: ProviderStore
    #: Where a peer can be reached (the host's peer store; our own listen addresses for us).
    addrs_of: AddrsOf
    budget: RequestBudget = attrs.Factory(RequestBudget)

    def _peer(self, peer: PeerID) -> KadPeer:
        return KadPeer(peer, tuple(self.addrs_of(peer)), ConnectionType.NOT_CONNECTED)

    def closer_peers(self, key: bytes, asker: PeerID, *, find_peer: bool) -> tuple[KadPeer, ...]:
        """The ``k`` closest servers to ``key`` that have addresses, never ``asker``."""
        out: list[KadPeer] = []
        if find_peer:
            try:
                target = PeerID.from_bytes(key)
            except DecodeError:
                target = None
            if target is not None and target != asker:
                entry = self._peer(target)
                if entry.addrs:
                    out.append(entry)
        for peer in self.table.closest(kad_key(key), self.table.k + 1):
            if peer == asker or any(p.peer == peer for p in out):
                continue
            entry = self._peer(peer)
            if entry.addrs:
                out.append(entry)
            if len(out) >= self.table.k:
                break
        return tuple(out)

    def handle(self, sender: PeerID, request: Message, now: float) -> Message:
        """The response to ``request`` from ``sender``.

        Raises:
            OverBudgetError: ``sender`` is over its request budget.
            RemoteProtocolError: a malformed request (no key, a record under another key,
                an invalid record); the adapter resets the stream and logs the hint.
        """
        self.budget.spend(sender, now)
        kind = request.type
        if kind is MessageType.PING:
            return Message(MessageType.PING)
        if not request.key:
            raise RemoteProtocolError(f"{kind.name} without a key", hint="kad request without key")
        key = request.key
        if kind is MessageType.FIND_NODE:
            return Message(
                kind, key=key, closer_peers=self.closer_peers(key, sender, find_peer=True)
            )
        if kind is MessageType.GET_VALUE:
            value = self.records.get(key, now)
            record = Record(key, value) if value is not None else None
            closer = self.closer_peers(key, sender, find_peer=False)
            return Message(kind, key=key, record=record, closer_peers=closer)
        if kind is MessageType.PUT_VALUE:
            record = request.record
            if record is None or record.key != key:
                raise RemoteProtocolError("PUT_VALUE record under another key", hint="bad put")
            self.records.put(key, record.value, now)  # raises InvalidRecordError
            return request
        if kind is MessageType.ADD_PROVIDER:
            for entry in request.provider_peers:
                if entry.peer != sender:
                    continue  # a peer announces only itself
                addrs = entry.addrs or tuple(self.addrs_of(sender))
                self.providers.add(key, sender, addrs, now)
            return Message(kind, key=key)
        # GET_PROVIDERS
        providers = tuple(
            KadPeer(p.peer, p.addrs or tuple(self.addrs_of(p.peer)))
            for p in self.providers.get(key, now)
        )
        closer = self.closer_peers(key, sender, find_peer=False)
        return Message(kind, key=key, provider_peers=providers, closer_peers=closer)
