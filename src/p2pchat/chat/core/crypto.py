"""End-to-end encryption of the group chat (specs/chat.md §7).

Theory of operation
-------------------

Two layers of keys protect an artifact:

* Every roster epoch ``e`` has an **epoch key** ``K_e`` (32 random bytes, :func:`new_epoch_key`)
  chosen by the owner. The roster message that opens the epoch carries ``K_e`` wrapped for each
  member with HPKE (RFC 9180, base mode, single shot, suite ``(KEM of the member, HKDF-SHA256,
  AES-256-GCM)``, empty AAD) to the member's HPKE public key. The HPKE ``info`` binds the group,
  the epoch and the member, so a wrapped key cannot be replayed into another group, epoch or
  member slot: :func:`wrap_epoch_key` / :func:`unwrap_epoch_key`.
* Every message has its own **content key** ``k`` and ``iv``. The artifact is
  ``AES-256-GCM(k, iv, plaintext)`` with an AAD that binds group, epoch and author; the content
  key travels as ``aes_key = nonce || AES-256-GCM(K_e, nonce, k)`` with an AAD that binds group
  and epoch: :func:`encrypt_artifact` / :func:`decrypt_artifact` / :func:`decrypt_packet`.

Each content key encrypts exactly one plaintext, so its ``iv`` can never repeat under it; the
content-key nonces under one epoch key are random 96-bit values, safe far beyond any realistic
number of messages per epoch.

Member HPKE keys come in two KEMs (§3): ``"MLKEM768_X25519"`` (the default: the post-quantum
hybrid of draft-ietf-hpke-pq, HPKE KEM id ``0x647a``) and ``"X25519"`` (DHKEM(X25519,
HKDF-SHA256), KEM id ``0x0020``). Both private keys are 32 bytes: X25519 its raw scalar, the
hybrid a seed that SHAKE256 expands into the ML-KEM-768 seed ``d || z`` and the X25519 scalar
(:class:`HpkeKeyPair`). Public keys are parsed and checked (:meth:`HpkePublicKey.from_bytes`):
ML-KEM encapsulation keys must pass the FIPS 203 modulus check, X25519 points must not be of
small order.

Errors: malformed key material is a :class:`CryptoKeyError` (a
:class:`~p2pchat.errors.DecodeError`); anything that fails to decrypt or authenticate is a
:class:`DecryptError` (a :class:`~p2pchat.errors.RemoteProtocolError`); bad arguments from our
own code are :class:`~p2pchat.errors.LocalProtocolError`. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import os
from typing import Final, NamedTuple

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import DecodeError, LocalProtocolError, RemoteProtocolError
from ...identity import PeerID
from .packet import MAX_ARTIFACT_DATA, Packet, u64

# §3: member "kem" names.
KEM_MLKEM768_X25519: Final = "MLKEM768_X25519"
KEM_X25519: Final = "X25519"
DEFAULT_KEM: Final = KEM_MLKEM768_X25519
KEMS: Final = (KEM_MLKEM768_X25519, KEM_X25519)

# §3/§7: sizes of the member-entry public key, the stored private key and the wrapped epoch key
# (HPKE enc || AES-256-GCM(32-byte epoch key) with its 16-byte tag).
MLKEM768_PUBLIC_SIZE: Final = 1184
MLKEM768_SEED_SIZE: Final = 64
X25519_SIZE: Final = 32
PUBLIC_KEY_SIZES: Final[dict[str, int]] = {
    KEM_MLKEM768_X25519: MLKEM768_PUBLIC_SIZE + X25519_SIZE,
    KEM_X25519: X25519_SIZE,
}
PRIVATE_KEY_SIZE: Final = 32
TAG_SIZE: Final = 16
EPOCH_KEY_SIZE: Final = 32
WRAPPED_EPOCH_KEY_SIZES: Final[dict[str, int]] = {
    KEM_MLKEM768_X25519: 1120 + EPOCH_KEY_SIZE + TAG_SIZE,
    KEM_X25519: X25519_SIZE + EPOCH_KEY_SIZE + TAG_SIZE,
}

# §7: per-message keys and the layout of aes_key (nonce || ciphertext of k || tag).
CONTENT_KEY_SIZE: Final = 32
IV_SIZE: Final = 12
NONCE_SIZE: Final = 12
WRAPPED_CONTENT_KEY_SIZE: Final = NONCE_SIZE + CONTENT_KEY_SIZE + TAG_SIZE
# §4: artifact.data is at most 768 KiB, and it carries the 16-byte tag.
MAX_PLAINTEXT: Final = MAX_ARTIFACT_DATA - TAG_SIZE

# §7: domain-separation prefixes of the HPKE info and the two AES-GCM AADs.
EPOCH_KEY_DOMAIN: Final = b"p2pchat/epoch-key/v1"
ARTIFACT_DOMAIN: Final = b"p2pchat/artifact/v1"
CONTENT_KEY_DOMAIN: Final = b"p2pchat/content-key/v1"

GROUP_ID_SIZE: Final = 32
_ROSTER_TYPE: Final = "roster"

_SUITES: Final = {
    KEM_MLKEM768_X25519: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
    KEM_X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
}

# Any scalar detects a small-order X25519 point: clamping makes every scalar a multiple of the
# cofactor, so such a point always yields the all-zero shared secret, which cryptography refuses.
_ORDER_PROBE: Final = x25519.X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

_PublicKey = x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey
_PrivateKey = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey


class CryptoKeyError(DecodeError):
    """An HPKE key is malformed: unknown KEM, wrong size, or not a valid key."""


class DecryptError(RemoteProtocolError):
    """A wrapped key or an artifact does not decrypt: wrong key, wrong binding, or tampered."""


# -- keys ----------------------------------------------------------------------------------------


def _check_kem(kem: str) -> None:
    if kem not in PUBLIC_KEY_SIZES:
        raise CryptoKeyError(f"unknown KEM {kem!r}", hint="malformed")


def _load_x25519_public(data: bytes) -> x25519.X25519PublicKey:
    key = x25519.X25519PublicKey.from_public_bytes(data)
    try:
        _ORDER_PROBE.exchange(key)
    except ValueError as exc:
        raise CryptoKeyError("X25519 public key of small order", hint="malformed") from exc
    return key


@attrs.frozen
class HpkePublicKey:
    """A member's HPKE public key in the member-entry format of §3.

    Build it with :meth:`from_bytes`, which checks it; ``key`` is the parsed key.
    """

    kem: str
    data: bytes
    key: _PublicKey = attrs.field(eq=False, repr=False)

    @classmethod
    def from_bytes(cls, kem: str, data: bytes) -> HpkePublicKey:
        """Parse ``data`` as a public key of ``kem``: X25519 raw (32 bytes), or the ML-KEM-768
        encapsulation key (1184 bytes) followed by the X25519 raw key (32 bytes).

        Raises:
            CryptoKeyError: unknown KEM, wrong size, an ML-KEM key failing the FIPS 203 modulus
                check, or an X25519 point of small order.
        """
        _check_kem(kem)
        data = bytes(data)
        size = PUBLIC_KEY_SIZES[kem]
        if len(data) != size:
            raise CryptoKeyError(f"{kem} public key must be {size} bytes", hint="malformed")
        if kem == KEM_X25519:
            return cls(kem, data, _load_x25519_public(data))
        try:
            ml = mlkem.MLKEM768PublicKey.from_public_bytes(data[:MLKEM768_PUBLIC_SIZE])
        except ValueError as exc:
            raise CryptoKeyError("invalid ML-KEM-768 encapsulation key", hint="malformed") from exc
        x = _load_x25519_public(data[MLKEM768_PUBLIC_SIZE:])
        return cls(kem, data, hpke.MLKEM768X25519PublicKey(ml, x))

    def to_bytes(self) -> bytes:
        """The member-entry encoding (``data``)."""
        return self.data


@attrs.frozen
class HpkeKeyPair:
    """A node's HPKE key pair for one KEM.

    The private key is 32 bytes (:meth:`to_private_bytes`): the X25519 scalar, or for the hybrid
    the seed of draft-ietf-hpke-pq: ``SHAKE256(seed, 96 bytes)`` gives the ML-KEM-768 seed
    ``d || z`` (first 64 bytes) and the X25519 scalar (last 32). Build it with :meth:`generate`
    or :meth:`from_private_bytes`.
    """

    kem: str
    secret: bytes = attrs.field(repr=False)
    private_key: _PrivateKey = attrs.field(eq=False, repr=False)
    public_key: HpkePublicKey

    @classmethod
    def generate(cls, kem: str = DEFAULT_KEM) -> HpkeKeyPair:
        """A fresh random key pair of ``kem``.

        Raises:
            CryptoKeyError: unknown KEM.
        """
        _check_kem(kem)
        return cls.from_private_bytes(kem, os.urandom(PRIVATE_KEY_SIZE))

    @classmethod
    def from_private_bytes(cls, kem: str, data: bytes) -> HpkeKeyPair:
        """The key pair of a stored 32-byte private key of ``kem``.

        Raises:
            CryptoKeyError: unknown KEM or not 32 bytes.
        """
        _check_kem(kem)
        data = bytes(data)
        if len(data) != PRIVATE_KEY_SIZE:
            raise CryptoKeyError(
                f"{kem} private key must be {PRIVATE_KEY_SIZE} bytes", hint="malformed"
            )
        if kem == KEM_X25519:
            xk = x25519.X25519PrivateKey.from_private_bytes(data)
            public = xk.public_key().public_bytes_raw()
            return cls(kem, data, xk, HpkePublicKey(kem, public, xk.public_key()))
        expanded = hashlib.shake_256(data).digest(MLKEM768_SEED_SIZE + X25519_SIZE)
        ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:MLKEM768_SEED_SIZE])
        xk = x25519.X25519PrivateKey.from_private_bytes(expanded[MLKEM768_SEED_SIZE:])
        public = ml.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
        public_key = HpkePublicKey(
            kem, public, hpke.MLKEM768X25519PublicKey(ml.public_key(), xk.public_key())
        )
        return cls(kem, data, hpke.MLKEM768X25519PrivateKey(ml, xk), public_key)

    def to_private_bytes(self) -> bytes:
        """The 32-byte private key, for the node's store."""
        return self.secret

    def public_bytes(self) -> bytes:
        """The public key in the member-entry format of §3."""
        return self.public_key.data


