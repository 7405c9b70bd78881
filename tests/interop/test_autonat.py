"""AutoNAT v1 both ways with py-libp2p 0.8.1 (tools/interop/pylibp2p_autonat.py): our client
asks its server, its client asks our server. Loopback only, so both dial-backs succeed.
Skipped, with the reason, where the interop virtualenv is absent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.autonat import AutoNATConfig, open_autonat
from p2pchat.net.host import open_host
from p2pchat.net.identify import identify_peer
from p2pchat.protocols import autonat as core

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

SCRIPT: Final = Path(__file__).resolve().parents[2] / "tools" / "interop" / "pylibp2p_autonat.py"
DEADLINE: Final = 60.0


@pytest.fixture
def python() -> str:
    python = os.environ.get("P2PCHAT_INTEROP_PYTHON", "")
    if not python or not Path(python).exists():
        pytest.skip("P2PCHAT_INTEROP_PYTHON names no py-libp2p interpreter (make unit sets it)")
    return python


async def test_our_client_asks_a_pylibp2p_server(python: str) -> None:
    process = await trio.lowlevel.open_process(
        [python, str(SCRIPT), "serve", "--lifetime", str(DEADLINE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        line = b""
        with trio.fail_after(DEADLINE):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, "the py-libp2p peer exited early"
                line += chunk
        listening: dict[str, Any] = json.loads(line.decode().splitlines()[0])
        server = Multiaddr.from_string(listening["addrs"][0])
        async with (
            open_host(KeyPair.generate()) as host,
            open_autonat(host, AutoNATConfig(serve=False, threshold=1)) as autonat,
        ):
            conn = await host.connect(server)
            await identify_peer(host, conn)
            assert core.PROTOCOL_ID in host.peer_store.protocols(conn.remote_peer)
            reply = await autonat.ask(PeerID.from_string(listening["peer_id"]))
            assert reply.status is core.ResponseStatus.OK
            assert autonat.status is core.ReachabilityStatus.PUBLIC
    finally:
        with trio.CancelScope(shield=True):
            await process.stdin.aclose()
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdout.aclose()


async def test_a_pylibp2p_client_asks_our_server(python: str) -> None:
    async with open_host(KeyPair.generate()) as host, open_autonat(host) as autonat:
        with trio.fail_after(DEADLINE):
            done = await trio.run_process(
                [python, str(SCRIPT), "ask", str(host.addrs[0]), "--timeout", "30"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        lines = done.stdout.decode().splitlines()
        assert done.returncode == 0, (lines, done.stderr.decode()[-2000:])
        answer = json.loads(lines[-1])
        assert answer["event"] == "answer"
        assert answer["status"] == int(core.ResponseStatus.OK)
        assert autonat.dial_backs == 1
