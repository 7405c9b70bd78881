"""Hosts on loopback: dialing, reuse, routing, identify, ping, limits and hostile peers."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import (
    DialError,
    HandlerExistsError,
    Host,
    HostConfig,
    StreamOpenError,
    open_host,
)
from p2pchat.net.identify import identify_peer
from p2pchat.net.muxer import MuxedStream
from p2pchat.net.ping import open_ping
from p2pchat.net.resources import ResourceLimits
from p2pchat.net.secure import dial_secure
from p2pchat.protocols import multistream as ms
from p2pchat.records import open_peer_record

pytestmark = pytest.mark.timeout(60)

ECHO = "/p2pchat-test/echo/1.0.0"


async def echo(stream: MuxedStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


@asynccontextmanager
async def two_hosts(config: HostConfig | None = None) -> AsyncIterator[tuple[Host, Host]]:
    async with open_host(KeyPair.generate(), config) as a, open_host(KeyPair.generate()) as b:
        b.set_stream_handler(ECHO, echo)
        yield a, b


async def _round_trip(stream: MuxedStream, payload: bytes) -> bytes:
    received = bytearray()
    async with stream, trio.open_nursery() as nursery:

        async def write() -> None:
            await stream.send_all(payload)
            await stream.send_eof()

        nursery.start_soon(write)
        while chunk := await stream.receive_some():
            received += chunk
    return bytes(received)


async def test_new_stream_to_multiaddr_negotiates_and_echoes() -> None:
    async with two_hosts() as (a, b):
        (addr,) = b.addrs
        stream = await a.new_stream(addr, ["/nope/1.0.0", ECHO])
        assert stream.protocol == ECHO
        assert stream.remote_peer == b.peer_id
        payload = bytes(range(256)) * 4096
        assert await _round_trip(stream, payload) == payload


async def test_data_sent_with_the_proposal_reaches_the_handler() -> None:
    # A dialer may put its first bytes in the same frame as its proposal (go-libp2p's lazy
    # negotiation): they are read during negotiation, handed back, and must not be
    # acknowledged to the muxer a second time when the handler reads them.
    async with two_hosts() as (a, b):
        conn = await a.connect(b.addrs[0])
        stream = await conn.open_stream()
        payload = b"early bytes"
        await stream.send_all(ms.Dialer([ECHO]).data_to_send() + payload)
        answer = ms.encode_message(ms.MULTISTREAM_ID) + ms.encode_message(ECHO) + payload
        received = b""
        with trio.fail_after(10):
            while len(received) < len(answer):
                received += await stream.receive_some()
        assert received == answer


async def test_one_connection_per_peer_is_reused_and_dials_collapse() -> None:
    async with two_hosts() as (a, b):
        (addr,) = b.addrs
        conns = []

        async def connect() -> None:
            conns.append(await a.connect(addr))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(connect)
        assert len({id(c) for c in conns}) == 1
        assert a.connected_peers() == [b.peer_id]
        # Later streams, by peer ID alone, use the same connection.
        stream = await a.new_stream(b.peer_id, [ECHO])
        assert stream.connection is conns[0]
        assert await _round_trip(stream, b"hi") == b"hi"


async def test_identify_fills_the_peer_store_both_ways() -> None:
    async with two_hosts() as (a, b):
        conn = await a.connect(b.addrs[0])
        info = await identify_peer(a, conn)
        assert ECHO in info.protocols
        assert info.public_key == b.identity.public_key
        assert info.listen_addrs == tuple(b.listen_addrs)
        assert info.agent_version.startswith("p2pchat/")
        assert ECHO in a.peer_store.protocols(b.peer_id)
        back = b.connection(a.peer_id)
        assert back is not None
        info_back = await identify_peer(b, back)
        assert info_back.observed_addr is not None
        assert "/ipfs/ping/1.0.0" in b.peer_store.protocols(a.peer_id)
        record = b.peer_store.get(a.peer_id)
        assert record is not None
        assert record.public_key == a.identity.public_key


async def test_identify_carries_a_signed_peer_record_that_is_verified_and_kept() -> None:
    async with two_hosts() as (a, b):
        conn = await a.connect(b.addrs[0])
        info = await identify_peer(a, conn)
        assert info.signed_peer_record is not None
        assert a.peer_store.signed_record(b.peer_id) == info.signed_peer_record
        record, _ = open_peer_record(info.signed_peer_record)
        assert record.peer == b.peer_id
        assert record.addresses == tuple(b.listen_addrs)
        # An older record does not replace a newer one; a newer one does.
        assert not a.peer_store.set_signed_record(b.peer_id, record.seq - 1, b"older")
        assert a.peer_store.signed_record(b.peer_id) == info.signed_peer_record
        assert a.peer_store.set_signed_record(b.peer_id, record.seq + 1, b"newer")


async def test_ping_reports_round_trips() -> None:
    async with two_hosts() as (a, b), open_ping(a, b.addrs[0]) as pinger:
        rtts = [await pinger.ping() for _ in range(5)]
    assert len(rtts) == 5
    assert all(0 < rtt < 5 for rtt in rtts)


async def test_unsupported_protocol_is_refused_with_a_clear_error() -> None:
    async with two_hosts() as (a, b):
        with pytest.raises(StreamOpenError, match="none of"):
            await a.new_stream(b.addrs[0], ["/not-served/1.0.0"])


async def test_dial_to_the_wrong_peer_id_fails() -> None:
    async with two_hosts() as (a, b):
        wrong = b.listen_addrs[0].with_peer_id(KeyPair.generate().peer_id)
        with pytest.raises(DialError, match="peer"):
            await a.connect(wrong)
        assert a.connected_peers() == []


async def test_dial_to_a_closed_port_fails_with_the_reason() -> None:
    async with open_host(KeyPair.generate()) as a:
        with trio.socket.socket() as sock:
            await sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        addr = Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{port}").with_peer_id(
            KeyPair.generate().peer_id
        )
        with pytest.raises(DialError, match="cannot connect"):
            await a.connect(addr)


async def test_a_failing_handler_does_not_take_down_the_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(stream: MuxedStream) -> None:
        raise RuntimeError("handler bug")

    async with two_hosts() as (a, b):
        b.set_stream_handler("/broken/1.0.0", broken)
        stream = await a.new_stream(b.addrs[0], ["/broken/1.0.0"])
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        assert await _round_trip(await a.new_stream(b.peer_id, [ECHO]), b"ok") == b"ok"
    assert any("handler bug" in (r.exc_text or "") for r in caplog.records)


async def test_connection_limit_refuses_extra_inbound_connections() -> None:
    async with open_host(
        KeyPair.generate(), HostConfig(limits=ResourceLimits(max_connections=1))
    ) as server:
        server.set_stream_handler(ECHO, echo)
        async with open_host(KeyPair.generate()) as c1, open_host(KeyPair.generate()) as c2:
            async with server.connection_events() as events:
                await c1.connect(server.addrs[0])
                # The server admits c1 once its own side of the handshake is done.
                with trio.fail_after(5):
                    await events.receive()
            with pytest.raises(DialError, match="closed"):
                await c2.new_stream(server.addrs[0], [ECHO])
            assert server.connected_peers() == [c1.peer_id]


async def test_misbehaving_peer_after_handshake_is_dropped_while_good_peer_pings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with two_hosts() as (good, server):
        (addr,) = server.addrs

        async def misbehave(frames: bytes) -> None:
            secure = await dial_secure(addr, KeyPair.generate(), stream_muxers=[])
            async with secure:
                dialer = ms.Dialer(["/yamux/1.0.0"])
                await secure.send_all(dialer.data_to_send())
                while dialer.next_event() is ms.NEED_DATA:
                    dialer.receive_data(await secure.receive_some())
                try:
                    await secure.send_all(frames)
                    with trio.fail_after(5):  # the server answers GoAway, then hangs up
                        while await secure.receive_some():
                            pass
                except trio.BrokenResourceError:
                    pass  # it hung up while we were still sending

        bad_frames = [
            bytes([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]),  # version 1
            bytes([0, 9, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]),  # unknown type
            bytes([0, 1, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0]),  # dialer opening an even stream id
            # a stream, then 1 MiB of data on a 256 KiB window
            bytes([0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
            + bytes([0, 0, 0, 0, 0, 0, 0, 1, 0, 0x10, 0, 0])
            + bytes(1 << 20),
        ]
        async with open_ping(good, addr) as pinger:
            async with trio.open_nursery() as nursery:
                for frames in bad_frames:
                    nursery.start_soon(misbehave, frames)
                for _ in range(20):
                    assert await pinger.ping() < 5
            assert await pinger.ping() < 5
    reasons = " ".join(r.getMessage() for r in caplog.records)
    for hint in ("version", "frame type", "parity", "window"):
        assert hint in reasons, reasons


async def test_new_handlers_reach_connected_peers_by_identify_push() -> None:
    async with two_hosts() as (a, b):
        conn = await a.connect(b.addrs[0])
        await identify_peer(a, conn)
        assert "/late/1.0.0" not in a.peer_store.protocols(b.peer_id)
        pushed = trio.Event()
        original = a.peer_store.set_protocols

        def watch(peer: PeerID, protocols: Iterable[str]) -> None:
            original(peer, protocols)
            if "/late/1.0.0" in a.peer_store.protocols(peer):
                pushed.set()

        a.peer_store.set_protocols = watch  # type: ignore[method-assign]
        b.set_stream_handler("/late/1.0.0", echo)
        with trio.fail_after(5):
            await pushed.wait()
        assert "/late/1.0.0" in a.peer_store.protocols(b.peer_id)


def _watch_identify(host: Host) -> defaultdict[PeerID, trio.Event]:
    """An event per peer, set when identify files that peer's protocols in ``host``."""
    filed: defaultdict[PeerID, trio.Event] = defaultdict(trio.Event)
    original = host.peer_store.set_protocols

    def watch(peer: PeerID, protocols: Iterable[str]) -> None:
        original(peer, protocols)
        filed[peer].set()

    host.peer_store.set_protocols = watch  # type: ignore[method-assign]
    return filed


