"""Test groups for the chat group-logic tests: keys, rosters, signed and certified packets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from p2pchat.chat.core.commitment import CloseCommitment
from p2pchat.chat.core.genesis import SignedGenesis, new_group
from p2pchat.chat.core.group_state import GroupState
from p2pchat.chat.core.packet import (
    Artifact,
    Certificate,
    Headers,
    Message,
    Packet,
    make_vote,
    sha256,
    sign_message,
)
from p2pchat.chat.core.roster import KEM_X25519, Member, Role, Roster
from p2pchat.chat.core.roster_update import RosterUpdate, WrappedKey, build_roster_message
from p2pchat.identity import KeyPair, PeerID

NOW = 1_764_000_000_000
NONCE = bytes(range(16))


def key(n: int) -> KeyPair:
    """A deterministic Ed25519 key pair."""
    return KeyPair.from_seed(bytes([n]) * 32)


def member(pair: KeyPair, role: Role) -> Member:
    """A member entry with an X25519 HPKE key derived from the peer (not a real key)."""
    return Member(pair.peer_id, role, KEM_X25519, sha256(pair.peer_id.to_bytes()))


@attrs.frozen
class Group:
    """A group of an owner, two more ratifiers, a user and a viewer (quorum 2 of 3)."""

    owner: KeyPair
    ratifiers: tuple[KeyPair, ...]  # the owner first
    user: KeyPair
    viewer: KeyPair
    outsider: KeyPair
    signed: SignedGenesis

    def state(self) -> GroupState:
        return GroupState.from_genesis(self.signed)

    @property
    def group_id(self) -> bytes:
        return self.signed.group_id


def make_group(*, quorum: int | None = None) -> Group:
    owner, r1, r2, user, viewer, outsider = (key(n) for n in range(1, 7))
    members = [
        member(owner, Role.RATIFIER),
        member(r1, Role.RATIFIER),
        member(r2, Role.RATIFIER),
        member(user, Role.USER),
        member(viewer, Role.VIEWER),
    ]
    signed = new_group(owner, "test group", members, quorum=quorum, now_ms=NOW, nonce=NONCE)
    return Group(owner, (owner, r1, r2), user, viewer, outsider, signed)


def text_packet(
    group_id: bytes,
    author: KeyPair,
    *,
    epoch: int = 0,
    message_type: str = "text",
    time_stamp: int = NOW,
    parents: Sequence[bytes] = (),
    data: bytes = b"ciphertext",
    ref_hash: bytes | None = None,
) -> Packet:
    """A signed packet shaped like an encrypted one (the bytes are not real ciphertext)."""
    aes_key, iv = bytes(60), bytes(12)
    message = Message(
        group_id=group_id,
        epoch=epoch,
        message_type=message_type,
        time_stamp=time_stamp,
        author=author.peer_id,
        ref_hash=ref_hash,
        parents=tuple(sorted(parents)),
        headers=Headers(),
        artifact=Artifact("text/plain", data, sha256(data), sha256(aes_key + iv)),
    )
    return sign_message(author, message, aes_key, iv)


def certify(packet: Packet, voters: Iterable[KeyPair], epoch: int | None = None) -> Packet:
    """``packet`` with a certificate of the votes of ``voters``."""
    e = packet.message.epoch if epoch is None else epoch
    close = None
    if packet.message.message_type == "roster":  # closing votes (specs/chat.md §14)
        close = CloseCommitment(heads=packet.message.parents)
    votes = tuple(
        make_vote(v, packet.message.group_id, e, packet.message_hash, close) for v in voters
    )
    return packet.with_certificate(Certificate(e, votes))


def next_roster(state: GroupState, members: Iterable[Member], quorum: int | None = None) -> Roster:
    epoch = state.current_epoch + 1
    return Roster(epoch, members) if quorum is None else Roster(epoch, members, quorum)


def roster_packet(
    state: GroupState,
    owner: KeyPair,
    members: Iterable[Member],
    *,
    keys: Iterable[WrappedKey] | None = None,
    now_ms: int = NOW,
) -> Packet:
    """The signed (not yet certified) roster message opening the next epoch with ``members``."""
    roster = next_roster(state, members)
    if keys is None:
        keys = [WrappedKey(m.peer, roster.epoch, b"wrapped") for m in roster.members]
    update = RosterUpdate(roster, tuple(keys))
    message, _ = build_roster_message(state, update, now_ms=now_ms)
    return sign_message(owner, message, b"", b"")


def peers(*pairs: KeyPair) -> list[PeerID]:
    return [p.peer_id for p in pairs]
