"""The p2pchat command, run as a user runs it: subprocesses and temporary data dirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from p2pchat import __version__
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(60)

COMMAND = [sys.executable, "-m", "p2pchat"]


def run(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_version_and_id_are_stable_across_runs(tmp_path: Path) -> None:
    assert run("--version", data_dir=tmp_path).stdout.strip() == f"p2pchat {__version__}"
    first = run("id", data_dir=tmp_path)
    assert first.returncode == 0
    assert first.stdout.startswith("12D3KooW")
    assert run("id", data_dir=tmp_path).stdout == first.stdout
    assert (tmp_path / "identity.key").stat().st_mode & 0o777 == 0o600


def test_a_world_readable_key_is_refused_in_one_line(tmp_path: Path) -> None:
    run("id", data_dir=tmp_path)
    os.chmod(tmp_path / "identity.key", 0o644)
    result = run("id", data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "chmod 600" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ping", "/ip4/127.0.0.1/tcp/notaport"], "invalid multiaddr"),
        (["ping", "/ip4/127.0.0.1/tcp/4001"], "/p2p/<peer id>"),
        (["ping", "--count", "0", "/ip4/127.0.0.1/tcp/1"], "at least 1"),
        (["node", "--listen", "/ip4/127.0.0.1/udp/1"], "not a TCP address"),
        (["frobnicate"], "invalid choice"),
        (["node", "--bootstrap", "/ip4/127.0.0.1/tcp/4001"], "must end in /p2p/<peer id>"),
        (["send", "somegroup"], "nothing to send"),
        (["send", "somegroup", "--file", "/nonexistent/file.png"], "cannot read /nonexistent"),
        (["group", "invite", "g", "not-a-peer"], "not a peer id or a multiaddr"),
        (["group", "invite", "g", str(KeyPair.from_seed(bytes(32)).peer_id), "admin"], "invalid"),
        (["ping", str(KeyPair.from_seed(bytes(32)).peer_id)], "give the peer's multiaddr"),
    ],
)
def test_user_mistakes_print_one_line_and_fail(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(*args, data_dir=tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_ping_to_a_closed_port_fails_in_one_line(tmp_path: Path) -> None:
    peer = KeyPair.generate().peer_id
    result = run("ping", f"/ip4/127.0.0.1/tcp/1/p2p/{peer}", data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "connection refused" in result.stderr


@asynccontextmanager
async def running_node(data_dir: Path, *args: str) -> AsyncIterator[tuple[trio.Process, Multiaddr]]:
    process = await trio.lowlevel.open_process(
        [*COMMAND, "--data-dir", str(data_dir), "node", "--listen", "/ip4/127.0.0.1/tcp/0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = bytearray()
    try:
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                assert chunk, "the node exited before printing its address"
                line += chunk
        yield process, Multiaddr.from_string(line.decode().strip())
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_node_prints_its_address_serves_ping_and_perf_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path / "node", "--no-mdns", "--enable-perf") as (process, addr):
        assert addr.peer_id is not None
        assert str(addr).startswith("/ip4/127.0.0.1/tcp/")
        result = await trio.to_thread.run_sync(
            lambda: run("ping", str(addr), "--count", "3", data_dir=tmp_path / "client")
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 4
        assert all(f"pong from {addr.peer_id}" in line and " ms" in line for line in lines[:3])
        assert lines[3].startswith("3 pings: min ")
        wrong = addr.without_peer_id().with_peer_id(KeyPair.generate().peer_id)
        result = await trio.to_thread.run_sync(
            lambda: run("ping", str(wrong), data_dir=tmp_path / "client")
        )
        assert result.returncode == 1
        assert "authenticated as" in result.stderr
        perf = await trio.to_thread.run_sync(
            lambda: run(
                "perf",
                str(addr),
                "--upload",
                "1MiB",
                "--download",
                "64KiB",
                data_dir=tmp_path / "client",
            )
        )
        assert perf.returncode == 0, perf.stderr
        assert perf.stdout.startswith("upload 1.0 MiB in ")
        assert "download 64.0 KiB in " in perf.stdout
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
        assert process.stderr is not None
        errors = await process.stderr.receive_some()
        assert b"Traceback" not in (errors or b"")


def test_init_writes_a_commented_config_and_the_identity(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = run("init", data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    peer = run("id", data_dir=data_dir).stdout.strip()
    assert f"peer id:  {peer}" in first.stdout
    assert f"p2pchat --data-dir {data_dir} node" in first.stdout
    config = data_dir / "config.toml"
    text = config.read_text()
    assert text.startswith("# p2pchat node configuration")
    assert 'listen = ["/ip4/127.0.0.1/tcp/4001"]' in text
    assert "/ip4/0.0.0.0/tcp/4001" in text  # how to open the node to a LAN, as a comment
    assert config.stat().st_mode & 0o777 == 0o600
    assert (data_dir.stat().st_mode & 0o777) == 0o700
    again = run("init", data_dir=data_dir)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1
    assert "already exists" in again.stderr
    config.write_text("# mine\n")
    forced = run("init", "--force", data_dir=data_dir)
    assert forced.returncode == 0
    assert "(existing identity)" in forced.stdout
    assert config.read_text() == text


def test_a_wrong_config_stops_the_node_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[discovery]\nmdns = "yes"\n')
    result = run("node", data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "config.toml: [discovery] mdns must be true or false" in result.stderr
    (tmp_path / "config.toml").write_text("[node]\nport = 4001\n")
    result = run("node", data_dir=tmp_path)
    assert "unknown key 'port' in [node] (known: listen)" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["peers"],
        ["stop"],
        ["group", "list"],
        ["group", "create", "friends"],
        ["send", "friends", "hello"],
        ["history", "friends"],
        ["chat", "friends"],
    ],
)
def test_commands_that_need_a_node_say_none_is_running(tmp_path: Path, args: list[str]) -> None:
    result = run(*args, data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"p2pchat: error: no node is running on {tmp_path} (start one with: p2pchat node)\n"
    )


def test_a_file_larger_than_a_message_is_no_longer_refused_for_its_size(tmp_path: Path) -> None:
    """Files of any size go as chunks (specs/artifacts.md): only the missing node is reported."""
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(800 * 1024))
    result = run("send", "friends", "--file", str(big), data_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "no node is running" in result.stderr


async def test_a_listen_port_in_use_is_explained(tmp_path: Path) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        result = await trio.to_thread.run_sync(
            lambda: run("node", "--listen", f"/ip4/127.0.0.1/tcp/{port}", data_dir=tmp_path)
        )
    finally:
        for listener in listeners:
            await listener.aclose()
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "address already in use" in result.stderr
    assert "--listen /ip4/127.0.0.1/tcp/0" in result.stderr


def test_the_demo_runs_three_nodes_and_shows_ratification_and_catch_up(tmp_path: Path) -> None:
    result = subprocess.run(
        [*COMMAND, "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pending" in out
    assert "ratified in" in out
    assert "carol's history: alice: she will catch up when she is back" in out
    assert "in the same order on all three nodes" in out
    assert "Traceback" not in result.stderr


def test_ctrl_c_while_send_waits_says_the_message_stays_queued(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from p2pchat.cli import messages
    from p2pchat.cli.entry import main

    def interrupted(*args: object, **request: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C does while the node holds the answer back

    monkeypatch.setattr(messages, "call", interrupted)
    assert main(["send", "somegroup", "hello"]) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("p2pchat: interrupted; the message stays queued on the node")
