"""The Noise-secured stream: libp2p's ``/noise`` channel as a ``trio.abc.Stream``.

Theory of operation
-------------------
A connection is upgraded in two steps, each a sans-IO core driven here: multistream-select
agrees on ``/noise`` (there is no other choice and never a plaintext fallback), then the Noise
XX handshake authenticates the peer's libp2p identity. Both run under one deadline, so a peer
that stalls is dropped after ``handshake_timeout`` seconds.

After the handshake, :class:`SecureStream` is a thin wrapper in the manner of trio's
``SSLStream``: ``send_all`` encrypts the whole buffer into Noise frames in one call to the core
and writes them with one ``send_all`` on the transport; ``receive_some`` reads large chunks
from the transport and hands out one frame's plaintext at a time. The core's failure (bad
tag, garbage framing) puts the stream in the BROKEN state: this and every later call raise
``trio.BrokenResourceError``. Our own ``aclose`` puts it in the CLOSED state, after which
calls raise ``trio.ClosedResourceError``.

Bulk work can use a second core (specs/secure-stream.md "Worker threads for bulk";
:mod:`.secure_threads`), off unless ``worker_threads`` is set: on a machine without an idle core
the hand-offs cost more than they save (the spec gives the figures). Smaller writes and reads
(pings, queries) stay on the loop and pay no thread hand-off.

Bulk without threads copies as little as it can: the muxer's frames are packed back to back
into full Noise messages, each sealed from the frame's own buffer (or, when it spans two frames,
from a copy of at most one message) into one output buffer the stream reuses, and the muxer's
reads decrypt into one plaintext buffer the stream reuses (:meth:`SecureStream.
receive_borrowed`). A bulk transfer thus allocates no per-read or per-write buffers, nor takes
page faults for them.

Peers must not be trusted to behave, so every handshake failure becomes a
:class:`HandshakeError` that carries a short reason for the log.
"""

from __future__ import annotations

import enum
import functools
import logging
import operator
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from ..errors import HandshakeError as HandshakeError
from ..errors import P2PChatError, ProtocolError
from ..identity import KeyPair, PeerID, PublicKey
from ..multiaddr import Multiaddr
from ..protocols import noise
from ..protocols.noise import PeerMismatchError as PeerMismatchError
from . import secure_threads
from .negotiate import NegotiationError, negotiate_inbound, negotiate_outbound
from .secure_threads import SEAL_BATCH, THREADED_RECEIVE_SIZE
from .tcp import dial_tcp, listen_tcp, listener_multiaddr, remote_multiaddr

logger = logging.getLogger(__name__)


NOISE_PROTOCOL: Final = noise.PROTOCOL_ID
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
# How much to ask the transport for at once: several Noise frames, few system calls. The Noise
# core's receive buffer grows to about this much, per connection.
RECEIVE_SIZE: Final = 256 * 1024
#: The first borrowed read (:meth:`SecureStream.receive_borrowed`) of at least this much
#: ciphertext allocates the stream's reused plaintext buffer (``max_bytes`` of that read); until
#: then borrowed reads decrypt into new buffers, so a connection that never carries bulk holds
#: none.
BORROW_MIN: Final = 64 * 1024
#: The same for writes (:meth:`SecureStream.send_units`, without worker threads): the first of
#: at least BORROW_MIN plaintext bytes allocates a buffer of this size, into which every later
#: write that fits (the muxer writes at most 256 KiB at a time) is sealed instead of a new one.
SEAL_REUSE: Final = 256 * 1024 + 5 * (noise.FRAME_HEADER_LEN + noise.TAGLEN)


class _State(enum.Enum):
    OK = "ok"
    BROKEN = "broken"
    CLOSED = "closed"


