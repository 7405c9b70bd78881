"""Our Host against py-libp2p 0.8.1, both directions: ping, identify, 10 MiB echoes.

py-libp2p runs as a subprocess in its own virtualenv (``make unit`` provides it); these tests
are skipped, with that reason, where it is absent.
"""

from __future__ import annotations

import hashlib
from typing import Final

import pytest
import trio

from conftest import PyLibp2p
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import open_host
from p2pchat.net.identify import identify_peer
from p2pchat.net.muxer import MuxedStream
from p2pchat.net.ping import open_ping

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

ECHO: Final = "/p2pchat-test/echo/1.0.0"
TEN_MIB: Final = 10 * 1024 * 1024


async def echo(stream: MuxedStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


async def test_pylibp2p_dials_us_and_pings(pylibp2p: PyLibp2p) -> None:
    async with open_host(KeyPair.generate()) as host:
        status, out = await pylibp2p.run("ping", str(host.addrs[0]), "--count", "5")
    assert status == 0, out
    assert out["peer_id"] == str(host.peer_id)
    assert len(out["rtt_ms"]) == 5


async def test_we_dial_pylibp2p_and_ping(pylibp2p: PyLibp2p) -> None:
    async with (
        pylibp2p.listen() as peer,
        open_host(KeyPair.generate()) as host,
        open_ping(host, Multiaddr.from_string(peer["addrs"][0])) as pinger,
    ):
        rtts = [await pinger.ping() for _ in range(5)]
        assert str(pinger.stream.remote_peer) == peer["peer_id"]
    assert all(0 < rtt < 5 for rtt in rtts)


async def test_pylibp2p_identifies_us(pylibp2p: PyLibp2p) -> None:
    async with open_host(KeyPair.generate()) as host:
        host.set_stream_handler(ECHO, echo)
        status, out = await pylibp2p.run("identify", str(host.addrs[0]))
    assert status == 0, out
    assert out["agent_version"].startswith("p2pchat/")
    assert out["public_key_type"] == "Ed25519"
    assert out["public_key_matches_peer_id"] is True
    assert out["listen_addrs"] == [str(host.listen_addrs[0])]
    assert out["observed_addr"].startswith("/ip4/127.0.0.1/tcp/")
    # py-libp2p verifies our signed peer record (specs/peer-record.md).
    opened = out["signed_peer_record_opened"]
    assert isinstance(opened, dict), opened
    assert opened["peer"] == str(host.peer_id)
    assert opened["addrs"] == [str(host.listen_addrs[0])]
    for protocol in ("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", ECHO):
        assert protocol in out["protocols"]


async def test_we_identify_pylibp2p(pylibp2p: PyLibp2p) -> None:
    async with pylibp2p.listen() as peer, open_host(KeyPair.generate()) as host:
        conn = await host.connect(Multiaddr.from_string(peer["addrs"][0]))
        info = await identify_peer(host, conn)
        held = host.peer_store.signed_record(conn.remote_peer)
    assert info.agent_version.startswith("py-libp2p/")
    # py-libp2p sends a signed peer record; we verified it and kept it.
    assert info.signed_peer_record is not None
    assert held == info.signed_peer_record
    assert str(info.listen_addrs[0]) == peer["addrs"][0].split("/p2p/")[0]
    assert info.observed_addr is not None
    assert ECHO in info.protocols
    assert "/ipfs/ping/1.0.0" in info.protocols


async def test_pylibp2p_echoes_10_mib_through_us(pylibp2p: PyLibp2p) -> None:
    async with open_host(KeyPair.generate()) as host:
        host.set_stream_handler(ECHO, echo)
        status, out = await pylibp2p.run("echo", str(host.addrs[0]), "--bytes", str(TEN_MIB))
    assert status == 0, out
    assert out["bytes"] == TEN_MIB  # the script verifies every byte it gets back


async def test_we_echo_10_mib_through_pylibp2p(pylibp2p: PyLibp2p) -> None:
    payload = hashlib.shake_256(b"p2pchat").digest(TEN_MIB)
    received = bytearray()
    async with pylibp2p.listen() as peer, open_host(KeyPair.generate()) as host:
        stream = await host.new_stream(Multiaddr.from_string(peer["addrs"][0]), [ECHO])
        async with stream, trio.open_nursery() as nursery:

            async def write() -> None:
                view = memoryview(payload)
                for start in range(0, len(payload), 65536):
                    await stream.send_all(view[start : start + 65536])
                await stream.send_eof()

            nursery.start_soon(write)
            while chunk := await stream.receive_some():
                received += chunk
    assert len(received) == TEN_MIB
    assert received == payload
