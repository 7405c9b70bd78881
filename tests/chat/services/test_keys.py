"""Key sets of roster deltas between real nodes on 127.0.0.1 (specs/chat.md §20): ratifiers
hold the set before they vote, each member fetches its own entries only, a removed member gets
no key of what follows, and a set that does not match its commitment gets no vote."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chat.cluster import open_cluster
from p2pchat.chat.core.keyset import KeySet
from p2pchat.chat.core.roster import Role
from p2pchat.chat.core.roster_update import WrappedKey
from p2pchat.chat.core.txn import PutKeySet, Transaction
from p2pchat.chat.services.chat_client import open_chat

pytestmark = pytest.mark.timeout(120)


async def test_ratifiers_hold_the_set_and_members_fetch_only_their_own_keys(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier", "member", "gone") as cluster:
        owner, ratifier, member, gone = cluster.peers
        group_id = await owner.chat.create_group("keys")
        await owner.chat.invite(group_id, ratifier.peer_id, Role.RATIFIER)
        await ratifier.chat.join(group_id, owner.peer_id)
        await owner.chat.invite(group_id, member.peer_id, Role.USER)
        await member.chat.join(group_id, owner.peer_id)
        await owner.chat.invite(group_id, gone.peer_id, Role.USER)
        await gone.chat.join(group_id, ratifier.peer_id)
        assert set(gone.chat.view(group_id).epoch_keys) == {0, 1, 2, 3}  # history "all"

        await owner.chat.remove(group_id, gone.peer_id)
        change = owner.chat.view(group_id).state.roster_packets[-1]
        epoch = change.message.epoch + 1
        # Custody: the ratifier that voted holds the whole set, as the owner does.
        held = await ratifier.chat.store.get_key_set(group_id, change.message_hash)
        assert held is not None
        assert held == await owner.chat.store.get_key_set(group_id, change.message_hash)
        keyset = KeySet.decode(held)
        assert {k.peer for k in keyset.keys} == {owner.peer_id, ratifier.peer_id, member.peer_id}
        # Each member fetches its key of the new epoch; the removed one gets none.
        with trio.fail_after(10):
            for peer in (owner, ratifier, member):
                while epoch not in peer.chat.view(group_id).epoch_keys:  # noqa: ASYNC110
                    await trio.sleep(0.02)
        assert epoch not in gone.chat.view(group_id).epoch_keys
        text = await owner.chat.send(group_id, "after the removal")
        await member.chat.wait_ratified(group_id, text)
        assert [m.text for m in await member.chat.history(group_id)][-1] == "after the removal"

        # `keys` answers the querier's own entries only, with proofs; the removed member's
        # answer is empty, and a stranger to the group is refused.
        query = {"group_id": group_id, "message_hash": change.message_hash}
        async with open_chat(member.chat.host, ratifier.peer_id) as client:
            mine = await client.query("keys", query)
        assert mine.ok
        assert [WrappedKey.from_cbor(e).peer for e in mine.body["entries"]] == [member.peer_id]
        async with open_chat(gone.chat.host, ratifier.peer_id) as client:
            none = await client.query("keys", query)
            whole = await client.query("kset", {**query, "from": 0})
        assert (none.ok, none.body["entries"]) == (True, [])
        assert (whole.ok, whole.reason) == (False, "unknown group")  # not a current member
        async with open_chat(member.chat.host, ratifier.peer_id) as client:
            other = await client.query("keys", {**query, "message_hash": bytes(32)})
        assert (other.ok, other.reason) == (False, "not held")


async def test_a_set_that_does_not_match_its_commitment_gets_no_vote(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier") as cluster:
        owner, ratifier = cluster.peers
        group_id = await owner.chat.create_group("forged")
        await owner.chat.invite(group_id, ratifier.peer_id, Role.RATIFIER)
        await ratifier.chat.join(group_id, owner.peer_id)
        view = owner.chat.view(group_id)
        members = view.state.current_roster.members
        packet, commit = owner.chat.engine.change_roster(
            group_id, members, added=None, now=view.state.genesis.genesis.created + 10**6
        )
        # The owner's store holds another set than the one the message commits to.
        put_set = commit.txn.operations[0]
        assert isinstance(put_set, PutKeySet)
        real = KeySet.decode(put_set.data)
        forged = KeySet(tuple(WrappedKey(k.peer, k.epoch, b"\x00" + k.enc[1:]) for k in real.keys))
        txn = Transaction((PutKeySet(group_id, packet.message_hash, forged.encode()),))
        await owner.chat.store.commit(txn)
        async with open_chat(owner.chat.host, ratifier.peer_id) as client:
            answer = await client.query("mrat", {"group_id": group_id, "packet": packet.to_cbor()})
        assert (answer.ok, answer.reason) == (False, "malformed")
        assert await ratifier.chat.store.get_key_set(group_id, packet.message_hash) is None
        assert await ratifier.chat.store.get_vote(group_id, packet.message_hash) is None
