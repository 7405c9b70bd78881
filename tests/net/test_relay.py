"""Circuit relay v2 on loopback hosts: a reservation, a relayed connection that carries ping and
a protocol of ours end to end, the relay's limits cutting circuits, refusals with the spec's
status codes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import DialError, Host, HostConfig, open_host
from p2pchat.net.muxer import MuxedStream
from p2pchat.net.ping import open_ping
from p2pchat.net.relay import (
    RelayClient,
    RelayError,
    RelayService,
    RelayServiceConfig,
    is_relayed,
    open_relay_client,
    open_relay_service,
)
from p2pchat.protocols._need_data import NEED_DATA
from p2pchat.protocols.relay import (
    STOP_PROTOCOL,
    MessageReader,
    Peer,
    RelayLimits,
    Status,
    StopMessage,
    StopType,
    decode_stop,
    frame,
)

pytestmark = pytest.mark.timeout(60)

ECHO = "/test/echo/1.0.0"


async def _echo(stream: MuxedStream) -> None:
    while data := await stream.receive_some(65536):
        await stream.send_all(data)


@attrs.frozen
class Net:
    relay: RelayService
    a: RelayClient  # behind the relay
    b: RelayClient  # dials a through it


@asynccontextmanager
async def network(limits: RelayLimits | None = None, *, reserve: bool = True) -> AsyncIterator[Net]:
    config = RelayServiceConfig(limits if limits is not None else RelayLimits())
    async with (
        open_host(KeyPair.generate()) as r,
        open_relay_service(r, config) as relay,
        open_host(KeyPair.generate()) as a_host,
        open_relay_client(a_host) as a,
        open_host(KeyPair.generate()) as b_host,
        open_relay_client(b_host) as b,
    ):
        a_host.set_stream_handler(ECHO, _echo)
        if reserve:
            await a.reserve(r.addrs[0])
        yield Net(relay, a, b)


def _circuit(net: Net) -> Multiaddr:
    relay = net.relay.host
    return (
        relay.listen_addrs[0]
        .with_peer_id(relay.peer_id)
        .encapsulate("/p2p-circuit")
        .with_peer_id(net.a.host.peer_id)
    )


async def _echo_through(host: Host, peer: KeyPair | Host, payload: bytes) -> bytes:
    target = peer.peer_id
    stream = await host.new_stream(target, [ECHO])
    got = bytearray()
    async with stream:
        await stream.send_all(payload)
        await stream.send_eof()
        while data := await stream.receive_some(65536):
            got += data
    return bytes(got)


async def test_reservation_is_advertised_in_the_signed_record() -> None:
    async with network() as net:
        held = net.a.reservations()
        assert [h.relay for h in held] == [net.relay.host.peer_id]
        assert held[0].voucher is not None  # it verified
        circuit = _circuit(net).without_peer_id()
        assert circuit in net.a.host.advertised_addrs
        assert [r.peer for r in net.relay.state.reservations(0)] == [net.a.host.peer_id]


async def test_relayed_connection_carries_ping_and_a_protocol_end_to_end() -> None:
    async with network() as net:
        b = net.b.host
        conn = await b.connect(_circuit(net))
        assert conn.remote_peer == net.a.host.peer_id
        assert is_relayed(conn.remote_addr)
        async with open_ping(b, net.a.host.peer_id) as pinger:
            assert await pinger.ping() >= 0
        payload = bytes(range(256)) * 64
        assert await _echo_through(b, net.a.host, payload) == payload
        # a sees a relayed inbound connection from b, authenticated end to end.
        back = net.a.host.connection(b.peer_id)
        assert back is not None
        assert is_relayed(back.remote_addr)
        assert net.relay.state.circuit_count == 1


async def test_dial_without_a_reservation_is_refused_with_no_reservation() -> None:
    async with network(reserve=False) as net:
        with pytest.raises(DialError, match="NO_RESERVATION"):
            await net.b.host.connect(_circuit(net))


async def test_reservation_refused_past_the_limit() -> None:
    async with network(RelayLimits(max_reservations=1)) as net:
        with pytest.raises(RelayError) as info:
            await net.b.reserve(net.relay.host.addrs[0])
        assert info.value.status is Status.RESERVATION_REFUSED


async def test_circuits_past_the_limit_are_refused() -> None:
    async with (
        network(RelayLimits(max_circuits=1)) as net,
        open_host(KeyPair.generate()) as c_host,
        open_relay_client(c_host) as c,
    ):
        await net.b.host.connect(_circuit(net))
        with pytest.raises(DialError, match="RESOURCE_LIMIT_EXCEEDED"):
            await c.host.connect(_circuit(net))


async def test_data_limit_cuts_the_circuit() -> None:
    async with network(RelayLimits(circuit_data=64 * 1024)) as net:
        conn = await net.b.host.connect(_circuit(net))
        with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
            await _echo_through(net.b.host, net.a.host, b"x" * (256 * 1024))
        with trio.fail_after(10):
            await conn.wait_closed()
        assert net.relay.circuits_cut == 1
        assert net.relay.state.circuit_count == 0


async def test_duration_limit_cuts_the_circuit() -> None:
    async with network(RelayLimits(circuit_duration=1)) as net:
        conn = await net.b.host.connect(_circuit(net))
        with trio.fail_after(10):
            await conn.wait_closed()
        assert net.relay.circuits_cut == 1
        assert net.b.host.connection(net.a.host.peer_id) is None


async def test_stop_from_a_relay_we_hold_no_reservation_on_is_denied() -> None:
    async with network() as net:
        # b is no relay of a's: a refuses b's stop CONNECT.
        stream = await net.b.host.new_stream(net.a.host.addrs[0], [STOP_PROTOCOL])
        async with stream:
            request = StopMessage(StopType.CONNECT, peer=Peer(net.b.host.peer_id))
            await stream.send_all(frame(request))
            reader = MessageReader(decode_stop)
            while (answer := reader.next_message()) is NEED_DATA:
                reader.receive_data(await stream.receive_some(4096))
        assert answer == StopMessage(StopType.STATUS, status=Status.PERMISSION_DENIED)
        direct = net.a.host.connection(net.b.host.peer_id)
        assert direct is not None  # b's own connection, and no relayed one
        assert not is_relayed(direct.remote_addr)


async def test_bytes_the_target_sends_with_its_stop_status_reach_the_dialer() -> None:
    """A target may write its first bytes of the relayed connection right behind its stop
    ``STATUS OK`` (py-libp2p's multistream-select listener writes its header at once): the
    relay reads both in one chunk and must forward what follows the STATUS."""
    early = b"\x13/multistream/1.0.0\n"

    async def stop_then_speak(stream: MuxedStream) -> None:
        reader = MessageReader(decode_stop)
        while (request := reader.next_message()) is NEED_DATA:
            reader.receive_data(await stream.receive_some(4096))
        assert request.type is StopType.CONNECT
        await stream.send_all(frame(StopMessage(StopType.STATUS, status=Status.OK)) + early)
        await stream.receive_some(4096)  # held open until the dialer ends

    async with network() as net:
        net.a.host.set_stream_handler(STOP_PROTOCOL, stop_then_speak, replace=True)
        with trio.fail_after(10):
            stream = await net.b.dial(net.a.host.peer_id, _circuit(net).without_peer_id())
            got = b""
            while len(got) < len(early):
                data = await stream.receive_some(4096)
                assert data
                got += data
            await stream.aclose()
        assert got == early


async def test_a_silent_direct_address_gives_way_to_the_relay() -> None:
    """b knows a direct address of a where nothing answers (as behind a NAT that drops SYNs)
    and a circuit address: the direct one is tried first, and after ``relay_fallback_after``
    the relay, long before ``dial_timeout``."""
    held: list[trio.SocketStream] = []
    b_config = HostConfig(
        listen=(Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),),
        dial_timeout=120.0,
        relay_fallback_after=0.5,
    )
    async with trio.open_nursery() as nursery:
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")

        async def accept_and_say_nothing() -> None:
            held.append(await listener.accept())

        nursery.start_soon(accept_and_say_nothing)
        port = listener.socket.getsockname()[1]
        async with (
            open_host(KeyPair.generate()) as r,
            open_relay_service(r),
            open_host(KeyPair.generate()) as a_host,
            open_relay_client(a_host) as a,
            open_host(KeyPair.generate(), b_config) as b_host,
            open_relay_client(b_host),
        ):
            await a.reserve(r.addrs[0])
            silent = Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{port}")
            circuit = a.book.circuit_addrs(time.time())[0]
            b_host.peer_store.add_addrs(a_host.peer_id, [silent, circuit], 600, trio.current_time())
            with trio.fail_after(60):
                conn = await b_host.connect(a_host.peer_id)
            assert is_relayed(conn.remote_addr)
            assert len(held) == 1  # the direct address was dialed first
        nursery.cancel_scope.cancel()
    await listener.aclose()
    for stream in held:
        await stream.aclose()
