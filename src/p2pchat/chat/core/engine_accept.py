"""Certified messages arriving, for :class:`~.engine.ChatEngine` (specs/chat.md §7, §8, §14):
check a certified packet (``smsg``, history, a fetch, a roster chain), ask for missing heads,
and accept it: the rows of the commit, then, once committed, hold it, apply a roster message and
its keys, publish, deliver, and certify what waited for it. Sans-IO like the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from ...errors import ProtocolError
from .engine_outbox import ROSTER
from .engine_records import (
    _Accepted,
)
from .engine_state import EngineState
from .events import (
    Action,
    AlreadyHeld,
    Commit,
    Deliver,
    FetchMissing,
    HeadsAnswered,
    NeedParents,
    Publish,
    Ratified,
    Refused,
    SyncHistory,
)
from .fetch import MAX_FETCH
from .gaps import chain_have, fill_gaps
from .membership import accept_rows
from .packet import Packet
from .prune import is_prunable_delete
from .redeliver import redeliver
from .txn import OutboxDone, PrunePacket, PutEpochKey, PutPacket, PutRoster, Transaction
from .validate import check_for_delivery
from .view import GroupView, unwrap_keys

#: The engine's logger: these are its records.
logger = logging.getLogger("p2pchat.chat.core.engine")

#: §14: a certified message of a closed epoch that no closing vote committed to.
CLOSED_EPOCH: Final = "closed epoch"


class Acceptance(EngineState):
    """Receiving and accepting certified messages; mixed into :class:`~.engine.ChatEngine`."""

    if TYPE_CHECKING:

        def _on_tick(self, now: int) -> list[Action]: ...

        def _certify_ready(self, now: int) -> list[Action]: ...

    def receive(
        self,
        group_id: bytes,
        packet: Packet,
        now: int,
        *,
        chain: bool = False,
        before: Mapping[bytes, int] | None = None,
    ) -> Commit | Refused | NeedParents | AlreadyHeld:
        """A certified packet arrived (``smsg``, history, a fetch, a roster chain); ``chain``:
        a roster message of a ``pkt`` chain, taken without parents it cannot fetch (§8);
        ``before``: the packets of the same delivery accepted before it (hash -> time stamp),
        committed with it, so they count as held parents (§21)."""
        view = self._groups.get(group_id)
        if view is None or packet.message.group_id != group_id:
            return Refused("unknown group")
        if view.has(packet.message_hash):
            return AlreadyHeld()
        earlier: Mapping[bytes, int] = before if before is not None else {}
        held_parent = chain_have(view, packet) if chain else view.has

        def have(h: bytes) -> bool:
            return held_parent(h) or h in earlier

        def time_of(h: bytes) -> int | None:
            held = view.time_of(h)
            return held if held is not None else earlier.get(h)

        reason = check_for_delivery(
            packet, view.state, have=have, time_of=time_of, ref_of=view.ref_of
        )
        if reason in (None, "missing parents") and self._closed_epoch(view, packet):
            view.close.seed(view.state, view.has)
            if not view.close.admitted(packet.message_hash):
                return Refused(CLOSED_EPOCH)
            view.close.admit_parents(packet)
        if reason == "missing parents":
            return NeedParents(tuple(h for h in packet.message.parents if not have(h)))
        if reason is not None:
            return Refused(reason)
        return self._accept(view, packet, now, deliver=False)

    @staticmethod
    def _closed_epoch(view: GroupView, packet: Packet) -> bool:
        """A message of an epoch this node has closed (its roster message is held): accepted
        only if admitted (§14). Roster messages are checked against the chain instead."""
        message = packet.message
        return message.epoch < view.state.current_epoch and message.message_type != ROSTER

    def _on_heads(self, event: HeadsAnswered) -> list[Action]:
        view = self._groups.get(event.group_id)
        if view is None or not view.is_current_member(self.peer_id):
            return []
        missing = [h for h in event.heads if len(h) == 32 and not view.has(h)]
        if not missing:
            return fill_gaps(view, event)
        logger.info("%d heads of %s missing here", len(missing), event.peer)
        if event.catch_up:
            return [SyncHistory(event.group_id, event.peer)]
        return [FetchMissing(event.group_id, event.peer, tuple(missing[:MAX_FETCH]))]

    # -- accepting certified messages ----------------------------------------------------------

    def _accept(self, view: GroupView, packet: Packet, now: int, *, deliver: bool) -> Commit:
        keys: dict[int, bytes] = {}
        if packet.message.message_type == ROSTER:
            keys = unwrap_keys(view, packet, self.hpke, self.peer_id)
        operations: list[PutPacket | PutRoster | PutEpochKey | OutboxDone | PrunePacket] = []
        operations += accept_rows(view.group_id, packet, keys, now)
        if packet.message.author == self.peer_id:
            operations.append(OutboxDone(view.group_id, packet.message_hash))
        if is_prunable_delete(packet):  # §17: the deleted message's content key goes with it
            operations.append(PrunePacket(view.group_id, packet))
        effect = _Accepted(view.group_id, packet, keys, deliver)
        return Commit(Transaction(tuple(operations)), effect)

    def _accepted(self, effect: _Accepted, now: int) -> list[Action]:
        view = self._groups.get(effect.group_id)
        packet = effect.packet
        if view is None or view.has(packet.message_hash):
            return []
        actions: list[Action] = []
        if packet.message.message_type == ROSTER:
            epoch = packet.message.epoch
            held = view.state.roster_packet(epoch)
            if held is None and epoch == view.state.current_epoch:
                try:
                    view.state.apply_roster_packet(packet)
                except ProtocolError as exc:  # checked on arrival; only a fork gets here
                    logger.warning("a committed roster message does not apply: %s", exc)
                    return []
                view.epoch_keys.update(effect.keys)
                self.keys.consider(view, packet, now)  # §20: fetched, not carried
                view.close.forget_epochs_before(view.state.current_epoch)
                # Our queued messages of the old epoch are written again at once.
                self.outbox.hurry(now, group_id=view.group_id)
                actions += redeliver(view, packet, self.peer_id)
            for key_epoch, key in effect.keys.items():
                view.epoch_keys.setdefault(key_epoch, key)
        view.hold(packet)
        if packet.message.message_type == ROSTER:
            view.find_late()  # an epoch closed: what we hold of it that no close accounts for
        actions.append(Publish(view.group_id, packet, ratified=True))
        queued = self.outbox.remove(packet.message_hash)
        self._attempts.pop(packet.message_hash, None)
        if packet.message.author == self.peer_id:
            origin = queued.origin if queued is not None else packet.message_hash
            actions.append(Ratified(view.group_id, origin, packet.message_hash))
        if effect.deliver:
            message = packet.message
            peers = view.members(message.epoch, view.state.current_epoch) - {self.peer_id}
            actions.append(Deliver(view.group_id, packet, tuple(sorted(peers))))
        return actions + self._certify_ready(now) + self._on_tick(now)
