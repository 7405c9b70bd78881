"""Write specs/vectors/artifacts/stream.json, the chunked-artifact vectors of specs/artifacts.md §6.

    python tools/gen_artifact_vectors.py [--check]

With ``--check`` it compares a regeneration with the committed file and exits 1 if they differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from p2pchat.chat.core import artifact

OUT = Path(__file__).resolve().parent.parent / "specs" / "vectors" / "artifacts" / "stream.json"


def pattern(size: int) -> bytes:
    """The vectors' plaintext: byte ``i`` is ``i mod 251``."""
    return bytes(i % 251 for i in range(size))


def case(name: str, content_key: bytes, size: int) -> dict[str, Any]:
    plaintext = pattern(size)
    sealer = artifact.ArtifactSealer(content_key, size)
    chunks: list[dict[str, Any]] = []
    pages: list[str] = []
    for index in range(sealer.chunks):
        piece = plaintext[index * artifact.CHUNK_SIZE : (index + 1) * artifact.CHUNK_SIZE]
        blobs = sealer.seal(piece)
        chunk_id, sealed = blobs[0]
        chunks.append(
            {
                "index": index,
                "nonce": artifact.chunk_nonce(index, index == sealer.chunks - 1).hex(),
                "length": len(sealed),
                "head": sealed[:16].hex(),
                "tag": sealed[-16:].hex(),
                "id": chunk_id.hex(),
            }
        )
        pages += [page_id.hex() for page_id, _ in blobs[1:]]
    (root, manifest), ref = sealer.finish()
    return {
        "name": name,
        "content_key": content_key.hex(),
        "chunk_key": artifact.derive_chunk_key(content_key).hex(),
        "size": size,
        "plaintext": "byte i is i mod 251",
        "chunks": chunks,
        "page_ids": pages,
        "manifest": manifest.hex(),
        "root": root.hex(),
        "artifact_chunked": {"root": ref.root.hex(), "size": ref.size, "chunks": ref.chunks},
    }


def generate() -> str:
    cases = [
        case("three chunks", bytes(range(32)), 2 * artifact.CHUNK_SIZE + 1000),
        case("empty", bytes([0x11] * 32), 0),
        case("exactly one chunk", bytes([0x22] * 32), artifact.CHUNK_SIZE),
    ]
    return json.dumps({"chunk_size": artifact.CHUNK_SIZE, "cases": cases}, indent=2) + "\n"


def main() -> int:
    text = generate()
    if "--check" in sys.argv[1:]:
        return 0 if OUT.read_text() == text else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
