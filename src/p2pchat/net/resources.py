"""The resource manager: how many connections and handshakes a Host holds, and for whom.

Theory of operation
-------------------
In the manner of go-libp2p's resource manager, every connection is charged to nested scopes and
admitted only if each has room (specs/host.md "Resource limits"):

* **system**: all connections (``max_connections``); inbound connections may fill all but
  ``reserved_slots`` of it, which are kept for our own dials and for protected peers;
* **transient**: inbound handshakes in flight (``max_handshakes``), charged at accept, before any
  cryptography, and released when the upgrade ends either way;
* **per IP**: inbound connections (``max_inbound_per_ip``) and handshakes in flight
  (``max_handshakes_per_ip``) from one remote address;
* **per peer**: connections with one authenticated peer (``max_per_peer``).

When the system scope is full, a newcomer may take the slot of the least useful *unprotected
inbound* connection, which is then evicted (an inbound newcomer only that of one older than
``eviction_grace``, so that newcomers cannot churn each other out): first one from the address
holding the most connections, then the one with the fewest open streams, then the oldest. A
peer that floods us from one address thus pays for our honest newcomers; a protected peer
(``protect``) is never evicted. A refusal raises :class:`ResourceLimitError` naming the scope,
which the Host logs.

The manager is synchronous bookkeeping and owns no task; the Host closes the evicted connection
in its own nursery. Connections are opaque hashable keys to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from typing import Final, NoReturn

import attrs

from ..errors import P2PChatError
from ..identity import PeerID

DEFAULT_MAX_CONNECTIONS: Final = 256
DEFAULT_MAX_INBOUND_PER_IP: Final = 16
DEFAULT_MAX_PER_PEER: Final = 4
DEFAULT_MAX_HANDSHAKES: Final = 64
DEFAULT_MAX_HANDSHAKES_PER_IP: Final = 8
DEFAULT_RESERVED_SLOTS: Final = 32
DEFAULT_EVICTION_GRACE: Final = 10.0
DEFAULT_MAX_NEGOTIATING_PER_PEER: Final = 8
DEFAULT_MAX_STREAMS_PER_PROTOCOL: Final = 64


class ResourceLimitError(P2PChatError):
    """A connection or handshake was refused: a scope is full. ``scope`` names it."""

    def __init__(self, msg: str, *, scope: str) -> None:
        super().__init__(msg)
        self.scope = scope


@attrs.frozen
class ResourceLimits:
    """The limits of each scope; the defaults are those of specs/host.md.

    Raises:
        ValueError: a limit below 1, a negative reserve or grace period.
    """

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_inbound_per_ip: int = DEFAULT_MAX_INBOUND_PER_IP
    max_per_peer: int = DEFAULT_MAX_PER_PEER
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES
    max_handshakes_per_ip: int = DEFAULT_MAX_HANDSHAKES_PER_IP
    #: System slots inbound connections from unprotected peers may not take (at most half).
    reserved_slots: int = DEFAULT_RESERVED_SLOTS
    #: Seconds during which a new inbound connection cannot be evicted by an inbound newcomer
    #: (our own dials and protected peers may still take its slot).
    eviction_grace: float = DEFAULT_EVICTION_GRACE
    #: A peer's inbound streams negotiating that had sent nothing when taken up (silent).
    max_negotiating_per_peer: int = DEFAULT_MAX_NEGOTIATING_PER_PEER
    #: A peer's inbound streams of one protocol, unless its handler sets its own cap.
    max_streams_per_protocol: int = DEFAULT_MAX_STREAMS_PER_PROTOCOL

    def __attrs_post_init__(self) -> None:
        for name in (
            "max_connections",
            "max_inbound_per_ip",
            "max_per_peer",
            "max_handshakes",
            "max_handshakes_per_ip",
            "max_negotiating_per_peer",
            "max_streams_per_protocol",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.reserved_slots < 0:
            raise ValueError("reserved_slots must be >= 0")
        if not self.eviction_grace >= 0:
            raise ValueError("eviction_grace must be >= 0")

    @property
    def max_inbound(self) -> int:
        """Connections inbound ones from unprotected peers may fill."""
        return self.max_connections - min(self.reserved_slots, self.max_connections // 2)


@attrs.frozen
class ResourceUsage:
    """A snapshot of what the Host holds, and of what it refused and evicted so far."""

    connections: int
    inbound: int
    outbound: int
    handshakes: int
    remote_ips: int
    peers: int
    protected_peers: int
    refused: int
    evicted: int
    limits: ResourceLimits


@attrs.define
class _Entry:
    peer: PeerID
    ip: str | None
    outbound: bool
    seq: int
    opened_at: float


@attrs.define(eq=False)
class HandshakeSlot:
    """An inbound handshake charged to the transient and per-IP scopes; release it once."""

    ip: str
    released: bool = False


class ResourceManager:
    """Charges connections and handshakes to their scopes. See the module's theory."""

    def __init__(self, limits: ResourceLimits | None = None) -> None:
        self.limits: Final = limits if limits is not None else ResourceLimits()
        self._conns: dict[Hashable, _Entry] = {}
        self._inbound = 0
        self._inbound_by_ip: Counter[str] = Counter()
        self._by_peer: Counter[PeerID] = Counter()
        self._handshakes = 0
        self._handshakes_by_ip: Counter[str] = Counter()
        self._protected: set[PeerID] = set()
        self._seq = 0
        self._refused = 0
        self._evicted = 0

    # -- protection ----------------------------------------------------------------------------

    def protect(self, peer: PeerID) -> None:
        """Never evict ``peer``'s connections, and let it use the reserved slots."""
        self._protected.add(peer)

    def unprotect(self, peer: PeerID) -> None:
        """Undo :meth:`protect` (a no-op for a peer not protected)."""
        self._protected.discard(peer)

    def is_protected(self, peer: PeerID) -> bool:
        """True if ``peer`` is protected."""
        return peer in self._protected

    # -- handshakes ----------------------------------------------------------------------------

    def open_handshake(self, ip: str, *, now: float) -> HandshakeSlot:
        """Charge an inbound connection that was just accepted from ``ip``, before any crypto.

        ``now`` is the time in seconds on the clock the Host uses (for the grace period).

        Raises:
            ResourceLimitError: too many handshakes in flight (in all, or from ``ip``), or ``ip``
                already holds its share of inbound connections, or every inbound slot is taken
                by connections that cannot be evicted.
        """
        limits = self.limits
        if self._handshakes >= limits.max_handshakes:
            self._refuse(f"{self._handshakes} handshakes in flight", "transient")
        if self._handshakes_by_ip[ip] >= limits.max_handshakes_per_ip:
            self._refuse(f"{self._handshakes_by_ip[ip]} handshakes in flight from {ip}", "ip")
        if self._inbound_by_ip[ip] >= limits.max_inbound_per_ip:
            self._refuse(f"{self._inbound_by_ip[ip]} inbound connections from {ip}", "ip")
        pending = self._inbound + self._handshakes
        if pending >= limits.max_inbound and not self._evictable(now, newcomer_inbound=True):
            self._refuse(
                f"{self._inbound} inbound connections and {self._handshakes} handshakes,"
                " none evictable",
                "system",
            )
        self._handshakes += 1
        self._handshakes_by_ip[ip] += 1
        return HandshakeSlot(ip)

    def close_handshake(self, slot: HandshakeSlot) -> None:
        """Release a handshake's charge (idempotent)."""
        if slot.released:
            return
        slot.released = True
        self._handshakes -= 1
        self._handshakes_by_ip[slot.ip] -= 1
        if not self._handshakes_by_ip[slot.ip]:
            del self._handshakes_by_ip[slot.ip]

    # -- connections ---------------------------------------------------------------------------

    def add_connection(
        self,
        key: Hashable,
        *,
        peer: PeerID,
        ip: str | None,
        outbound: bool,
        now: float,
        open_streams: Callable[[Hashable], int],
    ) -> Hashable | None:
        """Charge an upgraded connection with ``peer``; return a connection to evict, if any.

        The connection to evict (the caller closes it) is already released from every scope.
        ``open_streams`` tells how many streams a held connection has open; ``now`` is the time
        in seconds on the Host's clock.

        Raises:
            ResourceLimitError: the peer already has ``max_per_peer`` connections, the address
                its share of inbound connections, or the system is full with nothing to evict.
        """
        limits = self.limits
        protected = peer in self._protected
        if self._by_peer[peer] >= limits.max_per_peer:
            self._refuse(f"{self._by_peer[peer]} connections with {peer}", "peer")
        if (
            not outbound
            and ip is not None
            and not protected
            and self._inbound_by_ip[ip] >= limits.max_inbound_per_ip
        ):
            self._refuse(f"{self._inbound_by_ip[ip]} inbound connections from {ip}", "ip")
        victim: Hashable | None = None
        total = len(self._conns)
        if outbound or protected:
            full = total >= limits.max_connections
        else:
            full = self._inbound >= limits.max_inbound or total >= limits.max_connections
        if full:
            victim = self._choose_victim(
                open_streams, now, newcomer_inbound=not (outbound or protected)
            )
            if victim is None:
                self._refuse(f"{total} connections, none evictable", "system")
            self.remove_connection(victim)
            self._evicted += 1
        self._seq += 1
        self._conns[key] = _Entry(peer, ip, outbound, self._seq, now)
        self._by_peer[peer] += 1
        if not outbound:
            self._inbound += 1
            if ip is not None:
                self._inbound_by_ip[ip] += 1
        return victim

    def remove_connection(self, key: Hashable) -> None:
        """Release a connection's charge (a no-op if it holds none: already evicted)."""
        entry = self._conns.pop(key, None)
        if entry is None:
            return
        self._by_peer[entry.peer] -= 1
        if not self._by_peer[entry.peer]:
            del self._by_peer[entry.peer]
        if not entry.outbound:
            self._inbound -= 1
            if entry.ip is not None:
                self._inbound_by_ip[entry.ip] -= 1
                if not self._inbound_by_ip[entry.ip]:
                    del self._inbound_by_ip[entry.ip]

    def _evictable(self, now: float, *, newcomer_inbound: bool) -> list[tuple[Hashable, _Entry]]:
        grace_start = now - self.limits.eviction_grace
        return [
            (key, entry)
            for key, entry in self._conns.items()
            if not entry.outbound
            and entry.peer not in self._protected
            and (not newcomer_inbound or entry.opened_at <= grace_start)
        ]

    def _choose_victim(
        self, open_streams: Callable[[Hashable], int], now: float, *, newcomer_inbound: bool
    ) -> Hashable | None:
        candidates = self._evictable(now, newcomer_inbound=newcomer_inbound)
        if not candidates:
            return None
        by_ip = self._inbound_by_ip

        def usefulness(item: tuple[Hashable, _Entry]) -> tuple[int, int, int]:
            key, entry = item
            crowd = by_ip[entry.ip] if entry.ip is not None else 0
            return (-crowd, open_streams(key), entry.seq)

        return min(candidates, key=usefulness)[0]

    def _refuse(self, detail: str, scope: str) -> NoReturn:
        self._refused += 1
        raise ResourceLimitError(f"{scope} limit: {detail}", scope=scope)

    # -- inspection ----------------------------------------------------------------------------

    def usage(self) -> ResourceUsage:
        """A snapshot of the scopes' usage."""
        inbound_ips = set(self._inbound_by_ip) | set(self._handshakes_by_ip)
        return ResourceUsage(
            connections=len(self._conns),
            inbound=self._inbound,
            outbound=len(self._conns) - self._inbound,
            handshakes=self._handshakes,
            remote_ips=len(inbound_ips),
            peers=len(self._by_peer),
            protected_peers=len(self._protected),
            refused=self._refused,
            evicted=self._evicted,
            limits=self.limits,
        )
