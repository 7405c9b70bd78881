"""Running ``p2pchat`` as a user does, for the CLI tests: subprocesses, temporary data dirs,
127.0.0.1 only."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from p2pchat.identity import PeerID
from p2pchat.multiaddr import Multiaddr

COMMAND = [sys.executable, "-m", "p2pchat"]
LOOPBACK_ANY_PORT = "/ip4/127.0.0.1/tcp/0"
STEP_TIMEOUT = 20.0


@attrs.frozen
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def cli(data_dir: Path, *args: str, stdin: bytes = b"", cwd: Path | None = None) -> Result:
    """Run one ``p2pchat`` command to completion (in ``cwd``, if given)."""
    with trio.fail_after(STEP_TIMEOUT):
        done = await trio.run_process(
            [*COMMAND, "--data-dir", str(data_dir), *args],
            cwd=cwd,
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


async def ok(data_dir: Path, *args: str, stdin: bytes = b"", cwd: Path | None = None) -> Result:
    """Run a command that must succeed, printing nothing on stderr."""
    result = await cli(data_dir, *args, stdin=stdin, cwd=cwd)
    assert result.returncode == 0, (args, result.stderr)
    assert result.stderr == "", (args, result.stderr)
    return result


@attrs.define(eq=False)
class NodeProcess:
    """A running ``p2pchat node``: its first address, and its log lines as they come."""

    data_dir: Path
    process: trio.Process
    addr: Multiaddr
    log: list[str] = attrs.Factory(list)
    _log_changed: trio.Event = attrs.Factory(trio.Event)

    @property
    def peer_id(self) -> PeerID:
        peer = self.addr.peer_id
        assert peer is not None
        return peer

    async def _read_log(self) -> None:
        assert self.process.stderr is not None
        buffer = b""
        while chunk := await self.process.stderr.receive_some():
            buffer += chunk
            *lines, rest = buffer.split(b"\n")
            buffer = rest
            self.log.extend(line.decode() for line in lines)
            self._log_changed.set()
            self._log_changed = trio.Event()
        if buffer:
            self.log.append(buffer.decode())
        self._log_changed.set()

    async def wait_log(self, text: str) -> str:
        """The first log line containing ``text``, waiting for it if need be."""
        with trio.fail_after(STEP_TIMEOUT):
            while True:
                for line in self.log:
                    if text in line:
                        return line
                assert self.process.returncode is None, f"node exited: {self.log[-5:]}"
                await self._log_changed.wait()

    async def stop(self) -> int:
        """SIGTERM, then its exit status."""
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(STEP_TIMEOUT):
            return await self.process.wait()


@asynccontextmanager
async def running_node(data_dir: Path, *args: str) -> AsyncIterator[NodeProcess]:
    """``p2pchat node`` on ``data_dir`` (mDNS off, any free loopback port unless ``args`` say
    otherwise), killed on the way out if still running."""
    listen = [] if "--listen" in args else ["--listen", LOOPBACK_ANY_PORT]
    process = await trio.lowlevel.open_process(
        [*COMMAND, "--data-dir", str(data_dir), "node", "--no-mdns", *listen, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with trio.open_nursery() as nursery:
            line = bytearray()
            with trio.fail_after(STEP_TIMEOUT):
                while not line.endswith(b"\n"):
                    chunk = await process.stdout.receive_some(1)
                    if not chunk:
                        errors = await process.stderr.receive_some() if process.stderr else b""
                        raise AssertionError(f"the node exited: {errors!r}")
                    line += chunk
            node = NodeProcess(data_dir, process, Multiaddr.from_string(line.decode().strip()))
            nursery.start_soon(node._read_log)
            yield node
            if process.returncode is None:
                process.kill()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


async def wait_until_history_has(data_dir: Path, group: str, text: str) -> list[dict[str, Any]]:
    """Ask the node for its history until ``text`` is in it, ratified (history sync has no event a
    client can wait on; each try is a real request, bounded in number and time)."""
    with trio.fail_after(STEP_TIMEOUT):
        for _ in range(200):
            messages: list[dict[str, Any]] = (await ok(data_dir, "history", group, "--json")).json()
            if any(m.get("text") == text and m["ratified"] for m in messages):
                return messages
            await trio.sleep(0.1)
    raise AssertionError(f"{text!r} never reached {data_dir}")


async def wait_roster_is(data_dir: Path, group: str, peers: list[str], what: str) -> None:
    """Ask the node for the group's roster until its members are ``peers``, in roster order
    (bounded in number and time); ``what`` says what is still wrong otherwise."""
    with trio.fail_after(STEP_TIMEOUT):
        for _ in range(200):
            roster = (await ok(data_dir, "group", "roster", group, "--json")).json()
            if [m["peer_id"] for m in roster["member_list"]] == peers:
                return
            await trio.sleep(0.1)
    raise AssertionError(what)


async def read_until(stream: trio.abc.ReceiveStream, text: str, seen: bytearray) -> str:
    """Read ``stream`` into ``seen`` until a line containing ``text`` has arrived; that line."""
    with trio.fail_after(STEP_TIMEOUT):
        while True:
            for line in seen.decode(errors="replace").splitlines():
                if text in line:
                    return line
            chunk = await stream.receive_some()
            assert chunk, f"stream ended before {text!r}: {seen.decode()!r}"
            seen += chunk


async def form_group(owner: NodeProcess, name: str, *members: tuple[NodeProcess, str]) -> str:
    """``owner`` creates the group ``name`` and invites ``members`` (node, role) in order; each
    joins at once, naming the owner by its peer ID (found through its bootstrap peers). The
    group's id."""
    group = (await ok(owner.data_dir, "group", "create", name)).stdout.strip()
    for node, role in members:
        await ok(owner.data_dir, "group", "invite", group, str(node.addr), role)
        await ok(node.data_dir, "group", "join", group, str(owner.peer_id))
    return group
