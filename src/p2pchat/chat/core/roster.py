"""Roles, members, rosters and the quorum rule (specs/chat.md §3).

A :class:`Roster` is the membership of one epoch: who is in the group, with which :class:`Role`
and HPKE public key, how many ratifier votes a certificate needs, and whether new members read
earlier history. Constructors validate their data and raise :class:`ValueError` when it breaks
§3; ``from_cbor`` raises :class:`RosterDecodeError` (a :class:`~p2pchat.errors.DecodeError`) for
the same faults in received data. Lists that §3 wants sorted are sorted by the constructors and
must arrive sorted: re-encoding a decoded value gives back the received bytes.

The field readers at the top (``read_*``) are shared by the genesis (:mod:`.genesis`) and the
roster update (:mod:`.roster_update`) decoders. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal, TypeAlias, TypeVar

import attrs

from ...errors import DecodeError, RemoteProtocolError
from ...identity import PeerID
from .packet import MAX_VOTES

__all__ = [
    "HISTORY_ALL",
    "HISTORY_SINCE_JOIN",
    "HPKE_KEY_SIZES",
    "KEM_MLKEM768_X25519",
    "KEM_X25519",
    "MAX_MEMBERS",
    "History",
    "Member",
    "Role",
    "Roster",
    "RosterDecodeError",
    "RosterError",
    "default_quorum",
]

# §3: member "kem" names and the size of the "hpke" public key of each.
KEM_MLKEM768_X25519: Final = "MLKEM768_X25519"
KEM_X25519: Final = "X25519"
HPKE_KEY_SIZES: Final[dict[str, int]] = {KEM_MLKEM768_X25519: 1184 + 32, KEM_X25519: 32}
# §3: roster "history".
HISTORY_ALL: Final = "all"
HISTORY_SINCE_JOIN: Final = "since_join"
History: TypeAlias = Literal["all", "since_join"]
_HISTORIES: Final = frozenset({HISTORY_ALL, HISTORY_SINCE_JOIN})
# §3 (addition): decoder bound on a roster.
MAX_MEMBERS: Final = 1024


_T = TypeVar("_T")


class RosterDecodeError(DecodeError):
    """A genesis, roster, member or roster update is malformed."""


class RosterError(RemoteProtocolError):
    """A genesis or roster message does not extend the group's verified chain.

    ``hint`` is the §2 reason: ``"unknown group"``, ``"not allowed"``, ``"stale epoch"``,
    ``"future epoch"``, ``"bad certificate"``, ``"bad hash"``, ``"bad signature"`` or
    ``"malformed"``.
    """


class Role(enum.Enum):
    """A member's role (§3)."""

    RATIFIER = "ratifier"
    USER = "user"
    VIEWER = "viewer"

    @property
    def can_send(self) -> bool:
        """Ratifiers and users send; viewers only read."""
        return self is not Role.VIEWER

    @property
    def can_ratify(self) -> bool:
        """Only ratifiers ratify."""
        return self is Role.RATIFIER


def default_quorum(n_ratifiers: int) -> int:
    """The default quorum, a majority of ``n_ratifiers``: ``floor(n/2) + 1`` (§3)."""
    return n_ratifiers // 2 + 1


# -- field readers (raise RosterDecodeError) ----------------------------------------------------


