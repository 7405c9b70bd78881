"""ChatNode: the ratified group chat wired to a Host and a store (specs/chat.md).

Theory of operation
-------------------
:func:`open_chat_node` opens the node's nursery; every task below lives in it.

*Sending.* The author encrypts the content under the current epoch key, signs the message, and
commits it as pending together with an outbox entry (one transaction). It then asks every
ratifier of the epoch for a vote (``mrat``, in parallel, the author's own vote included when it
is a ratifier). With a quorum the certificate is attached, the message is committed as ratified
and published locally, and ``smsg`` carries it to every member. Without a quorum the message
stays in the outbox; the outbox task retries it with exponential backoff, sooner when a new
connection comes up, and re-authors it in the current epoch if the roster moved on meanwhile.

*Ratifying.* A ratifier checks the packet (validate.py), fetches missing parents from the
querier (``get``), commits the packet, records its vote durably, and only then answers.

*Receiving.* ``smsg`` and history pages (``dht``) go through the same path: verify the
certificate and the packet, fetch missing parents, commit, apply roster changes (unwrapping the
new epoch key when we are in the new roster), then publish to subscribers.

*Anti-entropy.* Whenever a connection to a member of one of our groups comes up, we page through
its history (``dht``) and keep what we lack; at start-up we dial the members we know.

Connections to peers are made on demand through the Host (``new_stream`` by peer ID, with the
addresses the peer store knows); one chat stream per peer carries our queries.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import trio

from ..errors import DecodeError, P2PChatError, ProtocolError
from ..identity import KeyPair, PeerID
from ..multiaddr import Multiaddr
from ..net.host import DialError, Host, StreamOpenError
from ..net.muxer import MuxedConnection
from .core import cbor, crypto
from .core.dag import Heads, display_order
from .core.packet import Artifact, Headers, Message, Packet, Vote, make_vote, sha256, sign_message
from .core.quorum import QuorumCollector
from .core.roster import (
    GroupState,
    History,
    Member,
    Role,
    Roster,
    RosterUpdate,
    SignedGenesis,
    WrappedKey,
    build_roster_message,
    default_quorum,
    new_group,
    read_roster_update,
)
from .core.validate import check_for_delivery, check_for_ratification
from .services.dispatch import (
    ChatClient,
    ChatStreamError,
    Dispatcher,
    QueryContext,
    Refusal,
    open_chat,
)
from .services.dispatch import install_chat as _install_chat
from .store import ChatStore, OutboxEntry, StoredMessage, VoteConflictError

logger = logging.getLogger(__name__)

MAX_FETCH: Final = 64  # hashes per ``get`` query
DELIVERY_ATTEMPTS: Final = 4
MAX_REAUTHOR: Final = 3  # epochs a send follows before it is left to the outbox
#: Negative answers to ``smsg`` that may succeed when asked again later.
RETRYABLE_REASONS: Final = frozenset({"too many queries", "missing parents", "internal error"})
MAX_FETCH_DEPTH: Final = 64  # rounds of fetching missing ancestors
SYNC_PAGE: Final = 64


class ChatError(P2PChatError):
    """A chat operation failed; the message says why."""


class QueryRefusedError(ChatError):
    """A peer answered a query negatively; ``reason`` is its reason (specs/chat.md §2)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotAllowedError(ChatError):
    """Our role in the group does not allow this (e.g. a viewer sending)."""


class PendingError(ChatError):
    """The message is stored and queued, but no quorum of ratifiers answered in time.

    It stays in the outbox and goes through when enough ratifiers are reachable.
    """

    def __init__(self, message: str, message_hash: bytes) -> None:
        super().__init__(message)
        self.message_hash = message_hash


@attrs.frozen
class ChatConfig:
    """Timeouts and retry policy of a chat node."""

    query_timeout: float = 5.0
    send_timeout: float = 10.0
    retry_initial: float = 0.5
    retry_max: float = 30.0
    kem: str = crypto.DEFAULT_KEM
    #: Anti-entropy: how often to compare history with connected members (seconds).
    sync_interval: float = 30.0
    #: Queued messages ratified at once by the outbox task.
    outbox_concurrency: int = 16
    #: Size of each subscriber's queue; a subscriber that falls this far behind loses messages.
    subscriber_queue: int = 10_000


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

    @property
    def text(self) -> str | None:
        """The content as text (UTF-8, undecodable bytes replaced), if readable."""
        return None if self.content is None else self.content.decode("utf-8", "replace")


@attrs.define(eq=False)
class _Group:
    signed: SignedGenesis
    state: GroupState
    epoch_keys: dict[int, bytes] = attrs.Factory(dict)
    heads: Heads = attrs.Factory(Heads)
    ratified: set[bytes] = attrs.Factory(set)
    waiters: dict[bytes, trio.Event] = attrs.Factory(dict)
    subscribers: list[trio.MemorySendChannel[ChatMessage]] = attrs.Factory(list)
    lock: trio.StrictFIFOLock = attrs.Factory(trio.StrictFIFOLock)
    fetch_lock: trio.Lock = attrs.Factory(trio.Lock)
    #: Our messages refused as stale, and a ratifier that refused them (it knows a later roster).
    stale_from: dict[bytes, PeerID] = attrs.Factory(dict)

    @property
    def group_id(self) -> bytes:
        return self.signed.group_id

    def has(self, message_hash: bytes) -> bool:
        return message_hash in self.ratified

    def members(self, *epochs: int) -> set[PeerID]:
        peers: set[PeerID] = set()
        for epoch in epochs:
            roster = self.state.find_roster(epoch)
            if roster is not None:
                peers.update(m.peer for m in roster.members)
        return peers


