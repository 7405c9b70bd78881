"""identify (``/ipfs/id/1.0.0``) and identify/push served and used by a Host.

On every new connection we ask the peer who it is and file the answer in the peer store
(listen addresses, protocols, agent). We answer the same question with our own listen
addresses, protocols, public key and the address we see the peer at. When our protocols
change, :func:`push_identify` tells connected peers (``/ipfs/id/push/1.0.0``).

:func:`open_identify` (entered by ``open_host``) serves both protocols and subscribes to the
Host's connection events; the identify exchange of each new connection runs in a nursery that
:func:`open_identify` owns, so it ends with identify, never outlives it in the Host's nursery.
So do the pushes, which it sends when ``host.wait_protocols_changed`` reports a change.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import trio

from ..aio import open_service_nursery
from ..errors import DecodeError, P2PChatError
from ..identity import PeerID
from ..protocols import identify as core
from ..records import RecordError, make_peer_record, open_peer_record
from .events import ConnectionOpened, EventsDropped
from .muxer import MuxedConnection, MuxedStream
from .negotiate import negotiate_outbound
from .peerstore import CONNECTED_ADDR_TTL

if TYPE_CHECKING:
    from ..multiaddr import Multiaddr
    from .host import Host

logger = logging.getLogger(__name__)

PROTOCOL_VERSION: Final = "ipfs/0.1.0"
IDENTIFY_TIMEOUT: Final = 10.0
READ_SIZE: Final = 4096


#: Each host's latest record: (its addresses, its seq, the sealed envelope).
_RECORDS: weakref.WeakKeyDictionary[Host, tuple[tuple[Multiaddr, ...], int, bytes]] = (
    weakref.WeakKeyDictionary()
)


def signed_record(host: Host) -> bytes:
    """``host``'s signed peer record of its advertised addresses (specs/peer-record.md): made
    again only when they change, ``seq`` being the wall clock in milliseconds (and always
    above the previous one)."""
    addrs = tuple(host.advertised_addrs)
    held = _RECORDS.get(host)
    if held is not None and held[0] == addrs:
        return held[2]
    seq = time.time_ns() // 1_000_000
    if held is not None:
        seq = max(seq, held[1] + 1)
    sealed = make_peer_record(host.identity, seq, addrs).encode()
    _RECORDS[host] = (addrs, seq, sealed)
    return sealed


def our_info(host: Host, conn: MuxedConnection | None) -> core.IdentifyInfo:
    """The identify message ``host`` sends on ``conn``, with our signed peer record."""
    return core.IdentifyInfo(
        protocol_version=PROTOCOL_VERSION,
        agent_version=host.config.agent_version,
        public_key=host.identity.public_key,
        listen_addrs=host.advertised_addrs,
        observed_addr=conn.remote_addr if conn is not None else None,
        protocols=host.protocols,
        signed_peer_record=signed_record(host),
    )


async def _read_info(stream: MuxedStream) -> core.IdentifyInfo:
    reader = core.IdentifyReader()
    while True:
        data = await stream.receive_some(READ_SIZE)
        if data:
            reader.receive_data(data)
        else:
            reader.receive_eof()
        message = reader.next_event()
        if message is not core.NEED_DATA:
            return message


def _file(host: Host, peer: PeerID, info: core.IdentifyInfo) -> None:
    store = host.peer_store
    if info.public_key is not None and not peer.matches(info.public_key):
        raise DecodeError("identify carries another peer's public key", hint="wrong key")
    store.add_addrs(peer, info.listen_addrs, CONNECTED_ADDR_TTL, trio.current_time())
    store.set_protocols(peer, info.protocols)
    store.set_agent(peer, info.agent_version, info.protocol_version)
    if info.observed_addr is not None:
        store.note_observed(peer, info.observed_addr)
    if info.signed_peer_record is not None:
        try:
            record, _ = open_peer_record(info.signed_peer_record)
        except RecordError as exc:
            logger.info("%s sent a signed peer record we refuse: %s", peer, exc.hint)
            return
        if record.peer != peer:
            logger.info("%s sent the signed peer record of %s; dropped", peer, record.peer)
            return
        store.set_signed_record(peer, record.seq, info.signed_peer_record)


async def identify_peer(host: Host, conn: MuxedConnection) -> core.IdentifyInfo:
    """Ask the peer of ``conn`` who it is; file the answer in the peer store.

    Raises:
        P2PChatError: the stream could not be opened or the answer is malformed.
        trio.BrokenResourceError: the connection failed.
    """
    stream = await conn.open_stream()
    async with stream:
        _proto, trailing = await negotiate_outbound(stream, [core.PROTOCOL_ID])
        stream.unreceive(trailing)
        info = await _read_info(stream)
    _file(host, conn.remote_peer, info)
    return info


async def _on_connection(host: Host, conn: MuxedConnection) -> None:
    with trio.move_on_after(IDENTIFY_TIMEOUT):
        try:
            info = await identify_peer(host, conn)
        except (P2PChatError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.info("identify with %s failed: %s", conn.remote_peer, exc)
            return
        logger.debug("identified %s: %s", conn.remote_peer, info.agent_version or "?")


async def push_identify(host: Host) -> None:
    """Tell every connected peer our current identify information."""
    for peer in host.connected_peers():
        conn = host.connection(peer)
        if conn is None:
            continue
        with trio.move_on_after(IDENTIFY_TIMEOUT):
            try:
                stream = await conn.open_stream()
                async with stream:
                    await negotiate_outbound(stream, [core.PUSH_PROTOCOL_ID])
                    await stream.send_all(core.encode_identify(our_info(host, conn)))
                    await stream.send_eof()
            except (P2PChatError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                logger.info("identify push to %s failed: %s", peer, exc)


@asynccontextmanager
async def open_identify(host: Host) -> AsyncIterator[None]:
    """Serve identify and identify/push on ``host`` for the duration of the ``async with`` block
    and, if ``host.config.identify_on_connect``, identify every connection that opens meanwhile.

    Each identify exchange runs in a nursery this context owns; leaving the block cancels those
    still running and stops serving both protocols.
    """

    async def serve(stream: MuxedStream) -> None:
        await stream.send_all(core.encode_identify(our_info(host, stream.connection)))
        await stream.send_eof()
        with trio.move_on_after(IDENTIFY_TIMEOUT):  # let the peer finish reading, then close
            while await stream.receive_some(READ_SIZE):
                pass

    async def serve_push(stream: MuxedStream) -> None:
        with trio.fail_after(IDENTIFY_TIMEOUT):
            info = await _read_info(stream)
        _file(host, stream.remote_peer, info)

    host.set_stream_handler(core.PROTOCOL_ID, serve)
    host.set_stream_handler(core.PUSH_PROTOCOL_ID, serve_push)
    try:
        async with open_service_nursery() as nursery:
            nursery.start_soon(_push_on_change, host)
            if host.config.identify_on_connect:
                await nursery.start(_identify_new_connections, host)
            yield
    finally:
        host.remove_stream_handler(core.PROTOCOL_ID)
        host.remove_stream_handler(core.PUSH_PROTOCOL_ID)


async def _push_on_change(host: Host) -> None:
    """Push our identify information to connected peers whenever our protocols change; changes
    made during a push are covered by the next one."""
    seen = host.protocols_version
    while True:
        await host.wait_protocols_changed(seen)
        seen = host.protocols_version
        if host.connected_peers():
            await push_identify(host)


async def _identify_new_connections(
    host: Host, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Identify each connection as it opens, each in a task of this function's nursery."""
    async with host.connection_events() as events, trio.open_nursery() as nursery:
        task_status.started()
        async for event in events:
            if isinstance(event, ConnectionOpened):
                nursery.start_soon(_on_connection, host, event.conn)
            elif isinstance(event, EventsDropped):
                logger.warning("identify missed %d connection events", event.count)
