"""Noise_XX_25519_ChaChaPoly_SHA256 and the libp2p Noise secure channel, sans-IO.

Theory of operation
===================

The module has two layers.

1. The Noise framework (noiseprotocol.org, revision 34), limited to what libp2p
   needs: :class:`CipherState` (section 5.1), :class:`SymmetricState` (5.2) and
   :class:`HandshakeState` (5.3) for the ``XX`` pattern (7.5) over X25519 and
   SHA-256, with ChaChaPoly and, so the AESGCM test vectors can be used, AESGCM.
   Static and ephemeral private keys and the prologue can be injected, which is
   how the official vectors are replayed byte for byte.

2. :class:`NoiseConnection`, the libp2p secure channel (libp2p/specs
   ``noise/README.md``), an h11-style state machine with no I/O:

   * bytes read from the transport go into :meth:`~NoiseConnection.receive_data`;
   * :meth:`~NoiseConnection.next_event` returns :class:`HandshakeComplete`, then
     one :class:`Data` per transport frame, or :data:`NEED_DATA`;
   * :meth:`~NoiseConnection.data_to_send` returns handshake bytes to write, and
     :meth:`~NoiseConnection.send` encrypts application bytes and returns the frames
     to write (preceded by any handshake bytes not yet collected, so the initiator's
     third handshake message can never be overtaken by its first transport frame).

   Every Noise message travels as ``uint16_be length || message``. The initiator
   queues message 1 when it is constructed. Each side verifies the peer's
   ``NoiseHandshakePayload`` (identity key, signature over
   ``"noise-libp2p-static-key:" || static X25519 key``, optional expected peer ID)
   before it reports :class:`HandshakeComplete`; nothing the peer sent is exposed
   earlier. Any error moves the connection to :attr:`NoiseState.FAILED` and every
   later call raises :class:`~p2pchat.errors.LocalProtocolError`.

   The transport phase is the hot path: one AEAD object per direction, nonces
   packed with one ``struct`` call, the receive buffer decrypted through a
   ``memoryview`` (no slice copies) and outgoing frames encrypted in place into one
   preallocated ``bytearray``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Final, Literal, NoReturn, TypeAlias

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import DecodeError, LocalProtocolError, ProtocolError, RemoteProtocolError
from ..identity import KeyPair, PeerID, PublicKey
from ..protobuf import WT_LEN, decode_message, encode_bytes_field
from ._need_data import NEED_DATA, NeedData

__all__ = [
    "FRAME_HEADER_LEN",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "MAX_PLAINTEXT_LEN",
    "NEED_DATA",
    "PROTOCOL_ID",
    "PROTOCOL_NAME",
    "STATIC_KEY_SIGNATURE_PREFIX",
    "TAGLEN",
    "CipherState",
    "Data",
    "DecryptionError",
    "HandshakeComplete",
    "HandshakeState",
    "InvalidSignatureError",
    "NoiseConnection",
    "NoiseEvent",
    "NoiseExtensions",
    "NoiseHandshakePayload",
    "NoiseState",
    "NonceExhaustedError",
    "PeerMismatchError",
    "Role",
    "SymmetricState",
    "hkdf",
]

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

# libp2p noise/README.md "Noise Protocol Name" and the multistream protocol id.
PROTOCOL_ID: Final = "/noise"
PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"

# Noise spec section 12 (DH, cipher and hash functions).
DHLEN: Final = 32
HASHLEN: Final = 32
KEYLEN: Final = 32
TAGLEN: Final = 16
# Noise spec 5.1: nonce 2**64-1 is reserved; a CipherState refuses to use it.
MAX_NONCE: Final = 2**64 - 1
# Noise spec 3 and libp2p noise/README.md "Wire Format": a Noise message is at most
# 65535 bytes and travels behind a 2-byte big-endian length.
MAX_MESSAGE_LEN: Final = 65535
MAX_PLAINTEXT_LEN: Final = MAX_MESSAGE_LEN - TAGLEN
FRAME_HEADER_LEN: Final = 2
# libp2p noise/README.md "The libp2p Handshake Payload": signed data prefix.
STATIC_KEY_SIGNATURE_PREFIX: Final = b"noise-libp2p-static-key:"

# NoiseHandshakePayload / NoiseExtensions field numbers (noise/README.md protobuf).
PAYLOAD_IDENTITY_KEY: Final = 1
PAYLOAD_IDENTITY_SIG: Final = 2
PAYLOAD_EXTENSIONS: Final = 4
EXT_WEBTRANSPORT_CERTHASHES: Final = 1
EXT_STREAM_MUXERS: Final = 2

_PAYLOAD_SCHEMA: Final = {
    PAYLOAD_IDENTITY_KEY: WT_LEN,
    PAYLOAD_IDENTITY_SIG: WT_LEN,
    PAYLOAD_EXTENSIONS: WT_LEN,
}
_EXTENSIONS_SCHEMA: Final = {EXT_WEBTRANSPORT_CERTHASHES: WT_LEN, EXT_STREAM_MUXERS: WT_LEN}

CipherName: TypeAlias = Literal["ChaChaPoly", "AESGCM"]

# Noise spec 12.3: ChaChaPoly nonce = 4 zero bytes || 64-bit little-endian counter;
# 12.4: AESGCM nonce = 4 zero bytes || 64-bit big-endian counter.
_NONCE_CHACHA: Final = struct.Struct("<4xQ")
_NONCE_AESGCM: Final = struct.Struct(">4xQ")
_FRAME_HEADER: Final = struct.Struct(">H")
_ZEROLEN: Final = b""


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class NonceExhaustedError(LocalProtocolError):
    """A CipherState reached nonce 2**64-1 and refuses to encrypt or decrypt more.

    The connection has to be closed; reusing a nonce would break the cipher.
    """


class DecryptionError(RemoteProtocolError):
    """An AEAD tag did not verify: tampered, truncated or misordered ciphertext."""


class InvalidSignatureError(RemoteProtocolError):
    """The peer's ``identity_sig`` does not sign its Noise static key."""


