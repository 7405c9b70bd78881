"""Sending ``/p2pchat/1.0.0`` queries over a Trio stream (specs/chat.md §1, §2).

Theory of operation
-------------------
**Querying.** :func:`open_chat_client` wraps one stream in a :class:`ChatClient` and owns a
nursery with a reader and a writer task. :meth:`ChatClient.query` takes one of
``max_in_flight`` slots (further callers wait), picks a request id, queues its frame for the
writer and waits for the response with that id. The writer is the only task that writes, so a
query cancelled by its timeout never leaves half a frame on the stream; its id is forgotten and
a late response to it is dropped. When the stream fails (reset, lost connection, end of stream,
a malformed frame), every pending and later query raises :class:`ChatStreamError`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from ...aio import open_service_nursery
from ...errors import LocalProtocolError
from ...identity import PeerID
from ...multiaddr import Multiaddr
from ..core.wire import (
    MAX_IN_FLIGHT,
    NEED_DATA,
    PROTOCOL_ID,
    RID_LIMIT,
    FrameError,
    FrameReader,
    Query,
    Response,
    encode_envelope,
    is_query_code,
    parse_envelope,
)
from .dispatch import RECEIVE_SIZE, ChatStreamError, abort_stream

if TYPE_CHECKING:
    from ...net.host import Host

__all__ = [
    "DEFAULT_QUERY_TIMEOUT",
    "ChatClient",
    "ChatClientStatistics",
    "open_chat",
    "open_chat_client",
]

logger = logging.getLogger(__name__)

#: How long :meth:`ChatClient.query` waits for a response unless told otherwise, in seconds.
DEFAULT_QUERY_TIMEOUT: Final = 30.0


# -- querying -----------------------------------------------------------------------------------


@attrs.frozen
class ChatClientStatistics:
    """A snapshot of a :class:`ChatClient`."""

    #: Queries sent or queued and waiting for their response.
    in_flight: int
    #: Callers waiting for one of the ``max_in_flight`` slots.
    waiting: int
    #: Why the stream failed, or ``None`` while it works.
    failure: str | None


@attrs.define
class _Pending:
    code: str
    done: trio.Event = attrs.Factory(trio.Event)
    response: Response | None = None


class ChatClient:
    """Queries over one stream; made by :func:`open_chat_client`."""

    def __init__(self, stream: trio.abc.Stream, max_in_flight: int) -> None:
        self.stream = stream
        self._slots = trio.Semaphore(max_in_flight)
        self._pending: dict[int, _Pending] = {}
        self._next_rid = 0
        self._failure: str | None = None
        # At most one queued frame per slot; a timed-out query's frame may still be queued,
        # so the buffer holds twice that and a sender only waits when the writer is stuck.
        self._frames_in, self._frames_out = trio.open_memory_channel[bytes](2 * max_in_flight)
        self._writing = False

    def statistics(self) -> ChatClientStatistics:
        """The queries in flight and waiting, and the failure if any."""
        return ChatClientStatistics(
            in_flight=len(self._pending),
            waiting=self._slots.statistics().tasks_waiting,
            failure=self._failure,
        )

    async def query(
        self,
        code: str,
        body: dict[str, Any],
        *,
        timeout: float = DEFAULT_QUERY_TIMEOUT,  # noqa: ASYNC109 (expiry also forgets the rid)
    ) -> Response:
        """Send a query and return its response, affirmative or negative (check ``.ok``).

        ``timeout`` (seconds) covers waiting for a slot, queueing and the answer.

        Raises:
            trio.TooSlowError: no response within ``timeout``; a later one is dropped.
            ChatStreamError: the stream failed before the response came.
            LocalProtocolError: ``code`` is not a query code, or ``body`` not a CBOR map of at
                most 1 MiB encoded.
        """
        if not is_query_code(code):
            raise LocalProtocolError(f"not a query code: {code!r}", hint="bad code")
        self._check()
        with trio.fail_after(timeout):
            async with self._slots:
                self._check()
                rid = self._allocate_rid()
                frame = encode_envelope(Query(code, rid, body))
                pending = self._pending[rid] = _Pending(code)
                try:
                    try:
                        await self._frames_in.send(frame)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._check()
                        raise
                    await pending.done.wait()
                finally:
                    if self._pending.get(rid) is pending:
                        del self._pending[rid]
        if pending.response is None:
            self._check()
            raise AssertionError("woken without a response or a failure")
        return pending.response

    def _check(self) -> None:
        if self._failure is not None:
            raise ChatStreamError(self._failure)

    def _allocate_rid(self) -> int:
        # Sequential, so an id comes back only after 2**32 queries: a late response cannot be
        # taken for a newer query's.
        rid = self._next_rid
        while rid in self._pending:
            rid = (rid + 1) % RID_LIMIT
        self._next_rid = (rid + 1) % RID_LIMIT
        return rid

    def _fail(self, reason: str) -> None:
        if self._failure is not None:
            return
        self._failure = reason
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.done.set()
        self._frames_out.close()  # wakes queries waiting to queue a frame

    async def _write_frames(self) -> None:
        try:
            async for frame in self._frames_out:
                self._writing = True
                await self.stream.send_all(frame)
                self._writing = False
        except trio.ClosedResourceError:
            if self._failure is None:  # the stream, not our channel, was closed
                self._fail("the stream was closed")
        except trio.BrokenResourceError as exc:
            self._fail(f"stream broken: {exc}")

    async def _read_responses(self) -> None:
        reader = FrameReader()
        try:
            while True:
                frame = reader.next_event()
                if frame is NEED_DATA:
                    if reader.ended:
                        self._fail("the peer ended the stream")
                        return
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                    if data:
                        reader.receive_data(data)
                    else:
                        reader.receive_eof()
                    continue
                self._deliver(parse_envelope(frame))
        except FrameError as exc:
            logger.warning(
                "closing %s stream to %s: %s (%s)",
                PROTOCOL_ID,
                getattr(self.stream, "remote_peer", "peer"),
                exc.hint,
                exc,
            )
            self._fail(f"protocol violation by the peer: {exc.hint}")
            await abort_stream(self.stream)
        except trio.ClosedResourceError:
            self._fail("the stream was closed")
        except trio.BrokenResourceError as exc:
            self._fail(f"stream broken: {exc}")

    def _deliver(self, response: Query | Response) -> None:
        if isinstance(response, Query):
            raise FrameError(
                "a query on a stream that carries our queries", hint="unexpected query"
            )
        pending = self._pending.get(response.rid)
        if pending is None:
            logger.debug("dropped a response to rid %d (no longer waited for)", response.rid)
            return
        if pending.code != response.query_code:
            raise FrameError(
                f"response {response.code} to a {pending.code} query", hint="wrong response code"
            )
        del self._pending[response.rid]
        pending.response = response
        pending.done.set()

    async def _close(self) -> None:
        self._fail("the client was closed")
        with trio.CancelScope(shield=True):
            send_eof: Callable[[], Awaitable[None]] | None = getattr(self.stream, "send_eof", None)
            if send_eof is not None and not self._writing:
                try:
                    await send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                    pass
            await trio.aclose_forcefully(self.stream)


@asynccontextmanager
async def open_chat_client(
    stream: trio.abc.Stream, *, max_in_flight: int = MAX_IN_FLIGHT
) -> AsyncIterator[ChatClient]:
    """A :class:`ChatClient` over ``stream``, which it owns and closes on exit.

    On exit the client sends EOF (when the stream can half-close, so the server finishes
    cleanly) and closes the stream; queries still pending raise :class:`ChatStreamError`.

    Raises:
        ValueError: ``max_in_flight < 1``.
    """
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1")
    client = ChatClient(stream, max_in_flight)
    try:
        async with open_service_nursery() as nursery:
            nursery.start_soon(client._read_responses)
            nursery.start_soon(client._write_frames)
            yield client
    finally:
        await client._close()


@asynccontextmanager
async def open_chat(
    host: Host, target: PeerID | Multiaddr, *, max_in_flight: int = MAX_IN_FLIGHT
) -> AsyncIterator[ChatClient]:
    """A :class:`ChatClient` on a new :data:`PROTOCOL_ID` stream to ``target``.

    Raises:
        DialError: no connection could be made.
        StreamOpenError: the peer does not speak the chat protocol.
    """
    stream = await host.new_stream(target, [PROTOCOL_ID])
    async with open_chat_client(stream, max_in_flight=max_in_flight) as client:
        yield client
