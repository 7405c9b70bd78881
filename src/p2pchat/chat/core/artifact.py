"""Chunked artifacts: STREAM encryption, content-addressed chunks and their manifest
(specs/artifacts.md). Sans-IO: bytes in, bytes out; no clock, no files.

Theory of operation
-------------------
A file does not travel in its message (inline content is at most :data:`INLINE_MAX`). Its
plaintext is cut into chunks of :data:`CHUNK_SIZE` bytes (the last one shorter, an empty
artifact one empty chunk); chunk ``i`` is sealed with AES-256-GCM under the artifact's **chunk
key** (HKDF of the message's content key, so one content key still encrypts one thing per key)
with the nonce ``u88(i) || final`` of the STREAM construction (age, C2SP chunked encryption): a
reordered chunk fails its tag because its index is in the nonce, a truncated artifact fails
because its last chunk held was not sealed as final, and a chunk spliced in from another
artifact fails because the key differs.

Each sealed chunk is named by ``SHA-256(ciphertext)``. The chunk ids, in order, fill **pages**
of :data:`HASHES_PER_PAGE` ids; the **manifest** is ``u64(size) || u32(chunks) || page ids``
and the **root** is ``SHA-256(manifest)``. The message's artifact carries ``root``, ``size``
and ``chunks`` (:class:`ChunkedRef`), so a receiver that holds the message verifies the
manifest against the root, each page against its id in the manifest and each chunk against its
id in its page, each as it arrives, before it decrypts anything. Chunks, pages and the manifest
are all **blobs**: byte strings of at most :data:`MAX_BLOB` bytes named by their SHA-256,
which is all the transfer protocol moves.

:class:`ArtifactSealer` makes the blobs of an artifact from its plaintext in chunk-sized pieces
and holds at most one page of ids (plus the page ids) however large the artifact, so memory
stays flat. :class:`ArtifactLayout` says what a verified manifest and page promise.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ...errors import DecodeError, LocalProtocolError, RemoteProtocolError
from . import cbor

# specs/artifacts.md §1: sizes and limits.
CHUNK_SIZE: Final = 256 * 1024
TAG_SIZE: Final = 16
HASH_SIZE: Final = 32
HASHES_PER_PAGE: Final = 8192
PAGE_SIZE: Final = HASHES_PER_PAGE * HASH_SIZE
MAX_CHUNKS: Final = 2**24
MAX_PAGES: Final = MAX_CHUNKS // HASHES_PER_PAGE
MAX_SIZE: Final = MAX_CHUNKS * CHUNK_SIZE
MANIFEST_HEADER: Final = 12
MAX_MANIFEST: Final = MANIFEST_HEADER + MAX_PAGES * HASH_SIZE
MAX_BLOB: Final = CHUNK_SIZE + TAG_SIZE
#: The most content a message carries inline (specs/artifacts.md §1, specs/chat.md §7): 768 KiB
#: of ciphertext less the 16-byte tag. A file sent as a file always travels chunked.
INLINE_MAX: Final = 768 * 1024 - TAG_SIZE
#: The longest original file name an artifact carries (UTF-8 bytes).
MAX_NAME: Final = 255

# specs/artifacts.md §2: the HKDF info of the chunk key.
CHUNK_KEY_INFO: Final = b"p2pchat/artifact-chunks/v1"
NONCE_SIZE: Final = 12
CONTENT_KEY_SIZE: Final = 32
_COUNTER_SIZE: Final = 11


class ArtifactError(RemoteProtocolError):
    """A chunk, page or manifest does not verify or does not decrypt: a holder served garbage,
    or a message's artifact lies about its size or chunk count."""


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    """SHA-256 of ``data``: the id of a blob."""
    return hashlib.sha256(data).digest()


# -- layout ----------------------------------------------------------------------------------


