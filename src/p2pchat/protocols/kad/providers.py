"""Provider records: who provides a key, until when. Bounded, no clock.

kad-dht/README.md "Content provider advertisement and discovery": a provider announces itself
with ADD_PROVIDER; records expire after ``ttl`` (go-libp2p: 48 h; the provider republishes
every 22 h). specs/kad.md "Limits": at most :data:`MAX_PROVIDER_KEYS` keys, and at most
:data:`MAX_PROVIDERS_PER_KEY` providers per key (the longest-lived are kept).
"""

from __future__ import annotations

from typing import Final

import attrs

from ...identity import PeerID
from ...multiaddr import Multiaddr

PROVIDER_TTL: Final = 48 * 3600.0
REPUBLISH_INTERVAL: Final = 22 * 3600.0
MAX_PROVIDER_KEYS: Final = 4096
MAX_PROVIDERS_PER_KEY: Final = 20
MAX_PROVIDER_ADDRS: Final = 8


@attrs.frozen
class Provider:
    """One provider of a key, with the addresses it gave and when it expires."""

    peer: PeerID
    addrs: tuple[Multiaddr, ...]
    expires: float


class ProviderStore:
    """Providers by key (the raw DHT key bytes)."""

    def __init__(
        self,
        *,
        ttl: float = PROVIDER_TTL,
        max_keys: int = MAX_PROVIDER_KEYS,
        max_per_key: int = MAX_PROVIDERS_PER_KEY,
    ) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self.max_per_key = max_per_key
        self._by_key: dict[bytes, dict[PeerID, Provider]] = {}

    def __len__(self) -> int:
        return sum(len(p) for p in self._by_key.values())

    def add(self, key: bytes, peer: PeerID, addrs: tuple[Multiaddr, ...], now: float) -> bool:
        """Record ``peer`` as a provider of ``key`` until ``now + ttl``; False if refused
        because the store is full of other keys."""
        providers = self._by_key.get(key)
        if providers is None:
            if len(self._by_key) >= self.max_keys:
                self.expire(now)
                if len(self._by_key) >= self.max_keys:
                    return False
            providers = self._by_key[key] = {}
        providers[peer] = Provider(peer, addrs[:MAX_PROVIDER_ADDRS], now + self.ttl)
        if len(providers) > self.max_per_key:
            oldest = min(providers.values(), key=lambda p: p.expires)
            del providers[oldest.peer]
        return True

    def get(self, key: bytes, now: float) -> list[Provider]:
        """Unexpired providers of ``key``, longest-lived first."""
        providers = self._by_key.get(key)
        if not providers:
            return []
        live = {p: v for p, v in providers.items() if v.expires > now}
        if live:
            self._by_key[key] = live
        else:
            del self._by_key[key]
        return sorted(live.values(), key=lambda p: p.expires, reverse=True)

    def expire(self, now: float) -> int:
        """Drop expired records; how many went."""
        gone = 0
        for key in list(self._by_key):
            before = len(self._by_key[key])
            gone += before - len(self.get(key, now))
        return gone
