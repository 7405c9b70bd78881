"""A group whose roster chain outgrows one frame, through the p2pchat command (issue 13,
specs/chat.md §16): the invite/remove churn that made the next join fail."""

from __future__ import annotations

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
