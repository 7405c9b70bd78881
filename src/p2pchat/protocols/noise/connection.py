"""The libp2p Noise secure channel (libp2p/specs ``noise/README.md``), a state machine without I/O.

Theory of operation
-------------------
:class:`NoiseConnection` drives a :class:`~.framework.HandshakeState` in the manner of h11:

* bytes read from the transport go into :meth:`~NoiseConnection.receive_data`;
* :meth:`~NoiseConnection.next_event` returns :class:`HandshakeComplete`, then one
  :class:`Data` per transport frame, or :data:`NEED_DATA`;
* :meth:`~NoiseConnection.data_to_send` returns handshake bytes to write, and
  :meth:`~NoiseConnection.send` encrypts application bytes and returns the frames to write
  (preceded by any handshake bytes not yet collected, so the initiator's third handshake
  message can never be overtaken by its first transport frame).

Every Noise message travels as ``uint16_be length || message``. The initiator queues message 1
when it is constructed. Each side verifies the peer's handshake payload (:mod:`.payload`:
identity key, signature over ``"noise-libp2p-static-key:" || static X25519 key``, optional
expected peer ID) before it reports :class:`HandshakeComplete`; nothing the peer sent is exposed
earlier. Any error moves the connection to :attr:`NoiseState.FAILED` and every later call
raises :class:`~p2pchat.errors.LocalProtocolError`.

The transport phase is the hot path: one AEAD object per direction, nonces packed with one
``struct`` call, the receive buffer decrypted through a ``memoryview`` (no slice copies) and
outgoing frames encrypted in place into one preallocated ``bytearray``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Final, NoReturn, TypeAlias

import attrs
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ...errors import LocalProtocolError, ProtocolError
from ...identity import KeyPair, PeerID, PublicKey
from .._need_data import NEED_DATA, NeedData
from .framework import MAX_PLAINTEXT_LEN, TAGLEN, CipherState, HandshakeState
from .payload import NoiseHandshakePayload

__all__ = [
    "FRAME_HEADER_LEN",
    "NEED_DATA",
    "PROTOCOL_ID",
    "PROTOCOL_NAME",
    "Data",
    "HandshakeComplete",
    "NoiseConnection",
    "NoiseEvent",
    "NoiseState",
    "Role",
]

# libp2p noise/README.md "Noise Protocol Name" and the multistream protocol id.
PROTOCOL_ID: Final = "/noise"
PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"
# libp2p noise/README.md "Wire Format": each Noise message behind a 2-byte big-endian length.
FRAME_HEADER_LEN: Final = 2

_FRAME_HEADER: Final = struct.Struct(">H")


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
        recv = self._transport_recv_cipher()
        self._in_start, written = self._open_run(
            recv, self._inbuf, self._in_start, self._in_end, out
        )
        return written

    def whole_frames_plaintext(self, limit: int) -> int:
        """Plaintext bytes in the leading whole buffered frames, counting frames while the
        total stays within ``limit``: what :meth:`take_frames` would detach."""
        return self._whole_run(limit)[1]

    def take_frames(self, limit: int) -> bytes:
        """Detach the leading whole frames whose plaintexts total at most ``limit`` bytes.

        Returns them, framing included, as one buffer for :meth:`open_frames` (``b""`` when
        no frame qualifies). The bytes leave the receive buffer, so the adapter may go on
        receiving into it while another thread decrypts the batch. A detached batch must go
        to :meth:`open_frames` before any later frame is decrypted (nonces are sequential).

        Raises:
            LocalProtocolError: the handshake is not complete or the connection failed.
        """
        self._transport_recv_cipher()
        start = self._in_start
        self._in_start = end = self._whole_run(limit)[0]
        return bytes(self._inbuf[start:end])

    def _whole_run(self, limit: int) -> tuple[int, int]:
        buf = self._inbuf
        pos, end = self._in_start, self._in_end
        total = 0
        while end - pos >= FRAME_HEADER_LEN:
            length = (buf[pos] << 8) | buf[pos + 1]
            body = pos + FRAME_HEADER_LEN
            size = max(length - TAGLEN, 0)
            if body + length > end or total + size > limit:
                break
            total += size
            pos = body + length
        return pos, total

    def open_frames(self, frames: bytes | bytearray | memoryview, out: bytearray) -> int:
        """Decrypt a batch from :meth:`take_frames` into ``out``; return the plaintext size.

        Safe to run in a worker thread while the owner receives into the buffer, as long as
        no other call decrypts meanwhile.

        Raises:
            DecryptionError: a frame failed authentication.
            NonceExhaustedError: 2**64-1 messages were received.
            LocalProtocolError: ``out`` is too small for the batch, the handshake is not
                complete, or the connection failed.
        """
        recv = self._transport_recv_cipher()
        end = len(frames)
        with memoryview(frames) as view:
            done, written = self._open_run(recv, view, 0, end, out)
        if done != end:
            self._fail()
            raise LocalProtocolError("open_frames: not a whole batch from take_frames")
        return written

    def _transport_recv_cipher(self) -> CipherState:
        recv = self._recv_cipher
        if recv is None:
            if self._state is NoiseState.FAILED:
                self._raise_failed()
            raise LocalProtocolError("no transport data before the handshake completes")
        return recv

    def _open_run(
        self,
        recv: CipherState,
        buf: bytearray | memoryview,
        start: int,
        end: int,
        out: bytearray | memoryview,
    ) -> tuple[int, int]:
        """Decrypt whole frames of ``buf[start:end]`` into ``out`` while they fit; return
        the position after the last one and the plaintext size."""
        written = 0
        room = len(out)
        with memoryview(buf) as view, memoryview(out) as target:
            while end - start >= FRAME_HEADER_LEN:
                length = (view[start] << 8) | view[start + 1]
                body = start + FRAME_HEADER_LEN
                if body + length > end or length - TAGLEN > room - written:
                    break
                try:
                    written += recv.decrypt_into(None, view[body : body + length], target[written:])
                except ProtocolError:
                    self._fail()
                    raise
                start = body + length
        return start, written

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
        out = self._seal(chunks)
        assert isinstance(out, bytearray)  # no ``into``: a new buffer of the exact size
        return out

    def send_gather(
        self, parts: Sequence[bytes | bytearray | memoryview], into: bytearray | None = None
    ) -> bytearray | memoryview:
        """Encrypt the concatenation of ``parts`` exactly as :meth:`send` encrypts one buffer
        (full 65519-byte messages, the last one shorter), without joining the parts first.

        A message that lies within one part (a large body) is encrypted from it directly; only
        one that spans parts (such as a muxer frame's header and the start of its body) is
        gathered, into a buffer of at most one message. If ``into`` is large enough, the frames
        are written there and a view of them is returned (valid until ``into`` is reused);
        otherwise into a new buffer.

        Raises:
            LocalProtocolError: the handshake is not complete or the connection failed.
            NonceExhaustedError: 2**64-1 messages were sent.
        """
        total = sum(map(len, parts))
        if total <= MAX_PLAINTEXT_LEN:  # one message (pings, queries, chat messages)
            if not total:
                return self._seal([], into)
            return self._seal([parts[0] if len(parts) == 1 else b"".join(parts)], into)
        views = [
            memoryview(part).cast("B") if isinstance(part, memoryview) else memoryview(part)
            for part in parts
            if len(part)
        ]
        chunks: list[bytes | memoryview] = []
        gathered: list[memoryview] = []
        room = MAX_PLAINTEXT_LEN  # left in the message being built
        for view in views:
            pos, end = 0, len(view)
            while pos < end:
                take = min(room, end - pos)
                piece = view[pos : pos + take] if take < end else view
                pos += take
                room -= take
                if room:
                    gathered.append(piece)
                    continue
                if gathered:
                    gathered.append(piece)
                    chunks.append(b"".join(gathered))
                    gathered.clear()
                else:
                    chunks.append(piece)
                room = MAX_PLAINTEXT_LEN
        if gathered:
            chunks.append(gathered[0] if len(gathered) == 1 else b"".join(gathered))
        return self._seal(chunks, into)

    def _seal(
        self, chunks: Sequence[bytes | bytearray | memoryview], into: bytearray | None = None
    ) -> bytearray | memoryview:
        """Encrypt each chunk (at most 65519 bytes) into one framed Noise message, in ``into``
        if it is large enough (then a view of it is returned), else in a new buffer."""
        cipher = self._send_cipher
        if cipher is None:
            if self._state is NoiseState.FAILED:
                self._raise_failed()
            raise LocalProtocolError("cannot send application data before the handshake completes")
        pending = self._outbuf
        pending_len = len(pending)
        total = sum(map(len, chunks))
        needed = pending_len + total + len(chunks) * (FRAME_HEADER_LEN + TAGLEN)
        out = into if into is not None and len(into) >= needed else bytearray(needed)
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
        return out if len(out) == needed else memoryview(out)[:needed]

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
        return NoiseHandshakePayload.sign(
            self._identity, handshake.local_static, self._stream_muxers
        ).encode()

    def _authenticate(self, handshake: HandshakeState, payload: bytes) -> HandshakeComplete:
        decoded = NoiseHandshakePayload.decode(payload)
        remote_static = handshake.remote_static
        assert remote_static is not None
        peer, public_key = decoded.authenticate(remote_static, self._expected_peer)
        self.remote_peer = peer
        self.remote_public_key = public_key
        self.remote_stream_muxers = decoded.stream_muxers
        return HandshakeComplete(peer, public_key, decoded.stream_muxers)

    def _enter_transport(self, handshake: HandshakeState) -> None:
        initiator_to_responder, responder_to_initiator = handshake.split()
        if handshake.initiator:
            self._send_cipher, self._recv_cipher = initiator_to_responder, responder_to_initiator
        else:
            self._send_cipher, self._recv_cipher = responder_to_initiator, initiator_to_responder
        self._handshake_hash = handshake.handshake_hash
        self._handshake = None
        self._state = NoiseState.TRANSPORT
