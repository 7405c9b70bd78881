"""The DHT service's configuration, errors and snapshots (specs/kad.md): the plain data that
``discovery/kad.py`` runs on and that the node's configuration and ``p2pchat dht`` read.
"""

from __future__ import annotations

import attrs

from ..errors import P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..protocols import kad as core
from ..protocols.kad.lookup import DEFAULT_MAX_QUERIES
from ..protocols.kad.providers import PROVIDER_TTL, REPUBLISH_INTERVAL


class KadError(P2PChatError):
    """A DHT request failed: no connection, refused, malformed answer or timeout."""


@attrs.frozen
class KadConfig:
    """How the DHT service runs (specs/kad.md). ``mode`` is ``"server"`` or ``"client"``;
    the node's configuration resolves ``auto`` before this.

    Raises:
        ValueError: an unknown mode or a bound below 1 (on construction).
    """

    mode: str = attrs.field(default="server")
    bootstrap: tuple[Multiaddr, ...] = ()
    k: int = core.K_VALUE
    alpha: int = core.ALPHA
    max_queries: int = DEFAULT_MAX_QUERIES
    request_timeout: float = 10.0
    lookup_timeout: float = 60.0
    stream_idle_timeout: float = 60.0
    max_streams_per_peer: int = 32
    max_streams: int = 256
    refresh_interval: float = 10 * 60.0
    republish_interval: float = REPUBLISH_INTERVAL
    provider_ttl: float = PROVIDER_TTL

    @mode.validator
    def _check_mode(self, attribute: object, value: str) -> None:
        if value not in ("server", "client"):
            raise ValueError(f"kad mode is 'server' or 'client', not {value!r}")

    def __attrs_post_init__(self) -> None:
        if min(self.k, self.alpha, self.max_queries, self.max_streams_per_peer) < 1:
            raise ValueError("kad bounds must be at least 1")


@attrs.frozen
class KadStatistics:
    """A snapshot of the service (``p2pchat dht status``)."""

    mode: str
    routing_table_size: int
    buckets: dict[int, int]
    records: int
    providers: int
    provided_keys: int
    inbound_streams: int
    requests_sent: int
    requests_failed: int


@attrs.define
class LookupResult:
    """What a lookup found, and how it went (for benchmarks and ``p2pchat dht``)."""

    closest: list[PeerID]
    queries: int
    hops: int
