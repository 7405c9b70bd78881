"""Groups through the p2pchat command, as a user drives them: two nodes on 127.0.0.1 that find
each other through a bootstrap entry, a group, messages, the interactive chat, a restart."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import trio

from cli.nodes import (
    COMMAND,
    STEP_TIMEOUT,
    cli,
    ok,
    read_until,
    running_node,
    wait_until_history_has,
)
from p2pchat.identity import KeyPair

pytestmark = pytest.mark.timeout(90)

SECRET = "the-plaintext-that-must-never-reach-a-log-7f3a"


async def test_two_nodes_meet_through_bootstrap_chat_in_a_group_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    logging_args = ("--log-level", "debug", "--log-format", "json")
    async with running_node(alice_dir, *logging_args) as alice:
        # -- bob finds alice through a bootstrap entry (mDNS is off) --------------------------
        async with running_node(bob_dir, "--bootstrap", str(alice.addr), *logging_args) as bob:
            await bob.wait_log(f"connected to bootstrap peer {alice.peer_id}")
            peers = (await ok(alice_dir, "peers", "--json")).json()
            assert str(bob.peer_id) in [p["peer_id"] for p in peers["connected"]]

            # -- a group: create, invite, join ------------------------------------------------
            created = (await ok(alice_dir, "group", "create", "friends", "--json")).json()
            group = created["group_id"]
            assert len(group) == 64
            invited = await ok(alice_dir, "group", "invite", "friends", str(bob.peer_id), "user")
            assert f"p2pchat group join {group} /ip4/127.0.0.1/" in invited.stdout
            joined = await ok(bob_dir, "group", "join", group, str(alice.addr))
            assert joined.stdout.startswith(f"joined friends ({group})")
            roster = (await ok(bob_dir, "group", "roster", group[:8], "--json")).json()
            assert {(m["peer_id"], m["role"]) for m in roster["member_list"]} == {
                (str(alice.peer_id), "ratifier"),
                (str(bob.peer_id), "user"),
            }

            # -- send and read ----------------------------------------------------------------
            sent = await ok(alice_dir, "send", group, "hello", "bob")
            assert sent.stdout.startswith("ratified ")
            await ok(bob_dir, "send", "friends", "--markdown", "**hi** alice")
            await ok(bob_dir, "send", "friends", "-", stdin=SECRET.encode())
            texts = [
                m.get("text") for m in (await ok(alice_dir, "history", group, "--json")).json()
            ]
            assert texts[-3:] == ["hello bob", "**hi** alice", SECRET]
            shown = (await ok(bob_dir, "history", "friends")).stdout.splitlines()
            assert shown[-3].endswith(": hello bob")
            assert shown[-2].endswith("you: (markdown) **hi** alice")

            # -- a file: sent as an image by its extension, saved back byte for byte --------
            picture = tmp_path / "cat.png"
            await trio.Path(picture).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
            sent = await ok(alice_dir, "send", group, "--file", str(picture), "--json")
            digest = sent.json()["message_hash"]
            line = (await ok(bob_dir, "history", group)).stdout.splitlines()[-1]
            assert "[image cat.png (image/png, 264 B); save it with: p2pchat get" in line
            copy = tmp_path / "copy.png"
            await ok(bob_dir, "get", group, digest[:10], "-o", str(copy))
            assert await trio.Path(copy).read_bytes() == await trio.Path(picture).read_bytes()
            # saved under the sender's name by default; never over an existing file
            downloads = tmp_path / "downloads"
            await trio.Path(downloads).mkdir()
            got = await ok(bob_dir, "get", group, digest[:10], cwd=downloads)
            assert got.stdout == "saved 264 B (image/png) to cat.png\n"
            assert await trio.Path(
                downloads / "cat.png"
            ).read_bytes() == b"\x89PNG\r\n\x1a\n" + bytes(range(256))
            again = await cli(bob_dir, "get", group, digest[:10], cwd=downloads)
            assert again.returncode == 1
            assert "cat.png exists" in again.stderr
            # a file of several chunks, larger than any message, streams both ways
            big = tmp_path / "big.bin"
            content = os.urandom(3 * 1024 * 1024 + 17)
            await trio.Path(big).write_bytes(content)
            digest = (await ok(bob_dir, "send", group, "--file", str(big), "--json")).json()[
                "message_hash"
            ]
            await ok(alice_dir, "get", group, digest[:10], "-o", str(tmp_path / "big.copy"))
            assert await trio.Path(tmp_path / "big.copy").read_bytes() == content

            # -- the interactive chat: others' messages, ours pending then ratified ----------
            chat = await trio.lowlevel.open_process(
                [*COMMAND, "--data-dir", str(bob_dir), "chat", "friends"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert chat.stdin is not None
            assert chat.stdout is not None
            try:
                seen = bytearray()
                await read_until(chat.stdout, "type a line", seen)
                await ok(alice_dir, "send", group, "are you there?")
                line = await read_until(chat.stdout, "are you there?", seen)
                assert "(ratified)" in line
                assert short(alice.peer_id) in line
                await chat.stdin.send_all(b"yes, in the chat\n")
                pending = await read_until(chat.stdout, "yes, in the chat  (pending)", seen)
                ratified = await read_until(chat.stdout, "yes, in the chat  (ratified)", seen)
                assert pending.startswith("[")
                assert "you: " in ratified
                await chat.stdin.aclose()  # Ctrl-D
                with trio.fail_after(STEP_TIMEOUT):
                    assert await chat.wait() == 0
            finally:
                with trio.CancelScope(shield=True):
                    if chat.returncode is None:
                        chat.kill()
                    await chat.wait()

            assert await bob.stop() == 0

        # -- while bob is away ----------------------------------------------------------------
        await ok(alice_dir, "send", group, "while you were away")

        # -- bob restarts on the same data dir, with no bootstrap entry and no mDNS: ----------
        # -- the same identity, groups and history, and the known peers bring alice back ------
        async with running_node(bob_dir, *logging_args) as bob_again:
            assert bob_again.peer_id == bob.peer_id
            assert (await ok(bob_dir, "id")).stdout.strip() == str(bob.peer_id)
            groups = (await ok(bob_dir, "group", "list", "--json")).json()
            assert [g["group_id"] for g in groups] == [group]
            messages = await wait_until_history_has(bob_dir, group, "while you were away")
            assert [m.get("text") for m in messages if m["type"] != "roster"] == [
                "hello bob",
                "**hi** alice",
                SECRET,
                None,  # the picture
                None,  # the large file
                "are you there?",
                "yes, in the chat",
                "while you were away",
            ]
            assert await bob_again.stop() == 0
        assert await alice.stop() == 0

    # -- logging: JSON lines from every layer, and no plaintext at debug level ----------------
    for node in (alice, bob, bob_again):
        records = [json.loads(line) for line in node.log if line]
        assert records, "a debug node logs something"
        assert {"ts", "level", "logger", "msg"} <= set(records[0])
        assert all(SECRET not in line for line in node.log)
        assert not any("Traceback" in line for line in node.log)
    loggers = {json.loads(line)["logger"] for line in alice.log if line}
    assert {"p2pchat.net.host", "p2pchat.app.control"} <= loggers


def short(peer: object) -> str:
    """An author as chat lines show it (specs/cli.md "Display"): 24 characters and ``..``."""
    return f"{str(peer)[:24]}.."


async def test_a_second_node_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path / "node") as node:
        second = await cli(tmp_path / "node", "node", "--listen", "/ip4/127.0.0.1/tcp/0")
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1
        assert "is in use by another p2pchat node" in second.stderr
        assert f"(pid {node.process.pid})" in second.stderr
        # the running node is unharmed
        status = (await ok(tmp_path / "node", "status", "--json")).json()
        # and refuses what it cannot do, in one line
        stranger = str(KeyPair.generate().peer_id)
        await ok(tmp_path / "node", "group", "create", "solo")
        refused = await cli(tmp_path / "node", "group", "invite", "solo", stranger)
        assert refused.returncode == 1
        assert refused.stderr == (
            f"p2pchat: error: this node knows no address for {stranger}: give its multiaddr "
            f"(/ip4/<address>/tcp/<port>/p2p/{stranger}), or connect to it first\n"
        )
        refused = await cli(tmp_path / "node", "send", "nosuchgroup", "hi")
        assert refused.stderr == (
            "p2pchat: error: no group 'nosuchgroup' on this node (see: p2pchat group list)\n"
        )
        assert status["peer_id"] == str(node.peer_id)
        assert status["pid"] == node.process.pid
        assert await node.stop() == 0


async def test_a_message_without_a_quorum_stays_pending_then_goes_through(tmp_path: Path) -> None:
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    async with running_node(alice_dir) as alice:
        async with running_node(bob_dir, "--bootstrap", str(alice.addr)) as bob:
            group = (await ok(alice_dir, "group", "create", "pair")).stdout.strip()
            await ok(alice_dir, "group", "invite", group, str(bob.addr), "ratifier")
            await ok(bob_dir, "group", "join", group, str(alice.peer_id))
            assert await bob.stop() == 0
        # two ratifiers, quorum 2: alone, alice cannot ratify
        result = await ok(alice_dir, "send", group, "--no-wait", "queued for later", "--json")
        assert result.json()["status"] == "pending"
        history = (await ok(alice_dir, "history", group, "--json")).json()
        # ours, still pending, comes after the ratified messages, marked so
        assert history[-1]["text"] == "queued for later"
        assert history[-1]["ratified"] is False
        assert all(m["ratified"] for m in history[:-1])
        async with running_node(bob_dir) as bob_again:
            await wait_until_history_has(alice_dir, group, "queued for later")
            await wait_until_history_has(bob_dir, group, "queued for later")
            # the owner removes bob: a roster change that bob, a ratifier, votes for
            await ok(alice_dir, "group", "remove", group, str(bob.peer_id))
            roster = (await ok(alice_dir, "group", "roster", group, "--json")).json()
            assert [m["peer_id"] for m in roster["member_list"]] == [str(alice.peer_id)]
            assert roster["epoch"] == 2
            assert (await ok(bob_dir, "stop")).stdout.startswith("stopping the node on")
            with trio.fail_after(20):
                assert await bob_again.process.wait() == 0


async def test_the_outbox_lists_a_waiting_message_and_cancel_withdraws_it(tmp_path: Path) -> None:
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    alice_dir.mkdir(mode=0o700)
    (alice_dir / "config.toml").write_text("[chat]\nsend_timeout = 1.0\n")
    async with running_node(alice_dir) as alice:
        async with running_node(bob_dir, "--bootstrap", str(alice.addr)) as bob:
            group = (await ok(alice_dir, "group", "create", "pair")).stdout.strip()
            await ok(alice_dir, "group", "invite", group, str(bob.addr), "ratifier")
            await ok(bob_dir, "group", "join", group, str(alice.peer_id))
            assert await bob.stop() == 0
        assert (await ok(alice_dir, "outbox")).stdout == "the outbox is empty\n"
        # two ratifiers, quorum 2, bob down: the message waits; send says so with status 3
        sent = await cli(alice_dir, "send", group, "waiting for bob", "--json")
        assert sent.returncode == 3, sent.stderr
        assert sent.json()["status"] == "pending"
        digest = sent.json()["message_hash"]

        (item,) = (await ok(alice_dir, "outbox", group, "--json")).json()
        assert item["message_hash"] == item["origin"] == digest
        assert item["group_id"].startswith(group)
        assert item["name"] == "pair"
        assert item["failures"] + item["in_flight"] >= 1
        assert item["age_ms"] >= 0
        if item["in_flight"]:
            assert str(bob.peer_id) in item["waiting"] + [r["peer_id"] for r in item["refused"]]
            assert str(alice.peer_id) in item["voted"]
        else:
            assert item["next_at"] is not None
        listing = (await ok(alice_dir, "outbox")).stdout
        assert listing.startswith(f"pair {digest[:12]}  age ")
        assert "failed attempts" in listing

        history = (await ok(alice_dir, "history", group)).stdout.splitlines()
        assert history[-1].endswith("you: waiting for bob  (pending)")
        assert all("(pending)" not in line for line in history[:-1])

        # a ratified message cannot be withdrawn (the roster change that added bob)
        ratified = (await ok(alice_dir, "history", group, "--json")).json()[0]["message_hash"]
        late = await cli(alice_dir, "outbox", "cancel", ratified[:16])
        assert (late.returncode, late.stderr) == (
            1,
            "p2pchat: error: already ratified: too late to cancel\n",
        )

        cancelled = await ok(alice_dir, "outbox", "cancel", digest[:12])
        assert cancelled.stdout.startswith(f"cancelled {digest}")
        assert (await ok(alice_dir, "outbox", "--json")).json() == []
        history = (await ok(alice_dir, "history", group, "--json")).json()
        assert digest not in [m["message_hash"] for m in history]
        again = await cli(alice_dir, "outbox", "cancel", digest)
        assert (again.returncode, again.stderr) == (
            1,
            "p2pchat: error: no such message in the outbox\n",
        )


async def test_a_viewers_chat_session_stays_open_and_says_why_a_line_was_not_sent(
    tmp_path: Path,
) -> None:
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    async with running_node(alice_dir) as alice, running_node(bob_dir) as bob:
        created = (await ok(alice_dir, "group", "create", "news", "--json")).json()
        group = created["group_id"]
        await ok(alice_dir, "group", "invite", "news", str(bob.addr), "viewer")
        await ok(bob_dir, "group", "join", group, str(alice.addr))
        chat = await cli(bob_dir, "chat", "news", stdin=b"may I speak?\nand now?\n")
        assert chat.returncode == 0, chat.stderr
        refusals = [line for line in chat.stderr.splitlines() if "not sent" in line]
        assert len(refusals) == 2  # both lines refused, the session read both
        assert "does not allow sending" in refusals[0]
