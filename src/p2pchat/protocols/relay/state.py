"""The relay's admission policy and the client's book of reservations, sans-IO.

Normative text: ``specs/relay.md`` "Relay policy". No clock: callers pass ``now`` in UNIX
seconds (the reservation's ``expire`` goes on the wire as UTC UNIX seconds).

Theory of operation
-------------------
:class:`RelayState` is what a relay decides, one call per request:

* :meth:`RelayState.reserve` admits or refreshes a reservation: refused over a relayed
  connection (``PERMISSION_DENIED``), when :attr:`RelayLimits.max_reservations` peers hold one
  or when :attr:`RelayLimits.max_reservations_per_ip` peers of the requester's IP do
  (``RESERVATION_REFUSED``). A refresh by a holder always succeeds and moves its expiry.
* :meth:`RelayState.open_circuit` admits a circuit to a reserved peer: ``NO_RESERVATION``
  without a live reservation, ``PERMISSION_DENIED`` from a relayed connection (no chains),
  ``RESOURCE_LIMIT_EXCEEDED`` past :attr:`RelayLimits.max_circuits` in all or
  :attr:`RelayLimits.max_circuits_per_peer` for either end. A :class:`Circuit` carries its
  deadline and byte budget; the adapter ends it at the deadline, and :meth:`Circuit.take` says
  how many bytes of a chunk may still pass in a direction (fewer than asked: cut the circuit).
* :meth:`RelayState.close_circuit` frees the circuit's slots.

:class:`ReservationBook` is the client's view: the reservations it holds, which are due for a
refresh, and the ``/p2p-circuit`` addresses they give it.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Sequence
from typing import Final

import attrs

from ...identity import PeerID
from ...multiaddr import Multiaddr, MultiaddrError, tcp_host_port
from .messages import Limit, Status

#: specs/relay.md "Relay policy" (the values go-libp2p uses by default).
RESERVATION_TTL: Final = 3600
MAX_RESERVATIONS: Final = 128
MAX_RESERVATIONS_PER_IP: Final = 8
MAX_CIRCUITS: Final = 64
MAX_CIRCUITS_PER_PEER: Final = 16
CIRCUIT_DURATION: Final = 120
CIRCUIT_DATA: Final = 1 << 17
#: A client refreshes a reservation this many seconds before it expires.
REFRESH_MARGIN: Final = 120


@attrs.frozen
class RelayLimits:
    """How much a relay serves (specs/relay.md "Relay policy").

    Raises:
        ValueError: a limit below 1 (on construction).
    """

    reservation_ttl: int = RESERVATION_TTL
    max_reservations: int = MAX_RESERVATIONS
    max_reservations_per_ip: int = MAX_RESERVATIONS_PER_IP
    max_circuits: int = MAX_CIRCUITS
    max_circuits_per_peer: int = MAX_CIRCUITS_PER_PEER
    circuit_duration: int = CIRCUIT_DURATION
    circuit_data: int = CIRCUIT_DATA

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(RelayLimits):
            if getattr(self, field.name) < 1:
                raise ValueError(f"relay limit {field.name} must be at least 1")

    @property
    def limit(self) -> Limit:
        """The ``Limit`` a relay announces for each circuit."""
        return Limit(self.circuit_duration, self.circuit_data)


@attrs.frozen
class Reserved:
    """A reservation granted (or refreshed) until ``expire``."""

    peer: PeerID
    ip: str
    expire: int


@attrs.define(eq=False)
class Circuit:
    """One relayed connection ``src -> dst``, alive until ``deadline``."""

    id: int
    src: PeerID
    dst: PeerID
    deadline: float
    data_limit: int
    sent: list[int] = attrs.Factory(lambda: [0, 0])

    def take(self, direction: int, n: int) -> int:
        """How many of ``n`` bytes may pass in ``direction`` (0: src to dst, 1: dst to src);
        they are charged. Fewer than ``n`` means the budget is spent: end the circuit."""
        allowed = max(0, min(n, self.data_limit - self.sent[direction]))
        self.sent[direction] += allowed
        return allowed


class RelayState:
    """What a relay has granted: reservations and circuits, within :class:`RelayLimits`."""

    def __init__(self, limits: RelayLimits | None = None) -> None:
        self.limits = limits if limits is not None else RelayLimits()
        self._reservations: dict[PeerID, Reserved] = {}
        self._circuits: dict[int, Circuit] = {}
        self._ids = itertools.count(1)

    def expire(self, now: float) -> None:
        """Forget reservations that have expired."""
        for peer in [p for p, r in self._reservations.items() if r.expire <= now]:
            del self._reservations[peer]

    def reserve(
        self, peer: PeerID, ip: str, now: float, *, relayed: bool = False
    ) -> Reserved | Status:
        """Grant or refresh ``peer``'s reservation, or say why not."""
        if relayed:
            return Status.PERMISSION_DENIED
        self.expire(now)
        held = self._reservations.get(peer)
        if held is None:
            if len(self._reservations) >= self.limits.max_reservations:
                return Status.RESERVATION_REFUSED
            same_ip = sum(1 for r in self._reservations.values() if r.ip == ip)
            if same_ip >= self.limits.max_reservations_per_ip:
                return Status.RESERVATION_REFUSED
        granted = Reserved(peer, ip, int(now) + self.limits.reservation_ttl)
        self._reservations[peer] = granted
        return granted

    def reservation(self, peer: PeerID, now: float) -> Reserved | None:
        """``peer``'s live reservation, if any."""
        held = self._reservations.get(peer)
        return held if held is not None and held.expire > now else None

    def reservations(self, now: float) -> list[Reserved]:
        """The live reservations, soonest to expire first."""
        self.expire(now)
        return sorted(self._reservations.values(), key=lambda r: r.expire)

    def open_circuit(
        self, src: PeerID, dst: PeerID, now: float, *, relayed: bool = False
    ) -> Circuit | Status:
        """Admit a circuit from ``src`` to ``dst``, or say why not."""
        if relayed:
            return Status.PERMISSION_DENIED
        if self.reservation(dst, now) is None:
            return Status.NO_RESERVATION
        if len(self._circuits) >= self.limits.max_circuits:
            return Status.RESOURCE_LIMIT_EXCEEDED
        for end in (src, dst):
            count = sum(1 for c in self._circuits.values() if end in (c.src, c.dst))
            if count >= self.limits.max_circuits_per_peer:
                return Status.RESOURCE_LIMIT_EXCEEDED
        circuit = Circuit(
            next(self._ids),
            src,
            dst,
            now + self.limits.circuit_duration,
            self.limits.circuit_data,
        )
        self._circuits[circuit.id] = circuit
        return circuit

    def close_circuit(self, circuit: Circuit) -> None:
        """Free ``circuit``'s slots (a no-op if already closed)."""
        self._circuits.pop(circuit.id, None)

    @property
    def circuit_count(self) -> int:
        return len(self._circuits)


