"""The record a group starts from: genesis, its owner's signature, the group id (§3, §5).

A group starts from a :class:`Genesis` that its owner signs (:class:`SignedGenesis`); the group id
is the SHA-256 of the genesis' deterministic CBOR, so every copy of a genesis that decodes
re-encodes to the same bytes and names the same group. The genesis holds the roster of epoch 0.
Nothing here does I/O, reads a clock or draws randomness: times and the nonce are passed in.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, Final

import attrs

from ...errors import DecodeError
from ...identity import KeyPair, PeerID
from . import cbor
from .packet import MAX_PACKET_SIZE, SIGNATURE_SIZE, sha256
from .roster import (
    HISTORY_ALL,
    History,
    Member,
    Role,
    Roster,
    RosterDecodeError,
    build_decoded,
    read_bytes,
    read_map,
    read_peer,
    read_text,
    read_uint,
)

__all__ = ["GENESIS_DOMAIN", "GENESIS_VERSION", "Genesis", "SignedGenesis", "new_group"]

# §5: the owner signs GENESIS_DOMAIN || CBOR(genesis).
GENESIS_DOMAIN: Final = b"p2pchat/genesis/v1"
# §3: genesis "v".
GENESIS_VERSION: Final = 1
# §3: genesis "name" is at most 128 bytes of UTF-8, "nonce" exactly 16 bytes.
MAX_NAME: Final = 128
#: §16: the largest genesis a node creates (CBOR, unsigned), so that the first ``pktR`` page
#: (genesis and one roster message) fits one frame.
MAX_NEW_GENESIS: Final = 192 * 1024
NONCE_SIZE: Final = 16


@attrs.frozen
class Genesis:
    """The record a group starts from (§3).

    Raises:
        ValueError: wrong version, name over 128 bytes, nonce not 16 bytes, a roster whose epoch
            is not 0, or an owner who is not a ratifier of it.
    """

    v: int
    name: str
    owner: PeerID
    created: int
    nonce: bytes
    roster: Roster

    def __attrs_post_init__(self) -> None:
        if self.v != GENESIS_VERSION:
            raise ValueError(f"unsupported genesis version {self.v}")
        if len(self.name.encode()) > MAX_NAME:
            raise ValueError(f"group name longer than {MAX_NAME} bytes")
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
        if not 0 <= self.created < 2**64:
            raise ValueError("created out of range")
        if self.roster.epoch != 0:
            raise ValueError("the genesis roster must have epoch 0")
        if self.roster.role_of(self.owner) is not Role.RATIFIER:
            raise ValueError("the owner must be a ratifier of the genesis roster")

    def to_cbor(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "name": self.name,
            "owner": self.owner.to_bytes(),
            "created": self.created,
            "nonce": self.nonce,
            "roster": self.roster.to_cbor(),
        }

    @classmethod
    def from_cbor(cls, value: Any) -> Genesis:
        """Decode a genesis.

        Raises:
            DecodeError: malformed or breaking §3.
        """
        m = read_map(
            value, "genesis", frozenset({"v", "name", "owner", "created", "nonce", "roster"})
        )
        return build_decoded(
            "genesis",
            cls,
            read_uint(m["v"], "genesis.v"),
            read_text(m["name"], "genesis.name", max_size=MAX_NAME),
            read_peer(m["owner"], "genesis.owner"),
            read_uint(m["created"], "genesis.created"),
            read_bytes(m["nonce"], "genesis.nonce", max_size=NONCE_SIZE),
            Roster.from_cbor(m["roster"]),
        )

    def encode(self) -> bytes:
        """``CBOR(genesis)``."""
        return cbor.dumps(self.to_cbor())

    def signing_bytes(self) -> bytes:
        """What the owner signs: ``"p2pchat/genesis/v1" || CBOR(genesis)`` (§5)."""
        return GENESIS_DOMAIN + self.encode()

    @functools.cached_property
    def group_id(self) -> bytes:
        """``SHA-256(CBOR(genesis))`` (computed once)."""
        return sha256(self.encode())


@attrs.frozen
class SignedGenesis:
    """A genesis with its owner's signature, as it travels: ``{"genesis", "sig"}`` (§3)."""

    genesis: Genesis
    sig: bytes

    @classmethod
    def sign(cls, owner: KeyPair, genesis: Genesis) -> SignedGenesis:
        """``genesis`` signed by ``owner``.

        Raises:
            ValueError: ``owner`` is not the genesis' owner.
        """
        if owner.peer_id != genesis.owner:
            raise ValueError("the key pair is not the genesis owner")
        return cls(genesis, owner.sign(genesis.signing_bytes()))

    def verify(self) -> bool:
        """True if ``sig`` is the owner's valid signature of the genesis."""
        try:
            key = self.genesis.owner.extract_public_key()
        except DecodeError:
            return False
        return key is not None and key.verify(self.sig, self.genesis.signing_bytes())

    @property
    def group_id(self) -> bytes:
        """The group id, ``SHA-256(CBOR(genesis))``."""
        return self.genesis.group_id

    def to_cbor(self) -> dict[str, Any]:
        return {"genesis": self.genesis.to_cbor(), "sig": self.sig}

    @classmethod
    def from_cbor(cls, value: Any) -> SignedGenesis:
        """Decode a signed genesis (the signature is checked by :meth:`verify`, not here).

        Raises:
            DecodeError: malformed or breaking §3.
        """
        m = read_map(value, "signed genesis", frozenset({"genesis", "sig"}))
        sig = read_bytes(m["sig"], "genesis sig", max_size=SIGNATURE_SIZE)
        if len(sig) != SIGNATURE_SIZE:
            raise RosterDecodeError("genesis sig must be 64 bytes", hint="malformed")
        return cls(Genesis.from_cbor(m["genesis"]), sig)

    def encode(self) -> bytes:
        """``CBOR({"genesis": genesis, "sig": sig})``."""
        return cbor.dumps(self.to_cbor())

    @classmethod
    def decode(cls, data: bytes) -> SignedGenesis:
        """Decode a signed genesis from its CBOR bytes.

        Raises:
            DecodeError: malformed, non-canonical, larger than 1 MiB, or breaking §3.
        """
        return cls.from_cbor(cbor.loads(data, max_size=MAX_PACKET_SIZE))


def new_group(
    owner: KeyPair,
    name: str,
    members: Iterable[Member],
    *,
    quorum: int | None = None,
    history: History = HISTORY_ALL,
    now_ms: int,
    nonce: bytes,
) -> SignedGenesis:
    """A new group's signed genesis: ``members`` (the owner among them, as a ratifier) at epoch 0.

    ``nonce`` is 16 random bytes from the caller (this module draws no randomness); ``quorum``
    defaults to a majority of the ratifiers.

    Raises:
        ValueError: the members, quorum, name or nonce break §3.
    """
    members = tuple(members)
    roster = (
        Roster(0, members, history=history)
        if quorum is None
        else Roster(0, members, quorum, history)
    )
    genesis = Genesis(GENESIS_VERSION, name, owner.peer_id, now_ms, nonce, roster)
    if len(genesis.encode()) > MAX_NEW_GENESIS:
        # §16: the genesis shares the first roster page with a roster message of up to 768 KiB.
        raise ValueError(f"a new genesis is at most {MAX_NEW_GENESIS} bytes: invite the rest")
    return SignedGenesis.sign(owner, genesis)