def chunk_count(size: int) -> int:
    """The number of chunks of an artifact of ``size`` bytes (an empty one has one)."""
    return max(1, -(-size // CHUNK_SIZE))


def page_count(chunks: int) -> int:
    """The number of manifest pages that hold ``chunks`` chunk ids."""
    return -(-chunks // HASHES_PER_PAGE)


def chunk_plain_size(size: int, index: int) -> int:
    """The plaintext length of chunk ``index`` of an artifact of ``size`` bytes."""
    return min(CHUNK_SIZE, size - index * CHUNK_SIZE)


@attrs.frozen
class ChunkedRef:
    """What a message's artifact says of its chunks (specs/artifacts.md §3): the manifest's
    root, the plaintext size and the chunk count, which must agree."""

    root: bytes
    size: int
    chunks: int

    def __attrs_post_init__(self) -> None:
        if len(self.root) != HASH_SIZE:
            raise ArtifactError("artifact root must be 32 bytes", hint="malformed")
        if not 0 <= self.size <= MAX_SIZE:
            raise ArtifactError(f"artifact size must be at most {MAX_SIZE}", hint="malformed")
        if self.chunks != chunk_count(self.size):
            raise ArtifactError(
                f"{self.size} bytes make {chunk_count(self.size)} chunks, not {self.chunks}",
                hint="malformed",
            )

    @property
    def pages(self) -> int:
        return page_count(self.chunks)

    def to_cbor(self) -> dict[str, Any]:
        return {"root": self.root, "size": self.size, "chunks": self.chunks}

    @classmethod
    def from_cbor(cls, value: Any) -> ChunkedRef:
        """Read the ``chunked`` map of an artifact.

        Raises:
            ArtifactError: not a map of exactly these keys, or size and count disagree.
        """
        if not isinstance(value, dict) or set(value) != {"root", "size", "chunks"}:
            raise ArtifactError("chunked must be a map of root, size, chunks", hint="malformed")
        root, size, chunks = value["root"], value["size"], value["chunks"]
        if not isinstance(root, bytes):
            raise ArtifactError("chunked.root must be a byte string", hint="malformed")
        for what, number in (("size", size), ("chunks", chunks)):
            if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                raise ArtifactError(f"chunked.{what} must be an unsigned integer", hint="malformed")
        return cls(root, size, chunks)


@attrs.frozen
class ArtifactLayout:
    """A verified manifest: the page ids of an artifact, and how long each blob must be."""

    ref: ChunkedRef
    page_ids: tuple[bytes, ...]

    @classmethod
    def from_manifest(cls, ref: ChunkedRef, manifest: bytes) -> ArtifactLayout:
        """Check ``manifest`` against ``ref`` (root, size, count) and read its page ids.

        Raises:
            ArtifactError: the manifest is not the one ``ref.root`` names, or its size or count
                differ from ``ref``'s.
        """
        if sha256(manifest) != ref.root:
            raise ArtifactError("manifest does not match the artifact's root", hint="bad hash")
        expected = MANIFEST_HEADER + ref.pages * HASH_SIZE
        if len(manifest) != expected:
            raise ArtifactError("manifest has the wrong length", hint="malformed")
        size = int.from_bytes(manifest[:8], "big")
        chunks = int.from_bytes(manifest[8:12], "big")
        if (size, chunks) != (ref.size, ref.chunks):
            raise ArtifactError(
                "manifest's size or chunk count differs from the message's", hint="malformed"
            )
        body = manifest[MANIFEST_HEADER:]
        ids = tuple(body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE))
        return cls(ref, ids)

    def page_length(self, page: int) -> int:
        """The byte length of page ``page``."""
        first = page * HASHES_PER_PAGE
        return min(HASHES_PER_PAGE, self.ref.chunks - first) * HASH_SIZE

    def read_page(self, page: int, data: bytes) -> tuple[bytes, ...]:
        """The chunk ids of page ``page`` from its bytes ``data``.

        Raises:
            ArtifactError: ``data`` is not the page the manifest names.
        """
        if sha256(data) != self.page_ids[page] or len(data) != self.page_length(page):
            raise ArtifactError(f"page {page} does not match the manifest", hint="bad hash")
        return tuple(data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE))

    def chunk_length(self, index: int) -> int:
        """The sealed length of chunk ``index`` (plaintext plus the tag)."""
        return chunk_plain_size(self.ref.size, index) + TAG_SIZE


def encode_manifest(size: int, page_ids: list[bytes] | tuple[bytes, ...]) -> bytes:
    """``u64(size) || u32(chunks) || page ids``."""
    return size.to_bytes(8, "big") + chunk_count(size).to_bytes(4, "big") + b"".join(page_ids)


# -- STREAM --------------------------------------------------------------------------------------


def derive_chunk_key(content_key: bytes) -> bytes:
    """The chunk key of an artifact: HKDF-SHA256 of the message's content key, empty salt,
    info ``"p2pchat/artifact-chunks/v1"``, 32 bytes (specs/artifacts.md §2)."""
    if len(content_key) != CONTENT_KEY_SIZE:
        raise LocalProtocolError("content key must be 32 bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=CHUNK_KEY_INFO)
    return hkdf.derive(content_key)


def chunk_nonce(index: int, final: bool) -> bytes:
    """The STREAM nonce of chunk ``index``: ``u88(index) || (0x01 if final else 0x00)``."""
    if not 0 <= index < MAX_CHUNKS:
        raise LocalProtocolError("chunk index out of range")
    return index.to_bytes(_COUNTER_SIZE, "big") + (b"\x01" if final else b"\x00")


def seal_chunk(aead: AESGCM, index: int, final: bool, plaintext: bytes) -> bytes:
    """Chunk ``index`` sealed under the chunk key (``aead``); AAD empty."""
    return aead.encrypt(chunk_nonce(index, final), plaintext, None)


def open_chunk(aead: AESGCM, index: int, final: bool, sealed: bytes) -> bytes:
    """The plaintext of sealed chunk ``index``.

    Raises:
        ArtifactError: it was not sealed as chunk ``index`` (with that final flag) of this
            artifact: tampered, reordered, truncated or spliced from another artifact.
    """
    try:
        return aead.decrypt(chunk_nonce(index, final), sealed, None)
    except InvalidTag as exc:
        raise ArtifactError(f"chunk {index} does not decrypt", hint="cannot decrypt") from exc


# -- making and reading an artifact ------------------------------------------------------------


class ArtifactSealer:
    """Seal an artifact of ``size`` bytes chunk by chunk, emitting its blobs as they are made.

    Feed :meth:`seal` the plaintext in order, :data:`CHUNK_SIZE` bytes a call (the last call
    shorter; one empty call for an empty artifact); each call returns the blobs to store:
    ``(id, bytes)`` of the chunk, then of its page when the chunk filled one.
    :meth:`finish` returns the manifest blob and the :class:`ChunkedRef` for the message.
    """

    def __init__(self, content_key: bytes, size: int) -> None:
        if not 0 <= size <= MAX_SIZE:
            raise LocalProtocolError(
                f"an artifact holds at most {MAX_SIZE} bytes", hint="too large"
            )
        self.size = size
        self.chunks = chunk_count(size)
        self._aead = AESGCM(derive_chunk_key(content_key))
        self._index = 0
        self._page: list[bytes] = []
        self._page_ids: list[bytes] = []

    def seal(self, plaintext: bytes) -> list[tuple[bytes, bytes]]:
        """The blobs of the next chunk.

        Raises:
            LocalProtocolError: more chunks than ``size`` makes, or a chunk of the wrong length
                (the file changed while it was read).
        """
        index = self._index
        if index >= self.chunks:
            raise LocalProtocolError("more chunks than the artifact's size", hint="size changed")
        if len(plaintext) != chunk_plain_size(self.size, index):
            raise LocalProtocolError(f"chunk {index} has the wrong length", hint="size changed")
        sealed = seal_chunk(self._aead, index, index == self.chunks - 1, plaintext)
        chunk_id = sha256(sealed)
        self._index += 1
        self._page.append(chunk_id)
        out = [(chunk_id, sealed)]
        if len(self._page) == HASHES_PER_PAGE or self._index == self.chunks:
            page = b"".join(self._page)
            page_id = sha256(page)
            self._page_ids.append(page_id)
            self._page = []
            out.append((page_id, page))
        return out

    def finish(self) -> tuple[tuple[bytes, bytes], ChunkedRef]:
        """The manifest blob ``(root, bytes)`` and the message's :class:`ChunkedRef`.

        Raises:
            LocalProtocolError: not every chunk was sealed.
        """
        if self._index != self.chunks:
            raise LocalProtocolError("the artifact is not complete", hint="size changed")
        manifest = encode_manifest(self.size, self._page_ids)
        root = sha256(manifest)
        return (root, manifest), ChunkedRef(root, self.size, self.chunks)


class ArtifactOpener:
    """Decrypt the chunks of an artifact, given its chunk key and its :class:`ChunkedRef`."""

    def __init__(self, content_key: bytes, ref: ChunkedRef) -> None:
        self.ref = ref
        self._aead = AESGCM(derive_chunk_key(content_key))

    def open(self, index: int, sealed: bytes) -> bytes:
        """The plaintext of chunk ``index``.

        Raises:
            ArtifactError: as :func:`open_chunk`, or a plaintext of the wrong length.
        """
        if not 0 <= index < self.ref.chunks:
            raise ArtifactError(f"no chunk {index} in this artifact", hint="malformed")
        plain = open_chunk(self._aead, index, index == self.ref.chunks - 1, sealed)
        if len(plain) != chunk_plain_size(self.ref.size, index):
            raise ArtifactError(f"chunk {index} has the wrong length", hint="malformed")
        return plain


# -- the file name, sealed in artifact.data ------------------------------------------------------


def encode_file_info(name: str) -> bytes:
    """The plaintext of a chunked artifact's ``data``: CBOR ``{"name": tstr}``.

    Raises:
        LocalProtocolError: the name is longer than :data:`MAX_NAME` bytes.
    """
    if len(name.encode()) > MAX_NAME:
        raise LocalProtocolError(f"file name longer than {MAX_NAME} bytes")
    return cbor.dumps({"name": name})


def decode_file_info(plaintext: bytes) -> str:
    """The file name from a chunked artifact's decrypted ``data``.

    Raises:
        ArtifactError: not the CBOR map of :func:`encode_file_info`.
    """
    try:
        value = cbor.loads(plaintext, max_size=MAX_NAME + 64)
    except DecodeError as exc:
        raise ArtifactError(f"bad file info: {exc}", hint="malformed") from exc
    if not isinstance(value, dict) or set(value) != {"name"} or not isinstance(value["name"], str):
        raise ArtifactError("file info must be {name: text}", hint="malformed")
    return value["name"]