def _now_ms() -> int:
    return int(time.time() * 1000)


def _body_bytes(body: dict[str, Any], key: str, size: int | None = None) -> bytes:
    value = body.get(key)
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        raise Refusal("malformed")
    return value


class ChatNode:
    """A member of ratified groups. Made by :func:`open_chat_node`."""

    def __init__(
        self,
        host: Host,
        store: ChatStore,
        hpke: crypto.HpkeKeyPair,
        config: ChatConfig,
        nursery: trio.Nursery,
    ) -> None:
        self.host = host
        self.identity: KeyPair = host.identity
        self.peer_id: PeerID = host.peer_id
        self.store = store
        self.hpke = hpke
        self.config = config
        self.dispatcher = Dispatcher()
        self._nursery = nursery
        self._groups: dict[bytes, _Group] = {}
        self._clients: dict[PeerID, ChatClient] = {}
        self._client_done: dict[PeerID, trio.Event] = {}
        self._connecting: dict[PeerID, trio.Event] = {}
        self._outbox_wakeup = trio.Event()
        self._sync_cursors: dict[tuple[bytes, PeerID], int] = {}
        self._syncing: set[tuple[bytes, PeerID]] = set()

    # -- groups ------------------------------------------------------------------------------

    def groups(self) -> list[bytes]:
        """The ids of the groups we belong to."""
        return list(self._groups)

    def group_state(self, group_id: bytes) -> GroupState:
        """The verified roster chain of a group.

        Raises:
            ChatError: we are not in that group.
        """
        return self._group(group_id).state

    def _group(self, group_id: bytes) -> _Group:
        group = self._groups.get(group_id)
        if group is None:
            raise ChatError(f"not a member of group {group_id.hex()[:16]}")
        return group

    def my_member_entry(self, role: Role) -> Member:
        """Our member entry (peer, role, HPKE key) for a roster."""
        return Member(self.peer_id, role, self.hpke.kem, self.hpke.public_bytes())

    async def create_group(
        self, name: str, *, quorum: int | None = None, history: History = "all"
    ) -> bytes:
        """Create a group with us as owner and sole ratifier; return its id.

        Raises:
            ValueError: a bad name, quorum or history setting.
        """
        signed = new_group(
            self.identity,
            name,
            [self.my_member_entry(Role.RATIFIER)],
            quorum=quorum,
            history=history,
            now_ms=_now_ms(),
            nonce=os.urandom(16),
        )
        group = _Group(signed, GroupState.from_genesis(signed))
        key = crypto.new_epoch_key()
        await self.store.add_group(signed.group_id, signed.encode(), joined_at=_now_ms())
        await self.store.put_epoch_key(signed.group_id, 0, key)
        group.epoch_keys[0] = key
        self._groups[signed.group_id] = group
        logger.info("created group %s (%s)", signed.group_id.hex()[:16], name)
        return signed.group_id

    async def invite(self, group_id: bytes, peer: PeerID | Multiaddr, role: Role | str) -> None:
        """Add ``peer`` with ``role`` (or change its role); owner only. Returns once the roster
        message is ratified. The invitee then calls :meth:`join`.

        Raises:
            NotAllowedError: we are not the owner.
            ChatError: the invitee cannot be reached or its key is unusable.
            PendingError: no quorum in time (the change stays queued).
        """
        group = self._group(group_id)
        role = Role(role)
        if group.state.owner != self.peer_id:
            raise NotAllowedError("only the group's owner can invite")
        target = peer.peer_id if isinstance(peer, Multiaddr) else peer
        if target is None:
            raise ChatError(f"the address must end in /p2p/<peer id>: {peer}")
        response = await self._query(peer, "hpk", {})
        try:
            kem, hpke = response["kem"], response["hpke"]
            member = Member(target, role, kem, hpke)
        except (KeyError, TypeError, ValueError, DecodeError) as exc:
            raise ChatError(f"{target} sent an unusable encryption key: {exc}") from exc
        current = group.state.current_roster
        members = [m for m in current.members if m.peer != target] + [member]
        await self._change_roster(group, members, added=target)

    async def remove(self, group_id: bytes, peer: PeerID) -> None:
        """Remove ``peer`` from the group; owner only. It gets no later epoch keys.

        Raises:
            NotAllowedError: we are not the owner, or ``peer`` is the owner.
            PendingError: no quorum in time (the change stays queued).
        """
        group = self._group(group_id)
        if group.state.owner != self.peer_id or peer == self.peer_id:
            raise NotAllowedError("only the owner can remove members, and not itself")
        members = [m for m in group.state.current_roster.members if m.peer != peer]
        await self._change_roster(group, members, added=None)

    async def _change_roster(
        self, group: _Group, members: Sequence[Member], added: PeerID | None
    ) -> None:
        state = group.state
        current = state.current_roster
        epoch = state.current_epoch + 1
        ratifiers = sum(1 for m in members if m.role is Role.RATIFIER)
        if current.quorum == default_quorum(len(current.ratifiers)):
            quorum = default_quorum(ratifiers)  # the group follows the majority rule
        else:
            quorum = min(current.quorum, ratifiers)
        roster = Roster(epoch, tuple(members), quorum, current.history)
        new_key = crypto.new_epoch_key()
        keys = [self._wrap(new_key, m, group.group_id, epoch) for m in roster.members]
        history_keys: list[WrappedKey] = []
        if added is not None and current.history == "all":
            newcomer = roster.member(added)
            assert newcomer is not None
            was_member = any(m.peer == added for m in current.members)
            if not was_member:
                history_keys = [
                    self._wrap(key, newcomer, group.group_id, e)
                    for e, key in sorted(group.epoch_keys.items())
                ]
        update = RosterUpdate(roster, tuple(keys), tuple(history_keys))
        message, _artifact = build_roster_message(
            state, update, now_ms=_now_ms(), parents=group.heads.heads()
        )
        packet = sign_message(self.identity, message, b"", b"")
        await self._submit(group, packet)

    def _wrap(self, key: bytes, member: Member, group_id: bytes, epoch: int) -> WrappedKey:
        enc = crypto.wrap_epoch_key(
            key,
            kem=member.kem,
            hpke_public=member.hpke,
            group_id=group_id,
            epoch=epoch,
            peer=member.peer,
        )
        return WrappedKey(member.peer, epoch, enc)

    async def join(self, group_id: bytes, via: PeerID | Multiaddr) -> None:
        """Join a group we were invited to, by fetching its roster chain from ``via``.

        Raises:
            ChatError: ``via`` does not answer, the chain does not verify, or we are not in it.
        """
        if group_id in self._groups:
            return
        body = await self._query(via, "pkt", {"group_id": group_id})
        try:
            signed = SignedGenesis.from_cbor(body["genesis"])
            packets = [Packet.from_cbor(p) for p in body["rosters"]]
            if signed.group_id != group_id or not signed.verify():
                raise ChatError("the genesis does not match the group id or its signature")
            state = GroupState.from_chain(signed, packets)
        except (KeyError, TypeError, ProtocolError) as exc:
            raise ChatError(f"the group's roster chain does not verify: {exc}") from exc
        if not state.is_member(self.peer_id, state.current_epoch):
            raise ChatError("we are not a member of that group (ask its owner for an invite)")
        group = _Group(signed, state)
        await self.store.add_group(group_id, signed.encode(), joined_at=_now_ms())
        self._groups[group_id] = group
        for packet in state.roster_packets:
            await self._accept(group, packet)
        logger.info("joined group %s (%s)", group_id.hex()[:16], state.name)
        peer = via.peer_id if isinstance(via, Multiaddr) else via
        if peer is not None:
            await self._sync(group, peer)

    def _unwrap_keys(self, group: _Group, packet: Packet) -> dict[int, bytes]:
        """The epoch keys a roster message carries for us (not yet known), unwrapped."""
        update = read_roster_update(packet, group.state.owner)
        keys: dict[int, bytes] = {}
        for wrapped in (*update.keys, *update.history_keys):
            if wrapped.peer != self.peer_id or wrapped.epoch in group.epoch_keys:
                continue
            try:
                keys[wrapped.epoch] = crypto.unwrap_epoch_key(
                    wrapped.enc,
                    keypair=self.hpke,
                    group_id=group.group_id,
                    epoch=wrapped.epoch,
                    peer=self.peer_id,
                )
            except ProtocolError as exc:
                logger.warning("cannot unwrap our key for epoch %d: %s", wrapped.epoch, exc)
        return keys

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
        group = self._group(group_id)
        data = content.encode() if isinstance(content, str) else bytes(content)
        if mime is None:
            mime = {"text": "text/plain", "markdown": "text/markdown"}.get(
                message_type, "application/octet-stream"
            )
        packet = self._author(group, data, message_type, mime, ref_hash)
        return await self._submit(group, packet, wait=wait)

    def _author(
        self, group: _Group, data: bytes, message_type: str, mime: str, ref_hash: bytes | None
    ) -> Packet:
        state = group.state
        epoch = state.current_epoch
        if not state.can_send(self.peer_id, epoch, message_type):
            raise NotAllowedError("our role in this group does not allow sending")
        key = group.epoch_keys.get(epoch)
        if key is None:
            raise ChatError(f"no key for epoch {epoch} of this group")
        sealed = crypto.encrypt_artifact(
            data, epoch_key=key, group_id=group.group_id, epoch=epoch, author=self.peer_id
        )
        artifact = Artifact(
            mime, sealed.data, sha256(sealed.data), sha256(sealed.aes_key + sealed.iv)
        )
        message = Message(
            group_id=group.group_id,
            epoch=epoch,
            message_type=message_type,
            time_stamp=_now_ms(),
            author=self.peer_id,
            ref_hash=ref_hash,
            parents=group.heads.heads(),
            headers=Headers(),
            artifact=artifact,
        )
        return sign_message(self.identity, message, sealed.aes_key, sealed.iv)

    async def _submit(self, group: _Group, packet: Packet, *, wait: bool = True) -> bytes:
        """Queue ``packet`` and (with ``wait``) ratify it; return the hash it was ratified
        under, which differs from the packet's when it had to be written again in a new epoch.

        Raises:
            PendingError: not ratified within ``send_timeout`` (it stays queued).
        """
        now = _now_ms()
        await self.store.put_packet(packet, received_at=now, outbox_at=now)
        self._publish(group, packet, ratified=False)
        if not wait:
            self._outbox_wakeup.set()
            return packet.message_hash
        with trio.move_on_after(self.config.send_timeout):
            for _ in range(MAX_REAUTHOR):
                if await self._ratify(group, packet):
                    return packet.message_hash
                # Ratifiers already in a later epoch refuse it as stale: learn the new roster
                # from one of them and write the message again in the new epoch.
                ahead = group.stale_from.pop(packet.message_hash, None)
                behind = packet.message.epoch < group.state.current_epoch
                if not behind and (ahead is None or not await self._catch_up_roster(group, ahead)):
                    break
                fresh = await self._reauthored(group, packet)
                if fresh is None:
                    break
                packet = fresh
                now = _now_ms()
                await self.store.put_packet(packet, received_at=now, outbox_at=now)
                self._publish(group, packet, ratified=False)
        self._outbox_wakeup.set()
        raise PendingError(
            "no quorum of ratifiers answered in time; the message stays queued",
            packet.message_hash,
        )

    async def _ratify(self, group: _Group, packet: Packet) -> bool:
        """Collect a quorum of votes; on success commit, publish and deliver. True if ratified."""
        if group.has(packet.message_hash):
            return True
        epoch = packet.message.epoch
        roster = group.state.find_roster(epoch)
        if roster is None or epoch != group.state.current_epoch:
            return False
        collector = QuorumCollector(group.group_id, epoch, packet.message_hash, roster)
        ratifiers = sorted(roster.ratifiers)
        settled = trio.Event()  # a quorum, or every ratifier has answered (or failed)
        answered = 0

        async def ask(ratifier: PeerID) -> None:
            nonlocal answered
            try:
                vote = await self._request_vote(group, packet, ratifier)
                if vote is not None:
                    collector.add_vote(vote)
            finally:
                answered += 1
                if collector.certificate is not None or answered == len(ratifiers):
                    settled.set()

        # The requests run in the node's nursery: once a quorum is in, the others still finish
        # (their votes are recorded durably either way), and cancelling them would leave the
        # ratifiers counting queries we no longer do.
        for ratifier in ratifiers:
            self._nursery.start_soon(ask, ratifier)
        await settled.wait()
        certificate = collector.certificate
        if certificate is None:
            return False
        certified = packet.with_certificate(certificate)
        await self._accept(group, certified)
        self._nursery.start_soon(self._deliver, group, certified)
        return True

    async def _catch_up_roster(self, group: _Group, peer: PeerID) -> bool:
        """Apply the roster changes ``peer`` holds and we lack; True if our epoch moved on."""
        epoch = group.state.current_epoch
        try:
            body = await self._query(peer, "pkt", {"group_id": group.group_id})
            packets = [Packet.from_cbor(p) for p in body.get("rosters", [])]
        except (ChatError, DecodeError, TypeError) as exc:
            logger.info("cannot learn the roster from %s: %s", peer, exc)
            return False
        for packet in sorted(packets, key=lambda p: p.message.epoch):
            if packet.message.epoch >= group.state.current_epoch:
                reason = await self._receive_certified(group, packet, peer)
                if reason is not None:
                    logger.info("roster change from %s refused: %s", peer, reason)
                    break
        return group.state.current_epoch > epoch

    async def _request_vote(self, group: _Group, packet: Packet, ratifier: PeerID) -> Vote | None:
        if ratifier == self.peer_id:
            try:
                return await self._vote(group, packet, self.peer_id)
            except Refusal as exc:
                logger.info("we refuse our own message: %s", exc.reason)
                return None
        body = {"group_id": group.group_id, "packet": packet.to_cbor()}
        try:
            answer = await self._query(ratifier, "mrat", body)
            return Vote.from_cbor(answer["vote"])
        except QueryRefusedError as exc:
            if exc.reason == "stale epoch":
                group.stale_from.setdefault(packet.message_hash, ratifier)
            logger.debug("no vote from %s: %s", ratifier, exc)
            return None
        except (ChatError, KeyError, DecodeError) as exc:
            logger.debug("no vote from %s: %s", ratifier, exc)
            return None

    async def _vote(self, group: _Group, packet: Packet, querier: PeerID) -> Vote:
        """Check, commit, and vote for ``packet`` (our side of ``mrat``)."""
        stored = await self.store.get_vote(group.group_id, packet.message_hash)
        if stored is not None:
            return Vote.from_cbor(cbor.loads(stored, max_size=4096))
        if group.state.role(self.peer_id, group.state.current_epoch) is not Role.RATIFIER:
            raise Refusal("not allowed")  # only ratifiers vote
        reason = check_for_ratification(packet, group.state, now_ms=_now_ms(), have=group.has)
        if reason == "missing parents" and querier != self.peer_id:
            await self._fetch_missing(group, packet.message.parents, querier)
            reason = check_for_ratification(packet, group.state, now_ms=_now_ms(), have=group.has)
        if reason is not None:
            raise Refusal(reason)
        vote = make_vote(self.identity, group.group_id, packet.message.epoch, packet.message_hash)
        try:
            # The packet and the vote are committed together, durably, before we answer.
            recorded = await self.store.put_packet_and_vote(
                packet,
                cbor.dumps(vote.to_cbor()),
                received_at=_now_ms(),
                roster=packet.message.message_type == "roster",
            )
        except VoteConflictError:
            raise Refusal("not allowed") from None
        return Vote.from_cbor(cbor.loads(recorded, max_size=4096))

    async def _deliver(self, group: _Group, packet: Packet) -> None:
        """``smsg`` to every member of the message's epoch and of the current one."""
        body = {"group_id": group.group_id, "packet": packet.to_cbor()}
        peers = group.members(packet.message.epoch, group.state.current_epoch) - {self.peer_id}

        async def one(peer: PeerID) -> None:
            delay = self.config.retry_initial
            for attempt in range(DELIVERY_ATTEMPTS):
                try:
                    await self._query(peer, "smsg", body)
                except QueryRefusedError as exc:
                    if exc.reason not in RETRYABLE_REASONS:
                        logger.info("smsg to %s refused: %s", peer, exc.reason)
                        return
                    failure: ChatError = exc
                except ChatError as exc:
                    failure = exc
                else:
                    return
                if attempt + 1 < DELIVERY_ATTEMPTS:
                    await trio.sleep(delay)
                    delay = min(delay * 2, self.config.retry_max)
            logger.info("smsg to %s failed (%s); it will catch up by sync", peer, failure)

        async with trio.open_nursery() as nursery:
            for peer in sorted(peers):
                nursery.start_soon(one, peer)

    # -- receiving ---------------------------------------------------------------------------

    async def _accept(self, group: _Group, packet: Packet) -> bool:
        """Commit a certified packet, apply it, publish it. False if we already had it."""
        async with group.lock:
            if group.has(packet.message_hash):
                return False
            roster_change = packet.message.message_type == "roster"
            new_keys: dict[int, bytes] = {}
            if roster_change:
                new_keys = self._unwrap_keys(group, packet)
                applied = group.state.roster_packet(packet.message.epoch)
                if applied is None or applied.message_hash != packet.message_hash:
                    # Applying checks the chain; only then is it stored as part of the group.
                    group.state.apply_roster_packet(packet)
                # In the same step as the epoch moves on, so a sender never finds the new
                # epoch without its key.
                group.epoch_keys.update(new_keys)
            await self.store.put_packet(packet, received_at=_now_ms())
            if roster_change:
                epoch = packet.message.epoch + 1
                await self.store.put_roster(group.group_id, epoch, packet.encode())
                for key_epoch, key in sorted(new_keys.items()):
                    await self.store.put_epoch_key(group.group_id, key_epoch, key)
            group.ratified.add(packet.message_hash)
            group.heads.add(packet.message_hash, packet.message.parents)
        if packet.message.author == self.peer_id:
            await self.store.outbox_done(group.group_id, packet.message_hash)
        self._publish(group, packet, ratified=True)
        waiter = group.waiters.pop(packet.message_hash, None)
        if waiter is not None:
            waiter.set()
        return True

    async def _receive_certified(self, group: _Group, packet: Packet, sender: PeerID) -> str | None:
        """Verify and accept a certified packet from ``sender``; None or a refusal reason."""
        if group.has(packet.message_hash):
            return None
        reason = check_for_delivery(packet, group.state, have=group.has)
        if reason == "missing parents":
            await self._fetch_missing(group, packet.message.parents, sender)
            reason = check_for_delivery(packet, group.state, have=group.has)
        if reason is not None:
            return reason
        await self._accept(group, packet)
        return None

    async def _fetch_missing(self, group: _Group, hashes: Iterable[bytes], peer: PeerID) -> None:
        """Fetch the missing ancestors of ``hashes`` from ``peer`` (``get``), oldest first.

        One fetch per group at a time: concurrent callers usually miss the same ancestors,
        and each finds them held once the one before it is done.
        """
        async with group.fetch_lock:
            await self._fetch_missing_locked(group, hashes, peer)

    async def _fetch_missing_locked(
        self, group: _Group, hashes: Iterable[bytes], peer: PeerID
    ) -> None:
        wanted = [h for h in hashes if not group.has(h)]
        fetched: dict[bytes, Packet] = {}
        for _ in range(MAX_FETCH_DEPTH):
            wanted = [h for h in wanted if h not in fetched and not group.has(h)][:MAX_FETCH]
            if not wanted:
                break
            try:
                body = await self._query(
                    peer, "get", {"group_id": group.group_id, "hashes": wanted}
                )
                packets = [Packet.from_cbor(p) for p in body.get("packets", [])]
            except (ChatError, DecodeError, TypeError) as exc:
                logger.info("cannot fetch parents from %s: %s", peer, exc)
                return
            if not packets:
                return
            wanted = []
            for packet in packets:
                fetched[packet.message_hash] = packet
                wanted.extend(packet.message.parents)
        order = display_order({h: p.message.parents for h, p in fetched.items()})
        for message_hash in order:
            packet = fetched[message_hash]
            reason = check_for_delivery(packet, group.state, have=group.has)
            if reason is None:
                await self._accept(group, packet)
            else:
                logger.info("fetched message %s refused: %s", message_hash.hex()[:16], reason)

    # -- reading -----------------------------------------------------------------------------

    def _to_chat_message(self, group: _Group, packet: Packet, *, ratified: bool) -> ChatMessage:
        message = packet.message
        content: bytes | None
        if message.message_type == "roster":
            content = message.artifact.data
        else:
            key = group.epoch_keys.get(message.epoch)
            try:
                content = None if key is None else crypto.decrypt_packet(packet, epoch_key=key)
            except ProtocolError:
                content = None
        return ChatMessage(
            group_id=group.group_id,
            message_hash=packet.message_hash,
            author=message.author,
            message_type=message.message_type,
            mime=message.artifact.type,
            time_stamp=message.time_stamp,
            epoch=message.epoch,
            ref_hash=message.ref_hash,
            content=content,
            ratified=ratified,
        )

    def _publish(self, group: _Group, packet: Packet, *, ratified: bool) -> None:
        if not group.subscribers:
            return
        item = self._to_chat_message(group, packet, ratified=ratified)
        for channel in list(group.subscribers):
            try:
                channel.send_nowait(item)
            except trio.WouldBlock:
                logger.warning("a subscriber fell behind; dropping a message for it")
            except trio.BrokenResourceError:
                group.subscribers.remove(channel)

    @asynccontextmanager
    async def subscribe(
        self, group_id: bytes
    ) -> AsyncIterator[trio.MemoryReceiveChannel[ChatMessage]]:
        """A channel of the group's messages from now on: each of ours twice (pending, then
        ratified), everyone else's once ratified.

        Raises:
            ChatError: we are not in that group.
        """
        group = self._group(group_id)
        send, receive = trio.open_memory_channel[ChatMessage](self.config.subscriber_queue)
        group.subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in group.subscribers:
                group.subscribers.remove(send)
            send.close()

    async def wait_ratified(self, group_id: bytes, message_hash: bytes) -> None:
        """Wait until the message is ratified here."""
        group = self._group(group_id)
        if group.has(message_hash):
            await trio.lowlevel.checkpoint()
            return
        event = group.waiters.setdefault(message_hash, trio.Event())
        await event.wait()

    async def history(self, group_id: bytes) -> list[ChatMessage]:
        """Every ratified message we hold, in display order (specs/chat.md §8)."""
        group = self._group(group_id)
        rows = await self.store.all_ratified(group_id)
        packets = {row.message_hash: _decode_row(row) for row in rows}
        order = display_order({h: p.message.parents for h, p in packets.items()})
        return [self._to_chat_message(group, packets[h], ratified=True) for h in order]

    # -- queries to peers --------------------------------------------------------------------

    async def _client(self, peer: PeerID | Multiaddr) -> ChatClient:
        target = peer.peer_id if isinstance(peer, Multiaddr) else peer
        if target is None:
            raise ChatError(f"the address must end in /p2p/<peer id>: {peer}")
        while True:
            client = self._clients.get(target)
            if client is not None and client.statistics().failure is None:
                return client
            pending = self._connecting.get(target)
            if pending is None:
                break
            await pending.wait()
        self._connecting[target] = started = trio.Event()
        try:
            fresh: ChatClient = await self._nursery.start(self._run_client, peer, target)
            return fresh
        finally:
            del self._connecting[target]
            started.set()

    async def _run_client(
        self,
        peer: PeerID | Multiaddr,
        target: PeerID,
        *,
        task_status: trio.TaskStatus[ChatClient],
    ) -> None:
        done = trio.Event()
        started = False
        try:
            async with open_chat(self.host, peer) as client:
                self._clients[target] = client
                self._client_done[target] = done
                task_status.started(client)
                started = True
                await done.wait()
        except (DialError, StreamOpenError, ChatStreamError) as exc:
            if not started:
                raise ChatError(f"cannot reach {target}: {exc}") from exc
            # after start, a failing stream is noticed by the queries that use it
        finally:
            if self._client_done.get(target) is done:
                del self._client_done[target]
                self._clients.pop(target, None)

    async def _query(
        self,
        peer: PeerID | Multiaddr,
        code: str,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        """Query ``peer``; return the affirmative body.

        Raises:
            QueryRefusedError: a negative answer (with its reason).
            ChatError: the peer cannot be reached or did not answer in time.
        """
        target = peer.peer_id if isinstance(peer, Multiaddr) else peer
        try:
            client = await self._client(peer)
            response = await client.query(code, body, timeout=self.config.query_timeout)
        except trio.TooSlowError:
            raise ChatError(f"{target} did not answer {code!r} in time") from None
        except ChatStreamError as exc:
            done = self._client_done.get(target) if target is not None else None
            if done is not None:
                done.set()
            raise ChatError(f"{code!r} to {target}: {exc}") from exc
        if not response.ok:
            reason = response.reason or "?"
            raise QueryRefusedError(f"{target} refused {code!r}: {reason}", reason)
        return response.body

    # -- serving -----------------------------------------------------------------------------

    def _register_handlers(self) -> None:
        d = self.dispatcher
        d.register("i", self._on_identifier)
        d.register("mrat", self._on_mrat)
        d.register("smsg", self._on_smsg)
        d.register("pkt", self._on_pkt)
        d.register("dht", self._on_dht)
        d.register("get", self._on_get)
        d.register("hpk", self._on_hpk)
        d.register("hds", self._on_heads)

    def _member_group(self, ctx: QueryContext, body: dict[str, Any]) -> _Group:
        group = self._groups.get(_body_bytes(body, "group_id", 32))
        if group is None:
            raise Refusal("unknown group")
        state = group.state
        if not any(
            peer == ctx.remote_peer for peer in group.members(*range(state.current_epoch + 1))
        ):
            raise Refusal("not a member")
        return group

    def _packet(self, body: dict[str, Any]) -> Packet:
        try:
            return Packet.from_cbor(body.get("packet"))
        except DecodeError:
            raise Refusal("malformed") from None

    async def _on_identifier(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        # Members only, like pkt and dht: who holds which role is the group's business.
        group = self._member_group(ctx, body)
        role = group.state.role(self.peer_id, group.state.current_epoch)
        if role is None:
            raise Refusal("not a member")
        return {"identifier": role.value, "epoch": group.state.current_epoch}

    def _group_and_packet(self, body: dict[str, Any]) -> tuple[_Group, Packet]:
        """The group a query names and the packet it carries, which must be of that group."""
        group = self._groups.get(_body_bytes(body, "group_id", 32))
        if group is None:
            raise Refusal("unknown group")
        packet = self._packet(body)
        if packet.message.group_id != group.group_id:
            raise Refusal("unknown group")
        return group, packet

    async def _on_mrat(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        group, packet = self._group_and_packet(body)
        if packet.message.author != ctx.remote_peer:
            raise Refusal("not allowed")  # only the author asks for votes on its message
        vote = await self._vote(group, packet, ctx.remote_peer)
        return {"vote": vote.to_cbor()}

    async def _on_smsg(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        group, packet = self._group_and_packet(body)
        if group.has(packet.message_hash):
            return {"duplicate": True}
        reason = await self._receive_certified(group, packet, ctx.remote_peer)
        if reason is not None:
            raise Refusal(reason)
        return {}

    async def _on_pkt(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        group = self._member_group(ctx, body)
        return {
            "genesis": group.signed.to_cbor(),
            "rosters": [p.to_cbor() for p in group.state.roster_packets],
        }

    async def _on_dht(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        group = self._member_group(ctx, body)
        cursor = body.get("cursor", 0)
        if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
            raise Refusal("malformed")
        rows, next_cursor = await self.store.page_messages(group.group_id, cursor, SYNC_PAGE)
        packets = [cbor.loads(row.packet_with_certificate(), max_size=2**21) for row in rows]
        return {"packets": packets, "next": next_cursor}

    async def _on_get(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        group = self._member_group(ctx, body)
        hashes = body.get("hashes")
        if not isinstance(hashes, list) or len(hashes) > MAX_FETCH:
            raise Refusal("malformed")
        packets = []
        for message_hash in hashes:
            if not isinstance(message_hash, bytes) or not group.has(message_hash):
                continue
            row = await self.store.get_message(group.group_id, message_hash)
            if row is not None and row.certificate is not None:
                packets.append(cbor.loads(row.packet_with_certificate(), max_size=2**21))
        return {"packets": packets}

    async def _on_heads(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        group = self._member_group(ctx, body)
        return {"heads": list(group.heads.heads())}

    async def _on_hpk(self, ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        return {"kem": self.hpke.kem, "hpke": self.hpke.public_bytes()}

    # -- background tasks --------------------------------------------------------------------

    async def _sync(self, group: _Group, peer: PeerID) -> None:
        """Page through ``peer``'s history of ``group`` and keep what we lack."""
        key = (group.group_id, peer)
        if key in self._syncing or peer == self.peer_id:
            return
        self._syncing.add(key)
        try:
            cursor = self._sync_cursors.get(key, 0)
            while True:
                body = await self._query(
                    peer, "dht", {"group_id": group.group_id, "cursor": cursor}
                )
                raw = body.get("packets")
                if not isinstance(raw, list):
                    return
                for item in raw:
                    try:
                        packet = Packet.from_cbor(item)
                    except DecodeError:
                        logger.info("malformed packet in %s's history", peer)
                        continue
                    reason = await self._receive_certified(group, packet, peer)
                    if reason is not None:
                        logger.info(
                            "history message %s from %s refused: %s",
                            packet.message_hash.hex()[:16],
                            peer,
                            reason,
                        )
                next_cursor = body.get("next")
                if not isinstance(next_cursor, int) or next_cursor <= cursor:
                    return
                cursor = self._sync_cursors[key] = next_cursor
        except ChatError as exc:
            logger.debug("sync of %s with %s stopped: %s", group.group_id.hex()[:16], peer, exc)
        finally:
            self._syncing.discard(key)

    async def _on_connection(self, conn: MuxedConnection) -> None:
        peer = conn.remote_peer
        self._outbox_wakeup.set()
        for group in list(self._groups.values()):
            members = group.members(*range(group.state.current_epoch + 1))
            # Page through its history only when it holds something we lack.
            if peer in members and await self._missing_heads(group, peer) != []:
                await self._sync(group, peer)

    async def _outbox_loop(self) -> None:
        backoff: dict[bytes, float] = {}
        limiter = trio.CapacityLimiter(self.config.outbox_concurrency)

        async def attempt(entry: OutboxEntry) -> None:
            async with limiter:
                await self._retry_queued(entry, backoff)

        while True:
            entries = await self.store.outbox_due(_now_ms())
            async with trio.open_nursery() as nursery:
                for entry in entries:
                    nursery.start_soon(attempt, entry)
            next_at = await self.store.outbox_next_at()
            wait = math.inf if next_at is None else max(0.0, (next_at - _now_ms()) / 1000)
            self._outbox_wakeup = trio.Event()
            with trio.move_on_after(wait):
                await self._outbox_wakeup.wait()

    async def _retry_queued(self, entry: OutboxEntry, backoff: dict[bytes, float]) -> None:
        """One attempt at a queued message: ratify it, re-author it, or back off."""
        group = self._groups.get(entry.group_id)
        row = await self.store.get_message(entry.group_id, entry.message_hash)
        if group is None or row is None:
            await self.store.outbox_done(entry.group_id, entry.message_hash)
            return
        packet = _decode_row(row)
        if group.has(packet.message_hash):
            await self.store.outbox_done(entry.group_id, entry.message_hash)
            return
        if packet.message.epoch != group.state.current_epoch:
            await self._reauthor(group, packet)
            return
        with trio.move_on_after(self.config.send_timeout):
            if await self._ratify(group, packet):
                backoff.pop(packet.message_hash, None)
                return
        delay = min(
            backoff.get(packet.message_hash, self.config.retry_initial) * 2,
            self.config.retry_max,
        )
        backoff[packet.message_hash] = delay
        await self.store.outbox_retry(
            entry.group_id, entry.message_hash, _now_ms() + int(delay * 1000)
        )

    async def _anti_entropy_loop(self) -> None:
        """Every ``sync_interval``, compare heads with every connected member (``hds``) and
        fetch what we lack (``get``); when in step, that is one small query per member."""
        while True:
            await trio.sleep(self.config.sync_interval)
            async with trio.open_nursery() as nursery:
                for group in list(self._groups.values()):
                    members = group.members(*range(group.state.current_epoch + 1))
                    for peer in self.host.connected_peers():
                        if peer in members:
                            nursery.start_soon(self._compare_heads, group, peer)

    async def _missing_heads(self, group: _Group, peer: PeerID) -> list[bytes] | None:
        """``peer``'s DAG heads that we lack (``hds``), or None if it did not answer."""
        try:
            body = await self._query(peer, "hds", {"group_id": group.group_id})
        except ChatError as exc:
            logger.debug("heads of %s: %s", peer, exc)
            return None
        heads = body.get("heads")
        if not isinstance(heads, list):
            return None
        return [h for h in heads if isinstance(h, bytes) and len(h) == 32 and not group.has(h)]

    async def _compare_heads(self, group: _Group, peer: PeerID) -> None:
        missing = await self._missing_heads(group, peer)
        if missing:
            logger.info("anti-entropy: %d heads of %s missing here", len(missing), peer)
            await self._fetch_missing(group, missing[:MAX_FETCH], peer)

    async def _reauthor(self, group: _Group, packet: Packet) -> None:
        """A queued message of an epoch that has closed: send its content again, now."""
        if packet.message.message_type == "roster":
            logger.warning("a queued roster change for a closed epoch is dropped")
        fresh = await self._reauthored(group, packet)
        if fresh is not None:
            await self._submit(group, fresh, wait=False)

    async def _reauthored(self, group: _Group, packet: Packet) -> Packet | None:
        """The same content as a new message in the current epoch (the old one leaves the
        outbox), or None for a roster change or content we cannot re-send."""
        await self.store.outbox_done(group.group_id, packet.message_hash)
        message = packet.message
        key = group.epoch_keys.get(message.epoch)
        if message.message_type == "roster" or key is None:
            return None
        try:
            content = crypto.decrypt_packet(packet, epoch_key=key)
            return self._author(
                group, content, message.message_type, message.artifact.type, message.ref_hash
            )
        except (ProtocolError, ChatError) as exc:
            logger.warning("cannot re-send a queued message: %s", exc)
            return None

    async def _connect_members(self) -> None:
        """Dial the members we know addresses for, so sync and the outbox can start."""
        peers: set[PeerID] = set()
        for group in self._groups.values():
            peers |= group.members(group.state.current_epoch)
        peers.discard(self.peer_id)

        async def one(peer: PeerID) -> None:
            try:
                await self.host.connect(peer)
            except (DialError, ValueError) as exc:
                logger.debug("cannot reach member %s: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in sorted(peers):
                nursery.start_soon(one, peer)

    async def _load(self) -> None:
        for record in await self.store.list_groups():
            signed = SignedGenesis.decode(record.genesis)
            rosters = await self.store.get_rosters(record.group_id)
            packets = [Packet.decode(r.packet) for r in sorted(rosters, key=lambda r: r.epoch)]
            group = _Group(signed, GroupState.from_chain(signed, packets))
            group.epoch_keys.update(await self.store.get_epoch_keys(record.group_id))
            for row in await self.store.all_ratified(record.group_id):
                packet = _decode_row(row)
                group.ratified.add(row.message_hash)
                group.heads.add(row.message_hash, packet.message.parents)
            self._groups[record.group_id] = group


def _decode_row(row: StoredMessage) -> Packet:
    return Packet.decode(row.packet_with_certificate())


async def _load_hpke(store: ChatStore, kem: str) -> crypto.HpkeKeyPair:
    stored = await store.get_hpke_key(kem)
    if stored is not None:
        return crypto.HpkeKeyPair.from_private_bytes(kem, stored.private)
    pair = crypto.HpkeKeyPair.generate(kem)
    await store.put_hpke_key(kem, pair.to_private_bytes(), pair.public_bytes())
    return pair


@asynccontextmanager
async def open_chat_node(
    host: Host, store: ChatStore, config: ChatConfig | None = None
) -> AsyncIterator[ChatNode]:
    """Run the chat protocol on ``host`` with ``store``: serve ``/p2pchat/1.0.0``, resume the
    outbox, and sync with group members as they connect.

    Raises:
        StoreError: the store cannot be read.
    """
    config = config if config is not None else ChatConfig()
    hpke = await _load_hpke(store, config.kem)
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        node = ChatNode(host, store, hpke, config, nursery)
        await node._load()
        node._register_handlers()
        _install_chat(host, node.dispatcher)
        hook: Callable[[MuxedConnection], Awaitable[None]] = node._on_connection
        host.on_connection.append(hook)
        nursery.start_soon(node._outbox_loop)
        nursery.start_soon(node._anti_entropy_loop)
        nursery.start_soon(node._connect_members)
        try:
            yield node
        except BaseException as exc:
            body_error = exc
        finally:
            host.on_connection.remove(hook)
            host.remove_stream_handler("/p2pchat/1.0.0")
            for done in list(node._client_done.values()):
                done.set()
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
