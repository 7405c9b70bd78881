"""Keeping ``peers.json`` in step with the node (specs/cli.md "Known peers").

At start the known peers' addresses go into the Host's peer store (so the chat node, which dials
its groups' members, finds them without discovery) and the first of them are dialed once.
While the node runs, each new connection marks the list as changed; a moment later (identify has
then brought the peer's listen addresses) every connected peer is recorded and the file saved.
The node saves it once more when it stops. The members of our groups come first and are never
pushed out by other peers, of which only the 64 most recently seen are kept
(:meth:`KnownPeerFile.follow_members`): a crowd of fresh identities connecting to the node cannot
replace the peers a restart dials. The file's format and limits belong to
:class:`~p2pchat.discovery.bootstrap.KnownPeers`; the file is a cache, so a failure to write it
is logged, never fatal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Final

import trio

from ..discovery.bootstrap import MAX_KNOWN_STRANGERS, KnownPeer, KnownPeers
from ..errors import P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr, tcp_host_port
from ..net.host import Host

logger = logging.getLogger(__name__)

#: How long addresses from ``peers.json`` stay in the peer store without being confirmed.
KNOWN_PEER_TTL: Final = 24 * 3600.0
#: Known peers dialed at start (most recently seen first), and how many at once.
DIAL_KNOWN_PEERS: Final = 32
DIAL_KNOWN_CONCURRENCY: Final = 8
#: Wait this long after a new connection before saving the known peers (identify lands first).
SAVE_PEERS_DELAY: Final = 1.0


def _dialable(addr: Multiaddr) -> bool:
    """A TCP address someone else could dial (not an unspecified ``0.0.0.0`` / ``::``)."""
    target = tcp_host_port(addr)
    return target is not None and target.host not in ("0.0.0.0", "::") and target.port != 0


class KnownPeerFile:
    """The known peers of a running node, and their file. Made by :meth:`load`."""

    def __init__(self, host: Host, known: KnownPeers) -> None:
        self._host = host
        self._known = known
        self._changed = trio.Event()
        self._members: Callable[[], Iterable[PeerID]] | None = None

    @classmethod
    async def load(cls, host: Host, path: Path) -> KnownPeerFile:
        """Read ``path`` (a missing or unreadable file is an empty list) and put its peers'
        addresses into ``host``'s peer store."""
        known = await trio.to_thread.run_sync(
            partial(KnownPeers.load, path, max_strangers=MAX_KNOWN_STRANGERS)
        )
        now = trio.current_time()
        for entry in known.peers():
            if entry.peer_id != host.peer_id:
                host.peer_store.add_addrs(entry.peer_id, entry.addrs, KNOWN_PEER_TTL, now)
        return cls(host, known)

    @property
    def path(self) -> Path:
        """The file."""
        return self._known.path

    def peers(self) -> list[KnownPeer]:
        """Every known peer: group members first, then the others; each most recently seen
        first."""
        return self._known.peers()

    def follow_members(self, members: Callable[[], Iterable[PeerID]]) -> None:
        """Take the members of our groups from ``members`` (asked now and at each
        :meth:`remember`): they are listed, kept and dialed first; other peers are trimmed to
        the most recently seen ``MAX_KNOWN_STRANGERS``."""
        self._members = members
        self._known.set_members(members())

    def changed(self) -> None:
        """Note that the connected peers changed: :meth:`run_saver` saves soon."""
        self._changed.set()

    def remember(self) -> None:
        """Record every connected peer and its addresses (in memory)."""
        if self._members is not None:
            self._known.set_members(self._members())
        now = trio.current_time()
        for peer in self._host.connected_peers():
            addrs = [a for a in self._host.peer_store.addrs(peer, now) if _dialable(a)]
            conn = self._host.connection(peer)
            if conn is not None and conn.is_client and conn.remote_addr is not None:
                addrs.insert(0, conn.remote_addr)
            self._known.update(peer, addrs, int(time.time() * 1000))

    async def save(self) -> None:
        """Record the connected peers and write the file (a failure is logged)."""
        self.remember()
        try:
            await trio.to_thread.run_sync(self._known.save)
        except OSError as exc:
            logger.warning("cannot save %s: %s", self._known.path, exc.strerror)

    async def run_saver(self) -> None:
        """Save a moment after each change, until cancelled."""
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            await trio.sleep(SAVE_PEERS_DELAY)
            await self.save()

    async def dial(self) -> None:
        """Dial the first known peers (group members, then the most recently seen) once each
        (the chat node and bootstrap take it from there); an unreachable one is logged."""
        limiter = trio.CapacityLimiter(DIAL_KNOWN_CONCURRENCY)

        async def one(peer: PeerID) -> None:
            async with limiter:
                try:
                    await self._host.connect(peer)
                except (P2PChatError, ValueError) as exc:
                    logger.info("known peer %s not reachable: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for known in self._known.peers()[:DIAL_KNOWN_PEERS]:
                if known.peer_id != self._host.peer_id:
                    nursery.start_soon(one, known.peer_id)
