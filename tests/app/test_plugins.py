"""Plug-ins in a running node (specs/plugins.md): loaded by path and by entry point, serving a
code another node queries and a stream protocol; failures at setup and in handlers reported
while the node keeps ratifying; reload picks up an edit. In process, 127.0.0.1 only."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pchat.app.control import ControlClient, RemoteCommandError, open_control
from p2pchat.app.daemon import Daemon, NodeOptions, open_daemon
from p2pchat.app.plugin_loader import PluginLoadError, parse_source
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.muxer import MuxedStream

pytestmark = pytest.mark.timeout(60)

LOOPBACK = (Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),)
UPPER = "/p2pchat-test/upper/1.0.0"

ECHO_PLUGIN = f"""
    VERSION = 1

    async def setup(ctx):
        @ctx.code("echo")
        async def echo(query, body):
            return {{"echo": body, "from": str(query.remote_peer), "by": ctx.name,
                     "version": VERSION}}

        @ctx.protocol({UPPER!r})
        async def upper(stream):
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
            await stream.send_all(data.upper())
            await stream.send_eof()
"""

BROKEN_SETUP = """
    def setup(ctx):
        ctx.register_code("half", lambda query, body: None)
        raise RuntimeError("setup is broken")
"""

BROKEN_HANDLER = """
    from p2pchat.chat import Refusal

    def setup(ctx):
        @ctx.code("boom")
        async def boom(query, body):
            if body.get("refuse"):
                raise Refusal("refused on purpose")
            return {"x": 1 // 0}
"""


def write_plugin(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


@asynccontextmanager
async def node(data_dir: Path, *plugins: str, entry_points: bool = False) -> AsyncIterator[Daemon]:
    options = NodeOptions(
        data_dir=data_dir, listen=LOOPBACK, plugins=plugins, plugin_entry_points=entry_points
    )
    async with open_daemon(options) as daemon:
        yield daemon


@asynccontextmanager
async def two_nodes(
    tmp_path: Path, *plugins: str, entry_points: bool = False
) -> AsyncIterator[tuple[Daemon, ControlClient, Daemon, ControlClient]]:
    """Node A with ``plugins``, node B, and a control client on each."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            node(tmp_path / "a", *plugins, entry_points=entry_points)
        )
        b = await stack.enter_async_context(node(tmp_path / "b"))
        control_a = await stack.enter_async_context(open_control(tmp_path / "a"))
        control_b = await stack.enter_async_context(open_control(tmp_path / "b"))
        yield a, control_a, b, control_b


async def query(
    control: ControlClient, target: Daemon, code: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = await control.call(
        "query", peer=str(target.host.addrs[0]), code=code, body=body or {}
    )
    return answer


async def test_a_plugin_by_path_serves_a_code_that_another_node_queries(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path / "plugins", "echoer", ECHO_PLUGIN)
    with trio.fail_after(30):
        async with two_nodes(tmp_path, str(plugin)) as (a, control_a, b, control_b):
            (listed,) = await control_a.call("plugins")
            assert listed["name"] == "echoer"
            assert listed["state"] == "running"
            assert listed["source"] == f"path {plugin}"
            assert (listed["codes"], listed["protocols"]) == (["echo"], [UPPER])
            answer = await query(control_b, a, "echo", {"n": 7, "raw": {"$bytes": "AAE="}})
    assert answer["code"] == "echoR"
    assert answer["ok"] is True
    assert answer["peer_id"] == str(a.peer_id)
    assert answer["body"]["echo"] == {"n": 7, "raw": {"$bytes": "AAE="}}  # bytes both ways
    assert answer["body"]["from"] == str(b.peer_id)
    assert answer["body"]["by"] == "echoer"


async def test_a_plugin_by_entry_point_is_loaded_from_an_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    write_plugin(site / "p2pchat_test_ep_pkg", "__init__", ECHO_PLUGIN.replace("1", "2", 1))
    dist_info = site / "p2pchat_test_ep_pkg-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: p2pchat-test-ep-pkg\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[p2pchat.plugins]\nep-echo = p2pchat_test_ep_pkg\n"
    )
    monkeypatch.syspath_prepend(str(site))
    with trio.fail_after(30):
        async with two_nodes(tmp_path, entry_points=True) as (a, control_a, _, control_b):
            listed = {p["name"]: p for p in await control_a.call("plugins")}
            assert listed["ep-echo"]["state"] == "running"
            assert listed["ep-echo"]["source"] == "entry point p2pchat_test_ep_pkg"
            answer = await query(control_b, a, "echo", {"hi": True})
    assert answer["ok"] is True
    assert answer["body"]["version"] == 2
    assert answer["body"]["by"] == "ep-echo"


