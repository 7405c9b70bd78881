"""Keys and peer IDs in libp2p's formats (libp2p/specs ``peer-ids/peer-ids.md``).

A public key travels as the protobuf ``PublicKey{Type = 1; Data = 2}``; a peer ID is
the multihash of that encoding: the identity multihash when it is at most 42 bytes
(every Ed25519 key), SHA-256 otherwise. Peer IDs print as base58btc and parse from
base58btc or from a CIDv1 with the ``libp2p-key`` codec.

Our own nodes use Ed25519. Remote keys of the other three libp2p types (RSA,
Secp256k1, ECDSA) are decoded and verified too, so that we can talk to any libp2p
peer, and key pairs of those types can be loaded for conformance testing.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
import stat
from pathlib import Path
from typing import Final

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from .errors import DecodeError, P2PChatError
from .multibase import b32decode, b32encode, b58decode, b58encode
from .protobuf import WT_LEN, WT_VARINT, decode_message, encode_bytes_field, encode_varint_field
from .varint import decode_uvarint, encode_uvarint


class KeyType(enum.IntEnum):
    """``KeyType`` enum of the keys protobuf (peer-ids.md, "Keys")."""

    RSA = 0
    Ed25519 = 1
    Secp256k1 = 2
    ECDSA = 3


# peer-ids.md "Peer Ids": keys encoding to at most 42 bytes are inlined.
MAX_INLINE_KEY_LENGTH: Final = 42
# multicodec table: identity and sha2-256 multihashes, libp2p-key CID codec.
MH_IDENTITY: Final = 0x00
MH_SHA2_256: Final = 0x12
CID_V1: Final = 0x01
CODEC_LIBP2P_KEY: Final = 0x72
# Bounds on what we decode (specs/identity.md "Accepted keys"): RSA keys of 2048 to 4096 bits
# with the public exponent 65537 only, so that verifying a handshake signature costs a bounded,
# small amount of CPU whatever the peer sends; ECDSA on P-256 only.
MAX_KEY_PROTOBUF: Final = 2048
MAX_PEER_ID_BYTES: Final = 128
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 4096
RSA_PUBLIC_EXPONENT: Final = 65537
ED25519_KEY_LENGTH: Final = 32

_KEY_SCHEMA: Final = {1: WT_VARINT, 2: WT_LEN}


class InvalidKeyError(DecodeError):
    """A key could not be decoded or is not acceptable."""


class UnsupportedKeyError(InvalidKeyError):
    """A well-formed key outside what we accept: an RSA size or exponent, or an ECDSA curve,
    that could make verification expensive (specs/identity.md "Accepted keys")."""


class KeyFileError(P2PChatError):
    """A key file is missing, unreadable, malformed or readable by others."""


def _decode_key_message(data: bytes) -> tuple[KeyType, bytes]:
    if len(data) > MAX_KEY_PROTOBUF:
        raise InvalidKeyError("key protobuf too large", hint="key too large")
    fields = decode_message(data, _KEY_SCHEMA)
    if len(fields.get(1, ())) != 1 or len(fields.get(2, ())) != 1:
        raise InvalidKeyError("key protobuf needs exactly one Type and one Data", hint="bad key")
    raw_type, raw_data = fields[1][0], fields[2][0]
    assert isinstance(raw_type, int)
    assert isinstance(raw_data, bytes)
    try:
        key_type = KeyType(raw_type)
    except ValueError:
        raise InvalidKeyError(f"unknown key type {raw_type}", hint="unknown key type") from None
    return key_type, raw_data


def _encode_key_message(key_type: KeyType, data: bytes) -> bytes:
    return encode_varint_field(1, int(key_type)) + encode_bytes_field(2, data)


@attrs.frozen
class PublicKey:
    """A libp2p public key: its type and its type-specific encoding (peer-ids.md)."""

    key_type: KeyType
    data: bytes

    @classmethod
    def from_protobuf(cls, data: bytes) -> PublicKey:
        """Decode the ``PublicKey`` protobuf and check that the key itself parses.

        Raises:
            UnsupportedKeyError: an RSA key of other than 2048-4096 bits or with an exponent
                other than 65537, or an ECDSA key on another curve than P-256.
            DecodeError: malformed protobuf, unknown type or an invalid key.
        """
        key_type, raw = _decode_key_message(bytes(data))
        key = cls(key_type, raw)
        key._load()  # validates the key material
        return key

    def to_protobuf(self) -> bytes:
        """The deterministic protobuf encoding (field 1 then field 2)."""
        return _encode_key_message(self.key_type, self.data)

    def _load(
        self,
    ) -> ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        return self._loaded

    @functools.cached_property
    def _loaded(
        self,
    ) -> ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        """The key object, parsed once (verification is the hot path of the chat)."""
        try:
            if self.key_type is KeyType.Ed25519:
                if len(self.data) != ED25519_KEY_LENGTH:
                    raise InvalidKeyError("Ed25519 public key must be 32 bytes", hint="bad key")
                return ed25519.Ed25519PublicKey.from_public_bytes(self.data)
            if self.key_type is KeyType.Secp256k1:
                return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), self.data)
            loaded = serialization.load_der_public_key(self.data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InvalidKeyError(
                f"invalid {self.key_type.name} public key", hint="bad key"
            ) from exc
        if self.key_type is KeyType.RSA:
            if not isinstance(loaded, rsa.RSAPublicKey):
                raise InvalidKeyError("RSA key type holds a non-RSA key", hint="bad key")
            if not MIN_RSA_BITS <= loaded.key_size <= MAX_RSA_BITS:
                raise UnsupportedKeyError(
                    f"RSA key of {loaded.key_size} bits (accepted: {MIN_RSA_BITS}-{MAX_RSA_BITS})",
                    hint="unsupported rsa key size",
                )
            if loaded.public_numbers().e != RSA_PUBLIC_EXPONENT:
                raise UnsupportedKeyError(
                    f"RSA public exponent must be {RSA_PUBLIC_EXPONENT}",
                    hint="unsupported rsa exponent",
                )
            return loaded
        if not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise InvalidKeyError("ECDSA key type holds a non-EC key", hint="bad key")
        if not isinstance(loaded.curve, ec.SECP256R1):
            raise UnsupportedKeyError(
                f"ECDSA key on curve {loaded.curve.name} (accepted: P-256)",
                hint="unsupported ecdsa curve",
            )
        return loaded

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is this key's valid signature of ``message``.

        Ed25519 per RFC 8032; the other types sign SHA-256 of the message
        (RSASSA-PKCS1-v1_5, or DER-encoded ECDSA) as peer-ids.md prescribes.
        """
        try:
            key = self._load()
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, DecodeError, ValueError):
            return False
        return True


_PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@attrs.frozen
class KeyPair:
    """A private key and its libp2p public key. New key pairs are Ed25519."""

    private_key: _PrivateKey
    public_key: PublicKey

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh random Ed25519 key pair."""
        return cls._from_ed25519(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """The Ed25519 key pair of a 32-byte seed (RFC 8032 private key).

        Raises:
            ValueError: the seed is not 32 bytes.
        """
        if len(seed) != ED25519_KEY_LENGTH:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls._from_ed25519(ed25519.Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def _from_ed25519(cls, key: ed25519.Ed25519PrivateKey) -> KeyPair:
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(key, PublicKey(KeyType.Ed25519, raw))

    @classmethod
    def from_protobuf(cls, data: bytes) -> KeyPair:
        """Decode a libp2p ``PrivateKey`` protobuf of any of the four key types.

        Raises:
            DecodeError: malformed protobuf or key material.
        """
        key_type, raw = _decode_key_message(bytes(data))
        try:
            if key_type is KeyType.Ed25519:
                return cls._from_ed25519_encoding(raw)
            if key_type is KeyType.Secp256k1:
                if len(raw) != 32:
                    raise InvalidKeyError("Secp256k1 private key must be 32 bytes", hint="bad key")
                ec_key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256K1())
                point = ec_key.public_key().public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
                )
                return cls(ec_key, PublicKey(key_type, point))
            private = serialization.load_der_private_key(raw, password=None)
        except (ValueError, UnsupportedAlgorithm, TypeError) as exc:
            raise InvalidKeyError(f"invalid {key_type.name} private key", hint="bad key") from exc
        expected = rsa.RSAPrivateKey if key_type is KeyType.RSA else ec.EllipticCurvePrivateKey
        if not isinstance(private, expected):
            raise InvalidKeyError(f"{key_type.name} type holds another kind of key", hint="bad key")
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(private, PublicKey(key_type, der))

    @classmethod
    def _from_ed25519_encoding(cls, raw: bytes) -> KeyPair:
        # peer-ids.md: private||public (64 bytes), or the legacy private||public||public.
        if len(raw) == 96 and raw[32:64] != raw[64:96]:
            raise InvalidKeyError(
                "legacy Ed25519 key with mismatched public halves", hint="bad key"
            )
        if len(raw) not in (64, 96):
            raise InvalidKeyError("Ed25519 private key must be 64 bytes", hint="bad key")
        pair = cls.from_seed(raw[:32])
        if pair.public_key.data != raw[32:64]:
            raise InvalidKeyError(
                "Ed25519 private key does not match its public key", hint="bad key"
            )
        return pair

    def to_protobuf(self) -> bytes:
        """The libp2p ``PrivateKey`` protobuf (the key-file format)."""
        key = self.private_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            seed = key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            return _encode_key_message(KeyType.Ed25519, seed + self.public_key.data)
        if self.public_key.key_type is KeyType.Secp256k1:
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            scalar = key.private_numbers().private_value.to_bytes(32, "big")
            return _encode_key_message(KeyType.Secp256k1, scalar)
        # RSA: PKCS#1 DER; ECDSA: SEC1 DER (the formats of the peer-ids.md vectors).
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return _encode_key_message(self.public_key.key_type, der)

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` the way :meth:`PublicKey.verify` checks it."""
        key = self.private_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(message, ec.ECDSA(hashes.SHA256()))

    @property
    def peer_id(self) -> PeerID:
        """The peer ID of this key pair's public key."""
        return PeerID.from_public_key(self.public_key)


