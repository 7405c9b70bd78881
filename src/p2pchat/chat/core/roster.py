"""Groups: genesis, rosters, roles and the chain of roster changes (specs/chat.md §3, §7).

Theory of operation
-------------------

A group starts from a :class:`Genesis` that its owner signs (:class:`SignedGenesis`); the group id
is the SHA-256 of the genesis' deterministic CBOR, so every copy of a genesis that decodes
re-encodes to the same bytes and names the same group. The genesis holds the roster of epoch 0.

Every later roster comes from a certified message of type ``"roster"`` authored by the owner. Its
artifact is the plaintext CBOR of a :class:`RosterUpdate`: the roster of the next epoch plus the
epoch keys wrapped for its members (opaque bytes here; chat/crypto.py makes and opens them). The
chain is strictly linear: the roster message that opens epoch ``e + 1`` carries ``epoch = e`` and
is ratified by a quorum of the ratifiers of roster ``e``.

:class:`GroupState` is that verified chain. It is built from a signed genesis and advanced one
epoch at a time by :meth:`GroupState.apply_roster_packet`, which refuses anything that does not
extend the chain with a :class:`RosterError` whose ``hint`` is one of the §2 reasons. It answers
the questions every other check needs: which roster held in an epoch, who may send what.

Constructors validate their data and raise :class:`ValueError` when it breaks §3; ``from_cbor``
and ``decode`` raise :class:`RosterDecodeError` (a :class:`~p2pchat.errors.DecodeError`) for the
same faults in received data. Lists that §3 wants sorted are sorted by the constructors and must
arrive sorted: re-encoding a decoded value gives back the received bytes.

Nothing here does I/O or reads a clock; times are passed in.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal, TypeAlias, TypeVar

import attrs

from ...errors import DecodeError, LocalProtocolError, RemoteProtocolError
from ...identity import KeyPair, PeerID
from . import cbor
from .packet import (
    HASH_SIZE,
    MAX_ARTIFACT_DATA,
    MAX_PACKET_SIZE,
    MAX_PARENTS,
    MAX_VOTES,
    SIGNATURE_SIZE,
    Artifact,
    Headers,
    Message,
    Packet,
    sha256,
    verify_author,
)
from .quorum import verify_certificate

__all__ = [
    "GENESIS_DOMAIN",
    "GENESIS_VERSION",
    "HISTORY_ALL",
    "HISTORY_SINCE_JOIN",
    "KEM_MLKEM768_X25519",
    "KEM_X25519",
    "ROSTER_MESSAGE_TYPE",
    "ROSTER_MIME_TYPE",
    "Genesis",
    "GroupState",
    "History",
    "Member",
    "Role",
    "Roster",
    "RosterDecodeError",
    "RosterError",
    "RosterUpdate",
    "SignedGenesis",
    "WrappedKey",
    "build_roster_message",
    "default_quorum",
    "new_group",
    "read_roster_update",
]

# §5: the owner signs GENESIS_DOMAIN || CBOR(genesis).
GENESIS_DOMAIN: Final = b"p2pchat/genesis/v1"
# §3: genesis "v".
GENESIS_VERSION: Final = 1
# §3: genesis "name" is at most 128 bytes of UTF-8, "nonce" exactly 16 bytes.
MAX_NAME: Final = 128
NONCE_SIZE: Final = 16
# §3: member "kem" names and the size of the "hpke" public key of each.
KEM_MLKEM768_X25519: Final = "MLKEM768_X25519"
KEM_X25519: Final = "X25519"
HPKE_KEY_SIZES: Final[dict[str, int]] = {KEM_MLKEM768_X25519: 1184 + 32, KEM_X25519: 32}
# §3: roster "history".
HISTORY_ALL: Final = "all"
HISTORY_SINCE_JOIN: Final = "since_join"
History: TypeAlias = Literal["all", "since_join"]
_HISTORIES: Final = frozenset({HISTORY_ALL, HISTORY_SINCE_JOIN})
# §3 (addition): decoder bounds on a roster and on one wrapped key.
MAX_MEMBERS: Final = 1024
MAX_WRAPPED: Final = 4096
# §3: roster changes are messages of this type; §3 (addition): their artifact's MIME type.
ROSTER_MESSAGE_TYPE: Final = "roster"
ROSTER_MIME_TYPE: Final = "application/cbor"


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


def _map(value: Any, what: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RosterDecodeError(f"{what} must be a map", hint="malformed")
    if set(value) != keys:
        missing = sorted(keys - set(value))
        unknown = sorted(set(value) - keys)
        raise RosterDecodeError(f"{what}: missing {missing}, unknown {unknown}", hint="malformed")
    return value


def _bytes(value: Any, what: str, *, max_size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) > max_size:
        raise RosterDecodeError(f"{what} must be at most {max_size} bytes", hint="malformed")
    return value


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise RosterDecodeError(f"{what} must be an unsigned integer", hint="malformed")
    return value


def _text(value: Any, what: str, *, max_size: int) -> str:
    if not isinstance(value, str) or len(value.encode()) > max_size:
        raise RosterDecodeError(f"{what} must be text of <= {max_size} bytes", hint="malformed")
    return value


def _list(value: Any, what: str, *, max_items: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_items:
        raise RosterDecodeError(f"{what} must be a list of <= {max_items}", hint="malformed")
    return value


def _peer(value: Any, what: str) -> PeerID:
    return PeerID.from_bytes(_bytes(value, what, max_size=128))


def _build(what: str, build: Callable[..., _T], *args: Any) -> _T:
    """Run a constructor on decoded fields, turning its ValueError into a decode error."""
    try:
        return build(*args)
    except ValueError as exc:
        raise RosterDecodeError(f"invalid {what}: {exc}", hint="malformed") from exc


def _require_sorted(raw: list[Any], built: Sequence[Any], what: str) -> None:
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
        m = _map(value, "member", frozenset({"peer", "role", "kem", "hpke"}))
        role_text = _text(m["role"], "member.role", max_size=16)
        try:
            role = Role(role_text)
        except ValueError:
            raise RosterDecodeError(f"unknown role {role_text!r}", hint="malformed") from None
        return _build(
            "member",
            cls,
            _peer(m["peer"], "member.peer"),
            role,
            _text(m["kem"], "member.kem", max_size=32),
            _bytes(m["hpke"], "member.hpke", max_size=max(HPKE_KEY_SIZES.values())),
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
        m = _map(value, "roster", frozenset({"epoch", "members", "quorum", "history"}))
        raw = _list(m["members"], "roster.members", max_items=MAX_MEMBERS)
        members = [Member.from_cbor(item) for item in raw]
        history = _text(m["history"], "roster.history", max_size=16)
        roster = _build(
            "roster",
            cls,
            _uint(m["epoch"], "roster.epoch"),
            members,
            _uint(m["quorum"], "roster.quorum"),
            history,
        )
        _require_sorted(raw, roster.members, "roster.members")
        return roster


# -- genesis -------------------------------------------------------------------------------------


@attrs.frozen
class Genesis:
    """The record a group starts from (§3).

    Raises:
        ValueError: wrong version, name over 128 bytes, nonce not 16 bytes, a roster whose epoch
            is not 0, or an owner who is not a ratifier of it.
    """

    v: int
    name: str
    owner: PeerID
    created: int
    nonce: bytes
    roster: Roster

    def __attrs_post_init__(self) -> None:
        if self.v != GENESIS_VERSION:
            raise ValueError(f"unsupported genesis version {self.v}")
        if len(self.name.encode()) > MAX_NAME:
            raise ValueError(f"group name longer than {MAX_NAME} bytes")
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
        if not 0 <= self.created < 2**64:
            raise ValueError("created out of range")
        if self.roster.epoch != 0:
            raise ValueError("the genesis roster must have epoch 0")
        if self.roster.role_of(self.owner) is not Role.RATIFIER:
            raise ValueError("the owner must be a ratifier of the genesis roster")

    def to_cbor(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "name": self.name,
            "owner": self.owner.to_bytes(),
            "created": self.created,
            "nonce": self.nonce,
            "roster": self.roster.to_cbor(),
        }

    @classmethod
    def from_cbor(cls, value: Any) -> Genesis:
        """Decode a genesis.

        Raises:
            DecodeError: malformed or breaking §3.
        """
        m = _map(value, "genesis", frozenset({"v", "name", "owner", "created", "nonce", "roster"}))
        return _build(
            "genesis",
            cls,
            _uint(m["v"], "genesis.v"),
            _text(m["name"], "genesis.name", max_size=MAX_NAME),
            _peer(m["owner"], "genesis.owner"),
            _uint(m["created"], "genesis.created"),
            _bytes(m["nonce"], "genesis.nonce", max_size=NONCE_SIZE),
            Roster.from_cbor(m["roster"]),
        )

    def encode(self) -> bytes:
        """``CBOR(genesis)``."""
        return cbor.dumps(self.to_cbor())

    def signing_bytes(self) -> bytes:
        """What the owner signs: ``"p2pchat/genesis/v1" || CBOR(genesis)`` (§5)."""
        return GENESIS_DOMAIN + self.encode()

    @functools.cached_property
    def group_id(self) -> bytes:
        """``SHA-256(CBOR(genesis))`` (computed once)."""
        return sha256(self.encode())


@attrs.frozen
class SignedGenesis:
    """A genesis with its owner's signature, as it travels: ``{"genesis", "sig"}`` (§3)."""

    genesis: Genesis
    sig: bytes

    @classmethod
    def sign(cls, owner: KeyPair, genesis: Genesis) -> SignedGenesis:
        """``genesis`` signed by ``owner``.

        Raises:
            ValueError: ``owner`` is not the genesis' owner.
        """
        if owner.peer_id != genesis.owner:
            raise ValueError("the key pair is not the genesis owner")
        return cls(genesis, owner.sign(genesis.signing_bytes()))

    def verify(self) -> bool:
        """True if ``sig`` is the owner's valid signature of the genesis."""
        try:
            key = self.genesis.owner.extract_public_key()
        except DecodeError:
            return False
        return key is not None and key.verify(self.sig, self.genesis.signing_bytes())

    @property
    def group_id(self) -> bytes:
        """The group id, ``SHA-256(CBOR(genesis))``."""
        return self.genesis.group_id

    def to_cbor(self) -> dict[str, Any]:
        return {"genesis": self.genesis.to_cbor(), "sig": self.sig}

    @classmethod
    def from_cbor(cls, value: Any) -> SignedGenesis:
        """Decode a signed genesis (the signature is checked by :meth:`verify`, not here).

        Raises:
            DecodeError: malformed or breaking §3.
        """
        m = _map(value, "signed genesis", frozenset({"genesis", "sig"}))
        sig = _bytes(m["sig"], "genesis sig", max_size=SIGNATURE_SIZE)
        if len(sig) != SIGNATURE_SIZE:
            raise RosterDecodeError("genesis sig must be 64 bytes", hint="malformed")
        return cls(Genesis.from_cbor(m["genesis"]), sig)

    def encode(self) -> bytes:
        """``CBOR({"genesis": genesis, "sig": sig})``."""
        return cbor.dumps(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes) -> SignedGenesis:
        """Decode a signed genesis from its CBOR bytes.

        Raises:
            DecodeError: malformed, non-canonical, larger than 1 MiB, or breaking §3.
        """
        return cls.from_cbor(cbor.loads(data, max_size=MAX_PACKET_SIZE))


