"""ChatNode groups on real Hosts on 127.0.0.1: ratification, delivery, refusals, failures."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
import trio

from chat.cluster import Cluster, Peer, build_group, crafted, open_cluster, stored
from p2pchat.chat.core import crypto
from p2pchat.chat.core.packet import Certificate, Packet, make_vote, sign_message
from p2pchat.chat.core.roster import History, Role
from p2pchat.chat.node import ChatError, NotAllowedError, PendingError
from p2pchat.chat.services.chat_client import open_chat
from p2pchat.identity import KeyPair

pytestmark = pytest.mark.timeout(120)

FIVE = ("owner", "ratifier2", "ratifier3", "user", "viewer")


async def five_node_group(cluster: Cluster) -> bytes:
    owner, r2, r3, user, viewer = cluster.peers[:5]
    return await build_group(
        owner,
        [(r2, Role.RATIFIER), (r3, Role.RATIFIER), (user, Role.USER), (viewer, Role.VIEWER)],
    )


async def wait_everywhere(peers: list[Peer], group_id: bytes, *hashes: bytes) -> None:
    with trio.fail_after(15):
        for peer in peers:
            for message_hash in hashes:
                await peer.chat.wait_ratified(group_id, message_hash)


async def texts(peer: Peer, group_id: bytes) -> list[tuple[bytes, str | None]]:
    return [
        (m.message_hash, m.text)
        for m in await peer.chat.history(group_id)
        if m.message_type != "roster"
    ]


async def test_five_node_group_certifies_and_delivers_in_the_same_order_everywhere(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, *FIVE) as cluster:
        owner, r2, r3, user, viewer = cluster.peers
        group_id = await five_node_group(cluster)
        roster = owner.chat.group_state(group_id).current_roster
        assert roster.quorum == 2
        assert {m.peer for m in roster.members} == {p.peer_id for p in cluster.peers}
        sent = []
        for author, text, kind in [
            (r2, "from a ratifier", "text"),
            (user, "from the user", "text"),
            (owner, "# markdown", "markdown"),
        ]:
            sent.append(await author.chat.send(group_id, text, message_type=kind))
            # Each message reaches everyone before the next is written, so each is the
            # next one's parent and the display order is the sending order.
            await wait_everywhere(cluster.peers, group_id, sent[-1])
        concurrent = [
            await user.chat.send(group_id, "concurrent 1"),
            await r3.chat.send(group_id, "concurrent 2"),
        ]
        await wait_everywhere(cluster.peers, group_id, *concurrent)
        expected = await texts(owner, group_id)
        assert [text for _, text in expected][:3] == [
            "from a ratifier",
            "from the user",
            "# markdown",
        ]
        assert {text for _, text in expected[3:]} == {"concurrent 1", "concurrent 2"}
        for peer in cluster.peers:
            assert await texts(peer, group_id) == expected
        history = await viewer.chat.history(group_id)
        assert all(m.ratified for m in history)


async def test_viewer_reads_but_can_neither_send_nor_ratify(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, *FIVE) as cluster:
        owner, _r2, _r3, user, viewer = cluster.peers
        group_id = await five_node_group(cluster)
        message_hash = await user.chat.send(group_id, "hello viewer")
        await wait_everywhere([viewer], group_id, message_hash)
        assert (await texts(viewer, group_id))[-1] == (message_hash, "hello viewer")
        with pytest.raises(NotAllowedError):
            await viewer.chat.send(group_id, "may I?")
        # Asked for a vote, the viewer refuses: its vote would not count anyway.
        packet = crafted(user, owner, group_id, b"vote please")
        async with open_chat(user.chat.host, viewer.peer_id) as client:
            answer = await client.query("mrat", {"group_id": group_id, "packet": packet.to_cbor()})
        assert (answer.ok, answer.reason) == (False, "not allowed")


async def test_a_non_member_can_neither_read_nor_send(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, *FIVE, "outsider") as cluster:
        owner, _r2, _r3, user, _viewer, outsider = cluster.peers
        group_id = await five_node_group(cluster)
        secret = b"members only"
        message_hash = await user.chat.send(group_id, secret)
        with pytest.raises(ChatError, match="does not count us among the members") as refused:
            await outsider.chat.join(group_id, owner.peer_id)
        assert "ask the group's owner to invite this node" in str(refused.value)
        async with open_chat(outsider.chat.host, owner.peer_id) as client:
            history = await client.query("dht", {"group_id": group_id, "cursor": 0})
            assert (history.ok, history.reason) == (False, "unknown group")
            forged = crafted(outsider, owner, group_id, b"let me in")
            vote = await client.query("mrat", {"group_id": group_id, "packet": forged.to_cbor()})
            assert (vote.ok, vote.reason) == (False, "unknown group")
        # What travels is ciphertext: the content appears nowhere in the stored packet.
        row = await owner.chat.store.get_message(group_id, message_hash)
        assert row is not None
        assert secret not in row.packet_with_certificate()
        assert outsider.chat.groups() == []


async def test_bad_messages_are_refused_with_their_reasons(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, *FIVE) as cluster:
        owner, r2, r3, user, viewer = cluster.peers
        group_id = await five_node_group(cluster)
        good = crafted(user, owner, group_id, b"genuine")
        forged_signature = attrs.evolve(good, signature=bytes(64))
        other_group = crafted(user, owner, group_id, b"elsewhere")
        async with open_chat(user.chat.host, owner.peer_id) as client:

            async def ask(code: str, packet: Packet, group: bytes = group_id) -> str | None:
                answer = await client.query(code, {"group_id": group, "packet": packet.to_cbor()})
                return None if answer.ok else answer.reason

            assert await ask("mrat", forged_signature) == "bad signature"
            assert await ask("mrat", other_group, os.urandom(32)) == "unknown group"
            # Certificates: forged by non-ratifiers, or one vote short of the quorum of 2.
            outsiders = [KeyPair.generate(), KeyPair.generate()]
            fake = Certificate(
                good.message.epoch,
                tuple(
                    make_vote(k, group_id, good.message.epoch, good.message_hash) for k in outsiders
                ),
            )
            assert await ask("smsg", good.with_certificate(fake)) == "bad certificate"
            one = make_vote(r2.identity, group_id, good.message.epoch, good.message_hash)
            short = Certificate(good.message.epoch, (one,))
            assert await ask("smsg", good.with_certificate(short)) == "bad certificate"
            # A genuine message, then its replay: recognised, stored once.
            message_hash = await user.chat.send(group_id, "once")
            await wait_everywhere([owner], group_id, message_hash)
            replay = await stored(owner, group_id, message_hash)
            answer = await client.query("smsg", {"group_id": group_id, "packet": replay.to_cbor()})
            assert answer.ok
            assert answer.body == {"duplicate": True}
            hashes = [m.message_hash for m in await owner.chat.history(group_id)]
            assert hashes.count(message_hash) == 1
            # Stale epoch: a message of the epoch before the last roster change.
            stale = attrs.evolve(good.message, epoch=good.message.epoch - 1)
            stale_packet = sign_message(user.identity, stale, good.aes_key, good.iv)
            assert await ask("mrat", stale_packet) == "stale epoch"
        del r3, viewer


async def test_one_ratifier_down_still_ratifies_two_down_waits_then_delivers(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, *FIVE) as cluster:
        owner, r2, r3, user, _viewer = cluster.peers
        group_id = await five_node_group(cluster)
        await r3.stop()
        first = await user.chat.send(group_id, "one ratifier down")
        await wait_everywhere([owner, r2, user], group_id, first)
        await r2.stop()
        with pytest.raises(PendingError) as pending:
            await user.chat.send(group_id, "two ratifiers down")
        held = pending.value.message_hash
        assert held not in [m.message_hash for m in await user.chat.history(group_id)]
        await r2.start()
        await r3.start()
        await wait_everywhere(cluster.peers, group_id, first, held)
        for peer in cluster.peers:
            assert [t for _, t in await texts(peer, group_id)] == [
                "one ratifier down",
                "two ratifiers down",
            ]


async def test_a_member_offline_during_sends_catches_up_after_reconnecting(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, *FIVE) as cluster:
        owner, r2, _r3, user, viewer = cluster.peers
        group_id = await five_node_group(cluster)
        await viewer.stop()
        sent = [await user.chat.send(group_id, f"while away {i}") for i in range(3)]
        sent.append(await r2.chat.send(group_id, "and one more"))
        await viewer.start()
        await wait_everywhere([viewer], group_id, *sent)
        assert await texts(viewer, group_id) == await texts(owner, group_id)


async def test_a_restarted_node_has_lost_nothing_ratified(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, *FIVE) as cluster:
        owner, r2, _r3, user, _viewer = cluster.peers
        group_id = await five_node_group(cluster)
        sent = [await user.chat.send(group_id, "before restart"), await r2.chat.send(group_id, "x")]
        await wait_everywhere([owner], group_id, *sent)
        before = await texts(owner, group_id)
        state_before = owner.chat.group_state(group_id).current_epoch
        await owner.stop()
        await owner.start()
        assert await texts(owner, group_id) == before
        assert owner.chat.group_state(group_id).current_epoch == state_before
        after = await owner.chat.send(group_id, "after restart")
        await wait_everywhere(cluster.peers, group_id, after)


@pytest.mark.parametrize(("history", "readable"), [("all", True), ("since_join", False)])
async def test_a_late_joiner_sees_exactly_the_history_the_group_allows(
    tmp_path: Path, history: History, readable: bool
) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier2", "late") as cluster:
        owner, r2, late = cluster.peers
        group_id = await build_group(owner, [(r2, Role.RATIFIER)], history=history)
        early = await owner.chat.send(group_id, "before you came")
        await wait_everywhere([r2], group_id, early)
        await owner.chat.invite(group_id, late.peer_id, Role.USER)
        await late.chat.join(group_id, owner.peer_id)
        later = await r2.chat.send(group_id, "after you came")
        await wait_everywhere([late], group_id, early, later)
        seen = dict(await texts(late, group_id))
        assert seen[later] == "after you came"
        assert seen[early] == ("before you came" if readable else None)


async def test_a_connected_member_that_missed_a_delivery_catches_up_by_anti_entropy(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, *FIVE) as cluster:
        owner, _r2, _r3, user, viewer = cluster.peers
        group_id = await five_node_group(cluster)
        # A first message connects the user to everyone (each new connection starts a sync).
        warm_up = await user.chat.send(group_id, "hello")
        await wait_everywhere(cluster.peers, group_id, warm_up)
        # The viewer stops answering smsg for a moment: its delivery is refused, not retried.
        handler = viewer.chat.dispatcher.registered("smsg")
        assert handler is not None
        viewer.chat.dispatcher.unregister("smsg")
        missed = await user.chat.send(group_id, "you were not listening")
        await wait_everywhere([owner], group_id, missed)
        assert missed not in [m.message_hash for m in await viewer.chat.history(group_id)]
        viewer.chat.dispatcher.register("smsg", handler)
        # No new connection is made: the periodic comparison with members brings it.
        await wait_everywhere([viewer], group_id, missed)
        assert (await texts(viewer, group_id))[-1] == (missed, "you were not listening")


async def test_identifier_heads_and_key_table_codes_answer_members_only(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, *FIVE, "outsider") as cluster:
        owner, r2, _r3, user, viewer, outsider = cluster.peers
        group_id = await five_node_group(cluster)
        sent = await user.chat.send(group_id, "hello")
        await wait_everywhere([viewer], group_id, sent)
        async with open_chat(user.chat.host, viewer.peer_id) as client:
            who = await client.query("i", {"group_id": group_id})
            assert (who.ok, who.body["identifier"]) == (True, "viewer")
            heads = await client.query("hds", {"group_id": group_id})
            assert heads.body["heads"] == [sent]
            table = await client.query("pkt", {"group_id": group_id})
            epochs = [p["message"]["epoch"] for p in table.body["rosters"]]
            assert epochs == [0, 1, 2, 3]  # the four invitations, in order
            unknown = await client.query("i", {"group_id": os.urandom(32)})
            assert (unknown.ok, unknown.reason) == (False, "unknown group")
        async with open_chat(outsider.chat.host, r2.peer_id) as client:
            for code in ("i", "pkt", "hds"):
                answer = await client.query(code, {"group_id": group_id})
                assert (answer.ok, answer.reason) == (False, "unknown group")
        del owner


async def test_a_removed_member_gets_no_later_keys_and_can_no_longer_send(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, *FIVE) as cluster:
        owner, r2, _r3, user, _viewer = cluster.peers
        group_id = await five_node_group(cluster)
        before = await r2.chat.send(group_id, "before the removal")
        await wait_everywhere([user], group_id, before)
        await owner.chat.remove(group_id, user.peer_id)
        epoch = owner.chat.group_state(group_id).current_epoch
        roster = owner.chat.group_state(group_id).current_roster
        assert user.peer_id not in {m.peer for m in roster.members}
        removal = owner.chat.group_state(group_id).roster_packet(epoch - 1)
        assert removal is not None
        # An author that has not yet learnt of the removal may still write in the old epoch,
        # which the removed member may read: "what follows" is what follows for its author.
        await wait_everywhere([r2], group_id, removal.message_hash)
        after = await r2.chat.send(group_id, "after the removal")
        await wait_everywhere([owner], group_id, after)
        # The removed member learnt of its removal but holds no key of the new epoch...
        with trio.fail_after(10):
            await user.chat.wait_ratified(group_id, removal.message_hash)
        assert user.chat.group_state(group_id).current_epoch == epoch
        assert epoch not in user.chat.view(group_id).epoch_keys
        assert epoch - 1 in user.chat.view(group_id).epoch_keys
        # ...so it cannot read what follows, even holding the packet, and cannot send.
        packet = await stored(owner, group_id, after)
        for key in user.chat.view(group_id).epoch_keys.values():
            with pytest.raises(crypto.DecryptError):
                crypto.decrypt_packet(packet, epoch_key=key)
        with pytest.raises(NotAllowedError, match="we were removed from the group"):
            await user.chat.send(group_id, "am I still here?")
