"""Members tell each other where members are: the ``addr`` code (specs/chat.md §8).

A member asked ``addr`` answers with the signed peer records (specs/peer-record.md) it holds for
the members of the group's current roster, its own freshly signed one first. The asker verifies
each record (signed by its own peer, a member of the current roster, not us), keeps it when its
``seq`` is newer than the one held, and files its addresses in the Host's peer store, from
which every later dial (a vote request to a ratifier, a delivery) picks them. Members ask when
they join and whenever a connection to a member comes up, so a member that knows only the owner
learns where the ratifiers it needs are.

When no member can say where an unreachable member went, a **peer finder** (the Kademlia DHT's
``find_peer``, set by the node's owner with :meth:`AddressBook.use_finder`) is asked, at most
once per :data:`FIND_INTERVAL` per member (specs/kad.md §10).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from ...identity import PeerID
from ...multiaddr import Multiaddr
from ...net.host import Host
from ...net.identify import signed_record
from ...net.peerstore import CONNECTED_ADDR_TTL, TEMP_ADDR_TTL
from ...records import RecordError, open_peer_record
from ..core.view import ChatError, GroupView
from .clients import ClientPool

logger = logging.getLogger(__name__)

#: Records in one ``addrR`` (ours first, then ratifiers, then the other members).
MAX_RECORDS: Final = 128
#: After a member could not be reached: at most one refresh per group this often (seconds),
#: asking at most this many connected members.
REFRESH_INTERVAL: Final = 5.0
REFRESH_PEERS: Final = 3
#: A member is looked up with the peer finder at most this often (seconds).
FIND_INTERVAL: Final = 30.0

#: Finds where a peer is (the DHT's ``find_peer``): its addresses, empty if not found.
PeerFinder = Callable[[PeerID], Awaitable[list[Multiaddr]]]


def records_for(host: Host, view: GroupView, asker: PeerID) -> list[bytes]:
    """The ``addrR`` records: ours, then those we hold for the current members (ratifiers
    first), without the asker's own."""
    roster = view.state.current_roster
    ordered = sorted(
        (m for m in roster.members if m.peer not in (asker, host.peer_id)),
        key=lambda m: (not m.role.can_ratify, m.peer.to_bytes()),
    )
    found = [signed_record(host)]
    for member in ordered:
        record = host.peer_store.signed_record(member.peer)
        if record is not None:
            found.append(record)
        if len(found) >= MAX_RECORDS:
            break
    return found


class AddressBook:
    """Asks members for member addresses and files what verifies."""

    def __init__(self, host: Host, clients: ClientPool) -> None:
        self._host = host
        self._clients = clients
        self._refreshed: dict[bytes, float] = {}
        self._finder: PeerFinder | None = None
        self._found: dict[PeerID, float] = {}

    def use_finder(self, finder: PeerFinder | None) -> None:
        """Ask ``finder`` where a member is when no member knows (None: stop asking)."""
        self._finder = finder

    async def refresh(self, view: GroupView, unreachable: PeerID) -> int:
        """``unreachable`` (a member) could not be dialed: it may have moved. Ask up to
        :data:`REFRESH_PEERS` connected members for the group's records, at most once per
        :data:`REFRESH_INTERVAL` per group; return how many records were new."""
        now = trio.current_time()
        if now - self._refreshed.get(view.group_id, -REFRESH_INTERVAL) < REFRESH_INTERVAL:
            return 0
        self._refreshed[view.group_id] = now
        members = {m.peer for m in view.state.current_roster.members}
        connected = [
            p
            for p in self._host.connected_peers()
            if p in members and p not in (unreachable, self._host.peer_id)
        ]
        kept = 0
        for peer in sorted(connected)[:REFRESH_PEERS]:
            kept += await self.exchange(view, peer)
        if kept:
            logger.info("learnt %d member addresses after %s was unreachable", kept, unreachable)
        elif unreachable in members:
            kept = await self._find(unreachable)
        return kept

    async def _find(self, peer: PeerID) -> int:
        """Ask the peer finder where ``peer`` is; file what it finds; how many addresses."""
        now = trio.current_time()
        if self._finder is None or now - self._found.get(peer, -FIND_INTERVAL) < FIND_INTERVAL:
            return 0
        self._found[peer] = now
        addrs = await self._finder(peer)
        if addrs:
            self._host.peer_store.add_addrs(peer, addrs, TEMP_ADDR_TTL, trio.current_time())
            logger.info("found %s in the DHT at %d addresses", peer, len(addrs))
        return len(addrs)

    async def exchange(self, view: GroupView, peer: PeerID) -> int:
        """Ask ``peer`` for the group's member records; return how many were new."""
        try:
            body = await self._clients.query(peer, "addr", {"group_id": view.group_id})
        except ChatError as exc:
            logger.debug("member addresses from %s: %s", peer, exc)
            return 0
        return self.file(view, body.get("records"))

    def file(self, view: GroupView, raw: Any) -> int:
        """Verify and keep the records of an ``addrR``; return how many were new."""
        if not isinstance(raw, list):
            return 0
        members = {m.peer for m in view.state.current_roster.members}
        kept = 0
        store = self._host.peer_store
        for item in raw[:MAX_RECORDS]:
            if not isinstance(item, bytes):
                continue
            try:
                record, _ = open_peer_record(item)
            except RecordError as exc:
                logger.info("a member record refused: %s", exc.hint)
                continue
            if record.peer not in members or record.peer == self._host.peer_id:
                continue
            if store.set_signed_record(record.peer, record.seq, item):
                store.add_addrs(
                    record.peer, record.addresses, CONNECTED_ADDR_TTL, trio.current_time()
                )
                kept += 1
        return kept
