"""Replies, edits, deletes and reactions through the p2pchat command at three nodes on
127.0.0.1 (specs/cli.md "Replies, edits, deletes, reactions"), and the chat's commands."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from cli.nodes import (
    COMMAND,
    STEP_TIMEOUT,
    cli,
    form_group,
    ok,
    read_until,
    running_node,
    wait_roster_is,
)
from p2pchat.cli.chat_commands import HELP

pytestmark = pytest.mark.timeout(120)


async def wait_folded(data_dir: Path, group: str, check: Any) -> list[dict[str, Any]]:
    """Ask for the folded history until ``check(messages)`` holds (bounded in count and time)."""
    with trio.fail_after(STEP_TIMEOUT):
        for _ in range(200):
            messages = (await ok(data_dir, "history", group, "--json")).json()
            if check(messages):
                return list(messages)
            await trio.sleep(0.1)
    raise AssertionError(f"the history of {data_dir} never got there")


def by_text(messages: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    (found,) = [m for m in messages if (m.get("text") or "").startswith(prefix)]
    return found


async def test_reply_edit_delete_react_through_the_cli(tmp_path: Path) -> None:
    alice_dir, bob_dir, carol_dir = (tmp_path / n for n in ("alice", "bob", "carol"))
    async with running_node(alice_dir) as alice:
        boot = ("--bootstrap", str(alice.addr))
        async with running_node(bob_dir, *boot) as bob, running_node(carol_dir, *boot) as carol:
            group = await form_group(alice, "team", (bob, "ratifier"), (carol, "user"))

            hello = (await ok(carol_dir, "send", group, "helo team", "--json")).json()
            spam = (await ok(bob_dir, "send", group, "cheap pills", "--json")).json()
            h_hello, h_spam = hello["message_hash"], spam["message_hash"]
            await wait_folded(
                bob_dir, group, lambda ms: any(m.get("text") == "helo team" for m in ms)
            )

            await ok(bob_dir, "reply", group, h_hello[:8], "welcome carol")
            await ok(carol_dir, "edit", group, h_hello[:8], "hello team")
            await ok(bob_dir, "react", group, h_hello[:8], "+1")
            await ok(alice_dir, "react", group, h_hello[:8], "+1")

            # someone else's message: refused, and it says why
            refused = await cli(bob_dir, "edit", group, h_hello[:8], "bob was here")
            assert refused.returncode == 1
            assert "not allowed" in refused.stderr
            refused = await cli(carol_dir, "delete", group, h_spam[:8])
            assert (refused.returncode, "not allowed" in refused.stderr) == (1, True)
            # the owner's moderation
            await ok(alice_dir, "delete", group, h_spam[:8])

            def settled(ms: list[dict[str, Any]]) -> bool:
                return any(m.get("deleted_by") for m in ms) and any(
                    m.get("reactions", {}).get("+1") and len(m["reactions"]["+1"]) == 2 for m in ms
                )

            for data_dir in (alice_dir, bob_dir, carol_dir):
                messages = await wait_folded(data_dir, group, settled)
                first = by_text(messages, "hello team")
                assert first["edited"] is True
                assert sorted(first["reactions"]["+1"]) == sorted(
                    [str(alice.peer_id), str(bob.peer_id)]
                )
                deleted = [m for m in messages if m["message_hash"] == h_spam]
                assert deleted[0]["deleted_by"] == str(alice.peer_id)
                assert "text" not in deleted[0]
                assert by_text(messages, "welcome carol")["ref_hash"] == h_hello

            shown = (await ok(carol_dir, "history", group, "--versions")).stdout
            assert f"{h_hello[:8]} you: hello team (edited)  [+1 2]" in shown
            assert "    version 1: helo team" in shown
            assert f"(reply to {h_hello[:8]}) welcome carol" in shown
            assert f"{h_spam[:8]} " in shown
            assert "[message deleted by " in shown
            assert "cheap pills" not in shown
            raw = (await ok(carol_dir, "history", group, "--raw", "--json")).json()
            assert {m["type"] for m in raw} >= {"edit", "delete", "reaction"}


async def test_chat_commands_help_and_no_echo_of_our_lines(tmp_path: Path) -> None:
    alice_dir = tmp_path / "alice"
    async with running_node(alice_dir) as alice:
        group = (await ok(alice_dir, "group", "create", "solo")).stdout.strip()
        sent = (await ok(alice_dir, "send", group, "first words", "--json")).json()
        lines = (
            "/help\n"
            "plain line\n"
            f"/react {sent['message_hash'][:8]} wow\n"
            "/nonsense\n"
            "//slash at the start\n"
            f"/file {tmp_path / 'note.txt'}\n"
            f"/file {tmp_path / 'missing.txt'}\n"
        )
        (tmp_path / "note.txt").write_bytes(b"a file's bytes")
        chat = await trio.run_process(
            [*COMMAND, "--data-dir", str(alice_dir), "chat", "solo", "--wait", "10"],
            stdin=lines.encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        out, err = chat.stdout.decode(), chat.stderr.decode()
        assert chat.returncode == 0, err
        assert HELP in err  # /help is a command, not a message
        assert "unknown command /nonsense" in err
        # each line typed: once pending, once ratified (piped: no terminal echo to replace)
        assert out.count("plain line") == 2
        assert out.count("/slash at the start") == 2
        assert out.count(f"(reacted wow to {sent['message_hash'][:8]})") == 2
        history = (await ok(alice_dir, "history", group, "--json")).json()
        texts = [m.get("text") for m in history if m["type"] != "roster"]
        assert texts == ["first words", "plain line", "/slash at the start", None]
        assert history[-1]["type"] == "file"
        assert history[-1]["size"] == len(b"a file's bytes")
        assert "p2pchat: not sent: " in err  # the missing file: refused, the session goes on
        assert by_text(history, "first words")["reactions"] == {"wow": [str(alice.peer_id)]}
        assert "you: /help" not in out
        assert (await ok(alice_dir, "history", group)).stdout.count("[wow 1]") == 1


async def test_unread_counts_since_and_search(tmp_path: Path) -> None:
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    async with running_node(alice_dir) as alice, running_node(bob_dir) as bob:
        group = (await ok(alice_dir, "group", "create", "pair")).stdout.strip()
        await ok(alice_dir, "group", "invite", group, str(bob.addr), "user")
        await ok(bob_dir, "group", "join", group, str(alice.addr))
        await ok(alice_dir, "history", group)  # read: nothing of others yet
        for text in ("the blue whale", "a red fox", "blue skies"):
            await ok(bob_dir, "send", group, text)
        await ok(bob_dir, "send", group, "edit me")

        def unread() -> Any:
            return ok(alice_dir, "group", "list", "--json")

        (listed,) = (await unread()).json()
        assert listed["unread"] == 4
        assert "4 unread" in (await ok(alice_dir, "group", "list")).stdout
        peek = await ok(alice_dir, "history", group, "--since", "1d", "--json")
        assert [m.get("text") for m in peek.json()][-4:] == [
            "the blue whale",
            "a red fox",
            "blue skies",
            "edit me",
        ]
        (listed,) = (await unread()).json()
        assert listed["unread"] == 0  # history read them
        assert (
            await ok(alice_dir, "history", group, "--since", "2999-01-01", "--json")
        ).json() == []
        bad = await cli(alice_dir, "history", group, "--since", "yesterday-ish")
        assert bad.returncode == 2
        assert "not a time" in bad.stderr

        hits = (await ok(alice_dir, "search", "blue", "--json")).json()
        assert sorted(h["snippet"] for h in hits) == ["[blue] skies", "the [blue] whale"]
        edit_me = (await ok(alice_dir, "search", "edit", "--json")).json()[0]["message_hash"]
        await ok(bob_dir, "edit", group, edit_me[:8], "now green")
        await wait_folded(alice_dir, group, lambda ms: any(m.get("edited") for m in ms))
        assert (await ok(alice_dir, "search", "edit", "--json")).json() == []
        (hit,) = (await ok(alice_dir, "search", "green", "--group", "pair", "--json")).json()
        assert hit["message_hash"] == edit_me
        assert "no message matches" in (await ok(alice_dir, "search", "purple")).stdout
        assert (alice_dir / "search.sqlite").stat().st_mode & 0o077 == 0


async def test_history_follow_prints_new_messages_until_ctrl_c(tmp_path: Path) -> None:
    alice_dir = tmp_path / "alice"
    async with running_node(alice_dir):
        group = (await ok(alice_dir, "group", "create", "log")).stdout.strip()
        await ok(alice_dir, "send", group, "before")
        follow = await trio.lowlevel.open_process(
            [*COMMAND, "--data-dir", str(alice_dir), "history", group, "--follow"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert follow.stdout is not None
        try:
            seen = bytearray()
            await read_until(follow.stdout, "you: before", seen)
            await ok(alice_dir, "send", group, "after")
            line = await read_until(follow.stdout, "you: after", seen)
            assert line.startswith("[")
            follow.send_signal(signal.SIGINT)
            with trio.fail_after(STEP_TIMEOUT):
                assert await follow.wait() == 0
            assert seen.decode().count("you: after") == 1
        finally:
            with trio.CancelScope(shield=True):
                if follow.returncode is None:
                    follow.kill()
                await follow.wait()


async def test_names_are_shown_and_a_rename_shows_the_short_id(tmp_path: Path) -> None:
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    async with running_node(alice_dir) as alice, running_node(bob_dir) as bob:
        group = (await ok(alice_dir, "group", "create", "pair")).stdout.strip()
        await ok(alice_dir, "group", "invite", group, str(bob.addr), "user")
        await ok(bob_dir, "group", "join", group, str(alice.addr))
        await ok(bob_dir, "name", group, "Bob")
        await ok(bob_dir, "send", group, "hi from bob")
        bad = await cli(bob_dir, "name", group, "x" * 65)
        assert (bad.returncode, "a name is 1 to 64 bytes" in bad.stderr) == (1, True)

        def has(text: str) -> Any:
            return lambda ms: any(m.get("text") == text for m in ms)

        await wait_folded(alice_dir, group, has("hi from bob"))
        shown = (await ok(alice_dir, "history", group)).stdout
        assert "Bob: hi from bob" in shown
        assert "Bob: (is now called Bob)" in shown
        await ok(bob_dir, "name", group, "Robert")
        await wait_folded(alice_dir, group, has("Robert"))
        lines = (await ok(alice_dir, "history", group)).stdout.splitlines()
        short = str(bob.peer_id)[8:20]
        assert lines[-2].endswith(f"Robert ({short}): hi from bob")
        assert lines[-1].endswith(f"Robert ({short}): (is now called Robert)")


async def test_the_owner_changes_a_role_through_the_cli(tmp_path: Path) -> None:
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    async with running_node(alice_dir) as alice, running_node(bob_dir) as bob:
        group = (await ok(alice_dir, "group", "create", "pair")).stdout.strip()
        await ok(alice_dir, "group", "invite", group, str(bob.addr), "user")
        await ok(bob_dir, "group", "join", group, str(alice.addr))
        refused = await cli(bob_dir, "group", "role", group, str(alice.peer_id), "viewer")
        assert refused.returncode == 1
        assert "only the group's owner changes roles" in refused.stderr
        changed = await ok(alice_dir, "group", "role", group, str(bob.peer_id), "viewer")
        assert changed.stdout.startswith(f"{bob.peer_id} is now a viewer (epoch ")
        roster = (await ok(alice_dir, "group", "roster", group, "--json")).json()
        roles = {m["peer_id"]: m["role"] for m in roster["member_list"]}
        assert roles[str(bob.peer_id)] == "viewer"
        with trio.fail_after(STEP_TIMEOUT):
            for _ in range(200):
                (listed,) = (await ok(bob_dir, "group", "list", "--json")).json()
                if listed["role"] == "viewer":
                    break
                await trio.sleep(0.1)
        sent = await cli(bob_dir, "send", group, "still here?")
        assert sent.returncode == 1
        assert "does not allow sending" in sent.stderr


async def test_a_member_leaves_through_the_cli(tmp_path: Path) -> None:
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    async with running_node(alice_dir) as alice, running_node(bob_dir) as bob:
        group = (await ok(alice_dir, "group", "create", "pair")).stdout.strip()
        await ok(alice_dir, "group", "invite", group, str(bob.addr), "user")
        await ok(bob_dir, "group", "join", group, str(alice.addr))
        owner_leaving = await cli(alice_dir, "group", "leave", group)
        assert owner_leaving.returncode == 1
        assert "not allowed" in owner_leaving.stderr
        left = await ok(bob_dir, "group", "leave", group)
        assert left.stdout.startswith("ratified ")
        await wait_roster_is(alice_dir, group, [str(alice.peer_id)], "bob is still on the roster")
        shown = (await ok(alice_dir, "history", group)).stdout
        assert "(asked to leave the group)" in shown
