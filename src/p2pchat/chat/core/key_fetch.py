"""A member's own wrapped keys, fetched from the holders of a key set (specs/chat.md §20),
sans-IO.

A format-2 roster message commits to its wrapped keys without carrying them. A member of the
roster it opens that lacks that epoch's key (or, added by it with the history ``"all"``, the
earlier ones) asks a holder for its entries with ``keys {group_id, message_hash}``: itself
first when it holds the set (it wrote or voted for the message), then the ratifiers that voted
for it (its certificate names them), then its author. :class:`KeyFetches`
keeps those wants, says which holder to ask when (:class:`~.events.FetchKeys`), checks each
answer against the commitment (:func:`~.keyset.read_my_keys`), unwraps the keys and checks them
against the key checks (§15), and returns the commit of the keys. A want is tried at most
:data:`MAX_TRIES` times, holder after holder, backing off from 1 s to 60 s; after that the
member keeps the roster without the key until the node starts again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import attrs

from ...errors import DecodeError, ProtocolError
from ...identity import PeerID
from . import crypto
from .events import Commit, Effect, FetchKeys, KeysAnswered
from .keyset import KeySetError, read_my_keys
from .packet import Packet
from .roster_delta import RosterDelta, decode_roster_artifact
from .roster_update import epoch_key_check
from .txn import PutEpochKey, Transaction
from .view import GroupView

__all__ = ["BACKOFF_MAX", "MAX_TRIES", "KeyFetches", "KeysTaken"]

logger = logging.getLogger(__name__)

#: At most this many asks per want (holders in turn).
MAX_TRIES: Final = 12
#: The wait before asking again, doubling from BACKOFF_FIRST to BACKOFF_MAX (ms).
BACKOFF_FIRST: Final = 1000
BACKOFF_MAX: Final = 60_000


@attrs.frozen
class KeysTaken(Effect):
    """Epoch keys fetched for us, committed: hold them."""

    group_id: bytes
    message_hash: bytes
    keys: dict[int, bytes]


@attrs.define
class _Want:
    group_id: bytes
    packet: Packet
    delta: RosterDelta
    holders: tuple[PeerID, ...]
    tries: int = 0
    due: int = 0
    asking: PeerID | None = None
    #: Keys fetched, their commit under way: asked no more, held once committed.
    taking: bool = False


class KeyFetches:
    """The roster messages whose keys we still want, and the asks they need."""

    def __init__(
        self,
        me: PeerID,
        hpke: crypto.HpkeKeyPair,
        find: Callable[[bytes], GroupView | None],
    ) -> None:
        self._me = me
        self._hpke = hpke
        self._find = find
        self._wants: dict[bytes, _Want] = {}

    def __len__(self) -> int:
        return len(self._wants)

    def wanted(self, message_hash: bytes) -> bool:
        return message_hash in self._wants

    def waiting(self, group_id: bytes) -> bool:
        """Whether we still fetch the key of ``group_id``'s current epoch (our messages of
        the closed epoch wait for it before they are written again)."""
        view = self._find(group_id)
        if view is None or view.state.current_epoch in view.epoch_keys:
            return False
        current = view.state.roster_packet(view.state.current_epoch - 1)
        return current is not None and current.message_hash in self._wants

    def consider(self, view: GroupView, packet: Packet, now: int) -> None:
        """Want the keys a held format-2 roster message has for us, if we lack them."""
        if packet.message_hash in self._wants:
            return
        try:
            delta = decode_roster_artifact(packet)
        except ProtocolError:
            return
        if not isinstance(delta, RosterDelta):
            return  # format 1: its keys came with it
        opened = packet.message.epoch + 1
        roster = view.state.find_roster(opened)
        if roster is None or self._me not in roster:
            return
        lacking = opened not in view.epoch_keys
        if not lacking and roster.history == "all" and any(m.peer == self._me for m in delta.add):
            lacking = any(e not in view.epoch_keys for e in range(opened))
        if not lacking:
            return
        votes = () if packet.certificate is None else packet.certificate.votes
        holders = sorted({v.ratifier for v in votes}, key=PeerID.to_bytes)
        if packet.message.author not in holders:
            holders.append(packet.message.author)
        if self._me in holders:  # we hold the whole set: our own store answers first
            holders.remove(self._me)
            holders.insert(0, self._me)
        self._wants[packet.message_hash] = _Want(
            view.group_id, packet, delta, tuple(holders), due=now
        )

    def due(self, now: int) -> list[FetchKeys]:
        """The asks to make now (one per want, not while one is out)."""
        actions = []
        for message_hash, want in self._wants.items():
            if want.asking is None and not want.taking and want.due <= now:
                want.asking = want.holders[want.tries % len(want.holders)]
                want.tries += 1
                actions.append(FetchKeys(want.group_id, message_hash, want.asking))
        return actions

    def next_wake(self) -> int | None:
        times = [w.due for w in self._wants.values() if w.asking is None and not w.taking]
        return min(times) if times else None

    def answered(self, event: KeysAnswered) -> Commit | None:
        """A holder's answer: the commit of the keys it brings, or None (then asked again
        later, of the next holder, while tries are left)."""
        want = self._wants.get(event.message_hash)
        if want is None or want.asking != event.holder:
            return None
        want.asking = None
        keys = {} if event.body is None else self._take(want, event.body, event.holder)
        if keys:
            want.taking = True  # still waited for until committed (:meth:`taken`)
            txn = Transaction(tuple(PutEpochKey(want.group_id, e, k) for e, k in keys.items()))
            return Commit(txn, KeysTaken(want.group_id, event.message_hash, keys))
        if want.tries >= MAX_TRIES:
            logger.warning(
                "no holder gave us the keys of roster message %s: we keep the roster without "
                "them until the next start",
                event.message_hash.hex()[:16],
            )
            del self._wants[event.message_hash]
            return None
        rounds = (want.tries - 1) // len(want.holders)
        wait = 0 if want.tries % len(want.holders) else BACKOFF_FIRST << min(rounds, 6)
        want.due = event.now + min(wait, BACKOFF_MAX)
        return None

    def _take(self, want: _Want, body: dict[str, object], holder: PeerID) -> dict[int, bytes]:
        view = self._find(want.group_id)
        if view is None:
            return {}
        try:
            entries = read_my_keys(body, want.delta.keyset, self._me)
        except KeySetError as exc:
            logger.warning("keys from %s refused: %s (%s)", holder, exc, exc.hint)
            return {}
        keys: dict[int, bytes] = {}
        for entry in entries:
            if entry.epoch in view.epoch_keys:
                continue
            try:
                key = crypto.unwrap_epoch_key(
                    entry.enc,
                    keypair=self._hpke,
                    group_id=want.group_id,
                    epoch=entry.epoch,
                    peer=self._me,
                )
            except (ProtocolError, DecodeError) as exc:
                logger.warning("cannot unwrap our key for epoch %d: %s", entry.epoch, exc)
                continue
            check = want.delta.key_check(entry.epoch) or view.state.key_check(entry.epoch)
            if check != epoch_key_check(want.group_id, entry.epoch, key):
                logger.warning("our key for epoch %d fails its key check", entry.epoch)
                continue
            keys[entry.epoch] = key
        return keys

    def taken(self, view: GroupView, effect: KeysTaken) -> None:
        """Hold the committed keys."""
        for epoch, key in effect.keys.items():
            view.epoch_keys.setdefault(epoch, key)
        self._wants.pop(effect.message_hash, None)
