"""The verified roster chain of one group (specs/chat.md §3, §7).

:class:`GroupState` is built from a signed genesis and advanced one epoch at a time by
:meth:`GroupState.apply_roster_packet`, which refuses anything that does not extend the chain
with a :class:`~.roster.RosterError` whose ``hint`` is one of the §2 reasons. The chain is
strictly linear: the roster message that opens epoch ``e + 1`` carries ``epoch = e`` and is
ratified by a quorum of the ratifiers of roster ``e``. It answers the questions every other check
needs: which roster held in an epoch, who may send what. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ...identity import PeerID
from .genesis import SignedGenesis
from .packet import Packet, verify_author
from .quorum import verify_certificate
from .roster import Role, Roster, RosterError
from .roster_delta import RosterChange, read_roster_change
from .roster_update import ROSTER_MESSAGE_TYPE, RosterUpdate

__all__ = ["GroupState"]


@attrs.define
class GroupState:
    """The verified roster chain of one group: its genesis and certified roster messages.

    Build it with :meth:`from_genesis` (or :meth:`from_chain`), then feed each certified roster
    message to :meth:`apply_roster_packet`.
    """

    genesis: SignedGenesis
    group_id: bytes
    _rosters: list[Roster]
    _packets: list[Packet]
    #: §15: the key check of each epoch, as the first roster message carrying one fixed it.
    _checks: dict[int, bytes] = attrs.field(factory=dict)
    #: §20: the owner and the name of each epoch (a roster message may hand ownership over or
    #: rename the group); empty until :meth:`from_genesis` fills epoch 0.
    _owners: list[PeerID] = attrs.field(factory=list)
    _names: list[str] = attrs.field(factory=list)

    @classmethod
    def from_genesis(cls, signed: SignedGenesis) -> GroupState:
        """The chain of a new or newly joined group, at epoch 0.

        Raises:
            RosterError: the owner's signature does not verify (hint ``"bad signature"``).
        """
        if not signed.verify():
            raise RosterError("the genesis signature does not verify", hint="bad signature")
        genesis = signed.genesis
        return cls(
            signed, signed.group_id, [genesis.roster], [], {}, [genesis.owner], [genesis.name]
        )

    @classmethod
    def from_chain(cls, signed: SignedGenesis, packets: Iterable[Packet]) -> GroupState:
        """The chain of a genesis and its certified roster messages, in epoch order (a ``pktR``).

        Raises:
            RosterError: the genesis or one of the packets does not verify.
        """
        state = cls.from_genesis(signed)
        for packet in packets:
            state.apply_roster_packet(packet)
        return state

    # -- queries ---------------------------------------------------------------------------------

    @property
    def owner(self) -> PeerID:
        """The group's current owner, the only author of roster messages (the genesis owner
        until a roster message hands ownership over, §20)."""
        return self._owners[-1]

    def owner_at(self, epoch: int) -> PeerID:
        """The owner in ``epoch`` (the current owner for an epoch the chain does not reach)."""
        return self._owners[epoch] if 0 <= epoch < len(self._owners) else self._owners[-1]

    @property
    def name(self) -> str:
        """The group's current name (the genesis name until a rename, §20)."""
        return self._names[-1]

    @property
    def current_epoch(self) -> int:
        """The newest epoch whose roster this chain holds."""
        return len(self._rosters) - 1

    @property
    def current_roster(self) -> Roster:
        """The roster of :attr:`current_epoch`."""
        return self._rosters[-1]

    @property
    def roster_packets(self) -> tuple[Packet, ...]:
        """The certified roster messages since genesis, in epoch order (the ``pktR`` chain)."""
        return tuple(self._packets)

    def roster(self, epoch: int) -> Roster:
        """The roster of ``epoch``.

        Raises:
            KeyError: the chain does not reach ``epoch``.
        """
        if not 0 <= epoch < len(self._rosters):
            raise KeyError(epoch)
        return self._rosters[epoch]

    def find_roster(self, epoch: int) -> Roster | None:
        """The roster of ``epoch``, or None if the chain does not reach it."""
        return self._rosters[epoch] if 0 <= epoch < len(self._rosters) else None

    def roster_packet(self, epoch: int) -> Packet | None:
        """The certified roster message authored in ``epoch`` (it opened ``epoch + 1``)."""
        return self._packets[epoch] if 0 <= epoch < len(self._packets) else None

    def role(self, peer: PeerID, epoch: int) -> Role | None:
        """``peer``'s role in ``epoch``, or None (not a member, or an unknown epoch)."""
        roster = self.find_roster(epoch)
        return None if roster is None else roster.role_of(peer)

    def is_member(self, peer: PeerID, epoch: int) -> bool:
        """True if ``peer`` is in the roster of ``epoch``."""
        return self.role(peer, epoch) is not None

    def can_send(self, peer: PeerID, epoch: int, message_type: str) -> bool:
        """True if ``peer`` may author a ``message_type`` message in ``epoch``.

        Ratifiers and users send; viewers do not; only the owner sends ``"roster"``.
        """
        role = self.role(peer, epoch)
        if role is None or not role.can_send:
            return False
        return message_type != ROSTER_MESSAGE_TYPE or peer == self.owner_at(epoch)

    # -- advancing -------------------------------------------------------------------------------

    def apply_roster_packet(self, packet: Packet) -> RosterChange:
        """Advance one epoch with a certified roster message; return its update.

        Checks, in order: the packet's group, message type ``"roster"``, author the owner,
        ``message.epoch`` equal to the current epoch, the certificate against the current roster,
        the hashes, the author signature, then the content rules of :func:`read_roster_change`.

        Raises:
            RosterError: with hint ``"unknown group"``, ``"malformed"``, ``"not allowed"``,
                ``"stale epoch"``, ``"future epoch"``, ``"bad certificate"``, ``"bad hash"`` or
                ``"bad signature"``; the state is unchanged.
        """
        message = packet.message
        if message.group_id != self.group_id:
            raise RosterError("the roster message is for another group", hint="unknown group")
        if message.message_type != ROSTER_MESSAGE_TYPE:
            raise RosterError("not a roster message", hint="malformed")
        if message.author != self.owner_at(message.epoch):
            raise RosterError("only the owner changes the roster", hint="not allowed")
        if message.epoch < self.current_epoch:
            raise RosterError(f"epoch {message.epoch} is closed", hint="stale epoch")
        if message.epoch > self.current_epoch:
            raise RosterError(f"epoch {message.epoch} is not reached", hint="future epoch")
        certificate = packet.certificate
        if certificate is None or not verify_certificate(
            certificate, self.current_roster, self.group_id, packet.message_hash, closing=True
        ):
            raise RosterError(
                "the roster message lacks a valid certificate", hint="bad certificate"
            )
        if not packet.check_hashes():
            raise RosterError("the roster message's hashes do not hold", hint="bad hash")
        if not verify_author(packet):
            raise RosterError("the owner's signature does not verify", hint="bad signature")
        update = read_roster_change(packet, self)
        conflict = self.key_check_conflict(update)
        if conflict is not None:
            raise RosterError(conflict, hint="malformed")
        self._rosters.append(update.roster)
        self._packets.append(packet)
        self._owners.append(update.owner)
        self._names.append(update.name)
        for entry in update.key_checks:
            self._checks.setdefault(entry.epoch, entry.check)
        return update

    def key_check(self, epoch: int) -> bytes | None:
        """The check of ``epoch``'s key fixed by the chain: the first roster message that
        carried one (§15), or None."""
        return self._checks.get(epoch)

    def key_check_conflict(self, update: RosterChange | RosterUpdate) -> str | None:
        """Why ``update``'s key checks contradict the chain (an epoch key the chain already
        fixed, checked differently), or None."""
        for entry in update.key_checks:
            held = self.key_check(entry.epoch)
            if held is not None and held != entry.check:
                return f"the key check of epoch {entry.epoch} differs from the chain's"
        return None
