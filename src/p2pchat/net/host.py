"""The Host: listen, dial, one muxed connection per peer, a protocol router, a peer store.

Theory of operation
-------------------
:func:`open_host` opens the host's nursery; every task below lives in it and ends with the
``async with`` block:

* one **listener** task per bound address serves its TCP listeners with
  :func:`trio.serve_listeners`; each accepted connection is upgraded (Noise, then yamux) under
  ``handshake_timeout`` by a handler task of that listener; failures are logged with their
  reason and the listener goes on;
* one **connection** task per muxed connection runs the connection and accepts its inbound
  streams. Each inbound stream gets a task that negotiates its protocol with multistream-select
  (under ``negotiate_timeout``, among the registered handlers) and runs the handler.

Other layers learn of connections through :meth:`Host.connection_events` (``net/events.py``) and
do their per-connection work in nurseries of their own: the Host publishes
:class:`~p2pchat.net.events.ConnectionOpened` once a connection runs and
:class:`~p2pchat.net.events.ConnectionClosed` when it has ended, and never waits for a
subscriber. identify is such a subscriber (``net/identify.py``, run by :func:`open_host`).

Dialing (``net/dialer.py``, behind :meth:`Host.connect` and :meth:`Host.connect_direct`) reuses
a live connection to the peer; concurrent dials to the same peer share one attempt. A handler
that raises is logged and its stream reset: a bug in one protocol does not take down the node.

Every connection and inbound handshake is charged to a :class:`~p2pchat.net.resources.
ResourceManager` (system, transient, per IP, per peer scopes; ``net/resources.py``). An accepted
socket is charged before any cryptography and closed at once if a scope is full; an upgraded
connection is charged before it runs, and may evict the least useful unprotected inbound
connection, which this module closes in its nursery. Every refusal and eviction is logged with its
reason (specs/host.md "Resource limits").
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import asynccontextmanager

import trio

from ..aio import open_service_nursery
from ..errors import P2PChatError
from ..identity import KeyPair, PeerID
from ..multiaddr import Multiaddr
from .dialer import Dialer, StreamDialer, is_relayed
from .dialer import DialError as DialError
from .events import DEFAULT_MAX_QUEUED, ConnectionClosed, ConnectionEvents, ConnectionOpened
from .hostconfig import HandlerExistsError as HandlerExistsError
from .hostconfig import HostConfig as HostConfig
from .hostconfig import StreamHandler as StreamHandler
from .hostconfig import StreamOpenError as StreamOpenError
from .identify import open_identify
from .muxer import MuxedConnection, MuxedStream, MuxerError
from .negotiate import NegotiationError, negotiate_inbound, negotiate_outbound
from .peerstore import PeerStore
from .ping import install_ping
from .resources import ResourceLimitError, ResourceManager, ResourceUsage
from .secure import HandshakeError
from .stream_limits import StreamScopes
from .tcp import (
    expand_wildcard,
    interface_addresses,
    listen_tcp,
    listener_multiaddr,
    remote_multiaddr,
)
from .upgrade import upgrade

logger = logging.getLogger(__name__)


class Host:
    """A libp2p host. Made by :func:`open_host`; do not construct directly."""

    def __init__(self, identity: KeyPair, config: HostConfig, nursery: trio.Nursery) -> None:
        self.identity = identity
        self.peer_id: PeerID = identity.peer_id
        self.config = config
        self.peer_store = PeerStore()
        self._nursery = nursery
        self._handlers: dict[str, StreamHandler] = {}
        self._connections: dict[PeerID, list[MuxedConnection]] = {}
        self._listen_addrs: list[Multiaddr] = []
        self._subscriptions: set[ConnectionEvents] = set()
        self._protocols_version = 0
        self._protocols_lot = trio.lowlevel.ParkingLot()
        self._events_ended = False
        # Connections whose ConnectionOpened went out and whose ConnectionClosed has not.
        self._announced: dict[MuxedConnection, PeerID] = {}
        self._resources = ResourceManager(config.limits)
        self._address_provider: Callable[[], list[Multiaddr]] | None = None
        self._streams = StreamScopes(
            config.limits.max_negotiating_per_peer, config.limits.max_streams_per_protocol
        )
        #: Outbound connections (``net/dialer.py``); DCUtR registers its hole punches there.
        self.dialer = Dialer(self)
        self._extra_addrs: list[Multiaddr] = []

    # -- addresses and handlers ----------------------------------------------------------------

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        """The bound listen addresses (real ports), without ``/p2p``."""
        return list(self._listen_addrs)

    def set_address_provider(self, provider: Callable[[], list[Multiaddr]] | None) -> None:
        """Advertise ``provider()``'s addresses (identify, our signed peer record) instead of the
        listen addresses; None restores them. The address manager (``net/autonat.py``) sets it.
        """
        self._address_provider = provider

    @property
    def advertised_addrs(self) -> list[Multiaddr]:
        """What we tell peers we listen on: the address manager's choice, else (or when it has
        none) the listen addresses, then the extra ones (relayed ``/p2p-circuit`` addresses);
        without ``/p2p``."""
        chosen = self._address_provider() if self._address_provider is not None else []
        base = chosen or self.listen_addrs
        return base + [a for a in self._extra_addrs if a not in base]

    @property
    def addrs(self) -> list[Multiaddr]:
        """The bound listen addresses, each ending in ``/p2p/<our id>``."""
        return [addr.with_peer_id(self.peer_id) for addr in self._listen_addrs]

    def set_extra_addrs(self, addrs: Sequence[Multiaddr]) -> None:
        """Addresses we are reachable at without listening on them (``/p2p-circuit``)."""
        self._extra_addrs = [a.without_peer_id() for a in addrs]

    def add_stream_transport(
        self, handles: Callable[[Multiaddr], bool], dial: StreamDialer
    ) -> None:
        """Dial addresses for which ``handles`` is true with ``dial`` instead of TCP; the stream
        it returns is upgraded (Noise, yamux) like a TCP connection."""
        self.dialer.add_stream_transport(handles, dial)

    # -- dialing (net/dialer.py) -----------------------------------------------------------------

    async def connect(self, target: PeerID | Multiaddr) -> MuxedConnection:
        """A connection to ``target``: reused if live, else dialed.

        A multiaddr must end in ``/p2p/<id>``; a bare peer ID is dialed at the addresses the
        peer store knows.

        Raises:
            DialError: no address worked (each failure is in the message).
            ValueError: a multiaddr without ``/p2p/<id>``.
        """
        return await self.dialer.connect(target)

    async def connect_direct(
        self,
        peer: PeerID,
        addrs: Sequence[Multiaddr],
        *,
        initiator: bool,
        role_wait: float | None = None,
    ) -> MuxedConnection:
        """A new direct TCP connection to ``peer`` for a hole punch (specs/dcutr.md): each of
        ``addrs`` is dialed at once, from the listen port when ``reuse_port`` is on; the first
        that upgrades wins. ``initiator`` says which side runs Noise as the initiator (in a
        simultaneous open both sides dial); with ``role_wait``, a responder becomes the
        initiator where the peer proposes nothing for that long (``net/simopen.py``).

        Raises:
            DialError: no address gave a connection to ``peer``.
        """
        return await self.dialer.connect_direct(
            peer, addrs, initiator=initiator, role_wait=role_wait
        )

    def set_stream_handler(
        self,
        protocol: str,
        handler: StreamHandler,
        *,
        replace: bool = False,
        max_inbound_per_peer: int | None = None,
    ) -> None:
        """Serve ``protocol`` with ``handler``; the stream is closed when the handler returns.
        A peer has at most ``max_inbound_per_peer`` inbound streams of it at once (default
        ``limits.max_streams_per_protocol``), enforced while negotiating (specs/host.md).

        A protocol that already has a handler keeps it unless ``replace`` is true.

        Raises:
            ValueError: ``protocol`` does not start with ``/``, or a cap below 1.
            HandlerExistsError: ``protocol`` already has a handler and ``replace`` is false.
        """
        if not protocol.startswith("/"):
            raise ValueError(f"protocol ids start with '/': {protocol!r}")
        new = protocol not in self._handlers
        if not new and not replace:
            raise HandlerExistsError(
                f"{protocol} already has a handler (pass replace=True to replace it)"
            )
        self._streams.set_cap(protocol, max_inbound_per_peer)
        self._handlers[protocol] = handler
        if new:
            self._protocols_changed()

    def remove_stream_handler(self, protocol: str) -> None:
        """Stop serving ``protocol`` (no-op if not served)."""
        if self._handlers.pop(protocol, None) is not None:
            self._protocols_changed()

    def _protocols_changed(self) -> None:
        self._protocols_version += 1
        self._protocols_lot.unpark_all()

    @property
    def protocols_version(self) -> int:
        """A counter that grows each time the set of served protocols changes."""
        return self._protocols_version

    async def wait_protocols_changed(self, seen: int) -> None:
        """Return once :attr:`protocols_version` differs from ``seen`` (at once if it does).

        identify uses this to push our protocols to connected peers; taking ``seen`` from the
        caller means no change made while the caller was busy goes unnoticed.
        """
        await trio.lowlevel.checkpoint()
        while self._protocols_version == seen:
            await self._protocols_lot.park()

    @property
    def protocols(self) -> list[str]:
        """The protocols this host serves."""
        return sorted(self._handlers)

    # -- connections -------------------------------------------------------------------------

    def connection(self, peer: PeerID) -> MuxedConnection | None:
        """A live connection to ``peer``, if there is one: a direct one before a relayed one."""
        live = [c for c in self._connections.get(peer, ()) if not c.is_closed]
        live.sort(key=lambda c: c.remote_addr is not None and is_relayed(c.remote_addr))
        return live[0] if live else None

    def connected_peers(self) -> list[PeerID]:
        """Peers with at least one live connection."""
        return [peer for peer in self._connections if self.connection(peer) is not None]

    # -- resources ---------------------------------------------------------------------------

    def protect(self, peer: PeerID) -> None:
        """Keep ``peer``'s connections: never evicted, and allowed into the reserved slots."""
        self._resources.protect(peer)

    def unprotect(self, peer: PeerID) -> None:
        """Undo :meth:`protect` (a no-op for a peer not protected)."""
        self._resources.unprotect(peer)

    def is_protected(self, peer: PeerID) -> bool:
        """True if :meth:`protect` was called for ``peer`` (and not undone)."""
        return self._resources.is_protected(peer)

    def resource_usage(self) -> ResourceUsage:
        """A snapshot of connections, handshakes, refusals and evictions, with the limits."""
        return self._resources.usage()

    def _admit(self, conn: MuxedConnection, ip: str | None) -> None:
        """Charge ``conn`` to its scopes; close the connection it evicts, if any.

        Raises:
            ResourceLimitError: a scope is full and nothing may be evicted.
        """
        victim = self._resources.add_connection(
            conn,
            peer=conn.remote_peer,
            ip=ip,
            outbound=conn.is_client,
            now=trio.current_time(),
            open_streams=_open_streams,
        )
        if isinstance(victim, MuxedConnection):
            logger.warning(
                "evicting the connection with %s (%s, %d streams) to admit %s",
                victim.remote_peer,
                victim.remote_addr,
                victim.stream_count,
                conn.remote_peer,
            )
            self._nursery.start_soon(victim.aclose)

    # -- connection events -------------------------------------------------------------------

    @asynccontextmanager
    async def connection_events(
        self, *, max_queued: int = DEFAULT_MAX_QUEUED, include_existing: bool = False
    ) -> AsyncIterator[ConnectionEvents]:
        """Subscribe to connection events for the duration of the ``async with`` block.

        Drain the subscription (``async for event in events``) in a task of a nursery you own.
        At most ``max_queued`` events wait in it; beyond that the oldest are dropped and the next
        event received is an :class:`~p2pchat.net.events.EventsDropped` with their number. With
        ``include_existing``, the subscription starts with a ``ConnectionOpened`` for each live
        connection, taken in the same step as the subscription so that none is missed or
        repeated. Once the Host has shut down, the iteration ends after the last event.

        Raises:
            ValueError: ``max_queued`` is less than 1.
        """
        events = ConnectionEvents(max_queued)
        if include_existing:
            for conn, peer in self._announced.items():
                events._publish(ConnectionOpened(peer, conn))
        if self._events_ended:
            events._end()
        self._subscriptions.add(events)
        try:
            yield events
        finally:
            self._subscriptions.discard(events)
            events._close()

    def _publish(self, event: ConnectionOpened | ConnectionClosed) -> None:
        for events in list(self._subscriptions):
            events._publish(event)

    def _end_events(self) -> None:
        self._events_ended = True
        for events in list(self._subscriptions):
            events._end()

    async def _run_connection(
        self,
        conn: MuxedConnection,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        peer = conn.remote_peer
        self._connections.setdefault(peer, []).append(conn)
        self.peer_store.set_public_key(peer, conn.secure.remote_public_key)
        logger.info(
            "connected to %s (%s, %s)",
            peer,
            "outbound" if conn.is_client else "inbound",
            conn.remote_addr,
        )
        opened = False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(conn.run)
                self._publish(ConnectionOpened(peer, conn))
                self._announced[conn] = peer
                opened = True
                task_status.started()
                while True:
                    try:
                        stream = await conn.accept_stream()
                    except MuxerError:
                        break
                    nursery.start_soon(self._serve_stream, stream)
                nursery.cancel_scope.cancel()
        finally:
            self._resources.remove_connection(conn)
            conns = self._connections.get(peer, [])
            if conn in conns:
                conns.remove(conn)
            if not conns:
                self._connections.pop(peer, None)
            if opened:
                del self._announced[conn]
                self._publish(ConnectionClosed(peer, conn))
            logger.info("disconnected from %s: %s", peer, conn.broken_reason)

    async def _serve_stream(self, stream: MuxedStream) -> None:
        peer = stream.remote_peer
        # A stream that has said nothing yet counts against the peer's few silent ones
        # (specs/host.md "Stream limits"); one that came with its proposal is answered at once.
        silent = not stream.has_unread_data
        if silent and not self._streams.start_negotiation(peer):
            logger.warning(
                "reset a stream from %s: %d of its streams are silent in negotiation (the limit)",
                peer,
                self._streams.max_negotiating,
            )
            await stream.reset()
            return
        try:
            protocol = await self._negotiate_inbound(stream)
        finally:
            if silent:
                self._streams.end_negotiation(peer)
        if protocol is None:
            return
        if not self._streams.open(peer, protocol):
            logger.warning(
                "reset a %s stream from %s: it already has %d open (the limit)",
                protocol,
                peer,
                self._streams.cap(protocol),
            )
            await stream.reset()
            return
        try:
            await self._run_handler(stream, protocol)
        finally:
            self._streams.close(peer, protocol)

    async def _negotiate_inbound(self, stream: MuxedStream) -> str | None:
        """The protocol agreed on ``stream`` among those the peer has room for, or None (the
        stream was reset, or closed by us)."""
        offered = self._streams.offered(stream.remote_peer, self._handlers.keys())
        try:
            with trio.fail_after(self.config.negotiate_timeout):
                protocol, trailing = await negotiate_inbound(stream, offered)
        except (NegotiationError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            logger.info("stream from %s not negotiated: %s", stream.remote_peer, exc or "timeout")
            await stream.reset()
            return None
        except trio.ClosedResourceError:
            return None
        if protocol not in self._handlers:  # removed while negotiating
            await stream.reset()
            return None
        stream.unreceive(trailing)
        return protocol

    async def _run_handler(self, stream: MuxedStream, protocol: str) -> None:
        handler = self._handlers.get(protocol)
        if handler is None:  # removed meanwhile
            await stream.reset()
            return
        stream.protocol = protocol
        finished = False
        try:
            await handler(stream)
            finished = True
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("%s stream with %s ended: %s", protocol, stream.remote_peer, exc)
        except P2PChatError as exc:
            logger.info("%s handler for %s failed: %s", protocol, stream.remote_peer, exc)
        except Exception:
            logger.exception("%s handler for %s raised", protocol, stream.remote_peer)
        finally:
            with trio.CancelScope(shield=True):
                if finished:
                    await stream.aclose()
                else:  # the peer must not take a half-done exchange for a whole one
                    await stream.reset()

    # -- streams -----------------------------------------------------------------------------

    async def new_stream(self, target: PeerID | Multiaddr, protocols: Sequence[str]) -> MuxedStream:
        """Open a stream to ``target`` speaking the first of ``protocols`` it supports.

        Raises:
            DialError: no connection could be made.
            StreamOpenError: the stream could not be opened, or no protocol was agreed.
        """
        conn = await self.connect(target)
        try:
            stream = await conn.open_stream()
        except MuxerError as exc:
            raise StreamOpenError(str(exc)) from exc
        try:
            with trio.fail_after(self.config.negotiate_timeout):
                protocol, trailing = await negotiate_outbound(stream, protocols)
        except (NegotiationError, trio.BrokenResourceError) as exc:
            await stream.reset()
            raise StreamOpenError(f"{conn.remote_peer}: {exc}") from exc
        except trio.TooSlowError:
            await stream.reset()
            raise StreamOpenError(f"{conn.remote_peer}: protocol negotiation timed out") from None
        stream.protocol = protocol
        stream.unreceive(trailing)
        return stream

    # -- lifecycle ---------------------------------------------------------------------------

    async def _listen(
        self, addr: Multiaddr, *, task_status: trio.TaskStatus[list[Multiaddr]]
    ) -> None:
        """Bind ``addr`` and serve it; report the bound addresses once listening.

        trio.serve_listeners runs the upgrade of each accepted connection in a handler task and
        retries accept after the errors that mean "out of resources" (EMFILE and the like).
        """
        listeners = await listen_tcp(addr, reuse_port=self.config.reuse_port)
        bound = [listener_multiaddr(listener) for listener in listeners]
        # A wildcard (0.0.0.0, ::) is shown and advertised as the addresses others can dial.
        interfaces = interface_addresses()
        task_status.started([a for b in bound for a in expand_wildcard(b, interfaces)])
        await trio.serve_listeners(self._accept_one, listeners)

    async def _accept_one(self, tcp: trio.SocketStream) -> None:
        where = remote_multiaddr(tcp)
        ip = _remote_ip(tcp)
        try:
            slot = self._resources.open_handshake(ip, now=trio.current_time())
        except ResourceLimitError as exc:
            logger.warning("refused connection from %s: %s", where, exc)
            await trio.aclose_forcefully(tcp)
            return
        try:
            conn = await self._upgrade_inbound(tcp, where, expected_peer=None)
        finally:
            self._resources.close_handshake(slot)
        if conn is not None:
            await self._run_inbound(conn, where, ip)

    async def serve_inbound(
        self, transport: trio.abc.Stream, remote_addr: Multiaddr, *, expected_peer: PeerID
    ) -> None:
        """Upgrade an inbound byte stream that is not a TCP socket (a relayed ``/stop`` stream)
        and run the connection on it like any other, until it ends. A peer that authenticates as
        another than ``expected_peer`` is dropped."""
        conn = await self._upgrade_inbound(transport, remote_addr, expected_peer=expected_peer)
        if conn is not None:
            await self._run_inbound(conn, remote_addr, None)

    async def _upgrade_inbound(
        self, transport: trio.abc.Stream, where: Multiaddr | None, *, expected_peer: PeerID | None
    ) -> MuxedConnection | None:
        transport, dial_as = await self.dialer.resolve_inbound(transport, where)
        expected_peer = dial_as or expected_peer
        try:
            conn = await upgrade(
                transport,
                self.identity,
                outbound=dial_as is not None,
                expected_peer=dial_as,
                remote_addr=where,
                handshake_timeout=self.config.handshake_timeout,
                config=self.config.muxer,
            )
        except HandshakeError as exc:
            logger.warning("dropped inbound connection from %s: %s", where, exc.reason)
            return None
        if expected_peer is not None and conn.remote_peer != expected_peer:
            logger.warning("dropped inbound connection from %s: not %s", where, expected_peer)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await conn.aclose()
            return None
        return conn

    async def _run_inbound(
        self, conn: MuxedConnection, where: Multiaddr | None, ip: str | None
    ) -> None:
        try:
            self._admit(conn, ip)
        except ResourceLimitError as exc:
            logger.warning("refused connection from %s (%s): %s", conn.remote_peer, where, exc)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await conn.aclose()
            return
        await self._run_connection(conn)

    async def aclose(self) -> None:
        """Close every connection (GoAway first) and stop listening."""
        for conns in list(self._connections.values()):
            for conn in list(conns):
                await conn.aclose()
        self._nursery.cancel_scope.cancel()


def _open_streams(key: Hashable) -> int:
    return key.stream_count if isinstance(key, MuxedConnection) else 0


def _remote_ip(tcp: trio.SocketStream) -> str:
    try:
        name = tcp.socket.getpeername()
    except OSError:
        return "?"
    return str(name[0]) if isinstance(name, tuple) else str(name)


@asynccontextmanager
async def open_host(identity: KeyPair, config: HostConfig | None = None) -> AsyncIterator[Host]:
    """Run a host: listening on ``config.listen``, serving identify and ping.

    Raises:
        TransportError: a listen address cannot be bound.
    """
    config = config if config is not None else HostConfig()
    host: Host | None = None
    try:
        async with open_service_nursery() as nursery:
            host = Host(identity, config, nursery)
            install_ping(host)
            try:
                # identify subscribes before the first listener runs: it sees every connection.
                async with open_identify(host):
                    for addr in config.listen:
                        host._listen_addrs.extend(await nursery.start(host._listen, addr))
                    yield host
            finally:
                # Last: aclose cancels the nursery, which must not cut short an exit above.
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await host.aclose()
    finally:
        # Every connection task has ended (and published its ConnectionClosed): end the streams.
        if host is not None:
            host._end_events()
