"""Roster changes as deltas: the format-2 artifact of a roster message (specs/chat.md §20).

A format-1 artifact (:class:`~.roster_update.RosterUpdate`) repeats the whole roster of the next
epoch, every member's HPKE key included. A format-2 artifact (:class:`RosterDelta`) carries only
what changes from roster ``e`` to roster ``e + 1``: members added (with their HPKE key, published
once, here), members removed, role changes, and optionally a new quorum, history setting, group
name or owner; plus ``roster_hash``, the SHA-256 of the canonical CBOR of the roster that applying
the delta must give, and ``keyset``, the commitment to its wrapped keys (:mod:`.keyset`), which
travel apart. :func:`read_roster_change` reads either format from a roster message against
the chain so far and returns the :class:`RosterChange` every caller uses: the next roster, owner
and name, the key checks, and the keys (format 1) or their commitment. Nothing here does I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs

from ...identity import PeerID
from . import cbor
from .genesis import MAX_NAME
from .keyset import KeySetRef
from .packet import HASH_SIZE, MAX_ARTIFACT_DATA, Packet, sha256
from .roster import (
    MAX_MEMBERS,
    Member,
    Role,
    Roster,
    RosterDecodeError,
    RosterError,
    build_decoded,
    read_bytes,
    read_list,
    read_map,
    read_peer,
    read_text,
    read_uint,
    require_sorted,
)
from .roster_update import (
    KeyCheck,
    RosterUpdate,
    WrappedKey,
    _decode_update,
    decode_roster_packet,
    sorted_key_checks,
)

if TYPE_CHECKING:
    from .group_state import GroupState

__all__ = [
    "DELTA_VERSION",
    "RoleChange",
    "RosterChange",
    "RosterDelta",
    "decode_roster_artifact",
    "delta_between",
    "read_roster_change",
    "roster_hash",
]

#: §20: the ``v`` of a format-2 roster artifact (a format-1 artifact has no ``v``).
DELTA_VERSION: Final = 2
_REQUIRED: Final = frozenset(
    {"v", "epoch", "add", "remove", "roles", "roster_hash", "keyset", "key_checks"}
)
_OPTIONAL: Final = frozenset({"quorum", "history", "name", "owner"})


def roster_hash(roster: Roster) -> bytes:
    """``SHA-256(CBOR(roster))``: what a delta must lead to (§20)."""
    return sha256(cbor.dumps(roster.to_cbor()))


@attrs.frozen
class RoleChange:
    """A member's new role: ``{"peer", "role"}``."""

    peer: PeerID
    role: Role

    def to_cbor(self) -> dict[str, Any]:
        return {"peer": self.peer.to_bytes(), "role": self.role.value}

    @classmethod
    def from_cbor(cls, value: Any) -> RoleChange:
        """Raises:
        DecodeError: malformed or an unknown role."""
        m = read_map(value, "role change", frozenset({"peer", "role"}))
        text = read_text(m["role"], "role change.role", max_size=16)
        try:
            role = Role(text)
        except ValueError:
            raise RosterDecodeError(f"unknown role {text!r}", hint="malformed") from None
        return cls(read_peer(m["peer"], "role change.peer"), role)


