"""The developers' commands as a user runs them: ``node --plugin``, ``plugins``, ``query`` (through
the node and from a transient host) and ``stream``. Real processes, 127.0.0.1 only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from .nodes import COMMAND, cli, ok, running_node

pytestmark = pytest.mark.timeout(90)

EXAMPLES = Path(__file__).resolve().parents[2] / "tools" / "examples"
PLUGIN = EXAMPLES / "echo_plugin.py"
UPPER = "/p2pchat-example/upper/1.0.0"


async def test_a_plugin_from_the_command_line_is_queried_and_streamed_to(tmp_path: Path) -> None:
    alice_dir, bob_dir, carol_dir = tmp_path / "alice", tmp_path / "bob", tmp_path / "carol"
    with trio.fail_after(80):
        async with (
            running_node(alice_dir, "--plugin", str(PLUGIN)) as alice,
            running_node(bob_dir) as bob,
        ):
            listed = (await ok(alice_dir, "plugins")).stdout.splitlines()
            assert listed == [
                f"echo_plugin  running  path {PLUGIN}",
                f"  codes: echo  protocols: {UPPER}",
            ]

            # Through bob's node: a bare peer id it is connected to will do.
            await ok(bob_dir, "connect", str(alice.addr))
            answer = (
                await ok(
                    bob_dir, "query", str(alice.peer_id), "echo", "--body", '{"n": 1}', "--json"
                )
            ).json()
            assert answer["code"] == "echoR"
            assert answer["ok"] is True
            assert answer["body"]["echo"] == {"n": 1}
            assert answer["body"]["from"] == str(bob.peer_id)

            refused = await cli(bob_dir, "query", str(alice.peer_id), "echo")
            assert refused.returncode == 1
            assert refused.stdout == f"echoR from {alice.peer_id}: refused: empty body\n"

            unknown = await cli(bob_dir, "query", str(alice.addr), "nope")
            assert unknown.returncode == 1
            assert "refused: unknown code" in unknown.stdout

            # No node on carol's data dir: a transient host with carol's identity.
            alone = await ok(carol_dir, "query", str(alice.addr), "echo", "--body", '{"n": 2}')
            lines = alone.stdout.splitlines()
            assert lines[0] == f"echoR from {alice.peer_id}: ok"
            body = json.loads("\n".join(lines[1:]))
            assert body["echo"] == {"n": 2}
            assert body["from"] != str(bob.peer_id)

            streamed = await ok(
                carol_dir, "stream", str(alice.addr), UPPER, stdin=b"hello\nworld\n"
            )
            assert streamed.stdout == "HELLO\nWORLD\n"

            # bob knows alice's address: a bare peer id works for stream too.
            via_bob = await ok(bob_dir, "stream", str(alice.peer_id), UPPER, stdin=b"x")
            assert via_bob.stdout == "X"

            reloaded = await ok(alice_dir, "plugins", "reload", "echo_plugin")
            assert reloaded.stdout.startswith("echo_plugin  running")


async def test_developer_commands_say_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def setup(ctx):\n    raise RuntimeError('nope')\n")
    node_dir = tmp_path / "node"
    with trio.fail_after(60):
        async with running_node(node_dir, "--plugin", str(broken)) as node:
            await node.wait_log("plug-in broken failed and is unloaded")
            listed = await ok(node_dir, "plugins")
            assert listed.stdout.splitlines() == [
                f"broken  failed  path {broken}",
                "  error: setup raised RuntimeError: nope",
            ]
            # A relative path is the command's, not the node's (whose directory differs).
            (tmp_path / "relative.py").write_text("def setup(ctx):\n    pass\n")
            loaded = await trio.run_process(
                [*COMMAND, "--data-dir", str(node_dir), "plugins", "load", "relative.py"],
                cwd=tmp_path,
                capture_stdout=True,
                capture_stderr=True,
            )
            assert loaded.stdout.decode().startswith(
                f"relative  running  path {tmp_path / 'relative.py'}"
            )
            cases = [
                (["query", str(node.addr), "echoR"], "not a query code: 'echoR'"),
                (["query", str(node.addr), "echo", "--body", "[1]"], "--body must be a JSON"),
                (["query", str(node.addr), "echo", "--body", "{"], "--body is not JSON"),
                (["plugins", "reload", "nothing"], "no plug-in named 'nothing'"),
                (["plugins", "frobnicate"], "plugins takes: list, load"),
                (["stream", str(node.addr), "no-slash"], "a protocol id starts with '/'"),
                (
                    ["stream", str(node.addr), "/not/served/1.0.0"],
                    "peer supports none of /not/served",
                ),
            ]
            for args, error in cases:
                # stream never goes through the node; from its own identity it would dial itself
                where = tmp_path / "other" if args[0] == "stream" else node_dir
                result = await cli(where, *args)
                assert result.returncode != 0, args
                assert result.stderr.startswith("p2pchat: error: "), (args, result.stderr)
                assert len(result.stderr.splitlines()) == 1, (args, result.stderr)
                assert error in result.stderr, (args, result.stderr)
