"""The sync service: what a member does to hold what its group holds (specs/chat.md §8).

* :class:`CompareHeads`: ask a member for its DAG heads (``hds``) and tell the engine, which
  decides whether anything is missing and how to get it.
* :class:`SyncHistory`: page through a member's history (``dht``) from where the last paging
  with it stopped, receiving what this node lacks.
* :class:`FetchMissing`, and any receipt that lacks parents: fetch the missing ancestors
  (``get``) as the engine's :class:`~p2pchat.chat.core.fetch.ParentFetch` plans, one fetch per
  group at a time (concurrent callers usually miss the same ancestors).
* :class:`LearnRoster`: a ratifier refused our message as stale; fetch its roster chain (``pkt``)
  and receive the roster messages we lack. A member of our roster that refuses ``hds`` as
  ``"unknown group"`` (we may have been removed) is asked the same way.
* :class:`Redeliver`: a close names some of our messages pending (specs/chat.md §14 "Delivery
  after the close"): read them from the store and deliver them again.

Every session is bounded (specs/chat.md §8 "Sync budgets", :mod:`~p2pchat.chat.core.budget`):
pages, bytes and time for paging and fetching; pages and time for a roster chain (``pkt``,
paged: :mod:`~p2pchat.chat.core.roster_sync`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio

from ...errors import DecodeError
from ...identity import PeerID
from ...multiaddr import Multiaddr
from ..core import cbor
from ..core.budget import MAX_SYNC_SECONDS, SyncBudget, Unproven
from ..core.engine import CLOSED_EPOCH, ChatError
from ..core.events import (
    CompareHeads,
    Deliver,
    FetchMissing,
    HeadsAnswered,
    LearnRoster,
    Redeliver,
    SyncHistory,
)
from ..core.fetch import ParentFetch
from ..core.group_state import GroupState
from ..core.packet import Packet
from ..core.roster_sync import MAX_CHAIN_PAGES, ChainFetch, RosterPageError, read_roster_page
from ..store import StoreFileError
from .addresses import AddressBook
from .clients import ClientPool, QueryRefusedError
from .runtime import Runtime

logger = logging.getLogger(__name__)


class SyncService:
    def __init__(
        self,
        runtime: Runtime,
        clients: ClientPool,
        nursery: trio.Nursery,
        addresses: AddressBook | None = None,
    ) -> None:
        self._runtime = runtime
        self._clients = clients
        self._nursery = nursery
        self._addresses = addresses
        self._cursors: dict[tuple[bytes, PeerID], int] = {}
        self._paging: set[tuple[bytes, PeerID]] = set()
        self._fetch_locks: dict[bytes, trio.Lock] = {}

    def start(
        self, action: CompareHeads | SyncHistory | FetchMissing | LearnRoster | Redeliver
    ) -> None:
        if isinstance(action, CompareHeads):
            self._nursery.start_soon(self._compare_heads, action)
        elif isinstance(action, SyncHistory):
            self._nursery.start_soon(self.history, action.group_id, action.peer)
        elif isinstance(action, FetchMissing):
            self._nursery.start_soon(self.fetch, action.group_id, action.peer, action.hashes)
        elif isinstance(action, Redeliver):
            self._nursery.start_soon(self.redeliver, action)
        else:
            self._nursery.start_soon(self.learn_roster, action.group_id, action.peer)

    async def _compare_heads(self, action: CompareHeads) -> None:
        view = self._runtime.engine.find(action.group_id)
        if action.catch_up and self._addresses is not None and view is not None:
            # A new connection to a member: learn where the other members are, too.
            await self._addresses.exchange(view, action.peer)
        try:
            body = await self._clients.query(action.peer, "hds", {"group_id": action.group_id})
        except QueryRefusedError as exc:
            logger.debug("heads of %s: %s", action.peer, exc)
            if exc.reason == "unknown group":  # we may have been removed: learn the roster
                await self.learn_roster(action.group_id, action.peer)
            return
        except ChatError as exc:
            logger.debug("heads of %s: %s", action.peer, exc)
            return
        heads = body.get("heads")
        if not isinstance(heads, list):
            return
        held = tuple(h for h in heads if isinstance(h, bytes))
        await self._runtime.handle(
            HeadsAnswered(action.group_id, action.peer, held, action.catch_up)
        )

    async def history(self, group_id: bytes, peer: PeerID) -> None:
        """Page through ``peer``'s history of the group and keep what we lack."""
        key = (group_id, peer)
        if key in self._paging or peer == self._runtime.peer_id:
            return
        self._paging.add(key)
        budget = SyncBudget()
        unproven = Unproven()
        deadline = trio.current_time() + MAX_SYNC_SECONDS
        try:
            cursor = self._cursors.get(key, 0)
            while True:
                body: dict[str, Any] | None = None
                with trio.move_on_at(deadline):
                    body = await self._clients.query(
                        peer, "dht", {"group_id": group_id, "cursor": cursor}
                    )
                if body is None:
                    logger.info("history of %s cut off: out of time", peer)
                    return
                packets, size = _decode_packets(body.get("packets"), peer, "history")
                next_cursor = body.get("next")
                go_on = budget.take_page(
                    [p.message_hash for p in packets], size, cursor=cursor, next_cursor=next_cursor
                )
                unproven = await self._receive_page(group_id, packets, peer, unproven)
                if not go_on:
                    if next_cursor is not None:
                        logger.info(
                            "history of %s cut off after %d pages, %d bytes",
                            peer,
                            budget.pages,
                            budget.size,
                        )
                    return
                assert isinstance(next_cursor, int)
                cursor = self._cursors[key] = next_cursor
        except ChatError as exc:
            logger.debug("sync of %s with %s stopped: %s", group_id.hex()[:16], peer, exc)
        finally:
            self._paging.discard(key)

    async def fetch(self, group_id: bytes, peer: PeerID, hashes: Sequence[bytes]) -> None:
        """Fetch the missing ancestors of ``hashes`` from ``peer`` and receive them."""
        lock = self._fetch_locks.setdefault(group_id, trio.Lock())
        async with lock:
            view = self._runtime.engine.find(group_id)
            if view is None:
                return
            plan = ParentFetch.start(hashes, view.has)
            budget = SyncBudget()
            deadline = trio.current_time() + MAX_SYNC_SECONDS
            while budget.left() and (wanted := plan.wanted()):
                body: dict[str, Any] | None = None
                try:
                    with trio.move_on_at(deadline):
                        body = await self._clients.query(
                            peer, "get", {"group_id": group_id, "hashes": wanted}
                        )
                except ChatError as exc:
                    logger.info("cannot fetch parents from %s: %s", peer, exc)
                    break
                if body is None:
                    logger.info("fetching parents from %s cut off: out of time", peer)
                    break
                packets, size = _decode_packets(body.get("packets"), peer, "parents")
                budget.take([p.message_hash for p in packets], size)
                if not plan.add(packets):
                    break
            fetched = plan.in_order()
            self._runtime.engine.admit(group_id, fetched)  # §14: children first
            for packet in fetched:
                reason = await self._runtime.receive(group_id, packet, peer, fetch=False)
                if reason is not None:
                    logger.info(
                        "fetched message %s refused: %s", packet.message_hash.hex()[:16], reason
                    )

    async def fetch_chain(self, group_id: bytes, peer: PeerID | Multiaddr) -> GroupState:
        """Page in a group's chain from ``peer`` (``pkt``), verifying it link by link: what a
        joiner holds before it joins (specs/chat.md §16).

        Raises:
            QueryRefusedError: ``peer`` refused (e.g. ``"unknown group"``: we are not a member).
            ChatError: ``peer`` cannot be reached, ran out of time, or sent a page that does not
                continue the chain (the reason is in the message).
        """
        session = ChainFetch(group_id)
        with trio.move_on_after(MAX_SYNC_SECONDS):
            while (first := session.next_from) is not None:
                body = await self._clients.query(peer, "pkt", {"group_id": group_id, "from": first})
                try:
                    if not session.take(body):
                        break
                except RosterPageError as exc:
                    logger.info("roster page from %s refused: %s (%s)", peer, exc.hint, exc)
                    raise ChatError(f"the group's roster chain does not verify: {exc}") from exc
        if session.next_from is not None or session.state is None:
            raise ChatError(
                f"the roster chain from {peer} was cut off after {session.pages} pages "
                f"({session.size} bytes): out of time"
            )
        return session.state

    async def learn_roster(self, group_id: bytes, peer: PeerID) -> None:
        """Receive the roster changes ``peer`` holds and we lack, page by page from our epoch."""
        view = self._runtime.engine.find(group_id)
        if view is None:
            return
        pages = 0
        with trio.move_on_after(MAX_SYNC_SECONDS) as scope:
            while pages < MAX_CHAIN_PAGES:
                first = view.state.current_epoch
                try:
                    body = await self._clients.query(
                        peer, "pkt", {"group_id": group_id, "from": first}
                    )
                    page = read_roster_page(body, first)
                except (ChatError, RosterPageError) as exc:
                    logger.info("cannot learn the roster from %s: %s", peer, exc)
                    return
                pages += 1
                for packet in page.packets:
                    reason = await self._runtime.receive(group_id, packet, peer, chain=True)
                    if reason is not None:
                        logger.info("roster change from %s refused: %s", peer, reason)
                        return
                if page.next is None:
                    return
        if scope.cancelled_caught:
            logger.info("learning the roster from %s cut off: out of time", peer)

    async def redeliver(self, action: Redeliver) -> None:
        """Deliver our messages ``action.hashes`` again, as held in the store."""
        for message_hash in action.hashes:
            row = await self._runtime.store.get_message(action.group_id, message_hash)
            if row is None or row.certificate is None:
                continue
            try:
                packet = Packet.decode(row.packet_with_certificate())
            except (DecodeError, StoreFileError, ValueError) as exc:
                logger.warning("stored message %s unreadable: %s", message_hash.hex()[:16], exc)
                continue
            logger.info("delivering %s again: a close names it pending", message_hash.hex()[:16])
            await self._runtime.execute([Deliver(action.group_id, packet, action.peers)])

    async def _receive_page(
        self, group_id: bytes, packets: Sequence[Packet], peer: PeerID, unproven: Unproven
    ) -> Unproven:
        """Receive a page of history, oldest first. A message of a closed epoch not yet
        admitted (§14) is kept aside, bounded, and received once a later page admits it: the
        committed descendant that does so comes later in the history."""
        engine = self._runtime.engine
        engine.admit(group_id, [*unproven.packets, *packets])
        still = Unproven()
        for packet in unproven.packets:
            if not engine.admitted(group_id, packet.message_hash):
                still.keep(packet)  # not checked again until admitted
            else:
                await self._receive_one(group_id, packet, peer, still)
        for packet in packets:
            await self._receive_one(group_id, packet, peer, still)
        return still

    async def _receive_one(
        self, group_id: bytes, packet: Packet, peer: PeerID, unproven: Unproven
    ) -> None:
        reason = await self._runtime.receive(group_id, packet, peer)
        if reason == CLOSED_EPOCH and unproven.keep(packet):
            return
        if reason is not None:
            logger.info(
                "history message %s from %s refused: %s",
                packet.message_hash.hex()[:16],
                peer,
                reason,
            )


def _decode_packets(raw: Any, peer: PeerID, what: str) -> tuple[list[Packet], int]:
    """The packets of an answer (malformed ones skipped) and the size of them all (CBOR)."""
    if not isinstance(raw, list):
        return [], 0
    packets: list[Packet] = []
    size = 0
    for item in raw:
        try:
            size += len(cbor.dumps(item))
            packets.append(Packet.from_cbor(item))
        except (DecodeError, TypeError, ValueError):
            logger.info("malformed packet in %s's %s", peer, what)
    return packets, size
