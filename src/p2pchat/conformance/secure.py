"""multistream-select and the Noise XX handshake as the initiator, with faults on request.

Built from the sans-IO cores (:mod:`p2pchat.protocols.multistream`,
:mod:`p2pchat.protocols.noise`): the handshake state and the payload codec are ours, so a case can
put any payload in message 3 (a bad signature, a key that signs another static key) or send the
messages out of order, and see what the target does.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, Protocol

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..errors import ProtocolError
from ..identity import KeyPair, PeerID, PublicKey
from ..protocols import multistream as ms
from ..protocols.noise import (
    MAX_PLAINTEXT_LEN,
    PROTOCOL_ID,
    STATIC_KEY_SIGNATURE_PREFIX,
    CipherState,
    HandshakeState,
    NoiseExtensions,
    NoiseHandshakePayload,
)
from .registry import ViolationError
from .transport import PeerClosedError, RawConnection, Transcript, hexpreview

__all__ = ["NoiseFault", "SecureChannel", "expect_rejected", "negotiate", "noise_handshake"]

_LENGTH: Final = struct.Struct(">H")


class Pipe(Protocol):
    """A byte stream to negotiate on: the raw connection or the Noise channel."""

    transcript: Transcript

    async def send(self, data: bytes | bytearray) -> None: ...
    async def receive_some(self) -> bytes: ...
    async def receive_exactly(self, count: int) -> bytes: ...
    def unreceive(self, data: bytes) -> None: ...


async def negotiate(conn: Pipe, protocols: list[str], *, pipelined: bool = True) -> str | None:
    """Propose ``protocols`` with multistream-select on ``conn``; the agreed one, or ``None``
    when the target answered ``na`` to all. Bytes after the agreement stay in ``conn``.

    Raises:
        ViolationError: the target broke multistream-select.
        PeerClosedError: the target closed.
    """
    dialer = ms.Dialer(protocols)
    out = dialer.data_to_send()
    if not pipelined:
        header = ms.encode_message(ms.MULTISTREAM_ID)
        await conn.send(header)
        out = out[len(header) :]
        await _expect_header(conn)
        dialer.receive_data(ms.encode_message(ms.MULTISTREAM_ID))
    conn.transcript.sent(f"multistream {' '.join(protocols)}")
    await conn.send(out)
    while True:
        try:
            event = dialer.next_event()
        except ProtocolError as exc:
            raise ViolationError(f"multistream-select: {exc}") from exc
        await conn.send(dialer.data_to_send())
        if isinstance(event, ms.ProtocolAgreed):
            conn.transcript.received(f"multistream agreed {event.protocol}")
            conn.unreceive(dialer.trailing_data())
            return event.protocol
        if isinstance(event, ms.NegotiationFailed):
            conn.transcript.received("multistream na")
            return None
        dialer.receive_data(await conn.receive_some())


async def _expect_header(conn: Pipe) -> None:
    data = await conn.receive_exactly(1 + len(ms.MULTISTREAM_ID) + 1)
    if data != ms.encode_message(ms.MULTISTREAM_ID):
        raise ViolationError(f"expected the multistream header, got {hexpreview(data)}")


class NoiseFault(enum.Enum):
    """What we do wrong in the handshake."""

    NONE = "none"
    #: Message 3 carries an identity signature that does not verify.
    BAD_SIGNATURE = "bad-signature"
    #: The identity key validly signs a static key other than the one in the handshake.
    OTHER_STATIC_KEY = "other-static-key"
    #: A second message 1 in place of message 3.
    OUT_OF_ORDER = "out-of-order"


class SecureChannel:
    """Noise transport messages over the raw connection, after :func:`noise_handshake`."""

    def __init__(
        self,
        conn: RawConnection,
        send_cipher: CipherState,
        receive_cipher: CipherState,
        remote_peer: PeerID,
        remote_key: PublicKey,
        remote_muxers: tuple[str, ...],
    ) -> None:
        self.raw = conn
        self._send = send_cipher
        self._receive = receive_cipher
        self.remote_peer = remote_peer
        self.remote_key = remote_key
        self.remote_muxers = remote_muxers
        self.transcript = conn.transcript
        self._plaintext = bytearray()

    async def send(self, plaintext: bytes | bytearray) -> None:
        """Encrypt and write ``plaintext`` in messages of at most 65535 bytes.

        Raises:
            PeerClosedError: the target closed.
        """
        out = bytearray()
        view = memoryview(plaintext)
        for start in range(0, len(view), MAX_PLAINTEXT_LEN):
            sealed = self._send.encrypt_with_ad(None, view[start : start + MAX_PLAINTEXT_LEN])
            out += _LENGTH.pack(len(sealed)) + sealed
        await self.raw.send(out)

    async def send_message(self, sealed_length: int, tamper: bool = False) -> None:
        """Write one transport message of exactly ``sealed_length`` bytes (zeros inside), with
        one ciphertext bit flipped if ``tamper``.

        Raises:
            PeerClosedError: the target closed.
        """
        sealed = bytearray(self._send.encrypt_with_ad(None, bytes(sealed_length - 16)))
        if tamper:
            sealed[0] ^= 0x01
        await self.raw.send(_LENGTH.pack(len(sealed)) + sealed)

    async def receive_some(self) -> bytes:
        """Buffered plaintext, else the next transport message's.

        Raises:
            PeerClosedError: the target closed.
            ViolationError: the message does not decrypt.
        """
        if not self._plaintext:
            return await self.receive()
        data = bytes(self._plaintext)
        self._plaintext.clear()
        return data

    async def receive_exactly(self, count: int) -> bytes:
        """Exactly ``count`` plaintext bytes.

        Raises:
            PeerClosedError: the target closed.
            ViolationError: a message does not decrypt.
        """
        while len(self._plaintext) < count:
            self._plaintext += await self.receive()
        data = bytes(self._plaintext[:count])
        del self._plaintext[:count]
        return data

    def unreceive(self, data: bytes) -> None:
        """Put plaintext back in front of the buffer."""
        self._plaintext[:0] = data

    def take_buffered(self) -> bytes:
        """The buffered plaintext, removed from the buffer."""
        data = bytes(self._plaintext)
        self._plaintext.clear()
        return data

    async def receive(self) -> bytes:
        """The plaintext of the next transport message.

        Raises:
            PeerClosedError: the target closed.
            ViolationError: the message does not decrypt.
        """
        length = _LENGTH.unpack(await self.raw.receive_exactly(2))[0]
        sealed = await self.raw.receive_exactly(length)
        try:
            return self._receive.decrypt_with_ad(None, sealed)
        except ProtocolError as exc:
            raise ViolationError(f"a Noise transport message from the target: {exc}") from exc


async def noise_handshake(
    conn: RawConnection,
    identity: KeyPair,
    *,
    expected_peer: PeerID | None = None,
    muxers: tuple[str, ...] = (),
    fault: NoiseFault = NoiseFault.NONE,
) -> SecureChannel:
    """Negotiate ``/noise`` and run XX as the initiator, doing ``fault`` wrong.

    Raises:
        ViolationError: the target does not speak ``/noise``, or its messages are wrong (a bad
            signature, another peer than ``expected_peer``).
        PeerClosedError: the target closed during the handshake.
    """
    if await negotiate(conn, [PROTOCOL_ID]) is None:
        raise ViolationError("the target answered na to /noise")
    state = HandshakeState(initiator=True, static_key=X25519PrivateKey.generate())
    await _send_frame(conn, state.write_message(b""), "noise message 1 (e)")
    length = _LENGTH.unpack(await conn.receive_exactly(2))[0]
    message2 = await conn.receive_exactly(length)
    conn.transcript.received(f"noise message 2 ({length} bytes)")
    try:
        payload = NoiseHandshakePayload.decode(state.read_message(message2))
        remote_static = state.remote_static
        assert remote_static is not None
        peer, key = payload.authenticate(remote_static, expected_peer)
    except ProtocolError as exc:
        raise ViolationError(f"noise message 2 from the target: {exc}") from exc
    if fault is NoiseFault.OUT_OF_ORDER:
        again = HandshakeState(initiator=True, static_key=X25519PrivateKey.generate())
        await _send_frame(conn, again.write_message(b""), "noise message 1 again")
    else:
        ours = _payload(identity, state.local_static, muxers, fault)
        await _send_frame(
            conn, state.write_message(ours.encode()), f"noise message 3 ({fault.value})"
        )
    if fault is NoiseFault.OUT_OF_ORDER:
        # Keep the handshake state consistent for callers that only watch for the close.
        state.write_message(b"")
    send, receive = state.split()
    return SecureChannel(conn, send, receive, peer, key, payload.stream_muxers)


def _payload(
    identity: KeyPair, static: bytes, muxers: tuple[str, ...], fault: NoiseFault
) -> NoiseHandshakePayload:
    extensions = NoiseExtensions(stream_muxers=muxers) if muxers else None
    signed = static
    if fault is NoiseFault.OTHER_STATIC_KEY:
        other = X25519PrivateKey.generate().public_key().public_bytes_raw()
        signed = other
    signature = identity.sign(STATIC_KEY_SIGNATURE_PREFIX + signed)
    if fault is NoiseFault.BAD_SIGNATURE:
        signature = bytes([signature[0] ^ 0x80]) + signature[1:]
    return NoiseHandshakePayload(identity.public_key.to_protobuf(), signature, extensions)


async def _send_frame(conn: RawConnection, message: bytes, what: str) -> None:
    conn.transcript.sent(what)
    await conn.send(_LENGTH.pack(len(message)) + message)


async def expect_rejected(channel: SecureChannel, seconds: float) -> str:
    """After a faulty handshake the target must refuse us: close the connection and send no
    transport message that decrypts. Returns how it closed.

    Raises:
        ViolationError: a transport message decrypted (the target accepted us), or the connection
            was still open after ``seconds``.
    """
    with trio.move_on_after(seconds):
        try:
            await channel.send(ms.encode_message(ms.MULTISTREAM_ID))
            while True:
                try:
                    plaintext = await channel.receive()
                except ViolationError:
                    continue  # not for our keys: the target did not take our handshake
                raise ViolationError(
                    "the target accepted the handshake: it sent a transport message "
                    f"({hexpreview(plaintext)})"
                )
        except PeerClosedError as closed:
            return "reset the connection" if closed.reset else "closed the connection"
    raise ViolationError(f"the connection was still open {seconds:g} s after the handshake")
