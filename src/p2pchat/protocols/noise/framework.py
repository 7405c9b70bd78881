"""The Noise Protocol Framework (noiseprotocol.org, revision 34), limited to what libp2p needs.

:class:`CipherState` (section 5.1), :class:`SymmetricState` (5.2) and :class:`HandshakeState`
(5.3) for the ``XX`` pattern (7.5) over X25519 and SHA-256, with ChaChaPoly and, so the AESGCM
test vectors can be used, AESGCM. Static and ephemeral private keys and the prologue can be
injected, which is how the official vectors are replayed byte for byte. Nothing here knows
about libp2p: the handshake payload is opaque bytes (see :mod:`.payload`), and framing the
messages on a stream is :mod:`.connection`'s business.
"""

from __future__ import annotations

import struct
from typing import Final, Literal, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ...errors import DecodeError, LocalProtocolError, RemoteProtocolError

__all__ = [
    "DHLEN",
    "HASHLEN",
    "KEYLEN",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "MAX_PLAINTEXT_LEN",
    "TAGLEN",
    "XX_PATTERN",
    "CipherName",
    "CipherState",
    "DecryptionError",
    "HandshakeState",
    "NonceExhaustedError",
    "SymmetricState",
    "hkdf",
]

# Noise spec section 12 (DH, cipher and hash functions).
DHLEN: Final = 32
HASHLEN: Final = 32
KEYLEN: Final = 32
TAGLEN: Final = 16
# Noise spec 5.1: nonce 2**64-1 is reserved; a CipherState refuses to use it.
MAX_NONCE: Final = 2**64 - 1
# Noise spec 3: a Noise message is at most 65535 bytes, so a transport message carries at
# most that less the tag.
MAX_MESSAGE_LEN: Final = 65535
MAX_PLAINTEXT_LEN: Final = MAX_MESSAGE_LEN - TAGLEN

CipherName: TypeAlias = Literal["ChaChaPoly", "AESGCM"]

# Noise spec 12.3: ChaChaPoly nonce = 4 zero bytes || 64-bit little-endian counter;
# 12.4: AESGCM nonce = 4 zero bytes || 64-bit big-endian counter.
_NONCE_CHACHA: Final = struct.Struct("<4xQ")
_NONCE_AESGCM: Final = struct.Struct(">4xQ")
_ZEROLEN: Final = b""


class NonceExhaustedError(LocalProtocolError):
    """A CipherState reached nonce 2**64-1 and refuses to encrypt or decrypt more.

    The connection has to be closed; reusing a nonce would break the cipher.
    """


class DecryptionError(RemoteProtocolError):
    """An AEAD tag did not verify: tampered, truncated or misordered ciphertext."""


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
