"""Serving ``/p2pchat/1.0.0`` queries over Trio streams (specs/chat.md §1, §2).

The querying side is :mod:`p2pchat.chat.services.chat_client`.

Theory of operation
-------------------
A stream opened by A to B carries A's queries and B's responses, never the other way round: a
response arriving at the serving side, or a query arriving at the querying side, breaks §2 and
closes the stream like any malformed frame. Each side that wants to ask opens its own stream.

**Serving.** :func:`serve_chat_stream` (the Host's handler for :data:`PROTOCOL_ID`, see
:func:`install_chat`) owns a nursery. Its body reads frames; each query whose code the
:class:`Dispatcher` knows starts the handler as a task in that nursery, so the queries of one
stream run concurrently and their responses leave in the order the handlers finish. Responses
are written whole under one send lock. Queries are answered inline (without a task) with
``"unknown code"``, or with ``"too many queries"`` once the peer has ``max_in_flight`` queries
being handled: the count lives in the dispatcher, keyed by peer ID, so it spans every stream from
that peer. A handler returns the response body, or raises :class:`Refusal` for a negative
answer; a :class:`~p2pchat.errors.DecodeError` (the peer's bytes inside the body were bad) is
answered ``"malformed"``, and any other exception ``"internal error"`` and logged with its
traceback; the stream carries on. A malformed frame resets this stream (handlers in flight are
cancelled) and logs the reason; nothing propagates to the host. At the end of the stream the
handlers in flight finish and their responses are sent before the function returns.

**Limits** (specs/chat.md §1). The dispatcher also counts each peer's open inbound streams: a
stream beyond ``max_streams`` is reset before its first byte is read, the peer's other streams
untouched. A stream with no query in flight that brings no complete frame for ``idle_timeout``
seconds is reset too: the read loop runs in a cancel scope whose deadline is pushed back on
every complete frame and lifted while a query is in flight, and re-armed when the last one
has been answered. Bytes short of a frame do not count, so a peer cannot hold a stream by
dribbling a frame byte by byte. Both cases are logged with their reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import trio

from ...errors import DecodeError, LocalProtocolError, P2PChatError
from ...identity import PeerID
from ..core.wire import (
    IDLE_TIMEOUT,
    MAX_BUFFERED_PER_PEER,
    MAX_IN_FLIGHT,
    MAX_STREAMS_PER_PEER,
    NEED_DATA,
    PROTOCOL_ID,
    FrameError,
    FrameReader,
    Query,
    Reason,
    Response,
    encode_envelope,
    is_query_code,
    parse_envelope,
)

if TYPE_CHECKING:
    from ...net.host import Host
    from ...net.muxer import MuxedConnection

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_IN_FLIGHT",
    "MAX_STREAMS_PER_PEER",
    "PROTOCOL_ID",
    "ChatStreamError",
    "Dispatcher",
    "Handler",
    "QueryContext",
    "Refusal",
    "install_chat",
    "serve_chat_stream",
]

logger = logging.getLogger(__name__)

RECEIVE_SIZE: Final = 64 * 1024


class ChatStreamError(P2PChatError):
    """The chat stream failed (reset, lost, ended, or the peer broke the protocol); the message
    says why. Every query pending on it, and every later one, raises this."""


class Refusal(P2PChatError):  # noqa: N818 (a negative answer, not a failure)
    """Raised by a handler to answer ``ok: false`` with ``reason`` (and ``body``, default ``{}``).

    Raises (on construction):
        LocalProtocolError: ``reason`` is longer than 256 bytes or ``body`` is not a map.
    """

    def __init__(self, reason: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.body: dict[str, Any] = body if body is not None else {}
        Response("xR", 0, False, self.body, reason)  # the same checks as the envelope


@attrs.frozen
class QueryContext:
    """What a handler knows about the query it answers besides its body."""

    #: The authenticated peer that sent the query.
    remote_peer: PeerID
    #: The stream the query came on (a :class:`~p2pchat.net.muxer.MuxedStream` on a Host).
    stream: trio.abc.Stream
    code: str
    rid: int

    @property
    def connection(self) -> MuxedConnection | None:
        """The muxed connection of the stream, if it has one."""
        conn: MuxedConnection | None = getattr(self.stream, "connection", None)
        return conn


Handler = Callable[[QueryContext, dict[str, Any]], Awaitable[dict[str, Any]]]
_H = TypeVar("_H", bound=Handler)


class Dispatcher:
    """Routes queries to handlers by code, and counts each peer's queries in flight and inbound
    streams open, over every stream it serves."""

    def __init__(self, *, max_buffered: int = MAX_BUFFERED_PER_PEER) -> None:
        if max_buffered < 1:
            raise ValueError("max_buffered must be >= 1")
        self._handlers: dict[str, Handler] = {}
        self._in_flight: dict[PeerID, int] = {}
        self._streams: dict[PeerID, int] = {}
        #: §1 Limits: bytes of unfinished frames a peer may make us buffer, over its streams.
        self.max_buffered = max_buffered
        self._buffered: dict[PeerID, int] = {}

    def register(self, code: str, handler: Handler) -> None:
        """Answer queries with ``code`` by ``handler``.

        Raises:
            ValueError: ``code`` is not a query code (1 to 15 ASCII letters/digits, not ending
                in ``"R"``), or already has a handler.
        """
        if not is_query_code(code):
            raise ValueError(f"not a query code: {code!r}")
        if code in self._handlers:
            raise ValueError(f"code {code!r} already has a handler")
        self._handlers[code] = handler

    def unregister(self, code: str) -> None:
        """Stop answering ``code`` (no-op if it has no handler)."""
        self._handlers.pop(code, None)

    def handler(self, code: str) -> Callable[[_H], _H]:
        """Decorator form of :meth:`register`; returns the function unchanged.

        Raises:
            ValueError: as :meth:`register`.
        """

        def decorate(handler: _H) -> _H:
            self.register(code, handler)
            return handler

        return decorate

    @property
    def codes(self) -> list[str]:
        """The codes with a handler, sorted."""
        return sorted(self._handlers)

    def registered(self, code: str) -> Handler | None:
        """The handler that answers ``code``, or ``None`` if it has none."""
        return self._handlers.get(code)

    def in_flight(self, peer: PeerID) -> int:
        """How many of ``peer``'s queries are being handled now, over all its streams."""
        return self._in_flight.get(peer, 0)

    def streams(self, peer: PeerID) -> int:
        """How many of ``peer``'s inbound chat streams are being served now."""
        return self._streams.get(peer, 0)

    def _acquire(self, peer: PeerID) -> None:
        _increment(self._in_flight, peer)

    def _release(self, peer: PeerID) -> None:
        _decrement(self._in_flight, peer)

    def _open_stream(self, peer: PeerID, limit: int) -> bool:
        if self.streams(peer) >= limit:
            return False
        _increment(self._streams, peer)
        return True

    def _close_stream(self, peer: PeerID) -> None:
        _decrement(self._streams, peer)

    def buffered(self, peer: PeerID) -> int:
        """Bytes of ``peer``'s unfinished frames buffered now, over all its streams."""
        return self._buffered.get(peer, 0)

    def _rebuffer(self, peer: PeerID, held: int, now: int) -> bool:
        """One stream of ``peer`` that held ``held`` bytes now holds ``now``; False (nothing
        changed) when that takes the peer over ``max_buffered``."""
        total = self.buffered(peer) - held + now
        if now > held and total > self.max_buffered:
            return False
        if total:
            self._buffered[peer] = total
        else:
            self._buffered.pop(peer, None)
        return True


