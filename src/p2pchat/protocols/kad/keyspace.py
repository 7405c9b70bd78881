"""The Kademlia keyspace: SHA-256 of a key, XOR distance, common prefix length.

kad-dht/README.md "Distance": the distance between two keys is the XOR of their SHA-256
digests read as a 256-bit big-endian integer. A peer's key is the SHA-256 of its peer ID's
bytes (the multihash), a record's or provider's the SHA-256 of the DHT key's bytes.
"""

from __future__ import annotations

import hashlib
from typing import Final

from ...identity import PeerID

KEY_BITS: Final = 256


def kad_key(data: bytes) -> bytes:
    """The point in the keyspace of a DHT key (a peer ID's bytes, a record key, a CID hash)."""
    return hashlib.sha256(data).digest()


def peer_key(peer: PeerID) -> bytes:
    """The point in the keyspace of ``peer``."""
    return kad_key(peer.to_bytes())


def distance(a: bytes, b: bytes) -> int:
    """XOR distance of two keyspace points, as an integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def common_prefix_length(a: bytes, b: bytes) -> int:
    """How many leading bits ``a`` and ``b`` share (256 if equal)."""
    return KEY_BITS - distance(a, b).bit_length()
