"""Votes and certificates (specs/chat.md §5, §6, §14, §21) and their CBOR form.

A vote is a ratifier's Ed25519 signature. A *plain* vote signs one message:
``"p2pchat/ratify/v1" || group_id || u64(epoch) || message_hash``. A *closing* vote (on a roster
message, §14) signs the message and the ratifier's commitment. A *batch* vote (§21) signs a
batch of messages at once: ``"p2pchat/ratify-batch/v1" || group_id || u64(epoch) || u32(size)
|| root``, ``root`` the Merkle root (§19) of the batch's message hashes in batch order; the vote
a certificate holds for one message of the batch carries ``batch = {size, index, proof}``, from
which a member recomputes the root with the message's hash.

Verifying batch signatures is memoised (:class:`BatchSignatures`): the messages of one batch
share one signature per ratifier, so a member verifies it once, not once per message. Only
signatures that verified are remembered, keyed by everything they sign.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final

import attrs

from ...errors import DecodeError
from ...identity import KeyPair, PeerID, PublicKey
from . import merkle
from .commitment import CloseCommitment, close_signing_bytes
from .fields import (
    HASH_SIZE,
    SIGNATURE_SIZE,
    PacketError,
    read_bytes,
    read_map,
    read_peer,
    read_uint,
    u32,
    u64,
)

MAX_VOTES: Final = 256
#: §21: at most this many messages in one batch (so a proof holds at most 6 hashes).
MAX_BATCH: Final = 64
MAX_BATCH_PROOF: Final = 6
RATIFY_DOMAIN: Final = b"p2pchat/ratify/v1"
RATIFY_BATCH_DOMAIN: Final = b"p2pchat/ratify-batch/v1"
#: Verified batch signatures remembered (each entry about 250 bytes).
BATCH_CACHE_SIZE: Final = 4096


@attrs.frozen
class BatchProof:
    """Where a message sits in the batch a vote signed (§21): the batch's ``size``, the
    message's ``index`` in it, and its Merkle inclusion ``proof`` (§19)."""

    size: int
    index: int
    proof: tuple[bytes, ...]

    def to_cbor(self) -> dict[str, Any]:
        return {"size": self.size, "index": self.index, "proof": list(self.proof)}

    @classmethod
    def from_cbor(cls, value: Any) -> BatchProof:
        m = read_map(value, "batch", {"size", "index", "proof"})
        size = read_uint(m["size"], "batch.size")
        index = read_uint(m["index"], "batch.index")
        if not 2 <= size <= MAX_BATCH or index >= size:
            raise PacketError(
                f"batch.size must be 2..{MAX_BATCH} and index below it", hint="malformed"
            )
        raw = m["proof"]
        if not isinstance(raw, list) or len(raw) > MAX_BATCH_PROOF:
            raise PacketError(
                f"batch.proof must be a list of <= {MAX_BATCH_PROOF}", hint="malformed"
            )
        proof = tuple(read_bytes(h, "batch.proof", size=HASH_SIZE) for h in raw)
        return cls(size, index, proof)


@attrs.frozen
class Vote:
    """One ratifier's signature on a message (§6). A vote on a roster message is a *closing*
    vote: it carries the ratifier's :class:`CloseCommitment` and signs it too (§14). A vote
    with ``batch`` is a batch vote (§21): its signature is over a batch of messages."""

    ratifier: PeerID
    sig: bytes
    close: CloseCommitment | None = None
    batch: BatchProof | None = None

    def __attrs_post_init__(self) -> None:
        if self.close is not None and self.batch is not None:
            raise PacketError("a closing vote is never a batch vote", hint="malformed")

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ratifier": self.ratifier.to_bytes(), "sig": self.sig}
        if self.close is not None:
            out["close"] = self.close.to_cbor()
        if self.batch is not None:
            out["batch"] = self.batch.to_cbor()
        return out

    @classmethod
    def from_cbor(cls, value: Any) -> Vote:
        m = read_map(value, "vote", {"ratifier", "sig"}, frozenset({"close", "batch"}))
        close: CloseCommitment | None = None
        if "close" in m:
            try:
                close = CloseCommitment.from_cbor(m["close"])
            except DecodeError as exc:
                raise PacketError(str(exc), hint="malformed") from exc
        batch = BatchProof.from_cbor(m["batch"]) if "batch" in m else None
        return cls(
            read_peer(m["ratifier"], "ratifier"),
            read_bytes(m["sig"], "sig", size=SIGNATURE_SIZE),
            close,
            batch,
        )