async def test_failing_plugins_are_reported_and_the_node_keeps_ratifying(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    broken = write_plugin(plugins, "broken", BROKEN_SETUP)
    flaky = write_plugin(plugins, "flaky", BROKEN_HANDLER)
    missing = plugins / "missing.py"
    with trio.fail_after(30):
        async with two_nodes(tmp_path, str(broken), str(flaky), str(missing)) as (
            a,
            control_a,
            _,
            control_b,
        ):
            listed = {p["name"]: p for p in await control_a.call("plugins")}
            assert listed["broken"]["state"] == "failed"
            assert listed["broken"]["error"] == "setup raised RuntimeError: setup is broken"
            assert listed["broken"]["codes"] == []
            assert "half" not in a.chat.dispatcher.codes  # withdrawn with the failed setup
            assert listed["missing"]["state"] == "failed"
            assert "cannot read plug-in" in listed["missing"]["error"]
            assert listed["flaky"]["state"] == "running"

            failed = await query(control_b, a, "boom")
            refused = await query(control_b, a, "boom", {"refuse": True})
            flaky_now = (await control_a.call("plugins"))[1]

            group = await control_a.call("group.create", name="still works")
            sent = await control_a.call("send", group=group["group_id"], text="after the crash")
            identified = await query(control_b, a, "hpk")  # a built-in code still answers
    assert (failed["ok"], failed["reason"]) == (False, "internal error")
    assert (refused["ok"], refused["reason"]) == (False, "refused on purpose")
    assert flaky_now["name"] == "flaky"
    assert flaky_now["handler_errors"] == 1  # a refusal is an answer, not an error
    assert (
        flaky_now["last_handler_error"]
        == "code 'boom': ZeroDivisionError: integer division or modulo by zero"
    )
    assert sent["status"] == "ratified"
    assert identified["ok"] is True


async def test_reload_picks_up_an_edit_and_unload_withdraws_the_code(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path / "plugins", "echoer", ECHO_PLUGIN)
    with trio.fail_after(30):
        async with two_nodes(tmp_path, str(plugin)) as (a, control_a, _, control_b):
            before = await query(control_b, a, "echo", {"x": 1})
            plugin.write_text(textwrap.dedent(ECHO_PLUGIN.replace("VERSION = 1", "VERSION = 2")))
            reloaded = await control_a.call("plugins.reload", name="echoer")
            after = await query(control_b, a, "echo", {"x": 1})

            plugin.write_text("def setup(ctx):\n    raise ValueError('typo')\n")
            failed = await control_a.call("plugins.reload", name="echoer")
            gone = await query(control_b, a, "echo", {"x": 1})

            plugin.write_text(textwrap.dedent(ECHO_PLUGIN))
            fixed = await control_a.call("plugins.reload", name="echoer")
            await control_a.call("plugins.unload", name="echoer")
            unloaded = await query(control_b, a, "echo", {"x": 1})
            listed = await control_a.call("plugins")
            with pytest.raises(RemoteCommandError, match="no plug-in named 'echoer'"):
                await control_a.call("plugins.reload", name="echoer")
            assert UPPER not in a.host.protocols
    assert (before["body"]["version"], after["body"]["version"]) == (1, 2)
    assert reloaded["state"] == "running"
    assert (failed["state"], failed["error"]) == ("failed", "setup raised ValueError: typo")
    assert gone["reason"] == "unknown code"
    assert fixed["state"] == "running"
    assert unloaded["reason"] == "unknown code"
    assert listed == []


async def test_a_plugin_cannot_take_over_a_builtin_code_or_protocol(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    takes_code = write_plugin(
        plugins, "takes_code", "def setup(ctx):\n    ctx.register_code('mrat', None)\n"
    )
    takes_ping = write_plugin(
        plugins,
        "takes_ping",
        "def setup(ctx):\n    ctx.register_protocol('/ipfs/ping/1.0.0', None)\n",
    )
    with trio.fail_after(30):
        async with node(tmp_path / "a", str(takes_code), str(takes_ping)) as a:
            assert a.plugins is not None
            listed = {p.name: p for p in a.plugins.list()}
            with pytest.raises(RemoteCommandError, match="loaded already"):
                async with open_control(tmp_path / "a") as control:
                    await control.call("plugins.load", spec=str(takes_code))
    assert listed["takes_code"].state == "failed"
    assert "code 'mrat' already has a handler" in (listed["takes_code"].error or "")
    assert listed["takes_ping"].state == "failed"
    assert "replace=True" in (listed["takes_ping"].error or "")


async def test_a_plugin_follows_a_group_and_sends_to_it(tmp_path: Path) -> None:
    bot = """
        async def setup(ctx):
            async def answer(message):
                if message.text == "!ping":
                    await ctx.send(message.group_id, "pong", wait=False)

            ctx.on_message("bots", answer)
    """
    with trio.fail_after(30):
        async with node(tmp_path / "a") as a, open_control(tmp_path / "a") as control:
            group = await control.call("group.create", name="bots")
            plugin = write_plugin(tmp_path / "plugins", "pingbot", bot)
            loaded = await control.call("plugins.load", spec=str(plugin))
            assert loaded["state"] == "running"
            async with a.chat.subscribe(bytes.fromhex(group["group_id"])) as messages:
                await control.call("send", group="bots", text="!ping")
                async for message in messages:
                    if message.ratified and message.text == "pong":
                        break


FAILING_TASK = """
    import trio

    def setup(ctx):
        asked = trio.Event()

        @ctx.code("doomed")
        async def doomed(query, body):
            asked.set()
            return {}

        async def fail_when_asked():
            await asked.wait()
            raise OSError("the task failed")

        ctx.nursery.start_soon(fail_when_asked)
"""


async def drain(stream: MuxedStream) -> None:
    while await stream.receive_some():
        pass


async def test_a_stream_handler_that_raises_resets_its_stream_and_a_failing_task_unloads(
    tmp_path: Path,
) -> None:
    crashing = write_plugin(tmp_path / "plugins", "crashing", FAILING_TASK)
    stream_plugin = write_plugin(
        tmp_path / "plugins",
        "streamer",
        """
        def setup(ctx):
            @ctx.protocol("/p2pchat-test/crash/1.0.0")
            async def crash(stream):
                raise KeyError("no such thing")
        """,
    )
    with trio.fail_after(30):
        async with two_nodes(tmp_path, str(stream_plugin)) as (a, control_a, b, control_b):
            stream = await b.host.new_stream(a.host.addrs[0], ["/p2pchat-test/crash/1.0.0"])
            async with stream:
                with pytest.raises(trio.BrokenResourceError):
                    await drain(stream)
            (listed,) = await control_a.call("plugins")

            loaded = await control_a.call("plugins.load", spec=str(crashing))
            assert (loaded["state"], loaded["codes"]) == ("running", ["doomed"])
            assert (await query(control_b, a, "doomed"))["ok"] is True
            await trio.testing.wait_all_tasks_blocked()
            failed = {p["name"]: p for p in await control_a.call("plugins")}["crashing"]
    assert listed["handler_errors"] == 1
    assert listed["last_handler_error"] == (
        "protocol /p2pchat-test/crash/1.0.0: KeyError: 'no such thing'"
    )
    assert failed["state"] == "failed"
    assert failed["error"] == "a task of it raised OSError: the task failed"
    assert failed["codes"] == []
    assert "doomed" not in a.chat.dispatcher.codes


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("./plugins/echo.py", "path", "echo"),
        ("/srv/pkg/__init__.py", "path", "pkg"),
        ("mypackage.plugin", "module", "mypackage.plugin"),
    ],
)
def test_a_source_is_a_path_or_a_module(text: str, kind: str, name: str) -> None:
    source = parse_source(text)
    assert (source.kind, source.name) == (kind, name)


@pytest.mark.parametrize("text", ["not a module", "1abc", "x" * 70])
def test_a_malformed_source_is_refused(text: str) -> None:
    with pytest.raises(PluginLoadError):
        parse_source(text)


def test_a_plugins_error_beside_a_cancellation_is_its_failure_and_an_interrupt_goes_on() -> None:
    from p2pchat.app.plugins import _plugin_error

    error = OSError("task")
    cancelled = trio.Cancelled._create()
    assert (
        _plugin_error(BaseExceptionGroup("x", [cancelled, ExceptionGroup("y", [error])])) is error
    )
    assert _plugin_error(BaseExceptionGroup("x", [cancelled])) is None
    assert _plugin_error(BaseExceptionGroup("x", [error, KeyboardInterrupt()])) is None
    assert _plugin_error(error) is error