async def test_identify_runs_by_itself_on_every_new_connection() -> None:
    with trio.fail_after(10):
        async with two_hosts() as (a, b):
            a_filed, b_filed = _watch_identify(a), _watch_identify(b)
            await a.connect(b.addrs[0])
            await a_filed[b.peer_id].wait()
            await b_filed[a.peer_id].wait()
            assert ECHO in a.peer_store.protocols(b.peer_id)
            assert "/ipfs/id/1.0.0" in b.peer_store.protocols(a.peer_id)


async def test_identify_on_connect_can_be_turned_off() -> None:
    with trio.fail_after(10):
        async with two_hosts(HostConfig(identify_on_connect=False)) as (a, b):
            b_filed = _watch_identify(b)
            await a.connect(b.addrs[0])
            await b_filed[a.peer_id].wait()  # b still asks, and a still answers
            assert a.peer_store.protocols(b.peer_id) == ()


class BodyError(Exception):
    pass


async def test_an_error_in_the_body_comes_out_as_itself_with_connections_open() -> None:
    async def body() -> None:
        async with two_hosts() as (a, b):
            await a.connect(b.addrs[0])
            raise BodyError

    with trio.fail_after(10), pytest.raises(BodyError):
        await body()


async def test_wait_protocols_changed_reports_a_change_made_before_the_wait() -> None:
    async with open_host(KeyPair.generate()) as host:
        seen = host.protocols_version
        with trio.move_on_after(0.1) as idle:
            await host.wait_protocols_changed(seen)
        assert idle.cancelled_caught
        host.set_stream_handler(ECHO, echo)
        host.set_stream_handler(ECHO, echo, replace=True)  # the same set again: no change
        with trio.fail_after(1):
            await host.wait_protocols_changed(seen)
        assert host.protocols_version == seen + 1


async def test_a_second_handler_for_a_protocol_needs_replace() -> None:
    async def other(stream: MuxedStream) -> None:
        await stream.send_all(b"other")

    async with two_hosts() as (a, b):
        with pytest.raises(HandlerExistsError, match="replace=True"):
            b.set_stream_handler(ECHO, other)
        stream = await a.new_stream(b.addrs[0], [ECHO])
        assert await _round_trip(stream, b"still echo") == b"still echo"
        b.set_stream_handler(ECHO, other, replace=True)
        stream = await a.new_stream(b.addrs[0], [ECHO])
        async with stream:
            assert await stream.receive_some() == b"other"
