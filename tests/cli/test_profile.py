"""Names and avatars through the p2pchat command at three nodes on 127.0.0.1 (specs/cli.md
"name", "profile"; specs/chat.md §18 "Avatars")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from cli.nodes import STEP_TIMEOUT, cli, form_group, ok, running_node, wait_roster_is

pytestmark = pytest.mark.timeout(180)


async def wait_profile(data_dir: Path, group: str, peer: str, check: Any) -> dict[str, Any]:
    """Ask for a member's profile until ``check(profile)`` holds (bounded in count and time)."""
    with trio.fail_after(STEP_TIMEOUT):
        for _ in range(200):
            profile = (await ok(data_dir, "profile", group, peer, "--json")).json()
            if check(profile):
                return dict(profile)
            await trio.sleep(0.1)
    raise AssertionError(f"the profile never got there at {data_dir}")


async def test_a_name_with_an_avatar_is_shown_and_saved_at_other_nodes(tmp_path: Path) -> None:
    alice_dir, bob_dir, carol_dir = (tmp_path / n for n in ("alice", "bob", "carol"))
    face = tmp_path / "face.png"
    face.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300_000))  # two chunks
    async with running_node(alice_dir) as alice:
        boot = ("--bootstrap", str(alice.addr))
        async with running_node(bob_dir, *boot) as bob, running_node(carol_dir, *boot) as carol:
            group = await form_group(alice, "team", (bob, "ratifier"), (carol, "user"))

            # mistakes are refused before anything is sent, in one line
            notes = tmp_path / "notes.txt"
            notes.write_text("not an image")
            bad = await cli(carol_dir, "name", group, "Carol", "--avatar", str(notes))
            assert (bad.returncode, bad.stderr.count("\n")) == (1, 1)
            assert "an avatar is an image (gif, jpeg, png, webp)" in bad.stderr
            huge = tmp_path / "huge.png"
            huge.write_bytes(bytes(1024 * 1024 + 1))
            bad = await cli(carol_dir, "name", group, "Carol", "--avatar", str(huge))
            assert "an avatar is at most 1024 KiB" in bad.stderr
            bad = await cli(carol_dir, "name", group, "Carol", "--avatar", str(tmp_path / "no.png"))
            assert "cannot read" in bad.stderr

            sent = await ok(carol_dir, "name", group, "Carol", "--avatar", str(face))
            assert sent.stdout.startswith("ratified ")
            mine = (await ok(carol_dir, "profile", group, "--json")).json()
            assert (mine["name"], mine["avatar"]["mime"]) == ("Carol", "image/png")
            assert mine["avatar"]["size"] == face.stat().st_size
            carol_id = str(carol.peer_id)
            for data_dir in (alice_dir, bob_dir):
                seen = await wait_profile(
                    data_dir, group, carol_id, lambda p: p["avatar"] is not None
                )
                assert seen["name"] == "Carol"
                assert seen["avatar"]["message_hash"] == mine["avatar"]["message_hash"]
            shown = (await ok(alice_dir, "profile", group, carol_id)).stdout
            assert "name:   Carol" in shown
            assert "avatar: image/png" in shown
            saved = await ok(bob_dir, "profile", group, carol_id, "-o", str(tmp_path / "c.png"))
            assert "saved" in saved.stdout
            assert (tmp_path / "c.png").read_bytes() == face.read_bytes()
            again = await cli(bob_dir, "profile", group, carol_id, "-o", str(tmp_path / "c.png"))
            assert (again.returncode, "exists" in again.stderr) == (1, True)

            # a new name keeps the avatar; someone without one says so
            await ok(carol_dir, "name", group, "Caroline")
            renamed = await wait_profile(
                alice_dir, group, carol_id, lambda p: p["name"] == "Caroline"
            )
            assert renamed["avatar"]["message_hash"] == mine["avatar"]["message_hash"]
            nobody = (await ok(alice_dir, "profile", group)).stdout
            assert "avatar: (none)" in nobody
            assert "(none: shown by peer id)" in nobody
            bad = await cli(alice_dir, "profile", group, "-o", str(tmp_path / "a.png"))
            assert (bad.returncode, "has no avatar" in bad.stderr) == (1, True)


async def test_a_viewer_names_itself_and_leaves_but_sends_nothing_else(tmp_path: Path) -> None:
    alice_dir, vera_dir = tmp_path / "alice", tmp_path / "vera"
    async with running_node(alice_dir) as alice, running_node(vera_dir) as vera:
        group = (await ok(alice_dir, "group", "create", "broadcast")).stdout.strip()
        await ok(alice_dir, "group", "invite", group, str(vera.addr), "viewer")
        await ok(vera_dir, "group", "join", group, str(alice.addr))
        refused = await cli(vera_dir, "send", group, "hello")
        assert (refused.returncode, "does not allow sending" in refused.stderr) == (1, True)
        named = await ok(vera_dir, "name", group, "Vera")
        assert named.stdout.startswith("ratified ")
        face = tmp_path / "vera.png"
        face.write_bytes(b"\x89PNG\r\n\x1a\n")
        refused = await cli(vera_dir, "name", group, "Vera", "--avatar", str(face))
        assert (refused.returncode, "does not allow sending" in refused.stderr) == (1, True)
        seen = await wait_profile(alice_dir, group, str(vera.peer_id), lambda p: p["name"])
        assert seen["name"] == "Vera"
        left = await ok(vera_dir, "group", "leave", group)
        assert left.stdout.startswith("ratified ")
        await wait_roster_is(
            alice_dir, group, [str(alice.peer_id)], "the viewer is still on the roster"
        )
