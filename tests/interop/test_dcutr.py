"""DCUtR with py-libp2p 0.8.1 (tools/interop/pylibp2p_dcutr.py) over a connection relayed by our
relay, on loopback, in both directions; specs/dcutr.md "Interop with py-libp2p 0.8.1" says what
happens and why. Skipped, with the reason, where the interop virtualenv is absent."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import pytest
import trio

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.dcutr import DCUtRConfig, open_dcutr
from p2pchat.net.host import HostConfig, open_host
from p2pchat.net.ping import open_ping
from p2pchat.net.relay import is_relayed, open_relay_client, open_relay_service

from .scripts import ScriptProcess, running_script

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]

SCRIPT: Final = "pylibp2p_dcutr.py"
DEADLINE: Final = 90.0
HOST_CONFIG: Final = HostConfig(reuse_port=True)


@asynccontextmanager
async def pylibp2p(python: str, *args: str) -> AsyncIterator[ScriptProcess]:
    timing = ("--timeout", "60", "--lifetime", str(DEADLINE))
    async with running_script(python, SCRIPT, *args, *timing) as peer:
        yield peer


def _sent_and_received(steps: list[str]) -> list[str]:
    """py-libp2p's DCUtR messages, in order, from its log lines."""
    out = []
    for line in steps:
        for what in ("Sent CONNECT", "Received CONNECT", "Sent SYNC", "Received SYNC"):
            if line.startswith(what):
                out.append(what)
    return out


async def test_pylibp2p_initiates_and_a_direct_connection_forms(python: str) -> None:
    # py-libp2p is the inbound side of the relayed connection (B): it writes CONNECT, we answer,
    # it writes SYNC; then it dials as the Noise *responder* (the reverse of go-libp2p), as we do
    # when we answer. Its dial (from its listen port, the address its CONNECT gave) reaches our
    # listener, where its multistream-select listener writes its header and waits: nobody would
    # propose /noise. Our role choice (net/simopen.py) sees no proposal within role_wait and
    # takes the dialer's and Noise initiator's role, so the direct connection forms. (Our own
    # dial to its listener finds the address pair taken, on loopback.)
    async with (
        open_host(KeyPair.generate()) as relay_host,
        open_relay_service(relay_host),
        open_host(KeyPair.generate(), HOST_CONFIG) as host,
        open_relay_client(host),
        open_dcutr(host, DCUtRConfig(grace=0.5)) as dcutr,
    ):
        relay_addr = relay_host.addrs[0].with_peer_id(relay_host.peer_id)
        async with pylibp2p(python, "initiate", str(relay_addr)) as peer:
            with trio.fail_after(DEADLINE):
                reserved = await peer.next_event()
                assert reserved["event"] == "reserved"
                their_id = PeerID.from_string(reserved["peer_id"])
                relayed = await host.connect(Multiaddr.from_string(reserved["circuit"]))
                assert is_relayed(relayed.remote_addr)
                assert (await peer.next_event())["event"] == "relayed"
                await dcutr.done.wait()
                result = await peer.next_event()
            assert result["event"] == "result"
            assert _sent_and_received(result["steps"]) == [
                "Sent CONNECT",
                "Received CONNECT",
                "Sent SYNC",
            ]
            assert (result["success"], result["direct"]) == (True, True)
            assert (dcutr.stats.answered, dcutr.stats.upgraded, dcutr.stats.failed) == (1, 1, 0)
            direct = host.connection(their_id)
            assert direct is not None
            assert not is_relayed(direct.remote_addr)
            assert direct.is_client  # we took the dialer's role
            async with open_ping(host, their_id) as pinger:
                assert await pinger.ping() >= 0


async def test_with_role_choice_off_pylibp2p_initiating_leaves_us_relayed(python: str) -> None:
    # The same exchange without our role choice (role_wait=None): both sides wait as Noise
    # responders, no direct connection forms. We drop the silent connection at the end of the
    # round, wait for a next CONNECT that never comes (py-libp2p keeps the stream open through
    # its own three dial rounds, about 21 s) and end the exchange with a DCUtRError after 10 s;
    # the relayed connection stays and carries the traffic.
    async with (
        open_host(KeyPair.generate()) as relay_host,
        open_relay_service(relay_host),
        open_host(KeyPair.generate(), HOST_CONFIG) as host,
        open_relay_client(host),
        open_dcutr(host, DCUtRConfig(grace=0.5, role_wait=None)) as dcutr,
    ):
        relay_addr = relay_host.addrs[0].with_peer_id(relay_host.peer_id)
        async with pylibp2p(python, "initiate", str(relay_addr)) as peer:
            with trio.fail_after(DEADLINE):
                reserved = await peer.next_event()
                their_id = PeerID.from_string(reserved["peer_id"])
                relayed = await host.connect(Multiaddr.from_string(reserved["circuit"]))
                assert (await peer.next_event())["event"] == "relayed"
                await dcutr.done.wait()
                result = await peer.next_event()
            assert "Sent SYNC" in _sent_and_received(result["steps"])
            assert (result["success"], result["direct"]) == (False, False)
            assert all(any("/p2p-circuit" in a for a in c) for c in result["connections"])
            assert (dcutr.stats.answered, dcutr.stats.upgraded, dcutr.stats.failed) == (1, 0, 1)
            assert host.connection(their_id) is relayed
            async with open_ping(host, their_id) as pinger:
                assert await pinger.ping() >= 0


async def test_we_initiate_and_pylibp2p_answers_with_a_direct_connection(python: str) -> None:
    # We are the inbound side (B) and write CONNECT; py-libp2p answers and, on SYNC, dials as
    # the Noise initiator, as we do. On loopback there is no NAT: a dial reaches the other's
    # listener, which is a responder, and the direct connection forms; the other dial finds
    # the same address pair taken. Behind NATs the two dials would be one TCP connection with
    # two Noise initiators and would fail (not run here; specs/dcutr.md).
    async with (
        open_host(KeyPair.generate()) as relay_host,
        open_relay_service(relay_host),
        open_host(KeyPair.generate(), HOST_CONFIG) as host,
        open_relay_client(host) as client,
        open_dcutr(host, DCUtRConfig(grace=0.5)) as dcutr,
    ):
        await client.reserve(relay_host.addrs[0])
        circuit = client.book.circuit_addrs(time.time())[0].with_peer_id(host.peer_id)
        async with pylibp2p(python, "answer", str(circuit)) as peer:
            with trio.fail_after(DEADLINE):
                connected = await peer.next_event()
                assert connected["event"] == "connected"
                await dcutr.done.wait()
                result = await peer.next_event()
            assert result["event"] == "result"
            assert _sent_and_received(result["steps"]) == [
                "Received CONNECT",
                "Sent CONNECT",
                "Received SYNC",
            ]
            assert (result["success"], result["direct"]) == (True, True)
            assert dcutr.stats.upgraded == 1
            their_id = next(p for p in host.connected_peers() if p != relay_host.peer_id)
            direct = host.connection(their_id)
            assert direct is not None
            assert not is_relayed(direct.remote_addr)
            async with open_ping(host, their_id) as pinger:
                assert await pinger.ping() >= 0
