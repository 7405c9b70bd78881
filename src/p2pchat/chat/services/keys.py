"""Key sets of roster deltas on the wire (specs/chat.md §20): serving ``kset`` and ``keys``,
a ratifier's custody of a set before it votes, and a member's fetch of its own entries.

* ``kset {group_id, message_hash, from}`` answers a page of a held set (current members only);
* ``keys {group_id, message_hash}`` answers the querier's own entries with their proofs
  (members of any epoch of the group);
* :meth:`KeyService.custody` wraps the ratifier's custody hook of ``mrat``: for a format-2
  roster message whose set it does not hold, it pages the set in from the author (bounded in
  pages, bytes and :data:`KSET_TIMEOUT`), checks it whole and commits it before the vote;
* :meth:`KeyService.start` carries out :class:`~..core.events.FetchKeys` and reports a
  :class:`~..core.events.KeysAnswered` (the engine checks the answer).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from ...errors import DecodeError, ProtocolError
from ...identity import PeerID
from ..core.events import Commit, Effect, FetchKeys, KeysAnswered
from ..core.keyset import KeySet, KeySetError, KeySetFetch
from ..core.packet import Packet
from ..core.roster_delta import RosterDelta, decode_roster_artifact, read_roster_change
from ..core.txn import PutKeySet, Transaction
from ..core.view import ChatError
from ..store import ChatStore
from .clients import ClientPool, QueryRefusedError
from .dispatch import Dispatcher, QueryContext, Refusal
from .runtime import Runtime, now_ms

logger = logging.getLogger(__name__)

#: The whole of a ratifier's fetch of one set (seconds).
KSET_TIMEOUT: Final = 60.0
#: §2 reasons of this service: no set held for that message; the set could not be fetched.
NOT_HELD: Final = "not held"
KEYS_UNAVAILABLE: Final = "keys unavailable"

Custody = Callable[[bytes, Packet, PeerID], Awaitable[None]]


class _Held(Effect):
    """A key set committed for custody: nothing changes in memory."""


def _hash_arg(body: dict[str, Any], key: str) -> bytes:
    value = body.get(key)
    if not isinstance(value, bytes) or len(value) != 32:
        raise Refusal("malformed")
    return value


class KeyService:
    """Key sets served, held and fetched for one node."""

    def __init__(
        self, runtime: Runtime, store: ChatStore, clients: ClientPool, nursery: trio.Nursery
    ) -> None:
        self._runtime = runtime
        self._engine = runtime.engine
        self._store = store
        self._clients = clients
        self._nursery = nursery

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register("kset", self.on_kset)
        dispatcher.register("keys", self.on_keys)

    async def _held(self, group_id: bytes, message_hash: bytes) -> KeySet | None:
        data = await self._store.get_key_set(group_id, message_hash)
        if data is None:
            return None
        try:
            return KeySet.decode(data)
        except (DecodeError, ProtocolError) as exc:  # our own row: a damaged store
            logger.warning("the stored key set of %s does not decode: %s", message_hash.hex(), exc)
            return None

    # -- serving ---------------------------------------------------------------------------------

    async def on_kset(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        view = self._engine.find(_hash_arg(body, "group_id"))
        if view is None or not view.is_current_member(ctx.remote_peer):
            raise Refusal("unknown group")
        first = body.get("from", 0)
        if not isinstance(first, int) or isinstance(first, bool) or first < 0:
            raise Refusal("malformed")
        keyset = await self._held(view.group_id, _hash_arg(body, "message_hash"))
        if keyset is None:
            raise Refusal(NOT_HELD)
        try:
            return keyset.page(first)
        except KeySetError as exc:
            raise Refusal(exc.hint) from None

    async def on_keys(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        view = self._engine.find(_hash_arg(body, "group_id"))
        if view is None or ctx.remote_peer not in view.members():
            raise Refusal("unknown group")
        keyset = await self._held(view.group_id, _hash_arg(body, "message_hash"))
        if keyset is None:
            raise Refusal(NOT_HELD)
        return keyset.mine(ctx.remote_peer)

    # -- a member's own keys ---------------------------------------------------------------------

    def start(self, action: FetchKeys) -> None:
        self._nursery.start_soon(self._fetch, action)

    async def _fetch(self, action: FetchKeys) -> None:
        body: dict[str, Any] | None = None
        if action.holder == self._runtime.peer_id:
            keyset = await self._held(action.group_id, action.message_hash)
            if keyset is not None:
                body = keyset.mine(action.holder)
        else:
            query = {"group_id": action.group_id, "message_hash": action.message_hash}
            try:
                body = await self._clients.query(action.holder, "keys", query)
            except (QueryRefusedError, ChatError) as exc:
                logger.info("no keys from %s: %s", action.holder, exc)
        await self._runtime.handle(
            KeysAnswered(action.group_id, action.message_hash, action.holder, body, now_ms())
        )

    # -- a ratifier's custody --------------------------------------------------------------------

    def custody(self, inner: Custody | None) -> Custody:
        """The ``mrat`` custody hook: the key set of a format-2 roster message held (fetched
        from the author and committed) before ``inner`` (the artifacts' hook) and the vote.

        The returned hook raises Refusal: the set does not match its commitment (its
        :class:`KeySetError` reason), or it could not be fetched in time (``"keys
        unavailable"``)."""

        async def hold(group_id: bytes, packet: Packet, author: PeerID) -> None:
            await self._hold(group_id, packet, author)
            if inner is not None:
                await inner(group_id, packet, author)

        return hold

    async def _hold(self, group_id: bytes, packet: Packet, author: PeerID) -> None:
        view = self._engine.find(group_id)
        if view is None or packet.message.message_type != "roster":
            return
        if packet.message.epoch != view.state.current_epoch:
            return  # the vote refuses it (stale or future epoch)
        try:
            if not isinstance(decode_roster_artifact(packet), RosterDelta):
                return
            change = read_roster_change(packet, view.state)
        except ProtocolError:
            return  # the vote refuses it "malformed"
        if change.keyset is None:
            return
        if await self._store.get_key_set(group_id, packet.message_hash) is not None:
            return
        fetch = KeySetFetch(change.keyset)
        query: dict[str, Any] = {"group_id": group_id, "message_hash": packet.message_hash}
        with trio.move_on_after(KSET_TIMEOUT):
            try:
                while True:
                    query["from"] = fetch.next_from
                    page = await self._clients.query(author, "kset", query)
                    if not fetch.take(page):
                        break
                keyset = fetch.result(change.roster)
            except KeySetError as exc:
                logger.warning("the key set of %s refused: %s", packet.message_hash.hex(), exc)
                raise Refusal(exc.hint) from None
            except (QueryRefusedError, ChatError) as exc:
                logger.info("cannot fetch the key set of %s: %s", packet.message_hash.hex(), exc)
                raise Refusal(KEYS_UNAVAILABLE) from None
            txn = Transaction((PutKeySet(group_id, packet.message_hash, keyset.encode()),))
            await self._runtime.commit(Commit(txn, _Held()))
            return
        raise Refusal(KEYS_UNAVAILABLE)
