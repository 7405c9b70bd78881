"""Circuit relay v2 with py-libp2p 0.8.1 (tools/interop/pylibp2p_relay.py): its relay serves our
reservation and carries a connection between two of our hosts; our relay serves its
reservation. Loopback only. Skipped, with the reason, where the interop virtualenv is absent."""

from __future__ import annotations

import time
from typing import Final

import pytest
import trio

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import open_host
from p2pchat.net.ping import open_ping
from p2pchat.net.relay import is_relayed, open_relay_client, open_relay_service

from .scripts import run_script, running_script

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

SCRIPT: Final = "pylibp2p_relay.py"
DEADLINE: Final = 60.0


async def test_a_pylibp2p_relay_serves_our_reservation_and_circuit(python: str) -> None:
    async with running_script(python, SCRIPT, "serve", "--lifetime", str(DEADLINE)) as relay:
        with trio.fail_after(DEADLINE):
            listening = await relay.next_event()
        assert listening["event"] == "listening"
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


async def test_our_relay_serves_a_pylibp2p_reservation(python: str) -> None:
    async with open_host(KeyPair.generate()) as host, open_relay_service(host) as relay:
        with trio.fail_after(DEADLINE):
            answer = await run_script(
                python, SCRIPT, "reserve", str(host.addrs[0]), "--timeout", "30"
            )
        assert answer["event"] == "answer", answer
        assert answer["status"] == 100  # OK
        assert answer["voucher_ok"] is True
        assert answer["expire"] > time.time()
        assert answer["limit"] == {"duration": 120, "data": 1 << 17}
        assert [r.peer for r in relay.state.reservations(time.time())] != []
