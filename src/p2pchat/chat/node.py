"""ChatNode: the ratified group chat wired to a Host and a store (specs/chat.md).

Theory of operation
-------------------
The chat's logic is the sans-IO :class:`~p2pchat.chat.core.engine.ChatEngine`; this module is
its facade. :func:`open_chat_node` loads the engine from the store, opens the services around it
(each owning its nursery: the client pool, ratification, delivery, sync, the outbox timer),
serves ``/p2pchat/1.0.0`` with the code handlers, and feeds the engine a ``Connected`` event for
each connection the Host reports, drained in the node's own nursery.

*Sending.* :meth:`ChatNode.send` asks the engine to write the message; the runtime commits it
with its outbox entry, and only then does the engine queue it and ask every ratifier for a vote.
With a quorum the certified message is committed, published and delivered (``smsg``); without
one the outbox retries it with backoff, sooner when a ratifier connects, and writes it again in
the new epoch if the roster moved on (the engine learns the new roster from the ratifier that
refused the message as stale). ``send`` waits for the message (or its re-written successor).

*Receiving.* ``smsg``, history pages (``dht``), fetched parents (``get``) and roster chains
(``pkt``) all go through :meth:`Runtime.receive`: the engine checks the packet, parents are
fetched from the sender when missing, the runtime commits, the engine applies.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio

from ..errors import ProtocolError
from ..identity import KeyPair, PeerID
from ..net.events import ConnectionClosed, ConnectionOpened
from ..net.host import Host
from .artifacts import ArtifactConfig, ArtifactInfo, Artifacts, Progress
from .core import crypto
from .core.engine import (
    ChatEngine,
    ChatError,
    EngineConfig,
    GroupView,
    NotAllowedError,
    OutboxView,
)
from .core.events import Abandoned, Commit, Connected, Disconnected, Publish, Ratified
from .core.group_state import GroupState
from .core.packet import Packet
from .core.prune import is_prunable_delete
from .core.refs import LEAVE, check_reference
from .core.roster import Member, Role
from .core.txn import OutboxDone
from .core.view import history_order
from .groups import GroupMembership
from .services.addresses import AddressBook, PeerFinder
from .services.clients import ClientPool, QueryRefusedError
from .services.dispatch import Dispatcher
from .services.member_records import RECORDS_FILE
from .services.runtime import Runtime, now_ms
from .services.sync import SyncService
from .services.writes import GroupCommits
from .store import ChatStore
from .wiring import decode_row as _decode_row
from .wiring import open_chat_node

__all__ = [
    "RECORDS_FILE",
    "ChatConfig",
    "ChatError",
    "ChatMessage",
    "ChatNode",
    "NotAllowedError",
    "OutboxView",
    "PendingError",
    "QueryRefusedError",
    "open_chat_node",
]

logger = logging.getLogger(__name__)

#: The longest a write or a join waits for the key of the current epoch (seconds).
KEY_WAIT: Final = 20.0


class PendingError(ChatError):
    """The message is stored and queued, but no quorum of ratifiers answered in time.

    It stays in the outbox and goes through when enough ratifiers are reachable.
    """

    def __init__(self, message: str, message_hash: bytes) -> None:
        super().__init__(message)
        self.message_hash = message_hash


@attrs.frozen
class ChatConfig:
    """Timeouts and retry policy of a chat node (seconds)."""

    query_timeout: float = 5.0
    send_timeout: float = 10.0
    retry_initial: float = 0.5
    retry_max: float = 30.0
    kem: str = crypto.DEFAULT_KEM
    #: Anti-entropy: how often to compare history with connected members (seconds).
    sync_interval: float = 30.0
    #: Queued messages ratified at once by the outbox.
    outbox_concurrency: int = 32
    #: Size of each subscriber's queue; a subscriber that falls this far behind loses messages.
    subscriber_queue: int = 10_000
    #: A ratifier's quota of another author's pending messages (specs/chat.md §6 "Quotas"),
    #: per group, in count and bytes, and how long (seconds) one may stay pending.
    pending_max_count: int = 64
    pending_max_bytes: int = 4 * 1024 * 1024
    pending_ttl: float = 24 * 60 * 60.0
    #: Artifacts of any size (specs/artifacts.md): disk reserve, lazy fetching, timeouts.
    artifacts: ArtifactConfig = attrs.Factory(ArtifactConfig)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            retry_initial=int(self.retry_initial * 2000),
            retry_max=int(self.retry_max * 1000),
            attempt_timeout=int(self.query_timeout * 1000) + 1000,
            sync_interval=int(self.sync_interval * 1000),
            outbox_concurrency=self.outbox_concurrency,
            pending_max_count=self.pending_max_count,
            pending_max_bytes=self.pending_max_bytes,
            pending_ttl=int(self.pending_ttl * 1000),
        )


@attrs.frozen
class ChatMessage:
    """A message as the application sees it. ``content`` is None when we hold no key for it."""

    group_id: bytes
    message_hash: bytes
    author: PeerID
    message_type: str
    mime: str
    time_stamp: int
    epoch: int
    ref_hash: bytes | None
    content: bytes | None
    ratified: bool
    #: A chunked artifact (specs/artifacts.md): ``content`` is None; read it with
    #: :meth:`ChatNode.open_artifact`.
    artifact: ArtifactInfo | None = None

    @property
    def text(self) -> str | None:
        """The content as text (UTF-8, undecodable bytes replaced), if readable."""
        return None if self.content is None else self.content.decode("utf-8", "replace")


class ChatNode(GroupMembership):
    """A member of ratified groups. Made by :func:`open_chat_node`."""

    def __init__(
        self,
        host: Host,
        store: ChatStore,
        runtime: Runtime,
        clients: ClientPool,
        sync: SyncService,
        config: ChatConfig,
    ) -> None:
        self.host = host
        self.identity: KeyPair = host.identity
        self.peer_id: PeerID = host.peer_id
        self.store = store
        self.engine: ChatEngine = runtime.engine
        self.hpke = runtime.engine.hpke
        self.config = config
        self.dispatcher = Dispatcher()
        self._runtime = runtime
        self._query = clients.query
        self._addresses: AddressBook | None = None
        self._protected: set[PeerID] = set()
        self._sync = sync
        self._subscribers: dict[bytes, list[trio.MemorySendChannel[ChatMessage]]] = {}
        self._ratified_waiters: dict[bytes, trio.Event] = {}
        #: Our messages being waited for, by first hash: the hash they were ratified under,
        #: or the reason they were abandoned.
        self._origin_done: dict[bytes, tuple[trio.Event, list[bytes | str]]] = {}
        self._commits = GroupCommits(runtime, runtime.engine.forget_written)
        #: (group, member) whose ratified "leave" we, the owner, are to honour (§17 "Leaving").
        self._leaves, self._leaving = trio.open_memory_channel[tuple[bytes, PeerID]](64)
        self.artifacts: Artifacts | None = None
        #: Told (group, message hash) of each message whose content a certified delete dropped
        #: here (specs/chat.md §17), e.g. to take it out of a search index; must not block.
        self.on_deleted: Callable[[bytes, bytes], None] | None = None

    # -- groups (creating, joining, roster changes: chat/groups.py) ------------------------

    def groups(self) -> list[bytes]:
        """The ids of the groups we belong to."""
        return self.engine.groups()

    def group_state(self, group_id: bytes) -> GroupState:
        """The verified roster chain of a group.

        Raises:
            ChatError: we are not in that group.
        """
        return self.engine.view(group_id).state

    def view(self, group_id: bytes) -> GroupView:
        """What we hold of a group: chain, epoch keys, heads (read-only).

        Raises:
            ChatError: we are not in that group.
        """
        return self.engine.view(group_id)

    def use_peer_finder(self, finder: PeerFinder | None) -> None:
        """Look members that no member can locate up with ``finder`` (the DHT's
        ``find_peer``); None stops it."""
        if self._addresses is not None:
            self._addresses.use_finder(finder)

    def my_member_entry(self, role: Role) -> Member:
        """Our member entry (peer, role, HPKE key) for a roster."""
        return self.engine.my_member_entry(role)

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        group_id: bytes,
        content: bytes | str,
        *,
        message_type: str = "text",
        mime: str | None = None,
        ref_hash: bytes | None = None,
        wait: bool = True,
    ) -> bytes:
        """Send ``content`` to the group; return its message hash.

        With ``wait`` (the default) it returns once the message is ratified, or raises
        :class:`PendingError` after ``send_timeout`` (the message stays queued and goes through
        later). Without ``wait`` it returns once the message is stored and queued.

        Raises:
            NotAllowedError: our role cannot send.
            PendingError: no quorum within ``send_timeout``.
            ChatError: no key for the current epoch.
        """
        data = content.encode() if isinstance(content, str) else bytes(content)
        if mime is None:
            mime = {"text": "text/plain", "markdown": "text/markdown"}.get(
                message_type, "application/octet-stream"
            )
        view = self.engine.view(group_id)
        refused = check_reference(
            message_type, self.peer_id, ref_hash, view.state.owner, view.ref_of
        )
        if refused is not None:  # §17: what the ratifiers would refuse, said at once
            raise NotAllowedError(f"the ratifiers would refuse this {message_type}: {refused}")
        return await self._submit(
            group_id,
            lambda: self.engine.author(
                group_id,
                data,
                message_type=message_type,
                mime=mime,
                ref_hash=ref_hash,
                now=now_ms(),
                chain=True,
            ),
            wait=wait,
        )

    async def send_file(
        self,
        group_id: bytes,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        mime: str | None = None,
        message_type: str | None = None,
        wait: bool = True,
        progress: Progress | None = None,
    ) -> bytes:
        """Send the file at ``path`` as an artifact of any size (specs/artifacts.md), read and
        sealed a chunk at a time; return its message hash, as :meth:`send` does. The message is
        an ``image`` or a ``file`` by its media type, unless ``message_type`` says (``avatar``,
        specs/chat.md §18).

        Raises:
            OSError: the file cannot be read.
            DiskReserveError: its chunks would take the disk below the reserve.
            NotAllowedError, PendingError, ChatError: as :meth:`send`.
        """
        if self.artifacts is None:
            raise ChatError("this node keeps no artifact files (its store has no data dir)")

        async def submit(
            group_id: bytes, write: Callable[[], tuple[Packet, Commit]], wait: bool
        ) -> bytes:
            return await self._submit(group_id, write, wait=wait)

        return await self.artifacts.send_file(
            submit,
            group_id,
            path,
            name=name,
            mime=mime,
            message_type=message_type,
            wait=wait,
            progress=progress,
        )

    async def open_artifact(self, group_id: bytes, message_hash: bytes) -> AsyncIterator[bytes]:
        """The plaintext of a message's chunked artifact, chunk by chunk (fetching what is
        missing first): ``async for piece in await node.open_artifact(g, h)``.

        Raises:
            ChatError: no such message with a chunked artifact, or no artifact files here.
            ArtifactUnavailableError: no key for it, or it cannot be fetched or decrypted.
        """
        if self.artifacts is None:
            raise ChatError("this node keeps no artifact files (its store has no data dir)")
        return await self.artifacts.open(group_id, message_hash)

    async def _key_ready(self, group_id: bytes) -> None:
        """Wait (at most KEY_WAIT seconds) while the key of the group's current epoch is being
        fetched (specs/chat.md §20: a roster delta does not carry it)."""
        with trio.move_on_after(KEY_WAIT):
            while self.engine.keys.waiting(group_id):  # noqa: ASYNC110 (engine state, no event)
                await trio.sleep(0.02)

    async def _submit(
        self, group_id: bytes, write: Callable[[], tuple[Packet, Commit]], *, wait: bool = True
    ) -> bytes:
        await self._key_ready(group_id)
        # Written at once (it names the message written before it, specs/chat.md §11); the
        # commits of what is written meanwhile are made together, in order (§21).
        packet, commit = write()
        origin = packet.message_hash
        done = self._origin_done.setdefault(origin, (trio.Event(), []))
        try:
            await self._commits.commit(group_id, commit)
        except BaseException:
            self._origin_done.pop(origin, None)
            raise
        try:
            if not wait:
                return origin
            with trio.move_on_after(self.config.send_timeout):
                await done[0].wait()
                outcome = done[1][-1]
                if isinstance(outcome, str):
                    raise ChatError(f"the message was not sent: {outcome}")
                return outcome
        finally:
            self._origin_done.pop(origin, None)
        raise PendingError(
            "no quorum of ratifiers answered in time; the message stays queued", origin
        )

    # -- the outbox --------------------------------------------------------------------------

    def outbox(self, group_id: bytes | None = None) -> list[OutboxView]:
        """Our messages waiting for their certificate (of ``group_id``, or all), oldest first,
        with the current attempt's votes, refusals and silent ratifiers."""
        return self.engine.outbox_snapshot(now_ms(), group_id)

    async def cancel(self, message_hash: bytes) -> bytes:
        """Withdraw a queued message (its hash, or the hash ``send`` answered): it leaves the
        outbox once that is committed; its pending row stays. Returns its group.

        Raises:
            ChatError: already ratified ("too late to cancel"), or not in the outbox.
        """
        commit = self.engine.cancel(message_hash)
        (done,) = commit.txn.operations
        assert isinstance(done, OutboxDone)
        await self._runtime.commit(commit)
        return done.group_id

    def pending(self, group_id: bytes) -> list[ChatMessage]:
        """Our messages of the group still in the outbox (not ratified), oldest first.

        Raises:
            ChatError: we are not in that group.
        """
        self.engine.view(group_id)
        queued = {item.message_hash: item for item in self.engine.outbox}
        return [
            self._to_chat_message(queued[v.message_hash].packet, ratified=False)
            for v in self.engine.outbox_snapshot(now_ms(), group_id)
            if v.message_hash in queued
        ]

    # -- reading -----------------------------------------------------------------------------

    def _to_chat_message(self, packet: Packet, *, ratified: bool) -> ChatMessage:
        message = packet.message
        content: bytes | None
        if packet.pruned or (message.artifact.chunked is not None and self.artifacts is not None):
            content = None  # a deleted message's content key is gone (specs/chat.md §17)
        elif message.message_type == "roster":
            content = message.artifact.data
        else:
            view = self.engine.find(message.group_id)
            key = None if view is None else view.epoch_keys.get(message.epoch)
            try:
                content = None if key is None else crypto.decrypt_packet(packet, epoch_key=key)
            except ProtocolError:
                content = None
        return ChatMessage(
            group_id=message.group_id,
            message_hash=packet.message_hash,
            author=message.author,
            message_type=message.message_type,
            mime=message.artifact.type,
            time_stamp=message.time_stamp,
            epoch=message.epoch,
            ref_hash=message.ref_hash,
            content=content,
            ratified=ratified,
            artifact=None if self.artifacts is None else self.artifacts.info(packet),
        )

    def _publish(self, action: Publish) -> None:
        if self.artifacts is not None:
            self.artifacts.on_publish(action)
        if action.ratified and action.packet.message.message_type == "roster":
            self._protect_members()
        if action.ratified and action.packet.message.message_type == LEAVE:
            message = action.packet.message
            self._leave_asked(action.group_id, message.author, message.epoch)
        deleted = action.packet.message.ref_hash
        told = self.on_deleted
        if action.ratified and is_prunable_delete(action.packet) and deleted and told:
            told(action.group_id, deleted)
        if action.ratified:
            waiter = self._ratified_waiters.pop(action.packet.message_hash, None)
            if waiter is not None:
                waiter.set()
        subscribers = self._subscribers.get(action.group_id)
        if not subscribers:
            return
        item = self._to_chat_message(action.packet, ratified=action.ratified)
        for channel in list(subscribers):
            try:
                channel.send_nowait(item)
            except trio.WouldBlock:
                logger.warning("a subscriber fell behind; dropping a message for it")
            except trio.BrokenResourceError:
                subscribers.remove(channel)

    def _ratified(self, action: Ratified | Abandoned) -> None:
        done = self._origin_done.get(action.origin)
        if done is not None:
            done[1].append(action.reason if isinstance(action, Abandoned) else action.message_hash)
            done[0].set()

    @asynccontextmanager
    async def subscribe(
        self, group_id: bytes
    ) -> AsyncIterator[trio.MemoryReceiveChannel[ChatMessage]]:
        """A channel of the group's messages from now on: each of ours twice (pending, then
        ratified), everyone else's once ratified.

        Raises:
            ChatError: we are not in that group.
        """
        self.engine.view(group_id)
        send, receive = trio.open_memory_channel[ChatMessage](self.config.subscriber_queue)
        subscribers = self._subscribers.setdefault(group_id, [])
        subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in subscribers:
                subscribers.remove(send)
            send.close()

    async def wait_ratified(self, group_id: bytes, message_hash: bytes) -> None:
        """Wait until the message is ratified here.

        Raises:
            ChatError: we are not in that group.
        """
        view = self.engine.view(group_id)
        if view.has(message_hash):
            await trio.lowlevel.checkpoint()
            return
        event = self._ratified_waiters.setdefault(message_hash, trio.Event())
        await event.wait()

    async def history(self, group_id: bytes) -> list[ChatMessage]:
        """Every ratified message we hold, in display order (specs/chat.md §8).

        Raises:
            ChatError: we are not in that group.
        """
        late = self.engine.view(group_id).close.late  # not shown (specs/chat.md §14)
        rows = await self.store.all_ratified(group_id)
        packets = {r.message_hash: _decode_row(r) for r in rows if r.message_hash not in late}
        return [self._to_chat_message(p, ratified=True) for p in history_order(packets)]

    async def history_since(self, group_id: bytes, seq: int) -> list[tuple[int, ChatMessage]]:
        """The ratified messages stored here after the one of store order ``seq`` (specs/chat.md
        §9: the order in which they became ratified here, never reused), each with its ``seq``,
        in that order: what a reader that has seen up to ``seq`` has not seen (0: everything).

        Raises:
            ChatError: we are not in that group.
        """
        late = self.engine.view(group_id).close.late  # not shown (specs/chat.md §14)
        rows = await self.store.all_ratified(group_id, after=seq)
        return [
            (row.seq or 0, self._to_chat_message(_decode_row(row), ratified=True))
            for row in rows
            if row.message_hash not in late
        ]

    # -- connections -------------------------------------------------------------------------

    async def _watch_connections(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Tell the engine of every connection that comes up or goes down (the Host's events,
        drained here, in the node's nursery)."""
        async with self.host.connection_events(include_existing=True) as events:
            task_status.started()
            async for event in events:
                if isinstance(event, ConnectionOpened):
                    await self._runtime.handle(Connected(event.peer, now_ms()))
                elif isinstance(event, ConnectionClosed):
                    if event.peer not in self.host.connected_peers():
                        await self._runtime.handle(Disconnected(event.peer))
                else:  # some were dropped: what is connected now is what counts
                    for peer in self.host.connected_peers():
                        await self._runtime.handle(Connected(peer, now_ms()))
