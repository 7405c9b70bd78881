"""Members tell each other where members are (``addr``, specs/chat.md §8)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chat.cluster import open_cluster
from p2pchat.chat.core.roster import Role
from p2pchat.chat.node import RECORDS_FILE
from p2pchat.chat.services.chat_client import open_chat
from p2pchat.records import open_peer_record

pytestmark = pytest.mark.timeout(120)

STAR = ("alice", "bob", "carol", "dave")


async def test_a_member_who_knows_only_the_owner_is_ratified(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, *STAR, hub="alice") as cluster:
        alice, bob, carol, dave = cluster.peers
        assert dave.chat.host.peer_store.addrs(bob.peer_id, trio.current_time()) == []
        group_id = await alice.chat.create_group("star")
        for peer, role in ((bob, Role.RATIFIER), (carol, Role.RATIFIER), (dave, Role.USER)):
            await alice.chat.invite(group_id, peer.peer_id, role)
            await peer.chat.join(group_id, alice.peer_id)
        # Quorum 2 of 3 ratifiers: alice's vote is not enough, dave must reach bob or carol,
        # whose addresses only alice could tell it.
        assert alice.chat.group_state(group_id).current_roster.quorum == 2
        with trio.fail_after(15):
            message = await dave.chat.send(group_id, "from the edge of the star")
            for peer in (alice, bob, carol):
                await peer.chat.wait_ratified(group_id, message)
        held = dave.chat.host.peer_store.signed_record(bob.peer_id)
        assert held is not None
        record, _ = open_peer_record(held)
        assert record.peer == bob.peer_id
        assert bob.chat.host.listen_addrs[0] in record.addresses


async def test_addresses_are_for_members_only(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "alice", "bob", "mallory") as cluster:
        alice, bob, mallory = cluster.peers
        group_id = await alice.chat.create_group("closed")
        await alice.chat.invite(group_id, bob.peer_id, Role.USER)
        await bob.chat.join(group_id, alice.peer_id)
        async with open_chat(mallory.chat.host, alice.peer_id) as client:
            answer = await client.query("addr", {"group_id": group_id})
        assert (answer.ok, answer.reason) == (False, "unknown group")
        async with open_chat(bob.chat.host, alice.peer_id) as client:
            answer = await client.query("addr", {"group_id": group_id})
        assert answer.ok
        first, _ = open_peer_record(answer.body["records"][0])
        assert first.peer == alice.peer_id  # the answerer's own record comes first


async def test_members_of_our_groups_are_protected_by_the_host(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "alice", "bob", "carol") as cluster:
        alice, bob, carol = cluster.peers
        group_id = await alice.chat.create_group("kept")
        await alice.chat.invite(group_id, bob.peer_id, Role.USER)
        await bob.chat.join(group_id, alice.peer_id)
        assert alice.chat.host.is_protected(bob.peer_id)
        assert bob.chat.host.is_protected(alice.peer_id)
        assert not alice.chat.host.is_protected(carol.peer_id)
        await alice.chat.remove(group_id, bob.peer_id)
        assert not alice.chat.host.is_protected(bob.peer_id)


async def test_a_ratifier_restarted_on_a_new_port_is_found_there(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, *STAR, hub="alice") as cluster:
        alice, bob, carol, dave = cluster.peers
        group_id = await alice.chat.create_group("moving")
        for peer, role in ((bob, Role.RATIFIER), (carol, Role.RATIFIER), (dave, Role.USER)):
            await alice.chat.invite(group_id, peer.peer_id, role)
            await peer.chat.join(group_id, alice.peer_id)
        with trio.fail_after(15):
            await dave.chat.send(group_id, "before the move")
        # carol goes away, so a quorum (2 of 3) now needs bob; bob comes back on another port,
        # which only alice learns (bob dials her, she identifies him).
        await carol.stop()
        await bob.stop()
        old_port = bob.port
        bob.port = 0
        await bob.start()
        assert bob.port != old_port
        with trio.fail_after(20):
            message = await dave.chat.send(group_id, "after the move", wait=False)
            await bob.chat.wait_ratified(group_id, message)
            await dave.chat.wait_ratified(group_id, message)
        known = dave.chat.host.peer_store.addrs(bob.peer_id, trio.current_time())
        assert bob.chat.host.listen_addrs[0] in known


async def test_a_restarted_member_dials_a_member_at_its_stored_record(tmp_path: Path) -> None:
    """specs/chat.md §12: carol knows where bob is only from the record alice gave her; after
    a restart with alice gone, the record kept in her data dir is where she finds him."""
    async with open_cluster(tmp_path, "alice", "bob", "carol", hub="alice") as cluster:
        alice, bob, carol = cluster.peers
        group_id = await alice.chat.create_group("remembered")
        for peer, role in ((bob, Role.RATIFIER), (carol, Role.USER)):
            await alice.chat.invite(group_id, peer.peer_id, role)
            await peer.chat.join(group_id, alice.peer_id)
        assert carol.chat.host.peer_store.signed_record(bob.peer_id) is not None
        await carol.stop()
        await alice.stop()
        assert (carol.data_dir / RECORDS_FILE).exists()
        await carol.start()
        # Read before the node started dialing, and with alice down nobody could have told
        # her: the address is the stored record's.
        known = carol.chat.host.peer_store.addrs(bob.peer_id, trio.current_time())
        assert bob.chat.host.listen_addrs[0] in known
        # She dials him by herself (at most 15 s).
        for _ in range(300):
            if bob.peer_id in carol.chat.host.connected_peers():
                break
            await trio.sleep(0.05)
        assert bob.peer_id in carol.chat.host.connected_peers()


async def test_a_member_that_moved_is_made_known_to_members_that_stay_connected(
    tmp_path: Path,
) -> None:
    """bob comes back on another port and reaches alice only; dave, who stays connected to
    alice and makes no new connection, learns where bob is now from alice (specs/chat.md §8)."""
    async with open_cluster(tmp_path, *STAR, hub="alice") as cluster:
        alice, bob, carol, dave = cluster.peers
        group_id = await alice.chat.create_group("moved")
        for peer, role in ((bob, Role.RATIFIER), (carol, Role.RATIFIER), (dave, Role.USER)):
            await alice.chat.invite(group_id, peer.peer_id, role)
            await peer.chat.join(group_id, alice.peer_id)
        assert dave.chat.host.peer_store.signed_record(bob.peer_id) is not None
        await bob.stop()
        (bob.data_dir / RECORDS_FILE).unlink(missing_ok=True)  # bob knows only alice now
        old_port = bob.port
        bob.port = 0
        await bob.start()
        assert bob.port != old_port
        new_addr = bob.chat.host.listen_addrs[0]
        for _ in range(200):  # at most 10 s
            if new_addr in dave.chat.host.peer_store.addrs(bob.peer_id, trio.current_time()):
                break
            await trio.sleep(0.05)
        assert new_addr in dave.chat.host.peer_store.addrs(bob.peer_id, trio.current_time())
        assert bob.peer_id not in dave.chat.host.connected_peers()
        held = dave.chat.host.peer_store.signed_record(bob.peer_id)
        assert held is not None
        assert new_addr in open_peer_record(held)[0].addresses
