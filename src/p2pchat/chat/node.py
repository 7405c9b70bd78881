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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import attrs
import trio

from ..aio import open_service_nursery
from ..errors import DecodeError, ProtocolError
from ..identity import KeyPair, PeerID
from ..multiaddr import Multiaddr
from ..net.events import ConnectionClosed, ConnectionOpened
from ..net.host import DialError, Host
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
from .core.genesis import MAX_NAME
from .core.group_state import GroupState
from .core.packet import Packet
from .core.prune import is_prunable_delete
from .core.refs import LEAVE, check_reference
from .core.roster import History, Member, Role
from .core.txn import OutboxDone
from .core.view import history_order
from .services.addresses import AddressBook, PeerFinder
from .services.blobs import BlobService
from .services.clients import ClientPool, QueryRefusedError, open_client_pool
from .services.deliver import DeliverService
from .services.dispatch import Dispatcher
from .services.dispatch import install_chat as _install_chat
from .services.handlers import ChatHandlers
from .services.keys import KeyService
from .services.member_records import RECORDS_FILE, MemberRecordFile
from .services.outbox import run_outbox
from .services.ratify import RatifyService
from .services.runtime import Runtime, now_ms
from .services.sync import SyncService
from .services.writes import GroupCommits
from .store import ChatStore, StoredMessage
from .store.chunks import BLOB_DIR, BlobStore

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

PROTOCOL_ID: Final = "/p2pchat/1.0.0"
#: Queued messages resumed at start-up (the rest wait in the store for the next start).
MAX_OUTBOX_LOAD: Final = 100_000


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


