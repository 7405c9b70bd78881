"""mDNS across a real (virtual) LAN: nodes in separate network namespaces on one bridge.

Three namespaces made for this test only, each with one veth on a bridge in a fourth
namespace and an address in 10.199.0.0/24 (tools/mdns_node.py ``netns_lan``; nothing is added
to the machine's own namespace). One node runs in each, as a subprocess
(``ip netns exec <ns> python tools/mdns_node.py run``): a host listening on its namespace's
address and mDNS on its ``lan0``. No node is told any other's address. Each must discover
the two others through mDNS and then dial them from its peer store (Noise checks that the
peer at the address is the one announced). Skipped, with the reason, where namespaces
cannot be made (not root, no ``ip``, or a kernel that refuses).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

import pytest

TOOLS: Final = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

from mdns_node import NodeProcess, netns_lan, netns_unavailable_reason, pump  # noqa: E402

pytestmark = [pytest.mark.timeout(120)]

NODE: Final = str(TOOLS / "mdns_node.py")
#: How long the nodes get to find and dial each other (they take well under a second).
DISCOVERY_DEADLINE: Final = 30.0


@pytest.fixture(scope="module")
def netns_ok() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def node_argv(address: str, expect: int, *, interface: str = "lan0") -> list[str]:
    return [
        sys.executable, NODE, "run",
        "--listen", f"/ip4/{address}/tcp/0",
        "--interface", interface,
        "--expect", str(expect),
        "--connect",
        "--lifetime", "60",
    ]  # fmt: skip


@pytest.mark.usefixtures("netns_ok")
def test_three_namespaces_discover_each_other_through_mdns_alone() -> None:
    size = 3
    with netns_lan(size) as lan:
        nodes: list[NodeProcess] = []
        try:
            for i in range(size):
                nodes.append(NodeProcess(lan.command(i, node_argv(lan.address(i), size - 1))))
            finished = pump(
                nodes, lambda: all(n.first("done") or n.eof for n in nodes), DISCOVERY_DEADLINE
            )
            results = [node.stop() for node in nodes]
        finally:
            for node in nodes:
                node.kill()
        for status, stderr in results:
            assert status == 0, stderr
        assert finished, [n.events for n in nodes]

        ready = [n.first("ready") for n in nodes]
        assert all(r is not None for r in ready), [n.events for n in nodes]
        ids = [r["peer_id"] for r in ready if r is not None]
        addrs = {r["peer_id"]: r["addrs"] for r in ready if r is not None}
        for i, node in enumerate(nodes):
            others = set(ids) - {ids[i]}
            discovered = {e["peer_id"]: e for e in node.all("discovered")}
            # Each peer once, and only the others (never itself).
            assert len(node.all("discovered")) == len(discovered)
            assert set(discovered) == others
            for peer, event in discovered.items():
                # The announced addresses are the peer's own, on the LAN.
                assert [f"{a}/p2p/{peer}" for a in event["addrs"]] == addrs[peer]
                assert all(a.startswith("/ip4/10.199.0.") for a in event["addrs"])
                assert 0 < event["ttl"] <= 120
            assert {e["peer_id"] for e in node.all("connected")} == others
            assert node.all("dial_error") == []
            stats = node.first("exit")
            assert stats is not None
            assert stats["stats"]["malformed_packets"] == 0
            assert stats["stats"]["peers_discovered"] == size - 1


@pytest.mark.usefixtures("netns_ok")
def test_mdns_on_lo_does_not_reach_the_lan() -> None:
    """A node whose mDNS runs on its namespace's ``lo`` hears nobody on the bridge, and
    nobody hears it: the interface choice is what confines the multicast."""
    with netns_lan(2, subnet="10.199.1") as lan:
        nodes: list[NodeProcess] = []
        try:
            nodes.append(NodeProcess(lan.command(0, node_argv(lan.address(0), 1))))
            nodes.append(NodeProcess(lan.command(1, node_argv(lan.address(1), 1, interface="lo"))))
            # Both run their first queries and responses (a few hundred ms); neither hears any.
            pump(nodes, lambda: all(n.first("ready") for n in nodes), DISCOVERY_DEADLINE)
            heard = pump(nodes, lambda: any(n.first("discovered") for n in nodes), 3.0)
            results = [node.stop() for node in nodes]
        finally:
            for node in nodes:
                node.kill()
        for status, stderr in results:
            assert status == 0, stderr
        assert not heard
        for node in nodes:
            assert node.first("ready") is not None
            exit_event = node.first("exit")
            assert exit_event is not None
            assert exit_event["stats"]["queries_sent"] >= 1
            assert exit_event["stats"]["peers_discovered"] == 0
