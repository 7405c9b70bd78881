"""Roster updates: the artifact of a roster message, and the message itself (§3, §7).

Every roster after epoch 0 comes from a certified message of type ``"roster"`` authored by the
owner. Its artifact is the plaintext CBOR of a :class:`RosterUpdate`: the roster of the next epoch
plus the epoch keys wrapped for its members (:class:`WrappedKey`, opaque bytes here;
chat/core/crypto.py makes and opens them). :func:`read_roster_update` applies the content rules
to a received roster message; :func:`build_roster_message` makes one for the owner.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from ...errors import DecodeError, LocalProtocolError
from ...identity import PeerID
from . import cbor
from .packet import (
    HASH_SIZE,
    MAX_ARTIFACT_DATA,
    MAX_PARENTS,
    Artifact,
    Headers,
    Message,
    Packet,
    sha256,
)
from .roster import (
    Roster,
    RosterDecodeError,
    RosterError,
    build_decoded,
    read_bytes,
    read_list,
    read_map,
    read_peer,
    read_uint,
    require_sorted,
)

if TYPE_CHECKING:
    from .group_state import GroupState

__all__ = [
    "KEY_CHECK_DOMAIN",
    "MAX_WRAPPED",
    "ROSTER_MESSAGE_TYPE",
    "ROSTER_MIME_TYPE",
    "KeyCheck",
    "RosterUpdate",
    "WrappedKey",
    "build_roster_message",
    "decode_roster_packet",
    "epoch_key_check",
    "read_roster_update",
    "roster_message",
    "sorted_key_checks",
]

_T = TypeVar("_T")

# §3 (addition): decoder bound on one wrapped key.
MAX_WRAPPED: Final = 4096
# §3: roster changes are messages of this type; §3 (addition): their artifact's MIME type.
ROSTER_MESSAGE_TYPE: Final = "roster"
ROSTER_MIME_TYPE: Final = "application/cbor"
# §15: what binds an epoch key to its group and epoch in a key check.
KEY_CHECK_DOMAIN: Final = b"p2pchat/epoch-key-check/v1"


def epoch_key_check(group_id: bytes, epoch: int, key: bytes) -> bytes:
    """``SHA-256("p2pchat/epoch-key-check/v1" || group_id || u64(epoch) || key)`` (§15)."""
    return sha256(KEY_CHECK_DOMAIN + group_id + epoch.to_bytes(8, "big") + key)


@attrs.frozen
class KeyCheck:
    """The check of one epoch's key in a roster update: ``{"epoch", "check"}`` (§15).

    Raises:
        ValueError: ``check`` not 32 bytes, or an epoch out of range.
    """

    epoch: int
    check: bytes

    def __attrs_post_init__(self) -> None:
        if len(self.check) != HASH_SIZE:
            raise ValueError("a key check is 32 bytes")
        if not 0 <= self.epoch < 2**64:
            raise ValueError("epoch out of range")

    def to_cbor(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "check": self.check}

    @classmethod
    def from_cbor(cls, value: Any) -> KeyCheck:
        """Raises:
        DecodeError: malformed."""
        m = read_map(value, "key check", frozenset({"epoch", "check"}))
        return build_decoded(
            "key check",
            cls,
            read_uint(m["epoch"], "key_check.epoch"),
            read_bytes(m["check"], "key_check.check", max_size=HASH_SIZE),
        )


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
        m = read_map(value, "wrapped key", frozenset({"peer", "epoch", "enc"}))
        return cls(
            read_peer(m["peer"], "wrapped.peer"),
            read_uint(m["epoch"], "wrapped.epoch"),
            read_bytes(m["enc"], "wrapped.enc", max_size=MAX_WRAPPED),
        )


def _sorted_keys(keys: Iterable[WrappedKey]) -> tuple[WrappedKey, ...]:
    return tuple(sorted(keys, key=WrappedKey.sort_key))


def sorted_key_checks(checks: Iterable[KeyCheck]) -> tuple[KeyCheck, ...]:
    """Key checks in the order of a roster artifact: by epoch."""
    return tuple(sorted(checks, key=lambda c: c.epoch))


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
    #: §15: one check per epoch whose key the update carries, sorted
    #: by epoch (empty: an update of a writer that does not confirm keys; members then take
    #: none of its keys).
    key_checks: tuple[KeyCheck, ...] = attrs.field(default=(), converter=sorted_key_checks)

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
        checked = [c.epoch for c in self.key_checks]
        if len(set(checked)) != len(checked):
            raise ValueError("key_checks lists an epoch twice")
        if self.key_checks and set(checked) != self.carried_epochs():
            raise ValueError("key_checks must cover exactly the epochs whose keys are carried")

    def carried_epochs(self) -> set[int]:
        """The epochs whose keys this update carries (for anyone)."""
        return {k.epoch for k in (*self.keys, *self.history_keys)}

    def key_check(self, epoch: int) -> bytes | None:
        """The check of ``epoch``'s key, or None."""
        return next((c.check for c in self.key_checks if c.epoch == epoch), None)

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "roster": self.roster.to_cbor(),
            "keys": [k.to_cbor() for k in self.keys],
            "history_keys": [k.to_cbor() for k in self.history_keys],
        }
        if self.key_checks:
            out["key_checks"] = [c.to_cbor() for c in self.key_checks]
        return out

    @classmethod
    def from_cbor(cls, value: Any) -> RosterUpdate:
        """Decode a roster update; both key lists must arrive sorted.

        Raises:
            DecodeError: malformed, unsorted or inconsistent (see the class).
        """
        m = read_map(
            value,
            "roster update",
            frozenset({"roster", "keys", "history_keys"}),
            frozenset({"key_checks"}),
        )
        limit = MAX_ARTIFACT_DATA // 64
        raw_keys = read_list(m["keys"], "keys", max_items=limit)
        raw_history = read_list(m["history_keys"], "history_keys", max_items=limit)
        raw_checks = read_list(m.get("key_checks", []), "key_checks", max_items=limit)
        if "key_checks" in m and not raw_checks:
            raise RosterDecodeError("key_checks, when present, is not empty", hint="malformed")
        update = build_decoded(
            "roster update",
            cls,
            Roster.from_cbor(m["roster"]),
            [WrappedKey.from_cbor(k) for k in raw_keys],
            [WrappedKey.from_cbor(k) for k in raw_history],
            [KeyCheck.from_cbor(c) for c in raw_checks],
        )
        require_sorted(raw_keys, update.keys, "keys")
        require_sorted(raw_history, update.history_keys, "history_keys")
        require_sorted(raw_checks, update.key_checks, "key_checks")
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


