"""The JSON view of packets (specs/chat.md §4), for humans and tools.

The JSON view is the CBOR structure with every byte string as standard Base64 (RFC 4648 §4,
padded) and every peer id as base58btc text. Peer ids are the byte strings under the keys of
:data:`JSON_PEER_KEYS`, wherever they occur; that one rule covers every structure of
specs/chat.md. Reading a view back is strict so that the view of a value is unique: only
canonical Base64 (no whitespace, zero padding bits) and only the canonical base58btc form of a
peer id.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Any, Final, TypeAlias

from ...errors import DecodeError
from ...identity import PeerID
from ...multibase import b58encode
from . import cbor
from .packet import MAX_ARTIFACT_DATA, Packet, PacketError

__all__ = ["JSON_PEER_KEYS", "packet_from_json", "packet_to_json", "to_json_view"]


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
# §17: a pruned packet carries its tombstone, a whole packet of the same shape.
assert isinstance(_PACKET_SHAPE, dict)
_PACKET_SHAPE["tombstone"] = dict(_PACKET_SHAPE)


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
