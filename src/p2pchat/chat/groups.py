"""Group membership on a chat node: create a group, invite, join, remove, change roles, rename,
hand over (specs/chat.md §17, §20), honour a member's ratified "leave", and keep the members of
our groups protected and dialed. Mixed into :class:`~p2pchat.chat.node.ChatNode`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..errors import DecodeError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..net.host import DialError, Host
from .core.engine import ChatEngine, ChatError, NotAllowedError
from .core.genesis import MAX_NAME
from .core.packet import Packet
from .core.refs import LEAVE
from .core.roster import History, Member, Role
from .services.addresses import AddressBook
from .services.clients import QueryRefusedError
from .services.runtime import Runtime, now_ms
from .services.sync import SyncService

if TYPE_CHECKING:
    from .core.events import Commit
    from .core.group_state import GroupState
    from .node import ChatMessage

#: The node's logger: these are the node's records (logging filters name it).
logger = logging.getLogger("p2pchat.chat.node")


class GroupMembership:
    """The group side of :class:`~p2pchat.chat.node.ChatNode`, which sets these attributes."""

    host: Host
    peer_id: PeerID
    engine: ChatEngine
    _runtime: Runtime
    _query: Callable[[PeerID | Multiaddr, str, dict[str, Any]], Awaitable[dict[str, Any]]]
    _addresses: AddressBook | None
    _protected: set[PeerID]
    _sync: SyncService
    _leaves: trio.MemorySendChannel[tuple[bytes, PeerID]]
    _leaving: trio.MemoryReceiveChannel[tuple[bytes, PeerID]]

    if TYPE_CHECKING:

        def group_state(self, group_id: bytes) -> GroupState: ...

        async def _key_ready(self, group_id: bytes) -> None: ...

        async def _submit(
            self,
            group_id: bytes,
            write: Callable[[], tuple[Packet, Commit]],
            *,
            wait: bool = True,
        ) -> bytes: ...

        async def history(self, group_id: bytes) -> list[ChatMessage]: ...

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

    # -- members ---------------------------------------------------------------------------

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
