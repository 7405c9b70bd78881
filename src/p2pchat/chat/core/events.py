"""What goes into the group engine and what comes out of it (chat/core/engine.py).

Events are what happened: a timer fired, a connection came up or went down, a vote or a peer's
DAG heads arrived, a commit finished. Actions are what the engine asks its owner to do: commit a
transaction, ask a ratifier for a vote, deliver, publish, compare heads, page history, fetch
parents, learn a roster, deliver our messages again. The engine never does any of it itself and
never reads a clock: every event that needs the time carries ``now`` (milliseconds since the
Unix epoch).
"""

from __future__ import annotations

from typing import Any

import attrs

from ...identity import PeerID
from .packet import Packet, Vote
from .txn import CommitResult, Transaction

# -- events ---------------------------------------------------------------------------------------


@attrs.frozen
class Tick:
    """The time is ``now``: retry what is due, give up on what timed out, run anti-entropy."""

    now: int


@attrs.frozen
class Connected:
    """A connection to ``peer`` came up."""

    peer: PeerID
    now: int


@attrs.frozen
class Disconnected:
    """The last connection to ``peer`` went down."""

    peer: PeerID


@attrs.frozen
class VoteAnswered:
    """A ratifier answered ``mrat`` with a vote, refused it with ``reason``, or could not be
    asked (``vote`` and ``reason`` both None: unreachable, or no answer in time)."""

    group_id: bytes
    message_hash: bytes
    ratifier: PeerID
    vote: Vote | None
    reason: str | None
    now: int


@attrs.frozen
class HeadsAnswered:
    """``peer``'s DAG heads of a group (``hdsR``); ``catch_up`` when asked for a new connection,
    where a gap is filled by paging history rather than by fetching parents."""

    group_id: bytes
    peer: PeerID
    heads: tuple[bytes, ...]
    catch_up: bool


@attrs.frozen
class Committed:
    """The store committed ``commit.txn`` durably; ``result`` is what it returned."""

    commit: Commit
    result: CommitResult
    now: int


@attrs.frozen
class KeysAnswered:
    """``holder`` answered ``keys`` for a roster message (specs/chat.md §20) with ``body``
    (a ``keysR``), or did not (``body`` None: refused, unreachable, no answer in time)."""

    group_id: bytes
    message_hash: bytes
    holder: PeerID
    body: dict[str, Any] | None
    now: int


Event = Tick | Connected | Disconnected | VoteAnswered | HeadsAnswered | Committed | KeysAnswered

# -- actions --------------------------------------------------------------------------------------


@attrs.frozen
class Effect:
    """What the engine changes in memory once a :class:`Commit` is done (engine-private)."""


@attrs.frozen
class Commit:
    """Commit ``txn``; then hand the engine :class:`Committed` with this action."""

    txn: Transaction
    effect: Effect


@attrs.frozen
class AskVote:
    """Ask ``ratifier`` (possibly this node) to ratify ``packet``; report a
    :class:`VoteAnswered`."""

    group_id: bytes
    packet: Packet
    ratifier: PeerID


@attrs.frozen
class Deliver:
    """Send the certified ``packet`` (``smsg``) to each of ``peers``."""

    group_id: bytes
    packet: Packet
    peers: tuple[PeerID, ...]


@attrs.frozen
class Publish:
    """Show ``packet`` to the application, pending or ratified."""

    group_id: bytes
    packet: Packet
    ratified: bool


@attrs.frozen
class Ratified:
    """A message this node wrote is ratified: ``origin`` is the hash it was first written
    under, ``message_hash`` the hash it was ratified under (they differ once re-written)."""

    group_id: bytes
    origin: bytes
    message_hash: bytes


@attrs.frozen
class Abandoned:
    """A message this node wrote will not be sent: it was queued in an epoch that has closed
    and cannot be written again (a roster change, or content we hold no key for)."""

    group_id: bytes
    origin: bytes
    reason: str


@attrs.frozen
class CompareHeads:
    """Ask ``peer`` for its heads (``hds``); report a :class:`HeadsAnswered`."""

    group_id: bytes
    peer: PeerID
    catch_up: bool


@attrs.frozen
class SyncHistory:
    """Page through ``peer``'s history (``dht``) and receive what this node lacks."""

    group_id: bytes
    peer: PeerID


@attrs.frozen
class FetchMissing:
    """Fetch ``hashes`` and their missing ancestors from ``peer`` (``get``) and receive them."""

    group_id: bytes
    peer: PeerID
    hashes: tuple[bytes, ...]


@attrs.frozen
class LearnRoster:
    """``peer`` knows a later roster: fetch its chain (``pkt``) and receive what is new."""

    group_id: bytes
    peer: PeerID


@attrs.frozen
class FetchKeys:
    """Ask ``holder`` for our entries of a roster message's key set (``keys``, §20)."""

    group_id: bytes
    message_hash: bytes
    holder: PeerID


@attrs.frozen
class Redeliver:
    """Deliver again (``smsg``) our certified messages ``hashes``, read from the store, to each
    of ``peers``: a closing vote says a ratifier had voted for them without holding them
    certified, so their first delivery may have been lost (specs/chat.md §14 "Delivery after
    the close")."""

    group_id: bytes
    hashes: tuple[bytes, ...]
    peers: tuple[PeerID, ...]


Action = (
    Commit
    | AskVote
    | Deliver
    | Publish
    | Ratified
    | Abandoned
    | CompareHeads
    | SyncHistory
    | FetchMissing
    | LearnRoster
    | FetchKeys
    | Redeliver
)


# -- answers to direct calls ----------------------------------------------------------------------


@attrs.frozen
class Refused:
    """The engine refuses a packet; ``reason`` is the negative answer's reason (§2)."""

    reason: str


@attrs.frozen
class NeedParents:
    """The packet's parents are not all held: fetch them from its sender, then ask again."""

    hashes: tuple[bytes, ...]


@attrs.frozen
class AlreadyHeld:
    """The packet is already held, ratified."""