class SecureStream(trio.abc.Stream):
    """An authenticated, encrypted stream over ``transport_stream``.

    Made by :func:`secure_outbound` / :func:`secure_inbound`, not directly.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        session: noise.NoiseConnection,
        handshake: noise.HandshakeComplete,
    ) -> None:
        self.transport_stream = transport_stream
        self._session = session
        self.remote_peer: PeerID = handshake.remote_peer
        self.remote_public_key: PublicKey = handshake.remote_public_key
        self.remote_stream_muxers: tuple[str, ...] = handshake.remote_stream_muxers
        self._state = _State.OK
        self._socket = (
            transport_stream.socket if isinstance(transport_stream, trio.SocketStream) else None
        )
        self._pending: bytes | bytearray = b""  # plaintext not yet handed out
        self._reused = bytearray()  # the buffer borrowed reads decrypt into (see BORROW_MIN)
        self._sealed = bytearray()  # the buffer bulk writes are sealed into (see SEAL_REUSE)
        self._read_error: OSError | None = None  # a read-ahead failure, raised by the next read
        self._sending = False
        self._receiving = False
        #: Whether bulk AEAD work may go to worker threads (off by default: see
        #: specs/secure-stream.md "Worker threads for bulk" for when it pays).
        self.worker_threads = False
        #: Batches sealed / opened in a worker thread (for tests and benchmarks).
        self.offloaded_seals = 0
        self.offloaded_opens = 0

    def _check(self) -> None:
        if self._state is _State.CLOSED:
            raise trio.ClosedResourceError("the secure stream was closed")
        if self._state is _State.BROKEN:
            raise trio.BrokenResourceError("the secure stream is broken")

    def _break(self, exc: BaseException, reason: str) -> trio.BrokenResourceError:
        self._state = _State.BROKEN
        logger.info("secure stream with %s broken: %s", self.remote_peer, reason)
        err = trio.BrokenResourceError(reason)
        err.__cause__ = exc
        return err

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data``.

        Raises:
            trio.BusyResourceError: another task is already sending.
            trio.BrokenResourceError: the transport or the channel failed.
            trio.ClosedResourceError: we closed the stream.
        """
        view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        seal = self._session.send
        if not self.worker_threads or len(view) <= SEAL_BATCH:
            await self._send([functools.partial(seal, view)] if len(view) else [])
            return
        await self._send(secure_threads.data_batches(seal, view))

    async def send_units(self, units: Sequence[Sequence[bytes | bytearray | memoryview]]) -> None:
        """Send the concatenation of ``units`` (e.g. muxer frames, each its header and body),
        packed into full Noise messages without joining them first.

        Raises:
            trio.BusyResourceError: another task is already sending.
            trio.BrokenResourceError: the transport or the channel failed.
            trio.ClosedResourceError: we closed the stream.
        """
        seal = self._session.send_gather
        if not self.worker_threads:
            parts = [part for unit in units for part in unit]
            if not parts:
                await self._send([])
                return
            into: bytearray | None = self._sealed
            if not into and sum(map(len, parts)) >= BORROW_MIN:
                # Bulk: from now on, seal into one reused buffer (see SEAL_REUSE).
                self._sealed = into = bytearray(SEAL_REUSE)
            await self._send([functools.partial(seal, parts, into)])
            return
        await self._send(secure_threads.unit_batches(seal, units))

    async def _send(self, batches: Sequence[Callable[[], bytearray | memoryview]]) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._check()
        self._sending = True
        try:
            if not batches:
                await trio.lowlevel.checkpoint()
                return
            if len(batches) == 1:
                try:
                    frames = batches[0]()
                except ProtocolError as exc:
                    raise self._break(exc, exc.hint) from exc
                await self._write(frames)
                return
            try:
                with secure_threads.one_cancelled():
                    await secure_threads.send_pipelined(self, batches)
            except BaseException:
                # Frames may have been sealed (nonces spent) and not written: the channel
                # cannot go on.
                if self._state is _State.OK:
                    self._state = _State.BROKEN
                    logger.info("secure stream with %s broken: send interrupted", self.remote_peer)
                raise
        finally:
            self._sending = False

    async def _write(self, frames: bytearray | memoryview) -> None:
        try:
            await self.transport_stream.send_all(frames)
        except trio.BrokenResourceError as exc:
            raise self._break(exc, "transport broken") from exc

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport is writable."""
        self._check()
        await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Return some decrypted bytes, or ``b""`` at the peer's clean end of stream.

        Raises:
            trio.BusyResourceError: another task is already receiving.
            trio.BrokenResourceError: bad ciphertext, a truncated frame, or transport failure.
            trio.ClosedResourceError: we closed the stream.
        """
        data = await self._receive(max_bytes, borrow=False)
        assert not isinstance(data, memoryview)
        return data

    async def receive_borrowed(self, max_bytes: int) -> bytes | bytearray | memoryview:
        """Like :meth:`receive_some`, but a bulk read may return a view of a buffer the stream
        reuses, valid only until the next receive call: for a reader that consumes each chunk
        at once (the muxer). It spares allocating, zero-filling and page-faulting a new buffer
        for every read.

        Raises:
            trio.BusyResourceError: another task is already receiving.
            trio.BrokenResourceError: bad ciphertext, a truncated frame, or transport failure.
            trio.ClosedResourceError: we closed the stream.
        """
        return await self._receive(max_bytes, borrow=True)

    async def _receive(
        self, max_bytes: int | None, *, borrow: bool
    ) -> bytes | bytearray | memoryview:
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        self._check()
        self._receiving = True
        try:
            if self._pending:
                await trio.lowlevel.checkpoint()
                return self._take_pending(max_bytes)
            if max_bytes is None or max_bytes > noise.MAX_PLAINTEXT_LEN:
                default = THREADED_RECEIVE_SIZE if self.worker_threads else RECEIVE_SIZE
                return await self._receive_bulk(max_bytes or default, borrow)
            self._pending = await self._next_plaintext()
            return self._take_pending(max_bytes)
        finally:
            self._receiving = False

    def _take_pending(self, max_bytes: int | None) -> bytes | bytearray:
        chunk = self._pending
        if max_bytes is not None and len(chunk) > max_bytes:
            self._pending = chunk[max_bytes:]
            return chunk[:max_bytes]
        self._pending = b""
        return chunk

    async def _receive_bulk(self, size: int, borrow: bool) -> bytes | bytearray | memoryview:
        """Decrypt every whole frame that fits in ``size`` bytes into one buffer (the reused
        one if ``borrow`` and the frames are large)."""
        session = self._session
        while True:
            buffered = session.buffered_bytes
            if buffered > noise.FRAME_HEADER_LEN + noise.TAGLEN:
                if self.worker_threads:
                    whole = secure_threads.backlog(session, size)
                    if whole:
                        return await secure_threads.receive_offloaded(self, size, whole)
                # The plaintext is smaller than the ciphertext buffered: no larger buffer to
                # zero-fill, and little to trim afterwards.
                want = min(size, buffered)
                if borrow and (want >= BORROW_MIN or len(self._reused) >= want):
                    if len(self._reused) < want:
                        self._reused = bytearray(size)
                    view = memoryview(self._reused)[:want]
                    try:
                        count = session.read_into(view)
                    except ProtocolError as exc:
                        raise self._break(exc, exc.hint) from exc
                    if count:
                        return view[:count]
                else:
                    out = bytearray(want)
                    try:
                        count = session.read_into(out)
                    except ProtocolError as exc:
                        raise self._break(exc, exc.hint) from exc
                    if count:
                        del out[count:]
                        return out
            if not await self._fill():
                return b""

    async def _next_plaintext(self) -> bytes:
        session = self._session
        while True:
            try:
                event = session.next_event()
            except ProtocolError as exc:
                raise self._break(exc, exc.hint) from exc
            if isinstance(event, noise.Data):
                if event.data:
                    return event.data
                continue  # an empty frame is legal; keep reading
            if not await self._fill():
                return b""

    async def _fill(self) -> bool:
        """Read more ciphertext; False at a clean end of stream (on a frame boundary).

        Raises:
            trio.BrokenResourceError: transport failure, or end of stream inside a frame.
        """
        try:
            received = await self._receive_into_session()
        except trio.BrokenResourceError as exc:
            raise self._break(exc, "transport broken") from exc
        if received:
            return True
        if self._session.has_partial_frame():
            raise self._break(EOFError(), "connection closed inside a Noise frame")
        return False

    async def _receive_into_session(self) -> int:
        """Read once from the transport into the session's buffer; 0 at end of stream."""
        session = self._session
        if self._read_error is not None:
            raise trio.BrokenResourceError(f"transport error: {self._read_error}")
        size = THREADED_RECEIVE_SIZE if self.worker_threads else RECEIVE_SIZE
        if self._socket is None:
            data = await self.transport_stream.receive_some(size)
            session.receive_data(data)
            return len(data)
        # A TCP socket can read straight into the Noise buffer: no copy, no allocation.
        with session.receive_buffer(size) as view:
            try:
                count = await self._socket.recv_into(view)
            except OSError as exc:
                raise trio.BrokenResourceError(f"transport error: {exc}") from exc
        session.received(count)
        return count

    async def aclose(self) -> None:
        """Close the stream and its transport; idempotent."""
        if self._state is _State.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        self._state = _State.CLOSED
        await self.transport_stream.aclose()


