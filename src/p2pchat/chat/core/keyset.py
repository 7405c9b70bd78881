"""The wrapped keys of a roster change, out of its body (specs/chat.md §20 "Key sets"), sans-IO.

A format-2 roster message does not carry its wrapped keys: it commits to them by
``{"root", "count"}`` (:class:`KeySetRef`), the Merkle root (§19) over the canonical CBOR of each
:class:`~.roster_update.WrappedKey`, sorted by (peer bytes, epoch), and their number. The whole
set (:class:`KeySet`) is held by the owner and by every ratifier that voted (custody); a
ratifier fetches it in pages (``kset``) before it votes and checks it whole
(:func:`check_key_set`); a member fetches only its own entries with their proofs (``keys``) and
checks each against the root (:func:`read_my_keys`).

Bounds: at most :data:`MAX_KEY_SET` entries in a set; a ``ksetR`` page at most
:data:`KSET_PAGE_BYTES` of entries; a ``keysR`` answer at most :data:`MAX_MY_KEYS` entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from ...errors import DecodeError, ProtocolError, RemoteProtocolError
from ...identity import PeerID
from . import cbor, merkle
from .packet import HASH_SIZE
from .roster import Roster, build_decoded, read_bytes, read_list, read_map, read_uint
from .roster_update import WrappedKey

__all__ = [
    "KSET_PAGE_BYTES",
    "MAX_KEY_SET",
    "MAX_KEY_SET_PAGES",
    "MAX_MY_KEYS",
    "KeySet",
    "KeySetError",
    "KeySetFetch",
    "KeySetRef",
    "check_key_set",
    "my_keys_answer",
    "read_my_keys",
]

#: At most this many wrapped keys in one set (the leaves of one Merkle tree, §19).
MAX_KEY_SET: Final = merkle.MAX_LEAVES
#: A ``ksetR`` page holds entries of at most this many bytes (CBOR), at least one.
KSET_PAGE_BYTES: Final = 768 * 1024
#: A ratifier's budget for one set: pages (each must advance) and the whole set's bytes.
MAX_KEY_SET_PAGES: Final = 1024
MAX_KEY_SET_BYTES: Final = 128 * 1024 * 1024
#: A ``keysR`` answer holds at most this many entries (one member's, with their proofs).
MAX_MY_KEYS: Final = 512


class KeySetError(RemoteProtocolError):
    """A key set, a page of one or a member's entries that does not match the commitment;
    ``hint`` is the §2 reason (``"malformed"``, ``"bad page"``, ``"bad proof"``,
    ``"over quota"``)."""


@attrs.frozen
class KeySetRef:
    """What a roster delta commits to: ``{"root": bstr(32), "count": uint}``.

    Raises:
        ValueError: a root that is not 32 bytes, or a count outside ``1..MAX_KEY_SET``.
    """

    root: bytes
    count: int

    def __attrs_post_init__(self) -> None:
        if len(self.root) != HASH_SIZE:
            raise ValueError("a key set root is 32 bytes")
        if not 1 <= self.count <= MAX_KEY_SET:
            raise ValueError(f"a key set holds 1..{MAX_KEY_SET} keys")

    def to_cbor(self) -> dict[str, Any]:
        return {"root": self.root, "count": self.count}

    @classmethod
    def from_cbor(cls, value: Any) -> KeySetRef:
        """Raises:
        DecodeError: malformed."""
        m = read_map(value, "keyset", frozenset({"root", "count"}))
        return build_decoded(
            "keyset",
            cls,
            read_bytes(m["root"], "keyset.root", max_size=HASH_SIZE),
            read_uint(m["count"], "keyset.count"),
        )


def _sorted(keys: Iterable[WrappedKey]) -> tuple[WrappedKey, ...]:
    return tuple(sorted(keys, key=WrappedKey.sort_key))


@attrs.frozen
class KeySet:
    """The wrapped keys of one roster change, sorted by (peer bytes, epoch), unique.

    Raises:
        ValueError: empty, more than MAX_KEY_SET, or a (peer, epoch) listed twice.
    """

    keys: tuple[WrappedKey, ...] = attrs.field(converter=_sorted)
    _leaves: tuple[bytes, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_KEY_SET:
            raise ValueError(f"a key set holds 1..{MAX_KEY_SET} keys")
        if len({k.sort_key() for k in self.keys}) != len(self.keys):
            raise ValueError("a key set lists a (peer, epoch) twice")
        object.__setattr__(self, "_leaves", tuple(cbor.dumps(k.to_cbor()) for k in self.keys))

    def ref(self) -> KeySetRef:
        """The commitment a roster delta carries."""
        return KeySetRef(merkle.root(self._leaves), len(self.keys))

    def encode(self) -> bytes:
        """``CBOR([entry...])``, as the store keeps it."""
        return cbor.dumps([k.to_cbor() for k in self.keys])

    @classmethod
    def decode(cls, data: bytes) -> KeySet:
        """Raises:
        DecodeError: not a sorted list of wrapped keys."""
        raw = read_list(
            cbor.loads(data, max_size=MAX_KEY_SET_BYTES), "key set", max_items=MAX_KEY_SET
        )
        return _read_entries(raw)

    def page(self, first: int, *, max_bytes: int = KSET_PAGE_BYTES) -> dict[str, Any]:
        """The ``ksetR`` body from entry ``first``: ``{"entries": [...], "next": uint | null}``.

        Raises:
            KeySetError: ``first`` outside the set (hint ``"malformed"``).
        """
        if not 0 <= first < len(self.keys):
            raise KeySetError(f"no entry {first} in a set of {len(self.keys)}", hint="malformed")
        entries: list[Any] = []
        size = 0
        index = first
        while index < len(self.keys):
            item_size = len(self._leaves[index])
            if entries and size + item_size > max_bytes:
                break
            entries.append(self.keys[index].to_cbor())
            size += item_size
            index += 1
        return {"entries": entries, "next": index if index < len(self.keys) else None}

    def mine(self, peer: PeerID) -> dict[str, Any]:
        """The ``keysR`` body for ``peer``: its entries (contiguous in the set; the newest
        MAX_MY_KEYS of them), the index of the first and their proofs: ``{"index": uint,
        "entries": [...], "proofs": [[bstr...]...]}``; no entries when the set holds none."""
        me = peer.to_bytes()
        # The newest MAX_MY_KEYS (the new epoch's key is the last of a member's entries).
        indexes = [i for i, k in enumerate(self.keys) if k.peer.to_bytes() == me][-MAX_MY_KEYS:]
        if not indexes:
            return {"index": 0, "entries": [], "proofs": []}
        _root, paths = merkle.proofs(self._leaves)
        return {
            "index": indexes[0],
            "entries": [self.keys[i].to_cbor() for i in indexes],
            "proofs": [list(paths[i]) for i in indexes],
        }


def _read_entries(raw: Sequence[Any]) -> KeySet:
    try:
        keys = [WrappedKey.from_cbor(item) for item in raw]
        keyset = KeySet(tuple(keys))
    except (ValueError, DecodeError) as exc:
        raise KeySetError(f"bad key set: {exc}", hint="malformed") from exc
    if [k.to_cbor() for k in keyset.keys] != list(raw):
        raise KeySetError("key set entries must be sorted", hint="malformed")
    return keyset


def check_key_set(keyset: KeySet, ref: KeySetRef, roster: Roster) -> None:
    """That a whole set is the one a roster delta opening ``roster`` (epoch ``e + 1``) commits
    to, and keeps §3's rules: its root and count; every key for a member of ``roster``; keys of
    the new epoch or earlier ones only (history keys).

    Raises:
        KeySetError: hint ``"malformed"``.
    """
    if keyset.ref() != ref:
        raise KeySetError(
            "the key set does not match the roster's root and count", hint="malformed"
        )
    for key in keyset.keys:
        if key.peer not in roster:
            raise KeySetError("a key wrapped for a non-member", hint="malformed")
        if key.epoch > roster.epoch:
            raise KeySetError(f"a key of epoch {key.epoch} after {roster.epoch}", hint="malformed")


def my_keys_answer(keyset: KeySet, peer: PeerID) -> dict[str, Any]:
    """The ``keysR`` body for ``peer`` (see :meth:`KeySet.mine`)."""
    return keyset.mine(peer)


def read_my_keys(body: Mapping[str, Any], ref: KeySetRef, me: PeerID) -> list[WrappedKey]:
    """The entries of a ``keysR`` answer for ``me``, each checked against ``ref``.

    Raises:
        KeySetError: ``"malformed"`` (undecodable, more than MAX_MY_KEYS, an entry for another
            peer, out of order) or ``"bad proof"`` (an entry that is not in the committed set
            at its place).
    """
    try:
        index = read_uint(body.get("index"), "keys.index")
        raw = read_list(body.get("entries"), "keys.entries", max_items=MAX_MY_KEYS)
        paths = read_list(body.get("proofs"), "keys.proofs", max_items=MAX_MY_KEYS)
        entries = [WrappedKey.from_cbor(item) for item in raw]
    except (DecodeError, ProtocolError, TypeError, ValueError) as exc:
        raise KeySetError(f"undecodable keys answer: {exc}", hint="malformed") from exc
    if len(paths) != len(entries):
        raise KeySetError("one proof per entry", hint="malformed")
    if any(e.peer != me for e in entries):
        raise KeySetError("an entry for another peer", hint="malformed")
    for offset, (item, path) in enumerate(zip(raw, paths, strict=True)):
        if not isinstance(path, list):
            raise KeySetError("a proof is a list of hashes", hint="malformed")
        if not merkle.verify(ref.root, cbor.dumps(item), index + offset, ref.count, path):
            raise KeySetError(f"entry {index + offset} is not in the set", hint="bad proof")
    return entries


@attrs.define
class KeySetFetch:
    """A ratifier's fetch of a whole set, page by page (``kset {group_id, message_hash,
    from}``): give each answer to :meth:`take` until it returns False, then :meth:`result`."""

    ref: KeySetRef
    max_pages: int = MAX_KEY_SET_PAGES
    pages: int = 0
    size: int = 0
    _raw: list[Any] = attrs.field(factory=list)

    @property
    def next_from(self) -> int:
        """The ``from`` of the page to ask for."""
        return len(self._raw)

    def take(self, body: Mapping[str, Any]) -> bool:
        """Add one page; True if another is to be asked for.

        Raises:
            KeySetError: ``"malformed"``, ``"bad page"`` (no entries, more than the count, a
                ``next`` that is not just after them) or ``"over quota"``.
        """
        raw = body.get("entries")
        following = body.get("next")
        if not isinstance(raw, list) or not raw:
            raise KeySetError("a key set page holds entries", hint="bad page")
        first = len(self._raw)
        end = first + len(raw)
        if end > self.ref.count:
            raise KeySetError("more entries than the set's count", hint="bad page")
        if following is not None and (
            isinstance(following, bool) or following != end or end >= self.ref.count
        ):
            raise KeySetError(f"a page ending at {end} says next {following!r}", hint="bad page")
        if following is None and end != self.ref.count:
            raise KeySetError(f"the set ends at {end} of {self.ref.count}", hint="bad page")
        self.pages += 1
        self.size += sum(len(cbor.dumps(item)) for item in raw)
        if self.pages > self.max_pages or self.size > MAX_KEY_SET_BYTES:
            raise KeySetError("the key set exceeds its budget", hint="over quota")
        self._raw.extend(raw)
        return following is not None

    def result(self, roster: Roster) -> KeySet:
        """The whole set, checked against the commitment and ``roster`` (the epoch it opens).

        Raises:
            KeySetError: as :func:`check_key_set`, or entries that do not decode.
        """
        keyset = _read_entries(self._raw)
        check_key_set(keyset, self.ref, roster)
        return keyset
