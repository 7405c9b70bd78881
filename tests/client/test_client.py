"""``p2pchat.client`` against a running node, under trio and under asyncio (specs/plugins.md
"The control-socket client"). In process, 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import p2pchat.client
from p2pchat.app.daemon import Daemon, NodeOptions, open_daemon
from p2pchat.client import ControlError, Message, NodeNotRunningError, RemoteCommandError
from p2pchat.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(60)

LOOPBACK = (Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),)


@asynccontextmanager
async def running(data_dir: Path) -> AsyncIterator[Daemon]:
    async with open_daemon(NodeOptions(data_dir=data_dir, listen=LOOPBACK)) as daemon:
        yield daemon


async def session(data_dir: Path) -> dict[str, Any]:
    """What a program does with the client; the same code under both loops."""
    async with p2pchat.client.connect(data_dir) as node:
        status = await node.status()
        await node.call("group.create", name="club")
        async with node.subscribe("club") as messages:
            sent = await node.send("club", "hello")
            seen: list[Message] = []
            async for message in messages:
                seen.append(message)
                if message.ratified:
                    break
        history = await node.history("club")
        groups = await node.groups()
        try:
            await node.send("nowhere", "x")
        except RemoteCommandError as exc:
            refusal = str(exc)
        return {
            "peer_id": status["peer_id"],
            "sent": sent,
            "seen": seen,
            "history": history,
            "groups": [g["name"] for g in groups],
            "refusal": refusal,
            "plugins": await node.plugins(),
        }


def check(result: dict[str, Any], daemon: Daemon) -> None:
    assert result["peer_id"] == str(daemon.peer_id)
    assert result["sent"]["status"] == "ratified"
    assert [(m.text, m.ratified, m.from_me) for m in result["seen"]] == [
        ("hello", False, True),
        ("hello", True, True),
    ]
    texts = [m.text for m in result["history"] if m.type == "text"]
    assert texts == ["hello"]
    assert result["history"][-1].message_hash == result["sent"]["message_hash"]
    assert result["groups"] == ["club"]
    assert "no group 'nowhere'" in result["refusal"]
    assert result["plugins"] == []


async def test_the_client_under_trio(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running(tmp_path) as daemon:
            result = await session(tmp_path)
    check(result, daemon)


async def test_the_client_under_asyncio(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running(tmp_path) as daemon:
            # asyncio runs in a thread of its own; the node serves it from this trio loop.
            result = await trio.to_thread.run_sync(asyncio.run, session(tmp_path))
    check(result, daemon)


async def test_no_node_and_one_request_at_a_time(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunningError, match="no node is running"):
        async with p2pchat.client.connect(tmp_path):
            pass
    with trio.fail_after(30):
        async with running(tmp_path), p2pchat.client.connect(tmp_path) as node:
            await node.start_stream("subscribe", group="none")
            with pytest.raises(ControlError, match="one request at a time"):
                await node.status()
            with pytest.raises(RemoteCommandError, match="no group 'none'"):
                await node.next_event()
            assert (await node.status())["groups"] == 0


def test_the_client_under_asyncio_loads_no_trio() -> None:
    code = (
        "import asyncio, sys, tempfile\n"
        "import p2pchat.client\n"
        "async def main():\n"
        "    try:\n"
        "        async with p2pchat.client.connect(tempfile.mkdtemp()):\n"
        "            pass\n"
        "    except p2pchat.client.NodeNotRunningError:\n"
        "        print('no node', 'trio' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == "no node False\n"