# -- epoch keys ----------------------------------------------------------------------------------


def new_epoch_key() -> bytes:
    """A fresh random 32-byte epoch key."""
    return os.urandom(EPOCH_KEY_SIZE)


def _check_binding(group_id: bytes, epoch: int) -> None:
    if len(group_id) != GROUP_ID_SIZE:
        raise LocalProtocolError(f"group_id must be {GROUP_ID_SIZE} bytes")
    if not 0 <= epoch < 2**64:
        raise LocalProtocolError("epoch out of range")


def _check_key(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise LocalProtocolError(f"{what} must be {size} bytes")
    return bytes(value)


def epoch_key_info(group_id: bytes, epoch: int, peer: PeerID) -> bytes:
    """The HPKE ``info`` of a wrapped epoch key (§7).

    Raises:
        LocalProtocolError: ``group_id`` not 32 bytes or ``epoch`` out of range.
    """
    _check_binding(group_id, epoch)
    return EPOCH_KEY_DOMAIN + group_id + u64(epoch) + peer.to_bytes()


def wrap_epoch_key(
    epoch_key: bytes,
    *,
    kem: str,
    hpke_public: bytes,
    group_id: bytes,
    epoch: int,
    peer: PeerID,
) -> bytes:
    """HPKE-encrypt ``epoch_key`` to a member's public key: the ``enc`` of a wrapped key (§7).

    ``epoch`` is the epoch of the key being wrapped (for ``history_keys``, an earlier one), and
    ``peer`` the member it is wrapped for. Returns ``HPKE enc || ciphertext``.

    Raises:
        CryptoKeyError: ``kem`` / ``hpke_public`` is not a valid member key.
        LocalProtocolError: the epoch key is not 32 bytes, ``group_id`` not 32 bytes, or
            ``epoch`` out of range.
    """
    epoch_key = _check_key(epoch_key, EPOCH_KEY_SIZE, "epoch key")
    public = HpkePublicKey.from_bytes(kem, hpke_public)
    info = epoch_key_info(group_id, epoch, peer)
    return _SUITES[kem].encrypt(epoch_key, public.key, info=info)


def unwrap_epoch_key(
    enc: bytes,
    *,
    keypair: HpkeKeyPair,
    group_id: bytes,
    epoch: int,
    peer: PeerID,
) -> bytes:
    """Decrypt a wrapped epoch key made by :func:`wrap_epoch_key` for ``peer`` (ourselves).

    Raises:
        DecryptError: ``enc`` has the wrong size for the key pair's KEM, or does not decrypt
            under this key pair and binding (another member's key, group, epoch or peer).
        LocalProtocolError: ``group_id`` not 32 bytes or ``epoch`` out of range.
    """
    info = epoch_key_info(group_id, epoch, peer)
    expected = WRAPPED_EPOCH_KEY_SIZES[keypair.kem]
    if len(enc) != expected:
        raise DecryptError(
            f"a wrapped {keypair.kem} epoch key is {expected} bytes, not {len(enc)}",
            hint="cannot decrypt",
        )
    try:
        key = _SUITES[keypair.kem].decrypt(bytes(enc), keypair.private_key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise DecryptError("wrapped epoch key does not decrypt", hint="cannot decrypt") from exc
    if len(key) != EPOCH_KEY_SIZE:
        raise DecryptError("wrapped epoch key is not 32 bytes", hint="cannot decrypt")
    return key


# -- artifacts -----------------------------------------------------------------------------------


class SealedArtifact(NamedTuple):
    """What :func:`encrypt_artifact` returns: ``artifact.data``, ``aes_key`` and ``iv`` (§4)."""

    data: bytes
    aes_key: bytes
    iv: bytes


def artifact_aad(group_id: bytes, epoch: int, author: PeerID) -> bytes:
    """The AAD of an artifact's AES-256-GCM (§7).

    Raises:
        LocalProtocolError: ``group_id`` not 32 bytes or ``epoch`` out of range.
    """
    _check_binding(group_id, epoch)
    return ARTIFACT_DOMAIN + group_id + u64(epoch) + author.to_bytes()


def content_key_aad(group_id: bytes, epoch: int) -> bytes:
    """The AAD of the content key's AES-256-GCM under the epoch key (§7).

    Raises:
        LocalProtocolError: ``group_id`` not 32 bytes or ``epoch`` out of range.
    """
    _check_binding(group_id, epoch)
    return CONTENT_KEY_DOMAIN + group_id + u64(epoch)


def encrypt_artifact(
    plaintext: bytes,
    *,
    epoch_key: bytes,
    group_id: bytes,
    epoch: int,
    author: PeerID,
    content_key: bytes | None = None,
    iv: bytes | None = None,
    key_nonce: bytes | None = None,
) -> SealedArtifact:
    """Encrypt an artifact for a message of ``author`` in ``epoch`` (§7).

    ``content_key`` (32 bytes), ``iv`` and ``key_nonce`` (12 bytes each) are random unless
    given; give them only to reproduce test vectors: a content key must never be used twice.

    Raises:
        LocalProtocolError: ``plaintext`` longer than :data:`MAX_PLAINTEXT`, a key or nonce of
            the wrong size, ``group_id`` not 32 bytes, or ``epoch`` out of range.
    """
    if len(plaintext) > MAX_PLAINTEXT:
        raise LocalProtocolError(
            f"artifact of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT}", hint="too large"
        )
    epoch_key = _check_key(epoch_key, EPOCH_KEY_SIZE, "epoch key")
    k = _check_key(
        os.urandom(CONTENT_KEY_SIZE) if content_key is None else content_key,
        CONTENT_KEY_SIZE,
        "content key",
    )
    iv = _check_key(os.urandom(IV_SIZE) if iv is None else iv, IV_SIZE, "iv")
    nonce = _check_key(
        os.urandom(NONCE_SIZE) if key_nonce is None else key_nonce, NONCE_SIZE, "key nonce"
    )
    data = AESGCM(k).encrypt(iv, plaintext, artifact_aad(group_id, epoch, author))
    wrapped = AESGCM(epoch_key).encrypt(nonce, k, content_key_aad(group_id, epoch))
    return SealedArtifact(data, nonce + wrapped, iv)


def decrypt_artifact(
    data: bytes,
    *,
    aes_key: bytes,
    iv: bytes,
    group_id: bytes,
    epoch: int,
    author: PeerID,
    epoch_key: bytes,
) -> bytes:
    """Decrypt ``artifact.data`` given the packet's ``aes_key`` and ``iv`` (§7).

    Raises:
        DecryptError: ``aes_key`` or ``iv`` of the wrong size, the wrong epoch key, a binding
            (group, epoch, author) that differs from the encryption's, or tampered bytes.
        LocalProtocolError: the epoch key is not 32 bytes, ``group_id`` not 32 bytes, or
            ``epoch`` out of range.
    """
    epoch_key = _check_key(epoch_key, EPOCH_KEY_SIZE, "epoch key")
    ck_aad = content_key_aad(group_id, epoch)
    art_aad = artifact_aad(group_id, epoch, author)
    if len(aes_key) != WRAPPED_CONTENT_KEY_SIZE:
        raise DecryptError(
            f"aes_key must be {WRAPPED_CONTENT_KEY_SIZE} bytes", hint="cannot decrypt"
        )
    if len(iv) != IV_SIZE:
        raise DecryptError(f"iv must be {IV_SIZE} bytes", hint="cannot decrypt")
    try:
        k = AESGCM(epoch_key).decrypt(aes_key[:NONCE_SIZE], aes_key[NONCE_SIZE:], ck_aad)
    except InvalidTag as exc:
        raise DecryptError("content key does not decrypt", hint="cannot decrypt") from exc
    # A 60-byte aes_key always holds a 32-byte k: the ciphertext is as long as the plaintext.
    try:
        return AESGCM(k).decrypt(bytes(iv), data, art_aad)
    except InvalidTag as exc:
        raise DecryptError("artifact does not decrypt", hint="cannot decrypt") from exc


def decrypt_packet(packet: Packet, *, epoch_key: bytes) -> bytes:
    """Decrypt a packet's artifact with the key of the packet's epoch.

    Raises:
        DecryptError: as :func:`decrypt_artifact`.
        LocalProtocolError: the packet is a roster message (not encrypted; its artifact is
            plaintext), or the epoch key is not 32 bytes.
    """
    message = packet.message
    if message.message_type == _ROSTER_TYPE:
        raise LocalProtocolError("roster messages are not encrypted")
    return decrypt_artifact(
        message.artifact.data,
        aes_key=packet.aes_key,
        iv=packet.iv,
        group_id=message.group_id,
        epoch=message.epoch,
        author=message.author,
        epoch_key=epoch_key,
    )


def unwrap_content_key(packet: Packet, *, epoch_key: bytes) -> bytes:
    """The content key ``k`` of a packet, unwrapped from its ``aes_key`` with the key of the
    packet's epoch (specs/artifacts.md §2 derives the chunk key from it).

    Raises:
        DecryptError: ``aes_key`` of the wrong size, or it does not decrypt under this key and
            binding.
        LocalProtocolError: the epoch key is not 32 bytes.
    """
    epoch_key = _check_key(epoch_key, EPOCH_KEY_SIZE, "epoch key")
    message = packet.message
    aes_key = packet.aes_key
    if len(aes_key) != WRAPPED_CONTENT_KEY_SIZE:
        raise DecryptError(
            f"aes_key must be {WRAPPED_CONTENT_KEY_SIZE} bytes", hint="cannot decrypt"
        )
    aad = content_key_aad(message.group_id, message.epoch)
    try:
        return AESGCM(epoch_key).decrypt(aes_key[:NONCE_SIZE], aes_key[NONCE_SIZE:], aad)
    except InvalidTag as exc:
        raise DecryptError("content key does not decrypt", hint="cannot decrypt") from exc
