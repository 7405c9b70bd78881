"""Automatic reservations: while AutoNAT says we are private, hold reservations on relays we
find by ourselves (specs/relay.md "Automatic reservations").

Theory of operation
-------------------
:class:`AutoRelay` follows :class:`~p2pchat.net.autonat.AutoNAT`. While the verdict is private,
every :attr:`AutoRelayConfig.check_interval` seconds (and at once when the verdict changes) it
tops the client's reservations up to :attr:`AutoRelayConfig.max_relays`: the relays of
``[relay] reserve`` count first (the client holds those in any case), then it tries relays the
peer store knows (peers whose identify lists the hop protocol, connected ones first), then
providers of :data:`RELAY_KEY` found through the DHT (one lookup at most every
:attr:`AutoRelayConfig.dht_interval` seconds). A relay that refuses or cannot be reached is not
tried again for :data:`~p2pchat.net.relay.RETRY_INTERVAL` seconds. Reservations it made are
refreshed before they expire and made again on a relay whose connection was lost; when the
verdict is public again, the reservations it made are dropped (circuit v2 has no cancel: we stop
advertising them and let them expire). Every wait is bounded; the task lives in the nursery of
whoever runs :meth:`AutoRelay.run`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

import attrs
import trio

from ..errors import P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..protocols import relay as core
from ..protocols.autonat import ReachabilityStatus
from .relay import RETRY_INTERVAL, RelayClient, RelayError

logger = logging.getLogger(__name__)

#: The DHT key whose providers are relays (a relay with the DHT provides it).
RELAY_KEY: Final = b"/p2pchat/relay/v2"
#: Seconds for which a relay found in the DHT stays in the peer store.
DHT_ADDR_TTL: Final = 3600.0

#: Finds relay candidates through the DHT: (peer, addresses) pairs.
RelayFinder = Callable[[], Awaitable[Sequence[tuple[PeerID, Sequence[Multiaddr]]]]]


class Reachability(Protocol):
    """What AutoRelay follows (:class:`~p2pchat.net.autonat.AutoNAT`)."""

    @property
    def status(self) -> ReachabilityStatus: ...

    async def wait_status_changed(self) -> None: ...


@attrs.frozen
class AutoRelayConfig:
    #: Reservations to hold while private, counting those of ``[relay] reserve``.
    max_relays: int = 2
    #: Seconds between two checks while private.
    check_interval: float = 60.0
    #: Relays tried (reserve requests made) in one check, at most.
    max_attempts: int = 8
    #: Seconds between two DHT lookups for relays.
    dht_interval: float = 600.0


class AutoRelay:
    """Made by ``app/internet.py``; run :meth:`run` in a nursery."""

    def __init__(
        self,
        client: RelayClient,
        autonat: Reachability,
        config: AutoRelayConfig | None = None,
        *,
        configured: Sequence[Multiaddr] = (),
        find_relays: RelayFinder | None = None,
    ) -> None:
        self.client = client
        self.host = client.host
        self.autonat = autonat
        self.config = config if config is not None else AutoRelayConfig()
        self.configured = tuple(configured)
        self.find_relays = find_relays
        #: Relays this task reserved on (not those of ``[relay] reserve``).
        self.ours: set[PeerID] = set()
        self._not_before: dict[PeerID, float] = {}
        self._next_lookup = 0.0
        self.checked = trio.Event()  # set after each check (for tests)

    async def run(self) -> None:
        """Follow AutoNAT until cancelled."""
        while True:
            if self.autonat.status is ReachabilityStatus.PRIVATE:
                await self.check()
                with trio.move_on_after(self.config.check_interval):
                    await self.autonat.wait_status_changed()
            else:
                self.drop()
                self._signal()
                await self.autonat.wait_status_changed()

    def _signal(self) -> None:
        self.checked.set()
        self.checked = trio.Event()

    def _held(self) -> set[PeerID]:
        return {h.relay for h in self.client.reservations()}

    async def check(self) -> None:
        """Refresh our reservations that need it, then top up to ``max_relays``."""
        now = time.time()
        # Only relays still in their retry pause are remembered: at most max_attempts per check.
        self._not_before = {p: t for p, t in self._not_before.items() if t > now}
        due = set(self.client.book.due(now))
        attempts = self.config.max_attempts
        for relay in sorted(self.ours, key=str):
            lost = self.host.connection(relay) is None
            if relay not in due and not lost and relay in self._held():
                continue
            attempts -= 1
            if not await self._reserve(relay, now):
                self.ours.discard(relay)
                self.client.book.drop(relay)
                self.host.unprotect(relay)
        for relay in self._known_candidates(now):
            if attempts <= 0 or len(self._held()) >= self.config.max_relays:
                break
            attempts -= 1
            if await self._reserve(relay, now):
                self.ours.add(relay)
        if len(self._held()) < self.config.max_relays and attempts > 0:
            for relay in await self._dht_candidates(now):
                if attempts <= 0 or len(self._held()) >= self.config.max_relays:
                    break
                attempts -= 1
                if await self._reserve(relay, now):
                    self.ours.add(relay)
        self.client._advertise()
        self._signal()

    async def _reserve(self, relay: PeerID, now: float) -> bool:
        try:
            await self.client.reserve(relay)
        except RelayError as exc:
            logger.info("automatic reservation: %s", exc)
            self._not_before[relay] = now + RETRY_INTERVAL
            return False
        return True

    def _usable(self, peer: PeerID, now: float, held: set[PeerID]) -> bool:
        return (
            peer != self.host.peer_id
            and peer not in held
            and self._not_before.get(peer, 0.0) <= now
        )

    def _known_candidates(self, now: float) -> list[PeerID]:
        """Peers that speak hop: connected ones first, then others with an address."""
        store = self.host.peer_store
        held = self._held()
        configured = {a.peer_id for a in self.configured}
        hop = [
            p
            for p in store.peers()
            if core.HOP_PROTOCOL in store.protocols(p)
            and p not in configured
            and self._usable(p, now, held)
        ]
        connected = set(self.host.connected_peers())
        return [p for p in hop if p in connected] + [
            p for p in hop if p not in connected and store.addrs(p, now)
        ]

    async def _dht_candidates(self, now: float) -> list[PeerID]:
        if self.find_relays is None or now < self._next_lookup:
            return []
        self._next_lookup = now + self.config.dht_interval
        try:
            found = await self.find_relays()
        except P2PChatError as exc:
            logger.info("automatic reservation: DHT lookup for relays failed: %s", exc)
            return []
        held = self._held()
        out = []
        for peer, addrs in found:
            if not self._usable(peer, now, held) or not addrs:
                continue
            self.host.peer_store.add_addrs(peer, addrs, DHT_ADDR_TTL, now)
            out.append(peer)
        return out

    def drop(self) -> None:
        """Forget the reservations this task made and stop advertising them."""
        if not self.ours:
            return
        for relay in self.ours:
            self.client.book.drop(relay)
            self.host.unprotect(relay)
        logger.info("public again: dropped %d automatic reservations", len(self.ours))
        self.ours.clear()
        self.client._advertise()