# -- roster updates (the artifact of a roster message) -------------------------------------------


@attrs.frozen
class WrappedKey:
    """An epoch key wrapped for one member: ``{"peer", "epoch", "enc"}`` (§7).

    ``enc`` is opaque here (HPKE output, see chat/crypto.py).

    Raises:
        ValueError: ``enc`` longer than 4096 bytes or an epoch out of range.
    """

    peer: PeerID
    epoch: int
    enc: bytes

    def __attrs_post_init__(self) -> None:
        if len(self.enc) > MAX_WRAPPED:
            raise ValueError(f"wrapped key longer than {MAX_WRAPPED} bytes")
        if not 0 <= self.epoch < 2**64:
            raise ValueError("epoch out of range")

    def sort_key(self) -> tuple[bytes, int]:
        """The order of wrapped keys in a roster update: peer bytes, then epoch."""
        return (self.peer.to_bytes(), self.epoch)

    def to_cbor(self) -> dict[str, Any]:
        return {"peer": self.peer.to_bytes(), "epoch": self.epoch, "enc": self.enc}

    @classmethod
    def from_cbor(cls, value: Any) -> WrappedKey:
        """Decode a wrapped key.

        Raises:
            DecodeError: malformed.
        """
        m = _map(value, "wrapped key", frozenset({"peer", "epoch", "enc"}))
        return cls(
            _peer(m["peer"], "wrapped.peer"),
            _uint(m["epoch"], "wrapped.epoch"),
            _bytes(m["enc"], "wrapped.enc", max_size=MAX_WRAPPED),
        )


