"""Batched ratification on nodes on 127.0.0.1 (specs/chat.md §21): one author's burst goes
to the ratifiers in batches and reaches every member in the order it was sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from chat.cluster import build_group, open_cluster
from p2pchat.chat.core.certificate import Vote, verify_vote
from p2pchat.chat.core.roster import Role
from p2pchat.chat.services.clients import QueryRefusedError
from p2pchat.chat.services.dispatch import QueryContext
from p2pchat.chat.services.handlers import ChatHandlers
from p2pchat.chat.services.runtime import now_ms

pytestmark = pytest.mark.timeout(180)

COUNT = 200
#: How long the nodes get to ratify and deliver everything (a bound, not a target).
CONVERGE = 90.0


async def test_two_hundred_quick_messages_of_one_author_are_ratified_in_batches_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    served = ChatHandlers.on_mratb

    async def counting(self: ChatHandlers, ctx: QueryContext, body: dict[str, Any]) -> Any:
        sizes.append(len(body.get("packets") or ()))
        return await served(self, ctx, body)

    monkeypatch.setattr(ChatHandlers, "on_mratb", counting)
    async with open_cluster(tmp_path, "alice", "bob", "carol") as cluster:
        alice, bob, carol = cluster.peers
        group_id = await build_group(alice, [(bob, Role.RATIFIER), (carol, Role.USER)])
        assert alice.chat.group_state(group_id).current_roster.quorum == 2
        lines = [f"line {n}" for n in range(COUNT)]
        for line in lines:
            await carol.chat.send(group_id, line, wait=False)
        texts: list[list[str | None]] = []
        for _ in range(int(CONVERGE * 10)):
            texts = [
                [m.text for m in await p.chat.history(group_id) if m.message_type == "text"]
                for p in cluster.peers
            ]
            if all(len(t) == COUNT for t in texts) and not carol.chat.outbox(group_id):
                break
            await trio.sleep(0.1)
        assert [len(t) for t in texts] == [COUNT] * 3
        for held in texts:
            assert held == lines  # the order it was sent in, everywhere
        assert sizes, "no batch was asked for"
        assert max(sizes) > 1
        assert len(sizes) < COUNT  # far fewer requests than one per message and ratifier
        print(f"mratb sizes: {sizes}")


async def test_mratb_asked_again_gives_the_same_answer(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "alice", "bob", "carol") as cluster:
        alice, bob, carol = cluster.peers
        group_id = await build_group(alice, [(bob, Role.RATIFIER), (carol, Role.USER)])
        packets = [
            carol.chat.engine.author(
                group_id, text, message_type="text", mime="text/plain", ref_hash=None, now=now_ms()
            )[0]
            for text in (b"one", b"two", b"three")
        ]
        raw: list[object] = [p.to_cbor() for p in packets]
        garbled = {"group_id": group_id, "packets": [raw[0], {"not": "a packet"}, *raw[1:]]}
        with pytest.raises(QueryRefusedError, match="malformed"):
            await carol.chat._query(bob.peer_id, "mratb", garbled)
        body = {"group_id": group_id, "packets": raw}
        first = await carol.chat._query(bob.peer_id, "mratb", body)
        again = await carol.chat._query(bob.peer_id, "mratb", body)
        assert first == again
        votes = [Vote.from_cbor(r["vote"]) for r in first["results"]]
        assert len({v.sig for v in votes}) == 1  # one signature for the three
        epoch = packets[0].message.epoch
        for vote, packet in zip(votes, packets, strict=True):
            assert verify_vote(vote, group_id, epoch, packet.message_hash)
        # Asked by someone else for carol's messages: not allowed (only the author asks).
        with pytest.raises(QueryRefusedError, match="not allowed"):
            await alice.chat._query(bob.peer_id, "mratb", body)
