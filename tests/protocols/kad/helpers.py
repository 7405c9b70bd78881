"""Peers with fixed ids for the kad core tests."""

from __future__ import annotations

from functools import cache

from p2pchat.identity import KeyPair, PeerID


@cache
def keypair(n: int) -> KeyPair:
    """The key pair of ``KeyPair.from_seed(n as 32 bytes)``."""
    return KeyPair.from_seed(n.to_bytes(32, "big"))


def peer(n: int) -> PeerID:
    """The peer id of :func:`keypair` ``(n)``."""
    return keypair(n).peer_id
