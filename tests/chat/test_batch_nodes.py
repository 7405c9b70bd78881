"""Batched ratification on nodes on 127.0.0.1 (specs/chat.md §21): one author's burst goes
to the ratifiers in batches and reaches every member in the order it was sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from chat.cluster import build_group, open_cluster
from p2pchat.chat.core.roster import Role
from p2pchat.chat.services.dispatch import QueryContext
from p2pchat.chat.services.handlers import ChatHandlers

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
