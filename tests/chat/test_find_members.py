"""Members find each other through the DHT: a moved ratifier by its peer id, and group
members by the group's rendezvous keys (specs/kad.md §10)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from p2pchat.chat.core.roster import Role
from p2pchat.chat.node import ChatConfig, ChatNode, open_chat_node
from p2pchat.chat.services.rendezvous import rendezvous_once
from p2pchat.chat.store import open_store
from p2pchat.discovery.kad import KadConfig, KadDHT, open_kad
from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import HostConfig, open_host
from p2pchat.net.peerstore import TEMP_ADDR_TTL
from p2pchat.net.resources import ResourceLimits

pytestmark = pytest.mark.timeout(120)

CONFIG = ChatConfig(
    query_timeout=2.0, send_timeout=3.0, retry_initial=0.05, retry_max=0.5, sync_interval=0.5
)
LIMITS = ResourceLimits(max_inbound_per_ip=256, max_handshakes_per_ip=64)
NOW = 1_764_000_000.0


def _host_config(port: int = 0) -> HostConfig:
    return HostConfig(listen=(Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{port}"),), limits=LIMITS)


@attrs.define
class Member:
    chat: ChatNode
    dht: KadDHT


@asynccontextmanager
async def dht_only(n: int) -> AsyncIterator[list[KadDHT]]:
    """``n`` DHT servers with no chat, joined through the first."""
    async with AsyncExitStack() as stack:
        nodes: list[KadDHT] = []
        for _ in range(n):
            host = await stack.enter_async_context(open_host(KeyPair.generate(), _host_config()))
            via = tuple(nodes[0].host.addrs[:1]) if nodes else ()
            dht = await stack.enter_async_context(
                open_kad(host, KadConfig(bootstrap=via, refresh_interval=3600.0))
            )
            await dht.bootstrapped.wait()
            nodes.append(dht)
        yield nodes


@asynccontextmanager
async def member(
    identity: KeyPair, data_dir: Path, bootstrap: Multiaddr, *, mode: str = "server"
) -> AsyncIterator[Member]:
    """A chat node with a DHT (joined through ``bootstrap``) that looks members up in it."""
    config = KadConfig(bootstrap=(bootstrap,), mode=mode, refresh_interval=3600.0)
    async with (
        open_host(identity, _host_config()) as host,
        open_store(data_dir) as store,
        open_kad(host, config) as dht,
        open_chat_node(host, store, CONFIG) as chat,
    ):
        with trio.fail_after(30):
            await dht.bootstrapped.wait()
        yield Member(chat, dht)


async def test_a_moved_ratifier_is_found_in_the_dht(tmp_path: Path) -> None:
    alice_key, bob_key = KeyPair.generate(), KeyPair.generate()
    async with dht_only(4) as dhts:
        hub = dhts[0].host.addrs[0]
        # alice is a DHT client: bob's own lookups never reach her, only the DHT knows bob.
        async with member(alice_key, tmp_path / "alice", hub, mode="client") as alice:
            asked: list[PeerID] = []

            async def finder(peer: PeerID) -> list[Multiaddr]:
                asked.append(peer)
                return await alice.dht.find_peer(peer)

            alice.chat.use_peer_finder(finder)
            async with member(bob_key, tmp_path / "bob", hub) as bob:
                alice.chat.host.peer_store.add_addrs(
                    bob_key.peer_id, bob.chat.host.addrs, TEMP_ADDR_TTL, trio.current_time()
                )
                group_id = await alice.chat.create_group("moving")
                await alice.chat.invite(group_id, bob_key.peer_id, Role.RATIFIER)
                await bob.chat.join(group_id, alice.chat.host.addrs[0])
                old_addr = bob.chat.host.listen_addrs[0]
            assert alice.chat.group_state(group_id).current_roster.quorum == 2
            # bob comes back on another port; nobody tells alice.
            async with member(bob_key, tmp_path / "bob", hub) as bob:
                assert bob.chat.host.listen_addrs[0] != old_addr
                assert alice.chat.host.connection(bob_key.peer_id) is None
                with trio.fail_after(30):
                    message = await alice.chat.send(group_id, "where did you go?", wait=False)
                    await alice.chat.wait_ratified(group_id, message)
                known = alice.chat.host.peer_store.addrs(bob_key.peer_id, trio.current_time())
                assert bob.chat.host.listen_addrs[0] in known
                assert asked == [bob_key.peer_id]


async def test_members_meet_at_the_group_rendezvous(tmp_path: Path) -> None:
    alice_key, bob_key, carol_key = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    async with dht_only(4) as dhts:
        hub = dhts[0].host.addrs[0]
        async with (
            member(alice_key, tmp_path / "alice", hub) as alice,
            member(bob_key, tmp_path / "bob", hub) as bob,
        ):
            alice.chat.host.peer_store.add_addrs(
                bob_key.peer_id, bob.chat.host.addrs, TEMP_ADDR_TTL, trio.current_time()
            )
            group_id = await alice.chat.create_group("meeting")
            await alice.chat.invite(group_id, bob_key.peer_id, Role.USER)
            await bob.chat.join(group_id, alice.chat.host.addrs[0])
        # Both come back on new ports, knowing nothing of each other; carol, not a member,
        # runs too.
        async with (
            member(alice_key, tmp_path / "alice", hub, mode="client") as alice,
            member(bob_key, tmp_path / "bob", hub, mode="client") as bob,
            member(carol_key, tmp_path / "carol", hub, mode="client") as carol,
        ):
            assert alice.chat.host.connection(bob_key.peer_id) is None
            assert await rendezvous_once(bob.chat, bob.dht, set(), NOW) == []  # alice not there
            provided: set[bytes] = set()
            met = await rendezvous_once(alice.chat, alice.dht, provided, NOW)
            assert met == [bob_key.peer_id]
            assert alice.chat.host.connection(bob_key.peer_id) is not None
            assert len(provided) == 2
            # The keys tell outsiders nothing: not the group id, and carol finds nobody.
            assert group_id not in provided
            assert await rendezvous_once(carol.chat, carol.dht, set(), NOW) == []