@functools.lru_cache(maxsize=8)
def _decode_update(data: bytes) -> RosterUpdate:
    """:meth:`RosterUpdate.decode`, remembered for the last few artifacts: a roster message is
    read at delivery, when applied and when its keys are unwrapped, and decoding a large one
    (every member's key checked) is the bulk of a member's work on it (specs/chat.md §16)."""
    return RosterUpdate.decode(data)


def decode_roster_packet(packet: Packet, decode: Callable[[bytes], _T]) -> _T:
    """``decode`` of the artifact of the roster message ``packet``, after the rules of §3 on
    its type and encryption: of type ``"roster"``, unencrypted (empty ``aes_key`` and ``iv``),
    with artifact type ``application/cbor``.

    Raises:
        RosterError: any of these fails, or ``decode`` raises DecodeError (hint ``"malformed"``).
    """
    message = packet.message
    if message.message_type != ROSTER_MESSAGE_TYPE:
        raise RosterError("not a roster message", hint="malformed")
    if packet.aes_key or packet.iv:
        raise RosterError("roster messages are not encrypted", hint="malformed")
    if message.artifact.type != ROSTER_MIME_TYPE:
        raise RosterError(f"roster artifact type must be {ROSTER_MIME_TYPE}", hint="malformed")
    try:
        return decode(message.artifact.data)
    except DecodeError as exc:
        raise RosterError(f"bad roster artifact: {exc}", hint="malformed") from exc


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
    update = decode_roster_packet(packet, _decode_update)
    if update.roster.epoch != message.epoch + 1:
        raise RosterError(
            f"roster message of epoch {message.epoch} must open epoch {message.epoch + 1}",
            hint="malformed",
        )
    role = update.roster.role_of(owner)
    if role is None or not role.can_send:
        raise RosterError("the owner must stay a member who may send", hint="malformed")
    return update


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
    return roster_message(state, update.encode(), now_ms=now_ms, parents=parents, ref_hash=ref_hash)


def roster_message(
    state: GroupState,
    data: bytes,
    *,
    now_ms: int,
    parents: Sequence[bytes] = (),
    ref_hash: bytes | None = None,
) -> tuple[Message, bytes]:
    """The unsigned roster message of the current epoch whose artifact is ``data`` (a roster
    update or delta, already checked), and ``data``.

    Raises:
        LocalProtocolError: ``data`` over 768 KiB, or too many parents.
    """
    epoch = state.current_epoch
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
