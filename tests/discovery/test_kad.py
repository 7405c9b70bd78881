"""The Kademlia service on loopback hosts: every node finds every other, providers are found
and expire, values are stored and validated, limits hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import pytest
import trio

from p2pchat.discovery.kad import KadConfig, KadDHT, open_kad
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import HostConfig, open_host
from p2pchat.net.muxer import MuxedStream
from p2pchat.net.resources import ResourceLimits
from p2pchat.protocols.kad import InvalidRecordError, Message, MessageType, frame
from p2pchat.protocols.kad.records import peer_record_key
from p2pchat.records import open_peer_record

pytestmark = pytest.mark.timeout(120)

#: Every node is on 127.0.0.1: the per-IP limits would refuse most of a 30-node network.
LOOPBACK = HostConfig(
    listen=(Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),),
    limits=ResourceLimits(max_inbound_per_ip=256, max_handshakes_per_ip=64),
)


def _key(n: int) -> KeyPair:
    return KeyPair.from_seed((1000 + n).to_bytes(32, "big"))


@asynccontextmanager
async def dht_network(
    n: int, *, config: KadConfig | None = None, clients: int = 0
) -> AsyncIterator[list[KadDHT]]:
    """``n`` DHT nodes on loopback, each bootstrapped through node 0 (the last ``clients`` in
    client mode), one after another."""
    base = config if config is not None else KadConfig(refresh_interval=3600.0)
    async with AsyncExitStack() as stack:
        nodes: list[KadDHT] = []
        for i in range(n):
            host = await stack.enter_async_context(open_host(_key(i), LOOPBACK))
            bootstrap = tuple(nodes[0].host.addrs[:1]) if nodes else ()
            mode = "client" if i >= n - clients else "server"
            dht = await stack.enter_async_context(
                open_kad(host, attrs.evolve(base, bootstrap=bootstrap, mode=mode))
            )
            with trio.fail_after(30):
                await dht.bootstrapped.wait()
            nodes.append(dht)
        yield nodes


async def _drain(stream: MuxedStream) -> None:
    while await stream.receive_some(100):
        pass


async def test_every_node_finds_every_other_by_peer_id_small() -> None:
    async with dht_network(8) as nodes:
        for dht in nodes:
            await dht.refresh()
        for a in nodes:
            for b in nodes:
                if a is b:
                    continue
                addrs = await a.find_peer(b.host.peer_id)
                assert b.host.listen_addrs[0] in addrs, (a.host.peer_id, b.host.peer_id)


@pytest.mark.slow
async def test_thirty_nodes_find_each_other_without_being_connected() -> None:
    async with dht_network(30) as nodes:
        for dht in nodes:
            await dht.refresh()
        misses = []
        for a in nodes:
            for b in nodes:
                if a is b:
                    continue
                # Drop the connection so the answer must come from the DHT, not the peer.
                conn = a.host.connection(b.host.peer_id)
                if conn is not None:
                    await conn.aclose()
                if b.host.listen_addrs[0] not in await a.find_peer(b.host.peer_id):
                    misses.append((a.host.peer_id, b.host.peer_id))
        assert misses == []


async def test_routing_tables_hold_servers_not_clients() -> None:
    async with dht_network(5, clients=1) as nodes:
        client = nodes[-1]
        for dht in nodes:
            await dht.refresh()
        assert client.host.peer_id not in nodes[0].table
        assert len(client.table) == 4
        # A client still finds servers and is answered.
        assert await client.find_peer(nodes[2].host.peer_id)


async def test_providers_are_found_then_expire() -> None:
    config = KadConfig(refresh_interval=3600.0, provider_ttl=1.0)
    async with dht_network(6, config=config) as nodes:
        key = b"\x12\x20" + bytes(range(32))  # a sha2-256 multihash, as a CID's
        accepted = await nodes[3].provide(key)
        assert accepted >= 1
        found = await nodes[5].providers(key)
        assert [p.peer for p in found] == [nodes[3].host.peer_id]
        assert found[0].addrs == tuple(nodes[3].host.listen_addrs)
        nodes[3].stop_providing(key)
        await trio.sleep(1.2)
        assert await nodes[5].providers(key) == []


async def test_signed_peer_record_is_put_and_got() -> None:
    async with dht_network(5) as nodes:
        assert await nodes[1].publish_peer_record() >= 1
        value = await nodes[4].get_value(peer_record_key(nodes[1].host.peer_id))
        assert value is not None
        record, _ = open_peer_record(value)
        assert record.peer == nodes[1].host.peer_id
        assert tuple(record.addresses) == tuple(nodes[1].host.listen_addrs)


async def test_invalid_value_is_refused_before_sending() -> None:
    async with dht_network(2) as nodes:
        with pytest.raises(InvalidRecordError):
            await nodes[1].put_value(peer_record_key(nodes[0].host.peer_id), b"junk")


async def test_malformed_request_resets_the_stream_and_the_node_goes_on() -> None:
    async with dht_network(2) as nodes:
        a, b = nodes
        stream = await a.host.new_stream(b.host.peer_id, ["/ipfs/kad/1.0.0"])
        await stream.send_all(b"\x05\xff\xff\xff\xff\xff")
        with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
            await _drain(stream)
        # The server still answers.
        reply = await a.request(b.host.peer_id, Message(MessageType.PING))
        assert reply.type is MessageType.PING


async def test_requests_on_one_stream_are_answered_in_order() -> None:
    async with dht_network(3) as nodes:
        a, b, c = nodes
        stream = await a.host.new_stream(b.host.peer_id, ["/ipfs/kad/1.0.0"])
        find = Message(MessageType.FIND_NODE, key=c.host.peer_id.to_bytes())
        await stream.send_all(frame(Message(MessageType.PING)) + frame(find))
        await stream.send_eof()
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(4096):
                data += chunk
        from p2pchat.protocols.kad import MessageReader

        reader = MessageReader()
        reader.receive_data(data)
        first, second = reader.next_message(), reader.next_message()
        assert isinstance(first, Message)
        assert first.type is MessageType.PING
        assert isinstance(second, Message)
        assert second.closer_peers[0].peer == c.host.peer_id
        assert second.sender_record is not None
