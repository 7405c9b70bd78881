"""Members tell each other where members are: the ``addr`` code (specs/chat.md §8).

A member asked ``addr`` answers with the signed peer records (specs/peer-record.md) it holds for
the members of the group's current roster, its own freshly signed one first. The asker verifies
each record (signed by its own peer, a member of the current roster, not us), keeps it when its
``seq`` is newer than the one held, and files its addresses in the Host's peer store, from
which every later dial (a vote request to a ratifier, a delivery) picks them. Members ask when
they join and whenever a connection to a member comes up, so a member that knows only the owner
learns where the ratifiers it needs are. What is kept is also written to the data dir
(:mod:`.member_records`), so a restarted node dials members where they last said they were.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import trio

from ...identity import PeerID
from ...net.host import Host
from ...net.identify import signed_record
from ...net.peerstore import CONNECTED_ADDR_TTL
from ..core.view import ChatError, GroupView
from .clients import ClientPool
from .member_records import MemberRecordFile, file_records

logger = logging.getLogger(__name__)

#: Records in one ``addrR`` (ours first, then ratifiers, then the other members).
MAX_RECORDS: Final = 128
#: After a member could not be reached: at most one refresh per group this often (seconds),
#: asking at most this many connected members.
REFRESH_INTERVAL: Final = 5.0
REFRESH_PEERS: Final = 3


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
        self, host: Host, clients: ClientPool, records: MemberRecordFile | None = None
    ) -> None:
        self._host = host
        self._clients = clients
        self._refreshed: dict[bytes, float] = {}
        #: The data dir's records file, told when records are kept.
        self.records = records

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
        return kept

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
        envelopes = [item for item in raw[:MAX_RECORDS] if isinstance(item, bytes)]
        kept = file_records(self._host, envelopes, members, CONNECTED_ADDR_TTL)
        if kept and self.records is not None:
            self.records.changed()
        return len(kept)