class ChatNode:
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

    # -- groups ------------------------------------------------------------------------------

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

    async def create_group(
        self, name: str, *, quorum: int | None = None, history: History = "all"
    ) -> bytes:
        """Create a group with us as owner and sole ratifier; return its id.

        Raises:
            ValueError: a bad name, quorum or history setting.
        """
        group_id, commit = self.engine.create_group(
            name, quorum=quorum, history=history, now=now_ms(), nonce=os.urandom(16)
        )
        await self._runtime.commit(commit)
        logger.info("created group %s (%s)", group_id.hex()[:16], name)
        return group_id

    async def invite(self, group_id: bytes, peer: PeerID | Multiaddr, role: Role | str) -> None:
        """Add ``peer`` with ``role`` (or change its role); owner only. Returns once the roster
        message is ratified. The invitee then calls :meth:`join`.

        Raises:
            NotAllowedError: we are not the owner.
            ChatError: the invitee cannot be reached or its key is unusable.
            PendingError: no quorum in time (the change stays queued).
            ChatError: an earlier roster change is still queued, or the roster changed before
                this one was ratified.
        """
        view = self.engine.view(group_id)
        role = Role(role)
        if view.state.owner != self.peer_id:
            raise NotAllowedError("only the group's owner can invite")
        target = peer.peer_id if isinstance(peer, Multiaddr) else peer
        if target is None:
            raise ChatError(f"the address must end in /p2p/<peer id>: {peer}")
        response = await self._query(peer, "hpk", {})
        try:
            member = Member(target, role, response["kem"], response["hpke"])
        except (KeyError, TypeError, ValueError, DecodeError) as exc:
            raise ChatError(f"{target} sent an unusable encryption key: {exc}") from exc
        current = view.state.current_roster
        if current.member(target) is not None:  # §20: a member's key is published once
            await self.set_role(group_id, target, role)
            return
        await self._change_roster(group_id, [*current.members, member], added=target)

    async def remove(self, group_id: bytes, peer: PeerID) -> None:
        """Remove ``peer`` from the group; owner only. It gets no later epoch keys.

        Raises:
            NotAllowedError: we are not the owner, or ``peer`` is the owner.
            PendingError: no quorum in time (the change stays queued).
        """
        view = self.engine.view(group_id)
        if view.state.owner != self.peer_id or peer == self.peer_id:
            raise NotAllowedError("only the owner can remove members, and not itself")
        members = [m for m in view.state.current_roster.members if m.peer != peer]
        await self._change_roster(group_id, members, added=None)

    async def set_role(self, group_id: bytes, peer: PeerID, role: Role | str) -> None:
        """Change a member's role; owner only. Returns once the roster message is ratified.

        Raises:
            NotAllowedError: we are not the owner, or ``peer`` is the owner.
            ChatError: ``peer`` is not a member.
            PendingError: no quorum in time (the change stays queued).
        """
        view = self.engine.view(group_id)
        role = Role(role)
        if view.state.owner != self.peer_id:
            raise NotAllowedError("only the group's owner changes roles")
        if peer == self.peer_id:
            raise NotAllowedError("the owner's role does not change (it stays a ratifier)")
        current = view.state.current_roster
        member = current.member(peer)
        if member is None:
            raise ChatError(f"{peer} is not a member of this group")
        if member.role is role:
            return
        members = [attrs.evolve(m, role=role) if m.peer == peer else m for m in current.members]
        await self._change_roster(group_id, members, added=None)

    async def rename(self, group_id: bytes, name: str) -> None:
        """Rename the group (a roster change, §20); owner only.

        Raises:
            NotAllowedError: we are not the owner.
            ChatError: a name over 128 bytes.
            PendingError: no quorum in time (the change stays queued).
        """
        view = self.engine.view(group_id)
        if view.state.owner != self.peer_id:
            raise NotAllowedError("only the group's owner renames it")
        if not name or len(name.encode()) > MAX_NAME:
            raise ChatError(f"a group name is 1 to {MAX_NAME} bytes")
        members = view.state.current_roster.members
        await self._change_roster(group_id, members, added=None, name=name)

    async def hand_over(self, group_id: bytes, peer: PeerID) -> None:
        """Make ``peer`` the group's owner (a roster change, §20; it becomes a ratifier if it
        is not one); owner only. We stay a member with our role.

        Raises:
            NotAllowedError: we are not the owner.
            ChatError: ``peer`` is not a member, or is us.
            PendingError: no quorum in time (the change stays queued).
        """
        view = self.engine.view(group_id)
        if view.state.owner != self.peer_id:
            raise NotAllowedError("only the group's owner hands it over")
        current = view.state.current_roster
        if current.member(peer) is None or peer == self.peer_id:
            raise ChatError(f"{peer} is not another member of this group")
        members = [
            attrs.evolve(m, role=Role.RATIFIER) if m.peer == peer else m for m in current.members
        ]
        await self._change_roster(group_id, members, added=None, owner=peer)

    async def _change_roster(
        self,
        group_id: bytes,
        members: Sequence[Member],
        added: PeerID | None,
        *,
        name: str | None = None,
        owner: PeerID | None = None,
    ) -> None:
        await self._submit(
            group_id,
            lambda: self.engine.change_roster(
                group_id, members, added=added, now=now_ms(), name=name, owner=owner
            ),
        )

    async def join(self, group_id: bytes, via: PeerID | Multiaddr) -> None:
        """Join a group we were invited to, by fetching its roster chain from ``via``.

        Raises:
            ChatError: ``via`` does not answer, the chain does not verify, or we are not in it.
        """
        if self.engine.find(group_id) is not None:
            return
        try:
            state = await self._sync.fetch_chain(group_id, via)
        except QueryRefusedError as exc:
            if exc.reason != "unknown group":
                raise
            raise ChatError(
                f"{_peer_text(via)} does not count us among the members of group "
                f"{group_id.hex()[:16]}: ask the group's owner to invite this node, then join "
                "through the owner or another member"
            ) from None
        commit = self.engine.join_chain(state, now_ms())
        if commit is None:
            return
        await self._runtime.commit(commit)
        self._protect_members()
        await self._key_ready(group_id)
        logger.info("joined group %s (%s)", group_id.hex()[:16], self.group_state(group_id).name)
        peer = via.peer_id if isinstance(via, Multiaddr) else via
        if peer is not None:
            if self._addresses is not None:
                await self._addresses.exchange(self.engine.view(group_id), peer)
            await self._sync.history(group_id, peer)

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

    def current_members(self) -> set[PeerID]:
        """The members of our groups' current rosters, other than us."""
        members: set[PeerID] = set()
        for group_id in self.engine.groups():
            members |= self.engine.view(group_id).members(
                self.engine.view(group_id).state.current_epoch
            )
        members.discard(self.peer_id)
        return members

    def _protect_members(self) -> None:
        """The Host keeps connections to the members of our groups' current rosters (they are
        never evicted and may use the reserved slots); a removed member loses that."""
        members = self.current_members()
        for peer in self._protected - members:
            self.host.unprotect(peer)
        for peer in members - self._protected:
            self.host.protect(peer)
        self._protected = members

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

    def _leave_asked(self, group_id: bytes, member: PeerID, epoch: int) -> None:
        view = self.engine.find(group_id)
        if view is None or view.state.owner != self.peer_id or member == self.peer_id:
            return
        if epoch != view.state.current_epoch:
            return  # the roster moved on since (the member may have been invited back)
        if view.is_current_member(member):
            try:
                self._leaves.send_nowait((group_id, member))
            except trio.WouldBlock:  # honoured at the next leave or restart scan
                logger.warning("too many leave requests at once; one waits")

    async def _honour_leaves(self) -> None:
        """Take each member that asked to leave off the roster (owner only; in the node's
        nursery). A change that cannot go through now is logged; the member asks again."""
        for group_id in self.engine.groups():  # requests ratified while we were away
            for message in await self.history(group_id):
                if message.message_type == LEAVE:
                    self._leave_asked(group_id, message.author, message.epoch)
        async for group_id, member in self._leaving:
            if not self.engine.view(group_id).is_current_member(member):
                continue
            try:
                await self.remove(group_id, member)
            except ChatError as exc:  # PendingError is one: the change stays queued
                logger.warning("cannot take %s off the roster yet: %s", member, exc)

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

    async def _connect_members(self) -> None:
        """Dial the members we know addresses for, so sync and the outbox can start."""
        peers: set[PeerID] = set()
        for group_id in self.engine.groups():
            view = self.engine.view(group_id)
            peers |= view.members(view.state.current_epoch)
        peers.discard(self.peer_id)

        async def one(peer: PeerID) -> None:
            try:
                await self.host.connect(peer)
            except (DialError, ValueError) as exc:
                logger.debug("cannot reach member %s: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in sorted(peers):
                nursery.start_soon(one, peer)


def _peer_text(peer: PeerID | Multiaddr) -> str:
    target = peer.peer_id if isinstance(peer, Multiaddr) else peer
    return str(target if target is not None else peer)


def _decode_row(row: StoredMessage) -> Packet:
    return Packet.decode(row.packet_with_certificate())


async def _load_hpke(store: ChatStore, kem: str) -> crypto.HpkeKeyPair:
    stored = await store.get_hpke_key(kem)
    if stored is not None:
        return crypto.HpkeKeyPair.from_private_bytes(kem, stored.private)
    pair = crypto.HpkeKeyPair.generate(kem)
    await store.put_hpke_key(kem, pair.to_private_bytes(), pair.public_bytes())
    return pair


async def _load_engine(store: ChatStore, engine: ChatEngine) -> None:
    for record in await store.list_groups():
        rosters = await store.get_rosters(record.group_id)
        packets = [Packet.decode(r.packet) for r in sorted(rosters, key=lambda r: r.epoch)]
        ratified = [_decode_row(row) for row in await store.all_ratified(record.group_id)]
        keys = await store.get_epoch_keys(record.group_id)
        engine.load_group(record.genesis, packets, keys, ratified)
        for pending in await store.others_pending(record.group_id):
            packet = _decode_row(pending)
            engine.load_pending(packet, received_at=pending.received_at, size=pending.wire_size)
            await _load_vote(store, engine, packet)
    now = now_ms()
    for entry in await store.outbox_due(2**62, limit=MAX_OUTBOX_LOAD):
        row = await store.get_message(entry.group_id, entry.message_hash)
        if row is not None:
            packet = _decode_row(row)
            engine.load_outbox(packet, now, rank=entry.created_at)
            await _load_vote(store, engine, packet)


async def _load_vote(store: ChatStore, engine: ChatEngine, packet: Packet) -> None:
    """Our stored vote for a pending message, if any: it closes an epoch for us or goes into
    our closing commitment (specs/chat.md §14)."""
    if await store.get_vote(packet.message.group_id, packet.message_hash) is not None:
        engine.load_vote(packet)


@asynccontextmanager
async def open_chat_node(
    host: Host,
    store: ChatStore,
    config: ChatConfig | None = None,
    *,
    records_path: Path | None = None,
) -> AsyncIterator[ChatNode]:
    """Run the chat protocol on ``host`` with ``store``: serve ``/p2pchat/1.0.0``, resume the
    outbox, and sync with group members as they connect. With ``records_path`` (the data dir's
    ``member-records.cbor``), the members' signed peer records learnt are kept there and read
    back at start, before members are dialed (specs/chat.md §12).

    Raises:
        StoreError: the store cannot be read.
    """
    config = config if config is not None else ChatConfig()
    hpke = await _load_hpke(store, config.kem)
    engine = ChatEngine(host.identity, hpke, config.engine_config())
    await _load_engine(store, engine)
    runtime = Runtime(engine, store)
    async with (
        open_client_pool(host, query_timeout=config.query_timeout) as clients,
        open_service_nursery() as ratify_nursery,
        open_service_nursery() as deliver_nursery,
        open_service_nursery() as sync_nursery,
        open_service_nursery() as artifacts_nursery,
        open_service_nursery() as nursery,
    ):
        records = None if records_path is None else MemberRecordFile(host, records_path)
        addresses = AddressBook(host, clients, records, nursery)
        sync = SyncService(runtime, clients, sync_nursery, addresses)
        node = ChatNode(host, store, runtime, clients, sync, config)
        node._addresses = addresses
        node._protect_members()
        keys = KeyService(runtime, store, clients, ratify_nursery)
        keys.register(node.dispatcher)
        runtime.attach(
            ratify=RatifyService(runtime, clients, ratify_nursery, addresses),
            deliver=DeliverService(
                clients,
                deliver_nursery,
                retry_initial=config.retry_initial,
                retry_max=config.retry_max,
                connected=host.connected_peers,
            ),
            sync=sync,
            fetcher=sync,
            publish=node._publish,
            ratified=node._ratified,
            keys=keys,
        )
        node.artifacts = _open_artifacts(host, store, engine, artifacts_nursery, config)
        custody = keys.custody(None if node.artifacts is None else node.artifacts.hold_before_vote)
        handlers = ChatHandlers(runtime, store, hpke.kem, hpke.public_bytes(), host, custody)
        handlers.addresses = addresses
        handlers.register(node.dispatcher)
        _install_chat(host, node.dispatcher)
        if node.artifacts is not None:
            node.artifacts.blobs.install()
            nursery.start_soon(node.artifacts.resume)
            nursery.start_soon(node.artifacts.run_sweeps)
        await nursery.start(node._watch_connections)
        nursery.start_soon(run_outbox, runtime)
        if records is not None:
            await records.load(node.current_members())
            nursery.start_soon(records.run_saver, node.current_members)
        nursery.start_soon(node._connect_members)
        nursery.start_soon(node._honour_leaves)
        try:
            yield node
        finally:
            host.remove_stream_handler(PROTOCOL_ID)
            if records is not None:
                with trio.CancelScope(shield=True):
                    await records.save(node.current_members())
            if node.artifacts is not None:
                node.artifacts.blobs.uninstall()


def _open_artifacts(
    host: Host, store: ChatStore, engine: ChatEngine, nursery: trio.Nursery, config: ChatConfig
) -> Artifacts | None:
    """The artifact service, its blob files beside the store (None without a data dir)."""
    data_dir = getattr(store, "data_dir", None)
    if data_dir is None:
        return None
    settings = config.artifacts
    files = BlobStore(data_dir / BLOB_DIR, reserve=settings.disk_reserve)

    def is_member(group_id: bytes, peer: PeerID) -> bool:
        view = engine.find(group_id)
        return view is not None and view.is_current_member(peer)

    blobs = BlobService(host, files, is_member, stall_timeout=settings.stall_timeout)
    return Artifacts(engine, store, blobs, nursery, settings)
