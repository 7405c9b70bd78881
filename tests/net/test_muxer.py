"""The Trio yamux driver: generic half-closeable stream checks, flow control, failures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from p2pchat.identity import KeyPair
from p2pchat.net.muxer import MuxedConnection, MuxedStream, MuxerConfig, MuxerError
from p2pchat.net.upgrade import upgrade
from p2pchat.protocols.yamux import INITIAL_WINDOW

pytestmark = pytest.mark.timeout(60)

Pair = tuple[MuxedConnection, MuxedConnection]


async def _connection_pair(
    nursery: trio.Nursery,
    make_transports: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]],
    config: MuxerConfig | None = None,
) -> Pair:
    left, right = make_transports()
    client_id, server_id = KeyPair.generate(), KeyPair.generate()
    made: dict[str, MuxedConnection] = {}

    async def side(name: str, transport: trio.abc.Stream, outbound: bool) -> None:
        made[name] = await upgrade(
            transport,
            client_id if outbound else server_id,
            outbound=outbound,
            expected_peer=server_id.peer_id if outbound else None,
            handshake_timeout=10,
            config=config,
        )

    async with trio.open_nursery() as inner:
        inner.start_soon(side, "client", left, True)
        inner.start_soon(side, "server", right, False)
    for conn in made.values():
        await nursery.start(conn.run)
    return made["client"], made["server"]


async def _stream_pair(pair: Pair) -> tuple[MuxedStream, MuxedStream]:
    client, server = pair
    outbound = await client.open_stream()
    await outbound.send_all(b"")  # nothing, but the SYN leaves with the next write
    inbound = await server.accept_stream()
    return outbound, inbound


def _maker(
    nursery: trio.Nursery,
    transports: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]],
) -> Callable[[], Awaitable[tuple[MuxedStream, MuxedStream]]]:
    async def make() -> tuple[MuxedStream, MuxedStream]:
        return await _stream_pair(await _connection_pair(nursery, transports))

    return make


def _clogged_maker(
    nursery: trio.Nursery,
) -> Callable[[], Awaitable[tuple[MuxedStream, MuxedStream]]]:
    """Streams whose send windows are used up in both directions: sending blocks."""
    make = _maker(nursery, trio.testing.memory_stream_pair)

    async def clogged() -> tuple[MuxedStream, MuxedStream]:
        left, right = await make()
        await left.send_all(bytes(INITIAL_WINDOW))
        await right.send_all(bytes(INITIAL_WINDOW))
        return left, right

    return clogged


async def test_streams_pass_trio_generic_half_closeable_checks(nursery: trio.Nursery) -> None:
    await trio.testing.check_half_closeable_stream(
        _maker(nursery, trio.testing.memory_stream_pair), _clogged_maker(nursery)
    )


async def _read_all(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    while chunk := await stream.receive_some():
        out += chunk
    return bytes(out)


async def test_many_concurrent_streams_each_echo_their_own_data(nursery: trio.Nursery) -> None:
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair)

    async def echo_server() -> None:
        async with trio.open_nursery() as handlers:
            for _ in range(50):
                stream = await server.accept_stream()

                async def echo(s: MuxedStream = stream) -> None:
                    async with s:
                        while data := await s.receive_some():
                            await s.send_all(data)
                        await s.send_eof()

                handlers.start_soon(echo)

    results: dict[int, bytes] = {}

    async def one(i: int) -> None:
        stream = await client.open_stream()
        payload = bytes([i]) * (20_000 + i * 997)
        async with stream, trio.open_nursery() as inner:

            async def write() -> None:
                await stream.send_all(payload)
                await stream.send_eof()

            inner.start_soon(write)
            results[i] = await _read_all(stream)

    async with trio.open_nursery() as n:
        n.start_soon(echo_server)
        for i in range(50):
            n.start_soon(one, i)
    assert results == {i: bytes([i]) * (20_000 + i * 997) for i in range(50)}


async def test_flow_control_blocks_a_writer_until_the_reader_consumes(
    nursery: trio.Nursery,
) -> None:
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair)
    outbound = await client.open_stream()
    payload = b"z" * (1024 * 1024)  # four initial windows
    done = trio.Event()

    async def write() -> None:
        await outbound.send_all(payload)
        await outbound.send_eof()
        done.set()

    nursery.start_soon(write)
    inbound = await server.accept_stream()
    await trio.testing.wait_all_tasks_blocked()
    assert not done.is_set()  # stuck on the 256 KiB window, nobody reads
    assert await _read_all(inbound) == payload
    await done.wait()


async def test_connection_loss_breaks_open_streams_after_buffered_data(
    nursery: trio.Nursery,
) -> None:
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair)
    outbound = await client.open_stream()
    await outbound.send_all(b"last words")
    inbound = await server.accept_stream()
    await trio.testing.wait_all_tasks_blocked()
    await client.aclose()
    assert client.is_closed
    assert await inbound.receive_some() == b"last words"
    with pytest.raises(trio.BrokenResourceError):
        await inbound.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await outbound.send_all(b"more")
    with pytest.raises(MuxerError):
        await client.open_stream()
    await server.wait_closed()


async def test_yamux_ping_measures_a_round_trip(nursery: trio.Nursery) -> None:
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair)
    rtt = await client.ping()
    assert rtt >= 0
    assert (await server.ping()) >= 0


async def test_reset_reaches_the_peer(nursery: trio.Nursery) -> None:
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair)
    outbound = await client.open_stream()
    await outbound.send_all(b"x")
    inbound = await server.accept_stream()
    await outbound.reset()
    assert await inbound.receive_some() == b"x"
    with pytest.raises(trio.BrokenResourceError, match="reset"):
        await inbound.receive_some()


async def test_garbage_after_handshake_ends_the_connection_with_goaway(
    nursery: trio.Nursery,
) -> None:
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair)
    # Bypass the muxer: write a yamux header with version 7 straight into the secure channel,
    # once the client's own writer is idle.
    await client.ping()
    await trio.testing.wait_all_tasks_blocked()
    await client.secure.send_all(bytes([7, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]))
    await server.wait_closed()
    assert server.broken_reason is not None
    assert "protocol error" in server.broken_reason
    await client.wait_closed()


async def test_inbound_backlog_is_bounded(nursery: trio.Nursery) -> None:
    config = MuxerConfig(accept_backlog=2)
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair, config)
    streams = [await client.open_stream() for _ in range(3)]
    for stream in streams:
        await stream.send_all(b"hi")
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(trio.BrokenResourceError, match="reset"):
        await streams[2].receive_some()
    first = await server.accept_stream()
    assert await first.receive_some() == b"hi"


async def test_config_turns_on_worker_threads_and_bulk_streams_still_arrive_intact(
    nursery: trio.Nursery,
) -> None:
    config = MuxerConfig(secure_worker_threads=True)
    pair = await _connection_pair(nursery, trio.testing.memory_stream_pair, config)
    assert pair[0].secure.worker_threads
    assert pair[1].secure.worker_threads
    outbound, inbound = await _stream_pair(pair)
    payload = bytes(range(249)) * 40_000  # about 9.5 MiB: more than the yamux window
    received = bytearray()

    async def reader() -> None:
        while chunk := await inbound.receive_some():
            received.extend(chunk)

    async with trio.open_nursery() as inner:
        inner.start_soon(reader)
        await outbound.send_all(payload)
        await outbound.send_eof()
    assert bytes(received) == payload


async def test_worker_threads_are_off_by_default(nursery: trio.Nursery) -> None:
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair)
    assert not client.secure.worker_threads
    assert not server.secure.worker_threads


async def test_bulk_arrives_as_chunks_spanning_many_frames_and_small_reads_take_them_in_order(
    nursery: trio.Nursery,
) -> None:
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair)
    outbound = await client.open_stream()
    payload = bytes(range(256)) * 1024  # 256 KiB: four 64 KiB frames in one window
    await outbound.send_all(payload)
    inbound = await server.accept_stream()
    await trio.testing.wait_all_tasks_blocked()  # everything read by the connection
    first = await inbound.receive_some()
    assert len(first) > 64 * 1024  # the frames of one read are one chunk
    got = bytearray(first)
    sizes = []
    while len(got) < len(payload):
        piece = await inbound.receive_some(1000)  # less than a chunk: taken piece by piece
        sizes.append(len(piece))
        got += piece
    assert bytes(got) == payload
    assert max(sizes) == 1000


async def test_unreceive_after_a_partial_read_puts_the_bytes_back_in_front(
    nursery: trio.Nursery,
) -> None:
    client, server = await _connection_pair(nursery, trio.testing.memory_stream_pair)
    outbound = await client.open_stream()
    await outbound.send_all(b"0123456789")
    await outbound.send_eof()
    inbound = await server.accept_stream()
    await trio.testing.wait_all_tasks_blocked()
    assert await inbound.receive_some(4) == b"0123"
    inbound.unreceive(b"xy")
    assert await _read_all(inbound) == b"xy456789"
