"""A Host's connection events: order, the bound of a slow subscriber, unsubscribing, shutdown."""

from __future__ import annotations

import pytest
import trio

from p2pchat.identity import KeyPair
from p2pchat.net.events import (
    ConnectionClosed,
    ConnectionEvent,
    ConnectionOpened,
    EventsDropped,
)
from p2pchat.net.host import Host, open_host
from p2pchat.net.ping import open_ping

pytestmark = pytest.mark.timeout(60)


async def test_opened_then_closed_arrive_in_order_on_both_sides() -> None:
    with trio.fail_after(20):
        async with (
            open_host(KeyPair.generate()) as a,
            open_host(KeyPair.generate()) as b,
            a.connection_events() as a_events,
            b.connection_events() as b_events,
        ):
            conn = await a.connect(b.addrs[0])
            assert await a_events.receive() == ConnectionOpened(b.peer_id, conn)
            opened_b = await b_events.receive()
            assert isinstance(opened_b, ConnectionOpened)
            assert opened_b.peer == a.peer_id
            assert not opened_b.conn.is_client
            await conn.aclose()
            assert await a_events.receive() == ConnectionClosed(b.peer_id, conn)
            assert await b_events.receive() == ConnectionClosed(a.peer_id, opened_b.conn)
            assert a.connected_peers() == []


async def test_a_slow_subscriber_keeps_the_newest_events_and_learns_how_many_it_lost() -> None:
    with trio.fail_after(30):
        async with (
            open_host(KeyPair.generate()) as hub,
            hub.connection_events() as prompt,
            hub.connection_events(max_queued=2) as slow,
        ):
            assert slow.max_queued == 2
            seen: list[ConnectionEvent] = []
            for _ in range(3):
                async with open_host(KeyPair.generate()) as other:
                    await other.connect(hub.addrs[0])
                    seen.append(await prompt.receive())
                seen.append(await prompt.receive())  # closed as `other` shut down
            assert [type(e) for e in seen] == [ConnectionOpened, ConnectionClosed] * 3
            # Six events went by; the slow subscriber holds the last two, told of the other four.
            assert await slow.receive() == EventsDropped(4)
            assert await slow.receive() == seen[4]
            assert await slow.receive() == seen[5]
            with trio.move_on_after(0.2) as idle:
                await slow.receive()
            assert idle.cancelled_caught


async def test_leaving_a_subscription_leaves_the_host_and_other_subscribers_unaffected() -> None:
    with trio.fail_after(20):
        async with open_host(KeyPair.generate()) as a, open_host(KeyPair.generate()) as b:
            async with a.connection_events(max_queued=1) as left:
                pass
            with pytest.raises(trio.ClosedResourceError):
                await left.receive()
            async with a.connection_events() as events:
                conn = await a.connect(b.addrs[0])
                assert await events.receive() == ConnectionOpened(b.peer_id, conn)
            async with open_ping(a, b.peer_id) as pinger:
                assert await pinger.ping() > 0
            assert a.connection(b.peer_id) is conn


async def test_the_host_shuts_down_cleanly_and_ends_a_subscription_still_open() -> None:
    received: list[ConnectionEvent] = []
    ended = False

    async def drain(host: Host, *, task_status: trio.TaskStatus[None]) -> None:
        nonlocal ended
        async with host.connection_events() as events:
            task_status.started()
            async for event in events:
                received.append(event)
        ended = True

    with trio.fail_after(20):
        # The subscriber's nursery encloses host `a`, so the subscription outlives it. Nobody
        # cancels that nursery: the drain loop must end by itself once `a` is gone.
        async with (
            open_host(KeyPair.generate()) as b,
            trio.open_nursery() as nursery,
            open_host(KeyPair.generate()) as a,
        ):
            await nursery.start(drain, a)
            conn = await a.connect(b.addrs[0])
    assert ended
    assert received == [ConnectionOpened(b.peer_id, conn), ConnectionClosed(b.peer_id, conn)]
    assert conn.is_closed


async def test_include_existing_starts_with_the_live_connections() -> None:
    with trio.fail_after(20):
        async with open_host(KeyPair.generate()) as a, open_host(KeyPair.generate()) as b:
            conn = await a.connect(b.addrs[0])
            async with a.connection_events(include_existing=True) as events:
                assert await events.receive() == ConnectionOpened(b.peer_id, conn)
            async with a.connection_events() as events:
                with trio.move_on_after(0.2) as idle:
                    await events.receive()
                assert idle.cancelled_caught


async def test_subscribing_to_a_closed_host_ends_at_once() -> None:
    async with open_host(KeyPair.generate()) as a:
        pass
    async with a.connection_events() as events:
        assert [event async for event in events] == []


async def test_a_queue_bound_below_one_is_refused() -> None:
    async with open_host(KeyPair.generate()) as a:
        with pytest.raises(ValueError, match="max_queued"):
            async with a.connection_events(max_queued=0):
                pass
