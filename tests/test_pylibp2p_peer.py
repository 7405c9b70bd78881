"""The py-libp2p interop peer (tools/interop/pylibp2p_peer.py) against itself.

Two instances of the script talk to each other, which proves the harness that later tests
point at our own node. Skipped unless ``P2PCHAT_INTEROP_PYTHON`` names the interpreter of the
py-libp2p virtualenv (``make unit`` sets it).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from p2pchat.identity import KeyPair, PeerID

pytestmark = pytest.mark.interop

SCRIPT: Final = Path(__file__).resolve().parent.parent / "tools" / "interop" / "pylibp2p_peer.py"
INTEROP_PYTHON: Final = os.environ.get("P2PCHAT_INTEROP_PYTHON", "")
SEED: Final = bytes(range(32))
# Every subprocess runs under this deadline; the script's own --timeout is shorter.
PROCESS_DEADLINE: Final = 30.0

if not INTEROP_PYTHON or not Path(INTEROP_PYTHON).exists():
    pytest.skip("P2PCHAT_INTEROP_PYTHON names no interpreter", allow_module_level=True)


async def run_peer(*args: str) -> tuple[int, dict[str, Any]]:
    """Run one client command; return its exit status and its single JSON line."""
    cmd = [INTEROP_PYTHON, str(SCRIPT), *args, "--timeout", "20", "--max-conns-per-peer", "1"]
    with trio.fail_after(PROCESS_DEADLINE):
        done = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, (lines, done.stderr.decode()[-2000:])
    return done.returncode, json.loads(lines[0])


@pytest.fixture
async def listener() -> AsyncIterator[dict[str, Any]]:
    """A listening py-libp2p peer with identity ``SEED``; yields its ``listening`` event."""
    cmd = [INTEROP_PYTHON, str(SCRIPT), "listen", "--port", "0", "--seed", SEED.hex()]
    with trio.fail_after(PROCESS_DEADLINE):
        process = await trio.lowlevel.open_process(
            [*cmd, "--lifetime", str(PROCESS_DEADLINE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
    assert process.stdin is not None
    assert process.stdout is not None
    received = bytearray()
    try:
        with trio.fail_after(PROCESS_DEADLINE):
            while b"\n" not in received:
                chunk = await process.stdout.receive_some()
                assert chunk, "the listener exited before it printed its address"
                received += chunk
        first, _, rest = bytes(received).partition(b"\n")
        yield json.loads(first)
        await process.stdin.aclose()
        with trio.fail_after(PROCESS_DEADLINE):
            while chunk := await process.stdout.receive_some():
                rest += chunk
            assert await process.wait() == 0
        events = [json.loads(line) for line in rest.decode().splitlines()]
        assert events[-1] == {"event": "closed", "reason": "stdin-eof"}
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdin.aclose()
            await process.stdout.aclose()


async def test_listener_peer_id_matches_our_identity(listener: dict[str, Any]) -> None:
    expected = str(PeerID.from_public_key(KeyPair.from_seed(SEED).public_key))
    assert listener["peer_id"] == expected
    assert listener["addrs"][0].startswith("/ip4/127.0.0.1/tcp/")
    assert listener["addrs"][0].endswith(f"/p2p/{expected}")


async def test_ping_round_trips(listener: dict[str, Any]) -> None:
    status, out = await run_peer("ping", listener["addrs"][0], "--count", "3")
    assert status == 0
    assert out["event"] == "ping"
    assert out["peer_id"] == listener["peer_id"]
    assert len(out["rtt_ms"]) == 3
    assert all(rtt > 0 for rtt in out["rtt_ms"])


async def test_identify_reports_listener_fields(listener: dict[str, Any]) -> None:
    status, out = await run_peer("identify", listener["addrs"][0])
    assert status == 0
    assert out["agent_version"].startswith("py-libp2p/")
    assert out["public_key_type"] == "Ed25519"
    assert out["public_key_matches_peer_id"] is True
    assert out["framing"] == "length-prefixed"
    assert out["listen_addrs"] == [listener["addrs"][0].split("/p2p/")[0]]
    assert out["observed_addr"].startswith("/ip4/127.0.0.1/tcp/")
    for protocol in ("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/p2pchat-test/echo/1.0.0"):
        assert protocol in out["protocols"]


async def test_echo_returns_every_byte(listener: dict[str, Any]) -> None:
    size = 1_000_003
    args = ("echo", listener["addrs"][0], "--bytes", str(size), "--write-size", "10000")
    status, out = await run_peer(*args)
    assert status == 0
    assert out["event"] == "echo"
    assert out["bytes"] == size


async def test_sink_counts_every_byte(listener: dict[str, Any]) -> None:
    size = 3 * 65536 + 5
    status, out = await run_peer("send", listener["addrs"][0], "--bytes", str(size))
    assert status == 0
    assert out == {**out, "event": "sink", "bytes": size}


async def test_connect_repeats_new_connections(listener: dict[str, Any]) -> None:
    status, out = await run_peer("connect", listener["addrs"][0], "--count", "3")
    assert status == 0
    assert out["count"] == 3
    assert len(out["times_ms"]) == 3
    assert out["median_ms"] == sorted(out["times_ms"])[1]


async def test_refuses_a_non_loopback_address() -> None:
    peer = PeerID.from_public_key(KeyPair.from_seed(SEED).public_key)
    status, out = await run_peer("ping", f"/ip4/192.0.2.1/tcp/4001/p2p/{peer}")
    assert status == 1
    assert out["event"] == "error"
    assert out["error"] == "UsageError"


async def test_reports_a_wrong_peer_id_as_an_error(listener: dict[str, Any]) -> None:
    other = PeerID.from_public_key(KeyPair.from_seed(bytes(32)).public_key)
    address = listener["addrs"][0].split("/p2p/")[0] + f"/p2p/{other}"
    status, out = await run_peer("ping", address)
    assert status == 1
    assert out["event"] == "error"
    assert "upgrade security" in out["message"]
