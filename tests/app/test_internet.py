"""The node with the DHT and AutoNAT on: config to daemon, the dht.* operations, status,
``p2pchat dht`` output. 127.0.0.1 only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pchat.app.control import RemoteCommandError, open_control
from p2pchat.app.daemon import Daemon, NodeOptions, open_daemon
from p2pchat.app.internet import InternetOptions
from p2pchat.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(60)

LOOPBACK = (Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),)


@asynccontextmanager
async def running(
    data_dir: Path, internet: InternetOptions, *, control: bool = True
) -> AsyncIterator[Daemon]:
    options = NodeOptions(data_dir=data_dir, listen=LOOPBACK, control=control, internet=internet)
    async with open_daemon(options) as daemon:
        yield daemon


async def test_dht_is_off_by_default_and_says_so(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running(tmp_path, InternetOptions()) as daemon, open_control(tmp_path) as c:
            assert daemon.internet is not None
            assert daemon.internet.dht is None
            status = await c.call("status")
            assert (status["dht"], status["reachability"]) == ("off", "unknown")
            assert status["advertised"] == [str(a) for a in daemon.host.listen_addrs]
            assert (await c.call("dht.status"))["enabled"] is False
            with pytest.raises(RemoteCommandError, match="the DHT is off"):
                await c.call("dht.peer", peer=str(daemon.peer_id))


async def test_two_nodes_find_each_other_through_the_dht_operations(tmp_path: Path) -> None:
    with trio.fail_after(45):
        server = InternetOptions(dht=True, dht_mode="server")
        async with running(tmp_path / "a", server, control=False) as a:
            joined = InternetOptions(dht=True, dht_mode="server", dht_bootstrap=(a.host.addrs[0],))
            async with (
                running(tmp_path / "b", joined) as b,
                running(tmp_path / "c", joined, control=False) as c,
                open_control(tmp_path / "b") as client,
            ):
                assert b.internet is not None
                assert b.internet.dht is not None
                assert c.internet is not None
                assert c.internet.dht is not None
                await b.internet.dht.bootstrapped.wait()
                await c.internet.dht.bootstrapped.wait()
                status = await client.call("dht.status")
                assert status["enabled"]
                assert status["mode"] == "server"
                assert status["routing_table_size"] >= 1
                found = await client.call("dht.peer", peer=str(c.peer_id))
                assert found["found"]
                assert str(c.host.listen_addrs[0]) in found["addrs"]
                key = bytes.fromhex("1220") + bytes(32)
                await c.internet.dht.provide(key)
                providers = await client.call("dht.providers", key=key.hex())
                assert [p["peer_id"] for p in providers["providers"]] == [str(c.peer_id)]
                with pytest.raises(RemoteCommandError, match="must be hex"):
                    await client.call("dht.providers", key="zz")
                with pytest.raises(RemoteCommandError, match="not a peer id"):
                    await client.call("dht.peer", peer="nope")


async def test_auto_mode_serves_the_dht_only_while_autonat_says_public() -> None:
    from p2pchat.app.internet import follow_reachability
    from p2pchat.discovery.kad import KadConfig, open_kad
    from p2pchat.identity import KeyPair
    from p2pchat.net.autonat import AutoNATConfig, open_autonat
    from p2pchat.net.host import open_host
    from p2pchat.net.identify import identify_peer

    config = AutoNATConfig(threshold=3, probe_interval=3600.0)
    async with AsyncExitStack() as stack:
        servers = []
        for _ in range(3):
            host = await stack.enter_async_context(open_host(KeyPair.generate()))
            await stack.enter_async_context(open_autonat(host, config))
            servers.append(host)
        host = await stack.enter_async_context(open_host(KeyPair.generate()))
        autonat = await stack.enter_async_context(open_autonat(host, config))
        dht = await stack.enter_async_context(
            open_kad(host, KadConfig(mode="client", refresh_interval=3600.0))
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_reachability, autonat, dht)
            await trio.testing.wait_all_tasks_blocked()
            assert dht.mode == "client"
            assert "/ipfs/kad/1.0.0" not in host.protocols
            for server in servers:
                await identify_peer(host, await host.connect(server.addrs[0]))
            await autonat.probe()
            await trio.testing.wait_all_tasks_blocked()
            assert dht.mode == "server"
            assert "/ipfs/kad/1.0.0" in host.protocols
            nursery.cancel_scope.cancel()
