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
async def running_node(data_dir: Path) -> AsyncIterator[tuple[trio.Process, Multiaddr]]:
    process = await trio.lowlevel.open_process(
        [*COMMAND, "--data-dir", str(data_dir), "node"],
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


async def test_node_prints_its_address_serves_ping_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path / "node") as (process, addr):
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
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
        assert process.stderr is not None
        errors = await process.stderr.receive_some()
        assert b"Traceback" not in (errors or b"")
