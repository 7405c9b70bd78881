"""What a node holds of a group, the chat's errors, and the helpers around them (sans-IO).

:class:`GroupView` is the engine's record of one group, read by the services that answer
queries; the key helpers wrap an epoch key for a member and unwrap the ones a roster message
carries for us (HPKE, specs/chat.md §5).
"""

from __future__ import annotations

import heapq
import logging

import attrs

from ...errors import DecodeError, P2PChatError, ProtocolError
from ...identity import PeerID
from . import cbor, crypto
from .closing import EpochClose, Held
from .dag import Heads, display_order
from .genesis import SignedGenesis
from .group_state import GroupState
from .packet import MAX_PARENTS, Packet, Vote
from .refs import RefInfo
from .roster import Member
from .roster_delta import RosterDelta, decode_roster_artifact
from .roster_update import ROSTER_MESSAGE_TYPE, WrappedKey, epoch_key_check

logger = logging.getLogger(__name__)


class ChatError(P2PChatError):
    """A chat operation failed; the message says why."""


class NotAllowedError(ChatError):
    """Our role in the group does not allow this (e.g. a viewer sending)."""


@attrs.frozen
class PendingVote:
    """A message of another author that this ratifier voted for and holds pending (§6
    "Quotas"): counted against its author's quota until certified, expired after a while."""

    author: PeerID
    size: int
    received_at: int


@attrs.define(eq=False)
class GroupView:
    """What the node holds of one group (read-only outside the engine)."""

    signed: SignedGenesis
    state: GroupState
    epoch_keys: dict[int, bytes] = attrs.Factory(dict)
    heads: Heads = attrs.Factory(Heads)
    ratified: set[bytes] = attrs.Factory(set)
    #: The time stamp of each held ratified message.
    times: dict[bytes, int] = attrs.Factory(dict)
    #: (epoch, author) -> (time stamp, hash) of the author's latest held message of that epoch.
    latest: dict[tuple[int, PeerID], tuple[int, bytes]] = attrs.Factory(dict)
    #: Others' messages we voted for and hold pending, by hash (ratifiers only).
    pending: dict[bytes, PendingVote] = attrs.Factory(dict)
    #: The author and kind of each held ratified message (§17 references).
    kinds: dict[bytes, RefInfo] = attrs.Factory(dict)
    #: Our closing votes and the closed-epoch messages admitted here (§14).
    close: EpochClose = attrs.Factory(EpochClose)
    #: Each held message's (epoch, parents, is a roster message), for §14's late messages.
    held: dict[bytes, Held] = attrs.Factory(dict)

    @property
    def group_id(self) -> bytes:
        return self.signed.group_id

    def has(self, message_hash: bytes) -> bool:
        return message_hash in self.ratified

    def time_of(self, message_hash: bytes) -> int | None:
        """The time stamp of a held message, or None."""
        return self.times.get(message_hash)

    def ref_of(self, message_hash: bytes) -> RefInfo | None:
        """The author and kind of a held message, or None (§17)."""
        return self.kinds.get(message_hash)

    def hold(self, packet: Packet) -> None:
        """Record a ratified message as held (memory only; the caller committed it)."""
        message = packet.message
        self.ratified.add(packet.message_hash)
        self.heads.add(packet.message_hash, message.parents)
        self.times[packet.message_hash] = message.time_stamp
        self.kinds[packet.message_hash] = RefInfo(message.author, message.message_type)
        key = (message.epoch, message.author)
        held = self.latest.get(key)
        if held is None or held < (message.time_stamp, packet.message_hash):
            self.latest[key] = (message.time_stamp, packet.message_hash)
        self.pending.pop(packet.message_hash, None)
        self.close.forget(packet.message_hash)
        self.held[packet.message_hash] = (
            message.epoch,
            message.parents,
            message.message_type == ROSTER_MESSAGE_TYPE,
        )
        if message.epoch < self.state.current_epoch:
            self.close.held_admitted(packet.message_hash, self.held)

    def find_late(self) -> None:
        """Recompute the late messages (§14) after the chain or the held set changed whole."""
        self.close.find_late(self.state, self.held)

    def next_parents(self) -> tuple[bytes, ...]:
        """The ``parents`` of our next message: the heads (§8), late messages left out (§14)."""
        late = self.close.late
        if not late:
            return self.heads.heads()
        return tuple(heapq.nsmallest(MAX_PARENTS, (h for h in self.heads.all() if h not in late)))

    def is_current_member(self, peer: PeerID) -> bool:
        """Whether ``peer`` is in the current roster (§8 "Membership that ends")."""
        return self.state.is_member(peer, self.state.current_epoch)

    def last_epoch_of(self, peer: PeerID) -> int | None:
        """The last epoch whose roster holds ``peer``, or None if none does."""
        for epoch in range(self.state.current_epoch, -1, -1):
            if self.state.is_member(peer, epoch):
                return epoch
        return None

    def pending_of(self, author: PeerID) -> tuple[int, int]:
        """The (count, bytes) of ``author``'s messages held pending here."""
        mine = [p.size for p in self.pending.values() if p.author == author]
        return len(mine), sum(mine)

    def members(self, *epochs: int) -> set[PeerID]:
        """The members of the given epochs (every epoch when none is given)."""
        if not epochs:
            epochs = tuple(range(self.state.current_epoch + 1))
        peers: set[PeerID] = set()
        for epoch in epochs:
            roster = self.state.find_roster(epoch)
            if roster is not None:
                peers.update(m.peer for m in roster.members)
        return peers


