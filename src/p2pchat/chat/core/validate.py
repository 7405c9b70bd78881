"""The checks a packet must pass before it is ratified or stored (specs/chat.md §6).

Each check function returns None when the packet passes, or the §2 reason of the first check it
fails, in the order §6 lists them, so that every node answers the same reason for the same packet.
They are pure: the group's verified chain, the time and "do I hold this message?" are passed in.
Finding the group by the query's ``group_id`` (``"unknown group"`` when there is none) is the
caller's; these functions still refuse a packet whose own ``group_id`` is not the state's.

Ratification (``mrat``, :func:`check_for_ratification`):

1. the packet's group is the state's group ......................... ``"unknown group"``
   (and a pruned packet, §17, is never voted for .......................... ``"malformed"``)
2. ``message.epoch`` equals the current epoch ............ ``"stale epoch"`` / ``"future epoch"``
3. the author is a member of the current roster ..................... ``"not a member"``
   whose role may send (a viewer: ``profile`` and ``leave`` only, §17 "Viewers"), and only
   the owner sends ``"roster"`` ....................................... ``"not allowed"``
4. ``message_hash``, ``artifact.hash`` and ``artifact.key_hash`` ........... ``"bad hash"``
5. the author's signature ........................................... ``"bad signature"``
6. ``|time_stamp - now| <= 5 minutes`` .............................. ``"bad timestamp"``
7. every parent held ................................................ ``"missing parents"``
7a. order and time (§6 addition "Order and time"): a message without parents only while this
    ratifier holds no message of the group (``"bad parents"``); ``time_stamp`` not earlier than
    any parent's by more than 5 minutes (``"bad timestamp"``); the author's latest message of
    the current epoch held here is a parent, or is at most 5 minutes older than this one
    (``"bad parents"``)
7b. a reference (§17: :func:`~p2pchat.chat.core.refs.check_reference`) ......
    ``"bad reference"`` / ``"not allowed"``; an avatar's shape (§18:
    :func:`~p2pchat.chat.core.profiles.check_avatar`) .................... ``"malformed"``
8. a roster message's content (§3 addition and §20:
   :func:`~p2pchat.chat.core.roster_delta.read_roster_change`) ......... ``"malformed"``

Delivery (``smsg`` and history from ``dht``, :func:`check_for_delivery`): 1; then
``message.epoch`` not beyond the current epoch (``"future epoch"``: the roster to check the
certificate against is not known yet); a certificate of ``message.epoch`` valid against that
epoch's roster (``"bad certificate"``); 3 against the roster of ``message.epoch``; 4; 5; a
pruned packet's tombstone (§17, :func:`~p2pchat.chat.core.prune.check_tombstone`,
``"bad tombstone"`` / ``"future epoch"``); 7;
7a without the author rule, where a message without parents must be of epoch 0 and not earlier
than the genesis by more than 5 minutes (``"bad parents"`` / ``"bad timestamp"``); 7b; and 8,
where a roster message of an epoch the chain has already closed must be the one the chain holds
(``"stale epoch"`` otherwise). Epoch equality and the time window do not apply: a certified
message of an earlier epoch is still good.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from .group_state import GroupState
from .packet import Packet, verify_author
from .profiles import check_avatar
from .prune import check_tombstone
from .quorum import verify_certificate
from .refs import VIEWER_TYPES, RefOf, check_reference
from .roster import Roster, RosterError
from .roster_delta import read_roster_change
from .roster_update import ROSTER_MESSAGE_TYPE

__all__ = [
    "CLOCK_SKEW_MS",
    "TIME_WINDOW_MS",
    "check_for_delivery",
    "check_for_ratification",
]

# §6: a ratifier accepts time stamps within 5 minutes of its own clock, either way.
TIME_WINDOW_MS: Final = 5 * 60 * 1000
# §6 "Order and time": how much earlier than its parents (or the genesis) a message may be stamped,
# for the clocks of two authors that disagree.
CLOCK_SKEW_MS: Final = 5 * 60 * 1000

#: The time stamp of a held message, or None when it is not held.
TimeOf = Callable[[bytes], int | None]


def _check_author(packet: Packet, state: GroupState, roster: Roster) -> str | None:
    message = packet.message
    role = roster.role_of(message.author)
    if role is None:
        return "not a member"
    if not role.can_send and message.message_type not in VIEWER_TYPES:  # §17 "Viewers"
        return "not allowed"
    if message.message_type == ROSTER_MESSAGE_TYPE and message.author != state.owner_at(
        message.epoch
    ):
        return "not allowed"
    return None


#: Author signatures that verified, by (message hash, signature), least recently used out: a
#: ratifier checks a message when it votes and again when it is delivered (§21), a member a
#: packet that comes twice. The hashes are checked first, so the hash stands for the message.
_AUTHORS_VERIFIED: Final[OrderedDict[tuple[bytes, bytes], None]] = OrderedDict()
AUTHORS_VERIFIED_SIZE: Final = 4096


def _check_authentic(packet: Packet) -> str | None:
    if not packet.check_hashes():
        return "bad hash"
    entry = (packet.message_hash, packet.signature)
    if entry in _AUTHORS_VERIFIED:
        _AUTHORS_VERIFIED.move_to_end(entry)
        return None
    if not verify_author(packet):
        return "bad signature"
    _AUTHORS_VERIFIED[entry] = None
    if len(_AUTHORS_VERIFIED) > AUTHORS_VERIFIED_SIZE:
        _AUTHORS_VERIFIED.popitem(last=False)
    return None


def _check_parents(packet: Packet, have: Callable[[bytes], bool]) -> str | None:
    if not all(have(parent) for parent in packet.message.parents):
        return "missing parents"
    return None


def _check_parent_times(packet: Packet, time_of: TimeOf | None) -> str | None:
    if time_of is None:
        return None
    times = [t for t in (time_of(p) for p in packet.message.parents) if t is not None]
    if times and packet.message.time_stamp < max(times) - CLOCK_SKEW_MS:
        return "bad timestamp"
    return None


def _check_order_for_ratification(
    packet: Packet,
    time_of: TimeOf | None,
    holds_any: bool,
    author_latest: tuple[int, bytes] | None,
) -> str | None:
    message = packet.message
    if not message.parents and holds_any:
        return "bad parents"  # only the group's first message has no parents
    reason = _check_parent_times(packet, time_of)
    if reason is not None:
        return reason
    if author_latest is not None:
        latest_time, latest_hash = author_latest
        if latest_hash not in message.parents and latest_time < message.time_stamp - CLOCK_SKEW_MS:
            return "bad parents"  # a fresh branch that skips the author's own latest message
    return None


def _check_order_for_delivery(
    packet: Packet, state: GroupState, time_of: TimeOf | None
) -> str | None:
    message = packet.message
    if not message.parents:
        if message.epoch != 0:
            return "bad parents"
        if message.time_stamp < state.genesis.genesis.created - CLOCK_SKEW_MS:
            return "bad timestamp"
        return None
    return _check_parent_times(packet, time_of)


def _check_reference(packet: Packet, state: GroupState, ref_of: RefOf | None) -> str | None:
    m = packet.message
    reason = check_avatar(m)
    if reason is not None or ref_of is None:
        return reason
    return check_reference(m.message_type, m.author, m.ref_hash, state.owner_at(m.epoch), ref_of)


def _check_roster_content(packet: Packet, state: GroupState) -> str | None:
    if packet.message.message_type != ROSTER_MESSAGE_TYPE:
        return None
    if packet.message.epoch < state.current_epoch:
        return None  # a closed epoch's: it must be the one the chain holds (checked after)
    try:
        update = read_roster_change(packet, state)
    except RosterError as exc:
        return exc.hint
    if state.key_check_conflict(update) is not None:
        return "malformed"  # §15: an epoch key the chain fixed, checked differently
    return None


def check_for_ratification(
    packet: Packet,
    state: GroupState,
    *,
    now_ms: int,
    have: Callable[[bytes], bool],
    time_of: TimeOf | None = None,
    holds_any: bool = False,
    author_latest: tuple[int, bytes] | None = None,
    ref_of: RefOf | None = None,
) -> str | None:
    """The reason a ratifier must refuse ``packet`` (``mrat``), or None to vote for it.

    ``state`` is the packet's group as this node knows it, ``now_ms`` this node's clock, and
    ``have(message_hash)`` tells whether this node holds a message. For the order rules (7a),
    ``time_of`` gives a held message's time stamp (None: parent times are not checked),
    ``holds_any`` whether this node holds any message of the group, and ``author_latest`` the
    (time stamp, hash) of the author's latest held message of the current epoch; ``ref_of``
    the author and kind of a held message, for the §17 reference rule (None: not checked).
    Committing the packet before signing, voting once per roster epoch and idempotent votes
    are the caller's.
    """
    message = packet.message
    if message.group_id != state.group_id:
        return "unknown group"
    if packet.pruned:
        return "malformed"  # §17: a pruned packet is delivered, never voted for
    if message.epoch < state.current_epoch:
        return "stale epoch"
    if message.epoch > state.current_epoch:
        return "future epoch"
    reason = _check_author(packet, state, state.current_roster) or _check_authentic(packet)
    if reason is not None:
        return reason
    if abs(message.time_stamp - now_ms) > TIME_WINDOW_MS:
        return "bad timestamp"
    return (
        _check_parents(packet, have)
        or _check_order_for_ratification(packet, time_of, holds_any, author_latest)
        or _check_reference(packet, state, ref_of)
        or _check_roster_content(packet, state)
    )


def check_for_delivery(
    packet: Packet,
    state: GroupState,
    *,
    have: Callable[[bytes], bool],
    time_of: TimeOf | None = None,
    ref_of: RefOf | None = None,
) -> str | None:
    """The reason a member must refuse to store a certified ``packet`` (``smsg``, ``dht``).

    ``time_of`` gives a held message's time stamp (None: parent times are not checked; the rule
    for a message without parents always applies).

    Returns None when the packet may be stored. A roster message of the current epoch that
    passes is then applied with :meth:`~p2pchat.chat.core.roster.GroupState.apply_roster_packet`.
    """
    message = packet.message
    if message.group_id != state.group_id:
        return "unknown group"
    roster = state.find_roster(message.epoch)
    if roster is None:
        return "future epoch"
    certificate = packet.certificate
    if (
        certificate is None
        or certificate.epoch != message.epoch
        or not verify_certificate(
            certificate,
            roster,
            state.group_id,
            packet.message_hash,
            closing=message.message_type == ROSTER_MESSAGE_TYPE,
        )
    ):
        return "bad certificate"
    reason = (
        _check_author(packet, state, roster)
        or _check_authentic(packet)
        or check_tombstone(packet, state)
        or _check_parents(packet, have)
        or _check_order_for_delivery(packet, state, time_of)
        or _check_reference(packet, state, ref_of)
        or _check_roster_content(packet, state)
    )
    if reason is not None:
        return reason
    if message.message_type == ROSTER_MESSAGE_TYPE and message.epoch < state.current_epoch:
        held = state.roster_packet(message.epoch)
        if held is None or held.message_hash != packet.message_hash:
            return "stale epoch"
    return None
