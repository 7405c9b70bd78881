"""Start-up of a chat node: load the engine from the store, open the services around it, serve
``/p2pchat/1.0.0`` (specs/chat.md). :func:`open_chat_node` is re-exported by
:mod:`p2pchat.chat.node`, whose :class:`~p2pchat.chat.node.ChatNode` it builds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from ..aio import open_service_nursery
from ..identity import PeerID
from ..net.host import Host
from .artifacts import Artifacts
from .core import crypto
from .core.engine import ChatEngine
from .core.packet import Packet
from .services.addresses import AddressBook
from .services.blobs import BlobService
from .services.clients import open_client_pool
from .services.deliver import DeliverService
from .services.dispatch import install_chat as _install_chat
from .services.handlers import ChatHandlers
from .services.keys import KeyService
from .services.member_records import MemberRecordFile
from .services.outbox import run_outbox
from .services.ratify import RatifyService
from .services.runtime import Runtime, now_ms
from .services.sync import SyncService
from .store import ChatStore, StoredMessage
from .store.chunks import BLOB_DIR, BlobStore

if TYPE_CHECKING:
    from .node import ChatConfig, ChatNode

PROTOCOL_ID: Final = "/p2pchat/1.0.0"
#: Queued messages resumed at start-up (the rest wait in the store for the next start).
MAX_OUTBOX_LOAD: Final = 100_000


def decode_row(row: StoredMessage) -> Packet:
    """The packet of a stored row.

    Raises:
        DecodeError: the row does not decode.
    """
    return Packet.decode(row.packet_with_certificate())


async def _load_hpke(store: ChatStore, kem: str) -> crypto.HpkeKeyPair:
    stored = await store.get_hpke_key(kem)
    if stored is not None:
        return crypto.HpkeKeyPair.from_private_bytes(kem, stored.private)
    pair = crypto.HpkeKeyPair.generate(kem)
    await store.put_hpke_key(kem, pair.to_private_bytes(), pair.public_bytes())
    return pair


async def _load_engine(store: ChatStore, engine: ChatEngine) -> None:
    for record in await store.list_groups():
        rosters = await store.get_rosters(record.group_id)
        packets = [Packet.decode(r.packet) for r in sorted(rosters, key=lambda r: r.epoch)]
        ratified = [decode_row(row) for row in await store.all_ratified(record.group_id)]
        keys = await store.get_epoch_keys(record.group_id)
        engine.load_group(record.genesis, packets, keys, ratified)
        for pending in await store.others_pending(record.group_id):
            packet = decode_row(pending)
            engine.load_pending(packet, received_at=pending.received_at, size=pending.wire_size)
            await _load_vote(store, engine, packet)
    now = now_ms()
    for entry in await store.outbox_due(2**62, limit=MAX_OUTBOX_LOAD):
        row = await store.get_message(entry.group_id, entry.message_hash)
        if row is not None:
            packet = decode_row(row)
            engine.load_outbox(packet, now, rank=entry.created_at)
            await _load_vote(store, engine, packet)


async def _load_vote(store: ChatStore, engine: ChatEngine, packet: Packet) -> None:
    """Our stored vote for a pending message, if any: it closes an epoch for us or goes into
    our closing commitment (specs/chat.md §14)."""
    if await store.get_vote(packet.message.group_id, packet.message_hash) is not None:
        engine.load_vote(packet)


@asynccontextmanager
async def open_chat_node(
    host: Host,
    store: ChatStore,
    config: ChatConfig | None = None,
    *,
    records_path: Path | None = None,
) -> AsyncIterator[ChatNode]:
    """Run the chat protocol on ``host`` with ``store``: serve ``/p2pchat/1.0.0``, resume the
    outbox, and sync with group members as they connect. With ``records_path`` (the data dir's
    ``member-records.cbor``), the members' signed peer records learnt are kept there and read
    back at start, before members are dialed (specs/chat.md §12).

    Raises:
        StoreError: the store cannot be read.
    """
    from .node import ChatConfig, ChatNode  # the facade re-exports this function

    config = config if config is not None else ChatConfig()
    hpke = await _load_hpke(store, config.kem)
    engine = ChatEngine(host.identity, hpke, config.engine_config())
    await _load_engine(store, engine)
    runtime = Runtime(engine, store)
    async with (
        open_client_pool(host, query_timeout=config.query_timeout) as clients,
        open_service_nursery() as ratify_nursery,
        open_service_nursery() as deliver_nursery,
        open_service_nursery() as sync_nursery,
        open_service_nursery() as artifacts_nursery,
        open_service_nursery() as nursery,
    ):
        records = None if records_path is None else MemberRecordFile(host, records_path)
        addresses = AddressBook(host, clients, records, nursery)
        sync = SyncService(runtime, clients, sync_nursery, addresses)
        node = ChatNode(host, store, runtime, clients, sync, config)
        node._addresses = addresses
        node._protect_members()
        keys = KeyService(runtime, store, clients, ratify_nursery)
        keys.register(node.dispatcher)
        runtime.attach(
            ratify=RatifyService(runtime, clients, ratify_nursery, addresses),
            deliver=DeliverService(
                clients,
                deliver_nursery,
                retry_initial=config.retry_initial,
                retry_max=config.retry_max,
                connected=host.connected_peers,
            ),
            sync=sync,
            fetcher=sync,
            publish=node._publish,
            ratified=node._ratified,
            keys=keys,
        )
        node.artifacts = _open_artifacts(host, store, engine, artifacts_nursery, config)
        custody = keys.custody(None if node.artifacts is None else node.artifacts.hold_before_vote)
        handlers = ChatHandlers(runtime, store, hpke.kem, hpke.public_bytes(), host, custody)
        handlers.addresses = addresses
        handlers.register(node.dispatcher)
        _install_chat(host, node.dispatcher)
        if node.artifacts is not None:
            node.artifacts.blobs.install()
            nursery.start_soon(node.artifacts.resume)
            nursery.start_soon(node.artifacts.run_sweeps)
        await nursery.start(node._watch_connections)
        nursery.start_soon(run_outbox, runtime)
        if records is not None:
            await records.load(node.current_members())
            nursery.start_soon(records.run_saver, node.current_members)
        nursery.start_soon(node._connect_members)
        nursery.start_soon(node._honour_leaves)
        try:
            yield node
        finally:
            host.remove_stream_handler(PROTOCOL_ID)
            if records is not None:
                with trio.CancelScope(shield=True):
                    await records.save(node.current_members())
            if node.artifacts is not None:
                node.artifacts.blobs.uninstall()


def _open_artifacts(
    host: Host, store: ChatStore, engine: ChatEngine, nursery: trio.Nursery, config: ChatConfig
) -> Artifacts | None:
    """The artifact service, its blob files beside the store (None without a data dir)."""
    data_dir = getattr(store, "data_dir", None)
    if data_dir is None:
        return None
    settings = config.artifacts
    files = BlobStore(data_dir / BLOB_DIR, reserve=settings.disk_reserve)

    def is_member(group_id: bytes, peer: PeerID) -> bool:
        view = engine.find(group_id)
        return view is not None and view.is_current_member(peer)

    blobs = BlobService(host, files, is_member, stall_timeout=settings.stall_timeout)
    return Artifacts(engine, store, blobs, nursery, settings)
