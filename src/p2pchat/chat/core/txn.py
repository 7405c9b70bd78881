"""What a node commits: one :class:`Transaction` of store operations (specs/chat.md §9).

The group engine never writes: it returns a transaction, the store commits it whole (one
``SAVEPOINT`` inside one durable ``COMMIT``), and only then does the engine change what it holds
in memory. So a crash before the commit leaves neither the store nor memory changed, and a crash
after it leaves a store from which the node reloads the same state.
"""

from __future__ import annotations

import attrs

from .packet import Packet


@attrs.frozen
class AddGroup:
    """Hold a group: its signed genesis (CBOR) from ``joined_at`` (ms)."""

    group_id: bytes
    genesis: bytes
    joined_at: int


@attrs.frozen
class PutPacket:
    """Store a packet: ratified if it carries a certificate, else pending. With ``outbox_at``
    a newly stored packet also enters the outbox, due then (ms), at ``outbox_rank`` (its place
    in our order of the group's messages, stored as the entry's ``created_at``; default
    ``received_at``)."""

    packet: Packet
    received_at: int
    outbox_at: int | None = None
    outbox_rank: int | None = None


@attrs.frozen
class PutRoster:
    """The certified roster message (encoded packet) that opens ``epoch``."""

    group_id: bytes
    epoch: int
    packet: bytes


@attrs.frozen
class PutEpochKey:
    group_id: bytes
    epoch: int
    key: bytes


@attrs.frozen
class PutKeySet:
    """The wrapped keys (CBOR, chat/core/keyset.py) that roster message ``message_hash``
    commits to (specs/chat.md §20); a set held for it is kept."""

    group_id: bytes
    message_hash: bytes
    data: bytes


@attrs.frozen
class PutVote:
    """This node's vote (CBOR) for a stored message; an earlier vote for it is kept."""

    group_id: bytes
    message_hash: bytes
    epoch: int
    vote: bytes
    roster: bool


@attrs.frozen
class OutboxDone:
    """The message leaves the outbox (ratified, written again under another hash, dropped, or
    cancelled by the user); its row stays."""

    group_id: bytes
    message_hash: bytes


@attrs.frozen
class DropPending:
    """Delete pending messages that never became certified, with our votes for them (§6
    "Quotas"). Only pending rows outside the outbox go: a ratified message, or one of ours still
    waiting for its certificate, is kept whatever the engine asks."""

    group_id: bytes
    message_hashes: tuple[bytes, ...]


@attrs.frozen
class PrunePacket:
    """Drop the content key of a held ratified message that the certified delete
    ``tombstone`` names, keeping the rest (§17 "Pruned packets"); a message not held, not
    ratified or already pruned is left as it is."""

    group_id: bytes
    tombstone: Packet


Operation = (
    AddGroup
    | PutPacket
    | PutRoster
    | PutEpochKey
    | PutKeySet
    | PutVote
    | OutboxDone
    | DropPending
    | PrunePacket
)


@attrs.frozen
class Transaction:
    """Operations committed together or not at all, in order."""

    operations: tuple[Operation, ...]

    def __bool__(self) -> bool:
        return bool(self.operations)


@attrs.frozen
class CommitResult:
    """What a committed transaction did: the vote held for each :class:`PutVote` (the one
    just written, or an earlier one for the same message), by message hash."""

    votes: dict[bytes, bytes] = attrs.field(factory=dict)
