"""Members tell each other where members are: the ``addr`` code (specs/chat.md §8).

A member asked ``addr`` answers with the signed peer records (specs/peer-record.md) it holds for
the members of the group's current roster, its own freshly signed one first. The asker verifies
each record (signed by its own peer, a member of the current roster, not us), keeps it when its
``seq`` is newer than the one held, and files its addresses in the Host's peer store, from
which every later dial (a vote request to a ratifier, a delivery) picks them. Members ask when
they join and whenever a connection to a member comes up, so a member that knows only the owner
learns where the ratifiers it needs are. What is kept is also written to the data dir
(:mod:`.member_records`), so a restarted node dials members where they last said they were.

A member that moved and reached only some members is made known to the others at once: a node
that keeps a newer record of a member whose addresses differ from those of the record it held
(the member moved, or it is new to us) passes it on, in an ``addr`` query's ``records``, to the
group's other members it is connected to, which file it the same way (and pass it on if it is
newer for them too, so each version of a record crosses each connection at most once each way;
at most once per :data:`ANNOUNCE_INTERVAL` per member's record).

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
from ..core.view import ChatError, GroupView
from .clients import ClientPool
from .member_records import Kept, MemberRecordFile, file_records

logger = logging.getLogger(__name__)

#: Records in one ``addrR`` (ours first, then ratifiers, then the other members).
MAX_RECORDS: Final = 128
#: After a member could not be reached: at most one refresh per group this often (seconds),
#: asking at most this many connected members.
REFRESH_INTERVAL: Final = 5.0
REFRESH_PEERS: Final = 3
#: A newer record of a member is passed on at most once this often (seconds), per group and
#: member, to at most this many connected members.
ANNOUNCE_INTERVAL: Final = 5.0
ANNOUNCE_PEERS: Final = 32
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

    def __init__(
        self,
        host: Host,
        clients: ClientPool,
        records: MemberRecordFile | None = None,
        nursery: trio.Nursery | None = None,
    ) -> None:
        self._host = host
        self._clients = clients
        self._refreshed: dict[bytes, float] = {}
        #: The data dir's records file, told when records are kept.
        self.records = records
        #: Where newer records are passed on (none: they are not).
        self._nursery = nursery
        #: When we last passed a member's record on, and for which addresses.
        self._announced: dict[tuple[bytes, PeerID], tuple[float, frozenset[Multiaddr]]] = {}
        #: Members whose newer addresses wait for the end of their interval (one task each).
        self._deferred: set[tuple[bytes, PeerID]] = set()
        #: The addresses of the last record of each member filed here.
        self._seen: dict[PeerID, frozenset[Multiaddr]] = {}
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
        return self.file(view, body.get("records"), source=peer)

    def file(self, view: GroupView, raw: Any, *, source: PeerID | None = None) -> int:
        """Verify and keep the records of an ``addrR`` (or of an ``addr`` query, from
        ``source``), and pass the newer ones on; return how many were new."""
        if not isinstance(raw, list):
            return 0
        members = {m.peer for m in view.state.current_roster.members}
        envelopes = [item for item in raw[:MAX_RECORDS] if isinstance(item, bytes)]
        held: list[Kept] = []
        kept = file_records(self._host, envelopes, members, CONNECTED_ADDR_TTL, held=held)
        if kept and self.records is not None:
            self.records.changed()
        # A member moved (or is new to us) when its addresses differ from those we last filed
        # for it; identify may have brought the same record first, so the peer store cannot tell.
        moved = [k.peer for k in (*kept, *held) if self._seen.get(k.peer) != k.addresses]
        for k in (*kept, *held):
            self._seen[k.peer] = k.addresses
        if moved:
            self._announce(view, moved, source)
        return len(kept)

    def _announce(self, view: GroupView, peers: list[PeerID], source: PeerID | None) -> None:
        """Pass the records just kept for ``peers`` on to the group's other connected members
        (not ``source``; none gets its own record), each record at most once per
        :data:`ANNOUNCE_INTERVAL`; one whose addresses changed inside it goes when it ends."""
        if self._nursery is None:
            return
        now = trio.current_time()
        store = self._host.peer_store
        fresh: list[PeerID] = []
        envelopes: list[bytes] = []
        for peer in peers:
            key = (view.group_id, peer)
            record = store.signed_record(peer)
            addresses = self._seen.get(peer, frozenset())
            last, told = self._announced.get(key, (-ANNOUNCE_INTERVAL, frozenset()))
            if record is None:
                continue
            if now - last < ANNOUNCE_INTERVAL:
                # At most once per interval; news inside it goes when the interval ends.
                if told != addresses and key not in self._deferred:
                    self._deferred.add(key)
                    wait = last + ANNOUNCE_INTERVAL - now
                    self._nursery.start_soon(self._announce_later, view, peer, wait)
                continue
            self._announced[key] = (now, addresses)
            fresh.append(peer)
            envelopes.append(record)
        if not envelopes:
            return
        members = {m.peer for m in view.state.current_roster.members}
        skip = {self._host.peer_id, source}
        targets = sorted(p for p in self._host.connected_peers() if p in members and p not in skip)
        for target in targets[:ANNOUNCE_PEERS]:
            # Every record but the target's own (a member that moved knows where it is).
            others = [e for p, e in zip(fresh, envelopes, strict=True) if p != target]
            if others:
                self._nursery.start_soon(self._tell, view, target, others)

    async def _announce_later(self, view: GroupView, peer: PeerID, wait: float) -> None:
        await trio.sleep(wait)
        self._deferred.discard((view.group_id, peer))
        self._announce(view, [peer], None)

    async def _tell(self, view: GroupView, peer: PeerID, envelopes: list[bytes]) -> None:
        body = {"group_id": view.group_id, "records": envelopes}
        try:
            answer = await self._clients.query(peer, "addr", body)
        except ChatError as exc:
            logger.debug("passing member records to %s: %s", peer, exc)
            return
        self.file(view, answer.get("records"), source=peer)
