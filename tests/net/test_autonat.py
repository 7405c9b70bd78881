"""AutoNAT v1 on loopback hosts: public when servers can dial us back, private when they can
only reach an address nobody listens on, refusals, rate limits, the address manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.autonat import PROTOCOL_ID, AutoNAT, AutoNATConfig, open_autonat
from p2pchat.net.host import Host, HostConfig, open_host
from p2pchat.net.identify import identify_peer, our_info, signed_record
from p2pchat.protocols import autonat as core
from p2pchat.records import open_peer_record

pytestmark = pytest.mark.timeout(60)

# Probes are made by the tests (eager_asks=0); the on-demand ones are tested on their own.
CONFIG = AutoNATConfig(threshold=3, probe_interval=3600.0, dial_timeout=5.0, eager_asks=0)


def _on(ip: str) -> HostConfig:
    return HostConfig(listen=(Multiaddr.from_string(f"/ip4/{ip}/tcp/0"),))


@asynccontextmanager
async def servers(n: int, config: AutoNATConfig = CONFIG) -> AsyncIterator[list[AutoNAT]]:
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(n):
            host = await stack.enter_async_context(open_host(KeyPair.generate(), _on("127.0.0.1")))
            out.append(await stack.enter_async_context(open_autonat(host, config)))
        yield out


async def _connect_all(client: Host, nodes: list[AutoNAT]) -> None:
    for node in nodes:
        conn = await client.connect(node.host.addrs[0])
        with trio.fail_after(10):  # identify tells the client who serves AutoNAT
            await identify_peer(client, conn)
        assert PROTOCOL_ID in client.peer_store.protocols(node.host.peer_id)


async def test_a_reachable_node_is_public() -> None:
    async with (
        servers(3) as nodes,
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
        open_autonat(host, CONFIG) as autonat,
    ):
        await _connect_all(host, nodes)
        assert autonat.status is core.ReachabilityStatus.UNKNOWN
        assert await autonat.probe() is core.ReachabilityStatus.PUBLIC
        assert autonat.reachability.reachable_addr == host.listen_addrs[0]
        assert sum(n.dial_backs for n in nodes) == 3
        # The dial-backs were their own connections, not kept by the servers.
        assert all(n.host.connected_peers() == [host.peer_id] for n in nodes)


async def test_a_node_seen_at_another_ip_than_it_listens_on_is_private() -> None:
    # It listens on 127.0.0.2 but its connections come from 127.0.0.1: servers may dial only
    # 127.0.0.1 (the observed IP), where nothing listens for it, as behind a NAT.
    async with (
        servers(3) as nodes,
        open_host(KeyPair.generate(), _on("127.0.0.2")) as host,
        open_autonat(host, CONFIG) as autonat,
    ):
        await _connect_all(host, nodes)
        assert await autonat.probe() is core.ReachabilityStatus.PRIVATE
        assert autonat.advertised_addrs() == host.listen_addrs


async def test_observed_addresses_feed_the_address_manager() -> None:
    async with (
        servers(3) as nodes,
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
        open_autonat(host, CONFIG) as autonat,
    ):
        await _connect_all(host, nodes)
        seen = autonat.observed.all()
        assert len(seen) == 3  # three connections, three source ports
        assert all(a.value_for("ip4") == "127.0.0.1" for a in seen)


async def test_a_dial_for_another_peer_is_refused() -> None:
    async with (
        servers(1) as (node,),
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
    ):
        stream = await host.new_stream(node.host.addrs[0], [PROTOCOL_ID])
        other = KeyPair.generate().peer_id
        await stream.send_all(core.frame(core.DialRequest(other, tuple(host.listen_addrs))))
        reader = core.MessageReader()
        with trio.fail_after(10):
            while (reply := reader.next_message()) is core.NEED_DATA:
                reader.receive_data(await stream.receive_some(4096))
        assert isinstance(reply, core.DialResponse)
        assert reply.status is core.ResponseStatus.E_BAD_REQUEST
        assert node.dial_backs == 0


async def test_dial_backs_are_rate_limited_per_peer() -> None:
    async with (
        servers(1, AutoNATConfig(budget_peer=2, threshold=1)) as (node,),
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
        open_autonat(host, CONFIG) as autonat,
    ):
        await _connect_all(host, [node])
        statuses = [(await autonat.ask(node.host.peer_id)).status for _ in range(3)]
        assert statuses == [
            core.ResponseStatus.OK,
            core.ResponseStatus.OK,
            core.ResponseStatus.E_DIAL_REFUSED,
        ]
        assert node.dial_backs == 2


async def test_a_public_node_advertises_confirmed_observed_addresses_in_identify() -> None:
    async with (
        servers(3) as nodes,
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
        open_autonat(host, CONFIG) as autonat,
    ):
        await _connect_all(host, nodes)
        outside = Multiaddr.from_string("/ip4/203.0.113.7/tcp/4001")
        host.peer_store.note_observed(nodes[0].host.peer_id, outside)
        assert outside not in host.advertised_addrs  # one observer is not enough
        host.peer_store.note_observed(nodes[1].host.peer_id, outside)
        assert outside not in host.advertised_addrs  # confirmed, but not known to be public
        assert await autonat.probe() is core.ReachabilityStatus.PUBLIC
        assert host.advertised_addrs == [*host.listen_addrs, outside]
        assert outside in our_info(host, None).listen_addrs
        record, _ = open_peer_record(signed_record(host))
        assert outside in record.addresses
    assert host.advertised_addrs == host.listen_addrs  # AutoNAT gone: listen addresses again


async def test_a_node_probes_each_server_as_soon_as_identify_shows_it() -> None:
    # No probe() call: the on-demand asks alone reach the verdict, one request per server.
    eager = AutoNATConfig(threshold=3, probe_interval=3600.0, dial_timeout=5.0)
    async with (
        servers(3) as nodes,
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
        open_autonat(host, eager) as autonat,
    ):
        assert autonat.eager_asked == 0  # no server known yet: no request
        await _connect_all(host, nodes)
        with trio.fail_after(20):
            while autonat.status is core.ReachabilityStatus.UNKNOWN:
                await autonat.wait_status_changed()
        assert autonat.status is core.ReachabilityStatus.PUBLIC
        await trio.testing.wait_all_tasks_blocked()
        assert autonat.eager_asked == 3
        assert [n.dial_backs for n in nodes] == [1, 1, 1]


async def test_on_demand_requests_stop_at_eager_asks() -> None:
    # Two requests allowed, three servers, a threshold of three: the verdict stays unknown and
    # the third server is not asked until the schedule's next round (an hour away here).
    bounded = AutoNATConfig(threshold=3, probe_interval=3600.0, dial_timeout=5.0, eager_asks=2)
    async with (
        servers(3) as nodes,
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
        open_autonat(host, bounded) as autonat,
    ):
        await _connect_all(host, nodes)
        with trio.fail_after(20):
            # An answer has no event of its own (only a changed verdict has).
            while sum(autonat.reachability.counts) < 2:  # noqa: ASYNC110
                await trio.sleep(0.05)
        await trio.testing.wait_all_tasks_blocked()
        assert autonat.eager_asked == 2
        assert sum(n.dial_backs for n in nodes) == 2
        assert autonat.status is core.ReachabilityStatus.UNKNOWN