def wrap_key(key: bytes, member: Member, group_id: bytes, epoch: int) -> WrappedKey:
    """``key`` (of ``epoch``) wrapped for ``member`` with HPKE."""
    enc = crypto.wrap_epoch_key(
        key,
        kem=member.kem,
        hpke_public=member.hpke,
        group_id=group_id,
        epoch=epoch,
        peer=member.peer,
    )
    return WrappedKey(member.peer, epoch, enc)


def unwrap_keys(
    view: GroupView, packet: Packet, keypair: crypto.HpkeKeyPair, me: PeerID
) -> dict[int, bytes]:
    """The epoch keys a roster message carries for ``me`` (not yet held), unwrapped."""
    try:
        update = decode_roster_artifact(packet)
    except (ProtocolError, DecodeError):
        return {}
    if isinstance(update, RosterDelta):
        return {}  # §20: its keys are fetched (chat/core/key_fetch.py)
    keys: dict[int, bytes] = {}
    for wrapped in (*update.keys, *update.history_keys):
        if wrapped.peer != me or wrapped.epoch in view.epoch_keys:
            continue
        try:
            key = crypto.unwrap_epoch_key(
                wrapped.enc,
                keypair=keypair,
                group_id=view.group_id,
                epoch=wrapped.epoch,
                peer=me,
            )
        except ProtocolError as exc:
            logger.warning("cannot unwrap our key for epoch %d: %s", wrapped.epoch, exc)
            continue
        # §15: the key must be the one the owner signed a check of,
        # which every member verifies alike; a key without one, or another key, is not taken.
        check = update.key_check(wrapped.epoch)
        if check is None or check != epoch_key_check(view.group_id, wrapped.epoch, key):
            logger.warning(
                "our key for epoch %d does not match the roster's key check: not taken",
                wrapped.epoch,
            )
            continue
        keys[wrapped.epoch] = key
    return keys


def decode_vote(data: bytes) -> Vote:
    """A vote as the store holds it (CBOR).

    Raises:
        DecodeError: not a vote.
    """
    return Vote.from_cbor(cbor.loads(data, max_size=4096))


def history_order(packets: dict[bytes, Packet]) -> list[Packet]:
    """Held packets in display order (§8)."""
    order = display_order({h: p.message.parents for h, p in packets.items()})
    return [packets[h] for h in order]
