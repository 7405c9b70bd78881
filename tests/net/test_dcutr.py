"""DCUtR on loopback hosts: a relayed connection is upgraded to a direct one, which the Host then
prefers, and the relayed one closes; the exchange follows the spec's messages."""

from __future__ import annotations

import time

import pytest
import trio

from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.dcutr import DCUtRConfig, open_dcutr
from p2pchat.net.host import open_host
from p2pchat.net.muxer import MuxedStream
from p2pchat.net.negotiate import negotiate_outbound
from p2pchat.net.ping import open_ping
from p2pchat.net.relay import is_relayed, open_relay_client, open_relay_service
from p2pchat.protocols.dcutr import (
    PROTOCOL_ID,
    HolePunch,
    HolePunchType,
    MessageReader,
    frame,
    public_targets,
)

pytestmark = pytest.mark.timeout(60)


async def test_relayed_connection_is_upgraded_to_a_direct_one() -> None:
    config = DCUtRConfig(grace=0.2)
    async with (
        open_host(KeyPair.generate()) as r,
        open_relay_service(r),
        open_host(KeyPair.generate()) as a_host,
        open_relay_client(a_host) as a,
        open_dcutr(a_host, config) as a_dcutr,
        open_host(KeyPair.generate()) as b_host,
        open_relay_client(b_host),
        open_dcutr(b_host, config),
    ):
        await a.reserve(r.addrs[0])
        circuit = a.book.circuit_addrs(time.time())[0].with_peer_id(a_host.peer_id)
        relayed = await b_host.connect(circuit)
        assert is_relayed(relayed.remote_addr)
        with trio.fail_after(30):
            await a_dcutr.done.wait()
            assert a_dcutr.stats.upgraded == 1
            await relayed.wait_closed()  # after the grace period
        direct = b_host.connection(a_host.peer_id)
        assert direct is not None
        assert not is_relayed(direct.remote_addr)
        async with open_ping(b_host, a_host.peer_id) as pinger:
            assert await pinger.ping() >= 0


async def test_a_second_hole_punch_from_the_same_peer_is_refused() -> None:
    async with (
        open_host(KeyPair.generate()) as r,
        open_relay_service(r),
        open_host(KeyPair.generate()) as a_host,
        open_relay_client(a_host) as a,
        open_host(KeyPair.generate()) as b_host,
        open_relay_client(b_host),
        open_dcutr(b_host),  # only b answers hole punches: a drives none by itself
    ):
        await a.reserve(r.addrs[0])
        circuit = a.book.circuit_addrs(time.time())[0].with_peer_id(a_host.peer_id)
        await b_host.connect(circuit)
        async with open_ping(b_host, a_host.peer_id) as pinger:
            await pinger.ping()  # a runs its side of the relayed connection
        relayed = a_host.connection(b_host.peer_id)
        assert relayed is not None
        first = await relayed.open_stream()
        await negotiate_outbound(first, [PROTOCOL_ID])
        await first.send_all(frame(HolePunch(HolePunchType.CONNECT, (a_host.listen_addrs[0],))))
        reader = MessageReader()
        reader.receive_data(await first.receive_some(4096))
        answer = reader.next_message()
        assert isinstance(answer, HolePunch)
        assert answer.type is HolePunchType.CONNECT
        assert set(b_host.listen_addrs) <= set(answer.addrs)
        second = await relayed.open_stream()
        await negotiate_outbound(second, [PROTOCOL_ID])
        with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
            await _exchange(second)
        await first.reset()


async def _exchange(stream: MuxedStream) -> bytes:
    await stream.send_all(frame(HolePunch(HolePunchType.CONNECT)))
    return await stream.receive_some(4096)


async def test_a_peer_with_reachable_addresses_is_dialed_before_any_hole_punch() -> None:
    """The direct step: a (the inbound side of the relayed connection) dials b's advertised
    addresses (loopback counts here by ``direct_private``) and b never sees a hole punch."""
    config = DCUtRConfig(grace=0.2, direct_private=True)
    async with (
        open_host(KeyPair.generate()) as r,
        open_relay_service(r),
        open_host(KeyPair.generate()) as a_host,
        open_relay_client(a_host) as a,
        open_dcutr(a_host, config) as a_dcutr,
        open_host(KeyPair.generate()) as b_host,
        open_relay_client(b_host),
        open_dcutr(b_host, config) as b_dcutr,
    ):
        await a.reserve(r.addrs[0])
        circuit = a.book.circuit_addrs(time.time())[0].with_peer_id(a_host.peer_id)
        relayed = await b_host.connect(circuit)
        with trio.fail_after(30):
            await a_dcutr.done.wait()
            await relayed.wait_closed()
        assert (a_dcutr.stats.upgraded, a_dcutr.stats.direct_dials) == (1, 1)
        assert b_dcutr.stats.upgraded == 0  # b answered no hole punch
        direct = a_host.connection(b_host.peer_id)
        assert direct is not None
        assert direct.remote_addr is not None
        assert direct.remote_addr.without_peer_id() in b_host.listen_addrs


def test_only_public_addresses_are_dialed_before_a_hole_punch() -> None:
    addrs = [
        Multiaddr.from_string(a)
        for a in (
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/10.0.0.2/tcp/4001",
            "/ip4/8.8.8.8/tcp/4001",
            "/ip4/8.8.8.8/tcp/4001/p2p/12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5/p2p-circuit",
            "/dns4/example.org/tcp/4001",
        )
    ]
    assert public_targets(addrs) == [addrs[2]]
    assert public_targets(addrs, private=True) == addrs[:3]
