"""The chat codes this node serves (specs/chat.md §2, §7, §8), registered on a Dispatcher.

Each handler reads its body, asks the engine (through the runtime) or the store, and answers;
a :class:`Refusal` is the negative answer.

Who is served (specs/chat.md §8 "Membership that ends" and "Refusals that leak nothing"): the
first check of every group-scoped code, before any other, is the querier's membership, and a
querier that fails it gets ``"unknown group"``, the very answer for a group this node does not
hold, so that a non-member learns nothing of who is in which group. ``i``, ``mrat``, ``dht``,
``get`` and ``hds`` serve the members of the current roster only; ``pkt`` serves anyone who was
ever a member, a removed one getting the chain up to the roster change that removed it;
``smsg`` takes a packet from a member of the packet's epoch or of the current roster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from ...errors import DecodeError
from ...identity import PeerID
from ...net.host import Host
from ..core import cbor
from ..core.engine import GroupView
from ..core.events import Deliver
from ..core.fetch import MAX_FETCH
from ..core.packet import Packet
from ..core.roster import MAX_MEMBERS
from ..core.roster_sync import RosterPageError, roster_page
from ..store import ChatStore, StoredMessage
from .addresses import AddressBook, records_for
from .deliver_batch import delivery_result, read_packets
from .dispatch import Dispatcher, QueryContext, Refusal
from .ratify_batch import batch_result, read_batch
from .runtime import Runtime

#: The ratifier's custody hook (specs/artifacts.md §6): returns once the packet's artifact is
#: held, or raises a Refusal.
Custody = Callable[[bytes, Packet, PeerID], Awaitable[None]]

SYNC_PAGE: Final = 64
#: The one refusal of a querier that may not see the group (§8), as for a group we do not hold.
UNKNOWN_GROUP: Final = "unknown group"
#: Message hashes remembered as relayed (specs/chat.md §13): 4,096 x 32 bytes.
RELAYED_MEMORY: Final = 4096
MAX_PACKET_CBOR: Final = 2**21


def _body_bytes(body: dict[str, Any], key: str, size: int | None = None) -> bytes:
    value = body.get(key)
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        raise Refusal("malformed")
    return value


def _packet_cbor(row: StoredMessage) -> Any:
    return cbor.loads(row.packet_with_certificate(), max_size=MAX_PACKET_CBOR)


class ChatHandlers:
    """The seed's codes and ours, served from one runtime."""

    def __init__(
        self,
        runtime: Runtime,
        store: ChatStore,
        hpke_kem: str,
        hpke_public: bytes,
        host: Host | None = None,
        custody: Custody | None = None,
    ) -> None:
        self._host = host
        #: Files the records an ``addr`` query passes on (set by the node).
        self.addresses: AddressBook | None = None
        self._custody = custody
        self._runtime = runtime
        self._engine = runtime.engine
        self._store = store
        self._hpk = {"kem": hpke_kem, "hpke": hpke_public}
        #: Messages we relayed lately (oldest first), so that each is relayed once.
        self._relayed: dict[bytes, None] = {}

    def register(self, dispatcher: Dispatcher) -> None:
        table = {
            "i": self.on_identifier,
            "mrat": self.on_mrat,
            "mratb": self.on_mratb,
            "smsg": self.on_smsg,
            "smsgb": self.on_smsgb,
            "pkt": self.on_pkt,
            "dht": self.on_dht,
            "get": self.on_get,
            "hpk": self.on_hpk,
            "hds": self.on_heads,
            "addr": self.on_addresses,
        }
        for code, handler in table.items():
            dispatcher.register(code, handler)

    def _member_group(self, ctx: QueryContext, body: dict[str, Any]) -> GroupView:
        """The group a query names, if the querier is in its current roster.

        Raises:
            Refusal: ``"unknown group"`` when we do not hold it or the querier is not in its
                current roster (the same answer either way); ``"malformed"`` for a bad id.
        """
        view = self._engine.find(_body_bytes(body, "group_id", 32))
        if view is None or not view.is_current_member(ctx.remote_peer):
            raise Refusal(UNKNOWN_GROUP)
        return view

    def _group_and_packet(
        self, ctx: QueryContext, body: dict[str, Any], *, current: bool
    ) -> tuple[GroupView, Packet]:
        """The group a query names and the packet it carries, which must be of that group;
        the querier must be in the current roster, or (not ``current``) in any roster first and
        then in the roster of the packet's epoch or the current one.

        Raises:
            Refusal: ``"unknown group"`` as for :meth:`_member_group`; ``"malformed"``.
        """
        view = self._engine.find(_body_bytes(body, "group_id", 32))
        peer = ctx.remote_peer
        if view is None or peer not in (
            view.members(view.state.current_epoch) if current else view.members()
        ):
            raise Refusal(UNKNOWN_GROUP)
        try:
            packet = Packet.from_cbor(body.get("packet"))
        except DecodeError:
            raise Refusal("malformed") from None
        if packet.message.group_id != view.group_id:
            raise Refusal(UNKNOWN_GROUP)
        epoch = packet.message.epoch
        if not (view.is_current_member(peer) or view.state.is_member(peer, epoch)):
            raise Refusal(UNKNOWN_GROUP)
        return view, packet

    async def on_addresses(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        view = self._member_group(ctx, body)
        if self._host is None:
            return {"records": []}
        if self.addresses is not None and "records" in body:
            # Records the asker passes on (a member moved): filed like an answer's.
            self.addresses.file(view, body["records"], source=ctx.remote_peer)
        return {"records": records_for(self._host, view, ctx.remote_peer)}

    async def on_identifier(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        # Members only, like pkt and dht: who holds which role is the group's business.
        view = self._member_group(ctx, body)
        role = view.state.role(self._engine.peer_id, view.state.current_epoch)
        if role is None:  # we were removed: the group is no longer ours to speak for
            raise Refusal(UNKNOWN_GROUP)
        return {"identifier": role.value, "epoch": view.state.current_epoch}

    async def on_mrat(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        view, packet = self._group_and_packet(ctx, body, current=True)
        if packet.message.author != ctx.remote_peer:
            raise Refusal("not allowed")  # only the author asks for votes on its message
        if self._custody is not None:  # specs/artifacts.md §6: hold the artifact, then vote
            await self._custody(view.group_id, packet, ctx.remote_peer)
        vote = await self._runtime.vote(view.group_id, packet, ctx.remote_peer)
        return {"vote": vote.to_cbor()}

    async def on_mratb(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        """A batch of vote requests (specs/chat.md §21): one result per packet, in order."""
        view = self._member_group(ctx, body)
        packets = read_batch(body.get("packets"), view.group_id, ctx.remote_peer)
        held: dict[int, str] = {}
        if self._custody is not None:  # specs/artifacts.md §6, per packet
            for index, packet in enumerate(packets):
                try:
                    await self._custody(view.group_id, packet, ctx.remote_peer)
                except Refusal as exc:
                    held[index] = exc.reason
        asked = [p for i, p in enumerate(packets) if i not in held]
        outcomes = iter(await self._runtime.vote_batch(view.group_id, asked, ctx.remote_peer))
        results = [held[i] if i in held else next(outcomes) for i in range(len(packets))]
        return {"results": [batch_result(o) for o in results]}

    async def on_smsg(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        view, packet = self._group_and_packet(ctx, body, current=False)
        relay = self._relay_list(ctx, view, packet, body.get("relay"))
        if view.has(packet.message_hash):
            await self._relay(view, packet, relay)
            return {"duplicate": True}
        reason = await self._runtime.receive(view.group_id, packet, ctx.remote_peer)
        if reason is not None:
            raise Refusal(reason)
        await self._relay(view, packet, relay)
        return {}

    async def on_smsgb(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        """Certified packets that came together (specs/chat.md §21): one result per packet."""
        view = self._engine.find(_body_bytes(body, "group_id", 32))
        peer = ctx.remote_peer
        if view is None or peer not in view.members():
            raise Refusal(UNKNOWN_GROUP)
        packets = read_packets(body.get("packets"), view.group_id)
        relay: tuple[PeerID, ...] = ()
        for packet in packets:
            epoch = packet.message.epoch
            if not (view.is_current_member(peer) or view.state.is_member(peer, epoch)):
                raise Refusal(UNKNOWN_GROUP)
            relay = self._relay_list(ctx, view, packet, body.get("relay"))
        held = [view.has(p.message_hash) for p in packets]
        fresh = [p for p, h in zip(packets, held, strict=True) if not h]
        reasons = iter(
            await self._runtime.receive_batch(view.group_id, fresh, peer) if fresh else []
        )
        results: list[dict[str, Any]] = []
        for packet, was_held in zip(packets, held, strict=True):
            reason = None if was_held else next(reasons)
            results.append(delivery_result(reason, was_held))
            if reason is None:
                await self._relay(view, packet, relay)
        return {"results": results}

    def _relay_list(
        self, ctx: QueryContext, view: GroupView, packet: Packet, value: object
    ) -> tuple[PeerID, ...]:
        """The members ``smsg`` asks us to pass the message on to (specs/chat.md §13): distinct
        members of the packet's epoch or the current one, neither us nor the sender.

        Raises:
            Refusal: ``"malformed"``.
        """
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > 2 * MAX_MEMBERS:
            raise Refusal("malformed")
        allowed = view.members(packet.message.epoch, view.state.current_epoch)
        allowed -= {self._engine.peer_id, ctx.remote_peer}
        peers: list[PeerID] = []
        for item in value:
            if not isinstance(item, bytes):
                raise Refusal("malformed")
            try:
                peer = PeerID.from_bytes(item)
            except DecodeError:
                raise Refusal("malformed") from None
            if peer not in allowed:
                raise Refusal("malformed")
            allowed.discard(peer)  # so each appears once
            peers.append(peer)
        return tuple(peers)

    async def _relay(self, view: GroupView, packet: Packet, peers: tuple[PeerID, ...]) -> None:
        """Pass a message we hold on to ``peers``, once per message (a repeated ``smsg`` does
        not make us send again)."""
        if not peers or packet.message_hash in self._relayed:
            return
        self._relayed[packet.message_hash] = None
        if len(self._relayed) > RELAYED_MEMORY:
            del self._relayed[next(iter(self._relayed))]
        await self._runtime.execute([Deliver(view.group_id, packet, peers)])

    async def on_pkt(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        view = self._engine.find(_body_bytes(body, "group_id", 32))
        last = None if view is None else view.last_epoch_of(ctx.remote_peer)
        if view is None or last is None:
            raise Refusal(UNKNOWN_GROUP)
        first = body.get("from", 0)
        if not isinstance(first, int) or isinstance(first, bool) or first < 0:
            raise Refusal("malformed")
        # A removed member gets the chain up to, and including, the change that removed it
        # (authored in its last epoch): it learns that it was removed, and nothing after.
        chain = view.state.roster_packets[: last + 1]
        try:
            return roster_page(view.signed, chain, first)
        except RosterPageError as exc:
            raise Refusal(exc.hint) from None

    async def on_dht(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        view = self._member_group(ctx, body)
        cursor = body.get("cursor", 0)
        if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
            raise Refusal("malformed")
        rows, next_cursor = await self._store.page_messages(view.group_id, cursor, SYNC_PAGE)
        packets = [
            cbor.loads(row.packet_with_certificate(), max_size=MAX_PACKET_CBOR) for row in rows
        ]
        return {"packets": packets, "next": next_cursor}

    async def on_get(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        view = self._member_group(ctx, body)
        hashes = body.get("hashes")
        if not isinstance(hashes, list) or len(hashes) > MAX_FETCH:
            raise Refusal("malformed")
        packets = []
        for message_hash in hashes:
            if not isinstance(message_hash, bytes) or not view.has(message_hash):
                continue
            row = await self._store.get_message(view.group_id, message_hash)
            if row is not None and row.certificate is not None:
                packets.append(_packet_cbor(row))
        return {"packets": packets}

    async def on_heads(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        view = self._member_group(ctx, body)
        return {"heads": list(view.next_parents())}  # late messages (§14) left out

    async def on_hpk(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._hpk)