class PeerMismatchError(RemoteProtocolError):
    """The peer authenticated as a different peer ID than the one expected."""


# --------------------------------------------------------------------------------------
# Noise framework
# --------------------------------------------------------------------------------------


class CipherState:
    """Noise spec 5.1: a key ``k`` (or none) and a 64-bit nonce ``n``.

    Without a key, encryption and decryption return their input unchanged, as the
    spec requires during the first handshake message.
    """

    __slots__ = ("_aead", "_cipher", "_nonce_pack", "n")

    def __init__(self, key: bytes | None = None, cipher: CipherName = "ChaChaPoly") -> None:
        if cipher == "ChaChaPoly":
            self._nonce_pack = _NONCE_CHACHA.pack
        elif cipher == "AESGCM":
            self._nonce_pack = _NONCE_AESGCM.pack
        else:
            raise ValueError(f"unsupported Noise cipher {cipher!r}")
        self._cipher: CipherName = cipher
        self._aead: ChaCha20Poly1305 | AESGCM | None = None
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        """InitializeKey(key): set ``k`` and reset ``n`` to zero.

        Raises:
            ValueError: ``key`` is not 32 bytes.
        """
        if len(key) != KEYLEN:
            raise ValueError("a Noise cipher key is 32 bytes")
        key = bytes(key)
        self._aead = ChaCha20Poly1305(key) if self._cipher == "ChaChaPoly" else AESGCM(key)
        self.n = 0

    def has_key(self) -> bool:
        """HasKey(): whether ``k`` is set."""
        return self._aead is not None

    def set_nonce(self, nonce: int) -> None:
        """SetNonce(nonce). Also the test hook to bring ``n`` near exhaustion.

        Raises:
            ValueError: ``nonce`` is outside 0..2**64-1.
        """
        if not 0 <= nonce <= MAX_NONCE:
            raise ValueError("a Noise nonce is a 64-bit unsigned integer")
        self.n = nonce

    def encrypt_with_ad(self, ad: bytes | None, plaintext: bytes | bytearray | memoryview) -> bytes:
        """EncryptWithAd(ad, plaintext): ciphertext plus 16-byte tag; ``n`` += 1.

        Raises:
            NonceExhaustedError: ``n`` reached 2**64-1.
        """
        aead = self._aead
        if aead is None:
            return bytes(plaintext)
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhaustedError("Noise nonce exhausted", hint="noise nonce exhausted")
        ciphertext = aead.encrypt(self._nonce_pack(n), plaintext, ad)
        self.n = n + 1
        return ciphertext

    def encrypt_into(
        self, ad: bytes | None, plaintext: bytes | bytearray | memoryview, out: memoryview
    ) -> None:
        """Encrypt into ``out`` (exactly ``len(plaintext) + 16`` bytes); ``n`` += 1.

        The transport fast path: no intermediate ``bytes`` object. Needs a key.

        Raises:
            NonceExhaustedError: ``n`` reached 2**64-1.
        """
        aead = self._aead
        assert aead is not None, "encrypt_into needs a key"
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhaustedError("Noise nonce exhausted", hint="noise nonce exhausted")
        aead.encrypt_into(self._nonce_pack(n), plaintext, ad, out)
        self.n = n + 1

    def decrypt_with_ad(
        self, ad: bytes | None, ciphertext: bytes | bytearray | memoryview
    ) -> bytes:
        """DecryptWithAd(ad, ciphertext): the plaintext; ``n`` += 1 only on success.

        Raises:
            NonceExhaustedError: ``n`` reached 2**64-1.
            DecryptionError: the tag does not verify.
        """
        aead = self._aead
        if aead is None:
            return bytes(ciphertext)
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhaustedError("Noise nonce exhausted", hint="noise nonce exhausted")
        try:
            plaintext = aead.decrypt(self._nonce_pack(n), ciphertext, ad)
        except InvalidTag:
            raise DecryptionError(
                "Noise message failed authentication", hint="noise decrypt failed"
            ) from None
        self.n = n + 1
        return plaintext

    def decrypt_into(
        self, ad: bytes | None, ciphertext: bytes | bytearray | memoryview, out: memoryview
    ) -> int:
        """Like :meth:`decrypt_with_ad`, writing the plaintext into ``out``; returns its size.

        Raises:
            NonceExhaustedError: ``n`` reached 2**64-1.
            DecryptionError: the tag does not verify.
        """
        aead = self._aead
        size = len(ciphertext) - TAGLEN
        if aead is None:
            out[: len(ciphertext)] = ciphertext
            return len(ciphertext)
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhaustedError("Noise nonce exhausted", hint="noise nonce exhausted")
        try:
            aead.decrypt_into(self._nonce_pack(n), ciphertext, ad, out[:size])
        except InvalidTag:
            raise DecryptionError(
                "Noise message failed authentication", hint="noise decrypt failed"
            ) from None
        self.n = n + 1
        return size


