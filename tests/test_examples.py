"""The runnable examples the README shows still run: the three routes to your own handlers
(in-process host, plug-in, control-socket client) and the chat in Python."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from p2pchat.app.control import ControlClient, open_control
from p2pchat.app.daemon import Daemon, NodeOptions, open_daemon
from p2pchat.multiaddr import Multiaddr

EXAMPLES = Path(__file__).resolve().parent.parent / "tools" / "examples"
README = EXAMPLES.parent.parent / "README.md"
LOOPBACK = (Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),)

pytestmark = pytest.mark.timeout(60)


def test_chat_group_example_ratifies_and_delivers() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "chat_group.py")],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "bob received: 'hello from alice' (ratified: True)"
    assert lines[1].endswith(": hello from alice")
    assert lines[2].endswith(": **hi** from bob")


def test_echo_code_example_answers_from_an_in_process_host() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo_code.py")],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "echoR rid=0 ok=True"
    assert lines[1] == "echo: {'text': 'hello'}"


def _readme_blocks() -> list[list[str]]:
    """The Python blocks of the README's handler section, as stripped lines."""
    text = README.read_text()
    section = text[text.index("## Writing a protocol handler") :]
    section = section[: section.index("\n## ", 1)]
    blocks = section.split("```python\n")[1:]
    return [
        [line.strip() for line in b.split("```")[0].splitlines() if line.strip()] for b in blocks
    ]


def test_the_readme_handler_section_shows_the_examples_the_tests_run() -> None:
    files = ["echo_stream.py", "echo_plugin.py", "ping_bot.py"]
    blocks = _readme_blocks()
    assert len(blocks) == len(files)
    for block, name in zip(blocks, files, strict=True):
        source = {line.strip() for line in (EXAMPLES / name).read_text().splitlines()}
        assert [line for line in block if line not in source] == [], name


def test_echo_stream_example_echoes() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo_stream.py")],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "b'hello'\n"


@asynccontextmanager
async def three_node_group(
    tmp_path: Path,
) -> AsyncIterator[tuple[list[Daemon], list[ControlClient], str]]:
    """Owner and ratifier ``a``, ratifier ``b``, user ``c``: one group, ``bots``."""
    async with AsyncExitStack() as stack:
        nodes: list[Daemon] = []
        controls: list[ControlClient] = []
        for name in "abc":
            options = NodeOptions(data_dir=tmp_path / name, listen=LOOPBACK)
            nodes.append(await stack.enter_async_context(open_daemon(options)))
            controls.append(await stack.enter_async_context(open_control(tmp_path / name)))
        a, b, c = nodes
        created = await controls[0].call("group.create", name="bots")
        group = created["group_id"]
        for control, joiner, role in ((controls[1], b, "ratifier"), (controls[2], c, "user")):
            await controls[0].call(
                "group.invite", group=group, peer=str(joiner.host.addrs[0]), role=role
            )
            await control.call("group.join", group=group, via=str(a.host.addrs[0]))
        yield nodes, controls, group


@pytest.mark.parametrize("loop", ["trio", "asyncio"])
async def test_ping_bot_example_answers_in_a_three_node_group(tmp_path: Path, loop: str) -> None:
    with trio.fail_after(45):
        async with three_node_group(tmp_path) as (nodes, controls, group):
            a, _, c = nodes
            flags = ["--asyncio"] if loop == "asyncio" else []
            bot = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    str(EXAMPLES / "ping_bot.py"),
                    str(tmp_path / "c"),
                    "bots",
                    "--count",
                    "1",
                    *flags,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                assert bot.stdout is not None
                output = b""
                while b"ready\n" not in output:
                    chunk = await bot.stdout.receive_some()
                    assert chunk, "the bot exited before it was ready"
                    output += chunk
                async with a.chat.subscribe(bytes.fromhex(group)) as messages:
                    await controls[0].call("send", group=group, text="!ping")
                    async for message in messages:
                        if message.ratified and message.text == "pong":
                            assert message.author == c.peer_id
                            break
                while chunk := await bot.stdout.receive_some():
                    output += chunk
                assert await bot.wait() == 0
            finally:
                if bot.returncode is None:
                    bot.kill()
                    await bot.wait()
    assert output.decode().splitlines() == ["ready", f"pong to {a.peer_id} (ratified)"]
