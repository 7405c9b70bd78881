"""Our DHT against py-libp2p 0.8.1's (tools/interop/pylibp2p_kad.py): its FIND_NODE and
GET_PROVIDERS answered by our servers, our lookups going through its servers.

Skipped, with the reason, where the interop virtualenv is absent (``P2PCHAT_INTEROP_PYTHON``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
import trio

from p2pchat.discovery.kad import KadConfig, KadDHT, open_kad
from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import HostConfig, open_host
from p2pchat.net.resources import ResourceLimits

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]

SCRIPT: Final = Path(__file__).resolve().parents[2] / "tools" / "interop" / "pylibp2p_kad.py"
DEADLINE: Final = 60.0
LOOPBACK = HostConfig(
    listen=(Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),),
    limits=ResourceLimits(max_inbound_per_ip=256, max_handshakes_per_ip=64),
)
KEY: Final = b"\x12\x20" + bytes(range(100, 132))  # a sha2-256 multihash, as in a CID


@pytest.fixture
def python() -> str:
    python = os.environ.get("P2PCHAT_INTEROP_PYTHON", "")
    if not python or not Path(python).exists():
        pytest.skip("P2PCHAT_INTEROP_PYTHON names no py-libp2p interpreter (make unit sets it)")
    return python


async def run_client(python: str, *args: str) -> dict[str, Any]:
    """One client command of the script; its single JSON line (exit status 0 checked)."""
    with trio.fail_after(DEADLINE):
        done = await trio.run_process(
            [python, str(SCRIPT), *args, "--timeout", "30"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0, (lines, done.stderr.decode()[-2000:])
    assert len(lines) == 1, lines
    event: dict[str, Any] = json.loads(lines[0])
    return event


@asynccontextmanager
async def serve(python: str, *args: str, events: int = 1) -> AsyncIterator[list[dict[str, Any]]]:
    """A py-libp2p DHT server; yields its first ``events`` JSON lines (``listening`` first)."""
    cmd = [python, str(SCRIPT), "serve", "--lifetime", str(DEADLINE), *args]
    process = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        received = bytearray()
        with trio.fail_after(DEADLINE):
            while received.count(b"\n") < events:
                chunk = await process.stdout.receive_some()
                assert chunk, f"the py-libp2p DHT exited early: {bytes(received)!r}"
                received += chunk
        yield [json.loads(line) for line in bytes(received).decode().splitlines()]
    finally:
        with trio.CancelScope(shield=True):
            await process.stdin.aclose()
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdout.aclose()


@asynccontextmanager
async def our_nodes(
    n: int, bootstrap: tuple[Multiaddr, ...] = (), *, first_seed: int = 2000
) -> AsyncIterator[list[KadDHT]]:
    """``n`` of our DHT servers (key seeds from ``first_seed``); the first joins through
    ``bootstrap``, the others through the first (or through ``bootstrap`` too, if given)."""
    async with AsyncExitStack() as stack:
        nodes: list[KadDHT] = []
        for i in range(n):
            host = await stack.enter_async_context(
                open_host(KeyPair.from_seed((first_seed + i).to_bytes(32, "big")), LOOPBACK)
            )
            via = bootstrap or (tuple(nodes[0].host.addrs[:1]) if nodes else ())
            config = attrs.evolve(KadConfig(refresh_interval=3600.0), bootstrap=via)
            dht = await stack.enter_async_context(open_kad(host, config))
            with trio.fail_after(30):
                await dht.bootstrapped.wait()
            nodes.append(dht)
        yield nodes


async def test_pylibp2p_find_node_is_answered_by_our_servers(python: str) -> None:
    async with our_nodes(4) as nodes:
        target = nodes[3]
        found = await run_client(
            python,
            "find-peer",
            "--bootstrap",
            str(nodes[0].host.addrs[0]),
            str(target.host.peer_id),
        )
    assert found["event"] == "found"
    assert str(target.host.listen_addrs[0]) in found["addrs"]


async def test_pylibp2p_get_providers_is_answered_by_our_servers(python: str) -> None:
    async with our_nodes(4) as nodes:
        assert await nodes[2].provide(KEY) >= 1
        found = await run_client(
            python, "find-providers", "--bootstrap", str(nodes[0].host.addrs[0]), KEY.hex()
        )
    assert found["event"] == "providers"
    assert str(nodes[2].host.peer_id) in [p["peer_id"] for p in found["providers"]]


async def test_pylibp2p_add_provider_is_stored_by_our_servers(python: str) -> None:
    async with our_nodes(4) as nodes:
        via = str(nodes[0].host.addrs[0])
        async with serve(python, "--bootstrap", via, "--provide", KEY.hex(), events=2) as (
            listening,
            provided,
        ):
            assert provided == {"event": "provided", "ok": True}
            provider = PeerID.from_string(listening["peer_id"])

            def holders() -> list[KadDHT]:
                now = trio.current_time()
                return [
                    n for n in nodes if provider in [r.peer for r in n.provider_store.get(KEY, now)]
                ]

            # ADD_PROVIDER has no answer (specs/kad.md): py-libp2p reports "provided" once it has
            # written the messages, which our servers may not have read yet. Wait, bounded.
            with trio.move_on_after(5):
                while not holders():  # noqa: ASYNC110 - the provider store has no event to wait on
                    await trio.sleep(0.05)
            assert holders(), "no server of ours stored the py-libp2p provider record"
            found = await nodes[3].providers(KEY)
            assert provider in [p.peer for p in found]


async def test_our_lookups_go_through_pylibp2p_servers(python: str) -> None:
    async with serve(python) as (first,):
        p1 = first["addrs"][0]
        async with serve(python, "--bootstrap", p1, "--provide", KEY.hex(), events=2) as (
            second,
            provided,
        ):
            assert provided == {"event": "provided", "ok": True}
            p2 = second["addrs"][0]
            async with (
                our_nodes(1, (Multiaddr.from_string(p1),)) as (a,),
                our_nodes(1, (Multiaddr.from_string(p2),), first_seed=3000) as (b,),
            ):
                assert a.host.connection(b.host.peer_id) is None
                addrs = await a.find_peer(b.host.peer_id)
                assert b.host.listen_addrs[0] in addrs
                providers = await a.providers(KEY)
                assert PeerID.from_string(second["peer_id"]) in [p.peer for p in providers]


async def test_pylibp2p_protobuf_reads_our_vectors_byte_for_byte(python: str) -> None:
    vectors = json.loads(
        (SCRIPT.parents[2] / "specs" / "vectors" / "kad" / "find_node.json").read_text()
    )
    code = (
        "import sys, varint\n"
        "from libp2p.kad_dht.pb.kademlia_pb2 import Message\n"
        "for h in sys.argv[1:]:\n"
        "    b = bytes.fromhex(h); n = varint.decode_bytes(b); body = b[len(varint.encode(n)):]\n"
        "    m = Message(); m.ParseFromString(body)\n"
        "    assert m.SerializeToString() == body and len(body) == n\n"
        "    print(Message.MessageType.Name(m.type), len(m.closerPeers))\n"
    )
    hexes = [vectors["request"]["hex"], vectors["response"]["hex"]]
    with trio.fail_after(DEADLINE):
        done = await trio.run_process([python, "-c", code, *hexes], capture_stdout=True)
    assert done.stdout.decode().split("\n")[:2] == ["FIND_NODE 0", "FIND_NODE 2"]


@pytest.mark.slow
async def test_a_mixed_network_of_ours_and_pylibp2p_finds_everyone(python: str) -> None:
    async with serve(python) as (p1,):
        first = p1["addrs"][0]
        async with (
            serve(python, "--bootstrap", first) as (p2,),
            serve(python, "--bootstrap", first) as (p3,),
        ):
            py = [p1, p2, p3]
            async with AsyncExitStack() as stack:
                ours: list[KadDHT] = []
                for i in range(12):
                    via = Multiaddr.from_string(py[i % 3]["addrs"][0])
                    (node,) = await stack.enter_async_context(
                        our_nodes(1, (via,), first_seed=4000 + i)
                    )
                    ours.append(node)
                for node in ours:
                    await node.refresh()
                targets = [(n.host.peer_id, n.host.listen_addrs[0]) for n in ours]
                targets += [
                    (PeerID.from_string(p["peer_id"]), Multiaddr.from_string(p["addrs"][0]))
                    for p in py
                ]
                misses = []
                for node in ours:
                    for peer, addr in targets:
                        if peer == node.host.peer_id:
                            continue
                        conn = node.host.connection(peer)
                        if conn is not None:
                            await conn.aclose()
                        if addr.without_peer_id() not in await node.find_peer(peer):
                            misses.append((node.host.peer_id, peer))
                assert misses == []
