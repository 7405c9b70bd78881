"""What a host knows about other peers: addresses (with expiry), protocols, keys, agent.

Plain data, no I/O and no clock: callers pass ``now`` (the host uses ``trio.current_time()``),
which keeps expiry testable. Sizes are bounded so a peer cannot grow it without limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import attrs

from ..identity import PeerID, PublicKey
from ..multiaddr import Multiaddr

#: Addresses learned from identify or dialed successfully.
CONNECTED_ADDR_TTL: Final = 30 * 60.0
#: Addresses given by a user or discovery, not yet proven.
TEMP_ADDR_TTL: Final = 2 * 60.0
PERMANENT: Final = float("inf")
MAX_ADDRS_PER_PEER: Final = 64
MAX_PROTOCOLS_PER_PEER: Final = 128


ProtocolsWatcher = Callable[[PeerID, tuple[str, ...]], None]
ObservedWatcher = Callable[[PeerID, Multiaddr], None]


@attrs.define
class PeerRecord:
    """Everything known about one peer."""

    peer_id: PeerID
    #: Address -> expiry time (same clock as ``now``).
    addrs: dict[Multiaddr, float] = attrs.Factory(dict)
    protocols: tuple[str, ...] = ()
    public_key: PublicKey | None = None
    agent_version: str = ""
    protocol_version: str = ""
    #: The newest verified signed peer record (specs/peer-record.md): its seq and envelope.
    record_seq: int = -1
    signed_record: bytes | None = None


class PeerStore:
    """Peers by ID. Not thread-safe; used from the host's Trio tasks."""

    def __init__(self) -> None:
        self._peers: dict[PeerID, PeerRecord] = {}
        self._protocol_watchers: list[ProtocolsWatcher] = []
        self._observed_watchers: list[ObservedWatcher] = []

    def watch_protocols(self, watcher: ProtocolsWatcher) -> Callable[[], None]:
        """Call ``watcher(peer, protocols)`` each time a peer's protocols are set (identify,
        identify push); returns the function that stops it.

        The watcher runs inside :meth:`set_protocols`: it must be quick and must not raise
        (the Kademlia service only queues the peer for its own task).
        """
        self._protocol_watchers.append(watcher)

        def stop() -> None:
            if watcher in self._protocol_watchers:
                self._protocol_watchers.remove(watcher)

        return stop

    def _record(self, peer: PeerID) -> PeerRecord:
        record = self._peers.get(peer)
        if record is None:
            record = self._peers[peer] = PeerRecord(peer)
        return record

    def watch_observed(self, watcher: ObservedWatcher) -> Callable[[], None]:
        """Call ``watcher(observer, addr)`` each time a peer tells us (identify's
        ``observedAddr``) the address it sees us at; returns the function that stops it.
        Nothing is stored here: the address manager (``net/autonat.py``) keeps what it needs.
        The watcher must be quick and must not raise."""
        self._observed_watchers.append(watcher)

        def stop() -> None:
            if watcher in self._observed_watchers:
                self._observed_watchers.remove(watcher)

        return stop

    def note_observed(self, observer: PeerID, addr: Multiaddr) -> None:
        """``observer`` sees us at ``addr``: tell the watchers."""
        for watcher in list(self._observed_watchers):
            watcher(observer, addr)

    def get(self, peer: PeerID) -> PeerRecord | None:
        """The record of ``peer``, if any."""
        return self._peers.get(peer)

    def peers(self) -> list[PeerID]:
        """Every peer with a record."""
        return list(self._peers)

    def add_addrs(self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float, now: float) -> None:
        """Remember ``addrs`` (without any ``/p2p`` suffix) for ``ttl`` seconds.

        A longer expiry never shortens; the oldest-expiring addresses go beyond 64.
        """
        record = self._record(peer)
        expiry = now + ttl
        for addr in addrs:
            bare = addr.without_peer_id()
            if record.addrs.get(bare, -1.0) < expiry:
                record.addrs[bare] = expiry
        if len(record.addrs) > MAX_ADDRS_PER_PEER:
            keep = sorted(record.addrs.items(), key=lambda item: item[1], reverse=True)
            record.addrs = dict(keep[:MAX_ADDRS_PER_PEER])

    def addrs(self, peer: PeerID, now: float) -> list[Multiaddr]:
        """Unexpired addresses of ``peer``, longest-lived first (expired ones are dropped)."""
        record = self._peers.get(peer)
        if record is None:
            return []
        live = {addr: exp for addr, exp in record.addrs.items() if exp > now}
        record.addrs = live
        return [addr for addr, _ in sorted(live.items(), key=lambda item: item[1], reverse=True)]

    def set_protocols(self, peer: PeerID, protocols: Iterable[str]) -> None:
        """Replace the protocols ``peer`` says it supports (at most 128 kept)."""
        kept = tuple(protocols)[:MAX_PROTOCOLS_PER_PEER]
        self._record(peer).protocols = kept
        for watcher in list(self._protocol_watchers):
            watcher(peer, kept)

    def protocols(self, peer: PeerID) -> tuple[str, ...]:
        """The protocols ``peer`` announced, if known."""
        record = self._peers.get(peer)
        return record.protocols if record is not None else ()

    def set_public_key(self, peer: PeerID, key: PublicKey) -> None:
        """Remember ``peer``'s public key.

        Raises:
            ValueError: the key is not the one ``peer`` names.
        """
        if not peer.matches(key):
            raise ValueError(f"public key does not belong to {peer}")
        self._record(peer).public_key = key

    def set_signed_record(self, peer: PeerID, seq: int, envelope: bytes) -> bool:
        """Keep ``peer``'s signed peer record (already verified by the caller) if its ``seq`` is
        newer than the one held; True if kept."""
        record = self._record(peer)
        if seq <= record.record_seq:
            return False
        record.record_seq = seq
        record.signed_record = envelope
        return True

    def signed_record(self, peer: PeerID) -> bytes | None:
        """The newest signed peer record of ``peer`` (the envelope's bytes), if any."""
        record = self._peers.get(peer)
        return record.signed_record if record is not None else None

    def set_agent(self, peer: PeerID, agent_version: str, protocol_version: str) -> None:
        """Remember what software ``peer`` runs."""
        record = self._record(peer)
        record.agent_version = agent_version
        record.protocol_version = protocol_version