@attrs.frozen(order=True)
class PeerID:
    """A libp2p peer ID: the multihash of a protobuf-encoded public key."""

    multihash: bytes

    @classmethod
    def from_public_key(cls, key: PublicKey) -> PeerID:
        """The peer ID of ``key`` (identity multihash up to 42 bytes, else SHA-256)."""
        encoded = key.to_protobuf()
        if len(encoded) <= MAX_INLINE_KEY_LENGTH:
            return cls(bytes((MH_IDENTITY,)) + encode_uvarint(len(encoded)) + encoded)
        digest = hashlib.sha256(encoded).digest()
        return cls(bytes((MH_SHA2_256, len(digest))) + digest)

    @classmethod
    def from_bytes(cls, data: bytes) -> PeerID:
        """Parse a binary multihash (identity or SHA-256) as a peer ID.

        Raises:
            DecodeError: not a well-formed identity or SHA-256 multihash.
        """
        data = bytes(data)
        if len(data) > MAX_PEER_ID_BYTES:
            raise DecodeError("peer ID too long", hint="bad peer id")
        code, pos = decode_uvarint(data)
        length, pos = decode_uvarint(data, pos)
        if len(data) - pos != length:
            raise DecodeError("multihash length does not match its digest", hint="bad peer id")
        if code == MH_SHA2_256:
            if length != 32:
                raise DecodeError("SHA-256 multihash must have 32 bytes", hint="bad peer id")
        elif code == MH_IDENTITY:
            if length > MAX_INLINE_KEY_LENGTH:
                raise DecodeError("identity multihash longer than 42 bytes", hint="bad peer id")
            PublicKey.from_protobuf(data[pos:])
        else:
            raise DecodeError(f"unsupported multihash code {code:#x}", hint="bad peer id")
        return cls(data)

    @classmethod
    def from_string(cls, text: str) -> PeerID:
        """Parse base58btc (``12D3KooW...``, ``Qm...``) or a CIDv1 (``b...``) peer ID.

        Raises:
            DecodeError: neither form, or the decoded bytes are not a peer ID.
        """
        if text.startswith(("1", "Qm")):
            return cls.from_bytes(b58decode(text))
        if text.startswith(("b", "B")):
            raw = b32decode(text[1:])
            version, pos = decode_uvarint(raw)
            codec, pos = decode_uvarint(raw, pos)
            if version != CID_V1 or codec != CODEC_LIBP2P_KEY:
                raise DecodeError("CID is not a v1 libp2p-key CID", hint="bad peer id")
            return cls.from_bytes(raw[pos:])
        raise DecodeError(f"not a peer ID: {text[:64]!r}", hint="bad peer id")

    def to_bytes(self) -> bytes:
        """The binary multihash."""
        return self.multihash

    def to_base58(self) -> str:
        """The canonical text form (base58btc of the multihash)."""
        return b58encode(self.multihash)

    def to_cid(self) -> str:
        """The CIDv1 text form: multibase base32 of ``0x01 0x72 <multihash>``."""
        return "b" + b32encode(bytes((CID_V1, CODEC_LIBP2P_KEY)) + self.multihash)

    def extract_public_key(self) -> PublicKey | None:
        """The public key inlined in an identity multihash, or None for hashed IDs."""
        return self._inlined_key

    @functools.cached_property
    def _inlined_key(self) -> PublicKey | None:
        if self.multihash[0] != MH_IDENTITY:
            return None
        _length, pos = decode_uvarint(self.multihash, 1)
        return PublicKey.from_protobuf(self.multihash[pos:])

    def matches(self, key: PublicKey) -> bool:
        """True if ``key`` is the key this peer ID names."""
        return PeerID.from_public_key(key) == self

    def __str__(self) -> str:
        return self.to_base58()

    def __repr__(self) -> str:
        return f"PeerID({self.to_base58()})"


# Key files --------------------------------------------------------------------------------

KEY_FILE_MODE: Final = 0o600


def save_key_file(path: str | os.PathLike[str], pair: KeyPair) -> None:
    """Write ``pair`` as a libp2p ``PrivateKey`` protobuf, mode 0600, atomically.

    The file is created with mode 0600 from the start (never briefly world-readable),
    written to a temporary name and renamed into place.

    Raises:
        KeyFileError: the file could not be written.
    """
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pair.to_protobuf())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {target}: {exc.strerror}") from exc


def load_key_file(path: str | os.PathLike[str]) -> KeyPair:
    """Read a key file written by :func:`save_key_file` (or by another libp2p node).

    Raises:
        KeyFileError: missing, unreadable, group/world accessible, or malformed.
    """
    target = Path(path)
    try:
        with open(target, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(
                    f"key file {target} is accessible by others "
                    f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {target}"
                )
            data = fh.read(MAX_KEY_PROTOBUF + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {target}: {exc.strerror}") from exc
    try:
        return KeyPair.from_protobuf(data)
    except DecodeError as exc:
        raise KeyFileError(f"key file {target} is not a libp2p private key: {exc}") from exc