async def _drive_handshake(
    stream: trio.abc.Stream, session: noise.NoiseConnection, initial: bytes
) -> noise.HandshakeComplete:
    if initial:
        session.receive_data(initial)
    while True:
        if session.buffered_bytes:
            # A handshake message to parse: X25519, the peer's identity signature (RSA and
            # ECDSA cost far more than Ed25519) and our own signature run in a worker thread,
            # off the event loop. Only this task touches the session meanwhile; the call is
            # awaited and not abandoned, and the key limits (specs/identity.md) bound its cost.
            event = await trio.to_thread.run_sync(session.next_event)
        else:
            event = session.next_event()
        out = session.data_to_send()  # the core may have queued a reply while parsing
        if out:
            await stream.send_all(out)
        if isinstance(event, noise.HandshakeComplete):
            return event
        if isinstance(event, noise.Data):  # pragma: no cover - the core never does this
            raise HandshakeError("transport data before the handshake completed")
        data = await stream.receive_some(noise.FRAME_HEADER_LEN + noise.MAX_MESSAGE_LEN)
        if not data:
            raise HandshakeError("peer closed the connection during the handshake")
        session.receive_data(data)


async def _secure(
    transport: trio.abc.Stream,
    identity: KeyPair,
    *,
    outbound: bool,
    expected_peer: PeerID | None,
    stream_muxers: Sequence[str],
    handshake_timeout: float,
) -> SecureStream:
    try:
        with trio.fail_after(handshake_timeout):
            if outbound:
                _proto, initial = await negotiate_outbound(transport, [NOISE_PROTOCOL])
                role = noise.Role.INITIATOR
            else:
                _proto, initial = await negotiate_inbound(transport, [NOISE_PROTOCOL])
                role = noise.Role.RESPONDER
            session = noise.NoiseConnection(
                role, identity, stream_muxers=stream_muxers, expected_peer=expected_peer
            )
            done = await _drive_handshake(transport, session, initial)
    except trio.TooSlowError:
        raise HandshakeError(f"handshake timed out after {handshake_timeout:g} s") from None
    except PeerMismatchError:  # a HandshakeError already, and the caller's to catch by name
        raise
    except NegotiationError as exc:
        raise HandshakeError(str(exc)) from exc
    except ProtocolError as exc:
        raise HandshakeError(f"noise: {exc.hint}") from exc
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise HandshakeError("connection lost during the handshake") from exc
    return SecureStream(transport, session, done)


