"""The closing commitment a ratifier's vote on a roster change carries (specs/chat.md §14).

A vote for the roster message that closes epoch ``e`` (and opens ``e + 1``) signs, besides the
message hash, what this ratifier had voted for in ``e``: its certified DAG heads and the hashes
of the messages it voted for but does not hold certified. Members later accept a message of a
closed epoch only if some counted vote of the closing certificate committed to it (listed it as
pending, or as a head it descends from). Since hashes bind contents and parents, the set of
messages a closed epoch can ever hold is fixed when its ratifiers close it.

Only data, bounds and the bytes that are signed live here (no packet types: ``packet.py``
imports this module).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import attrs

from ...errors import DecodeError
from . import cbor

#: §14: the domain of a closing vote's signature.
CLOSE_DOMAIN: Final = b"p2pchat/close/v1"
#: §14: at most this many heads in one commitment.
MAX_CLOSE_HEADS: Final = 64
#: §14: at most this many pending hashes in one commitment.
MAX_CLOSE_PENDING: Final = 128
_HASH_SIZE: Final = 32


class CommitmentError(DecodeError):
    """A closing commitment is malformed."""


def _hashes(value: Any, what: str, limit: int) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise CommitmentError(f"close.{what} must be a list of <= {limit}", hint="malformed")
    if not all(isinstance(h, bytes) and len(h) == _HASH_SIZE for h in value):
        raise CommitmentError(f"close.{what} must hold 32-byte hashes", hint="malformed")
    if value != sorted(set(value)):
        raise CommitmentError(f"close.{what} must be sorted and unique", hint="malformed")
    return tuple(value)


@attrs.frozen
class CloseCommitment:
    """What a ratifier had voted for in the epoch it closes: its certified DAG heads (every
    message it holds certified is one of them or an ancestor) and the messages it voted for
    without holding them certified. Both sorted, unique, bounded.

    Raises:
        ValueError: a list is unsorted, holds duplicates or exceeds its bound.
    """

    heads: tuple[bytes, ...] = ()
    pending: tuple[bytes, ...] = ()

    def __attrs_post_init__(self) -> None:
        for what, hashes, limit in (
            ("heads", self.heads, MAX_CLOSE_HEADS),
            ("pending", self.pending, MAX_CLOSE_PENDING),
        ):
            if list(hashes) != sorted(set(hashes)) or len(hashes) > limit:
                raise ValueError(f"close.{what}: sorted, unique, at most {limit}")

    def to_cbor(self) -> dict[str, Any]:
        return {"heads": list(self.heads), "pending": list(self.pending)}

    @classmethod
    def from_cbor(cls, value: Any) -> CloseCommitment:
        """Raises:
        CommitmentError: not a map of exactly ``heads`` and ``pending`` as specified."""
        if not isinstance(value, dict) or set(value) != {"heads", "pending"}:
            raise CommitmentError("close must be {heads, pending}", hint="malformed")
        return cls(
            _hashes(value["heads"], "heads", MAX_CLOSE_HEADS),
            _hashes(value["pending"], "pending", MAX_CLOSE_PENDING),
        )

    def digest(self) -> bytes:
        """SHA-256 of the commitment's CBOR (what the vote signs)."""
        return hashlib.sha256(cbor.dumps(self.to_cbor())).digest()

    def hashes(self) -> frozenset[bytes]:
        """Every hash named (heads and pending)."""
        return frozenset(self.heads) | frozenset(self.pending)


def close_signing_bytes(
    group_id: bytes, epoch: int, message_hash: bytes, commitment: CloseCommitment
) -> bytes:
    """What a closing vote signs (§5, §14):
    ``"p2pchat/close/v1" || group_id || u64(epoch) || message_hash || SHA-256(CBOR(close))``."""
    return CLOSE_DOMAIN + group_id + epoch.to_bytes(8, "big") + message_hash + commitment.digest()
