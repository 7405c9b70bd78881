"""The Kademlia DHT service (``/ipfs/kad/1.0.0``) on a Host: the Trio adapter of
``protocols/kad``.

Theory of operation
-------------------
:func:`open_kad` opens the service's nursery; every task below lives in it and ends with the
``async with`` block:

* in **server** mode the host serves ``/ipfs/kad/1.0.0``: each inbound stream is read with a
  :class:`~p2pchat.protocols.kad.MessageReader`, each request answered by the sans-IO
  :class:`~p2pchat.protocols.kad.KadServer` (which charges the peer's request budget), until
  the requester closes or stays idle (``stream_idle_timeout``). Streams beyond
  ``max_streams_per_peer`` / ``max_streams`` are reset. A protocol error resets the stream and
  the Host logs the reason. In **client** mode nothing is served.
* the **table keeper** task files peers in the routing table: the peer store tells it (through
  :meth:`~p2pchat.net.peerstore.PeerStore.watch_protocols`, into a bounded queue) when identify
  learns a peer's protocols, and a peer that serves ``/ipfs/kad/1.0.0`` is added (one that
  stopped serving it is removed). A peer that answers one of our requests is added too; one
  that fails is dropped (its replacement promoted). When a bucket is full, its least recently
  seen peer is checked with a kad PING (at most ``MAX_CHECKS`` at once) and dropped if silent.
* the **refresher** task bootstraps (dials the configured bootstrap peers and looks ourselves
  up), then every ``refresh_interval`` looks up ourselves and one random key, and republishes
  the keys we provide every ``republish_interval``.

Lookups (:meth:`KadDHT.find_peer`, :meth:`KadDHT.closest_peers`, :meth:`KadDHT.providers`,
:meth:`KadDHT.get_value`) drive a :class:`~p2pchat.protocols.kad.Lookup` from the caller's
task: each request runs in a nursery of that call, one stream per request, under
``request_timeout``, and the whole lookup under ``lookup_timeout``. Addresses that answers give
for a peer are put in the peer store (for ``TEMP_ADDR_TTL``) only when we are about to dial it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import trio

from ..aio import open_service_nursery
from ..errors import P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..net.identify import signed_record
from ..net.muxer import MuxedStream
from ..net.peerstore import TEMP_ADDR_TTL
from ..protocols import kad as core
from ..protocols.kad.providers import Provider
from ..protocols.kad.records import peer_record_key
from ..records import RecordError, open_peer_record
from .kad_config import KadConfig, KadError, KadStatistics, LookupResult

if TYPE_CHECKING:
    from ..net.host import Host

logger = logging.getLogger(__name__)

PROTOCOL_ID: Final = core.PROTOCOL_ID
READ_SIZE: Final = 16 * 1024
#: Table checks (kad PING of a full bucket's oldest peer) running at once.
MAX_CHECKS: Final = 8
#: Peers queued for the table keeper by the peer store; more are dropped (and re-learned later).
MAX_QUEUED_PEERS: Final = 256
#: Peers an answer may give addresses for that we keep for the rest of a lookup.
MAX_LOOKUP_ADDRS: Final = 512


class KadDHT:
    """The DHT on one host; made by :func:`open_kad`."""

    def __init__(self, host: Host, config: KadConfig, nursery: trio.Nursery) -> None:
        self.host = host
        self.config = config
        self._nursery = nursery
        self.table = core.RoutingTable(host.peer_id, k=config.k)
        self.records = core.RecordStore()
        self.provider_store = core.ProviderStore(ttl=config.provider_ttl)
        self.server = core.KadServer(
            host.peer_id, self.table, self.records, self.provider_store, self._addrs_of
        )
        self._provided: set[bytes] = set()
        self._checking: set[PeerID] = set()
        self._streams_by_peer: dict[PeerID, int] = {}
        self._streams = 0
        self._requests_sent = 0
        self._requests_failed = 0
        self._queue_send, self._queue_receive = trio.open_memory_channel[PeerID](MAX_QUEUED_PEERS)
        self.bootstrapped = trio.Event()
        self._mode = ""
        self.set_mode(config.mode)

    @property
    def mode(self) -> str:
        """``"server"`` (answering ``/ipfs/kad/1.0.0``) or ``"client"``."""
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch between server and client mode (``mode = auto`` follows AutoNAT); a peer
        learns of it through identify push, as the set of protocols we serve changes.

        Raises:
            ValueError: neither "server" nor "client".
        """
        if mode not in ("server", "client"):
            raise ValueError(f"kad mode is 'server' or 'client', not {mode!r}")
        if mode == self._mode:
            return
        self._mode = mode
        if mode == "server":
            self.host.set_stream_handler(PROTOCOL_ID, self._serve)
        else:
            self.host.remove_stream_handler(PROTOCOL_ID)
        logger.info("DHT in %s mode", mode)

    def statistics(self) -> KadStatistics:
        """Sizes and counters of the service."""
        return KadStatistics(
            mode=self._mode,
            routing_table_size=len(self.table),
            buckets=self.table.bucket_sizes(),
            records=len(self.records),
            providers=len(self.provider_store),
            provided_keys=len(self._provided),
            inbound_streams=self._streams,
            requests_sent=self._requests_sent,
            requests_failed=self._requests_failed,
        )

    # -- addresses -------------------------------------------------------------------------

    def _addrs_of(self, peer: PeerID) -> Sequence[Multiaddr]:
        if peer == self.host.peer_id:
            return self.host.advertised_addrs
        return self.host.peer_store.addrs(peer, trio.current_time())

    def _our_record(self) -> bytes:
        return signed_record(self.host)

    # -- the routing table -----------------------------------------------------------------

    def _on_protocols(self, peer: PeerID, protocols: tuple[str, ...]) -> None:
        """Peer store watcher: queue the peer for the table keeper (never blocks)."""
        if (PROTOCOL_ID in protocols) == (peer in self.table):
            return
        try:
            self._queue_send.send_nowait(peer)
        except trio.WouldBlock:
            logger.debug("kad table queue full; %s is learned later", peer)

    async def _keep_table(self) -> None:
        async for peer in self._queue_receive:
            if PROTOCOL_ID in self.host.peer_store.protocols(peer):
                self._seen(peer)
            else:
                self.table.remove(peer)

    def _seen(self, peer: PeerID) -> None:
        """``peer`` is a DHT server that is up: file it, checking a full bucket's oldest."""
        added = self.table.add(peer, trio.current_time())
        if added.result is core.AddResult.FULL and added.oldest is not None:
            oldest = added.oldest
            if oldest not in self._checking and len(self._checking) < MAX_CHECKS:
                self._checking.add(oldest)
                self._nursery.start_soon(self._check, oldest)

    async def _check(self, peer: PeerID) -> None:
        try:
            await self.request(peer, core.Message(core.MessageType.PING))
        except KadError:
            pass  # request() has dropped it from the table
        finally:
            self._checking.discard(peer)

    # -- serving ---------------------------------------------------------------------------

    async def _serve(self, stream: MuxedStream) -> None:
        peer = stream.remote_peer
        held = self._streams_by_peer.get(peer, 0)
        if held >= self.config.max_streams_per_peer or self._streams >= self.config.max_streams:
            logger.info("kad stream from %s refused: too many streams", peer)
            await stream.reset()
            return
        self._streams_by_peer[peer] = held + 1
        self._streams += 1
        try:
            await self._serve_requests(stream, peer)
        finally:
            self._streams -= 1
            left = self._streams_by_peer[peer] - 1
            if left:
                self._streams_by_peer[peer] = left
            else:
                del self._streams_by_peer[peer]

    async def _serve_requests(self, stream: MuxedStream, peer: PeerID) -> None:
        reader = core.MessageReader()
        while True:
            with trio.move_on_after(self.config.stream_idle_timeout) as idle:
                data = await stream.receive_some(READ_SIZE)
            if idle.cancelled_caught:
                logger.debug("kad stream from %s idle; closed", peer)
                return
            if data:
                reader.receive_data(data)
            else:
                reader.receive_eof()
            while True:
                request = reader.next_message()  # raises DecodeError: the Host resets
                if request is core.messages.NEED_DATA:
                    break
                reply = self.server.handle(peer, request, trio.current_time())
                if reply.type in (core.MessageType.FIND_NODE, core.MessageType.GET_PROVIDERS):
                    reply = attrs.evolve(reply, sender_record=self._our_record())
                await stream.send_all(core.frame(reply))
            if reader.at_clean_eof:
                return

    # -- requests --------------------------------------------------------------------------

    async def request(
        self, peer: PeerID, message: core.Message, addrs: Sequence[Multiaddr] = ()
    ) -> core.Message:
        """Send one request to ``peer`` on a new stream; its answer.

        A peer that answers enters the routing table; one that fails leaves it.

        Raises:
            KadError: no connection, protocol refused, a malformed answer, or a timeout.
        """
        self._requests_sent += 1
        if addrs:
            self.host.peer_store.add_addrs(peer, addrs, TEMP_ADDR_TTL, trio.current_time())
        try:
            with trio.fail_after(self.config.request_timeout):
                reply = await self._exchange(peer, message)
        except (P2PChatError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            self._requests_failed += 1
            self.table.failed(peer)
            raise KadError(f"kad {message.type.name} to {peer}: {exc or 'timed out'}") from exc
        except trio.ClosedResourceError as exc:
            self._requests_failed += 1
            raise KadError(f"kad {message.type.name} to {peer}: stream closed") from exc
        self._seen(peer)
        return reply

    async def _exchange(self, peer: PeerID, message: core.Message) -> core.Message:
        stream = await self.host.new_stream(peer, [PROTOCOL_ID])
        async with stream:
            await stream.send_all(core.frame(message))
            await stream.send_eof()
            reader = core.MessageReader()
            while True:
                data = await stream.receive_some(READ_SIZE)
                if data:
                    reader.receive_data(data)
                else:
                    reader.receive_eof()
                reply = reader.next_message()
                if reply is not core.messages.NEED_DATA:
                    break
                if not data:
                    raise KadError("the peer closed the stream without answering")
        if reply.type is not message.type:
            raise KadError(f"answer of type {reply.type.name} to {message.type.name}")
        return reply

    # -- lookups ---------------------------------------------------------------------------

    def _seeds(self, target: bytes) -> list[PeerID]:
        seeds = self.table.closest(target, self.config.k)
        if len(seeds) < self.config.k:
            for peer in self.host.connected_peers():
                if peer not in seeds and PROTOCOL_ID in self.host.peer_store.protocols(peer):
                    seeds.append(peer)
        return seeds

    async def _lookup(
        self,
        target: bytes,
        make_request: Callable[[], core.Message],
        on_answer: Callable[[PeerID, core.Message], bool] | None = None,
        *,
        seeds: Sequence[PeerID] = (),
    ) -> LookupResult:
        """Run one iterative lookup; ``on_answer`` returns True when the caller has enough."""
        lookup = core.Lookup(
            target,
            [*seeds, *self._seeds(target)],
            local=self.host.peer_id,
            k=self.config.k,
            alpha=self.config.alpha,
            max_queries=self.config.max_queries,
        )
        addrs: dict[PeerID, tuple[Multiaddr, ...]] = {}
        results_send, results_receive = trio.open_memory_channel[
            tuple[PeerID, core.Message | None]
        ](math.inf)

        async def query(peer: PeerID) -> None:
            try:
                reply: core.Message | None = await self.request(
                    peer, make_request(), addrs.get(peer, ())
                )
            except KadError as exc:
                logger.debug("%s", exc)
                reply = None
            results_send.send_nowait((peer, reply))

        hops = 0
        with trio.move_on_after(self.config.lookup_timeout):
            async with trio.open_nursery() as nursery:
                while not lookup.done:
                    for peer in lookup.next_queries():
                        nursery.start_soon(query, peer)
                    peer, reply = await results_receive.receive()
                    if reply is None:
                        lookup.failed(peer)
                        continue
                    named = []
                    for entry in reply.closer_peers:
                        named.append(entry.peer)
                        if entry.addrs and (entry.peer in addrs or len(addrs) < MAX_LOOKUP_ADDRS):
                            addrs[entry.peer] = entry.addrs
                    lookup.answered(peer, named)
                    hops = max(hops, lookup.hop(peer) or 0)
                    if on_answer is not None and on_answer(peer, reply):
                        lookup.finish()
                nursery.cancel_scope.cancel()
        return LookupResult(lookup.closest(), lookup.queries, hops)

    async def closest_peers(self, key: bytes) -> LookupResult:
        """The ``k`` DHT servers closest to ``key`` (a FIND_NODE lookup)."""

        def make() -> core.Message:
            return core.Message(core.MessageType.FIND_NODE, key=key)

        return await self._lookup(core.kad_key(key), make)

    async def find_peer(self, peer: PeerID) -> list[Multiaddr]:
        """Where ``peer`` can be reached: the addresses DHT servers know for it (empty if
        none was found). A connected peer's known addresses are returned at once."""
        if self.host.connection(peer) is not None:
            return list(self._addrs_of(peer))
        found: dict[Multiaddr, None] = {}
        key = peer.to_bytes()

        def make() -> core.Message:
            return core.Message(core.MessageType.FIND_NODE, key=key)

        def on_answer(_from: PeerID, reply: core.Message) -> bool:
            for entry in reply.closer_peers:
                if entry.peer == peer:
                    for addr in _record_addrs(peer, entry.signed_record) or entry.addrs:
                        found[addr] = None
            return bool(found)

        await self._lookup(core.kad_key(key), make, on_answer)
        return list(found)

    async def providers(self, key: bytes, count: int = 20) -> list[Provider]:
        """Up to ``count`` providers of ``key`` (a GET_PROVIDERS lookup; ours first)."""
        now = trio.current_time()
        found: dict[PeerID, Provider] = {p.peer: p for p in self.provider_store.get(key, now)}
        if key in self._provided:
            found.setdefault(
                self.host.peer_id,
                Provider(self.host.peer_id, tuple(self.host.advertised_addrs), math.inf),
            )

        def make() -> core.Message:
            return core.Message(core.MessageType.GET_PROVIDERS, key=key)

        def on_answer(_from: PeerID, reply: core.Message) -> bool:
            for entry in reply.provider_peers:
                if entry.peer not in found and len(found) < count:
                    found[entry.peer] = Provider(entry.peer, entry.addrs, math.inf)
            return len(found) >= count

        if len(found) < count:
            await self._lookup(core.kad_key(key), make, on_answer)
        return list(found.values())[:count]

    async def provide(self, key: bytes) -> int:
        """Announce us as a provider of ``key`` to the ``k`` closest servers (and republish
        it while the service runs); how many accepted."""
        self._provided.add(key)
        if self._mode == "server":
            self.provider_store.add(
                key, self.host.peer_id, tuple(self.host.advertised_addrs), trio.current_time()
            )
        return await self._announce(key)

    async def _announce(self, key: bytes) -> int:
        closest = await self.closest_peers(key)
        me = core.KadPeer(
            self.host.peer_id, tuple(self.host.advertised_addrs), signed_record=self._our_record()
        )
        message = core.Message(core.MessageType.ADD_PROVIDER, key=key, provider_peers=(me,))
        accepted = 0

        async def add(peer: PeerID) -> None:
            nonlocal accepted
            try:
                await self.request(peer, message)
            except KadError as exc:
                logger.debug("%s", exc)
                return
            accepted += 1

        async with trio.open_nursery() as nursery:
            for peer in closest.closest:
                nursery.start_soon(add, peer)
        return accepted

    def stop_providing(self, key: bytes) -> None:
        """Stop republishing ``key`` (records already placed expire by themselves)."""
        self._provided.discard(key)

    async def put_value(self, key: bytes, value: bytes) -> int:
        """Store ``value`` under ``key`` at the ``k`` closest servers (and here, in server
        mode); how many accepted.

        Raises:
            InvalidRecordError: the value is not valid under its namespace.
        """
        self.records.validate(key, value)
        if self._mode == "server":
            self.records.put(key, value, trio.current_time())
        closest = await self.closest_peers(key)
        message = core.Message(core.MessageType.PUT_VALUE, key=key, record=core.Record(key, value))
        accepted = 0

        async def put(peer: PeerID) -> None:
            nonlocal accepted
            try:
                await self.request(peer, message)
            except KadError as exc:
                logger.debug("%s", exc)
                return
            accepted += 1

        async with trio.open_nursery() as nursery:
            for peer in closest.closest:
                nursery.start_soon(put, peer)
        return accepted

    async def get_value(self, key: bytes) -> bytes | None:
        """The best valid value under ``key`` found in the DHT (or held here)."""
        validator = core.records.validator_for(self.records.validators, key)
        values: list[bytes] = []
        held = self.records.get(key, trio.current_time())
        if held is not None:
            values.append(held)

        def make() -> core.Message:
            return core.Message(core.MessageType.GET_VALUE, key=key)

        def on_answer(peer: PeerID, reply: core.Message) -> bool:
            record = reply.record
            if record is None or record.key not in (b"", key) or record.value in values:
                return False
            try:
                self.records.validate(key, record.value)
            except core.InvalidRecordError as exc:
                logger.info("%s sent an invalid record for a key: %s", peer, exc.hint)
                return False
            values.append(record.value)
            return False

        await self._lookup(core.kad_key(key), make, on_answer)
        if not values:
            return None
        return values[validator.select(key, values)]

    async def publish_peer_record(self) -> int:
        """Put our signed peer record under ``/p2pchat-peer/<our id>``; how many accepted."""
        return await self.put_value(peer_record_key(self.host.peer_id), self._our_record())

    # -- bootstrap and refresh -------------------------------------------------------------

    async def bootstrap(self) -> LookupResult:
        """Dial the bootstrap peers (each under ``request_timeout``), then look ourselves up."""
        seeds: list[PeerID] = []
        for addr in self.config.bootstrap:
            peer = addr.peer_id
            if peer is None or peer == self.host.peer_id:
                continue
            try:
                with trio.fail_after(self.config.request_timeout):
                    await self.host.connect(addr)
            except (P2PChatError, trio.TooSlowError) as exc:
                logger.info("kad bootstrap peer %s unreachable: %s", addr, exc)
                continue
            seeds.append(peer)
        result = await self._lookup(
            core.peer_key(self.host.peer_id),
            lambda: core.Message(core.MessageType.FIND_NODE, key=self.host.peer_id.to_bytes()),
            seeds=seeds,
        )
        self.bootstrapped.set()
        return result

    async def refresh(self) -> None:
        """Look ourselves and one random key up (keeps our neighbourhood and a far bucket
        fresh)."""
        await self.closest_peers(self.host.peer_id.to_bytes())
        await self.closest_peers(os.urandom(32))

    async def _refresher(self) -> None:
        await self.bootstrap()
        next_republish = trio.current_time() + self.config.republish_interval
        while True:
            await trio.sleep(self.config.refresh_interval)
            await self.refresh()
            if trio.current_time() >= next_republish:
                next_republish = trio.current_time() + self.config.republish_interval
                for key in list(self._provided):
                    await self._announce(key)


def _record_addrs(peer: PeerID, signed: bytes | None) -> tuple[Multiaddr, ...]:
    """The addresses of ``peer``'s signed peer record, if one came and verifies."""
    if signed is None:
        return ()
    try:
        record, _ = open_peer_record(signed)
    except RecordError:
        return ()
    return record.addresses if record.peer == peer else ()


@asynccontextmanager
async def open_kad(host: Host, config: KadConfig | None = None) -> AsyncIterator[KadDHT]:
    """Run the DHT on ``host`` for the duration of the ``async with`` block (see the module
    docstring); bootstrapping starts at once, in the background (``dht.bootstrapped``)."""
    config = config if config is not None else KadConfig()
    async with open_service_nursery() as nursery:
        dht = KadDHT(host, config, nursery)
        stop_watching = host.peer_store.watch_protocols(dht._on_protocols)
        try:
            nursery.start_soon(dht._keep_table)
            nursery.start_soon(dht._refresher)
            yield dht
        finally:
            stop_watching()
            dht.set_mode("client")


__all__ = [
    "KadConfig",
    "KadDHT",
    "KadError",
    "KadStatistics",
    "LookupResult",
    "open_kad",
]
