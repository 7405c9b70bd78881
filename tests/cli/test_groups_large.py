"""A group whose roster chain outgrows one frame, through the p2pchat command (issue 13,
specs/chat.md §16): the invite/remove churn that made the next join fail."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from cli.nodes import ok, running_node, wait_until_history_has

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


async def test_a_member_joins_and_sends_after_26_invite_remove_cycles(tmp_path: Path) -> None:
    alice_dir, bob_dir, carol_dir = (tmp_path / name for name in ("alice", "bob", "carol"))
    async with (
        running_node(alice_dir) as alice,
        running_node(bob_dir, "--bootstrap", str(alice.addr)) as bob,
        running_node(carol_dir, "--bootstrap", str(alice.addr)) as carol,
    ):
        group = (await ok(alice_dir, "group", "create", "churn")).stdout.strip()
        for _ in range(26):
            await ok(alice_dir, "group", "invite", group, str(bob.addr), "user")
            await ok(bob_dir, "group", "join", group, str(alice.peer_id))
            await ok(alice_dir, "group", "remove", group, str(bob.peer_id))
        # History "all": every invite wrapped each earlier epoch key for bob, so the chain
        # is over 1 MiB by now; a single-frame pkt answer could not carry it to a newcomer.
        await ok(alice_dir, "group", "invite", group, str(bob.addr), "user")
        await ok(bob_dir, "group", "join", group, str(alice.peer_id))
        await ok(alice_dir, "group", "invite", group, str(carol.addr), "user")
        await ok(carol_dir, "group", "join", group, str(alice.peer_id))
        for name, data_dir in (("bob", bob_dir), ("carol", carol_dir)):
            sent = await ok(data_dir, "send", group, f"{name} after the churn")
            assert sent.stdout.startswith("ratified ")
            await wait_until_history_has(alice_dir, group, f"{name} after the churn")
        roster = (await ok(carol_dir, "group", "roster", group, "--json")).json()
        assert roster["epoch"] == 54


async def test_24_members_invited_one_at_a_time_each_join_and_send(tmp_path: Path) -> None:
    # The case that failed with the whole roster in one frame (the 24th join refused 'pkt':
    # "frame of 1115508 bytes exceeds 1048576"): real nodes, invited one at a time with the
    # default hybrid keys, each joining and sending through the command line.
    owner_dir = tmp_path / "owner"
    async with AsyncExitStack() as stack:
        owner = await stack.enter_async_context(running_node(owner_dir))
        group = (await ok(owner_dir, "group", "create", "twenty-four")).stdout.strip()
        for index in range(1, 24):
            data_dir = tmp_path / f"member{index}"
            member = await stack.enter_async_context(
                running_node(data_dir, "--bootstrap", str(owner.addr))
            )
            await ok(owner_dir, "group", "invite", group, str(member.addr), "user")
            await ok(data_dir, "group", "join", group, str(owner.peer_id))
            sent = await ok(data_dir, "send", group, f"member {index} is here")
            assert sent.stdout.startswith("ratified ")
        roster = (await ok(owner_dir, "group", "roster", group, "--json")).json()
        assert (roster["epoch"], roster["members"]) == (23, 24)
        history = await wait_until_history_has(owner_dir, group, "member 23 is here")
        texts = [line.get("text") for line in history]
        assert all(f"member {index} is here" in texts for index in range(1, 24))
