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

from ...identity import KeyPair, PeerID
from . import cbor
from .artifact import ArtifactError, ChunkedRef
from .certificate import MAX_VOTES as MAX_VOTES
from .certificate import RATIFY_DOMAIN as RATIFY_DOMAIN
from .certificate import Certificate as Certificate
from .certificate import Vote as Vote
from .certificate import make_vote as make_vote
from .certificate import verify_vote as verify_vote
from .certificate import vote_signing_bytes as vote_signing_bytes
from .fields import HASH_SIZE as HASH_SIZE
from .fields import MAX_TEXT as MAX_TEXT
from .fields import SIGNATURE_SIZE as SIGNATURE_SIZE
from .fields import PacketError as PacketError
from .fields import read_bytes as _bytes
from .fields import read_map as _map
from .fields import read_peer as _peer
from .fields import read_text as _text
from .fields import read_uint as _uint
from .fields import sha256 as sha256
from .fields import u64 as u64

MAX_PACKET_SIZE: Final = 1024 * 1024
MAX_ARTIFACT_DATA: Final = 768 * 1024
MAX_PARENTS: Final = 16
IV_SIZE: Final = 12
WRAPPED_KEY_SIZE: Final = 60  # nonce(12) || AES-256-GCM(32-byte content key) || tag(16)
_ABSENT: Final = object()

MSG_DOMAIN: Final = b"p2pchat/msg/v1"
EMPTY_HASH: Final = hashlib.sha256(b"").digest()

_TYPE_RE: Final = re.compile(r"^[a-z][a-z0-9_.+-]{0,63}$")


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
    #: ``encode()``'s bytes once computed (a cache: the fields above are frozen).
    _encoded: bytes | None = attrs.field(
        default=None, init=False, eq=False, hash=False, repr=False, alias="_encoded"
    )

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
        """``CBOR(message)`` (computed once)."""
        if self._encoded is None:
            object.__setattr__(self, "_encoded", cbor.dumps(self.to_cbor()))
        assert self._encoded is not None
        return self._encoded

    def hash(self) -> bytes:
        """``message_hash = SHA-256(CBOR(message))``."""
        return sha256(self.encode())


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
    #: ``encode()``'s bytes once computed, or the bytes ``decode`` read (a cache: the fields
    #: above are frozen, and a decoded packet is canonical, so its bytes are its encoding).
    _encoded: bytes | None = attrs.field(
        default=None, init=False, eq=False, hash=False, repr=False, alias="_encoded"
    )

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
        data = self._encoded
        if data is None:
            data = cbor.dumps(self.to_cbor())
            if len(data) > MAX_PACKET_SIZE:
                raise ValueError(f"packet of {len(data)} bytes exceeds {MAX_PACKET_SIZE}")
            object.__setattr__(self, "_encoded", data)
        return data

    @classmethod
    def decode(cls, data: bytes) -> Packet:
        """Decode a packet from its CBOR bytes.

        Raises:
            DecodeError: malformed, non-canonical or too large.
        """
        raw = bytes(data)
        packet = cls.from_cbor(cbor.loads(raw, max_size=MAX_PACKET_SIZE))
        object.__setattr__(packet, "_encoded", raw)
        return packet

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
