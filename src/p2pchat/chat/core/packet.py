"""Packets, messages, votes and certificates (specs/chat.md §4–§6) and their CBOR form.

Every class converts to and from the plain CBOR data model (``to_cbor`` / ``from_cbor``);
``from_cbor`` checks every field's type and size and raises :class:`PacketError` (a
:class:`~p2pchat.errors.DecodeError`) on anything else. Hashes and signatures follow §4 and §5:
``message_hash = SHA-256(CBOR(message))``, the author signs
``"p2pchat/msg/v1" || group_id || message_hash`` and a ratifier signs
``"p2pchat/ratify/v1" || group_id || u64(epoch) || message_hash``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

import attrs

from ...errors import DecodeError
from ...identity import KeyPair, PeerID, PublicKey
from . import cbor
from .artifact import ArtifactError, ChunkedRef
from .commitment import CloseCommitment, close_signing_bytes

MAX_PACKET_SIZE: Final = 1024 * 1024
MAX_ARTIFACT_DATA: Final = 768 * 1024
MAX_PARENTS: Final = 16
MAX_TEXT: Final = 256
MAX_VOTES: Final = 256
HASH_SIZE: Final = 32
IV_SIZE: Final = 12
SIGNATURE_SIZE: Final = 64
WRAPPED_KEY_SIZE: Final = 60  # nonce(12) || AES-256-GCM(32-byte content key) || tag(16)
_ABSENT: Final = object()

MSG_DOMAIN: Final = b"p2pchat/msg/v1"
RATIFY_DOMAIN: Final = b"p2pchat/ratify/v1"
EMPTY_HASH: Final = hashlib.sha256(b"").digest()

_TYPE_RE: Final = re.compile(r"^[a-z][a-z0-9_.+-]{0,63}$")


class PacketError(DecodeError):
    """A packet, message, vote or certificate is malformed."""


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    return hashlib.sha256(data).digest()


def u64(value: int) -> bytes:
    """``value`` as 8 bytes big-endian."""
    return value.to_bytes(8, "big")


# -- field readers ------------------------------------------------------------------------------


def _map(
    value: Any, what: str, keys: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PacketError(f"{what} must be a map", hint="malformed")
    present = set(value)
    missing = keys - present
    unknown = present - keys - optional
    if missing:
        raise PacketError(f"{what} lacks {', '.join(sorted(missing))}", hint="malformed")
    if unknown:
        raise PacketError(f"{what} has unknown {', '.join(sorted(unknown))}", hint="malformed")
    return value


def _bytes(value: Any, what: str, *, size: int | None = None, max_size: int = 4096) -> bytes:
    if not isinstance(value, bytes):
        raise PacketError(f"{what} must be a byte string", hint="malformed")
    if size is not None and len(value) != size:
        raise PacketError(f"{what} must be {size} bytes", hint="malformed")
    if len(value) > max_size:
        raise PacketError(f"{what} longer than {max_size} bytes", hint="malformed")
    return value


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise PacketError(f"{what} must be an unsigned integer", hint="malformed")
    return value


def _text(value: Any, what: str, *, max_size: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value.encode()) > max_size:
        raise PacketError(f"{what} must be text of at most {max_size} bytes", hint="malformed")
    return value


def _peer(value: Any, what: str) -> PeerID:
    return PeerID.from_bytes(_bytes(value, what, max_size=128))


# -- the classes ---------------------------------------------------------------------------------


@attrs.frozen
class Headers:
    """``message.headers``: the seed's identifier and response code."""

    identifier: str = ""
    response_code: int = 0

    def to_cbor(self) -> dict[str, Any]:
        return {"identifier": self.identifier, "response_code": self.response_code}

    @classmethod
    def from_cbor(cls, value: Any) -> Headers:
        m = _map(value, "headers", {"identifier", "response_code"})
        return cls(_text(m["identifier"], "identifier"), _uint(m["response_code"], "response_code"))


