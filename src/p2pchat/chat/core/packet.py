"""Packets, messages, votes and certificates (specs/chat.md §4–§6) and their CBOR form.

Every class converts to and from the plain CBOR data model (``to_cbor`` / ``from_cbor``);
``from_cbor`` checks every field's type and size and raises :class:`PacketError` (a
:class:`~p2pchat.errors.DecodeError`) on anything else. Hashes and signatures follow §4 and §5:
``message_hash = SHA-256(CBOR(message))``, the author signs
``"p2pchat/msg/v1" || group_id || message_hash`` and a ratifier signs
``"p2pchat/ratify/v1" || group_id || u64(epoch) || message_hash``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from typing import Any, Final, TypeAlias

import attrs

from ...errors import DecodeError
from ...identity import KeyPair, PeerID
from ...multibase import b58encode
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
class Packet:
    """A message with its hash, wrapped content key, IV, author signature, and certificate."""

    message_hash: bytes
    aes_key: bytes
    iv: bytes
    signature: bytes
    message: Message
    certificate: Certificate | None = None

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
        return out

    @classmethod
    def from_cbor(cls, value: Any) -> Packet:
        m = _map(
            value,
            "packet",
            {"message_hash", "aes_key", "iv", "signature", "message"},
            frozenset({"certificate"}),
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
        return cls(
            message_hash=_bytes(m["message_hash"], "message_hash", size=HASH_SIZE),
            aes_key=aes_key,
            iv=iv,
            signature=_bytes(m["signature"], "signature", size=SIGNATURE_SIZE),
            message=Message.from_cbor(m["message"]),
            certificate=None if cert is _ABSENT else Certificate.from_cbor(cert),
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
        """True if ``message_hash``, ``artifact.hash`` and ``artifact.key_hash`` all hold."""
        art = self.message.artifact
        return (
            self.message.hash() == self.message_hash
            and sha256(art.data) == art.hash
            and sha256(self.aes_key + self.iv) == art.key_hash
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


# -- JSON view (§4) ------------------------------------------------------------------------------
#
# The JSON view is the CBOR structure with every byte string as standard Base64 (RFC 4648 §4,
# padded) and every peer id as base58btc text. Peer ids are the byte strings under the keys of
# JSON_PEER_KEYS, wherever they occur; that one rule covers every structure of specs/chat.md.
# Reading a view back is strict so that the view of a value is unique: only canonical Base64
# (no whitespace, zero padding bits) and only the canonical base58btc form of a peer id.

#: Keys whose byte strings are peer ids, shown as base58btc text in the JSON view (§4).
JSON_PEER_KEYS: Final = frozenset({"author", "ratifier", "owner", "peer"})
# Base64 text longer than this cannot hold any field of a packet (artifact.data is the largest).
_MAX_BASE64_TEXT: Final = 4 * ((MAX_ARTIFACT_DATA + 2) // 3)


def to_json_view(value: Any) -> Any:
    """The JSON view of a value of the CBOR data model (§4).

    Byte strings become standard Base64 text, except those under a key of
    :data:`JSON_PEER_KEYS`, which become base58btc peer id text; maps and lists are copied,
    other values are kept. The result is what :func:`json.dumps` writes.
    """
    return _view(value, peer=False)


def _view(value: Any, *, peer: bool) -> Any:
    if isinstance(value, bytes):
        return b58encode(value) if peer else base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_view(item, peer=False) for item in value]
    if isinstance(value, dict):
        return {key: _view(item, peer=key in JSON_PEER_KEYS) for key, item in value.items()}
    return value


def packet_to_json(packet: Packet) -> dict[str, Any]:
    """The JSON view of ``packet`` (§4): its CBOR map with byte strings as Base64 and the
    author and vote ratifiers as base58btc peer ids; ``certificate`` only when present."""
    view: dict[str, Any] = to_json_view(packet.to_cbor())
    return view


class _Leaf(enum.Enum):
    BYTES = "bytes"
    OPTIONAL_BYTES = "bytes or null"
    PEER = "peer id"


_Shape: TypeAlias = "_Leaf | dict[str, _Shape] | list[_Shape]"

# Where a packet's JSON view holds byte strings and peer ids; other fields are as in CBOR.
_PACKET_SHAPE: Final[_Shape] = {
    "message_hash": _Leaf.BYTES,
    "aes_key": _Leaf.BYTES,
    "iv": _Leaf.BYTES,
    "signature": _Leaf.BYTES,
    "message": {
        "group_id": _Leaf.BYTES,
        "author": _Leaf.PEER,
        "ref_hash": _Leaf.OPTIONAL_BYTES,
        "parents": [_Leaf.BYTES],
        "artifact": {
            "data": _Leaf.BYTES,
            "hash": _Leaf.BYTES,
            "key_hash": _Leaf.BYTES,
            "chunked": {"root": _Leaf.BYTES},
        },
    },
    "certificate": {
        "votes": [
            {
                "ratifier": _Leaf.PEER,
                "sig": _Leaf.BYTES,
                "close": {"heads": [_Leaf.BYTES], "pending": [_Leaf.BYTES]},
                "batch": {"proof": [_Leaf.BYTES]},
            }
        ]
    },
}


def packet_from_json(value: Any) -> Packet:
    """The packet whose JSON view (:func:`packet_to_json`) is ``value``, e.g. from
    :func:`json.loads`.

    The same checks as :meth:`Packet.from_cbor` apply (its field limits keep every packet
    under 1 MiB). Base64 must be canonical and peer ids base58btc, so that
    ``packet_to_json(packet_from_json(value)) == value``; an absent certificate is an absent
    key, not ``null``.

    Raises:
        PacketError: ``value`` is not the JSON view of a valid packet.
    """
    _check_json(value, 0)
    if isinstance(value, dict) and "certificate" in value and value["certificate"] is None:
        raise PacketError("an absent certificate is an absent key, not null", hint="malformed")
    raw = _from_view(value, _PACKET_SHAPE, "packet")
    try:
        return Packet.from_cbor(raw)
    except PacketError:
        raise
    except DecodeError as exc:  # a peer id that PeerID refused
        raise PacketError(str(exc), hint="malformed") from exc


def _check_json(value: Any, depth: int) -> None:
    """Refuse anything outside the JSON data model, text that is not UTF-8, deep nesting."""
    if depth > cbor.MAX_DEPTH:
        raise PacketError("JSON nested too deeply", hint="malformed")
    if value is None or isinstance(value, bool | int | float):
        return
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PacketError("JSON object keys must be text", hint="malformed")
            _check_text(key)
            _check_json(item, depth + 1)
    else:
        raise PacketError(f"{type(value).__name__} is not a JSON value", hint="malformed")


def _check_text(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:  # lone surrogates, which json.loads lets through
        raise PacketError("JSON text is not valid Unicode", hint="malformed") from exc


def _from_view(value: Any, shape: _Shape, what: str) -> Any:
    """Undo the JSON view where ``shape`` says; values of the wrong kind are passed on for
    :meth:`Packet.from_cbor` to refuse."""
    if isinstance(shape, _Leaf):
        if shape is _Leaf.OPTIONAL_BYTES and value is None:
            return None
        if shape is _Leaf.PEER:
            return _peer_from_text(value, what)
        return _bytes_from_base64(value, what)
    if isinstance(shape, list):
        if not isinstance(value, list):
            return value
        return [_from_view(item, shape[0], what) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: _from_view(item, shape[key], f"{what}.{key}") if key in shape else item
        for key, item in value.items()
    }


def _bytes_from_base64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise PacketError(f"{what} must be Base64 text", hint="malformed")
    if len(value) > _MAX_BASE64_TEXT:
        raise PacketError(f"{what} is too long", hint="malformed")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PacketError(f"{what} is not Base64", hint="malformed") from exc
    if base64.b64encode(raw).decode("ascii") != value:
        raise PacketError(f"{what} is not canonical Base64", hint="malformed")
    return raw


def _peer_from_text(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise PacketError(f"{what} must be peer id text", hint="malformed")
    try:
        peer = PeerID.from_string(value)
    except DecodeError as exc:
        raise PacketError(f"{what} is not a peer id: {exc}", hint="malformed") from exc
    if peer.to_base58() != value:
        raise PacketError(f"{what} must be a base58btc peer id", hint="malformed")
    return peer.to_bytes()