def _hash(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _hmac(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def hkdf(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """Noise spec 4.3 HKDF with two outputs (the only arity XX needs)."""
    temp_key = _hmac(chaining_key, input_key_material)
    output1 = _hmac(temp_key, b"\x01")
    output2 = _hmac(temp_key, output1 + b"\x02")
    return output1, output2


class SymmetricState:
    """Noise spec 5.2: chaining key ``ck``, handshake hash ``h`` and a CipherState."""

    __slots__ = ("_cipher", "cipher_state", "ck", "h")

    def __init__(self, protocol_name: bytes, cipher: CipherName = "ChaChaPoly") -> None:
        # InitializeSymmetric(protocol_name)
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self._cipher: CipherName = cipher
        self.cipher_state = CipherState(cipher=cipher)

    def mix_key(self, input_key_material: bytes) -> None:
        """MixKey(ikm): new ``ck`` and cipher key from HKDF."""
        self.ck, temp_k = hkdf(self.ck, input_key_material)
        self.cipher_state.initialize_key(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        """MixHash(data): ``h = HASH(h || data)``."""
        self.h = _hash(self.h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """EncryptAndHash(plaintext).

        Raises:
            NonceExhaustedError: the handshake cipher's nonce is exhausted.
        """
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """DecryptAndHash(ciphertext).

        Raises:
            DecryptionError: the tag does not verify.
            NonceExhaustedError: the handshake cipher's nonce is exhausted.
        """
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Split(): the initiator-to-responder and responder-to-initiator CipherStates."""
        temp_k1, temp_k2 = hkdf(self.ck, _ZEROLEN)
        return (
            CipherState(temp_k1[:KEYLEN], self._cipher),
            CipherState(temp_k2[:KEYLEN], self._cipher),
        )


# Noise spec 7.5: XX:  -> e   <- e, ee, s, es   -> s, se
XX_PATTERN: Final[tuple[tuple[str, ...], ...]] = (
    ("e",),
    ("e", "ee", "s", "es"),
    ("s", "se"),
)


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _as_private_key(key: X25519PrivateKey | bytes) -> X25519PrivateKey:
    if isinstance(key, X25519PrivateKey):
        return key
    return X25519PrivateKey.from_private_bytes(bytes(key))


class HandshakeState:
    """Noise spec 5.3 for ``Noise_XX_25519_<cipher>_SHA256``.

    ``static_key`` is required (both XX parties send one). ``ephemeral_key`` is
    generated on first use unless injected. Messages alternate: the initiator
    writes messages 1 and 3, the responder message 2.

    Raises:
        ValueError: a key given as bytes is not 32 bytes, or ``cipher`` is unknown.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static_key: X25519PrivateKey | bytes,
        ephemeral_key: X25519PrivateKey | bytes | None = None,
        prologue: bytes = b"",
        cipher: CipherName = "ChaChaPoly",
    ) -> None:
        name = b"Noise_XX_25519_" + cipher.encode() + b"_SHA256"
        self._symmetric = SymmetricState(name, cipher)
        self._symmetric.mix_hash(bytes(prologue))
        self.initiator = initiator
        self._s = _as_private_key(static_key)
        self._s_pub = _public_bytes(self._s)
        self._e = None if ephemeral_key is None else _as_private_key(ephemeral_key)
        self._rs: bytes | None = None
        self._re: X25519PublicKey | None = None
        self._message_index = 0

    @property
    def is_complete(self) -> bool:
        """True once all three XX messages were written or read."""
        return self._message_index == len(XX_PATTERN)

    @property
    def handshake_hash(self) -> bytes:
        """The handshake hash ``h`` (channel binding value once complete)."""
        return self._symmetric.h

    @property
    def remote_static(self) -> bytes | None:
        """The peer's 32-byte static X25519 public key, once received."""
        return self._rs

    @property
    def local_static(self) -> bytes:
        """Our 32-byte static X25519 public key."""
        return self._s_pub

    def is_our_turn(self) -> bool:
        """True if the next handshake message is ours to write."""
        return not self.is_complete and (self._message_index % 2 == 0) == self.initiator

    def _dh(self, local: X25519PrivateKey, remote: X25519PublicKey | bytes | None) -> bytes:
        assert remote is not None
        if isinstance(remote, bytes):
            remote = X25519PublicKey.from_public_bytes(remote)
        try:
            return local.exchange(remote)
        except ValueError:
            raise RemoteProtocolError(
                "X25519 with the peer's key gave the all-zero secret", hint="bad noise public key"
            ) from None

    def _mix_dh(self, token: str) -> None:
        # "ee", "es", "se": the first letter is the initiator's key, the second the
        # responder's (Noise spec 5.3, WriteMessage/ReadMessage).
        assert self._e is not None
        local_is_first = self.initiator
        first, second = token[0], token[1]
        mine = first if local_is_first else second
        theirs = second if local_is_first else first
        local = self._e if mine == "e" else self._s
        remote: X25519PublicKey | bytes | None = self._re if theirs == "e" else self._rs
        self._symmetric.mix_key(self._dh(local, remote))

    def write_message(self, payload: bytes = b"") -> bytes:
        """WriteMessage(payload): the next handshake message.

        Raises:
            LocalProtocolError: not our turn, or the message would exceed 65535 bytes.
        """
        if not self.is_our_turn():
            raise LocalProtocolError("not our turn to write a Noise handshake message")
        sym = self._symmetric
        out = bytearray()
        for token in XX_PATTERN[self._message_index]:
            if token == "e":
                if self._e is None:
                    self._e = X25519PrivateKey.generate()
                e_pub = _public_bytes(self._e)
                out += e_pub
                sym.mix_hash(e_pub)
            elif token == "s":
                out += sym.encrypt_and_hash(self._s_pub)
            else:
                self._mix_dh(token)
        out += sym.encrypt_and_hash(bytes(payload))
        if len(out) > MAX_MESSAGE_LEN:
            raise LocalProtocolError("Noise handshake message longer than 65535 bytes")
        self._message_index += 1
        return bytes(out)

    def read_message(self, message: bytes | bytearray | memoryview) -> bytes:
        """ReadMessage(message): the decrypted payload.

        Raises:
            LocalProtocolError: it is our turn to write, not to read.
            DecodeError: the message is too short for the pattern.
            DecryptionError: a ciphertext does not authenticate.
            RemoteProtocolError: the peer's key yields an all-zero DH output.
        """
        if self.is_complete or self.is_our_turn():
            raise LocalProtocolError("not expecting a Noise handshake message")
        sym = self._symmetric
        data = bytes(message)
        pos = 0
        for token in XX_PATTERN[self._message_index]:
            if token in ("e", "s"):
                size = DHLEN if token == "e" or not sym.cipher_state.has_key() else DHLEN + TAGLEN
                if len(data) - pos < size:
                    raise DecodeError(
                        f"Noise handshake message {self._message_index + 1} is truncated",
                        hint="truncated noise handshake",
                    )
                chunk = data[pos : pos + size]
                pos += size
                if token == "e":
                    self._re = X25519PublicKey.from_public_bytes(chunk)
                    sym.mix_hash(chunk)
                else:
                    self._rs = sym.decrypt_and_hash(chunk)
            else:
                self._mix_dh(token)
        rest = data[pos:]
        if sym.cipher_state.has_key() and len(rest) < TAGLEN:
            raise DecodeError(
                f"Noise handshake message {self._message_index + 1} is truncated",
                hint="truncated noise handshake",
            )
        payload = sym.decrypt_and_hash(rest)
        self._message_index += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """Split() after the last message: ``(initiator->responder, responder->initiator)``.

        Raises:
            LocalProtocolError: the handshake is not complete.
        """
        if not self.is_complete:
            raise LocalProtocolError("Noise handshake is not complete")
        return self._symmetric.split()


# --------------------------------------------------------------------------------------
# libp2p handshake payload
# --------------------------------------------------------------------------------------


@attrs.frozen
class NoiseExtensions:
    """``NoiseExtensions`` (noise/README.md "Noise Extensions")."""

    webtransport_certhashes: tuple[bytes, ...] = ()
    stream_muxers: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The protobuf encoding (repeated fields in order)."""
        parts = [
            encode_bytes_field(EXT_WEBTRANSPORT_CERTHASHES, h) for h in self.webtransport_certhashes
        ]
        parts += [encode_bytes_field(EXT_STREAM_MUXERS, m.encode()) for m in self.stream_muxers]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> NoiseExtensions:
        """Decode ``NoiseExtensions``; unknown fields are skipped.

        Raises:
            DecodeError: malformed protobuf or a muxer name that is not UTF-8.
        """
        fields = decode_message(data, _EXTENSIONS_SCHEMA)
        certhashes = tuple(_as_bytes(v) for v in fields.get(EXT_WEBTRANSPORT_CERTHASHES, ()))
        muxers: list[str] = []
        for raw in fields.get(EXT_STREAM_MUXERS, ()):
            try:
                muxers.append(_as_bytes(raw).decode("utf-8"))
            except UnicodeDecodeError:
                raise DecodeError(
                    "stream muxer name is not UTF-8", hint="bad noise extensions"
                ) from None
        return cls(certhashes, tuple(muxers))


def _as_bytes(value: int | bytes) -> bytes:
    # decode_message checked the wire type, so LEN fields are bytes.
    assert isinstance(value, bytes)
    return value


@attrs.frozen
class NoiseHandshakePayload:
    """``NoiseHandshakePayload`` (noise/README.md "The libp2p Handshake Payload")."""

    identity_key: bytes = b""
    identity_sig: bytes = b""
    extensions: NoiseExtensions | None = None

    def encode(self) -> bytes:
        """The protobuf encoding; empty fields are omitted."""
        out = b""
        if self.identity_key:
            out += encode_bytes_field(PAYLOAD_IDENTITY_KEY, self.identity_key)
        if self.identity_sig:
            out += encode_bytes_field(PAYLOAD_IDENTITY_SIG, self.identity_sig)
        if self.extensions is not None:
            out += encode_bytes_field(PAYLOAD_EXTENSIONS, self.extensions.encode())
        return out

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> NoiseHandshakePayload:
        """Decode the payload. Scalar fields: the last occurrence wins; repeated
        ``extensions`` messages merge, as protobuf specifies.

        Raises:
            DecodeError: malformed protobuf or extensions.
        """
        fields = decode_message(data, _PAYLOAD_SCHEMA)
        key = fields.get(PAYLOAD_IDENTITY_KEY, [b""])[-1]
        sig = fields.get(PAYLOAD_IDENTITY_SIG, [b""])[-1]
        ext_parts = fields.get(PAYLOAD_EXTENSIONS)
        extensions = None
        if ext_parts is not None:
            extensions = NoiseExtensions.decode(b"".join(_as_bytes(p) for p in ext_parts))
        return cls(_as_bytes(key), _as_bytes(sig), extensions)


# --------------------------------------------------------------------------------------
# libp2p Noise connection (sans-IO)
# --------------------------------------------------------------------------------------


class Role(enum.Enum):
    """Which side of the XX handshake we play."""

    INITIATOR = "initiator"
    RESPONDER = "responder"


class NoiseState(enum.Enum):
    """States of a :class:`NoiseConnection`."""

    HANDSHAKING = "handshaking"
    TRANSPORT = "transport"
    FAILED = "failed"


@attrs.frozen
class HandshakeComplete:
    """The peer is authenticated; transport data may follow."""

    remote_peer: PeerID
    remote_public_key: PublicKey
    remote_stream_muxers: tuple[str, ...] = ()


@attrs.frozen
class Data:
    """The plaintext of one transport frame."""

    data: bytes


NoiseEvent: TypeAlias = HandshakeComplete | Data


class NoiseConnection:
    """The libp2p Noise secure channel as a state machine over bytes.

    Args:
        role: :attr:`Role.INITIATOR` (we dialed) or :attr:`Role.RESPONDER`.
        identity: our libp2p identity; it signs the static Noise key.
        stream_muxers: muxer protocol ids advertised in the handshake extensions.
        expected_peer: if given, a peer authenticating as anyone else is refused.
        static_key, ephemeral_key, prologue: for test vectors only; production
            generates fresh X25519 keys and uses the empty prologue.
    """

    def __init__(
        self,
        role: Role,
        identity: KeyPair,
        *,
        stream_muxers: Sequence[str] = (),
        expected_peer: PeerID | None = None,
        static_key: X25519PrivateKey | bytes | None = None,
        ephemeral_key: X25519PrivateKey | bytes | None = None,
        prologue: bytes = b"",
    ) -> None:
        if isinstance(stream_muxers, str):
            raise TypeError("stream_muxers is a sequence of protocol ids, not one string")
        self.role = role
        self._identity = identity
        self._stream_muxers = tuple(stream_muxers)
        self._expected_peer = expected_peer
        self._handshake: HandshakeState | None = HandshakeState(
            initiator=role is Role.INITIATOR,
            static_key=static_key if static_key is not None else X25519PrivateKey.generate(),
            ephemeral_key=ephemeral_key,
            prologue=prologue,
        )
        self._state = NoiseState.HANDSHAKING
        # Received bytes live in _inbuf[_in_start:_in_end]; the adapter may read straight
        # into the free tail (receive_buffer / received), sparing a copy per read.
        self._inbuf = bytearray()
        self._in_start = 0
        self._in_end = 0
        self._outbuf = bytearray()
        self._send_cipher: CipherState | None = None
        self._recv_cipher: CipherState | None = None
        self._handshake_hash: bytes | None = None
        self.remote_peer: PeerID | None = None
        self.remote_public_key: PublicKey | None = None
        self.remote_stream_muxers: tuple[str, ...] = ()
        if role is Role.INITIATOR:
            # Message 1: "e" with an empty payload (the initiator MUST NOT send
            # extensions before the channel has secrecy).
            self._queue(self._handshake.write_message(b""))

    # -- public API -----------------------------------------------------------------

    @property
    def state(self) -> NoiseState:
        """HANDSHAKING, TRANSPORT or FAILED."""
        return self._state

    @property
    def handshake_hash(self) -> bytes | None:
        """The Noise handshake hash once the handshake is complete, else None."""
        return self._handshake_hash

    @property
    def buffered_bytes(self) -> int:
        """How many received bytes wait to be parsed."""
        return self._in_end - self._in_start

    def has_partial_frame(self) -> bool:
        """True if received bytes wait for the rest of their frame (an end of stream now
        would cut a frame short)."""
        return self._in_end > self._in_start

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes read from the transport; :meth:`next_event` parses them.

        Raises:
            LocalProtocolError: the connection has failed.
        """
        size = len(data)
        with self.receive_buffer(size) as view:
            view[:size] = data
        self.received(size)

    def receive_buffer(self, size: int) -> memoryview:
        """A writable view of ``size`` free bytes at the end of the receive buffer.

        For adapters that read with ``recv_into``: write at most ``size`` bytes into it,
        release the view, then call :meth:`received` with the count. Unparsed bytes are
        moved to the front (or into a larger buffer) only when the tail is too short.

        Raises:
            LocalProtocolError: the connection has failed.
        """
        if self._state is NoiseState.FAILED:
            self._raise_failed()
        buf = self._inbuf
        if len(buf) - self._in_end < size:
            pending = self._in_end - self._in_start
            if pending + size > len(buf):
                grown = bytearray(pending + size)
                grown[:pending] = buf[self._in_start : self._in_end]
                self._inbuf = buf = grown
            else:
                buf[:pending] = buf[self._in_start : self._in_end]
            self._in_start, self._in_end = 0, pending
        return memoryview(buf)[self._in_end : self._in_end + size]

    def received(self, count: int) -> None:
        """Record that ``count`` bytes were written into the last :meth:`receive_buffer`.

        Raises:
            LocalProtocolError: ``count`` is negative or exceeds the free space.
        """
        if not 0 <= count <= len(self._inbuf) - self._in_end:
            raise LocalProtocolError("received() count exceeds the receive buffer")
        self._in_end += count

    def data_to_send(self) -> bytes:
        """Handshake bytes waiting to be written (possibly empty).

        Raises:
            LocalProtocolError: the connection has failed.
        """
        if self._state is NoiseState.FAILED:
            self._raise_failed()
        out = bytes(self._outbuf)
        self._outbuf.clear()
        return out

    def next_event(self) -> HandshakeComplete | Data | NeedData:
        """The next event from buffered bytes, or :data:`NEED_DATA`.

        Handshake messages that need a reply queue it for :meth:`data_to_send`.

        Raises:
            DecodeError: a malformed handshake message or payload.
            DecryptionError: a message failed authentication.
            InvalidSignatureError: the peer's static key signature is invalid.
            PeerMismatchError: the peer is not ``expected_peer``.
            NonceExhaustedError: 2**64-1 messages were received.
            LocalProtocolError: the connection had already failed.
        """
        recv = self._recv_cipher
        if recv is not None:
            # Transport fast path.
            buf = self._inbuf
            start = self._in_start
            available = self._in_end - start
            if available < FRAME_HEADER_LEN:
                return NEED_DATA
            length = (buf[start] << 8) | buf[start + 1]
            if available < FRAME_HEADER_LEN + length:
                return NEED_DATA
            body = start + FRAME_HEADER_LEN
            try:
                with memoryview(buf) as view:
                    plaintext = recv.decrypt_with_ad(None, view[body : body + length])
            except ProtocolError:
                self._fail()
                raise
            self._in_start = body + length
            return Data(plaintext)
        if self._state is NoiseState.FAILED:
            self._raise_failed()
        try:
            return self._next_handshake_event()
        except ProtocolError:
            self._fail()
            raise

    def read_into(self, out: bytearray | memoryview) -> int:
        """Decrypt whole buffered transport frames into ``out``, as many as fit, in order.

        Returns the number of plaintext bytes written: 0 when no whole frame is buffered
        or the next one does not fit (then use :meth:`next_event`). Faster than one
        :class:`Data` event per frame for bulk reads.

        Raises:
            DecryptionError: a frame failed authentication.
            NonceExhaustedError: 2**64-1 messages were received.
            LocalProtocolError: the handshake is not complete or the connection failed.
        """
        recv = self._recv_cipher
        if recv is None:
            if self._state is NoiseState.FAILED:
                self._raise_failed()
            raise LocalProtocolError("no transport data before the handshake completes")
        buf = self._inbuf
        start, end = self._in_start, self._in_end
        written = 0
        room = len(out)
        with memoryview(buf) as view, memoryview(out) as target:
            while end - start >= FRAME_HEADER_LEN:
                length = (buf[start] << 8) | buf[start + 1]
                body = start + FRAME_HEADER_LEN
                if body + length > end or length - TAGLEN > room - written:
                    break
                try:
                    written += recv.decrypt_into(None, view[body : body + length], target[written:])
                except ProtocolError:
                    self._fail()
                    raise
                start = body + length
        self._in_start = start
        return written

    def send(self, data: bytes | bytearray | memoryview) -> bytearray:
        """Encrypt ``data`` into frames of at most 65535 bytes; return the bytes to write.

        Any handshake bytes not yet taken by :meth:`data_to_send` come first. Empty
        ``data`` produces no frame.

        Raises:
            LocalProtocolError: the handshake is not complete or the connection failed.
            NonceExhaustedError: 2**64-1 messages were sent.
        """
        view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        chunks = [view[i : i + MAX_PLAINTEXT_LEN] for i in range(0, len(view), MAX_PLAINTEXT_LEN)]
        return self._seal(chunks)

    def send_packed(self, units: Sequence[Sequence[bytes | bytearray | memoryview]]) -> bytearray:
        """Encrypt ``units`` (each a sequence of buffers meant to stay together, such as a
        muxer frame's header and body) so that no unit that fits in one Noise message is split
        across two. Units larger than a message are split as :meth:`send` splits data.

        Raises:
            LocalProtocolError: the handshake is not complete or the connection failed.
            NonceExhaustedError: 2**64-1 messages were sent.
        """
        chunks: list[bytes | bytearray | memoryview] = []
        current = bytearray()
        for unit in units:
            size = sum(len(part) for part in unit)
            if current and len(current) + size > MAX_PLAINTEXT_LEN:
                chunks.append(current)
                current = bytearray()
            for part in unit:
                current += part
            while len(current) > MAX_PLAINTEXT_LEN:
                chunks.append(current[:MAX_PLAINTEXT_LEN])
                del current[:MAX_PLAINTEXT_LEN]
        if current:
            chunks.append(current)
        return self._seal(chunks)

    def _seal(self, chunks: Sequence[bytes | bytearray | memoryview]) -> bytearray:
        """Encrypt each chunk (at most 65519 bytes) into one framed Noise message."""
        cipher = self._send_cipher
        if cipher is None:
            if self._state is NoiseState.FAILED:
                self._raise_failed()
            raise LocalProtocolError("cannot send application data before the handshake completes")
        pending = self._outbuf
        pending_len = len(pending)
        total = sum(len(chunk) for chunk in chunks)
        out = bytearray(pending_len + total + len(chunks) * (FRAME_HEADER_LEN + TAGLEN))
        if pending_len:
            out[:pending_len] = pending
            pending.clear()
        out_view = memoryview(out)
        pack_header = _FRAME_HEADER.pack_into
        pos = pending_len
        try:
            for chunk in chunks:
                size = len(chunk) + TAGLEN
                pack_header(out, pos, size)
                pos += FRAME_HEADER_LEN
                cipher.encrypt_into(None, chunk, out_view[pos : pos + size])
                pos += size
        except ProtocolError:
            self._fail()
            raise
        finally:
            out_view.release()
        return out

    def set_nonces_for_testing(
        self, *, send: int | None = None, receive: int | None = None
    ) -> None:
        """Test hook: set the transport nonces (to exercise nonce exhaustion).

        Raises:
            LocalProtocolError: the connection is not in the transport phase.
        """
        if self._send_cipher is None or self._recv_cipher is None:
            raise LocalProtocolError("nonces exist only in the transport phase")
        if send is not None:
            self._send_cipher.set_nonce(send)
        if receive is not None:
            self._recv_cipher.set_nonce(receive)

    # -- internals ------------------------------------------------------------------

    def _raise_failed(self) -> NoReturn:
        raise LocalProtocolError("the Noise connection has failed", hint="noise failed")

    def _fail(self) -> None:
        self._state = NoiseState.FAILED
        self._send_cipher = None
        self._recv_cipher = None
        self._handshake = None
        # New objects rather than clear(): a traceback may still hold a view of the old.
        self._inbuf = bytearray()
        self._in_start = self._in_end = 0
        self._outbuf = bytearray()

    def _queue(self, message: bytes) -> None:
        self._outbuf += _FRAME_HEADER.pack(len(message))
        self._outbuf += message

    def _take_frame(self) -> bytes | None:
        buf = self._inbuf
        start = self._in_start
        available = self._in_end - start
        if available < FRAME_HEADER_LEN:
            return None
        end = start + FRAME_HEADER_LEN + ((buf[start] << 8) | buf[start + 1])
        if end > self._in_end:
            return None
        frame = bytes(buf[start + FRAME_HEADER_LEN : end])
        self._in_start = end
        return frame

    def _next_handshake_event(self) -> HandshakeComplete | Data | NeedData:
        handshake = self._handshake
        assert handshake is not None
        while True:
            frame = self._take_frame()
            if frame is None:
                return NEED_DATA
            payload = handshake.read_message(frame)
            if handshake.initiator:
                # Message 2: authenticate the responder, then answer with message 3.
                event = self._authenticate(handshake, payload)
                self._queue(handshake.write_message(self._our_payload(handshake)))
                break
            if handshake.is_complete:
                # Message 3: authenticate the initiator.
                event = self._authenticate(handshake, payload)
                break
            # Message 1 has no libp2p payload; whatever it carries is unauthenticated
            # and ignored. Answer with message 2: e, ee, s, es + our payload.
            self._queue(handshake.write_message(self._our_payload(handshake)))
        self._enter_transport(handshake)
        return event

    def _our_payload(self, handshake: HandshakeState) -> bytes:
        signature = self._identity.sign(STATIC_KEY_SIGNATURE_PREFIX + handshake.local_static)
        extensions = (
            NoiseExtensions(stream_muxers=self._stream_muxers) if self._stream_muxers else None
        )
        return NoiseHandshakePayload(
            identity_key=self._identity.public_key.to_protobuf(),
            identity_sig=signature,
            extensions=extensions,
        ).encode()

    def _authenticate(self, handshake: HandshakeState, payload: bytes) -> HandshakeComplete:
        decoded = NoiseHandshakePayload.decode(payload)
        if not decoded.identity_key:
            raise DecodeError("Noise handshake payload has no identity key", hint="no identity key")
        if not decoded.identity_sig:
            raise DecodeError(
                "Noise handshake payload has no identity signature", hint="no identity signature"
            )
        public_key = PublicKey.from_protobuf(decoded.identity_key)
        remote_static = handshake.remote_static
        assert remote_static is not None
        if not public_key.verify(decoded.identity_sig, STATIC_KEY_SIGNATURE_PREFIX + remote_static):
            raise InvalidSignatureError(
                "the peer's identity signature does not cover its Noise static key",
                hint="bad noise identity signature",
            )
        peer = PeerID.from_public_key(public_key)
        if self._expected_peer is not None and peer != self._expected_peer:
            raise PeerMismatchError(
                f"expected peer {self._expected_peer}, but the remote authenticated as {peer}",
                hint="peer id mismatch",
            )
        muxers = decoded.extensions.stream_muxers if decoded.extensions is not None else ()
        self.remote_peer = peer
        self.remote_public_key = public_key
        self.remote_stream_muxers = muxers
        return HandshakeComplete(peer, public_key, muxers)

    def _enter_transport(self, handshake: HandshakeState) -> None:
        initiator_to_responder, responder_to_initiator = handshake.split()
        if handshake.initiator:
            self._send_cipher, self._recv_cipher = initiator_to_responder, responder_to_initiator
        else:
            self._send_cipher, self._recv_cipher = responder_to_initiator, initiator_to_responder
        self._handshake_hash = handshake.handshake_hash
        self._handshake = None
        self._state = NoiseState.TRANSPORT