@attrs.frozen
class Artifact:
    """``message.artifact``: MIME type, ciphertext, and the hashes that bind them (§4)."""

    type: str
    data: bytes
    hash: bytes
    key_hash: bytes
    #: specs/artifacts.md §3: present when the content travels as chunks; ``data`` then holds
    #: the sealed file name.
    chunked: ChunkedRef | None = None

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "data": self.data,
            "hash": self.hash,
            "key_hash": self.key_hash,
        }
        if self.chunked is not None:
            out["chunked"] = self.chunked.to_cbor()
        return out

    @classmethod
    def from_cbor(cls, value: Any) -> Artifact:
        m = _map(value, "artifact", {"type", "data", "hash", "key_hash"}, frozenset({"chunked"}))
        chunked = None
        if "chunked" in m:
            try:
                chunked = ChunkedRef.from_cbor(m["chunked"])
            except ArtifactError as exc:
                raise PacketError(str(exc), hint="malformed") from exc
        return cls(
            _text(m["type"], "artifact.type", max_size=128),
            _bytes(m["data"], "artifact.data", max_size=MAX_ARTIFACT_DATA),
            _bytes(m["hash"], "artifact.hash", size=HASH_SIZE),
            _bytes(m["key_hash"], "artifact.key_hash", size=HASH_SIZE),
            chunked,
        )


@attrs.frozen
class Message:
    """The signed part of a packet (§4)."""

    group_id: bytes
    epoch: int
    message_type: str
    time_stamp: int
    author: PeerID
    ref_hash: bytes | None
    parents: tuple[bytes, ...]
    headers: Headers
    artifact: Artifact

    def to_cbor(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "epoch": self.epoch,
            "message_type": self.message_type,
            "time_stamp": self.time_stamp,
            "author": self.author.to_bytes(),
            "ref_hash": self.ref_hash,
            "parents": list(self.parents),
            "headers": self.headers.to_cbor(),
            "artifact": self.artifact.to_cbor(),
        }

    @classmethod
    def from_cbor(cls, value: Any) -> Message:
        m = _map(
            value,
            "message",
            {
                "group_id",
                "epoch",
                "message_type",
                "time_stamp",
                "author",
                "ref_hash",
                "parents",
                "headers",
                "artifact",
            },
        )
        message_type = _text(m["message_type"], "message_type", max_size=64)
        if not _TYPE_RE.fullmatch(message_type):
            raise PacketError(f"bad message_type {message_type!r}", hint="malformed")
        parents_raw = m["parents"]
        if not isinstance(parents_raw, list) or len(parents_raw) > MAX_PARENTS:
            raise PacketError(f"parents must be a list of <= {MAX_PARENTS}", hint="malformed")
        parents = tuple(_bytes(p, "parent", size=HASH_SIZE) for p in parents_raw)
        if list(parents) != sorted(set(parents)):
            raise PacketError("parents must be sorted and unique", hint="malformed")
        ref = m["ref_hash"]
        return cls(
            group_id=_bytes(m["group_id"], "group_id", size=HASH_SIZE),
            epoch=_uint(m["epoch"], "epoch"),
            message_type=message_type,
            time_stamp=_uint(m["time_stamp"], "time_stamp"),
            author=_peer(m["author"], "author"),
            ref_hash=None if ref is None else _bytes(ref, "ref_hash", size=HASH_SIZE),
            parents=parents,
            headers=Headers.from_cbor(m["headers"]),
            artifact=Artifact.from_cbor(m["artifact"]),
        )

    def encode(self) -> bytes:
        """``CBOR(message)``."""
        return cbor.dumps(self.to_cbor())

    def hash(self) -> bytes:
        """``message_hash = SHA-256(CBOR(message))``."""
        return sha256(self.encode())


