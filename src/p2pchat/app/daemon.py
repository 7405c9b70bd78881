"""The running node: a Host, the store, the chat node, bootstrap, mDNS and the control socket.

Theory of operation
-------------------
:func:`open_daemon` brings a node up in an order that makes every failure early and clear:

1. the identity is loaded (or created) from the data dir;
2. the store is opened, which **locks the data dir**: a second node on it fails here, before it
   binds a port or touches the control socket;
3. the Host listens; the known peers (``peers.json``) go into its peer store, so the chat node,
   which dials its groups' members at start, finds them without discovery (the file keeps
   those members first: :mod:`p2pchat.app.knownpeers`);
4. the chat node starts (serving ``/p2pchat/1.0.0``, resuming its outbox, syncing with members
   as they connect); perf is served if enabled; the plug-ins load (:mod:`p2pchat.app.plugins`;
   one that fails is reported and unloaded, the node goes on);
5. AutoNAT and, with ``[dht] enabled``, the DHT start (:mod:`p2pchat.app.internet`): the chat
   node then looks unreachable members up in the DHT and meets its groups at their rendezvous;
6. in the daemon's nursery: the bootstrap peers are kept connected, mDNS runs if enabled, the
   known peers are dialed once, the known-peers file is saved a moment after each new
   connection (once identify has told us the peer's listen addresses), and the control socket
   serves the ``p2pchat`` commands (:meth:`Daemon.handle`).

Leaving the ``async with`` block (``p2pchat node`` leaves it on SIGINT/SIGTERM or a ``stop``
request) saves the known peers, removes the control socket, stops the chat node, closes every
connection and releases the store, in the reverse order.

The operations of the control socket (specs/control.md) are one table,
:data:`~p2pchat.app.operations.OPERATIONS`, that :meth:`Daemon.handle` looks requests up in; the
known peers' file is kept by :class:`~p2pchat.app.knownpeers.KnownPeerFile`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from ..aio import open_service_nursery
from ..chat.artifacts import ArtifactConfig
from ..chat.core import cbor
from ..chat.core.packet import Certificate
from ..chat.node import RECORDS_FILE, ChatConfig, ChatNode, open_chat_node
from ..chat.store import ChatStore, open_store
from ..discovery.bootstrap import BackoffPolicy, run_bootstrap
from ..errors import DecodeError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..net.events import ConnectionClosed
from ..net.host import Host, HostConfig, open_host
from ..net.resources import ResourceLimits
from .config import Config
from .control import Emit, serve_control
from .datadir import control_socket_path, load_or_create_identity, peers_path
from .internet import Internet, InternetOptions, open_internet
from .knownpeers import KnownPeerFile
from .op_args import DaemonError
from .operations import OPERATIONS
from .plugins import PluginManager, open_plugins
from .reading import Reading
from .relaying import Relaying, RelayOptions, open_relaying

__all__ = ["Daemon", "DaemonError", "NodeOptions", "open_daemon"]

logger = logging.getLogger(__name__)
MIB = 1024 * 1024


@attrs.frozen
class NodeOptions:
    """How to run a node: the configuration file's values after command-line overrides."""

    data_dir: Path
    listen: tuple[Multiaddr, ...]
    bootstrap: tuple[Multiaddr, ...] = ()
    mdns: bool = False
    mdns_interface: str = "lo"
    perf: bool = False
    chat: ChatConfig = attrs.Factory(ChatConfig)
    #: Serve the control socket (the demo's in-process nodes do too).
    control: bool = True
    bootstrap_backoff: BackoffPolicy = attrs.Factory(BackoffPolicy)
    #: What the Host allows other peers ([limits] in the config file).
    limits: ResourceLimits = attrs.Factory(ResourceLimits)
    #: Plug-ins to load (paths or module names), and whether to load the installed ones
    #: (the ``p2pchat.plugins`` entry points); [plugins] in the config file.
    plugins: tuple[str, ...] = ()
    plugin_entry_points: bool = False
    #: Keep a full-text index of our decrypted history ([search] in the config file).
    search: bool = True
    #: [dht] and [autonat] (app/internet.py).
    internet: InternetOptions = attrs.Factory(InternetOptions)
    #: [relay] (app/relaying.py).
    relay: RelayOptions = attrs.Factory(RelayOptions)

    @classmethod
    def from_config(cls, data_dir: Path, config: Config) -> NodeOptions:
        """Options from a configuration file's values."""
        return cls(
            data_dir=data_dir,
            listen=config.listen,
            bootstrap=config.bootstrap,
            mdns=config.mdns,
            mdns_interface=config.mdns_interface,
            perf=config.perf,
            chat=ChatConfig(
                send_timeout=config.send_timeout,
                query_timeout=config.query_timeout,
                artifacts=ArtifactConfig(
                    disk_reserve=config.disk_reserve_mib * MIB,
                    fetch_max=config.lazy_above_mib * MIB or None,
                    keep_days=config.keep_days or None,
                    custody_quota=config.custody_quota_mib * MIB,
                ),
            ),
            limits=ResourceLimits(
                max_connections=config.max_connections,
                max_inbound_per_ip=config.max_inbound_per_ip,
                max_per_peer=config.max_per_peer,
                max_handshakes=config.max_handshakes,
                max_handshakes_per_ip=config.max_handshakes_per_ip,
                reserved_slots=config.reserved_slots,
                max_negotiating_per_peer=config.max_negotiating_per_peer,
                max_streams_per_protocol=config.max_streams_per_protocol,
            ),
            plugins=config.plugins,
            plugin_entry_points=config.plugin_entry_points,
            search=config.search,
            internet=InternetOptions(
                dht=config.dht,
                dht_mode=config.dht_mode,
                dht_bootstrap=config.dht_bootstrap,
                autonat=config.autonat,
            ),
            relay=RelayOptions(
                serve=config.relay,
                client=config.relay_client,
                reserve=config.relay_reserve,
                hole_punch=config.relay_hole_punch,
                auto_relays=config.relay_auto,
            ),
        )


