"""Group rendezvous keys: where the members of a group meet in the DHT without naming it.

specs/kad.md §10. Members of a group provide (ADD_PROVIDER) under a key that only holders of
the group's current epoch key can compute, and that changes every :data:`WINDOW` seconds::

    secret = HKDF-SHA256(ikm = epoch key K_e, salt = group_id,
                         info = "p2pchat/rendezvous/v1" || u64be(epoch) || u64be(window),
                         length = 32)
    key    = 0x12 0x20 || secret          (shaped as a sha2-256 multihash, as a CID's is)
    window = floor(unix time in seconds / WINDOW)

DHT nodes see a random-looking multihash; without ``K_e`` nobody can tell which group it
belongs to, nor link the keys of two windows or two epochs. Members removed from the group
never get the new epoch's key, so they cannot compute the keys that follow. No clock here: the
caller passes the time.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: specs/kad.md §10: one rendezvous key per 12 hours.
WINDOW: Final = 12 * 3600
INFO_PREFIX: Final = b"p2pchat/rendezvous/v1"
EPOCH_KEY_SIZE: Final = 32
#: The multihash prefix of a 32-byte sha2-256 digest.
MULTIHASH_PREFIX: Final = b"\x12\x20"


def window_of(unix_seconds: float) -> int:
    """The rendezvous window that ``unix_seconds`` falls in.

    Raises:
        ValueError: a negative time.
    """
    if unix_seconds < 0:
        raise ValueError("time before 1970")
    return int(unix_seconds // WINDOW)


def rendezvous_key(epoch_key: bytes, group_id: bytes, epoch: int, window: int) -> bytes:
    """The DHT key members of ``group_id`` provide under in ``window`` during ``epoch``.

    Raises:
        ValueError: an epoch key that is not 32 bytes, or a negative epoch or window.
    """
    if len(epoch_key) != EPOCH_KEY_SIZE:
        raise ValueError("an epoch key is 32 bytes")
    if epoch < 0 or window < 0:
        raise ValueError("epoch and window are not negative")
    info = INFO_PREFIX + epoch.to_bytes(8, "big") + window.to_bytes(8, "big")
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=group_id, info=info).derive(epoch_key)
    return MULTIHASH_PREFIX + secret


def keys_to_provide(epoch_key: bytes, group_id: bytes, epoch: int, now: float) -> list[bytes]:
    """The keys a member provides at ``now``: this window's and the next (so that a member
    whose clock is ahead, or who looks just after the boundary, still meets it)."""
    window = window_of(now)
    return [rendezvous_key(epoch_key, group_id, epoch, w) for w in (window, window + 1)]


def keys_to_search(epoch_key: bytes, group_id: bytes, epoch: int, now: float) -> list[bytes]:
    """The keys a member looks up at ``now``: this window's and the next one's. With
    :func:`keys_to_provide` this meets a member whose clock is up to one window apart, either
    way (the key of the later of the two windows is in both sets)."""
    window = window_of(now)
    return [rendezvous_key(epoch_key, group_id, epoch, w) for w in (window, window + 1)]