@attrs.frozen
class Vote:
    """One ratifier's signature on a message (§6). A vote on a roster message is a *closing*
    vote: it carries the ratifier's :class:`CloseCommitment` and signs it too (§14)."""

    ratifier: PeerID
    sig: bytes
    close: CloseCommitment | None = None

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ratifier": self.ratifier.to_bytes(), "sig": self.sig}
        if self.close is not None:
            out["close"] = self.close.to_cbor()
        return out

    @classmethod
    def from_cbor(cls, value: Any) -> Vote:
        m = _map(value, "vote", {"ratifier", "sig"}, frozenset({"close"}))
        close: CloseCommitment | None = None
        if "close" in m:
            try:
                close = CloseCommitment.from_cbor(m["close"])
            except DecodeError as exc:
                raise PacketError(str(exc), hint="malformed") from exc
        return cls(
            _peer(m["ratifier"], "ratifier"), _bytes(m["sig"], "sig", size=SIGNATURE_SIZE), close
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
        m = _map(value, "certificate", {"epoch", "votes"})
        raw = m["votes"]
        if not isinstance(raw, list) or len(raw) > MAX_VOTES:
            raise PacketError(f"votes must be a list of <= {MAX_VOTES}", hint="malformed")
        votes = tuple(Vote.from_cbor(v) for v in raw)
        keys = [v.ratifier.to_bytes() for v in votes]
        if keys != sorted(set(keys)):
            raise PacketError("votes must be sorted by ratifier and unique", hint="malformed")
        return cls(_uint(m["epoch"], "certificate.epoch"), votes)


@attrs.frozen
class Packet:
    """A message with its hash, wrapped content key, IV, author signature, and certificate."""

    message_hash: bytes
    aes_key: bytes
    iv: bytes
    signature: bytes
    message: Message
    certificate: Certificate | None = None
    #: §17 "Pruned packets": the certified delete of this message, present when its content key
    #: was dropped (``aes_key`` and ``iv`` are then empty); outside the signed part.
    tombstone: Packet | None = None

    @property
    def pruned(self) -> bool:
        """True if this is the pruned form of a deleted message (§17)."""
        return self.tombstone is not None

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_hash": self.message_hash,
            "aes_key": self.aes_key,
            "iv": self.iv,
            "signature": self.signature,
            "message": self.message.to_cbor(),
        }
        if self.certificate is not None:
            out["certificate"] = self.certificate.to_cbor()
        if self.tombstone is not None:
            out["tombstone"] = self.tombstone.to_cbor()
        return out

    @classmethod
    def from_cbor(cls, value: Any) -> Packet:
        m = _map(
            value,
            "packet",
            {"message_hash", "aes_key", "iv", "signature", "message"},
            frozenset({"certificate", "tombstone"}),
        )
        iv = _bytes(m["iv"], "iv", max_size=IV_SIZE)
        aes_key = _bytes(m["aes_key"], "aes_key", max_size=WRAPPED_KEY_SIZE)
        # §4/§7: encrypted content has a 60-byte wrapped key and a 12-byte iv; roster
        # messages have neither. Nothing else, so the two cannot trade bytes.
        if (len(aes_key), len(iv)) not in ((WRAPPED_KEY_SIZE, IV_SIZE), (0, 0)):
            raise PacketError("aes_key/iv must be 60/12 bytes or both empty", hint="malformed")
        cert = m.get("certificate", _ABSENT)
        if cert is None:
            raise PacketError("certificate must be a map when present", hint="malformed")
        tombstone = None
        if "tombstone" in m:
            # §17 "Pruned packets": the certified delete, itself never pruned; the content key
            # is gone, so aes_key and iv are empty.
            if aes_key or iv:
                raise PacketError("a pruned packet has an empty aes_key and iv", hint="malformed")
            tombstone = Packet.from_cbor(m["tombstone"])
            if tombstone.certificate is None or tombstone.tombstone is not None:
                raise PacketError(
                    "a tombstone is a certified packet that is not pruned", hint="malformed"
                )
        return cls(
            message_hash=_bytes(m["message_hash"], "message_hash", size=HASH_SIZE),
            aes_key=aes_key,
            iv=iv,
            signature=_bytes(m["signature"], "signature", size=SIGNATURE_SIZE),
            message=Message.from_cbor(m["message"]),
            certificate=None if cert is _ABSENT else Certificate.from_cbor(cert),
            tombstone=tombstone,
        )

    def encode(self) -> bytes:
        """``CBOR(packet)``.

        Raises:
            ValueError: the packet is larger than 1 MiB.
        """
        data = cbor.dumps(self.to_cbor())
        if len(data) > MAX_PACKET_SIZE:
            raise ValueError(f"packet of {len(data)} bytes exceeds {MAX_PACKET_SIZE}")
        return data

    @classmethod
    def decode(cls, data: bytes) -> Packet:
        """Decode a packet from its CBOR bytes.

        Raises:
            DecodeError: malformed, non-canonical or too large.
        """
        return cls.from_cbor(cbor.loads(data, max_size=MAX_PACKET_SIZE))

    def with_certificate(self, certificate: Certificate) -> Packet:
        """This packet carrying ``certificate``."""
        return attrs.evolve(self, certificate=certificate)

    def check_hashes(self) -> bool:
        """True if ``message_hash``, ``artifact.hash`` and ``artifact.key_hash`` all hold.

        A pruned packet (§17) has no content key left to check ``key_hash`` against: its
        ``message_hash`` and ``artifact.hash`` must hold, and its tombstone is checked apart
        (:func:`~p2pchat.chat.core.prune.check_tombstone`).
        """
        art = self.message.artifact
        return (
            self.message.hash() == self.message_hash
            and sha256(art.data) == art.hash
            and (self.pruned or sha256(self.aes_key + self.iv) == art.key_hash)
        )