def _increment(counts: dict[PeerID, int], peer: PeerID) -> None:
    counts[peer] = counts.get(peer, 0) + 1


def _decrement(counts: dict[PeerID, int], peer: PeerID) -> None:
    left = counts[peer] - 1
    if left:
        counts[peer] = left
    else:
        del counts[peer]


# -- serving ------------------------------------------------------------------------------------


async def serve_chat_stream(
    stream: trio.abc.Stream,
    dispatcher: Dispatcher,
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
    max_streams: int = MAX_STREAMS_PER_PEER,
    idle_timeout: float = IDLE_TIMEOUT,
    remote_peer: PeerID | None = None,
) -> None:
    """Answer the queries on ``stream`` until it ends, fails, idles or breaks the protocol.

    ``remote_peer`` defaults to ``stream.remote_peer`` (a Host's streams have it). The peer may
    have ``max_in_flight`` queries being handled and ``max_streams`` streams served by
    ``dispatcher`` at once; a stream beyond that is reset at once. A stream with no query in
    flight and no complete frame for ``idle_timeout`` seconds (``math.inf``: never) is reset.

    Returns when the peer has ended the stream and every response was sent, or after it was
    reset (over the stream cap, idle, or a malformed frame; the reason is logged), or after a
    broken stream. Does not close the stream otherwise; the Host does when this returns.

    Raises:
        ValueError: no ``remote_peer`` given and the stream has none, ``max_in_flight`` or
            ``max_streams`` below 1, or ``idle_timeout`` not positive.
    """
    if remote_peer is None:
        remote_peer = getattr(stream, "remote_peer", None)
        if not isinstance(remote_peer, PeerID):
            raise ValueError("the stream has no remote_peer; pass remote_peer=")
    _check_limits(max_in_flight, max_streams, idle_timeout)
    if not dispatcher._open_stream(remote_peer, max_streams):
        logger.warning(
            "refusing a %s stream from %s: it already has %d open (the limit)",
            PROTOCOL_ID,
            remote_peer,
            max_streams,
        )
        await abort_stream(stream)
        return
    try:
        await _StreamServer(stream, dispatcher, remote_peer, max_in_flight, idle_timeout).run()
    finally:
        dispatcher._close_stream(remote_peer)