def read_map(
    value: Any, what: str, keys: frozenset[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RosterDecodeError(f"{what} must be a map", hint="malformed")
    if not keys <= set(value) <= keys | optional:
        missing = sorted(keys - set(value))
        unknown = sorted(set(value) - keys - optional)
        raise RosterDecodeError(f"{what}: missing {missing}, unknown {unknown}", hint="malformed")
    return value


def read_bytes(value: Any, what: str, *, max_size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) > max_size:
        raise RosterDecodeError(f"{what} must be at most {max_size} bytes", hint="malformed")
    return value


def read_uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise RosterDecodeError(f"{what} must be an unsigned integer", hint="malformed")
    return value


def read_text(value: Any, what: str, *, max_size: int) -> str:
    if not isinstance(value, str) or len(value.encode()) > max_size:
        raise RosterDecodeError(f"{what} must be text of <= {max_size} bytes", hint="malformed")
    return value


def read_list(value: Any, what: str, *, max_items: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_items:
        raise RosterDecodeError(f"{what} must be a list of <= {max_items}", hint="malformed")
    return value


def read_peer(value: Any, what: str) -> PeerID:
    return PeerID.from_bytes(read_bytes(value, what, max_size=128))


def build_decoded(what: str, build: Callable[..., _T], *args: Any) -> _T:
    """Run a constructor on decoded fields, turning its ValueError into a decode error."""
    try:
        return build(*args)
    except ValueError as exc:
        raise RosterDecodeError(f"invalid {what}: {exc}", hint="malformed") from exc


def require_sorted(raw: list[Any], built: Sequence[Any], what: str) -> None:
    if [item.to_cbor() for item in built] != raw:
        raise RosterDecodeError(f"{what} must be sorted", hint="malformed")


# -- members and rosters -------------------------------------------------------------------------


@attrs.frozen
class Member:
    """A roster entry: peer, role and HPKE public key (§3).

    Raises:
        ValueError: unknown KEM, or an HPKE key of the wrong size for it.
    """

    peer: PeerID
    role: Role
    kem: str
    hpke: bytes

    def __attrs_post_init__(self) -> None:
        size = HPKE_KEY_SIZES.get(self.kem)
        if size is None:
            raise ValueError(f"unknown KEM {self.kem!r}")
        if len(self.hpke) != size:
            raise ValueError(f"{self.kem} public key must be {size} bytes")

    def to_cbor(self) -> dict[str, Any]:
        return {
            "peer": self.peer.to_bytes(),
            "role": self.role.value,
            "kem": self.kem,
            "hpke": self.hpke,
        }

    @classmethod
    def from_cbor(cls, value: Any) -> Member:
        """Decode a member entry.

        Raises:
            DecodeError: malformed entry, bad peer id, unknown role or KEM, wrong key size.
        """
        m = read_map(value, "member", frozenset({"peer", "role", "kem", "hpke"}))
        role_text = read_text(m["role"], "member.role", max_size=16)
        try:
            role = Role(role_text)
        except ValueError:
            raise RosterDecodeError(f"unknown role {role_text!r}", hint="malformed") from None
        return build_decoded(
            "member",
            cls,
            read_peer(m["peer"], "member.peer"),
            role,
            read_text(m["kem"], "member.kem", max_size=32),
            read_bytes(m["hpke"], "member.hpke", max_size=max(HPKE_KEY_SIZES.values())),
        )


def _sorted_members(members: Iterable[Member]) -> tuple[Member, ...]:
    return tuple(sorted(members, key=lambda m: m.peer.to_bytes()))


def _default_roster_quorum(roster: Roster) -> int:
    return default_quorum(sum(1 for m in roster.members if m.role.can_ratify))


@attrs.frozen
class Roster:
    """The members of one epoch, the quorum and the history setting (§3).

    ``members`` is sorted by peer bytes on construction; ``quorum`` defaults to a majority of
    the ratifiers.

    Raises:
        ValueError: no ratifier, a peer listed twice, quorum outside ``1..ratifiers`` (or above
            the 256 votes a certificate holds), more than 1024 members, or an unknown history.
    """

    epoch: int
    members: tuple[Member, ...] = attrs.field(converter=_sorted_members)
    quorum: int = attrs.field(default=attrs.Factory(_default_roster_quorum, takes_self=True))
    history: History = HISTORY_ALL
    _index: dict[PeerID, Member] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        index = {m.peer: m for m in self.members}
        if len(index) != len(self.members):
            raise ValueError("a peer is listed twice")
        if len(self.members) > MAX_MEMBERS:
            raise ValueError(f"more than {MAX_MEMBERS} members")
        n_ratifiers = sum(1 for m in self.members if m.role.can_ratify)
        if n_ratifiers == 0:
            raise ValueError("a roster needs at least one ratifier")
        if not 1 <= self.quorum <= min(n_ratifiers, MAX_VOTES):
            raise ValueError(f"quorum {self.quorum} outside 1..{min(n_ratifiers, MAX_VOTES)}")
        if self.history not in _HISTORIES:
            raise ValueError(f"unknown history setting {self.history!r}")
        if not 0 <= self.epoch < 2**64:
            raise ValueError("epoch out of range")
        object.__setattr__(self, "_index", index)

    @property
    def ratifiers(self) -> frozenset[PeerID]:
        """The peers whose role is ratifier."""
        return frozenset(m.peer for m in self.members if m.role.can_ratify)

    def member(self, peer: PeerID) -> Member | None:
        """The entry of ``peer``, or None if it is not a member."""
        return self._index.get(peer)

    def role_of(self, peer: PeerID) -> Role | None:
        """The role of ``peer``, or None if it is not a member."""
        entry = self._index.get(peer)
        return None if entry is None else entry.role

    def __contains__(self, peer: object) -> bool:
        return peer in self._index

    def to_cbor(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "members": [m.to_cbor() for m in self.members],
            "quorum": self.quorum,
            "history": self.history,
        }

    @classmethod
    def from_cbor(cls, value: Any) -> Roster:
        """Decode a roster; ``members`` must arrive sorted by peer bytes.

        Raises:
            DecodeError: malformed, unsorted, or breaking §3 (see the class).
        """
        m = read_map(value, "roster", frozenset({"epoch", "members", "quorum", "history"}))
        raw = read_list(m["members"], "roster.members", max_items=MAX_MEMBERS)
        members = [Member.from_cbor(item) for item in raw]
        history = read_text(m["history"], "roster.history", max_size=16)
        roster = build_decoded(
            "roster",
            cls,
            read_uint(m["epoch"], "roster.epoch"),
            members,
            read_uint(m["quorum"], "roster.quorum"),
            history,
        )
        require_sorted(raw, roster.members, "roster.members")
        return roster