# -- signatures ----------------------------------------------------------------------------------


def message_signing_bytes(group_id: bytes, message_hash: bytes) -> bytes:
    """What an author signs (§5)."""
    return MSG_DOMAIN + group_id + message_hash


def vote_signing_bytes(group_id: bytes, epoch: int, message_hash: bytes) -> bytes:
    """What a ratifier signs (§5)."""
    return RATIFY_DOMAIN + group_id + u64(epoch) + message_hash


def sign_message(author: KeyPair, message: Message, aes_key: bytes, iv: bytes) -> Packet:
    """Build the packet of ``message``, signed by ``author`` (who must be ``message.author``).

    Raises:
        ValueError: ``author`` is not the message's author.
    """
    if author.peer_id != message.author:
        raise ValueError("the key pair is not the message's author")
    message_hash = message.hash()
    signature = author.sign(message_signing_bytes(message.group_id, message_hash))
    return Packet(message_hash, aes_key, iv, signature, message)


def verify_author(packet: Packet) -> bool:
    """True if the packet's signature is its author's (the key is read from the peer ID)."""
    key = packet.message.author.extract_public_key()
    if key is None:
        return False
    data = message_signing_bytes(packet.message.group_id, packet.message_hash)
    return key.verify(packet.signature, data)


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


def verify_vote(vote: Vote, group_id: bytes, epoch: int, message_hash: bytes) -> bool:
    """True if ``vote`` is a valid signature by its ratifier on this message and epoch (and,
    for a closing vote, on its commitment)."""
    key: PublicKey | None = vote.ratifier.extract_public_key()
    if key is None:
        return False
    if vote.close is None:
        return key.verify(vote.sig, vote_signing_bytes(group_id, epoch, message_hash))
    return key.verify(vote.sig, close_signing_bytes(group_id, epoch, message_hash, vote.close))


__all__ = [
    "Artifact",
    "Certificate",
    "Headers",
    "Message",
    "Packet",
    "PacketError",
    "Vote",
    "make_vote",
    "message_signing_bytes",
    "sha256",
    "sign_message",
    "u64",
    "verify_author",
    "verify_vote",
    "vote_signing_bytes",
]