def install_chat(
    host: Host,
    dispatcher: Dispatcher,
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
    max_streams: int = MAX_STREAMS_PER_PEER,
    idle_timeout: float = IDLE_TIMEOUT,
    replace: bool = False,
) -> None:
    """Serve :data:`PROTOCOL_ID` on ``host`` with ``dispatcher``, within the limits that
    :func:`serve_chat_stream` describes.

    A host that already serves the chat (e.g. it runs a :class:`~p2pchat.chat.ChatNode`) keeps
    its dispatcher unless ``replace`` is true: to add a code to a running chat node, register it
    on ``node.dispatcher`` instead.

    Raises:
        ValueError: ``max_in_flight`` or ``max_streams`` below 1, or ``idle_timeout`` not
            positive.
        HandlerExistsError: the host serves the chat already and ``replace`` is false.
    """
    _check_limits(max_in_flight, max_streams, idle_timeout)

    async def handle(stream: trio.abc.Stream) -> None:
        await serve_chat_stream(
            stream,
            dispatcher,
            max_in_flight=max_in_flight,
            max_streams=max_streams,
            idle_timeout=idle_timeout,
        )

    if PROTOCOL_ID in host.protocols and not replace:
        from ...net.host import HandlerExistsError

        raise HandlerExistsError(
            f"this host serves {PROTOCOL_ID} already; register your codes on the dispatcher "
            "that serves it (ChatNode.dispatcher), or pass replace=True"
        )
    # The Host enforces the stream cap while negotiating (specs/host.md "Stream limits");
    # serve_chat_stream keeps its own count for streams served outside a Host.
    host.set_stream_handler(PROTOCOL_ID, handle, replace=replace, max_inbound_per_peer=max_streams)


def _check_limits(max_in_flight: int, max_streams: int, idle_timeout: float) -> None:
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1")
    if max_streams < 1:
        raise ValueError("max_streams must be >= 1")
    if not idle_timeout > 0:  # also refuses NaN
        raise ValueError("idle_timeout must be > 0")


