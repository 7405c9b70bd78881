"""Connection events a Host offers to the layers above it.

Theory of operation
-------------------
The Host never runs another layer's code in its own nursery. Instead, each layer that cares about
connections subscribes with ``async with host.connection_events() as events`` and drains
``events`` in a task of a nursery that it owns::

    async with host.connection_events() as events:
        async for event in events:
            if isinstance(event, ConnectionOpened):
                my_nursery.start_soon(greet, event.conn)

The Host publishes without waiting: :meth:`ConnectionEvents._publish` appends to the
subscription's queue and returns. The queue is bounded (``max_queued``). When a new event finds
it full, the **oldest** queued event is dropped, so a subscriber that falls behind keeps the most
recent picture, and the next thing it receives is :class:`EventsDropped` with the number of events
lost since the previous report (the surviving events follow in order). A subscriber that sees
``EventsDropped`` re-reads the state it needs from the Host (``connected_peers()``,
``connection(peer)``).

Leaving the ``async with`` block unsubscribes; the Host is not affected. When the Host shuts down,
each subscription first receives the ``ConnectionClosed`` of every connection that was open, then
its iteration ends (``receive`` raises ``trio.EndOfChannel``), so a drain loop that outlives the
Host finishes by itself.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import attrs
import trio

from ..identity import PeerID
from .muxer import MuxedConnection

#: Events a subscription holds before the oldest are dropped; a burst of ``max_connections``
#: (256 by default) openings fits.
DEFAULT_MAX_QUEUED: Final = 256


@attrs.frozen
class ConnectionOpened:
    """``conn`` to ``peer`` is up: muxed, running, and registered with the Host."""

    peer: PeerID
    conn: MuxedConnection


@attrs.frozen
class ConnectionClosed:
    """``conn`` to ``peer`` has ended; the Host no longer holds it.

    Another connection to the same peer may still be live (``host.connection(peer)``).
    """

    peer: PeerID
    conn: MuxedConnection


@attrs.frozen
class EventsDropped:
    """The subscriber fell behind: ``count`` of the oldest events were dropped unseen."""

    count: int = attrs.field(validator=attrs.validators.ge(1))


ConnectionEvent = ConnectionOpened | ConnectionClosed | EventsDropped


class ConnectionEvents:
    """One subscription to a Host's connection events: an async iterator of
    :data:`ConnectionEvent`. Made by :meth:`Host.connection_events`; do not construct directly.
    """

    def __init__(self, max_queued: int) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, not {max_queued}")
        self._max_queued = max_queued
        self._queue: deque[ConnectionOpened | ConnectionClosed] = deque()
        self._dropped = 0
        self._ended = False  # the Host has shut down
        self._closed = False  # the subscriber has left
        self._lot = trio.lowlevel.ParkingLot()

    @property
    def max_queued(self) -> int:
        """How many events are held before the oldest are dropped."""
        return self._max_queued

    def _publish(self, event: ConnectionOpened | ConnectionClosed) -> None:
        """Queue ``event``; never blocks (the Host calls this)."""
        if self._closed or self._ended:
            return
        if len(self._queue) >= self._max_queued:
            self._queue.popleft()
            self._dropped += 1
        self._queue.append(event)
        self._lot.unpark_all()

    def _end(self) -> None:
        """The Host has shut down: deliver what is queued, then end the iteration."""
        self._ended = True
        self._lot.unpark_all()

    def _close(self) -> None:
        self._closed = True
        self._queue.clear()
        self._lot.unpark_all()

    async def receive(self) -> ConnectionEvent:
        """The next event, waiting for one if none is queued.

        Raises:
            trio.EndOfChannel: the Host has shut down and every event has been received.
            trio.ClosedResourceError: the subscription was left (its ``async with`` exited).
        """
        await trio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the subscription to connection events has ended")
            if self._dropped:
                count, self._dropped = self._dropped, 0
                return EventsDropped(count)
            if self._queue:
                return self._queue.popleft()
            if self._ended:
                raise trio.EndOfChannel
            await self._lot.park()

    def __aiter__(self) -> ConnectionEvents:
        return self

    async def __anext__(self) -> ConnectionEvent:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
