"""Shared test helpers of the store tests: groups, message hashes, packets."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from p2pchat.chat.core.packet import (
    Artifact,
    Headers,
    Message,
    Packet,
    sha256,
    sign_message,
)
from p2pchat.chat.store import (
    ChatStore,
)
from p2pchat.identity import KeyPair

G1: Final = sha256(b"group one")
G2: Final = sha256(b"group two")
AUTHOR: Final = KeyPair.from_seed(bytes(range(32)))
RATIFIER: Final = KeyPair.from_seed(bytes(range(1, 33)))


def mh(i: int) -> bytes:
    """A distinct 32-byte message hash."""
    return sha256(i.to_bytes(8, "big"))


async def put(
    store: ChatStore,
    i: int,
    *,
    group: bytes = G1,
    certificate: bytes | None = b"\xa0",
    size: int = 10,
    outbox_at: int | None = None,
) -> bool:
    """Store message ``i`` (opaque bytes of ``size``), ratified unless ``certificate`` is None."""
    return await store.put_message(
        group,
        bytes([i % 256]) * size,
        mh(i),
        epoch=0,
        time_stamp=1000 + i,
        author=AUTHOR.peer_id.to_bytes(),
        received_at=2000 + i,
        certificate=certificate,
        outbox_at=outbox_at,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def make_packet(text: bytes, *, group: bytes = G1) -> Packet:
    """A signed text packet of ``group`` in epoch 0, without a certificate."""
    aes_key, iv = b"K" * 60, b"I" * 12
    message = Message(
        group_id=group,
        epoch=0,
        message_type="text",
        time_stamp=1_700_000_000_000,
        author=AUTHOR.peer_id,
        ref_hash=None,
        parents=(),
        headers=Headers(),
        artifact=Artifact("text/plain", text, sha256(text), sha256(aes_key + iv)),
    )
    return sign_message(AUTHOR, message, aes_key, iv)
