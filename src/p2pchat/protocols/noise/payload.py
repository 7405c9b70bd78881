"""The libp2p Noise handshake payload (libp2p/specs ``noise/README.md``, "The libp2p Handshake
Payload" and "Noise Extensions"): its protobuf, and the signature that binds a libp2p identity to
a Noise static key.

:meth:`NoiseHandshakePayload.sign` makes ours; :meth:`NoiseHandshakePayload.authenticate`
checks the peer's against the static key the handshake delivered and, when given, the peer ID
we expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from ...errors import DecodeError, HandshakeError, RemoteProtocolError
from ...identity import KeyPair, PeerID, PublicKey
from ...protobuf import WT_LEN, decode_message, encode_bytes_field

__all__ = [
    "STATIC_KEY_SIGNATURE_PREFIX",
    "InvalidSignatureError",
    "NoiseExtensions",
    "NoiseHandshakePayload",
    "PeerMismatchError",
]

# noise/README.md "The libp2p Handshake Payload": signed data prefix.
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


class InvalidSignatureError(RemoteProtocolError):
    """The peer's ``identity_sig`` does not sign its Noise static key."""


class PeerMismatchError(HandshakeError, RemoteProtocolError):
    """The peer authenticated as a different peer ID than the one expected.

    The one class for this failure at every layer: the core raises it (a
    :class:`~p2pchat.errors.RemoteProtocolError`, hint ``"peer id mismatch"``) and the secure
    stream lets it through, so it is also a :class:`~p2pchat.errors.HandshakeError` whose
    ``reason`` is the message.
    """

    def __init__(self, msg: str, *, hint: str = "peer id mismatch") -> None:
        RemoteProtocolError.__init__(self, msg, hint=hint)
        self.reason = msg


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

    @classmethod
    def sign(
        cls, identity: KeyPair, static_key: bytes, stream_muxers: Sequence[str] = ()
    ) -> NoiseHandshakePayload:
        """Our payload: ``identity``'s public key, its signature over
        ``"noise-libp2p-static-key:" || static_key`` (our static X25519 public key), and the
        muxers to advertise (no extensions when there are none)."""
        extensions = NoiseExtensions(stream_muxers=tuple(stream_muxers)) if stream_muxers else None
        return cls(
            identity_key=identity.public_key.to_protobuf(),
            identity_sig=identity.sign(STATIC_KEY_SIGNATURE_PREFIX + static_key),
            extensions=extensions,
        )

    def authenticate(
        self, remote_static: bytes, expected_peer: PeerID | None = None
    ) -> tuple[PeerID, PublicKey]:
        """The peer this payload authenticates, given the static key the handshake delivered.

        Raises:
            DecodeError: no identity key or signature, or an identity key that is malformed.
            InvalidSignatureError: the signature does not cover ``remote_static``.
            PeerMismatchError: the peer is not ``expected_peer``.
        """
        if not self.identity_key:
            raise DecodeError("Noise handshake payload has no identity key", hint="no identity key")
        if not self.identity_sig:
            raise DecodeError(
                "Noise handshake payload has no identity signature", hint="no identity signature"
            )
        public_key = PublicKey.from_protobuf(self.identity_key)
        if not public_key.verify(self.identity_sig, STATIC_KEY_SIGNATURE_PREFIX + remote_static):
            raise InvalidSignatureError(
                "the peer's identity signature does not cover its Noise static key",
                hint="bad noise identity signature",
            )
        peer = PeerID.from_public_key(public_key)
        if expected_peer is not None and peer != expected_peer:
            raise PeerMismatchError(
                f"expected peer {expected_peer}, but the remote authenticated as {peer}"
            )
        return peer, public_key

    @property
    def stream_muxers(self) -> tuple[str, ...]:
        """The muxers the extensions advertise (none without extensions)."""
        return self.extensions.stream_muxers if self.extensions is not None else ()
