"""Merkle trees over byte strings, as RFC 9162 §2.1 (Certificate Transparency) defines them
(specs/chat.md §19).

A tree over ``n >= 1`` leaves ``D[0:n]`` has the root ``MTH(D)``: ``SHA-256(0x00 || d)`` for one
leaf, and for more, ``SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` where ``k`` is the largest
power of two below ``n``. An inclusion proof of leaf ``m`` is the RFC's audit path, verified by
its §2.1.3.2 algorithm. The domain bytes 0x00 and 0x01 keep a leaf from passing for an inner
node. The chat uses it for a ratifier's vote over a batch of messages (§19) and for the wrapped
keys a roster message commits to.

Pure functions; no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

#: At most this many leaves in one tree (so a proof holds at most 16 hashes).
MAX_LEAVES: Final = 1 << 16
#: The longest proof a tree of MAX_LEAVES leaves has.
MAX_PROOF: Final = 16
_HASH_SIZE: Final = 32


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(n: int) -> None:
    if not 1 <= n <= MAX_LEAVES:
        raise ValueError(f"a Merkle tree holds 1..{MAX_LEAVES} leaves, not {n}")


def _root(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(_root(hashes[:k]), _root(hashes[k:]))


def root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over ``leaves`` (the data, not yet hashed).

    Raises:
        ValueError: no leaves, or more than MAX_LEAVES.
    """
    _check_size(len(leaves))
    return _root([leaf_hash(d) for d in leaves])


def _path(hashes: Sequence[bytes], m: int) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if m < k:
        return [*_path(hashes[:k], m), _root(hashes[k:])]
    return [*_path(hashes[k:], m - k), _root(hashes[:k])]


def proof(leaves: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """The inclusion proof (audit path) of ``leaves[index]``, nearest the leaf first.

    Raises:
        ValueError: no leaves, too many, or ``index`` outside them.
    """
    _check_size(len(leaves))
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    return tuple(_path([leaf_hash(d) for d in leaves], index))


def proofs(leaves: Sequence[bytes]) -> tuple[bytes, tuple[tuple[bytes, ...], ...]]:
    """The root and every leaf's proof, hashing each subtree once (O(n log n) in all)."""
    _check_size(len(leaves))
    levels = [[leaf_hash(d) for d in leaves]]
    out: list[list[bytes]] = [[] for _ in leaves]

    def build(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return levels[0][lo]
        mid = lo + _split(hi - lo)
        left, right = build(lo, mid), build(mid, hi)
        for i in range(lo, mid):
            out[i].append(right)
        for i in range(mid, hi):
            out[i].append(left)
        return node_hash(left, right)

    top = build(0, len(leaves))
    return top, tuple(tuple(p) for p in out)


def verify(root_hash: bytes, data: bytes, index: int, size: int, path: Sequence[bytes]) -> bool:
    """Whether ``data`` is leaf ``index`` of a tree of ``size`` leaves with root ``root_hash``
    (RFC 9162 §2.1.3.2). Never raises on a malformed proof: it is simply not valid."""
    found = root_from_path(data, index, size, path)
    return found is not None and found == root_hash


def root_from_path(data: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` proves ``data`` to be leaf ``index`` of, in a tree of ``size``
    leaves (RFC 9162 §2.1.3.2 without the final comparison), or None for a malformed proof
    (one of the wrong length for ``index`` and ``size`` included)."""
    if not (0 <= index < size <= MAX_LEAVES) or len(path) > MAX_PROOF:
        return None
    if any(not isinstance(p, bytes) or len(p) != _HASH_SIZE for p in path):
        return None
    fn, sn, r = index, size - 1, leaf_hash(data)
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None