def _by_peer(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(sorted(items, key=lambda item: item.peer.to_bytes()))


def _sorted_peers(peers: Iterable[PeerID]) -> tuple[PeerID, ...]:
    return tuple(sorted(peers, key=PeerID.to_bytes))


@attrs.frozen
class RosterDelta:
    """The format-2 artifact of a roster message: the change from roster ``epoch - 1`` (§20).

    Lists are sorted on construction (members, removals and role changes by peer bytes; key
    checks by epoch).

    Raises:
        ValueError: a peer named in two of ``add``/``remove``/``roles`` or twice in one, no key
            check of the new epoch (or one of a later epoch), a name over 128 bytes, or a
            ``roster_hash`` that is not 32 bytes.
    """

    epoch: int
    roster_hash: bytes
    keyset: KeySetRef
    add: tuple[Member, ...] = attrs.field(default=(), converter=_by_peer)
    remove: tuple[PeerID, ...] = attrs.field(default=(), converter=_sorted_peers)
    roles: tuple[RoleChange, ...] = attrs.field(default=(), converter=_by_peer)
    quorum: int | None = None
    history: str | None = None
    name: str | None = None
    owner: PeerID | None = None
    key_checks: tuple[KeyCheck, ...] = attrs.field(default=(), converter=sorted_key_checks)

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.epoch < 2**64:
            raise ValueError("a delta opens an epoch of at least 1")
        if len(self.roster_hash) != HASH_SIZE:
            raise ValueError("roster_hash is 32 bytes")
        named = [m.peer for m in self.add] + list(self.remove) + [r.peer for r in self.roles]
        if len(set(named)) != len(named):
            raise ValueError("a peer is named twice in add, remove and roles")
        if len(self.add) > MAX_MEMBERS or len(self.remove) > MAX_MEMBERS:
            raise ValueError(f"more than {MAX_MEMBERS} members added or removed")
        if self.name is not None and len(self.name.encode()) > MAX_NAME:
            raise ValueError(f"group name longer than {MAX_NAME} bytes")
        checked = [c.epoch for c in self.key_checks]
        if len(set(checked)) != len(checked):
            raise ValueError("key_checks lists an epoch twice")
        if self.epoch not in checked or any(e > self.epoch for e in checked):
            raise ValueError("key_checks holds the new epoch's check and earlier ones only")

    def key_check(self, epoch: int) -> bytes | None:
        """The check of ``epoch``'s key this delta carries, or None (then the chain's, §20)."""
        return next((c.check for c in self.key_checks if c.epoch == epoch), None)

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": DELTA_VERSION,
            "epoch": self.epoch,
            "add": [m.to_cbor() for m in self.add],
            "remove": [p.to_bytes() for p in self.remove],
            "roles": [r.to_cbor() for r in self.roles],
            "roster_hash": self.roster_hash,
            "keyset": self.keyset.to_cbor(),
            "key_checks": [c.to_cbor() for c in self.key_checks],
        }
        for field in ("quorum", "history", "name"):
            if getattr(self, field) is not None:
                out[field] = getattr(self, field)
        if self.owner is not None:
            out["owner"] = self.owner.to_bytes()
        return out

    @classmethod
    def from_cbor(cls, value: Any) -> RosterDelta:
        """Decode a format-2 artifact; its lists must arrive sorted.

        Raises:
            DecodeError: malformed, unsorted or inconsistent (see the class).
        """
        m = read_map(value, "roster delta", _REQUIRED, _OPTIONAL)
        if read_uint(m["v"], "delta.v") != DELTA_VERSION:
            raise RosterDecodeError("unknown roster artifact version", hint="malformed")
        limit = MAX_ARTIFACT_DATA // 64
        raw_add = read_list(m["add"], "delta.add", max_items=MAX_MEMBERS)
        raw_remove = read_list(m["remove"], "delta.remove", max_items=MAX_MEMBERS)
        raw_roles = read_list(m["roles"], "delta.roles", max_items=MAX_MEMBERS)
        raw_checks = read_list(m["key_checks"], "delta.key_checks", max_items=limit)
        history = None
        if "history" in m:
            history = read_text(m["history"], "delta.history", max_size=16)
        delta = build_decoded(
            "roster delta",
            cls,
            read_uint(m["epoch"], "delta.epoch"),
            read_bytes(m["roster_hash"], "delta.roster_hash", max_size=HASH_SIZE),
            KeySetRef.from_cbor(m["keyset"]),
            [Member.from_cbor(item) for item in raw_add],
            [read_peer(item, "delta.remove") for item in raw_remove],
            [RoleChange.from_cbor(item) for item in raw_roles],
            None if "quorum" not in m else read_uint(m["quorum"], "delta.quorum"),
            history,
            None if "name" not in m else read_text(m["name"], "delta.name", max_size=MAX_NAME),
            None if "owner" not in m else read_peer(m["owner"], "delta.owner"),
            [KeyCheck.from_cbor(c) for c in raw_checks],
        )
        require_sorted(raw_add, delta.add, "delta.add")
        if [p.to_bytes() for p in delta.remove] != raw_remove:
            raise RosterDecodeError("delta.remove must be sorted", hint="malformed")
        require_sorted(raw_roles, delta.roles, "delta.roles")
        require_sorted(raw_checks, delta.key_checks, "delta.key_checks")
        return delta

    def encode(self) -> bytes:
        """``CBOR(delta)``: the plaintext artifact of a roster message."""
        return cbor.dumps(self.to_cbor())

    def apply(self, before: Roster) -> Roster:
        """The roster this delta makes of ``before`` (roster ``epoch - 1``).

        Raises:
            RosterError: hint ``"malformed"``: an added peer already a member, a removed or
                re-roled peer not one, a role change to the same role, a roster that breaks §3,
                or one whose hash is not ``roster_hash``.
        """
        if before.epoch + 1 != self.epoch:
            raise RosterError(f"the delta opens epoch {self.epoch}", hint="malformed")
        if any(m.peer in before for m in self.add):
            raise RosterError("the delta adds a current member", hint="malformed")
        if any(p not in before for p in self.remove):
            raise RosterError("the delta removes a peer that is not a member", hint="malformed")
        if any(before.role_of(r.peer) in (None, r.role) for r in self.roles):
            raise RosterError("a role change of a non-member, or to its role", hint="malformed")
        gone = set(self.remove)
        changed = {r.peer: r.role for r in self.roles}
        members = [
            attrs.evolve(m, role=changed[m.peer]) if m.peer in changed else m
            for m in before.members
            if m.peer not in gone
        ]
        try:
            after = Roster(
                self.epoch,
                (*members, *self.add),
                before.quorum if self.quorum is None else self.quorum,
                before.history if self.history is None else self.history,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise RosterError(f"the delta gives no valid roster: {exc}", hint="malformed") from exc
        if roster_hash(after) != self.roster_hash:
            raise RosterError("the delta does not give its roster_hash", hint="malformed")
        return after


def delta_between(
    before: Roster,
    after: Roster,
    keyset: KeySetRef,
    *,
    name: str | None = None,
    owner: PeerID | None = None,
    key_checks: Iterable[KeyCheck] = (),
) -> RosterDelta:
    """The delta from ``before`` to ``after`` (whose epoch follows).

    Raises:
        ValueError: a member kept with another HPKE key (a key is published once: remove the
            member, then add it again).
    """
    added = [m for m in after.members if m.peer not in before]
    removed = [m.peer for m in before.members if m.peer not in after]
    roles: list[RoleChange] = []
    for m in after.members:
        old = before.member(m.peer)
        if old is None:
            continue
        if (old.kem, old.hpke) != (m.kem, m.hpke):
            raise ValueError(f"{m.peer} is kept with another HPKE key")
        if old.role is not m.role:
            roles.append(RoleChange(m.peer, m.role))
    return RosterDelta(
        after.epoch,
        roster_hash(after),
        keyset,
        tuple(added),
        tuple(removed),
        tuple(roles),
        None if after.quorum == before.quorum else after.quorum,
        None if after.history == before.history else after.history,
        name,
        owner,
        tuple(key_checks),
    )


@attrs.frozen
class RosterChange:
    """What a roster message of either format does: the roster, owner and name of the epoch it
    opens, the key checks it carries, and its wrapped keys (format 1) or the commitment to them
    (format 2, ``keyset``)."""

    roster: Roster
    owner: PeerID
    name: str
    key_checks: tuple[KeyCheck, ...]
    keys: tuple[WrappedKey, ...] = ()
    history_keys: tuple[WrappedKey, ...] = ()
    keyset: KeySetRef | None = None

    def key_check(self, epoch: int) -> bytes | None:
        """The check of ``epoch``'s key this message carries, or None."""
        return next((c.check for c in self.key_checks if c.epoch == epoch), None)


def decode_roster_artifact(packet: Packet) -> RosterUpdate | RosterDelta:
    """The artifact of a roster message, format 1 or 2, after the type and encryption rules.

    Raises:
        RosterError: not an unencrypted ``application/cbor`` roster message, or an artifact
            that does not decode (hint ``"malformed"``).
    """
    return decode_roster_packet(packet, _decode_artifact)


@functools.lru_cache(maxsize=8)
def _decode_artifact(data: bytes) -> RosterUpdate | RosterDelta:
    """Either format, remembered for the last few artifacts (a roster message is read at
    delivery, when applied and when its keys are unwrapped)."""
    value = cbor.loads(data, max_size=MAX_ARTIFACT_DATA)
    if isinstance(value, dict) and "v" in value:
        return RosterDelta.from_cbor(value)
    return _decode_update(data)


def read_roster_change(packet: Packet, state: GroupState) -> RosterChange:
    """What the roster message ``packet`` of the current epoch does to ``state``'s chain, after
    the content rules of §3 (format 1) or §20 (format 2). Hashes, signature and certificate are
    not checked here.

    Raises:
        RosterError: hint ``"malformed"`` (a rule of §3 or §20 broken).
    """
    artifact = decode_roster_artifact(packet)
    epoch = packet.message.epoch + 1
    owner, name = state.owner, state.name
    keyset = None
    if isinstance(artifact, RosterUpdate):
        roster = artifact.roster
        if roster.epoch != epoch:
            raise RosterError(f"the roster message must open epoch {epoch}", hint="malformed")
        for wrapped in (*artifact.keys, *artifact.history_keys):
            if wrapped.peer not in roster:
                raise RosterError("a key wrapped for a non-member", hint="malformed")
        keys, history_keys = artifact.keys, artifact.history_keys
    else:
        keys, history_keys, keyset = (), (), artifact.keyset
        if artifact.epoch != epoch:
            raise RosterError(f"the roster message must open epoch {epoch}", hint="malformed")
        roster = artifact.apply(state.current_roster)
        if artifact.owner is not None:
            if artifact.owner == owner:
                raise RosterError("a hand-over names the current owner", hint="malformed")
            if roster.role_of(artifact.owner) is not Role.RATIFIER:
                raise RosterError("the new owner must be a ratifier", hint="malformed")
            owner = artifact.owner
        if artifact.name is not None:
            name = artifact.name
    role = roster.role_of(owner)
    if role is None or not role.can_send:
        raise RosterError("the owner must stay a member who may send", hint="malformed")
    return RosterChange(roster, owner, name, artifact.key_checks, keys, history_keys, keyset)
