"""Hardening on real Hosts on 127.0.0.1 (specs/chat.md §6 "Quotas", "Order and time", §8
"Membership that ends", "Refusals that leak nothing", "Sync budgets"). No timed assertions:
every wait is for an event, under a generous bound."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from chat.cluster import CONFIG, Peer, build_group, certified, crafted, open_cluster, stored
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.roster import Role
from p2pchat.chat.services.chat_client import open_chat
from p2pchat.chat.services.dispatch import QueryContext
from p2pchat.identity import PeerID

pytestmark = pytest.mark.timeout(120)

GROUP_CODES = ("i", "mrat", "smsg", "pkt", "dht", "get", "hds")


def spy(peer: Peer, codes: tuple[str, ...], seen: list[tuple[str, PeerID]]) -> None:
    """Record who asks ``peer`` each of ``codes`` (the handlers still answer)."""
    for code in codes:
        handler = peer.chat.dispatcher.registered(code)
        assert handler is not None

        def recording(code: str, handler: Any) -> Any:
            async def recorded(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
                seen.append((code, ctx.remote_peer))
                result: dict[str, Any] = await handler(ctx, body)
                return result

            return recorded

        peer.chat.dispatcher.unregister(code)
        peer.chat.dispatcher.register(code, recording(code, handler))


async def wait_for(predicate: Any) -> None:
    """Poll ``predicate`` until it holds (what it watches has no event to wait on)."""
    with trio.fail_after(20):
        while not await predicate():  # noqa: ASYNC110
            await trio.sleep(0.05)


def bodies(group_id: bytes, packet: Packet) -> dict[str, dict[str, Any]]:
    return {
        "i": {"group_id": group_id},
        "mrat": {"group_id": group_id, "packet": packet.to_cbor()},
        "smsg": {"group_id": group_id, "packet": packet.to_cbor()},
        "pkt": {"group_id": group_id},
        "dht": {"group_id": group_id, "cursor": 0},
        "get": {"group_id": group_id, "hashes": [packet.message_hash]},
        "hds": {"group_id": group_id},
    }


async def test_a_removed_member_is_refused_later_epochs_and_its_node_syncs_nothing_more(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier2", "user") as cluster:
        owner, r2, user = cluster.peers
        group_id = await build_group(owner, [(r2, Role.RATIFIER), (user, Role.USER)])
        before = await r2.chat.send(group_id, "before the removal")
        with trio.fail_after(15):
            await user.chat.wait_ratified(group_id, before)
        await owner.chat.remove(group_id, user.peer_id)
        state = owner.chat.group_state(group_id)
        removal = state.roster_packets[-1]
        with trio.fail_after(15):
            await r2.chat.wait_ratified(group_id, removal.message_hash)
            await user.chat.wait_ratified(group_id, removal.message_hash)
        seen: list[tuple[str, PeerID]] = []
        spy(owner, ("hds", "dht", "get"), seen)
        spy(r2, ("hds", "dht", "get"), seen)
        after = await r2.chat.send(group_id, "after the removal")
        with trio.fail_after(15):
            await owner.chat.wait_ratified(group_id, after)
        async with open_chat(user.chat.host, owner.peer_id) as client:
            chain = await client.query("pkt", {"group_id": group_id})
            assert chain.ok
            hashes = [Packet.from_cbor(p).message_hash for p in chain.body["rosters"]]
            assert hashes[-1] == removal.message_hash  # up to and including its removal
            queries: list[tuple[str, dict[str, Any]]] = [
                ("dht", {"group_id": group_id, "cursor": 0}),
                ("hds", {"group_id": group_id}),
                ("get", {"group_id": group_id, "hashes": [after, before]}),
                ("i", {"group_id": group_id}),
            ]
            for code, body in queries:
                answer = await client.query(code, body)
                assert (code, answer.ok, answer.reason) == (code, False, "unknown group")
        # Its node asks for nothing more: two comparisons of the others go by without one of its.
        seen.clear()  # (the queries above were the test's own)
        before_count = sum(1 for code, p in seen if code == "hds" and p == r2.peer_id)

        async def two_more_rounds() -> bool:
            count = sum(1 for code, p in seen if code == "hds" and p == r2.peer_id)
            return count >= before_count + 2

        await wait_for(two_more_rounds)
        assert all(p != user.peer_id for _code, p in seen)
        assert after not in [m.message_hash for m in await user.chat.history(group_id)]
        # It keeps what it holds.
        assert before in [m.message_hash for m in await user.chat.history(group_id)]


async def test_a_non_member_gets_one_refusal_whether_or_not_the_node_is_in_the_group(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier2", "outsider") as cluster:
        owner, r2, outsider = cluster.peers
        group_id = await build_group(owner, [(r2, Role.RATIFIER)])
        other_group = os.urandom(32)
        packet = crafted(outsider, owner, group_id, b"let me in")
        async with open_chat(outsider.chat.host, owner.peer_id) as client:
            for code in GROUP_CODES:
                held = await client.query(code, bodies(group_id, packet)[code])
                unknown = await client.query(code, bodies(other_group, packet)[code])
                assert (code, held.ok, held.reason, held.body) == (
                    code,
                    False,
                    "unknown group",
                    {},
                )
                assert (unknown.ok, unknown.reason, unknown.body) == (
                    held.ok,
                    held.reason,
                    held.body,
                )


async def test_a_ratifier_holds_an_authors_pending_messages_to_its_quota(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier2", "user", start=False) as cluster:
        owner, r2, user = cluster.peers
        r2.config = attrs.evolve(CONFIG, pending_max_count=3)
        for peer in cluster.peers:
            await peer.start()
        group_id = await build_group(owner, [(r2, Role.RATIFIER), (user, Role.USER)])
        async with open_chat(user.chat.host, r2.peer_id) as client:

            async def ask(text: bytes) -> tuple[bool, str | None]:
                packet = crafted(user, owner, group_id, text)
                answer = await client.query(
                    "mrat", {"group_id": group_id, "packet": packet.to_cbor()}
                )
                return answer.ok, answer.reason

            for i in range(3):
                assert await ask(b"pending %d" % i) == (True, None)
            assert await ask(b"one too many") == (False, "over quota")
        # The quota is counted from the store: a restart does not reset it.
        await r2.stop()
        await r2.start()
        async with open_chat(user.chat.host, r2.peer_id) as client:
            packet = crafted(user, owner, group_id, b"after the restart")
            answer = await client.query("mrat", {"group_id": group_id, "packet": packet.to_cbor()})
            assert (answer.ok, answer.reason) == (False, "over quota")
        # The quota is the author's: another author is still served.
        sent = await owner.chat.send(group_id, "from another author")
        with trio.fail_after(15):
            await r2.chat.wait_ratified(group_id, sent)


async def test_expiry_deletes_stale_pending_votes_but_never_our_outbox(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier2", "user", start=False) as cluster:
        owner, r2, user = cluster.peers
        r2.config = attrs.evolve(CONFIG, pending_ttl=0.5)
        for peer in cluster.peers:
            await peer.start()
        group_id = await build_group(owner, [(r2, Role.RATIFIER), (user, Role.USER)])
        packet = crafted(user, owner, group_id, b"never certified")
        async with open_chat(user.chat.host, r2.peer_id) as client:
            answer = await client.query("mrat", {"group_id": group_id, "packet": packet.to_cbor()})
            assert answer.ok
        assert await r2.chat.store.get_message(group_id, packet.message_hash) is not None
        await owner.stop()  # no quorum: r2's own message waits in its outbox
        ours = await r2.chat.send(group_id, "mine, waiting", wait=False)

        async def expired() -> bool:
            return await r2.chat.store.get_message(group_id, packet.message_hash) is None

        await wait_for(expired)
        assert await r2.chat.store.get_vote(group_id, packet.message_hash) is None
        row = await r2.chat.store.get_message(group_id, ours)
        assert row is not None
        assert row.certificate is None
        assert ours in [e.message_hash for e in await r2.chat.store.outbox_due(2**62)]
        await owner.start()
        with trio.fail_after(15):
            await r2.chat.wait_ratified(group_id, ours)


async def test_a_member_whose_history_never_ends_is_cut_off_and_the_join_completes(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier2", "late") as cluster:
        owner, r2, late = cluster.peers
        group_id = await build_group(owner, [(r2, Role.RATIFIER)])
        early = await owner.chat.send(group_id, "before you came")
        with trio.fail_after(15):
            await r2.chat.wait_ratified(group_id, early)
        repeated = (await stored(r2, group_id, early)).to_cbor()
        pages: list[int] = []

        async def endless(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
            cursor = body["cursor"]
            pages.append(cursor)
            return {"packets": [repeated], "next": cursor + 1}

        r2.chat.dispatcher.unregister("dht")
        r2.chat.dispatcher.register("dht", endless)
        await owner.chat.invite(group_id, late.peer_id, Role.USER)
        invitation = owner.chat.group_state(group_id).roster_packets[-1].message_hash
        with trio.fail_after(20):
            await r2.chat.wait_ratified(group_id, invitation)  # r2 knows of the new member
            await late.chat.join(group_id, r2.peer_id)
        assert 1 <= len(pages) <= 2  # the second page brought nothing new: the end
        # What it did not get from r2 comes from the owner by anti-entropy.
        later = await owner.chat.send(group_id, "after you came")
        with trio.fail_after(20):
            await late.chat.wait_ratified(group_id, early)
            await late.chat.wait_ratified(group_id, later)


async def test_a_parentless_back_dated_message_is_refused_at_ratification_and_delivery(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier2", "user") as cluster:
        owner, r2, user = cluster.peers
        group_id = await build_group(owner, [(r2, Role.RATIFIER), (user, Role.USER)])
        back_dated = crafted(
            user, owner, group_id, b"first!", parents=(), time_stamp=978_307_200_000
        )
        parentless = crafted(user, owner, group_id, b"first!", parents=())
        async with open_chat(user.chat.host, owner.peer_id) as client:

            async def ask(code: str, packet: Packet) -> tuple[bool, str | None]:
                answer = await client.query(
                    code, {"group_id": group_id, "packet": packet.to_cbor()}
                )
                return answer.ok, answer.reason

            assert await ask("mrat", back_dated) == (False, "bad timestamp")
            assert await ask("mrat", parentless) == (False, "bad parents")
            # Even certified by a quorum, it is not stored.
            assert await ask("smsg", certified(back_dated, owner, r2)) == (False, "bad parents")
        history = [m.message_hash for m in await owner.chat.history(group_id)]
        assert back_dated.message_hash not in history
        assert parentless.message_hash not in history