# -- addresses ---------------------------------------------------------------------------------


def circuit_addr(relay_addr: Multiaddr, relay: PeerID) -> Multiaddr:
    """``<relay_addr>/p2p/<relay>/p2p-circuit``: where we can be reached through ``relay``."""
    return relay_addr.without_peer_id().with_peer_id(relay).encapsulate("/p2p-circuit")


def is_circuit(addr: Multiaddr) -> bool:
    """True for a ``/p2p-circuit`` address."""
    return any(c.protocol.name == "p2p-circuit" for c in addr)


@attrs.frozen
class CircuitTarget:
    """A parsed ``<relay addr>/p2p/<relay>/p2p-circuit[/p2p/<dst>]``."""

    relay_addr: Multiaddr  # ends in /p2p/<relay> when the address named it
    relay: PeerID | None
    dst: PeerID | None


def parse_circuit(addr: Multiaddr) -> CircuitTarget:
    """Split a circuit address into the relay part and the destination.

    Raises:
        MultiaddrError: not a circuit address, or more than one hop.
    """
    parts = list(addr)
    marks = [i for i, c in enumerate(parts) if c.protocol.name == "p2p-circuit"]
    if len(marks) != 1:
        raise MultiaddrError(f"not a one-hop circuit address: {addr}", hint="bad circuit")
    head = Multiaddr(tuple(parts[: marks[0]]))
    tail = Multiaddr(tuple(parts[marks[0] + 1 :]))
    if len(tail) > 1 or (len(tail) == 1 and tail.peer_id is None):
        raise MultiaddrError(
            f"unexpected components after /p2p-circuit: {addr}", hint="bad circuit"
        )
    return CircuitTarget(head, head.peer_id, tail.peer_id if len(tail) else None)


@attrs.frozen
class HeldReservation:
    relay: PeerID
    expire: int
    addrs: tuple[Multiaddr, ...]
    voucher: bytes | None


class ReservationBook:
    """The reservations a client holds, at most ``max_relays`` of them."""

    def __init__(self, max_relays: int = 8) -> None:
        self.max_relays = max_relays
        self._held: dict[PeerID, HeldReservation] = {}

    def record(self, held: HeldReservation) -> bool:
        """Keep ``held`` (replacing that relay's previous one); False if the book is full."""
        if held.relay not in self._held and len(self._held) >= self.max_relays:
            return False
        self._held[held.relay] = held
        return True

    def drop(self, relay: PeerID) -> None:
        self._held.pop(relay, None)

    def live(self, now: float) -> list[HeldReservation]:
        """Reservations not yet expired (expired ones are forgotten)."""
        for relay in [r for r, h in self._held.items() if h.expire <= now]:
            del self._held[relay]
        return sorted(self._held.values(), key=lambda h: h.expire)

    def due(self, now: float, margin: float = REFRESH_MARGIN) -> list[PeerID]:
        """Relays whose reservation must be refreshed now."""
        return [h.relay for h in self.live(now) if h.expire - now <= margin]

    def circuit_addrs(self, now: float) -> list[Multiaddr]:
        """Our ``/p2p-circuit`` addresses: one per address of each live reservation."""
        out: list[Multiaddr] = []
        for held in self.live(now):
            for addr in held.addrs:
                if is_circuit(addr):
                    continue
                try:
                    out.append(circuit_addr(addr, held.relay))
                except (MultiaddrError, ValueError):
                    continue
        return out


def reservation_addrs(addrs: Sequence[Multiaddr], limit: int = 8) -> tuple[Multiaddr, ...]:
    """The relay's own addresses for a reservation reply: no circuits, no duplicates, and no
    loopback address unless the relay has no other (a client advertises them to others)."""
    out: list[Multiaddr] = []
    for addr in addrs:
        if is_circuit(addr) or addr in out:
            continue
        out.append(addr)
    reachable = [a for a in out if not _is_loopback(a)]
    return tuple((reachable or out)[:limit])


def _is_loopback(addr: Multiaddr) -> bool:
    target = tcp_host_port(addr)
    if target is None:
        return False
    try:
        return ipaddress.ip_address(target.host).is_loopback
    except ValueError:
        return target.host == "localhost"
