"""Automatic reservations on loopback hosts: a node that AutoNAT finds private (it listens on
127.0.0.2, its connections come from 127.0.0.1) reserves by itself on a relay it knows from
identify; at most ``max_relays`` of them; relays found through the DHT finder; reservations
dropped when the verdict turns public."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.autonat import AutoNATConfig, open_autonat
from p2pchat.net.autorelay import AutoRelay, AutoRelayConfig
from p2pchat.net.host import Host, HostConfig, open_host
from p2pchat.net.identify import identify_peer
from p2pchat.net.relay import RelayClient, open_relay_client, open_relay_service
from p2pchat.protocols.autonat import ReachabilityStatus
from p2pchat.protocols.relay import HOP_PROTOCOL

pytestmark = pytest.mark.timeout(60)

AUTONAT = AutoNATConfig(threshold=3, probe_interval=3600.0, dial_timeout=5.0, eager_asks=0)


def _on(ip: str) -> HostConfig:
    return HostConfig(listen=(Multiaddr.from_string(f"/ip4/{ip}/tcp/0"),))


class FakeReachability:
    """A verdict the test sets."""

    def __init__(self, status: ReachabilityStatus) -> None:
        self.status = status
        self._changed = trio.Event()

    def set(self, status: ReachabilityStatus) -> None:
        self.status = status
        self._changed.set()
        self._changed = trio.Event()

    async def wait_status_changed(self) -> None:
        await self._changed.wait()


@asynccontextmanager
async def relays(n: int, *, autonat: bool = False) -> AsyncIterator[list[Host]]:
    """``n`` relay hosts on 127.0.0.1 (also AutoNAT servers if asked)."""
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(n):
            host = await stack.enter_async_context(open_host(KeyPair.generate(), _on("127.0.0.1")))
            await stack.enter_async_context(open_relay_service(host))
            if autonat:
                await stack.enter_async_context(open_autonat(host, AUTONAT))
            out.append(host)
        yield out


async def _meet(client: Host, hosts: Sequence[Host]) -> None:
    for other in hosts:
        conn = await client.connect(other.addrs[0])
        with trio.fail_after(10):
            await identify_peer(client, conn)
        assert HOP_PROTOCOL in client.peer_store.protocols(other.peer_id)


def _circuits(client: RelayClient) -> list[Multiaddr]:
    return [a for a in client.host.advertised_addrs if "p2p-circuit" in str(a)]


async def test_a_private_node_reserves_on_a_relay_it_knows() -> None:
    async with (
        relays(3, autonat=True) as servers,
        open_host(KeyPair.generate(), _on("127.0.0.2")) as host,
        open_autonat(host, AUTONAT) as autonat,
        open_relay_client(host) as client,
    ):
        await _meet(host, servers)
        auto = AutoRelay(client, autonat, AutoRelayConfig(max_relays=1))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(auto.run)
            await trio.testing.wait_all_tasks_blocked()
            assert client.reservations() == []  # reachability unknown: nothing to do yet
            assert await autonat.probe() is ReachabilityStatus.PRIVATE
            with trio.fail_after(20):
                while not client.reservations():
                    await auto.checked.wait()
            nursery.cancel_scope.cancel()
        held = client.reservations()
        assert len(held) == 1
        assert held[0].relay in {s.peer_id for s in servers}
        assert _circuits(client)
        assert auto.ours == {held[0].relay}


async def test_reservations_are_bounded_and_dropped_when_public() -> None:
    async with (
        relays(3) as hosts,
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
        open_relay_client(host) as client,
    ):
        await _meet(host, hosts)
        verdict = FakeReachability(ReachabilityStatus.PRIVATE)
        auto = AutoRelay(client, verdict, AutoRelayConfig(max_relays=2))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(auto.run)
            with trio.fail_after(20):
                while len(client.reservations()) < 2:
                    await auto.checked.wait()
            assert len(auto.ours) == 2
            assert len({a.value_for("p2p") for a in _circuits(client)}) == 2
            await auto.check()  # already full: no third one
            assert len(client.reservations()) == 2

            verdict.set(ReachabilityStatus.PUBLIC)
            with trio.fail_after(10):
                while client.reservations():
                    await auto.checked.wait()
            assert auto.ours == set()
            assert _circuits(client) == []
            assert all(not host.is_protected(r.peer_id) for r in hosts)
            nursery.cancel_scope.cancel()


async def test_configured_relays_count_and_are_kept_when_public() -> None:
    async with (
        relays(2) as (configured, other),
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
        open_relay_client(host) as client,
    ):
        await _meet(host, [other])
        await client.reserve(configured.addrs[0])  # as [relay] reserve makes the client do
        verdict = FakeReachability(ReachabilityStatus.PRIVATE)
        auto = AutoRelay(
            client, verdict, AutoRelayConfig(max_relays=1), configured=[configured.addrs[0]]
        )
        await auto.check()
        assert [h.relay for h in client.reservations()] == [configured.peer_id]
        assert auto.ours == set()
        verdict.set(ReachabilityStatus.PUBLIC)
        auto.drop()
        assert [h.relay for h in client.reservations()] == [configured.peer_id]


async def test_a_relay_found_through_the_dht_finder_is_reserved_on() -> None:
    async with (
        relays(1) as (relay,),
        open_host(KeyPair.generate(), _on("127.0.0.1")) as host,
        open_relay_client(host) as client,
    ):
        asked = 0

        async def find() -> list[tuple[PeerID, tuple[Multiaddr, ...]]]:
            nonlocal asked
            asked += 1
            return [(relay.peer_id, tuple(relay.addrs))]

        verdict = FakeReachability(ReachabilityStatus.PRIVATE)
        auto = AutoRelay(client, verdict, AutoRelayConfig(max_relays=1), find_relays=find)
        await auto.check()
        assert [h.relay for h in client.reservations()] == [relay.peer_id]
        assert auto.ours == {relay.peer_id}
        # Held: the next check refreshes nothing and asks the DHT nothing.
        await auto.check()
        assert asked == 1
