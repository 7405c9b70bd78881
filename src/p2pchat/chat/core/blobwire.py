"""Frames of ``/p2pchat/blob/1.0.0`` (specs/artifacts.md §5), without I/O.

A stream carries the chat's frames (``uvarint(length) || CBOR map``, read with
:class:`~p2pchat.chat.core.wire.FrameReader`) of at most :data:`MAX_FRAME_SIZE` bytes: the
client's :class:`BlobRequest` and the server's :class:`BlobResponse`, matched by ``id``.
Everything a peer can get wrong raises :class:`~p2pchat.chat.core.wire.FrameError`.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from ...errors import LocalProtocolError
from .artifact import HASH_SIZE, MAX_BLOB
from .wire import FrameError, encode_frame

PROTOCOL_ID: Final = "/p2pchat/blob/1.0.0"
MAX_FRAME_SIZE: Final = MAX_BLOB + 1024
ID_LIMIT: Final = 2**32
#: Server: requests of one stream in progress at once; streams per peer; idle seconds.
SERVE_WINDOW: Final = 16
SERVE_STREAMS: Final = 4
IDLE_TIMEOUT: Final = 60.0
#: Client: requests in flight per holder; holders at once; seconds without an answer.
WINDOW: Final = 8
MAX_HOLDERS: Final = 4
STALL_TIMEOUT: Final = 15.0

NOT_HELD: Final = "not held"
BUSY: Final = "busy"
MALFORMED: Final = "malformed"
REFUSALS: Final = frozenset({NOT_HELD, BUSY, MALFORMED})


def _uint_id(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < ID_LIMIT:
        raise FrameError("id must be an unsigned integer below 2^32", hint="malformed")
    return value


def _hash(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise FrameError(f"{what} must be 32 bytes", hint="malformed")
    return value


@attrs.frozen
class BlobRequest:
    """Ask for blob ``blob`` of group ``group_id``."""

    id: int
    group_id: bytes
    blob: bytes

    def encode(self) -> bytes:
        return encode_frame({"id": self.id, "group_id": self.group_id, "blob": self.blob})

    @classmethod
    def from_map(cls, value: Any) -> BlobRequest:
        """Raises: FrameError: not a request."""
        if not isinstance(value, dict) or set(value) != {"id", "group_id", "blob"}:
            raise FrameError("a request is {id, group_id, blob}", hint="malformed")
        return cls(
            _uint_id(value["id"]),
            _hash(value["group_id"], "group_id"),
            _hash(value["blob"], "blob"),
        )


@attrs.frozen
class BlobResponse:
    """The blob (``data``) or a refusal (``refused``), never both."""

    id: int
    data: bytes | None = None
    refused: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.data is None) == (self.refused is None):
            raise LocalProtocolError("a response holds data or a refusal")
        if self.data is not None and len(self.data) > MAX_BLOB:
            raise LocalProtocolError("blob larger than MAX_BLOB")

    def encode(self) -> bytes:
        body: dict[str, Any] = {"id": self.id}
        if self.data is not None:
            body["data"] = self.data
        else:
            body["refused"] = self.refused
        return encode_frame(body)

    @classmethod
    def from_map(cls, value: Any) -> BlobResponse:
        """Raises: FrameError: not a response."""
        if not isinstance(value, dict) or set(value) not in ({"id", "data"}, {"id", "refused"}):
            raise FrameError("a response is {id, data} or {id, refused}", hint="malformed")
        rid = _uint_id(value["id"])
        if "data" in value:
            data = value["data"]
            if not isinstance(data, bytes) or len(data) > MAX_BLOB:
                raise FrameError("data must be a blob of at most MAX_BLOB", hint="malformed")
            return cls(rid, data=data)
        refused = value["refused"]
        if not isinstance(refused, str) or len(refused) > 64:
            raise FrameError("refused must be a short text", hint="malformed")
        return cls(rid, refused=refused)
