"""The Trio SecureStream: generic stream behaviour, TCP dial/listen, and hostile peers."""

from __future__ import annotations

import contextlib
import logging

import attrs
import pytest
import trio
import trio.testing

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.secure import (
    HandshakeError,
    PeerMismatchError,
    SecureStream,
    dial_secure,
    secure_inbound,
    secure_outbound,
    serve_secure,
)
from p2pchat.net.tcp import dial_tcp, listen_tcp, listener_multiaddr
from p2pchat.protocols import multistream as ms
from p2pchat.protocols import noise

pytestmark = pytest.mark.timeout(30)

LOOPBACK = Multiaddr.from_string("/ip4/127.0.0.1/tcp/0")


async def _secure_pair(
    left: trio.abc.Stream, right: trio.abc.Stream
) -> tuple[SecureStream, SecureStream]:
    client_id, server_id = KeyPair.generate(), KeyPair.generate()
    results: dict[str, SecureStream] = {}

    async def client() -> None:
        results["client"] = await secure_outbound(
            left, client_id, expected_peer=server_id.peer_id, stream_muxers=["/yamux/1.0.0"]
        )

    async def server() -> None:
        results["server"] = await secure_inbound(right, server_id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        nursery.start_soon(server)
    assert results["client"].remote_peer == server_id.peer_id
    assert results["server"].remote_peer == client_id.peer_id
    assert results["server"].remote_stream_muxers == ("/yamux/1.0.0",)
    return results["client"], results["server"]


async def _memory_secure_pair() -> tuple[SecureStream, SecureStream]:
    return await _secure_pair(*trio.testing.memory_stream_pair())


async def _lockstep_secure_pair() -> tuple[SecureStream, SecureStream]:
    return await _secure_pair(*trio.testing.lockstep_stream_pair())


async def test_secure_stream_passes_trio_generic_two_way_stream_checks() -> None:
    await trio.testing.check_two_way_stream(_memory_secure_pair, _lockstep_secure_pair)


async def test_large_write_arrives_intact_through_many_frames() -> None:
    client, server = await _memory_secure_pair()
    payload = bytes(range(256)) * 2048  # 512 KiB: several 64 KiB Noise frames
    received = bytearray()

    async def reader() -> None:
        while len(received) < len(payload):
            chunk = await server.receive_some(100_000)
            assert chunk
            received.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await client.send_all(payload)
    assert bytes(received) == payload


@attrs.frozen
class _Listening:
    addrs: list[Multiaddr]
    identity: KeyPair


@pytest.fixture
async def echo_server(nursery: trio.Nursery) -> _Listening:
    identity = KeyPair.generate()

    async def echo(stream: SecureStream) -> None:
        while data := await stream.receive_some():
            await stream.send_all(data)

    addrs = await nursery.start(
        lambda task_status: serve_secure(
            echo, [LOOPBACK], identity, handshake_timeout=1.0, task_status=task_status
        )
    )
    return _Listening(addrs, identity)


async def test_dial_with_peer_id_over_tcp_and_echo(echo_server: _Listening) -> None:
    addr = echo_server.addrs[0]
    assert addr.peer_id == echo_server.identity.peer_id
    stream = await dial_secure(addr, KeyPair.generate())
    async with stream:
        assert stream.remote_peer == echo_server.identity.peer_id
        await stream.send_all(b"hello")
        assert await stream.receive_some() == b"hello"


async def test_dial_fails_when_peer_differs_from_dialed_id(echo_server: _Listening) -> None:
    someone_else = KeyPair.generate().peer_id
    wrong = echo_server.addrs[0].without_peer_id().with_peer_id(someone_else)
    with pytest.raises(PeerMismatchError) as info:
        await dial_secure(wrong, KeyPair.generate())
    # One class at every layer: the Noise core's, caught as a HandshakeError by the Host.
    assert info.value.__class__ is noise.PeerMismatchError
    assert isinstance(info.value, HandshakeError)
    assert str(someone_else) in info.value.reason


@attrs.frozen
class _ForgingKeyPair(KeyPair):
    """A peer whose identity signature over its Noise static key is forged."""

    def sign(self, message: bytes) -> bytes:
        return bytes(64)


async def _ping_good_peer(addr: Multiaddr, peer: PeerID) -> None:
    stream = await dial_secure(addr, KeyPair.generate())
    async with stream:
        assert stream.remote_peer == peer
        await stream.send_all(b"still serving")
        assert await stream.receive_some() == b"still serving"


async def test_bad_peers_are_dropped_with_reasons_while_good_peers_are_served(
    echo_server: _Listening, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="p2pchat.net.secure")
    addr = echo_server.addrs[0]
    peer = echo_server.identity.peer_id
    bad = KeyPair.generate()
    forger = _ForgingKeyPair(bad.private_key, bad.public_key)

    async def garbage() -> None:
        tcp = await dial_tcp(addr)
        async with tcp:
            await tcp.send_all(b"\xff\xff\xff\xff garbage")  # a 4-byte length prefix: too long
            with trio.fail_after(5):
                assert await tcp.receive_some() == b""  # the server hangs up at once
            await _ping_good_peer(addr, peer)

    async def garbage_after_noise_agreed() -> None:
        tcp = await dial_tcp(addr)
        async with tcp:
            dialer = ms.Dialer(["/noise"])
            await tcp.send_all(dialer.data_to_send() + b"\x00\x05hello")
            await _ping_good_peer(addr, peer)

    async def staller() -> None:
        tcp = await dial_tcp(addr)
        async with tcp:
            await _ping_good_peer(addr, peer)  # served while this one stalls
            with trio.fail_after(5):
                while await tcp.receive_some():  # the server gives up on us after 1 s
                    pass

    async def forged_signature() -> None:
        # In XX the initiator's identity is proven in message 3, after which the initiator
        # considers itself done; the listener checks it, refuses, and hangs up.
        stream = await dial_secure(addr, forger)
        async with stream:
            with trio.fail_after(5):
                with contextlib.suppress(trio.BrokenResourceError):
                    assert await stream.receive_some() == b""
        await _ping_good_peer(addr, peer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(garbage)
        nursery.start_soon(garbage_after_noise_agreed)
        nursery.start_soon(staller)
        nursery.start_soon(forged_signature)
        for _ in range(3):
            nursery.start_soon(_ping_good_peer, addr, peer)

    reasons = [r.getMessage() for r in caplog.records if "dropped inbound" in r.getMessage()]
    assert any("multistream" in r for r in reasons), reasons
    assert any("timed out" in r for r in reasons), reasons
    assert any("identity signature" in r for r in reasons), reasons
    assert any("truncated noise" in r for r in reasons), reasons
    await _ping_good_peer(addr, peer)


async def test_dialer_refuses_a_listener_with_a_forged_identity_signature() -> None:
    bad = KeyPair.generate()
    forger = _ForgingKeyPair(bad.private_key, bad.public_key)

    async def handler(stream: SecureStream) -> None:
        raise AssertionError("the handshake must not complete")  # pragma: no cover

    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(
            lambda task_status: serve_secure(handler, [LOOPBACK], forger, task_status=task_status)
        )
        with pytest.raises(HandshakeError, match="identity signature"):
            await dial_secure(addrs[0], KeyPair.generate())
        nursery.cancel_scope.cancel()


async def test_handshake_with_a_silent_listener_times_out() -> None:
    (listener,) = await listen_tcp(LOOPBACK)
    async with listener:
        addr = listener_multiaddr(listener)
        with pytest.raises(HandshakeError, match="timed out"):
            await dial_secure(addr, KeyPair.generate(), handshake_timeout=0.2)


async def test_serve_reports_bound_addresses_with_real_port(echo_server: _Listening) -> None:
    (addr,) = echo_server.addrs
    assert str(addr).startswith("/ip4/127.0.0.1/tcp/")
    assert addr.value_for("tcp") != "0"


async def _threaded_memory_pair() -> tuple[SecureStream, SecureStream]:
    client, server = await _memory_secure_pair()
    client.worker_threads = server.worker_threads = True
    return client, server


async def _threaded_lockstep_pair() -> tuple[SecureStream, SecureStream]:
    client, server = await _lockstep_secure_pair()
    client.worker_threads = server.worker_threads = True
    return client, server


async def test_secure_stream_with_worker_threads_passes_trio_generic_checks() -> None:
    await trio.testing.check_two_way_stream(_threaded_memory_pair, _threaded_lockstep_pair)


async def _send_and_collect(
    client: SecureStream, server: SecureStream, payload: bytes, write: int
) -> bytes:
    received = bytearray()

    async def reader() -> None:
        while len(received) < len(payload):
            chunk = await server.receive_some()
            assert chunk
            received.extend(chunk)

    async def writer() -> None:
        for start in range(0, len(payload), write):
            await client.send_all(payload[start : start + write])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()  # let the ciphertext pile up
        nursery.start_soon(reader)
    return bytes(received)


async def test_worker_threads_seal_and_open_bulk_batches_and_data_arrives_intact() -> None:
    client, server = await _threaded_memory_pair()
    payload = bytes(range(251)) * 25_000  # 6,275,000 bytes: several seal batches per write
    assert await _send_and_collect(client, server, payload, 3 * 1024 * 1024) == payload
    assert client.offloaded_seals >= 4
    assert server.offloaded_opens >= 3


async def test_small_writes_and_reads_stay_on_the_event_loop_with_worker_threads() -> None:
    client, server = await _threaded_memory_pair()
    for i in range(50):  # ping-sized exchanges
        await client.send_all(b"ping %d" % i)
        assert await server.receive_some() == b"ping %d" % i
        await server.send_all(b"pong %d" % i)
        assert await client.receive_some() == b"pong %d" % i
    one_batch = bytes(noise.MAX_PLAINTEXT_LEN * 16)  # at most one seal batch: on the loop
    assert await _send_and_collect(client, server, one_batch, len(one_batch)) == one_batch
    assert client.offloaded_seals == server.offloaded_seals == 0


async def test_default_stream_keeps_all_aead_work_on_the_event_loop() -> None:
    client, server = await _memory_secure_pair()
    payload = bytes(range(251)) * 25_000
    assert await _send_and_collect(client, server, payload, 3 * 1024 * 1024) == payload
    assert client.offloaded_seals == 0
    assert server.offloaded_opens == 0


async def test_tampered_batch_opened_in_a_worker_thread_breaks_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[int] = []
    real_open = noise.NoiseConnection.open_frames

    def spy(self: noise.NoiseConnection, frames: bytes, out: bytearray) -> int:
        opened.append(len(frames))
        return real_open(self, frames, out)

    monkeypatch.setattr(noise.NoiseConnection, "open_frames", spy)
    client, server = await _threaded_memory_pair()
    wire = client._session.send(bytes(2 * 1024 * 1024))  # bypass the stream to tamper
    wire[1000] ^= 0x01
    await client.transport_stream.send_all(wire)
    with pytest.raises(trio.BrokenResourceError, match="noise"):
        await server.receive_some()
    assert len(opened) == 1  # the bad frame was in a batch handed to a worker thread
    assert server.offloaded_opens == 0
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()


async def test_bulk_over_tcp_with_worker_threads_arrives_intact(nursery: trio.Nursery) -> None:
    identity = KeyPair.generate()
    got: list[bytes] = []
    done = trio.Event()

    async def sink(stream: SecureStream) -> None:
        stream.worker_threads = True
        data = bytearray()
        while chunk := await stream.receive_some():
            data.extend(chunk)
        got.append(bytes(data))
        done.set()

    addrs = await nursery.start(
        lambda task_status: serve_secure(sink, [LOOPBACK], identity, task_status=task_status)
    )
    payload = bytes(range(253)) * 40_000  # about 10 MiB
    stream = await dial_secure(addrs[0], KeyPair.generate())
    stream.worker_threads = True
    async with stream:
        for start in range(0, len(payload), 4 * 1024 * 1024):
            await stream.send_all(payload[start : start + 4 * 1024 * 1024])
    await done.wait()
    assert got == [payload]
    assert stream.offloaded_seals >= 2


async def test_borrowed_bulk_reads_reuse_one_buffer_and_small_ones_do_not_borrow() -> None:
    client, server = await _memory_secure_pair()
    payload = bytes(range(256)) * 4096  # 1 MiB
    await client.send_all(payload)
    got = bytearray()
    buffers = set()
    while len(got) < len(payload):
        chunk = await server.receive_borrowed(256 * 1024)
        assert chunk
        if isinstance(chunk, memoryview):
            buffers.add(id(chunk.obj))
        got += chunk  # consumed before the next read, as the muxer does
    assert bytes(got) == payload
    assert len(buffers) == 1
    await client.send_all(b"ping")
    small = await server.receive_borrowed(256 * 1024)
    assert small == b"ping"


async def test_bulk_units_are_sealed_into_a_reused_buffer_and_arrive_intact() -> None:
    client, server = await _memory_secure_pair()
    header = b"h" * 12
    body = bytes(range(256)) * 256  # 64 KiB
    units = [(header, body)] * 3
    expected = (header + body) * 3
    for _ in range(3):
        await client.send_units(units)
        assert len(client._sealed) > len(expected)  # allocated once, then reused
        got = bytearray()
        while len(got) < len(expected):
            got += await server.receive_some()
        assert bytes(got) == expected
    sealed = client._sealed
    await client.send_units([(b"tiny",)])
    assert client._sealed is sealed
    assert await server.receive_some() == b"tiny"