class _StreamServer:
    def __init__(
        self,
        stream: trio.abc.Stream,
        dispatcher: Dispatcher,
        peer: PeerID,
        max_in_flight: int,
        idle_timeout: float,
    ) -> None:
        self._stream = stream
        self._dispatcher = dispatcher
        self._peer = peer
        self._max_in_flight = max_in_flight
        self._idle_timeout = idle_timeout
        self._idle = trio.CancelScope()  # around the read loop; its deadline is the idle limit
        self._send_lock = trio.Lock()
        self._rids: set[int] = set()  # ids of the queries being handled on this stream
        self._broken: str | None = None

    def _rearm_idle(self) -> None:
        """Push the idle deadline back to a full ``idle_timeout`` from now, or lift it while a
        query of this stream is being handled."""
        if self._rids:
            self._idle.deadline = math.inf
        else:
            self._idle.deadline = trio.current_time() + self._idle_timeout

    async def run(self) -> None:
        violation: FrameError | None = None
        async with trio.open_nursery() as nursery:
            with self._idle:
                self._rearm_idle()
                try:
                    await self._read_queries(nursery)
                except FrameError as exc:
                    violation = exc
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._broken = str(exc) or type(exc).__name__
            idle = self._idle.cancelled_caught
            if idle or violation is not None or self._broken is not None:
                nursery.cancel_scope.cancel()
            # else the peer ended the stream: the handlers in flight finish and answer.
        if idle:
            logger.info(
                "closing %s stream from %s: idle for %g s (no query in flight, no frame)",
                PROTOCOL_ID,
                self._peer,
                self._idle_timeout,
            )
            await abort_stream(self._stream)
        elif violation is not None:
            logger.warning(
                "closing %s stream from %s: %s (%s)",
                PROTOCOL_ID,
                self._peer,
                violation.hint,
                violation,
            )
            await abort_stream(self._stream)
        elif self._broken is not None:
            logger.debug("%s stream from %s broke: %s", PROTOCOL_ID, self._peer, self._broken)

    async def _read_queries(self, nursery: trio.Nursery) -> None:
        reader = FrameReader()
        held = 0  # what this stream is charged in the peer's buffer budget
        try:
            while True:
                frame = reader.next_event()
                if frame is NEED_DATA:
                    if reader.ended:
                        return
                    data = await self._stream.receive_some(RECEIVE_SIZE)
                    if data:
                        reader.receive_data(data)
                    else:
                        reader.receive_eof()
                    if not self._dispatcher._rebuffer(self._peer, held, reader.buffered):
                        raise FrameError(
                            f"the peer's unfinished frames exceed "
                            f"{self._dispatcher.max_buffered} bytes over its streams",
                            hint="peer buffer full",
                        )
                    held = reader.buffered
                    continue
                self._dispatcher._rebuffer(self._peer, held, reader.buffered)
                held = reader.buffered
                await self._dispatch(frame, nursery)
        finally:
            self._dispatcher._rebuffer(self._peer, held, 0)

    async def _dispatch(self, frame: dict[str, Any], nursery: trio.Nursery) -> None:
        envelope = parse_envelope(frame)
        if isinstance(envelope, Response):
            raise FrameError(
                "a response on a stream that carries our responses", hint="unexpected response"
            )
        await self._accept(envelope, nursery)
        self._rearm_idle()

    async def _accept(self, query: Query, nursery: trio.Nursery) -> None:
        if query.rid in self._rids:
            raise FrameError(f"rid {query.rid} is already in flight", hint="duplicate rid")
        handler = self._dispatcher.registered(query.code)
        if handler is None:
            await self._send(encode_envelope(query.refuse(Reason.UNKNOWN_CODE)))
        elif self._dispatcher.in_flight(self._peer) >= self._max_in_flight:
            await self._send(encode_envelope(query.refuse(Reason.TOO_MANY_QUERIES)))
        else:
            self._dispatcher._acquire(self._peer)
            self._rids.add(query.rid)
            nursery.start_soon(self._handle, handler, query, nursery.cancel_scope)

    async def _handle(self, handler: Handler, query: Query, scope: trio.CancelScope) -> None:
        held = True
        try:
            frame = await self._answer(handler, query)
            # Free the slot before the response leaves: once the peer has it, it may ask again.
            held = False
            self._release(query)
            await self._send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._broken = str(exc) or type(exc).__name__
            scope.cancel()
        finally:
            if held:
                self._release(query)

    def _release(self, query: Query) -> None:
        self._rids.discard(query.rid)
        self._dispatcher._release(self._peer)
        self._rearm_idle()

    async def _answer(self, handler: Handler, query: Query) -> bytes:
        ctx = QueryContext(self._peer, self._stream, query.code, query.rid)
        try:
            body = await handler(ctx, query.body)
            response = query.answer(body)
        except Refusal as refusal:
            response = query.refuse(refusal.reason, refusal.body)
        except DecodeError as exc:
            logger.info(
                "%s query %s (rid %d) from %s is malformed: %s",
                PROTOCOL_ID,
                query.code,
                query.rid,
                self._peer,
                exc,
            )
            response = query.refuse(Reason.MALFORMED)
        except Exception:
            logger.exception(
                "%s handler for %s (rid %d) from %s failed",
                PROTOCOL_ID,
                query.code,
                query.rid,
                self._peer,
            )
            response = query.refuse(Reason.INTERNAL_ERROR)
        try:
            return encode_envelope(response)
        except LocalProtocolError:  # a body CBOR cannot carry, or larger than a frame
            logger.exception(
                "%s handler for %s (rid %d) from %s returned a body that cannot be sent",
                PROTOCOL_ID,
                query.code,
                query.rid,
                self._peer,
            )
            return encode_envelope(query.refuse(Reason.INTERNAL_ERROR))

    async def _send(self, frame: bytes) -> None:
        async with self._send_lock:
            await self._stream.send_all(frame)


async def abort_stream(stream: trio.abc.Stream) -> None:
    """Reset ``stream`` if it can be reset (a muxed stream), else close it."""
    reset: Callable[[], Awaitable[None]] | None = getattr(stream, "reset", None)
    with trio.CancelScope(shield=True):
        if reset is not None:
            await reset()
        else:
            await trio.aclose_forcefully(stream)