def _sorted_keys(keys: Iterable[WrappedKey]) -> tuple[WrappedKey, ...]:
    return tuple(sorted(keys, key=WrappedKey.sort_key))


@attrs.frozen
class RosterUpdate:
    """The artifact of a roster message: the next roster and its wrapped keys (§3, §7).

    ``keys`` hold the new epoch's key, at most one per member of ``roster``, all for
    ``roster.epoch``; ``history_keys`` hold earlier epoch keys for members of ``roster``, at most
    one per (peer, epoch). Both are sorted by (peer bytes, epoch) on construction.

    Raises:
        ValueError: a key for a non-member, for the wrong epoch, or listed twice.
    """

    roster: Roster
    keys: tuple[WrappedKey, ...] = attrs.field(default=(), converter=_sorted_keys)
    history_keys: tuple[WrappedKey, ...] = attrs.field(default=(), converter=_sorted_keys)

    def __attrs_post_init__(self) -> None:
        epoch = self.roster.epoch
        for what, keys in (("keys", self.keys), ("history_keys", self.history_keys)):
            seen = {k.sort_key() for k in keys}
            if len(seen) != len(keys):
                raise ValueError(f"{what} lists a (peer, epoch) twice")
            if any(k.peer not in self.roster for k in keys):
                raise ValueError(f"{what} holds a key for a non-member")
        if any(k.epoch != epoch for k in self.keys):
            raise ValueError(f"keys must all be for epoch {epoch}")
        if any(k.epoch >= epoch for k in self.history_keys):
            raise ValueError(f"history_keys must be for epochs before {epoch}")

    def to_cbor(self) -> dict[str, Any]:
        return {
            "roster": self.roster.to_cbor(),
            "keys": [k.to_cbor() for k in self.keys],
            "history_keys": [k.to_cbor() for k in self.history_keys],
        }

    @classmethod
    def from_cbor(cls, value: Any) -> RosterUpdate:
        """Decode a roster update; both key lists must arrive sorted.

        Raises:
            DecodeError: malformed, unsorted or inconsistent (see the class).
        """
        m = _map(value, "roster update", frozenset({"roster", "keys", "history_keys"}))
        limit = MAX_ARTIFACT_DATA // 64
        raw_keys = _list(m["keys"], "keys", max_items=limit)
        raw_history = _list(m["history_keys"], "history_keys", max_items=limit)
        update = _build(
            "roster update",
            cls,
            Roster.from_cbor(m["roster"]),
            [WrappedKey.from_cbor(k) for k in raw_keys],
            [WrappedKey.from_cbor(k) for k in raw_history],
        )
        _require_sorted(raw_keys, update.keys, "keys")
        _require_sorted(raw_history, update.history_keys, "history_keys")
        return update

    def encode(self) -> bytes:
        """``CBOR(update)``: the plaintext artifact of a roster message."""
        return cbor.dumps(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes) -> RosterUpdate:
        """Decode a roster message's artifact.

        Raises:
            DecodeError: malformed, non-canonical, over 768 KiB, or inconsistent.
        """
        return cls.from_cbor(cbor.loads(data, max_size=MAX_ARTIFACT_DATA))


