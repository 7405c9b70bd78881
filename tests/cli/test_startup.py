"""What a command that talks to the running node loads: none of the network stack, no trio.

Each case runs the real command in a fresh interpreter against a stand-in node (the control
socket served in process, with canned answers), then lists the modules that interpreter loaded.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchat.app.control import Emit, serve_control
from p2pchat.app.datadir import control_socket_path
from p2pchat.cli.entry import COMMAND_MODULES, build_parser, load_command

pytestmark = pytest.mark.timeout(60)

PEER = "12D3KooWEsVy7SsLbo7AjELuDErBYoJVQHg7Xzbvvfn6MEHrpVC8"

#: Runs ``p2pchat`` with the arguments given, then prints the loaded modules as a JSON line.
PROBE = """
import json, sys
from p2pchat.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""

ANSWERS: dict[str, Any] = {
    "status": {
        "peer_id": PEER,
        "cid": "bafz",
        "addrs": [f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"],
        "data_dir": "/somewhere",
        "pid": 4242,
        "version": "0.1.0",
        "connected": 3,
        "groups": 2,
        "bootstrap": [],
        "mdns": False,
        "perf": False,
    },
    "peers": {"connected": [], "known": []},
    "group.list": [],
    "plugins": [],
    "query": {
        "peer_id": PEER,
        "code": "echoR",
        "rid": 0,
        "ok": True,
        "reason": None,
        "body": {"x": 1},
    },
}

#: Modules a control command must not load.
HEAVY = ("trio", "sqlite3", "cryptography", "attrs", "logging")
HEAVY_PACKAGES = ("p2pchat.net", "p2pchat.chat", "p2pchat.discovery", "p2pchat.protocols")


async def answer(request: dict[str, Any], emit: Emit) -> Any:
    return ANSWERS[request["op"]]


async def run_probe(data_dir: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """The command's output before the probe's line, and the probe's line."""
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-c", PROBE, "--data-dir", str(data_dir), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    *output, last = done.stdout.decode().splitlines()
    return "\n".join(output), json.loads(last)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status"], f"peer id:   {PEER}\nlistening: /ip4/127.0.0.1/tcp/4001/p2p/{PEER}"),
        (["peers"], "no peers yet"),
        (["group", "list"], "no groups yet"),
        (["plugins"], "no plug-ins"),
    ],
)
async def test_a_control_command_loads_neither_trio_nor_the_network_stack(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, control_socket_path(tmp_path), answer)
        output, probe = await run_probe(tmp_path, *args)
        nursery.cancel_scope.cancel()
    assert probe["status"] == 0
    assert output.startswith(expected)
    loaded = set(probe["modules"])
    assert loaded.isdisjoint(HEAVY)
    assert not [m for m in loaded if m.startswith(HEAVY_PACKAGES)]


async def test_a_query_through_the_node_loads_neither_trio_nor_the_network_stack(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, control_socket_path(tmp_path), answer)
        output, probe = await run_probe(tmp_path, "query", PEER, "echo", "--body", '{"x": 1}')
        nursery.cancel_scope.cancel()
    assert probe["status"] == 0
    assert output == f'echoR from {PEER}: ok\n{{\n  "x": 1\n}}'
    loaded = set(probe["modules"])  # the peer argument loads the identity module, no more
    assert "trio" not in loaded
    assert not [m for m in loaded if m.startswith(HEAVY_PACKAGES)]


async def test_status_shows_the_peer_count_and_the_group_count(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, control_socket_path(tmp_path), answer)
        output, _ = await run_probe(tmp_path, "status")
        nursery.cancel_scope.cancel()
    assert "peers:     3 connected" in output.splitlines()
    assert "groups:    2" in output.splitlines()


def test_every_command_the_help_lists_has_a_function_in_its_module() -> None:
    listed = re.findall(r"^    (\w+) ", build_parser().format_help(), flags=re.MULTILINE)
    assert sorted(listed) == sorted(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        assert callable(load_command(name))
