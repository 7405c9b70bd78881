"""AutoNAT v1 both ways with py-libp2p 0.8.1 (tools/interop/pylibp2p_autonat.py): our client
asks its server, its client asks our server. Loopback only, so both dial-backs succeed.
Skipped, with the reason, where the interop virtualenv is absent."""

from __future__ import annotations

from typing import Final

import pytest
import trio

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.autonat import AutoNATConfig, open_autonat
from p2pchat.net.host import open_host
from p2pchat.net.identify import identify_peer
from p2pchat.protocols import autonat as core

from .scripts import run_script, running_script

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

SCRIPT: Final = "pylibp2p_autonat.py"
DEADLINE: Final = 60.0


async def test_our_client_asks_a_pylibp2p_server(python: str) -> None:
    async with running_script(python, SCRIPT, "serve", "--lifetime", str(DEADLINE)) as peer:
        with trio.fail_after(DEADLINE):
            listening = await peer.next_event()
        assert listening["event"] == "listening"
        server = Multiaddr.from_string(listening["addrs"][0])
        async with (
            open_host(KeyPair.generate()) as host,
            open_autonat(host, AutoNATConfig(serve=False, threshold=1, eager_asks=0)) as autonat,
        ):
            conn = await host.connect(server)
            await identify_peer(host, conn)
            assert core.PROTOCOL_ID in host.peer_store.protocols(conn.remote_peer)
            reply = await autonat.ask(PeerID.from_string(listening["peer_id"]))
            assert reply.status is core.ResponseStatus.OK
            assert autonat.status is core.ReachabilityStatus.PUBLIC


async def test_a_pylibp2p_client_asks_our_server(python: str) -> None:
    async with open_host(KeyPair.generate()) as host, open_autonat(host) as autonat:
        with trio.fail_after(DEADLINE):
            answer = await run_script(python, SCRIPT, "ask", str(host.addrs[0]), "--timeout", "30")
        assert answer["event"] == "answer"
        assert answer["status"] == int(core.ResponseStatus.OK)
        assert autonat.dial_backs == 1
