"""Renaming a group and handing it to another member through the p2pchat command, at nodes on
127.0.0.1 (specs/cli.md "Groups", specs/chat.md §20)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from cli.nodes import STEP_TIMEOUT, cli, form_group, ok, running_node

pytestmark = pytest.mark.timeout(150)


async def wait_group(data_dir: Path, group: str, check: Any) -> dict[str, Any]:
    """Ask ``group list`` until the entry of ``group`` satisfies ``check`` (bounded)."""
    with trio.fail_after(STEP_TIMEOUT):
        for _ in range(200):
            for entry in (await ok(data_dir, "group", "list", "--json")).json():
                if entry["group_id"] == group and check(entry):
                    return dict(entry)
            await trio.sleep(0.1)
    raise AssertionError(f"{data_dir} never saw the change of {group}")


async def test_a_rename_and_a_hand_over_through_the_cli(tmp_path: Path) -> None:
    alice_dir, bob_dir, carol_dir, dave_dir = (
        tmp_path / n for n in ("alice", "bob", "carol", "dave")
    )
    async with running_node(alice_dir) as alice:
        boot = ("--bootstrap", str(alice.addr))
        async with (
            running_node(bob_dir, *boot) as bob,
            running_node(carol_dir, *boot) as carol,
            running_node(dave_dir, *boot) as dave,
        ):
            group = await form_group(alice, "team", (bob, "ratifier"), (carol, "user"))

            # -- rename: only the owner; every member then knows the group by its new name --
            refused = await cli(bob_dir, "group", "rename", group, "bob's")
            assert refused.returncode != 0
            assert "only the group's owner renames it" in refused.stderr
            renamed = await ok(alice_dir, "group", "rename", group, "crew")
            assert renamed.stdout.startswith("renamed to crew (epoch 3)")
            await wait_group(bob_dir, group, lambda g: g["name"] == "crew")
            await wait_group(carol_dir, group, lambda g: g["name"] == "crew")
            await ok(carol_dir, "send", "crew", "found it by its new name")

            # -- hand-over: carol (a user) becomes the owner and a ratifier --------------------
            handed = await ok(alice_dir, "group", "owner", "crew", str(carol.peer_id))
            assert handed.stdout.startswith(f"{carol.peer_id} now owns the group")
            entry = await wait_group(carol_dir, group, lambda g: g["owner"] == str(carol.peer_id))
            assert entry["role"] == "ratifier"
            assert entry["ratifiers"] == 3

            # the old owner can no longer change the roster
            again = await cli(alice_dir, "group", "invite", group, str(dave.addr), "user")
            assert again.returncode != 0
            assert f"its owner is {carol.peer_id}" in again.stderr
            removal = await cli(alice_dir, "group", "remove", group, str(bob.peer_id))
            assert removal.returncode != 0
            assert "only the owner can remove members" in removal.stderr
            assert "Traceback" not in again.stderr + removal.stderr

            # the new owner invites dave, who joins through it and is read by the old owner
            await ok(carol_dir, "group", "invite", group, str(dave.addr), "user")
            joined = await ok(dave_dir, "group", "join", group, str(carol.peer_id))
            assert joined.stdout.startswith(f"joined crew ({group})")
            await ok(dave_dir, "send", group, "hi from dave")
            with trio.fail_after(STEP_TIMEOUT):
                while True:
                    texts = [
                        m.get("text")
                        for m in (await ok(alice_dir, "history", group, "--json")).json()
                    ]
                    if "hi from dave" in texts:
                        break
                    await trio.sleep(0.1)
            assert "found it by its new name" in texts
            shown = (await ok(alice_dir, "history", group)).stdout
            assert "renamed 'crew'" in shown
            assert f"owner now {carol.peer_id}" in shown
