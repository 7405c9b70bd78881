"""The py-libp2p interop peer (tools/interop/pylibp2p_peer.py) against itself.

Two instances of the script talk to each other, which proves the harness that later tests
point at our own node. Skipped unless ``P2PCHAT_INTEROP_PYTHON`` names the interpreter of the
py-libp2p virtualenv (``make unit`` sets it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import pytest

from conftest import PyLibp2p
from p2pchat.identity import KeyPair, PeerID

pytestmark = pytest.mark.interop

SEED: Final = bytes(range(32))


@pytest.fixture
async def listener(pylibp2p: PyLibp2p) -> AsyncIterator[dict[str, Any]]:
    """A listening py-libp2p peer with identity ``SEED``."""
    async with pylibp2p.listen("--seed", SEED.hex()) as event:
        yield event


async def test_listener_peer_id_matches_our_identity(listener: dict[str, Any]) -> None:
    expected = str(PeerID.from_public_key(KeyPair.from_seed(SEED).public_key))
    assert listener["peer_id"] == expected
    assert listener["addrs"][0].startswith("/ip4/127.0.0.1/tcp/")
    assert listener["addrs"][0].endswith(f"/p2p/{expected}")


async def test_ping_round_trips(pylibp2p: PyLibp2p, listener: dict[str, Any]) -> None:
    status, out = await pylibp2p.run("ping", listener["addrs"][0], "--count", "3")
    assert status == 0
    assert out["event"] == "ping"
    assert out["peer_id"] == listener["peer_id"]
    assert len(out["rtt_ms"]) == 3
    assert all(rtt > 0 for rtt in out["rtt_ms"])


async def test_identify_reports_listener_fields(
    pylibp2p: PyLibp2p, listener: dict[str, Any]
) -> None:
    status, out = await pylibp2p.run("identify", listener["addrs"][0])
    assert status == 0
    assert out["agent_version"].startswith("py-libp2p/")
    assert out["public_key_type"] == "Ed25519"
    assert out["public_key_matches_peer_id"] is True
    assert out["framing"] == "length-prefixed"
    assert out["listen_addrs"] == [listener["addrs"][0].split("/p2p/")[0]]
    assert out["observed_addr"].startswith("/ip4/127.0.0.1/tcp/")
    for protocol in ("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/p2pchat-test/echo/1.0.0"):
        assert protocol in out["protocols"]


async def test_echo_returns_every_byte(pylibp2p: PyLibp2p, listener: dict[str, Any]) -> None:
    size = 1_000_003
    args = ("echo", listener["addrs"][0], "--bytes", str(size), "--write-size", "10000")
    status, out = await pylibp2p.run(*args)
    assert status == 0
    assert out["event"] == "echo"
    assert out["bytes"] == size


async def test_sink_counts_every_byte(pylibp2p: PyLibp2p, listener: dict[str, Any]) -> None:
    size = 3 * 65536 + 5
    status, out = await pylibp2p.run("send", listener["addrs"][0], "--bytes", str(size))
    assert status == 0
    assert out == {**out, "event": "sink", "bytes": size}


async def test_connect_repeats_new_connections(
    pylibp2p: PyLibp2p, listener: dict[str, Any]
) -> None:
    status, out = await pylibp2p.run("connect", listener["addrs"][0], "--count", "3")
    assert status == 0
    assert out["count"] == 3
    assert len(out["times_ms"]) == 3
    assert out["median_ms"] == sorted(out["times_ms"])[1]


async def test_refuses_a_non_loopback_address(pylibp2p: PyLibp2p) -> None:
    peer = PeerID.from_public_key(KeyPair.from_seed(SEED).public_key)
    status, out = await pylibp2p.run("ping", f"/ip4/192.0.2.1/tcp/4001/p2p/{peer}")
    assert status == 1
    assert out["event"] == "error"
    assert out["error"] == "UsageError"


async def test_reports_a_wrong_peer_id_as_an_error(
    pylibp2p: PyLibp2p, listener: dict[str, Any]
) -> None:
    other = PeerID.from_public_key(KeyPair.from_seed(bytes(32)).public_key)
    address = listener["addrs"][0].split("/p2p/")[0] + f"/p2p/{other}"
    status, out = await pylibp2p.run("ping", address)
    assert status == 1
    assert out["event"] == "error"
    assert "upgrade security" in out["message"]