async def secure_outbound(
    transport: trio.abc.Stream,
    identity: KeyPair,
    *,
    expected_peer: PeerID | None = None,
    stream_muxers: Sequence[str] = (),
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> SecureStream:
    """Upgrade a dialed transport: multistream ``/noise``, then Noise XX as initiator.

    Raises:
        PeerMismatchError: the peer is not ``expected_peer``.
        HandshakeError: any other failure, timeout included. The transport is left open;
            the caller closes it.
    """
    return await _secure(
        transport,
        identity,
        outbound=True,
        expected_peer=expected_peer,
        stream_muxers=stream_muxers,
        handshake_timeout=handshake_timeout,
    )


async def secure_inbound(
    transport: trio.abc.Stream,
    identity: KeyPair,
    *,
    stream_muxers: Sequence[str] = (),
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> SecureStream:
    """Upgrade an accepted transport: answer ``/noise``, then Noise XX as responder.

    Raises:
        HandshakeError: any failure, timeout included. The transport is left open.
    """
    return await _secure(
        transport,
        identity,
        outbound=False,
        expected_peer=None,
        stream_muxers=stream_muxers,
        handshake_timeout=handshake_timeout,
    )


async def dial_secure(
    addr: Multiaddr,
    identity: KeyPair,
    *,
    stream_muxers: Sequence[str] = (),
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> SecureStream:
    """Dial ``addr`` over TCP and secure the connection.

    If ``addr`` ends in ``/p2p/<id>``, a peer authenticating as anyone else is dropped.

    Raises:
        TransportError: the TCP connection failed.
        PeerMismatchError: the peer is not the one named in ``addr``.
        HandshakeError: the handshake failed or timed out.
    """
    tcp = await dial_tcp(addr)
    try:
        return await secure_outbound(
            tcp,
            identity,
            expected_peer=addr.peer_id,
            stream_muxers=stream_muxers,
            handshake_timeout=handshake_timeout,
        )
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise


SecureHandler = Callable[[SecureStream], Awaitable[None]]


async def serve_secure(
    handler: SecureHandler,
    listen_addrs: Sequence[Multiaddr],
    identity: KeyPair,
    *,
    stream_muxers: Sequence[str] = (),
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``listen_addrs``, secure every inbound connection, pass it to ``handler``.

    Reports the bound multiaddrs (each ending in ``/p2p/<our id>``) through
    ``task_status.started``. A connection whose handshake fails is closed and logged with
    its reason; the listener goes on serving. The stream is closed when ``handler`` returns.

    Raises:
        TransportError: an address cannot be bound.
    """
    listeners: list[trio.SocketListener] = []
    for addr in listen_addrs:
        listeners.extend(await listen_tcp(addr))
    me = identity.peer_id
    bound = [listener_multiaddr(listener).with_peer_id(me) for listener in listeners]

    async def serve_one(tcp: trio.SocketStream) -> None:
        peer_addr = remote_multiaddr(tcp)
        try:
            secure = await secure_inbound(
                tcp, identity, stream_muxers=stream_muxers, handshake_timeout=handshake_timeout
            )
        except HandshakeError as exc:
            logger.warning("dropped inbound connection from %s: %s", peer_addr, exc.reason)
            await trio.aclose_forcefully(tcp)
            return
        logger.debug("secured inbound connection from %s at %s", secure.remote_peer, peer_addr)
        async with secure:
            try:
                await handler(secure)
            except (trio.BrokenResourceError, trio.ClosedResourceError, P2PChatError) as exc:
                logger.info("connection with %s ended: %s", secure.remote_peer, exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                trio.serve_listeners,
                serve_one,
                listeners,
                handler_nursery=handler_nursery or nursery,
            )
        )
        # serve_listeners' own started() value is the listener list; report multiaddrs instead.
        task_status.started(bound)
