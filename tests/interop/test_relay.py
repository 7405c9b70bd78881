"""Circuit relay v2 with py-libp2p 0.8.1 (tools/interop/pylibp2p_relay.py): its relay serves our
reservation and carries a connection between two of our hosts; our relay serves its
reservation. Loopback only. Skipped, with the reason, where the interop virtualenv is absent."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import open_host
from p2pchat.net.ping import open_ping
from p2pchat.net.relay import is_relayed, open_relay_client, open_relay_service

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

SCRIPT: Final = Path(__file__).resolve().parents[2] / "tools" / "interop" / "pylibp2p_relay.py"
DEADLINE: Final = 60.0


@pytest.fixture
def python() -> str:
    python = os.environ.get("P2PCHAT_INTEROP_PYTHON", "")
    if not python or not Path(python).exists():
        pytest.skip("P2PCHAT_INTEROP_PYTHON names no py-libp2p interpreter (make unit sets it)")
    return python


async def test_a_pylibp2p_relay_serves_our_reservation_and_circuit(python: str) -> None:
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
                assert chunk, "the py-libp2p relay exited early"
                line += chunk
        listening: dict[str, Any] = json.loads(line.decode().splitlines()[0])
        relay_addr = Multiaddr.from_string(listening["addrs"][0])
        relay_id = PeerID.from_string(listening["peer_id"])
        async with (
            open_host(KeyPair.generate()) as a_host,
            open_relay_client(a_host) as a,
            open_host(KeyPair.generate()) as b_host,
            open_relay_client(b_host),
        ):
            with trio.fail_after(DEADLINE):
                held = await a.reserve(relay_addr)
                assert held.relay == relay_id
                assert held.expire > time.time()
                assert held.voucher is not None  # py-libp2p signs one; it verified here
                circuit = a.book.circuit_addrs(time.time())[0].with_peer_id(a_host.peer_id)
                conn = await b_host.connect(circuit)
                assert conn.remote_peer == a_host.peer_id
                assert is_relayed(conn.remote_addr)
                async with open_ping(b_host, a_host.peer_id) as pinger:
                    assert await pinger.ping() >= 0
    finally:
        with trio.CancelScope(shield=True):
            await process.stdin.aclose()
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdout.aclose()


async def test_our_relay_serves_a_pylibp2p_reservation(python: str) -> None:
    async with open_host(KeyPair.generate()) as host, open_relay_service(host) as relay:
        with trio.fail_after(DEADLINE):
            done = await trio.run_process(
                [python, str(SCRIPT), "reserve", str(host.addrs[0]), "--timeout", "30"],
                capture_stdout=True,
                check=False,
            )
        answer = json.loads(done.stdout.decode().splitlines()[-1])
        assert answer["event"] == "answer", answer
        assert answer["status"] == 100  # OK
        assert answer["voucher_ok"] is True
        assert answer["expire"] > time.time()
        assert answer["limit"] == {"duration": 120, "data": 1 << 17}
        assert [r.peer for r in relay.state.reservations(time.time())] != []