def read_roster_update(packet: Packet, owner: PeerID) -> RosterUpdate:
    """The update a roster message carries, after the rules of §3 and §7 on its content.

    The message must be of type ``"roster"``, unencrypted (empty ``aes_key`` and ``iv``), with
    artifact type ``application/cbor`` whose data decodes as a :class:`RosterUpdate` for epoch
    ``message.epoch + 1`` in which ``owner`` is still a member who may send. Hashes, signature
    and certificate are not checked here.

    Raises:
        RosterError: any of these fails (hint ``"malformed"``).
    """
    message = packet.message
    if message.message_type != ROSTER_MESSAGE_TYPE:
        raise RosterError("not a roster message", hint="malformed")
    if packet.aes_key or packet.iv:
        raise RosterError("roster messages are not encrypted", hint="malformed")
    if message.artifact.type != ROSTER_MIME_TYPE:
        raise RosterError(f"roster artifact type must be {ROSTER_MIME_TYPE}", hint="malformed")
    try:
        update = RosterUpdate.decode(message.artifact.data)
    except DecodeError as exc:
        raise RosterError(f"bad roster artifact: {exc}", hint="malformed") from exc
    if update.roster.epoch != message.epoch + 1:
        raise RosterError(
            f"roster message of epoch {message.epoch} must open epoch {message.epoch + 1}",
            hint="malformed",
        )
    role = update.roster.role_of(owner)
    if role is None or not role.can_send:
        raise RosterError("the owner must stay a member who may send", hint="malformed")
    return update


