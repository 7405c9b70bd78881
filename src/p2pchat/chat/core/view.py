"""What a node holds of a group, the chat's errors, and the helpers around them (sans-IO).

:class:`GroupView` is the engine's record of one group, read by the services that answer
queries; the key helpers wrap an epoch key for a member and unwrap the ones a roster message
carries for us (HPKE, specs/chat.md §5).
"""

from __future__ import annotations

import logging

import attrs

from ...errors import DecodeError, P2PChatError, ProtocolError
from ...identity import PeerID
from . import cbor, crypto
from .dag import Heads, display_order
from .genesis import SignedGenesis
from .group_state import GroupState
from .packet import Packet, Vote
from .roster import Member
from .roster_update import WrappedKey, read_roster_update

logger = logging.getLogger(__name__)


class ChatError(P2PChatError):
    """A chat operation failed; the message says why."""


class NotAllowedError(ChatError):
    """Our role in the group does not allow this (e.g. a viewer sending)."""


@attrs.define(eq=False)
class GroupView:
    """What the node holds of one group (read-only outside the engine)."""

    signed: SignedGenesis
    state: GroupState
    epoch_keys: dict[int, bytes] = attrs.Factory(dict)
    heads: Heads = attrs.Factory(Heads)
    ratified: set[bytes] = attrs.Factory(set)

    @property
    def group_id(self) -> bytes:
        return self.signed.group_id

    def has(self, message_hash: bytes) -> bool:
        return message_hash in self.ratified

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
        update = read_roster_update(packet, view.state.owner)
    except (ProtocolError, DecodeError):
        return {}
    keys: dict[int, bytes] = {}
    for wrapped in (*update.keys, *update.history_keys):
        if wrapped.peer != me or wrapped.epoch in view.epoch_keys:
            continue
        try:
            keys[wrapped.epoch] = crypto.unwrap_epoch_key(
                wrapped.enc,
                keypair=keypair,
                group_id=view.group_id,
                epoch=wrapped.epoch,
                peer=me,
            )
        except ProtocolError as exc:
            logger.warning("cannot unwrap our key for epoch %d: %s", wrapped.epoch, exc)
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