class Daemon:
    """A running node. Made by :func:`open_daemon`."""

    def __init__(
        self,
        options: NodeOptions,
        host: Host,
        store: ChatStore,
        chat: ChatNode,
        known_peers: KnownPeerFile,
    ) -> None:
        self.options = options
        self.host = host
        self.store = store
        self.chat = chat
        self.known_peers = known_peers
        #: Set by the ``stop`` operation; ``p2pchat node`` waits on it beside its signals.
        self.stop_requested = trio.Event()
        self.mdns_running = False
        #: The plug-ins (set by :func:`open_daemon` once they are loaded).
        self.plugins: PluginManager | None = None
        #: Read marks and the search index (app/reading.py).
        self.reading = Reading(options.data_dir, search=options.search)
        #: AutoNAT and the DHT, as far as enabled (set by open_daemon).
        self.internet: Internet | None = None
        #: The relay service and client (set by open_daemon).
        self.relaying: Relaying | None = None

    @property
    def peer_id(self) -> PeerID:
        """This node's peer ID."""
        return self.host.peer_id

    async def watch_connections(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Mark the known peers as changed (they are saved soon) whenever a connection comes up:
        the Host's connection events, drained in the daemon's nursery."""
        async with self.host.connection_events(include_existing=True) as events:
            task_status.started()
            async for event in events:
                if not isinstance(event, ConnectionClosed):
                    self.known_peers.changed()

    async def handle(self, request: dict[str, Any], emit: Emit) -> Any:
        """Run one control request (specs/control.md), found in
        :data:`~p2pchat.app.operations.OPERATIONS` by its ``"op"``.

        Raises:
            DaemonError: an unknown operation or a bad argument.
            P2PChatError: the operation failed (the message says why).
        """
        op = request.get("op")
        if not isinstance(op, str):
            raise DaemonError("a request needs an 'op'")
        operation = OPERATIONS.get(op)
        if operation is None:
            raise DaemonError(f"unknown operation {op!r}")
        return await operation(self, request, emit)

    async def votes(self, group_id: bytes, message_hash: bytes) -> int | None:
        """The number of votes in a ratified message's certificate; None if it has none."""
        row = await self.store.get_message(group_id, message_hash)
        if row is None or row.certificate is None:
            return None
        try:
            certificate = Certificate.from_cbor(cbor.loads(row.certificate, max_size=1 << 20))
        except DecodeError:
            return None
        return len(certificate.votes)


@asynccontextmanager
async def open_daemon(options: NodeOptions) -> AsyncIterator[Daemon]:
    """Run a node on ``options.data_dir`` for the duration of the block.

    Raises:
        StoreLockedError: another node runs on this data dir.
        KeyFileError, DataDirError, StoreError: the data dir cannot be used.
        TransportError: a listen address cannot be bound.
        ControlError: the control socket cannot be created.
    """
    identity = await trio.to_thread.run_sync(load_or_create_identity, options.data_dir)
    async with (
        open_store(options.data_dir) as store,
        open_host(
            identity,
            HostConfig(
                listen=options.listen,
                limits=options.limits,
                reuse_port=options.relay.hole_punch,
            ),
        ) as host,
    ):
        known_peers = await KnownPeerFile.load(host, peers_path(options.data_dir))
        if options.perf:
            from ..net.perf import install_perf

            install_perf(host)
        async with (
            open_relaying(host, options.relay) as relaying,
            open_chat_node(
                host, store, options.chat, records_path=options.data_dir / RECORDS_FILE
            ) as chat,
            open_plugins(
                host, chat, options.plugins, entry_points=options.plugin_entry_points
            ) as plugins,
            open_internet(host, chat, options.internet, relaying) as internet,
            open_service_nursery() as nursery,
        ):
            known_peers.follow_members(partial(_group_members, chat))
            daemon = Daemon(options, host, store, chat, known_peers)
            daemon.plugins = plugins
            if not options.search:
                await daemon.reading.forget_search()
            deleted, deleted_out = trio.open_memory_channel[tuple[bytes, bytes]](256)
            chat.on_deleted = partial(_forget_deleted, deleted)
            nursery.start_soon(daemon.reading.run_forgetting, deleted_out)
            daemon.internet = internet
            daemon.relaying = relaying
            await nursery.start(daemon.watch_connections)
            nursery.start_soon(known_peers.run_saver)
            nursery.start_soon(known_peers.dial)
            if options.bootstrap:
                await nursery.start(
                    partial(
                        run_bootstrap, host, options.bootstrap, policy=options.bootstrap_backoff
                    )
                )
            if options.mdns:
                await _start_mdns(daemon, nursery)
            if options.control:
                await nursery.start(
                    serve_control, control_socket_path(options.data_dir), daemon.handle
                )
            try:
                yield daemon
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await known_peers.save()


def _forget_deleted(
    channel: trio.MemorySendChannel[tuple[bytes, bytes]], group_id: bytes, message_hash: bytes
) -> None:
    """Queue a deleted message for the search index; when the queue is full the next search
    rebuilds its group without it anyway."""
    try:
        channel.send_nowait((group_id, message_hash))
    except (trio.WouldBlock, trio.BrokenResourceError):
        logger.warning("search index: a deleted message waits for the next search")


def _group_members(chat: ChatNode) -> set[PeerID]:
    """The members of every group we are in (their current rosters)."""
    return {m.peer for g in chat.groups() for m in chat.group_state(g).current_roster.members}


async def _start_mdns(daemon: Daemon, nursery: trio.Nursery) -> None:
    """Start mDNS on the configured interface; a failure is logged, not fatal (the node works
    without discovery)."""
    from ..discovery.mdns import MdnsConfig, MdnsError, run_mdns

    config = MdnsConfig(interface=daemon.options.mdns_interface, dial_discovered=True)
    try:
        await nursery.start(partial(run_mdns, daemon.host, config))
    except (MdnsError, ValueError) as exc:
        logger.warning("mDNS is off: %s", exc)
        return
    daemon.mdns_running = True
    logger.info("mDNS on %s", daemon.options.mdns_interface)