# -- the verified chain --------------------------------------------------------------------------


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

    @classmethod
    def from_genesis(cls, signed: SignedGenesis) -> GroupState:
        """The chain of a new or newly joined group, at epoch 0.

        Raises:
            RosterError: the owner's signature does not verify (hint ``"bad signature"``).
        """
        if not signed.verify():
            raise RosterError("the genesis signature does not verify", hint="bad signature")
        return cls(signed, signed.group_id, [signed.genesis.roster], [])

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
        """The group's owner, the only author of roster messages."""
        return self.genesis.genesis.owner

    @property
    def name(self) -> str:
        """The group's name."""
        return self.genesis.genesis.name

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
        return message_type != ROSTER_MESSAGE_TYPE or peer == self.owner

    # -- advancing -------------------------------------------------------------------------------

    def apply_roster_packet(self, packet: Packet) -> RosterUpdate:
        """Advance one epoch with a certified roster message; return its update.

        Checks, in order: the packet's group, message type ``"roster"``, author the owner,
        ``message.epoch`` equal to the current epoch, the certificate against the current roster,
        the hashes, the author signature, then the content rules of :func:`read_roster_update`.

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
        if message.author != self.owner:
            raise RosterError("only the owner changes the roster", hint="not allowed")
        if message.epoch < self.current_epoch:
            raise RosterError(f"epoch {message.epoch} is closed", hint="stale epoch")
        if message.epoch > self.current_epoch:
            raise RosterError(f"epoch {message.epoch} is not reached", hint="future epoch")
        certificate = packet.certificate
        if certificate is None or not verify_certificate(
            certificate, self.current_roster, self.group_id, packet.message_hash
        ):
            raise RosterError(
                "the roster message lacks a valid certificate", hint="bad certificate"
            )
        if not packet.check_hashes():
            raise RosterError("the roster message's hashes do not hold", hint="bad hash")
        if not verify_author(packet):
            raise RosterError("the owner's signature does not verify", hint="bad signature")
        update = read_roster_update(packet, self.owner)
        self._rosters.append(update.roster)
        self._packets.append(packet)
        return update


# -- constructors for the owner ------------------------------------------------------------------


def new_group(
    owner: KeyPair,
    name: str,
    members: Iterable[Member],
    *,
    quorum: int | None = None,
    history: History = HISTORY_ALL,
    now_ms: int,
    nonce: bytes,
) -> SignedGenesis:
    """A new group's signed genesis: ``members`` (the owner among them, as a ratifier) at epoch 0.

    ``nonce`` is 16 random bytes from the caller (this module draws no randomness); ``quorum``
    defaults to a majority of the ratifiers.

    Raises:
        ValueError: the members, quorum, name or nonce break §3.
    """
    members = tuple(members)
    roster = (
        Roster(0, members, history=history)
        if quorum is None
        else Roster(0, members, quorum, history)
    )
    genesis = Genesis(GENESIS_VERSION, name, owner.peer_id, now_ms, nonce, roster)
    return SignedGenesis.sign(owner, genesis)


def build_roster_message(
    state: GroupState,
    update: RosterUpdate,
    *,
    now_ms: int,
    parents: Sequence[bytes] = (),
    ref_hash: bytes | None = None,
) -> tuple[Message, bytes]:
    """The unsigned roster message that opens epoch ``state.current_epoch + 1``, and its artifact.

    The message is of type ``"roster"``, authored by the owner in the current epoch, with the
    plaintext ``CBOR(update)`` as artifact (``application/cbor``) and the key hash of empty
    ``aes_key`` and ``iv``. Sign it with ``sign_message(owner, message, b"", b"")``.

    Raises:
        LocalProtocolError: the update does not open the next epoch, or drops the owner.
    """
    epoch = state.current_epoch
    if update.roster.epoch != epoch + 1:
        raise LocalProtocolError(
            f"the update opens epoch {update.roster.epoch}, not {epoch + 1}", hint="wrong epoch"
        )
    role = update.roster.role_of(state.owner)
    if role is None or not role.can_send:
        raise LocalProtocolError("the owner must stay a member who may send", hint="owner")
    data = update.encode()
    if len(data) > MAX_ARTIFACT_DATA:
        raise LocalProtocolError("the roster update exceeds 768 KiB", hint="too large")
    artifact = Artifact(ROSTER_MIME_TYPE, data, sha256(data), sha256(b""))
    message = Message(
        group_id=state.group_id,
        epoch=epoch,
        message_type=ROSTER_MESSAGE_TYPE,
        time_stamp=now_ms,
        author=state.owner,
        ref_hash=ref_hash,
        parents=tuple(sorted(set(parents))),
        headers=Headers(),
        artifact=artifact,
    )
    if len(message.parents) > MAX_PARENTS or any(len(p) != HASH_SIZE for p in message.parents):
        raise LocalProtocolError(f"parents must be <= {MAX_PARENTS} hashes", hint="parents")
    return message, data