@attrs.frozen
class Certificate:
    """A quorum of votes for one message in one epoch (§6)."""

    epoch: int
    votes: tuple[Vote, ...]

    def to_cbor(self) -> dict[str, Any]:
        ordered = sorted(self.votes, key=lambda v: v.ratifier.to_bytes())
        return {"epoch": self.epoch, "votes": [v.to_cbor() for v in ordered]}

    @classmethod
    def from_cbor(cls, value: Any) -> Certificate:
        m = read_map(value, "certificate", {"epoch", "votes"})
        raw = m["votes"]
        if not isinstance(raw, list) or len(raw) > MAX_VOTES:
            raise PacketError(f"votes must be a list of <= {MAX_VOTES}", hint="malformed")
        votes = tuple(Vote.from_cbor(v) for v in raw)
        keys = [v.ratifier.to_bytes() for v in votes]
        if keys != sorted(set(keys)):
            raise PacketError("votes must be sorted by ratifier and unique", hint="malformed")
        return cls(read_uint(m["epoch"], "certificate.epoch"), votes)


# -- what is signed ------------------------------------------------------------------------------


def vote_signing_bytes(group_id: bytes, epoch: int, message_hash: bytes) -> bytes:
    """What a ratifier signs for one message (§5)."""
    return RATIFY_DOMAIN + group_id + u64(epoch) + message_hash


def batch_signing_bytes(group_id: bytes, epoch: int, size: int, root: bytes) -> bytes:
    """What a ratifier signs for a batch of ``size`` messages with Merkle root ``root`` (§21)."""
    return RATIFY_BATCH_DOMAIN + group_id + u64(epoch) + u32(size) + root


def make_vote(
    ratifier: KeyPair,
    group_id: bytes,
    epoch: int,
    message_hash: bytes,
    close: CloseCommitment | None = None,
) -> Vote:
    """``ratifier``'s vote for a message; with ``close``, a closing vote (§14) that signs it."""
    if close is None:
        sig = ratifier.sign(vote_signing_bytes(group_id, epoch, message_hash))
    else:
        sig = ratifier.sign(close_signing_bytes(group_id, epoch, message_hash, close))
    return Vote(ratifier.peer_id, sig, close)


def make_batch_votes(
    ratifier: KeyPair, group_id: bytes, epoch: int, message_hashes: Sequence[bytes]
) -> tuple[Vote, ...]:
    """``ratifier``'s votes for the messages of a batch, in batch order, with one signature
    (§21). A batch of one is a plain vote (§6).

    Raises:
        ValueError: no hashes, or more than :data:`MAX_BATCH`.
    """
    size = len(message_hashes)
    if not 1 <= size <= MAX_BATCH:
        raise ValueError(f"a batch holds 1..{MAX_BATCH} messages, not {size}")
    if size == 1:
        return (make_vote(ratifier, group_id, epoch, message_hashes[0]),)
    root, proofs = merkle.proofs(message_hashes)
    sig = ratifier.sign(batch_signing_bytes(group_id, epoch, size, root))
    me = ratifier.peer_id
    return tuple(Vote(me, sig, batch=BatchProof(size, i, p)) for i, p in enumerate(proofs))


class BatchSignatures:
    """A bounded memory of batch signatures that verified (§21), least recently used first
    out. Keyed by the signer and every byte it signed, so a hit is the very check done
    before."""

    def __init__(self, capacity: int = BATCH_CACHE_SIZE) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
        #: Signature checks made (misses), for figures and tests.
        self.checks = 0

    def verify(self, signer: PeerID, sig: bytes, data: bytes) -> bool:
        """Whether ``sig`` is ``signer``'s signature of ``data`` (its key is read from the peer
        id only when not remembered)."""
        entry = (signer.to_bytes(), sig, data)
        if entry in self._seen:
            self._seen.move_to_end(entry)
            return True
        self.checks += 1
        key = signer.extract_public_key()
        if key is None or not key.verify(sig, data):
            return False
        self._seen[entry] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True

    def clear(self) -> None:
        self._seen.clear()


#: The process's memory of verified batch signatures.
VERIFIED: Final = BatchSignatures()


def batch_root(vote: Vote, message_hash: bytes) -> bytes | None:
    """The root a batch vote's proof gives for ``message_hash``, or None if the proof is
    malformed for its index and size."""
    batch = vote.batch
    if batch is None:
        return None
    return merkle.root_from_path(message_hash, batch.index, batch.size, batch.proof)


def verify_vote(vote: Vote, group_id: bytes, epoch: int, message_hash: bytes) -> bool:
    """True if ``vote`` is a valid signature by its ratifier on this message and epoch (for a
    closing vote, on its commitment too; for a batch vote, on the batch that its proof places
    the message in)."""
    if vote.batch is not None:
        root = batch_root(vote, message_hash)
        if root is None:
            return False
        data = batch_signing_bytes(group_id, epoch, vote.batch.size, root)
        return VERIFIED.verify(vote.ratifier, vote.sig, data)
    key: PublicKey | None = vote.ratifier.extract_public_key()
    if key is None:
        return False
    if vote.close is None:
        return key.verify(vote.sig, vote_signing_bytes(group_id, epoch, message_hash))
    return key.verify(vote.sig, close_signing_bytes(group_id, epoch, message_hash, vote.close))
