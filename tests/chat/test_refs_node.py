"""Replies, edits, deletes and reactions at three nodes on 127.0.0.1 (specs/chat.md §17):
ratified like any message, the role rule enforced by the ratifiers, folded the same way
everywhere."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from chat.cluster import Peer, build_group, open_cluster
from p2pchat.chat.core.author import write_message
from p2pchat.chat.core.refs import DELETE, EDIT, LEAVE, REACTION, Folded, Item, fold
from p2pchat.chat.core.roster import Role
from p2pchat.chat.node import NotAllowedError
from p2pchat.chat.services.chat_client import open_chat

pytestmark = pytest.mark.timeout(120)


async def wait_everywhere(peers: list[Peer], group_id: bytes, *hashes: bytes) -> None:
    with trio.fail_after(15):
        for peer in peers:
            for message_hash in hashes:
                await peer.chat.wait_ratified(group_id, message_hash)


async def folded(peer: Peer, group_id: bytes) -> list[Folded]:
    history = await peer.chat.history(group_id)
    items = [Item(m.message_hash, m.author, m.message_type, m.ref_hash, m.content) for m in history]
    owner = peer.chat.group_state(group_id).owner
    return [f for f in fold(items, owner) if f.item.message_type != "roster"]


async def test_reply_edit_delete_react_at_three_nodes(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "bob", "carol") as cluster:
        owner, bob, carol = cluster.peers
        group_id = await build_group(owner, [(bob, Role.RATIFIER), (carol, Role.USER)])
        hello = await carol.chat.send(group_id, "helo all")
        spam = await bob.chat.send(group_id, "buy now")
        await wait_everywhere(cluster.peers, group_id, hello, spam)

        reply = await bob.chat.send(group_id, "hi carol", ref_hash=hello)
        edit = await carol.chat.send(
            group_id, "hello all", message_type=EDIT, mime="text/plain", ref_hash=hello
        )
        likes = [
            await peer.chat.send(
                group_id, "+1", message_type=REACTION, mime="text/plain", ref_hash=hello
            )
            for peer in (bob, owner, bob)  # bob's second toggles his off
        ]
        # moderation: the owner deletes bob's message
        gone = await owner.chat.send(group_id, b"", message_type=DELETE, ref_hash=spam)
        await wait_everywhere(cluster.peers, group_id, reply, edit, gone, *likes)

        views = [await folded(peer, group_id) for peer in cluster.peers]
        assert views[0] == views[1] == views[2]
        shown = {f.item.message_hash: f for f in views[0]}
        assert list(shown)[-1] == reply  # hello and spam were concurrent: their order is by hash
        first, second, answer = shown[hello], shown[spam], shown[reply]
        assert (first.content, first.edited) == (b"hello all", True)
        assert first.versions == [b"helo all", b"hello all"]
        assert first.reactions == {"+1": [owner.peer_id]}
        assert (second.deleted_by, second.content) == (owner.peer_id, None)
        assert (answer.item.ref_hash, answer.content) == (hello, b"hi carol")


async def test_an_edit_of_someone_elses_message_is_refused(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "bob", "carol") as cluster:
        owner, bob, carol = cluster.peers
        group_id = await build_group(owner, [(bob, Role.RATIFIER), (carol, Role.USER)])
        hello = await carol.chat.send(group_id, "carol's words")
        rules = await owner.chat.send(group_id, "the rules")
        await wait_everywhere(cluster.peers, group_id, hello, rules)
        # our node refuses at once what the ratifiers would refuse
        with pytest.raises(NotAllowedError, match="not allowed"):
            await bob.chat.send(group_id, "bob's words", message_type=EDIT, ref_hash=hello)
        with pytest.raises(NotAllowedError, match="not allowed"):
            await carol.chat.send(group_id, b"", message_type=DELETE, ref_hash=rules)
        # a node that skips that check meets the ratifiers' rule
        forged = write_message(
            bob.identity,
            bob.chat.view(group_id),
            b"bob's words",
            EDIT,
            "text/plain",
            hello,
            int(time.time() * 1000),
        )
        async with open_chat(bob.chat.host, owner.peer_id) as client:
            answer = await client.query("mrat", {"group_id": group_id, "packet": forged.to_cbor()})
        assert (answer.ok, answer.reason) == (False, "not allowed")
        texts = [f.content for f in await folded(carol, group_id)]
        assert sorted(t or b"" for t in texts) == [b"carol's words", b"the rules"]  # concurrent


async def test_the_owner_changes_a_members_role(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "bob", "carol") as cluster:
        owner, bob, carol = cluster.peers
        group_id = await build_group(owner, [(bob, Role.RATIFIER), (carol, Role.USER)])
        with pytest.raises(NotAllowedError):
            await bob.chat.set_role(group_id, carol.peer_id, Role.VIEWER)
        with pytest.raises(NotAllowedError):
            await owner.chat.set_role(group_id, owner.peer_id, Role.USER)
        await owner.chat.set_role(group_id, carol.peer_id, Role.VIEWER)
        state = owner.chat.group_state(group_id)
        change = state.roster_packet(state.current_epoch - 1)
        assert change is not None
        await wait_everywhere([carol], group_id, change.message_hash)
        with pytest.raises(NotAllowedError):
            await carol.chat.send(group_id, "may I?")
        await owner.chat.set_role(group_id, carol.peer_id, Role.RATIFIER)
        roster = owner.chat.group_state(group_id).current_roster
        assert carol.peer_id in roster.ratifiers
        assert roster.role_of(carol.peer_id) is Role.RATIFIER


async def test_a_member_leaves_and_the_owner_takes_it_off_the_roster(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "bob", "carol") as cluster:
        owner, bob, carol = cluster.peers
        group_id = await build_group(owner, [(bob, Role.RATIFIER), (carol, Role.USER)])
        with pytest.raises(NotAllowedError, match="not allowed"):
            await owner.chat.send(group_id, b"", message_type=LEAVE)
        async with owner.chat.subscribe(group_id) as messages:
            await carol.chat.send(group_id, b"", message_type=LEAVE)
            with trio.fail_after(15):  # the owner's node acts on its own: a roster change
                async for message in messages:
                    if message.message_type == "roster" and message.ratified:
                        break
        roster = owner.chat.group_state(group_id).current_roster
        assert roster.member(carol.peer_id) is None
        assert roster.member(bob.peer_id) is not None
