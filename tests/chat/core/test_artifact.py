"""Chunked artifacts (specs/artifacts.md §1–§3, §7): the vectors, and truncation, reordering,
splicing and lying manifests detected."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any, Final

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from p2pchat.chat.core import artifact, cbor
from p2pchat.chat.core.artifact import (
    CHUNK_SIZE,
    ArtifactError,
    ArtifactLayout,
    ArtifactOpener,
    ArtifactSealer,
    ChunkedRef,
)
from p2pchat.chat.core.packet import Artifact, PacketError
from p2pchat.errors import LocalProtocolError

VECTORS: Final = Path(__file__).parents[3] / "specs" / "vectors" / "artifacts" / "stream.json"


def _vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def _pattern(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def _seal(key: bytes, plaintext: bytes) -> tuple[list[bytes], dict[bytes, bytes], ChunkedRef]:
    """The sealed chunks in order, every blob by id, and the ref."""
    sealer = ArtifactSealer(key, len(plaintext))
    chunks: list[bytes] = []
    blobs: dict[bytes, bytes] = {}
    for index in range(sealer.chunks):
        made = sealer.seal(plaintext[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE])
        chunks.append(made[0][1])
        blobs.update(made)
    (root, manifest), ref = sealer.finish()
    blobs[root] = manifest
    return chunks, blobs, ref


def _hkdf(ikm: bytes, info: bytes) -> bytes:
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


@pytest.mark.parametrize("case", _vectors()["cases"], ids=lambda c: c["name"])
def test_vectors(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["content_key"])
    assert _vectors()["chunk_size"] == CHUNK_SIZE
    # The chunk key is plain RFC 5869 HKDF-SHA256 (checked with hmac, not the library used).
    chunk_key = _hkdf(key, b"p2pchat/artifact-chunks/v1")
    assert chunk_key.hex() == case["chunk_key"] == artifact.derive_chunk_key(key).hex()
    plaintext = _pattern(case["size"])
    chunks, blobs, ref = _seal(key, plaintext)
    assert len(chunks) == len(case["chunks"])
    aead = AESGCM(chunk_key)
    for sealed, expected in zip(chunks, case["chunks"], strict=True):
        i = expected["index"]
        final = i == len(chunks) - 1
        nonce = i.to_bytes(11, "big") + bytes([final])
        assert nonce.hex() == expected["nonce"]
        piece = plaintext[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]
        assert aead.encrypt(nonce, piece, None) == sealed
        assert len(sealed) == expected["length"]
        assert sealed[:16].hex() == expected["head"]
        assert sealed[-16:].hex() == expected["tag"]
        assert hashlib.sha256(sealed).hexdigest() == expected["id"]
    page = b"".join(bytes.fromhex(c["id"]) for c in case["chunks"])
    assert [hashlib.sha256(page).hexdigest()] == case["page_ids"]
    manifest = bytes.fromhex(case["manifest"])
    assert manifest == case["size"].to_bytes(8, "big") + len(chunks).to_bytes(4, "big") + b"".join(
        bytes.fromhex(p) for p in case["page_ids"]
    )
    assert hashlib.sha256(manifest).hexdigest() == case["root"] == ref.root.hex()
    assert blobs[ref.root] == manifest
    assert ref.to_cbor() == {
        "root": bytes.fromhex(case["artifact_chunked"]["root"]),
        "size": case["artifact_chunked"]["size"],
        "chunks": case["artifact_chunked"]["chunks"],
    }


def test_the_spec_quotes_the_vectors() -> None:
    spec = (VECTORS.parents[2] / "artifacts.md").read_text()
    case = _vectors()["cases"][0]
    for value in (case["chunk_key"], case["root"], *case["page_ids"]):
        assert value in spec
    for chunk in case["chunks"]:
        assert chunk["id"] in spec
        assert chunk["nonce"] in spec


def _read_all(key: bytes, ref: ChunkedRef, blobs: dict[bytes, bytes], order: list[int]) -> bytes:
    layout = ArtifactLayout.from_manifest(ref, blobs[ref.root])
    ids = [cid for p in range(ref.pages) for cid in layout.read_page(p, blobs[layout.page_ids[p]])]
    opener = ArtifactOpener(key, ref)
    return b"".join(opener.open(i, blobs[ids[j]]) for i, j in enumerate(order))


def test_round_trip_across_chunk_sizes() -> None:
    key = bytes(range(32))
    for size in (0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7):
        plaintext = _pattern(size)
        _, blobs, ref = _seal(key, plaintext)
        assert ref.chunks == max(1, -(-size // CHUNK_SIZE))
        assert _read_all(key, ref, blobs, list(range(ref.chunks))) == plaintext
        assert all(len(b) <= artifact.MAX_BLOB for b in blobs.values())


def test_reordered_chunks_do_not_decrypt() -> None:
    key = bytes(range(32))
    chunks, _, ref = _seal(key, _pattern(3 * CHUNK_SIZE))
    opener = ArtifactOpener(key, ref)
    with pytest.raises(ArtifactError, match="chunk 0 does not decrypt"):
        opener.open(0, chunks[1])
    with pytest.raises(ArtifactError):
        opener.open(1, chunks[0])


def test_truncated_stream_is_detected() -> None:
    """Cutting the artifact after chunk 1 of 3: chunk 1 was not sealed as final."""
    key = bytes(range(32))
    plaintext = _pattern(3 * CHUNK_SIZE)
    chunks, _, ref = _seal(key, plaintext)
    short = ChunkedRef(ref.root, 2 * CHUNK_SIZE, 2)
    with pytest.raises(ArtifactError, match="chunk 1 does not decrypt"):
        ArtifactOpener(key, short).open(1, chunks[1])
    # and the manifest of the full artifact does not match a root claiming two chunks
    _, blobs, _ = _seal(key, plaintext)
    with pytest.raises(ArtifactError):
        ArtifactLayout.from_manifest(short, blobs[ref.root])


def test_chunk_spliced_from_another_artifact_does_not_decrypt() -> None:
    plaintext = _pattern(2 * CHUNK_SIZE)
    chunks_a, _, ref_a = _seal(bytes(range(32)), plaintext)
    chunks_b, _, _ = _seal(bytes(32), plaintext)
    opener = ArtifactOpener(bytes(range(32)), ref_a)
    assert opener.open(0, chunks_a[0]) == plaintext[:CHUNK_SIZE]
    with pytest.raises(ArtifactError):
        opener.open(0, chunks_b[0])
    with pytest.raises(ArtifactError):
        opener.open(1, chunks_b[1])


def test_tampered_chunk_does_not_decrypt() -> None:
    chunks, _, ref = _seal(bytes(range(32)), _pattern(100))
    bad = bytearray(chunks[0])
    bad[5] ^= 1
    with pytest.raises(ArtifactError):
        ArtifactOpener(bytes(range(32)), ref).open(0, bytes(bad))


def test_manifest_that_lies_about_size_or_count_is_refused() -> None:
    key = bytes(range(32))
    _, blobs, ref = _seal(key, _pattern(2 * CHUNK_SIZE + 5))
    manifest = blobs[ref.root]
    # A manifest claiming another size, named by its own (honest) hash: root matches, size not.
    lying = (2 * CHUNK_SIZE + 4).to_bytes(8, "big") + manifest[8:]
    with pytest.raises(ArtifactError, match="differs from the message"):
        ArtifactLayout.from_manifest(ChunkedRef(artifact.sha256(lying), ref.size, 3), lying)
    lying_count = manifest[:8] + (4).to_bytes(4, "big") + manifest[12:]
    with pytest.raises(ArtifactError):
        ArtifactLayout.from_manifest(
            ChunkedRef(artifact.sha256(lying_count), ref.size, 3), lying_count
        )
    with pytest.raises(ArtifactError, match="root"):
        ArtifactLayout.from_manifest(ref, manifest + b"\x00")


def test_a_message_whose_size_and_count_disagree_is_malformed() -> None:
    with pytest.raises(ArtifactError):
        ChunkedRef(bytes(32), CHUNK_SIZE + 1, 1)
    with pytest.raises(ArtifactError):
        ChunkedRef(bytes(32), artifact.MAX_SIZE + 1, artifact.MAX_CHUNKS + 1)
    base = {"type": "a/b", "data": b"", "hash": bytes(32), "key_hash": bytes(32)}
    bad: object
    for bad in (
        {"root": bytes(32), "size": 10, "chunks": 2},
        {"root": bytes(31), "size": 10, "chunks": 1},
        {"root": bytes(32), "size": -1, "chunks": 1},
        {"root": bytes(32), "size": 10},
        [],
    ):
        with pytest.raises(PacketError):
            Artifact.from_cbor({**base, "chunked": bad})


def test_page_that_is_not_the_manifests_is_refused() -> None:
    key = bytes(range(32))
    _, blobs, ref = _seal(key, _pattern(2 * CHUNK_SIZE))
    layout = ArtifactLayout.from_manifest(ref, blobs[ref.root])
    page = blobs[layout.page_ids[0]]
    with pytest.raises(ArtifactError, match="page 0"):
        layout.read_page(0, page[32:] + page[:32])
    assert layout.chunk_length(1) == CHUNK_SIZE + 16


def test_inline_artifact_encoding_is_unchanged_and_chunked_round_trips() -> None:
    inline = Artifact("text/plain", b"x", bytes(32), bytes(32))
    assert set(inline.to_cbor()) == {"type", "data", "hash", "key_hash"}
    ref = ChunkedRef(bytes(32), 5 * CHUNK_SIZE, 5)
    chunked = Artifact("video/mp4", b"x", bytes(32), bytes(32), ref)
    assert Artifact.from_cbor(cbor.loads(cbor.dumps(chunked.to_cbor()), max_size=4096)) == chunked


def test_sealer_refuses_a_file_that_changed_size() -> None:
    sealer = ArtifactSealer(bytes(32), CHUNK_SIZE + 10)
    with pytest.raises(LocalProtocolError):
        sealer.seal(b"short")
    sealer.seal(bytes(CHUNK_SIZE))
    with pytest.raises(LocalProtocolError):
        sealer.finish()
    sealer.seal(bytes(10))
    with pytest.raises(LocalProtocolError):
        sealer.seal(b"")


def test_sealer_emits_a_page_every_8192_chunks() -> None:
    """Memory stays flat: a page leaves the sealer as soon as it is full."""
    size = artifact.HASHES_PER_PAGE * CHUNK_SIZE + 1
    ref = ChunkedRef(bytes(32), size, artifact.HASHES_PER_PAGE + 1)
    assert ref.pages == 2
    sealer = ArtifactSealer(bytes(32), 8 * CHUNK_SIZE)
    made = [sealer.seal(bytes(CHUNK_SIZE)) for _ in range(8)]
    assert [len(m) for m in made] == [1] * 7 + [2]


def test_file_info() -> None:
    assert artifact.decode_file_info(artifact.encode_file_info("photo.png")) == "photo.png"
    with pytest.raises(ArtifactError):
        artifact.decode_file_info(cbor.dumps({"name": 3}))
    with pytest.raises(LocalProtocolError):
        artifact.encode_file_info("x" * 300)
